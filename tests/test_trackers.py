"""Tests for sta.trackers: announce scheduling (interval, min interval, backoff) and BEP 12
tiers, with plain numbers for the clock and a seeded random source."""

from __future__ import annotations

import random
import unittest

from sta import trackerproto as TP
from sta import trackers as T


def ok(interval=1800, min_interval=None, tracker_id=None, warning=None, peers=()):
    return TP.AnnounceResponse(interval=interval, min_interval=min_interval, peers=list(peers),
                               tracker_id=tracker_id, complete=None, incomplete=None,
                               warning=warning)


class ScheduleTests(unittest.TestCase):
    def test_new_schedule_is_due_at_once(self):
        self.assertTrue(T.TrackerSchedule().is_due(0.0))

    def test_interval_sets_next_announce(self):
        s = T.TrackerSchedule()
        self.assertEqual(s.succeeded(100.0, 1800), 1900.0)
        self.assertFalse(s.is_due(1899.9))
        self.assertTrue(s.is_due(1900.0))

    def test_min_interval_raises_a_shorter_interval(self):
        s = T.TrackerSchedule()
        self.assertEqual(s.succeeded(0.0, 60, min_interval=300), 300.0)

    def test_tiny_interval_is_floored(self):
        self.assertEqual(T.TrackerSchedule().succeeded(0.0, 0), T.MIN_ANNOUNCE_INTERVAL)

    def test_failures_back_off_exponentially_up_to_the_cap(self):
        s = T.TrackerSchedule()
        delays = [s.failed(0.0) for _ in range(12)]
        self.assertEqual(delays[:3], [T.RETRY_BASE_DELAY, 2 * T.RETRY_BASE_DELAY,
                                      4 * T.RETRY_BASE_DELAY])
        self.assertEqual(delays[-1], T.RETRY_MAX_DELAY)
        self.assertEqual(delays, sorted(delays))
        s.succeeded(0.0, 100)
        self.assertEqual(s.failed(0.0), T.RETRY_BASE_DELAY)

    def test_reannounce_waits_for_min_interval(self):
        s = T.TrackerSchedule()
        s.succeeded(1000.0, 1800, min_interval=120)
        self.assertEqual(s.reannounce(1010.0), 1120.0)
        s = T.TrackerSchedule()
        s.succeeded(1000.0, 1800, min_interval=120)
        self.assertEqual(s.reannounce(1500.0), 1500.0)

    def test_reannounce_keeps_the_backoff_of_a_failing_tracker(self):
        s = T.TrackerSchedule()
        s.succeeded(0.0, 1800)
        s.failed(2000.0)
        self.assertEqual(s.reannounce(2001.0), 2000.0 + T.RETRY_BASE_DELAY)

    def test_reannounce_never_delays(self):
        s = T.TrackerSchedule()
        s.succeeded(0.0, 1800, min_interval=60)
        s.force(100.0)
        self.assertEqual(s.reannounce(200.0), 100.0)


    def test_retry_delay_stays_at_the_cap_after_very_many_failures(self):
        self.assertEqual(T.RETRY_MAX_DELAY, 3600)  # libtorrent's cap on tracker retries
        self.assertEqual(T.TrackerSchedule.retry_delay(1), T.RETRY_BASE_DELAY)
        self.assertEqual(T.TrackerSchedule.retry_delay(10_000), T.RETRY_MAX_DELAY)


