"""errors.py: which errors are the user's, and the one line that tells them."""

from __future__ import annotations

import errno
import unittest
import urllib.error

from sta import bencode, errors, magnet, metainfo


class UserErrorTest(unittest.TestCase):
    def test_user_errors_are_recognised(self) -> None:
        self.assertTrue(errors.is_user_error(metainfo.MetainfoError("x")))
        self.assertTrue(errors.is_user_error(magnet.MagnetError("x")))
        self.assertTrue(errors.is_user_error(bencode.BencodeError("x", 0)))
        self.assertTrue(errors.is_user_error(FileNotFoundError(2, "No such file", "f")))
        self.assertFalse(errors.is_user_error(ValueError("bug")))
        self.assertFalse(errors.is_user_error(KeyError("bug")))


class DescribeErrorTest(unittest.TestCase):
    def test_os_errors_are_plain_words_after_the_file(self) -> None:
        cases = [
            (FileNotFoundError(errno.ENOENT, "No such file or directory", "a.torrent"),
             "a.torrent: no such file or folder"),
            (PermissionError(errno.EACCES, "Permission denied", "/root/x"),
             "/root/x: permission denied"),
            (IsADirectoryError(errno.EISDIR, "Is a directory", "dir"),
             "dir: it is a folder, not a file"),
            (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
            (OSError(errno.EPROTO, "Protocol error", "f"), "f: protocol error"),
        ]
        for exc, text in cases:
            with self.subTest(exc=exc):
                self.assertEqual(errors.describe_error(exc), text)

    def test_url_errors_say_the_server_cannot_be_reached(self) -> None:
        refused = urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
        self.assertEqual(errors.describe_error(refused),
                         "cannot reach the server: connection refused")
        self.assertEqual(errors.describe_error(urllib.error.URLError("no host")),
                         "cannot reach the server: no host")

    def test_other_errors_are_their_message_on_one_line(self) -> None:
        self.assertEqual(errors.describe_error(metainfo.MetainfoError("two\nlines")),
                         "two lines")
        self.assertEqual(errors.describe_error(metainfo.MetainfoError("")), "MetainfoError")

    def test_plain_reason_keeps_unknown_reasons_in_lower_case(self) -> None:
        self.assertEqual(errors.plain_reason(OSError(errno.EADDRINUSE, "Address in use")),
                         "the address and port are in use by another program")
        self.assertEqual(errors.plain_reason(OSError(errno.EIO, "Input/output error")),
                         "input/output error")
        self.assertEqual(errors.plain_reason(OSError("odd")), "odd")


if __name__ == "__main__":
    unittest.main()
