"""`create` and `info` as functions (torrent_commands.py), parsed by the real parser and run in
this process: where the .torrent goes, what is refused, and what `info` prints."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import unittest

from sta import metainfo
from sta.cliargs import UsageError, build_parser
from sta.torrent_commands import TorrentCommandError, cmd_create, cmd_info


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


class Case(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        cwd = os.getcwd()
        os.chdir(self.dir)
        self.addCleanup(os.chdir, cwd)
        with open("notes.bin", "wb") as f:
            f.write(os.urandom(100000))

    def run_command(self, command, *argv: str):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = command(parse(*argv))
        return status, out.getvalue(), err.getvalue()


class CreateTests(Case):
    def test_create_host_first_writes_name_torrent_with_the_default_announce_url(self):
        status, out, _ = self.run_command(cmd_create, "create", "10.0.0.5", "notes.bin")
        self.assertEqual(status, 0)
        meta = metainfo.load("notes.torrent")
        self.assertEqual(meta.trackers, (("http://10.0.0.5:4000/announce",),))
        self.assertIn("magnet:?xt=urn:btih:" + meta.info_hash.hex(), out)

    def test_an_existing_output_is_kept_unless_forced(self):
        self.run_command(cmd_create, "create", "notes.bin", "-t", "10.0.0.5")
        with self.assertRaisesRegex(TorrentCommandError, r"already exists \(use -f"):
            self.run_command(cmd_create, "create", "notes.bin", "-t", "10.0.0.5")
        status, _, _ = self.run_command(cmd_create, "create", "notes.bin", "-f", "-t", "10.0.0.6")
        self.assertEqual(status, 0)
        self.assertEqual(metainfo.load("notes.torrent").trackers,
                         (("http://10.0.0.6:4000/announce",),))

    def test_a_missing_path_is_the_only_thing_said(self):
        with self.assertRaisesRegex(TorrentCommandError, "no such file or folder: nope.bin"):
            self.run_command(cmd_create, "create", "nope.bin", "-t", "10.0.0.5")
        self.assertFalse(os.path.exists("nope.torrent"))

    def test_upload_without_a_tracker_is_a_usage_error(self):
        with self.assertRaises(UsageError):
            self.run_command(cmd_create, "create", "notes.bin", "--upload")

    def test_output_into_a_missing_folder_says_what_to_do_and_leaves_nothing(self):
        with self.assertRaisesRegex(TorrentCommandError, "does not exist .*-o"):
            self.run_command(cmd_create, "create", "notes.bin", "-o", "no/such/x.torrent")
        self.assertFalse(os.path.exists(os.path.join("no", "such")))

    def test_without_a_tracker_a_note_says_peers_come_from_peer(self):
        status, _, err = self.run_command(cmd_create, "create", "notes.bin")
        self.assertEqual(status, 0)
        self.assertIn("no tracker given (-t)", err)


class InfoTests(Case):
    def test_info_of_a_torrent_as_json_names_file_and_hash(self):
        self.run_command(cmd_create, "create", "notes.bin", "-t", "10.0.0.5")
        meta = metainfo.load("notes.torrent")
        status, out, _ = self.run_command(cmd_info, "info", "notes.torrent", "--json")
        self.assertEqual(status, 0)
        shown = json.loads(out)
        self.assertEqual(shown["info_hash"], meta.info_hash.hex())
        self.assertEqual(shown["name"], "notes.bin")

    def test_fetch_is_for_magnet_links_only(self):
        self.run_command(cmd_create, "create", "notes.bin", "-t", "10.0.0.5")
        with self.assertRaisesRegex(UsageError, "--fetch is for magnet links"):
            self.run_command(cmd_info, "info", "notes.torrent", "--fetch")

    def test_a_bad_magnet_link_says_so(self):
        with self.assertRaisesRegex(Exception, "bad magnet link"):
            self.run_command(cmd_info, "info", "magnet:?xt=urn:btih:zz")


if __name__ == "__main__":
    unittest.main()
