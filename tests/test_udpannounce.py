"""The UDP tracker client: against STA's own UDP tracker, against a scripted fake tracker (retry
schedule, cached connection ids, error answers, strays) and against opentracker when installed.
Everything on 127.0.0.1, with short retry delays so no test waits BEP 15's 15 s."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest
from typing import Callable, List, Optional

from sta import udpannounce, udptrackerproto as P
from sta.tracker import TrackerServer
from sta.trackerproto import TrackerError
from tests.interop import clients

IH = bytes(range(1, 21))
FAST = (0.2, 0.4)          # retry delays for tests: two sends, 0.6 s in all
DEADLINE = 10.0


def stats(n: int = 1, **overrides) -> dict:
    params = dict(info_hash=IH, peer_id=b"-ST0001-%012d" % n, port=6000 + n, uploaded=0,
                  downloaded=0, left=100, event="started", key=n, retry_delays=FAST)
    params.update(overrides)
    return params


class FakeTracker:
    """A UDP socket on 127.0.0.1 whose answers a test scripts: ``reply(data)`` returns the
    datagrams to send back (none: stay silent). Records every datagram received."""

    def __init__(self, test: unittest.TestCase,
                 reply: Callable[[bytes], List[bytes]]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.reply = reply
        self.received: List[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        test.addCleanup(self.close)
        self.url = "udp://127.0.0.1:%d/announce" % self.sock.getsockname()[1]

    def _serve(self) -> None:
        deadline = time.monotonic() + DEADLINE * 3
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data, address = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.received.append(data)
            for answer in self.reply(data):
                self.sock.sendto(answer, address)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def scripted(cid: int = 77, announce: Optional[Callable[[int], List[bytes]]] = None):
    """A reply function: connect answers with ``cid``; announces get ``announce(tid)``."""
    def reply(data: bytes) -> List[bytes]:
        _, action, tid = struct.unpack_from(">QII", data)
        if action == P.CONNECT:
            return [P.connect_response(tid, cid)]
        if announce is not None:
            return announce(tid)
        return [P.announce_response(tid, 60, 1, 2, bytes([1, 2, 3, 4, 0, 80]))]
    return reply


class AgainstFakeTrackerTests(unittest.TestCase):
    def test_announce_connects_then_announces_with_the_connection_id(self):
        fake = FakeTracker(self, scripted(cid=0xABCDEF))
        answer = udpannounce.announce(fake.url, **stats())
        self.assertEqual(answer.peers, [("1.2.3.4", 80)])
        self.assertEqual((answer.interval, answer.complete, answer.incomplete), (60, 2, 1))
        self.assertEqual(P.parse_request(fake.received[1]).connection_id, 0xABCDEF)

    def test_connection_id_is_reused_within_its_minute(self):
        fake = FakeTracker(self, scripted())
        ids = udpannounce.ConnectionIds()
        udpannounce.announce(fake.url, **stats(), connection_ids=ids)
        udpannounce.announce(fake.url, **stats(), connection_ids=ids)
        actions = [struct.unpack_from(">I", d, 8)[0] for d in fake.received]
        self.assertEqual(actions, [P.CONNECT, P.ANNOUNCE, P.ANNOUNCE])

    def test_connection_id_expires_after_a_minute(self):
        now = [1000.0]
        ids = udpannounce.ConnectionIds(clock=lambda: now[0])
        ids.put(("127.0.0.1", 1), 5)
        self.assertEqual(ids.get(("127.0.0.1", 1)), 5)
        now[0] += P.CONNECTION_ID_LIFETIME
        self.assertIsNone(ids.get(("127.0.0.1", 1)))

    def test_a_cached_id_that_gets_no_answer_is_replaced(self):
        def reply(data: bytes) -> List[bytes]:
            cid, action, tid = struct.unpack_from(">QII", data)
            if action == P.CONNECT:
                return [P.connect_response(tid, 99)]
            return [P.announce_response(tid, 60, 0, 0, b"")] if cid == 99 else []
        fake = FakeTracker(self, reply)
        ids = udpannounce.ConnectionIds()
        ids.put(("127.0.0.1", fake.sock.getsockname()[1]), 12345)  # a stale id
        udpannounce.announce(fake.url, **stats(), connection_ids=ids)
        self.assertEqual(ids.get(("127.0.0.1", fake.sock.getsockname()[1])), 99)

    def test_silent_tracker_fails_after_the_bounded_retries(self):
        fake = FakeTracker(self, lambda data: [])
        started = time.monotonic()
        with self.assertRaises(TrackerError) as ctx:
            udpannounce.announce(fake.url, **stats())
        elapsed = time.monotonic() - started
        self.assertIn("no answer", str(ctx.exception))
        self.assertEqual(len(fake.received), len(FAST))     # one send per scheduled try
        self.assertGreaterEqual(elapsed, sum(FAST) - 0.05)
        self.assertLess(elapsed, sum(FAST) + 2)

    def test_timeout_bounds_the_whole_exchange(self):
        fake = FakeTracker(self, lambda data: [])
        started = time.monotonic()
        with self.assertRaises(TrackerError):
            udpannounce.announce(fake.url, **stats(retry_delays=(5.0, 10.0)), timeout=0.3)
        self.assertLess(time.monotonic() - started, 2.0)

    def test_retransmission_is_answered(self):
        seen = []

        def announce(tid: int) -> List[bytes]:
            seen.append(tid)
            return [] if len(seen) == 1 else [P.announce_response(tid, 60, 0, 0, b"")]
        fake = FakeTracker(self, scripted(announce=announce))
        udpannounce.announce(fake.url, **stats())
        self.assertEqual(len(seen), 2)
        self.assertEqual(seen[0], seen[1])      # the same request, sent again

    def test_error_answer_becomes_a_tracker_error_with_its_text(self):
        fake = FakeTracker(self, scripted(
            announce=lambda tid: [P.error_response(tid, "torrent not registered")]))
        with self.assertRaises(TrackerError) as ctx:
            udpannounce.announce(fake.url, **stats())
        self.assertEqual(ctx.exception.failure_reason, "torrent not registered")
        self.assertIn(fake.url.split("/announce")[0], str(ctx.exception))

    def test_stray_answers_are_ignored(self):
        def announce(tid: int) -> List[bytes]:
            return [P.announce_response(tid ^ 1, 60, 0, 0, b""), b"junk",
                    P.connect_response(tid, 5),
                    P.announce_response(tid, 60, 0, 7, b"")]
        fake = FakeTracker(self, scripted(announce=announce))
        self.assertEqual(udpannounce.announce(fake.url, **stats()).complete, 7)

    def test_malformed_answer_is_a_tracker_error(self):
        fake = FakeTracker(self, scripted(
            announce=lambda tid: [struct.pack(">IIIII", 1, tid, 60, 0, 0) + b"\x01\x02"]))
        with self.assertRaises(TrackerError):
            udpannounce.announce(fake.url, **stats())

    def test_passkey_is_sent_as_bep_41_url_data(self):
        fake = FakeTracker(self, scripted())
        udpannounce.announce(fake.url + "?passkey=s3cret", **stats())
        path = b"/announce?passkey=s3cret"
        self.assertEqual(fake.received[1][98:], b"\x02%c%s\x00" % (len(path), path))

    def test_nothing_listening_is_a_clear_error(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(TrackerError) as ctx:
            udpannounce.announce("udp://127.0.0.1:%d/announce" % port, **stats())
        self.assertTrue("refused" in str(ctx.exception) or "no answer" in str(ctx.exception))

    def test_url_without_a_port_is_refused(self):
        with self.assertRaises(TrackerError):
            udpannounce.announce("udp://127.0.0.1/announce", **stats())


def start_sta_tracker(test: unittest.TestCase, **kwargs) -> TrackerServer:
    tmp = tempfile.TemporaryDirectory()
    test.addCleanup(tmp.cleanup)
    server = TrackerServer("127.0.0.1", 0, os.path.join(tmp.name, "t.db"), interval=30,
                           **kwargs).start()
    test.addCleanup(server.shutdown)
    return server


class AgainstStaTrackerTests(unittest.TestCase):
    def setUp(self):
        self.server = start_sta_tracker(self)
        self.url = "udp://127.0.0.1:%d/announce" % self.server.port

    def test_peers_find_each_other(self):
        ids = udpannounce.ConnectionIds()
        udpannounce.announce(self.url, **stats(1), connection_ids=ids)
        answer = udpannounce.announce(self.url, **stats(2, left=0), connection_ids=ids)
        self.assertEqual(answer.peers, [("127.0.0.1", 6001)])
        self.assertEqual((answer.complete, answer.incomplete), (1, 1))
        self.assertEqual(answer.interval, 30)

    def test_scrape_counts_seeders_and_leechers(self):
        udpannounce.announce(self.url, **stats(1))
        udpannounce.announce(self.url, **stats(2, left=0))
        other = b"\x09" * 20
        counts = udpannounce.scrape(self.url, [IH, other], retry_delays=FAST)
        self.assertEqual(counts, {IH: (1, 1, 0), other: (0, 0, 0)})

    def test_udp_and_http_share_the_swarm(self):
        udpannounce.announce(self.url, **stats(1))
        from sta import announce as http_announce
        answer = http_announce.announce(
            "http://127.0.0.1:%d/announce" % self.server.port, info_hash=IH,
            peer_id=b"-ST0001-%012d" % 2, port=6002, uploaded=0, downloaded=0, left=5,
            event="started", timeout=5)
        self.assertEqual(answer.peers, [("127.0.0.1", 6001)])

    def test_stopped_leaves_the_swarm(self):
        udpannounce.announce(self.url, **stats(1))
        udpannounce.announce(self.url, **stats(1, event="stopped"))
        self.assertEqual(udpannounce.scrape(self.url, [IH], retry_delays=FAST)[IH], (0, 0, 0))


class AgainstOpentrackerTests(unittest.TestCase):
    def setUp(self):
        if not shutil.which("opentracker"):
            self.skipTest("opentracker is not installed")
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o755)
        whitelist = clients.write_whitelist(tmp, [IH.hex()])
        port = clients.free_port()
        proc = subprocess.Popen(clients.opentracker_cmd(port, tmp, whitelist),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (proc.kill(), proc.wait(5)))
        self.url = "udp://127.0.0.1:%d/announce" % port
        deadline = time.monotonic() + DEADLINE
        while True:   # opentracker takes a moment to bind
            try:
                udpannounce.announce(self.url, **stats(9, event=None))
                break
            except TrackerError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise

    def test_announce_and_scrape(self):
        udpannounce.announce(self.url, **stats(1))
        answer = udpannounce.announce(self.url, **stats(2, left=0))
        self.assertIn(("127.0.0.1", 6001), answer.peers)
        counts = udpannounce.scrape(self.url, [IH], retry_delays=FAST)
        self.assertEqual(counts[IH][0], 1)          # the seeder
        self.assertGreaterEqual(counts[IH][1], 1)   # leechers


if __name__ == "__main__":
    unittest.main()
