"""The peers of one torrent: who we know of, whom we are connected to, whom to dial next.

Shared by a torrent (torrent.py) and by a magnet link's stand-in before the metadata arrives
(magnet_torrent.py): the same addresses, backoff, bans and connection limits apply to both, and
the stand-in hands its swarm to the torrent it becomes.

Every peer source (trackers, --peer, a magnet's x.pe, and later PEX, LSD, DHT) hands addresses
in through ``add_peers``; the swarm bounds, deduplicates and schedules them. It dials through a
callback and reads the time from its caller, so it is tested without sockets or clocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

log = logging.getLogger(__name__)

# Connections a torrent dials out to itself. libtorrent's default connections_limit is 200 for
# the whole session and Transmission's peer-limit-per-torrent is 50; 80 is room for every peer of
# a class-sized swarm while a downloader's own dialling stays modest.
MAX_DIALLED_PEERS = 80
# Connections a torrent keeps in all, incoming ones included: a lab seed takes every peer of a
# 1,000-peer swarm that comes to it (libtorrent's per-torrent max_connections is unlimited by
# default, bounded only by the session's connections_limit; the node's bound here is
# connlimits.MAX_CONNECTIONS).
MAX_PEERS_PER_TORRENT = 1100
# New outgoing connections started per second per torrent, so a tracker answer with 200 peers
# does not open 200 sockets in one burst (libtorrent's connection_speed is 30 per second).
CONNECTS_PER_TICK = 30
# Reconnect backoff for a peer that failed or dropped: 5 s, doubling, capped at one minute
# (libtorrent's min_reconnect_time is 60 s): a lab peer that restarts is found again quickly.
RECONNECT_BASE = 5.0
RECONNECT_MAX = 60.0
# Addresses remembered per torrent, from every source together (trackers, --peer, magnets, and
# peer exchange): libtorrent's max_peerlist_size is 3,000; a lab swarm is far smaller, and the
# bound keeps a lying tracker or peer from growing the list without end.
MAX_KNOWN_PEERS = 2000

Address = Tuple[str, int]


@dataclass
class PeerRecord:
    """What we know about one address, connected or not."""
    address: Address
    source: str
    failures: int = 0
    next_try: float = 0.0
    connected: bool = False     # connected, or being dialled
    banned: bool = False
    seed: bool = False          # closed as "both sides are seeds": no use while we seed


class Swarm:
    """Peer bookkeeping for one info hash."""

    def __init__(self, name: str, our_peer_id: bytes, dial: Callable[[Address], None],
                 is_self: Callable[[Address], bool] = lambda address: False) -> None:
        self.name = name
        self.our_peer_id = our_peer_id
        self._dial = dial
        self._is_self = is_self
        self.peers: Set[Any] = set()
        self.known: Dict[Address, PeerRecord] = {}
        self.banned_ids: Set[bytes] = set()
        # Bans hold for a host, not a (host, port) pair: a banned peer that reconnects, or
        # listens on another port, is still banned (libtorrent bans by IP too).
        self.banned_hosts: Set[str] = set()
        self.dialling: Set[Address] = set()

    # -- addresses in ---------------------------------------------------------------------------

    def add_peers(self, addresses: Iterable[Address], source: str) -> int:
        """Remember new addresses, up to MAX_KNOWN_PEERS; returns how many were new."""
        added = 0
        known = self.known
        for address in addresses:
            if len(known) >= MAX_KNOWN_PEERS:
                break
            if (address not in known and address[0] not in self.banned_hosts
                    and not self._is_self(address)):
                known[address] = PeerRecord(address, source)
                added += 1
        return added

    def record(self, address: Address, source: str = "incoming") -> PeerRecord:
        record = self.known.get(address)
        if record is None:
            record = self.known[address] = PeerRecord(address, source)
        return record

    def forget_self(self, address: Address) -> None:
        """The address turned out to be our own listener: never dial it again."""
        record = self.known.get(address)
        if record is not None:
            record.banned = True

    def take_over(self, other: "Swarm") -> None:
        """Adopt another swarm's addresses and bans (a magnet's stand-in becoming a torrent)."""
        self.known.update(other.known)
        self.banned_ids |= other.banned_ids
        self.banned_hosts |= other.banned_hosts
        self.dialling |= other.dialling

    # -- dialling --------------------------------------------------------------------------------

    def connect_more(self, now: float, skip: Callable[[PeerRecord], bool] = lambda r: False
                     ) -> None:
        """Dial known peers that are due, within the limits."""
        room = min(MAX_DIALLED_PEERS - len(self.peers) - len(self.dialling),
                   CONNECTS_PER_TICK)
        for record in self.known.values():
            if room <= 0:
                break
            if record.connected or record.banned or record.next_try > now or skip(record):
                continue
            record.connected = True  # reserved while the attempt runs
            self.dialling.add(record.address)
            room -= 1
            self._dial(record.address)

    def dial_failed(self, address: Address, now: float) -> None:
        """An outgoing attempt ended before the handshake: back off."""
        self.dialling.discard(address)
        self._back_off(address, now)

    def _back_off(self, address: Address, now: float) -> None:
        record = self.known.get(address)
        if record is not None:
            record.connected = False
            record.failures += 1
            record.next_try = now + min(RECONNECT_MAX,
                                        RECONNECT_BASE * 2 ** (record.failures - 1))

    def retry_all_now(self) -> None:
        """Forget backoffs (a paused torrent resumes)."""
        for record in self.known.values():
            record.failures = 0
            record.next_try = 0.0

    def anyone_to_dial(self, now: float) -> bool:
        return any(r.next_try <= now and not r.banned and not r.connected
                   for r in self.known.values())

    # -- connections -------------------------------------------------------------------------------

    def admit(self, conn: Any) -> Optional[str]:
        """Checks every connection passes after its handshake: bans, limits, duplicates.
        Returns the reason to refuse it, or None once it is counted in."""
        if not conn.incoming:
            self.dialling.discard(conn.address)
        record = self.known.get(conn.address)
        if ((record is not None and record.banned) or conn.peer_id in self.banned_ids
                or conn.address[0] in self.banned_hosts):
            return "banned peer"
        if len(self.peers) >= MAX_PEERS_PER_TORRENT:
            return "too many peers"
        for other in self.peers:
            if other.peer_id == conn.peer_id:
                # Two nodes that dial each other at once end up with two connections, and each
                # sees the other one second. Both ends must drop the same one, so the choice
                # does not depend on order: keep the connection opened by the node with the
                # larger peer id (libtorrent settles it by peer id too).
                keep_ours = self.our_peer_id > conn.peer_id
                if other.incoming != conn.incoming and (not conn.incoming) == keep_ours:
                    other.close("already connected to this peer (keeping the other connection)")
                    break
                return "already connected to this peer"
        if record is None and not conn.incoming:
            record = self.record(conn.address, "direct")
        if record is not None:
            record.connected = True
            record.failures = 0
        self.peers.add(conn)
        return None

    def release(self, conn: Any, now: float) -> None:
        """An admitted connection closed; its address is dialled again after a backoff."""
        self.peers.discard(conn)
        if conn.address in self.known:
            self._back_off(conn.address, now)

    def mark_seed(self, conn: Any) -> None:
        record = self.known.get(conn.address)
        if record is not None:
            record.seed = True

    def ban(self, address: Address, peer_id: Optional[bytes], reason: str) -> None:
        """Never talk to this peer again in this session: its host, whatever the port, and its
        peer id."""
        host = address[0]
        self.banned_hosts.add(host)
        self.record(address).banned = True
        for other, record in self.known.items():
            if other[0] == host:
                record.banned = True
        if peer_id:
            self.banned_ids.add(peer_id)
        for conn in list(self.peers):
            if conn.address[0] == host or (peer_id and conn.peer_id == peer_id):
                conn.close(reason)

    def hand_off(self) -> List[Any]:
        """Give up every admitted connection (to a torrent that takes them over)."""
        connections = list(self.peers)
        self.peers.clear()
        return connections

    def close_all(self, reason: str) -> None:
        for conn in list(self.peers):
            conn.close(reason)

    def addresses(self) -> List[Address]:
        return list(self.known)
