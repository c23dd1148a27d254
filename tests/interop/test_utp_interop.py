"""STA's uTP (BEP 29) against libtorrent's, each way, on 127.0.0.1, with libtorrent's TCP off
(lt_helper.py --utp-only), so the bytes can only have come over uTP. Skips with a reason when
libtorrent is not installed."""

from __future__ import annotations

import os
import unittest

from sta import metainfo
from tests import enginekit as kit
from tests.enginekit import WAIT
from tests.interop import clients

# One file over many pieces with an odd size: a few MiB, seconds over loopback uTP.
FILES = {"share/big.bin": 3 * 1024 * 1024 + 4321, "share/small.txt": 999}
PIECE_LENGTH = 64 * 1024


class UtpInteropTests(unittest.TestCase):
    def setUp(self) -> None:
        clients.need_libtorrent(self)
        self.tmp = kit.temp_dir(self)
        self.data = os.path.join(self.tmp, "data")
        self.out = os.path.join(self.tmp, "out")
        kit.make_tree(self.data, FILES, seed=29)
        self.torrent = os.path.join(self.tmp, "share.torrent")
        done = kit.run_sta("create", os.path.join(self.data, "share"), "-o", self.torrent,
                           "--piece-length", str(PIECE_LENGTH))
        self.assertEqual(done.returncode, 0, done.stderr.decode("utf-8", "replace"))

    def assertSameFiles(self) -> None:
        self.assertEqual(kit.tree_bytes(os.path.join(self.out, "share")),
                         kit.tree_bytes(os.path.join(self.data, "share")))

    def test_libtorrent_downloads_from_an_sta_seed_over_utp_only(self) -> None:
        seed = kit.StaProcess(self, "seed", self.torrent, "--data", self.data, "--port", "0")
        port = seed.listen_port()
        seed.wait_for(r"^Seeding share")

        lt = clients.start(clients.lt_helper_cmd("download", self.torrent, "--out", self.out,
                                                 "--peer", "127.0.0.1:%d" % port, "--utp-only",
                                                 "--timeout", WAIT), self)
        status = clients.wait_exit(lt, WAIT + 15)

        self.assertEqual(status, 0, clients.output(lt) + "\n" + seed.describe())
        self.assertSameFiles()

    def test_sta_downloads_from_a_libtorrent_seed_with_tcp_off(self) -> None:
        lt = clients.start(clients.lt_helper_cmd("seed", self.torrent, "--data", self.data,
                                                 "--utp-only"), self)
        port = int(clients.wait_for_line(lt, "LISTENING", WAIT).split()[1])
        clients.wait_for_line(lt, "SEEDING", WAIT)

        down = kit.download_to_end(self, self.torrent, self.out, [port], "--log-level", "info")

        self.assertSameFiles()
        self.assertIn("over utp", down.output)

    def test_libtorrent_forcing_rc4_downloads_over_utp_from_an_sta_seed_that_requires_it(self):
        seed = kit.StaProcess(self, "seed", self.torrent, "--data", self.data, "--port", "0",
                              "--encryption", "require")
        port = seed.listen_port()
        seed.wait_for(r"^Seeding share")

        lt = clients.start(clients.lt_helper_cmd("download", self.torrent, "--out", self.out,
                                                 "--peer", "127.0.0.1:%d" % port, "--utp-only",
                                                 "--encryption", "forced", "--timeout", WAIT),
                           self)
        status = clients.wait_exit(lt, WAIT + 15)

        self.assertEqual(status, 0, clients.output(lt) + "\n" + seed.describe())
        self.assertSameFiles()

    def test_sta_requiring_encryption_downloads_over_utp_from_libtorrent_forcing_rc4(self):
        lt = clients.start(clients.lt_helper_cmd("seed", self.torrent, "--data", self.data,
                                                 "--utp-only", "--encryption", "forced"), self)
        port = int(clients.wait_for_line(lt, "LISTENING", WAIT).split()[1])
        clients.wait_for_line(lt, "SEEDING", WAIT)
        # A node with TCP off dials uTP straight away, as it does a peer known to speak uTP.
        # (The command line tries TCP first, which libtorrent with TCP off accepts and closes;
        # on a loaded machine the uTP attempt that follows was once closed by libtorrent during
        # the MSE/PE handshake, and a node that requires encryption then gives the address up.)
        engine = kit.Engine(self)
        down = engine.node(metainfo.load(self.torrent), self.out, tcp=False,
                           encryption="require", peers=[("127.0.0.1", port)])

        engine.wait_until(lambda: down.complete, "the download over uTP with MSE/PE",
                          timeout=WAIT)
        self.assertSameFiles()

if __name__ == "__main__":
    unittest.main()
