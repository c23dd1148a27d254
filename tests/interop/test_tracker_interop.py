"""STA's tracker against real clients and against opentracker.

- Two real clients (libtorrent and libtorrent, aria2c and libtorrent) on loopback find each other
  only through an STA tracker and transfer a file.
- The same announce and scrape requests sent to opentracker and to STA decode to the same
  structure: the same keys (STA adds only "tracker id"), counts and peer lists (STA leaves the
  requester out of its own list and gives a seeder no seeders; opentracker does neither).

Each test skips with a reason when its tool is not installed.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import time
import unittest
from typing import Any, Dict, List, Optional, Set, Tuple
from urllib.parse import quote_from_bytes

from sta import bencode, maketorrent, metainfo
from sta.tracker import TrackerServer
from tests.interop import clients

# A file big enough for several pieces and a few round trips, small enough for a quick test.
FILE_SIZE = 3 * 1024 * 1024 + 12345
PIECE_LENGTH = 256 * 1024
# Deadlines: a loopback transfer of a few MiB takes well under a second once peers know each
# other; libtorrent's first announce and connection attempts take a few seconds at most.
SEEDER_TIMEOUT = 60.0
DOWNLOAD_TIMEOUT = 90.0
TRACKER_START_TIMEOUT = 15.0
CLIENT_TIMEOUT = 10.0

INFO_HASH = bytes(range(1, 21))


class StaTrackerMixin:
    """Starts an STA tracker on 127.0.0.1 for the test; `self.announce_url` reaches it."""

    def start_sta(self) -> TrackerServer:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        server = TrackerServer("127.0.0.1", 0, os.path.join(tmp.name, "tracker.db"),
                               interval=30).start()
        self.addCleanup(server.shutdown)
        self.sta = server
        self.announce_url = f"http://127.0.0.1:{server.port}/announce"
        return server


def _require_libtorrent(test: unittest.TestCase) -> None:
    if not clients.have_libtorrent():
        test.skipTest(f"libtorrent is not importable by {clients.LT_PYTHON}")


class ClientsThroughStaTrackerTests(StaTrackerMixin, unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.start_sta()
        self.data_dir = os.path.join(self.dir, "seed")
        self.out_dir = os.path.join(self.dir, "out")
        self.source = clients.make_file(os.path.join(self.data_dir, "payload.bin"), FILE_SIZE,
                                        seed=5)
        self.torrent = os.path.join(self.dir, "payload.torrent")
        with open(self.torrent, "wb") as f:
            f.write(maketorrent.make_torrent([self.source], [self.announce_url],
                                          piece_length=PIECE_LENGTH, workers=1))
        self.info_hash = metainfo.load(self.torrent).info_hash

    def download_with_libtorrent(self) -> None:
        proc = clients.start(clients.lt_helper_cmd(
            "download", self.torrent, "--out", self.out_dir, "--tracker", self.announce_url,
            "--timeout", str(DOWNLOAD_TIMEOUT)), self)
        status = clients.wait_exit(proc, DOWNLOAD_TIMEOUT + 30)
        self.assertEqual(status, 0, clients.output(proc))
        with open(self.source, "rb") as a, open(os.path.join(self.out_dir, "payload.bin"),
                                                 "rb") as b:
            self.assertTrue(a.read() == b.read(), "downloaded file differs from the source")

    def torrent_stats(self) -> Dict[str, Any]:
        stats = self.sta.app.stats()
        return next(t for t in stats["torrents"] if t["info_hash"] == self.info_hash.hex())

    def test_two_libtorrent_sessions_transfer_a_file_found_through_sta_tracker(self):
        _require_libtorrent(self)
        seed = clients.start(clients.lt_helper_cmd(
            "seed", self.torrent, "--data", self.data_dir, "--tracker", self.announce_url), self)
        clients.wait_for_line(seed, "SEEDING", SEEDER_TIMEOUT)
        clients.wait_for_seeders(self.announce_url, self.info_hash.hex(), 1, SEEDER_TIMEOUT)
        self.download_with_libtorrent()
        torrent = self.torrent_stats()
        self.assertGreaterEqual(torrent["seeders"], 1)
        self.assertEqual(torrent["name"], None)

    def test_aria2c_seed_and_libtorrent_download_find_each_other_through_sta_tracker(self):
        _require_libtorrent(self)
        if not clients.which("aria2c"):
            self.skipTest("aria2c is not installed")
        seed = clients.start(clients.aria2c_seed_cmd(
            self.torrent, self.data_dir, clients.free_port(), tracker=self.announce_url), self)
        clients.wait_for_line(seed, clients.ARIA2_LISTENING, SEEDER_TIMEOUT, anywhere=True)
        clients.wait_for_seeders(self.announce_url, self.info_hash.hex(), 1, SEEDER_TIMEOUT)
        self.download_with_libtorrent()
        # libtorrent sends "completed" when it finishes (it started with nothing).
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while self.torrent_stats()["completed"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.torrent_stats()["completed"], 1)


# --------------------------------------------------------------------------- opentracker oracle

# (peer number, left, event) in the order they are announced to both trackers.
SCRIPT: List[Tuple[int, int, Optional[str]]] = [
    (1, 0, "started"), (2, 0, "started"), (3, 1000, "started"), (4, 1000, "started"),
    (5, 1000, "started"), (6, 1000, "started"), (5, 0, "completed"), (6, 1000, "stopped"),
    (7, 1000, None), (8, 0, None),
]


def _query(n: int, left: int, event: Optional[str], numwant: int = 50) -> str:
    pid = b"-OT0001-%012d" % n
    query = (f"info_hash={quote_from_bytes(INFO_HASH)}&peer_id={quote_from_bytes(pid)}"
             f"&port={20000 + n}&uploaded=0&downloaded=0&left={left}&compact=1"
             f"&numwant={numwant}")
    return query + (f"&event={event}" if event else "")


def _get(port: int, path: str) -> Tuple[int, bytes]:
    # One connection per request: opentracker closes the connection after every answer.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _ports(compact: bytes) -> Set[int]:
    return {int.from_bytes(compact[i + 4:i + 6], "big") for i in range(0, len(compact), 6)}


@unittest.skipUnless(clients.which("opentracker"), "opentracker is not installed")
class SameAnswersAsOpentrackerTests(StaTrackerMixin, unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        # opentracker (run as root) chroots into its directory and drops to user nobody.
        os.chmod(tmp.name, 0o755)
        whitelist = clients.write_whitelist(tmp.name, [INFO_HASH.hex()])
        self.ot_port = clients.free_port()
        clients.start(clients.opentracker_cmd(self.ot_port, tmp.name, whitelist), self)
        self._wait_for_opentracker()
        self.start_sta()

    def _wait_for_opentracker(self) -> None:
        deadline = time.monotonic() + TRACKER_START_TIMEOUT
        while True:
            try:
                status, body = _get(self.ot_port, "/scrape")
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.fail("opentracker did not answer within %.0f s" % TRACKER_START_TIMEOUT)
            time.sleep(0.1)

    def both(self, path: str) -> Tuple[Dict[bytes, Any], Dict[bytes, Any]]:
        ot_status, ot_body = _get(self.ot_port, path)
        sta_status, sta_body = _get(self.sta.port, path)
        self.assertEqual((ot_status, sta_status), (200, 200))
        return bencode.decode(ot_body), bencode.decode(sta_body)

    def assert_same_announce(self, ot: Dict[bytes, Any], sta: Dict[bytes, Any], own_port: int,
                             seeder: bool, seeder_ports: Set[int]) -> None:
        self.assertNotIn(b"failure reason", ot)
        self.assertEqual(set(sta) - set(ot), {b"tracker id"})
        self.assertEqual(set(ot) - set(sta), set())
        for key in (b"complete", b"incomplete", b"downloaded"):
            self.assertEqual(sta.get(key), ot.get(key), key)
        for key in ot:
            self.assertIs(type(sta[key]), type(ot[key]), key)
        expected = _ports(ot[b"peers"]) - {own_port}
        if seeder:
            expected -= seeder_ports
        self.assertEqual(_ports(sta[b"peers"]), expected)

    def test_announce_answers_decode_to_the_same_structure(self):
        seeders: Set[int] = set()
        for n, left, event in SCRIPT:
            port = 20000 + n
            if event == "stopped":
                seeders.discard(port)
            elif left == 0:
                seeders.add(port)
            ot, sta = self.both("/announce?" + _query(n, left, event))
            if event == "stopped":
                # opentracker leaves "downloaded" out of the answer to a stopped peer; STA's
                # answers always have the same keys.
                self.assertEqual(set(sta) - set(ot), {b"tracker id", b"downloaded"})
                self.assertEqual(set(ot) - set(sta), set())
                self.assertEqual(sta[b"peers"], ot[b"peers"])
                continue
            self.assert_same_announce(ot, sta, port, left == 0, seeders)

    def test_numwant_limits_both_answers_alike(self):
        for n, left, event in SCRIPT:
            self.both("/announce?" + _query(n, left, event))
        ot, sta = self.both("/announce?" + _query(3, 1000, None, numwant=2))
        self.assertEqual(len(ot[b"peers"]), 12)
        self.assertEqual(len(sta[b"peers"]), 12)

    def test_scrape_answers_are_identical(self):
        for n, left, event in SCRIPT:
            self.both("/announce?" + _query(n, left, event))
        ot, sta = self.both("/scrape?info_hash=" + quote_from_bytes(INFO_HASH))
        self.assertEqual(sta, ot)
        ot, sta = self.both("/scrape")
        self.assertEqual(sta, ot)
        ot, sta = self.both("/scrape?info_hash=" + quote_from_bytes(b"z" * 20))
        self.assertEqual(sta, ot)


if __name__ == "__main__":
    unittest.main()
