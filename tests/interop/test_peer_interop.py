"""STA's peer engine against real clients: aria2c and libtorrent, each way, on 127.0.0.1.

aria2c learns peers only from a tracker, so the tests with aria2c run STA's tracker in this
process and make the torrent with `sta.py create -t http://127.0.0.1:PORT/announce`; libtorrent
is given the peer directly (lt_helper.py --peer). Each test skips with a reason when its client is
not installed.
"""

from __future__ import annotations

import os
import unittest

from tests import enginekit as kit
from tests.enginekit import WAIT
from tests.interop import clients

# A folder of three files: one over many pieces with an odd size, one smaller than a piece, one
# in a subfolder. A few MiB: seconds on loopback, enough for pipelining and many pieces.
FILES = {
    "share/big.bin": 3 * 1024 * 1024 + 4321,
    "share/small.txt": 999,
    "share/sub/mid.bin": 200000,
}
PIECE_LENGTH = 64 * 1024


class PeerInteropTests(unittest.TestCase):
    def setUp(self):
        self.tmp = kit.temp_dir(self)
        self.data = os.path.join(self.tmp, "data")
        self.out = os.path.join(self.tmp, "out")
        kit.make_tree(self.data, FILES, seed=20)

    def create(self, tracker=None):
        """A .torrent of the shared folder, made by `sta.py create`; returns its path."""
        path = os.path.join(self.tmp, "share.torrent")
        args = ["create", os.path.join(self.data, "share"), "-o", path,
                "--piece-length", str(PIECE_LENGTH)]
        if tracker:
            args += ["-t", tracker]
        done = kit.run_sta(*args)
        self.assertEqual(done.returncode, 0, done.stderr.decode("utf-8", "replace"))
        return path

    def info_hash(self, torrent):
        from sta import metainfo
        return metainfo.load(torrent).info_hash

    def assertSameFiles(self):
        self.assertEqual(kit.tree_bytes(os.path.join(self.out, "share")),
                         kit.tree_bytes(os.path.join(self.data, "share")))

    def sta_seed(self, torrent):
        seed = kit.StaProcess(self, "seed", torrent, "--data", self.data, "--port", "0")
        port = seed.listen_port()
        seed.wait_for(r"^Seeding share")
        return seed, port

    def sta_download(self, torrent, *peers):
        return kit.download_to_end(self, torrent, self.out, peers)

    def test_aria2c_downloads_from_an_sta_seed_found_through_the_sta_tracker(self):
        clients.need_aria2c(self)
        server, announce = kit.start_tracker(self, self.tmp)
        torrent = self.create(tracker=announce)
        seed, _ = self.sta_seed(torrent)
        kit.wait_for_swarm(server, self.info_hash(torrent), seeders=1)

        aria2 = clients.start(clients.aria2c_download_cmd(torrent, self.out, clients.free_port(),
                                                          tracker=announce), self)
        status = clients.wait_exit(aria2, WAIT)

        self.assertEqual(status, 0, clients.output(aria2) + "\n" + seed.describe())
        self.assertSameFiles()

    def test_sta_downloads_from_an_aria2c_seed_found_through_the_sta_tracker(self):
        clients.need_aria2c(self)
        server, announce = kit.start_tracker(self, self.tmp)
        torrent = self.create(tracker=announce)
        aria2 = clients.start(clients.aria2c_seed_cmd(torrent, self.data, clients.free_port(),
                                                      tracker=announce), self)
        clients.wait_for_line(aria2, clients.ARIA2_LISTENING, WAIT, anywhere=True)
        kit.wait_for_swarm(server, self.info_hash(torrent), seeders=1)

        down = self.sta_download(torrent)

        self.assertSameFiles()
        self.assertRegex(down.output, r"from 127\.0\.0\.1:\d+: ")

    def test_sta_downloads_from_a_libtorrent_seed(self):
        clients.need_libtorrent(self)
        torrent = self.create()
        lt = clients.start(clients.lt_helper_cmd("seed", torrent, "--data", self.data), self)
        port = int(clients.wait_for_line(lt, "LISTENING", WAIT).split()[1])
        clients.wait_for_line(lt, "SEEDING", WAIT)

        down = self.sta_download(torrent, port)

        self.assertSameFiles()
        self.assertRegex(down.output, r"from 127\.0\.0\.1:%d: " % port)

    def test_libtorrent_downloads_from_an_sta_seed(self):
        clients.need_libtorrent(self)
        torrent = self.create()
        seed, port = self.sta_seed(torrent)

        lt = clients.start(clients.lt_helper_cmd("download", torrent, "--out", self.out,
                                                 "--peer", "127.0.0.1:%d" % port,
                                                 "--timeout", WAIT), self)
        status = clients.wait_exit(lt, WAIT + 15)

        self.assertEqual(status, 0, clients.output(lt) + "\n" + seed.describe())
        self.assertTrue(any(line.startswith("DONE") for line in lt.stdout_tail),
                        clients.output(lt))
        self.assertSameFiles()


if __name__ == "__main__":
    unittest.main()
