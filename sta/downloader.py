"""Downloading for one torrent: requests in flight, endgame, blocks in, pieces verified.

The picker (picker.py) decides which blocks to ask whom; this module keeps, per peer, the
requests in flight with the time each was sent, sizes each peer's pipeline to its rate, snubs
peers that stop sending, and expires lost requests. Arriving blocks are gathered per piece in
memory (blockcache.WriteBuffers) and each whole piece is hashed and written in the host's
thread pool; data that fails the hash never reaches the disk. Who sent which block is recorded
in one place, the smart ban (smartban.py), which names liars once a failed piece passes.

The torrent owns the peers' bitfields and passes them in; the downloader reports verdicts
through callbacks and reads the time from its caller.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .bitfield import Bitfield
from .blockcache import DiskBacklog, WriteBuffers, verify_and_write, verify_stored
from .picker import PiecePicker
from .smartban import SmartBan
from .wire import BLOCK_SIZE

log = logging.getLogger(__name__)

# Requests we keep in flight to one peer, at most: 128 x 16 KiB = 2 MiB, several milliseconds
# at loopback speed and a full round trip on any LAN (measured on loopback: as fast as 500);
# within what every major client accepts (libtorrent 2000, Transmission 512) and clamped
# further by the peer's own `reqq`. Deeper would only add to what a crash throws away: requests
# in flight are lost with it (a kill -9 test measures that share).
MAX_OUTSTANDING_REQUESTS = 128
MIN_OUTSTANDING_REQUESTS = 16
# Seconds of transfer the request pipeline should cover at the peer's current rate (libtorrent's
# request_queue_time is 3 s).
REQUEST_QUEUE_SECONDS = 3.0
# A peer that sends nothing we asked for in this long is snubbed: its requests go back to the
# pool for others and it keeps a single request in flight (libtorrent: 60 s; a lab LAN is fast,
# so we give up sooner).
SNUB_TIMEOUT = 20.0
# One request unanswered this long while other blocks arrive was lost or dropped by the peer.
REQUEST_TIMEOUT = 40.0
# Requests in flight per peer in endgame mode: a peer asks for a block someone else is already
# sending only once it has nothing else to do, one at a time (libtorrent's strict end game mode),
# so the end of a download costs little more than the data.
ENDGAME_QUEUE = 1
# A rate that grows by less than this factor in a second ends the pipeline's slow start.
SLOW_START_GROWTH = 1.1
# Allowed-fast pieces (BEP 6) remembered per peer: libtorrent grants 5 by default; more than
# this from one peer is ignored.
MAX_ALLOWED_FAST = 32
# Whole pieces waiting for the hashing pool (and the write that follows), at most, for all the
# torrents of a node together (blockcache.DiskBacklog): past this no new request goes out until
# the disk catches up. Hashing runs at about 1 GB/s per thread, so 4 MiB is a few milliseconds
# of work on a healthy machine; more would only be memory, and data a crash throws away (a kill
# -9 test measures that share: 8 MiB lost up to 9.6 % of a file over three kills once loopback
# downloads ran at 700 MB/s). Never less than two pieces of the torrent asking.
MAX_PENDING_VERIFY_BYTES = 4 * 1024 * 1024
# From a seed, ask only for pieces that no connected non-seed peer has, while some non-seed peer
# unchokes us and has pieces we want: the seed's upload then goes to pieces that are new to the
# swarm, and the pieces others hold come from them. A seed is otherwise busy for the whole
# download, so it sends its link rate times the swarm's duration: 1.5 copies of the file to 8
# downloaders in the lab (bench/lab_swarm.py), against 1.06-1.11 with this rule (and the swarm ends
# sooner, 14-18 s instead of 19 s, as the seed's link carries only new pieces). When no other peer
# feeds us (a lone seed, or everyone else chokes us) the seed is asked for anything, so one seed
# and one downloader transfer as before. Two downloaders may still ask the seed for the same piece
# before either announces it; the seed holds the second request until shortly after the first one's
# `have` (uploader.py, HOLD_SECONDS, ANNOUNCED_GRACE_SECONDS). libtorrent and Transmission pick the
# same way from seeds and non-seeds (libtorrent's seed sends 1.7-1.8 copies in the same lab); BEP
# 16's super-seeding gets the effect from the seed's side instead, at the cost of hiding what the
# seed has.
UNSHARED_FROM_SEEDS = True
# Requests in flight to a seed that is asked only for unshared pieces: the others cannot see a
# piece we are fetching until we announce it, so they may ask the seed for it too; a short queue
# keeps that window short (16 blocks = 256 KiB, a third of a second at a seed's 50 Mbit/s
# shared by 8 peers, and still many round trips on a LAN).
UNSHARED_QUEUE_BLOCKS = 16
# How often (seconds) the downloader re-checks whether some non-seed peer feeds us.
FEEDERS_CHECK_INTERVAL = 1.0

Address = Tuple[str, int]


class _Fetch:
    """One peer's requests in flight and pipeline size."""
    __slots__ = ("outstanding", "target", "slow_start", "snubbed", "last_block", "last_rate",
                 "allowed", "bits")

    def __init__(self, now: float) -> None:
        self.outstanding: Dict[Tuple[int, int], float] = {}   # (index, begin) -> sent at
        self.target = MIN_OUTSTANDING_REQUESTS
        # Slow start, as in TCP: each block that arrives adds one request to the pipeline, so it
        # doubles every round trip until the rate stops growing; then the rate sizes it.
        self.slow_start = True
        self.snubbed = False
        self.last_block = now
        self.last_rate = 0.0
        self.allowed: Set[int] = set()   # pieces the peer lets us fetch while it chokes us
        self.bits: Optional[Bitfield] = None   # the torrent's bitfield of the peer, last seen


