"""The uTP header and selective-ack extension (BEP 29) as bytes: round trips, the layout of
each field, unknown extensions skipped, malformed chains refused, and the demux tests."""

from __future__ import annotations

import struct
import unittest

from sta import utpcodec as C


class CodecTests(unittest.TestCase):
    def test_header_round_trips_every_field(self):
        data = C.encode_packet(C.ST_DATA, 0xABCD, 0xFFFFFFFF, 12345, 65536, 65535, 1, b"pay")
        pkt = C.parse_packet(data)
        self.assertEqual((pkt.kind, pkt.connection_id, pkt.timestamp, pkt.timestamp_diff,
                          pkt.wnd_size, pkt.seq_nr, pkt.ack_nr, pkt.sack, bytes(pkt.payload)),
                         (C.ST_DATA, 0xABCD, 0xFFFFFFFF, 12345, 65536, 65535, 1, None, b"pay"))

    def test_header_is_big_endian_with_type_in_the_high_nibble(self):
        data = C.encode_packet(C.ST_FIN, 0x0102, 0x03040506, 0x0708090A, 0x0B0C0D0E,
                               0x0F10, 0x1112)
        self.assertEqual(data, bytes([0x11, 0]) + bytes(range(1, 0x13)))

    def test_selective_ack_extension_round_trips(self):
        mask = bytes([0b101, 0, 0, 0x80])
        data = C.encode_packet(C.ST_STATE, 1, 2, 3, 4, 5, 6, sack=mask)
        self.assertEqual(data[1], C.EXT_SACK)
        self.assertEqual(data[20:26], bytes([0, 4]) + mask)
        pkt = C.parse_packet(data)
        self.assertEqual(pkt.sack, mask)
        self.assertEqual(bytes(pkt.payload), b"")

    def test_unknown_extension_is_skipped(self):
        head = struct.pack(">BBHIIIHH", 0x01, 7, 1, 2, 3, 4, 5, 6)
        data = head + bytes([C.EXT_SACK, 3]) + b"abc" + bytes([0, 4]) + b"\x01\0\0\0" + b"body"
        pkt = C.parse_packet(data)
        self.assertEqual(pkt.sack, b"\x01\0\0\0")
        self.assertEqual(bytes(pkt.payload), b"body")

    def test_a_selective_ack_of_any_length_is_read_as_libtorrent_sends_it(self):
        good = C.encode_packet(C.ST_STATE, 1, 2, 3, 4, 5, 6, sack=b"\x01\0\0\0")
        pkt = C.parse_packet(good[:20] + bytes([0, 1]) + b"\x05")
        self.assertEqual(pkt.sack, b"\x05")

    def test_malformed_datagrams_are_refused(self):
        good = C.encode_packet(C.ST_STATE, 1, 2, 3, 4, 5, 6, sack=b"\x01\0\0\0")
        bad = {
            "short": good[:19],
            "version 2": bytes([0x22]) + good[1:],
            "type 5": bytes([0x51]) + good[1:],
            "empty sack": good[:20] + bytes([0, 0]),
            "chain past the end": good[:20] + bytes([0, 8]) + b"\x01\0\0\0",
            "truncated extension header": good[:21],
        }
        for name, data in bad.items():
            with self.subTest(name):
                with self.assertRaises(C.UtpError):
                    C.parse_packet(data)
                self.assertFalse(C.is_utp_packet(data))
        self.assertTrue(C.is_utp_packet(good))

    def test_dht_datagrams_are_not_utp(self):
        ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
        self.assertFalse(C.is_utp_packet(ping))

    def test_demux_helpers_read_the_id_and_type(self):
        data = C.encode_packet(C.ST_SYN, 0xBEEF, 0, 0, 0, 0, 0)
        self.assertEqual(C.packet_connection_id(data), 0xBEEF)
        self.assertEqual(C.packet_type(data), C.ST_SYN)

    def test_demux_helpers_refuse_a_short_datagram(self):
        for helper in (C.packet_connection_id, C.packet_type, lambda d: C.reset_for(d, 0.0)):
            with self.assertRaises(C.UtpError):
                helper(b"\x01\x00")

    def test_reset_for_answers_a_stray_with_its_id_and_seq(self):
        stray = C.encode_packet(C.ST_DATA, 777, 1_000_000, 0, 0, 4242, 1, b"x")
        pkt = C.parse_packet(C.reset_for(stray, 3.0))
        self.assertEqual((pkt.kind, pkt.connection_id, pkt.ack_nr, pkt.timestamp,
                          pkt.timestamp_diff), (C.ST_RESET, 777, 4242, 3_000_000, 2_000_000))

    def test_sequence_comparison_wraps(self):
        self.assertTrue(C.seq_less(65535, 0))
        self.assertTrue(C.seq_less(65000, 100))
        self.assertFalse(C.seq_less(100, 65000))
        self.assertFalse(C.seq_less(5, 5))

    def test_timestamps_are_32_bit_microseconds(self):
        self.assertEqual(C.micros(1.5), 1_500_000)
        self.assertEqual(C.micros(4294.967296), 0)


if __name__ == "__main__":
    unittest.main()
