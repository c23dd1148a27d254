"""The peers of one torrent: who we know of, whom we are connected to, whom to dial next.

Shared by a torrent (torrent.py) and by a magnet link's stand-in before the metadata arrives
(magnet_torrent.py): the same addresses, backoff, bans and connection limits apply to both, and
the stand-in hands its records to the torrent it becomes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from .peer import CLIENT_VERSION, MAX_INCOMING_REQUESTS

if TYPE_CHECKING:  # pragma: no cover
    from .peer import PeerConnection

log = logging.getLogger(__name__)

# Connections per torrent. libtorrent's default connections_limit is 200 for the whole session;
# a lab swarm is small, and 80 keeps per-tick work trivial while leaving room for every peer of a
# class-sized swarm.
MAX_PEERS_PER_TORRENT = 80
# New outgoing connections started per second per torrent, so a tracker answer with 200 peers
# does not open 200 sockets in one burst (libtorrent's connection_speed is 30 per second).
CONNECTS_PER_TICK = 30
# Reconnect backoff for a peer that failed or dropped: 5 s, doubling, capped at one minute
# (libtorrent's min_reconnect_time is 60 s): a lab peer that restarts is found again quickly.
RECONNECT_BASE = 5.0
RECONNECT_MAX = 60.0

Address = Tuple[str, int]


@dataclass
class PeerRecord:
    """What we know about one address, connected or not."""
    address: Address
    source: str
    failures: int = 0
    next_try: float = 0.0
    connected: bool = False
    banned: bool = False
    seed: bool = False          # closed as "both sides are seeds": no use while we seed
    hash_failures: int = 0


class Swarm:
    """Peer bookkeeping for one info hash; subclasses say when dialling makes sense."""

    def __init__(self, session: Any, info_hash: bytes, name: str) -> None:
        self.session = session
        self.info_hash = info_hash
        self.name = name
        self.peers: Set["PeerConnection"] = set()
        self.known: Dict[Address, PeerRecord] = {}
        self.banned_ids: Set[bytes] = set()
        self.connecting = 0

    def wants_connections(self) -> bool:
        """Whether to dial known peers now (the torrent's state decides)."""
        raise NotImplementedError

    def skips(self, record: PeerRecord) -> bool:
        """A subclass's reason not to dial this record now."""
        return False

    def ext_handshake_fields(self, conn: "PeerConnection") -> Dict[str, Any]:
        """What our BEP 10 handshake says besides the extensions: client, queue, listen port."""
        fields: Dict[str, Any] = {"v": CLIENT_VERSION, "reqq": MAX_INCOMING_REQUESTS}
        if self.session.listen_port:
            fields["p"] = self.session.listen_port
        return fields

    def add_peers(self, addresses: List[Address], source: str) -> None:
        for address in addresses:
            if address not in self.known and not self.session.is_self(address):
                self.known[address] = PeerRecord(address, source)
        self.connect_more(time.monotonic())  # now, not at the next tick

    def admit(self, conn: "PeerConnection") -> bool:
        """Checks every connection passes after its handshake: bans, limits, duplicates."""
        record = self.known.get(conn.address) if conn.address else None
        if (record is not None and record.banned) or conn.peer_id in self.banned_ids:
            conn.close("banned peer")
            return False
        if len(self.peers) >= MAX_PEERS_PER_TORRENT:
            conn.close("too many peers")
            return False
        for other in self.peers:
            if other.peer_id == conn.peer_id:
                # Two nodes that dial each other at once end up with two connections, and each
                # sees the other one second. Both ends must drop the same one, so the choice
                # does not depend on order: keep the connection opened by the node with the
                # larger peer id (libtorrent settles it by peer id too).
                keep_ours = self.session.peer_id > conn.peer_id
                if other.incoming != conn.incoming and (not conn.incoming) == keep_ours:
                    other.close("already connected to this peer (keeping the other connection)")
                    break
                conn.close("already connected to this peer")
                return False
        if record is None and conn.address is not None and not conn.incoming:
            record = self.known.setdefault(conn.address, PeerRecord(conn.address, "direct"))
        if record is not None:
            record.connected = True
            record.failures = 0
        self.peers.add(conn)
        return True

    def release(self, conn: "PeerConnection") -> bool:
        """A connection closed; False when it never got past the handshake (nothing else to
        undo). Its address is dialled again after a backoff."""
        if conn not in self.peers:
            # An outgoing attempt that ended before the handshake: back off, unless it is being
            # dialled again in plain BitTorrent right now (see PeerConnection._tls_failed).
            if not conn.incoming and conn.address is not None and not conn.retry_plain:
                self.connect_failed(conn.address)
            return False
        self.peers.discard(conn)
        if conn.address is not None and conn.address in self.known:
            self.connect_failed(conn.address)
        return True

    def connect_failed(self, address: Address) -> None:
        record = self.known.get(address)
        if record is not None:
            record.connected = False
            record.failures += 1
            record.next_try = time.monotonic() + min(RECONNECT_MAX,
                                                     RECONNECT_BASE * 2 ** (record.failures - 1))

    def connect_more(self, now: float) -> None:
        if not self.wants_connections():
            return
        room = min(MAX_PEERS_PER_TORRENT - len(self.peers) - self.connecting, CONNECTS_PER_TICK)
        for record in self.known.values():
            if room <= 0:
                break
            if record.connected or record.banned or record.next_try > now or self.skips(record):
                continue
            record.connected = True  # reserved while the attempt runs
            room -= 1
            self.session.start_connect(self, record.address)

    def ban(self, address: Address, peer_id: Optional[bytes], reason: str) -> None:
        """Never talk to this peer again in this session (its address and its peer id: its
        connections back to us come from other ports)."""
        record = self.known.setdefault(address, PeerRecord(address, "incoming"))
        record.banned = True
        if peer_id:
            self.banned_ids.add(peer_id)
        for conn in list(self.peers):
            if conn.address == address or (peer_id and conn.peer_id == peer_id):
                conn.close(reason)
