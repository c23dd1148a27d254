"""Tests for sta.announce: response parsing and URL building (pure), and real HTTP(S) exchanges
against a small http.server on 127.0.0.1. Scheduling and tiers are tests/test_trackers.py."""

from __future__ import annotations

import hashlib
import http.server
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest
from typing import List, Optional, Tuple
from unittest import mock
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from sta import announce as A
from sta import trackers as T
from sta.bencode import encode

# Bytes that mean something in a URL (space, +, &, =, %, /, ?, #) and bytes above 0x7f.
INFO_HASH = b"\x00\x01 +&=%~\xff\xfe/?#abcXYZ0"
PEER_ID = b"-ST0001-" + bytes(range(0xF0, 0xFC))
STATS = dict(info_hash=INFO_HASH, peer_id=PEER_ID, port=6881, uploaded=1, downloaded=2, left=3)


def compact(*peers: Tuple[str, int]) -> bytes:
    return b"".join(socket.inet_aton(h) + p.to_bytes(2, "big") for h, p in peers)


def compact6(*peers: Tuple[str, int]) -> bytes:
    return b"".join(socket.inet_pton(socket.AF_INET6, h) + p.to_bytes(2, "big") for h, p in peers)


def answer(**fields) -> bytes:
    return encode({k.replace("_", " "): v for k, v in fields.items()})


# ---------------------------------------------------------------------------------------------
# Parsing

