"""The BEP 14 codec, announce schedule and datagram gate (lsd.py), with byte strings and a
clock the test moves."""

import unittest

from sta.lsd import (ALL_BURST, ANNOUNCE_INTERVAL, MAX_DATAGRAM, MAX_INFOHASHES, SEND_BURST,
                     SEND_REFILL, SOURCE_BURST, SOURCE_REFILL, AnnounceSchedule, DatagramGate,
                     LsdError, TokenBucket, decode_announce, encode_announce, make_cookie,
                     peer_host)

H1 = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
H2 = bytes(range(20))

# What libtorrent 2.0 sends (lsd.cpp's render_lsd_packet), byte for byte.
LIBTORRENT = (b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n"
              b"Infohash: 0123456789ABCDEF0123456789ABCDEF01234567\r\ncookie: 1a2b3c\r\n\r\n\r\n")
# What Transmission sends (tr-lpd.cc): no cookie.
TRANSMISSION = (b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51413\r\n"
                b"Infohash: 0123456789ABCDEF0123456789ABCDEF01234567\r\n\r\n\r\n")


class CodecTests(unittest.TestCase):
    def test_an_announce_is_what_bep_14_shows(self):
        self.assertEqual(encode_announce([H1], 6881, "5f3a09c1"),
                         b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n"
                         b"Infohash: 0123456789abcdef0123456789abcdef01234567\r\n"
                         b"cookie: 5f3a09c1\r\n\r\n\r\n")

    def test_the_ipv6_announce_names_the_ipv6_group_in_brackets(self):
        self.assertIn(b"\r\nHost: [ff15::efc0:988f]:6771\r\n",
                      encode_announce([H1], 6881, "c", ipv6=True))

    def test_one_announce_is_short_enough_for_transmission(self):
        # Transmission reads at most 200 bytes (lpd_maxDatagramLength).
        self.assertLessEqual(len(encode_announce([H1], 65535, make_cookie(0xFFFFFFFF), True)),
                             200)

    def test_round_trip_with_several_info_hashes(self):
        announce = decode_announce(encode_announce([H1, H2], 51413, "abc"))
        self.assertEqual((announce.port, announce.info_hashes, announce.cookie),
                         (51413, (H1, H2), "abc"))

    def test_libtorrent_and_transmission_announces_are_read(self):
        self.assertEqual(decode_announce(LIBTORRENT).info_hashes, (H1,))
        self.assertEqual(decode_announce(LIBTORRENT).cookie, "1a2b3c")
        self.assertEqual((decode_announce(TRANSMISSION).port,
                          decode_announce(TRANSMISSION).cookie), (51413, ""))

    def test_header_names_are_case_blind_and_unknown_headers_ignored(self):
        data = (b"bt-search * HTTP/1.1\r\nPORT: 7000\r\nX-New: whatever\r\n"
                b"infohash: " + H1.hex().encode() + b"\r\n\r\n")
        self.assertEqual(decode_announce(data).port, 7000)

    def test_bare_line_feeds_are_accepted(self):
        self.assertEqual(decode_announce(LIBTORRENT.replace(b"\r\n", b"\n")).info_hashes, (H1,))

    def test_bad_info_hashes_are_skipped_and_duplicates_merged(self):
        data = LIBTORRENT.replace(b"cookie", b"Infohash: xyz\r\nInfohash: " + b"0" * 40
                                  + b"\r\nInfohash: " + H1.hex().encode() + b"\r\ncookie")
        self.assertEqual(decode_announce(data).info_hashes, (H1,))

    def test_at_most_so_many_info_hashes_are_read(self):
        hashes = [bytes([n]) * 20 for n in range(1, MAX_INFOHASHES + 2)]
        lines = b"".join(b"infohash:%s\n" % h.hex().encode() for h in hashes)
        data = b"BT-SEARCH * HTTP/1.1\nPort:1\n" + lines + b"\n"
        self.assertLessEqual(len(data), MAX_DATAGRAM)
        self.assertEqual(len(decode_announce(data).info_hashes), MAX_INFOHASHES)

    def test_malformed_datagrams_are_errors(self):
        cases = {
            "empty": b"",
            "other method": LIBTORRENT.replace(b"BT-SEARCH", b"M-SEARCH"),
            "HTTP/2": LIBTORRENT.replace(b"HTTP/1.1", b"HTTP/2.0"),
            "no end of headers": LIBTORRENT[:-4],
            "no port": LIBTORRENT.replace(b"Port: 6881\r\n", b""),
            "port zero": LIBTORRENT.replace(b"6881", b"0"),
            "port too big": LIBTORRENT.replace(b"6881", b"65536"),
            "port not decimal": LIBTORRENT.replace(b"6881", b"0x1ae1"),
            "no info hash": LIBTORRENT.replace(b"Infohash", b"Otherhash"),
            "short info hash": LIBTORRENT.replace(b"01234567\r\n", b"\r\n"),
            "header without colon": LIBTORRENT.replace(b"cookie: 1a2b3c", b"garbage"),
            "not ASCII": LIBTORRENT.replace(b"1a2b3c", b"\xff\xfe"),
            "too long": LIBTORRENT[:-4] + b"X: " + b"a" * MAX_DATAGRAM + b"\r\n\r\n",
            "too many headers": LIBTORRENT[:-4] + b"X: 1\r\n" * 60 + b"\r\n",
        }
        for name, data in cases.items():
            with self.subTest(name), self.assertRaises(LsdError):
                decode_announce(data)

    def test_encoder_refuses_what_it_cannot_send(self):
        for hashes, port in (([], 1), ([b"short"], 1), ([H1], 0), ([H1], 70000),
                             ([bytes([n]) * 20 for n in range(40)], 1)):
            with self.subTest(port=port, count=len(hashes)), self.assertRaises(LsdError):
                encode_announce(hashes, port, "c")

    def test_cookies_are_hex_as_libtorrent_sends_them(self):
        self.assertEqual(make_cookie(0x1A2B3C), "1a2b3c")
        self.assertEqual(make_cookie(1 << 40 | 5), "5")


