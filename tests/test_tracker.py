"""Tests of the tracker server: a real server on 127.0.0.1 port 0, spoken to over HTTP."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
from typing import Any, Dict, List, Optional, Tuple
from unittest import mock
from urllib.parse import quote_from_bytes, unquote_to_bytes

from sta import bencode, maketorrent, metainfo
from sta import tracker as tracker_mod
from sta import tracker_db, tracker_http
from sta.tracker import MAX_NUMWANT, Tracker, TrackerError, TrackerServer

INFO_HASH = bytes(range(1, 21))
OTHER_HASH = bytes(range(101, 121))
INTERVAL = 60
# Socket timeout for every client call: far above any answer time, so a hung server fails the
# test instead of hanging the run.
CLIENT_TIMEOUT = 10.0


def peer_id(n: int) -> bytes:
    return b"-ST0001-%012d" % n


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def announce_query(pid: bytes, port: int, left: int = 100, info_hash: bytes = INFO_HASH,
                   **extra: Any) -> str:
    params = [("info_hash", quote_from_bytes(info_hash)), ("peer_id", quote_from_bytes(pid)),
              ("port", str(port)), ("uploaded", "0"), ("downloaded", "0"), ("left", str(left))]
    for name, value in extra.items():
        value = quote_from_bytes(value) if isinstance(value, bytes) else str(value)
        params.append((name, value))
    return "&".join(f"{k}={v}" for k, v in params)


class TrackerTestCase(unittest.TestCase):
    """Starts a tracker per test; everything it opens is closed by cleanups."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.db = os.path.join(self.dir, "tracker.db")
        self.clock = Clock()
        self.server = self.start_server()

    def start_server(self, **kwargs: Any) -> TrackerServer:
        kwargs.setdefault("interval", INTERVAL)
        kwargs.setdefault("clock", self.clock)
        server = TrackerServer("127.0.0.1", 0, self.db, **kwargs).start()
        self.addCleanup(server.shutdown)
        return server

    # --- client helpers ------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None,
                server: Optional[TrackerServer] = None) -> Tuple[int, Dict[str, str], bytes]:
        server = server or self.server
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=CLIENT_TIMEOUT)
        self.addCleanup(conn.close)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def get(self, path: str, **kwargs: Any) -> Tuple[int, Dict[str, str], bytes]:
        return self.request("GET", path, **kwargs)

    def announce_raw(self, pid: bytes, port: int, left: int = 100, **extra: Any) -> bytes:
        server = extra.pop("server", None)
        status, headers, body = self.get("/announce?" + announce_query(pid, port, left, **extra),
                                         server=server)
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/plain")
        return body

    def announce(self, pid: bytes, port: int, left: int = 100, **extra: Any) -> Dict[bytes, Any]:
        answer = bencode.decode(self.announce_raw(pid, port, left, **extra))
        self.assertNotIn(b"failure reason", answer)
        return answer

    def announce_direct(self, pid: bytes, port: int, left: int = 100, client_ip: str = "127.0.0.1",
                        **extra: Any) -> Dict[bytes, Any]:
        """Announce through the request logic without a socket (for other client addresses)."""
        query = announce_query(pid, port, left, **extra).encode()
        return bencode.decode(self.server.app.announce(query, client_ip))

    def failure_of(self, query: str) -> str:
        status, _, body = self.get("/announce?" + query)
        self.assertEqual(status, 200)
        answer = bencode.decode(body)
        self.assertEqual(list(answer), [b"failure reason"], "a failure carries nothing else")
        return answer[b"failure reason"].decode()

    def raw(self, data: bytes) -> bytes:
        """Send raw bytes, return everything the server answers until it closes."""
        with socket.create_connection(("127.0.0.1", self.server.port),
                                      timeout=CLIENT_TIMEOUT) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server answered and closed before reading it all
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    def assert_still_serving(self) -> None:
        answer = self.announce(b"-ST0001-still-alive!", 9999)
        self.assertIn(b"interval", answer)

    def scrape(self, *hashes: bytes) -> Dict[bytes, Any]:
        query = "&".join("info_hash=" + quote_from_bytes(h) for h in hashes)
        status, _, body = self.get("/scrape?" + query)
        self.assertEqual(status, 200)
        return bencode.decode(body)

    def make_torrent(self, name: str = "file.bin", size: int = 40000) -> bytes:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(random.Random(size).getrandbits(size * 8).to_bytes(size, "little"))
        return maketorrent.make_torrent([path], ["http://127.0.0.1:4000/announce"],
                                     piece_length=16384, workers=1)