class ParseAnnounceTests(unittest.TestCase):
    def parse_error(self, body: bytes) -> str:
        with self.assertRaises(A.TrackerError) as ctx:
            A.parse_announce_response(body)
        return str(ctx.exception)

    def test_compact_peers_are_decoded(self):
        r = A.parse_announce_response(
            answer(interval=900, peers=compact(("10.0.0.1", 6881), ("192.168.1.2", 51413))))
        self.assertEqual(r.peers, [("10.0.0.1", 6881), ("192.168.1.2", 51413)])
        self.assertEqual(r.interval, 900)

    def test_compact_duplicates_are_removed_keeping_order(self):
        r = A.parse_announce_response(answer(interval=1, peers=compact(
            ("10.0.0.2", 2), ("10.0.0.1", 1), ("10.0.0.2", 2))))
        self.assertEqual(r.peers, [("10.0.0.2", 2), ("10.0.0.1", 1)])

    def test_compact_port_zero_is_dropped(self):
        r = A.parse_announce_response(answer(interval=1, peers=compact(
            ("10.0.0.1", 0), ("10.0.0.2", 7))))
        self.assertEqual(r.peers, [("10.0.0.2", 7)])

    def test_compact_unspecified_address_is_dropped(self):
        r = A.parse_announce_response(answer(interval=1, peers=compact(("0.0.0.0", 5))))
        self.assertEqual(r.peers, [])

    def test_compact_length_not_multiple_of_6_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=b"\x01" * 7))
        self.assertIn("not a multiple of 6", message)

    def test_empty_compact_list_is_no_peers(self):
        self.assertEqual(A.parse_announce_response(answer(interval=1, peers=b"")).peers, [])

    def test_missing_peers_is_no_peers(self):
        self.assertEqual(A.parse_announce_response(answer(interval=1)).peers, [])

    def test_dictionary_model_is_decoded(self):
        body = answer(interval=60, peers=[
            {"ip": "10.0.0.1", "port": 6881, "peer id": b"A" * 20},
            {"ip": "2001:DB8::1", "port": 6882},
            {"ip": "peer.example.org", "port": 6883},
            {"ip": "[2001:db8::2]", "port": 6884},
        ])
        self.assertEqual(A.parse_announce_response(body).peers, [
            ("10.0.0.1", 6881), ("2001:db8::1", 6882), ("peer.example.org", 6883),
            ("2001:db8::2", 6884)])

    def test_dictionary_model_drops_port_zero_and_duplicates(self):
        body = answer(interval=60, peers=[
            {"ip": "10.0.0.1", "port": 0}, {"ip": "10.0.0.2", "port": 5},
            {"ip": "10.0.0.2", "port": 5}])
        self.assertEqual(A.parse_announce_response(body).peers, [("10.0.0.2", 5)])

    def test_dictionary_entry_that_is_not_a_dict_is_rejected(self):
        self.assertIn("peer entry is a string", self.parse_error(answer(interval=1, peers=[b"x"])))

    def test_dictionary_ip_of_wrong_type_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": 5, "port": 1}]))
        self.assertIn("peer 'ip' is a integer", message)

    def test_dictionary_missing_port_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": "10.0.0.1"}]))
        self.assertIn("not a port number", message)

    def test_dictionary_port_out_of_range_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": "10.0.0.1", "port": 70000}]))
        self.assertIn("not a port number", message)

    def test_dictionary_ip_that_is_no_address_or_name_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": "bad host!", "port": 1}]))
        self.assertIn("neither an IP address nor a host name", message)

    def test_dictionary_ip_not_ascii_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": b"\xff\xfe", "port": 1}]))
        self.assertIn("not ASCII", message)

    def test_peers6_are_decoded(self):
        r = A.parse_announce_response(answer(interval=1, peers=b"", peers6=compact6(
            ("2001:db8::1", 6881), ("fe80::1:2", 80))))
        self.assertEqual(r.peers, [("2001:db8::1", 6881), ("fe80::1:2", 80)])

    def test_peers6_ipv4_mapped_becomes_ipv4_and_merges(self):
        r = A.parse_announce_response(answer(interval=1, peers=compact(("10.0.0.1", 5)),
                                             peers6=compact6(("::ffff:10.0.0.1", 5), ("::1", 6))))
        self.assertEqual(r.peers, [("10.0.0.1", 5), ("::1", 6)])

    def test_peers6_length_not_multiple_of_18_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers6=b"\x00" * 17))
        self.assertIn("'peers6' of 17 bytes is not a multiple of 18", message)

    def test_peers6_as_list_is_rejected(self):
        self.assertIn("'peers6' is a list", self.parse_error(answer(interval=1, peers6=[])))

    def test_peers_of_wrong_type_is_rejected(self):
        self.assertIn("'peers' is a integer", self.parse_error(answer(interval=1, peers=5)))

    def test_failure_reason_raises_with_the_trackers_text(self):
        with self.assertRaises(A.TrackerError) as ctx:
            A.parse_announce_response(answer(failure_reason="unregistered torrent"))
        self.assertEqual(str(ctx.exception), "failure reason: unregistered torrent")
        self.assertEqual(ctx.exception.failure_reason, "unregistered torrent")

    def test_failure_reason_is_made_one_printable_line(self):
        message = self.parse_error(answer(failure_reason=b"bad\r\n\x1b[31mred\x00" + b"x" * 900))
        self.assertNotIn("\n", message)
        self.assertNotIn("\x1b", message)
        self.assertLessEqual(len(message), len("failure reason: ") + A.MAX_MESSAGE_CHARS)

    def test_warning_message_is_kept(self):
        r = A.parse_announce_response(answer(interval=1, peers=b"", warning_message="slow down"))
        self.assertEqual(r.warning, "slow down")

    def test_all_counters_and_tracker_id_are_read(self):
        r = A.parse_announce_response(answer(
            interval=1800, min_interval=900, tracker_id=b"\x00id", complete=3, incomplete=4,
            peers=b""))
        self.assertEqual((r.interval, r.min_interval, r.tracker_id, r.complete, r.incomplete,
                          r.warning), (1800, 900, b"\x00id", 3, 4, None))

    def test_missing_optional_fields_are_none(self):
        r = A.parse_announce_response(answer(interval=5, peers=b""))
        self.assertEqual((r.min_interval, r.tracker_id, r.complete, r.incomplete), (None,) * 4)

    def test_missing_interval_uses_default(self):
        self.assertEqual(A.parse_announce_response(answer(peers=b"")).interval, A.DEFAULT_INTERVAL)

    def test_interval_of_wrong_type_is_rejected(self):
        message = self.parse_error(answer(interval=b"1800", peers=b""))
        self.assertIn("'interval' is a string, not an integer", message)

    def test_negative_interval_is_rejected(self):
        self.assertIn("'interval' is -5", self.parse_error(answer(interval=-5)))

    def test_complete_of_wrong_type_is_rejected(self):
        self.assertIn("'complete' is a list", self.parse_error(answer(interval=1, complete=[])))

    def test_tracker_id_of_wrong_type_is_rejected(self):
        self.assertIn("'tracker id' is a integer", self.parse_error(answer(tracker_id=1)))

    def test_warning_of_wrong_type_is_rejected(self):
        self.assertIn("'warning message'", self.parse_error(answer(warning_message=1)))

    def test_not_bencoded_is_rejected_with_a_preview(self):
        message = self.parse_error(b"<html><body>Not a tracker</body></html>")
        self.assertIn("not bencoded", message)
        self.assertIn("<html>", message)

    def test_empty_body_is_rejected(self):
        self.assertIn("not bencoded", self.parse_error(b""))

    def test_non_dictionary_answer_is_rejected(self):
        self.assertIn("bencoded list, not a dictionary", self.parse_error(b"li1ee"))

    def test_trailing_newline_is_accepted(self):
        self.assertEqual(A.parse_announce_response(answer(interval=7) + b"\r\n").interval, 7)

    def test_trailing_garbage_is_rejected(self):
        self.assertIn("garbage", self.parse_error(answer(interval=7) + b"junk"))


