"""Tests of hosted .torrent files: POST /torrents, GET /torrents and the files themselves, with
the limits that keep uploads from starving announces."""

from __future__ import annotations

import json
import math
import threading
import unittest
from typing import Any, Dict, List, Optional, Tuple
from unittest import mock

from sta import bencode, metainfo, tracker_db, tracker_hosting
from tests.test_tracker import CLIENT_TIMEOUT, LogicTestCase, TrackerTestCase, peer_id


def torrent_bytes(name: str = "t", files: int = 0, comment: Optional[str] = None) -> bytes:
    """A valid .torrent: one 100-byte file, or ``files`` files of one byte each."""
    info: Dict[bytes, Any] = {b"name": name.encode(), b"piece length": 16384}
    if files:
        info[b"files"] = [{b"length": 1, b"path": [b"f%d" % i]} for i in range(files)]
        info[b"pieces"] = b"\x00" * 20 * math.ceil(files / 16384)
    else:
        info[b"length"] = 100
        info[b"pieces"] = b"\x00" * 20
    top: Dict[bytes, Any] = {b"announce": b"http://127.0.0.1:4000/announce", b"info": info}
    if comment is not None:
        top[b"comment"] = comment.encode()
    return bencode.encode(top)


class HostedTorrentTests(TrackerTestCase):
    def post(self, data: bytes) -> Tuple[int, Dict[str, Any]]:
        status, headers, body = self.request("POST", "/torrents", body=data)
        self.assertEqual(headers["content-type"], "application/json")
        return status, json.loads(body)

    def test_post_stores_torrent_and_get_returns_same_bytes(self):
        data = self.make_torrent()
        meta = metainfo.parse(data)
        status, reply = self.post(data)
        self.assertEqual(status, 201)
        self.assertEqual(reply["info_hash"], meta.info_hash.hex())
        self.assertEqual(reply["name"], "file.bin")
        host = f"127.0.0.1:{self.server.port}"
        self.assertEqual(reply["url"], f"http://{host}/torrents/{meta.info_hash.hex()}.torrent")
        self.assertTrue(reply["magnet"].startswith("magnet:?xt=urn:btih:" + meta.info_hash.hex()))
        status, headers, body = self.get(f"/torrents/{meta.info_hash.hex()}.torrent")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/x-bittorrent")
        self.assertEqual(body, data)

    def test_list_shows_hosted_torrents_as_json(self):
        data = self.make_torrent()
        self.post(data)
        status, headers, body = self.get("/torrents")
        self.assertEqual((status, headers["content-type"]), (200, "application/json"))
        listed = json.loads(body)
        self.assertEqual([t["name"] for t in listed], ["file.bin"])
        self.assertEqual(listed[0]["size"], 40000)

    def test_bad_torrent_is_rejected_with_400(self):
        status, reply = self.post(b"d4:spam4:eggse")
        self.assertEqual(status, 400)
        self.assertIn("not a valid .torrent", reply["error"])
        self.assertEqual(json.loads(self.get("/torrents")[2]), [])

    def test_empty_body_is_rejected_with_400(self):
        status, _ = self.post(b"")
        self.assertEqual(status, 400)

    def test_unknown_torrent_is_404(self):
        status, _, _ = self.get("/torrents/" + "ab" * 20 + ".torrent")
        self.assertEqual(status, 404)

    def test_malformed_torrent_name_is_400(self):
        status, _, _ = self.get("/torrents/xyz.torrent")
        self.assertEqual(status, 400)

    def test_hosted_torrent_survives_restart(self):
        data = self.make_torrent()
        self.post(data)
        self.server.shutdown()
        server = self.start_server()
        meta = metainfo.parse(data)
        status, _, body = self.get(f"/torrents/{meta.info_hash.hex()}.torrent", server=server)
        self.assertEqual((status, body), (200, data))


