"""Tests for sta.announcer: what goes to the trackers and when, where their peers go."""

import threading
import time
import unittest
from unittest import mock

from sta import udpannounce
from sta.announce import AnnounceResponse, TrackerError
from sta.announcer import NUMWANT_SEEDING, STOP_TIMEOUT, Announcer, Transferred
from sta.trackerproto import DEFAULT_NUMWANT as NUMWANT
from tests.fakes import WAIT, FakeHost

INFO_HASH = bytes(range(20))
TRACKER = "http://127.0.0.1:1/announce"
OTHER = "http://127.0.0.1:2/announce"
SECURE = "https://127.0.0.1:3/announce"


def response(*peers, interval=1800):
    return AnnounceResponse(interval=interval, min_interval=None, peers=list(peers),
                            tracker_id=None, complete=None, incomplete=None, warning=None)


class FakeTrackers:
    """Stands in for announce.announce: records each call's URL and arguments and answers
    from ``answers`` (URL -> response or exception), peers ("10.1.0.N", 6881) by default."""

    def __init__(self):
        self.calls = []
        self.answers = {}
        self._lock = threading.Lock()

    def __call__(self, url, **params):
        with self._lock:
            self.calls.append(dict(params, url=url))
            answer = self.answers.get(url, response(("10.1.0.%d" % len(self.calls), 6881)))
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer()
        return answer

    def events(self):
        with self._lock:
            return [(c["url"], c["event"]) for c in self.calls]


class Kit(unittest.TestCase):
    def setUp(self):
        self.host = FakeHost(self)
        self.trackers = FakeTrackers()
        patcher = mock.patch("sta.announce.announce", self.trackers)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.counters = Transferred(0, 0, 1000)
        self.peers = []

    def announcer(self, tiers=((TRACKER,),), **kw):
        announcer = Announcer(self.host, INFO_HASH, "t", [list(t) for t in tiers],
                              counters=lambda: self.counters, on_peers=self.peers.extend, **kw)
        return announcer

    def calls_reach(self, count):
        self.host.wait_until(lambda: len(self.trackers.calls) >= count)
        self.host.drain()  # the answer's callbacks


class AnnounceTests(Kit):
    def test_udp_trackers_go_to_the_udp_client_with_the_torrents_id_cache(self):
        udp = FakeTrackers()
        patcher = mock.patch("sta.udpannounce.announce", udp)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.trackers.answers[TRACKER] = TrackerError("down")
        announcer = self.announcer(tiers=((TRACKER,), ("udp://127.0.0.1:9/announce",)))
        announcer.start()
        self.host.wait_until(lambda: len(udp.calls) >= 1)
        self.assertEqual([c["url"] for c in self.trackers.calls], [TRACKER])
        self.assertEqual(udp.calls[0]["event"], "started")
        self.assertIsInstance(udp.calls[0]["connection_ids"], udpannounce.ConnectionIds)

    def test_the_first_announce_says_started_with_the_nodes_identity(self):
        self.counters = Transferred(5, 7, 1000)
        self.announcer().start()
        self.calls_reach(1)
        (call,) = self.trackers.calls
        self.assertEqual(call["url"], TRACKER)
        self.assertEqual(call["event"], "started")
        self.assertEqual((call["info_hash"], call["peer_id"], call["port"], call["key"]),
                         (INFO_HASH, self.host.peer_id, self.host.listen_port, self.host.key))
        self.assertEqual((call["uploaded"], call["downloaded"], call["left"]), (5, 7, 1000))
        self.assertEqual(call["numwant"], NUMWANT)

    def test_the_peers_of_an_answer_go_to_the_callback(self):
        self.trackers.answers[TRACKER] = response(("10.0.0.1", 1), ("10.0.0.2", 2))
        self.announcer().start()
        self.host.wait_until(lambda: self.peers)
        self.assertEqual(self.peers, [("10.0.0.1", 1), ("10.0.0.2", 2)])

    def test_counters_are_read_when_each_announce_is_made(self):
        announcer = self.announcer()
        announcer.start()
        self.calls_reach(1)
        self.counters = Transferred(300, 4000, 0)
        announcer.completed()
        self.calls_reach(2)
        call = self.trackers.calls[1]
        self.assertEqual(call["event"], "completed")
        self.assertEqual((call["uploaded"], call["downloaded"], call["left"]), (300, 4000, 0))
        self.assertEqual(call["numwant"], NUMWANT_SEEDING)

    def test_a_seed_asks_the_tracker_for_downloaders_to_dial(self):
        # A downloader may be unable to dial us (Transmission 3.00 aborts its TCP fallback after
        # uTP fails), so a seed asks for peers as a downloader does.
        self.counters = Transferred(0, 0, 0)
        self.announcer().start()
        self.calls_reach(1)
        self.assertEqual(self.trackers.calls[0]["numwant"], NUMWANT)
        self.assertEqual(NUMWANT_SEEDING, NUMWANT)

    def test_a_failed_announce_shows_in_the_status_and_gives_no_peers(self):
        self.trackers.answers[TRACKER] = TrackerError("connection refused", TRACKER)
        announcer = self.announcer()
        with self.assertLogs("sta", "WARNING"):
            announcer.start()
            self.host.wait_until(lambda: announcer.status()[0].last_error is not None)
        self.assertEqual(announcer.status()[0].last_error, "connection refused")
        self.assertEqual(self.peers, [])

    def test_all_at_once_asks_every_tracker(self):
        self.announcer(tiers=((TRACKER,), (OTHER,)), all_at_once=True).start()
        self.calls_reach(2)
        self.assertEqual(sorted(self.trackers.events()),
                         [(TRACKER, "started"), (OTHER, "started")])

    def test_required_encryption_keeps_only_https_trackers(self):
        self.host.encryption = "require"
        with self.assertLogs("sta.announcer", "WARNING") as logs:
            announcer = self.announcer(tiers=((TRACKER, SECURE),))
        self.assertIn("not using tracker", logs.output[0])
        self.assertEqual([s.url for s in announcer.status()], [SECURE])

    def test_without_trackers_nothing_starts(self):
        announcer = self.announcer(tiers=())
        announcer.start()
        self.host.drain()
        self.host.run(announcer.stop())
        self.assertEqual(self.trackers.calls, [])