class AnnounceTests(TrackerTestCase):
    def test_compact_answer_is_exact_bencoding_with_six_byte_peers(self):
        self.announce(peer_id(1), 6881, left=0)
        body = self.announce_raw(peer_id(2), 6882, left=500)
        tid = self.server.store.tracker_id
        expected = (b"d8:completei1e10:downloadedi0e10:incompletei1e8:intervali60e"
                    b"12:min intervali30e5:peers6:\x7f\x00\x00\x01\x1a\xe1"
                    b"10:tracker id%d:%se" % (len(tid), tid))
        self.assertEqual(body, expected)

    def test_compact_is_the_default(self):
        self.announce(peer_id(1), 6881)
        answer = self.announce(peer_id(2), 6882)
        self.assertEqual(answer[b"peers"], b"\x7f\x00\x00\x01\x1a\xe1")

    def test_dictionary_model_lists_peer_id_ip_and_port(self):
        self.announce(peer_id(1), 6881)
        body = self.announce_raw(peer_id(2), 6882, compact=0)
        self.assertIn(b"5:peersld2:ip9:127.0.0.17:peer id20:" + peer_id(1) + b"4:porti6881eee",
                      body)
        answer = bencode.decode(body)
        self.assertEqual(answer[b"peers"],
                         [{b"ip": b"127.0.0.1", b"peer id": peer_id(1), b"port": 6881}])

    def test_no_peer_id_leaves_peer_id_out_of_dictionary_model(self):
        self.announce(peer_id(1), 6881)
        answer = self.announce(peer_id(2), 6882, compact=0, no_peer_id=1)
        self.assertEqual(answer[b"peers"], [{b"ip": b"127.0.0.1", b"port": 6881}])

    def test_peer_never_gets_itself_back(self):
        for n in range(5):
            self.announce(peer_id(n), 7000 + n)
        for n in range(5):
            answer = self.announce(peer_id(n), 7000 + n, compact=0)
            ids = [p[b"peer id"] for p in answer[b"peers"]]
            self.assertNotIn(peer_id(n), ids)
            self.assertEqual(len(ids), 4)

    def test_lone_peer_gets_empty_peer_list(self):
        answer = self.announce(peer_id(1), 6881)
        self.assertEqual(answer[b"peers"], b"")

    def populate(self, count: int, left: int = 100) -> None:
        for n in range(count):
            self.announce_direct(peer_id(1000 + n), 10000 + n, left=left)

    def test_numwant_defaults_to_fifty(self):
        self.populate(80)
        answer = self.announce(peer_id(1), 6881)
        self.assertEqual(len(answer[b"peers"]), 50 * 6)

    def test_numwant_is_capped(self):
        self.populate(MAX_NUMWANT + 50)
        answer = self.announce(peer_id(1), 6881, numwant=100000)
        self.assertEqual(len(answer[b"peers"]), MAX_NUMWANT * 6)

    def test_numwant_limits_the_answer(self):
        self.populate(20)
        answer = self.announce(peer_id(1), 6881, numwant=3)
        self.assertEqual(len(answer[b"peers"]), 18)

    def test_negative_numwant_means_default(self):
        self.populate(60)
        answer = self.announce(peer_id(1), 6881, numwant=-1)
        self.assertEqual(len(answer[b"peers"]), 50 * 6)

    def test_sampled_peers_are_distinct_and_random(self):
        self.populate(500)
        seen = set()
        for _ in range(5):
            peers = self.announce(peer_id(1), 6881, numwant=50)[b"peers"]
            chunks = [peers[i:i + 6] for i in range(0, len(peers), 6)]
            self.assertEqual(len(set(chunks)), 50)
            seen.update(chunks)
        self.assertGreater(len(seen), 50)

    def test_seeder_gets_only_leechers(self):
        for n in range(3):
            self.announce(peer_id(n), 7000 + n, left=0)
        for n in range(3, 5):
            self.announce(peer_id(n), 7000 + n, left=10)
        answer = self.announce(peer_id(9), 7009, left=0, compact=0)
        self.assertEqual(sorted(p[b"port"] for p in answer[b"peers"]), [7003, 7004])
        self.assertEqual((answer[b"complete"], answer[b"incomplete"]), (4, 2))

    def test_leecher_gets_seeders_and_leechers(self):
        self.announce(peer_id(1), 7001, left=0)
        self.announce(peer_id(2), 7002, left=10)
        answer = self.announce(peer_id(3), 7003, left=10, compact=0)
        self.assertEqual(sorted(p[b"port"] for p in answer[b"peers"]), [7001, 7002])

    def test_stopped_removes_the_peer(self):
        self.announce(peer_id(1), 7001)
        self.announce(peer_id(2), 7002, event="stopped")
        answer = self.announce(peer_id(1), 7001, event="stopped")
        self.assertEqual((answer[b"complete"], answer[b"incomplete"]), (0, 0))
        self.assertEqual(answer[b"peers"], b"")
        self.assertEqual(self.announce(peer_id(3), 7003)[b"peers"], b"")

    def test_stopped_for_unknown_torrent_is_answered(self):
        answer = self.announce(peer_id(1), 7001, info_hash=OTHER_HASH, event="stopped")
        self.assertEqual(answer[b"complete"], 0)

    def test_completed_counts_a_download_and_makes_a_seeder(self):
        self.announce(peer_id(1), 7001, left=100, event="started")
        answer = self.announce(peer_id(1), 7001, left=0, event="completed")
        self.assertEqual(answer[b"downloaded"], 1)
        self.assertEqual((answer[b"complete"], answer[b"incomplete"]), (1, 0))
        files = self.scrape(INFO_HASH)[b"files"]
        self.assertEqual(files[INFO_HASH][b"downloaded"], 1)

    def test_leecher_that_finishes_moves_to_seeders(self):
        self.announce(peer_id(1), 7001, left=100)
        answer = self.announce(peer_id(1), 7001, left=0)
        self.assertEqual((answer[b"complete"], answer[b"incomplete"]), (1, 0))
        answer = self.announce(peer_id(1), 7001, left=5)
        self.assertEqual((answer[b"complete"], answer[b"incomplete"]), (0, 1))

    def test_answer_carries_interval_min_interval_and_tracker_id(self):
        answer = self.announce(peer_id(1), 7001)
        self.assertEqual(answer[b"interval"], INTERVAL)
        self.assertEqual(answer[b"min interval"], INTERVAL // 2)
        self.assertEqual(answer[b"tracker id"], self.server.store.tracker_id)

    def test_unknown_event_is_served_with_warning_message(self):
        answer = self.announce(peer_id(1), 7001, event="bogus")
        self.assertIn(b"unknown event", answer[b"warning message"])
        self.assertEqual(answer[b"incomplete"], 1)

    def test_paused_event_is_a_regular_announce(self):
        answer = self.announce(peer_id(1), 7001, event="paused")
        self.assertNotIn(b"warning message", answer)
        self.assertEqual(answer[b"incomplete"], 1)

    def test_ipv6_peers_are_listed_in_peers6(self):
        self.announce_direct(peer_id(1), 7001, client_ip="2001:db8::1")
        answer = self.announce(peer_id(2), 7002)
        self.assertEqual(answer[b"peers"], b"")
        self.assertEqual(answer[b"peers6"],
                         socket.inet_pton(socket.AF_INET6, "2001:db8::1") + b"\x1b\x59")

    def test_ipv6_peer_in_dictionary_model_is_text(self):
        self.announce_direct(peer_id(1), 7001, client_ip="2001:db8::1")
        answer = self.announce(peer_id(2), 7002, compact=0)
        self.assertEqual(answer[b"peers"][0][b"ip"], b"2001:db8::1")

    def test_ipv4_mapped_client_address_is_ipv4(self):
        self.assertEqual(tracker_http.normalise_ip("::ffff:192.168.1.9"), "192.168.1.9")
        self.assertEqual(tracker_http.normalise_ip("fe80::1%eth0"), "fe80::1")
        self.assertEqual(tracker_http.normalise_ip("10.1.2.3"), "10.1.2.3")

    def test_ip_parameter_is_accepted_from_local_network(self):
        self.announce(peer_id(1), 7001, ip="192.168.88.114")
        answer = self.announce(peer_id(2), 7002)
        self.assertEqual(answer[b"peers"], bytes([192, 168, 88, 114]) + b"\x1b\x59")

    def test_ip_parameter_from_public_address_is_ignored_with_warning(self):
        answer = self.announce_direct(peer_id(1), 7001, client_ip="8.8.8.8", ip="10.0.0.5")
        self.assertIn(b"ip parameter ignored", answer[b"warning message"])
        answer = self.announce(peer_id(2), 7002)
        self.assertEqual(answer[b"peers"], bytes([8, 8, 8, 8]) + b"\x1b\x59")

    def test_ip_parameter_that_is_a_name_is_ignored_with_warning(self):
        answer = self.announce(peer_id(1), 7001, ip="example.org")
        self.assertIn(b"not an IP address", answer[b"warning message"])

    def test_key_lets_a_peer_change_address(self):
        self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.1", key="abcd")
        answer = self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.2", key="abcd")
        self.assertNotIn(b"failure reason", answer)
        answer = self.announce(peer_id(2), 7002)
        self.assertEqual(answer[b"peers"], bytes([10, 0, 0, 2]) + b"\x1b\x59")

    def test_same_peer_id_from_other_address_without_key_is_refused(self):
        self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.1", key="abcd")
        answer = self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.2", key="zzzz")
        self.assertEqual(list(answer), [b"failure reason"])
        answer = self.announce(peer_id(2), 7002)
        self.assertEqual(answer[b"peers"], bytes([10, 0, 0, 1]) + b"\x1b\x59")

    def test_separate_torrents_do_not_share_peers(self):
        self.announce(peer_id(1), 7001, info_hash=OTHER_HASH)
        self.assertEqual(self.announce(peer_id(2), 7002)[b"peers"], b"")

    def test_keep_alive_serves_many_announces_on_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=CLIENT_TIMEOUT)
        self.addCleanup(conn.close)
        for n in range(20):
            conn.request("GET", "/announce?" + announce_query(peer_id(n), 7000 + n))
            response = conn.getresponse()
            self.assertEqual(response.status, 200)
            self.assertIsNone(response.getheader("Connection"))
            answer = bencode.decode(response.read())
            self.assertEqual(answer[b"incomplete"], n + 1)

    def test_http10_request_gets_connection_close(self):
        reply = self.raw(b"GET /announce?" + announce_query(peer_id(1), 7001).encode()
                         + b" HTTP/1.0\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "))
        self.assertIn(b"Connection: close", head)
        self.assertIn(b"8:intervali60e", body)

    def test_head_request_has_length_and_no_body(self):
        reply = self.raw(b"HEAD /stats HTTP/1.1\r\nConnection: close\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: ", head)
        self.assertEqual(body, b"")


