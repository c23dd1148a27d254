"""Tokens, announced peers and query budgets of a DHT node, with the clock as a number."""

from __future__ import annotations

import itertools
import random
import unittest

from sta.dht_store import (PEER_LIFETIME, TOKEN_ROTATION, PeerStore, QueryBudget,
                           TokenKeeper)


def counting_secrets():
    counter = itertools.count()
    return lambda size: next(counter).to_bytes(size, "big")


class TokenTests(unittest.TestCase):
    def setUp(self) -> None:
        self.keeper = TokenKeeper(0.0, counting_secrets())

    def test_token_is_accepted_from_the_same_ip_only(self) -> None:
        token = self.keeper.token_for("10.0.0.1", 1.0)
        self.assertTrue(self.keeper.check(token, "10.0.0.1", 2.0))
        self.assertFalse(self.keeper.check(token, "10.0.0.2", 2.0))
        self.assertFalse(self.keeper.check(b"", "10.0.0.1", 2.0))

    def test_token_survives_one_rotation_not_two(self) -> None:
        token = self.keeper.token_for("10.0.0.1", 1.0)
        self.assertTrue(self.keeper.check(token, "10.0.0.1", TOKEN_ROTATION + 1))
        self.assertFalse(self.keeper.check(token, "10.0.0.1", 2 * TOKEN_ROTATION + 2))

    def test_token_after_a_long_silence_is_refused(self) -> None:
        token = self.keeper.token_for("10.0.0.1", 1.0)
        self.assertFalse(self.keeper.check(token, "10.0.0.1", 10 * TOKEN_ROTATION))


class PeerStoreTests(unittest.TestCase):
    def test_announced_peer_is_returned_until_it_expires(self) -> None:
        store = PeerStore()
        store.add(b"h" * 20, ("10.0.0.1", 6881), 0.0)
        rng = random.Random(1)
        self.assertEqual(store.peers(b"h" * 20, 1.0, rng), [("10.0.0.1", 6881)])
        self.assertEqual(store.peers(b"h" * 20, PEER_LIFETIME, rng), [])
        self.assertEqual(len(store), 0)

    def test_reannounce_keeps_a_peer_alive(self) -> None:
        store = PeerStore()
        store.add(b"h" * 20, ("10.0.0.1", 1), 0.0)
        store.add(b"h" * 20, ("10.0.0.2", 2), 10.0)
        store.add(b"h" * 20, ("10.0.0.1", 1), PEER_LIFETIME - 5)
        store.expire(PEER_LIFETIME + 11)
        self.assertEqual(store.peers(b"h" * 20, PEER_LIFETIME + 11, random.Random(1)),
                         [("10.0.0.1", 1)])

    def test_peers_and_hashes_are_bounded(self) -> None:
        store = PeerStore(max_hashes=3, max_peers=5)
        for i in range(10):
            store.add(bytes([i]) * 20, ("10.0.0.1", i + 1), float(i))
            store.add(b"z" * 20, ("10.0.1.%d" % (i + 1), 1), float(i))
        self.assertEqual(len(store), 3)
        peers = store.peers(b"z" * 20, 10.0, random.Random(1))
        self.assertEqual(set(peers), {("10.0.1.%d" % i, 1) for i in range(6, 11)})

    def test_answer_is_a_bounded_sample(self) -> None:
        store = PeerStore()
        for i in range(300):
            store.add(b"h" * 20, ("10.0.%d.%d" % (i // 250, i % 250 + 1), 1), 0.0)
        self.assertEqual(len(store.peers(b"h" * 20, 1.0, random.Random(1), limit=100)), 100)


class QueryBudgetTests(unittest.TestCase):
    def test_address_over_budget_is_refused_until_the_window_ends(self) -> None:
        budget = QueryBudget(per_window=3, window=10.0)
        address = ("10.0.0.1", 1)
        self.assertEqual([budget.allow(address, 0.0) for _ in range(4)],
                         [True, True, True, False])
        self.assertTrue(budget.allow(("10.0.0.1", 2), 0.0))
        self.assertTrue(budget.allow(address, 10.0))

    def test_tracked_addresses_are_bounded(self) -> None:
        budget = QueryBudget(max_tracked=10)
        for i in range(100):
            budget.allow(("10.0.0.1", i + 1), 0.0)
        self.assertEqual(len(budget.tracked()), 10)


if __name__ == "__main__":
    unittest.main()
