"""Helpers for the fault tests (tests/test_faults.py): real STA processes to kill, an in-process
seed that counts exactly what it uploads, hand-written misbehaving peers, and raw connections.

Processes:      StaProc (`python sta.py ...`, output merged and kept), run_sta
In process:     InProcessSeed (a seeding session on its own event loop thread)
Peers by hand:  FakePeer (listens; lies, stalls or drops), RawConnection (a blocking client)
Data:           make_torrent_file, allocated_bytes, good_pieces, read_lines
Waiting:        wait_until, cpu_seconds_of_children

Every wait has a deadline; everything started here is stopped by the test's cleanup.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from sta import maketorrent, metainfo, wire
from sta.session import Session
from sta.transfer import add_torrent
from tests.interop import clients

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STA = os.path.join(ROOT, "sta.py")

# Default deadline of one wait. The machine is shared and loaded: a 128 MiB loopback transfer
# takes about a second when idle, so this only matters when something hangs.
WAIT = 60.0
# A process gets this long to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
# Poll interval of condition waits (short next to the engine's one-second tick).
POLL = 0.05
# Socket timeout of the hand-written peers: their loops check a stop flag this often.
SOCKET_POLL = 0.2
# Bytes read from a socket at a time.
RECV_SIZE = 65536
# Lines of a process's output shown when a test fails.
TAIL_LINES = 40

_EOF = object()


class FaultTestError(AssertionError):
    """Something in a fault test did not happen in time."""


def temp_dir(test: Any, prefix: str = "sta-faults-") -> str:
    d = tempfile.TemporaryDirectory(prefix=prefix)
    test.addCleanup(d.cleanup)
    return d.name


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               poll: float = POLL) -> Any:
    """Poll ``predicate`` until it returns something true; fail with ``what`` on the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise FaultTestError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(poll)


# ------------------------------------------------------------------------------------ processes

class StaProc:
    """`python sta.py ARGS` with stdout and stderr merged, read line by line by a thread."""

    def __init__(self, test: Any, *args: Any, preexec_fn: Optional[Callable[[], None]] = None
                 ) -> None:
        self.cmd = [sys.executable, STA] + [str(a) for a in args]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec_fn)
        self.lines: "queue.Queue[Any]" = queue.Queue()
        self.all_lines: List[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        test.addCleanup(self.stop)

    @property
    def pid(self) -> int:
        return self.proc.pid

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

    def running(self) -> bool:
        return self.proc.poll() is None

    def describe(self) -> str:
        return "command: %s\nexit status: %s\noutput:\n  %s" % (
            " ".join(self.cmd), self.proc.poll(), "\n  ".join(self.all_lines[-TAIL_LINES:]))

    def wait_for(self, pattern: str, timeout: float = WAIT) -> "re.Match":
        """The match of the next output line matching the regular expression ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FaultTestError("no line matching %r within %.0f s\n%s"
                                     % (pattern, timeout, self.describe()))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is _EOF:
                self.lines.put(_EOF)
                self._reader.join(STOP_TIMEOUT)
                raise FaultTestError("output ended before a line matching %r\n%s"
                                     % (pattern, self.describe()))
            match = regex.search(line)
            if match:
                return match

    def listen_port(self, timeout: float = WAIT) -> int:
        return int(self.wait_for(r"Listening for peers on port (\d+)", timeout).group(1))

    def seeding_port(self, timeout: float = WAIT) -> int:
        """The listen port of a `seed` process, once its data is checked: a peer that connects
        while it still checks is refused (the torrent is not in the session yet)."""
        port = self.listen_port(timeout)
        self.wait_for(r"^Seeding ", timeout)
        return port

    def wait_exit(self, timeout: float = WAIT) -> int:
        """The exit status; the process is killed and the test fails if it runs past ``timeout``."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise FaultTestError("still running after %.0f s\n%s" % (timeout, self.describe()))
        self._reader.join(STOP_TIMEOUT)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (a crash: no cleanup of any kind) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)

    def interrupt(self) -> None:
        """Ctrl-C."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

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
        self._reader.join(STOP_TIMEOUT)
        return self.proc.returncode


def run_sta(*args: Any, timeout: float = WAIT) -> subprocess.CompletedProcess:
    """Run a short `sta.py` command to the end (stdout and stderr kept apart)."""
    return subprocess.run([sys.executable, STA] + [str(a) for a in args], cwd=ROOT,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def cpu_seconds_of_children() -> Optional[float]:
    """User + system CPU time of the reaped children of this process (Unix), else None."""
    try:
        import resource
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> Optional[float]:
    """CPU time a running process has used so far (Linux /proc), else None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


# ------------------------------------------------------------------------------------------ data

