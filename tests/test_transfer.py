"""The `seed` and `download` runner (transfer.py): what it adds, when it announces, how it ends.

Commands run as real `sta.py` processes against an in-process tracker on 127.0.0.1, so what the
tracker saw can be read directly.
"""

from __future__ import annotations

import os
import unittest

from tests import enginekit as kit
from tests.enginekit import WAIT


class SeedWithoutDataTests(unittest.TestCase):

    def setUp(self):
        self.tmp = kit.temp_dir(self)
        self.tracker, self.url = kit.start_tracker(self, self.tmp)
        data = os.path.join(self.tmp, "data")
        kit.make_tree(data, {"notes.bin": 200000}, seed=31)
        self.torrent = os.path.join(self.tmp, "notes.torrent")
        self.meta = kit.write_torrent(os.path.join(data, "notes.bin"), self.torrent,
                                      trackers=[self.url], piece_length=32 * 1024)
        self.empty = os.path.join(self.tmp, "elsewhere")
        os.makedirs(self.empty)

    def test_seed_started_in_the_wrong_folder_fails_once_and_never_reaches_the_tracker(self):
        seed = kit.StaProcess(self, "seed", self.torrent, "--data", self.empty, "--port", "0")
        status = seed.wait_exit(WAIT)

        self.assertEqual(status, 1, seed.describe())
        errors = [line for line in seed.output.splitlines() if line.startswith("sta: error:")]
        self.assertEqual(len(errors), 1, seed.output)
        self.assertIn("none of the data of notes.bin is in", errors[0])
        self.assertIn("--data", errors[0])
        self.assertNotIn("seeding those", seed.output)
        self.assertNotIn("Traceback", seed.output)
        swarm = self.tracker.store.scrape([self.meta.info_hash]).get(self.meta.info_hash)
        self.assertIn(swarm, (None, (0, 0, 0)),
                      "the tracker heard of a seed that never stayed: %r" % (swarm,))

    def test_seed_with_its_data_is_announced_once_checked(self):
        data = os.path.join(self.tmp, "data")
        seed = kit.StaProcess(self, "seed", self.torrent, "--data", data, "--port", "0")
        seed.wait_for(r"^Seeding notes\.bin")
        kit.wait_for_swarm(self.tracker, self.meta.info_hash, seeders=1)
        seed.stop()


class OverlapTests(unittest.TestCase):

    def test_two_torrents_claiming_the_same_file_are_refused_before_any_byte_is_written(self):
        tmp = kit.temp_dir(self)
        first, second = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        kit.make_tree(first, {"same.bin": 100000}, seed=41)
        kit.make_tree(second, {"same.bin": 120000}, seed=42)
        t1, t2 = os.path.join(tmp, "1.torrent"), os.path.join(tmp, "2.torrent")
        kit.write_torrent(os.path.join(first, "same.bin"), t1, piece_length=32 * 1024)
        kit.write_torrent(os.path.join(second, "same.bin"), t2, piece_length=32 * 1024)
        out = os.path.join(tmp, "out")

        down = kit.StaProcess(self, "download", t1, t2, "-o", out, "--port", "0",
                              "--timeout", "5")
        status = down.wait_exit(WAIT)

        self.assertEqual(status, 1, down.describe())
        self.assertRegex(down.output, r"sta: error: same\.bin would use .*same\.bin, which "
                                      r"same\.bin already uses")
        self.assertNotIn("Traceback", down.output)


if __name__ == "__main__":
    unittest.main()
