"""Tests for sta.safepath: reaching files below a folder without going through links, and
telling when two torrents' files collide."""

from __future__ import annotations

import os
import unittest
from unittest import mock

from sta import safepath
from sta.safepath import (LinkError, check_below, open_below, overlapping_paths, remove_below,
                          remove_empty_folders)
from tests.test_storage import CAN_SYMLINK, temp_dir

MODES = [True, False] if safepath.USE_DIR_FD else [False]  # descriptor-relative, and lstat checks


class ModeTest(unittest.TestCase):
    """Each test runs with descriptor-relative calls (where the platform has them) and without."""

    def run_in_each_mode(self, check) -> None:
        for mode in MODES:
            with self.subTest(use_dir_fd=mode), mock.patch.object(safepath, "USE_DIR_FD", mode):
                check(temp_dir(self), temp_dir(self))


class OpenBelowTest(ModeTest):
    def test_creates_missing_folders_and_the_file(self) -> None:
        def check(root: str, _outside: str) -> None:
            os.close(open_below(root, ("a", "b", "f"), os.O_WRONLY | os.O_CREAT, make_dirs=True))
            self.assertTrue(os.path.isfile(os.path.join(root, "a", "b", "f")))
            with self.assertRaises(FileNotFoundError):
                open_below(root, ("x", "f"), os.O_RDONLY)
        self.run_in_each_mode(check)

    def test_missing_root_is_made_only_when_asked(self) -> None:
        def check(base: str, _outside: str) -> None:
            root = os.path.join(base, "new", "root")
            with self.assertRaises(FileNotFoundError):
                open_below(root, ("f",), os.O_RDONLY)
            os.close(open_below(root, ("f",), os.O_WRONLY | os.O_CREAT, make_dirs=True))
            self.assertTrue(os.path.isfile(os.path.join(root, "f")))
        self.run_in_each_mode(check)

    @unittest.skipUnless(CAN_SYMLINK, "symbolic links cannot be made here")
    def test_a_link_at_any_depth_is_refused_and_nothing_is_made_outside(self) -> None:
        def check(root: str, outside: str) -> None:
            os.makedirs(os.path.join(root, "a", "b"))
            for link in (("l",), ("a", "l"), ("a", "b", "l")):
                os.symlink(outside, os.path.join(root, *link))
                for parts in (link + ("f",), link + ("deeper", "f"), link):
                    with self.assertRaises(LinkError, msg=parts) as cm:
                        os.close(open_below(root, parts, os.O_RDWR | os.O_CREAT,
                                            make_dirs=True))
                    self.assertEqual(cm.exception.path, os.path.join(root, *link))
            self.assertEqual(os.listdir(outside), [])
        self.run_in_each_mode(check)

    @unittest.skipUnless(CAN_SYMLINK, "symbolic links cannot be made here")
    def test_the_root_itself_may_be_a_link(self) -> None:
        def check(base: str, real: str) -> None:
            root = os.path.join(base, "root")
            os.symlink(real, root)
            os.close(open_below(root, ("a", "f"), os.O_WRONLY | os.O_CREAT, make_dirs=True))
            self.assertTrue(os.path.isfile(os.path.join(real, "a", "f")))
        self.run_in_each_mode(check)


class RemoveBelowTest(ModeTest):
    def test_removes_a_regular_file_only(self) -> None:
        def check(root: str, _outside: str) -> None:
            os.makedirs(os.path.join(root, "a", "dir"))
            open(os.path.join(root, "a", "f"), "w").close()
            self.assertTrue(remove_below(root, ("a", "f")))
            self.assertFalse(remove_below(root, ("a", "f")))
            self.assertFalse(remove_below(root, ("a", "dir")))
            self.assertFalse(remove_below(root, ("nope", "f")))
            self.assertTrue(os.path.isdir(os.path.join(root, "a", "dir")))
        self.run_in_each_mode(check)

    @unittest.skipUnless(CAN_SYMLINK, "symbolic links cannot be made here")
    def test_never_deletes_through_a_link_or_the_link_itself(self) -> None:
        def check(root: str, outside: str) -> None:
            victim = os.path.join(outside, "f")
            open(victim, "w").close()
            os.symlink(outside, os.path.join(root, "d"))
            os.symlink(victim, os.path.join(root, "f"))
            for parts in (("d", "f"), ("f",)):
                with self.assertRaises(LinkError, msg=parts):
                    remove_below(root, parts)
                with self.assertRaises(LinkError, msg=parts):
                    check_below(root, parts)
            self.assertTrue(os.path.exists(victim))
            self.assertTrue(os.path.islink(os.path.join(root, "f")))
        self.run_in_each_mode(check)

    @unittest.skipUnless(CAN_SYMLINK, "symbolic links cannot be made here")
    def test_empty_folders_are_removed_but_not_through_links(self) -> None:
        def check(root: str, outside: str) -> None:
            os.makedirs(os.path.join(root, "a", "b", "c"))
            os.makedirs(os.path.join(root, "keep", "x"))
            os.makedirs(os.path.join(outside, "empty"))
            os.symlink(outside, os.path.join(root, "l"))
            remove_empty_folders(root, [("a",), ("a", "b"), ("a", "b", "c"), ("keep",),
                                        ("l",), ("l", "empty"), ("missing",)])
            self.assertEqual(sorted(os.listdir(root)), ["keep", "l"])
            self.assertTrue(os.path.isdir(os.path.join(outside, "empty")))
        self.run_in_each_mode(check)


class OverlappingPathsTest(unittest.TestCase):
    def test_same_file_and_file_where_a_folder_is_needed_collide(self) -> None:
        d = os.path.join(os.sep, "dl")
        a = [os.path.join(d, "x", "1"), os.path.join(d, "y"), os.path.join(d, "z", "q"),
             os.path.join(d, "free")]
        b = [os.path.join(d, "x", "1"), os.path.join(d, "y", "inner"), os.path.join(d, "z")]
        self.assertEqual(overlapping_paths(a, b), sorted(a[:3]))
        self.assertEqual(overlapping_paths(b, a), sorted(b))
        self.assertEqual(overlapping_paths(a, [os.path.join(d, "other")]), [])

    def test_spellings_of_one_path_are_one_path(self) -> None:
        d = os.path.join(os.sep, "dl")
        a = [os.path.join(d, "sub", "..", "f")]
        self.assertEqual(overlapping_paths(a, [os.path.join(d, ".", "f")]), a)
        with mock.patch.object(safepath, "_FOLD_CASE", True):
            self.assertEqual(overlapping_paths([os.path.join(d, "Caf\u00e9")],
                                               [os.path.join(d, "cafe\u0301")]),
                             [os.path.join(d, "Caf\u00e9")])
        with mock.patch.object(safepath, "_FOLD_CASE", False):
            self.assertEqual(overlapping_paths([os.path.join(d, "A")], [os.path.join(d, "a")]),
                             [] if os.path.normcase("A") == "A" else [os.path.join(d, "A")])


if __name__ == "__main__":
    unittest.main()