class QueryParsingTests(unittest.TestCase):
    def test_values_are_raw_bytes_never_text(self):
        pairs = tracker_mod.parse_query(b"info_hash=%ff%fe%00abc&peer_id=%80")
        self.assertEqual(pairs, [(b"info_hash", b"\xff\xfe\x00abc"), (b"peer_id", b"\x80")])

    def test_fast_unquote_matches_standard_library(self):
        rng = random.Random(7)
        for _ in range(200):
            raw = bytes(rng.getrandbits(8) for _ in range(20))
            full = "".join("%%%02X" % b for b in raw).encode()
            mixed = quote_from_bytes(raw).encode()
            self.assertEqual(tracker_mod.unquote(full), raw)
            self.assertEqual(tracker_mod.unquote(mixed), unquote_to_bytes(mixed))

    def test_invalid_escape_is_kept_literally(self):
        self.assertEqual(tracker_mod.unquote(b"%zz%41"), b"%zzA")
        self.assertEqual(tracker_mod.unquote(b"%4g%4g"), b"%4g%4g")

    def test_query_dict_unquotes_names_and_last_value_wins(self):
        self.assertEqual(tracker_mod.query_dict(b"p%6Frt=1&port=2&x"),
                         {b"port": b"2", b"x": b""})

    def test_spread_picks_distinct_peers_for_every_size(self):
        for size in range(1, 120):
            group = list(range(size))
            for count in (1, 2, 7, 50, size - 1, size, size + 3):
                picked = tracker_db._spread(group, count)
                self.assertEqual(len(picked), max(0, min(count, size)))
                self.assertEqual(len(set(picked)), len(picked))


