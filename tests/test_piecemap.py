"""Tests for sta.piecemap: block -> file ranges, bounds, the verified record, error messages."""

from __future__ import annotations

import errno
import unittest

from sta.piecemap import PieceMap, StorageError, os_error
from tests.test_storage import PL, SPAN_FILES, make_torrent


class GeometryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.t = make_torrent(SPAN_FILES)
        self.pm = PieceMap(self.t.info)

    def test_piece_spanning_three_files_and_zero_length_files_maps_to_each_range(self) -> None:
        self.assertEqual(self.pm._piece_segments(1),
                         [(0, 16384, 0, 3616), (2, 0, 3616, 5000), (3, 0, 8616, 7768)])
        self.assertEqual(self.pm._piece_segments(3), [(3, 24152, 0, 5848), (5, 0, 5848, 10000)])
        # block inside piece 1 crossing b -> c
        self.assertEqual(self.pm._segments(1, 8000, 1000), [(2, 4384, 0, 616), (3, 0, 616, 384)])

    def test_segments_of_every_piece_cover_the_payload_exactly_once(self) -> None:
        covered = []
        for i in range(self.t.info.num_pieces):
            for fi, foff, _boff, n in self.pm._piece_segments(i):
                start = self.t.info.files[fi].offset + foff
                covered.append((start, start + n))
        self.assertEqual(covered[0][0], 0)
        self.assertEqual(covered[-1][1], self.t.info.length)
        self.assertTrue(all(a[1] == b[0] for a, b in zip(covered, covered[1:])))

    def test_blocks_outside_a_piece_or_the_torrent_are_refused(self) -> None:
        last = self.t.info.num_pieces - 1
        for index, begin, length in ((-1, 0, 1), (last + 1, 0, 1), (0, -1, 1), (0, 0, 0),
                                     (0, PL - 1, 2), (last, 0, self.t.info.piece_size(last) + 1)):
            with self.assertRaises(StorageError, msg=(index, begin, length)):
                self.pm._check_block(index, begin, length)

    def test_file_list_that_does_not_add_up_is_refused(self) -> None:
        class Bad:
            piece_length, num_pieces, length = PL, 1, PL
            files = self.t.info.files[:1]

            @staticmethod
            def piece_size(_i: int) -> int:
                return PL

        with self.assertRaises(StorageError):
            PieceMap(Bad())


class VerifiedRecordTest(unittest.TestCase):
    def test_marks_count_once_and_make_the_record_dirty(self) -> None:
        pm = PieceMap(make_torrent(SPAN_FILES).info)
        self.assertFalse(pm.dirty)
        pm.mark_verified(2)
        pm.mark_verified(2)
        self.assertEqual((pm.unsaved, pm.dirty, set(pm.verified.iter_set())), (1, True, {2}))
        with self.assertRaises(StorageError):
            pm.mark_verified(99)


class OsErrorTest(unittest.TestCase):
    def test_each_failure_says_what_to_do(self) -> None:
        cases = {
            errno.ENOSPC: "no space left on device writing /d/f: free some space",
            errno.EACCES: "permission denied to write /d/f: choose another output folder",
            errno.EROFS: "cannot write /d/f: the file system is read-only",
            errno.EMFILE: "too many open files opening /d/f: raise the open-file limit",
        }
        for code, start in cases.items():
            msg = str(os_error("/d/f", OSError(code, "x"), writing=True))
            self.assertTrue(msg.startswith(start), msg)
        missing = str(os_error("/d/f", FileNotFoundError(errno.ENOENT, "gone"), writing=False))
        self.assertEqual(missing, "/d/f is missing: it was moved or deleted outside sta; check "
                                  "the data again")
        self.assertEqual(str(os_error("/d/f", OSError(errno.EIO, "I/O error"), writing=False)),
                         "cannot read /d/f: I/O error")


if __name__ == "__main__":
    unittest.main()
