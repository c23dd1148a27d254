"""Tests of one swarm as the tracker keeps it: sampling, departures and its snapshot."""

from __future__ import annotations

import unittest

from sta.tracker_swarm import SwarmEntry, TrackedPeer, spread, swarm_stats


def peer(n: int, left: int = 100, uploaded: int = 0, downloaded: int = 0) -> TrackedPeer:
    return TrackedPeer(b"-SX0001-%012d" % n, "10.0.0.%d" % n, 7000 + n, uploaded, downloaded,
                       left, 1000.0, None, "10.0.0.%d" % n)


class SwarmEntryTests(unittest.TestCase):
    def test_spread_picks_distinct_peers_for_every_size(self):
        for size in range(1, 120):
            group = list(range(size))
            for count in (1, 2, 7, 50, size - 1, size, size + 3):
                picked = spread(group, count)
                self.assertEqual(len(picked), max(0, min(count, size)))
                self.assertEqual(len(set(picked)), len(picked))

    def test_sample_never_returns_the_requester_and_gives_a_seeder_only_leechers(self):
        swarm = SwarmEntry(b"h" * 20)
        peers = [peer(n, left=n % 2) for n in range(1, 40)]
        for p in peers:
            swarm.add(p)
        for p in peers:
            chosen = swarm.sample(p, 50)
            self.assertNotIn(p, chosen)
            if p.left == 0:
                self.assertTrue(all(c.left for c in chosen))

    def test_departed_peers_stay_in_the_totals(self):
        swarm = SwarmEntry(b"h" * 20)
        first, second = peer(1, uploaded=10, downloaded=20), peer(2, uploaded=5)
        swarm.add(first)
        swarm.add(second)
        swarm.remove(first)
        stats = swarm_stats(swarm, None, None, 10, 1000.0)
        self.assertEqual((stats["uploaded"], stats["downloaded"]), (15, 20))
        self.assertEqual(len(stats["peers"]), 1)

    def test_snapshot_lists_peers_in_join_order_without_peer_ids(self):
        swarm = SwarmEntry(b"h" * 20)
        for n in (5, 2, 9):
            swarm.add(peer(n))
        swarm.set_left(swarm.peers[b"-SX0001-%012d" % 2], 0)  # changes side, not place
        stats = swarm_stats(swarm, "a.bin", 100, 2, 1040.0)
        self.assertEqual([p["port"] for p in stats["peers"]], [7005, 7002])
        self.assertEqual(stats["peers_shown"], 2)
        self.assertTrue(all("peer_id" not in p for p in stats["peers"]))
        self.assertEqual(stats["peers"][0]["last_seen_ago"], 40.0)


if __name__ == "__main__":
    unittest.main()