class ScheduleTests(unittest.TestCase):
    def test_a_torrent_is_announced_at_once_and_then_every_five_minutes(self):
        schedule = AnnounceSchedule(now=0.0)
        schedule.add(H1, 10.0)
        self.assertEqual(schedule.due(10.0), [H1])
        self.assertEqual(schedule.due(10.0 + ANNOUNCE_INTERVAL - 1), [])
        self.assertEqual(schedule.due(10.0 + ANNOUNCE_INTERVAL), [H1])

    def test_a_burst_of_five_then_one_a_minute_longest_waiting_first(self):
        schedule = AnnounceSchedule(now=0.0)
        hashes = [bytes([n]) * 20 for n in range(SEND_BURST + 2)]
        for n, h in enumerate(hashes):
            schedule.add(h, n * 0.001)
        self.assertEqual(schedule.due(1.0), hashes[:SEND_BURST])
        self.assertEqual(schedule.due(1.0 + SEND_REFILL / 2), [])
        self.assertEqual(schedule.due(1.0 + SEND_REFILL), [hashes[SEND_BURST]])
        self.assertEqual(schedule.due(1.0 + 2 * SEND_REFILL), [hashes[SEND_BURST + 1]])

    def test_the_rate_bound_holds_for_any_number_of_torrents(self):
        schedule = AnnounceSchedule(now=0.0)
        for n in range(100):
            schedule.add(n.to_bytes(20, "big"), 0.0)
        sent = sum(len(schedule.due(t * 1.0)) for t in range(3600))
        self.assertLessEqual(sent, SEND_BURST + 3600 / SEND_REFILL)

    def test_an_ineligible_torrent_stays_due_and_costs_nothing(self):
        schedule = AnnounceSchedule(now=0.0)
        schedule.add(H1, 0.0)
        schedule.add(H2, 0.0)
        self.assertEqual(schedule.due(1.0, eligible=lambda h: h != H1), [H2])
        self.assertEqual(schedule.due(2.0), [H1])   # resumed: announced at once
        self.assertEqual(schedule.limit.available(2.0), SEND_BURST - 2)

    def test_a_removed_torrent_is_not_announced(self):
        schedule = AnnounceSchedule(now=0.0)
        schedule.add(H1, 0.0)
        schedule.remove(H1)
        schedule.remove(H1)   # twice is harmless
        self.assertEqual((schedule.due(1.0), len(schedule), H1 in schedule), ([], 0, False))


class GateTests(unittest.TestCase):
    def test_rate_limit_refills_to_its_burst_and_no_further(self):
        limit = TokenBucket(2, 10.0, now=0.0)
        self.assertEqual([limit.allow(0.0) for _ in range(3)], [True, True, False])
        self.assertTrue(limit.allow(10.0))
        self.assertEqual(limit.available(1000.0), 2)

    def test_one_sender_is_held_to_its_rate_without_hurting_another(self):
        gate = DatagramGate(now=0.0)
        flood = [gate.allow("10.0.0.9", 0.0) for _ in range(SOURCE_BURST + 5)]
        self.assertEqual(flood.count(True), SOURCE_BURST)
        self.assertTrue(gate.allow("10.0.0.2", 0.0))
        self.assertTrue(gate.allow("10.0.0.9", SOURCE_REFILL))
        self.assertEqual(gate.dropped, 5)

    def test_all_senders_together_are_bounded(self):
        gate = DatagramGate(now=0.0)
        allowed = sum(gate.allow("10.0.%d.%d" % divmod(n, 250), 0.0) for n in range(500))
        self.assertEqual(allowed, ALL_BURST)

    def test_the_senders_remembered_are_bounded(self):
        gate = DatagramGate(now=0.0, max_sources=4)
        for n in range(10):
            gate.allow("10.0.0.%d" % n, 0.0)
        self.assertEqual(len(gate._sources), 4)


class PeerHostTests(unittest.TestCase):
    def test_usable_source_addresses(self):
        self.assertEqual(peer_host(("10.0.0.2", 6771)), "10.0.0.2")
        self.assertEqual(peer_host(("fd00::2", 6771, 0, 0)), "fd00::2")

    def test_addresses_that_cannot_be_dialled_are_refused(self):
        for host in ("0.0.0.0", "::", "239.192.152.143", "fe80::1", "fe80::1%eth0", "junk"):
            with self.subTest(host):
                self.assertIsNone(peer_host((host, 6771)))


if __name__ == "__main__":
    unittest.main()
