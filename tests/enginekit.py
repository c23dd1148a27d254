"""Helpers for the engine tests: STA processes, in-process sessions, raw and lying peers.

Processes:      StaProcess (`python sta.py ...` with stdout and stderr merged, read by a thread)
In process:     Engine (sessions on an event loop in a background thread, so the test thread can
                use blocking sockets against them), start_tracker
Peers by hand:  RawPeer (a blocking wire-protocol client), LoopbackServer (a listener that
                serves each connection in a thread), LyingSeed (claims every piece and
                answers every request with wrong bytes)
Data:           make_tree, tree_bytes, write_torrent, temp_dir
Waiting:        wait_for, poll_until

Every wait has a deadline and everything started here is stopped by the test's cleanup.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from sta import maketorrent, metainfo, wire
from sta.session import Session
from sta.storage import FileStorage
from sta.torrent import Torrent
from tests.interop import clients

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STA = os.path.join(ROOT, "sta.py")

# Default deadline of one wait. The machine running the tests is shared and often loaded; a
# transfer of a few MiB takes about a second when idle, so this only matters when something hangs.
WAIT = 60.0
# A process gets this long to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
# Poll interval of condition waits: short next to a one-second engine tick.
POLL = 0.05
# Socket read timeout of the hand-written peers; their loops check their own deadlines.
SOCKET_POLL = 0.2
# Lines of a process's output shown when a test fails.
TAIL_LINES = 60
# Peer id prefix of the hand-written peers: Azureus style, a client code no real client uses.
# Raw peers add random characters: a node refuses a second connection from the same peer id.
RAW_PEER_PREFIX = b"-XX0001-"
LIAR_PEER_ID = b"-XX0001-liarpeer0001"
# Bytes read from a socket at a time.
RECV_SIZE = 65536

_EOF = object()


class EngineTestError(AssertionError):
    """A process or peer in a test did not do what was expected in time."""


# ------------------------------------------------------------------------------------- processes

class StaProcess:
    """`python sta.py ARGS` with its output (stdout and stderr merged) read line by line.

    Subclasses may set `error` (the exception raised when a wait fails), `tail_lines` (output
    lines shown on failure) and `drop_env` (variables not passed on to the process).
    """

    error = EngineTestError
    tail_lines = TAIL_LINES
    drop_env: Tuple[str, ...] = ("PYTHONWARNINGS",)

    def __init__(self, test: Any, *args: Any, python: Optional[str] = None,
                 cwd: Optional[str] = None,
                 preexec_fn: Optional[Callable[[], None]] = None) -> None:
        self.cmd = [python or sys.executable, STA] + [str(a) for a in args]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        for name in self.drop_env:
            env.pop(name, None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=cwd or ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        self.lines: "queue.Queue[Any]" = queue.Queue()
        self.all_lines: List[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        test.addCleanup(self.stop)

    def _pump(self) -> None:
        try:
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.all_lines.append(line)
                self.lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self.lines.put(_EOF)
            try:
                self.proc.stdout.close()
            except OSError:
                pass

    @property
    def output(self) -> str:
        return "\n".join(self.all_lines)

    def describe(self) -> str:
        tail = self.all_lines[-self.tail_lines:]
        return "command: %s\nexit status: %s\noutput:\n  %s" % (
            " ".join(self.cmd), self.proc.poll(), "\n  ".join(tail))

    def wait_for(self, pattern: str, timeout: float = WAIT) -> "re.Match":
        """The match of the next output line that matches the regular expression `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.error("no line matching %r within %.0f s\n%s"
                                 % (pattern, timeout, self.describe()))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is _EOF:
                self.lines.put(_EOF)
                self._join(STOP_TIMEOUT)
                raise self.error("output ended before a line matching %r\n%s"
                                 % (pattern, self.describe()))
            match = regex.search(line)
            if match:
                return match

    def listen_port(self, timeout: float = WAIT) -> int:
        """The port the node printed it listens on."""
        return int(self.wait_for(r"Listening for peers on port (\d+)", timeout).group(1))

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Wait for the exit status; kill the process and fail if it runs past `timeout`."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise self.error("still running after %.0f s\n%s" % (timeout, self.describe()))
        self._join(STOP_TIMEOUT)
        return self.proc.returncode

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
            except OSError:
                pass
        self._join(STOP_TIMEOUT)
        return self.proc.returncode

    def _join(self, timeout: float) -> None:
        self._reader.join(timeout)


def poll_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = POLL,
               error: type = EngineTestError, message: str = "not within %.0f s: %s") -> Any:
    """Poll `predicate` until it returns something true and return that; on the deadline raise
    `error` with `message` % (timeout, what)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise error(message % (timeout, what))
        time.sleep(poll)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll a condition that does not live on the engine's loop (a hand-written peer's)."""
    poll_until(predicate, timeout, what)


def run_sta(*args: Any, timeout: float = WAIT) -> subprocess.CompletedProcess:
    """Run a short `sta.py` command to the end (stdout and stderr kept apart)."""
    return subprocess.run([sys.executable, STA] + [str(a) for a in args], cwd=ROOT,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


# ------------------------------------------------------------------------------------------ data

def download_to_end(test: Any, torrent: str, out: str, peer_ports: Sequence[int],
                    *options: str) -> "StaProcess":
    """`sta.py download` of ``torrent`` into ``out`` from peers on 127.0.0.1, run to its end:
    the test fails unless it exits 0 without a traceback."""
    args = ["download", torrent, "-o", out, "--port", "0", "--timeout", str(WAIT), *options]
    for port in peer_ports:
        args += ["--peer", "127.0.0.1:%d" % port]
    down = StaProcess(test, *args)
    status = down.wait_exit(WAIT + 15)
    test.assertEqual(status, 0, down.describe())
    test.assertNotIn("Traceback", down.output)
    return down


def temp_dir(test: Any, prefix: str = "sta-engine-") -> str:
    d = tempfile.TemporaryDirectory(prefix=prefix)
    test.addCleanup(d.cleanup)
    return d.name


def read_file(path: str) -> bytes:
    """The file's bytes, or b"" while it does not exist yet."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def make_tree(root: str, sizes: Dict[str, int], seed: int = 0) -> str:
    """Files of pseudo-random bytes under root ("a/b/c.bin" -> size); returns root."""
    for n, (rel, size) in enumerate(sorted(sizes.items())):
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        clients.make_file(path, size, seed * 1000 + n)
    return root


def tree_bytes(root: str) -> Dict[str, bytes]:
    """Every file under root (hidden folders such as .sta left out) -> its content."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            with open(path, "rb") as f:
                found[rel] = f.read()
    return found


def write_torrent(path: str, out: str, trackers: Sequence[str] = (),
                  piece_length: Optional[int] = None) -> metainfo.Metainfo:
    """Make a .torrent of `path` at `out` with STA's own maker; returns it parsed."""
    data = maketorrent.make_torrent([path], trackers=[[t] for t in trackers],
                                 piece_length=piece_length)
    with open(out, "wb") as f:
        f.write(data)
    return metainfo.parse(data)


# ------------------------------------------------------------------------------------- tracker

def start_tracker(test: Any, folder: str) -> Tuple[Any, str]:
    """STA's tracker on 127.0.0.1, in this process; returns (server, announce URL)."""
    from sta.tracker import TrackerServer
    server = TrackerServer("127.0.0.1", 0, os.path.join(folder, "tracker.db"), interval=60)
    server.start()
    test.addCleanup(server.shutdown)
    return server, "http://127.0.0.1:%d/announce" % server.port


def wait_for_swarm(server: Any, info_hash: bytes, seeders: int = 0, leechers: int = 0,
                   timeout: float = WAIT) -> None:
    """Wait until the in-process tracker lists at least this many seeders and leechers."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = server.store.scrape([info_hash]).get(info_hash, (0, 0, 0))
        if last[0] >= seeders and last[1] >= leechers:
            return
        time.sleep(POLL)
    raise EngineTestError("tracker lists %s (seeders, leechers, completed), wanted %d seeders "
                          "and %d leechers" % (last, seeders, leechers))


# ----------------------------------------------------------------------------- in-process engine

class LogCapture(logging.Handler):
    """Keeps the engine's log lines (INFO and up) for the test to read, off the console."""

    def __init__(self, test: Any) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(relativeCreated)8.0f %(name)s: %(message)s"))
        self.lines: List[str] = []
        logger = logging.getLogger("sta")
        saved = (logger.level, logger.propagate)
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        logger.propagate = False

        def restore() -> None:
            logger.removeHandler(self)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
        test.addCleanup(restore)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def matching(self, text: str) -> List[str]:
        return [line for line in list(self.lines) if text in line]

    def tail(self, n: int = TAIL_LINES) -> str:
        return "\n".join(self.lines[-n:])


class Engine:
    """STA sessions on one event loop in a background thread.

    The loop runs in its own thread so the test thread may block on sockets (raw peers) while
    the sessions serve. Objects of the engine are built on the loop (Torrent holds an
    asyncio.Event, which Python 3.8 binds to the loop current at construction).
    """

    def __init__(self, test: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.sessions: List[Session] = []
        self.log = LogCapture(test)
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()
        test.addCleanup(self.close)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Any, timeout: float = WAIT) -> Any:
        """Run a coroutine on the loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise EngineTestError("engine call did not finish within %.0f s" % timeout) from None

    def call(self, fn: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Call a plain function on the loop thread (to read engine state safely)."""
        async def invoke() -> Any:
            return fn()
        return self.run(invoke(), timeout)

    async def session(self, host: str = "127.0.0.1", **options: Any) -> Session:
        """A started session on this loop, closed with the engine."""
        session = Session(port=0, host=host, **options)
        await session.start()
        self.sessions.append(session)
        return session

    async def _start_node(self, meta: metainfo.Metainfo, folder: str, readonly: bool,
                          host: str, super_seed: bool = False, **options: Any) -> Torrent:
        session = await self.session(host, **options)
        storage = FileStorage(meta.info, folder, readonly=readonly)
        torrent = Torrent(session, meta, storage, super_seed=super_seed)
        await session.add(torrent)
        return torrent

    def node(self, meta: metainfo.Metainfo, folder: str, *, readonly: bool = False,
             peers: Iterable[Tuple[str, int]] = (), host: str = "127.0.0.1",
             super_seed: bool = False, **options: Any) -> Torrent:
        """A session with one torrent whose data lives in `folder`; returns the torrent.
        ``options`` go to the Session (dht_bootstrap=..., encryption=...)."""
        async def start() -> Torrent:
            torrent = await self._start_node(meta, folder, readonly, host, super_seed,
                                             **options)
            torrent.add_peers(list(peers), "test")
            return torrent
        return self.run(start())

    def mesh(self, meta: metainfo.Metainfo, folders: Sequence[str],
             peers: Iterable[Tuple[str, int]] = (), *, both_ways: bool = False,
             host: str = "127.0.0.1") -> List[Torrent]:
        """Nodes started together, each told of `peers` and of the nodes before it in the list
        (as a tracker answers: the earlier ones), or with `both_ways` of every other node, so
        that each pair dials each other at the same moment.

        They start in one loop turn, so their one-second ticks (which open connections) line
        up and none gets a head start on the others.
        """
        async def start() -> List[Torrent]:
            torrents = await asyncio.gather(*(self._start_node(meta, f, False, host)
                                              for f in folders))
            addresses = [listen_address(t) for t in torrents]
            for n, t in enumerate(torrents):
                others = [a for a in addresses if a != addresses[n]] if both_ways \
                    else addresses[:n]
                t.add_peers(list(peers) + others, "test")
            return list(torrents)
        return self.run(start())

    def add_peers(self, torrent: Torrent, peers: Iterable[Tuple[str, int]]) -> None:
        peers = list(peers)
        self.call(lambda: torrent.add_peers(peers, "test"))

    def wait_until(self, predicate: Callable[[], bool], what: str,
                   timeout: float = WAIT) -> None:
        """Poll `predicate` on the loop thread until it is true; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call(predicate):
                return
            time.sleep(POLL)
        raise EngineTestError("not within %.0f s: %s\nengine log:\n%s"
                              % (timeout, what, self.log.tail()))

    def wait_done(self, torrents: Sequence[Torrent], timeout: float = WAIT) -> None:
        """Wait until every torrent has all its pieces verified (or stopped with an error)."""
        def describe() -> str:
            return "; ".join("%s %s %d/%d pieces, %d peers" % (
                t.name, t.state, t.picker.have.count if t.picker else 0, t.info.num_pieces,
                len(t.peers)) for t in torrents)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call(lambda: all(t.done.is_set() for t in torrents)):
                return
            time.sleep(POLL)
        raise EngineTestError("downloads not complete within %.0f s: %s\nengine log:\n%s"
                              % (timeout, self.call(describe), self.log.tail()))

    def close(self) -> None:
        async def close_all() -> None:
            await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)
        try:
            if self._thread.is_alive():
                self.run(close_all(), WAIT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STOP_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()


# ---------------------------------------------------------------------------- peers by hand

def listen_address(torrent: Torrent) -> Tuple[str, int]:
    return ("127.0.0.1", torrent.host.listen_port)


class RawPeer:
    """A blocking BitTorrent client for tests: send encoded messages, read decoded events."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = WAIT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(SOCKET_POLL)
        self.reader = wire.MessageReader(expect_handshake=True)
        self.events: List[Any] = []
        self.closed = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def handshake(self, info_hash: bytes, peer_id: Optional[bytes] = None,
                  timeout: float = WAIT) -> Any:
        """Send our handshake and return the peer's."""
        if peer_id is None:
            peer_id = RAW_PEER_PREFIX + os.urandom(6).hex().encode("ascii")
        self.send(wire.handshake(info_hash, peer_id, extensions=True))
        return self.read_until(lambda e: isinstance(e, wire.Handshake), timeout)

    def read_until(self, predicate: Callable[[Any], bool], timeout: float = WAIT) -> Any:
        """Read events until one satisfies `predicate` and return it (all are kept in .events).

        Raises EngineTestError when the connection closes first or the deadline passes.
        """
        for event in self.events:
            if predicate(event):
                self.events.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = self._receive()
            for n, event in enumerate(new):
                if predicate(event):
                    self.events.extend(new[n + 1:])
                    return event
                self.events.append(event)
            if self.closed:
                raise EngineTestError("the peer closed the connection; events so far: %s"
                                      % _summarise(self.events))
        raise EngineTestError("no matching event within %.0f s; events so far: %s"
                              % (timeout, _summarise(self.events)))

    def wait_closed(self, timeout: float = WAIT) -> List[Any]:
        """Read until the peer closes the connection; returns what arrived meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.events.extend(self._receive())
        if not self.closed:
            raise EngineTestError("the peer kept the connection open for %.0f s" % timeout)
        return self.events

    def _receive(self) -> List[Any]:
        if self.closed:
            return []
        try:
            data = self.sock.recv(RECV_SIZE)
        except socket.timeout:
            return []
        except OSError:  # reset by the peer
            self.closed = True
            return []
        if not data:
            self.closed = True
            return []
        return self.reader.feed(data)


def _summarise(events: List[Any]) -> str:
    names = [type(e).__name__ for e in events[-20:]]
    return ", ".join(names) or "none"


def full_bitfield(num_pieces: int) -> bytes:
    """A bitfield claiming every one of `num_pieces` pieces (spare bits of the last byte clear)."""
    bits = bytearray(b"\xff" * ((num_pieces + 7) // 8))
    spare = len(bits) * 8 - num_pieces
    if spare:
        bits[-1] &= (0xFF << spare) & 0xFF
    return bytes(bits)


# A second loopback address for peers that get banned: bans hold for a whole host, so a liar on
# 127.0.0.1 would take every honest peer of the test down with it.
LIAR_HOST = "127.0.0.2"


def liar_host(test: Any) -> str:
    """LIAR_HOST, or skip the test where it cannot be bound (macOS configures only 127.0.0.1)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((LIAR_HOST, 0))
    except OSError as exc:
        test.skipTest("a liar needs its own loopback address and %s cannot be bound here (%s)"
                      % (LIAR_HOST, exc))
    finally:
        probe.close()
    return LIAR_HOST


class LoopbackServer:
    """A listening socket on 127.0.0.1 (or ``host``) that serves each connection in its own
    thread.

    Subclasses define `_serve(conn)`; .connections counts accepted connections. Stopped by the
    test's cleanup (close).
    """

    def __init__(self, test: Any, name: Optional[str] = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind((host, 0))
        self.server.listen(8)
        self.server.settimeout(SOCKET_POLL)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._name = name
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._spawn(self._accept, name=name and name + "-accept")
        test.addCleanup(self.close)

    def _spawn(self, target: Callable[..., None], *args: Any,
               name: Optional[str] = None) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(STOP_TIMEOUT)
        self.server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            self._spawn(self._serve, conn, name=self._name and self._name + "-conn")

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class LyingSeed(LoopbackServer):
    """A peer on its own loopback address (liar_host) that claims every piece and answers
    requests with wrong bytes.

    It serves every connection made to it until closed; .connections counts TCP connections,
    .handshakes those that got as far as a BitTorrent handshake (a TLS attempt does not).

    With ``first_blocks_only`` it answers only the requests for the first block of a piece, then
    chokes (which, without the fast extension, drops every other request the downloader had
    queued with it) and unchokes again after ``rechoke_delay``. The other blocks of those pieces
    then come from whoever else has them, so each piece that fails its hash had blocks from an
    honest peer too.
    """

    def __init__(self, test: Any, meta: metainfo.Metainfo, *, first_blocks_only: bool = False,
                 rechoke_delay: float = 0.5) -> None:
        self.first_blocks_only = first_blocks_only
        self.rechoke_delay = rechoke_delay
        self.info = meta.info
        self.info_hash = meta.info_hash
        self.handshakes = 0
        self.blocks_sent = 0
        super().__init__(test, name="liar", host=liar_host(test))

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(SOCKET_POLL)
        reader = wire.MessageReader(expect_handshake=True)
        choked_at: Optional[float] = None
        try:
            while not self._stop.is_set():
                out = []
                if choked_at is not None and time.monotonic() - choked_at >= self.rechoke_delay:
                    choked_at = None
                    out.append(wire.unchoke())
                try:
                    data = conn.recv(RECV_SIZE)
                except socket.timeout:
                    data = None
                if data == b"":
                    return
                for event in reader.feed(data) if data else ():
                    if isinstance(event, wire.Handshake):
                        self.handshakes += 1
                        out += [wire.handshake(self.info_hash, LIAR_PEER_ID, extensions=False),
                                wire.bitfield(full_bitfield(self.info.num_pieces)), wire.unchoke()]
                    elif isinstance(event, wire.Request) and choked_at is None:
                        if self.first_blocks_only and event.begin != 0:
                            continue
                        out.append(wire.piece(event.index, event.begin,
                                              _wrong_block(event.index, event.begin,
                                                           event.length)))
                        self.blocks_sent += 1
                if self.first_blocks_only and choked_at is None and any(
                        m[4] == 7 for m in out if len(m) > 4):  # a piece message went out
                    out.append(wire.choke())
                    choked_at = time.monotonic()
                if out:
                    conn.sendall(b"".join(out))
        except (OSError, wire.WireError):
            return
        finally:
            conn.close()


def _wrong_block(index: int, begin: int, length: int) -> bytes:
    """Bytes of the right size that are not the torrent's (random data never looks like this)."""
    return bytes([(index + begin // wire.BLOCK_SIZE + 1) % 251]) * length
