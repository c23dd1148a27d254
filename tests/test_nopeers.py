"""nopeers.py: the sentence a user gets when a torrent sits at 0% without peers, from status
dicts alone, and when it is said."""

from __future__ import annotations

import unittest
from typing import Any, Dict

from sta import nopeers
from sta.nopeers import NO_PEER_NOTICE_AFTER as AFTER, NO_PEER_NOTICE_EVERY as EVERY


def status(**fields: Any) -> Dict[str, Any]:
    row: Dict[str, Any] = {"name": "a.bin", "info_hash": "ab" * 20, "state": "downloading",
                           "peers": 0}
    row.update(fields)
    return row


def tracker(url: str = "http://10.0.0.1:4000/announce", error: Any = None,
            peers: Any = None) -> Dict[str, Any]:
    return {"url": url, "error": error, "peers": peers}


class WhyNoPeersTest(unittest.TestCase):
    def test_nothing_to_say_before_the_wait_or_with_peers_or_when_seeding(self) -> None:
        dead = status(trackers=[tracker(error="connection refused")], known=0, failed=[])
        self.assertIsNone(nopeers.why_no_peers(dead, AFTER - 0.1))
        self.assertIsNone(nopeers.why_no_peers(dict(dead, peers=1), AFTER * 10))
        for state in ("seeding", "paused", "checking", "error"):
            self.assertIsNone(nopeers.why_no_peers(dict(dead, state=state), AFTER * 10))

    def test_unreachable_tracker_says_so_and_to_check_the_address(self) -> None:
        text = nopeers.why_no_peers(status(
            trackers=[tracker(error="connection refused")], known=0, failed=[]), AFTER)
        self.assertEqual(text, "no peer after 10 s: tracker 10.0.0.1:4000 unreachable: "
                               "connection refused. Check the tracker address and that the "
                               "tracker is running, or give a peer with --peer HOST:PORT.")

    def test_tracker_with_no_other_peer_suggests_starting_a_seed(self) -> None:
        text = nopeers.why_no_peers(status(trackers=[tracker(peers=0)], known=0, failed=[]), 30)
        self.assertEqual(text, "no peer after 30 s: tracker 10.0.0.1:4000 knows no other peer "
                               "of this torrent. Start a seed of it ('sta seed'), or give a "
                               "peer with --peer HOST:PORT.")

    def test_peers_that_do_not_answer_are_named(self) -> None:
        failed = [f"10.0.0.{i}:6881" for i in range(2, 7)]
        text = nopeers.why_no_peers(status(trackers=[tracker(peers=5)], known=5,
                                           failed=failed), 12.7)
        self.assertEqual(text, "no peer after 12 s: no peer answered on 10.0.0.2:6881, "
                               "10.0.0.3:6881, 10.0.0.4:6881 and 2 more; tracker "
                               "10.0.0.1:4000 gave 5 peers. Check that the seed is running and "
                               "that no firewall blocks its port, or give a peer with --peer "
                               "HOST:PORT.")

    def test_a_torrent_without_tracker_or_peer(self) -> None:
        text = nopeers.why_no_peers(status(trackers=[], known=0, failed=[]), AFTER)
        self.assertEqual(text, "no peer after 10 s: the torrent names no tracker. Give a peer "
                               "with --peer HOST:PORT.")

    def test_a_magnet_waiting_for_its_metadata_is_explained_too(self) -> None:
        text = nopeers.why_no_peers(status(state="metadata", trackers=[tracker()], known=0,
                                           failed=[]), AFTER)
        self.assertEqual(text, "no peer after 10 s: tracker 10.0.0.1:4000 has not answered "
                               "yet. Check the tracker address and that the tracker is "
                               "running, or give a peer with --peer HOST:PORT.")

    def test_tracker_refusals_and_http_errors_are_told_apart(self) -> None:
        text = nopeers.why_no_peers(status(trackers=[
            tracker("http://a:4000/announce", error="failure reason: unregistered torrent"),
            tracker("http://b/x", error="HTTP 404 Not Found")], known=0, failed=[]), AFTER)
        self.assertIn("tracker a:4000 refused it: unregistered torrent; tracker b answered "
                      "HTTP 404 Not Found (is that the tracker's address?). Check the tracker "
                      "address", text)

    def test_many_trackers_are_counted_not_listed(self) -> None:
        trackers = [tracker(f"udp://t{i}:1337", error="timed out") for i in range(7)]
        text = nopeers.why_no_peers(status(trackers=trackers, known=0, failed=[]), AFTER)
        self.assertIn("tracker t2:1337 unreachable: timed out; and 4 more trackers.", text)

    def test_known_addresses_not_yet_dialled(self) -> None:
        text = nopeers.why_no_peers(status(trackers=[tracker(peers=1)], known=1, failed=[]),
                                    AFTER)
        self.assertTrue(text.startswith("no peer after 10 s: 1 peer address known, none "
                                        "connected yet; "), text)

    def test_without_the_engine_keys_it_says_less(self) -> None:
        self.assertEqual(nopeers.why_no_peers(status(), AFTER),
                         "no peer after 10 s. Check the tracker address, or give a peer with "
                         "--peer HOST:PORT.")

    def test_tracker_address_hides_passkeys_and_paths(self) -> None:
        self.assertEqual(nopeers.tracker_address("http://u:key@10.0.0.1:4000/a?passkey=x"),
                         "10.0.0.1:4000")
        self.assertEqual(nopeers.tracker_address("https://[::1]/announce"), "[::1]")
        self.assertEqual(nopeers.tracker_address("not a url?secret"), "not a url")


class NoPeerNoticesTest(unittest.TestCase):
    DEAD = status(trackers=[tracker(error="connection refused")], known=0, failed=[])

    def test_said_once_after_the_wait_then_rarely(self) -> None:
        notices = nopeers.NoPeerNotices()
        said = [t for t in range(0, int(AFTER + 2 * EVERY) + 2)
                if notices.check("a", self.DEAD, 100.0 + t)]
        self.assertEqual(said, [int(AFTER), int(AFTER + EVERY), int(AFTER + 2 * EVERY)])

    def test_a_peer_resets_the_clock(self) -> None:
        notices = nopeers.NoPeerNotices()
        self.assertIsNone(notices.check("a", self.DEAD, 0))
        self.assertIsNone(notices.check("a", dict(self.DEAD, peers=2), AFTER))
        self.assertIsNone(notices.check("a", self.DEAD, AFTER + 1))
        self.assertIsNotNone(notices.check("a", self.DEAD, 2 * AFTER + 1))

    def test_each_torrent_has_its_own_clock(self) -> None:
        notices = nopeers.NoPeerNotices()
        notices.check("a", self.DEAD, 0)
        notices.check("b", self.DEAD, 5)
        self.assertIsNotNone(notices.check("a", self.DEAD, AFTER))
        self.assertIsNone(notices.check("b", self.DEAD, AFTER))
        self.assertIsNotNone(notices.check("b", self.DEAD, AFTER + 5))

    def test_a_seed_is_never_told(self) -> None:
        notices = nopeers.NoPeerNotices()
        for t in range(0, 1000, 10):
            self.assertIsNone(notices.check("a", dict(self.DEAD, state="seeding"), t))


if __name__ == "__main__":
    unittest.main()