class Downloader:
    """``run_in_pool(call)`` runs a blocking call in the host's hashing threads and returns an
    asyncio future; ``backlog`` counts what waits for those threads (shared by the host's
    torrents; by default this downloader's own); ``on_verified(index)`` and ``on_error(exc)``
    report to the torrent; ``on_strike(address, reason)`` names a peer proven to have sent bad
    data."""

    def __init__(self, name: str, info: Any, storage: Any, picker: PiecePicker, *,
                 run_in_pool: Callable[[Callable[[], Any]], "asyncio.Future[Any]"],
                 on_verified: Callable[[int], None], on_error: Callable[[Exception], None],
                 on_strike: Callable[[Address, str], None],
                 on_room: Callable[[], None] = lambda: None,
                 backlog: Optional[DiskBacklog] = None) -> None:
        """``on_room()`` is called when pieces waiting for the disk fell back under the limit
        that held new requests back: time to refill every peer's pipeline."""
        self.name = name
        self.info = info
        self.storage = storage
        self.picker = picker
        self.smart_ban = SmartBan()
        self._run_in_pool = run_in_pool
        self._on_verified = on_verified
        self._on_error = on_error
        self._on_strike = on_strike
        self._on_room = on_room
        self._backlog = backlog if backlog is not None else DiskBacklog()
        self._pending_limit = max(MAX_PENDING_VERIFY_BYTES, 2 * info.piece_length)
        self._fetches: Dict[Any, _Fetch] = {}
        self._buffers = WriteBuffers(info.piece_size)
        # Geometry read once: the block check below runs 65,536 times per GiB.
        self._num_pieces = info.num_pieces
        self._piece_length = info.piece_length
        self._last_piece_size = info.piece_size(self._num_pieces - 1) if self._num_pieces else 0
        self._hashing: Set["asyncio.Future[Any]"] = set()
        self.active = True       # False once the torrent stops downloading
        self.downloaded = 0      # payload bytes received
        self.wasted = 0          # duplicates, unrequested blocks, failed pieces
        self.contributions: Dict[Address, int] = {}
        self._fed = False                # some non-seed peer unchokes us and has what we want
        self._fed_checked = float("-inf")

    # -- peers ------------------------------------------------------------------------------------

    def peer_joined(self, conn: Any, now: float) -> None:
        self._fetches[conn] = _Fetch(now)

    def peer_left(self, conn: Any) -> None:
        self.picker.requests_dropped(conn)
        self._fetches.pop(conn, None)

    def choked(self, conn: Any) -> None:
        """Without the fast extension a choke drops every request we had queued with the peer;
        with it (BEP 6) each request is still answered, by its block or by a reject."""
        if conn.fast:
            return
        self.picker.requests_dropped(conn)
        fetch = self._fetches.get(conn)
        if fetch is not None:
            fetch.outstanding.clear()

    def rejected(self, conn: Any, index: int, begin: int) -> None:
        """The peer will not send this block (BEP 6): ask someone else, or it again later."""
        fetch = self._fetches.get(conn)
        if fetch is not None and fetch.outstanding.pop((index, begin), None) is not None:
            self.picker.request_dropped(conn, index, begin)

    def allowed_fast(self, conn: Any, index: int) -> None:
        """The peer lets us fetch piece ``index`` even while it chokes us (BEP 6)."""
        fetch = self._fetches.get(conn)
        if (fetch is not None and 0 <= index < self._num_pieces
                and len(fetch.allowed) < MAX_ALLOWED_FAST):
            fetch.allowed.add(index)

    def snubbed(self, conn: Any) -> bool:
        fetch = self._fetches.get(conn)
        return fetch is not None and fetch.snubbed

    def in_flight(self, conn: Any) -> int:
        fetch = self._fetches.get(conn)
        return len(fetch.outstanding) if fetch is not None else 0

    # -- requests out -------------------------------------------------------------------------------

    def fill(self, conn: Any, bits: Optional[Bitfield], now: float) -> None:
        """Top up the peer's pipeline, in batches of a quarter of it: one picker call and one
        write for dozens of requests instead of one per arriving block."""
        fetch = self._fetches.get(conn)
        if fetch is None or bits is None:
            return
        fetch.bits = bits
        if not conn.am_interested or conn.closed or not self.active:
            return
        if self._backlog.bytes >= self._pending_limit:
            self._backlog.wait(self, self._pending_limit, self._room)
            return
        if conn.peer_choking:
            # Choked: only the pieces the peer allows us while choked (BEP 6), if any.
            allowed = [i for i in fetch.allowed if i in bits]
            if not allowed:
                return
            bits = Bitfield.from_indices(self._num_pieces, allowed)
        target = 1 if fetch.snubbed else min(fetch.target, self._limit(conn))
        picker = self.picker
        if picker.endgame:
            # Every missing block is already asked of someone: a peer takes a duplicate only
            # when it is about to run dry, so the end of a download does not fetch it twice.
            target = min(target, ENDGAME_QUEUE)
        unshared_only = UNSHARED_FROM_SEEDS and bits.complete and self._fed_by_others(now)
        if unshared_only:
            target = min(target, UNSHARED_QUEUE_BLOCKS)
        outstanding = fetch.outstanding
        room = target - len(outstanding)
        if room <= 0 or (outstanding and room < target // 4):
            return
        blocks = picker.next_requests(conn, bits, room, unshared_only)
        if blocks:
            for index, begin, _length in blocks:
                outstanding[(index, begin)] = now
            conn.send_requests(blocks)
        elif not outstanding and not conn.peer_choking and not picker.interesting(bits):
            conn.set_interested(False)

    # -- blocks in ------------------------------------------------------------------------------------

    def block(self, conn: Any, index: int, begin: int, block: Any) -> None:
        fetch = self._fetches.get(conn)
        size = len(block)
        if fetch is None or not self.active:
            self.wasted += size
            return
        fetch.outstanding.pop((index, begin), None)
        last = self._num_pieces - 1
        piece_size = self._piece_length if index != last else self._last_piece_size
        if (not 0 <= index <= last or begin % BLOCK_SIZE
                or size != min(BLOCK_SIZE, piece_size - begin)):
            conn.close(f"block of {size} bytes at piece {index} offset {begin} does not fit")
            return
        self.downloaded += size
        fetch.snubbed = False
        fetch.last_block = conn.last_received
        if fetch.slow_start and fetch.target < self._limit(conn):
            fetch.target += 1
        wanted, piece_done, cancels = self.picker.block_received(conn, index, begin)
        if not wanted:
            self.wasted += size
            return
        address = conn.address
        self.contributions[address] = self.contributions.get(address, 0) + size
        self.smart_ban.block_from(index, begin, address)
        if not self._buffers.store(index, begin, block):
            try:
                self.storage.write_block(index, begin, block)
            except Exception as exc:
                self._on_error(exc)
                return
        for other, c_index, c_begin, c_length in cancels:
            other_fetch = self._fetches.get(other)
            if other_fetch is not None and other_fetch.outstanding.pop((c_index, c_begin),
                                                                       None) is not None:
                other.send_cancel(c_index, c_begin, c_length)
        if piece_done:
            self._verify(index)

    def _fed_by_others(self, now: float) -> bool:
        """Does some non-seed peer unchoke us and have pieces we want? Checked at most once per
        FEEDERS_CHECK_INTERVAL: a loop over the peers, not one per request batch."""
        if now - self._fed_checked >= FEEDERS_CHECK_INTERVAL or now < self._fed_checked:
            self._fed_checked = now
            self._fed = any(
                f.bits is not None and not f.bits.complete and not f.snubbed
                and conn.am_interested and not conn.peer_choking and not conn.closed
                for conn, f in self._fetches.items())
        return self._fed

    @staticmethod
    def _limit(conn: Any) -> int:
        return min(MAX_OUTSTANDING_REQUESTS, conn.extensions.reqq)

    # -- verification ---------------------------------------------------------------------------------

    def _verify(self, index: int) -> None:
        """Hash a whole piece off the loop (and write it, when it was assembled in memory)."""
        data = self._buffers.take(index)
        suspect = self.smart_ban.suspect(index)
        if data is not None:
            call = partial(verify_and_write, self.storage, index, self.info.piece_hash(index),
                           data, BLOCK_SIZE, suspect)
        else:
            call = partial(verify_stored, self.storage, index, self.info.piece_size(index),
                           BLOCK_SIZE, suspect)
        future = self._run_in_pool(call)
        self._hashing.add(future)
        size = self.info.piece_size(index)
        self._backlog.add(size)
        if data is not None:
            future.add_done_callback(lambda _: self._buffers.release(size, data))
        future.add_done_callback(partial(self._verified, index))
        future.add_done_callback(partial(self._hashed, size))

    def _verified(self, index: int, future: "asyncio.Future[Tuple[bool, Any]]") -> None:
        self._hashing.discard(future)
        error = future.exception()  # always retrieved, even when the torrent has stopped
        if error is not None:
            self.smart_ban.piece_dropped(index)
            self._on_error(error)
            return
        ok, digests = future.result()
        if ok:
            # Recorded even after the torrent stopped: the piece is on disk and verified, so
            # the resume state must say so.
            self.picker.piece_verified(index)
            self.storage.mark_verified(index)
            for address in self.smart_ban.piece_passed(index, digests):
                self._strike(address, f"sent corrupt blocks of piece {index}")
            self._on_verified(index)
            return
        if not self.active:
            self.smart_ban.piece_dropped(index)
            return
        self.picker.piece_failed(index)
        self.wasted += self.info.piece_size(index)
        sources, alone = self.smart_ban.piece_failed(index, digests)
        log.warning("%s: piece %d failed the hash check (blocks from %s)", self.name, index,
                    ", ".join(f"{h}:{p}" for h, p in sorted(sources)) or "?")
        if alone is not None:
            self._strike(alone, f"piece {index} it alone sent failed the hash check")

    def _hashed(self, size: int, future: Any) -> None:
        self._backlog.done(size)

    def _room(self) -> None:
        if self.active:
            self._on_room()

    def _strike(self, address: Address, reason: str) -> None:
        self.smart_ban.strike(address)
        self._on_strike(address, reason)

    async def settle(self, timeout: float) -> None:
        """Wait for pieces being hashed and written, so they are recorded before a save."""
        if self._hashing:
            await asyncio.wait(list(self._hashing), timeout=timeout)

    # -- timers ---------------------------------------------------------------------------------------

    def tick(self, conn: Any, bits: Optional[Bitfield], now: float) -> None:
        """Once a second per peer: pipeline size, snubbing, lost requests, refill."""
        fetch = self._fetches.get(conn)
        if fetch is None:
            return
        rate = conn.down_rate
        if fetch.slow_start and conn.downloaded and rate < fetch.last_rate * SLOW_START_GROWTH:
            fetch.slow_start = False
        fetch.last_rate = rate
        # Size the request pipeline for REQUEST_QUEUE_SECONDS at the current rate, never past
        # what the peer said it queues (its `reqq`).
        wanted = int(rate * REQUEST_QUEUE_SECONDS / BLOCK_SIZE)
        fetch.target = min(self._limit(conn),
                           max(MIN_OUTSTANDING_REQUESTS, wanted, fetch.target))
        outstanding = fetch.outstanding
        if outstanding:
            # Silent since its last block and since our oldest request went out: time spent
            # choked, with nothing asked, is not the peer's fault (libtorrent also times the
            # last request).
            oldest_request = next(iter(outstanding.values()))
            silent_since = max(fetch.last_block, oldest_request)
            if now - silent_since > SNUB_TIMEOUT and not fetch.snubbed:
                fetch.snubbed = True
                log.info("%s: %r snubbed: no data for %.0f s", self.name, conn, SNUB_TIMEOUT)
                self.picker.requests_dropped(conn)
                fetch.outstanding.clear()
            else:
                self._expire(conn, fetch, now)
        self.fill(conn, bits, now)

    def _expire(self, conn: Any, fetch: _Fetch, now: float) -> None:
        expired: List[Tuple[int, int]] = []
        for key, sent in fetch.outstanding.items():  # insertion order: oldest first
            if now - sent < REQUEST_TIMEOUT:
                break
            expired.append(key)
        for index, begin in expired:
            del fetch.outstanding[(index, begin)]
            conn.send_cancel(index, begin, min(BLOCK_SIZE, self.info.piece_size(index) - begin))
            self.picker.request_dropped(conn, index, begin)

    def stop(self) -> None:
        self.active = False
