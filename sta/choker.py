"""Whom to upload to: BEP 3 choking, as plain data in and a decision out.

Every RECHOKE_INTERVAL the torrent asks which interested peers to unchoke: the ones that give us
the most (while downloading) or take the most (while seeding), in UNCHOKE_SLOTS, plus one
optimistic unchoke that rotates every OPTIMISTIC_INTERVAL so a newcomer can show what it offers.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Hashable, List, Optional, Sequence, Set, Tuple

# Regular unchoke slots, plus one optimistic (BEP 3 suggests 4; libtorrent's default
# unchoke_slots_limit is 8, which serves a lab subnet of fast peers better).
UNCHOKE_SLOTS = 8
RECHOKE_INTERVAL = 10.0
OPTIMISTIC_INTERVAL = 30.0


class Choker:
    def __init__(self, rng: Optional[random.Random] = None) -> None:
        self._rng = rng or random.Random()
        self.optimistic: Optional[Hashable] = None
        self._optimistic_since = float("-inf")
        self.last_rechoke = float("-inf")

    def due(self, now: float) -> bool:
        return now - self.last_rechoke >= RECHOKE_INTERVAL

    def rechoke(self, interested: Sequence[Any], rate: Callable[[Any], Tuple[float, ...]],
                now: float) -> Set[Any]:
        """The peers to unchoke among ``interested``, best ``rate`` first."""
        self.last_rechoke = now
        ranked = sorted(interested, key=rate, reverse=True)
        unchoke = set(ranked[:UNCHOKE_SLOTS])
        rest: List[Any] = [p for p in ranked if p not in unchoke]
        if self.optimistic not in rest or now - self._optimistic_since >= OPTIMISTIC_INTERVAL:
            self.optimistic = self._rng.choice(rest) if rest else None
            self._optimistic_since = now
        if self.optimistic is not None:
            unchoke.add(self.optimistic)
        return unchoke

    def has_room(self, unchoked: int) -> bool:
        """A peer that just became interested is unchoked at once while slots are free."""
        return unchoked < UNCHOKE_SLOTS + 1

    def forget(self, peer: Any) -> None:
        if peer is self.optimistic:
            self.optimistic = None
