"""The session: one event loop running many torrents on one listen port.

A session owns the listen socket, every peer connection, the thread pool that hashes pieces, and
a one-second tick that drives timeouts, choking, reconnects and resume saves for each torrent.
Front ends (the commands in cli.py and the interactive shell) call its methods and read its status
snapshots; nothing here prints.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import string
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Set, Tuple

from . import __version__, peerlink, tls
from .peer import EXTENSION_IDS, PeerConnection
from .torrent import Torrent

log = logging.getLogger(__name__)

# Outgoing TCP connects give up after this long (libtorrent's peer_connect_timeout is 15 s; a
# lab subnet answers in milliseconds or not at all).
CONNECT_TIMEOUT = 10.0
# Connections for the whole session, in and out: the 1,000 peers a large lab swarm may bring,
# with headroom, while staying under the 1,024 descriptors a default Unix limit allows.
MAX_CONNECTIONS = 1000
TICK_INTERVAL = 1.0
# When the asked-for port is taken, try the next few (libtorrent's max_retry_port_bind is 10).
PORT_RETRIES = 10


def node_state_dir() -> str:
    """Where a node keeps what outlives one command (its TLS key): $STA_HOME, else ~/.sta."""
    return os.environ.get("STA_HOME") or os.path.join(os.path.expanduser("~"), ".sta")


class SessionError(Exception):
    """The session could not start or do what was asked."""


def make_peer_id() -> bytes:
    """Azureus-style peer id: "-ST" + four version digits + "-" + 12 random characters."""
    digits = "".join(__version__.split("."))[:4].ljust(4, "0")
    alphabet = string.ascii_letters + string.digits
    tail = "".join(random.SystemRandom().choice(alphabet) for _ in range(12))
    return f"-ST{digits}-{tail}".encode("ascii")


class Session:
    def __init__(self, *, port: int = 6881, host: str = "0.0.0.0",
                 peer_id: Optional[bytes] = None, tracker_ssl_context: Any = None,
                 encryption: str = tls.DEFAULT_ENCRYPTION,
                 state_dir: Optional[str] = None) -> None:
        self.tracker_ssl_context = tracker_ssl_context
        self.encryption = tls.parse_policy(encryption)
        self.state_dir = state_dir or node_state_dir()
        self._peer_tls: Optional[peerlink.PeerTls] = None
        self._modes = tls.PeerModeMemory()
        self._torrent_ids: Dict[bytes, bytes] = {}
        self.requested_port = port
        self.host = host
        self.peer_id = peer_id or make_peer_id()
        self.key = random.SystemRandom().getrandbits(32)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.listen_port = 0
        self.torrents: Dict[bytes, Torrent] = {}
        self.connections: Set[PeerConnection] = set()
        self.hash_pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                            thread_name_prefix="sta-hash")
        self.started_at = time.monotonic()
        self._server: Optional[asyncio.AbstractServer] = None
        self._tick_task: Optional["asyncio.Task[None]"] = None
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self._self_addresses: Set[Tuple[str, int]] = set()
        self._closed = False
        self._removed_downloaded = 0   # totals of torrents removed from the session
        self._removed_uploaded = 0

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        ports = [self.requested_port] if self.requested_port == 0 else \
            [p for p in range(self.requested_port, self.requested_port + PORT_RETRIES) if p < 65536]
        error: Optional[OSError] = None
        for port in ports:
            try:
                self._server = await self.loop.create_server(
                    lambda: PeerConnection(self), self.host, port, backlog=128)
                break
            except OSError as exc:
                error = exc
        if self._server is None:
            raise SessionError(f"cannot listen on port {self.requested_port}: "
                               f"{error.strerror if error else 'no port'}; "
                               "pass --port 0 to pick a free one")
        self.listen_port = self._server.sockets[0].getsockname()[1]
        if self.requested_port and self.listen_port != self.requested_port:
            log.warning("port %d is taken; listening on %d", self.requested_port, self.listen_port)
        log.info("listening on %s:%d", self.host, self.listen_port)
        self._tick_task = self.loop.create_task(self._tick_loop())

    async def close(self) -> None:
        """Stop every torrent, tell the trackers, close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._tick_task is not None:
            self._tick_task.cancel()
        stops = [t.shutdown() for t in self.torrents.values()]
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        for conn in list(self.connections):
            conn.close("session closing")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        self.hash_pool.shutdown(wait=True)

    # -- torrents ----------------------------------------------------------------------------

    async def add(self, torrent: Torrent, recheck: bool = False) -> Torrent:
        if torrent.info_hash in self.torrents:
            raise SessionError(f"{torrent.name} is already in this session")
        self.torrents[torrent.info_hash] = torrent
        self._torrent_ids[peerlink.torrent_id(torrent.info_hash)] = torrent.info_hash
        try:
            await torrent.start(recheck=recheck)
        except Exception:
            del self.torrents[torrent.info_hash]
            del self._torrent_ids[peerlink.torrent_id(torrent.info_hash)]
            raise
        torrent.start_announcing()
        return torrent

    async def remove(self, torrent: Torrent, delete_files: bool = False) -> List[str]:
        """Stop a torrent and forget it (its resume state too); optionally delete its files."""
        self.torrents.pop(torrent.info_hash, None)
        self._torrent_ids.pop(peerlink.torrent_id(torrent.info_hash), None)
        self._removed_downloaded += torrent.downloaded
        self._removed_uploaded += torrent.uploaded
        await torrent.shutdown()
        torrent.forget_resume_state()
        if delete_files:
            return torrent.delete_files()
        return []

    def replace(self, old: Any, new: Torrent) -> None:
        """A magnet's stand-in hands over to the real torrent once the metadata is in."""
        if self.torrents.get(old.info_hash) is old:
            self.torrents[new.info_hash] = new

    def torrent_for(self, info_hash: bytes) -> Optional[Torrent]:
        return self.torrents.get(info_hash)

    # -- connections -------------------------------------------------------------------------

    def connection_opened(self, conn: PeerConnection) -> None:
        if len(self.connections) >= MAX_CONNECTIONS:
            conn.close("session connection limit reached")
            return
        self.connections.add(conn)

    def connection_closed(self, conn: PeerConnection) -> None:
        self.connections.discard(conn)

    def start_connect(self, torrent: Torrent, address: Tuple[str, int],
                      mode: Optional[str] = None) -> None:
        if len(self.connections) >= MAX_CONNECTIONS or self._closed:
            torrent.connect_failed(address)
            return
        if mode is None:
            mode = self._modes.first_attempt(self.encryption, address, time.monotonic())
        if mode is None:
            log.info("%s: not connecting to %s:%d: it speaks only plain BitTorrent and "
                     "encryption is required", torrent.name, *address)
            torrent.connect_failed(address)
            return
        torrent.connecting += 1
        self.spawn(self._connect(torrent, address, mode))

    async def _connect(self, torrent: Torrent, address: Tuple[str, int], mode: str) -> None:
        host, port = address
        try:
            if mode == "tls":
                self.peer_tls  # make or load the node's key before the clock starts
            await asyncio.wait_for(self.loop.create_connection(
                lambda: PeerConnection(self, torrent, address, mode), host, port),
                CONNECT_TIMEOUT)
            log.debug("%s: connected to %s:%d", torrent.name, host, port)
        except (OSError, asyncio.TimeoutError) as exc:
            log.info("%s: cannot connect to %s:%d: %s", torrent.name, host, port,
                     exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out")
            torrent.connect_failed(address)
        finally:
            torrent.connecting -= 1

    def spawn(self, coro: Any) -> "asyncio.Task[Any]":
        """Run a background task that the session cancels on close."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %r", task.exception(),
                      exc_info=task.exception())

    # -- encryption --------------------------------------------------------------------------

    @property
    def peer_tls(self) -> peerlink.PeerTls:
        """The node's TLS key and contexts, made on first use in the state folder."""
        if self._peer_tls is None:
            self._peer_tls = peerlink.PeerTls.for_node(self.state_dir)
        return self._peer_tls

    def info_hash_for_id(self, torrent_id: bytes) -> Optional[bytes]:
        """An encrypted peer names the torrent only by peerlink.torrent_id(info_hash)."""
        return self._torrent_ids.get(torrent_id)

    def tls_worked(self, address: Optional[Tuple[str, int]]) -> None:
        if address is not None:
            self._modes.record(address, "tls", time.monotonic())

    def tls_failed(self, torrent: Any, address: Tuple[str, int], error: Exception) -> bool:
        """An outgoing TLS attempt failed; True when it is being retried in plain BitTorrent."""
        if not self._modes.tls_failed(self.encryption, address, error, time.monotonic()):
            return False
        self.loop.call_soon(self.start_connect, torrent, address, "plain")
        return True

    def mark_self(self, address: Optional[Tuple[str, int]]) -> None:
        if address is not None:
            self._self_addresses.add(address)
            for torrent in self.torrents.values():
                record = torrent.known.get(address)
                if record is not None:
                    record.banned = True

    def is_self(self, address: Tuple[str, int]) -> bool:
        return address in self._self_addresses

    def extension_ids(self) -> Dict[str, int]:
        return dict(EXTENSION_IDS)

    # -- periodic work -----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            now = time.monotonic()
            elapsed = max(now - last, 1e-3)
            last = now
            for torrent in list(self.torrents.values()):
                try:
                    torrent.tick(now, elapsed)
                except Exception:  # one torrent's bug must not stop the others
                    log.exception("%s: periodic work failed", torrent.name)

    # -- status ------------------------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        torrents = list(self.torrents.values())
        return {
            "listen_port": self.listen_port,
            "peer_id": self.peer_id.decode("latin-1"),
            "uptime": time.monotonic() - self.started_at,
            "torrents": len(torrents),
            "peers": len(self.connections),
            "downloaded": self._removed_downloaded + sum(t.downloaded for t in torrents),
            "uploaded": self._removed_uploaded + sum(t.uploaded for t in torrents),
            "down_rate": sum(p.down_rate for p in self.connections),
            "up_rate": sum(p.up_rate for p in self.connections),
        }

    def statuses(self) -> List[Dict[str, Any]]:
        return [t.status() for t in self.torrents.values()]
