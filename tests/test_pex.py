"""The ut_pex codec and per-peer state (pex.py), with byte strings and plain values."""

import unittest

from sta import bencode
from sta.pex import (FLAG_REACHABLE, FLAG_SEED, MAX_PEX_PAYLOAD, MAX_PEX_PEERS, PEX_INTERVAL,
                     PexError, PexState, decode, encode)


class CodecTests(unittest.TestCase):
    def test_ipv4_and_ipv6_peers_round_trip_with_their_flags(self):
        added = [(("10.0.0.1", 6881), FLAG_SEED), (("2001:db8::7", 51413), FLAG_REACHABLE)]
        dropped = [("10.0.0.9", 6882)]
        message = decode(encode(added, dropped))
        self.assertEqual(message.added, [("10.0.0.1", 6881), ("2001:db8::7", 51413)])
        self.assertEqual(message.flags, [FLAG_SEED, FLAG_REACHABLE])
        self.assertEqual(message.dropped, dropped)

    def test_the_compact_form_is_what_bep_11_says(self):
        payload = bencode.decode(encode([(("1.2.3.4", 0x1AE1), 0x10)], []))
        self.assertEqual(payload[b"added"], b"\x01\x02\x03\x04\x1a\xe1")
        self.assertEqual(payload[b"added.f"], b"\x10")

    def test_missing_flags_mean_zero_and_port_zero_is_dropped(self):
        payload = bencode.encode({b"added": b"\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x00"})
        message = decode(payload)
        self.assertEqual((message.added, message.flags), ([("10.0.0.1", 6881)], [0]))

    def test_malformed_messages_are_errors(self):
        for payload in (b"not bencode", bencode.encode([1]), bencode.encode({b"added": 5}),
                        bencode.encode({b"added": b"\x01\x02\x03"}),
                        bencode.encode({b"added": b"", b"added.f": 3}),
                        b"d5:added" + b"%d:" % MAX_PEX_PAYLOAD + bytes(MAX_PEX_PAYLOAD) + b"e"):
            with self.subTest(payload=payload[:20]), self.assertRaises(PexError):
                decode(payload)

    def test_at_most_fifty_peers_each_way(self):
        many = [("10.1.%d.%d" % divmod(n, 250), 6881) for n in range(MAX_PEX_PEERS + 20)]
        message = decode(encode([(a, 0) for a in many], many))
        self.assertEqual((len(message.added), len(message.dropped)),
                         (MAX_PEX_PEERS, MAX_PEX_PEERS))


class StateTests(unittest.TestCase):
    def test_first_message_tells_everyone_then_only_changes_a_minute_apart(self):
        state = PexState()
        current = {("10.0.0.1", 1): 0, ("10.0.0.2", 2): FLAG_SEED}
        added, dropped = state.update(current, 0.0)
        self.assertEqual((sorted(a for a, _ in added), dropped),
                         (sorted(current), []))
        del current[("10.0.0.1", 1)]
        current[("10.0.0.3", 3)] = 0
        self.assertEqual(state.update(current, PEX_INTERVAL - 1), ([], []))  # too soon
        added, dropped = state.update(current, PEX_INTERVAL)
        self.assertEqual((added, dropped), ([(("10.0.0.3", 3), 0)], [("10.0.0.1", 1)]))
        self.assertEqual(state.update(current, 3 * PEX_INTERVAL), ([], []))  # nothing new


if __name__ == "__main__":
    unittest.main()
