"""Tests of the tracker's HTTP front end: request limits, connection limits and deadlines,
slow and silent clients, TLS. A real server on 127.0.0.1 port 0."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest
from typing import List
from unittest import mock

from sta import bencode
from sta import tracker as tracker_mod
from sta import tracker_conns, tracker_http
from sta.tracker import Tracker, TrackerServerError
from tests.test_tracker import CLIENT_TIMEOUT, TrackerTestCase, announce_query, peer_id

# Slow connections the slowloris tests hold open, and the longest an announce may take
# meanwhile.
SLOW_CONNECTIONS = 1200
ANSWER_WITHIN = 2.0
# Loopback source addresses for the test from many addresses (Linux routes all of 127/8).
SLOW_SOURCES = ["127.0.0.%d" % n for n in range(2, 14)]


def wait_until(condition, what: str, timeout: float = CLIENT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed ``sock`` (end of file or reset); False on a timeout."""
    try:
        return sock.recv(65536) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


class HttpFrontEndTests(TrackerTestCase):
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


    def test_get_with_a_body_is_400(self):
        reply = self.raw(b"GET /stats HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply[:80])
        self.assertIn(b"no body", reply)
        self.assert_still_serving()

    def test_upload_past_the_memory_for_bodies_is_503_before_its_body_is_read(self):
        budget = self.server.httpd.bodies
        self.assertTrue(budget.reserve(tracker_http.MAX_BODY_BYTES_HELD))
        self.addCleanup(budget.release, tracker_http.MAX_BODY_BYTES_HELD)
        reply = self.raw(b"POST /torrents HTTP/1.1\r\nContent-Length: 1000\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 503 "), reply[:80])
        self.assert_still_serving()


