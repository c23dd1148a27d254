"""Tests for sta.storage: block I/O over files, verification, checks, safety, links, deleting,
and the Storage interface (a contract run here on FileStorage and in test_memstorage on
MemoryStorage)."""

from __future__ import annotations

import errno
import hashlib
import inspect
import os
import random
import sys
import tempfile
import threading
import unittest
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple
from unittest import mock

from sta import bencode, safepath, storage
from sta.blockcache import verify_and_write
from sta.metainfo import Info, parse_info
from sta.storage import FileStorage, Storage, StorageError

PL = 16384  # the smallest piece length metainfo accepts; keeps test data small


def random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


class Torrent:
    """A torrent built for a test: its Info, its whole payload and each file's content."""

    def __init__(self, info: Info, payload: bytes, contents: List[bytes]) -> None:
        self.info = info
        self.payload = payload
        self.contents = contents

    def piece(self, i: int) -> bytes:
        return self.payload[i * self.info.piece_length:(i + 1) * self.info.piece_length]

    def file_path(self, root: str, fi: int) -> str:
        return os.path.join(root, *self.info.files[fi].path)

    def write_files(self, root: str, skip: Sequence[int] = ()) -> None:
        """Put the data in place the way another client (or the original files) would."""
        for fi, (entry, data) in enumerate(zip(self.info.files, self.contents)):
            if entry.pad or fi in skip:
                continue
            path = self.file_path(root, fi)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)


def make_torrent(files: Sequence[Tuple], piece_length: int = PL, seed: int = 1,
                 name: str = "t", single: bool = False) -> Torrent:
    """Build a real Info. ``files``: (name, length) or (name, length, "pad") tuples."""
    rng = random.Random(seed)
    contents, entries = [], []
    for spec in files:
        fname, length = spec[0], spec[1]
        pad = len(spec) > 2 and spec[2] == "pad"
        data = bytes(length) if pad else random_bytes(rng, length)
        contents.append(data)
        entry = {b"length": length, b"path": [p.encode() for p in fname.split("/")]}
        if pad:
            entry[b"attr"] = b"p"
        entries.append(entry)
    payload = b"".join(contents)
    pieces = b"".join(hashlib.sha1(payload[i:i + piece_length]).digest()
                      for i in range(0, len(payload), piece_length))
    d = {b"name": name.encode(), b"piece length": piece_length, b"pieces": pieces}
    if single:
        d[b"length"] = len(payload)
    else:
        d[b"files"] = entries
    return Torrent(parse_info(bencode.encode(d)), payload, contents)


