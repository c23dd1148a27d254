"""The DHT routing table (BEP 5): k-buckets over the 160-bit id space, split by our own id.

Pure data: the caller passes the time (``now``, seconds on any monotonic clock) and a random
generator, and sends the pings the table asks for. A node enters the table only once it has
sent us something (a query, or a response to ours); nodes merely named in someone's ``nodes``
list are for lookups, not for the table.

BEP 5's states: a node is *good* if it answered one of our queries within the last 15 minutes,
or has ever answered and sent us a query within the last 15 minutes; *questionable* after 15
minutes of silence; *bad* once it failed to answer several queries in a row. A full bucket
takes a new node only in place of a bad one; while it holds questionable nodes, the
least recently seen of them is handed back to the caller to ping, and the newcomer waits in
the bucket's replacement cache (as libtorrent keeps one) until a place frees. A bucket that
holds our own id splits when full; any other full bucket drops newcomers. A bucket unchanged
for 15 minutes is due a refresh: a lookup for a random id in its range.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

__all__ = ["RoutingTable", "NodeEntry", "RoutingError", "K", "GOOD_FOR", "REFRESH_AFTER",
           "FAILURES_TO_BAD", "distance"]

Address = Tuple[str, int]

# Bucket size (BEP 5: "Each bucket can only hold K nodes, currently eight").
K = 8
# Seconds a node stays good after its last answer, and a bucket fresh after its last change
# (BEP 5: 15 minutes for both).
GOOD_FOR = 15 * 60.0
REFRESH_AFTER = 15 * 60.0
# Unanswered queries in a row that make a node bad: BEP 5 says "multiple"; jech's dht (used by
# Transmission) counts 3 pings.
FAILURES_TO_BAD = 3
# Nodes kept per bucket waiting for a place (libtorrent keeps a replacement list per bucket).
REPLACEMENTS = K
ID_BITS = 160
ID_SPACE = 1 << ID_BITS


class RoutingError(ValueError):
    """A value cannot go into the routing table (a bad id, our own id)."""


def distance(a: bytes, b: bytes) -> int:
    """Kademlia's XOR metric between two 20-byte ids, as an integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


@dataclass
class NodeEntry:
    """What the table knows of one node."""
    node_id: bytes
    address: Address
    last_answer: Optional[float] = None  # our query answered
    last_query: Optional[float] = None   # it queried us
    failures: int = 0                    # our queries unanswered in a row

    def state(self, now: float) -> str:
        """"good", "questionable" or "bad", as BEP 5 defines them."""
        if self.failures >= FAILURES_TO_BAD:
            return "bad"
        if self.last_answer is not None:
            if now - self.last_answer < GOOD_FOR:
                return "good"
            if self.last_query is not None and now - self.last_query < GOOD_FOR:
                return "good"
        return "questionable"

    def last_seen(self) -> float:
        return max(self.last_answer or 0.0, self.last_query or 0.0)


class _Bucket:
    def __init__(self, low: int, high: int, now: float) -> None:
        self.low = low              # ids in [low, high)
        self.high = high
        self.nodes: List[NodeEntry] = []
        self.replacements: List[NodeEntry] = []
        self.changed = now

    def covers(self, number: int) -> bool:
        return self.low <= number < self.high


