"""Whom to upload to: BEP 3 choking, as plain data in and a decision out.

Every RECHOKE_INTERVAL the torrent asks which interested peers to unchoke, in UNCHOKE_SLOTS,
plus one optimistic unchoke that rotates every OPTIMISTIC_INTERVAL so a newcomer can show what
it offers. While downloading (``rechoke``) the slots go to the peers that give us the most.
While seeding (``rechoke_seeding``) they go round robin, as libtorrent's default
seed_choking_algorithm does: a peer keeps its slot for SEED_TURN, then yields it to the peer
that has waited longest, so a seed with a thousand peers serves all of them in turn rather than
the same fastest few forever.

Cost per rechoke: O(n log n) in the interested peers, and O(1) per peer that joins or leaves.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Set, Tuple

# Regular unchoke slots, plus one optimistic (BEP 3 suggests 4; libtorrent's default
# unchoke_slots_limit is 8, which serves a lab subnet of fast peers better).
UNCHOKE_SLOTS = 8
RECHOKE_INTERVAL = 10.0
OPTIMISTIC_INTERVAL = 30.0
# How long a seed's regular unchoke lasts before the slot goes to a peer that waited longer:
# one rechoke interval (libtorrent's round robin rotates a peer after one unchoke interval of
# 15 s once it has been sent a piece's worth).
SEED_TURN = RECHOKE_INTERVAL
NEVER = float("-inf")


class Choker:
    def __init__(self, rng: Optional[random.Random] = None) -> None:
        self._rng = rng or random.Random()
        self.optimistic: Optional[Hashable] = None
        self._optimistic_since = float("-inf")
        self.last_rechoke = NEVER
        self._turn: Dict[Any, float] = {}   # seeding: when each peer's latest turn began
        self._regular: Set[Any] = set()      # seeding: who holds a regular slot now

    def due(self, now: float) -> bool:
        return now - self.last_rechoke >= RECHOKE_INTERVAL

    def rechoke(self, interested: Sequence[Any], rate: Callable[[Any], Tuple[float, ...]],
                now: float) -> Set[Any]:
        """The peers to unchoke among ``interested``, best ``rate`` first."""
        self.last_rechoke = now
        ranked = sorted(interested, key=rate, reverse=True)
        unchoke = set(ranked[:UNCHOKE_SLOTS])
        return self._add_optimistic(unchoke, [p for p in ranked if p not in unchoke], now)

    def rechoke_seeding(self, interested: Sequence[Any], now: float) -> Set[Any]:
        """The peers to unchoke among ``interested`` while seeding: those whose turn is not
        over keep their slot; the free slots go to the peers that waited longest (never
        unchoked first, ties in random order)."""
        self.last_rechoke = now
        turn = self._turn
        staying = [p for p in interested
                   if p in self._regular and now - turn.get(p, NEVER) < SEED_TURN]
        staying = sorted(staying, key=lambda p: turn[p])[:UNCHOKE_SLOTS]
        kept = set(staying)
        waiting = [p for p in interested if p not in kept]
        self._rng.shuffle(waiting)
        waiting.sort(key=lambda p: turn.get(p, NEVER))
        chosen = waiting[:UNCHOKE_SLOTS - len(staying)]
        for peer in chosen:
            turn[peer] = now
        self._regular = kept.union(chosen)
        return self._add_optimistic(set(self._regular), waiting[len(chosen):], now)

    def _add_optimistic(self, unchoke: Set[Any], rest: List[Any], now: float) -> Set[Any]:
        if self.optimistic not in rest or now - self._optimistic_since >= OPTIMISTIC_INTERVAL:
            self.optimistic = self._rng.choice(rest) if rest else None
            self._optimistic_since = now
            if self.optimistic is not None:
                self._turn[self.optimistic] = now   # its turn counts in the round robin
        if self.optimistic is not None:
            unchoke.add(self.optimistic)
        return unchoke

    def has_room(self, unchoked: int) -> bool:
        """A peer that just became interested is unchoked at once while slots are free."""
        return unchoked < UNCHOKE_SLOTS + 1

    def took_slot(self, peer: Any, now: float) -> None:
        """``peer`` was unchoked at once into a free slot (``has_room``): its turn begins."""
        self._turn[peer] = now
        self._regular.add(peer)

    def forget(self, peer: Any) -> None:
        self._turn.pop(peer, None)
        self._regular.discard(peer)
        if peer is self.optimistic:
            self.optimistic = None
