"""The tracker's picture of one torrent: its live peers, split into seeders and leechers.

A ``SwarmEntry`` is a dictionary of peers plus two arrays (seeders and leechers) that give an
O(1) add/remove and an O(numwant) random sample; each ``TrackedPeer`` carries its compact
(BEP 23 / BEP 7) address ready to join into an answer. Pure data and sampling: no lock, no
clock, no database (``tracker_db.TrackerStore`` owns those).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Dict, List, Optional

__all__ = ["TrackedPeer", "SwarmEntry", "compact_address", "spread", "swarm_stats"]


def compact_address(ip: str, port: int) -> bytes:
    """The BEP 23 (4+2 bytes) or BEP 7 (16+2 bytes) form of an address."""
    return ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")


class TrackedPeer:
    """One peer in one swarm (mutable: updated in place on every announce).

    ``source`` is the address group the peer announces from (``tracker_limits.address_group``
    of the connection's address, not of an ``ip=`` parameter): what a key-less peer must keep
    announcing from, and what the per-address peer count is kept under.
    """

    __slots__ = ("peer_id", "ip", "port", "uploaded", "downloaded", "left", "last_seen", "key",
                 "compact", "is_v6", "slot", "source")

    def __init__(self, peer_id: bytes, ip: str, port: int, uploaded: int, downloaded: int,
                 left: int, last_seen: float, key: Optional[bytes], source: str) -> None:
        self.peer_id = peer_id
        self.uploaded = uploaded
        self.downloaded = downloaded
        self.left = left
        self.last_seen = last_seen
        self.key = key
        self.source = source
        self.slot = -1
        self.ip = ""
        self.port = 0
        self.compact = b""
        self.is_v6 = False
        self.move(ip, port)

    def move(self, ip: str, port: int) -> None:
        if ip != self.ip or port != self.port:
            self.ip = ip
            self.port = port
            self.compact = compact_address(ip, port)
            self.is_v6 = len(self.compact) == 18


class SwarmEntry:
    """The peers of one torrent, its download count and what peers that left had moved.

    ``gone_uploaded`` and ``gone_downloaded`` add up the last reported counters of peers that
    stopped or timed out, so a swarm's totals do not drop to zero when its peers leave.
    """

    __slots__ = ("info_hash", "peers", "seeders", "leechers", "completed", "gone_uploaded",
                 "gone_downloaded")

    def __init__(self, info_hash: bytes, completed: int = 0, gone_uploaded: int = 0,
                 gone_downloaded: int = 0) -> None:
        self.info_hash = info_hash
        self.peers: Dict[bytes, TrackedPeer] = {}
        self.seeders: List[TrackedPeer] = []
        self.leechers: List[TrackedPeer] = []
        self.completed = completed
        self.gone_uploaded = gone_uploaded
        self.gone_downloaded = gone_downloaded

    def add(self, peer: TrackedPeer) -> None:
        self.peers[peer.peer_id] = peer
        group = self.seeders if peer.left == 0 else self.leechers
        peer.slot = len(group)
        group.append(peer)

    def remove(self, peer: TrackedPeer) -> None:
        """Take a departing peer out, keeping what it had moved in the swarm's totals."""
        del self.peers[peer.peer_id]
        self._unlink(peer, self.seeders if peer.left == 0 else self.leechers)
        self.gone_uploaded += peer.uploaded
        self.gone_downloaded += peer.downloaded

    def set_left(self, peer: TrackedPeer, left: int) -> None:
        """Update ``left``, moving the peer between seeders and leechers when it changes side."""
        if (peer.left == 0) != (left == 0):
            if peer.left == 0:
                self._unlink(peer, self.seeders)
                group = self.leechers
            else:
                self._unlink(peer, self.leechers)
                group = self.seeders
            peer.slot = len(group)
            group.append(peer)
        peer.left = left

    @staticmethod
    def _unlink(peer: TrackedPeer, group: List[TrackedPeer]) -> None:
        # Swap with the last element: O(1) and keeps the array dense for sampling.
        last = group.pop()
        if last is not peer:
            group[peer.slot] = last
            last.slot = peer.slot
        peer.slot = -1

    def sample(self, requester: TrackedPeer, numwant: int) -> List[TrackedPeer]:
        """Up to ``numwant`` random peers other than ``requester``.

        A seeder gets only leechers: one seeder has nothing to give another (opentracker does the
        same). Seeders and leechers are drawn in proportion to their numbers, each group evenly
        spaced from a random start (see spread), which costs two slices of the peer arrays
        however large the swarm is.
        """
        seeders = _EMPTY if requester.left == 0 else self.seeders
        leechers = self.leechers
        n_seeders = len(seeders)
        total = n_seeders + len(leechers)
        if numwant <= 0 or total == 0:
            return []
        want = numwant + 1  # one more, in case the requester is among them
        if total <= want:
            chosen = seeders + leechers
        else:
            # Randomised rounding keeps the expected share of seeders exact.
            from_seeders = (want * n_seeders + random.randrange(total)) // total
            chosen = spread(seeders, from_seeders) + spread(leechers, want - from_seeders)
        try:
            chosen.remove(requester)
        except ValueError:
            pass
        del chosen[numwant:]
        return chosen


_EMPTY: List[TrackedPeer] = []


def spread(group: list, count: int) -> list:
    """``count`` items of ``group`` evenly spaced from a random start, wrapping around.

    Every item is equally likely to be picked and none twice; unlike random.sample (one
    Python-level random draw per item, a quarter of an announce's time) this is one draw and two
    C-level slices. Peers are not in arrival order for long (removals move the last peer into
    the gap), so neighbours in the array are not a fixed group.
    """
    size = len(group)
    if count >= size:
        return group[:]
    if count <= 0:
        return []
    step = size // count
    start = random.randrange(size)
    picked = group[start::step]
    if len(picked) < count:
        picked += group[start + len(picked) * step - size::step]
    del picked[count:]
    return picked


def swarm_stats(swarm: SwarmEntry, name: Optional[str], size: Optional[int], max_peers: int,
                now: float) -> Dict[str, object]:
    """A JSON-ready snapshot of one swarm for /stats and the dashboard: counts, totals (peers
    that left included) and its first ``max_peers`` peers in the order they joined. ``name``
    and ``size`` are the hosted torrent's, None when it was not uploaded. Peer ids are never
    included (a peer id and its address are what a forged announce would need)."""
    peers = []
    uploaded, downloaded = swarm.gone_uploaded, swarm.gone_downloaded
    for peer in swarm.peers.values():
        uploaded += peer.uploaded
        downloaded += peer.downloaded
        if len(peers) < max_peers:
            peers.append(_peer_stats(peer, size, now))
    return {
        "info_hash": swarm.info_hash.hex(),
        "name": name,
        "hosted": name is not None,
        "size": size,
        "seeders": len(swarm.seeders),
        "leechers": len(swarm.leechers),
        "completed": swarm.completed,
        "uploaded": uploaded,
        "downloaded": downloaded,
        "peers": peers,
        "peers_shown": len(peers),
    }


def _peer_stats(peer: TrackedPeer, size: Optional[int], now: float) -> Dict[str, object]:
    if size:
        progress = max(0.0, min(1.0, (size - peer.left) / size))
    elif peer.left == 0:
        progress = 1.0
    else:
        # Without the torrent's size, downloaded/(downloaded+left) is the best estimate (it is
        # exact for a peer that started from nothing).
        progress = peer.downloaded / (peer.downloaded + peer.left)
    return {
        "client": _printable(peer.peer_id[:8]),
        "ip": peer.ip,
        "port": peer.port,
        "uploaded": peer.uploaded,
        "downloaded": peer.downloaded,
        "left": peer.left,
        "progress": round(progress, 4),
        "seeder": peer.left == 0,
        # Peers report only when they announce: every figure of this row is this old.
        "last_seen_ago": round(max(0.0, now - peer.last_seen), 1),
    }


def _printable(raw: bytes) -> str:
    # Azureus-style peer ids start with "-XX1234-" naming the client; show that part as text.
    return "".join(chr(b) if 32 <= b < 127 else "." for b in raw)
