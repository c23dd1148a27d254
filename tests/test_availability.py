"""Tests for sta.availability: peer counts per piece and the rarest fresh piece, with plain
values (the random source is a fixed number, so every tie is decided by the test)."""

from __future__ import annotations

import random
import unittest
from typing import List

from sta.availability import Availability
from sta.bitfield import Bitfield

N = 12


def bits(*indices: int) -> Bitfield:
    return Bitfield.from_indices(N, indices)


def counts(av: Availability) -> List[int]:
    """How many peers have each piece, seeds included."""
    return [a + av.seeds for a in av.avail]


class CountTests(unittest.TestCase):
    def setUp(self) -> None:
        self.av = Availability(N, lambda: 0.0)
        self.av.reset(range(N))

    def test_a_seed_is_one_counter_not_a_count_per_piece(self):
        self.av.peer_added(Bitfield.full(N))
        self.assertEqual(self.av.seeds, 1)
        self.assertEqual(self.av.avail, [0] * N)
        self.assertEqual(counts(self.av), [1] * N)

    def test_partial_peer_counts_its_pieces(self):
        self.av.peer_added(bits(1, 5))
        self.av.peer_added(bits(5))
        self.assertEqual(self.av.avail[1], 1)
        self.assertEqual(self.av.avail[5], 2)
        self.av.peer_removed(bits(5))
        self.assertEqual(self.av.avail[5], 1)

    def test_peer_completed_through_haves_and_removed_leaves_counts_right(self):
        # It was counted piece by piece but leaves as a seed; with another seed connected the
        # seed counter takes the one off, which is the same for every piece.
        self.av.peer_added(Bitfield.full(N))
        peer = bits(0)
        self.av.peer_added(peer)
        for i in range(1, N):
            peer.set(i)
            self.av.peer_has(i, fresh=True)
        self.assertEqual(counts(self.av), [2] * N)
        self.av.peer_removed(peer)
        self.assertEqual(counts(self.av), [1] * N)

    def test_count_never_goes_below_zero(self):
        with self.assertLogs("sta.availability", "DEBUG"):
            self.av.peer_removed(bits(3))
        self.assertEqual(self.av.avail[3], 0)

    def test_peer_without_pieces_changes_nothing(self):
        self.av.peer_added(Bitfield(N))
        self.assertEqual((self.av.seeds, self.av.avail), (0, [0] * N))


class RarestTests(unittest.TestCase):
    def make(self, value: float = 0.0) -> Availability:
        av = Availability(N, lambda: value)
        av.reset(range(N))
        return av

    def test_the_rarest_piece_the_peer_has_comes_first(self):
        av = self.make()
        av.peer_added(bits(0, 1, 2))
        av.peer_added(bits(0, 1))
        av.peer_added(bits(0))
        self.assertEqual(av.take_rarest(bits(0, 1, 2), seed=False), 2)   # 1 peer has it
        self.assertEqual(av.take_rarest(bits(0, 1, 2), seed=False), 1)   # 2 peers
        self.assertEqual(av.take_rarest(bits(0, 1, 2), seed=False), 0)   # 3 peers
        self.assertEqual(av.take_rarest(bits(0, 1, 2), seed=False), -1)  # none fresh left

    def test_ties_are_broken_by_the_random_source(self):
        first = self.make(0.0)
        first.peer_added(bits(2, 6, 9))
        last = self.make(0.999)
        last.peer_added(bits(2, 6, 9))
        self.assertEqual(first.take_rarest(bits(2, 6, 9), seed=False), 2)
        self.assertEqual(last.take_rarest(bits(2, 6, 9), seed=False), 9)

    def test_max_avail_limits_the_choice_to_pieces_that_few_peers_have(self):
        av = self.make()
        av.peer_added(bits(*range(1, N)))   # every piece but 0 is at one non-seed peer
        av.peer_added(Bitfield.full(N))     # and everything at a seed
        self.assertEqual(av.take_rarest(Bitfield.full(N), seed=True, max_avail=0), 0)
        self.assertEqual(av.take_rarest(Bitfield.full(N), seed=True, max_avail=0), -1)
        self.assertEqual(av.take_rarest(bits(0, 1), seed=False, max_avail=0), -1)
        self.assertEqual(av.take_rarest(bits(0, 1), seed=False, max_avail=1), 1)

    def test_every_equal_piece_can_be_chosen(self):
        rng = random.Random(7)
        chosen = set()
        for _ in range(200):
            av = Availability(N, rng.random)
            av.reset(range(N))
            chosen.add(av.take_rarest(bits(2, 6, 9), seed=False))
        self.assertEqual(chosen, {2, 6, 9})

    def test_taken_piece_leaves_the_fresh_set(self):
        av = self.make()
        piece = av.take_rarest(bits(4), seed=False)
        self.assertEqual((piece, av.nfresh, av.fresh >> 4 & 1), (4, N - 1, 0))
        self.assertEqual(av.take_rarest(bits(4), seed=False), -1)

    def test_a_seed_may_be_given_any_fresh_piece(self):
        av = self.make()
        av.peer_added(bits(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
        self.assertEqual(av.take_rarest(Bitfield.full(N), seed=True), 11)  # nobody else has it

    def test_peer_with_nothing_fresh_gets_nothing(self):
        av = self.make()
        av.remove(3)
        self.assertEqual(av.take_rarest(bits(3), seed=False), -1)
        av.add(3)
        self.assertEqual(av.take_rarest(bits(3), seed=False), 3)

    def test_a_have_makes_the_piece_less_rare(self):
        av = self.make()
        av.peer_added(bits(0, 1))
        av.peer_has(1, fresh=True)
        self.assertEqual(av.take_rarest(bits(0, 1), seed=False), 0)

    def test_reset_rebuilds_the_buckets_from_the_counts(self):
        av = self.make()
        av.peer_added(bits(0, 1))
        av.peer_added(bits(0))
        av.reset([0, 1, 5])
        self.assertEqual(av.nfresh, 3)
        self.assertEqual([av.take_rarest(Bitfield.full(N), seed=True) for _ in range(4)],
                         [5, 1, 0, -1])


class FreshAtPeersTests(unittest.TestCase):
    def test_only_a_piece_some_peer_has_counts(self):
        av = Availability(N, lambda: 0.0)
        av.reset([4])
        self.assertFalse(av.fresh_at_peers())
        av.peer_added(bits(3))
        self.assertFalse(av.fresh_at_peers())
        av.peer_added(bits(4))
        self.assertTrue(av.fresh_at_peers())

    def test_a_seed_has_every_fresh_piece(self):
        av = Availability(N, lambda: 0.0)
        av.peer_added(Bitfield.full(N))
        av.reset([])
        self.assertFalse(av.fresh_at_peers())
        av.add(0)
        self.assertTrue(av.fresh_at_peers())


if __name__ == "__main__":
    unittest.main()