def fake_hash_torrent(length: int, piece_length: int, name: str = "big") -> Info:
    """A single-file Info without real data (hashes are random), for size-only tests."""
    n = -(-length // piece_length)
    d = {b"name": name.encode(), b"piece length": piece_length, b"length": length,
         b"pieces": os.urandom(20 * n)}
    return parse_info(bencode.encode(d))


def write_all(st, t: Torrent, block: int = 16384) -> None:
    for i in range(t.info.num_pieces):
        piece = memoryview(t.piece(i))
        for begin in range(0, len(piece), block):
            st.write_block(i, begin, piece[begin:begin + block])


# Pieces of 16 KiB over: a 20000, e0 0, b 5000, c 30000, e1 0, d 10000 (65000 bytes):
# piece 0 = a[0:16384]; piece 1 = a[16384:] + b + c[0:7768] (three files, an empty one between);
# piece 2 = c[7768:24152]; piece 3 = c[24152:] + d (the last piece, 15848 bytes)
SPAN_FILES = [("a", 20000), ("e0", 0), ("sub/b", 5000), ("sub/c", 30000), ("e1", 0),
              ("d", 10000)]


def temp_dir(test: unittest.TestCase) -> str:
    tmp = tempfile.TemporaryDirectory()
    test.addCleanup(tmp.cleanup)
    return tmp.name


class TempDirTest(unittest.TestCase):
    """A fresh output folder (``root``) and STA_HOME (``home``, where the resume key lives)."""

    def setUp(self) -> None:
        self.root = temp_dir(self)
        self.home = temp_dir(self)
        patcher = mock.patch.dict(os.environ, {"STA_HOME": self.home})
        patcher.start()
        self.addCleanup(patcher.stop)

    def storage(self, info: Info, root: Optional[str] = None, **kw) -> FileStorage:
        st = FileStorage(info, self.root if root is None else root, **kw)
        self.addCleanup(st.close)
        return st


class MappingTest(TempDirTest):
    def test_write_read_round_trip_across_file_boundaries(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        write_all(st, t, block=7000)  # unaligned blocks cross every boundary
        for fi, entry in enumerate(t.info.files):
            with open(t.file_path(self.root, fi), "rb") as f:
                self.assertEqual(f.read(), t.contents[fi], entry.path)
        for i in range(t.info.num_pieces):
            self.assertEqual(st.read_block(i, 0, t.info.piece_size(i)), t.piece(i))
            self.assertEqual(st.read_block(i, 100, 9000), t.piece(i)[100:9100])

    def test_zero_length_files_are_created_with_the_first_write(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        st.write_block(0, 0, t.piece(0)[:16384])
        self.assertTrue(os.path.isfile(t.file_path(self.root, 1)))
        self.assertEqual(os.path.getsize(t.file_path(self.root, 4)), 0)

    def test_single_file_round_trip_with_memoryview_and_bytearray(self) -> None:
        t = make_torrent([("only", 3 * PL + 123)], single=True)
        st = self.storage(t.info)
        for i in range(t.info.num_pieces):
            data = t.piece(i)
            half = len(data) // 2
            st.write_block(i, 0, memoryview(data)[:half])
            st.write_block(i, half, bytearray(data[half:]))
        self.assertEqual(st.read_block(3, 0, 123), t.piece(3))
        with open(t.file_path(self.root, 0), "rb") as f:
            self.assertEqual(f.read(), t.payload)

    def test_block_outside_its_piece_is_rejected(self) -> None:
        t = make_torrent([("only", 2 * PL + 10)], single=True)
        st = self.storage(t.info)
        for args in ((3, 0, b"x"), (-1, 0, b"x"), (2, 5, b"x" * 6), (0, PL - 1, b"xx"),
                     (0, -1, b"x"), (0, 0, b"")):
            with self.assertRaises(StorageError, msg=args):
                st.write_block(*args)
        with self.assertRaises(StorageError):
            st.read_block(2, 0, 11)

    def test_seek_fallback_without_positional_io_round_trips(self) -> None:
        t = make_torrent(SPAN_FILES)
        with mock.patch.object(storage, "_HAVE_PIO", False):
            st = self.storage(t.info)
        write_all(st, t, block=5000)
        self.assertEqual(st.check(workers=2).count, t.info.num_pieces)
        self.assertEqual(st.read_block(1, 0, t.info.piece_size(1)), t.piece(1))


class VerifyAndCheckTest(TempDirTest):
    def test_verify_piece_true_for_good_data_false_for_bad(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        write_all(st, t)
        self.assertTrue(all(st.verify_piece(i) for i in range(t.info.num_pieces)))
        st.write_block(1, 9000, b"\xff" * 10)  # inside sub/c
        self.assertFalse(st.verify_piece(1))
        self.assertTrue(st.verify_piece(2))

    def test_verify_piece_of_missing_file_is_false_not_an_error(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        self.assertFalse(st.verify_piece(0))
        self.assertFalse(os.path.exists(t.file_path(self.root, 0)))

    def test_check_finds_exactly_the_good_pieces(self) -> None:
        t = make_torrent([("a", 3 * PL), ("b", 2 * PL + 100), ("c", PL), ("d", 2 * PL)])
        t.write_files(self.root, skip=[2])  # c missing -> piece 5 (b's tail + c) and 6
        with open(t.file_path(self.root, 0), "r+b") as f:  # corrupt piece 1
            f.seek(PL + 5)
            f.write(b"!")
        with open(t.file_path(self.root, 3), "r+b") as f:  # d cut short: its last piece
            f.truncate(PL + 50)
        expected = {0, 2, 3, 4}
        for workers in (1, 2, 4):
            st = FileStorage(t.info, self.root, readonly=True)
            self.addCleanup(st.close)
            calls = []
            bf = st.check(progress=lambda d, n: calls.append((d, n)), workers=workers)
            self.assertEqual(set(bf.iter_set()), expected, workers)
            self.assertEqual(set(st.verified.iter_set()), expected)
            self.assertEqual(calls[-1], (t.info.num_pieces, t.info.num_pieces))
            self.assertTrue(st.dirty)

    def test_check_reads_nothing_of_missing_or_short_files(self) -> None:
        t = make_torrent([("a", 2 * PL), ("b", 4 * PL)])
        t.write_files(self.root, skip=[1])
        st = self.storage(t.info, readonly=True)
        with mock.patch.object(st, "verify_piece", wraps=st.verify_piece) as verify:
            bf = st.check(workers=1)
        self.assertEqual(sorted(c.args[0] for c in verify.call_args_list), [0, 1])
        self.assertEqual(set(bf.iter_set()), {0, 1})

    def test_existing_data_is_found_and_served_read_only(self) -> None:
        t = make_torrent(SPAN_FILES)
        t.write_files(self.root)
        before = sorted(os.listdir(os.path.join(self.root, "t")))
        st = self.storage(t.info, readonly=True)
        self.assertTrue(st.check().complete)
        self.assertEqual(st.read_block(3, 0, 100), t.piece(3)[:100])
        with self.assertRaises(StorageError):
            st.write_block(0, 0, b"x")
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "t"))), before)

    def test_read_only_storage_never_creates_files(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info, readonly=True)
        self.assertEqual(st.check().count, 0)
        with self.assertRaises(StorageError) as cm:
            st.read_block(0, 0, 10)
        self.assertIn("is missing", str(cm.exception))
        self.assertEqual(os.listdir(self.root), [])

    def test_verify_in_threads_while_the_handle_cache_evicts(self) -> None:
        t = make_torrent([("f%d" % i, PL) for i in range(8)])
        t.write_files(self.root)
        st = self.storage(t.info, max_open_files=1)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(st.verify_piece, list(range(8)) * 10))
        self.assertTrue(all(results))
        self.assertLessEqual(st.open_files, 1)


