"""One iterative lookup as pure data: alpha in flight, nearer nodes first, a bounded end."""

from __future__ import annotations

import unittest

from sta.dht_lookup import ALPHA, MAX_CANDIDATES, Lookup
from sta.krpc import NodeInfo

TARGET = bytes(20)


def node(first: int, n: int = 0) -> NodeInfo:
    return NodeInfo(bytes([first]) + bytes(18) + bytes([n]), "10.0.0.%d" % (n + 1),
                    1000 + first)


class LookupTests(unittest.TestCase):
    def test_never_more_than_alpha_in_flight(self) -> None:
        lookup = Lookup(TARGET)
        lookup.add_candidates(node(i) for i in range(1, 20))
        first = lookup.next_queries()
        self.assertEqual(len(first), ALPHA)
        self.assertEqual(lookup.next_queries(), [])
        lookup.failed(first[0])
        self.assertEqual(len(lookup.next_queries()), 1)

    def test_nearest_candidates_are_asked_first(self) -> None:
        lookup = Lookup(TARGET)
        lookup.add_candidates([node(0x80), node(0x01), node(0x40), node(0x02)])
        self.assertEqual([n.node_id[0] for n in lookup.next_queries()], [0x01, 0x02, 0x40])

    def test_answers_bring_nearer_nodes_and_the_lookup_converges(self) -> None:
        lookup = Lookup(TARGET, k=2)
        lookup.add_candidates([node(0x80), node(0x40)])
        for asked in lookup.next_queries():
            lookup.answered(asked, nodes=[node(0x03), node(0x04)])
        self.assertFalse(lookup.done)
        for asked in lookup.next_queries():
            lookup.answered(asked, values=[("1.2.3.4", 5)], token=b"t" + asked.node_id[:1])
        self.assertTrue(lookup.done)
        self.assertEqual([n.node_id[0] for n in lookup.closest_answered()], [0x03, 0x04])
        self.assertEqual(lookup.peers, [("1.2.3.4", 5)])
        self.assertEqual([t for _, t in lookup.announce_targets()], [b"t\x03", b"t\x04"])

    def test_failed_nodes_drop_out_and_the_next_ones_are_asked(self) -> None:
        lookup = Lookup(TARGET, k=1, alpha=1)
        lookup.add_candidates([node(0x01), node(0x02)])
        first = lookup.next_queries()
        lookup.failed(first[0])
        second = lookup.next_queries()
        self.assertEqual(second[0].node_id[0], 0x02)
        lookup.answered(second[0])
        self.assertTrue(lookup.done)

    def test_a_slow_node_frees_its_slot_and_its_late_answer_still_counts(self) -> None:
        lookup = Lookup(TARGET, k=1, alpha=1)
        lookup.add_candidates([node(0x01), node(0x02)])
        first = lookup.next_queries()[0]
        self.assertEqual(lookup.next_queries(), [])
        lookup.slow(first)
        second = lookup.next_queries()[0]
        self.assertEqual(second.node_id[0], 0x02)
        lookup.answered(second)
        self.assertTrue(lookup.done)  # the slow one is not waited for
        lookup.answered(first, values=[("1.2.3.4", 5)])
        self.assertEqual([n.node_id[0] for n in lookup.closest_answered()], [0x01])
        self.assertEqual(lookup.peers, [("1.2.3.4", 5)])

    def test_lookup_with_no_candidates_is_done(self) -> None:
        self.assertTrue(Lookup(TARGET).done)

    def test_endless_fresh_nodes_cannot_keep_it_running(self) -> None:
        lookup = Lookup(TARGET, max_queries=30)
        lookup.add_candidates([node(0xFF)])
        counter = 0
        for _ in range(1000):
            batch = lookup.next_queries()
            if not batch:
                break
            for asked in batch:
                fresh = []
                for _ in range(8):  # each answer names ever nearer, never-seen nodes
                    counter += 1
                    nearer = ((1 << 159) // counter).to_bytes(20, "big")
                    fresh.append(NodeInfo(nearer, "10.1.%d.%d"
                                          % (counter // 250 % 250, counter % 250 + 1), 7))
                lookup.answered(asked, nodes=fresh)
        self.assertTrue(lookup.done)
        self.assertEqual(lookup.queries_sent, 30)

    def test_candidates_and_peers_are_bounded(self) -> None:
        lookup = Lookup(TARGET, max_peers=10)
        lookup.add_candidates(NodeInfo(bytes([i % 256, i // 256]) + bytes(18), "10.2.%d.%d"
                                       % (i // 250, i % 250 + 1), 9) for i in range(1, 600))
        self.assertLessEqual(len(lookup._candidates), MAX_CANDIDATES)
        asked = lookup.next_queries()[0]
        lookup.answered(asked, values=[("10.9.0.%d" % i, 80) for i in range(1, 100)])
        self.assertEqual(len(lookup.peers), 10)

    def test_bootstrap_stand_in_takes_the_id_it_answers_with(self) -> None:
        lookup = Lookup(TARGET, k=1)
        stand_in = NodeInfo(TARGET, "10.0.0.9", 6881)
        lookup.add_candidates([stand_in])
        self.assertEqual(lookup.next_queries(), [stand_in])
        real = NodeInfo(b"\x55" * 20, "10.0.0.9", 6881)
        lookup.answered(real, token=b"x")
        self.assertEqual(lookup.announce_targets(), [(real, b"x")])


if __name__ == "__main__":
    unittest.main()
