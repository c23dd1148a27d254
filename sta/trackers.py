"""Tracker tiers and announce scheduling (BEP 12): which tracker to ask, when, with which event.

Pure policy: no I/O and no clock. Every method takes ``now`` in the engine's own time base
(``loop.time()`` or ``time.monotonic()``), so a test drives it with plain numbers.
``TrackerSchedule`` says when the next announce is due (interval, min interval, backoff after
failures); ``TrackerList`` walks the tiers, picks the event each tracker should see and keeps
what the UI shows per tracker. The engine makes the announces themselves with
``sta.announce.announce`` or ``sta.udpannounce.announce`` and reports each outcome back with ``succeeded`` or ``failed``.

http://, https:// and udp:// trackers (BEP 15) share the tiers alike; any other URL, and a udp://
one without a port, is skipped with a log line (``sta.trackerproto.is_supported_url``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from sta.trackerproto import AnnounceResponse, TrackerError, display_url, is_supported_url

__all__ = [
    "AnnounceJob", "TrackerStatus", "TrackerSchedule", "TrackerList", "MIN_ANNOUNCE_INTERVAL",
    "RETRY_BASE_DELAY", "RETRY_MAX_DELAY",
]

# The tracker client's logger rather than this module's name: what a tracker answered or failed
# to answer is one topic for a user reading or filtering the log ("sta.announce"), whichever half
# of the client noticed it.
log = logging.getLogger("sta.announce")

# Floor under any interval or min interval a tracker gives, so an answer of 0 or 1 cannot make us
# hammer it; low enough that a lab tracker configured with short intervals is still obeyed.
MIN_ANNOUNCE_INTERVAL = 10

# Retry after a failed announce round: RETRY_BASE_DELAY, doubling per consecutive failure, capped
# at RETRY_MAX_DELAY. A tracker that restarts is found again within seconds; one that is down for
# good costs one request an hour, the same cap libtorrent puts on its tracker retry delay.
RETRY_BASE_DELAY = 15
RETRY_MAX_DELAY = 3600


class TrackerSchedule:
    """When the next announce is due, for one announcer: the whole list in BEP 12 mode, or one
    tracker in all-at-once mode. Due at once when new."""

    def __init__(self) -> None:
        self.next_at: Optional[float] = None      # None: due now
        self.failures = 0                         # consecutive failed rounds
        self.last_success_at: Optional[float] = None
        self.min_interval = MIN_ANNOUNCE_INTERVAL

    def is_due(self, now: float) -> bool:
        return self.next_at is None or now >= self.next_at

    def succeeded(self, now: float, interval: int, min_interval: Optional[int] = None) -> float:
        self.failures = 0
        self.last_success_at = now
        self.min_interval = max(min_interval or 0, MIN_ANNOUNCE_INTERVAL)
        self.next_at = now + max(interval, self.min_interval)
        return self.next_at

    def failed(self, now: float) -> float:
        self.failures += 1
        self.next_at = now + self.retry_delay(self.failures)
        return self.next_at

    def reannounce(self, now: float) -> float:
        """Announce again as soon as the tracker's min interval allows (the engine wants peers).
        A failing tracker keeps its backoff: asking it sooner would only hammer it."""
        if self.failures and self.next_at is not None:
            return self.next_at
        earliest = now if self.last_success_at is None else self.last_success_at + self.min_interval
        self.next_at = min(self.next_at if self.next_at is not None else now, max(now, earliest))
        return self.next_at

    def force(self, now: float) -> None:
        """Due now, whatever the interval: for the "completed" event."""
        self.next_at = now

    @staticmethod
    def retry_delay(failures: int) -> float:
        return float(min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** min(max(failures - 1, 0), 20)))


@dataclass(frozen=True)
class AnnounceJob:
    """One announce the engine should make now (adding its own byte counts)."""
    url: str
    event: Optional[str]
    tracker_id: Optional[bytes]


@dataclass(frozen=True)
class TrackerStatus:
    """One tracker as the UI shows it; times are in the engine's clock."""
    url: str
    tier: int
    next_announce_at: Optional[float]
    last_error: Optional[str]
    warning: Optional[str]
    complete: Optional[int]
    incomplete: Optional[int]
    peers: int


