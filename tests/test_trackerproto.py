"""Tests for sta.trackerproto: announce and scrape URLs built, tracker answers parsed, all with
plain strings and bytes. The HTTP(S) exchanges are tests/test_announce.py."""

from __future__ import annotations

import ipaddress
import unittest
from typing import Tuple
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from sta import trackerproto as TP
from sta.bencode import encode

# Bytes that mean something in a URL (space, +, &, =, %, /, ?, #) and bytes above 0x7f.
INFO_HASH = b"\x00\x01 +&=%~\xff\xfe/?#abcXYZ0"
PEER_ID = b"-SX0001-" + bytes(range(0xF0, 0xFC))
STATS = dict(info_hash=INFO_HASH, peer_id=PEER_ID, port=6881, uploaded=1, downloaded=2, left=3)


def compact(*peers: Tuple[str, int]) -> bytes:
    return b"".join(ipaddress.IPv4Address(h).packed + p.to_bytes(2, "big") for h, p in peers)


def compact6(*peers: Tuple[str, int]) -> bytes:
    return b"".join(ipaddress.IPv6Address(h).packed + p.to_bytes(2, "big") for h, p in peers)


def answer(**fields) -> bytes:
    return encode({k.replace("_", " "): v for k, v in fields.items()})


# ---------------------------------------------------------------------------------------------
# Parsing

