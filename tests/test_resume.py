"""Tests for sta.resume and the resume behaviour of FileStorage (restore / save): the format, its
authentication, the file identity it records, where it lives, and the atomic write."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from unittest import mock

from sta import bencode, resume
from sta.bitfield import Bitfield
from sta.resume import (MISSING, ResumeError, ResumeState, hash_pieces, plan_restore,
                        resume_key, stat_file)
from sta.storage import FileStorage, StorageError
from tests.test_storage import (CAN_SYMLINK, PL, SPAN_FILES, TempDirTest, Torrent, make_torrent,
                                temp_dir, write_all)

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a: pieces 0-2, b: pieces 3-4 (+100 bytes of piece 5), c: rest of 5 and 6, d: 6 (tail) - 8
FOUR_FILES = [("a", 3 * PL), ("b", 2 * PL + 100), ("c", PL), ("d", 2 * PL)]


KEY = b"k" * resume.RESUME_KEY_BYTES
# Bound on waiting for the file system's clock to tick (timestamps are taken from a coarse clock,
# a few milliseconds on Linux): far above any real tick.
CLOCK_TICK_DEADLINE = 10.0


def state_args(t: Torrent, key: bytes = KEY):
    info = t.info
    return (info.info_hash, info.piece_length, info.num_pieces, len(info.files), key)


def until_ctime_differs(path: str, recorded: int, redo) -> None:
    """Call ``redo`` until ``path``'s ctime differs from ``recorded``: a change made within one
    tick of the file system's clock keeps the old ctime, which no real edit that late hits."""
    deadline = time.monotonic() + CLOCK_TICK_DEADLINE
    while os.stat(path).st_ctime_ns == recorded and time.monotonic() < deadline:
        redo()


def keep_stat(path: str):
    """Context: modify a file and put its size and mtime back (a change the record cannot see)."""
    st = os.stat(path)

    class Ctx:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    return Ctx()


def corrupt(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def bump_mtime(path: str) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10 ** 9))


class ResumeStateTest(unittest.TestCase):
    def setUp(self) -> None:
        self.t = make_torrent(FOUR_FILES)
        self.bf = Bitfield.from_indices(self.t.info.num_pieces, [0, 3, 8])
        self.state = ResumeState(self.t.info.info_hash, PL, self.bf,
                                 [(3 * PL, 1, 11, 21), (2 * PL + 100, 2, 12, 22), MISSING,
                                  (2 * PL, 4, 14, 24)])

    def test_encode_decode_round_trip(self) -> None:
        back = ResumeState.decode(self.state.encode(KEY), *state_args(self.t))
        self.assertEqual(back.verified, self.bf)
        self.assertEqual(back.files, self.state.files)

    def test_decode_refuses_what_was_not_written_with_the_key(self) -> None:
        good = bencode.decode(self.state.encode(KEY))
        v1 = {k: v for k, v in good.items() if k != b"mac"}
        v1.update({b"version": 1, b"files": [f[:2] for f in good[b"files"]]})
        bad_cases = {
            "version 1 (no mac)": (bencode.encode(v1), KEY),
            "another key": (self.state.encode(b"x" * 32), KEY),
            "no mac": (bencode.encode({k: v for k, v in good.items() if k != b"mac"}), KEY),
            "mac of other content": (bencode.encode({**good, b"verified": b"\xff\x80"}), KEY),
            "no key here": (self.state.encode(KEY), None),
        }
        for what, (data, key) in bad_cases.items():
            with self.assertRaises(ResumeError, msg=what):
                ResumeState.decode(data, *state_args(self.t, key))

    def test_decode_rejects_anything_that_does_not_fit_the_torrent(self) -> None:
        good = bencode.decode(self.state.encode(KEY))
        del good[b"mac"]

        def signed(d: dict) -> bytes:
            return bencode.encode({**d, b"mac": resume._mac(KEY, d)})

        bad_cases = {
            "garbage": b"not bencode",
            "list": bencode.encode([1, 2]),
            "version": signed({**good, b"version": 3}),
            "info hash": signed({**good, b"info-hash": b"x" * 20}),
            "piece length": signed({**good, b"piece-length": 2 * PL}),
            "piece count": signed({**good, b"num-pieces": 10}),
            "bitfield size": signed({**good, b"verified": b"\xff"}),
            "spare bits": signed({**good, b"verified": b"\x00\x7f"}),
            "file count": signed({**good, b"files": good[b"files"][:3]}),
            "file entry": signed({**good, b"files": [[1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7],
                                                     [6, 7, 8, 9]]}),
            "missing field": signed({k: v for k, v in good.items() if k != b"files"}),
        }
        self.assertIsNotNone(ResumeState.decode(signed(good), *state_args(self.t)))
        for what, data in bad_cases.items():
            with self.assertRaises(ResumeError, msg=what):
                ResumeState.decode(data, *state_args(self.t))

    def test_plan_trusts_unchanged_files_and_rechecks_every_piece_of_changed_ones(self) -> None:
        files = self.t.info.files
        now = list(self.state.files)
        now[1] = (2 * PL + 100, 2, 12, 99)  # b's ctime moved (same size and mtime): 3, 4, 5
        trusted, to_check, changed = plan_restore(self.state, now, files, PL)
        self.assertEqual(set(trusted.iter_set()), {0, 8})
        self.assertEqual(changed, [1])
        self.assertEqual(to_check, [3, 4, 5, 6])  # c was recorded missing: checked if it appeared

    def test_hash_pieces_reports_progress_and_is_the_same_on_any_thread_count(self) -> None:
        for workers in (1, 2, 5):
            seen = []
            good = hash_pieces(lambda i: i % 3 == 0, list(range(0, 50, 2)), 60, 60,
                               progress=lambda d, n: seen.append((d, n)), workers=workers)
            self.assertEqual(set(good.iter_set()), {i for i in range(0, 50, 2) if i % 3 == 0})
            self.assertEqual(seen[0], (35, 60))
            self.assertEqual(seen[-1], (60, 60))
            self.assertEqual(len(seen), 26)


