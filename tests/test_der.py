"""Tests for sta.der: DER encoding of the types a certificate uses, and reading it back."""

from __future__ import annotations

import datetime
import unittest

from sta import der
from sta.der import DerError


class EncodeTests(unittest.TestCase):
    def test_integer_gets_leading_zero_only_when_top_bit_set(self):
        self.assertEqual(der.der_integer(0), b"\x02\x01\x00")
        self.assertEqual(der.der_integer(127), b"\x02\x01\x7f")
        self.assertEqual(der.der_integer(128), b"\x02\x02\x00\x80")
        self.assertEqual(der.der_integer(256), b"\x02\x02\x01\x00")

    def test_negative_integer_is_refused(self):
        with self.assertRaises(DerError):
            der.der_integer(-1)

    def test_oid_encodes_multi_byte_arcs(self):
        self.assertEqual(der.der_oid("1.2.840.113549.1.1.11"),
                         bytes.fromhex("06092a864886f70d01010b"))

    def test_long_lengths_use_the_long_form(self):
        self.assertEqual(der.der_octet_string(bytes(127))[:2], b"\x04\x7f")  # last short form
        self.assertEqual(der.der_octet_string(bytes(128))[:3], b"\x04\x81\x80")
        self.assertEqual(der.der_octet_string(bytes(200))[:3], b"\x04\x81\xc8")
        self.assertEqual(der.der_octet_string(bytes(300))[:4], b"\x04\x82\x01\x2c")

    def test_times_switch_to_generalized_time_in_2050(self):
        utc = datetime.timezone.utc
        self.assertEqual(der.der_time(datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=utc)),
                         b"\x17\x0d491231235959Z")
        self.assertEqual(der.der_time(datetime.datetime(2050, 1, 1, tzinfo=utc)),
                         b"\x18\x0f20500101000000Z")

    def test_time_is_written_in_utc(self):
        plus_two = datetime.timezone(datetime.timedelta(hours=2))
        self.assertEqual(der.der_time(datetime.datetime(2030, 1, 1, 1, 0, tzinfo=plus_two)),
                         b"\x17\x0d291231230000Z")

    def test_set_of_is_sorted_whatever_the_order_given(self):
        a, b = der.der_integer(2), der.der_integer(1)
        self.assertEqual(der.der_set(a, b), der.der_set(b, a))
        self.assertEqual(der.der_set(a, b), b"\x31\x06" + b + a)

    def test_small_types(self):
        self.assertEqual(der.der_boolean(True), b"\x01\x01\xff")
        self.assertEqual(der.der_boolean(False), b"\x01\x01\x00")
        self.assertEqual(der.der_null(), b"\x05\x00")
        self.assertEqual(der.der_bit_string(b"\xa4", unused_bits=2), b"\x03\x02\x02\xa4")
        self.assertEqual(der.der_utf8_string("é"), b"\x0c\x02\xc3\xa9")
        self.assertEqual(der.der_explicit(3, b"\x05\x00"), b"\xa3\x02\x05\x00")


class ReadTests(unittest.TestCase):
    def test_sequence_reads_back_as_its_children(self):
        data = der.der_sequence(der.der_integer(5), der.der_octet_string(bytes(300)),
                                der.der_null())
        tag, start, end = der.read_tlv(data, 0)
        self.assertEqual((tag, end), (0x30, len(data)))
        children = der.read_children(data, start, end)
        self.assertEqual([c[0] for c in children], [0x02, 0x04, 0x05])
        self.assertEqual(data[children[0][1]:children[0][2]], b"\x05")
        self.assertEqual(children[1][2] - children[1][1], 300)

    def test_truncated_element_is_an_error(self):
        data = der.der_octet_string(bytes(10))
        with self.assertRaisesRegex(DerError, "runs past the end"):
            der.read_tlv(data[:-1], 0)
        with self.assertRaisesRegex(DerError, "ends early"):
            der.read_tlv(b"\x04", 0)
        with self.assertRaises(DerError):
            der.read_tlv(b"\x04\x82\x01", 0)  # two length bytes announced, one given

    def test_length_of_more_than_four_bytes_is_refused(self):
        self.assertEqual(der.MAX_LENGTH_BYTES, 4)
        with self.assertRaisesRegex(DerError, "length field too long"):
            der.read_tlv(b"\x04\x85" + bytes(5), 0)
        with self.assertRaisesRegex(DerError, "length field too long"):
            der.read_tlv(b"\x04\x80", 0)  # the indefinite form is BER, not DER

    def test_expect_tag_names_what_was_wanted(self):
        item = der.read_tlv(der.der_null(), 0)
        self.assertIs(der.expect_tag(item, 0x05, "null"), item)
        with self.assertRaisesRegex(DerError, r"not a certificate \(DER tag 0x05, expected 0x30\)"):
            der.expect_tag(item, 0x30, "certificate")


if __name__ == "__main__":
    unittest.main()
