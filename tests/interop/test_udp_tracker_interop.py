"""Real clients announcing to STA's UDP tracker (BEP 15): libtorrent and aria2c seeds are seen in
the swarm, and a libtorrent download finds its seed through udp:// alone. Each test skips with
a reason when its client is not installed."""

from __future__ import annotations

import os
import tempfile
import time
import unittest

from sta import maketorrent, metainfo
from sta.tracker import TrackerServer
from tests.interop import clients

FILE_SIZE = 1024 * 1024 + 4321
PIECE_LENGTH = 64 * 1024
SEEDER_TIMEOUT = 60.0
DOWNLOAD_TIMEOUT = 90.0
POLL = 0.1


class UdpTrackerInteropTests(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.server = TrackerServer("127.0.0.1", 0, os.path.join(self.dir, "tracker.db"),
                                    interval=30).start()
        self.addCleanup(self.server.shutdown)
        self.url = "udp://127.0.0.1:%d/announce" % self.server.port
        self.data_dir = os.path.join(self.dir, "seed")
        self.source = clients.make_file(os.path.join(self.data_dir, "payload.bin"), FILE_SIZE,
                                        seed=9)
        self.torrent = os.path.join(self.dir, "payload.torrent")
        with open(self.torrent, "wb") as f:
            f.write(maketorrent.make_torrent([self.source], [self.url],
                                          piece_length=PIECE_LENGTH, workers=1))
        self.info_hash = metainfo.load(self.torrent).info_hash

    def wait_for_seeders(self, count: int) -> None:
        deadline = time.monotonic() + SEEDER_TIMEOUT
        while time.monotonic() < deadline:
            if self.server.store.scrape([self.info_hash]).get(self.info_hash, (0,))[0] >= count:
                return
            time.sleep(POLL)
        self.fail("the UDP tracker did not list %d seeder(s) within %.0f s"
                  % (count, SEEDER_TIMEOUT))

    def test_libtorrent_seed_and_download_find_each_other_over_udp(self):
        if not clients.have_libtorrent():
            self.skipTest(f"libtorrent is not importable by {clients.LT_PYTHON}")
        seed = clients.start(clients.lt_helper_cmd(
            "seed", self.torrent, "--data", self.data_dir, "--tracker-ok"), self)
        clients.wait_for_line(seed, "SEEDING", SEEDER_TIMEOUT)
        self.wait_for_seeders(1)
        out_dir = os.path.join(self.dir, "out")
        proc = clients.start(clients.lt_helper_cmd(
            "download", self.torrent, "--out", out_dir, "--timeout", str(DOWNLOAD_TIMEOUT)),
            self)
        self.assertEqual(clients.wait_exit(proc, DOWNLOAD_TIMEOUT + 30), 0, clients.output(proc))
        with open(self.source, "rb") as a, open(os.path.join(out_dir, "payload.bin"), "rb") as b:
            self.assertTrue(a.read() == b.read(), "downloaded file differs from the source")

    def test_aria2c_seed_announces_over_udp(self):
        if not clients.which("aria2c"):
            self.skipTest("aria2c is not installed")
        cmd = clients.aria2c_seed_cmd(self.torrent, self.data_dir, clients.free_port(),
                                      tracker=self.url)
        # aria2c speaks to UDP trackers through its DHT socket only: DHT on, with an empty
        # routing table of its own (no saved nodes, no entry point), so nothing leaves the host.
        cmd = [arg for arg in cmd[:-1] if arg != "--enable-dht=false"] + [
            "--enable-dht=true", "--dht-listen-port=%d" % clients.free_port(),
            "--dht-file-path=%s" % os.path.join(self.dir, "dht.dat"), cmd[-1]]
        seed = clients.start(cmd, self)
        clients.wait_for_line(seed, clients.ARIA2_LISTENING, SEEDER_TIMEOUT, anywhere=True)
        self.wait_for_seeders(1)
        peers = self.server.store.swarms[self.info_hash].peers.values()
        self.assertTrue(any(p.ip == "127.0.0.1" for p in peers))


if __name__ == "__main__":
    unittest.main()