class ConnectionLimitTests(TrackerTestCase):
    def connect(self, source: str = "127.0.0.1", port: int = 0) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.settimeout(CLIENT_TIMEOUT)
        if source != "127.0.0.1":
            try:
                sock.bind((source, 0))
            except OSError as exc:
                self.skipTest(f"cannot send from {source} on this system: {exc}")
        sock.connect(("127.0.0.1", port or self.server.port))
        return sock

    def test_idle_connection_is_closed_to_make_room_for_a_new_one(self):
        table = self.server.httpd.connections
        limit = tracker_conns.MAX_CONNECTIONS_PER_ADDRESS
        idle = [self.connect() for _ in range(limit)]
        wait_until(lambda: len(table.slots()) == limit, "every connection to be admitted")
        self.assert_still_serving()  # one more: the longest-waiting idle one makes room
        self.assertTrue(closed_by_server(idle[0]))
        self.assertEqual(len(table.slots()), limit)

    def test_connection_is_refused_with_503_only_when_all_are_busy(self):
        release = threading.Event()
        self.addCleanup(release.set)
        busy = threading.Event()

        def slow_stats(*args):
            busy.set()
            release.wait(CLIENT_TIMEOUT)
            return 200, "text/plain", b"ok"

        table = self.server.httpd.connections
        with mock.patch.object(table, "max_per_address", 1), \
                mock.patch.object(Tracker, "handle", side_effect=slow_stats):
            first = self.connect()
            first.sendall(b"GET /stats HTTP/1.1\r\n\r\n")
            self.assertTrue(busy.wait(CLIENT_TIMEOUT))
            second = self.connect()
            self.assertTrue(second.recv(65536).startswith(b"HTTP/1.1 503 "))
            release.set()
            self.assertTrue(first.recv(65536).startswith(b"HTTP/1.1 200 "))
        self.assert_still_serving()

    def test_dribbling_request_is_closed_at_its_whole_request_deadline(self):
        # The table's clock runs ahead by the request timeout: a connection that keeps sending
        # a byte at a time is closed all the same (a timeout per read never would be).
        ahead = [0.0]
        table = self.server.httpd.connections
        with mock.patch.object(table, "clock", lambda: time.monotonic() + ahead[0]):
            sock = self.connect()
            sock.sendall(b"GET /announce?")
            wait_until(lambda: len(table.slots()) == 1, "the connection to be admitted")
            ahead[0] = tracker_conns.REQUEST_TIMEOUT + 1
            sock.settimeout(0.1)
            deadline = time.monotonic() + 5 * tracker_http.REAP_INTERVAL + 2
            closed = False
            while not closed and time.monotonic() < deadline:
                try:
                    sock.sendall(b"a")
                except OSError:
                    closed = True
                    break
                closed = closed_by_server(sock)
            self.assertTrue(closed, "the dribbling connection is still open")
        self.assert_still_serving()

    def raise_open_files_limit(self, needed: int) -> None:
        try:
            import resource
        except ImportError:
            self.skipTest("this system has no RLIMIT_NOFILE to raise (no resource module)")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft >= needed:
            return
        if hard != resource.RLIM_INFINITY and hard < needed:
            self.skipTest(f"open files are limited to {hard}; this test needs {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    def hold_slow_connections(self, sources: List[str]) -> List[socket.socket]:
        """SLOW_CONNECTIONS connections that start a request and send one more byte."""
        self.raise_open_files_limit(2 * SLOW_CONNECTIONS + 256)
        self.threads_before = threading.active_count()
        socks = []
        for n in range(SLOW_CONNECTIONS):
            sock = self.connect(sources[n % len(sources)])
            sock.sendall(b"GET /announce?info_hash=")
            socks.append(sock)
        for sock in socks:
            try:
                sock.send(b"%")
            except OSError:
                pass  # closed to make room
        return socks

    def assert_announce_answered_in_time(self) -> None:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=ANSWER_WITHIN)
        self.addCleanup(conn.close)
        conn.request("GET", "/announce?" + announce_query(peer_id(1), 7001))
        answer = bencode.decode(conn.getresponse().read())
        self.assertLess(time.monotonic() - started, ANSWER_WITHIN)
        self.assertIn(b"interval", answer)
        # Threads: the connections' (at most MAX_THREADS) and the announce's.
        self.assertLessEqual(threading.active_count() - self.threads_before,
                             tracker_http.MAX_THREADS + 1)

    def test_slow_connections_from_one_address_leave_announces_answered(self):
        self.hold_slow_connections(["127.0.0.1"])
        self.assertLessEqual(len(self.server.httpd.connections.slots()),
                             tracker_conns.MAX_CONNECTIONS_PER_ADDRESS)
        self.assert_announce_answered_in_time()

    @unittest.skipUnless(sys.platform.startswith("linux"),
                         "only Linux sends from any 127.0.0.x without configuration")
    def test_slow_connections_from_many_addresses_leave_announces_answered(self):
        self.hold_slow_connections(SLOW_SOURCES)
        self.assertLessEqual(len(self.server.httpd.connections.slots()),
                             tracker_conns.MAX_CONNECTIONS)
        self.assert_announce_answered_in_time()


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

    def test_silent_connections_are_counted_before_the_tls_handshake(self):
        context = tracker_mod.server_ssl_context(self.cert, self.key)
        server = self.start_server(ssl_context=context)
        limit = tracker_conns.MAX_CONNECTIONS_PER_ADDRESS
        threads_before = threading.active_count()
        silent = []
        for _ in range(limit):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT)
            self.addCleanup(sock.close)
            silent.append(sock)
        wait_until(lambda: len(server.httpd.connections.slots()) == limit,
                   "silent connections to be counted")
        client = ssl.create_default_context(cafile=self.cert)
        client.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client,
                                           timeout=CLIENT_TIMEOUT)
        self.addCleanup(conn.close)
        conn.request("GET", "/announce?" + announce_query(peer_id(1), 7001))
        self.assertIn(b"interval", bencode.decode(conn.getresponse().read()))
        self.assertTrue(closed_by_server(silent[0]))
        # Threads: one per counted connection, and the one closed to make room if it is
        # still on its way out.
        self.assertLessEqual(threading.active_count() - threads_before, limit + 1)

    def test_missing_certificate_is_a_tracker_error(self):
        with self.assertRaises(TrackerServerError):
            tracker_mod.server_ssl_context(os.path.join(self.dir, "none.pem"))


if __name__ == "__main__":
    unittest.main()
