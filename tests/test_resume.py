"""Tests for sta.resume and the resume behaviour of FileStorage (restore / save)."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap
import unittest
from unittest import mock

from sta import bencode, resume
from sta.bitfield import Bitfield
from sta.resume import MISSING, ResumeError, ResumeState, hash_pieces, plan_restore
from sta.storage import FileStorage, StorageError
from tests.test_storage import PL, SPAN_FILES, TempDirTest, Torrent, make_torrent, write_all

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a: pieces 0-2, b: pieces 3-4 (+100 bytes of piece 5), c: rest of 5 and 6, d: 6 (tail) - 8
FOUR_FILES = [("a", 3 * PL), ("b", 2 * PL + 100), ("c", PL), ("d", 2 * PL)]


def state_args(t: Torrent):
    info = t.info
    return (info.info_hash, info.piece_length, info.num_pieces, len(info.files))


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
                                 [(3 * PL, 1), (2 * PL + 100, 2), MISSING, (2 * PL, 4)])

    def test_encode_decode_round_trip(self) -> None:
        back = ResumeState.decode(self.state.encode(), *state_args(self.t))
        self.assertEqual(back.verified, self.bf)
        self.assertEqual(back.files, self.state.files)

    def test_decode_rejects_anything_that_does_not_fit_the_torrent(self) -> None:
        good = bencode.decode(self.state.encode())
        bad_cases = {
            "garbage": b"not bencode",
            "list": bencode.encode([1, 2]),
            "version": bencode.encode({**good, b"version": 2}),
            "info hash": bencode.encode({**good, b"info-hash": b"x" * 20}),
            "piece length": bencode.encode({**good, b"piece-length": 2 * PL}),
            "piece count": bencode.encode({**good, b"num-pieces": 10}),
            "bitfield size": bencode.encode({**good, b"verified": b"\xff"}),
            "spare bits": bencode.encode({**good, b"verified": b"\x00\x7f"}),
            "file count": bencode.encode({**good, b"files": good[b"files"][:3]}),
            "file entry": bencode.encode({**good, b"files": [[1], [2, 3], [4, 5], [6, 7]]}),
            "missing field": bencode.encode({k: v for k, v in good.items() if k != b"files"}),
        }
        for what, data in bad_cases.items():
            with self.assertRaises(ResumeError, msg=what):
                ResumeState.decode(data, *state_args(self.t))

    def test_plan_trusts_unchanged_files_and_rechecks_every_piece_of_changed_ones(self) -> None:
        files = self.t.info.files
        now = list(self.state.files)
        now[1] = (2 * PL + 100, 99)  # b changed: pieces 3, 4, 5
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
        old.save(path)
        new = ResumeState(t.info.info_hash, PL, Bitfield.from_indices(9, [1, 2]), [MISSING] * 4)
        with mock.patch("os.replace", side_effect=OSError(errno.EIO, "I/O error")):
            with self.assertRaises(ResumeError):
                new.save(path)
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
            state.save(path)
        """)
        run = [sys.executable, "-c", script, path, ROOT_DIR]
        subprocess.run(run + ["1", "ok"], check=True, timeout=60)
        proc = subprocess.run(run + ["1,2", "die"], timeout=60)
        self.assertEqual(proc.returncode, 9)
        self.assertEqual(len(os.listdir(self.root)), 2)  # the old file and an orphan temp file
        loaded = ResumeState.load(path, b"h" * 20, 16384, 9, 0)
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


class RestoreTest(TempDirTest):
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

    def restored(self, t: Torrent, **kw):
        st = self.storage(t.info)
        with mock.patch.object(st, "verify_piece", wraps=st.verify_piece) as verify:
            bf = st.restore(workers=2, **kw)
        return st, set(bf.iter_set()), sorted(c.args[0] for c in verify.call_args_list)

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

    def test_file_changed_behind_our_back_is_rechecked(self) -> None:
        t = make_torrent(FOUR_FILES)
        self.download(t)
        corrupt(t.file_path(self.root, 1), 10)  # b: piece 3, mtime changes
        bump_mtime(t.file_path(self.root, 1))
        with keep_stat(t.file_path(self.root, 0)):
            corrupt(t.file_path(self.root, 0), 10)  # a: invisible to the record: trusted
        with self.assertLogs("sta.storage", logging.WARNING):
            st, have, hashed = self.restored(t)
        self.assertEqual(hashed, [3, 4, 5])
        self.assertEqual(have, set(range(9)) - {3})
        self.assertTrue(st.dirty)
        _, have, _ = self.restored(t, recheck=True)
        self.assertEqual(have, set(range(9)) - {0, 3})

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
        _, have, _ = self.restored(t)
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
        ResumeState(other.info.info_hash, PL, Bitfield(9), [MISSING] * 4).save(st.state_path)
        with self.assertLogs("sta.storage", logging.WARNING) as logs:
            _, have, hashed = self.restored(t)
        self.assertIn("another torrent", logs.output[0])
        self.assertEqual(hashed, list(range(9)))
        self.assertEqual(have, set(range(9)))

    def test_save_flushes_data_files_before_recording_them(self) -> None:
        t = make_torrent(SPAN_FILES)
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

    def test_read_only_seed_that_cannot_save_only_logs(self) -> None:
        t = make_torrent(FOUR_FILES)
        t.write_files(self.root)
        blocker = os.path.join(self.root, "blocker")
        open(blocker, "w").close()
        st = FileStorage(t.info, self.root, readonly=True, state_dir=os.path.join(blocker, "s"))
        self.addCleanup(st.close)
        self.assertTrue(st.restore().complete)
        with self.assertLogs("sta.storage", logging.WARNING):
            st.save()
        self.assertEqual(sorted(os.listdir(self.root)), ["blocker", "t"])

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
        state = ResumeState.load(st.state_path, *state_args(t))
        self.assertEqual(set(state.verified.iter_set()), {0, 1, 2, 3})
        self.assertEqual(set(st.restore().iter_set()), {0, 1, 2, 3, 4, 5})


if __name__ == "__main__":
    unittest.main()
