"""preflight.py: a download folder that cannot be written and an address that is not this
machine's are refused before anything starts, in one line that says what to change."""

from __future__ import annotations

import os
import socket
import tempfile
import unittest

from sta import preflight


class DownloadFolderTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name

    def test_writable_folder_passes_and_keeps_nothing(self) -> None:
        preflight.check_download_folder(self.dir)
        self.assertEqual(os.listdir(self.dir), [])

    def test_missing_folders_are_made_for_the_check_and_removed_after(self) -> None:
        target = os.path.join(self.dir, "a", "b", "downloads")
        preflight.check_download_folder(target)
        self.assertEqual(os.listdir(self.dir), [])

    def test_folder_under_a_file_is_refused(self) -> None:
        with open(os.path.join(self.dir, "afile"), "wb"):
            pass
        with self.assertRaises(preflight.PreflightError) as caught:
            preflight.check_download_folder(os.path.join(self.dir, "afile", "downloads"))
        self.assertRegex(str(caught.exception), r"^cannot create the download folder .*afile"
                                                r".*: a part of the path is a file, not a "
                                                r"folder; choose another folder with -o DIR$")

    def test_a_file_given_as_the_folder_is_refused(self) -> None:
        path = os.path.join(self.dir, "afile")
        with open(path, "wb"):
            pass
        with self.assertRaisesRegex(preflight.PreflightError, "it is a file, not a folder"):
            preflight.check_download_folder(path, option="--data")

    @unittest.skipIf(os.name == "nt" or os.geteuid() == 0,
                     "permissions do not stop root, and Windows has no chmod 555")
    def test_read_only_folder_is_refused(self) -> None:
        os.chmod(self.dir, 0o555)
        self.addCleanup(os.chmod, self.dir, 0o755)
        with self.assertRaisesRegex(preflight.PreflightError,
                                    "cannot write in the download folder .*: permission denied"):
            preflight.check_download_folder(self.dir)


class DataFolderAndFilesTest(unittest.TestCase):
    def test_data_folder_must_be_a_folder(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            preflight.check_data_folder(d)
            with self.assertRaisesRegex(preflight.PreflightError,
                                        "^--data .*gone: no such folder; give the folder that "
                                        "holds the files with --data DIR$"):
                preflight.check_data_folder(os.path.join(d, "gone"))
            self.assertFalse(os.path.exists(os.path.join(d, "gone")))
            with self.assertRaisesRegex(preflight.PreflightError, ": not a folder;"):
                preflight.check_data_folder(__file__)

    def test_files_given_must_be_files(self) -> None:
        preflight.check_files([("--certfile", __file__), ("--keyfile", None)])
        with self.assertRaisesRegex(preflight.PreflightError, "^--keyfile .*: no such file$"):
            preflight.check_files([("--certfile", __file__), ("--keyfile", __file__ + "x")])
        with self.assertRaisesRegex(preflight.PreflightError, "it is a folder, not a file"):
            preflight.check_files([("--certfile", os.path.dirname(__file__))])


class BindAddressTest(unittest.TestCase):
    def test_wildcards_and_loopback_pass(self) -> None:
        for address in ("0.0.0.0", "", "::", "127.0.0.1", "localhost"):
            with self.subTest(address=address):
                preflight.check_bind_address(address)

    def test_another_machines_address_is_refused(self) -> None:
        # 203.0.113.0/24 is TEST-NET-3 (RFC 5737): never an address of a real machine
        with self.assertRaises(preflight.PreflightError) as caught:
            preflight.check_bind_address("203.0.113.7")
        self.assertIn("--bind 203.0.113.7: not an address of this machine", str(caught.exception))
        self.assertIn("ip addr", str(caught.exception))

    def test_unknown_host_name_is_refused_with_the_option_named(self) -> None:
        with self.assertRaisesRegex(preflight.PreflightError,
                                    "^--host no-such-host.invalid: no such address"):
            preflight.check_bind_address("no-such-host.invalid", "--host")

    def test_address_in_use_on_another_port_still_passes(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            preflight.check_bind_address("127.0.0.1")


if __name__ == "__main__":
    unittest.main()
