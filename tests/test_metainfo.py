"""Metainfo: every rejection rule with byte strings, path safety, encoding. Making a torrent from
files is tests/test_maketorrent.py."""

from __future__ import annotations

import hashlib
import os
import tempfile
import unittest
from typing import Any, Dict, List, Optional
from unittest import mock

from sta import bencode, magnet, metainfo
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


if __name__ == "__main__":
    unittest.main()