class ParseScrapeTests(unittest.TestCase):
    def test_counts_are_read_per_info_hash(self):
        body = encode({"files": {b"a" * 20: {"complete": 1, "incomplete": 2, "downloaded": 3},
                                 b"b" * 20: {"complete": 4}}})
        self.assertEqual(A.parse_scrape_response(body),
                         {b"a" * 20: (1, 2, 3), b"b" * 20: (4, 0, 0)})

    def test_key_that_is_not_an_info_hash_is_skipped(self):
        body = encode({"files": {b"short": {"complete": 1}}})
        self.assertEqual(A.parse_scrape_response(body), {})

    def test_failure_reason_raises(self):
        with self.assertRaises(A.TrackerError):
            A.parse_scrape_response(answer(failure_reason="no scrape here"))

    def test_files_of_wrong_type_is_rejected(self):
        with self.assertRaises(A.TrackerError):
            A.parse_scrape_response(encode({"files": []}))

    def test_entry_of_wrong_type_is_rejected(self):
        with self.assertRaises(A.TrackerError):
            A.parse_scrape_response(encode({"files": {b"a" * 20: 5}}))


class DisplayUrlTests(unittest.TestCase):
    def test_query_and_user_info_are_hidden(self):
        self.assertEqual(A.display_url("https://u:pw@t.example:8443/a/announce?passkey=k#f"),
                         "https://t.example:8443/a/announce")

    def test_ipv6_host_keeps_brackets(self):
        self.assertEqual(A.display_url("http://[::1]:4000/announce"), "http://[::1]:4000/announce")

    def test_supported_urls(self):
        self.assertTrue(A.is_supported_url("https://t/announce"))
        self.assertFalse(A.is_supported_url("udp://t:80/announce"))
        self.assertFalse(A.is_supported_url("http://t:99999/announce"))
        self.assertFalse(A.is_supported_url("http:///announce"))


class ScrapeUrlTests(unittest.TestCase):
    def test_announce_becomes_scrape(self):
        self.assertEqual(A.scrape_url("http://t:4000/announce"), "http://t:4000/scrape")

    def test_suffix_and_query_are_kept(self):
        self.assertEqual(A.scrape_url("https://t/x/announce.php?passkey=ab"),
                         "https://t/x/scrape.php?passkey=ab")

    def test_no_announce_in_last_component_gives_none(self):
        self.assertIsNone(A.scrape_url("http://t/a"))
        self.assertIsNone(A.scrape_url("http://t/announce/x"))
        self.assertIsNone(A.scrape_url("http://t/x/myannounce"))

    def test_udp_gives_none(self):
        self.assertIsNone(A.scrape_url("udp://t:80/announce"))


# ---------------------------------------------------------------------------------------------
# URL building

