"""The session: one event loop running many torrents on one listen port.

A session owns the listen socket, every peer connection, the thread pool that hashes pieces, and
a one-second tick that drives each connection's timers and each torrent's periodic work. It is
the ``torrenthost.TorrentHost`` of its torrents and the ``peer.ConnectionHost`` of its
connections, and it dials: it picks TLS, MSE/PE or plain BitTorrent for each address (tls.py's
policy), opens the transport (transport.py), retries a peer that does not speak the first way
in the next, and reports a failed attempt back to the torrent that asked.
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
from typing import Any, Awaitable, Dict, List, Optional, Protocol, Sequence, Set, Tuple

from . import __version__, mse, peerlink, tls
from .blockcache import SHARED_POOL, DiskBacklog
from .connlimits import ConnectionLimits
from .dhtdiscovery import DhtDiscovery, start_dht
from .lsd_service import LsdService
from .magnet_torrent import METADATA
from .peer import CLIENT_CODE, PeerConnection, PeerOwner
from .resume import default_home
from .safepath import overlapping_paths
from .torrent import DOWNLOADING, SEEDING
from .transport import UNDECIDED, Link, TcpStream
from .utp import (UTP_CONNECT_TIMEOUT, TransportMemory, UtpEndpoint, UtpTransportError,
                  stream_counts)

log = logging.getLogger(__name__)

# Outgoing TCP connects give up after this long (libtorrent's peer_connect_timeout is 15 s; a
# lab subnet answers in milliseconds or not at all).
CONNECT_TIMEOUT = 10.0
TICK_INTERVAL = 1.0
# When the asked-for port is taken, try the next few (libtorrent's max_retry_port_bind is 10).
PORT_RETRIES = 10


def node_state_dir() -> str:
    """Where a node keeps what outlives one command (its keys, seeds' resume states)."""
    return default_home()


class SessionError(Exception):
    """The session could not start or do what was asked."""


class ManagedTorrent(PeerOwner, Protocol):
    """What the session needs of a torrent, or of a magnet link's stand-in for one."""
    state: str
    done: Any

    async def start(self, recheck: bool = False) -> None: ...

    def start_announcing(self) -> None: ...

    async def pause(self) -> None: ...

    @property
    def private(self) -> bool: ...

    def tick(self, now: float) -> None: ...

    async def shutdown(self) -> None: ...

    def dial_failed(self, address: Tuple[str, int]) -> None: ...

    def forget_self(self, address: Tuple[str, int]) -> None: ...

    def status(self) -> Dict[str, Any]: ...

    def forget_resume_state(self) -> None: ...

    def delete_files(self) -> List[str]: ...

    def file_paths(self) -> List[str]: ...


def make_peer_id() -> bytes:
    """Azureus-style peer id: CLIENT_CODE + four version digits + "-" + 12 random characters."""
    digits = "".join(__version__.split("."))[:4].ljust(4, "0")
    alphabet = string.ascii_letters + string.digits
    tail = "".join(random.SystemRandom().choice(alphabet) for _ in range(12))
    return f"-{CLIENT_CODE}{digits}-{tail}".encode("ascii")


class Session:
    def __init__(self, *, port: int = 6881, host: str = "0.0.0.0",
                 peer_id: Optional[bytes] = None, tracker_ssl_context: Any = None,
                 encryption: str = tls.DEFAULT_ENCRYPTION,
                 state_dir: Optional[str] = None,
                 dht_bootstrap: Optional[Sequence[Tuple[str, int]]] = None,
                 lsd: bool = False, utp: bool = True, tcp: bool = True) -> None:
        """``dht_bootstrap``: run a DHT node on the peer port's UDP number, joining through
        these addresses (possibly none: then only through the nodes saved last time); None:
        no DHT. ``lsd``: find peers on the local network by multicast (BEP 14). ``utp``:
        accept and dial uTP (BEP 29) on the peer port's UDP number, which the DHT then
        shares. ``tcp=False``: no TCP listener and no TCP dialling (uTP only, for tests and
        benchmarks)."""
        self.tracker_ssl_context = tracker_ssl_context
        self._dht_bootstrap = None if dht_bootstrap is None else list(dht_bootstrap)
        self.dht: Optional[DhtDiscovery] = None
        self.encryption = tls.parse_policy(encryption)
        self.state_dir = state_dir or node_state_dir()
        self._peer_tls: Optional[peerlink.PeerTls] = None
        self._modes = tls.PeerModeMemory()
        self._torrent_ids: Dict[bytes, bytes] = {}   # TLS torrent id -> info hash
        self._skey_hashes: Dict[bytes, bytes] = {}   # MSE/PE SHA1('req2' info hash) -> info hash
        self.requested_port = port
        self.host = host
        self.peer_id = peer_id or make_peer_id()
        self.key = random.SystemRandom().getrandbits(32)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.listen_port = 0
        self.torrents: Dict[bytes, Any] = {}
        self.connections: Set[PeerConnection] = set()
        self.limits = ConnectionLimits()
        self.hash_pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                            thread_name_prefix="sta-hash")
        self.disk_backlog = DiskBacklog()
        self.started_at = time.monotonic()
        self._server: Optional[asyncio.AbstractServer] = None
        self._tick_task: Optional["asyncio.Task[None]"] = None
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self._self_addresses: Set[Tuple[str, int]] = set()
        self._dial_modes: Dict[PeerConnection, str] = {}
        self._closed = False
        self._removed_downloaded = 0   # totals of torrents removed from the session
        self._removed_uploaded = 0
        self.lsd_enabled = lsd
        self.lsd: Optional[LsdService] = None
        self.utp_enabled = utp
        self.tcp_enabled = tcp or not utp
        self.utp: Optional[UtpEndpoint] = None
        self._transports = TransportMemory(tcp=self.tcp_enabled, utp=utp)
        self._dial_transports: Dict[PeerConnection, str] = {}

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        ports = [self.requested_port] if self.requested_port == 0 else \
            [p for p in range(self.requested_port, self.requested_port + PORT_RETRIES) if p < 65536]
        error: Optional[OSError] = None
        for port in ports:
            try:
                self.listen_port = await self._listen(port)
                break
            except OSError as exc:
                error = exc
        if not self.listen_port:
            raise SessionError(f"cannot listen on port {self.requested_port}: "
                               f"{error.strerror if error else 'no port'}; "
                               "pass --port 0 to pick a free one")
        if self.requested_port and self.listen_port != self.requested_port:
            log.warning("port %d is taken; listening on %d", self.requested_port, self.listen_port)
        log.info("listening on %s:%d", self.host, self.listen_port)
        await self._open_utp()
        if self._dht_bootstrap is not None:
            self.dht = await start_dht(self._dht_bootstrap, self.state_dir, self.host,
                                       self.listen_port, self.torrents.get, self.spawn,
                                       endpoint=self.utp)
        self._tick_task = self.loop.create_task(self._tick_loop())
        await self._start_lsd()

    async def _listen(self, port: int) -> int:
        """The TCP listener on ``port`` (uTP only: the UDP socket); returns the port."""
        if not self.tcp_enabled:
            self.utp = await UtpEndpoint.open(self.host, port, self._incoming_utp)
            return self.utp.port
        self._server = await self.loop.create_server(
            self._incoming_stream, self.host, port, backlog=128)
        return self._server.sockets[0].getsockname()[1]

    async def _open_utp(self) -> None:
        """uTP on the listen port's UDP number; a node that cannot have it runs on TCP."""
        if not self.utp_enabled or self.utp is not None:
            return
        try:
            self.utp = await UtpEndpoint.open(self.host, self.listen_port, self._incoming_utp)
        except OSError as exc:
            log.warning("no uTP: cannot use UDP port %d (%s)", self.listen_port,
                        exc.strerror or exc)
            self._transports.utp = False

    async def close(self) -> None:
        """Stop every torrent, tell the trackers, close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._tick_task is not None:
            self._tick_task.cancel()
        if self.lsd is not None:
            self.lsd.close()
        stops = [t.shutdown() for t in self.torrents.values()]
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        for conn in list(self.connections):
            conn.close("session closing")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.dht is not None:
            await self.dht.close()
        if self.utp is not None:
            self.utp.close()
        for task in list(self._tasks):
            task.cancel()
        self.hash_pool.shutdown(wait=True)

    # -- torrents ----------------------------------------------------------------------------

    async def add(self, torrent: Any, recheck: bool = False, paused: bool = False,
                  announce: bool = True) -> Any:
        """Check a torrent's data and start it; ``paused`` leaves it checked but idle, without
        a word to its trackers (as it was left when the node last stopped); ``announce=False``
        leaves the first announce to the caller (``torrent.start_announcing()``), so a tracker
        never hears of a peer that does not stay."""
        if torrent.info_hash in self.torrents:
            raise SessionError(f"{torrent.name} is already in this session")
        self._check_overlap(torrent)
        self.torrents[torrent.info_hash] = torrent
        self._index(torrent.info_hash)
        try:
            await torrent.start(recheck=recheck)
        except Exception:
            del self.torrents[torrent.info_hash]
            self._unindex(torrent.info_hash)
            raise
        if paused:
            await torrent.pause()
        elif announce:
            torrent.start_announcing()
        if self.dht is not None and not torrent.private:  # BEP 27: never on the DHT
            self.dht.add(torrent.info_hash, time.monotonic())
        if self.lsd is not None:
            self.lsd.add(torrent.info_hash)
        return torrent

    def _index(self, info_hash: bytes) -> None:
        """Let encrypted links find the torrent by the names they use for it."""
        self._torrent_ids[peerlink.torrent_id(info_hash)] = info_hash
        self._skey_hashes[mse.skey_hash(info_hash)] = info_hash

    def _unindex(self, info_hash: bytes) -> None:
        self._torrent_ids.pop(peerlink.torrent_id(info_hash), None)
        self._skey_hashes.pop(mse.skey_hash(info_hash), None)

    def _check_overlap(self, torrent: Any) -> None:
        """Two torrents must never write the same file (or one a file where the other needs
        a folder): the second is refused."""
        paths = torrent.file_paths()
        if not paths:
            return
        for other in self.torrents.values():
            clash = overlapping_paths(paths, other.file_paths())
            if clash:
                raise SessionError(f"{torrent.name} would use {clash[0]}, which {other.name} "
                                   "already uses; give it another output folder")

    async def remove(self, torrent: Any, delete_files: bool = False) -> List[str]:
        """Stop a torrent and forget it (its resume state too); optionally delete its files."""
        self.torrents.pop(torrent.info_hash, None)
        self._unindex(torrent.info_hash)
        if self.dht is not None:
            self.dht.remove(torrent.info_hash)
        if self.lsd is not None:
            self.lsd.remove(torrent.info_hash)
        self._removed_downloaded += torrent.downloaded
        self._removed_uploaded += torrent.uploaded
        await torrent.shutdown()
        if delete_files:
            return await self.loop.run_in_executor(None, torrent.delete_files)
        torrent.forget_resume_state()
        return []

    def replace(self, old: Any, new: Any) -> None:
        """A magnet's stand-in hands over to the real torrent once the metadata is in."""
        if self.torrents.get(old.info_hash) is old:
            self.torrents[new.info_hash] = new

    def torrent_for(self, info_hash: bytes) -> Optional[Any]:
        return self.torrents.get(info_hash)

    owner_for = torrent_for

    # -- connections -------------------------------------------------------------------------

    def _incoming_stream(self) -> TcpStream:
        return TcpStream(PeerConnection(self), choose=self._choose_incoming)

    def _incoming_utp(self, address: Tuple[str, int]) -> Optional[Tuple[Any, Any]]:
        """A uTP SYN from a new peer: its connection (the limits decide once it opens), or
        None while closing. The peer speaks uTP: we dial it that way too."""
        if self._closed:
            return None
        self.note_utp(address)
        return PeerConnection(self), self._choose_incoming

    def note_utp(self, address: Tuple[str, int]) -> None:
        """The peer at ``address`` speaks uTP (PEX's flag 0x04 says so): dial it that way."""
        self._transports.speaks_utp(address)

    def _choose_incoming(self, head: bytes) -> Any:
        """First bytes decide: plain BitTorrent, TLS to an STA node or MSE/PE (raises TlsError
        or MseError when the policy refuses the one the peer chose)."""
        mode = tls.incoming_mode(self.encryption, head)
        if mode is None:
            return UNDECIDED
        if mode == "tls":
            return self.peer_tls.accept(self._torrent_ids.get)
        if mode == "mse":
            return mse.MseLink.responder(self._skey_hashes.get, tls.mse_crypto(self.encryption))
        return None

    def connection_opened(self, conn: PeerConnection) -> bool:
        refusal, evict = self.limits.admit(conn, conn.address[0], conn.incoming)
        if refusal is not None:
            log.debug("refused %s:%d: %s", *conn.address, refusal)
            return False
        if evict is not None:
            evict.close("handshake slots are full; making room for a newer connection")
        self.connections.add(conn)
        return True

    def connection_joined(self, conn: PeerConnection) -> None:
        self.limits.joined(conn)
        mode = self._dial_modes.get(conn)
        if not conn.incoming and mode in tls.DIAL_ORDER:
            self._modes.record(conn.address, mode, time.monotonic())
        if not conn.incoming and conn in self._dial_transports:
            self._transports.succeeded(conn.address, self._dial_transports[conn])

    def transport_failed(self, conn: PeerConnection, error: BaseException) -> str:
        """An outgoing encrypted attempt failed: a peer that does not speak TLS is dialled
        again at once with MSE/PE, and with `prefer` one that does not speak that either in
        plain BitTorrent. A failure after a handshake began (a wrong proof) is never retried:
        that is how a man in the middle looks."""
        mode = self._dial_modes.get(conn)
        if conn.incoming or mode is None or self._closed:
            return ""
        following = self._modes.attempt_failed(self.encryption, conn.address, mode, error,
                                               time.monotonic())
        if following is None:
            return ""
        self._dial_modes[conn] = "retrying"
        self._dial_transports.pop(conn, None)
        self.loop.call_soon(self._dial, conn.owner, conn.address, following)
        return "; retrying with MSE/PE" if following == "mse" else \
            "; retrying in plain BitTorrent"

    def connection_closed(self, conn: PeerConnection) -> None:
        self.connections.discard(conn)
        self.limits.closed(conn)
        mode = self._dial_modes.pop(conn, None)
        transport = self._dial_transports.pop(conn, None)
        if conn.incoming or conn.joined or conn.owner is None or mode == "retrying":
            return
        if transport == "tcp" and mode is not None and conn.last_received == conn.connected_at:
            # The peer hung up without a word of the peer protocol (libtorrent does so with
            # incoming TCP off): it may take uTP.
            if self._switch_transport(conn.owner, conn.address, mode, "tcp"):
                return
        conn.owner.dial_failed(conn.address)  # an outgoing attempt ended before the handshake

    def dial(self, owner: Any, address: Tuple[str, int]) -> None:
        """Open an outgoing connection for ``owner`` (TorrentHost.dial)."""
        if not self.limits.may_dial(address[0]) or self._closed:
            owner.dial_failed(address)
            return
        mode = self._modes.first_attempt(self.encryption, address, time.monotonic())
        if mode is None:
            log.info("%s: not connecting to %s:%d: it speaks only plain BitTorrent and "
                     "encryption is required", owner.name, *address)
            owner.dial_failed(address)
            return
        self._dial(owner, address, mode)

    def _dial(self, owner: Any, address: Tuple[str, int], mode: str) -> None:
        if self._closed:
            owner.dial_failed(address)
            return
        self.spawn(self._connect(owner, address, mode))

    async def _connect(self, owner: Any, address: Tuple[str, int], mode: str) -> None:
        host, port = address
        conn = PeerConnection(self, owner, address)
        transport = self._transports.first(address)
        try:
            link = self._outgoing_link(mode, owner.info_hash)
            self._dial_modes[conn] = mode
            self._dial_transports[conn] = transport or "tcp"
            if transport == "utp" and self.utp is not None:
                await self.utp.connect(address, conn, link, UTP_CONNECT_TIMEOUT)
            else:
                await asyncio.wait_for(self.loop.create_connection(
                    lambda: TcpStream(conn, address, link=link), host, port,
                    local_addr=self._local_address(host)), CONNECT_TIMEOUT)
            log.debug("%s: connected to %s:%d over %s", owner.name, host, port, transport)
        except (OSError, asyncio.TimeoutError, tls.TlsError, mse.MseError,
                UtpTransportError) as exc:
            self._dial_modes.pop(conn, None)
            self._dial_transports.pop(conn, None)
            reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else
                      "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc))
            log.info("%s: cannot connect to %s:%d over %s: %s", owner.name, host, port,
                     transport, reason)
            if not self._switch_transport(owner, address, mode, transport or "tcp"):
                owner.dial_failed(address)

    def _switch_transport(self, owner: Any, address: Tuple[str, int], mode: str,
                          failed: str) -> bool:
        """A transport failed to reach the peer: dial it over the other one at once, if
        that is on and not tried yet (TransportMemory says which)."""
        following = self._transports.failed(address, failed)
        if following is None or self._closed:
            return False
        log.info("%s: trying %s:%d over %s", owner.name, *address, following)
        self.loop.call_soon(self._dial, owner, address, mode)
        return True

    def _outgoing_link(self, mode: str, info_hash: bytes) -> Optional[Link]:
        if mode == "tls":
            return self.peer_tls.connect(info_hash)
        if mode == "mse":
            return mse.MseLink.initiator(info_hash, tls.mse_crypto(self.encryption))
        return None

    def _local_address(self, remote_host: str) -> Optional[Tuple[str, int]]:
        """With --bind, outgoing connections leave from that address too (when the peer is of
        the same address family); otherwise the system picks."""
        if self.host in ("", "0.0.0.0", "::"):
            return None
        if (":" in self.host) != (":" in remote_host):
            return None
        return (self.host, 0)

    def spawn(self, coro: Awaitable[Any]) -> "asyncio.Task[Any]":
        """Run a background task that the session cancels on close."""
        task = self.loop.create_task(coro)  # type: ignore[arg-type]
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

    def found_self(self, address: Tuple[str, int]) -> None:
        self._self_addresses.add(address)
        for torrent in self.torrents.values():
            torrent.forget_self(address)

    def is_self(self, address: Tuple[str, int]) -> bool:
        return address in self._self_addresses

    # -- local service discovery (BEP 14) ----------------------------------------------------

    async def _start_lsd(self) -> None:
        """One LsdService for every torrent of the node; a host without multicast runs on
        without it."""
        if self.lsd_enabled:
            self.lsd = LsdService(self._lsd_found, self._lsd_wants, bind=self.host)
            if not await self.lsd.start(self.listen_port):
                self.lsd = None

    def _lsd_wants(self, info_hash: bytes) -> bool:
        """Announce, and take local peers for, a torrent that is downloading or seeding (or a
        magnet link fetching its metadata), never a private one (BEP 27: peers from its
        trackers only)."""
        torrent = self.torrents.get(info_hash)
        if torrent is None or torrent.state not in (DOWNLOADING, SEEDING, METADATA):
            return False
        info = getattr(torrent, "info", None)   # a magnet link's stand-in has none yet
        return not (info is not None and info.private)

    def _lsd_found(self, info_hash: bytes, address: Tuple[str, int]) -> None:
        torrent = self.torrents.get(info_hash)
        if torrent is not None:
            torrent.add_peers([address], "lsd")

    # -- periodic work -----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            now = time.monotonic()
            elapsed = max(now - last, 1e-3)
            last = now
            for conn in list(self.connections):
                if not conn.closed:
                    conn.tick(now, elapsed)
            for torrent in list(self.torrents.values()):
                try:
                    torrent.tick(now)
                except Exception:  # one torrent's bug must not stop the others
                    log.exception("%s: periodic work failed", torrent.name)
            if self.dht is not None:
                self.dht.tick(now)
            SHARED_POOL.trim()  # piece buffers no download needed for a second

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
            **stream_counts([p.transport for p in self.connections]),
            **(self.dht.status() if self.dht is not None else {}),
        }