class BadInputTests(TrackerTestCase):
    def test_missing_info_hash_gets_failure_reason(self):
        self.assertIn("info_hash", self.failure_of(f"peer_id=-ST0001-000000000001&port=1&left=0"))
        self.assert_still_serving()

    def test_short_info_hash_gets_failure_reason(self):
        query = announce_query(peer_id(1), 7001, info_hash=b"x" * 19)
        self.assertIn("info_hash must be 20 bytes", self.failure_of(query))
        self.assert_still_serving()

    def test_long_peer_id_gets_failure_reason(self):
        self.assertIn("peer_id must be 20 bytes", self.failure_of(announce_query(b"p" * 21, 7001)))
        self.assert_still_serving()

    def test_port_zero_gets_failure_reason(self):
        self.assertIn("port", self.failure_of(announce_query(peer_id(1), 0)))
        self.assert_still_serving()

    def test_port_above_65535_gets_failure_reason(self):
        self.assertIn("port", self.failure_of(announce_query(peer_id(1), 65536)))
        self.assert_still_serving()

    def test_port_that_is_not_a_number_gets_failure_reason(self):
        query = announce_query(peer_id(1), 1).replace("port=1", "port=http")
        self.assertIn("port", self.failure_of(query))
        self.assert_still_serving()

    def test_huge_uploaded_gets_failure_reason(self):
        query = announce_query(peer_id(1), 7001, uploaded=10 ** 30)
        self.assertIn("uploaded", self.failure_of(query.replace("uploaded=0&", "")))
        self.assert_still_serving()

    def test_counter_just_over_64_bits_gets_failure_reason(self):
        query = announce_query(peer_id(1), 7001).replace("left=100", "left=%d" % 2 ** 63)
        self.assertIn("left", self.failure_of(query))
        self.assert_still_serving()

    def test_negative_left_gets_failure_reason(self):
        self.assertIn("left", self.failure_of(announce_query(peer_id(1), 7001, left=-5)))
        self.assert_still_serving()

    def test_missing_left_gets_failure_reason(self):
        query = announce_query(peer_id(1), 7001).replace("&left=100", "")
        self.assertIn("missing left", self.failure_of(query))
        self.assert_still_serving()

    def test_overlong_key_gets_failure_reason(self):
        self.assertIn("key", self.failure_of(announce_query(peer_id(1), 7001, key="k" * 65)))
        self.assert_still_serving()

    def test_malformed_query_string_gets_failure_reason(self):
        self.assertIn("info_hash", self.failure_of("%%%&&==&info_hash&=%zz&&peer_id=%"))
        self.assert_still_serving()

    def test_announce_without_query_gets_failure_reason(self):
        status, _, body = self.get("/announce")
        self.assertEqual(status, 200)
        self.assertIn(b"failure reason", bencode.decode(body))
        self.assert_still_serving()

    def test_unknown_path_is_404(self):
        status, _, _ = self.get("/wp-admin/../../etc/passwd")
        self.assertEqual(status, 404)
        self.assert_still_serving()

    def test_oversized_url_is_414(self):
        reply = self.raw(b"GET /announce?" + b"a" * (tracker_http.MAX_REQUEST_LINE + 10)
                         + b" HTTP/1.1\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 414 "), reply[:80])
        self.assert_still_serving()

    def test_oversized_headers_are_431(self):
        headers = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"v" * 1000) for n in range(20))
        reply = self.raw(b"GET /stats HTTP/1.1\r\n" + headers + b"\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 431 "), reply[:80])
        self.assert_still_serving()

    def test_too_many_headers_are_431(self):
        headers = b"".join(b"X-%d: 1\r\n" % n for n in range(tracker_http.MAX_HEADER_COUNT + 1))
        reply = self.raw(b"GET /stats HTTP/1.1\r\n" + headers + b"\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 431 "), reply[:80])
        self.assert_still_serving()

    def test_oversized_body_is_413(self):
        reply = self.raw(b"POST /torrents HTTP/1.1\r\nContent-Length: %d\r\n\r\nd"
                         % (tracker_http.MAX_TORRENT_BYTES + 1))
        self.assertTrue(reply.startswith(b"HTTP/1.1 413 "), reply[:80])
        self.assert_still_serving()

    def test_chunked_body_is_411(self):
        reply = self.raw(b"POST /torrents HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"1\r\nd\r\n0\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 411 "), reply[:80])
        self.assert_still_serving()

    def test_bad_content_length_is_400(self):
        reply = self.raw(b"POST /torrents HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply[:80])
        self.assert_still_serving()

    def test_malformed_request_line_is_400(self):
        reply = self.raw(b"HELLO\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply[:80])
        self.assert_still_serving()

    def test_non_http_bytes_are_400(self):
        reply = self.raw(b"\x13BitTorrent protocol" + bytes(48) + b"\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply[:80])
        self.assert_still_serving()

    def test_header_without_colon_is_400(self):
        reply = self.raw(b"GET /stats HTTP/1.1\r\nnot a header\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply[:80])
        self.assert_still_serving()

    def test_unsupported_method_is_405(self):
        status, _, _ = self.request("DELETE", "/torrents")
        self.assertEqual(status, 405)
        self.assert_still_serving()

    def test_client_vanishing_mid_request_leaves_server_serving(self):
        self.assertEqual(self.raw(b"GET /announce?info_hash=abc HTTP/1.1\r\nHost: x"), b"")
        self.assert_still_serving()

    def test_internal_error_is_500_and_server_keeps_serving(self):
        with mock.patch.object(Tracker, "handle", side_effect=RuntimeError("boom")), \
                self.assertLogs("sta.tracker_http", "ERROR"):
            status, _, body = self.get("/stats")
        self.assertEqual((status, body), (500, b"internal error\n"))
        self.assert_still_serving()

    def test_connections_over_the_limit_get_503(self):
        with mock.patch.object(tracker_http, "MAX_CONNECTIONS", 2):
            idle = []
            for _ in range(2):
                sock = socket.create_connection(("127.0.0.1", self.server.port),
                                                timeout=CLIENT_TIMEOUT)
                self.addCleanup(sock.close)
                idle.append(sock)
            deadline = time.monotonic() + CLIENT_TIMEOUT
            while len(self.server.httpd._connections) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            # The answer comes at once, before any request: read it without sending.
            with socket.create_connection(("127.0.0.1", self.server.port),
                                          timeout=CLIENT_TIMEOUT) as sock:
                reply = b""
                try:
                    while len(reply) < 12:
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        reply += chunk
                except ConnectionResetError:
                    pass
            self.assertTrue(reply.startswith(b"HTTP/1.1 503 "), reply)
            for sock in idle:
                sock.close()
            while self.server.httpd._connections and time.monotonic() < deadline:
                time.sleep(0.01)
        self.assert_still_serving()

    def test_too_many_scrape_hashes_get_failure_reason(self):
        hashes = [bytes([n % 256]) * 20 for n in range(tracker_mod.MAX_SCRAPE_HASHES + 1)]
        self.assertIn(b"failure reason", self.scrape(*hashes))
        self.assert_still_serving()

    def test_scrape_with_short_info_hash_gets_failure_reason(self):
        self.assertIn(b"failure reason", self.scrape(b"short"))
        self.assert_still_serving()


class ScrapeTests(TrackerTestCase):
    def test_scrape_counts_seeders_leechers_and_downloads(self):
        self.announce(peer_id(1), 7001, left=0)
        self.announce(peer_id(2), 7002, left=10)
        self.announce(peer_id(3), 7003, left=0, event="completed")
        status, headers, body = self.get("/scrape?info_hash=" + quote_from_bytes(INFO_HASH))
        self.assertEqual(headers["content-type"], "text/plain")
        self.assertEqual(body, b"d5:filesd20:" + INFO_HASH
                         + b"d8:completei2e10:downloadedi1e10:incompletei1eeee")

    def test_scrape_of_several_hashes(self):
        self.announce(peer_id(1), 7001)
        self.announce(peer_id(2), 7002, info_hash=OTHER_HASH, left=0)
        files = self.scrape(INFO_HASH, OTHER_HASH)[b"files"]
        self.assertEqual(files[INFO_HASH][b"incomplete"], 1)
        self.assertEqual(files[OTHER_HASH][b"complete"], 1)

    def test_scrape_without_info_hash_lists_every_torrent(self):
        self.announce(peer_id(1), 7001)
        self.announce(peer_id(2), 7002, info_hash=OTHER_HASH)
        self.assertEqual(set(self.scrape()[b"files"]), {INFO_HASH, OTHER_HASH})

    def test_scrape_leaves_out_unknown_torrents(self):
        self.assertEqual(self.scrape(OTHER_HASH), {b"files": {}})


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


class PersistenceTests(TrackerTestCase):
    def test_restart_keeps_torrents_counters_and_live_peers(self):
        self.announce(peer_id(1), 7001, left=0, event="completed")
        self.server.shutdown()
        server = self.start_server()
        answer = self.announce(peer_id(2), 7002, server=server)
        self.assertEqual(answer[b"peers"], b"\x7f\x00\x00\x01\x1b\x59")
        self.assertEqual((answer[b"complete"], answer[b"downloaded"]), (1, 1))

    def test_restart_forgets_stopped_peers(self):
        self.announce(peer_id(1), 7001)
        self.announce(peer_id(1), 7001, event="stopped")
        self.server.shutdown()
        server = self.start_server()
        self.assertEqual(self.announce(peer_id(2), 7002, server=server)[b"peers"], b"")

    def test_writer_flushes_without_shutdown(self):
        self.announce(peer_id(1), 7001)
        self.server.store.flush()
        store = tracker_db.TrackerStore(self.db, INTERVAL, self.clock)
        self.addCleanup(store.close)
        self.assertIn(peer_id(1), store.swarms[INFO_HASH].peers)

    def test_restart_drops_peers_that_timed_out_while_down(self):
        self.announce(peer_id(1), 7001)
        self.server.shutdown()
        self.clock.now += tracker_db.PEER_TIMEOUT_FACTOR * INTERVAL + 1
        server = self.start_server()
        self.assertEqual(self.announce(peer_id(2), 7002, server=server)[b"peers"], b"")

    def test_sweep_removes_silent_peers(self):
        self.announce(peer_id(1), 7001)
        self.clock.now += INTERVAL
        self.announce(peer_id(2), 7002)
        self.clock.now += tracker_db.PEER_TIMEOUT_FACTOR * INTERVAL - INTERVAL + 1
        self.assertEqual(self.server.store.sweep(), 1)
        answer = self.announce(peer_id(3), 7003)
        self.assertEqual(answer[b"peers"], b"\x7f\x00\x00\x01\x1b\x5a")

    def test_sweep_keeps_peers_that_announce_in_time(self):
        self.announce(peer_id(1), 7001)
        self.clock.now += INTERVAL
        self.assertEqual(self.server.store.sweep(), 0)

    def test_unopenable_database_is_a_tracker_error(self):
        with self.assertRaises(TrackerError):
            TrackerServer("127.0.0.1", 0, os.path.join(self.dir, "no", "such", "dir.db"))


class ServerTests(TrackerTestCase):
    def test_urls_for_all_addresses_list_loopback_and_lan(self):
        with mock.patch.object(tracker_mod, "lan_address", return_value="192.168.88.114"):
            self.server.host = "0.0.0.0"
            port = self.server.port
            self.assertEqual(self.server.urls,
                             [f"http://127.0.0.1:{port}", f"http://192.168.88.114:{port}"])
            banner = self.server.banner()
        self.assertIn("* Running on all addresses (0.0.0.0)", banner)
        self.assertIn(f"* Running on http://192.168.88.114:{port}", banner)

    def test_lan_address_is_an_ipv4_address_or_none(self):
        address = tracker_mod.lan_address()
        if address is not None:
            socket.inet_aton(address)
            self.assertFalse(address.startswith("127."))

    def test_port_in_use_is_a_tracker_error(self):
        with self.assertRaises(TrackerError):
            TrackerServer("127.0.0.1", self.server.port, os.path.join(self.dir, "other.db"))

    def test_run_prints_urls_and_stops_cleanly_on_ctrl_c(self):
        lines: List[str] = []
        args = argparse.Namespace(host="127.0.0.1", port=0, db=os.path.join(self.dir, "r.db"),
                                  interval=60, certfile=None, keyfile=None, tls=False)
        with mock.patch.object(TrackerServer, "serve_forever", side_effect=KeyboardInterrupt):
            self.assertEqual(tracker_mod.run(args, lines.append), 0)
        self.assertTrue(lines[0].startswith("* Running on http://127.0.0.1:"), lines)
        self.assertEqual(lines[-1], "Stopping the tracker")

    def test_run_refuses_keyfile_without_certfile(self):
        args = argparse.Namespace(host="127.0.0.1", port=0, db=self.db, interval=60,
                                  certfile=None, keyfile="k.pem", tls=False)
        with self.assertRaises(TrackerError):
            tracker_mod.run(args, lambda line: None)

    def test_shutdown_closes_idle_keep_alive_connections(self):
        server = self.start_server(interval=30)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /torrents HTTP/1.1\r\n\r\n")
        self.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 200"))
        server.shutdown()
        self.assertEqual(sock.recv(65536), b"")


@unittest.skipUnless(shutil.which("openssl"), "openssl command not installed")
class TlsTests(TrackerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", self.key, "-out", self.cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)

    def test_certfile_and_keyfile_serve_https(self):
        context = tracker_mod.server_ssl_context(self.cert, self.key)
        server = self.start_server(ssl_context=context)
        self.assertTrue(server.urls[0].startswith("https://"))
        client = ssl.create_default_context(cafile=self.cert)
        client.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client,
                                           timeout=CLIENT_TIMEOUT)
        self.addCleanup(conn.close)
        for n in range(2):
            conn.request("GET", "/announce?" + announce_query(peer_id(n), 7001 + n))
            answer = bencode.decode(conn.getresponse().read())
            self.assertEqual(answer[b"incomplete"], n + 1)

    def test_plain_http_to_https_port_is_dropped_and_server_keeps_serving(self):
        context = tracker_mod.server_ssl_context(self.cert, self.key)
        server = self.start_server(ssl_context=context)
        with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            try:
                self.assertNotIn(b"200 OK", s.recv(65536))
            except ConnectionResetError:
                pass
        client = ssl.create_default_context(cafile=self.cert)
        client.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client,
                                           timeout=CLIENT_TIMEOUT)
        self.addCleanup(conn.close)
        conn.request("GET", "/torrents")
        self.assertEqual(conn.getresponse().status, 200)

    def test_missing_certificate_is_a_tracker_error(self):
        with self.assertRaises(TrackerError):
            tracker_mod.server_ssl_context(os.path.join(self.dir, "none.pem"))


class TrackerLogicTests(unittest.TestCase):
    """The request logic without sockets."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.store = tracker_db.TrackerStore(os.path.join(tmp.name, "t.db"), 1800)
        self.addCleanup(self.store.close)
        self.app = Tracker(self.store)

    def test_min_interval_is_half_the_interval_capped(self):
        answer = bencode.decode(self.app.announce(
            announce_query(peer_id(1), 7001).encode(), "127.0.0.1"))
        self.assertEqual(answer[b"interval"], 1800)
        self.assertEqual(answer[b"min interval"], tracker_mod.MAX_MIN_INTERVAL)

    def test_answer_is_canonical_bencoding(self):
        self.app.announce(announce_query(peer_id(1), 7001).encode(), "2001:db8::5")
        body = self.app.announce(announce_query(peer_id(2), 7002, event="x").encode(), "10.0.0.1")
        self.assertEqual(bencode.encode(bencode.decode(body)), body)


if __name__ == "__main__":
    unittest.main()