class BuildUrlTests(unittest.TestCase):
    def query(self, url: str) -> dict:
        return parse_qs(urlsplit(url).query, keep_blank_values=True, encoding="latin-1")

    def test_raw_bytes_round_trip(self):
        for info_hash in (INFO_HASH, bytes(range(20)), bytes(range(236, 256))):
            url = A.build_announce_url("http://t/announce", **dict(STATS, info_hash=info_hash))
            q = self.query(url)
            self.assertEqual(q["info_hash"][0].encode("latin-1"), info_hash)
            self.assertEqual(q["peer_id"][0].encode("latin-1"), PEER_ID)

    def test_only_unreserved_bytes_stay_unescaped(self):
        url = A.build_announce_url("http://t/announce", **dict(STATS, info_hash=bytes(range(20)),
                                                               peer_id=bytes(range(100, 120))))
        raw = urlsplit(url).query.split("&")[0].split("=", 1)[1]
        self.assertEqual(unquote_to_bytes(raw), bytes(range(20)))
        unescaped = "".join(raw.split("%")[0:1] + [part[2:] for part in raw.split("%")[1:]])
        allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        self.assertTrue(set(unescaped) <= allowed, unescaped)
        self.assertIn("%20", A.build_announce_url("http://t/a", **dict(STATS, info_hash=b" " * 20)))

    def test_existing_query_is_kept_and_extended_with_ampersand(self):
        url = A.build_announce_url("http://t/announce?passkey=x&y=1", **STATS)
        self.assertTrue(url.startswith("http://t/announce?passkey=x&y=1&info_hash="), url)
        self.assertEqual(self.query(url)["passkey"], ["x"])

    def test_trailing_ampersand_or_question_mark_does_not_double(self):
        for base in ("http://t/announce?passkey=x&", "http://t/announce?"):
            url = A.build_announce_url(base, **STATS)
            self.assertNotIn("&&", url)
            self.assertNotIn("?&", url)

    def test_fragment_is_dropped(self):
        url = A.build_announce_url("http://t/announce#frag", **STATS)
        self.assertNotIn("#", url)
        self.assertIn("info_hash", self.query(url))

    def test_all_parameters_present(self):
        url = A.build_announce_url("http://t/announce", **STATS, event="started", numwant=80,
                                   key=0xBEEF, tracker_id=b"\x01tid")
        q = self.query(url)
        self.assertEqual({k: v[0] for k, v in q.items() if k not in ("info_hash", "peer_id")}, {
            "port": "6881", "uploaded": "1", "downloaded": "2", "left": "3", "event": "started",
            "numwant": "80", "compact": "1", "no_peer_id": "1", "key": "0000BEEF",
            "trackerid": "\x01tid"})

    def test_regular_announce_has_no_event_and_no_trackerid(self):
        q = self.query(A.build_announce_url("http://t/announce", **STATS))
        self.assertNotIn("event", q)
        self.assertNotIn("trackerid", q)
        self.assertNotIn("key", q)

    def test_non_compact_request(self):
        q = self.query(A.build_announce_url("http://t/announce", **STATS, compact=False))
        self.assertEqual(q["compact"], ["0"])

    def test_bad_arguments_are_rejected(self):
        with self.assertRaises(ValueError):
            A.build_announce_url("http://t/a", **dict(STATS, info_hash=b"short"))
        with self.assertRaises(ValueError):
            A.build_announce_url("http://t/a", **STATS, event="paused")
        with self.assertRaises(ValueError):
            A.build_announce_url("http://t/a", **dict(STATS, left=-1))


# ---------------------------------------------------------------------------------------------
# Real HTTP exchanges

Reply = Tuple[int, dict, bytes]


class _QuietServer(http.server.ThreadingHTTPServer):
    """A client that hangs up mid-request (a pin check failing, a timeout test) is expected
    here: no socketserver traceback on stderr for it."""

    def handle_error(self, request, client_address):  # type: ignore[override]
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


class FakeTracker:
    """http.server on 127.0.0.1, port 0, in a thread. Each request pops the next reply (a
    (status, headers, body) tuple or a callable taking the handler); the last one repeats."""

    def __init__(self, test: unittest.TestCase, *replies, tls: Optional[ssl.SSLContext] = None):
        self.replies: List = list(replies)
        self.requests: List[Tuple[str, dict]] = []
        self.release = threading.Event()   # set at cleanup: ends any reply that waits
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                owner.requests.append((self.path, dict(self.headers)))
                reply = owner.replies.pop(0) if len(owner.replies) > 1 else owner.replies[0]
                try:
                    if callable(reply):
                        reply(self)
                        return
                    status, headers, body = reply
                    self.send_response(status)
                    headers = dict({"Content-Length": str(len(body))}, **headers)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.scheme = "https" if tls else "http"
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        test.addCleanup(self.close)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "/announce", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def query(self, index: int = -1) -> dict:
        return parse_qs(urlsplit(self.requests[index][0]).query, encoding="latin-1")


