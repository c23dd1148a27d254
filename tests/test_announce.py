"""Tests for sta.announce: real HTTP(S) announces and scrapes against a small http.server on
127.0.0.1. Building requests and parsing answers is tests/test_trackerproto.py; scheduling and
tiers are tests/test_trackers.py."""

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
from urllib.parse import parse_qs, urlsplit

from sta import announce as A
from sta import httpget
from sta import trackers as T
from sta.bencode import encode
from sta.trackerproto import TrackerError, scrape_url
from tests.test_trackerproto import INFO_HASH, PEER_ID, STATS, answer, compact, compact6


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
        with self.assertRaises(TrackerError) as ctx:
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
        with self.assertRaises(TrackerError) as ctx:
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
        self.assertIn(f"more than {httpget.DEFAULT_MAX_REDIRECTS} redirects", self.error(t))
        self.assertEqual(len(t.requests), httpget.DEFAULT_MAX_REDIRECTS + 1)

    def test_timeout(self):
        t = FakeTracker(self, lambda handler: t.release.wait(10))
        with self.assertRaises(TrackerError) as ctx:
            A.announce(t.url(), **STATS, timeout=0.3)
        self.assertIn("timed out after 0.3 s", str(ctx.exception))

    def test_connection_refused(self):
        url = f"http://127.0.0.1:{free_port()}/announce"
        with self.assertRaises(TrackerError) as ctx:
            A.announce(url, **STATS, timeout=5)
        self.assertEqual(str(ctx.exception), f"tracker {url}: connection refused")

    def test_url_with_characters_http_refuses_is_an_error(self):
        with self.assertRaises(TrackerError) as ctx:
            A.announce("http://127.0.0.1:1/an nounce", **STATS, timeout=1)
        self.assertIn("bad URL", str(ctx.exception))

    def test_udp_tracker_is_refused_clearly(self):
        with self.assertRaises(TrackerError) as ctx:
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
            except TrackerError as exc:
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
        url = scrape_url(t.url("/announce?passkey=k"))
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
        with self.assertRaises(TrackerError) as ctx:
            self.announce(None)
        self.assertIn("certificate not trusted", str(ctx.exception))

    def test_cafile_still_checks_the_host_name(self):
        with self.assertRaises(TrackerError) as ctx:
            self.announce(A.make_ssl_context(cafile=self.cert), host="localhost")
        self.assertIn("certificate not trusted", str(ctx.exception))

    def test_matching_pin_is_accepted(self):
        pin = ":".join(self.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
        r = self.announce(A.make_ssl_context(pin_sha256=pin))
        self.assertEqual(r.peers, [("10.0.0.9", 9)])

    def test_wrong_pin_is_refused_before_the_request(self):
        wrong = "%064x" % (int(self.fingerprint, 16) ^ 1)
        with self.assertRaises(TrackerError) as ctx:
            self.announce(A.make_ssl_context(pin_sha256=wrong))
        self.assertIn("does not match the pinned", str(ctx.exception))
        self.assertEqual(self.tracker.requests, [])

    def test_malformed_pin_is_rejected(self):
        with self.assertRaises(TrackerError):
            A.make_ssl_context(pin_sha256="abcd")

    def test_pin_and_cafile_together_are_rejected(self):
        with self.assertRaises(TrackerError):
            A.make_ssl_context(cafile=self.cert, pin_sha256=self.fingerprint)

    def test_redirect_to_plain_http_is_refused(self):
        plain = FakeTracker(self, ok_reply(answer(interval=5)))
        self.tracker.replies = [(302, {"Location": plain.url()}, b"")]
        with self.assertRaises(TrackerError) as ctx:
            self.announce(A.make_ssl_context(cafile=self.cert))
        self.assertIn("refusing a redirect from https to plain http", str(ctx.exception))
        self.assertEqual(plain.requests, [])


if __name__ == "__main__":
    unittest.main()
