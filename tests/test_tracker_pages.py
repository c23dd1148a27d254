"""Tests of what the tracker shows people: /stats and the dashboard tell the truth (totals that
survive departures, how old each figure is, rows that stay put, no peer ids)."""

from __future__ import annotations

import html
import json
import re
import unittest
from typing import Any, Dict

from sta import bencode, metainfo, tracker_limits, tracker_pages
from sta.tracker import Tracker
from sta.tracker_db import TrackerStore
from tests.test_tracker import INFO_HASH, INTERVAL, OTHER_HASH, LogicTestCase, TrackerTestCase, \
    announce_query, peer_id


class MonitoringTests(TrackerTestCase):
    def test_stats_reports_counts_totals_and_progress_from_size(self):
        data = self.make_torrent(size=40000)
        info_hash = metainfo.parse(data).info_hash
        self.request("POST", "/torrents", body=data)
        self.announce(peer_id(1), 7001, left=0, info_hash=info_hash, uploaded=500)
        self.announce(peer_id(2), 7002, left=10000, info_hash=info_hash, downloaded=30000)
        status, headers, body = self.get("/stats")
        self.assertEqual((status, headers["content-type"]), (200, "application/json"))
        stats = json.loads(body)
        torrent = next(t for t in stats["torrents"] if t["info_hash"] == info_hash.hex())
        self.assertEqual(torrent["name"], "file.bin")
        self.assertEqual((torrent["seeders"], torrent["leechers"]), (1, 1))
        self.assertEqual((torrent["uploaded"], torrent["downloaded"]), (500, 30000))
        progress = {p["port"]: p["progress"] for p in torrent["peers"]}
        self.assertEqual(progress, {7001: 1.0, 7002: 0.75})

    def test_stats_progress_without_size_uses_downloaded_and_left(self):
        self.announce(peer_id(1), 7001, left=300, downloaded=100)
        torrent = json.loads(self.get("/stats")[2])["torrents"][0]
        self.assertIsNone(torrent["name"])
        self.assertEqual(torrent["peers"][0]["progress"], 0.25)
        self.assertEqual(torrent["completed"], 0)

    def test_dashboard_is_self_refreshing_html_with_the_figures(self):
        self.announce(peer_id(1), 7001, left=0)
        status, headers, body = self.get("/")
        self.assertEqual((status, headers["content-type"]), (200, "text/html; charset=utf-8"))
        page = body.decode()
        self.assertIn('<meta http-equiv=refresh content=', page)
        self.assertIn(INFO_HASH.hex(), page)
        self.assertNotIn("http://", page.replace(f"http://127.0.0.1:{self.server.port}", ""))
        self.assertNotIn("<script", page)

    def test_dashboard_escapes_names_and_peer_ids(self):
        data = self.make_torrent(name="<b>x&y<i>.bin")
        info_hash = metainfo.parse(data).info_hash
        self.request("POST", "/torrents", body=data)
        self.announce(b"<script>alert(1)</s>", 7001, info_hash=info_hash)
        page = self.get("/")[2].decode()
        self.assertNotIn("<b>x&y", page)
        self.assertIn("&lt;b&gt;x&amp;y&lt;i&gt;.bin", page)
        self.assertNotIn("<script>", page)


