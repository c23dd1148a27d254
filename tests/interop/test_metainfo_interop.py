"""Metainfo and magnets against real tools: libtorrent, mktorrent, transmission-create.

A torrent STA makes must load in libtorrent with the same info hash, files and piece hashes; a
torrent other tools make must load in STA with the info hash those tools' swarms use. The expected
hash never comes from STA's own code: libtorrent computes it when present, otherwise a few lines
here find the info dictionary's bytes by walking the bencoding independently.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest
from typing import Dict, List, Optional, Tuple

from sta import magnet, maketorrent, metainfo
from tests.interop import clients

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STA = os.path.join(ROOT, "sta.py")
# Making and reading torrents of a few MB takes well under a second; the bound only catches hangs.
TOOL_TIMEOUT = 60.0
TRACKER = "http://127.0.0.1:4000/announce"
BACKUP = "udp://backup.example:1337/announce"
NO_LIBTORRENT = "libtorrent is not importable by %s" % clients.LT_PYTHON
# Run by clients.LT_PYTHON: a v1 torrent of argv[1] written to argv[2], files padded to pieces.
LT_PADDED_CREATE = """
import os, sys
import libtorrent as lt
fs = lt.file_storage()
lt.add_files(fs, sys.argv[1])
ct = lt.create_torrent(fs, 16384, flags=lt.create_torrent.v1_only
                       | lt.create_torrent.canonical_files)
ct.add_tracker(sys.argv[3])
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(sys.argv[1])))
with open(sys.argv[2], "wb") as f:
    f.write(lt.bencode(ct.generate()))
"""


def run(cmd: List[str], cwd: Optional[str] = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TOOL_TIMEOUT, env=dict(os.environ, PYTHONPATH=ROOT))
    if done.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (cmd[0], done.returncode,
                                                     done.stderr.decode(errors="replace")))
    return done.stdout.decode("utf-8", "replace")


def info_slice(data: bytes) -> bytes:
    """The bytes of the top-level "info" value, found by skipping over bencoded values."""

    def skip(pos: int) -> int:
        c = data[pos:pos + 1]
        if c == b"i":
            return data.index(b"e", pos) + 1
        if c in (b"l", b"d"):
            pos += 1
            while data[pos:pos + 1] != b"e":
                pos = skip(pos)
            return pos + 1
        colon = data.index(b":", pos)
        return colon + 1 + int(data[pos:colon])

    assert data[:1] == b"d"
    pos = 1
    while data[pos:pos + 1] != b"e":
        key_end = skip(pos)
        key = data[data.index(b":", pos) + 1:key_end]
        value_end = skip(key_end)
        if key == b"info":
            return data[key_end:value_end]
        pos = value_end
    raise AssertionError("no info dictionary")


def expected_info_hash(path: str) -> str:
    if clients.have_libtorrent():
        return clients.lt_info(path)["info_hash"]
    with open(path, "rb") as f:
        return hashlib.sha1(info_slice(f.read())).hexdigest()


def make_tree(root: str) -> Dict[str, int]:
    """A folder with nested files of awkward sizes (pieces cross file boundaries), one empty."""
    sizes = {"a.bin": 100003, "b/c.txt": 1, "b/d/e.dat": 70000, "b/empty": 0,
             "z y (1).txt": 16384}
    for i, (rel, size) in enumerate(sorted(sizes.items())):
        clients.make_file(os.path.join(root, *rel.split("/")), size, seed=i)
    return sizes


def sta_files(meta: metainfo.Metainfo) -> List[Tuple[str, int]]:
    return sorted(("/".join(f.path), f.length) for f in meta.info.files if not f.pad)


class StaCreateTest(unittest.TestCase):
    """STA's create, read back by libtorrent."""

    def setUp(self) -> None:
        if not clients.have_libtorrent():
            self.skipTest(NO_LIBTORRENT)
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name

    def create(self, *args: str) -> Tuple[str, metainfo.Metainfo]:
        out = os.path.join(self.dir, "made.torrent")
        run([sys.executable, STA, "create", "-f", "-o", out, "-t", TRACKER, "-t", BACKUP]
            + list(args), cwd=self.dir)
        return out, metainfo.load(out)

    def assertLibtorrentAgrees(self, path: str, meta: metainfo.Metainfo) -> None:
        lt = clients.lt_info(path)
        self.assertEqual(lt["info_hash"], meta.info_hash.hex())
        self.assertEqual(lt["name"], meta.info.name)
        self.assertEqual(lt["total_size"], meta.info.length)
        self.assertEqual(lt["piece_length"], meta.info.piece_length)
        self.assertEqual(lt["num_pieces"], meta.info.num_pieces)
        self.assertEqual(lt["piece_hashes"],
                         [meta.info.piece_hash(i).hex() for i in range(meta.info.num_pieces)])
        self.assertEqual(sorted((f["path"], f["size"]) for f in lt["files"]), sta_files(meta))
        self.assertEqual(lt["trackers"], [TRACKER, BACKUP])

    def test_single_file_torrent_loads_in_libtorrent(self) -> None:
        clients.make_file(os.path.join(self.dir, "report.pdf"), 300001, seed=3)
        path, meta = self.create("report.pdf", "--comment", "lab 1")
        self.assertLibtorrentAgrees(path, meta)

    def test_folder_torrent_loads_in_libtorrent(self) -> None:
        make_tree(os.path.join(self.dir, "share"))
        path, meta = self.create("share", "--piece-length", "16K", "--private")
        self.assertLibtorrentAgrees(path, meta)
        self.assertTrue(clients.lt_info(path)["private"])

    def test_several_paths_torrent_loads_in_libtorrent(self) -> None:
        clients.make_file(os.path.join(self.dir, "ass1.pdf"), 50000, seed=1)
        clients.make_file(os.path.join(self.dir, "report.pdf"), 70000, seed=2)
        path, meta = self.create("ass1.pdf", "report.pdf", "--name", "bundle")
        self.assertLibtorrentAgrees(path, meta)

    def test_libtorrent_magnet_of_sta_torrent_matches(self) -> None:
        clients.make_file(os.path.join(self.dir, "x.bin"), 20000, seed=4)
        path, meta = self.create("x.bin")
        lt_uri = run(clients.lt_helper_cmd("make-magnet", path)).strip()
        m = magnet.parse(lt_uri)
        self.assertEqual(m.info_hash, meta.info_hash)
        self.assertEqual(m.name, meta.info.name)
        self.assertEqual(m.trackers, meta.tracker_urls())


