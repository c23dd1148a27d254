"""Tests for sta.wire: the peer wire protocol, driven with byte strings only."""

from __future__ import annotations

import random
import struct
import unittest

from sta import bencode, ut_metadata, wire
from sta.wire import (
    AllowedFast, BitfieldMessage, Cancel, Choke, Extended, ExtendedHandshake, Handshake, Have,
    HaveAll, HaveNone, Interested, KeepAlive, MessageReader, NotInterested, Piece, Port, Reject,
    Request, Suggest, Unchoke, WireError,
)

INFO_HASH = bytes(range(20))
PEER_ID = b"-SX0001-abcdefghijkl"
BLOCK = bytes(range(256)) * 64  # 16 KiB


def message(msg_id: int, payload: bytes = b"") -> bytes:
    """A raw message, built by hand so the tests do not trust the encoders."""
    return struct.pack(">IB", 1 + len(payload), msg_id) + payload


def feed_all(data: bytes, **options: bool) -> list:
    return MessageReader(**options).feed(data)


def feed_in_pieces(data: bytes, cuts: list, **options: bool) -> list:
    reader = MessageReader(**options)
    events = []
    previous = 0
    for cut in sorted(cuts) + [len(data)]:
        events += reader.feed(data[previous:cut])
        previous = cut
    return events


# Every message with the event it must decode to.
SAMPLES = [
    (wire.keepalive(), KeepAlive()),
    (wire.choke(), Choke()),
    (wire.unchoke(), Unchoke()),
    (wire.interested(), Interested()),
    (wire.not_interested(), NotInterested()),
    (wire.have(7), Have(7)),
    (wire.bitfield(b"\xff\xf0"), BitfieldMessage(b"\xff\xf0")),
    (wire.request(1, 16384, 16384), Request(1, 16384, 16384)),
    (wire.piece(2, 32768, BLOCK), Piece(2, 32768, BLOCK)),
    (wire.cancel(3, 0, 16384), Cancel(3, 0, 16384)),
    (wire.port(6881), Port(6881)),
    (wire.suggest(4), Suggest(4)),
    (wire.have_all(), HaveAll()),
    (wire.have_none(), HaveNone()),
    (wire.reject(5, 16384, 1000), Reject(5, 16384, 1000)),
    (wire.allowed_fast(6), AllowedFast(6)),
    (wire.extended(3, b"d8:msg_typei0e5:piecei0ee"), Extended(3, b"d8:msg_typei0e5:piecei0ee")),
    (wire.extended_handshake({"ut_metadata": 2}, v="STA"),
     ExtendedHandshake({b"m": {b"ut_metadata": 2}, b"v": b"STA"})),
]
STREAM = b"".join(data for data, _ in SAMPLES)
EVENTS = [event for _, event in SAMPLES]


