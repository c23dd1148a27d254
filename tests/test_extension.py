"""Tests for sta.extension: the BEP 10 extension handshake's payload, with byte strings."""

from __future__ import annotations

import unittest

from sta import bencode
from sta.extension import (
    MAX_EXTENDED_HANDSHAKE_LENGTH, ExtendedHandshake, ExtensionError, decode_handshake,
    encode_handshake,
)
from sta.ut_metadata import MAX_METADATA_SIZE


def padded(length: int) -> bytes:
    """A handshake dictionary of exactly ``length`` bytes: ``d1:v<n>:<n bytes>e``."""
    for digits in range(1, 8):
        body = length - len(b"d1:v:e") - digits
        if len(str(body)) == digits:
            return b"d1:v%d:" % body + b"x" * body + b"e"
    raise ValueError(f"no handshake of {length} bytes")


class DecodeTest(unittest.TestCase):
    def test_keys_keep_the_order_the_peer_sent(self):
        # Handshakes from some clients are not sorted; they are read as sent, not refused.
        self.assertEqual(list(decode_handshake(b"d1:v3:STA1:md6:ut_pexi1eee")), [b"v", b"m"])

    def test_handshake_of_exactly_the_limit_is_decoded_and_one_byte_more_refused(self):
        self.assertEqual(MAX_EXTENDED_HANDSHAKE_LENGTH, 64 * 1024)
        at_limit = padded(MAX_EXTENDED_HANDSHAKE_LENGTH)
        self.assertEqual(len(at_limit), MAX_EXTENDED_HANDSHAKE_LENGTH)
        self.assertIn(b"v", decode_handshake(at_limit))
        with self.assertRaisesRegex(ExtensionError, "of 65537 bytes over limit 65536"):
            decode_handshake(padded(MAX_EXTENDED_HANDSHAKE_LENGTH + 1))

    def test_a_list_is_not_a_handshake(self):
        with self.assertRaisesRegex(ExtensionError, "^extension handshake is a list, not a "
                                    "dictionary$"):
            decode_handshake(b"li1ee")

    def test_bytes_after_the_dictionary_are_refused(self):
        with self.assertRaisesRegex(ExtensionError, "not valid bencoding"):
            decode_handshake(b"dexyz")


class EncodeTest(unittest.TestCase):
    def test_none_fields_are_left_out_and_keys_sorted(self):
        payload = encode_handshake({"ut_pex": 1, "ut_metadata": 2}, v="STA", p=None, reqq=250)
        self.assertEqual(payload, b"d1:md11:ut_metadatai2e6:ut_pexi1ee4:reqqi250e1:v3:STAe")

    def test_a_value_bencoding_cannot_hold_is_an_extension_error(self):
        with self.assertRaisesRegex(ExtensionError, "^cannot encode extension handshake"):
            encode_handshake({}, v=1.5)

    def test_our_handshake_reads_back(self):
        event = ExtendedHandshake(decode_handshake(encode_handshake(
            {"ut_metadata": 2}, v="STA 0.1", p=6881, metadata_size=12345, upload_only=1)))
        self.assertEqual((event.m, event.client, event.listen_port, event.metadata_size,
                          event.upload_only), ({"ut_metadata": 2}, "STA 0.1", 6881, 12345, True))


class FieldTest(unittest.TestCase):
    def event(self, **fields) -> ExtendedHandshake:
        return ExtendedHandshake(bencode.decode(bencode.encode(fields)))

    def test_metadata_size_is_read_up_to_the_bep_9_limit_only(self):
        self.assertEqual(self.event(metadata_size=MAX_METADATA_SIZE).metadata_size,
                         MAX_METADATA_SIZE)
        self.assertIsNone(self.event(metadata_size=MAX_METADATA_SIZE + 1).metadata_size)
        self.assertIsNone(self.event(metadata_size=0).metadata_size)

    def test_listen_port_must_be_a_tcp_port(self):
        self.assertEqual(self.event(p=65535).listen_port, 65535)
        self.assertIsNone(self.event(p=65536).listen_port)
        self.assertIsNone(self.event(p=0).listen_port)

    def test_upload_only_zero_means_not_a_seed(self):
        self.assertFalse(self.event(upload_only=0).upload_only)
        self.assertTrue(self.event(upload_only=1).upload_only)

    def test_yourip_must_be_an_ipv4_or_ipv6_address(self):
        self.assertEqual(self.event(yourip=b"\x0a\x00\x00\x01").yourip, b"\x0a\x00\x00\x01")
        self.assertEqual(self.event(yourip=bytes(16)).yourip, bytes(16))
        self.assertIsNone(self.event(yourip=bytes(6)).yourip)

    def test_m_drops_ids_that_are_not_a_byte(self):
        self.assertEqual(self.event(m={"a": 0, "b": 255, "c": 256, "d": -1}).m, {"a": 0, "b": 255})

    def test_event_equals_only_another_handshake(self):
        self.assertEqual(ExtendedHandshake({}), ExtendedHandshake({}))
        self.assertNotEqual(ExtendedHandshake({}), ({},))


if __name__ == "__main__":
    unittest.main()
