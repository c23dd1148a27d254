"""Magnet links between STA and real clients, on 127.0.0.1.

libtorrent downloads from an STA seed and an STA download fetches from a libtorrent seed, each
given nothing but a magnet link holding the info hash and the other side's address (`x.pe`): the
info dictionary has to travel over ut_metadata (BEP 9) before any piece does. aria2c serves
ut_metadata for a torrent it seeds (it answers requests from the dictionary it loaded), so
`sta.py info MAGNET --fetch --peer` gets the metadata from an aria2c seed dialled directly at its
--listen-port. Each test skips with a reason when its client is not installed.
"""

from __future__ import annotations

import os
import unittest
from unittest import mock

from sta import metainfo
from tests import enginekit as kit
from tests.interop import clients

# One file of a few MiB with an odd size, in 64 KiB pieces: seconds on loopback, dozens of pieces.
FILE_NAME = "magnet.bin"
FILE_SIZE = 3 * 1024 * 1024 + 777
PIECE_LENGTH = 64 * 1024
# Deadline of one transfer; it takes a second or two when the machine is idle.
TRANSFER_TIMEOUT = 30.0
# Deadline for a client to start listening (aria2c checks the data first).
START_TIMEOUT = 30.0


def peer_magnet(info_hash: bytes, port: int) -> str:
    """A magnet with the info hash and one peer address, nothing else."""
    return "magnet:?xt=urn:btih:%s&x.pe=127.0.0.1:%d" % (info_hash.hex(), port)


class MagnetInteropTests(unittest.TestCase):
    def setUp(self):
        self.tmp = kit.temp_dir(self)
        home = os.path.join(self.tmp, "home")
        os.makedirs(home)
        patcher = mock.patch.dict(os.environ, {"STA_HOME": home})  # inherited by STA processes
        patcher.start()
        self.addCleanup(patcher.stop)
        self.data = os.path.join(self.tmp, "data")
        self.out = os.path.join(self.tmp, "out")
        kit.make_tree(self.data, {FILE_NAME: FILE_SIZE}, seed=30)
        self.torrent = os.path.join(self.tmp, "magnet.torrent")
        self.meta = kit.write_torrent(os.path.join(self.data, FILE_NAME), self.torrent,
                                      piece_length=PIECE_LENGTH)

    def assert_same_file(self):
        got = os.path.join(self.out, FILE_NAME)
        self.assertTrue(os.path.isfile(got), "%s was not written" % got)
        with open(got, "rb") as a, open(os.path.join(self.data, FILE_NAME), "rb") as b:
            self.assertTrue(a.read() == b.read(), "the downloaded file differs from the original")

    def test_libtorrent_downloads_from_an_sta_seed_given_only_a_magnet(self):
        clients.need_libtorrent(self)
        seed = kit.StaProcess(self, "seed", self.torrent, "--data", self.data, "--port", "0")
        port = seed.listen_port()
        seed.wait_for(r"^Seeding ")

        down = clients.start(clients.lt_helper_cmd(
            "download", "--magnet", peer_magnet(self.meta.info_hash, port), "--out", self.out,
            "--timeout", "%g" % TRANSFER_TIMEOUT), self)
        status = clients.wait_exit(down, TRANSFER_TIMEOUT + 15)

        self.assertEqual(status, 0, clients.output(down) + "\nSTA seed:\n" + seed.describe())
        self.assert_same_file()
        self.assertNotIn("Traceback", seed.output)

    def test_sta_downloads_from_a_libtorrent_seed_given_only_a_magnet(self):
        clients.need_libtorrent(self)
        seed = clients.start(clients.lt_helper_cmd(
            "seed", self.torrent, "--data", self.data, "--port", "0"), self)
        port = int(clients.wait_for_line(seed, "LISTENING", START_TIMEOUT).split()[1])

        down = kit.StaProcess(self, "download", peer_magnet(self.meta.info_hash, port),
                              "-o", self.out, "--port", "0", "--timeout", "%g" % TRANSFER_TIMEOUT)
        status = down.wait_exit(TRANSFER_TIMEOUT + 15)

        self.assertEqual(status, 0, down.describe() + "\nlibtorrent seed:\n"
                         + clients.output(seed))
        self.assertNotIn("Traceback", down.output)
        self.assert_same_file()
        saved = os.path.join(self.out, ".sta", self.meta.info_hash.hex() + ".torrent")
        self.assertEqual(metainfo.load(saved).info.raw, self.meta.info.raw)

    def test_sta_fetches_metadata_from_an_aria2c_seed(self):
        clients.need_aria2c(self)
        port = clients.free_port()
        seed = clients.start(clients.aria2c_seed_cmd(self.torrent, self.data, port), self)
        clients.wait_for_line(seed, clients.ARIA2_LISTENING, START_TIMEOUT, anywhere=True)
        saved = os.path.join(self.tmp, "fetched.torrent")
        link = "magnet:?xt=urn:btih:%s" % self.meta.info_hash.hex()

        done = kit.run_sta("info", link, "--fetch", "--peer", "127.0.0.1:%d" % port,
                           "-o", saved, "--timeout", "%g" % TRANSFER_TIMEOUT,
                           timeout=TRANSFER_TIMEOUT + 15)

        self.assertEqual(done.returncode, 0, done.stderr.decode("utf-8", "replace")
                         + "\naria2c:\n" + clients.output(seed))
        self.assertIn(self.meta.info_hash.hex(), done.stdout.decode())
        self.assertEqual(metainfo.load(saved).info.raw, self.meta.info.raw)


if __name__ == "__main__":
    unittest.main()
