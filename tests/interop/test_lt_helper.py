"""Self-test of the libtorrent driver the interop tests build on: if this fails, the failure of an
interop test says nothing about STA."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import tempfile
import unittest

from tests.interop import clients

# Deadlines for a 300 KB transfer on loopback, which takes well under a second; generous so that
# a loaded machine does not fail the test, bounded so that a hung client does.
STEP_TIMEOUT = 30.0
FILE_SIZE = 300_000
PIECE_LENGTH = 32768


def run_helper(*args: str) -> str:
    done = subprocess.run(clients.lt_helper_cmd(*args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=STEP_TIMEOUT)
    if done.returncode != 0:
        raise AssertionError("lt_helper %s failed: %s"
                             % (args[0], done.stderr.decode(errors="replace")))
    return done.stdout.decode()


@unittest.skipUnless(clients.have_libtorrent(),
                     "libtorrent is not importable by %s" % clients.LT_PYTHON)
class LtHelperTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.seed_dir = os.path.join(self.dir, "seed")
        self.data = clients.make_file(os.path.join(self.seed_dir, "data.bin"), FILE_SIZE, seed=7)
        self.torrent = os.path.join(self.dir, "data.torrent")
        run_helper("create", self.data, "--out", self.torrent,
                   "--piece-length", str(PIECE_LENGTH),
                   "--tracker", "http://127.0.0.1:1/announce")

    def start_seed(self, *torrents: str) -> int:
        seed = clients.start(clients.lt_helper_cmd("seed", *(torrents or [self.torrent]),
                                                   "--data", self.seed_dir), self)
        port = int(clients.wait_for_line(seed, "LISTENING ", STEP_TIMEOUT).split()[1])
        clients.wait_for_line(seed, "SEEDING", STEP_TIMEOUT)
        return port

    def download(self, out: str, *source: str, port: int) -> None:
        dl = clients.start(clients.lt_helper_cmd("download", *source, "--out", out,
                                                 "--peer", "127.0.0.1:%d" % port,
                                                 "--timeout", str(STEP_TIMEOUT)), self)
        clients.wait_for_line(dl, "DONE ", STEP_TIMEOUT + 5)
        self.assertEqual(clients.wait_exit(dl, STEP_TIMEOUT), 0, clients.output(dl))

    def test_info_describes_created_torrent(self) -> None:
        info = clients.lt_info(self.torrent)
        self.assertEqual(len(info["info_hash"]), 40)
        self.assertEqual(info["name"], "data.bin")
        self.assertEqual(info["total_size"], FILE_SIZE)
        self.assertEqual(info["piece_length"], PIECE_LENGTH)
        self.assertEqual(info["num_pieces"], -(-FILE_SIZE // PIECE_LENGTH))
        self.assertEqual(len(info["piece_hashes"]), info["num_pieces"])
        self.assertEqual(info["files"], [{"path": "data.bin", "size": FILE_SIZE}])
        self.assertEqual(info["trackers"], ["http://127.0.0.1:1/announce"])

    def test_magnet_round_trip_keeps_hash_name_and_tracker(self) -> None:
        info = clients.lt_info(self.torrent)
        uri = run_helper("make-magnet", self.torrent).strip()
        self.assertTrue(uri.startswith("magnet:?xt=urn:btih:"), uri)
        parsed = json.loads(run_helper("parse-magnet", uri + "&x.pe=127.0.0.1:6881"))
        self.assertEqual(parsed["info_hash"], info["info_hash"])
        self.assertEqual(parsed["name"], "data.bin")
        self.assertEqual(parsed["trackers"], info["trackers"])
        self.assertEqual(parsed["peers"], ["127.0.0.1:6881"])

    def test_seed_to_download_via_peer_flag(self) -> None:
        port = self.start_seed()
        out = os.path.join(self.dir, "out")
        self.download(out, self.torrent, port=port)
        self.assertTrue(filecmp.cmp(self.data, os.path.join(out, "data.bin"), shallow=False))

    def test_one_seed_and_one_download_move_several_torrents(self) -> None:
        other = clients.make_file(os.path.join(self.seed_dir, "other.bin"), FILE_SIZE // 2,
                                  seed=9)
        other_torrent = os.path.join(self.dir, "other.torrent")
        run_helper("create", other, "--out", other_torrent, "--piece-length", str(PIECE_LENGTH))
        port = self.start_seed(self.torrent, other_torrent)
        out = os.path.join(self.dir, "out")
        self.download(out, self.torrent, other_torrent, port=port)
        for path in (self.data, other):
            self.assertTrue(filecmp.cmp(path, os.path.join(out, os.path.basename(path)),
                                        shallow=False), path)

    def test_magnet_download_fetches_metadata_from_seed(self) -> None:
        port = self.start_seed()
        uri = run_helper("make-magnet", self.torrent).strip()
        out = os.path.join(self.dir, "out")
        self.download(out, "--magnet", uri, port=port)
        self.assertTrue(filecmp.cmp(self.data, os.path.join(out, "data.bin"), shallow=False))

    def test_seed_refuses_data_that_does_not_match(self) -> None:
        wrong = os.path.join(self.dir, "wrong")
        clients.make_file(os.path.join(wrong, "data.bin"), FILE_SIZE, seed=8)
        seed = clients.start(clients.lt_helper_cmd("seed", self.torrent, "--data", wrong), self)
        self.assertEqual(clients.wait_exit(seed, STEP_TIMEOUT), 1)
        self.assertIn("does not match", "\n".join(seed.stderr_tail))

    def test_download_times_out_without_peers(self) -> None:
        dl = clients.start(clients.lt_helper_cmd("download", self.torrent,
                                                 "--out", os.path.join(self.dir, "out"),
                                                 "--timeout", "1"), self)
        clients.wait_for_line(dl, "PROGRESS ", STEP_TIMEOUT)
        self.assertEqual(clients.wait_exit(dl, STEP_TIMEOUT), 1)
        self.assertIn("timed out", "\n".join(dl.stderr_tail))


class MakeFileTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name

    def test_make_file_is_deterministic(self) -> None:
        a = clients.make_file(os.path.join(self.dir, "a"), 100_000, seed=3)
        b = clients.make_file(os.path.join(self.dir, "b"), 100_000, seed=3)
        c = clients.make_file(os.path.join(self.dir, "c"), 100_000, seed=4)
        self.assertTrue(filecmp.cmp(a, b, shallow=False))
        self.assertFalse(filecmp.cmp(a, c, shallow=False))
        self.assertEqual(os.path.getsize(a), 100_000)


if __name__ == "__main__":
    unittest.main()