class TrackerListTests(unittest.TestCase):
    def make(self, tiers, **kw) -> T.TrackerList:
        return T.TrackerList(tiers, rng=random.Random(7), **kw)

    def fail_job(self, tl, job, now, error=None):
        with self.assertLogs("sta.announce", "WARNING"):
            tl.failed(job, error or OSError("down"), now)

    def test_shuffles_within_tiers_only_and_drops_duplicates_and_unsupported(self):
        tiers = [["http://a/announce", "http://b/announce", "http://c/announce"],
                 ["http://d/announce", "http://a/announce", "wss://u:80/announce",
                  "udp://noport/announce"]]
        orders = {T.TrackerList(tiers, rng=random.Random(seed)).tiers for seed in range(30)}
        for order in orders:
            self.assertEqual(sorted(order[0]), tiers[0])
            self.assertEqual(order[1], ("http://d/announce",))
        self.assertGreater(len(orders), 1)

    def test_udp_trackers_share_tiers_with_http_ones(self):
        tiers = [["udp://u:6969/announce", "http://a/announce"], ["udp://v:80"]]
        tl = self.make(tiers)
        self.assertEqual(sorted(tl.tiers[0]), sorted(tiers[0]))
        self.assertEqual(tl.tiers[1], ("udp://v:80",))
        first = tl.due(0.0)[0]
        self.fail_job(tl, first, 0.0)
        self.assertEqual([j.url for j in tl.due(0.0)],
                         [u for u in tl.tiers[0] if u != first.url])

    def test_first_announce_is_started_to_the_first_tracker(self):
        tl = self.make([["http://a/announce", "http://b/announce"]])
        jobs = tl.due(0.0)
        self.assertEqual(jobs, [T.AnnounceJob(tl.tiers[0][0], "started", None)])
        self.assertEqual(tl.due(0.0), [], "nothing more while one is in flight")
        self.assertIsNone(tl.next_due_at())

    def test_failover_walks_the_tier_then_the_next_tier(self):
        tl = self.make([["http://a/announce", "http://b/announce"], ["http://c/announce"]])
        first, second = tl.tiers[0]
        tried = []
        for _ in range(3):
            job, = tl.due(0.0)
            tried.append(job.url)
            self.fail_job(tl, job, 0.0, TP.TrackerError("connection refused", job.url))
        self.assertEqual(tried, [first, second, "http://c/announce"])
        self.assertEqual(tl.next_due_at(), T.RETRY_BASE_DELAY)
        self.assertEqual(tl.due(1.0), [])
        job, = tl.due(T.RETRY_BASE_DELAY)
        self.assertEqual(job.url, first, "a new round starts from the top")

    def test_answering_tracker_moves_to_the_front_of_its_tier(self):
        tl = self.make([["http://a/announce", "http://b/announce", "http://c/announce"]])
        before = tl.tiers[0]
        job, = tl.due(0.0)
        self.fail_job(tl, job, 0.0)
        job, = tl.due(0.0)
        self.assertEqual(job.url, before[1])
        tl.succeeded(job, ok(interval=600), 0.0)
        self.assertEqual(tl.tiers[0], (before[1], before[0], before[2]))
        self.assertEqual(tl.next_due_at(), 600.0)
        job, = tl.due(600.0)
        self.assertEqual((job.url, job.event), (before[1], None))

    def test_success_in_a_later_tier_restarts_from_the_first_tier_next_round(self):
        tl = self.make([["http://a/announce"], ["http://b/announce"]])
        job, = tl.due(0.0)
        self.fail_job(tl, job, 0.0)
        job, = tl.due(0.0)
        tl.succeeded(job, ok(interval=100), 0.0)
        job, = tl.due(100.0)
        self.assertEqual((job.url, job.event), ("http://a/announce", "started"))

    def test_completed_is_sent_once_and_right_away(self):
        tl = self.make([["http://a/announce"]])
        job, = tl.due(0.0)
        tl.succeeded(job, ok(interval=1800), 0.0)
        tl.download_completed(50.0)
        tl.download_completed(51.0)
        job, = tl.due(50.0)
        self.assertEqual(job.event, "completed")
        tl.succeeded(job, ok(interval=1800), 50.0)
        job, = tl.due(1850.0)
        self.assertIsNone(job.event)

    def test_completion_during_an_announce_is_sent_after_it(self):
        tl = self.make([["http://a/announce"]])
        job, = tl.due(0.0)
        tl.succeeded(job, ok(), 0.0)
        job, = tl.due(1800.0)
        tl.download_completed(1800.5)
        tl.succeeded(job, ok(), 1801.0)
        job, = tl.due(1801.0)
        self.assertEqual(job.event, "completed")

    def test_completion_mid_round_keeps_the_failover_position(self):
        tl = self.make([["http://a/announce", "http://b/announce"], ["http://c/announce"]])
        first, second = tl.tiers[0]
        job, = tl.due(0.0)
        self.fail_job(tl, job, 0.0)
        job, = tl.due(0.0)
        self.assertEqual(job.url, second)
        tl.download_completed(0.5)
        self.fail_job(tl, job, 1.0)
        job, = tl.due(1.0)
        self.assertEqual(job.url, "http://c/announce")

    def test_completion_during_the_started_announce_is_still_sent(self):
        tl = self.make([["http://a/announce"]])
        job, = tl.due(0.0)
        tl.download_completed(0.5)
        tl.succeeded(job, ok(), 1.0)
        self.assertEqual(tl.due(1.0)[0].event, "completed")

    def test_seed_from_the_start_never_sends_completed(self):
        tl = self.make([["http://a/announce"]])
        for now in (0.0, 1800.0, 3600.0):
            job, = tl.due(now)
            self.assertNotEqual(job.event, "completed")
            tl.succeeded(job, ok(), now)

    def test_tracker_first_reached_after_completion_gets_started_only(self):
        a, b = "http://a/announce", "http://b/announce"
        tl = self.make([[a], [b]])
        job, = tl.due(0.0)
        tl.succeeded(job, ok(interval=100), 0.0)
        tl.download_completed(10.0)
        job, = tl.due(10.0)
        self.assertEqual((job.url, job.event), (a, "completed"))
        self.fail_job(tl, job, 10.0)
        job, = tl.due(10.0)
        self.assertEqual((job.url, job.event), (b, "started"))
        tl.succeeded(job, ok(interval=100), 10.0)
        job, = tl.due(110.0)
        self.assertEqual((job.url, job.event), (a, "completed"), "a still owes it")
        self.fail_job(tl, job, 110.0)
        job, = tl.due(110.0)
        self.assertEqual((job.url, job.event), (b, None), "b saw left=0 in started")

    def test_tracker_id_is_kept_when_absent_later_and_sent_back(self):
        tl = self.make([["http://a/announce"]])
        job, = tl.due(0.0)
        tl.succeeded(job, ok(interval=10, tracker_id=b"T1"), 0.0)
        job, = tl.due(10.0)
        self.assertEqual(job.tracker_id, b"T1")
        tl.succeeded(job, ok(interval=10), 10.0)
        job, = tl.due(20.0)
        self.assertEqual(job.tracker_id, b"T1")
        tl.succeeded(job, ok(interval=10, tracker_id=b"T2"), 20.0)
        self.assertEqual(tl.tracker_id("http://a/announce"), b"T2")

    def test_warning_and_error_are_kept_for_display(self):
        tl = self.make([["http://a/announce"], ["http://b/announce"]])
        job, = tl.due(0.0)
        with self.assertLogs("sta.announce", "WARNING"):
            tl.failed(job, TP.TrackerError("connection refused", job.url), 0.0)
        job, = tl.due(0.0)
        with self.assertLogs("sta.announce", "WARNING") as logs:
            tl.succeeded(job, ok(warning="be nice"), 0.0)
        self.assertIn("be nice", logs.output[0])
        status = {s.url: s for s in tl.status()}
        self.assertEqual(status["http://a/announce"].last_error, "connection refused")
        self.assertEqual(status["http://b/announce"].warning, "be nice")

    def test_stop_sends_stopped_to_started_trackers_only(self):
        tl = self.make([["http://a/announce"], ["http://b/announce"]])
        job, = tl.due(0.0)
        tl.succeeded(job, ok(tracker_id=b"X"), 0.0)
        stops = tl.stop(5.0)
        self.assertEqual(stops, [T.AnnounceJob("http://a/announce", "stopped", b"X")])
        self.assertEqual(tl.due(10_000.0), [])
        self.assertIsNone(tl.next_due_at())
        tl.succeeded(stops[0], ok(), 6.0)
        self.assertEqual(tl.stop(7.0), [])

    def test_reannounce_respects_min_interval(self):
        tl = self.make([["http://a/announce"]])
        job, = tl.due(0.0)
        tl.succeeded(job, ok(interval=1800, min_interval=60), 0.0)
        tl.reannounce(5.0)
        self.assertEqual(tl.next_due_at(), 60.0)

    def test_all_at_once_announces_every_tracker_with_own_schedule(self):
        tl = self.make([["http://a/announce", "http://b/announce"], ["http://c/announce"]],
                       all_at_once=True)
        jobs = tl.due(0.0)
        self.assertEqual(sorted(j.url for j in jobs),
                         ["http://a/announce", "http://b/announce", "http://c/announce"])
        self.assertTrue(all(j.event == "started" for j in jobs))
        self.assertEqual(tl.due(0.0), [])
        by_url = {j.url: j for j in jobs}
        tl.succeeded(by_url["http://a/announce"], ok(interval=100), 0.0)
        tl.succeeded(by_url["http://b/announce"], ok(interval=300), 0.0)
        self.fail_job(tl, by_url["http://c/announce"], 0.0)
        self.assertEqual(tl.next_due_at(), T.RETRY_BASE_DELAY)
        self.assertEqual([j.url for j in tl.due(T.RETRY_BASE_DELAY)], ["http://c/announce"])
        self.assertEqual([j.url for j in tl.due(100.0)], ["http://a/announce"])
        tl.download_completed(150.0)
        self.assertEqual([(j.url, j.event) for j in tl.due(150.0)],
                         [("http://b/announce", "completed")])

    def test_failed_stopped_announce_does_not_back_off_or_retry(self):
        tl = self.make([["http://a/announce"]])
        job, = tl.due(0.0)
        tl.succeeded(job, ok(), 0.0)
        stop, = tl.stop(5.0)
        self.fail_job(tl, stop, 5.0)
        self.assertEqual(tl.due(10_000.0), [])
        self.assertEqual(tl.status()[0].next_announce_at, 1800.0)  # no backoff was planned
        self.assertEqual(tl.status()[0].last_error, "down")

    def test_log_lines_name_the_torrent(self):
        tl = self.make([["http://a/announce"]], label="ass1.pdf")
        job, = tl.due(0.0)
        with self.assertLogs("sta.announce", "WARNING") as logs:
            tl.failed(job, OSError("down"), 0.0)
        self.assertTrue(logs.output[0].endswith("ass1.pdf: tracker http://a/announce: down"),
                        logs.output)

    def test_status_shows_each_trackers_own_schedule_in_all_at_once_mode(self):
        tl = self.make([["http://a/announce"], ["http://b/announce"]], all_at_once=True)
        jobs = {j.url: j for j in tl.due(0.0)}
        tl.succeeded(jobs["http://a/announce"], ok(interval=100, peers=[("1.2.3.4", 1)]), 0.0)
        tl.succeeded(jobs["http://b/announce"], ok(interval=300), 0.0)
        status = {s.url: s for s in tl.status()}
        self.assertEqual((status["http://a/announce"].next_announce_at,
                          status["http://a/announce"].peers), (100.0, 1))
        self.assertEqual((status["http://b/announce"].next_announce_at,
                          status["http://b/announce"].tier), (300.0, 1))

    def test_completed_goes_only_to_trackers_that_saw_us_start_in_all_at_once_mode(self):
        tl = self.make([["http://a/announce"], ["http://b/announce"]], all_at_once=True)
        jobs = {j.url: j for j in tl.due(0.0)}
        tl.succeeded(jobs["http://a/announce"], ok(interval=1800), 0.0)
        self.fail_job(tl, jobs["http://b/announce"], 0.0)
        tl.download_completed(1.0)
        self.assertEqual([(j.url, j.event) for j in tl.due(1.0)],
                         [("http://a/announce", "completed")])
        self.assertEqual([(j.url, j.event) for j in tl.due(T.RETRY_BASE_DELAY)],
                         [("http://b/announce", "started")])

    def test_empty_list_plans_nothing(self):
        tl = self.make([["wss://x:1/announce"], []])
        self.assertEqual(len(tl), 0)
        self.assertEqual(tl.due(0.0), [])
        self.assertIsNone(tl.next_due_at())


if __name__ == "__main__":
    unittest.main()