class ParseAnnounceTests(unittest.TestCase):
    def parse_error(self, body: bytes) -> str:
        with self.assertRaises(TP.TrackerError) as ctx:
            TP.parse_announce_response(body)
        return str(ctx.exception)

    def test_compact_peers_are_decoded(self):
        r = TP.parse_announce_response(
            answer(interval=900, peers=compact(("10.0.0.1", 6881), ("192.168.1.2", 51413))))
        self.assertEqual(r.peers, [("10.0.0.1", 6881), ("192.168.1.2", 51413)])
        self.assertEqual(r.interval, 900)

    def test_compact_duplicates_are_removed_keeping_order(self):
        r = TP.parse_announce_response(answer(interval=1, peers=compact(
            ("10.0.0.2", 2), ("10.0.0.1", 1), ("10.0.0.2", 2))))
        self.assertEqual(r.peers, [("10.0.0.2", 2), ("10.0.0.1", 1)])

    def test_compact_port_zero_is_dropped(self):
        r = TP.parse_announce_response(answer(interval=1, peers=compact(
            ("10.0.0.1", 0), ("10.0.0.2", 7))))
        self.assertEqual(r.peers, [("10.0.0.2", 7)])

    def test_compact_unspecified_address_is_dropped(self):
        r = TP.parse_announce_response(answer(interval=1, peers=compact(("0.0.0.0", 5))))
        self.assertEqual(r.peers, [])

    def test_compact_length_not_multiple_of_6_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=b"\x01" * 7))
        self.assertIn("not a multiple of 6", message)

    def test_empty_compact_list_is_no_peers(self):
        self.assertEqual(TP.parse_announce_response(answer(interval=1, peers=b"")).peers, [])

    def test_missing_peers_is_no_peers(self):
        self.assertEqual(TP.parse_announce_response(answer(interval=1)).peers, [])

    def test_dictionary_model_is_decoded(self):
        body = answer(interval=60, peers=[
            {"ip": "10.0.0.1", "port": 6881, "peer id": b"A" * 20},
            {"ip": "2001:DB8::1", "port": 6882},
            {"ip": "peer.example.org", "port": 6883},
            {"ip": "[2001:db8::2]", "port": 6884},
        ])
        self.assertEqual(TP.parse_announce_response(body).peers, [
            ("10.0.0.1", 6881), ("2001:db8::1", 6882), ("peer.example.org", 6883),
            ("2001:db8::2", 6884)])

    def test_dictionary_model_drops_port_zero_and_duplicates(self):
        body = answer(interval=60, peers=[
            {"ip": "10.0.0.1", "port": 0}, {"ip": "10.0.0.2", "port": 5},
            {"ip": "10.0.0.2", "port": 5}])
        self.assertEqual(TP.parse_announce_response(body).peers, [("10.0.0.2", 5)])

    def test_dictionary_entry_that_is_not_a_dict_is_rejected(self):
        self.assertIn("peer entry is a string", self.parse_error(answer(interval=1, peers=[b"x"])))

    def test_dictionary_ip_of_wrong_type_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": 5, "port": 1}]))
        self.assertIn("peer 'ip' is a integer", message)

    def test_dictionary_missing_port_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": "10.0.0.1"}]))
        self.assertIn("not a port number", message)

    def test_dictionary_port_out_of_range_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": "10.0.0.1", "port": 70000}]))
        self.assertIn("not a port number", message)

    def test_dictionary_ip_that_is_no_address_or_name_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": "bad host!", "port": 1}]))
        self.assertIn("neither an IP address nor a host name", message)

    def test_dictionary_ip_not_ascii_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers=[{"ip": b"\xff\xfe", "port": 1}]))
        self.assertIn("not ASCII", message)

    def test_peers6_are_decoded(self):
        r = TP.parse_announce_response(answer(interval=1, peers=b"", peers6=compact6(
            ("2001:db8::1", 6881), ("fe80::1:2", 80))))
        self.assertEqual(r.peers, [("2001:db8::1", 6881), ("fe80::1:2", 80)])

    def test_peers6_ipv4_mapped_becomes_ipv4_and_merges(self):
        r = TP.parse_announce_response(answer(interval=1, peers=compact(("10.0.0.1", 5)),
                                             peers6=compact6(("::ffff:10.0.0.1", 5), ("::1", 6))))
        self.assertEqual(r.peers, [("10.0.0.1", 5), ("::1", 6)])

    def test_peers6_length_not_multiple_of_18_is_rejected(self):
        message = self.parse_error(answer(interval=1, peers6=b"\x00" * 17))
        self.assertIn("'peers6' of 17 bytes is not a multiple of 18", message)

    def test_peers6_as_list_is_rejected(self):
        self.assertIn("'peers6' is a list", self.parse_error(answer(interval=1, peers6=[])))

    def test_peers_of_wrong_type_is_rejected(self):
        self.assertIn("'peers' is a integer", self.parse_error(answer(interval=1, peers=5)))

    def test_failure_reason_raises_with_the_trackers_text(self):
        with self.assertRaises(TP.TrackerError) as ctx:
            TP.parse_announce_response(answer(failure_reason="unregistered torrent"))
        self.assertEqual(str(ctx.exception), "failure reason: unregistered torrent")
        self.assertEqual(ctx.exception.failure_reason, "unregistered torrent")

    def test_failure_reason_is_made_one_printable_line(self):
        message = self.parse_error(answer(failure_reason=b"bad\r\n\x1b[31mred\x00" + b"x" * 900))
        self.assertNotIn("\n", message)
        self.assertNotIn("\x1b", message)
        self.assertLessEqual(len(message), len("failure reason: ") + TP.MAX_MESSAGE_CHARS)

    def test_warning_message_is_kept(self):
        r = TP.parse_announce_response(answer(interval=1, peers=b"", warning_message="slow down"))
        self.assertEqual(r.warning, "slow down")

    def test_all_counters_and_tracker_id_are_read(self):
        r = TP.parse_announce_response(answer(
            interval=1800, min_interval=900, tracker_id=b"\x00id", complete=3, incomplete=4,
            peers=b""))
        self.assertEqual((r.interval, r.min_interval, r.tracker_id, r.complete, r.incomplete,
                          r.warning), (1800, 900, b"\x00id", 3, 4, None))

    def test_missing_optional_fields_are_none(self):
        r = TP.parse_announce_response(answer(interval=5, peers=b""))
        self.assertEqual((r.min_interval, r.tracker_id, r.complete, r.incomplete), (None,) * 4)

    def test_missing_interval_uses_default(self):
        self.assertEqual(TP.parse_announce_response(answer(peers=b"")).interval, TP.DEFAULT_INTERVAL)

    def test_interval_of_wrong_type_is_rejected(self):
        message = self.parse_error(answer(interval=b"1800", peers=b""))
        self.assertIn("'interval' is a string, not an integer", message)

    def test_negative_interval_is_rejected(self):
        self.assertIn("'interval' is -5", self.parse_error(answer(interval=-5)))

    def test_complete_of_wrong_type_is_rejected(self):
        self.assertIn("'complete' is a list", self.parse_error(answer(interval=1, complete=[])))

    def test_tracker_id_of_wrong_type_is_rejected(self):
        self.assertIn("'tracker id' is a integer", self.parse_error(answer(tracker_id=1)))

    def test_warning_of_wrong_type_is_rejected(self):
        self.assertIn("'warning message'", self.parse_error(answer(warning_message=1)))

    def test_not_bencoded_is_rejected_with_a_preview(self):
        message = self.parse_error(b"<html><body>Not a tracker</body></html>")
        self.assertIn("not bencoded", message)
        self.assertIn("<html>", message)

    def test_empty_body_is_rejected(self):
        self.assertIn("not bencoded", self.parse_error(b""))

    def test_non_dictionary_answer_is_rejected(self):
        self.assertIn("bencoded list, not a dictionary", self.parse_error(b"li1ee"))

    def test_trailing_newline_is_accepted(self):
        self.assertEqual(TP.parse_announce_response(answer(interval=7) + b"\r\n").interval, 7)

    def test_trailing_garbage_is_rejected(self):
        self.assertIn("garbage", self.parse_error(answer(interval=7) + b"junk"))


