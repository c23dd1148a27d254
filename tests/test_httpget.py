"""Tests for sta.httpget: the bounded GET, against http.server on 127.0.0.1 (port 0).

The server is test_announce's FakeTracker: each request takes the next reply, the last repeats.
"""

from __future__ import annotations

import http.server
import os
import ssl
import tempfile
import time
import unittest
from typing import Callable, Dict, Optional

from sta import announce, httpget, x509
from tests.test_announce import FakeTracker, free_port

# Seconds a test server waits for the test to release it; far above any test's own bound.
SERVER_WAIT = 10.0

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


def answer_in_pieces(count: int, piece: bytes, length: Optional[int] = None,
                     wait: Optional[Callable[[], bool]] = None) -> Handler:
    """A 200 answer written ``count`` times ``piece``, with Content-Length ``length`` (None: the
    end of the connection ends the body). ``wait()`` runs after each piece; true ends early."""
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        if length is not None:
            handler.send_header("Content-Length", str(length))
        handler.send_header("Connection", "close")
        handler.end_headers()
        for _ in range(count):
            handler.wfile.write(piece)
            handler.wfile.flush()
            if wait is not None and wait():
                return
    return reply


def get(url: str, **kwargs: object) -> bytes:
    options: Dict[str, object] = dict(timeout=5.0, max_size=1000, max_redirects=3)
    options.update(kwargs)
    return httpget.get(url, **options)  # type: ignore[arg-type]


class HttpGetTest(unittest.TestCase):
    def failure(self, url: str, **kwargs: object) -> httpget.HTTPGetError:
        with self.assertRaises(httpget.HTTPGetError) as caught:
            get(url, **kwargs)
        error = caught.exception
        self.assertEqual(str(error), error.reason)
        self.assertNotIn("\n", error.reason)
        return error

    def test_body_of_a_200_answer_is_returned(self) -> None:
        server = FakeTracker(self, (200, {}, b"hello"))
        self.assertEqual(get(server.url("/f"), accept="application/x-bittorrent"), b"hello")
        headers = server.requests[0][1]
        self.assertTrue(headers["User-Agent"].startswith("STA/"))
        self.assertEqual(headers["Accept"], "application/x-bittorrent")
        self.assertEqual(headers["Connection"], "close")

    def test_relative_redirect_is_followed_with_its_query(self) -> None:
        server = FakeTracker(self, (302, {"Location": "/new?k=1"}, b""), (200, {}, b"moved"))
        self.assertEqual(get(server.url("/old?k=1")), b"moved")
        self.assertEqual([path for path, _ in server.requests], ["/old?k=1", "/new?k=1"])

    def test_redirects_stop_at_the_bound(self) -> None:
        server = FakeTracker(self, (307, {"Location": "/loop"}, b""))
        error = self.failure(server.url("/loop"), max_redirects=2)
        self.assertEqual((error.kind, error.reason), (httpget.REDIRECTS, "more than 2 redirects"))
        self.assertEqual(len(server.requests), 3)

    def test_redirect_to_another_scheme_is_refused(self) -> None:
        server = FakeTracker(self, (302, {"Location": "ftp://127.0.0.1/x"}, b""))
        error = self.failure(server.url("/ftp"))
        self.assertEqual((error.kind, error.scheme, error.from_https),
                         (httpget.REDIRECT, "ftp", False))
        self.assertIn("only http and https", error.reason)

    def test_redirect_without_location_is_a_status_error(self) -> None:
        server = FakeTracker(self, (302, {}, b""))
        error = self.failure(server.url("/nowhere"))
        self.assertEqual((error.kind, error.status, error.reason),
                         (httpget.STATUS, 302, "HTTP 302 Found"))

    def test_error_status_carries_phrase_and_body(self) -> None:
        server = FakeTracker(self, (404, {}, b"no such thing"))
        error = self.failure(server.url("/missing"))
        self.assertEqual((error.kind, error.status, error.phrase, error.body),
                         (httpget.STATUS, 404, "Not Found", b"no such thing"))
        self.assertEqual(error.reason, "HTTP 404 Not Found")

    def test_answer_at_the_size_cap_is_read(self) -> None:
        server = FakeTracker(self, (200, {}, b"x" * 1000))
        self.assertEqual(len(get(server.url("/f"))), 1000)

    def test_announced_length_over_the_cap_is_refused_unread(self) -> None:
        server = FakeTracker(self, (200, {}, b"x" * 1001))
        error = self.failure(server.url("/big"))
        self.assertEqual((error.kind, error.size, error.limit), (httpget.TOO_LARGE, 1001, 1000))
        self.assertEqual(error.reason, "answer of 1001 bytes exceeds the 1000-byte limit")

    def test_answer_without_length_is_cut_off_at_the_cap(self) -> None:
        server = FakeTracker(self, answer_in_pieces(100, b"x" * 100))
        error = self.failure(server.url("/stream"))
        self.assertEqual((error.kind, error.size, error.limit), (httpget.TOO_LARGE, None, 1000))
        self.assertEqual(error.reason, "answer exceeds the 1000-byte limit")

    def test_answer_shorter_than_its_length_is_refused(self) -> None:
        server = FakeTracker(self, answer_in_pieces(1, b"x" * 100, length=500))
        error = self.failure(server.url("/short"))
        self.assertEqual((error.kind, error.reason),
                         (httpget.CUT_SHORT, "answer cut short, 400 bytes missing"))

    def test_silent_server_times_out(self) -> None:
        server = FakeTracker(self, lambda handler: server.release.wait(SERVER_WAIT))
        error = self.failure(server.url("/slow"), timeout=0.3)
        self.assertEqual((error.kind, error.reason), (httpget.TIMEOUT, "timed out after 0.3 s"))

    def test_dripping_answer_meets_the_request_timeout(self) -> None:
        # One byte every 50 ms: each read succeeds, only the deadline ends the request.
        server = FakeTracker(self, answer_in_pieces(
            900, b"d", length=900, wait=lambda: server.release.wait(0.05)))
        started = time.monotonic()
        error = self.failure(server.url("/drip"), timeout=0.5)
        self.assertEqual(error.kind, httpget.TIMEOUT)
        self.assertLess(time.monotonic() - started, 3.0)

    def test_deadline_bounds_the_whole_get_across_redirects(self) -> None:
        def slow_loop(handler: http.server.BaseHTTPRequestHandler) -> None:
            server.release.wait(0.15)
            handler.send_response(302)
            handler.send_header("Location", "/loop")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        server = FakeTracker(self, slow_loop)
        started = time.monotonic()
        error = self.failure(server.url("/loop"), timeout=5.0, max_redirects=50,
                             deadline=started + 0.5)
        self.assertEqual((error.kind, error.reason), (httpget.TIMEOUT, "timed out after 5 s"))
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertLess(len(server.requests), 10)

    def test_deadline_already_past_sends_nothing(self) -> None:
        server = FakeTracker(self, (200, {}, b"x"))
        error = self.failure(server.url("/f"), deadline=time.monotonic() - 1)
        self.assertEqual(error.kind, httpget.TIMEOUT)
        self.assertEqual(server.requests, [])

    def test_connection_refused(self) -> None:
        error = self.failure(f"http://127.0.0.1:{free_port()}/x")
        self.assertEqual((error.kind, error.reason), (httpget.NETWORK, "connection refused"))
        self.assertIsInstance(error.cause, ConnectionRefusedError)

    def test_bad_urls(self) -> None:
        for url, kind, words in (
                ("udp://127.0.0.1:1/announce", httpget.SCHEME, "unsupported scheme 'udp'"),
                ("http:///path", httpget.BAD_URL, "URL has no host"),
                ("http://127.0.0.1:99999/x", httpget.BAD_URL, "bad URL"),
                ("http://127.0.0.1:1/a b", httpget.BAD_URL, "bad URL"),
                ("http://127.0.0.1:1/\u00e9", httpget.BAD_URL, "bad URL")):
            with self.subTest(url=url):
                error = self.failure(url, timeout=1.0)
                self.assertEqual(error.kind, kind)
                self.assertIn(words, error.reason)


class HttpsGetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(tmp.cleanup)
        cert_pem, key_pem = x509.make_self_signed("127.0.0.1", ["127.0.0.1"], days=2)
        cls.cert = os.path.join(tmp.name, "cert.pem")
        cls.key = os.path.join(tmp.name, "key.pem")
        with open(cls.cert, "wb") as f:
            f.write(cert_pem)
        with open(cls.key, "wb") as f:
            f.write(key_pem)
        cls.fingerprint = x509.fingerprint_sha256(cert_pem)

    def https_server(self, *replies: object) -> FakeTracker:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return FakeTracker(self, *replies, tls=context)

    def test_trusted_certificate_is_read(self) -> None:
        server = self.https_server((200, {}, b"secret"))
        context = announce.make_ssl_context(cafile=self.cert)
        self.assertEqual(get(server.url("/f"), ssl_context=context), b"secret")

    def test_unknown_certificate_is_a_tls_error(self) -> None:
        server = self.https_server((200, {}, b"secret"))
        with self.assertRaises(httpget.HTTPGetError) as caught:
            get(server.url("/f"))
        self.assertEqual(caught.exception.kind, httpget.NETWORK)
        self.assertIsInstance(caught.exception.cause, ssl.SSLCertVerificationError)
        self.assertIn("TLS error", caught.exception.reason)
        self.assertEqual(server.requests, [])

    def test_pinning_context_is_enforced(self) -> None:
        server = self.https_server((200, {}, b"secret"))
        pinned = announce.make_ssl_context(pin_sha256=self.fingerprint)
        self.assertEqual(get(server.url("/f"), ssl_context=pinned), b"secret")
        wrong = announce.make_ssl_context(pin_sha256="%064x" % (int(self.fingerprint, 16) ^ 1))
        with self.assertRaises(httpget.HTTPGetError) as caught:
            get(server.url("/f"), ssl_context=wrong)
        self.assertIsInstance(caught.exception.cause, announce.CertificatePinError)
        self.assertEqual(len(server.requests), 1)  # the wrong pin sent no request

    def test_redirect_from_https_to_http_is_refused(self) -> None:
        plain = FakeTracker(self, (200, {}, b"clear text"))
        server = self.https_server((302, {"Location": plain.url("/f")}, b""))
        with self.assertRaises(httpget.HTTPGetError) as caught:
            get(server.url("/f"), ssl_context=announce.make_ssl_context(cafile=self.cert))
        error = caught.exception
        self.assertEqual((error.kind, error.scheme, error.from_https),
                         (httpget.REDIRECT, "http", True))
        self.assertEqual(error.reason, "refusing a redirect from https to plain http")
        self.assertEqual(plain.requests, [])


if __name__ == "__main__":
    unittest.main()