class FileHandlingTest(TempDirTest):
    def test_files_are_sparse_not_filled_with_zeros(self) -> None:
        info = fake_hash_torrent(256 * 1024 * 1024, 1024 * 1024)
        st = self.storage(info)
        st.write_block(0, 0, b"x" * 16384)
        path = st.file_path(0)
        self.assertEqual(os.path.getsize(path), 256 * 1024 * 1024)  # final size from the start
        st.write_block(info.num_pieces - 1, 0, b"x" * 16384)
        blocks = getattr(os.stat(path), "st_blocks", None)
        if blocks is None:
            self.skipTest("st_blocks not available on this platform")
        self.assertLess(blocks * 512, 4 * 1024 * 1024)

    def test_existing_larger_file_is_never_truncated(self) -> None:
        t = make_torrent([("only", 2 * PL)], single=True)
        path = t.file_path(self.root, 0)
        with open(path, "wb") as f:
            f.write(b"z" * (5 * PL))
        st = self.storage(t.info)
        st.write_block(0, 0, t.piece(0))
        st.save()
        self.assertEqual(os.path.getsize(path), 5 * PL)

    def test_pad_files_are_never_created_and_read_as_zeros(self) -> None:
        t = make_torrent([("a", 5000), (".pad/11384", PL - 5000, "pad"), ("b", PL + 7)])
        st = self.storage(t.info)
        write_all(st, t, block=3000)
        self.assertFalse(os.path.exists(os.path.join(self.root, "t", ".pad")))
        self.assertEqual(st.read_block(0, 5000, 100), bytes(100))
        self.assertTrue(all(st.verify_piece(i) for i in range(t.info.num_pieces)))
        self.assertEqual(st.check(workers=2).count, t.info.num_pieces)

    def test_writes_into_padding_are_dropped(self) -> None:
        t = make_torrent([("a", 5000), (".pad/11384", PL - 5000, "pad"), ("b", PL)])
        st = self.storage(t.info)
        st.write_block(0, 0, t.piece(0)[:5000] + b"\xee" * (PL - 5000))
        self.assertEqual(st.read_block(0, 0, PL), t.piece(0))
        self.assertTrue(st.verify_piece(0))

    def test_open_file_cache_stays_within_its_bound(self) -> None:
        t = make_torrent([("f%02d" % i, PL) for i in range(20)])
        st = self.storage(t.info, max_open_files=3)
        fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else None
        before = len(os.listdir(fd_dir)) if fd_dir else 0
        write_all(st, t)
        self.assertLessEqual(st.open_files, 3)
        if fd_dir:
            self.assertLessEqual(len(os.listdir(fd_dir)) - before, 3)
        self.assertEqual(st.check(workers=3).count, 20)
        self.assertLessEqual(st.open_files, 3)

    def test_default_cache_bound_is_a_named_constant(self) -> None:
        self.assertGreater(storage.MAX_OPEN_FILES, 0)
        t = make_torrent([("f%03d" % i, PL // 4) for i in range(storage.MAX_OPEN_FILES * 2)])
        st = self.storage(t.info)
        write_all(st, t, block=4096)
        self.assertLessEqual(st.open_files, storage.MAX_OPEN_FILES)


class SaveTest(TempDirTest):
    def test_a_save_with_nothing_new_neither_fsyncs_nor_rewrites_the_resume_file(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        st.write_block(0, 0, t.piece(0))
        st.mark_verified(0)
        st.save()
        state = st.state_path
        before = os.stat(state)
        with mock.patch.object(os, "fsync") as fsync:
            st.save()
        fsync.assert_not_called()
        after = os.stat(state)
        self.assertEqual((after.st_ino, after.st_mtime_ns), (before.st_ino, before.st_mtime_ns))

    def test_a_block_written_since_the_last_save_is_fsynced_by_the_next(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        st.restore()
        st.save()
        st.write_block(1, 0, t.piece(1)[:100])  # no piece verified: only the write is new
        with mock.patch.object(os, "fsync", wraps=os.fsync) as fsync:
            st.save()
        self.assertGreaterEqual(fsync.call_count, 1)

    def test_saves_from_two_threads_run_one_after_the_other(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        st.restore()
        inside, most = [0], [0]
        guard = threading.Lock()
        real = st._fsync_files

        def slow_fsync(files) -> None:
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            threading.Event().wait(0.05)  # long enough for the other thread to arrive
            real(files)
            with guard:
                inside[0] -= 1

        def save_piece(index: int) -> None:
            st.write_block(index, 0, t.piece(index))
            st.mark_verified(index)
            st.save()

        with mock.patch.object(st, "_fsync_files", slow_fsync), ThreadPoolExecutor(2) as pool:
            list(pool.map(save_piece, [0, 1]))
        self.assertEqual(most[0], 1)
        self.assertFalse(st.dirty)


class SafetyTest(TempDirTest):
    def test_write_to_a_verified_piece_is_refused_and_leaves_data_intact(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        write_all(st, t)
        self.assertTrue(st.verify_piece(1))
        st.mark_verified(1)
        with self.assertRaises(StorageError) as cm:
            st.write_block(1, 0, b"\x00" * 100)
        self.assertIn("already verified", str(cm.exception))
        self.assertTrue(st.verify_piece(1))

    def test_write_to_a_verified_piece_is_refused_on_the_single_file_fast_path(self) -> None:
        t = make_torrent([("only", 2 * PL)], single=True)
        st = self.storage(t.info)
        write_all(st, t)
        st.mark_verified(0)
        with self.assertRaises(StorageError):
            st.write_block(0, 0, b"\x00")
        self.assertTrue(st.verify_piece(0))

    def assert_no_space_error(self, st: FileStorage, t: Torrent, fi: int, index: int) -> None:
        def full(*args):
            raise OSError(errno.ENOSPC, "No space left on device")

        with mock.patch("os.pwrite", full), mock.patch("os.write", full):
            with self.assertRaises(StorageError) as cm:
                st.write_block(index, 0, t.piece(index)[:1000])
        self.assertEqual(str(cm.exception),
                         "no space left on device writing %s: free some space and run the same "
                         "command again" % t.file_path(self.root, fi))

    def test_full_disk_raises_a_clear_error_and_keeps_verified_pieces(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        for i in (0, 1):
            st.write_block(i, 0, t.piece(i))
            self.assertTrue(st.verify_piece(i))
            st.mark_verified(i)
        self.assert_no_space_error(st, t, 3, 2)
        self.assertEqual(set(st.verified.iter_set()), {0, 1})
        st.save()
        st.close()
        again = self.storage(t.info)
        self.assertEqual(set(again.restore().iter_set()), {0, 1})

    def test_full_disk_on_the_single_file_fast_path(self) -> None:
        t = make_torrent([("only", 3 * PL)], single=True)
        st = self.storage(t.info)
        st.write_block(0, 0, t.piece(0))  # opens the file: later writes take the fast path
        self.assertIsNotNone(st._fast_fd)
        self.assert_no_space_error(st, t, 0, 1)

    def test_full_disk_without_positional_io(self) -> None:
        t = make_torrent([("only", 3 * PL)], single=True)
        with mock.patch.object(storage, "_HAVE_PIO", False):
            st = self.storage(t.info)
        self.assert_no_space_error(st, t, 0, 1)

    def test_folder_path_through_a_regular_file_raises_storage_error(self) -> None:
        blocker = os.path.join(self.root, "blocker")
        with open(blocker, "w") as f:
            f.write("x")
        t = make_torrent(SPAN_FILES)
        st = FileStorage(t.info, os.path.join(blocker, "downloads"))
        self.addCleanup(st.close)
        with self.assertRaises(StorageError) as cm:
            st.write_block(0, 0, t.piece(0))
        msg = str(cm.exception)
        self.assertIn(os.path.join(blocker, "downloads", "t"), msg)
        self.assertIn("choose another output folder", msg)
        self.assertNotIn("\n", msg)

    @unittest.skipIf(sys.platform == "win32" or not hasattr(os, "geteuid") or os.geteuid() == 0,
                     "root (or Windows ACLs) can write into a folder without write permission")
    def test_unwritable_folder_raises_storage_error(self) -> None:
        out = os.path.join(self.root, "ro")
        os.mkdir(out, 0o500)
        self.addCleanup(os.chmod, out, 0o700)
        t = make_torrent([("only", PL)], single=True)
        st = FileStorage(t.info, out)
        self.addCleanup(st.close)
        with self.assertRaises(StorageError) as cm:
            st.write_block(0, 0, t.piece(0))
        self.assertIn("permission denied to write %s" % os.path.join(out, "t"),
                      str(cm.exception))


def can_symlink() -> bool:
    """Symbolic links can be made here (Windows needs a privilege or developer mode)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            os.symlink(tmp, os.path.join(tmp, "link"))
        except (OSError, NotImplementedError, AttributeError):
            return False
    return True


CAN_SYMLINK = can_symlink()


class StorageContract:
    """What the engine relies on from any Storage. A TestCase mixing this in provides
    ``make(t, data=None, readonly=False)``: a storage of torrent ``t``, holding ``data`` (the
    whole payload) when given."""

    def make(self, t: Torrent, data: Optional[bytes] = None, readonly: bool = False) -> Storage:
        raise NotImplementedError

    def test_has_every_member_of_the_protocol_with_the_same_parameters(self) -> None:
        st = self.make(make_torrent(SPAN_FILES))
        self.assertIsInstance(st, Storage)
        for name, member in vars(Storage).items():
            if name.startswith("_"):
                continue
            if isinstance(member, property):
                getattr(st, name)  # readable
                continue
            want = [(p.name, p.default) for p in inspect.signature(member).parameters.values()]
            got = [(p.name, p.default)
                   for p in inspect.signature(getattr(type(st), name)).parameters.values()]
            self.assertEqual(got, want, name)

    def test_blocks_written_verify_and_read_back_across_files(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.make(t)
        write_all(st, t, block=7000)
        self.assertTrue(all(st.verify_piece(i) for i in range(t.info.num_pieces)))
        self.assertEqual(st.read_block(1, 100, 9000), t.piece(1)[100:9100])

    def test_a_whole_piece_is_written_at_begin_zero_from_a_bytearray(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.make(t)
        ok, _ = verify_and_write(st, 1, t.info.piece_hash(1), bytearray(t.piece(1)), 16384, False)
        self.assertTrue(ok)
        self.assertTrue(st.verify_piece(1))

    def test_verified_pieces_and_read_only_storage_refuse_writes(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.make(t)
        st.write_block(0, 0, t.piece(0))
        st.mark_verified(0)
        with self.assertRaises(StorageError):
            st.write_block(0, 0, b"x")
        seed = self.make(t, data=t.payload, readonly=True)
        self.assertTrue(seed.readonly)
        self.assertTrue(seed.restore().complete)
        with self.assertRaises(StorageError):
            seed.write_block(1, 0, b"x")

    def test_dirty_follows_marks_and_saves(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.make(t)
        st.restore()
        st.save()
        self.assertFalse(st.dirty)
        st.write_block(2, 0, t.piece(2))
        st.mark_verified(2)
        self.assertTrue(st.dirty)
        st.save()
        self.assertFalse(st.dirty)

    def test_padding_is_never_stored(self) -> None:
        t = make_torrent([("a", 5000), (".pad/11384", PL - 5000, "pad"), ("b", PL)])
        st = self.make(t)
        st.write_block(0, 0, t.piece(0)[:5000] + b"\xee" * (PL - 5000))
        self.assertEqual(st.read_block(0, 5000, 10), bytes(10))
        self.assertTrue(st.verify_piece(0))
        self.assertFalse(any(".pad" in p for p in st.file_paths()))

    def test_hashing_in_a_thread_while_blocks_are_written(self) -> None:
        t = make_torrent([("a", 8 * PL)])
        st = self.make(t)
        write_all(st, t)
        stop = threading.Event()

        def verify_loop() -> List[bool]:
            out: List[bool] = []
            while not stop.is_set() and len(out) < 1000:
                out.append(st.verify_piece(0))
            return out

        with ThreadPoolExecutor(2) as pool:
            fut = pool.submit(verify_loop)
            for _ in range(50):
                st.write_block(5, 0, t.piece(5))
            stop.set()
            self.assertTrue(all(fut.result()))

    def test_delete_files_leaves_nothing_and_forget_state_twice_is_harmless(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.make(t)
        write_all(st, t)
        st.mark_verified(0)
        st.save()
        paths = st.file_paths()
        deleted = st.delete_files()
        self.assertEqual(sorted(deleted), sorted(paths))
        self.assertFalse(any(os.path.exists(p) for p in paths))
        st.forget_state()
        st.forget_state()

    def test_closed_storage_refuses_io(self) -> None:
        t = make_torrent(SPAN_FILES)
        st = self.make(t)
        st.close()
        with self.assertRaises(StorageError):
            st.write_block(0, 0, t.piece(0))
        with self.assertRaises(StorageError):
            st.read_block(0, 0, 10)


class FileStorageContractTest(StorageContract, TempDirTest):
    def make(self, t: Torrent, data: Optional[bytes] = None, readonly: bool = False) -> Storage:
        root = temp_dir(self)
        if data is not None:
            t.write_files(root)
        return self.storage(t.info, root=root, readonly=readonly)


@unittest.skipUnless(CAN_SYMLINK, "symbolic links cannot be made here")
class LinkTest(TempDirTest):
    """A link left in the output folder never lets a torrent reach files outside it."""

    def setUp(self) -> None:
        super().setUp()
        self.outside = temp_dir(self)

    def assert_link_refused(self, cm: "unittest.case._AssertRaisesContext", link: str) -> None:
        msg = str(cm.exception)
        self.assertIn(link + " is a symbolic link", msg)
        self.assertIn("replace it with the real folder or file", msg)
        self.assertNotIn("\n", msg)

    def check_write_through_folder_link_refused(self) -> None:
        t = make_torrent([("a", PL), ("sub/b", PL)])
        os.symlink(self.outside, os.path.join(self.root, "t"))
        st = self.storage(t.info)
        with self.assertRaises(StorageError) as cm:
            st.write_block(0, 0, t.piece(0))
        self.assert_link_refused(cm, os.path.join(self.root, "t"))
        self.assertEqual(os.listdir(self.outside), [])

    def check_dangling_link_as_the_file_is_not_followed(self) -> None:
        t = make_torrent([("only", PL)], single=True)
        target = os.path.join(self.outside, "x")
        os.symlink(target, os.path.join(self.root, "t"))
        st = self.storage(t.info)
        with self.assertRaises(StorageError) as cm:
            st.write_block(0, 0, t.piece(0))
        self.assert_link_refused(cm, os.path.join(self.root, "t"))
        self.assertFalse(os.path.lexists(target))

    def test_write_through_a_folder_link_is_refused(self) -> None:
        self.check_write_through_folder_link_refused()

    def test_dangling_link_as_the_file_is_not_followed_on_create(self) -> None:
        self.check_dangling_link_as_the_file_is_not_followed()

    def test_links_are_refused_without_descriptor_relative_calls_too(self) -> None:
        with mock.patch.object(safepath, "USE_DIR_FD", False):
            self.check_write_through_folder_link_refused()
            os.unlink(os.path.join(self.root, "t"))
            self.check_dangling_link_as_the_file_is_not_followed()

    def test_seed_does_not_read_data_behind_a_link(self) -> None:
        t = make_torrent([("a", PL), ("b", PL)])
        t.write_files(self.outside)
        os.symlink(os.path.join(self.outside, "t"), os.path.join(self.root, "t"))
        st = self.storage(t.info, readonly=True)
        with self.assertLogs("sta.storage", "WARNING") as logs:
            self.assertEqual(st.restore().count, 0)
        self.assertEqual(len(logs.output), 2)  # once per file, not once per piece
        with self.assertRaises(StorageError) as cm:
            st.read_block(0, 0, 10)
        self.assert_link_refused(cm, os.path.join(self.root, "t"))

    def test_delete_files_through_a_link_deletes_nothing(self) -> None:
        t = make_torrent(SPAN_FILES)
        write_all(self.storage(t.info), t)
        theirs = os.path.join(self.outside, "b")
        with open(theirs, "w") as f:
            f.write("not the torrent's")
        sub = os.path.join(self.root, "t", "sub")
        for name in os.listdir(sub):
            os.unlink(os.path.join(sub, name))
        os.rmdir(sub)
        os.symlink(self.outside, sub)
        st = self.storage(t.info)
        with self.assertRaises(StorageError) as cm:
            st.delete_files()
        self.assertTrue(str(cm.exception).startswith("nothing deleted: " + sub))
        self.assertTrue(os.path.exists(theirs))
        self.assertTrue(os.path.exists(t.file_path(self.root, 0)))


class DeleteAndNamesTest(TempDirTest):
    def test_delete_files_removes_exactly_the_torrent_files_and_the_folders_left_empty(self):
        t = make_torrent(SPAN_FILES)
        st = self.storage(t.info)
        write_all(st, t)
        st.mark_verified(0)
        st.save()
        keep = os.path.join(self.root, "t", "sub", "mine.txt")
        with open(keep, "w") as f:
            f.write("the user's own file")
        other = os.path.join(self.root, "other")
        os.mkdir(other)
        deleted = st.delete_files()
        real = os.path.realpath(self.root)
        self.assertEqual(sorted(deleted), sorted(t.file_path(real, i) for i in range(6)))
        self.assertEqual(sorted(os.listdir(self.root)), ["other", "t"])
        self.assertEqual(os.listdir(os.path.join(self.root, "t")), ["sub"])
        self.assertEqual(os.listdir(os.path.join(self.root, "t", "sub")), ["mine.txt"])
        os.unlink(keep)
        self.assertEqual(self.storage(t.info).delete_files(), [])
        self.assertEqual(os.listdir(self.root), ["other"])  # t and .sta gone

    def test_torrent_named_like_the_state_folder_is_stored_beside_it(self) -> None:
        for name in (".sta", ".STA", ".sta. "):
            t = make_torrent([("x.resume", PL)], name=name)
            st = self.storage(t.info)
            write_all(st, t)
            st.mark_verified(0)
            st.save()
            self.assertEqual(st.file_path(0), os.path.join(self.root, "_" + name, "x.resume"))
            self.assertEqual(os.listdir(os.path.join(self.root, ".sta")),
                             [os.path.basename(st.state_path)])
            st.delete_files()
        single = make_torrent([(".sta", PL)], name=".sta", single=True)
        self.assertEqual(self.storage(single.info).file_path(0), os.path.join(self.root, "_.sta"))
        self.assertEqual(storage.storage_parts(("a", ".sta")), ("a", ".sta"))  # deeper: harmless

    def test_paths_that_leave_the_folder_are_refused(self) -> None:
        for parts in (("..", "x"), ("a", ""), ("a", "."), ("a", "b" + os.sep + "c"), ("a\0",)):
            with self.assertRaises(StorageError, msg=parts):
                storage.storage_parts(parts)

    @unittest.skipUnless(CAN_SYMLINK, "symbolic links cannot be made here")
    def test_file_paths_are_absolute_under_the_folder_real_path(self) -> None:
        t = make_torrent([("a", PL), (".pad/1", PL, "pad"), ("b", PL)])
        alias = os.path.join(temp_dir(self), "alias")
        os.symlink(self.root, alias)
        st = self.storage(t.info, root=alias)
        real = os.path.realpath(self.root)
        self.assertEqual(st.file_paths(), [os.path.join(real, "t", "a"),
                                           os.path.join(real, "t", "b")])
        other = self.storage(t.info)
        self.assertEqual(storage.overlapping_paths(st.file_paths(), other.file_paths()),
                         st.file_paths())

if __name__ == "__main__":
    unittest.main()
