"""The BEP 15 codec, with byte strings: every packet both ways, truncated and oversized input,
wrong actions and transaction ids, and the connection id mint."""

from __future__ import annotations

import struct
import unittest

from sta import udptrackerproto as P
from sta.trackerproto import TrackerError

IH = bytes(range(1, 21))
PID = b"-ST0001-abcdefghijkl"
TID = 0x01020304
CID = 0x1122334455667788


def announce_bytes(**overrides) -> bytes:
    fields = dict(info_hash=IH, peer_id=PID, downloaded=5, left=6, uploaded=7, event="started",
                  key=0xDEADBEEF, num_want=50, port=6881)
    fields.update(overrides)
    return P.announce_request(CID, TID, **fields)


class ClientPacketTests(unittest.TestCase):
    def test_connect_request_is_the_magic_action_and_transaction(self):
        self.assertEqual(P.connect_request(TID),
                         bytes.fromhex("0000041727101980") + b"\0\0\0\0" + b"\x01\x02\x03\x04")

    def test_announce_request_lays_out_the_98_bytes_of_bep_15(self):
        packet = announce_bytes()
        self.assertEqual(len(packet), 98)
        self.assertEqual(packet[:16], struct.pack(">QII", CID, 1, TID))
        self.assertEqual(packet[16:36], IH)
        self.assertEqual(packet[36:56], PID)
        self.assertEqual(struct.unpack(">QQQIIIiH", packet[56:]),
                         (5, 6, 7, 2, 0, 0xDEADBEEF, 50, 6881))

    def test_announce_events_have_their_bep_15_codes(self):
        for event, code in ((None, 0), ("completed", 1), ("started", 2), ("stopped", 3)):
            self.assertEqual(struct.unpack_from(">I", announce_bytes(event=event), 80)[0], code)

    def test_announce_num_want_below_minus_one_is_sent_as_minus_one(self):
        self.assertEqual(struct.unpack_from(">i", announce_bytes(num_want=-9), 92)[0], -1)

    def test_announce_refuses_bad_values(self):
        for bad in (dict(info_hash=b"x"), dict(port=70000), dict(left=-1), dict(event="x")):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                announce_bytes(**bad)

    def test_announce_carries_a_passkey_path_as_bep_41_url_data(self):
        packet = announce_bytes(request_path=b"/announce?passkey=abc")
        self.assertEqual(packet[98:], b"\x02\x15/announce?passkey=abc\x00")

    def test_long_url_data_is_split_into_options_of_255_bytes(self):
        options = P.url_data(b"a" * 300)
        self.assertEqual(options[:2], b"\x02\xff")
        self.assertEqual(options[257:259], b"\x02\x2d")
        self.assertEqual(options[-1:], b"\x00")
        self.assertEqual(len(P.url_data(b"a" * 5000)), 4 * 257 + 1)
        self.assertEqual(P.url_data(b""), b"")

    def test_scrape_request_lists_the_hashes(self):
        packet = P.scrape_request(CID, TID, [IH, b"\xff" * 20])
        self.assertEqual(packet, struct.pack(">QII", CID, 2, TID) + IH + b"\xff" * 20)

    def test_scrape_request_is_bounded(self):
        with self.assertRaises(ValueError):
            P.scrape_request(CID, TID, [])
        with self.assertRaises(ValueError):
            P.scrape_request(CID, TID, [IH] * (P.MAX_SCRAPE_HASHES + 1))

    def test_retry_schedule_is_15_times_two_to_the_n_and_bounded(self):
        self.assertEqual(P.RETRY_DELAYS, (15.0, 30.0))
        self.assertEqual(len(P.RETRY_DELAYS), P.MAX_SENDS)


