"""Tests for sta.ut_metadata: BEP 9 message payloads and the serving side, with byte strings."""

from __future__ import annotations

import unittest

from sta import bencode
from sta.ut_metadata import (
    MAX_METADATA_PIECES, MAX_METADATA_SIZE, METADATA_DATA, METADATA_PIECE_SIZE, METADATA_REJECT,
    METADATA_REQUEST, MetadataError, MetadataMessage, MetadataServer, decode_metadata,
    metadata_data, metadata_reject, metadata_request, refuse,
)

BLOCK = bytes(range(256)) * 64  # 16 KiB
INFO = bencode.encode({"name": "data", "pieces": bytes(range(200)) * 400})  # 5 pieces
SIZE = len(INFO)
PIECES = -(-SIZE // METADATA_PIECE_SIZE)


def piece_of(raw: bytes, index: int) -> bytes:
    return raw[index * METADATA_PIECE_SIZE:(index + 1) * METADATA_PIECE_SIZE]


class CodecTest(unittest.TestCase):
    def test_request_round_trips(self):
        payload = metadata_request(3)
        self.assertEqual(payload, b"d8:msg_typei0e5:piecei3ee")
        self.assertEqual(decode_metadata(payload),
                         MetadataMessage(METADATA_REQUEST, 3, None, b""))

    def test_reject_round_trips(self):
        self.assertEqual(decode_metadata(metadata_reject(1)),
                         MetadataMessage(METADATA_REJECT, 1, None, b""))

    def test_data_round_trips_full_and_last_piece(self):
        total = 16384 + 100
        self.assertEqual(decode_metadata(metadata_data(0, total, BLOCK)),
                         MetadataMessage(METADATA_DATA, 0, total, BLOCK))
        self.assertEqual(decode_metadata(metadata_data(1, total, b"z" * 100)),
                         MetadataMessage(METADATA_DATA, 1, total, b"z" * 100))

    def test_unknown_msg_type_is_returned_for_caller_to_ignore(self):
        self.assertEqual(decode_metadata(b"d8:msg_typei7ee"),
                         MetadataMessage(7, -1, None, b""))

    def test_bytes_after_a_request_are_ignored(self):
        self.assertEqual(decode_metadata(metadata_request(2) + b"junk"),
                         MetadataMessage(METADATA_REQUEST, 2, None, b""))

    def test_keys_in_any_order_are_accepted(self):
        # Some clients write the dictionary unsorted; BEP 9 payloads are read leniently.
        self.assertEqual(decode_metadata(b"d5:piecei4e8:msg_typei2ee").piece, 4)

    def test_missing_msg_type_raises(self):
        with self.assertRaisesRegex(MetadataError, "msg_type"):
            decode_metadata(b"d5:piecei0ee")

    def test_negative_piece_raises(self):
        with self.assertRaisesRegex(MetadataError, "piece -1"):
            decode_metadata(b"d8:msg_typei0e5:piecei-1ee")

    def test_last_piece_of_the_largest_dictionary_is_accepted_and_the_next_refused(self):
        self.assertEqual(MAX_METADATA_PIECES, 1920)  # 30 MiB in 16 KiB pieces
        self.assertEqual(decode_metadata(metadata_request(MAX_METADATA_PIECES - 1)).piece, 1919)
        with self.assertRaisesRegex(MetadataError, "piece 1920"):
            decode_metadata(metadata_request(MAX_METADATA_PIECES))

    def test_total_size_at_the_limit_is_accepted_and_over_it_refused(self):
        self.assertEqual(MAX_METADATA_SIZE, 30 * 1024 * 1024)  # libtorrent's max_metadata_size
        msg = decode_metadata(metadata_data(0, MAX_METADATA_SIZE, BLOCK))
        self.assertEqual(msg.total_size, MAX_METADATA_SIZE)
        with self.assertRaisesRegex(MetadataError, "total_size"):
            decode_metadata(metadata_data(0, MAX_METADATA_SIZE + 1, BLOCK))

    def test_data_without_total_size_raises(self):
        with self.assertRaisesRegex(MetadataError, "total_size None"):
            decode_metadata(b"d8:msg_typei1e5:piecei0ee" + b"x")

    def test_data_over_16_kib_raises(self):
        with self.assertRaisesRegex(MetadataError, "carries 16385 bytes, expected 16384"):
            decode_metadata(metadata_data(0, 100000, BLOCK + b"x"))

    def test_short_last_piece_of_wrong_size_raises(self):
        with self.assertRaisesRegex(MetadataError, "carries 99 bytes, expected 100"):
            decode_metadata(metadata_data(1, 16484, b"z" * 99))

    def test_piece_past_end_of_info_dict_raises(self):
        with self.assertRaisesRegex(MetadataError, "past the end"):
            decode_metadata(metadata_data(2, 16484, b"z"))

    def test_non_dict_message_raises(self):
        with self.assertRaisesRegex(MetadataError, "integer, not a dictionary"):
            decode_metadata(b"i3e")

    def test_bad_bencoding_raises(self):
        with self.assertRaisesRegex(MetadataError, "not valid bencoding"):
            decode_metadata(b"d8:msg_type")

    def test_message_equals_only_another_message(self):
        msg = MetadataMessage(METADATA_REQUEST, 0, None, b"")
        self.assertNotEqual(msg, (METADATA_REQUEST, 0, None, b""))
        self.assertEqual(msg, MetadataMessage(METADATA_REQUEST, 0, None, b""))
        self.assertEqual(len({msg, MetadataMessage(METADATA_REQUEST, 0, None, b"")}), 1)


class ServerTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = MetadataServer(INFO)

    def request(self, index: int) -> MetadataMessage:
        return decode_metadata(metadata_request(index))

    def test_server_counts_pieces_by_ceiling(self) -> None:
        self.assertEqual(self.server.metadata_size, SIZE)
        self.assertEqual(self.server.num_pieces, 5)
        self.assertEqual(MetadataServer(b"d" + b"x" * 16382 + b"e").num_pieces, 1)
        self.assertEqual(MetadataServer(b"d" + b"x" * 16383 + b"e").num_pieces, 2)

    def test_server_answers_request_with_data(self) -> None:
        for index in (0, PIECES - 1):
            msg = decode_metadata(self.server.answer(self.request(index)))
            self.assertEqual(msg.msg_type, METADATA_DATA)
            self.assertEqual((msg.piece, msg.total_size), (index, SIZE))
            self.assertEqual(msg.data, piece_of(INFO, index))
        self.assertLess(len(piece_of(INFO, PIECES - 1)), METADATA_PIECE_SIZE)

    def test_server_rejects_piece_out_of_range(self) -> None:
        msg = decode_metadata(self.server.answer(self.request(PIECES)))
        self.assertEqual((msg.msg_type, msg.piece), (METADATA_REJECT, PIECES))
        with self.assertRaises(IndexError):
            self.server.piece(PIECES)

    def test_server_does_not_answer_data_reject_or_unknown_types(self) -> None:
        data = decode_metadata(metadata_data(0, 10, b"x" * 10))
        reject = decode_metadata(metadata_reject(0))
        unknown = decode_metadata(bencode.encode({"msg_type": 7, "piece": 0}))
        for msg in (data, reject, unknown):
            self.assertIsNone(self.server.answer(msg))

    def test_node_without_metadata_rejects_requests_only(self) -> None:
        msg = decode_metadata(refuse(self.request(3)))
        self.assertEqual((msg.msg_type, msg.piece), (METADATA_REJECT, 3))
        self.assertIsNone(refuse(decode_metadata(metadata_reject(3))))
        self.assertIsNone(refuse(decode_metadata(b"d8:msg_typei7ee")))

    def test_server_refuses_empty_dictionary(self) -> None:
        with self.assertRaises(MetadataError):
            MetadataServer(b"")


if __name__ == "__main__":
    unittest.main()
