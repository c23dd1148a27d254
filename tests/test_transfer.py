"""The `seed` and `download` runner (transfer.py): what it adds, when it announces, how it ends.

Commands run as real `sta.py` processes against an in-process tracker on 127.0.0.1, so what the
tracker saw can be read directly.
"""

from __future__ import annotations

import asyncio
import os
import unittest
from types import SimpleNamespace
from typing import Any, List
from unittest import mock

from sta import transfer

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


class ConcurrentChecksTests(unittest.TestCase):
    """Torrents are checked CHECKS_AT_ONCE at a time, and come back in the order given."""

    def add_all(self, names: List[str], fail: str = "") -> Any:
        running, most, started = [0], [0], []

        async def fake_add(session: Any, meta: Any, folder: str, **kw: Any) -> Any:
            started.append(meta.info.name)
            running[0] += 1
            most[0] = max(most[0], running[0])
            try:
                await asyncio.sleep(0.01 if meta.info.name != "a" else 0.03)  # the first is slowest
                if meta.info.name == fail:
                    raise transfer.TransferError(f"{fail} is broken")
                return meta.info.name
            finally:
                running[0] -= 1

        metas = [SimpleNamespace(info=SimpleNamespace(name=n)) for n in names]
        options = transfer.TransferOptions(sources=names, folder="out")

        async def run() -> Any:
            with mock.patch.object(transfer, "add_torrent", fake_add):
                return await asyncio.wait_for(transfer._add_all(None, metas, options, None), 10)
        return asyncio.run(run()), most[0], started

    def test_ten_torrents_are_checked_a_few_at_a_time_and_kept_in_order(self):
        names = ["a"] + ["t%d" % n for n in range(9)]
        added, most, started = self.add_all(names)
        self.assertEqual(added, names)
        self.assertEqual(most, transfer.CHECKS_AT_ONCE)
        self.assertEqual(sorted(started), sorted(names))

    def test_one_failed_check_ends_the_start_with_its_error(self):
        names = ["a"] + ["t%d" % n for n in range(9)]
        with self.assertRaisesRegex(transfer.TransferError, "t2 is broken"):
            self.add_all(names, fail="t2")
