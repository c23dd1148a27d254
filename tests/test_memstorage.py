"""Tests for sta.memstorage: the Storage contract over memory, and what only MemoryStorage does."""

from __future__ import annotations

import time
import unittest
from typing import Optional

from sta.memstorage import MemoryStorage
from sta.storage import Storage, StorageError
from tests.test_storage import (PL, SPAN_FILES, StorageContract, Torrent, make_torrent,
                                write_all)

# A 64 MiB torrent written in 16 KiB blocks, verified and read back, must take well under this:
# engine tests run whole transfers on MemoryStorage and must not wait on it (measured: ~0.15 s).
FAST_ENOUGH_SECONDS = 5.0


class MemoryStorageContractTest(StorageContract, unittest.TestCase):
    def make(self, t: Torrent, data: Optional[bytes] = None, readonly: bool = False) -> Storage:
        return MemoryStorage(t.info, data, readonly=readonly)


class MemoryStorageTest(unittest.TestCase):
    def test_round_trip_then_full_check(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = MemoryStorage(t.info)
        self.assertEqual(st.check().count, 0)
        write_all(st, t, block=7000)
        self.assertTrue(st.check(workers=2).complete)
        self.assertEqual(st.read_block(3, 0, t.info.piece_size(3)), t.piece(3))

    def test_data_of_the_wrong_size_is_refused(self) -> None:
        t = make_torrent(SPAN_FILES)
        with self.assertRaises(StorageError):
            MemoryStorage(t.info, t.payload + b"x")

    def test_keeps_nothing_outside_the_object(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = MemoryStorage(t.info, t.payload)
        self.assertIsNone(st.state_path)
        self.assertEqual(st.file_paths(), [])
        self.assertTrue(st.restore().complete)
        self.assertEqual(st.delete_files(), [])
        self.assertEqual(st.verified.count, 0)
        self.assertTrue(MemoryStorage(t.info, t.payload).check().complete)  # deleted: only st

    def test_read_block_returns_bytes_not_a_view_of_the_buffer(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = MemoryStorage(t.info)
        st.write_block(0, 0, t.piece(0))
        block = st.read_block(0, 0, 100)
        self.assertIs(type(block), bytes)
        st.write_block(0, 0, b"\0" * 100)
        self.assertEqual(block, t.piece(0)[:100])

    def test_a_large_transfer_in_memory_is_fast(self) -> None:
        big = make_torrent([("big", 4 * 1024 * PL)], piece_length=16 * PL, single=True)
        started = time.monotonic()
        st = MemoryStorage(big.info)
        write_all(st, big)
        for i in range(big.info.num_pieces):
            self.assertTrue(st.verify_piece(i))
            st.mark_verified(i)
            st.read_block(i, 0, PL)
        self.assertLess(time.monotonic() - started, FAST_ENOUGH_SECONDS)


if __name__ == "__main__":
    unittest.main()