class HostingLimitTests(LogicTestCase):
    """The request logic with a hand-moved clock; no socket."""

    def post(self, data: bytes, client_ip: str = "10.0.0.1") -> Tuple[int, Dict[str, Any]]:
        status, ctype, body = self.app.handle(b"POST", b"/torrents", data, client_ip, b"h")
        self.assertEqual(ctype, "application/json")
        return status, json.loads(body)

    def listing(self, query: bytes = b"") -> List[Dict[str, Any]]:
        status, _, body = self.app.handle(b"GET", b"/torrents" + query, b"", "10.0.0.1", b"h")
        self.assertEqual(status, 200)
        return json.loads(body)

    def test_second_upload_of_the_same_torrent_keeps_the_first(self):
        first = torrent_bytes(comment="first")
        second = torrent_bytes(comment="second, with other trackers")
        self.assertEqual(self.post(first)[0], 201)
        status, reply = self.post(second, "10.0.0.2")
        self.assertEqual(status, 200)
        self.assertIn("first upload is kept", reply["note"])
        info_hash = metainfo.parse(first).info_hash
        self.assertEqual(self.store.hosted_data(info_hash), first)

    def test_torrent_with_too_many_files_is_refused_before_it_is_parsed(self):
        data = torrent_bytes(files=tracker_hosting.MAX_HOSTED_FILES + 1)
        with mock.patch.object(metainfo, "parse", side_effect=AssertionError("parsed")):
            status, reply = self.post(data)
        self.assertEqual(status, 413)
        self.assertIn(str(tracker_hosting.MAX_HOSTED_FILES), reply["error"])

    def test_torrent_at_the_file_limit_is_hosted(self):
        status, _ = self.post(torrent_bytes(files=tracker_hosting.MAX_HOSTED_FILES))
        self.assertEqual(status, 201)

    def test_uploads_from_one_address_are_limited_then_refilled(self):
        for n in range(tracker_hosting.UPLOADS_BURST):
            self.assertEqual(self.post(b"junk %d" % n)[0], 400)
        status, reply = self.post(torrent_bytes())
        self.assertEqual(status, 429)
        self.assertIn("too many uploads", reply["error"])
        self.assertEqual(self.post(torrent_bytes(), "10.0.0.2")[0], 201)
        self.clock.now += 60 / tracker_hosting.UPLOADS_PER_MINUTE
        self.assertEqual(self.post(torrent_bytes("other"))[0], 201)

    def test_uploads_are_parsed_one_at_a_time(self):
        real_parse = metainfo.parse
        lock = threading.Lock()
        gate = threading.Event()
        active: List[int] = []
        most = [0]

        def parse(data: bytes) -> Any:
            with lock:
                active.append(1)
                most[0] = max(most[0], len(active))
            gate.wait(CLIENT_TIMEOUT)
            with lock:
                active.pop()
            return real_parse(data)

        statuses: List[int] = []
        threads = [threading.Thread(target=lambda n=n: statuses.append(
            self.post(torrent_bytes("t%d" % n), "10.0.1.%d" % n)[0])) for n in range(3)]
        with mock.patch.object(metainfo, "parse", side_effect=parse):
            for thread in threads:
                thread.start()
            self.assertFalse(gate.wait(0.3))  # the others queue meanwhile
            with lock:
                self.assertEqual(len(active), tracker_hosting.MAX_PARSES_AT_ONCE)
            gate.set()
            for thread in threads:
                thread.join(CLIENT_TIMEOUT)
        self.assertEqual(statuses, [201, 201, 201])
        self.assertEqual(most[0], tracker_hosting.MAX_PARSES_AT_ONCE)

    def test_hosted_torrents_count_toward_the_torrent_cap(self):
        for n in range(tracker_db.MAX_TORRENTS):
            self.clock.now += 60 / tracker_db.NEW_TORRENTS_PER_MINUTE_ALL
            self.store.announce(n.to_bytes(20, "big"), peer_id(1), "10.2.0.1", 6881, 0, 0, 1,
                                b"", None, 0, "10.%d.%d.%d" % (3 + n // 65536,
                                                              n // 256 % 256, n % 256))
        status, reply = self.post(torrent_bytes())
        self.assertEqual(status, 503)
        self.assertIn("tracker is full", reply["error"])

    def test_hosted_bytes_are_capped(self):
        data = torrent_bytes()
        # Uploads of a gibibyte are too slow for a test: the tracker is made to hold all but
        # the last few bytes of MAX_HOSTED_BYTES already.
        self.store._hosted_bytes = tracker_db.MAX_HOSTED_BYTES - len(data) + 1
        status, reply = self.post(data)
        self.assertEqual(status, 503)
        self.assertIn("tracker is full", reply["error"])

    def test_listing_is_paged_in_upload_order(self):
        count = tracker_hosting.LIST_PAGE + 5
        for n in range(count):
            self.assertEqual(self.post(torrent_bytes("t%03d" % n), "10.1.%d.1" % n)[0], 201)
        self.assertEqual([t["name"] for t in self.listing()],
                         ["t%03d" % n for n in range(tracker_hosting.LIST_PAGE)])
        self.assertEqual(len(self.listing(b"?offset=%d" % tracker_hosting.LIST_PAGE)), 5)
        self.assertEqual([t["name"] for t in self.listing(b"?offset=1&limit=2")],
                         ["t001", "t002"])
        with mock.patch.object(self.store, "list_hosted", return_value=[]) as list_hosted:
            self.listing(b"?limit=%d" % (tracker_hosting.MAX_LIST_PAGE + 1))
        list_hosted.assert_called_once_with(0, tracker_hosting.MAX_LIST_PAGE)
        status, _, _ = self.app.handle(b"GET", b"/torrents?offset=x", b"", "10.0.0.1", b"h")
        self.assertEqual(status, 400)


if __name__ == "__main__":
    unittest.main()