def make_torrent_file(folder: str, name: str, size: int, torrent: str,
                      trackers: Sequence[str] = (), seed: int = 0,
                      piece_length: Optional[int] = None) -> metainfo.Metainfo:
    """A file of ``size`` pseudo-random bytes at folder/name and its .torrent; returns it parsed."""
    path = clients.make_file(os.path.join(folder, name), size, seed)
    data = maketorrent.make_torrent([path], trackers=[[t] for t in trackers],
                                 piece_length=piece_length)
    with open(torrent, "wb") as f:
        f.write(data)
    return metainfo.parse(data)


def allocated_bytes(path: str) -> Optional[int]:
    """Bytes of ``path`` actually on disk (sparse files: what was written), None if unknown."""
    try:
        st = os.stat(path)
    except OSError:
        return 0
    blocks = getattr(st, "st_blocks", None)
    return None if blocks is None else blocks * 512


def good_pieces(info: metainfo.Info, path: str) -> List[int]:
    """Indices of the pieces of a single-file torrent whose bytes in ``path`` hash right."""
    good = []
    try:
        f = open(path, "rb")
    except OSError:
        return good
    with f:
        for i in range(info.num_pieces):
            f.seek(i * info.piece_length)
            if hashlib.sha1(f.read(info.piece_size(i))).digest() == info.piece_hash(i):
                good.append(i)
    return good


def log_time(line: str) -> Optional[float]:
    """The time.time() of a log line written with the CLI's format ("2026-11-26 14:08:02,279")."""
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
    if not m:
        return None
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def read_lines(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def same_bytes(a: str, b: str) -> bool:
    """Byte-for-byte comparison of two files, a megabyte at a time."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(1 << 20)
            y = fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


# ----------------------------------------------------------------------------- in-process seed

class _Quiet(logging.Handler):
    """Keeps the in-process engine's log lines for failure messages, off the test's console."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(relativeCreated)8.0f %(name)s: %(message)s"))
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class InProcessSeed:
    """A seeding session on its own event loop thread, so the test can read exactly how many
    bytes it uploaded (``uploaded``) while real downloader processes come and go."""

    def __init__(self, test: Any, meta: metainfo.Metainfo, folder: str, port: int = 0) -> None:
        self.meta = meta
        self.folder = folder
        self.requested_port = port
        self.port = 0
        self.torrent: Any = None
        self.session: Optional[Session] = None
        self.log = _Quiet()
        logger = logging.getLogger("sta")
        saved = (logger.level, logger.propagate)
        logger.addHandler(self.log)
        logger.setLevel(logging.INFO)
        logger.propagate = False

        def restore() -> None:
            logger.removeHandler(self.log)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
        test.addCleanup(restore)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="seed-loop", daemon=True)
        self._thread.start()
        test.addCleanup(self.close)
        self._run_coro(self._start())

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _run_coro(self, coro: Any, timeout: float = WAIT) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise FaultTestError("in-process seed did not answer within %.0f s" % timeout)

    async def _start(self) -> None:
        self.session = Session(port=self.requested_port, host="127.0.0.1")
        await self.session.start()
        self.port = self.session.listen_port
        self.torrent = await add_torrent(self.session, self.meta, self.folder, seed_only=True)
        if not self.torrent.complete:
            raise FaultTestError("the in-process seed does not have all the data")

    @property
    def uploaded(self) -> int:
        async def read() -> int:
            return self.torrent.uploaded
        return self._run_coro(read())

    def add_peer(self, port: int, host: str = "127.0.0.1") -> None:
        """Make the seed connect to a peer (as if a tracker had named it)."""
        async def add() -> None:
            self.torrent.add_peers([(host, port)], "test")
        self._run_coro(add())

    def close(self) -> None:
        if self.loop.is_closed():
            return
        if self.session is not None:
            try:
                self._run_coro(self.session.close(), STOP_TIMEOUT)
            except Exception:  # cleanup: the loop is stopped below either way
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(STOP_TIMEOUT)
        if not self._thread.is_alive():
            self.loop.close()


# ------------------------------------------------------------------------------- fake peers