class RoutingTable:
    """k-buckets keyed by XOR distance from ``own_id``."""

    def __init__(self, own_id: bytes, now: float = 0.0, k: int = K) -> None:
        if len(own_id) != 20:
            raise RoutingError("a node id is 20 bytes")
        self.own_id = own_id
        self.k = k
        self._own = int.from_bytes(own_id, "big")
        self._buckets = [_Bucket(0, ID_SPACE, now)]

    def __len__(self) -> int:
        return sum(len(b.nodes) for b in self._buckets)

    def bucket_count(self) -> int:
        return len(self._buckets)

    def _bucket(self, node_id: bytes) -> _Bucket:
        number = int.from_bytes(node_id, "big")
        for bucket in self._buckets:
            if bucket.covers(number):
                return bucket
        raise RoutingError("id outside the id space")  # unreachable: buckets cover it all

    def find(self, node_id: bytes) -> Optional[NodeEntry]:
        for entry in self._bucket(node_id).nodes:
            if entry.node_id == node_id:
                return entry
        return None

    # -------------------------------------------------------------------------- what we hear

    def heard_from(self, node_id: bytes, address: Address, now: float,
                   answered: bool) -> Optional[NodeEntry]:
        """A node sent us a query (``answered`` False) or answered ours (True). Returns a
        questionable node the caller should ping before the newcomer can take its place, or
        None. A node at a known address with a new id replaces the old entry only once the
        old one is bad, so nobody can push a node out by claiming its address."""
        if len(node_id) != 20:
            raise RoutingError("a node id is 20 bytes")
        if node_id == self.own_id:
            return None
        bucket = self._bucket(node_id)
        for entry in bucket.nodes + bucket.replacements:
            if entry.node_id == node_id:
                if entry.address != address:
                    return None  # same id from elsewhere: keep the one we know
                self._touch(entry, now, answered)
                return None
        clash = self._at_address(address)
        if clash is not None and clash.state(now) != "bad":
            return None
        if clash is not None:
            self.remove(clash.node_id)
        entry = NodeEntry(node_id, address)
        self._touch(entry, now, answered)
        return self._insert(entry, now)

    @staticmethod
    def _touch(entry: NodeEntry, now: float, answered: bool) -> None:
        if answered:
            entry.last_answer = now
            entry.failures = 0
        else:
            entry.last_query = now

    def _at_address(self, address: Address) -> Optional[NodeEntry]:
        for bucket in self._buckets:
            for entry in bucket.nodes:
                if entry.address == address:
                    return entry
        return None

    def _insert(self, entry: NodeEntry, now: float) -> Optional[NodeEntry]:
        while True:
            bucket = self._bucket(entry.node_id)
            if len(bucket.nodes) < self.k:
                bucket.nodes.append(entry)
                bucket.changed = now
                return None
            bad = [n for n in bucket.nodes if n.state(now) == "bad"]
            if bad:
                bucket.nodes.remove(bad[0])
                bucket.nodes.append(entry)
                bucket.changed = now
                return None
            if bucket.covers(self._own) and bucket.high - bucket.low > 1:
                self._split(bucket, now)
                continue
            self._keep_as_replacement(bucket, entry)
            questionable = [n for n in bucket.nodes if n.state(now) == "questionable"]
            return min(questionable, key=NodeEntry.last_seen) if questionable else None

    @staticmethod
    def _keep_as_replacement(bucket: _Bucket, entry: NodeEntry) -> None:
        bucket.replacements.append(entry)
        del bucket.replacements[:-REPLACEMENTS]

    def _split(self, bucket: _Bucket, now: float) -> None:
        middle = (bucket.low + bucket.high) // 2
        low, high = _Bucket(bucket.low, middle, now), _Bucket(middle, bucket.high, now)
        for entry in bucket.nodes:
            (low if low.covers(int.from_bytes(entry.node_id, "big")) else high).nodes.append(entry)
        for entry in bucket.replacements:
            half = low if low.covers(int.from_bytes(entry.node_id, "big")) else high
            half.replacements.append(entry)
        index = self._buckets.index(bucket)
        self._buckets[index:index + 1] = [low, high]

    def failed(self, node_id: bytes, now: float) -> None:
        """A query to this node went unanswered; once it is bad, the freshest replacement
        takes its place."""
        bucket = self._bucket(node_id)
        for entry in bucket.nodes:
            if entry.node_id == node_id:
                entry.failures += 1
                if entry.state(now) == "bad" and bucket.replacements:
                    bucket.nodes.remove(entry)
                    bucket.nodes.append(bucket.replacements.pop())
                    bucket.changed = now
                return
        bucket.replacements = [e for e in bucket.replacements if e.node_id != node_id]

    def remove(self, node_id: bytes) -> None:
        bucket = self._bucket(node_id)
        bucket.nodes = [e for e in bucket.nodes if e.node_id != node_id]

    # ------------------------------------------------------------------------------ queries

    def closest(self, target: bytes, count: int = K, now: Optional[float] = None
                ) -> List[NodeEntry]:
        """The ``count`` nodes nearest ``target`` that are not bad, nearest first."""
        number = int.from_bytes(target, "big")
        candidates = [e for b in self._buckets for e in b.nodes
                      if now is None or e.state(now) != "bad"]
        candidates.sort(key=lambda e: int.from_bytes(e.node_id, "big") ^ number)
        return candidates[:count]

    def nodes(self) -> List[NodeEntry]:
        return [e for b in self._buckets for e in b.nodes]

    def good_nodes(self, now: float) -> List[NodeEntry]:
        return [e for e in self.nodes() if e.state(now) == "good"]

    def counts(self, now: float) -> Dict[str, int]:
        """How many nodes are good, questionable and bad."""
        result = {"good": 0, "questionable": 0, "bad": 0}
        for entry in self.nodes():
            result[entry.state(now)] += 1
        return result

    def questionable(self, now: float) -> List[NodeEntry]:
        """Nodes to ping to learn whether they are still there, least recently seen first."""
        return sorted((e for e in self.nodes() if e.state(now) == "questionable"),
                      key=NodeEntry.last_seen)

    def refresh_targets(self, now: float, rng: random.Random) -> List[bytes]:
        """A random id in each bucket unchanged for REFRESH_AFTER seconds; the caller looks
        each one up (which changes the bucket when anyone answers) and calls ``refreshed``."""
        return [rng.randrange(b.low, b.high).to_bytes(20, "big") for b in self._buckets
                if now - b.changed >= REFRESH_AFTER]

    def refreshed(self, target: bytes, now: float) -> None:
        self._bucket(target).changed = now

    def add_all(self, entries: Iterable[Tuple[bytes, Address]], now: float) -> None:
        """Nodes from a saved state: in as questionable (never heard from in this run), so
        the first refresh or lookup tells the living from the gone."""
        for node_id, address in entries:
            if len(node_id) != 20 or node_id == self.own_id or self.find(node_id):
                continue
            entry = NodeEntry(node_id, address)
            bucket = self._bucket(node_id)
            while len(bucket.nodes) >= self.k and bucket.covers(self._own) \
                    and bucket.high - bucket.low > 1:
                self._split(bucket, now)
                bucket = self._bucket(node_id)
            if len(bucket.nodes) < self.k:
                bucket.nodes.append(entry)
