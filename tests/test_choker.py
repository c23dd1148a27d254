"""Tests for sta.choker: which interested peers are unchoked, with plain values and a fake clock."""

from __future__ import annotations

import random
import unittest
from typing import Sequence

from sta.choker import (OPTIMISTIC_INTERVAL, RECHOKE_INTERVAL, SEED_TURN, UNCHOKE_SLOTS,
                        Choker)


class FirstChoice(random.Random):
    """Picks the first candidate, so the optimistic unchoke is decided by the test."""

    def choice(self, seq: Sequence):  # type: ignore[override]
        return seq[0]


def peers(count: int):
    return [f"p{i:02d}" for i in range(count)]


def by_number(peer: str):
    """Rate: the higher the number in the name, the better."""
    return (float(peer[1:]),)


class RechokeTests(unittest.TestCase):
    def test_best_rated_fill_the_slots_and_one_more_is_optimistic(self):
        self.assertEqual(UNCHOKE_SLOTS, 8)
        choker = Choker(FirstChoice())
        unchoked = choker.rechoke(peers(20), by_number, now=0.0)
        best = set(peers(20)[-UNCHOKE_SLOTS:])
        self.assertTrue(best <= unchoked)
        self.assertEqual(len(unchoked), UNCHOKE_SLOTS + 1)
        self.assertEqual(unchoked - best, {"p11"})  # the first of the rest, best first
        self.assertEqual(choker.optimistic, "p11")

    def test_everyone_is_unchoked_when_slots_are_enough(self):
        choker = Choker(FirstChoice())
        self.assertEqual(choker.rechoke(peers(5), by_number, 0.0), set(peers(5)))
        self.assertIsNone(choker.optimistic)
        self.assertEqual(choker.rechoke([], by_number, 10.0), set())

    def test_optimistic_unchoke_stays_until_its_interval_ends(self):
        rng = random.Random(3)
        choker = Choker(rng)
        choker.rechoke(peers(30), by_number, 0.0)
        first = choker.optimistic
        self.assertIsNotNone(first)
        for now in (RECHOKE_INTERVAL, 2 * RECHOKE_INTERVAL, OPTIMISTIC_INTERVAL - 0.1):
            self.assertIn(first, choker.rechoke(peers(30), by_number, now))
            self.assertEqual(choker.optimistic, first)
        rotated = set()
        for step in range(20):  # each rotation picks anew among the 21 not in the top 8
            choker.rechoke(peers(30), by_number, OPTIMISTIC_INTERVAL * (step + 1))
            rotated.add(choker.optimistic)
        self.assertGreater(len(rotated), 1)

    def test_optimistic_peer_gone_or_promoted_is_replaced_at_once(self):
        choker = Choker(FirstChoice())
        everyone = peers(12)
        choker.rechoke(everyone, by_number, 0.0)
        self.assertEqual(choker.optimistic, "p03")
        remaining = [p for p in everyone if p != "p03"]
        unchoked = choker.rechoke(remaining, by_number, RECHOKE_INTERVAL)
        self.assertEqual(choker.optimistic, "p02")
        self.assertIn("p02", unchoked)

    def test_forgetting_the_optimistic_peer_clears_it(self):
        choker = Choker(FirstChoice())
        everyone = peers(12)
        choker.rechoke(everyone, by_number, 0.0)
        choker.forget(everyone[11])  # not the optimistic one: nothing changes
        self.assertIs(choker.optimistic, everyone[3])
        choker.forget(everyone[3])
        self.assertIsNone(choker.optimistic)


class SeedingTests(unittest.TestCase):
    """Round robin while seeding: every interested peer gets its turn."""

    def test_a_thousand_peers_each_get_a_turn_within_one_rotation(self):
        everyone = [f"p{i:04d}" for i in range(1000)]
        choker = Choker(random.Random(5))
        ever = set()
        rounds = len(everyone) // UNCHOKE_SLOTS
        for step in range(rounds):
            unchoked = choker.rechoke_seeding(everyone, step * SEED_TURN)
            self.assertLessEqual(len(unchoked), UNCHOKE_SLOTS + 1)
            ever |= unchoked
        self.assertEqual(ever, set(everyone))

    def test_a_peer_keeps_its_slot_until_its_turn_ends(self):
        choker = Choker(random.Random(1))
        everyone = peers(40)
        first = choker.rechoke_seeding(everyone, 0.0) - {choker.optimistic}
        again = choker.rechoke_seeding(everyone, SEED_TURN / 2)
        self.assertTrue(first <= again)
        later = choker.rechoke_seeding(everyone, SEED_TURN)
        self.assertFalse(first & (later - {choker.optimistic}))

    def test_those_never_unchoked_come_before_those_who_had_a_turn(self):
        choker = Choker(random.Random(2))
        everyone = peers(20)
        for peer in everyone[:UNCHOKE_SLOTS + 1]:
            choker.took_slot(peer, 0.0)
        unchoked = choker.rechoke_seeding(everyone, SEED_TURN)
        regular = unchoked - {choker.optimistic}
        self.assertEqual(len(regular), UNCHOKE_SLOTS)
        self.assertTrue(regular <= set(everyone[UNCHOKE_SLOTS + 1:]))

    def test_a_forgotten_peer_loses_its_slot_and_its_place(self):
        choker = Choker(random.Random(3))
        everyone = peers(3)
        self.assertEqual(choker.rechoke_seeding(everyone, 0.0), set(everyone))
        choker.forget("p01")
        self.assertEqual(choker.rechoke_seeding(["p00", "p02"], 1.0), {"p00", "p02"})
        self.assertNotIn("p01", choker.rechoke_seeding(["p00", "p02"], 2.0))


class TimingTests(unittest.TestCase):
    def test_rechoke_is_due_every_interval(self):
        choker = Choker()
        self.assertTrue(choker.due(0.0))
        choker.rechoke([], by_number, 100.0)
        self.assertFalse(choker.due(100.0 + RECHOKE_INTERVAL - 0.01))
        self.assertTrue(choker.due(100.0 + RECHOKE_INTERVAL))

    def test_a_newly_interested_peer_is_unchoked_while_a_slot_is_free(self):
        choker = Choker()
        self.assertTrue(choker.has_room(UNCHOKE_SLOTS))       # the optimistic slot is free
        self.assertFalse(choker.has_room(UNCHOKE_SLOTS + 1))


if __name__ == "__main__":
    unittest.main()