def full_bitfield(num_pieces: int) -> bytes:
    bits = bytearray(b"\xff" * ((num_pieces + 7) // 8))
    spare = len(bits) * 8 - num_pieces
    if spare:
        bits[-1] &= (0xFF << spare) & 0xFF
    return bytes(bits)


class FakePeer:
    """A peer on 127.0.0.1 that claims every piece of a torrent and then misbehaves.

    mode "liar":    answers every request at once with random bytes (data failing the hash)
    mode "staller": unchokes, accepts requests and never answers them (keep-alives only)
    mode "dropper": completes the handshake, then closes the connection when the other side
                    says it is interested

    Counts ``connections``, ``requests``, ``drops`` and ``bad_bytes`` (bytes of wrong data).
    """

    def __init__(self, test: Any, info: metainfo.Info, mode: str) -> None:
        if mode not in ("liar", "staller", "dropper"):
            raise ValueError(mode)
        self.info = info
        self.mode = mode
        self.peer_id = b"-FK0001-" + os.urandom(6).hex().encode()
        self.connections = 0
        self.connected_at: List[float] = []  # time.time() of each accepted connection
        self.requests = 0
        self.drops = 0  # connections the dropper hung up on
        self.bad_bytes = 0
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(SOCKET_POLL)
        self.port = self._server.getsockname()[1]
        self._threads: List[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, name="fake-" + mode,
                                        daemon=True)
        self._accept.start()
        test.addCleanup(self.close)

    @property
    def address(self) -> str:
        return "127.0.0.1:%d" % self.port

    def close(self) -> None:
        self._stop.set()
        self._accept.join(STOP_TIMEOUT)
        for t in self._threads:
            t.join(STOP_TIMEOUT)
        self._server.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            self.connected_at.append(time.time())
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(SOCKET_POLL)
        reader = wire.MessageReader(expect_handshake=True)
        last_sent = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(RECV_SIZE)
                except socket.timeout:
                    if self.mode == "staller" and time.monotonic() - last_sent > 30:
                        conn.sendall(wire.keepalive())
                        last_sent = time.monotonic()
                    continue
                if not data:
                    return
                try:
                    events = reader.feed(data)
                except wire.WireError:
                    return
                out = []
                for event in events:
                    kind = type(event)
                    if kind is wire.Handshake:
                        if event.info_hash != self.info.info_hash:
                            return
                        out.append(wire.handshake(self.info.info_hash, self.peer_id,
                                                  extensions=False))
                        out.append(wire.bitfield(full_bitfield(self.info.num_pieces)))
                        out.append(wire.unchoke())
                    elif kind is wire.Interested and self.mode == "dropper":
                        if out:
                            conn.sendall(b"".join(out))
                        self.drops += 1
                        return
                    elif kind is wire.Request:
                        self.requests += 1
                        if self.mode == "liar":
                            out.append(wire.piece(event.index, event.begin,
                                                  os.urandom(event.length)))
                            self.bad_bytes += event.length
                if out:
                    conn.sendall(b"".join(out))
                    last_sent = time.monotonic()
        except OSError:
            return
        finally:
            conn.close()


class RawConnection:
    """A blocking wire-protocol client for poking a node's listen port."""

    def __init__(self, test: Any, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(SOCKET_POLL)
        self.reader = wire.MessageReader(expect_handshake=True)
        self.events: List[Any] = []
        test.addCleanup(self.close)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def handshake(self, info_hash: bytes) -> None:
        self.send(wire.handshake(info_hash, b"-RW0001-" + os.urandom(6).hex().encode(),
                                 extensions=False))

    def closed_by_peer(self, timeout: float) -> bool:
        """True once the other side closes (or resets) the connection within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(RECV_SIZE)
            except socket.timeout:
                continue
            except OSError:
                return True
            if not data:
                return True
        return False

    def wait_event(self, kind: type, timeout: float = 10.0,
                   match: Callable[[Any], bool] = lambda e: True) -> Any:
        """The first event of type ``kind`` (received now or earlier) that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if type(event) is kind and match(event):
                    del self.events[:i + 1]
                    return event
            if time.monotonic() >= deadline:
                raise FaultTestError("no %s within %.0f s (got %s)"
                                     % (kind.__name__, timeout,
                                        [type(e).__name__ for e in self.events][-10:]))
            try:
                data = self.sock.recv(RECV_SIZE)
            except socket.timeout:
                continue
            if not data:
                raise FaultTestError("connection closed while waiting for %s" % kind.__name__)
            self.events.extend(self.reader.feed(data))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def tracker_scrape(announce_url: str, info_hash: bytes, timeout: float = 5.0
                   ) -> Optional[Tuple[int, int, int]]:
    """(seeders, leechers, completed) from a tracker's scrape, None if it does not answer."""
    import urllib.error
    import urllib.request
    from sta import bencode
    from urllib.parse import quote_from_bytes
    url = announce_url.replace("/announce", "/scrape") + "?info_hash=" + \
        quote_from_bytes(info_hash, safe="")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            body = bencode.decode(reply.read(), sorted_keys=False)
    except (OSError, urllib.error.URLError, ValueError):
        return None
    entry = body.get(b"files", {}).get(info_hash)
    if not isinstance(entry, dict):
        return (0, 0, 0)
    return (entry.get(b"complete", 0), entry.get(b"incomplete", 0), entry.get(b"downloaded", 0))