class ResponseTests(unittest.TestCase):
    def test_connect_answer_gives_the_connection_id(self):
        data = struct.pack(">IIQ", 0, TID, CID)
        self.assertEqual(P.read_response(data, TID, P.CONNECT), CID)

    def test_truncated_connect_answer_is_an_error(self):
        with self.assertRaises(P.UdpTrackerError):
            P.read_response(struct.pack(">IIQ", 0, TID, CID)[:12], TID, P.CONNECT)

    def test_announce_answer_gives_counts_and_peers(self):
        data = struct.pack(">IIIII", 1, TID, 1800, 3, 2) + bytes([10, 0, 0, 1, 0x1A, 0xE1]) + \
            bytes([10, 0, 0, 2, 0, 80])
        answer = P.read_response(data, TID, P.ANNOUNCE)
        self.assertEqual(answer.interval, 1800)
        self.assertEqual((answer.complete, answer.incomplete), (2, 3))
        self.assertEqual(answer.peers, [("10.0.0.1", 6881), ("10.0.0.2", 80)])

    def test_announce_answer_over_ipv6_has_18_byte_peers(self):
        peer = bytes(15) + b"\x01" + b"\x1a\xe1"
        data = struct.pack(">IIIII", 1, TID, 60, 0, 1) + peer
        self.assertEqual(P.read_response(data, TID, P.ANNOUNCE, ipv6=True).peers,
                         [("::1", 6881)])

    def test_announce_answer_with_a_partial_peer_is_an_error(self):
        data = struct.pack(">IIIII", 1, TID, 60, 0, 1) + b"\x01\x02\x03"
        with self.assertRaises(P.UdpTrackerError):
            P.read_response(data, TID, P.ANNOUNCE)

    def test_truncated_announce_answer_is_an_error(self):
        with self.assertRaises(P.UdpTrackerError):
            P.read_response(struct.pack(">IIII", 1, TID, 60, 0), TID, P.ANNOUNCE)

    def test_scrape_answer_gives_a_triple_per_hash(self):
        data = struct.pack(">II", 2, TID) + struct.pack(">III", 5, 9, 3) + \
            struct.pack(">III", 0, 0, 0)
        self.assertEqual(P.read_response(data, TID, P.SCRAPE, scraped=2),
                         [(5, 9, 3), (0, 0, 0)])

    def test_short_scrape_answer_is_an_error(self):
        data = struct.pack(">II", 2, TID) + struct.pack(">III", 5, 9, 3)
        with self.assertRaises(P.UdpTrackerError):
            P.read_response(data, TID, P.SCRAPE, scraped=2)

    def test_error_answer_raises_with_the_trackers_text(self):
        data = struct.pack(">II", 3, TID) + b"unregistered torrent\x00\n"
        with self.assertRaises(TrackerError) as ctx:
            P.read_response(data, TID, P.ANNOUNCE)
        self.assertEqual(ctx.exception.failure_reason, "unregistered torrent")
        self.assertEqual(str(ctx.exception), "failure reason: unregistered torrent")

    def test_error_text_is_bounded(self):
        data = struct.pack(">II", 3, TID) + b"x" * 100000
        with self.assertRaises(TrackerError) as ctx:
            P.read_response(data, TID, P.CONNECT)
        self.assertLessEqual(len(ctx.exception.failure_reason), 300)

    def test_wrong_transaction_id_is_not_our_answer(self):
        self.assertIsNone(P.read_response(struct.pack(">IIQ", 0, TID + 1, CID), TID, P.CONNECT))
        self.assertIsNone(P.read_response(struct.pack(">II", 3, TID + 1) + b"no", TID,
                                          P.CONNECT))

    def test_wrong_action_is_not_our_answer(self):
        self.assertIsNone(P.read_response(struct.pack(">IIQ", 0, TID, CID), TID, P.ANNOUNCE))
        self.assertIsNone(P.read_response(struct.pack(">II", 9, TID), TID, P.ANNOUNCE))

    def test_datagram_shorter_than_a_header_is_ignored(self):
        self.assertIsNone(P.read_response(b"\0\0\0", TID, P.CONNECT))


