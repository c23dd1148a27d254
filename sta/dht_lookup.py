"""One iterative DHT lookup (BEP 5, Kademlia): which node to ask next, and when to stop. Pure.

The caller seeds a ``Lookup`` with the nodes it knows nearest the target, asks
``next_queries()`` for whom to query (never more than ``alpha`` in flight), and reports each
answer (``answered``) or silence (``failed``). A query still unanswered after a short while is
reported ``slow``: like libtorrent's "short timeout", it then stops holding one of the ``alpha``
slots, so a table of departed nodes costs a lookup a second a round rather than the full query
timeout. Answers bring nodes nearer the target, which
become candidates; a get_peers lookup also collects peers (``values``) and the tokens that let
us announce to the nodes that answered. The lookup is done when nothing but slow queries is in
flight and each of the ``k`` nearest nodes not known to have failed or to be slow has answered,
or when its query budget is spent. Every collection is bounded, so a lying node that answers with endless fresh ids
cannot make a lookup run forever or grow without limit.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set, Tuple

from .dht_routing import K, distance
from .krpc import NodeInfo

__all__ = ["Lookup", "ALPHA", "MAX_CANDIDATES", "MAX_QUERIES", "MAX_PEERS"]

Address = Tuple[str, int]

# Queries in flight at once: Kademlia's alpha of 3 (libtorrent's dht_search_branching is 5).
ALPHA = 3
# Candidates kept, nearest first: enough for several rounds of k = 8 answers each; the far
# ones beyond this are never asked anyway.
MAX_CANDIDATES = 128
# Queries one lookup may send: a lookup over a million-node DHT converges in about
# log2(n)/3 rounds of alpha queries; this is several times that.
MAX_QUERIES = 100
# Peers one get_peers lookup collects; the torrent's swarm bounds what it keeps anyway
# (libtorrent answers at most 100 values per node).
MAX_PEERS = 500


class Lookup:
    """An iterative find_node or get_peers lookup for ``target``."""

    def __init__(self, target: bytes, *, alpha: int = ALPHA, k: int = K,
                 max_queries: int = MAX_QUERIES, max_peers: int = MAX_PEERS) -> None:
        self.target = target
        self.alpha = alpha
        self.k = k
        self.max_queries = max_queries
        self.max_peers = max_peers
        self._candidates: Dict[Address, NodeInfo] = {}
        self._asked: Set[Address] = set()
        self._in_flight: Set[Address] = set()
        self._slow: Set[Address] = set()
        self._answered: Dict[Address, NodeInfo] = {}
        self._failed: Set[Address] = set()
        self.tokens: Dict[Address, bytes] = {}
        self.peers: List[Address] = []
        self._peer_set: Set[Address] = set()
        self.queries_sent = 0

    def _distance(self, node: NodeInfo) -> int:
        return distance(node.node_id, self.target)

    def add_candidates(self, nodes: Iterable[NodeInfo]) -> None:
        """Nodes that may be near the target (from the routing table or an answer)."""
        for node in nodes:
            if node.address not in self._candidates and node.address not in self._failed \
                    and len(node.node_id) == 20:
                self._candidates[node.address] = node
        if len(self._candidates) > MAX_CANDIDATES:
            keep = sorted(self._candidates.values(), key=self._distance)[:MAX_CANDIDATES]
            kept = {n.address for n in keep} | self._asked
            self._candidates = {a: n for a, n in self._candidates.items() if a in kept}

    def _nearest_alive(self) -> List[NodeInfo]:
        alive = [n for a, n in self._candidates.items()
                 if a not in self._failed and a not in self._slow]
        alive.sort(key=self._distance)
        return alive[:self.k]

    def _busy(self) -> int:
        return len(self._in_flight - self._slow)

    def next_queries(self) -> List[NodeInfo]:
        """Nodes to query now (marked as in flight); empty when none is due."""
        chosen: List[NodeInfo] = []
        for node in self._nearest_alive():
            if self._busy() >= self.alpha or self.queries_sent >= self.max_queries:
                break
            if node.address not in self._asked:
                self._asked.add(node.address)
                self._in_flight.add(node.address)
                self.queries_sent += 1
                chosen.append(node)
        return chosen

    def answered(self, node: NodeInfo, nodes: Iterable[NodeInfo] = (),
                 values: Iterable[Address] = (), token: Optional[bytes] = None) -> None:
        """``node`` answered: the id it answered with replaces the one we guessed (a bootstrap
        address has none), its nodes become candidates, its values peers."""
        self._in_flight.discard(node.address)
        self._slow.discard(node.address)
        self._candidates[node.address] = node
        self._answered[node.address] = node
        if token is not None:
            self.tokens[node.address] = token
        for peer in values:
            if len(self.peers) >= self.max_peers:
                break
            if peer not in self._peer_set:
                self._peer_set.add(peer)
                self.peers.append(peer)
        self.add_candidates(n for n in nodes if n.address not in self._asked)

    def failed(self, node: NodeInfo) -> None:
        """``node`` did not answer in time (or answered with an error)."""
        self._in_flight.discard(node.address)
        self._slow.discard(node.address)
        self._failed.add(node.address)
        self._candidates.pop(node.address, None)

    def slow(self, node: NodeInfo) -> None:
        """``node`` has not answered yet and probably will not: ask another in its stead (its
        answer, should it come, still counts)."""
        if node.address in self._in_flight:
            self._slow.add(node.address)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def done(self) -> bool:
        if self._busy():
            return False
        if self.queries_sent >= self.max_queries:
            return True
        return all(n.address in self._asked for n in self._nearest_alive())

    def closest_answered(self, count: Optional[int] = None) -> List[NodeInfo]:
        """The nodes that answered, nearest the target first (``k`` of them by default)."""
        found = sorted(self._answered.values(), key=self._distance)
        return found[:self.k if count is None else count]

    def announce_targets(self) -> List[Tuple[NodeInfo, bytes]]:
        """The nearest ``k`` nodes that answered with a token: where an announce goes."""
        return [(n, self.tokens[n.address]) for n in self.closest_answered(len(self._answered))
                if n.address in self.tokens][:self.k]
