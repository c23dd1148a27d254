"""STA's encryption policies against a client that cannot speak TLS: libtorrent.

libtorrent reads STA's TLS ClientHello as the start of an MSE/PE key exchange (or drops it), so
the TLS attempt fails. With `prefer` STA reconnects with MSE/PE and downloads; against a
libtorrent that takes plain BitTorrent only, `require` refuses, says why in its log, and gives
up at --timeout. (MSE/PE against libtorrent in depth: test_mse_interop.py.) Skips when
libtorrent's Python bindings are absent.
"""

from __future__ import annotations

import os
import tempfile
import unittest
from typing import Optional
from unittest import mock

from sta import tls
from tests import enginekit as kit
from tests.enginekit import WAIT
from tests.interop import clients

MiB = 1 << 20
# 2 MiB in 64 KiB pieces: about a second on loopback.
FILE_SIZE = 2 * MiB
PIECE_LENGTH = 64 * 1024
FILE_NAME = "share.bin"
# A `require` downloader needs a second attempt to log that it will not go plain: the first
# attempt fails, and swarm.py dials an address again RECONNECT_BASE (5 s) later.
REQUIRE_TIMEOUT = 10

_home: Optional[tempfile.TemporaryDirectory] = None


def setUpModule() -> None:
    global _home
    _home = tempfile.TemporaryDirectory(prefix="sta-enc-interop-")
    tls.ensure_node_identity(_home.name)  # the key the STA nodes share, made once


def tearDownModule() -> None:
    if _home is not None:
        _home.cleanup()


class LibtorrentPolicyTests(unittest.TestCase):
    def setUp(self) -> None:
        if not clients.have_libtorrent():
            self.skipTest("libtorrent's Python bindings do not import under %s"
                          % clients.LT_PYTHON)
        patcher = mock.patch.dict(os.environ, {"STA_HOME": _home.name})
        patcher.start()
        self.addCleanup(patcher.stop)
        tmp = kit.temp_dir(self)
        self.data_dir = os.path.join(tmp, "data")
        self.out = os.path.join(tmp, "out")
        path = clients.make_file(os.path.join(self.data_dir, FILE_NAME), FILE_SIZE, seed=78)
        self.torrent = os.path.join(tmp, "share.torrent")
        kit.write_torrent(path, self.torrent, (), PIECE_LENGTH)
        with open(path, "rb") as f:
            self.data = f.read()

    def lt_seed(self, encryption: str = "enabled") -> None:
        lt = clients.start(clients.lt_helper_cmd("seed", self.torrent, "--data", self.data_dir,
                                                 "--encryption", encryption), self)
        self.lt_port = int(clients.wait_for_line(lt, "LISTENING", WAIT).split()[1])
        clients.wait_for_line(lt, "SEEDING", WAIT)

    def download(self, encryption: str, timeout: float) -> kit.StaProcess:
        return kit.StaProcess(self, "download", self.torrent, "-o", self.out, "--port", "0",
                              "--peer", "127.0.0.1:%d" % self.lt_port, "--encryption",
                              encryption, "--timeout", str(timeout), "--log-level", "info")

    def test_prefer_downloads_from_libtorrent_with_mse_after_the_tls_attempt(self):
        self.lt_seed()
        down = self.download("prefer", WAIT)

        status = down.wait_exit(WAIT + 15)

        self.assertEqual(status, 0, down.describe())
        self.assertEqual(kit.read_file(os.path.join(self.out, FILE_NAME)), self.data)
        self.assertRegex(down.output, r"127\.0\.0\.1:%d closed: encrypted link failed: .*; "
                                      r"retrying with MSE/PE" % self.lt_port)
        self.assertNotIn("retrying in plain", down.output)
        self.assertRegex(down.output, r"from 127\.0\.0\.1:%d: " % self.lt_port)
        self.assertNotIn("Traceback", down.output)

    def test_require_refuses_a_plain_only_libtorrent_and_says_why(self):
        self.lt_seed("disabled")
        down = self.download("require", REQUIRE_TIMEOUT)

        down.wait_for(r"127\.0\.0\.1:%d closed: encrypted link failed" % self.lt_port)
        down.wait_for(r"not connecting to 127\.0\.0\.1:%d: it speaks only plain BitTorrent and "
                      r"encryption is required" % self.lt_port)
        status = down.wait_exit(REQUIRE_TIMEOUT + WAIT)

        self.assertEqual(status, 1, down.describe())
        self.assertEqual(len([l for l in down.all_lines if l.startswith("timed out after")]), 1,
                         down.describe())
        self.assertRegex(down.output, r"downloaded 0 B")
        self.assertNotIn("retrying in plain", down.output)
        self.assertNotIn("Traceback", down.output)
        self.assertEqual(kit.read_file(os.path.join(self.out, FILE_NAME)).strip(b"\0"), b"")


if __name__ == "__main__":
    unittest.main()
