"""Super-seeding (BEP 16): a first seed that uploads each piece about once.

A normal seed shows every peer all its pieces, and on a fast LAN it ends up sending each piece to
each downloader. A super-seed pretends to have only a few pieces per peer: it reveals one or two
pieces to each peer with a `have`, serves only those, and reveals another once the peer has it.
Every piece goes to a different peer first, so the downloaders must trade among themselves for
the rest; the seed sends little more than one copy of the data in all.

Pure policy, like the picker: the torrent reports peers and haves, and sends the `have` messages
this returns. Peers are opaque keys.
"""

from __future__ import annotations

import random
from typing import Dict, Hashable, List, Optional, Set

# Pieces revealed to one peer at a time. Two keep its request pipeline busy while the `have` for
# the first one travels; more would hand the same downloader a larger share of the seed.
REVEAL_AT_ONCE = 2

Peer = Hashable


class SuperSeeder:
    def __init__(self, num_pieces: int, rng: Optional[random.Random] = None) -> None:
        self.num_pieces = num_pieces
        self._rng = rng or random.Random()
        self._revealed: Dict[Peer, Set[int]] = {}   # shown to the peer, not yet reported back
        self._has: Dict[Peer, Set[int]] = {}         # what each peer said it has
        self._given = [0] * num_pieces               # times each piece was revealed
        self._seen = [0] * num_pieces                # peers known to have each piece

    def peer_joined(self, peer: Peer, pieces: Optional[Set[int]] = None) -> List[int]:
        """A new peer (and what its bitfield says it has); returns the pieces to reveal."""
        self._revealed[peer] = set()
        self._has[peer] = set()
        for index in pieces or ():
            self._record(peer, index)
        return self._top_up(peer)

    def peer_has(self, peer: Peer, index: int) -> List[int]:
        """The peer announced a piece; returns more pieces to reveal to it."""
        if peer not in self._revealed or not 0 <= index < self.num_pieces:
            return []
        self._record(peer, index)
        return self._top_up(peer)

    def peer_left(self, peer: Peer) -> None:
        self._revealed.pop(peer, None)
        for index in self._has.pop(peer, ()):
            self._seen[index] -= 1

    def may_serve(self, peer: Peer, index: int) -> bool:
        """Only pieces revealed to the peer are served (BEP 16)."""
        return index in self._revealed.get(peer, ())

    def revealed(self, peer: Peer) -> Set[int]:
        return set(self._revealed.get(peer, ()))

    def _record(self, peer: Peer, index: int) -> None:
        has = self._has[peer]
        if index not in has:
            has.add(index)
            self._seen[index] += 1
        self._revealed[peer].discard(index)

    def _top_up(self, peer: Peer) -> List[int]:
        revealed = self._revealed[peer]
        new: List[int] = []
        while len(revealed) < REVEAL_AT_ONCE:
            index = self._pick(peer)
            if index is None:
                break
            revealed.add(index)
            self._given[index] += 1
            new.append(index)
        return new

    def _pick(self, peer: Peer) -> Optional[int]:
        """The piece the peer lacks that was revealed least often, then seen least often, with
        a random tie-break. A linear scan: done once per piece a peer completes."""
        has = self._has[peer]
        revealed = self._revealed[peer]
        best = None
        best_key = None
        for index in range(self.num_pieces):
            if index in has or index in revealed:
                continue
            key = (self._given[index], self._seen[index], self._rng.random())
            if best_key is None or key < best_key:
                best, best_key = index, key
        return best
