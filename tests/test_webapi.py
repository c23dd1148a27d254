"""The page's JSON API over HTTP against a real node: listing, adding, the detail view, pause,
resume and remove, and the errors a page shows."""

from __future__ import annotations

import base64
import os
import unittest

from tests.webkit import DATA_SIZE, PIECE_LENGTH, WebFixture, download_from_seed


class WebApiTest(unittest.TestCase):
    def setUp(self) -> None:
        self.web = WebFixture(self)
        self.key = self.web.meta.info_hash.hex()

    def add(self) -> dict:
        status, answer = self.web.post_json(
            "/api/add", {"metainfo": base64.b64encode(self.web.torrent_bytes()).decode()})
        self.assertEqual(status, 200, answer)
        return answer["torrent"]

    def test_empty_node_lists_nothing_with_totals(self) -> None:
        status, answer = self.web.get_json("/api/torrents")
        self.assertEqual(status, 200)
        self.assertEqual(answer["torrents"], [])
        self.assertEqual(answer["stats"]["torrents"], 0)
        self.assertEqual(answer["folder"], self.web.downloads)

    def test_uploaded_torrent_is_listed_and_a_second_upload_is_a_duplicate(self) -> None:
        torrent = self.add()
        self.assertEqual((torrent["name"], torrent["duplicate"]), ("notes.bin", False))
        _, answer = self.web.get_json("/api/torrents")
        (row,) = answer["torrents"]
        self.assertEqual((row["info_hash"], row["size"], row["id"]), (self.key, DATA_SIZE, 1))
        self.assertTrue(self.add()["duplicate"])
        _, later = self.web.get_json("/api/torrents?notices=999")
        self.assertEqual(later["notices"], [])

    def test_magnet_link_is_added_and_fetches_metadata(self) -> None:
        status, answer = self.web.post_json(
            "/api/add", {"magnet": f"magnet:?xt=urn:btih:{self.key}&dn=notes.bin"})
        self.assertEqual((status, answer["torrent"]["name"]), (200, "notes.bin"))
        self.web.wait_state("metadata")

    def test_detail_shows_files_piece_map_peers_and_rates(self) -> None:
        self.add()
        download_from_seed(self, self.web)
        self.web.web.sample()
        status, detail = self.web.get_json(f"/api/torrents/{self.key.upper()}")
        self.assertEqual(status, 200)
        self.assertEqual(detail["files"], [{"name": "notes.bin", "length": DATA_SIZE,
                                            "done": DATA_SIZE}])
        pieces = -(-DATA_SIZE // PIECE_LENGTH)
        self.assertEqual((detail["piece_count"], detail["pieces"]), (pieces, [1.0] * pieces))
        self.assertIsInstance(detail["peers"], list)
        self.assertEqual(len(detail["rates"]), 1)
        self.assertNotIn("bitfield", detail)

    def test_pause_resume_and_remove_keeping_or_deleting_files(self) -> None:
        self.add()
        self.web.wait_state("downloading")
        status, answer = self.web.post_json(f"/api/torrents/{self.key}/pause", {})
        self.assertEqual((status, answer), (200, {"before": "downloading"}))
        self.web.wait_state("paused")
        _, answer = self.web.post_json(f"/api/torrents/{self.key}/resume", {})
        self.assertEqual(answer, {"before": "paused", "after": "downloading"})
        _, answer = self.web.post_json(f"/api/torrents/{self.key}/remove",
                                       {"delete_files": True})
        self.assertEqual(self.web.node.status_rows(), [])
        self.assertFalse(os.path.exists(os.path.join(self.web.downloads, "notes.bin")))

    def test_unknown_torrent_path_and_bad_requests_say_why(self) -> None:
        status, answer = self.web.get_json("/api/torrents/" + "0" * 40)
        self.assertEqual(status, 404)
        self.assertIn("no torrent", answer["error"])
        self.assertEqual(self.web.get_json("/api/nothing")[0], 404)
        status, answer = self.web.post_json("/api/add", {})
        self.assertEqual((status, answer["error"]), (400, "give a .torrent file or a magnet "
                                                          "link"))
        status, answer = self.web.post_json("/api/add", {"metainfo": "!!!"})
        self.assertEqual(status, 400)
        status, answer = self.web.post_json("/api/add", {"magnet": "magnet:?xt=nope"})
        self.assertIn("bad magnet link", answer["error"])
        self.assertEqual(self.web.post_json("/api/add", [1])[0], 400)


if __name__ == "__main__":
    unittest.main()
