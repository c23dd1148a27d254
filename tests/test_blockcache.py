"""Tests for sta.blockcache: assembling pieces in memory, hashing them before they reach the
storage, and the seeding read cache."""

from __future__ import annotations

import hashlib
import unittest
from typing import List, Tuple

from sta.blockcache import (DiskBacklog, ReadCache, WriteBuffers, block_digests, verify_and_write,
                            verify_stored)
from sta.memstorage import MemoryStorage
from tests.test_storage import make_torrent

BLOCK = 16384


class WriteBuffersTest(unittest.TestCase):
    def test_blocks_assemble_a_piece_handed_over_whole(self) -> None:
        bufs = WriteBuffers(lambda i: 3 * BLOCK, limit=10 * BLOCK)
        for begin in (2 * BLOCK, 0, BLOCK):
            self.assertTrue(bufs.store(7, begin, bytes([begin // BLOCK]) * BLOCK))
        piece = bufs.take(7)
        self.assertEqual(bytes(piece), b"\0" * BLOCK + b"\1" * BLOCK + b"\2" * BLOCK)
        self.assertEqual(bufs.buffered_bytes, 3 * BLOCK)  # counted until released
        bufs.release(len(piece))
        self.assertEqual(bufs.buffered_bytes, 0)

    def test_a_released_buffer_is_reused_for_the_next_piece(self) -> None:
        bufs = WriteBuffers(lambda i: 2 * BLOCK, limit=10 * BLOCK)
        for begin in (0, BLOCK):
            bufs.store(1, begin, b"\7" * BLOCK)
        first = bufs.take(1)
        bufs.release(len(first), first)
        bufs.store(2, 0, b"\3" * BLOCK)
        bufs.store(2, BLOCK, b"\4" * BLOCK)
        second = bufs.take(2)
        self.assertIs(second, first)
        self.assertEqual(bytes(second), b"\3" * BLOCK + b"\4" * BLOCK)
        bufs.release(len(second))  # not handed back: a later piece gets a new buffer
        bufs.store(3, 0, b"\5" * BLOCK)
        bufs.store(3, BLOCK, b"\5" * BLOCK)
        self.assertIsNot(bufs.take(3), first)

    def test_past_the_limit_a_piece_is_written_directly_until_taken(self) -> None:
        bufs = WriteBuffers(lambda i: 4 * BLOCK, limit=6 * BLOCK)
        self.assertTrue(bufs.store(0, 0, b"a" * BLOCK))
        self.assertFalse(bufs.store(1, 0, b"b" * BLOCK))
        self.assertFalse(bufs.store(1, BLOCK, b"b" * BLOCK))  # stays direct even after room
        bufs.discard(0)
        self.assertFalse(bufs.store(1, 2 * BLOCK, b"b" * BLOCK))
        self.assertIsNone(bufs.take(1))
        self.assertTrue(bufs.store(1, 0, b"b" * BLOCK))  # a new attempt may buffer again
        bufs.clear()
        self.assertEqual(bufs.buffered_bytes, 0)


class DiskBacklogTest(unittest.TestCase):
    def test_each_waiter_is_called_once_when_the_count_falls_under_its_own_limit(self) -> None:
        backlog = DiskBacklog()
        calls: List[str] = []
        backlog.add(6)
        backlog.wait("small", 4, lambda: calls.append("small"))
        backlog.wait("large", 6, lambda: calls.append("large"))
        backlog.wait("large", 6, lambda: calls.append("large"))  # one wait per key
        backlog.done(1)
        self.assertEqual(calls, ["large"])
        backlog.done(1)
        self.assertEqual(calls, ["large"])
        backlog.done(1)
        self.assertEqual(calls, ["large", "small"])
        backlog.done(3)
        self.assertEqual((calls, backlog.bytes), (["large", "small"], 0))


class VerifyTest(unittest.TestCase):
    def setUp(self) -> None:
        self.t = make_torrent([("a", 16 * BLOCK)], piece_length=4 * BLOCK)
        self.st = MemoryStorage(self.t.info)

    def test_only_a_piece_that_matches_its_hash_reaches_the_storage(self) -> None:
        good = bytearray(self.t.piece(0))
        bad = bytearray(good)
        bad[BLOCK + 5] ^= 1
        ok, digests = verify_and_write(self.st, 0, self.t.info.piece_hash(0), bad, BLOCK, False)
        self.assertFalse(ok)
        self.assertEqual(self.st.read_block(0, 0, 10), bytes(10))  # nothing written
        wanted = block_digests(good, BLOCK)
        self.assertEqual([a == b for a, b in zip(digests, wanted)], [True, False, True, True])
        ok, digests = verify_and_write(self.st, 0, self.t.info.piece_hash(0), good, BLOCK, False)
        self.assertEqual((ok, digests), (True, None))
        self.assertTrue(self.st.verify_piece(0))

    def test_a_piece_written_block_by_block_is_hashed_by_reading_it_back(self) -> None:
        piece = self.t.piece(1)
        for begin in range(0, len(piece), BLOCK):
            self.st.write_block(1, begin, piece[begin:begin + BLOCK])
        ok, digests = verify_stored(self.st, 1, len(piece), BLOCK, True)
        self.assertTrue(ok)
        self.assertEqual(digests, [hashlib.sha1(piece[b:b + BLOCK]).digest()
                                   for b in range(0, len(piece), BLOCK)])


class ReadCacheTest(unittest.TestCase):
    def test_blocks_of_one_chunk_cost_one_read(self) -> None:
        t = make_torrent([("a", 16 * BLOCK)], piece_length=4 * BLOCK)
        st = MemoryStorage(t.info, t.payload)
        reads: List[Tuple[int, int, int]] = []

        def read(i: int, begin: int, length: int) -> bytes:
            reads.append((i, begin, length))
            return st.read_block(i, begin, length)

        cache = ReadCache(read, t.info.piece_size, t.info.piece_length, chunks=2)
        for begin in range(0, 4 * BLOCK, BLOCK):
            self.assertEqual(bytes(cache.read(0, begin, BLOCK)), t.piece(0)[begin:begin + BLOCK])
        self.assertEqual(reads, [(0, 0, 4 * BLOCK)])
        cache.read(1, 0, BLOCK)
        cache.read(2, 0, BLOCK)
        cache.read(0, 0, BLOCK)  # evicted by the two above: read again
        self.assertEqual(len(reads), 4)


if __name__ == "__main__":
    unittest.main()