class DashboardTruthTests(LogicTestCase):
    """The request logic with a hand-moved clock; no socket."""

    def announce(self, pid: bytes, port: int, **extra: Any) -> Dict[bytes, Any]:
        answer = bencode.decode(self.app.announce(announce_query(pid, port, **extra).encode(),
                                                  "10.0.0.%d" % (port % 250)))
        self.assertNotIn(b"failure reason", answer)
        return answer

    def page(self) -> str:
        status, _, body = self.app.handle(b"GET", b"/", b"", "10.0.0.1", b"h")
        self.assertEqual(status, 200)
        return body.decode()

    def stats(self) -> Dict[str, Any]:
        return json.loads(self.app.handle(b"GET", b"/stats", b"", "10.0.0.1", b"h")[2])

    def test_totals_include_peers_that_have_left(self):
        self.announce(peer_id(0), 7000, left=0, event="started")
        for n in range(1, 6):
            self.announce(peer_id(n), 7000 + n, left=40000, event="started")
            self.announce(peer_id(n), 7000 + n, left=0, downloaded=40000, event="completed")
            self.announce(peer_id(n), 7000 + n, left=0, downloaded=40000, uploaded=1000,
                          event="stopped")
        self.announce(peer_id(0), 7000, left=0, uploaded=200000)
        torrent = self.stats()["torrents"][0]
        self.assertEqual((torrent["completed"], torrent["seeders"], torrent["leechers"]),
                         (5, 1, 0))
        self.assertEqual((torrent["uploaded"], torrent["downloaded"]), (205000, 200000))
        self.assertRegex(self.page(), r"<td>200\.2 KiB</td><td>195\.3 KiB</td></tr>")

    def test_each_peer_row_says_how_old_its_figures_are(self):
        self.announce(peer_id(1), 7001)
        self.clock.now += 40
        self.announce(peer_id(2), 7002)
        page = self.page()
        self.assertIn("as of 40 s ago", page)
        self.assertIn("as of 0 s ago", page)
        self.assertIn(f"every {INTERVAL} s", page)

    def test_rows_keep_their_order_between_refreshes(self):
        for n, info_hash in enumerate((OTHER_HASH, INFO_HASH)):
            self.announce(peer_id(n), 7000 + n, info_hash=info_hash)
        for n in range(10, 20):
            self.announce(peer_id(n), 7000 + n, info_hash=INFO_HASH)
        before = self.page()
        self.clock.now += 10
        for n in reversed(range(10, 20)):  # re-announce in another order, with new figures
            self.announce(peer_id(n), 7000 + n, info_hash=INFO_HASH, downloaded=n, left=1)
        self.announce(peer_id(30), 7030, info_hash=INFO_HASH)  # the busier torrent grows
        after = self.page()
        order = [OTHER_HASH.hex(), INFO_HASH.hex()]
        for page in (before, after):
            self.assertLess(page.index(order[0]), page.index(order[1]))
        ports = [int(p) for p in re.findall(r"<td class=l>10\.0\.0\.\d+</td><td>(\d+)</td>",
                                            after)]
        self.assertEqual(ports, [7000, 7001] + list(range(7010, 7020)) + [7030])

    def test_torrent_that_was_not_uploaded_shows_how_to_upload_it(self):
        self.announce(peer_id(1), 7001)
        page = self.page()
        self.assertIn(html.escape(tracker_pages.NOT_UPLOADED_HINT), page)
        self.assertIn("sta create --upload", tracker_pages.NOT_UPLOADED_HINT)
        self.assertNotIn("<td>?</td>", page)
        self.assertIn("<td>unknown</td>", page)

    def test_uploaded_torrent_shows_its_name_and_no_hint(self):
        data = bencode.encode({b"info": {b"name": b"notes.pdf", b"piece length": 16384,
                                         b"length": 100, b"pieces": b"\x00" * 20}})
        self.assertEqual(self.app.handle(b"POST", b"/torrents", data, "10.0.0.1", b"h")[0], 201)
        self.announce(peer_id(1), 7001, info_hash=metainfo.parse(data).info_hash)
        page = self.page()
        self.assertIn("notes.pdf", page)
        self.assertNotIn(html.escape(tracker_pages.NOT_UPLOADED_HINT), page)

    def test_stats_and_dashboard_publish_no_peer_ids(self):
        secret = b"-SX0001-SECRETSECRET"
        self.announce(secret, 7001)
        for text in (json.dumps(self.stats()), self.page()):
            self.assertNotIn("SECRETSECRET", text)
            self.assertNotIn(secret.hex(), text)
            self.assertNotIn(secret[8:].hex(), text)

    def test_default_announce_interval_is_the_lab_default(self):
        store = TrackerStore(":memory:", clock=self.clock)
        self.addCleanup(store.close)
        answer = bencode.decode(Tracker(store).announce(
            announce_query(peer_id(1), 7001).encode(), "10.0.0.1"))
        self.assertEqual(answer[b"interval"], tracker_limits.DEFAULT_INTERVAL)
        self.assertEqual(answer[b"min interval"], tracker_limits.DEFAULT_INTERVAL // 2)


if __name__ == "__main__":
    unittest.main()
