"""Direct (page-cache-bypassing) piece writes and the aligned buffers they need."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import unittest
from unittest import mock

from sta import directio
from sta.blockcache import WriteBuffers, verify_and_write
from sta.directio import (ALIGNMENT, BufferPool, DirectFile, aligned_buffer, file_system_type,
                          parse_mountinfo, pwrite_rest)
from sta.storage import FileStorage
from tests.test_storage import make_torrent

MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "30 22 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw\n"
    "31 22 0:40 / /home/lab\\040share rw - nfs4 server:/export rw\n"
    "32 30 8:2 / /tmp/disk rw - xfs /dev/sdb1 rw\n"
)


def address(buffer) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


def direct_writes_here(folder: str) -> bool:
    return bool(getattr(os, "O_DIRECT", 0)) and \
        file_system_type(folder) in directio.LOCAL_FILE_SYSTEMS


class BufferTests(unittest.TestCase):
    def test_aligned_buffer_starts_on_a_page_and_is_zeroed_and_writable(self) -> None:
        buffer = aligned_buffer(3 * ALIGNMENT)
        self.addCleanup(buffer.close)
        self.assertEqual(address(buffer) % ALIGNMENT, 0)
        self.assertEqual(bytes(buffer), bytes(3 * ALIGNMENT))
        buffer[5:8] = b"abc"
        self.assertEqual(buffer[4:9], b"\0abc\0")

    def test_pool_hands_back_a_returned_buffer_of_the_same_size(self) -> None:
        pool = BufferPool(keep_bytes=4 * ALIGNMENT)
        self.addCleanup(pool.clear)
        first = pool.get(2 * ALIGNMENT)
        pool.put(first)
        self.assertEqual(pool.kept_bytes, 2 * ALIGNMENT)
        self.assertIs(pool.get(2 * ALIGNMENT), first)
        self.assertEqual(pool.kept_bytes, 0)
        self.assertIsNot(pool.get(ALIGNMENT), first)  # another size: a new buffer

    def test_pool_closes_what_it_cannot_keep(self) -> None:
        pool = BufferPool(keep_bytes=ALIGNMENT)
        self.addCleanup(pool.clear)
        kept, extra = pool.get(ALIGNMENT), pool.get(ALIGNMENT)
        pool.put(kept)
        pool.put(extra)
        self.assertFalse(kept.closed)
        self.assertTrue(extra.closed)
        self.assertEqual(pool.kept_bytes, ALIGNMENT)


    def test_trim_closes_what_no_one_took_since_the_last_trim(self) -> None:
        pool = BufferPool(keep_bytes=8 * ALIGNMENT)
        self.addCleanup(pool.clear)
        buffers = [pool.get(ALIGNMENT) for _ in range(4)]
        for buffer in buffers:
            pool.put(buffer)
        self.assertEqual(pool.trim(), 0, "kept since the last trim only: not yet idle a while")
        busy = pool.get(ALIGNMENT)        # one is taken and comes back; three stay idle
        pool.put(busy)
        self.assertEqual(pool.trim(), 3 * ALIGNMENT)
        self.assertEqual(pool.kept_bytes, ALIGNMENT)
        self.assertEqual(sum(buffer.closed for buffer in buffers), 3)
        self.assertIs(pool.get(ALIGNMENT), busy, "the one in use is kept")
        pool.put(busy)
        self.assertEqual(pool.trim(), 0)
        self.assertEqual(pool.trim(), ALIGNMENT)  # idle for a whole round now
        self.assertEqual(pool.kept_bytes, 0)


class MountTests(unittest.TestCase):
    def test_mountinfo_lines_give_mount_point_and_type_with_escapes_undone(self) -> None:
        self.assertEqual(parse_mountinfo(MOUNTINFO),
                         [("/", "ext4"), ("/tmp", "tmpfs"), ("/home/lab share", "nfs4"),
                          ("/tmp/disk", "xfs")])
        self.assertEqual(parse_mountinfo("garbage\n\n12 3 - \n"), [])

    def test_the_deepest_mount_holding_the_path_gives_the_type(self) -> None:
        self.assertEqual(file_system_type("/tmp/disk/a/b", MOUNTINFO), "xfs")
        self.assertEqual(file_system_type("/tmp/diskette", MOUNTINFO), "tmpfs")
        self.assertEqual(file_system_type("/home/lab share/x", MOUNTINFO), "nfs4")
        self.assertEqual(file_system_type("/var/x", MOUNTINFO), "ext4")
        self.assertIsNone(file_system_type("/var/x", ""))

    def test_no_mount_table_means_no_direct_writes(self) -> None:
        with mock.patch.object(directio, "MOUNTINFO", "/nonexistent/mountinfo"):
            self.assertIsNone(file_system_type("/"))
            self.assertFalse(DirectFile("/tmp/x").enabled)

    def test_network_and_memory_file_systems_are_written_through_the_cache(self) -> None:
        with mock.patch.object(directio, "_O_DIRECT", 0o40000), \
                mock.patch.object(directio, "file_system_type", side_effect=["nfs4", "tmpfs",
                                                                             "ext4"]):
            self.assertFalse(DirectFile("/a").enabled)
            self.assertFalse(DirectFile("/b").enabled)
            self.assertTrue(DirectFile("/c").enabled)


class DirectFileTests(unittest.TestCase):
    def setUp(self) -> None:
        patcher = mock.patch.object(directio, "DIRECT_MIN_BYTES", ALIGNMENT)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.dir = tempfile.mkdtemp(prefix="sta-directio-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "data")
        with open(self.path, "wb") as f:
            f.write(b"\xff" * (4 * ALIGNMENT))

    def content(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def test_aligned_write_lands_in_the_file(self) -> None:
        if not direct_writes_here(self.dir):
            self.skipTest("no direct writes on this platform or file system (%s)"
                          % file_system_type(self.dir))
        direct = DirectFile(self.path)
        self.addCleanup(direct.close)
        buffer = aligned_buffer(2 * ALIGNMENT)
        self.addCleanup(buffer.close)
        buffer[:] = b"\1" * (2 * ALIGNMENT)
        self.assertEqual(direct.write(buffer, ALIGNMENT), 2 * ALIGNMENT)
        self.assertEqual(self.content(), b"\xff" * ALIGNMENT + b"\1" * (2 * ALIGNMENT)
                         + b"\xff" * ALIGNMENT)

    def test_writes_under_the_minimum_size_are_left_to_the_caller(self) -> None:
        direct = DirectFile(self.path, enabled=True)
        self.addCleanup(direct.close)
        buffer = aligned_buffer(2 * ALIGNMENT)
        self.addCleanup(buffer.close)
        with mock.patch.object(directio, "DIRECT_MIN_BYTES", 4 * ALIGNMENT), \
                mock.patch("os.pwrite") as pwrite:
            self.assertEqual(direct.write(buffer, 0), 0)
        pwrite.assert_not_called()

    def test_the_direct_descriptor_names_the_file_opened_not_what_the_path_became(self) -> None:
        if not direct_writes_here(self.dir) or not os.path.isdir("/proc/self/fd"):
            self.skipTest("no direct writes or no /proc here")
        fd = os.open(self.path, os.O_RDWR)
        self.addCleanup(os.close, fd)
        direct = DirectFile(self.path, fd)
        self.addCleanup(direct.close)
        moved = self.path + ".moved"
        os.rename(self.path, moved)
        with open(self.path, "wb") as f:  # something else now sits at the path
            f.write(b"other")
        buffer = aligned_buffer(ALIGNMENT)
        self.addCleanup(buffer.close)
        buffer[:] = b"\2" * ALIGNMENT
        self.assertEqual(direct.write(buffer, 0), ALIGNMENT)
        with open(moved, "rb") as f:
            self.assertEqual(f.read(ALIGNMENT), b"\2" * ALIGNMENT)
        self.assertEqual(self.content(), b"other")

    def test_unaligned_writes_are_left_to_the_caller(self) -> None:
        direct = DirectFile(self.path, enabled=True)
        self.addCleanup(direct.close)
        buffer = aligned_buffer(2 * ALIGNMENT)
        self.addCleanup(buffer.close)
        with mock.patch("os.pwrite") as pwrite:
            self.assertEqual(direct.write(buffer, 100), 0)               # offset
            self.assertEqual(direct.write(buffer[:100], 0), 0)           # length
            self.assertEqual(direct.write(bytearray(ALIGNMENT), 0), 0)   # not our buffer
        pwrite.assert_not_called()
        self.assertEqual(self.content(), b"\xff" * (4 * ALIGNMENT))

    def test_a_refused_direct_write_switches_the_file_to_buffered_writes(self) -> None:
        direct = DirectFile(self.path, enabled=True)
        self.addCleanup(direct.close)
        buffer = aligned_buffer(ALIGNMENT)
        self.addCleanup(buffer.close)
        with mock.patch("os.pwrite", side_effect=OSError(errno.EINVAL, "Invalid argument")):
            self.assertEqual(direct.write(buffer, 0), 0)
        self.assertFalse(direct.enabled)
        self.assertEqual(direct.write(buffer, 0), 0)

    def test_a_real_write_error_is_raised(self) -> None:
        direct = DirectFile(self.path, enabled=True)
        self.addCleanup(direct.close)
        buffer = aligned_buffer(ALIGNMENT)
        self.addCleanup(buffer.close)
        with mock.patch("os.pwrite", side_effect=OSError(errno.ENOSPC, "No space left")):
            with self.assertRaises(OSError):
                direct.write(buffer, 0)
        self.assertTrue(direct.enabled)

    def test_a_file_that_cannot_be_opened_directly_is_written_through_the_cache(self) -> None:
        direct = DirectFile(os.path.join(self.dir, "missing"), enabled=True)
        buffer = aligned_buffer(ALIGNMENT)
        self.addCleanup(buffer.close)
        self.assertEqual(direct.write(buffer, 0), 0)
        self.assertFalse(direct.enabled)

    def test_pwrite_rest_finishes_a_short_write_and_stops_without_progress(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        self.addCleanup(os.close, fd)
        real = os.pwrite
        with mock.patch("os.pwrite", side_effect=lambda f, d, o: real(f, bytes(d)[:3], o)):
            pwrite_rest(fd, b"0123456789", 100, 2)
        self.assertEqual(self.content()[102:110], b"23456789")
        with mock.patch("os.pwrite", return_value=0):
            with self.assertRaises(OSError):
                pwrite_rest(fd, b"abc", 0, 0)


class StorageTests(unittest.TestCase):
    """A downloaded piece goes through WriteBuffers, verify_and_write and FileStorage."""

    def download(self, files, single: bool):
        """Write every piece of a test torrent the way Downloader does; (torrent, folder, the
        DirectFile.write calls as (offset, length, bytes written directly))."""
        folder = tempfile.mkdtemp(prefix="sta-directio-")
        self.addCleanup(shutil.rmtree, folder, True)
        t = make_torrent(files, single=single)
        st = FileStorage(t.info, folder, home=folder)
        self.addCleanup(st.close)
        buffers = WriteBuffers(t.info.piece_size)
        self.addCleanup(buffers.clear)
        calls = []
        real_write = DirectFile.write

        def spy(direct: DirectFile, data, offset: int, *aligned) -> int:
            n = real_write(direct, data, offset, *aligned)
            calls.append((offset, len(data), n))
            return n

        with mock.patch.object(DirectFile, "write", spy), \
                mock.patch.object(directio, "DIRECT_MIN_BYTES", 16384):
            for index in range(t.info.num_pieces):
                self.assertTrue(buffers.store(index, 0, t.piece(index)))
                data = buffers.take(index)
                ok, _ = verify_and_write(st, index, t.info.piece_hash(index), data, 16384,
                                         False)
                self.assertTrue(ok)
                buffers.release(len(data), data)
        return t, folder, calls

    def test_whole_pieces_go_direct_and_the_short_last_piece_through_the_cache(self) -> None:
        t, folder, calls = self.download([("f", 3 * 16384 + 1000)], single=True)
        self.assertEqual([c[:2] for c in calls],
                         [(0, 16384), (16384, 16384), (32768, 16384), (49152, 1000)])
        went_direct = [c[2] for c in calls]
        self.assertEqual(went_direct[3], 0)  # 1000 bytes: not a multiple of a page
        if direct_writes_here(folder):
            self.assertEqual(went_direct[:3], [16384] * 3)
        with open(os.path.join(folder, "t"), "rb") as f:
            self.assertEqual(f.read(), t.payload)

    def test_aligned_parts_of_a_multi_file_piece_go_direct(self) -> None:
        # a: two whole pieces; b: 6000 bytes, so c starts inside piece 2 at offset 6000, and
        # c's parts of later pieces sit at file offsets that are not page-aligned.
        t, folder, calls = self.download([("a", 2 * 16384), ("b", 6000), ("c", 3 * 16384)],
                                         single=False)
        # c's part of piece 2 starts 6000 bytes into the buffer: never even offered.
        self.assertEqual([c[:2] for c in calls],
                         [(0, 16384), (16384, 16384), (0, 6000), (10384, 16384),
                          (26768, 16384), (43152, 6000)])
        went_direct = [c[2] for c in calls]
        self.assertEqual(went_direct[2:], [0] * 4)
        if direct_writes_here(folder):
            self.assertEqual(went_direct[:2], [16384] * 2)
        for fi, name in enumerate("abc"):
            with open(os.path.join(folder, "t", name), "rb") as f:
                self.assertEqual(f.read(), t.contents[fi], name)


if __name__ == "__main__":
    unittest.main()
