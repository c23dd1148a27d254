"""What a DHT node keeps on behalf of others (BEP 5), as pure data with the clock from the caller:
the tokens it hands out, the peers announced to it, and how many queries each address may send.

- ``TokenKeeper``: a token is a hash of the requester's IP and a secret; the secret changes
  every 5 minutes and the previous one is still accepted, so a token lives 5 to 10 minutes
  (BEP 5's own suggestion).
- ``PeerStore``: peers per info hash, each forgotten PEER_LIFETIME after its last announce,
  bounded in peers per hash and in hashes (libtorrent's dht_max_peers and dht_max_torrents).
- ``QueryBudget``: queries answered per address within a window, as libtorrent's dos_blocker
  counts them; an address over budget is ignored until the window ends.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections import OrderedDict
from typing import Callable, Dict, List, Tuple

__all__ = ["TokenKeeper", "PeerStore", "QueryBudget", "TOKEN_ROTATION", "PEER_LIFETIME",
           "MAX_PEERS_PER_HASH", "MAX_INFO_HASHES", "MAX_VALUES_REPLY"]

Address = Tuple[str, int]

# Seconds between token secrets; a token made with the current or the previous secret is
# accepted (BEP 5: "secret that changes every five minutes and tokens up to ten minutes old
# are accepted").
TOKEN_ROTATION = 5 * 60.0
TOKEN_LENGTH = 8
# Seconds an announced peer is kept: a client re-announces every 15 minutes (libtorrent's
# dht_announce_interval is 900 s); jech's dht (Transmission) keeps peers 32 minutes, so
# one missed announce does not drop a peer.
PEER_LIFETIME = 30 * 60.0
# Peers kept per info hash and info hashes kept (libtorrent: dht_max_peers 500,
# dht_max_torrents 2000).
MAX_PEERS_PER_HASH = 500
MAX_INFO_HASHES = 2000
# Peers returned in one get_peers answer (libtorrent's dht_max_peers_reply is 100); they fit
# one datagram with room to spare.
MAX_VALUES_REPLY = 100
# Queries one address may send per window before it is ignored for the rest of the window:
# libtorrent's dos_blocker allows dht_block_ratelimit (5) per second over 10 seconds, per IP.
QUERIES_PER_WINDOW = 50
BUDGET_WINDOW = 10.0
# Addresses whose budgets are tracked at once; the oldest is forgotten first (libtorrent
# tracks 512 in a fixed array).
MAX_TRACKED_ADDRESSES = 4096


class TokenKeeper:
    """Tokens bound to the requester's IP, from a secret rotated every TOKEN_ROTATION seconds."""

    def __init__(self, now: float, secret_source: Callable[[int], bytes]) -> None:
        self._new_secret = secret_source
        self._current = secret_source(20)
        self._previous = self._current
        self._rotated = now

    def _rotate(self, now: float) -> None:
        if now - self._rotated >= 2 * TOKEN_ROTATION:  # idle for long: both are stale
            self._previous = self._new_secret(20)
            self._current = self._new_secret(20)
            self._rotated = now
        elif now - self._rotated >= TOKEN_ROTATION:
            self._previous, self._current = self._current, self._new_secret(20)
            self._rotated = now

    @staticmethod
    def _make(secret: bytes, host: str) -> bytes:
        return hashlib.sha1(secret + host.encode()).digest()[:TOKEN_LENGTH]

    def token_for(self, host: str, now: float) -> bytes:
        self._rotate(now)
        return self._make(self._current, host)

    def check(self, token: bytes, host: str, now: float) -> bool:
        self._rotate(now)
        return any(hmac.compare_digest(token, self._make(s, host))
                   for s in (self._current, self._previous))


class PeerStore:
    """Peers announced per info hash, with expiry and bounds."""

    def __init__(self, max_hashes: int = MAX_INFO_HASHES,
                 max_peers: int = MAX_PEERS_PER_HASH, lifetime: float = PEER_LIFETIME) -> None:
        self.max_hashes = max_hashes
        self.max_peers = max_peers
        self.lifetime = lifetime
        # info hash -> {peer address: time of its last announce}, least recently announced
        # info hash first
        self._swarms: "OrderedDict[bytes, OrderedDict[Address, float]]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._swarms)

    def add(self, info_hash: bytes, peer: Address, now: float) -> None:
        swarm = self._swarms.pop(info_hash, None)
        if swarm is None:
            swarm = OrderedDict()
            while len(self._swarms) >= self.max_hashes:
                self._swarms.popitem(last=False)
        self._swarms[info_hash] = swarm
        swarm.pop(peer, None)
        swarm[peer] = now
        while len(swarm) > self.max_peers:
            swarm.popitem(last=False)  # the peer announced longest ago goes first

    def peers(self, info_hash: bytes, now: float, rng: random.Random,
              limit: int = MAX_VALUES_REPLY) -> List[Address]:
        """Up to ``limit`` live peers of ``info_hash``, a random sample when there are more."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return []
        self._expire_swarm(info_hash, swarm, now)
        found = list(swarm)
        return rng.sample(found, limit) if len(found) > limit else found

    def expire(self, now: float) -> None:
        """Forget every peer not announced within the lifetime (the node calls this now and
        then; ``peers`` expires the swarm it reads)."""
        for info_hash, swarm in list(self._swarms.items()):
            self._expire_swarm(info_hash, swarm, now)

    def _expire_swarm(self, info_hash: bytes, swarm: "OrderedDict[Address, float]",
                      now: float) -> None:
        while swarm and now - next(iter(swarm.values())) >= self.lifetime:
            swarm.popitem(last=False)
        if not swarm:
            self._swarms.pop(info_hash, None)


class QueryBudget:
    """Queries allowed per address per window; over budget means ignored until it ends."""

    def __init__(self, per_window: int = QUERIES_PER_WINDOW, window: float = BUDGET_WINDOW,
                 max_tracked: int = MAX_TRACKED_ADDRESSES) -> None:
        self.per_window = per_window
        self.window = window
        self.max_tracked = max_tracked
        self._seen: "OrderedDict[Address, List[float]]" = OrderedDict()  # [window start, count]

    def allow(self, address: Address, now: float) -> bool:
        record = self._seen.pop(address, None)
        if record is None or now - record[0] >= self.window:
            record = [now, 0.0]
        record[1] += 1
        self._seen[address] = record
        while len(self._seen) > self.max_tracked:
            self._seen.popitem(last=False)
        return record[1] <= self.per_window

    def tracked(self) -> Dict[Address, int]:
        return {a: int(r[1]) for a, r in self._seen.items()}
