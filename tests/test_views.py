"""views.py: what `info` and `create` print, and the --json text, safe on a terminal."""

from __future__ import annotations

import json
import unittest

from sta import bencode, magnet, metainfo, views

HOSTILE_COMMENT = "see\x1b]0;owned\x07 this\x1b[2J\r\nfake: line\u202e"


def hostile_torrent() -> metainfo.Metainfo:
    info = {b"name": b"d", b"piece length": 16384, b"pieces": b"\0" * 20,
            b"files": [{b"path": [b"sub", "x\x1b[31my".encode()], b"length": 5}]}
    return metainfo.parse(bencode.encode({
        b"info": info, b"announce": b"http://t:4000/announce",
        b"comment": HOSTILE_COMMENT.encode(), b"created by": "\x9b31mSTA".encode()}))


class FieldTest(unittest.TestCase):
    def test_field_pads_the_label_and_makes_the_value_printable(self) -> None:
        self.assertEqual(views.field("name", "a\x1b[2Jb"), "name:        ab")
        self.assertEqual(views.field("torrent", "x", views.CREATE_LABEL_WIDTH), "torrent:   x")


class TorrentLinesTest(unittest.TestCase):
    def test_torrent_lines_carry_no_control_character(self) -> None:
        lines = views.torrent_lines(hostile_torrent())
        for line in lines:
            self.assertFalse(any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in line), repr(line))
        self.assertIn("comment:     see this  fake: line?", lines)
        self.assertIn("created by:  STA", lines)
        self.assertEqual(lines[-1], "         5 B  d/sub/x_[31my")  # metainfo made ESC "_"

    def test_json_keeps_the_text_but_escapes_what_a_terminal_would_act_on(self) -> None:
        text = views.json_text(views.torrent_json(hostile_torrent()))
        for raw in ("\x1b", "\x07", "\x9b", "\u202e", "\r"):
            self.assertNotIn(raw, text)
        doc = json.loads(text)
        self.assertEqual((doc["comment"], doc["created_by"]), (HOSTILE_COMMENT, "\x9b31mSTA"))

    def test_json_leaves_other_non_ascii_readable(self) -> None:
        self.assertEqual(views.json_text({"name": "caf\u00e9"}), '{\n  "name": "caf\u00e9"\n}')


class MagnetLinesTest(unittest.TestCase):
    def test_magnet_lines_make_the_name_printable(self) -> None:
        m = magnet.parse("magnet:?xt=urn:btih:" + "ab" * 20 + "&dn=evil%1B%5D0%3Bt%07.bin")
        lines = views.magnet_lines(m)
        self.assertEqual(lines[0], "name:        evil.bin")


class CreatedLinesTest(unittest.TestCase):
    def test_created_lines_give_the_hashing_time_in_tenths(self) -> None:
        info = hostile_torrent().info
        lines = views.created_lines("d.torrent", info, 0.43)
        self.assertEqual(lines[1], "name:      d (5 B, 1 pieces of 16 KiB, hashed in 0.4 s)")


if __name__ == "__main__":
    unittest.main()
