"""The node in-process: real sessions on 127.0.0.1 and a saved list in a temporary STA_HOME,
restarted the way a person restarts the shell; the console writes into strings."""

from __future__ import annotations

import io
import os
import shutil
import unittest
from typing import Any, Dict, List

from sta import nodestate
from sta.console import Console
from sta.node import Node, NodeError, error_row, ratio, shown_folder
from sta.storage import FileStorage
from tests.enginekit import make_tree, poll_until, temp_dir, write_torrent

# A data check of a few hundred KiB takes milliseconds; the bound is for a loaded machine.
WAIT = 30.0


class NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


class NodeTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = temp_dir(self, "sta-node-")
        self.home = os.path.join(self.dir, "home")
        self.metas = {}
        for name in ("notes.bin", "other.bin"):
            folder = make_tree(os.path.join(self.dir, name + "-data"), {name: 300000})
            self.metas[name] = write_torrent(os.path.join(folder, name),
                                             os.path.join(self.dir, name + ".torrent"))

    def start(self) -> Node:
        console = Console(NotATerminal(), NotATerminal(), NotATerminal())
        console.start()
        self.addCleanup(console.stop)
        node = Node(console, port=0, host="127.0.0.1", state_dir=self.home)
        node.start()
        self.addCleanup(node.stop)
        return node

    def folder(self, name: str) -> str:
        return os.path.join(self.dir, name + "-data")

    def seed(self, node: Node, name: str) -> str:
        return node.add(self.metas[name], self.folder(name), seed_only=True, peers=(),
                        recheck=False, timeout=None)

    def run_once_seeding(self, name: str) -> None:
        """A node that seeds ``name`` and stops, leaving it in the saved list."""
        node = self.start()
        node.restore()
        self.seed(node, name)
        self.wait_states(node, ["seeding"])
        node.stop()

    def wait_states(self, node: Node, states: List[str]) -> List[Dict[str, Any]]:
        return poll_until(lambda: [r for r in [node.status_rows()]
                                   if [s["state"] for s in r] == states],
                          WAIT, f"states {states}")[0]

    def saved(self) -> List[nodestate.SavedTorrent]:
        """The list as it stands on disk (read past the lock the running node holds)."""
        path = os.path.join(self.home, nodestate.LIST_FILE)
        if not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            return nodestate.decode_list(f.read())

    def test_torrents_come_back_after_a_restart_paused_or_not_until_removed(self) -> None:
        first = self.start()
        self.assertEqual(first.restore(), "")
        self.assertIn("checking the data", self.seed(first, "notes.bin"))
        self.seed(first, "other.bin")
        self.wait_states(first, ["seeding", "seeding"])
        other, name = first.select(lambda entries: 1)
        self.assertEqual((other, name), (self.metas["other.bin"].info_hash, "other.bin"))
        self.assertEqual(first.pause(other), "seeding")
        first.stop()
        self.assertEqual([(e.name, e.paused, e.seed_only) for e in self.saved()],
                         [("notes.bin", False, True), ("other.bin", True, True)])

        second = self.start()
        self.assertEqual(second.restore(), "Re-adding 2 torrents from the last run (1 paused); "
                                           "'status' lists them")
        rows = self.wait_states(second, ["seeding", "paused"])
        self.assertEqual([(r["number"], r["name"]) for r in rows],
                         [(1, "notes.bin"), (2, "other.bin")])
        self.assertEqual(second.resume(other), ("paused", "seeding"))
        self.assertFalse(self.saved()[1].paused)
        notes = self.metas["notes.bin"].info_hash
        self.assertEqual(second.remove(notes), [])
        self.assertEqual([e.name for e in self.saved()], ["other.bin"])
        with self.assertRaisesRegex(NodeError, "already removed"):
            second.remove(notes)
        self.assertEqual(second.stats()["torrents"], 1)

    def test_missing_folder_is_an_error_row_that_resume_retries_and_remove_forgets(self) -> None:
        self.run_once_seeding("notes.bin")
        moved = self.folder("notes.bin") + "-away"
        os.rename(self.folder("notes.bin"), moved)

        second = self.start()
        self.assertIn("(1 whose folder is missing)", second.restore())
        (row,) = second.status_rows()
        self.assertEqual((row["state"], row["name"], row["size"]), ("error", "notes.bin", 300000))
        self.assertIn("is missing; 'resume' tries again", row["error"])
        key = self.metas["notes.bin"].info_hash
        self.assertEqual(second.resume(key), ("error", "error"))  # still gone
        os.rename(moved, self.folder("notes.bin"))
        self.assertEqual(second.resume(key), ("error", "checking"))
        self.wait_states(second, ["seeding"])
        second.stop()

        shutil.rmtree(self.folder("notes.bin"))
        third = self.start()
        self.assertIn("whose folder is missing", third.restore())
        self.assertEqual([r["state"] for r in third.status_rows()], ["error"])
        self.assertEqual(third.files(key)[0][0], os.path.join(shown_folder(
            self.folder("notes.bin")), "notes.bin"))
        self.assertEqual(third.remove(key, delete_files=True), [])
        self.assertEqual((third.status_rows(), self.saved()), ([], []))

    def test_seed_whose_resume_state_says_nothing_is_checked_in_full_once(self) -> None:
        self.run_once_seeding("notes.bin")
        # what a stop in the middle of the data check leaves: a resume state with no pieces
        storage = FileStorage(self.metas["notes.bin"].info, self.folder("notes.bin"),
                              readonly=True)
        storage.save()
        storage.close()
        self.assertEqual(FileStorage(self.metas["notes.bin"].info, self.folder("notes.bin"),
                                     readonly=True).restore().count, 0)
        second = self.start()
        second.restore()
        rows = self.wait_states(second, ["seeding"])
        self.assertEqual(rows[0]["have"], 300000)
        self.assertNotIn("none of the data", second.console.stderr.getvalue())

    def test_seed_typed_without_its_data_is_not_kept(self) -> None:
        node = self.start()
        node.restore()
        empty = os.path.join(self.dir, "empty")
        os.makedirs(empty)
        node.add(self.metas["notes.bin"], empty, seed_only=True, peers=(), recheck=False,
                 timeout=None)
        poll_until(lambda: "none of the data was found" in node.console.stderr.getvalue(),
                   WAIT, "the notice")
        poll_until(lambda: node.status_rows() == [], WAIT, "the torrent gone")
        self.assertEqual(self.saved(), [])

    def test_adding_a_torrent_twice_is_refused_with_its_number(self) -> None:
        node = self.start()
        node.restore()
        self.seed(node, "notes.bin")
        with self.assertRaisesRegex(NodeError, r"already in this session \(number 1"):
            self.seed(node, "notes.bin")

    def test_second_node_on_the_same_home_warns_and_does_not_write(self) -> None:
        first = self.start()
        first.restore()
        self.seed(first, "notes.bin")
        second = self.start()
        self.assertEqual(second.restore(), "")
        self.assertIn("another STA node uses", second.console.stderr.getvalue())
        self.assertEqual(len(self.saved()), 1)


class RowTest(unittest.TestCase):
    def test_error_row_has_every_key_of_a_torrent_status(self) -> None:
        entry = nodestate.SavedTorrent(b"\x01" * 20, "gone.bin", 5, "/x", magnet="magnet:?")
        row = error_row(entry, "its folder is missing")
        self.assertEqual(set(row), {"name", "info_hash", "state", "size", "have", "progress",
                                    "down_rate", "up_rate", "downloaded", "uploaded", "peers",
                                    "seeds", "eta", "error"})
        self.assertEqual((row["state"], row["info_hash"]), ("error", "01" * 20))

    def test_ratio_uses_data_held_when_nothing_was_downloaded(self) -> None:
        self.assertEqual(ratio(200, 100, 100), 2.0)
        self.assertEqual(ratio(50, 0, 100), 0.5)
        self.assertEqual(ratio(0, 0, 0), 0.0)

    def test_shown_folder_is_relative_below_here_and_absolute_elsewhere(self) -> None:
        here = os.getcwd()
        self.assertEqual(shown_folder(os.path.join(here, "dl", "x")), os.path.join("dl", "x"))
        outside = os.path.dirname(here)
        self.assertEqual(shown_folder(outside), outside)


if __name__ == "__main__":
    unittest.main()
