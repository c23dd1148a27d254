"""The node's saved list of torrents: entries, the file format, damaged files and the lock."""

from __future__ import annotations

import os
import tempfile
import unittest

from sta import bencode, magnet, maketorrent, metainfo, nodestate
from sta.nodestate import NodeStateError, SavedList


def make_meta(folder: str, name: str = "notes.bin") -> metainfo.Metainfo:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(os.urandom(40000))
    return metainfo.parse(maketorrent.make_torrent(
        [path], ["http://127.0.0.1:1/announce"], comment="kept"))


class NodeStateTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.meta = make_meta(self.dir)

    def open(self) -> SavedList:
        saved, warnings = SavedList.open(self.dir)
        self.addCleanup(saved.close)
        self.assertEqual(warnings, [])
        return saved

    def test_entry_keeps_a_torrent_copy_with_its_info_hash_and_an_absolute_folder(self) -> None:
        entry = nodestate.entry_for(self.meta, "dl", seed_only=True, peers=[("127.0.0.1", 7)])
        again = entry.source()
        self.assertEqual(again.info_hash, self.meta.info_hash)
        self.assertEqual((again.trackers, again.comment), (self.meta.trackers, "kept"))
        self.assertEqual(entry.folder, os.path.abspath("dl"))
        self.assertEqual((entry.name, entry.size, entry.seed_only), ("notes.bin", 40000, True))

    def test_magnet_entry_keeps_the_link_and_becomes_a_torrent_with_the_metadata(self) -> None:
        link = self.meta.magnet()
        entry = nodestate.entry_for(link, "dl")
        self.assertIsNone(entry.torrent)
        self.assertEqual(entry.source().info_hash, self.meta.info_hash)
        fetched = nodestate.with_metainfo(entry, self.meta)
        self.assertIsNone(fetched.magnet)
        self.assertEqual(fetched.source().info_hash, self.meta.info_hash)

    def test_list_survives_reopening_in_order_with_its_changes(self) -> None:
        saved = self.open()
        first = nodestate.entry_for(self.meta, "a", peers=[("::1", 6881)])
        second = nodestate.entry_for(make_meta(self.dir, "other.bin"), "b", super_seed=True)
        saved.put(first)
        saved.put(second)
        saved.update(first.info_hash, paused=True)
        saved.put(nodestate.entry_for(self.meta, "c"))  # replaced where it stands
        saved.close()
        again = list(self.open())
        self.assertEqual([e.info_hash for e in again], [first.info_hash, second.info_hash])
        self.assertEqual(again[0].folder, os.path.abspath("c"))
        self.assertEqual(again[1], second)
        again_list = SavedList(None, again)
        again_list.remove(second.info_hash)
        self.assertEqual([e.name for e in again_list], ["notes.bin"])

    def test_missing_list_is_empty_and_written_only_on_a_change(self) -> None:
        saved = self.open()
        self.assertEqual(list(saved), [])
        self.assertFalse(os.path.exists(os.path.join(self.dir, nodestate.LIST_FILE)))

    def test_damaged_list_is_set_aside_with_one_warning(self) -> None:
        path = os.path.join(self.dir, nodestate.LIST_FILE)
        for content in (b"garbage", bencode.encode({"version": 99, "torrents": []}),
                        bencode.encode({"version": 1, "torrents": [{"name": "x"}]})):
            with open(path, "wb") as f:
                f.write(content)
            saved, warnings = SavedList.open(self.dir)
            saved.close()
            self.assertEqual(list(saved), [])
            self.assertEqual(len(warnings), 1)
            self.assertIn("cannot be read", warnings[0])
            self.assertFalse(os.path.exists(path))
            with open(path + nodestate.BAD_SUFFIX, "rb") as f:
                self.assertEqual(f.read(), content)

    def test_decoder_rejects_entries_without_a_source_or_with_a_bad_hash(self) -> None:
        good = nodestate.encode_list([nodestate.entry_for(self.meta, "a")])
        self.assertEqual(len(nodestate.decode_list(good)), 1)
        item = bencode.decode(good)[b"torrents"][0]
        for broken in ({**item, b"info_hash": b"short"},
                       {k: v for k, v in item.items() if k != b"torrent"},
                       {**item, b"peers": [[b"host", b"port"]]}):
            with self.assertRaises(NodeStateError):
                nodestate.decode_list(bencode.encode({"version": 1, "torrents": [broken]}))

    def test_unusable_saved_copy_is_a_node_state_error(self) -> None:
        entry = nodestate.entry_for(self.meta, "a")
        for bad in (nodestate.SavedTorrent(entry.info_hash, "x", 0, "/", torrent=b"d1:ai1ee"),
                    nodestate.SavedTorrent(entry.info_hash, "x", 0, "/", magnet="magnet:?x")):
            with self.assertRaisesRegex(NodeStateError, "saved copy of x is unusable"):
                bad.source()

    def test_second_node_on_the_same_home_keeps_its_list_in_memory(self) -> None:
        first = self.open()
        second, warnings = SavedList.open(self.dir)
        self.assertIsNone(second.path)
        self.assertIn("another STA node uses", warnings[0])
        second.put(nodestate.entry_for(self.meta, "a"))  # memory only
        self.assertFalse(os.path.exists(os.path.join(self.dir, nodestate.LIST_FILE)))
        first.close()
        third = self.open()  # free again once the first lets go
        self.assertEqual(third.path, os.path.join(self.dir, nodestate.LIST_FILE))

    def test_list_that_cannot_be_written_says_why(self) -> None:
        blocker = os.path.join(self.dir, "file")
        with open(blocker, "wb"):
            pass
        saved = SavedList(os.path.join(blocker, nodestate.LIST_FILE))  # a folder that is a file
        with self.assertRaisesRegex(NodeStateError, "cannot save the list of torrents"):
            saved.put(nodestate.entry_for(self.meta, "a"))


if __name__ == "__main__":
    unittest.main()
