"""Tests for sta.metadata_source: an info dictionary from an ``xs=`` URL, saving it as a
.torrent, and uploading a .torrent to a tracker. The URLs are served by a local http.server on
127.0.0.1, port 0."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import random
import socket
import tempfile
import threading
import unittest
from typing import Dict, List, Tuple
from unittest import mock

from sta import bencode, metadata_source, metainfo
from sta.magnet import Magnet
from sta.metadata_source import fetch_torrent_from_source, save_torrent
from sta.ut_metadata import MetadataError


def make_info(hashes: int, name: str = "data") -> bytes:
    """A valid info dictionary of ``hashes`` pieces of 16 KiB."""
    rng = random.Random(hashes)
    pieces = bytes(rng.getrandbits(8) for _ in range(20 * hashes))
    return bencode.encode({"name": name, "piece length": 16384, "pieces": pieces,
                           "length": 16384 * hashes})


INFO = make_info(400)
INFO_HASH = hashlib.sha1(INFO).digest()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: Dict[str, Tuple[int, Dict[str, str], bytes]] = {}
    uploads: Dict[str, Tuple[int, bytes]] = {}
    posted: List[Tuple[str, str, bytes]] = []
    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/slow":
            self.release.wait(10)
            return
        status, headers, body = self.routes.get(self.path, (404, {}, b"no such torrent"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "X-No-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", "0"))
        self.posted.append((self.path, self.headers.get("Content-Type", ""),
                            self.rfile.read(length)))
        status, body = self.uploads.get(self.path, (404, b'{"error": "no such page"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def torrent_bytes(raw: bytes) -> bytes:
    return metainfo.encode_torrent(raw, trackers=["http://127.0.0.1:1/announce"])


class ServedTest(unittest.TestCase):
    """Runs the local server for the tests of one class."""

    @classmethod
    def setUpClass(cls) -> None:
        other = make_info(20, name="other")
        _Handler.routes = {
            "/good.torrent": (200, {"Content-Type": "application/x-bittorrent"},
                              torrent_bytes(INFO)),
            "/other.torrent": (200, {}, torrent_bytes(other)),
            "/garbage": (200, {}, b"<html>not a torrent</html>"),
            "/moved": (302, {"Location": "/good.torrent"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/ftp": (302, {"Location": "ftp://127.0.0.1/x.torrent"}, b""),
            "/big": (200, {}, b"d" + b"x" * 5000),
            "/big-no-length": (200, {"X-No-Length": "1"}, b"d" + b"x" * 5000),
            "/html-error": (500, {}, b"<html><body>Internal error</body></html>"),
            "/long-error": (403, {}, b"x" * 500),
        }
        _Handler.uploads = {
            "/torrents": (201, b'{"url": "http://tracker.lab/t/abc.torrent"}'),
            "/plain/torrents": (201, b"{}"),
            "/refusing/torrents": (400, b'{"error": "not a\\n valid torrent"}'),
            "/broken/torrents": (502, b"bad gateway"),
        }
        _Handler.posted = []
        _Handler.release = threading.Event()
        cls.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        cls.httpd.daemon_threads = True
        cls.thread = threading.Thread(target=cls.httpd.serve_forever, daemon=True)
        cls.thread.start()
        cls.base = f"http://127.0.0.1:{cls.httpd.server_address[1]}"

    @classmethod
    def tearDownClass(cls) -> None:
        _Handler.release.set()
        cls.httpd.shutdown()
        cls.httpd.server_close()
        cls.thread.join(5)


class SourceTest(ServedTest):
    def fetch_error(self, path: str, **kwargs: object) -> str:
        with self.assertRaises(MetadataError) as caught:
            fetch_torrent_from_source(self.base + path, INFO_HASH,
                                      **kwargs)  # type: ignore[arg-type]
        message = str(caught.exception)
        self.assertIn(self.base, message)
        self.assertNotIn("\n", message)
        return message

    def test_good_torrent_gives_the_info_dictionary(self) -> None:
        meta = fetch_torrent_from_source(self.base + "/good.torrent", INFO_HASH, 5)
        self.assertEqual(meta.info.raw, INFO)

    def test_redirect_is_followed(self) -> None:
        self.assertEqual(fetch_torrent_from_source(self.base + "/moved", INFO_HASH, 5).info.raw,
                         INFO)

    def test_wrong_info_hash_is_refused(self) -> None:
        self.assertIn("not the magnet's", self.fetch_error("/other.torrent"))

    def test_not_found_says_the_status(self) -> None:
        self.assertIn("HTTP 404 Not Found: no such torrent", self.fetch_error("/missing"))

    def test_garbage_is_not_a_torrent(self) -> None:
        self.assertIn("not a torrent file", self.fetch_error("/garbage"))

    def test_oversized_answer_is_refused(self) -> None:
        with mock.patch.object(metadata_source, "MAX_SOURCE_SIZE", 1000):
            self.assertIn("5001 bytes is over", self.fetch_error("/big"))
            self.assertIn("limit", self.fetch_error("/big-no-length"))

    def test_redirect_loop_ends(self) -> None:
        self.assertIn("redirects", self.fetch_error("/loop"))

    def test_redirect_to_other_scheme_is_refused(self) -> None:
        self.assertIn("only http and https", self.fetch_error("/ftp"))

    def test_timeout(self) -> None:
        self.assertIn("timed out", self.fetch_error("/slow", timeout=0.3))

    def test_connection_refused(self) -> None:
        url = f"http://127.0.0.1:{unused_port()}/x.torrent"
        with self.assertRaises(MetadataError) as caught:
            fetch_torrent_from_source(url, INFO_HASH, 5)
        self.assertIn("127.0.0.1", str(caught.exception))
        self.assertIn("refused", str(caught.exception))

    def test_unsupported_scheme(self) -> None:
        with self.assertRaises(MetadataError) as caught:
            fetch_torrent_from_source("udp://127.0.0.1:1/x", INFO_HASH, 5)
        self.assertIn("only http and https", str(caught.exception))

    def test_passkey_query_is_not_shown(self) -> None:
        message = self.fetch_error("/missing?passkey=secret")
        self.assertNotIn("secret", message)


    def test_whole_torrent_keeps_the_trackers_of_the_hosted_file(self) -> None:
        meta = metadata_source.fetch_torrent_from_source(self.base + "/good.torrent",
                                                         INFO_HASH, 5)
        self.assertEqual(meta.info.raw, INFO)
        self.assertEqual(meta.trackers, (("http://127.0.0.1:1/announce",),))

    def test_html_error_page_is_not_quoted(self) -> None:
        message = self.fetch_error("/html-error")
        self.assertTrue(message.endswith("HTTP 500 Internal Server Error"), message)

    def test_error_body_longer_than_a_line_of_text_is_not_quoted(self) -> None:
        self.assertNotIn("xxx", self.fetch_error("/long-error"))


class UploadTest(ServedTest):
    def test_upload_posts_the_torrent_beside_the_announce_path(self) -> None:
        data = torrent_bytes(INFO)
        url = metadata_source.upload_torrent(self.base + "/announce?passkey=s", data, INFO_HASH)
        self.assertEqual(url, "http://tracker.lab/t/abc.torrent")  # the tracker's own answer
        self.assertIn(("/torrents", "application/x-bittorrent", data), _Handler.posted)

    def test_answer_without_a_url_gives_the_usual_one(self) -> None:
        url = metadata_source.upload_torrent(self.base + "/plain/announce", b"d1:xi1ee",
                                             INFO_HASH)
        self.assertEqual(url, f"{self.base}/plain/torrents/{INFO_HASH.hex()}.torrent")

    def test_tracker_error_is_quoted_on_one_line(self) -> None:
        with self.assertRaises(MetadataError) as caught:
            metadata_source.upload_torrent(self.base + "/refusing/announce", b"x", INFO_HASH)
        self.assertEqual(str(caught.exception), f"upload to {self.base}/refusing/torrents "
                         "failed: HTTP 400: not a valid torrent")

    def test_error_without_json_keeps_its_text(self) -> None:
        with self.assertRaisesRegex(MetadataError, "HTTP 502: bad gateway$"):
            metadata_source.upload_torrent(self.base + "/broken/announce", b"x", INFO_HASH)

    def test_udp_tracker_is_refused_without_a_request(self) -> None:
        before = len(_Handler.posted)
        with self.assertRaisesRegex(MetadataError, "not an HTTP tracker"):
            metadata_source.upload_torrent("udp://127.0.0.1:1/announce", b"x", INFO_HASH)
        self.assertEqual(len(_Handler.posted), before)

    def test_unreachable_tracker_is_an_error(self) -> None:
        url = f"http://127.0.0.1:{unused_port()}/announce"
        with self.assertRaisesRegex(MetadataError, "^upload to .* failed: "):
            metadata_source.upload_torrent(url, b"x", INFO_HASH)


def unused_port() -> int:
    """A loopback port nothing listens on (bound without listening, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SaveTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name

    def test_saved_torrent_has_info_trackers_and_web_seeds(self) -> None:
        magnet = Magnet(info_hash=INFO_HASH, name="data",
                        trackers=("http://t1:4000/announce", "http://t2:4000/announce"),
                        web_seeds=("http://seed/data",))
        path = metadata_source.saved_torrent_path(os.path.join(self.dir, ".sta"), INFO_HASH)
        self.assertTrue(path.endswith(INFO_HASH.hex() + ".torrent"))
        save_torrent(INFO, magnet, path)
        meta = metainfo.load(path)
        self.assertEqual(meta.info_hash, INFO_HASH)
        self.assertEqual(meta.info.raw, INFO)
        self.assertEqual(meta.trackers, (("http://t1:4000/announce",),
                                         ("http://t2:4000/announce",)))
        self.assertEqual(meta.url_list, ("http://seed/data",))
        self.assertEqual([n for n in os.listdir(os.path.dirname(path))],
                         [os.path.basename(path)])  # no temporary file left behind

    def test_saved_torrent_without_trackers(self) -> None:
        path = os.path.join(self.dir, "x.torrent")
        save_torrent(INFO, Magnet(info_hash=INFO_HASH), path)
        self.assertEqual(metainfo.load(path).trackers, ())

    def test_mismatched_info_hash_is_refused(self) -> None:
        with self.assertRaises(MetadataError):
            save_torrent(INFO, Magnet(info_hash=b"\1" * 20), os.path.join(self.dir, "x.torrent"))
        self.assertEqual(os.listdir(self.dir), [])


if __name__ == "__main__":
    unittest.main()
