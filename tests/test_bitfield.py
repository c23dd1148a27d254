"""Tests for sta.bitfield: BEP 3 bit order, sizes, counts, iteration, bulk operations."""

import random
import unittest

from sta.bitfield import Bitfield, BitfieldError


class BitOrderTests(unittest.TestCase):
    def test_piece_zero_is_high_bit_of_first_byte(self):
        bf = Bitfield(16)
        bf.set(0)
        self.assertEqual(bf.to_bytes(), b"\x80\x00")
        bf.set(7)
        bf.set(8)
        self.assertEqual(bf.to_bytes(), b"\x81\x80")

    def test_from_bytes_reads_bep3_order(self):
        bf = Bitfield.from_bytes(b"\x40\x01", 16)
        self.assertEqual(list(bf.iter_set()), [1, 15])
        self.assertIn(1, bf)
        self.assertNotIn(0, bf)

    def test_to_int_has_piece_i_at_bit_i(self):
        bf = Bitfield.from_indices(20, [0, 9, 19])
        self.assertEqual(bf.to_int(), (1 << 0) | (1 << 9) | (1 << 19))
        self.assertEqual(Bitfield.from_int(bf.to_int(), 20), bf)

    def test_to_int_follows_changes(self):
        bf = Bitfield(10)
        self.assertEqual(bf.to_int(), 0)
        bf.set(3)
        self.assertEqual(bf.to_int(), 8)
        bf.clear(3)
        self.assertEqual(bf.to_int(), 0)


class SizeTests(unittest.TestCase):
    def test_from_bytes_rejects_wrong_length(self):
        for data in (b"", b"\x00", b"\x00\x00\x00"):
            with self.assertRaises(BitfieldError):
                Bitfield.from_bytes(data, 9)
        with self.assertRaises(ValueError):  # BitfieldError is a ValueError
            Bitfield.from_bytes(b"\x00", 9)

    def test_spare_bits_are_cleared_like_the_big_clients(self):
        bf = Bitfield.from_bytes(b"\xff\xff", 10)
        self.assertEqual(bf.count, 10)
        self.assertTrue(bf.complete)
        self.assertEqual(bf.to_bytes(), b"\xff\xc0")

    def test_spare_bits_rejected_in_strict_mode(self):
        with self.assertRaises(BitfieldError):
            Bitfield.from_bytes(b"\xff\xe0", 10, strict=True)
        self.assertEqual(Bitfield.from_bytes(b"\xff\xc0", 10, strict=True).count, 10)

    def test_zero_bits(self):
        bf = Bitfield(0)
        self.assertEqual(len(bf), 0)
        self.assertEqual(bf.to_bytes(), b"")
        self.assertTrue(bf.complete)
        self.assertEqual(Bitfield.full(0).count, 0)
        self.assertEqual(Bitfield.from_bytes(b"", 0).count, 0)

    def test_negative_size_rejected(self):
        with self.assertRaises(BitfieldError):
            Bitfield(-1)

    def test_index_out_of_range(self):
        bf = Bitfield(9)
        self.assertNotIn(9, bf)
        self.assertNotIn(-1, bf)
        with self.assertRaises(IndexError):
            bf.set(9)
        with self.assertRaises(IndexError):
            bf.set(-1)
        with self.assertRaises(IndexError):
            bf.clear(100)


class CountTests(unittest.TestCase):
    def test_count_follows_set_and_clear(self):
        bf = Bitfield(12)
        self.assertTrue(bf.set(5))
        self.assertFalse(bf.set(5))
        self.assertEqual(bf.count, 1)
        self.assertTrue(bf.set(11))
        self.assertEqual(bf.count, 2)
        self.assertTrue(bf.clear(5))
        self.assertFalse(bf.clear(5))
        self.assertEqual(bf.count, 1)
        self.assertTrue(bf.any())
        self.assertEqual(len(bf), 12)

    def test_full_is_complete_for_all_sizes(self):
        for n in range(1, 33):
            bf = Bitfield.full(n)
            self.assertTrue(bf.complete, n)
            self.assertEqual(bf.count, n)
            self.assertEqual(list(bf.iter_set()), list(range(n)))
            self.assertEqual(Bitfield.from_bytes(bf.to_bytes(), n, strict=True), bf)

    def test_complete_after_setting_every_bit(self):
        bf = Bitfield(10)
        for i in range(10):
            self.assertFalse(bf.complete)
            bf.set(i)
        self.assertTrue(bf.complete)
        self.assertEqual(bf, Bitfield.full(10))


class IterationAndBulkTests(unittest.TestCase):
    def test_iteration_matches_membership(self):
        rng = random.Random(7)
        for n in (1, 7, 8, 9, 100, 1001):
            data = bytes(rng.getrandbits(8) for _ in range((n + 7) // 8))
            bf = Bitfield.from_bytes(data, n)
            expected = [i for i in range(n) if i in bf]
            self.assertEqual(list(bf.iter_set()), expected)
            self.assertEqual(bf.count, len(expected))

    def test_copy_is_independent(self):
        bf = Bitfield.from_indices(10, [1, 2])
        other = bf.copy()
        other.set(3)
        self.assertNotIn(3, bf)
        self.assertEqual(bf.count, 2)
        self.assertEqual(other.count, 3)

    def test_set_operations(self):
        a = Bitfield.from_indices(12, [0, 1, 2, 11])
        b = Bitfield.from_indices(12, [2, 3, 11])
        self.assertEqual(list((a & b).iter_set()), [2, 11])
        self.assertEqual(list((a | b).iter_set()), [0, 1, 2, 3, 11])
        self.assertEqual(list((a - b).iter_set()), [0, 1])
        self.assertEqual((a & b).count, 2)

    def test_set_operations_reject_other_sizes(self):
        with self.assertRaises(BitfieldError):
            Bitfield(8) & Bitfield(9)

    def test_from_int_ignores_bits_past_the_end(self):
        bf = Bitfield.from_int((1 << 20) - 1, 10)
        self.assertEqual(bf.count, 10)
        self.assertEqual(bf.to_bytes(), b"\xff\xc0")

    def test_equality_and_repr(self):
        self.assertEqual(Bitfield(8), Bitfield(8))
        self.assertNotEqual(Bitfield(8), Bitfield(9))
        self.assertNotEqual(Bitfield(8), Bitfield.full(8))
        self.assertIn("count=8", repr(Bitfield.full(8)))
        with self.assertRaises(TypeError):
            hash(Bitfield(8))


if __name__ == "__main__":
    unittest.main()