class AtomicSaveTest(TempDirTest):
    def test_failure_between_temp_write_and_rename_leaves_old_file_valid(self) -> None:
        t = make_torrent(FOUR_FILES)
        path = os.path.join(self.root, "x.resume")
        old = ResumeState(t.info.info_hash, PL, Bitfield.from_indices(9, [1]), [MISSING] * 4)
        old.save(path, KEY)
        new = ResumeState(t.info.info_hash, PL, Bitfield.from_indices(9, [1, 2]), [MISSING] * 4)
        with mock.patch("os.replace", side_effect=OSError(errno.EIO, "I/O error")):
            with self.assertRaises(ResumeError):
                new.save(path, KEY)
        loaded = ResumeState.load(path, *state_args(t))
        self.assertEqual(set(loaded.verified.iter_set()), {1})
        self.assertEqual(os.listdir(self.root), ["x.resume"])

    def test_process_killed_between_temp_write_and_rename_leaves_old_file_valid(self) -> None:
        # A real process dies (os._exit: no cleanup, like kill -9) right before os.replace.
        path = os.path.join(self.root, "x.resume")
        script = textwrap.dedent("""
            import os, sys
            sys.path.insert(0, sys.argv[2])
            from sta.bitfield import Bitfield
            from sta.resume import ResumeState
            path, bits = sys.argv[1], [int(x) for x in sys.argv[3].split(",")]
            state = ResumeState(b"h" * 20, 16384, Bitfield.from_indices(9, bits), [])
            if sys.argv[4] == "die":
                os.replace = lambda *a: os._exit(9)
            state.save(path, b"k" * 32)
        """)
        run = [sys.executable, "-c", script, path, ROOT_DIR]
        subprocess.run(run + ["1", "ok"], check=True, timeout=60)
        proc = subprocess.run(run + ["1,2", "die"], timeout=60)
        self.assertEqual(proc.returncode, 9)
        self.assertEqual(len(os.listdir(self.root)), 2)  # the old file and an orphan temp file
        loaded = ResumeState.load(path, b"h" * 20, 16384, 9, 0, KEY)
        self.assertEqual(set(loaded.verified.iter_set()), {1})
        resume.remove_stale_temporaries(path)
        self.assertEqual(os.listdir(self.root), ["x.resume"])

    def test_resume_file_on_a_full_disk_raises_and_keeps_the_old_one(self) -> None:
        t = make_torrent(FOUR_FILES)
        t.write_files(self.root)
        st = self.storage(t.info)
        st.restore()
        st.save()
        st2 = self.storage(t.info)
        st2.restore()
        st2._state_stale = True
        no_space = OSError(errno.ENOSPC, "No space left on device")
        with mock.patch("tempfile.mkstemp", side_effect=no_space):
            with self.assertRaises(StorageError) as cm:
                st2.save()
        self.assertTrue(str(cm.exception).startswith("no space left on device writing "))
        self.assertTrue(st2.dirty)
        self.assertTrue(self.storage(t.info).restore().complete)


