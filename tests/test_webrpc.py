"""Transmission's RPC against a real node: through a stdlib client speaking the protocol, and
through transmission-remote 3.00 itself when it is installed."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import unittest
from typing import List

from sta.webrpc import DOWNLOAD, SEED, STOPPED, RpcError, select_ids
from tests.enginekit import poll_until
from tests.webkit import DATA_SIZE, WAIT, WebFixture, download_from_seed

TRANSMISSION_REMOTE = shutil.which("transmission-remote")
LIST_FIELDS = ["error", "errorString", "eta", "id", "isFinished", "leftUntilDone", "name",
               "peersGettingFromUs", "peersSendingToUs", "rateDownload", "rateUpload",
               "sizeWhenDone", "status", "uploadRatio"]


class SelectIdsTest(unittest.TestCase):
    ROWS = [{"id": 1, "info_hash": "aa" * 20}, {"id": 2, "info_hash": "bb" * 20}]

    def test_ids_select_by_number_hash_list_or_all(self) -> None:
        self.assertEqual(select_ids(None, self.ROWS), self.ROWS)
        self.assertEqual(select_ids("recently-active", self.ROWS), self.ROWS)
        self.assertEqual(select_ids(2, self.ROWS), self.ROWS[1:])
        self.assertEqual(select_ids(["AA" * 20, 7], self.ROWS), self.ROWS[:1])

    def test_ids_of_another_type_are_refused(self) -> None:
        for bad in ([1.5], [True], [{"id": 1}]):
            with self.assertRaises(RpcError):
                select_ids(bad, self.ROWS)


class RpcTest(unittest.TestCase):
    def setUp(self) -> None:
        self.web = WebFixture(self)

    def add_metainfo(self) -> dict:
        meta = base64.b64encode(self.web.torrent_bytes()).decode()
        return self.web.rpc("torrent-add", {"metainfo": meta}, tag=7)

    def test_answer_echoes_the_tag_and_names_unknown_methods(self) -> None:
        answer = self.web.rpc("session-get", tag=3)
        self.assertEqual((answer["result"], answer["tag"]), ("success", 3))
        self.assertEqual(answer["arguments"]["download-dir"], self.web.downloads)
        self.assertEqual(answer["arguments"]["rpc-version"], 16)
        self.assertEqual(self.web.rpc("torrent-frobnicate")["result"],
                         "method name not recognized")

    def test_metainfo_added_then_listed_with_integer_fields_then_duplicate(self) -> None:
        answer = self.add_metainfo()
        added = answer["arguments"]["torrent-added"]
        self.assertEqual((answer["tag"], added["id"], added["name"], added["hashString"]),
                         (7, 1, "notes.bin", self.web.meta.info_hash.hex()))
        (row,) = self.web.rpc("torrent-get", {"fields": LIST_FIELDS})["arguments"]["torrents"]
        self.assertEqual(set(row), set(LIST_FIELDS))
        self.assertEqual((row["sizeWhenDone"], row["leftUntilDone"], row["eta"]),
                         (DATA_SIZE, DATA_SIZE, -1))
        for field in ("rateDownload", "rateUpload", "status", "id", "eta", "error"):
            self.assertIs(type(row[field]), int, field)
        self.assertIs(type(row["uploadRatio"]), float)
        again = self.add_metainfo()["arguments"]
        self.assertEqual(again["torrent-duplicate"]["id"], 1)
        self.assertNotIn("torrent-added", again)

    def test_get_needs_fields_and_bad_metainfo_is_an_error_result(self) -> None:
        self.assertEqual(self.web.rpc("torrent-get", {})["result"], "no fields specified")
        bad = self.web.rpc("torrent-add", {"metainfo": base64.b64encode(b"d4:spam").decode()})
        self.assertIn("not a usable .torrent", bad["result"])
        self.assertEqual(self.web.rpc("torrent-get", {"fields": ["id"]})["arguments"],
                         {"torrents": []})

    def test_download_from_a_seed_shows_files_pieces_and_peers_then_stop_start(self) -> None:
        self.add_metainfo()
        download_from_seed(self, self.web)
        fields = ["status", "percentDone", "files", "fileStats", "pieces", "pieceCount",
                  "peers", "downloadDir", "haveValid"]
        ids = [self.web.meta.info_hash.hex()]
        (row,) = self.web.rpc("torrent-get", {"ids": ids, "fields": fields})["arguments"][
            "torrents"]
        self.assertEqual((row["status"], row["percentDone"], row["haveValid"]),
                         (SEED, 1.0, DATA_SIZE))
        self.assertEqual(row["files"], [{"name": "notes.bin", "length": DATA_SIZE,
                                         "bytesCompleted": DATA_SIZE}])
        pieces = base64.b64decode(row["pieces"])
        self.assertEqual(len(pieces), (row["pieceCount"] + 7) // 8)
        self.assertEqual(pieces[0], 0xFF)
        self.assertEqual(row["downloadDir"], self.web.downloads)
        self.assertEqual(self.web.rpc("torrent-stop", {"ids": 1})["result"], "success")
        self.assertEqual(self.status(), [STOPPED])
        self.web.rpc("torrent-start", {"ids": [1]})
        self.assertEqual(self.status(), [SEED])

    def status(self) -> List[int]:
        rows = self.web.rpc("torrent-get", {"fields": ["status"]})["arguments"]["torrents"]
        return [r["status"] for r in rows]

    def test_verify_hashes_again_and_remove_deletes_local_data(self) -> None:
        self.add_metainfo()
        download_from_seed(self, self.web)
        path = os.path.join(self.web.downloads, "notes.bin")
        with open(path, "r+b") as f:  # spoil the first piece behind the node's back
            f.write(b"\0" * 100)
        self.assertEqual(self.web.rpc("torrent-verify", {"ids": [1]})["result"], "success")
        poll_until(lambda: self.web.node.status_rows()[0]["have"] == DATA_SIZE - 16384, WAIT,
                   "the spoilt piece found by the check")
        self.web.rpc("torrent-remove", {"ids": [1], "delete-local-data": True})
        self.assertEqual(self.web.node.status_rows(), [])
        self.assertFalse(os.path.exists(path))

    def test_session_set_changes_the_folder_of_new_torrents(self) -> None:
        other = os.path.join(self.web.dir, "elsewhere")
        self.assertEqual(self.web.rpc("session-set", {"download-dir": other})["result"],
                         "success")
        self.add_metainfo()
        row = self.web.rpc("torrent-get", {"fields": ["downloadDir"]})["arguments"]["torrents"]
        self.assertEqual(row, [{"downloadDir": other}])
        self.assertIn("absolute", self.web.rpc("session-set", {"download-dir": "rel"})["result"])
        stats = self.web.rpc("session-stats")["arguments"]
        self.assertEqual((stats["torrentCount"], type(stats["downloadSpeed"])), (1, int))

    def test_magnet_and_path_filenames_are_added(self) -> None:
        link = f"magnet:?xt=urn:btih:{'ab' * 20}&dn=linked"
        added = self.web.rpc("torrent-add", {"filename": link})["arguments"]["torrent-added"]
        self.assertEqual(added["name"], "linked")
        by_path = self.web.rpc("torrent-add", {"filename": self.web.torrent_path})
        self.assertEqual(by_path["arguments"]["torrent-added"]["name"], "notes.bin")
        missing = self.web.rpc("torrent-add", {"filename": "/no/such/file.torrent"})
        self.assertIn("no such file", missing["result"])


@unittest.skipIf(TRANSMISSION_REMOTE is None, "transmission-remote is not installed "
                 "(apt-get install transmission-cli)")
class TransmissionRemoteTest(unittest.TestCase):
    def setUp(self) -> None:
        self.web = WebFixture(self)

    def remote(self, *args: str) -> str:
        done = subprocess.run([TRANSMISSION_REMOTE, self.web.address] + list(args),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=WAIT)
        output = done.stdout.decode("utf-8", "replace")
        self.assertEqual(done.returncode, 0, output)
        return output

    def test_add_list_info_files_peers_stop_start_remove(self) -> None:
        self.assertIn('responded: "success"', self.remote("-a", self.web.torrent_path, "-l"))
        download_from_seed(self, self.web)
        listing = self.remote("-l")
        self.assertRegex(listing, r"\n\s+1\s+100%\s+300\.0 kB\s+Done\s.*Idle\s+notes\.bin")
        info = self.remote("-t", "1", "-i")
        self.assertIn(f"Hash: {self.web.meta.info_hash.hex()}", info)
        self.assertIn("Percent Done: 100%", info)
        self.assertIn(f"Location: {self.web.downloads}", info)
        self.assertRegex(self.remote("-t", "1", "-f"), r"0: 100% Normal\s+Yes\s+300\.0 kB\s+"
                                                       r"notes\.bin")
        self.assertIn("Address", self.remote("-t", "1", "-pi"))
        self.remote("-t", "1", "-S")
        self.assertRegex(self.remote("-l"), r"Stopped\s+notes\.bin")
        self.remote("-t", "1", "-s")
        self.assertRegex(self.remote("-l"), r"Idle\s+notes\.bin")  # a seed no one asks
        self.remote("-t", "1", "--remove-and-delete")
        self.assertEqual(self.web.node.status_rows(), [])
        self.assertFalse(os.path.exists(os.path.join(self.web.downloads, "notes.bin")))

    def test_password_is_needed_and_accepted(self) -> None:
        guarded = WebFixture(self, password="s3cret")
        done = subprocess.run([TRANSMISSION_REMOTE, guarded.address, "-l"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=WAIT)
        self.assertIn(b"the password is the node's --web-password", done.stdout)
        done = subprocess.run([TRANSMISSION_REMOTE, guarded.address, "-n", "me:s3cret", "-l"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=WAIT)
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertIn(b"Sum:", done.stdout)


if __name__ == "__main__":
    unittest.main()
