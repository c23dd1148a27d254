"""The announce loop of one torrent: the blocking tracker clients driven from the event loop.

trackers.TrackerList decides which tracker is due and with which event (BEP 12 tiers, intervals,
backoff); this module runs those announces in the host's default thread pool (announce.py for
http and https, udpannounce.py for udp, chosen by the URL's scheme), hands the peers they
return to a callback, and sends "stopped" on the way out. It reads the torrent's transfer
counters through another callback, so it knows nothing of the torrent itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

from . import announce, udpannounce
from .trackerproto import DEFAULT_NUMWANT, TrackerError, display_url, is_udp_url
from .torrenthost import TorrentHost
from .trackers import AnnounceJob, TrackerList

log = logging.getLogger(__name__)

# The loop wakes at least this often even when no announce is due, so a clock jump or a missed
# wake-up cannot stall it for a whole 30-minute interval.
MAX_SLEEP = 30.0
# "stopped" announces at exit must not hold the user's terminal: a dead tracker gets this long.
STOP_TIMEOUT = 5.0
# Peers a seed asks for: as many as a downloader (trackerproto's DEFAULT_NUMWANT), as libtorrent
# (num_want whatever the state) and Transmission (80 unless stopping) do. A seed cannot count on
# the downloaders to connect to it: Transmission 3.00 dials a new peer over uTP first and aborts
# its own TCP fallback when that times out, so a seed without uTP is only downloaded from if it
# dials the downloader itself, which needs the downloader's address from the tracker.
NUMWANT_SEEDING = DEFAULT_NUMWANT


def private_urls(urls: Sequence[str], encryption: str, what: str, name: str) -> list:
    """With encryption required, only https URLs: an http announce or .torrent download carries
    the info hash in clear, which `require` promises never happens."""
    if encryption != "require":
        return list(urls)
    kept = [url for url in urls if url.lower().startswith("https://")]
    for url in urls:
        if url not in kept:
            log.warning("%s: not using %s %s: encryption is required and it is not https",
                        name, what, display_url(url))
    return kept


class Transferred(NamedTuple):
    """What an announce reports: payload bytes up and down, bytes still missing."""
    uploaded: int
    downloaded: int
    left: int


class Announcer:
    """``counters()`` reads the torrent's Transferred; ``on_peers(addresses)`` receives peers."""

    def __init__(self, host: TorrentHost, info_hash: bytes, name: str,
                 tiers: Sequence[Sequence[str]], *, counters: Callable[[], Transferred],
                 on_peers: Callable[[List[Tuple[str, int]]], None],
                 all_at_once: bool = False) -> None:
        self.host = host
        self.info_hash = info_hash
        self.name = name
        tiers = [private_urls(tier, host.encryption, "tracker", name) for tier in tiers]
        self.trackers = TrackerList([tier for tier in tiers if tier], all_at_once=all_at_once,
                                    label=name)
        self._counters = counters
        self._on_peers = on_peers
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._udp_ids = udpannounce.ConnectionIds()  # BEP 15 ids, reused for their minute

    def rebind(self, name: str, counters: Callable[[], Transferred],
               on_peers: Callable[[List[Tuple[str, int]]], None]) -> None:
        """Report for another owner from now on (a magnet's stand-in became the torrent)."""
        self.name = name
        self._counters = counters
        self._on_peers = on_peers

    def start(self) -> None:
        if len(self.trackers) == 0:
            return
        self._wake = asyncio.Event()
        self._task = self.host.spawn(self._run())

    def completed(self) -> None:
        self.trackers.download_completed(time.monotonic())
        self._poke()

    def need_peers(self) -> None:
        """Ask again as soon as the trackers' min interval allows (all our peers are gone)."""
        self.trackers.reannounce(time.monotonic())
        self._poke()

    def status(self) -> list:
        return self.trackers.status()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            now = time.monotonic()
            for job in self.trackers.due(now):
                self.host.spawn(self._announce(job))
            due_at = self.trackers.next_due_at()
            delay = MAX_SLEEP if due_at is None else min(MAX_SLEEP, max(0.0, due_at - now))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _announce(self, job: AnnounceJob) -> None:
        try:
            response = await self.host.loop.run_in_executor(None, partial(
                self._client(job.url), job.url, **self._params(job)))
        except (TrackerError, ValueError, OSError) as exc:
            self.trackers.failed(job, exc, time.monotonic())
        else:
            self.trackers.succeeded(job, response, time.monotonic())
            log.info("%s: tracker %s gave %d peers", self.name,
                     display_url(job.url), len(response.peers))
            self._on_peers(response.peers)
        finally:
            self._poke()

    def _params(self, job: AnnounceJob) -> dict:
        host = self.host
        counters = self._counters()
        return dict(info_hash=self.info_hash, peer_id=host.peer_id, port=host.listen_port,
                    uploaded=counters.uploaded, downloaded=counters.downloaded,
                    left=counters.left, event=job.event,
                    numwant=DEFAULT_NUMWANT if counters.left else NUMWANT_SEEDING, key=host.key,
                    tracker_id=job.tracker_id, ssl_context=host.tracker_ssl_context)

    def _client(self, url: str) -> Callable[..., Any]:
        """The blocking announce for ``url``'s scheme."""
        if is_udp_url(url):
            return partial(udpannounce.announce, connection_ids=self._udp_ids)
        return announce.announce

    async def stop(self) -> None:
        """Cancel the loop and tell every tracker that saw us start that we are leaving."""
        if self._task is not None:
            self._task.cancel()
        jobs = self.trackers.stop(time.monotonic())
        if not jobs:
            return
        loop = self.host.loop
        calls = [loop.run_in_executor(None, partial(self._client(job.url), job.url,
                                                    **dict(self._params(job),
                                                           timeout=STOP_TIMEOUT)))
                 for job in jobs]
        try:
            await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True),
                                   STOP_TIMEOUT + 1)
        except asyncio.TimeoutError:
            log.warning("%s: a tracker did not answer 'stopped' in time", self.name)
