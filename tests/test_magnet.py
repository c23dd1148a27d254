"""Magnet links: parsing, errors a user can read, formatting that round-trips."""

from __future__ import annotations

import base64
import unittest

from sta import magnet
from sta.magnet import Magnet, MagnetError

IH = bytes(range(20))
HEX = IH.hex()
B32 = base64.b32encode(IH).decode()
PREFIX = "magnet:?xt=urn:btih:"


class ParseTest(unittest.TestCase):
    def test_parse_hex_info_hash(self) -> None:
        self.assertEqual(magnet.parse(PREFIX + HEX).info_hash, IH)

    def test_parse_uppercase_hex_info_hash(self) -> None:
        self.assertEqual(magnet.parse(PREFIX + HEX.upper()).info_hash, IH)

    def test_parse_base32_info_hash_any_case(self) -> None:
        self.assertEqual(magnet.parse(PREFIX + B32).info_hash, IH)
        self.assertEqual(magnet.parse(PREFIX + B32.lower()).info_hash, IH)

    def test_parse_minimal_link_has_empty_fields(self) -> None:
        m = magnet.parse(PREFIX + HEX)
        self.assertEqual((m.name, m.trackers, m.length, m.web_seeds, m.sources, m.peers,
                          m.select_only), (None, (), None, (), (), (), ()))

    def test_parse_scheme_is_case_insensitive_and_whitespace_trimmed(self) -> None:
        self.assertEqual(magnet.parse("  MAGNET:?xt=urn:btih:" + HEX + "\n").info_hash, IH)

    def test_parse_display_name_decodes_plus_and_percent(self) -> None:
        m = magnet.parse(PREFIX + HEX + "&dn=Ubuntu+22.04%20%E2%9C%93")
        self.assertEqual(m.name, "Ubuntu 22.04 \u2713")

    def test_parse_first_display_name_wins(self) -> None:
        self.assertEqual(magnet.parse(PREFIX + HEX + "&dn=a&dn=b").name, "a")

    def test_parse_several_trackers_in_order_without_duplicates(self) -> None:
        m = magnet.parse(PREFIX + HEX + "&tr=http%3A%2F%2Fa%2Fannounce&tr=udp://b:80"
                         "&tr=http%3A%2F%2Fa%2Fannounce")
        self.assertEqual(m.trackers, ("http://a/announce", "udp://b:80"))

    def test_parse_numbered_tracker_keys(self) -> None:
        m = magnet.parse(PREFIX + HEX + "&tr.1=http://a/announce&tr.2=http://b/announce")
        self.assertEqual(m.trackers, ("http://a/announce", "http://b/announce"))

    def test_parse_exact_length(self) -> None:
        self.assertEqual(magnet.parse(PREFIX + HEX + "&xl=123456").length, 123456)

    def test_parse_web_seeds_sources_and_peers(self) -> None:
        m = magnet.parse(PREFIX + HEX + "&ws=http%3A%2F%2Fw%2Ff&xs=http://t:4000/torrents/x"
                         "&x.pe=10.0.0.1:6881&x.pe=[::1]:51413&x.pe=peer.example:80")
        self.assertEqual(m.web_seeds, ("http://w/f",))
        self.assertEqual(m.sources, ("http://t:4000/torrents/x",))
        self.assertEqual(m.peers, ("10.0.0.1:6881", "[::1]:51413", "peer.example:80"))

    def test_parse_select_only_ranges(self) -> None:
        m = magnet.parse(PREFIX + HEX + "&so=0,2,4-6")
        self.assertEqual(m.select_only, (0, 2, 4, 5, 6))

    def test_parse_select_only_sorted_without_duplicates(self) -> None:
        m = magnet.parse(PREFIX + HEX + "&so=6,1-2,2,&so=0")
        self.assertEqual(m.select_only, (0, 1, 2, 6))

    def test_parse_ignores_unknown_parameters(self) -> None:
        m = magnet.parse(PREFIX + HEX + "&kt=a+b&mt=x&foo&as=http://x&dht=1.2.3.4:5&&")
        self.assertEqual(m.info_hash, IH)

    def test_parse_first_btih_wins_and_other_xt_are_ignored(self) -> None:
        other = "11" * 20
        m = magnet.parse("magnet:?xt=urn:btmh:1220" + "ab" * 32 + "&xt=urn:btih:" + HEX
                         + "&xt=urn:btih:" + other)
        self.assertEqual(m.info_hash, IH)

    def test_parse_percent_encoded_xt(self) -> None:
        self.assertEqual(magnet.parse("magnet:?xt=urn%3Abtih%3A" + HEX).info_hash, IH)

    def test_parse_rejects_text_that_is_not_a_magnet(self) -> None:
        for text in ("", "http://example.com/?xt=urn:btih:" + HEX, "magnet:xt=urn:btih:" + HEX,
                     "a.torrent"):
            with self.subTest(text=text):
                with self.assertRaisesRegex(MagnetError, "not a magnet link"):
                    magnet.parse(text)

    def test_parse_rejects_link_without_btih(self) -> None:
        with self.assertRaisesRegex(MagnetError, "no BitTorrent info hash"):
            magnet.parse("magnet:?dn=x&tr=http://a/announce")

    def test_parse_rejects_v2_only_link_with_reason(self) -> None:
        with self.assertRaisesRegex(MagnetError, "v2"):
            magnet.parse("magnet:?xt=urn:btmh:1220" + "ab" * 32)

    def test_parse_rejects_bad_hash_length(self) -> None:
        for h in ("", "abc", HEX[:-1], HEX + "0", B32[:-1]):
            with self.subTest(h=h):
                with self.assertRaisesRegex(MagnetError, "expected 40"):
                    magnet.parse(PREFIX + h)

    def test_parse_rejects_40_chars_that_are_not_hex(self) -> None:
        with self.assertRaisesRegex(MagnetError, "not hexadecimal"):
            magnet.parse(PREFIX + "g" * 40)

    def test_parse_rejects_32_chars_that_are_not_base32(self) -> None:
        with self.assertRaisesRegex(MagnetError, "not base32"):
            magnet.parse(PREFIX + "1" * 32)

    def test_parse_rejects_bad_exact_length(self) -> None:
        for xl in ("", "-1", "12a", "1.5", "9" * 30):
            with self.subTest(xl=xl):
                with self.assertRaisesRegex(MagnetError, "xl"):
                    magnet.parse(PREFIX + HEX + "&xl=" + xl)

    def test_parse_rejects_bad_percent_escape(self) -> None:
        for value in ("%", "%4", "%zz", "a%g1"):
            with self.subTest(value=value):
                with self.assertRaisesRegex(MagnetError, "percent-escape in the 'dn'"):
                    magnet.parse(PREFIX + HEX + "&dn=" + value)

    def test_parse_rejects_value_that_is_not_utf8(self) -> None:
        with self.assertRaisesRegex(MagnetError, "UTF-8"):
            magnet.parse(PREFIX + HEX + "&dn=%FF")

    def test_parse_rejects_bad_select_only(self) -> None:
        for so in ("a", "1-", "-1", "3-1", "1-2-3", "1;2", str(magnet.MAX_SELECT_INDEX + 1),
                   "0-99999999999"):
            with self.subTest(so=so):
                with self.assertRaisesRegex(MagnetError, "file selection"):
                    magnet.parse(PREFIX + HEX + "&so=" + so)

    def test_parse_rejects_bad_peer(self) -> None:
        for pe in ("host", "host:", ":80", "host:0", "host:70000", "[::1:80", "a/b:80", "::1"):
            with self.subTest(pe=pe):
                with self.assertRaisesRegex(MagnetError, "x.pe"):
                    magnet.parse(PREFIX + HEX + "&x.pe=" + pe)

    def test_parse_rejects_overlong_link(self) -> None:
        with self.assertRaisesRegex(MagnetError, "longer than"):
            magnet.parse(PREFIX + HEX + "&dn=" + "a" * magnet.MAX_URI_LENGTH)

    def test_parse_rejects_non_text(self) -> None:
        with self.assertRaises(MagnetError):
            magnet.parse(b"magnet:?xt=urn:btih:" + HEX.encode())  # type: ignore[arg-type]

    def test_magnet_error_is_a_value_error(self) -> None:
        self.assertTrue(issubclass(MagnetError, ValueError))


