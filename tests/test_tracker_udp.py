"""The tracker's UDP front end: the answer logic without a socket (garbage, forged and stale
connection ids, no amplification, per-address limits, errors), then the server on 127.0.0.1
(same port number as HTTP, --no-udp, clean shutdown, garbage over the wire)."""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import time
import unittest

from sta import udptrackerproto as P
from sta.cliargs import build_parser
from sta.tracker import Tracker, TrackerServer, TrackerServerError
from sta.tracker_db import NEW_TORRENTS_BURST, TrackerStore
from sta.tracker_udp import UdpTrackerFront

IH = bytes(range(1, 21))
CLIENT = ("127.0.0.1", 40000)
NOW = 1_000_000.0
RECV_TIMEOUT = 5.0


def announce(cid: int, tid: int = 7, n: int = 1, info_hash: bytes = IH, **overrides) -> bytes:
    fields = dict(info_hash=info_hash, peer_id=b"-ST0001-%012d" % n, downloaded=0, left=10,
                  uploaded=0, event="started", key=n, num_want=50, port=6000 + n)
    fields.update(overrides)
    return P.announce_request(cid, tid, **fields)


class FrontTests(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.clock = [NOW]
        self.store = TrackerStore(os.path.join(tmp.name, "t.db"), 60, lambda: self.clock[0])
        self.addCleanup(self.store.close)
        self.front = UdpTrackerFront(Tracker(self.store), key=b"s" * 32)

    def connect(self, client=CLIENT) -> int:
        answer = self.front.answer(P.connect_request(5), client, self.clock[0])
        return P.read_response(answer, 5, P.CONNECT)

    def test_connect_answer_is_the_size_of_the_request(self):
        request = P.connect_request(5)
        self.assertEqual(len(self.front.answer(request, CLIENT, NOW)), len(request))

    def test_announce_with_a_valid_id_is_answered_from_the_store(self):
        cid = self.connect()
        self.front.answer(announce(cid, n=1), CLIENT, NOW)
        answer = P.read_response(self.front.answer(announce(cid, tid=8, n=2, left=0),
                                                   CLIENT, NOW), 8, P.ANNOUNCE)
        self.assertEqual(answer.peers, [("127.0.0.1", 6001)])
        self.assertEqual((answer.complete, answer.incomplete, answer.interval), (1, 1, 60))

    def test_garbage_is_dropped(self):
        for data in (b"", b"x", b"\0" * 15, os.urandom(16), os.urandom(98), os.urandom(1400),
                     struct.pack(">QII", 1234, 0, 1)):   # connect without the protocol id
            with self.subTest(size=len(data)):
                self.assertIsNone(self.front.answer(data, CLIENT, NOW))

    def test_forged_connection_id_is_dropped(self):
        self.assertIsNone(self.front.answer(announce(0x1122334455667788), CLIENT, NOW))
        self.assertIsNone(self.front.answer(P.scrape_request(42, 1, [IH]), CLIENT, NOW))

    def test_id_of_another_address_is_dropped(self):
        cid = self.connect(("10.0.0.1", 5))
        self.assertIsNone(self.front.answer(announce(cid), ("10.0.0.2", 5), NOW))

    def test_id_is_valid_from_another_port_of_the_same_host(self):
        cid = self.connect(("10.0.0.1", 5))
        self.assertIsNotNone(self.front.answer(announce(cid), ("10.0.0.1", 6), NOW))

    def test_stale_id_is_dropped(self):
        cid = self.connect()
        self.clock[0] += 2 * P.CONNECTION_ID_LIFETIME
        self.assertIsNone(self.front.answer(announce(cid), CLIENT, self.clock[0]))

    def test_no_answer_without_a_valid_id_is_larger_than_its_request(self):
        cid = self.connect()
        for _ in range(200):
            data = os.urandom(int.from_bytes(os.urandom(1), "big") % 120)
            for packet in (data, P.connect_request(3) + data,
                           struct.pack(">QII", cid ^ 1, 1, 9) + data):
                answer = self.front.answer(packet, CLIENT, NOW)
                if answer is not None:
                    self.assertLessEqual(len(answer), len(packet))

    def test_error_needs_a_valid_id_and_says_what_was_wrong(self):
        cid = self.connect()
        answer = self.front.answer(announce(cid, port=0), CLIENT, NOW)
        with self.assertRaises(P.UdpTrackerError) as ctx:
            P.read_response(answer, 7, P.ANNOUNCE)
        self.assertIn("port", str(ctx.exception))
        self.assertIsNone(self.front.answer(announce(cid ^ 1, port=0), CLIENT, NOW))

    def test_new_torrents_per_address_are_limited_as_over_http(self):
        cid = self.connect()
        refused = None
        for n in range(NEW_TORRENTS_BURST + 1):
            answer = self.front.answer(announce(cid, tid=n, n=n, info_hash=b"%020d" % n),
                                       CLIENT, NOW)
            try:
                P.read_response(answer, n, P.ANNOUNCE)
            except P.UdpTrackerError as exc:
                refused = (n, str(exc))
        self.assertIsNotNone(refused)
        self.assertEqual(refused[0], NEW_TORRENTS_BURST)
        self.assertIn("too many new torrents", refused[1])

    def test_numwant_is_capped(self):
        cid = self.connect()
        for n in range(250):
            self.store.announce(IH, b"%020d" % n, "10.1.%d.%d" % (n // 200, n % 200), 1, 0, 0,
                                5, b"", None, 0)
        answer = P.read_response(self.front.answer(announce(cid, num_want=100000), CLIENT, NOW),
                                 7, P.ANNOUNCE)
        self.assertEqual(len(answer.peers), 200)
        answer = P.read_response(self.front.answer(announce(cid, tid=9, num_want=-1), CLIENT,
                                                   NOW), 9, P.ANNOUNCE)
        self.assertEqual(len(answer.peers), 50)

    def test_scrape_gives_bep_15_order(self):
        cid = self.connect()
        self.front.answer(announce(cid, n=1, left=0), CLIENT, NOW)
        self.front.answer(announce(cid, n=2, event="completed"), CLIENT, NOW)
        answer = self.front.answer(P.scrape_request(cid, 4, [IH, b"\1" * 20]), CLIENT, NOW)
        self.assertEqual(P.read_response(answer, 4, P.SCRAPE, scraped=2),
                         [(1, 1, 1), (0, 0, 0)])   # seeders, completed, leechers

    def test_ip_field_is_honoured_from_local_networks_only(self):
        cid_local = self.connect(("192.168.1.5", 1))
        self.front.answer(announce(cid_local, n=1, ip=0x0A000009), ("192.168.1.5", 1), NOW)
        cid_public = self.connect(("8.8.8.8", 1))
        self.front.answer(announce(cid_public, n=2, ip=0x0A000009), ("8.8.8.8", 1), NOW)
        peers = {p.peer_id[-1:]: p.ip for p in self.store.swarms[IH].peers.values()}
        self.assertEqual(peers, {b"1": "10.0.0.9", b"2": "8.8.8.8"})


def start(test: unittest.TestCase, **kwargs) -> TrackerServer:
    tmp = tempfile.TemporaryDirectory()
    test.addCleanup(tmp.cleanup)
    server = TrackerServer("127.0.0.1", 0, os.path.join(tmp.name, "t.db"), **kwargs).start()
    test.addCleanup(server.shutdown)
    return server


def udp_client(test: unittest.TestCase, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    test.addCleanup(sock.close)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(RECV_TIMEOUT)
    return sock


class ServerTests(unittest.TestCase):
    def test_udp_answers_on_the_http_port_number(self):
        server = start(self)
        sock = udp_client(self, server.port)
        sock.send(P.connect_request(11))
        self.assertIsInstance(P.read_response(sock.recv(2048), 11, P.CONNECT), int)
        self.assertTrue(any(line.startswith("* UDP announce URL: udp://")
                            for line in server.banner()))

    def test_garbage_gets_no_answer_and_the_server_keeps_serving(self):
        server = start(self)
        sock = udp_client(self, server.port)
        for size in (0, 3, 16, 98, 1500):
            sock.send(os.urandom(size))
        sock.send(announce(0x42))                 # forged id
        sock.send(P.connect_request(12))          # then a real request
        self.assertEqual(struct.unpack_from(">II", sock.recv(2048)), (P.CONNECT, 12))

    def test_no_udp_leaves_the_port_closed(self):
        server = start(self, udp=False)
        self.assertIsNone(server.udp)
        sock = udp_client(self, server.port)
        sock.settimeout(0.5)
        sock.send(P.connect_request(1))
        with self.assertRaises((socket.timeout, ConnectionRefusedError)):
            sock.recv(2048)

    def test_taken_udp_port_is_a_clear_error(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            tmp = tempfile.TemporaryDirectory()
            self.addCleanup(tmp.cleanup)
            try:
                TrackerServer("127.0.0.1", port, os.path.join(tmp.name, "t.db")).shutdown()
            except TrackerServerError as exc:
                self.assertIn("--no-udp", str(exc))
            else:
                self.skipTest("the TCP port was taken too; cannot provoke the UDP clash")

    def test_shutdown_stops_the_udp_thread_promptly(self):
        server = start(self)
        thread = server.udp._thread
        started = time.monotonic()
        server.shutdown()
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertFalse(thread.is_alive())

    def test_cli_has_no_udp_option(self):
        args = build_parser().parse_args(["tracker", "--no-udp"])
        self.assertTrue(args.no_udp)
        self.assertFalse(build_parser().parse_args(["tracker"]).no_udp)


if __name__ == "__main__":
    unittest.main()
