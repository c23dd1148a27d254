"""Tests of the tracker server: announces, scrapes and the request logic, over HTTP on a real
server on 127.0.0.1 port 0 and directly without a socket."""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import tempfile
import unittest
from typing import Any, Dict, List, Optional, Tuple
from unittest import mock
from urllib.parse import quote_from_bytes, unquote_to_bytes

from sta import bencode, maketorrent
from sta import tracker as tracker_mod
from sta import tracker_db, tracker_http
from sta.tracker import MAX_NUMWANT, Tracker, TrackerServerError, TrackerServer

INFO_HASH = bytes(range(1, 21))
OTHER_HASH = bytes(range(101, 121))
INTERVAL = 60
# Socket timeout for every client call: far above any answer time, so a hung server fails the
# test instead of hanging the run.
CLIENT_TIMEOUT = 10.0


def peer_id(n: int) -> bytes:
    return b"-SX0001-%012d" % n


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
        answer = self.announce(b"-SX0001-still-alive!", 9999)
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


class LogicTestCase(unittest.TestCase):
    """The request logic over a store on a temporary file, with a clock the test moves."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.clock = Clock()
        self.store = tracker_db.TrackerStore(os.path.join(tmp.name, "t.db"), INTERVAL,
                                             self.clock)
        self.addCleanup(self.store.close)
        self.app = Tracker(self.store)


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

    def test_same_peer_id_with_another_key_is_refused(self):
        self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.1", key="abcd")
        answer = self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.2", key="zzzz")
        self.assertEqual(list(answer), [b"failure reason"])
        answer = self.announce(peer_id(2), 7002)
        self.assertEqual(answer[b"peers"], bytes([10, 0, 0, 1]) + b"\x1b\x59")

    def test_separate_torrents_do_not_share_peers(self):
        self.announce(peer_id(1), 7001, info_hash=OTHER_HASH)
        self.assertEqual(self.announce(peer_id(2), 7002)[b"peers"], b"")


class PeerSpoofingTests(TrackerTestCase):
    """Nobody stops or moves a peer but that peer: its key, or (key-less) its own address."""

    def peers_of_swarm(self) -> bytes:
        return self.announce(peer_id(99), 7099)[b"peers"]

    def test_stopped_without_the_peers_key_is_refused_even_from_its_address(self):
        self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.1", key="abcd")
        for key in (None, "wxyz"):
            extra = {} if key is None else {"key": key}
            answer = self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.1",
                                          event="stopped", **extra)
            self.assertEqual(list(answer), [b"failure reason"])
        self.assertEqual(self.peers_of_swarm(), bytes([10, 0, 0, 1]) + b"\x1b\x59")

    def test_peer_with_a_key_stops_with_it(self):
        self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.1", key="abcd")
        answer = self.announce_direct(peer_id(1), 7001, client_ip="10.0.0.1", key="abcd",
                                      event="stopped")
        self.assertNotIn(b"failure reason", answer)
        self.assertEqual(self.peers_of_swarm(), b"")

    def test_neighbour_cannot_stop_a_keyless_peer_with_its_peer_id_and_ip(self):
        self.announce_direct(peer_id(1), 7001, client_ip="192.168.1.10")
        answer = self.announce_direct(peer_id(1), 7001, client_ip="192.168.1.66",
                                      ip="192.168.1.10", event="stopped")
        self.assertEqual(list(answer), [b"failure reason"])
        self.assertEqual(self.peers_of_swarm(), bytes([192, 168, 1, 10]) + b"\x1b\x59")

    def test_keyless_peer_is_never_moved_from_another_address(self):
        self.announce_direct(peer_id(1), 7001, client_ip="192.168.1.10")
        answer = self.announce_direct(peer_id(1), 9999, client_ip="192.168.1.66",
                                      ip="10.9.9.9")
        self.assertIn(b"another address", answer[b"failure reason"])
        self.assertEqual(self.peers_of_swarm(), bytes([192, 168, 1, 10]) + b"\x1b\x59")

    def test_keyless_peer_may_name_another_address_of_its_own(self):
        self.announce_direct(peer_id(1), 7001, client_ip="192.168.1.10")
        answer = self.announce_direct(peer_id(1), 7001, client_ip="192.168.1.10",
                                      ip="192.168.2.10")
        self.assertNotIn(b"failure reason", answer)
        self.assertEqual(self.peers_of_swarm(), bytes([192, 168, 2, 10]) + b"\x1b\x59")


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


class BadInputTests(TrackerTestCase):
    def test_missing_info_hash_gets_failure_reason(self):
        self.assertIn("info_hash", self.failure_of(f"peer_id=-SX0001-000000000001&port=1&left=0"))
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
        with self.assertRaises(TrackerServerError):
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
        with self.assertRaises(TrackerServerError):
            tracker_mod.run(args, lambda line: None)

    def test_shutdown_closes_idle_keep_alive_connections(self):
        server = self.start_server(interval=30)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /torrents HTTP/1.1\r\n\r\n")
        self.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 200"))
        server.shutdown()
        self.assertEqual(sock.recv(65536), b"")


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