class ParseScrapeTests(unittest.TestCase):
    def test_counts_are_read_per_info_hash(self):
        body = encode({"files": {b"a" * 20: {"complete": 1, "incomplete": 2, "downloaded": 3},
                                 b"b" * 20: {"complete": 4}}})
        self.assertEqual(TP.parse_scrape_response(body),
                         {b"a" * 20: (1, 2, 3), b"b" * 20: (4, 0, 0)})

    def test_key_that_is_not_an_info_hash_is_skipped(self):
        body = encode({"files": {b"short": {"complete": 1}}})
        self.assertEqual(TP.parse_scrape_response(body), {})

    def test_failure_reason_raises(self):
        with self.assertRaises(TP.TrackerError):
            TP.parse_scrape_response(answer(failure_reason="no scrape here"))

    def test_files_of_wrong_type_is_rejected(self):
        with self.assertRaises(TP.TrackerError):
            TP.parse_scrape_response(encode({"files": []}))

    def test_entry_of_wrong_type_is_rejected(self):
        with self.assertRaises(TP.TrackerError):
            TP.parse_scrape_response(encode({"files": {b"a" * 20: 5}}))


class DisplayUrlTests(unittest.TestCase):
    def test_query_and_user_info_are_hidden(self):
        self.assertEqual(TP.display_url("https://u:pw@t.example:8443/a/announce?passkey=k#f"),
                         "https://t.example:8443/a/announce")

    def test_ipv6_host_keeps_brackets(self):
        self.assertEqual(TP.display_url("http://[::1]:4000/announce"), "http://[::1]:4000/announce")

    def test_supported_urls(self):
        self.assertTrue(TP.is_supported_url("https://t/announce"))
        self.assertTrue(TP.is_supported_url("udp://t:80/announce"))
        self.assertTrue(TP.is_supported_url("udp://[::1]:6969"))
        self.assertFalse(TP.is_supported_url("udp://t/announce"))     # BEP 15 has no port
        self.assertFalse(TP.is_supported_url("wss://t:80/announce"))
        self.assertTrue(TP.is_udp_url("UDP://t:80"))
        self.assertFalse(TP.is_udp_url("http://t/announce"))
        self.assertFalse(TP.is_supported_url("http://t:99999/announce"))
        self.assertFalse(TP.is_supported_url("http:///announce"))


class ScrapeUrlTests(unittest.TestCase):
    def test_announce_becomes_scrape(self):
        self.assertEqual(TP.scrape_url("http://t:4000/announce"), "http://t:4000/scrape")

    def test_suffix_and_query_are_kept(self):
        self.assertEqual(TP.scrape_url("https://t/x/announce.php?passkey=ab"),
                         "https://t/x/scrape.php?passkey=ab")

    def test_no_announce_in_last_component_gives_none(self):
        self.assertIsNone(TP.scrape_url("http://t/a"))
        self.assertIsNone(TP.scrape_url("http://t/announce/x"))
        self.assertIsNone(TP.scrape_url("http://t/x/myannounce"))

    def test_udp_gives_none(self):
        self.assertIsNone(TP.scrape_url("udp://t:80/announce"))

    def test_scrape_request_carries_every_hash_after_the_query(self):
        url = TP.build_scrape_url("https://t/scrape?passkey=ab#f", [INFO_HASH, b"\x01" * 20])
        self.assertTrue(url.startswith("https://t/scrape?passkey=ab&info_hash="), url)
        hashes = parse_qs(urlsplit(url).query, encoding="latin-1")["info_hash"]
        self.assertEqual([h.encode("latin-1") for h in hashes], [INFO_HASH, b"\x01" * 20])
        self.assertNotIn("#", url)