class RebindTests(Kit):
    def test_after_rebind_counters_and_peers_belong_to_the_new_owner(self):
        announcer = self.announcer()
        announcer.start()
        self.calls_reach(1)
        self.assertEqual(len(self.peers), 1)
        adopted = []
        announcer.rebind("new", lambda: Transferred(1, 2, 3), adopted.extend)
        self.assertEqual(announcer.name, "new")
        announcer.completed()
        self.calls_reach(2)
        self.host.wait_until(lambda: adopted)
        call = self.trackers.calls[1]
        self.assertEqual((call["uploaded"], call["downloaded"], call["left"]), (1, 2, 3))
        self.assertEqual(len(self.peers), 1)
        self.assertEqual(adopted, [("10.1.0.2", 6881)])


class StopTests(Kit):
    def test_stop_sends_stopped_with_a_short_timeout_to_trackers_that_saw_us(self):
        self.trackers.answers[OTHER] = TrackerError("refused", OTHER)
        announcer = self.announcer(tiers=((TRACKER,), (OTHER,)), all_at_once=True)
        with self.assertLogs("sta", "WARNING"):
            announcer.start()
            self.calls_reach(2)
        self.host.run(announcer.stop())
        stops = [c for c in self.trackers.calls if c["event"] == "stopped"]
        self.assertEqual([c["url"] for c in stops], [TRACKER])
        self.assertEqual(stops[0]["timeout"], STOP_TIMEOUT)

    def test_stop_before_any_answer_sends_nothing(self):
        release = threading.Event()
        self.addCleanup(release.set)
        self.trackers.answers[TRACKER] = lambda: release.wait(WAIT) and response()
        announcer = self.announcer()
        announcer.start()
        self.calls_reach(1)
        self.host.run(announcer.stop())
        self.assertEqual(self.trackers.events(), [(TRACKER, "started")])

    def test_a_tracker_that_does_not_answer_stopped_does_not_hold_the_exit(self):
        announcer = self.announcer()
        announcer.start()
        self.calls_reach(1)
        release = threading.Event()
        self.addCleanup(release.set)
        self.trackers.answers[TRACKER] = lambda: release.wait(WAIT) and response()
        started = time.monotonic()
        with mock.patch("sta.announcer.STOP_TIMEOUT", 0.05), \
                self.assertLogs("sta.announcer", "WARNING") as logs:
            self.host.run(announcer.stop())
        self.assertLess(time.monotonic() - started, WAIT)
        self.assertIn("did not answer 'stopped' in time", logs.output[0])
        self.assertEqual(self.trackers.calls[-1]["timeout"], 0.05)


if __name__ == "__main__":
    unittest.main()