class HandshakeTest(unittest.TestCase):
    def test_encoder_builds_68_bytes_with_extension_bit(self):
        data = wire.handshake(INFO_HASH, PEER_ID)
        self.assertEqual(len(data), 68)
        self.assertEqual(data[:20], b"\x13BitTorrent protocol")
        self.assertEqual(data[20:28], b"\x00\x00\x00\x00\x00\x10\x00\x00")
        self.assertEqual(data[28:48], INFO_HASH)
        self.assertEqual(data[48:], PEER_ID)

    def test_encoder_sets_fast_bit_only_when_asked(self):
        self.assertEqual(wire.handshake(INFO_HASH, PEER_ID)[27], 0)
        self.assertEqual(wire.handshake(INFO_HASH, PEER_ID, fast=True)[27], 0x04)
        self.assertEqual(wire.handshake(INFO_HASH, PEER_ID, extensions=False)[20:28], bytes(8))

    def test_encoder_rejects_info_hash_of_wrong_length(self):
        with self.assertRaisesRegex(WireError, "20-byte"):
            wire.handshake(INFO_HASH[:19], PEER_ID)

    def test_reader_returns_handshake_fields(self):
        (event,) = feed_all(wire.handshake(INFO_HASH, PEER_ID))
        self.assertEqual(event, Handshake(b"\x00\x00\x00\x00\x00\x10\x00\x00", INFO_HASH, PEER_ID))
        self.assertTrue(event.supports_extensions)
        self.assertFalse(event.supports_fast)

    def test_handshake_without_extension_bit_reports_no_extensions(self):
        (event,) = feed_all(wire.handshake(INFO_HASH, PEER_ID, extensions=False, fast=True))
        self.assertFalse(event.supports_extensions)
        self.assertTrue(event.supports_fast)

    def test_handshake_event_comes_out_as_soon_as_68_bytes_are_in(self):
        reader = MessageReader()
        data = wire.handshake(INFO_HASH, PEER_ID)
        self.assertEqual(reader.feed(data[:67]), [])
        self.assertEqual(reader.buffered, 67)
        self.assertEqual(reader.feed(data[67:]), [Handshake(data[20:28], INFO_HASH, PEER_ID)])
        self.assertEqual(reader.buffered, 0)

    def test_messages_after_handshake_in_same_buffer_are_parsed(self):
        events = feed_all(wire.handshake(INFO_HASH, PEER_ID) + STREAM)
        self.assertIsInstance(events[0], Handshake)
        self.assertEqual(events[1:], EVENTS)

    def test_wrong_first_byte_raises_at_once(self):
        # A TLS ClientHello starts with 0x16: the first byte is enough to tell.
        with self.assertRaisesRegex(WireError, "first byte 22, expected 19"):
            MessageReader().feed(b"\x16")

    def test_wrong_protocol_string_raises_before_whole_handshake(self):
        with self.assertRaisesRegex(WireError, "protocol string"):
            MessageReader().feed(b"\x13BitTorrent protocoX")

    def test_reader_without_handshake_parses_messages_at_once(self):
        self.assertEqual(feed_all(STREAM, expect_handshake=False), EVENTS)