class ResumeTestCase(TempDirTest):
    """Helpers: a download that saves, and a restore that records which pieces it hashed."""

    def download(self, t: Torrent, pieces=None) -> FileStorage:
        """Write, verify and record ``pieces`` (default all), save, close."""
        st = FileStorage(t.info, self.root)
        st.restore()
        for i in range(t.info.num_pieces) if pieces is None else pieces:
            piece = t.piece(i)
            st.write_block(i, 0, piece)
            self.assertTrue(st.verify_piece(i))
            st.mark_verified(i)
        st.save()
        st.close()
        return st

    def restored(self, t: Torrent, readonly: bool = False, **kw):
        st = self.storage(t.info, readonly=readonly)
        with mock.patch.object(st, "verify_piece", wraps=st.verify_piece) as verify:
            bf = st.restore(workers=2, **kw)
        return st, set(bf.iter_set()), sorted(c.args[0] for c in verify.call_args_list)


class RestoreTest(ResumeTestCase):
    def test_no_resume_file_checks_whatever_exists(self) -> None:
        t = make_torrent(FOUR_FILES)
        t.write_files(self.root, skip=[3])
        st, have, hashed = self.restored(t)
        self.assertEqual(have, set(range(6)))
        self.assertEqual(hashed, list(range(6)))  # d missing: 6-8 not even read
        self.assertTrue(st.dirty)

    def test_unchanged_files_are_trusted_without_reading(self) -> None:
        t = make_torrent(FOUR_FILES)
        self.download(t, pieces=[0, 1, 2, 7])
        st, have, hashed = self.restored(t)
        self.assertEqual(have, {0, 1, 2, 7})
        # a and d are unchanged; b and c were never created: their pieces cost no reading
        self.assertEqual(hashed, [])
        self.assertFalse(st.dirty or st.unsaved)

    def test_file_changed_behind_our_back_is_rechecked_even_with_its_mtime_put_back(self):
        t = make_torrent(FOUR_FILES)
        self.download(t)
        corrupt(t.file_path(self.root, 1), 10)  # b: piece 3, mtime changes
        bump_mtime(t.file_path(self.root, 1))
        a = t.file_path(self.root, 0)
        recorded = os.stat(a)
        with keep_stat(a):
            corrupt(a, 10)  # a: piece 0; same size and mtime, but the ctime moves
        until_ctime_differs(a, recorded.st_ctime_ns,
                            lambda: os.utime(a, ns=(recorded.st_atime_ns, recorded.st_mtime_ns)))
        self.assertEqual(os.stat(a).st_mtime_ns, recorded.st_mtime_ns)
        with self.assertLogs("sta.storage", logging.WARNING):
            st, have, hashed = self.restored(t)
        self.assertEqual(hashed, [0, 1, 2, 3, 4, 5])
        self.assertEqual(have, set(range(9)) - {0, 3})
        self.assertTrue(st.dirty)

    def test_size_change_alone_is_noticed(self) -> None:
        t = make_torrent(FOUR_FILES)
        self.download(t)
        path = t.file_path(self.root, 3)
        with keep_stat(path):
            with open(path, "ab") as f:
                f.write(b"more")
        _, have, hashed = self.restored(t)
        self.assertEqual(hashed, [6, 7, 8])
        self.assertEqual(have, set(range(9)))

    def test_truncated_file_loses_exactly_its_pieces(self) -> None:
        t = make_torrent(FOUR_FILES)
        self.download(t)
        with open(t.file_path(self.root, 0), "r+b") as f:
            f.truncate(PL + 10)  # a keeps piece 0 whole, loses the rest of piece 1 and piece 2
        with self.assertLogs("sta.storage", logging.WARNING) as logs:
            _, have, hashed = self.restored(t)
        self.assertIn("2 pieces recorded as verified failed the check", logs.output[0])
        self.assertEqual(hashed, [0])  # 1 and 2 are short: missing without reading
        self.assertEqual(have, set(range(9)) - {1, 2})

    def test_missing_file_loses_its_pieces(self) -> None:
        t = make_torrent(FOUR_FILES)
        self.download(t)
        os.unlink(t.file_path(self.root, 2))  # c: pieces 5 and 6
        with self.assertLogs("sta.storage", logging.WARNING):
            _, have, hashed = self.restored(t)
        self.assertEqual(hashed, [])
        self.assertEqual(have, set(range(9)) - {5, 6})

    def test_file_deleted_after_its_pieces_were_verified_is_not_recreated_by_save(self) -> None:
        t = make_torrent(FOUR_FILES)
        st = self.storage(t.info, max_open_files=1)  # a's handle is evicted by later writes
        st.restore()
        write_all(st, t)
        for i in range(t.info.num_pieces):
            st.mark_verified(i)
        os.unlink(t.file_path(self.root, 0))
        st.save()
        self.assertFalse(os.path.exists(t.file_path(self.root, 0)))
        st.close()
        with self.assertLogs("sta.storage", logging.WARNING) as logs:
            _, have, _ = self.restored(t)
        self.assertIn("3 pieces recorded as verified failed the check", logs.output[0])
        self.assertEqual(have, set(range(3, 9)))

    def test_corrupt_resume_file_means_full_check(self) -> None:
        t = make_torrent(FOUR_FILES)
        st = self.download(t)
        with open(st.state_path, "r+b") as f:
            f.seek(5)
            f.write(b"#####")
        with self.assertLogs("sta.storage", logging.WARNING) as logs:
            _, have, hashed = self.restored(t)
        self.assertIn("ignoring", logs.output[0])
        self.assertEqual(have, set(range(9)))
        self.assertEqual(hashed, list(range(9)))

    def test_resume_file_of_another_torrent_means_full_check(self) -> None:
        t = make_torrent(FOUR_FILES)
        st = self.download(t)
        other = make_torrent(FOUR_FILES, seed=2)
        ResumeState(other.info.info_hash, PL, Bitfield(9), [MISSING] * 4).save(
            st.state_path, resume_key(self.home))
        with self.assertLogs("sta.storage", logging.WARNING) as logs:
            _, have, hashed = self.restored(t)
        self.assertIn("another torrent", logs.output[0])
        self.assertEqual(hashed, list(range(9)))
        self.assertEqual(have, set(range(9)))

    def test_save_flushes_data_files_before_recording_them(self) -> None:
        t = make_torrent(SPAN_FILES)
        resume_key(self.home)  # made on first use: not part of what this test watches
        st = self.storage(t.info)
        st.restore()
        events = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            events.append(("fsync", os.path.basename(os.readlink("/proc/self/fd/%d" % fd))
                           if os.path.isdir("/proc/self/fd") else fd))
            return real_fsync(fd)

        def replace(a, b):
            events.append(("replace", os.path.basename(b)))
            return real_replace(a, b)

        write_all(st, t)
        for i in range(t.info.num_pieces):
            st.mark_verified(i)
        with mock.patch("os.fsync", fsync), mock.patch("os.replace", replace):
            st.save()
        kinds = [e[0] for e in events]
        first_replace = kinds.index("replace")
        # the four data files with content, then the temp resume file, then the rename
        self.assertGreaterEqual(kinds[:first_replace].count("fsync"), 5)
        if os.path.isdir("/proc/self/fd"):
            synced = {e[1] for e in events[:first_replace - 1]}
            self.assertEqual(synced, {"a", "b", "c", "d"})
        self.assertFalse(st.dirty)

    def test_dirty_and_unsaved_follow_marks_and_saves(self) -> None:
        t = make_torrent(FOUR_FILES)
        st = self.storage(t.info)
        st.restore()
        st.save()
        self.assertFalse(st.dirty)
        st.write_block(0, 0, t.piece(0))
        st.mark_verified(0)
        st.mark_verified(0)
        self.assertEqual((st.dirty, st.unsaved), (True, 1))
        st.save()
        self.assertEqual((st.dirty, st.unsaved), (False, 0))

    def test_kill_during_download_keeps_saved_pieces_and_finds_later_ones(self) -> None:
        # A child downloads pieces 0-3 and saves, then completes 4-5 and half of 6 without saving,
        # and is killed (SIGKILL where there is one). A restart trusts nothing in the written file
        # (its mtime moved), re-hashes it, and keeps exactly the complete pieces.
        t = make_torrent([("big", 8 * PL)], single=True)
        data_path = os.path.join(self.root, "payload")
        with open(data_path, "wb") as f:
            f.write(t.payload)
        script = textwrap.dedent("""
            import os, signal, sys, time
            sys.path.insert(0, sys.argv[3])
            from sta.metainfo import parse_info
            from sta.storage import FileStorage
            info = parse_info(open(sys.argv[1], "rb").read())
            payload = open(sys.argv[2], "rb").read()
            st = FileStorage(info, sys.argv[4])
            st.restore()
            pl = info.piece_length
            path = st.file_path(0)
            for i in range(6):
                st.write_block(i, 0, payload[i * pl:(i + 1) * pl])
                if i == 4:
                    # mtime has a coarse clock: write until it moves past the recorded one, as
                    # a download running on after a save does (bounded: 10 s)
                    deadline = time.monotonic() + 10
                    while os.stat(path).st_mtime_ns == saved and time.monotonic() < deadline:
                        st.write_block(i, 0, payload[i * pl:(i + 1) * pl])
                assert st.verify_piece(i)
                st.mark_verified(i)
                if i == 3:
                    st.save()
                    saved = os.stat(path).st_mtime_ns
            st.write_block(6, 0, payload[6 * pl:6 * pl + pl // 2])
            if hasattr(signal, "SIGKILL"):
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(9)
        """)
        info_path = os.path.join(self.root, "info")
        with open(info_path, "wb") as f:
            f.write(t.info.raw)
        out = os.path.join(self.root, "out")
        proc = subprocess.run([sys.executable, "-c", script, info_path, data_path, ROOT_DIR, out],
                              timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        st = FileStorage(t.info, out)
        self.addCleanup(st.close)
        state = ResumeState.load(st.state_path, *state_args(t, resume_key(self.home)))
        self.assertEqual(set(state.verified.iter_set()), {0, 1, 2, 3})
        self.assertEqual(set(st.restore().iter_set()), {0, 1, 2, 3, 4, 5})


class AuthenticationTest(ResumeTestCase):
    """Nothing a resume file claims is believed unless STA wrote it, for files that are still
    the ones it wrote."""

    def forge(self, t: Torrent, key: bytes) -> str:
        """A zero-filled file of the right size, and a resume file claiming every piece of it
        with the file's true stats (what an attacker who can stat the file would write)."""
        path = t.file_path(self.root, 0)
        with open(path, "wb") as f:
            f.truncate(t.info.length)
        state = ResumeState(t.info.info_hash, PL, Bitfield.full(t.info.num_pieces),
                            [stat_file(path)])
        state_path = resume.resume_path(os.path.join(self.root, resume.STATE_DIR_NAME),
                                        t.info.info_hash)
        state.save(state_path, key)
        return state_path

    def test_forged_resume_file_over_a_zero_file_is_not_trusted(self) -> None:
        t = make_torrent([("only", 4 * PL)], single=True)
        self.forge(t, os.urandom(resume.RESUME_KEY_BYTES))  # signed, but not with our key
        with self.assertLogs("sta.storage", logging.WARNING) as logs:
            st, have, hashed = self.restored(t)
        self.assertIn("authentication code does not match", logs.output[0])
        self.assertEqual((have, hashed), (set(), [0, 1, 2, 3]))
        self.assertFalse(st.complete)

    def test_resume_file_without_mac_from_an_older_version_is_checked_again(self) -> None:
        t = make_torrent([("only", 4 * PL)], single=True)
        state_path = self.forge(t, KEY)
        path = t.file_path(self.root, 0)
        size, mtime = stat_file(path)[:2]
        resume.write_atomically(state_path, bencode.encode({
            "version": 1, "info-hash": t.info.info_hash, "piece-length": PL, "num-pieces": 4,
            "verified": b"\xf0", "files": [[size, mtime]]}))
        with self.assertLogs("sta.storage", logging.WARNING) as logs:
            _, have, hashed = self.restored(t)
        self.assertIn("older version of STA", logs.output[0])
        self.assertEqual((have, hashed), (set(), [0, 1, 2, 3]))

    def test_tampered_mac_means_a_full_check(self) -> None:
        t = make_torrent(FOUR_FILES)
        st = self.download(t, pieces=[0, 1, 2])
        with open(st.state_path, "rb") as f:
            data = bytearray(f.read())
        at = data.index(b"3:mac32:") + 8
        data[at] ^= 1
        resume.write_atomically(st.state_path, bytes(data))
        with self.assertLogs("sta.storage", logging.WARNING):
            _, have, hashed = self.restored(t)
        self.assertEqual(have, {0, 1, 2})
        self.assertEqual(hashed, [0, 1, 2])  # a exists: all of it hashed; b, c, d are missing

    def test_copy_that_keeps_size_and_mtime_is_checked_again(self) -> None:
        # cp -p over the file: same inode, content rewritten, mtime put back
        t = make_torrent(FOUR_FILES)
        self.download(t)
        path = t.file_path(self.root, 3)
        before = os.stat(path)
        other = os.path.join(temp_dir(self), "other")
        with open(other, "wb") as f:
            f.write(bytes(before.st_size))
        os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
        shutil.copy2(other, path)
        until_ctime_differs(path, before.st_ctime_ns, lambda: shutil.copystat(other, path))
        self.assertEqual(stat_file(path)[:3], (before.st_size, before.st_mtime_ns, before.st_ino))
        with self.assertLogs("sta.storage", logging.WARNING):
            _, have, hashed = self.restored(t)
        self.assertEqual(hashed, [6, 7, 8])
        self.assertEqual(have, set(range(6)))

    def test_replacement_renamed_over_the_file_is_checked_again(self) -> None:
        # rsync -a: a new file with the old mtime renamed over the name (a new inode)
        t = make_torrent(FOUR_FILES)
        self.download(t)
        path = t.file_path(self.root, 0)
        before = os.stat(path)
        tmp = path + ".rsync-tmp"
        with open(tmp, "wb") as f:
            f.write(bytes(before.st_size))
        os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(tmp, path)
        with self.assertLogs("sta.storage", logging.WARNING):
            _, have, hashed = self.restored(t)
        self.assertEqual(hashed, [0, 1, 2])
        self.assertEqual(have, set(range(3, 9)))

    def test_stat_records_inode_and_ctime(self) -> None:
        path = os.path.join(self.root, "f")
        with open(path, "wb") as f:
            f.write(b"abc")
        st = os.stat(path)
        self.assertEqual(stat_file(path), (3, st.st_mtime_ns, st.st_ino, st.st_ctime_ns))
        self.assertEqual(stat_file(self.root), MISSING)  # a folder is not the file


class ResumeKeyTest(TempDirTest):
    def test_key_is_made_once_and_kept_owner_only(self) -> None:
        home = os.path.join(self.home, "new")
        key = resume_key(home)
        self.assertEqual(len(key), resume.RESUME_KEY_BYTES)
        self.assertEqual(resume_key(home), key)
        path = os.path.join(home, resume.RESUME_KEY_FILE)
        self.assertEqual(os.listdir(home), [resume.RESUME_KEY_FILE])
        if os.name == "posix":
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
            self.assertEqual(stat.S_IMODE(os.stat(home).st_mode), 0o700)
            os.chmod(path, 0o644)
            with self.assertLogs("sta.resume", logging.WARNING):
                self.assertEqual(resume_key(home), key)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_damaged_key_is_reported_with_what_to_do(self) -> None:
        path = os.path.join(self.home, resume.RESUME_KEY_FILE)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(b"short")
        with self.assertRaises(ResumeError) as cm:
            resume_key(self.home)
        self.assertIn("delete it and a new one will be made", str(cm.exception))

    def test_without_a_key_nothing_is_trusted_or_saved_and_it_is_said_once(self) -> None:
        t = make_torrent(FOUR_FILES)
        t.write_files(self.root)
        blocker = os.path.join(self.home, "file")
        open(blocker, "w").close()
        st = self.storage(t.info, home=os.path.join(blocker, "home"))
        with self.assertLogs("sta.resume", logging.WARNING) as logs:
            self.assertTrue(st.restore().complete)
            for _ in range(3):
                st.save()
                st.check()
        self.assertEqual(len(logs.output), 1)
        self.assertIn("cannot set up the resume key", logs.output[0])
        self.assertFalse(os.path.exists(os.path.join(self.root, ".sta")))


class StateLocationTest(ResumeTestCase):
    """Seeds keep their state under STA_HOME; a folder that refuses it sends it there too."""

    def test_seed_keeps_its_state_under_sta_home_and_writes_nothing_into_its_data(self) -> None:
        t = make_torrent(FOUR_FILES)
        t.write_files(self.root)
        st = self.storage(t.info, readonly=True)
        self.assertTrue(st.restore().complete)
        st.save()
        self.assertEqual(os.path.dirname(st.state_path),
                         os.path.join(self.home, resume.HOME_STATE_DIR))
        self.assertTrue(os.path.exists(st.state_path))
        if os.name == "posix":
            self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(st.state_path)).st_mode), 0o700)
        self.assertEqual(os.listdir(self.root), ["t"])
        _, have, hashed = self.restored(t, readonly=True)
        self.assertEqual((len(have), hashed), (9, []))
        other_folder = FileStorage(t.info, temp_dir(self), readonly=True)
        self.addCleanup(other_folder.close)
        self.assertNotEqual(other_folder.state_path, st.state_path)

    def test_seed_trusts_the_state_its_download_saved(self) -> None:
        t = make_torrent(FOUR_FILES)
        self.download(t)
        _, have, hashed = self.restored(t, readonly=True)
        self.assertEqual((len(have), hashed), (9, []))

    def test_unwritable_folder_state_moves_to_sta_home_once(self) -> None:
        t = make_torrent(FOUR_FILES)
        in_root = os.path.join(self.root, resume.STATE_DIR_NAME)
        real_mkstemp = tempfile.mkstemp

        def mkstemp(*args, **kw):
            if kw.get("dir") == in_root:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real_mkstemp(*args, **kw)

        with mock.patch("tempfile.mkstemp", mkstemp):
            with self.assertLogs("sta.resume", logging.INFO) as logs:
                self.download(t, pieces=[0, 1])
                st = self.download(t, pieces=[2])
        self.assertEqual(len(logs.output), 1)
        self.assertIn("keeping the resume state in " + st.state_path, logs.output[0])
        self.assertTrue(st.state_path.startswith(self.home))
        _, have, hashed = self.restored(t)
        self.assertEqual((have, hashed), ({0, 1, 2}, []))

    @unittest.skipUnless(CAN_SYMLINK, "symbolic links cannot be made here")
    def test_state_folder_that_is_a_link_is_not_written_through(self) -> None:
        t = make_torrent(FOUR_FILES)
        outside = temp_dir(self)
        os.symlink(outside, os.path.join(self.root, resume.STATE_DIR_NAME))
        with self.assertLogs("sta.resume", logging.WARNING) as logs:
            st = self.download(t, pieces=[0])
        self.assertIn("is a symbolic link", logs.output[0])
        self.assertEqual(os.listdir(outside), [])
        self.assertTrue(st.state_path.startswith(self.home))
        st.forget_state()
        self.assertTrue(os.path.islink(os.path.join(self.root, resume.STATE_DIR_NAME)))

    def test_seed_that_cannot_save_says_so_once_and_stops_asking(self) -> None:
        t = make_torrent(FOUR_FILES)
        t.write_files(self.root)
        resume_key(self.home)
        open(os.path.join(self.home, resume.HOME_STATE_DIR), "w").close()  # blocks the folder
        st = self.storage(t.info, readonly=True)
        with self.assertLogs("sta.storage", logging.DEBUG) as logs:
            self.assertTrue(st.restore().complete)
            for _ in range(3):
                self.assertTrue(st.dirty)
                st.save()
                self.assertFalse(st.dirty)  # nothing changed since: no retry every few seconds
                st.check()
        warnings = [line for line in logs.output if line.startswith("WARNING")]
        self.assertEqual(len(warnings), 1)
        self.assertIn("checked again on the next start", warnings[0])
        self.assertEqual(os.listdir(self.root), ["t"])

    def test_forget_state_removes_every_copy_and_the_emptied_folders(self) -> None:
        t = make_torrent(FOUR_FILES)
        self.download(t)
        seed = self.storage(t.info, readonly=True)
        seed.restore()
        seed._state_stale = True
        seed.save()
        self.assertTrue(os.path.exists(seed.state_path))
        seed.forget_state()
        self.assertEqual(os.listdir(self.root), ["t"])
        self.assertEqual(os.listdir(self.home), [resume.RESUME_KEY_FILE])


if __name__ == "__main__":
    unittest.main()
