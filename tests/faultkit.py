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
import os
import re
import signal
import socket
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from sta import maketorrent, metainfo, wire
from sta.session import Session
from sta.transfer import add_torrent
from tests import enginekit
# Shared with the engine tests: the deadlines, paths, run_sta and the bitfield of a full seed.
from tests.enginekit import (POLL, RECV_SIZE, ROOT, SOCKET_POLL, STA, STOP_TIMEOUT,  # noqa: F401
                             WAIT, full_bitfield, run_sta)
from tests.interop import clients

# Lines of a process's output shown when a test fails.
TAIL_LINES = 40


class FaultTestError(AssertionError):
    """Something in a fault test did not happen in time."""


def temp_dir(test: Any, prefix: str = "sta-faults-") -> str:
    return enginekit.temp_dir(test, prefix)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               poll: float = POLL) -> Any:
    """Poll ``predicate`` until it returns something true; fail with ``what`` on the deadline."""
    return enginekit.poll_until(predicate, timeout, what, poll, FaultTestError,
                                "timed out after %.0f s waiting for %s")


# ------------------------------------------------------------------------------------ processes

class StaProc(enginekit.StaProcess):
    """`python sta.py ARGS` with stdout and stderr merged, read line by line by a thread
    (enginekit.StaProcess, failing with FaultTestError, environment passed on whole), plus
    what the fault tests do to a process: kill it, interrupt it."""

    error = FaultTestError
    tail_lines = TAIL_LINES
    drop_env: Tuple[str, ...] = ()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def seeding_port(self, timeout: float = WAIT) -> int:
        """The listen port of a `seed` process, once its data is checked: a peer that connects
        while it still checks is refused (the torrent is not in the session yet)."""
        port = self.listen_port(timeout)
        self.wait_for(r"^Seeding ", timeout)
        return port

    def kill(self) -> None:
        """SIGKILL (a crash: no cleanup of any kind) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)
        self._join(STOP_TIMEOUT)

    def interrupt(self) -> None:
        """Ctrl-C."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)


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
        # The engine's log lines, kept for failure messages, off the test's console.
        self.log = enginekit.LogCapture(test)
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
        # A liar is banned with its whole host: it gets a loopback address of its own.
        self.host = enginekit.liar_host(test) if mode == "liar" else "127.0.0.1"
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
        self._server.bind((self.host, 0))
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
        return "%s:%d" % (self.host, self.port)

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
