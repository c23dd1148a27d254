"""Metainfo: every rejection rule with byte strings, path safety, encoding; maketorrent."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import unittest
from typing import Any, Dict, List, Optional
from unittest import mock

from sta import bencode, magnet, maketorrent, metainfo
from sta.metainfo import MetainfoError

PL = 16384


def info_single(length: int = 40000, name: bytes = b"file.bin", piece_length: int = PL,
                extra: Optional[Dict[bytes, Any]] = None) -> Dict[bytes, Any]:
    n = -(-length // piece_length)
    d = {b"name": name, b"piece length": piece_length, b"pieces": b"\xaa" * (20 * n),
         b"length": length}
    d.update(extra or {})
    return d


def info_multi(files: List[Any], name: bytes = b"folder", piece_length: int = PL,
               pieces: Optional[int] = None) -> Dict[bytes, Any]:
    """files: (path list, length) or ready dicts."""
    entries = [f if isinstance(f, dict) else {b"length": f[1], b"path": f[0]} for f in files]
    total = sum(e[b"length"] for e in entries)
    n = -(-total // piece_length) if pieces is None else pieces
    return {b"name": name, b"piece length": piece_length, b"pieces": b"\xbb" * (20 * n),
            b"files": entries}


def torrent(info: Any, **top: Any) -> bytes:
    d = {b"announce": b"http://tracker:4000/announce", b"info": info}
    for key, value in top.items():
        sep = "-" if key in ("url_list", "announce_list") else " "
        d[key.replace("_", sep).encode()] = value
    return bencode.encode(d)


def parse_info_dict(info: Any) -> metainfo.Info:
    return metainfo.parse(torrent(info)).info


class RejectTest(unittest.TestCase):
    def assertRejects(self, data: bytes, pattern: str) -> None:
        with self.assertRaisesRegex(MetainfoError, pattern):
            metainfo.parse(data)

    def assertInfoRejected(self, info: Any, pattern: str) -> None:
        self.assertRejects(torrent(info), pattern)

    def test_parse_rejects_bad_bencoding_with_offset(self) -> None:
        self.assertRejects(b"d8:announce3:abc", "not a torrent file .*at byte")

    def test_parse_rejects_non_dictionary(self) -> None:
        self.assertRejects(b"li1ee", "not a bencoded dictionary")

    def test_parse_rejects_missing_info(self) -> None:
        self.assertRejects(bencode.encode({b"announce": b"x"}), "no info dictionary")

    def test_parse_rejects_info_that_is_not_a_dictionary(self) -> None:
        self.assertRejects(torrent([1, 2]), "not a dictionary")

    def test_parse_rejects_oversized_input(self) -> None:
        with mock.patch.object(metainfo, "MAX_TORRENT_SIZE", 100):
            self.assertRejects(torrent(info_single()), "larger than 100 bytes")

    def test_parse_rejects_missing_name(self) -> None:
        info = info_single()
        del info[b"name"]
        self.assertInfoRejected(info, "no name")

    def test_parse_rejects_empty_name(self) -> None:
        self.assertInfoRejected(info_single(name=b""), "no name")

    def test_parse_rejects_name_with_separator(self) -> None:
        self.assertInfoRejected(info_single(name=b"a/b"), "separator")
        self.assertInfoRejected(info_single(name=b"a\\b"), "separator")

    def test_parse_rejects_dotdot_name(self) -> None:
        self.assertInfoRejected(info_single(name=b".."), "not allowed")

    def test_parse_rejects_missing_piece_length(self) -> None:
        info = info_single()
        del info[b"piece length"]
        self.assertInfoRejected(info, "piece length")

    def test_parse_rejects_piece_length_not_power_of_two(self) -> None:
        info = info_single(length=30000, piece_length=3 * 16384)
        self.assertInfoRejected(info, "not a power of two")

    def test_parse_rejects_piece_length_below_16k(self) -> None:
        self.assertInfoRejected(info_single(length=9000, piece_length=8192), "at least 16 KiB")

    def test_parse_rejects_piece_length_above_maximum(self) -> None:
        big = metainfo.MAX_PIECE_LENGTH * 2
        self.assertInfoRejected(info_single(length=10, piece_length=big), "above")

    def test_parse_rejects_missing_pieces(self) -> None:
        info = info_single()
        del info[b"pieces"]
        self.assertInfoRejected(info, "'pieces'")

    def test_parse_rejects_pieces_not_multiple_of_20(self) -> None:
        info = info_single()
        info[b"pieces"] += b"x"
        self.assertInfoRejected(info, "not a multiple of 20")

    def test_parse_rejects_too_few_piece_hashes(self) -> None:
        info = info_single(length=40000)  # 3 pieces
        info[b"pieces"] = b"\0" * 40
        self.assertInfoRejected(info, "holds 2 hashes .* make 3")

    def test_parse_rejects_too_many_piece_hashes(self) -> None:
        info = info_single(length=40000)
        info[b"pieces"] = b"\0" * 80
        self.assertInfoRejected(info, "holds 4 hashes")

    def test_parse_rejects_too_many_pieces(self) -> None:
        with mock.patch.object(metainfo, "MAX_PIECES", 2):
            self.assertInfoRejected(info_single(length=40000), "more than the 2")

    def test_parse_rejects_negative_length(self) -> None:
        info = info_single()
        info[b"length"] = -1
        self.assertInfoRejected(info, "bad 'length'")

    def test_parse_rejects_non_integer_length(self) -> None:
        info = info_single()
        info[b"length"] = b"100"
        self.assertInfoRejected(info, "bad 'length'")

    def test_parse_rejects_zero_total_length(self) -> None:
        info = info_single(length=0)
        self.assertInfoRejected(info, "no data")

    def test_parse_rejects_both_length_and_files(self) -> None:
        info = info_multi([([b"a"], 10)])
        info[b"length"] = 10
        self.assertInfoRejected(info, "both 'files' and 'length'")

    def test_parse_rejects_neither_length_nor_files(self) -> None:
        info = info_single()
        del info[b"length"]
        self.assertInfoRejected(info, "neither")

    def test_parse_rejects_empty_files_list(self) -> None:
        info = info_multi([([b"a"], 10)])
        info[b"files"] = []
        self.assertInfoRejected(info, "non-empty list")

    def test_parse_rejects_file_entry_that_is_not_a_dictionary(self) -> None:
        info = info_multi([([b"a"], 10)])
        info[b"files"].append(b"oops")
        self.assertInfoRejected(info, "file 1 is not a dictionary")

    def test_parse_rejects_file_with_negative_length(self) -> None:
        self.assertInfoRejected(info_multi([([b"a"], 10), {b"length": -5, b"path": [b"b"]}],
                                           pieces=1), "file 1 has a missing or bad 'length'")

    def test_parse_rejects_file_without_path(self) -> None:
        self.assertInfoRejected(info_multi([{b"length": 10}]), "missing or empty 'path'")
        self.assertInfoRejected(info_multi([([], 10)]), "missing or empty 'path'")

    def test_parse_rejects_dotdot_path(self) -> None:
        self.assertInfoRejected(info_multi([([b"..", b"etc", b"passwd"], 10)]), "not allowed")
        self.assertInfoRejected(info_multi([([b"a", b"..", b"b"], 10)]), "not allowed")

    def test_parse_rejects_dot_path_part(self) -> None:
        self.assertInfoRejected(info_multi([([b"a", b".", b"b"], 10)]), "not allowed")

    def test_parse_rejects_absolute_path(self) -> None:
        self.assertInfoRejected(info_multi([([b"", b"etc", b"passwd"], 10)]), "absolute")
        self.assertInfoRejected(info_multi([([b"/etc", b"passwd"], 10)]), "absolute")
        self.assertInfoRejected(info_multi([([b"\\windows"], 10)]), "absolute")

    def test_parse_rejects_empty_path_part(self) -> None:
        self.assertInfoRejected(info_multi([([b"a", b"", b"b"], 10)]), "not allowed")

    def test_parse_rejects_nul_in_path(self) -> None:
        self.assertInfoRejected(info_multi([([b"a\0b"], 10)]), "NUL")

    def test_parse_rejects_separator_inside_path_part(self) -> None:
        self.assertInfoRejected(info_multi([([b"a/b"], 10)]), "separator")
        self.assertInfoRejected(info_multi([([b"a\\b"], 10)]), "separator")

    def test_parse_rejects_non_string_path_part(self) -> None:
        self.assertInfoRejected(info_multi([([b"a", 5], 10)]), "not a string")

    def test_parse_rejects_path_deeper_than_limit(self) -> None:
        deep = [b"d"] * (metainfo.MAX_PATH_DEPTH + 1)
        self.assertInfoRejected(info_multi([(deep, 10)]), "deeper than")

    def test_parse_rejects_too_many_files(self) -> None:
        with mock.patch.object(metainfo, "MAX_FILES", 2):
            info = info_multi([([b"a"], 1), ([b"b"], 1), ([b"c"], 1)])
            self.assertInfoRejected(info, "3 files; more than the 2")

    def test_parse_rejects_duplicate_paths(self) -> None:
        self.assertInfoRejected(info_multi([([b"a", b"x"], 10), ([b"a", b"x"], 10)]),
                                "two entries for 'folder/a/x'")

    def test_parse_rejects_file_that_is_also_a_folder(self) -> None:
        self.assertInfoRejected(info_multi([([b"a"], 10), ([b"a", b"b"], 10)]),
                                "both a file and a folder")
        self.assertInfoRejected(info_multi([([b"a", b"b"], 10), ([b"a"], 10)]), "two entries")

    def test_parse_info_rejects_bad_bencoding(self) -> None:
        with self.assertRaisesRegex(MetainfoError, "bad info dictionary"):
            metainfo.parse_info(b"d4:name")

    def test_load_rejects_oversized_file(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "big.torrent")
            with open(path, "wb") as f:
                f.write(torrent(info_single()))
            with mock.patch.object(metainfo, "MAX_TORRENT_SIZE", 50):
                with self.assertRaisesRegex(MetainfoError,
                                            r"not a \.torrent file: .*big\.torrent \(larger than"):
                    metainfo.load(path)


class ParseTest(unittest.TestCase):
    def test_info_hash_is_sha1_of_info_bytes_as_in_file(self) -> None:
        info = info_single(extra={b"x-unknown": [b"kept", 1]})
        data = torrent(info)
        raw = bencode.encode(info)
        start = data.index(b"4:info") + 6
        self.assertEqual(data[start:start + len(raw)], raw)
        meta = metainfo.parse(data)
        self.assertEqual(meta.info.raw, raw)
        self.assertEqual(meta.info_hash, hashlib.sha1(raw).digest())

    def test_single_file_fields(self) -> None:
        info = metainfo.parse(torrent(info_single(length=40000))).info
        self.assertEqual(info.name, "file.bin")
        self.assertFalse(info.multi_file)
        self.assertEqual(info.length, 40000)
        self.assertEqual(info.files, (metainfo.FileEntry(("file.bin",), 40000, 0),))
        self.assertEqual(info.num_pieces, 3)
        self.assertEqual([info.piece_size(i) for i in range(3)], [PL, PL, 40000 - 2 * PL])
        self.assertEqual(info.piece_hash(2), b"\xaa" * 20)
        with self.assertRaises(IndexError):
            info.piece_hash(3)
        with self.assertRaises(IndexError):
            info.piece_size(-1)

    def test_piece_size_when_length_is_a_multiple(self) -> None:
        info = parse_info_dict(info_single(length=2 * PL))
        self.assertEqual(info.piece_size(1), PL)

    def test_multi_file_paths_include_name_and_offsets_accumulate(self) -> None:
        info = parse_info_dict(info_multi([([b"a.txt"], 10), ([b"sub", b"b.txt"], 0),
                                           ([b"sub", b"c.txt"], 20000)]))
        self.assertTrue(info.multi_file)
        self.assertEqual([(f.path, f.length, f.offset) for f in info.files], [
            (("folder", "a.txt"), 10, 0), (("folder", "sub", "b.txt"), 0, 10),
            (("folder", "sub", "c.txt"), 20000, 10)])
        self.assertEqual(info.length, 20010)

    def test_private_flag(self) -> None:
        self.assertTrue(parse_info_dict(info_single(extra={b"private": 1})).private)
        self.assertFalse(parse_info_dict(info_single(extra={b"private": 0})).private)
        self.assertFalse(parse_info_dict(info_single()).private)

    def test_announce_only_gives_one_tier(self) -> None:
        meta = metainfo.parse(torrent(info_single()))
        self.assertEqual(meta.announce, "http://tracker:4000/announce")
        self.assertEqual(meta.trackers, (("http://tracker:4000/announce",),))

    def test_announce_list_tiers_replace_announce(self) -> None:
        data = torrent(info_single(), announce_list=[[b"http://a/1", b"http://a/2"],
                                                     [b"udp://b:80"]])
        meta = metainfo.parse(data)
        self.assertEqual(meta.trackers, (("http://a/1", "http://a/2"), ("udp://b:80",)))
        self.assertEqual(meta.tracker_urls(), ("http://a/1", "http://a/2", "udp://b:80"))

    def test_announce_list_skips_malformed_entries(self) -> None:
        data = torrent(info_single(), announce_list=[b"notalist", [], [5, b"\xff", b"http://c"],
                                                     [b"http://c"]])
        self.assertEqual(metainfo.parse(data).trackers, (("http://c",), ("http://c",)))

    def test_no_trackers_at_all(self) -> None:
        meta = metainfo.parse(bencode.encode({b"info": info_single()}))
        self.assertIsNone(meta.announce)
        self.assertEqual(meta.trackers, ())

    def test_announce_taken_from_announce_list_when_missing(self) -> None:
        data = bencode.encode({b"info": info_single(), b"announce-list": [[b"http://x"]]})
        self.assertEqual(metainfo.parse(data).announce, "http://x")

    def test_url_list_as_string_or_list(self) -> None:
        one = metainfo.parse(torrent(info_single(), url_list=b"http://w/f"))
        self.assertEqual(one.url_list, ("http://w/f",))
        many = metainfo.parse(torrent(info_single(), url_list=[b"http://w/1", b"http://w/2"]))
        self.assertEqual(many.url_list, ("http://w/1", "http://w/2"))
        bad = metainfo.parse(torrent(info_single(), url_list=5))
        self.assertEqual(bad.url_list, ())

    def test_comment_creator_and_date(self) -> None:
        meta = metainfo.parse(torrent(info_single(), comment=b"hello", created_by=b"me",
                                      creation_date=1700000000))
        self.assertEqual((meta.comment, meta.created_by, meta.creation_date),
                         ("hello", "me", 1700000000))

    def test_bad_optional_fields_are_ignored(self) -> None:
        meta = metainfo.parse(torrent(info_single(), comment=5, creation_date=b"x"))
        self.assertIsNone(meta.comment)
        self.assertIsNone(meta.creation_date)

    def test_pad_file_attribute_is_recognised(self) -> None:
        info = parse_info_dict(info_multi([
            ([b"a"], 10), {b"length": PL - 10, b"path": [b".pad", b"16374"], b"attr": b"p"},
            ([b"b"], 5)]))
        self.assertEqual([f.pad for f in info.files], [False, True, False])
        self.assertEqual(info.files[2].offset, PL)

    def test_pad_files_may_share_a_path_or_have_none(self) -> None:
        info = parse_info_dict(info_multi([
            ([b"a"], 10), {b"length": 6, b"path": [b".pad", b"6"], b"attr": b"p"},
            ([b"b"], 10), {b"length": 6, b"path": [b".pad", b"6"], b"attr": b"p"},
            {b"length": 3, b"attr": b"xp"}, ([b"c"], 1)]))
        self.assertEqual(info.files[4].path, ("folder", ".pad", "3"))
        self.assertTrue(info.files[4].pad)

    def test_bitcomet_padding_file_is_pad(self) -> None:
        info = parse_info_dict(info_multi([([b"a"], 10), ([b"_____padding_file_0_"], 6),
                                           ([b"b"], 1)]))
        self.assertTrue(info.files[1].pad)

    def test_utf8_name_and_path_keys_are_preferred(self) -> None:
        info = parse_info_dict({**info_multi([{b"length": 10, b"path": [b"\xe9"],
                                               b"path.utf-8": [b"\xc3\xa9"]}]),
                                b"name.utf-8": "caf\u00e9".encode()})
        self.assertEqual(info.files[0].path, ("caf\u00e9", "\u00e9"))

    def test_invalid_utf8_bytes_become_underscores(self) -> None:
        info = parse_info_dict(info_single(name=b"a\xffb\xfe.bin"))
        self.assertEqual(info.name, "a_b_.bin")

    def test_control_characters_become_underscores(self) -> None:
        self.assertEqual(parse_info_dict(info_single(name=b"a\tb\nc.txt")).name, "a_b_c.txt")

    def test_bidirectional_overrides_are_removed(self) -> None:
        name = "abc\u202egpj.exe".encode()
        self.assertEqual(parse_info_dict(info_single(name=name)).name, "abcgpj.exe")

    def test_name_of_only_bidi_marks_becomes_underscore(self) -> None:
        self.assertEqual(parse_info_dict(info_single(name="\u200e".encode())).name, "_")

    def test_long_name_is_shortened_keeping_extension(self) -> None:
        name = ("x" * 300 + ".mkv").encode()
        safe = parse_info_dict(info_single(name=name)).name
        self.assertEqual(len(safe.encode()), metainfo.MAX_NAME_BYTES)
        self.assertTrue(safe.endswith("x.mkv"))

    def test_long_multibyte_name_is_not_cut_inside_a_character(self) -> None:
        safe = metainfo.safe_path_part("\u00e9" * 200, windows=False)
        self.assertLessEqual(len(safe.encode()), metainfo.MAX_NAME_BYTES)
        self.assertEqual(set(safe), {"\u00e9"})

    def test_windows_rules_replace_reserved_characters(self) -> None:
        self.assertEqual(metainfo.safe_path_part('a<b>c:d"e|f?g*h', windows=True),
                         "a_b_c_d_e_f_g_h")
        self.assertEqual(metainfo.safe_path_part('a:b', windows=False), "a:b")

    def test_windows_rules_prefix_device_names(self) -> None:
        for name in ("CON", "con.txt", "Aux.tar.gz", "lpt1", "COM9.log", "clock$"):
            with self.subTest(name=name):
                self.assertEqual(metainfo.safe_path_part(name, windows=True), "_" + name)
        self.assertEqual(metainfo.safe_path_part("console.txt", windows=True), "console.txt")
        self.assertEqual(metainfo.safe_path_part("con", windows=False), "con")

    def test_windows_rules_strip_trailing_dots_and_spaces(self) -> None:
        self.assertEqual(metainfo.safe_path_part("name. . ", windows=True), "name")
        self.assertEqual(metainfo.safe_path_part("...", windows=True), "_")
        self.assertEqual(metainfo.safe_path_part("...", windows=False), "...")

    def test_metainfo_magnet_link(self) -> None:
        meta = metainfo.parse(torrent(info_single(), url_list=b"http://w/f"))
        m = magnet.parse(meta.magnet_link())
        self.assertEqual((m.info_hash, m.name, m.trackers, m.length, m.web_seeds),
                         (meta.info_hash, "file.bin", ("http://tracker:4000/announce",), 40000,
                          ("http://w/f",)))

    def test_load_reads_a_file(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.torrent")
            with open(path, "wb") as f:
                f.write(torrent(info_single()))
            self.assertEqual(metainfo.load(path).info.name, "file.bin")

    def test_load_names_the_file_in_errors(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.torrent")
            with open(path, "wb") as f:
                f.write(b"junk")
            with self.assertRaisesRegex(MetainfoError,
                                        r"not a \.torrent file: .*bad\.torrent \(bad bencoding"):
                metainfo.load(path)


class EncodeTest(unittest.TestCase):
    def test_encode_torrent_splices_info_bytes_untouched(self) -> None:
        raw = bencode.encode(info_single())
        data = metainfo.encode_torrent(raw, ["http://a/announce"], comment="c",
                                       created_by="me", creation_date=5, url_list=["http://w"])
        self.assertEqual(bencode.raw_value(data, b"info"), raw)
        meta = metainfo.parse(data)
        self.assertEqual(meta.info_hash, hashlib.sha1(raw).digest())
        self.assertEqual((meta.announce, meta.comment, meta.created_by, meta.creation_date,
                          meta.url_list), ("http://a/announce", "c", "me", 5, ("http://w",)))
        self.assertNotIn(b"announce-list", data)

    def test_encode_torrent_writes_tiers(self) -> None:
        raw = bencode.encode(info_single())
        data = metainfo.encode_torrent(raw, ["http://a", ["http://b", "http://c"]])
        meta = metainfo.parse(data)
        self.assertEqual(meta.announce, "http://a")
        self.assertEqual(meta.trackers, (("http://a",), ("http://b", "http://c")))

    def test_encode_torrent_refuses_invalid_info(self) -> None:
        with self.assertRaises(MetainfoError):
            metainfo.encode_torrent(bencode.encode(info_single(name=b"..")))


def write(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def expected_pieces(data: bytes, piece_length: int) -> bytes:
    return b"".join(hashlib.sha1(data[i:i + piece_length]).digest()
                    for i in range(0, len(data), piece_length))


class MakeTorrentTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def test_single_file_torrent(self) -> None:
        data = os.urandom(100000)
        f = write(self.path("one.bin"), data)
        meta = metainfo.parse(maketorrent.make_torrent([f], ["http://t/announce"], comment="hi",
                                                       private=True, web_seeds=["http://w/"]))
        info = meta.info
        self.assertEqual((info.name, info.length, info.multi_file, info.private),
                         ("one.bin", 100000, False, True))
        self.assertEqual(info.pieces, expected_pieces(data, info.piece_length))
        self.assertEqual((meta.announce, meta.comment, meta.url_list, meta.created_by),
                         ("http://t/announce", "hi", ("http://w/",), metainfo.CREATED_BY))
        self.assertIsNotNone(meta.creation_date)

    def test_pieces_span_file_boundaries(self) -> None:
        sizes = {"a": 10000, "b": 0, "c": 30001, "sub/d": 16384, "sub/e": 7}
        blob = b""
        for rel in sorted(sizes, key=lambda r: tuple(r.split("/"))):
            chunk = os.urandom(sizes[rel])
            write(self.path("top", *rel.split("/")), chunk)
            blob += chunk
        for workers in (1, 3):
            with self.subTest(workers=workers):
                info = metainfo.parse(maketorrent.make_torrent(
                    [self.path("top")], piece_length=PL, workers=workers)).info
                self.assertEqual(info.pieces, expected_pieces(blob, PL))
                self.assertEqual([f.path for f in info.files],
                                 [("top", "a"), ("top", "b"), ("top", "c"), ("top", "sub", "d"),
                                  ("top", "sub", "e")])

    def test_small_hash_chunks_give_the_same_pieces(self) -> None:
        data = os.urandom(5 * PL + 3)
        write(self.path("x", "f"), data)
        for chunk, block in ((1, 1 << 20), (1 << 20, 1), (3 * PL, 2 * PL)):
            with self.subTest(chunk=chunk, block=block):
                with mock.patch.multiple(maketorrent, HASH_CHUNK_BYTES=chunk,
                                         HASH_READ_BYTES=block):
                    info = metainfo.parse(maketorrent.make_torrent([self.path("x")],
                                                                   piece_length=PL)).info
                self.assertEqual(info.pieces, expected_pieces(data, PL))

    def test_small_read_blocks_across_many_files(self) -> None:
        blob = b""
        for i in range(7):
            chunk = os.urandom(5000 * i + 123)
            write(self.path("m", "f%d" % i), chunk)
            blob += chunk
        with mock.patch.multiple(maketorrent, HASH_CHUNK_BYTES=2 * PL, HASH_READ_BYTES=1):
            info = metainfo.parse(maketorrent.make_torrent([self.path("m")], piece_length=PL,
                                                           workers=2)).info
        self.assertEqual(info.pieces, expected_pieces(blob, PL))

    def test_same_input_gives_same_info_hash(self) -> None:
        write(self.path("d", "f1"), b"a" * 5000)
        write(self.path("d", ".hidden"), b"b" * 10)
        one = metainfo.parse(maketorrent.make_torrent([self.path("d")], creation_date=1))
        two = metainfo.parse(maketorrent.make_torrent([self.path("d")], creation_date=2))
        self.assertEqual(one.info_hash, two.info_hash)
        self.assertIn(("d", ".hidden"), [f.path for f in one.info.files])
        self.assertNotIn(b"creation date", one.info.raw)

    def test_several_paths_make_a_multi_file_torrent_named_by_name(self) -> None:
        write(self.path("ass1.pdf"), b"1" * 100)
        write(self.path("report.pdf"), b"2" * 200)
        write(self.path("extra", "x.txt"), b"3")
        meta = metainfo.parse(maketorrent.make_torrent(
            [self.path("report.pdf"), self.path("ass1.pdf"), self.path("extra")], name="bundle"))
        self.assertEqual(meta.info.name, "bundle")
        self.assertEqual([f.path for f in meta.info.files],
                         [("bundle", "ass1.pdf"), ("bundle", "extra", "x.txt"),
                          ("bundle", "report.pdf")])

    def test_default_name_of_several_paths(self) -> None:
        a, b = write(self.path("lab", "a.pdf"), b"1"), write(self.path("lab", "b.pdf"), b"2")
        self.assertEqual(maketorrent.default_name([a, b]), "lab")
        c = write(self.path("other", "c.pdf"), b"3")
        self.assertEqual(maketorrent.default_name([a, c]), "a")
        self.assertEqual(metainfo.parse(maketorrent.make_torrent([a, b])).info.name, "lab")

    def test_symlink_loop_is_skipped(self) -> None:
        if not hasattr(os, "symlink") or sys.platform == "win32":
            self.skipTest("symbolic links need privileges on Windows")
        write(self.path("d", "f"), b"data")
        os.symlink(self.path("d"), self.path("d", "loop"))
        os.symlink(self.path("d", "f"), self.path("d", "link-to-f"))
        os.symlink(self.path("missing"), self.path("d", "broken"))
        with self.assertLogs("sta.maketorrent", "WARNING"):
            info = metainfo.parse(maketorrent.make_torrent([self.path("d")])).info
        self.assertEqual([f.path for f in info.files], [("d", "f"), ("d", "link-to-f")])

    def test_exclude_leaves_out_the_torrent_being_written(self) -> None:
        write(self.path("d", "f"), b"data")
        write(self.path("d", "d.torrent"), b"old")
        info = metainfo.parse(maketorrent.make_torrent(
            [self.path("d")], exclude=[self.path("d", "d.torrent")])).info
        self.assertEqual([f.path for f in info.files], [("d", "f")])

    def test_progress_reports_the_total_at_the_end(self) -> None:
        write(self.path("f"), os.urandom(3 * PL))
        calls = []
        maketorrent.make_torrent([self.path("f")], piece_length=PL,
                                 progress=lambda done, total: calls.append((done, total)))
        self.assertEqual(calls[-1], (3 * PL, 3 * PL))

    def test_explicit_piece_length_is_validated(self) -> None:
        write(self.path("f"), b"x" * 10)
        with self.assertRaisesRegex(MetainfoError, "power of two"):
            maketorrent.make_torrent([self.path("f")], piece_length=20000)

    def test_make_rejects_missing_path(self) -> None:
        with self.assertRaisesRegex(MetainfoError, "no such file or folder"):
            maketorrent.make_torrent([self.path("nope")])

    def test_make_rejects_no_paths(self) -> None:
        with self.assertRaisesRegex(MetainfoError, "nothing to share"):
            maketorrent.make_torrent([])

    def test_make_rejects_only_empty_files(self) -> None:
        write(self.path("d", "empty"), b"")
        with self.assertRaisesRegex(MetainfoError, "every file is empty"):
            maketorrent.make_torrent([self.path("d")])

    def test_make_rejects_empty_folder(self) -> None:
        os.makedirs(self.path("empty"))
        with self.assertRaisesRegex(MetainfoError, "no files"):
            maketorrent.make_torrent([self.path("empty")])

    def test_make_rejects_two_paths_with_the_same_name(self) -> None:
        a = write(self.path("x", "f.txt"), b"1")
        b = write(self.path("y", "f.txt"), b"2")
        with self.assertRaisesRegex(MetainfoError, "both named 'f.txt'"):
            maketorrent.make_torrent([a, b], name="n")

    def test_make_rejects_file_name_a_downloader_would_change(self) -> None:
        if sys.platform == "win32":
            self.skipTest("control characters cannot be in Windows file names")
        write(self.path("d", "bad\tname"), b"1")
        with self.assertRaisesRegex(MetainfoError, "not portable"):
            maketorrent.make_torrent([self.path("d")])

    def test_make_rejects_file_name_that_is_not_utf8(self) -> None:
        if sys.platform in ("win32", "darwin"):
            self.skipTest("the file system itself requires Unicode names")
        folder = self.path("d")
        os.makedirs(folder)
        with open(os.path.join(os.fsencode(folder), b"bad\xff"), "wb") as f:
            f.write(b"1")
        with self.assertRaisesRegex(MetainfoError, "not valid UTF-8"):
            maketorrent.make_torrent([folder])

    def test_hash_files_notices_a_file_that_shrank(self) -> None:
        f = write(self.path("f"), b"x" * 100)
        with self.assertRaisesRegex(MetainfoError, "changed while it was being hashed"):
            maketorrent.hash_files([(f, 200)], PL)

    def test_hash_files_reads_pad_files_as_zeros(self) -> None:
        f = write(self.path("f"), b"x" * 100)
        pieces = maketorrent.hash_files([(f, 100), (None, PL - 100), (f, 100)], PL)
        self.assertEqual(pieces, expected_pieces(b"x" * 100 + bytes(PL - 100) + b"x" * 100, PL))

    def test_auto_piece_length(self) -> None:
        self.assertEqual(maketorrent.auto_piece_length(1), 16384)
        self.assertEqual(maketorrent.auto_piece_length(2000 * 16384), 16384)
        self.assertEqual(maketorrent.auto_piece_length(2000 * 16384 + 1), 32768)
        self.assertEqual(maketorrent.auto_piece_length(1 << 30), 1 << 20)
        self.assertEqual(maketorrent.auto_piece_length(1 << 50), maketorrent.MAX_AUTO_PIECE_LENGTH)
        for total in (10 ** 8, 3 * 10 ** 9, 2 * 10 ** 10):
            n = -(-total // maketorrent.auto_piece_length(total))
            self.assertTrue(1000 <= n <= 2000, (total, n))


if __name__ == "__main__":
    unittest.main()
