"""Piece availability for the picker: how many peers have each piece, and rarest first.

Pure data structure: no I/O, no clock. ``PiecePicker`` (picker.py) owns one and tells it which
pieces are fresh (missing, wanted, not started); this module keeps them ordered by availability so
the rarest fresh piece a peer has is found without a Python loop over pieces.

Why it is cheap:
- availability is a count per piece of the non-seed peers having it, plus one seed counter (a
  seed adds one to every piece and changes no order, so connecting one is O(1));
- fresh pieces are one int bitmask per availability value (bit i = piece i, as
  Bitfield.to_int). The rarest fresh piece of a peer is a random set bit of the first non-empty
  ``masks[a] & peer_bits``: C-level work once per started piece. A seed skips the AND; a peer
  with nothing fresh costs one AND.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from .bitfield import Bitfield

__all__ = ["Availability"]

log = logging.getLogger(__name__)


class Availability:
    """Peer counts per piece and the fresh pieces bucketed by them.

    ``avail[i]`` counts the non-seed peers having piece ``i`` and ``seeds`` the complete peers,
    so ``avail[i] + seeds`` peers have it. ``masks[a]`` holds the fresh pieces with ``avail``
    equal to ``a``; ``fresh`` is their union and ``nfresh`` their number. The attributes are
    read directly on the picker's hot path; change them only through the methods.
    ``random`` returns a float in [0, 1): it breaks ties between equally rare pieces.
    """

    __slots__ = ("avail", "seeds", "masks", "fresh", "nfresh", "_random")

    def __init__(self, num_pieces: int, random: Callable[[], float]) -> None:
        self.avail = [0] * num_pieces     # non-seed peers having each piece
        self.seeds = 0
        self.masks = [0]                  # type: List[int]  # fresh pieces by availability
        self.fresh = 0                    # union of the masks
        self.nfresh = 0
        self._random = random

    # -- what peers have ------------------------------------------------------------------

    def peer_added(self, bits: Bitfield) -> None:
        """A peer with ``bits`` connected (or sent its bitfield)."""
        if bits.complete:
            self.seeds += 1
        elif bits.count:
            self._shift(bits, 1)

    def peer_removed(self, bits: Bitfield) -> None:
        """A peer with ``bits`` (as it is now) went away."""
        # A complete peer adds exactly one to every piece, whether it was counted as a seed or
        # piece by piece (it connected partial and completed through have messages), so taking
        # one off the seed counter is the same as taking one off every piece.
        if bits.complete and self.seeds:
            self.seeds -= 1
        elif bits.count:
            self._shift(bits, -1)

    def peer_has(self, index: int, fresh: bool) -> None:
        """One more peer has piece ``index``; ``fresh`` says whether it is in the fresh set (the
        caller's state byte answers that in O(1), where a test of the big mask would not)."""
        a = self.avail[index]
        self.avail[index] = a + 1
        if fresh:
            bit = 1 << index
            masks = self.masks
            masks[a] ^= bit
            if a + 1 == len(masks):
                masks.append(bit)
            else:
                masks[a + 1] |= bit

    # -- the fresh set --------------------------------------------------------------------

    def take_rarest(self, bits: Bitfield, seed: bool, max_avail: int = -1) -> int:
        """Remove and return the rarest fresh piece in ``bits`` (random among equals), or -1.
        ``seed``: ``bits`` is complete, so every fresh piece qualifies. ``max_avail`` >= 0:
        only a piece at most that many non-seed peers have (0: a piece only seeds have)."""
        masks = self.masks
        if max_avail >= 0:
            masks = masks[:max_avail + 1]
        if seed:
            for a, m in enumerate(masks):
                if m:
                    break
            else:
                return -1
        else:
            p = bits.to_int()
            if not self.fresh & p:
                return -1
            for a, m in enumerate(masks):
                if m:
                    m &= p
                    if m:
                        break
            else:
                return -1
        # A set bit of m: the first one at or after a uniformly random position.
        r = int(self._random() * m.bit_length())
        x = m >> r   # never 0: the top bit of m is at or above r
        index = r + (x & -x).bit_length() - 1
        bit = 1 << index
        self.masks[a] ^= bit
        self.fresh ^= bit
        self.nfresh -= 1
        return index

    def remove(self, index: int) -> None:
        """Take the fresh piece ``index`` out of the fresh set."""
        bit = 1 << index
        self.masks[self.avail[index]] ^= bit
        self.fresh ^= bit
        self.nfresh -= 1

    def add(self, index: int) -> None:
        """Put piece ``index`` (not fresh now) into the fresh set."""
        bit = 1 << index
        a = self.avail[index]
        masks = self.masks
        while len(masks) <= a:
            masks.append(0)
        masks[a] |= bit
        self.fresh |= bit
        self.nfresh += 1

    def reset(self, fresh: Iterable[int]) -> None:
        """Make ``fresh`` the fresh set, rebuilding the masks from scratch: O(pieces)."""
        avail = self.avail
        nbytes = (len(avail) + 7) >> 3
        buckets = [bytearray(nbytes) for _ in range(max(avail, default=0) + 1)]
        nfresh = 0
        for i in fresh:
            buckets[avail[i]][i >> 3] |= 1 << (i & 7)   # little-endian: bit i = piece i
            nfresh += 1
        self.masks = [int.from_bytes(bucket, "little") for bucket in buckets]
        union = 0
        for m in self.masks:
            union |= m
        self.fresh = union
        self.nfresh = nfresh

    def fresh_at_peers(self) -> bool:
        """Does some connected peer have a fresh piece?"""
        if self.seeds:
            return self.nfresh > 0
        masks = self.masks
        for a in range(1, len(masks)):
            if masks[a]:
                return True
        return False

    # -- internals ------------------------------------------------------------------------

    def _shift(self, bits: Bitfield, delta: int) -> None:
        """Add ``delta`` (+1 or -1) to the availability of every piece in ``bits``."""
        avail = self.avail
        if delta > 0:
            for i in bits.iter_set():
                avail[i] += 1
        else:
            for i in bits.iter_set():
                if avail[i]:
                    avail[i] -= 1
                else:
                    log.debug("availability of piece %d would go below zero", i)
        p = bits.to_int() & self.fresh
        if not p:
            return
        masks = self.masks
        if delta > 0:
            # Top down, so a piece moved into bucket a+1 is not moved again.
            if masks[-1]:
                masks.append(0)
            for a in range(len(masks) - 2, -1, -1):
                moving = masks[a] & p
                if moving:
                    masks[a] ^= moving
                    masks[a + 1] |= moving
        else:
            for a in range(1, len(masks)):
                moving = masks[a] & p
                if moving:
                    masks[a] ^= moving
                    masks[a - 1] |= moving
            while len(masks) > 1 and not masks[-1]:
                masks.pop()
