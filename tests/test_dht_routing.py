"""The DHT routing table: buckets, splits, BEP 5's node states and refresh, with plain values."""

from __future__ import annotations

import random
import unittest

from sta.dht_routing import (FAILURES_TO_BAD, GOOD_FOR, K, REFRESH_AFTER, RoutingError,
                             RoutingTable, distance)

OWN = bytes(20)  # our id: all zeros, so ids starting with a 1 bit are in the far half


def node_id(first: int, last: int = 0) -> bytes:
    return bytes([first]) + bytes(18) + bytes([last])


def address(n: int) -> tuple:
    return ("10.0.%d.%d" % (n // 250, n % 250 + 1), 6881)


class RoutingTableTests(unittest.TestCase):
    def setUp(self) -> None:
        self.table = RoutingTable(OWN, now=0.0)

    def test_distance_is_xor(self) -> None:
        self.assertEqual(distance(node_id(0x80), OWN), 0x80 << 152)
        self.assertEqual(distance(OWN, OWN), 0)

    def test_node_that_queried_us_is_questionable_until_it_answers(self) -> None:
        self.table.heard_from(node_id(0x80), address(1), 10.0, answered=False)
        entry = self.table.find(node_id(0x80))
        self.assertEqual(entry.state(10.0), "questionable")
        self.table.heard_from(node_id(0x80), address(1), 20.0, answered=True)
        self.assertEqual(entry.state(20.0), "good")

    def test_good_node_turns_questionable_after_15_minutes(self) -> None:
        self.table.heard_from(node_id(0x80), address(1), 0.0, answered=True)
        entry = self.table.find(node_id(0x80))
        self.assertEqual(entry.state(GOOD_FOR - 1), "good")
        self.assertEqual(entry.state(GOOD_FOR), "questionable")

    def test_node_that_answered_once_stays_good_while_it_keeps_querying(self) -> None:
        self.table.heard_from(node_id(0x80), address(1), 0.0, answered=True)
        self.table.heard_from(node_id(0x80), address(1), GOOD_FOR + 5, answered=False)
        self.assertEqual(self.table.find(node_id(0x80)).state(GOOD_FOR + 10), "good")

    def test_node_is_bad_after_repeated_failures(self) -> None:
        self.table.heard_from(node_id(0x80), address(1), 0.0, answered=True)
        for _ in range(FAILURES_TO_BAD):
            self.table.failed(node_id(0x80), 1.0)
        self.assertEqual(self.table.find(node_id(0x80)).state(1.0), "bad")
        self.assertEqual(self.table.closest(node_id(0x80), now=1.0), [])

    def test_own_id_never_enters(self) -> None:
        self.table.heard_from(OWN, address(1), 0.0, answered=True)
        self.assertEqual(len(self.table), 0)

    def test_bad_id_is_refused(self) -> None:
        with self.assertRaises(RoutingError):
            self.table.heard_from(b"short", address(1), 0.0, answered=True)

    def test_bucket_holding_our_id_splits_when_full(self) -> None:
        for i in range(K + 1):
            self.table.heard_from(node_id(0x80 >> (i % 2), i), address(i), 0.0, answered=True)
        self.assertEqual(len(self.table), K + 1)
        self.assertGreater(self.table.bucket_count(), 1)

    def test_far_bucket_when_full_of_good_nodes_drops_newcomers(self) -> None:
        for i in range(K):
            self.table.heard_from(node_id(0x80, i), address(i), 0.0, answered=True)
        self.table.heard_from(node_id(0x01), address(99), 0.0, answered=True)  # forces a split
        self.assertIsNone(self.table.heard_from(node_id(0x90, 1), address(50), 1.0, True))
        self.assertIsNone(self.table.find(node_id(0x90, 1)))

    def test_full_bucket_asks_to_ping_its_stalest_questionable_node(self) -> None:
        for i in range(K):
            self.table.heard_from(node_id(0x80, i), address(i), float(i), answered=True)
        self.table.heard_from(node_id(0x01), address(99), 0.0, answered=True)
        now = GOOD_FOR + 100
        to_ping = self.table.heard_from(node_id(0x90, 1), address(50), now, answered=True)
        self.assertEqual(to_ping.node_id, node_id(0x80, 0))
        # it never answers: once bad, the newcomer waiting in the replacement cache takes over
        for _ in range(FAILURES_TO_BAD):
            self.table.failed(node_id(0x80, 0), now)
        self.assertIsNone(self.table.find(node_id(0x80, 0)))
        self.assertIsNotNone(self.table.find(node_id(0x90, 1)))

    def test_bad_node_is_replaced_by_a_newcomer(self) -> None:
        for i in range(K):
            self.table.heard_from(node_id(0x80, i), address(i), 0.0, answered=True)
        self.table.heard_from(node_id(0x01), address(99), 0.0, answered=True)
        for _ in range(FAILURES_TO_BAD):
            self.table.failed(node_id(0x80, 3), 1.0)
        self.table.heard_from(node_id(0x90, 1), address(50), 2.0, answered=True)
        self.assertIsNone(self.table.find(node_id(0x80, 3)))
        self.assertIsNotNone(self.table.find(node_id(0x90, 1)))

    def test_another_id_at_a_live_nodes_address_is_ignored(self) -> None:
        self.table.heard_from(node_id(0x80), address(1), 0.0, answered=True)
        self.table.heard_from(node_id(0x81), address(1), 1.0, answered=True)
        self.assertIsNone(self.table.find(node_id(0x81)))
        self.assertIsNotNone(self.table.find(node_id(0x80)))

    def test_closest_sorts_by_xor_distance(self) -> None:
        for i, first in enumerate((0x80, 0x40, 0x20, 0xC0)):
            self.table.heard_from(node_id(first), address(i), 0.0, answered=True)
        found = [e.node_id[0] for e in self.table.closest(node_id(0xC1), 3)]
        self.assertEqual(found, [0xC0, 0x80, 0x40])

    def test_stale_buckets_are_due_a_refresh_inside_their_range(self) -> None:
        for i in range(K + 2):
            self.table.heard_from(node_id(i * 16 + 1, i), address(i), 0.0, answered=True)
        rng = random.Random(1)
        self.assertEqual(self.table.refresh_targets(REFRESH_AFTER - 1, rng), [])
        targets = self.table.refresh_targets(REFRESH_AFTER, rng)
        self.assertEqual(len(targets), self.table.bucket_count())
        for target in targets:
            self.table.refreshed(target, REFRESH_AFTER)
        self.assertEqual(self.table.refresh_targets(REFRESH_AFTER + 1, rng), [])

    def test_saved_nodes_come_back_questionable(self) -> None:
        self.table.add_all([(node_id(0x80), address(1)), (OWN, address(2)),
                            (b"bad", address(3))], 0.0)
        self.assertEqual(len(self.table), 1)
        self.assertEqual(self.table.counts(0.0), {"good": 0, "questionable": 1, "bad": 0})
        self.assertEqual([e.node_id for e in self.table.questionable(0.0)], [node_id(0x80)])

    def test_many_random_nodes_stay_bounded_per_bucket(self) -> None:
        rng = random.Random(7)
        for i in range(2000):
            self.table.heard_from(rng.randbytes(20) if hasattr(rng, "randbytes")
                                  else bytes(rng.randrange(256) for _ in range(20)),
                                  address(i), 0.0, answered=True)
        self.assertLessEqual(len(self.table), K * self.table.bucket_count())
        self.assertLessEqual(self.table.bucket_count(), 161)


if __name__ == "__main__":
    unittest.main()
