"""bench/peer_load.py's --source addresses: one address, or a FIRST-LAST range."""

from __future__ import annotations

import unittest

from bench import peer_load


class SourceAddressTests(unittest.TestCase):
    def test_one_address_is_itself(self) -> None:
        self.assertEqual(peer_load.source_addresses("10.77.1.10"), ["10.77.1.10"])

    def test_range_includes_both_ends_and_crosses_octets(self) -> None:
        addresses = peer_load.source_addresses("10.77.1.254-10.77.2.1")
        self.assertEqual(addresses, ["10.77.1.254", "10.77.1.255", "10.77.2.0", "10.77.2.1"])

    def test_range_backwards_is_refused(self) -> None:
        with self.assertRaises(peer_load.LoadError):
            peer_load.source_addresses("10.77.1.20-10.77.1.10")

    def test_text_that_is_no_address_is_refused(self) -> None:
        with self.assertRaises(peer_load.LoadError):
            peer_load.source_addresses("10.77.1.x")

    def test_range_larger_than_the_limit_is_refused(self) -> None:
        with self.assertRaises(peer_load.LoadError):
            peer_load.source_addresses("10.0.0.0-10.9.0.0")


if __name__ == "__main__":
    unittest.main()
