import unittest

from sta.bencode import BencodeError, decode, decode_prefix, encode, kind, raw_value, MAX_DEPTH


class EncodeTests(unittest.TestCase):
    def test_encode_scalars(self):
        self.assertEqual(encode(b"spam"), b"4:spam")
        self.assertEqual(encode("é"), b"2:\xc3\xa9")
        self.assertEqual(encode(0), b"i0e")
        self.assertEqual(encode(-42), b"i-42e")
        self.assertEqual(encode(b""), b"0:")

    def test_encode_sorts_keys_as_raw_bytes(self):
        # "Z" (0x5a) sorts before "a" (0x61); a str key and a bytes key compare as bytes.
        self.assertEqual(encode({"a": 1, b"Z": 2, "\u00e9": 3}), b"d1:Zi2e1:ai1e2:\xc3\xa9i3ee")

    def test_encode_lists_and_tuples(self):
        self.assertEqual(encode([1, (b"x",), []]), b"li1el1:xelee")

    def test_encode_rejects_bool_float_none_and_bad_keys(self):
        for value in (True, 1.5, None, {1: 2}, object()):
            with self.assertRaises(BencodeError):
                encode(value)

    def test_encode_rejects_duplicate_key_spelled_twice(self):
        with self.assertRaises(BencodeError):
            encode({"a": 1, b"a": 2})


class DecodeTests(unittest.TestCase):
    def test_round_trip(self):
        value = {b"announce": b"http://x/a", b"info": {b"length": 5, b"name": b"f"},
                 b"list": [b"", -1, [b"\x00\xff"], {}]}
        self.assertEqual(decode(encode(value)), value)

    def test_decoder_rejects_leading_zero(self):
        with self.assertRaises(BencodeError) as cm:
            decode(b"i03e")
        self.assertEqual(cm.exception.offset, 0)

    def test_decoder_rejects_negative_zero(self):
        with self.assertRaises(BencodeError):
            decode(b"i-0e")

    def test_decoder_rejects_empty_and_malformed_integers(self):
        for data in (b"ie", b"i-e", b"i1-2e", b"i 1e", b"i+1e", b"i1", b"i" + b"9" * 100 + b"e"):
            with self.assertRaises(BencodeError, msg=data):
                decode(data)

    def test_decoder_rejects_string_length_with_leading_zero(self):
        with self.assertRaises(BencodeError):
            decode(b"03:abc")

    def test_decoder_rejects_length_past_input(self):
        with self.assertRaises(BencodeError) as cm:
            decode(b"l10:abce")
        self.assertEqual(cm.exception.offset, 1)
        self.assertIn("byte 1", str(cm.exception))

    def test_decoder_rejects_unterminated_containers(self):
        for data in (b"l", b"li1e", b"d", b"d1:ai1e", b""):
            with self.assertRaises(BencodeError, msg=data):
                decode(data)

    def test_decoder_rejects_trailing_data(self):
        with self.assertRaises(BencodeError) as cm:
            decode(b"i1ei2e")
        self.assertEqual(cm.exception.offset, 3)

    def test_decoder_rejects_non_string_keys(self):
        with self.assertRaises(BencodeError):
            decode(b"di1ei2ee")

    def test_decoder_rejects_duplicate_keys(self):
        with self.assertRaises(BencodeError) as cm:
            decode(b"d1:ai1e1:ai2ee")
        self.assertIn("duplicate", str(cm.exception))
        self.assertEqual(cm.exception.offset, 7)

    def test_decoder_rejects_unsorted_keys(self):
        with self.assertRaises(BencodeError):
            decode(b"d1:bi1e1:ai2ee")

    def test_lenient_mode_accepts_unsorted_keys_but_not_duplicates(self):
        self.assertEqual(decode(b"d1:bi1e1:ai2ee", sorted_keys=False), {b"a": 2, b"b": 1})
        with self.assertRaises(BencodeError):
            decode(b"d1:bi1e1:bi2ee", sorted_keys=False)
        self.assertEqual(raw_value(b"d4:infoi1e1:ai0ee", b"info", sorted_keys=False), b"i1e")
        with self.assertRaises(BencodeError):
            raw_value(b"d4:infoi1e4:infoi0ee", b"info", sorted_keys=False)

    def test_decoder_rejects_unknown_type_byte(self):
        with self.assertRaises(BencodeError) as cm:
            decode(b"lxe")
        self.assertEqual(cm.exception.offset, 1)

    def test_decoder_bounds_nesting_without_recursion_error(self):
        deep = b"l" * 100000 + b"e" * 100000
        with self.assertRaises(BencodeError) as cm:
            decode(deep)
        self.assertEqual(cm.exception.offset, MAX_DEPTH)
        ok = b"l" * MAX_DEPTH + b"e" * MAX_DEPTH
        self.assertIsInstance(decode(ok), list)

    def test_decoder_huge_declared_length_costs_no_memory(self):
        with self.assertRaises(BencodeError):
            decode(b"99999999999999999999:x")

    def test_decode_prefix_returns_end_offset(self):
        data = b"d8:msg_typei1e5:piecei0eeRAWBYTES"
        value, end = decode_prefix(data)
        self.assertEqual(value, {b"msg_type": 1, b"piece": 0})
        self.assertEqual(data[end:], b"RAWBYTES")

    def test_raw_value_slices_exact_bytes(self):
        # A non-canonical inner value cannot appear (the decoder is strict), but the slice must be
        # the file's own bytes, not a re-encoding.
        data = b"d8:announce3:url4:infod6:lengthi5e4:name1:fe1:zi0ee"
        self.assertEqual(raw_value(data, b"info"), b"d6:lengthi5e4:name1:fe")
        self.assertIsNone(raw_value(data, b"missing"))

    def test_raw_value_rejects_invalid_document(self):
        for data in (b"li1ee", b"d4:infoi1e", b"d4:infoi1eex", b"d1:bi1e1:ai1ee"):
            with self.assertRaises(BencodeError, msg=data):
                raw_value(data, b"info")


class KindTests(unittest.TestCase):
    def test_kind_names_each_decoded_type_as_error_messages_say_it(self):
        self.assertEqual([kind(decode(data)) for data in (b"3:abc", b"i3e", b"le", b"de")],
                         ["string", "integer", "list", "dictionary"])


if __name__ == "__main__":
    unittest.main()