class RequestParsingTests(unittest.TestCase):
    def test_connect_request_round_trips(self):
        self.assertEqual(P.parse_request(P.connect_request(TID)), P.ConnectRequest(TID))

    def test_connect_without_the_protocol_id_is_refused(self):
        with self.assertRaises(P.UdpTrackerError):
            P.parse_request(struct.pack(">QII", 1234, 0, TID))

    def test_announce_request_round_trips(self):
        request = P.parse_request(announce_bytes(event="stopped"))
        self.assertEqual(request, P.AnnounceRequest(CID, TID, IH, PID, 5, 6, 7, 3, 0,
                                                    0xDEADBEEF, 50, 6881))

    def test_announce_with_bep_41_options_is_accepted(self):
        packet = announce_bytes(request_path=b"/announce?k=1")
        self.assertEqual(P.parse_request(packet).port, 6881)

    def test_truncated_requests_are_refused(self):
        for packet in (b"", b"\0" * 15, announce_bytes()[:97],
                       struct.pack(">QII", CID, 2, TID) + IH[:19]):
            with self.subTest(size=len(packet)), self.assertRaises(P.UdpTrackerError):
                P.parse_request(packet)

    def test_oversized_scrape_is_refused(self):
        packet = struct.pack(">QII", CID, 2, TID) + IH * (P.MAX_SCRAPE_HASHES + 1)
        with self.assertRaises(P.UdpTrackerError):
            P.parse_request(packet)

    def test_scrape_request_round_trips(self):
        request = P.parse_request(P.scrape_request(CID, TID, [IH, IH[::-1]]))
        self.assertEqual(request, P.ScrapeRequest(CID, TID, (IH, IH[::-1])))

    def test_unknown_action_is_refused(self):
        with self.assertRaises(P.UdpTrackerError):
            P.parse_request(struct.pack(">QII", CID, 7, TID) + b"\0" * 90)


class ServerAnswerTests(unittest.TestCase):
    def test_answers_decode_with_the_client_reader(self):
        self.assertEqual(P.read_response(P.connect_response(TID, CID), TID, P.CONNECT), CID)
        answer = P.read_response(P.announce_response(TID, 60, 4, 1, bytes([1, 2, 3, 4, 0, 9])),
                                 TID, P.ANNOUNCE)
        self.assertEqual((answer.interval, answer.incomplete, answer.complete, answer.peers),
                         (60, 4, 1, [("1.2.3.4", 9)]))
        self.assertEqual(P.read_response(P.scrape_response(TID, [(1, 2, 3)]), TID, P.SCRAPE,
                                         scraped=1), [(1, 2, 3)])
        with self.assertRaises(TrackerError):
            P.read_response(P.error_response(TID, "nope"), TID, P.SCRAPE)

    def test_connect_answer_is_no_larger_than_the_request(self):
        self.assertLessEqual(len(P.connect_response(TID, CID)), len(P.connect_request(TID)))

    def test_error_answer_is_bounded(self):
        self.assertLessEqual(len(P.error_response(TID, "x" * 10000)), 8 + 300)


class ConnectionIdMintTests(unittest.TestCase):
    def setUp(self):
        self.mint = P.ConnectionIdMint(b"k" * 32)

    def test_issued_id_is_accepted_from_the_same_address(self):
        cid = self.mint.issue(b"10.0.0.1", 1000.0)
        self.assertTrue(self.mint.check(cid, b"10.0.0.1", 1000.0))

    def test_id_is_refused_from_another_address(self):
        cid = self.mint.issue(b"10.0.0.1", 1000.0)
        self.assertFalse(self.mint.check(cid, b"10.0.0.2", 1000.0))

    def test_forged_id_is_refused(self):
        self.assertFalse(self.mint.check(0x0102030405060708, b"10.0.0.1", 1000.0))

    def test_id_lives_at_least_one_minute_and_at_most_two(self):
        issued_at = 1199.0   # just before a period ends: the shortest life
        cid = self.mint.issue(b"h", issued_at)
        self.assertTrue(self.mint.check(cid, b"h", issued_at + 60))
        self.assertFalse(self.mint.check(cid, b"h", issued_at + 61.5))
        issued_at = 1200.0   # at a period's start: the longest life
        cid = self.mint.issue(b"h", issued_at)
        self.assertTrue(self.mint.check(cid, b"h", issued_at + 119.9))
        self.assertFalse(self.mint.check(cid, b"h", issued_at + 120.0))

    def test_another_key_makes_other_ids(self):
        other = P.ConnectionIdMint(b"j" * 32)
        self.assertNotEqual(other.issue(b"h", 5.0), self.mint.issue(b"h", 5.0))

    def test_short_key_is_refused(self):
        with self.assertRaises(ValueError):
            P.ConnectionIdMint(b"short")


if __name__ == "__main__":
    unittest.main()
