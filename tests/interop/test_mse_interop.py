"""MSE/PE against real clients that insist on it, both directions.

libtorrent runs with encryption forced (in_enc_policy = out_enc_policy = pe_forced,
allowed_enc_level = rc4: qBittorrent's "require encryption"), so it takes and makes MSE/PE
connections with the RC4 stream only and refuses everything else: a finished transfer is proof
that STA spoke MSE/PE with RC4 throughout. aria2c runs with --bt-require-crypto=true
--bt-min-crypto-level=arc4, the same for aria2, and learns peers from STA's tracker. Each test
skips with the reason when its client is absent.
"""

from __future__ import annotations

import os
import re
import unittest

from tests import enginekit as kit
from tests.enginekit import WAIT
from tests.interop import clients

MiB = 1 << 20
# 3 MiB plus an odd tail in 64 KiB pieces: a few seconds of pure-Python RC4 each way.
FILE_SIZE = 3 * MiB + 4321
PIECE_LENGTH = 64 * 1024
FILE_NAME = "share.bin"


class MseInteropTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = kit.temp_dir(self)
        self.data_dir = os.path.join(self.tmp, "data")
        self.out = os.path.join(self.tmp, "out")
        self.path = clients.make_file(os.path.join(self.data_dir, FILE_NAME), FILE_SIZE, seed=91)
        with open(self.path, "rb") as f:
            self.data = f.read()
        self.torrent = os.path.join(self.tmp, "share.torrent")

    def make_torrent(self, trackers=()) -> None:
        self.meta = kit.write_torrent(self.path, self.torrent, list(trackers), PIECE_LENGTH)

    def sta_seed(self, encryption: str) -> kit.StaProcess:
        seed = kit.StaProcess(self, "seed", self.torrent, "--data", self.data_dir, "--port",
                              "0", "--encryption", encryption, "--log-level", "info")
        self.sta_port = seed.listen_port()
        seed.wait_for(r"^Seeding %s" % FILE_NAME)
        return seed

    def sta_download(self, encryption: str, *peers: int) -> kit.StaProcess:
        return kit.download_to_end(self, self.torrent, self.out, peers, "--encryption",
                                   encryption, "--log-level", "info")

    def assertDownloaded(self) -> None:
        self.assertEqual(kit.read_file(os.path.join(self.out, FILE_NAME)), self.data)


class LibtorrentForcedTests(MseInteropTestCase):
    def setUp(self) -> None:
        clients.need_libtorrent(self)
        super().setUp()
        self.make_torrent()

    def lt_seed(self) -> int:
        lt = clients.start(clients.lt_helper_cmd("seed", self.torrent, "--data", self.data_dir,
                                                 "--encryption", "forced"), self)
        port = int(clients.wait_for_line(lt, "LISTENING", WAIT).split()[1])
        clients.wait_for_line(lt, "SEEDING", WAIT)
        return port

    def test_sta_require_downloads_from_libtorrent_with_forced_rc4(self):
        port = self.lt_seed()

        down = self.sta_download("require", port)

        self.assertDownloaded()
        self.assertRegex(down.output, r"from 127\.0\.0\.1:%d: " % port)
        self.assertNotIn("retrying in plain", down.output)

    def test_sta_prefer_reaches_libtorrent_with_forced_rc4_after_one_tls_attempt(self):
        port = self.lt_seed()

        down = self.sta_download("prefer", port)

        self.assertDownloaded()
        self.assertEqual(len(re.findall(r"closed: encrypted link failed: .*; retrying with "
                                        r"MSE/PE", down.output)), 1, down.describe())
        self.assertNotIn("retrying in plain", down.output)

    def lt_download_from_sta(self, encryption: str) -> None:
        seed = self.sta_seed(encryption)
        lt = clients.start(clients.lt_helper_cmd("download", self.torrent, "--out", self.out,
                                                 "--peer", "127.0.0.1:%d" % self.sta_port,
                                                 "--encryption", "forced", "--timeout", WAIT),
                           self)
        status = clients.wait_exit(lt, WAIT + 15)
        self.assertEqual(status, 0, clients.output(lt) + "\n" + seed.describe())
        self.assertDownloaded()
        self.assertNotIn("Traceback", seed.output)

    def test_libtorrent_with_forced_rc4_downloads_from_an_sta_seed_that_prefers(self):
        self.lt_download_from_sta("prefer")

    def test_libtorrent_with_forced_rc4_downloads_from_an_sta_seed_that_requires(self):
        self.lt_download_from_sta("require")


class Aria2RequireCryptoTests(MseInteropTestCase):
    def setUp(self) -> None:
        clients.need_aria2c(self)
        super().setUp()
        self.server, self.announce = kit.start_tracker(self, self.tmp)
        self.make_torrent([self.announce])

    def test_aria2c_requiring_rc4_downloads_from_an_sta_seed(self):
        seed = self.sta_seed("prefer")
        kit.wait_for_swarm(self.server, self.meta.info_hash, seeders=1)

        aria2 = clients.start(clients.aria2c_download_cmd(
            self.torrent, self.out, clients.free_port(), tracker=self.announce,
            require_crypto=True), self)
        status = clients.wait_exit(aria2, WAIT)

        self.assertEqual(status, 0, clients.output(aria2) + "\n" + seed.describe())
        self.assertDownloaded()

    def test_sta_downloads_from_an_aria2c_seed_requiring_rc4(self):
        aria2 = clients.start(clients.aria2c_seed_cmd(
            self.torrent, self.data_dir, clients.free_port(), tracker=self.announce,
            require_crypto=True), self)
        clients.wait_for_line(aria2, clients.ARIA2_LISTENING, WAIT, anywhere=True)
        kit.wait_for_swarm(self.server, self.meta.info_hash, seeders=1)

        # `prefer`: `require` would not announce to an http:// tracker. aria2c takes nothing
        # but MSE/PE with RC4, so the download is still RC4 throughout.
        down = self.sta_download("prefer")

        self.assertDownloaded()
        self.assertRegex(down.output, r"from 127\.0\.0\.1:\d+: ")


if __name__ == "__main__":
    unittest.main()