# ---------------------------------------------------------------------------------------------
# URL building

class BuildUrlTests(unittest.TestCase):
    def query(self, url: str) -> dict:
        return parse_qs(urlsplit(url).query, keep_blank_values=True, encoding="latin-1")

    def test_raw_bytes_round_trip(self):
        for info_hash in (INFO_HASH, bytes(range(20)), bytes(range(236, 256))):
            url = TP.build_announce_url("http://t/announce", **dict(STATS, info_hash=info_hash))
            q = self.query(url)
            self.assertEqual(q["info_hash"][0].encode("latin-1"), info_hash)
            self.assertEqual(q["peer_id"][0].encode("latin-1"), PEER_ID)

    def test_only_unreserved_bytes_stay_unescaped(self):
        url = TP.build_announce_url("http://t/announce", **dict(STATS, info_hash=bytes(range(20)),
                                                               peer_id=bytes(range(100, 120))))
        raw = urlsplit(url).query.split("&")[0].split("=", 1)[1]
        self.assertEqual(unquote_to_bytes(raw), bytes(range(20)))
        unescaped = "".join(raw.split("%")[0:1] + [part[2:] for part in raw.split("%")[1:]])
        allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        self.assertTrue(set(unescaped) <= allowed, unescaped)
        self.assertIn("%20", TP.build_announce_url("http://t/a", **dict(STATS, info_hash=b" " * 20)))

    def test_existing_query_is_kept_and_extended_with_ampersand(self):
        url = TP.build_announce_url("http://t/announce?passkey=x&y=1", **STATS)
        self.assertTrue(url.startswith("http://t/announce?passkey=x&y=1&info_hash="), url)
        self.assertEqual(self.query(url)["passkey"], ["x"])

    def test_trailing_ampersand_or_question_mark_does_not_double(self):
        for base in ("http://t/announce?passkey=x&", "http://t/announce?"):
            url = TP.build_announce_url(base, **STATS)
            self.assertNotIn("&&", url)
            self.assertNotIn("?&", url)

    def test_fragment_is_dropped(self):
        url = TP.build_announce_url("http://t/announce#frag", **STATS)
        self.assertNotIn("#", url)
        self.assertIn("info_hash", self.query(url))

    def test_all_parameters_present(self):
        url = TP.build_announce_url("http://t/announce", **STATS, event="started", numwant=80,
                                   key=0xBEEF, tracker_id=b"\x01tid")
        q = self.query(url)
        self.assertEqual({k: v[0] for k, v in q.items() if k not in ("info_hash", "peer_id")}, {
            "port": "6881", "uploaded": "1", "downloaded": "2", "left": "3", "event": "started",
            "numwant": "80", "compact": "1", "no_peer_id": "1", "key": "0000BEEF",
            "trackerid": "\x01tid"})

    def test_regular_announce_has_no_event_and_no_trackerid(self):
        q = self.query(TP.build_announce_url("http://t/announce", **STATS))
        self.assertNotIn("event", q)
        self.assertNotIn("trackerid", q)
        self.assertNotIn("key", q)

    def test_non_compact_request(self):
        q = self.query(TP.build_announce_url("http://t/announce", **STATS, compact=False))
        self.assertEqual(q["compact"], ["0"])

    def test_bad_arguments_are_rejected(self):
        with self.assertRaises(ValueError):
            TP.build_announce_url("http://t/a", **dict(STATS, info_hash=b"short"))
        with self.assertRaises(ValueError):
            TP.build_announce_url("http://t/a", **STATS, event="paused")
        with self.assertRaises(ValueError):
            TP.build_announce_url("http://t/a", **dict(STATS, left=-1))


if __name__ == "__main__":
    unittest.main()