class MessageTest(unittest.TestCase):
    def test_every_message_round_trips(self):
        for data, event in SAMPLES:
            with self.subTest(event=event):
                self.assertEqual(feed_all(data, expect_handshake=False), [event])

    def test_encoders_match_hand_built_bytes(self):
        self.assertEqual(wire.have(7), message(4, struct.pack(">I", 7)))
        self.assertEqual(wire.request(1, 2, 3), message(6, struct.pack(">III", 1, 2, 3)))
        self.assertEqual(wire.port(6881), message(9, b"\x1a\xe1"))
        self.assertEqual(wire.have_all(), message(14))
        self.assertEqual(wire.extended(1, b"x"), message(20, b"\x01x"))

    def test_all_messages_in_one_buffer_give_events_in_order(self):
        self.assertEqual(feed_all(STREAM, expect_handshake=False), EVENTS)

    def test_byte_by_byte_feed_gives_same_events_as_one_feed(self):
        data = wire.handshake(INFO_HASH, PEER_ID) + STREAM
        self.assertEqual(feed_in_pieces(data, list(range(1, len(data)))), feed_all(data))

    def test_piece_split_at_every_header_offset_parses(self):
        data = wire.have(1) + wire.piece(9, 0, BLOCK) + wire.have(2)
        expected = [Have(1), Piece(9, 0, BLOCK), Have(2)]
        for cut in range(1, 40):
            with self.subTest(cut=cut):
                self.assertEqual(feed_in_pieces(data, [cut], expect_handshake=False), expected)

    def test_partial_message_is_held_until_complete(self):
        reader = MessageReader(expect_handshake=False)
        data = wire.piece(1, 0, BLOCK)
        self.assertEqual(reader.feed(data[:1000]), [])
        self.assertEqual(reader.buffered, 1000)
        self.assertEqual(reader.feed(data[1000:2000]), [])
        self.assertEqual(reader.feed(data[2000:] + wire.choke()), [Piece(1, 0, BLOCK), Choke()])
        self.assertEqual(reader.buffered, 0)

    def test_keepalive_split_across_feeds(self):
        data = wire.keepalive() + wire.have(3) + wire.keepalive()
        for cuts in ([2], [3], [4], [5], [3, 6], [12, 14]):
            with self.subTest(cuts=cuts):
                self.assertEqual(feed_in_pieces(data, cuts, expect_handshake=False),
                                 [KeepAlive(), Have(3), KeepAlive()])

    def test_random_splits_give_same_events(self):
        rng = random.Random(20261126)
        data = wire.handshake(INFO_HASH, PEER_ID) + STREAM * 3
        expected = feed_all(data)
        for _ in range(300):
            cuts = rng.sample(range(1, len(data)), rng.randint(1, 40))
            self.assertEqual(feed_in_pieces(data, cuts), expected, cuts)

    def test_empty_feed_returns_nothing(self):
        reader = MessageReader()
        self.assertEqual(reader.feed(b""), [])
        self.assertEqual(reader.feed(wire.handshake(INFO_HASH, PEER_ID)[:10]), [])
        self.assertEqual(reader.feed(b""), [])

    def test_bytearray_input_gives_bytes_blocks_caller_may_reuse(self):
        buffer = bytearray(wire.piece(1, 0, BLOCK) + wire.bitfield(b"\x80"))
        events = MessageReader(expect_handshake=False, copy_blocks=False).feed(buffer)
        buffer[:] = bytes(len(buffer))  # the caller overwrites its receive buffer
        buffer.extend(b"more")  # and may resize it: no view of it is left behind
        self.assertEqual(events, [Piece(1, 0, BLOCK), BitfieldMessage(b"\x80")])
        self.assertIs(type(events[0].block), bytes)

    def test_copy_blocks_false_lends_views_of_a_memoryview_chunk(self):
        buffer = bytearray(wire.piece(1, 0, BLOCK) + wire.have(4))
        events = MessageReader(expect_handshake=False, copy_blocks=False).feed(
            memoryview(buffer))
        self.assertEqual(events, [Piece(1, 0, BLOCK), Have(4)])
        block = events[0].block
        self.assertIsInstance(block, memoryview)
        buffer[13] = 0xFF  # the lender reads into its buffer again: the view shows it
        self.assertEqual(block[0], 0xFF)

    def test_memoryview_input_gives_same_events(self):
        view = memoryview(bytearray(STREAM))
        self.assertEqual(MessageReader(expect_handshake=False).feed(view), EVENTS)

    def test_blocks_are_bytes_by_default(self):
        (event,) = feed_all(wire.piece(1, 0, BLOCK), expect_handshake=False)
        self.assertIs(type(event.block), bytes)

    def test_copy_blocks_false_gives_read_only_views_of_bytes_chunks(self):
        data = wire.piece(1, 0, BLOCK) + wire.piece(2, 0, BLOCK)
        reader = MessageReader(expect_handshake=False, copy_blocks=False)
        events = reader.feed(data[:-100]) + reader.feed(data[-100:])
        self.assertIsInstance(events[0].block, memoryview)
        self.assertTrue(events[0].block.readonly)
        self.assertIs(type(events[1].block), bytes)  # completed from the held-back tail
        self.assertEqual(events, [Piece(1, 0, BLOCK), Piece(2, 0, BLOCK)])

    def test_events_compare_by_type_not_just_fields(self):
        self.assertNotEqual(Have(1), Suggest(1))
        self.assertNotEqual(KeepAlive(), Choke())
        self.assertNotEqual(Request(1, 2, 3), Cancel(1, 2, 3))
        self.assertNotEqual(Request(1, 2, 3), (1, 2, 3))
        self.assertEqual(Have(1), Have(1))
        self.assertEqual(len({Have(1), Have(1), Suggest(1)}), 2)

    def test_requests_packs_many_requests_in_one_buffer(self):
        triples = [(i, j * 16384, 16384) for i in range(3) for j in range(4)]
        self.assertEqual(wire.requests(triples), b"".join(wire.request(*t) for t in triples))
        self.assertEqual(feed_all(wire.requests(iter(triples)), expect_handshake=False),
                         [Request(*t) for t in triples])

    def test_requests_of_nothing_is_empty(self):
        self.assertEqual(wire.requests([]), b"")

    def test_piece_header_then_block_is_a_piece_message(self):
        self.assertEqual(wire.piece_header(4, 16384, len(BLOCK)) + BLOCK,
                         wire.piece(4, 16384, BLOCK))
        self.assertEqual(len(wire.piece_header(4, 16384, len(BLOCK))), 13)

    def test_bitfield_of_a_million_pieces_fits_the_length_limit(self):
        bits = b"\xff" * (2 ** 20 // 8)
        self.assertEqual(feed_all(wire.bitfield(bits), expect_handshake=False),
                         [BitfieldMessage(bits)])

    def test_message_at_length_limit_is_accepted(self):
        data = message(wire.BITFIELD, bytes(wire.MAX_MESSAGE_LENGTH - 1))
        (event,) = feed_all(data, expect_handshake=False)
        self.assertEqual(len(event.bits), wire.MAX_MESSAGE_LENGTH - 1)

    def test_unknown_message_id_is_skipped(self):
        data = message(21, b"hash request payload") + wire.have(3) + message(99) + wire.choke()
        self.assertEqual(feed_all(data, expect_handshake=False), [Have(3), Choke()])

    def test_unknown_message_id_is_logged_at_debug(self):
        with self.assertLogs("sta.wire", level="DEBUG") as logs:
            feed_all(message(42, b"abc"), expect_handshake=False)
        self.assertIn("unknown message id 42", logs.output[0])


class ViolationTest(unittest.TestCase):
    def assert_rejected(self, data: bytes, reason: str) -> None:
        with self.assertRaises(WireError) as caught:
            MessageReader(expect_handshake=False).feed(data)
        self.assertIn(reason, str(caught.exception))

    def test_length_over_limit_raises_from_length_prefix_alone(self):
        self.assert_rejected(struct.pack(">I", 40000000),
                             "message length 40000000 over limit 1048576")

    def test_length_over_limit_of_unknown_id_raises(self):
        self.assert_rejected(struct.pack(">IB", wire.MAX_MESSAGE_LENGTH + 1, 99),
                             "over limit 1048576")

    def test_have_with_3_byte_payload_raises(self):
        self.assert_rejected(message(wire.HAVE, b"\x00\x00\x01"),
                             "have message with 3-byte payload")

    def test_oversized_have_raises_before_its_body_arrives(self):
        self.assert_rejected(struct.pack(">IB", 1000, wire.HAVE), "have message with 999-byte")

    def test_choke_with_payload_raises(self):
        self.assert_rejected(message(wire.CHOKE, b"x"), "choke message with 1-byte payload")

    def test_request_with_wrong_payload_size_raises(self):
        self.assert_rejected(message(wire.REQUEST, bytes(8)), "request message with 8-byte payload")

    def test_cancel_with_wrong_payload_size_raises(self):
        self.assert_rejected(message(wire.CANCEL, bytes(16)), "cancel message with 16-byte")

    def test_port_with_wrong_payload_size_raises(self):
        self.assert_rejected(message(wire.PORT, bytes(4)), "port message with 4-byte payload")

    def test_have_all_with_payload_raises(self):
        self.assert_rejected(message(wire.HAVE_ALL, b"\x01"), "have all message with 1-byte")

    def test_allowed_fast_with_wrong_payload_size_raises(self):
        self.assert_rejected(message(wire.ALLOWED_FAST, bytes(2)), "allowed fast message with 2")

    def test_reject_with_wrong_payload_size_raises(self):
        self.assert_rejected(message(wire.REJECT, bytes(4)), "reject request message with 4")

    def test_piece_without_block_raises(self):
        self.assert_rejected(message(wire.PIECE, bytes(8)), "piece message with 8-byte payload")

    def test_piece_with_block_over_limit_raises(self):
        self.assert_rejected(struct.pack(">IBII", 9 + 16385, wire.PIECE, 0, 0),
                             "16385-byte block over limit 16384")

    def test_request_for_zero_bytes_raises(self):
        self.assert_rejected(wire.request(0, 0, 0), "request message for 0 bytes")

    def test_request_over_limit_raises(self):
        self.assert_rejected(wire.request(0, 0, 200000),
                             "request message for 200000 bytes over limit 131072")

    def test_cancel_over_limit_raises(self):
        self.assert_rejected(wire.cancel(0, 0, 1 << 20), "cancel message for 1048576 bytes")

    def test_extended_without_extension_id_raises(self):
        self.assert_rejected(message(wire.EXTENDED), "extended message without an extension id")

    def test_violation_after_good_messages_still_raises(self):
        self.assert_rejected(wire.have(1) + wire.choke() + message(wire.HAVE, b"\x00"),
                             "have message with 1-byte payload")


class ExtensionTest(unittest.TestCase):
    def parse(self, payload: bytes):
        (event,) = feed_all(message(wire.EXTENDED, b"\x00" + payload), expect_handshake=False)
        return event

    def test_extended_handshake_round_trips_with_fields(self):
        data = wire.extended_handshake({"ut_metadata": 3, "ut_pex": 1}, v="STA 0.1", p=6881,
                                       reqq=500, metadata_size=31235, yourip=b"\x7f\x00\x00\x01",
                                       upload_only=1)
        (event,) = feed_all(data, expect_handshake=False)
        self.assertIsInstance(event, ExtendedHandshake)
        self.assertEqual(event.m, {"ut_metadata": 3, "ut_pex": 1})
        self.assertEqual(event.client, "STA 0.1")
        self.assertEqual(event.listen_port, 6881)
        self.assertEqual(event.reqq, 500)
        self.assertEqual(event.metadata_size, 31235)
        self.assertEqual(event.yourip, b"\x7f\x00\x00\x01")
        self.assertTrue(event.upload_only)

    def test_extended_handshake_leaves_out_none_fields(self):
        data = wire.extended_handshake({"ut_metadata": 3}, v=None, metadata_size=None)
        self.assertEqual(data[6:], b"d1:md11:ut_metadatai3eee")

    def test_missing_fields_read_as_none(self):
        event = self.parse(b"de")
        self.assertEqual(event.m, {})
        self.assertIsNone(event.metadata_size)
        self.assertIsNone(event.client)
        self.assertIsNone(event.listen_port)
        self.assertIsNone(event.reqq)
        self.assertIsNone(event.yourip)
        self.assertFalse(event.upload_only)

    def test_junk_field_types_are_tolerated(self):
        payload = bencode.encode({
            "m": {"ut_metadata": "three", "ut_pex": -1, "big": 300, "ok": 2, b"\xff\xfe": 4},
            "v": 42, "p": 70000, "reqq": "many", "metadata_size": 2 ** 40, "yourip": b"1.2.3.4.5",
            "upload_only": "yes",
        })
        event = self.parse(payload)
        self.assertEqual(event.m, {"ok": 2})
        self.assertIsNone(event.client)
        self.assertIsNone(event.listen_port)
        self.assertIsNone(event.reqq)
        self.assertIsNone(event.metadata_size)
        self.assertIsNone(event.yourip)
        self.assertFalse(event.upload_only)

    def test_m_that_is_not_a_dict_reads_as_empty(self):
        self.assertEqual(self.parse(b"d1:mli1ei2eee").m, {})

    def test_zero_id_in_m_is_kept_as_disabled(self):
        self.assertEqual(self.parse(b"d1:md6:ut_pexi0eee").m, {"ut_pex": 0})

    def test_non_dict_handshake_raises(self):
        with self.assertRaisesRegex(WireError, "extension handshake is a list, not a dictionary"):
            self.parse(b"li1ee")

    def test_string_handshake_raises(self):
        with self.assertRaisesRegex(WireError, "is a string, not a dictionary"):
            self.parse(b"4:spam")

    def test_bad_bencoding_raises(self):
        with self.assertRaisesRegex(WireError, "not valid bencoding"):
            self.parse(b"d1:mi1e")

    def test_trailing_bytes_after_handshake_dict_raise(self):
        with self.assertRaisesRegex(WireError, "not valid bencoding"):
            self.parse(b"dexyz")

    def test_deeply_nested_handshake_raises(self):
        with self.assertRaisesRegex(WireError, "not valid bencoding"):
            self.parse(b"d1:m" + b"l" * 500 + b"e" * 500 + b"e")

    def test_handshake_over_size_limit_raises(self):
        payload = b"d1:v" + b"%d:" % 70000 + b"x" * 70000 + b"e"
        with self.assertRaisesRegex(WireError, "over limit 65536"):
            self.parse(payload)

    def test_other_extension_ids_carry_raw_payload(self):
        self.assertEqual(feed_all(message(wire.EXTENDED, b"\x07\x00\x01"), expect_handshake=False),
                         [Extended(7, b"\x00\x01")])

    def test_extended_encoder_rejects_id_over_255(self):
        with self.assertRaises(WireError):
            wire.extended(256, b"")


class MetadataInExtendedTest(unittest.TestCase):
    """BEP 9 payloads (sta.ut_metadata) ride inside BEP 10 extended messages."""

    def test_metadata_payload_rides_in_an_extended_message(self):
        data = wire.extended(2, ut_metadata.metadata_data(0, 5, b"d1:ae"))
        (event,) = feed_all(data, expect_handshake=False)
        self.assertEqual(ut_metadata.decode_metadata(event.payload).data, b"d1:ae")


if __name__ == "__main__":
    unittest.main()
