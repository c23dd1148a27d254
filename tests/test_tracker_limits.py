"""Tests of the tracker's per-address limits: address groups and token buckets."""

from __future__ import annotations

import unittest

from sta.tracker_limits import RateLimit, address_group
from tests.test_tracker import Clock


class AddressGroupTests(unittest.TestCase):
    def test_ipv4_address_is_its_own_group(self):
        self.assertEqual(address_group("192.168.88.114"), "192.168.88.114")

    def test_ipv6_addresses_of_one_64_are_one_group(self):
        self.assertEqual(address_group("2001:db8:1:2::1"), address_group("2001:db8:1:2:ffff::9"))
        self.assertNotEqual(address_group("2001:db8:1:2::1"), address_group("2001:db8:1:3::1"))
        self.assertEqual(address_group("2001:db8:1:2::1"), "2001:db8:1:2::/64")


class RateLimitTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def test_burst_then_one_token_per_refill_period(self):
        limit = RateLimit(3, 6, self.clock)  # one token every 10 s
        self.assertEqual([limit.allow("a") for _ in range(4)], [True, True, True, False])
        self.assertAlmostEqual(limit.wait_seconds("a"), 10.0)
        self.assertTrue(limit.allow("b"))
        self.clock.now += 10
        self.assertEqual([limit.allow("a"), limit.allow("a")], [True, False])

    def test_refill_never_exceeds_the_burst(self):
        limit = RateLimit(2, 60, self.clock)
        limit.allow("a")
        self.clock.now += 3600
        self.assertEqual([limit.allow("a") for _ in range(3)], [True, True, False])

    def test_least_recently_seen_key_is_forgotten_past_the_bound(self):
        limit = RateLimit(1, 1, self.clock, max_keys=2)
        for key in ("a", "b", "c"):
            self.assertTrue(limit.allow(key))
        self.assertTrue(limit.allow("a"))  # forgotten: a full bucket again
        self.assertFalse(limit.allow("c"))

    def test_a_limit_without_tokens_is_refused(self):
        with self.assertRaises(ValueError):
            RateLimit(0, 1, self.clock)


if __name__ == "__main__":
    unittest.main()