class _Tracker:
    def __init__(self, url: str, tier: int) -> None:
        self.url = url
        self.tier = tier
        self.tracker_id: Optional[bytes] = None
        self.started = False          # this tracker acknowledged "started"
        self.completed_sent = False
        self.schedule = TrackerSchedule()   # used in all-at-once mode only
        self.last_error: Optional[str] = None
        self.warning: Optional[str] = None
        self.complete: Optional[int] = None
        self.incomplete: Optional[int] = None
        self.peers = 0


class TrackerList:
    """Which tracker to announce to, when, and with which event.

    BEP 12 mode (default): tiers are shuffled internally once; a round tries the tiers in order
    and each tier's trackers in turn until one answers, which moves to the front of its tier;
    the next round starts from the top again. All-at-once mode (for magnet links, where every
    source of peers counts): each tracker has its own schedule and is announced to concurrently.

    Events: "started" to a tracker before anything else, "completed" once to each tracker that
    saw us start while downloading, "stopped" from ``stop()`` to every tracker that saw us start.
    Tracker ids are kept per tracker, the old one surviving answers without one.
    """

    def __init__(self, tiers: Sequence[Sequence[str]], *, all_at_once: bool = False,
                 rng: Optional[random.Random] = None, label: str = "") -> None:
        """``label`` (the torrent's name) starts every log line, so a log of many torrents
        says which one a tracker error is about."""
        rng = rng or random.Random()
        self._prefix = f"{label}: " if label else ""
        self.all_at_once = all_at_once
        self._tiers: List[List[_Tracker]] = []
        self._by_url: Dict[str, _Tracker] = {}
        for urls in tiers:
            tier: List[_Tracker] = []
            for url in urls:
                if url in self._by_url:
                    continue
                if not is_supported_url(url):
                    log.info("%sskipping tracker %s: only http, https and udp (with a port) "
                             "trackers are supported", self._prefix, display_url(url))
                    continue
                tracker = _Tracker(url, len(self._tiers))
                self._by_url[url] = tracker
                tier.append(tracker)
            if tier:
                rng.shuffle(tier)
                self._tiers.append(tier)
        self._schedule = TrackerSchedule()     # BEP 12 mode: one schedule for the list
        self._cursor = (0, 0)                  # (tier, position) tried next in this round
        # url -> whether the download was complete when that announce was issued
        self._in_flight: Dict[str, bool] = {}
        self._completed = False
        self._stopping = False

    def __len__(self) -> int:
        return len(self._by_url)

    @property
    def tiers(self) -> Tuple[Tuple[str, ...], ...]:
        """Current order of the tiers (shuffled, with promotions)."""
        return tuple(tuple(t.url for t in tier) for tier in self._tiers)

    def tracker_id(self, url: str) -> Optional[bytes]:
        return self._by_url[url].tracker_id

    def due(self, now: float) -> List[AnnounceJob]:
        """The announces to start now; each must be answered with succeeded() or failed()."""
        if self._stopping or not self._tiers:
            return []
        if self.all_at_once:
            candidates = [t for tier in self._tiers for t in tier
                          if t.url not in self._in_flight and t.schedule.is_due(now)]
        elif self._in_flight or not self._schedule.is_due(now):
            return []
        else:
            tier, position = self._cursor
            candidates = [self._tiers[tier][position]]
        jobs = [AnnounceJob(t.url, self._event_for(t), t.tracker_id) for t in candidates]
        for job in jobs:
            self._in_flight[job.url] = self._completed
        return jobs

    def next_due_at(self) -> Optional[float]:
        """Earliest time due() may return something (None: nothing planned, or waiting for an
        answer). A value in the past means now."""
        if self._stopping or not self._tiers:
            return None
        if not self.all_at_once:
            if self._in_flight:
                return None
            return self._schedule.next_at if self._schedule.next_at is not None else float("-inf")
        times = [t.schedule.next_at if t.schedule.next_at is not None else float("-inf")
                 for tier in self._tiers for t in tier if t.url not in self._in_flight]
        return min(times) if times else None

    def succeeded(self, job: AnnounceJob, response: AnnounceResponse, now: float) -> None:
        tracker = self._by_url[job.url]
        issued_complete = self._in_flight.pop(job.url, self._completed)
        if response.tracker_id is not None:
            tracker.tracker_id = response.tracker_id
        tracker.last_error = None
        tracker.warning = response.warning
        if response.warning:
            log.warning("%stracker %s: warning: %s", self._prefix, display_url(job.url),
                        response.warning)
        tracker.complete, tracker.incomplete = response.complete, response.incomplete
        tracker.peers = len(response.peers)
        if job.event == "stopped":
            tracker.started = False
            return
        if job.event == "started":
            tracker.started = True
            # Started with left=0 after finishing: the tracker already counts us as a seed.
            tracker.completed_sent = issued_complete
        elif job.event == "completed":
            tracker.completed_sent = True
        if self.all_at_once:
            schedule = tracker.schedule
        else:
            tier = self._tiers[tracker.tier]
            tier.remove(tracker)
            tier.insert(0, tracker)          # BEP 12: the one that answered goes first
            self._cursor = (0, 0)
            schedule = self._schedule
        schedule.succeeded(now, response.interval, response.min_interval)
        if self._event_for(tracker) == "completed":
            schedule.force(now)              # finished while this announce was on its way

    def failed(self, job: AnnounceJob, error: Exception, now: float) -> None:
        tracker = self._by_url[job.url]
        self._in_flight.pop(job.url, None)
        tracker.last_error = getattr(error, "reason", None) or str(error)
        log.warning("%s%s", self._prefix, error if isinstance(error, TrackerError) and error.url
                    else f"tracker {display_url(job.url)}: {error}")
        if job.event == "stopped" or self._stopping:
            return
        if self.all_at_once:
            tracker.schedule.failed(now)
            return
        tier, position = self._cursor
        if position + 1 < len(self._tiers[tier]):
            self._cursor = (tier, position + 1)      # next tracker of this tier, right away
        elif tier + 1 < len(self._tiers):
            self._cursor = (tier + 1, 0)             # then the next tier
        else:
            self._cursor = (0, 0)                    # every tracker failed: back off
            self._schedule.failed(now)

    def download_completed(self, now: float) -> None:
        """The download finished in this session: "completed" goes out now, once per tracker."""
        if self._completed:
            return
        self._completed = True
        if self.all_at_once:
            for tier in self._tiers:
                for t in tier:
                    if t.started and not t.completed_sent:
                        t.schedule.force(now)
        else:
            self._schedule.force(now)

    def reannounce(self, now: float) -> None:
        """Ask for peers again as soon as the trackers' min intervals allow."""
        schedules = ([t.schedule for tier in self._tiers for t in tier] if self.all_at_once
                     else [self._schedule])
        for schedule in schedules:
            schedule.reannounce(now)

    def stop(self, now: float) -> List[AnnounceJob]:
        """Stop announcing; return the "stopped" announces to make (to trackers that saw us)."""
        self._stopping = True
        return [AnnounceJob(t.url, "stopped", t.tracker_id)
                for tier in self._tiers for t in tier if t.started]

    def status(self) -> List[TrackerStatus]:
        return [TrackerStatus(
            url=t.url, tier=t.tier,
            next_announce_at=(t.schedule if self.all_at_once else self._schedule).next_at,
            last_error=t.last_error, warning=t.warning, complete=t.complete,
            incomplete=t.incomplete, peers=t.peers) for tier in self._tiers for t in tier]

    def _event_for(self, tracker: _Tracker) -> Optional[str]:
        if not tracker.started:
            return "started"
        if self._completed and not tracker.completed_sent:
            return "completed"
        return None