class FormatTest(unittest.TestCase):
    def test_format_minimal_link(self) -> None:
        self.assertEqual(magnet.format(Magnet(IH)), PREFIX + HEX)

    def test_format_percent_encodes_reserved_characters(self) -> None:
        uri = Magnet(IH, name="a b&c=d+e%f/\u00e9").uri()
        self.assertIn("dn=a%20b%26c%3Dd%2Be%25f/%C3%A9", uri)
        self.assertEqual(uri.count("&"), 1)

    def test_format_keeps_urls_and_peers_readable(self) -> None:
        uri = Magnet(IH, trackers=("http://h:4000/announce?k=a&b=c",),
                     peers=("[::1]:6881",)).uri()
        self.assertIn("&tr=http://h:4000/announce%3Fk%3Da%26b%3Dc&", uri)
        self.assertTrue(uri.endswith("&x.pe=[::1]:6881"))

    def test_format_orders_fields(self) -> None:
        m = Magnet(IH, name="n", trackers=("http://t/announce",), length=5, web_seeds=("http://w",),
                   sources=("http://s",), peers=("1.2.3.4:5",), select_only=(0, 1, 2, 4))
        uri = m.uri()
        keys = [part.split("=")[0] for part in uri.split("?", 1)[1].split("&")]
        self.assertEqual(keys, ["xt", "dn", "xl", "tr", "ws", "xs", "x.pe", "so"])
        self.assertTrue(uri.endswith("&so=0-2,4"))

    def test_format_round_trips(self) -> None:
        cases = [
            Magnet(IH),
            Magnet(IH, name="My files (2024) + \u00fcber & more = 100%", length=0,
                   trackers=("http://h:4000/announce?passkey=a&b=c", "udp://t:1337"),
                   web_seeds=("http://w/a b",), sources=("http://s/x.torrent",),
                   peers=("[2001:db8::1]:6881", "10.0.0.1:1"), select_only=(0, 3, 4, 5, 9)),
        ]
        for m in cases:
            with self.subTest(m=m):
                self.assertEqual(magnet.parse(m.uri()), m)

    def test_format_select_compresses_runs(self) -> None:
        self.assertEqual(magnet.format_select([6, 0, 2, 4, 5, 2]), "0,2,4-6")
        self.assertEqual(magnet.format_select([]), "")

    def test_magnet_requires_twenty_byte_hash(self) -> None:
        with self.assertRaises(MagnetError):
            Magnet(b"\0" * 19)


if __name__ == "__main__":
    unittest.main()
