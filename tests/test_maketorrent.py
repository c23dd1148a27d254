"""Tests for sta.maketorrent: walking, naming, hashing on several threads and wrapping files
into a .torrent, read back with sta.metainfo. Every file lives in a temporary folder."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import unittest
from unittest import mock

from sta import maketorrent, metainfo
from sta.metainfo import MetainfoError

PL = 16384


def write(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def expected_pieces(data: bytes, piece_length: int) -> bytes:
    return b"".join(hashlib.sha1(data[i:i + piece_length]).digest()
                    for i in range(0, len(data), piece_length))


class MakeTorrentTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def test_single_file_torrent(self) -> None:
        data = os.urandom(100000)
        f = write(self.path("one.bin"), data)
        meta = metainfo.parse(maketorrent.make_torrent([f], ["http://t/announce"], comment="hi",
                                                       private=True, web_seeds=["http://w/"]))
        info = meta.info
        self.assertEqual((info.name, info.length, info.multi_file, info.private),
                         ("one.bin", 100000, False, True))
        self.assertEqual(info.pieces, expected_pieces(data, info.piece_length))
        self.assertEqual((meta.announce, meta.comment, meta.url_list, meta.created_by),
                         ("http://t/announce", "hi", ("http://w/",), metainfo.CREATED_BY))
        self.assertIsNotNone(meta.creation_date)

    def test_pieces_span_file_boundaries(self) -> None:
        sizes = {"a": 10000, "b": 0, "c": 30001, "sub/d": 16384, "sub/e": 7}
        blob = b""
        for rel in sorted(sizes, key=lambda r: tuple(r.split("/"))):
            chunk = os.urandom(sizes[rel])
            write(self.path("top", *rel.split("/")), chunk)
            blob += chunk
        for workers in (1, 3):
            with self.subTest(workers=workers):
                info = metainfo.parse(maketorrent.make_torrent(
                    [self.path("top")], piece_length=PL, workers=workers)).info
                self.assertEqual(info.pieces, expected_pieces(blob, PL))
                self.assertEqual([f.path for f in info.files],
                                 [("top", "a"), ("top", "b"), ("top", "c"), ("top", "sub", "d"),
                                  ("top", "sub", "e")])

    def test_small_hash_chunks_give_the_same_pieces(self) -> None:
        data = os.urandom(5 * PL + 3)
        write(self.path("x", "f"), data)
        for chunk, block in ((1, 1 << 20), (1 << 20, 1), (3 * PL, 2 * PL)):
            with self.subTest(chunk=chunk, block=block):
                with mock.patch.multiple(maketorrent, HASH_CHUNK_BYTES=chunk,
                                         HASH_READ_BYTES=block):
                    info = metainfo.parse(maketorrent.make_torrent([self.path("x")],
                                                                   piece_length=PL)).info
                self.assertEqual(info.pieces, expected_pieces(data, PL))

    def test_small_read_blocks_across_many_files(self) -> None:
        blob = b""
        for i in range(7):
            chunk = os.urandom(5000 * i + 123)
            write(self.path("m", "f%d" % i), chunk)
            blob += chunk
        with mock.patch.multiple(maketorrent, HASH_CHUNK_BYTES=2 * PL, HASH_READ_BYTES=1):
            info = metainfo.parse(maketorrent.make_torrent([self.path("m")], piece_length=PL,
                                                           workers=2)).info
        self.assertEqual(info.pieces, expected_pieces(blob, PL))

    def test_same_input_gives_same_info_hash(self) -> None:
        write(self.path("d", "f1"), b"a" * 5000)
        write(self.path("d", ".hidden"), b"b" * 10)
        one = metainfo.parse(maketorrent.make_torrent([self.path("d")], creation_date=1))
        two = metainfo.parse(maketorrent.make_torrent([self.path("d")], creation_date=2))
        self.assertEqual(one.info_hash, two.info_hash)
        self.assertIn(("d", ".hidden"), [f.path for f in one.info.files])
        self.assertNotIn(b"creation date", one.info.raw)

    def test_several_paths_make_a_multi_file_torrent_named_by_name(self) -> None:
        write(self.path("ass1.pdf"), b"1" * 100)
        write(self.path("report.pdf"), b"2" * 200)
        write(self.path("extra", "x.txt"), b"3")
        meta = metainfo.parse(maketorrent.make_torrent(
            [self.path("report.pdf"), self.path("ass1.pdf"), self.path("extra")], name="bundle"))
        self.assertEqual(meta.info.name, "bundle")
        self.assertEqual([f.path for f in meta.info.files],
                         [("bundle", "ass1.pdf"), ("bundle", "extra", "x.txt"),
                          ("bundle", "report.pdf")])

    def test_default_name_of_several_paths(self) -> None:
        a, b = write(self.path("lab", "a.pdf"), b"1"), write(self.path("lab", "b.pdf"), b"2")
        self.assertEqual(maketorrent.default_name([a, b]), "lab")
        c = write(self.path("other", "c.pdf"), b"3")
        self.assertEqual(maketorrent.default_name([a, c]), "a")
        self.assertEqual(metainfo.parse(maketorrent.make_torrent([a, b])).info.name, "lab")

    def test_symlink_loop_is_skipped(self) -> None:
        if not hasattr(os, "symlink") or sys.platform == "win32":
            self.skipTest("symbolic links need privileges on Windows")
        write(self.path("d", "f"), b"data")
        os.symlink(self.path("d"), self.path("d", "loop"))
        os.symlink(self.path("d", "f"), self.path("d", "link-to-f"))
        os.symlink(self.path("missing"), self.path("d", "broken"))
        with self.assertLogs("sta.maketorrent", "WARNING"):
            info = metainfo.parse(maketorrent.make_torrent([self.path("d")])).info
        self.assertEqual([f.path for f in info.files], [("d", "f"), ("d", "link-to-f")])

    def test_exclude_leaves_out_the_torrent_being_written(self) -> None:
        write(self.path("d", "f"), b"data")
        write(self.path("d", "d.torrent"), b"old")
        info = metainfo.parse(maketorrent.make_torrent(
            [self.path("d")], exclude=[self.path("d", "d.torrent")])).info
        self.assertEqual([f.path for f in info.files], [("d", "f")])

    def test_progress_reports_the_total_at_the_end(self) -> None:
        write(self.path("f"), os.urandom(3 * PL))
        calls = []
        maketorrent.make_torrent([self.path("f")], piece_length=PL,
                                 progress=lambda done, total: calls.append((done, total)))
        self.assertEqual(calls[-1], (3 * PL, 3 * PL))

    def test_explicit_piece_length_is_validated(self) -> None:
        write(self.path("f"), b"x" * 10)
        with self.assertRaisesRegex(MetainfoError, "power of two"):
            maketorrent.make_torrent([self.path("f")], piece_length=20000)

    def test_make_rejects_missing_path(self) -> None:
        with self.assertRaisesRegex(MetainfoError, "no such file or folder"):
            maketorrent.make_torrent([self.path("nope")])

    def test_make_rejects_no_paths(self) -> None:
        with self.assertRaisesRegex(MetainfoError, "nothing to share"):
            maketorrent.make_torrent([])

    def test_make_rejects_only_empty_files(self) -> None:
        write(self.path("d", "empty"), b"")
        with self.assertRaisesRegex(MetainfoError, "every file is empty"):
            maketorrent.make_torrent([self.path("d")])

    def test_make_rejects_empty_folder(self) -> None:
        os.makedirs(self.path("empty"))
        with self.assertRaisesRegex(MetainfoError, "no files"):
            maketorrent.make_torrent([self.path("empty")])

    def test_make_rejects_two_paths_with_the_same_name(self) -> None:
        a = write(self.path("x", "f.txt"), b"1")
        b = write(self.path("y", "f.txt"), b"2")
        with self.assertRaisesRegex(MetainfoError, "both named 'f.txt'"):
            maketorrent.make_torrent([a, b], name="n")

    def test_make_rejects_file_name_a_downloader_would_change(self) -> None:
        if sys.platform == "win32":
            self.skipTest("control characters cannot be in Windows file names")
        write(self.path("d", "bad\tname"), b"1")
        with self.assertRaisesRegex(MetainfoError, "not portable"):
            maketorrent.make_torrent([self.path("d")])

    def test_make_rejects_file_name_that_is_not_utf8(self) -> None:
        if sys.platform in ("win32", "darwin"):
            self.skipTest("the file system itself requires Unicode names")
        folder = self.path("d")
        os.makedirs(folder)
        with open(os.path.join(os.fsencode(folder), b"bad\xff"), "wb") as f:
            f.write(b"1")
        with self.assertRaisesRegex(MetainfoError, "not valid UTF-8"):
            maketorrent.make_torrent([folder])

    def test_hash_files_notices_a_file_that_shrank(self) -> None:
        f = write(self.path("f"), b"x" * 100)
        with self.assertRaisesRegex(MetainfoError, "changed while it was being hashed"):
            maketorrent.hash_files([(f, 200)], PL)

    def test_hash_files_reads_pad_files_as_zeros(self) -> None:
        f = write(self.path("f"), b"x" * 100)
        pieces = maketorrent.hash_files([(f, 100), (None, PL - 100), (f, 100)], PL)
        self.assertEqual(pieces, expected_pieces(b"x" * 100 + bytes(PL - 100) + b"x" * 100, PL))

    def test_auto_piece_length(self) -> None:
        self.assertEqual(maketorrent.auto_piece_length(1), 16384)
        self.assertEqual(maketorrent.auto_piece_length(2000 * 16384), 16384)
        self.assertEqual(maketorrent.auto_piece_length(2000 * 16384 + 1), 32768)
        self.assertEqual(maketorrent.auto_piece_length(1 << 30), 1 << 20)
        self.assertEqual(maketorrent.auto_piece_length(1 << 50), maketorrent.MAX_AUTO_PIECE_LENGTH)
        for total in (10 ** 8, 3 * 10 ** 9, 2 * 10 ** 10):
            n = -(-total // maketorrent.auto_piece_length(total))
            self.assertTrue(1000 <= n <= 2000, (total, n))

    def test_progress_only_grows_and_never_passes_the_total(self) -> None:
        write(self.path("f"), os.urandom(5 * PL + 1))
        calls = []
        with mock.patch.object(maketorrent, "HASH_CHUNK_BYTES", PL):
            maketorrent.make_torrent([self.path("f")], piece_length=PL, workers=2,
                                     progress=lambda done, total: calls.append((done, total)))
        self.assertEqual(len(calls), 6)  # one call per hashed chunk
        dones = [done for done, _ in calls]
        self.assertEqual(dones, sorted(dones))
        self.assertTrue(all(total == 5 * PL + 1 and done <= total for done, total in calls))

    def test_single_file_is_named_after_itself_unless_named(self) -> None:
        f = write(self.path("ass1.pdf"), b"x")
        self.assertEqual(metainfo.parse(maketorrent.make_torrent([f])).info.name, "ass1.pdf")
        self.assertEqual(metainfo.parse(maketorrent.make_torrent([f], name="a")).info.name, "a")

    def test_creation_date_defaults_to_now_and_stays_out_of_the_info_hash(self) -> None:
        f = write(self.path("f"), b"x")
        before = int(time.time())
        meta = metainfo.parse(maketorrent.make_torrent([f]))
        self.assertTrue(before <= meta.creation_date <= int(time.time()) + 1)
        self.assertEqual(meta.info_hash,
                         metainfo.parse(maketorrent.make_torrent([f], creation_date=0)).info_hash)

    def test_last_piece_may_be_short(self) -> None:
        data = os.urandom(2 * PL + 5)
        f = write(self.path("f"), data)
        pieces = maketorrent.hash_files([(f, len(data))], PL, workers=2)
        self.assertEqual(len(pieces), 3 * 20)
        self.assertEqual(pieces[-20:], hashlib.sha1(data[2 * PL:]).digest())

    @unittest.skipUnless(hasattr(os, "mkfifo"), "named pipes are a POSIX notion")
    def test_named_pipe_is_skipped_with_a_warning(self) -> None:
        write(self.path("d", "f"), b"data")
        os.mkfifo(self.path("d", "pipe"))
        with self.assertLogs("sta.maketorrent", "WARNING") as logs:
            info = metainfo.parse(maketorrent.make_torrent([self.path("d")])).info
        self.assertEqual([f.path for f in info.files], [("d", "f")])
        self.assertIn("not a regular file", logs.output[0])

    def test_too_many_files_is_refused(self) -> None:
        for i in range(4):
            write(self.path("d", f"f{i}"), b"x")
        with mock.patch.object(metainfo, "MAX_FILES", 3):
            with self.assertRaisesRegex(MetainfoError, "more than 3 files"):
                maketorrent.make_torrent([self.path("d")])

    def test_folders_nested_too_deep_are_refused(self) -> None:
        write(self.path("d", "a", "b", "c", "f"), b"x")
        with mock.patch.object(metainfo, "MAX_PATH_DEPTH", 2):
            with self.assertRaisesRegex(MetainfoError, "nested deeper than 2 levels"):
                maketorrent.make_torrent([self.path("d")])


if __name__ == "__main__":
    unittest.main()