class OtherCreatorsTest(unittest.TestCase):
    """Torrents made by other tools, read by STA."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.share = os.path.join(self.dir, "share")
        self.sizes = make_tree(self.share)
        self.single = clients.make_file(os.path.join(self.dir, "single.iso"), 123457, seed=9)

    def check(self, path: str, name: str, files: List[Tuple[str, int]], piece_length: int,
              private: bool = False) -> metainfo.Metainfo:
        meta = metainfo.load(path)
        self.assertEqual(meta.info_hash.hex(), expected_info_hash(path))
        self.assertEqual(meta.info.name, name)
        self.assertEqual(sta_files(meta), sorted(files))
        self.assertEqual(meta.info.piece_length, piece_length)
        self.assertEqual(meta.info.private, private)
        self.assertEqual(meta.announce, TRACKER)
        # STA's own view of the same files agrees piece by piece
        data_root = os.path.dirname(self.share if meta.info.multi_file else self.single)
        ordered = [(None if f.pad else os.path.join(data_root, *f.path), f.length)
                   for f in meta.info.files]
        self.assertEqual(maketorrent.hash_files(ordered, piece_length), meta.info.pieces)
        return meta

    def tree_files(self) -> List[Tuple[str, int]]:
        return [("share/" + rel, size) for rel, size in self.sizes.items()]

    @unittest.skipUnless(clients.which("mktorrent"), "mktorrent is not installed")
    def test_mktorrent_folder_loads_in_sta(self) -> None:
        out = os.path.join(self.dir, "mk.torrent")
        run(["mktorrent", "-a", TRACKER, "-l", "15", "-p", "-c", "made by mktorrent",
             "-o", out, self.share])
        meta = self.check(out, "share", self.tree_files(), 1 << 15, private=True)
        self.assertEqual(meta.comment, "made by mktorrent")

    @unittest.skipUnless(clients.which("mktorrent"), "mktorrent is not installed")
    def test_mktorrent_single_file_loads_in_sta(self) -> None:
        out = os.path.join(self.dir, "mk1.torrent")
        run(["mktorrent", "-a", TRACKER + "," + BACKUP, "-l", "15", "-w", "http://w/single.iso",
             "-o", out, self.single])
        meta = self.check(out, "single.iso", [("single.iso", 123457)], 1 << 15)
        self.assertEqual(meta.trackers, ((TRACKER, BACKUP),))
        self.assertEqual(meta.url_list, ("http://w/single.iso",))

    @unittest.skipUnless(clients.which("transmission-create"),
                         "transmission-create is not installed")
    def test_transmission_create_folder_loads_in_sta(self) -> None:
        out = os.path.join(self.dir, "tr.torrent")
        run(["transmission-create", "-o", out, "-t", TRACKER, "-s", "32", self.share])
        # transmission-create leaves empty files out
        self.check(out, "share", [f for f in self.tree_files() if f[1]], 32 * 1024)

    @unittest.skipUnless(clients.which("transmission-create"),
                         "transmission-create is not installed")
    def test_transmission_create_single_file_loads_in_sta(self) -> None:
        out = os.path.join(self.dir, "tr1.torrent")
        run(["transmission-create", "-o", out, "-t", TRACKER, "-s", "16", self.single])
        self.check(out, "single.iso", [("single.iso", 123457)], 16 * 1024)

    @unittest.skipUnless(clients.have_libtorrent(), NO_LIBTORRENT)
    def test_libtorrent_torrent_loads_in_sta(self) -> None:
        out = os.path.join(self.dir, "lt.torrent")
        run(clients.lt_helper_cmd("create", self.share, "--out", out, "--tracker", TRACKER,
                                  "--piece-length", "16384"))
        self.check(out, "share", self.tree_files(), 16384)

    @unittest.skipUnless(clients.have_libtorrent(), NO_LIBTORRENT)
    def test_libtorrent_torrent_with_pad_files_loads_in_sta(self) -> None:
        # canonical_files makes libtorrent align every file to a piece with BEP 47 pad files
        out = os.path.join(self.dir, "pad.torrent")
        run([clients.LT_PYTHON, "-c", LT_PADDED_CREATE, self.share, out, TRACKER])
        meta = self.check(out, "share", self.tree_files(), 16384)
        self.assertTrue(any(f.pad for f in meta.info.files))
        for f in meta.info.files:
            if not f.pad:
                self.assertEqual(f.offset % 16384, 0, f)
        lt = clients.lt_info(out)
        self.assertEqual([(f["path"], f["size"], f["offset"], f["pad"]) for f in lt["all_files"]],
                         [("/".join(f.path), f.length, f.offset, f.pad)
                          for f in meta.info.files])

    def test_independent_info_slice_matches_sta(self) -> None:
        data = maketorrent.make_torrent([self.share], [TRACKER], comment="x")
        self.assertEqual(metainfo.parse(data).info.raw, info_slice(data))


@unittest.skipUnless(clients.have_libtorrent(), NO_LIBTORRENT)
class MagnetInteropTest(unittest.TestCase):
    CASES = [
        magnet.Magnet(bytes(range(20))),
        magnet.Magnet(bytes(range(20, 40)), name="My files & more + 100% \u00e9t\u00e9",
                      trackers=(TRACKER, "http://t2.example/announce?key=a&x=1", BACKUP),
                      peers=("10.0.0.1:6881", "127.0.0.1:51413")),
    ]

    def lt_parse(self, uri: str) -> Dict:
        return json.loads(run(clients.lt_helper_cmd("parse-magnet", uri)))

    def test_sta_magnets_parse_in_libtorrent(self) -> None:
        for m in self.CASES:
            with self.subTest(m=m):
                lt = self.lt_parse(m.uri())
                self.assertEqual(lt["info_hash"], m.info_hash.hex())
                self.assertEqual(lt["name"] or None, m.name)
                self.assertEqual(tuple(lt["trackers"]), m.trackers)
                self.assertEqual(tuple(lt["peers"]), m.peers)

    def test_base32_magnet_parses_the_same_in_both(self) -> None:
        import base64
        ih = bytes(range(40, 60))
        uri = "magnet:?xt=urn:btih:%s&dn=x+y&tr.1=%s" % (base64.b32encode(ih).decode(), TRACKER)
        lt = self.lt_parse(uri)
        m = magnet.parse(uri)
        self.assertEqual((lt["info_hash"], lt["name"], lt["trackers"]),
                         (m.info_hash.hex(), m.name, list(m.trackers)))


if __name__ == "__main__":
    unittest.main()