def ok_reply(body: bytes) -> Reply:
    return (200, {"Content-Type": "text/plain"}, body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpAnnounceTests(unittest.TestCase):
    def announce(self, tracker: FakeTracker, path: str = "/announce", **kw):
        return A.announce(tracker.url(path), **dict(STATS, timeout=5, **kw))

    def error(self, tracker: FakeTracker, **kw) -> str:
        with self.assertRaises(A.TrackerError) as ctx:
            self.announce(tracker, **kw)
        return str(ctx.exception)

    def test_compact_answer_and_request_parameters(self):
        t = FakeTracker(self, ok_reply(answer(interval=900, peers=compact(("10.1.2.3", 6000)))))
        r = A.announce(t.url("/announce?passkey=s3cret"), **STATS, event="started", key=7,
                       timeout=5)
        self.assertEqual(r.peers, [("10.1.2.3", 6000)])
        path, headers = t.requests[0]
        self.assertTrue(path.startswith("/announce?passkey=s3cret&info_hash="), path)
        q = t.query()
        self.assertEqual(q["info_hash"][0].encode("latin-1"), INFO_HASH)
        self.assertEqual(q["peer_id"][0].encode("latin-1"), PEER_ID)
        self.assertEqual((q["event"], q["compact"], q["left"], q["key"]),
                         (["started"], ["1"], ["3"], ["00000007"]))
        self.assertTrue(headers["User-Agent"].startswith("STA/"))

    def test_dictionary_answer(self):
        t = FakeTracker(self, ok_reply(answer(interval=5, peers=[{"ip": "::1", "port": 9}])))
        self.assertEqual(self.announce(t, compact=False).peers, [("::1", 9)])
        self.assertEqual(t.query()["compact"], ["0"])

    def test_peers6_answer(self):
        t = FakeTracker(self, ok_reply(answer(interval=5, peers=b"",
                                              peers6=compact6(("2001:db8::5", 7)))))
        self.assertEqual(self.announce(t).peers, [("2001:db8::5", 7)])

    def test_failure_reason_names_the_tracker(self):
        t = FakeTracker(self, ok_reply(answer(failure_reason="unregistered torrent")))
        self.assertEqual(self.error(t),
                         f"tracker {t.url()}: failure reason: unregistered torrent")

    def test_passkey_is_not_shown_in_errors(self):
        t = FakeTracker(self, ok_reply(answer(failure_reason="no")))
        with self.assertRaises(A.TrackerError) as ctx:
            A.announce(t.url("/announce?passkey=s3cret"), **STATS, timeout=5)
        self.assertNotIn("s3cret", str(ctx.exception))

    def test_warning_is_returned(self):
        t = FakeTracker(self, ok_reply(answer(interval=5, peers=b"", warning_message="old client")))
        self.assertEqual(self.announce(t).warning, "old client")

    def test_tracker_id_kept_when_absent_later(self):
        t = FakeTracker(self, ok_reply(answer(interval=10, peers=b"", tracker_id="abc")),
                        ok_reply(answer(interval=10, peers=b"")))
        tl = T.TrackerList([[t.url()]])
        for now in (0.0, 10.0, 20.0):
            job, = tl.due(now)
            response = A.announce(job.url, **STATS, event=job.event, tracker_id=job.tracker_id,
                                  timeout=5)
            tl.succeeded(job, response, now)
        self.assertNotIn("trackerid", t.query(0))
        self.assertEqual(t.query(1)["trackerid"], ["abc"])
        self.assertEqual(t.query(2)["trackerid"], ["abc"])
        self.assertEqual(t.query(0)["event"], ["started"])
        self.assertNotIn("event", t.query(1))

    def test_http_404(self):
        t = FakeTracker(self, (404, {}, b"no such page"))
        self.assertEqual(self.error(t), f"tracker {t.url()}: HTTP 404 Not Found")

    def test_http_error_with_failure_reason_shows_both(self):
        t = FakeTracker(self, (400, {}, answer(failure_reason="bad info_hash")))
        self.assertIn("HTTP 400 Bad Request: failure reason: bad info_hash", self.error(t))

    def test_garbage_answer(self):
        t = FakeTracker(self, ok_reply(b"Hello, world"))
        message = self.error(t)
        self.assertTrue(message.startswith(f"tracker {t.url()}: answer is not bencoded"), message)

    def test_oversized_answer_with_length_is_refused_unread(self):
        t = FakeTracker(self, ok_reply(b"x" * (A.MAX_RESPONSE_SIZE + 1)))
        self.assertIn("exceeds", self.error(t))

    def test_oversized_answer_without_length_is_cut_off(self):
        def stream(handler):
            handler.send_response(200)
            handler.send_header("Connection", "close")
            handler.end_headers()
            for _ in range(A.MAX_RESPONSE_SIZE // 65536 + 2):
                handler.wfile.write(b"x" * 65536)
        t = FakeTracker(self, stream)
        self.assertIn("exceeds the", self.error(t))

    def test_chunked_answer_is_read(self):
        body = answer(interval=5, peers=compact(("1.2.3.4", 5)))

        def chunked(handler):
            handler.protocol_version = "HTTP/1.1"
            handler.send_response(200)
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for part in (body[:7], body[7:]):
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            handler.wfile.write(b"0\r\n\r\n")
        t = FakeTracker(self, chunked)
        self.assertEqual(self.announce(t).peers, [("1.2.3.4", 5)])

    def test_answer_shorter_than_its_length_is_refused(self):
        def short(handler):
            handler.send_response(200)
            handler.send_header("Content-Length", "500")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(answer(interval=5))
        t = FakeTracker(self, short)
        self.assertIn("answer cut short", self.error(t))

    def test_redirect_is_followed(self):
        def redirect(handler):
            handler.send_response(302)
            handler.send_header("Location", handler.path.replace("/old", "/new", 1))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        t = FakeTracker(self, redirect, ok_reply(answer(interval=5, peers=compact(("1.2.3.4", 5)))))
        self.assertEqual(self.announce(t, path="/old").peers, [("1.2.3.4", 5)])
        self.assertTrue(t.requests[1][0].startswith("/new?info_hash="))
        self.assertEqual(t.query(1)["info_hash"][0].encode("latin-1"), INFO_HASH)

    def test_absolute_redirect_to_another_server(self):
        target = FakeTracker(self, ok_reply(answer(interval=5, peers=b"")))
        t = FakeTracker(self, (307, {"Location": target.url("/announce?moved=1")}, b""))
        self.assertEqual(self.announce(t).interval, 5)
        self.assertEqual(target.query()["moved"], ["1"])

    def test_redirect_loop_ends(self):
        t = FakeTracker(self, (302, {"Location": "/announce"}, b""))
        self.assertIn(f"more than {A.MAX_REDIRECTS} redirects", self.error(t))
        self.assertEqual(len(t.requests), A.MAX_REDIRECTS + 1)

    def test_timeout(self):
        t = FakeTracker(self, lambda handler: t.release.wait(10))
        with self.assertRaises(A.TrackerError) as ctx:
            A.announce(t.url(), **STATS, timeout=0.3)
        self.assertIn("timed out after 0.3 s", str(ctx.exception))

    def test_connection_refused(self):
        url = f"http://127.0.0.1:{free_port()}/announce"
        with self.assertRaises(A.TrackerError) as ctx:
            A.announce(url, **STATS, timeout=5)
        self.assertEqual(str(ctx.exception), f"tracker {url}: connection refused")

    def test_url_with_characters_http_refuses_is_an_error(self):
        with self.assertRaises(A.TrackerError) as ctx:
            A.announce("http://127.0.0.1:1/an nounce", **STATS, timeout=1)
        self.assertIn("bad URL", str(ctx.exception))

    def test_udp_tracker_is_refused_clearly(self):
        with self.assertRaises(A.TrackerError) as ctx:
            A.announce("udp://127.0.0.1:1/announce", **STATS, timeout=1)
        self.assertIn("only http and https", str(ctx.exception))

    def test_tier_fails_over_to_a_working_tracker(self):
        dead = f"http://127.0.0.1:{free_port()}/announce"
        t = FakeTracker(self, ok_reply(answer(interval=5, peers=compact(("1.1.1.1", 1)))))
        tl = T.TrackerList([[dead, t.url()]], rng=random.Random(1))
        peers = None
        for _ in range(2):
            job, = tl.due(0.0)
            try:
                response = A.announce(job.url, **STATS, event=job.event, timeout=5)
            except A.TrackerError as exc:
                with self.assertLogs("sta.announce", "WARNING"):
                    tl.failed(job, exc, 0.0)
            else:
                tl.succeeded(job, response, 0.0)
                peers = response.peers
                break
        self.assertEqual(peers, [("1.1.1.1", 1)])
        self.assertEqual(tl.tiers[0][0], t.url())

    def test_scrape(self):
        body = encode({"files": {INFO_HASH: {"complete": 1, "incomplete": 2, "downloaded": 3}}})
        t = FakeTracker(self, ok_reply(body))
        url = A.scrape_url(t.url("/announce?passkey=k"))
        result = A.scrape(url, [INFO_HASH, b"\x01" * 20], timeout=5)
        self.assertEqual(result, {INFO_HASH: (1, 2, 3)})
        path = t.requests[0][0]
        self.assertTrue(path.startswith("/scrape?passkey=k&info_hash="), path)
        self.assertEqual([h.encode("latin-1") for h in t.query()["info_hash"]],
                         [INFO_HASH, b"\x01" * 20])

    def test_scrape_splits_long_lists(self):
        t = FakeTracker(self, ok_reply(encode({"files": {}})))
        with mock.patch.object(A, "MAX_SCRAPE_HASHES", 2):
            A.scrape(t.url("/scrape"), [bytes([i]) * 20 for i in range(5)], timeout=5)
        self.assertEqual([len(t.query(i)["info_hash"]) for i in range(3)], [2, 2, 1])


# ---------------------------------------------------------------------------------------------
# HTTPS

def make_test_certificate(directory: str) -> Optional[Tuple[str, str]]:
    """A throwaway self-signed certificate for 127.0.0.1 (IP SAN only), as (certfile, keyfile),
    or None when it cannot be made here.

    Hook: the TLS work brings a pure-Python certificate maker (sta/tls.py); once it exists, call
    it here first so these tests run on machines without the openssl command. Key material is
    never stored in the repository.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    return (cert, key) if result.returncode == 0 else None


class HttpsAnnounceTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(tmp.cleanup)
        made = make_test_certificate(tmp.name)
        if made is None:
            raise unittest.SkipTest("no openssl command to make a test certificate")
        cls.cert, cls.key = made
        with open(cls.cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        cls.fingerprint = hashlib.sha256(der).hexdigest()

    def setUp(self):
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(self.cert, self.key)
        self.tracker = FakeTracker(
            self, ok_reply(answer(interval=5, peers=compact(("10.0.0.9", 9)))), tls=server_context)

    def announce(self, ssl_context, host="127.0.0.1"):
        return A.announce(self.tracker.url(host=host), **STATS, timeout=5, ssl_context=ssl_context)

    def test_cafile_trusts_the_self_signed_certificate(self):
        r = self.announce(A.make_ssl_context(cafile=self.cert))
        self.assertEqual(r.peers, [("10.0.0.9", 9)])

    def test_default_context_refuses_an_unknown_certificate(self):
        with self.assertRaises(A.TrackerError) as ctx:
            self.announce(None)
        self.assertIn("certificate not trusted", str(ctx.exception))

    def test_cafile_still_checks_the_host_name(self):
        with self.assertRaises(A.TrackerError) as ctx:
            self.announce(A.make_ssl_context(cafile=self.cert), host="localhost")
        self.assertIn("certificate not trusted", str(ctx.exception))

    def test_matching_pin_is_accepted(self):
        pin = ":".join(self.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
        r = self.announce(A.make_ssl_context(pin_sha256=pin))
        self.assertEqual(r.peers, [("10.0.0.9", 9)])

    def test_wrong_pin_is_refused_before_the_request(self):
        wrong = "%064x" % (int(self.fingerprint, 16) ^ 1)
        with self.assertRaises(A.TrackerError) as ctx:
            self.announce(A.make_ssl_context(pin_sha256=wrong))
        self.assertIn("does not match the pinned", str(ctx.exception))
        self.assertEqual(self.tracker.requests, [])

    def test_malformed_pin_is_rejected(self):
        with self.assertRaises(A.TrackerError):
            A.make_ssl_context(pin_sha256="abcd")

    def test_pin_and_cafile_together_are_rejected(self):
        with self.assertRaises(A.TrackerError):
            A.make_ssl_context(cafile=self.cert, pin_sha256=self.fingerprint)

    def test_redirect_to_plain_http_is_refused(self):
        plain = FakeTracker(self, ok_reply(answer(interval=5)))
        self.tracker.replies = [(302, {"Location": plain.url()}, b"")]
        with self.assertRaises(A.TrackerError) as ctx:
            self.announce(A.make_ssl_context(cafile=self.cert))
        self.assertIn("refusing a redirect from https to plain http", str(ctx.exception))
        self.assertEqual(plain.requests, [])


if __name__ == "__main__":
    unittest.main()
