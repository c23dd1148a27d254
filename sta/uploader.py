"""Uploading for one torrent: whom we unchoke, which requests we accept, and serving them.

Each admitted peer has a queue of the requests it made while unchoked; ``serve`` reads blocks
through a small read cache and sends them a batch at a time, stopping while the peer's transport
is full (``conn.writable``) and resuming when it drains. Whom to unchoke is the choker's policy
(choker.py); this module applies it. Invalid requests are counted and a peer that keeps sending
them is dropped.

With the fast extension (BEP 6) nothing is dropped silently: a request we will not serve, one
discarded by a choke, a `not interested` or a cancel is answered with a reject; and a peer may
fetch the few pieces of its allowed-fast set (``grant``) even while choked.

While seeding, a request from a fast-extension peer for a piece we sent another peer moments
ago is held back for a short time, then rejected (see HOLD_SECONDS): the peer that just got the
piece will announce it, and the asker can fetch it there instead of from us; the hold ends soon
after that announcement. Requests for other pieces, and every other peer's, are served
meanwhile, so the seed's upload goes to pieces new to the swarm. A lone downloader is never
held (no other peer was sent anything), nor is any peer for longer than HOLD_SECONDS per piece.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

from .blockcache import ReadCache
from .choker import Choker
from .peer import MAX_INCOMING_REQUESTS  # the `reqq` we advertise, enforced here

log = logging.getLogger(__name__)

# Upload batch per event loop turn: 64 blocks = 1 MiB. Enough to keep the socket full; small
# enough that one greedy peer cannot starve the rest of the loop.
UPLOAD_BATCH_BLOCKS = 64
# Invalid requests (out of range, oversized, for pieces we lack) tolerated before we drop the
# peer.
MAX_BAD_REQUESTS = 20
# BEP 3: requests larger than this are not block requests (see wire.MAX_REQUEST_LENGTH).
MAX_REQUEST_LENGTH = 1 << 17

# Holding back a duplicate (seeding, fast-extension peers): a request for a piece we sent to
# another peer less than HOLD_RECENT_SECONDS ago waits, at most HOLD_SECONDS per piece and peer,
# then is rejected (BEP 6) so that the asker chooses again, knowing by then that the other peer
# has the piece; if it asks us again, it is served. The hold ends sooner once that peer announces
# the piece (ANNOUNCED_GRACE_SECONDS). Downloaders cannot see a piece another one is fetching
# from the seed until that one announces it, so near the end of a swarm several ask the seed for
# the same few pieces within a second or two (measured in bench/lab_swarm.py: every
# duplicate piece the seed sent went out 0-2 s after the first copy). The piece takes a fraction
# of a second to reach a downloader at a seed's rate shared by 8 (256 KiB at 6 Mbit/s: 0.35 s)
# plus the time it waits in the seed's socket buffer; 2 s covers both and its `have`.
# Without the fast extension a held request could only be served late, which saves nothing.
HOLD_RECENT_SECONDS = 2.0
HOLD_SECONDS = 1.5
# Once the peer a held piece went to announces it, the hold ends this much later. Holding on
# until HOLD_SECONDS only stalls the asker: on loopback (tests/test_engine.py SwarmTests) its held
# blocks all came back at once when the rest was done, in endgame, where each was asked of two
# peers and often arrived twice (up to 14 % of a downloader's blocks). Not at once, though: the
# asker hears that `have` over the other peer's link at about the time we do, and a reject that
# reaches it first makes it ask us again (lab: 1.21-1.25 copies sent by the seed with no grace,
# 1.06 with 0.3 s, which covers a `have` queued behind a 50 Mbit/s link's 50 ms buffer).
ANNOUNCED_GRACE_SECONDS = 0.3
# A piece's hold is remembered this long (the peer's next request after the release is served).
HOLD_FORGET_SECONDS = HOLD_SECONDS + HOLD_RECENT_SECONDS
# Holding only helps a peer that then gets the piece from another peer. Each piece we reject
# after a hold costs the asker one of HOLD_CREDIT credits, and each such piece it then announces
# (it got it elsewhere) earns one back; a peer out of credit is never held again. A downloader
# that reaches no other peer, or a client that never trades, is held for a few pieces at most
# and then served as if the rule did not exist; a peer that has announced no piece at all (a
# client that does not trade, or one that has just started) is never held.
HOLD_CREDIT = 4
# A rejected piece the peer has not announced after this long is written off (the credit stays
# spent).
HOLD_REFUND_SECONDS = 30.0

Block = Tuple[int, int, int]


class _Queue:
    __slots__ = ("requests", "bad", "scheduled", "allowed", "held", "held_since", "credit",
                 "rejected")

    def __init__(self) -> None:
        self.requests: Deque[Block] = deque()
        self.bad = 0
        self.scheduled = False
        self.allowed: Set[int] = set()   # pieces the peer may fetch while choked (BEP 6)
        self.held: List[Block] = []      # requests held back (HOLD_SECONDS)
        self.held_since: Dict[int, float] = {}   # piece -> when its first request was held
        self.credit = HOLD_CREDIT
        self.rejected: Dict[int, float] = {}     # piece -> when we rejected it after a hold


class Uploader:
    """``can_serve(conn, index)`` says whether a piece may go to this peer (we have it; the
    super-seeder agrees); ``read`` reads a block from storage; ``later`` runs a callback on a
    later loop turn; ``on_error`` stops the torrent on a storage failure; ``on_sent`` counts
    payload bytes; ``seeding()`` says whether we rank peers by what they take (seeding) or by
    what they give (downloading); ``peer_bits(conn)`` the pieces the peer announced (None when
    unknown)."""

    def __init__(self, *, piece_size: Callable[[int], int], piece_length: int,
                 num_pieces: int, read: Callable[[int, int, int], bytes],
                 can_serve: Callable[[Any, int], bool], later: Callable[[Callable[[], None]], Any],
                 on_error: Callable[[Exception], None], on_sent: Callable[[int], None],
                 seeding: Callable[[], bool], choker: Optional[Choker] = None,
                 clock: Callable[[], float] = time.monotonic,
                 peer_bits: Callable[[Any], Optional[Any]] = lambda conn: None) -> None:
        self._peer_bits = peer_bits
        self._piece_size = piece_size
        self._num_pieces = num_pieces
        self._can_serve = can_serve
        self._later = later
        self._on_error = on_error
        self._on_sent = on_sent
        self._seeding = seeding
        self.cache = ReadCache(read, piece_size, piece_length)
        self.choker = choker or Choker()
        self._queues: Dict[Any, _Queue] = {}
        self._clock = clock
        self._last_sent: Dict[int, Tuple[Any, float]] = {}   # piece -> (peer, when), seeding
        # Pieces some request waits for: piece -> (the peer it went to, when the hold began).
        self._awaited: Dict[int, Tuple[Any, float]] = {}
        self._release_at: Deque[float] = deque()   # when announced pieces' holds end, in order

    # -- peers ----------------------------------------------------------------------------------

    def peer_joined(self, conn: Any) -> None:
        self._queues[conn] = _Queue()

    def peer_left(self, conn: Any, peers: Any, now: float) -> None:
        self._queues.pop(conn, None)
        self.choker.forget(conn)
        if not conn.am_choking:
            self.rechoke(peers, now)

    def queued(self, conn: Any) -> int:
        queue = self._queues.get(conn)
        return len(queue.requests) + len(queue.held) if queue is not None else 0

    def held(self, conn: Any) -> int:
        """Requests of this peer held back (HOLD_SECONDS)."""
        queue = self._queues.get(conn)
        return len(queue.held) if queue is not None else 0

    # -- messages ---------------------------------------------------------------------------------

    def request(self, conn: Any, index: int, begin: int, length: int) -> None:
        """A request: from an unchoked peer, or (fast extension only; the protocol machine
        drops the others) from a choked one, served only for its allowed-fast pieces."""
        queue = self._queues.get(conn)
        if queue is None:
            return
        if (not 0 <= index < self._num_pieces or length <= 0 or length > MAX_REQUEST_LENGTH
                or begin < 0 or begin + length > self._piece_size(index)
                or not self._can_serve(conn, index)):
            conn.send_reject(index, begin, length)
            self._bad_request(conn, queue, f"refused request for piece {index} at "
                                           f"{begin}+{length}")
            return
        if conn.am_choking and index not in queue.allowed:
            conn.send_reject(index, begin, length)  # BEP 6: a choked peer's request
            return
        if len(queue.requests) + len(queue.held) >= MAX_INCOMING_REQUESTS:
            conn.send_reject(index, begin, length)
            self._bad_request(conn, queue, "request queue full")
            return
        last = self._last_sent.get(index)
        if last is not None and last[0] is not conn and conn.fast and self._hold(conn, queue,
                                                                                 index, last[1]):
            queue.held.append((index, begin, length))
            self._awaited.setdefault(index, (last[0], self._clock()))
            return
        queue.requests.append((index, begin, length))

    def _hold(self, conn: Any, queue: _Queue, index: int, sent: float) -> bool:
        """Hold back this request for a piece we sent someone else at ``sent``? Only for
        HOLD_SECONDS from the first held request for the piece: a peer that asks again after
        that (it has nowhere else to get it) is served; and only while the peer has credit."""
        now = self._clock()
        if now - sent >= HOLD_RECENT_SECONDS or not self._seeding():
            return False
        bits = self._peer_bits(conn)
        if bits is None or not bits.any():
            return False
        for piece, when in list(queue.rejected.items()):
            if piece in bits:
                queue.credit = min(HOLD_CREDIT, queue.credit + 1)
                del queue.rejected[piece]
            elif now - when >= HOLD_REFUND_SECONDS:
                del queue.rejected[piece]
        if queue.credit <= 0 and index not in queue.held_since:
            return False
        since = queue.held_since.setdefault(index, now)
        return now - since < HOLD_SECONDS

    def _release(self, conn: Any, queue: _Queue, now: float) -> None:
        """Reject the held requests whose time is up: the peer asks again, where it likes."""
        since = queue.held_since
        keep = []
        for block in queue.held:
            if now - since.get(block[0], now) >= HOLD_SECONDS:
                conn.send_reject(*block)
                if block[0] not in queue.rejected:
                    queue.rejected[block[0]] = now
                    queue.credit -= 1
            else:
                keep.append(block)
        queue.held = keep

    def _release_announced(self, now: float) -> None:
        """Shorten the hold on every awaited piece that the peer it went to has announced (or
        that peer left) to ANNOUNCED_GRACE_SECONDS: the askers can fetch it there, and holding
        them for the whole HOLD_SECONDS only stalls them (their requests then come back at once,
        when the rest of the download is done and every block is asked of two peers)."""
        done = []
        for index, (recipient, _) in self._awaited.items():
            bits = self._peer_bits(recipient)
            if bits is None or index in bits:
                done.append(index)
        if done:
            over = now + ANNOUNCED_GRACE_SECONDS - HOLD_SECONDS
            for index in done:
                del self._awaited[index]
            for queue in self._queues.values():
                since = queue.held_since
                for index in done:
                    if index in since and since[index] > over:
                        since[index] = over
            self._release_at.append(now + ANNOUNCED_GRACE_SECONDS)
        if self._release_at and now >= self._release_at[0]:
            while self._release_at and now >= self._release_at[0]:
                self._release_at.popleft()
            for conn, queue in self._queues.items():
                if queue.held:
                    self._release(conn, queue, now)
                    conn.flush()

    def tick(self, now: float) -> None:
        """Once a second: release held requests that are due; forget old sends and holds."""
        if self._awaited:
            self._release_announced(now)
            for index in [i for i, (_, t) in self._awaited.items() if now - t >= HOLD_SECONDS]:
                del self._awaited[index]
        last = self._last_sent
        for index in [i for i, (_, sent) in last.items() if now - sent >= HOLD_RECENT_SECONDS]:
            del last[index]
        for conn, queue in self._queues.items():
            if queue.held:
                self._release(conn, queue, now)
                conn.flush()
            since = queue.held_since
            if since:
                # Kept past the release, so that the peer's next request is served.
                for index in [i for i, t in since.items() if now - t >= HOLD_FORGET_SECONDS]:
                    del since[index]

    def grant(self, conn: Any, pieces: Iterable[int]) -> None:
        """Let the peer fetch these pieces even while choked, and tell it (BEP 6 allowed
        fast)."""
        queue = self._queues.get(conn)
        if queue is None:
            return
        for index in pieces:
            if index not in queue.allowed:
                queue.allowed.add(index)
                conn.send_allowed_fast(index)

    def cancel(self, conn: Any, index: int, begin: int, length: int) -> None:
        queue = self._queues.get(conn)
        if queue is None:
            return
        block = (index, begin, length)
        if block in queue.held:
            queue.held.remove(block)
        else:
            try:
                queue.requests.remove(block)
            except ValueError:
                return
        conn.send_reject(index, begin, length)  # BEP 6 (as libtorrent does): answer a cancel

    def not_interested(self, conn: Any) -> None:
        queue = self._queues.get(conn)
        if queue is not None:
            self._discard(conn, queue, keep_allowed=False)

    def _discard(self, conn: Any, queue: _Queue, keep_allowed: bool) -> None:
        """Drop queued requests, rejecting each (fast extension) so none is left hanging."""
        kept: Deque[Block] = deque()
        for block in queue.requests:
            if keep_allowed and block[0] in queue.allowed:
                kept.append(block)
            else:
                conn.send_reject(*block)
        queue.requests = kept
        for block in queue.held:
            conn.send_reject(*block)
        queue.held = []

    def _bad_request(self, conn: Any, queue: _Queue, reason: str) -> None:
        queue.bad += 1
        log.debug("%r: %s", conn, reason)
        if queue.bad > MAX_BAD_REQUESTS:
            conn.close(f"too many invalid requests ({reason})")

    # -- serving ----------------------------------------------------------------------------------

    def serve(self, conn: Any) -> None:
        """Read queued blocks and send them, a batch at a time. While the peer is choked its
        queue holds only allowed-fast requests (a choke discards the rest)."""
        queue = self._queues.get(conn)
        if queue is None:
            return
        if self._awaited or self._release_at:
            self._release_announced(self._clock())
        if queue.held:
            self._release(conn, queue, self._clock())
        if not queue.requests:
            return
        requests = queue.requests
        served = 0
        read = self.cache.read
        # While seeding, remember to whom each piece went last (once per piece per batch).
        stamp = (conn, self._clock()) if self._seeding() else None
        last_sent = self._last_sent
        previous = -1
        while requests and conn.writable and served < UPLOAD_BATCH_BLOCKS:
            index, begin, length = requests.popleft()
            try:
                block = read(index, begin, length)
            except Exception as exc:  # storage errors stop this torrent, not the process
                self._on_error(exc)
                return
            if stamp is not None and index != previous:
                last_sent[index] = stamp
                previous = index
            conn.send_block(index, begin, block)
            self._on_sent(length)
            served += 1
        if requests and conn.writable and not queue.scheduled:
            # More to do: continue on a later loop turn so other peers get their share.
            queue.scheduled = True
            self._later(lambda: self._continue(conn))

    def _continue(self, conn: Any) -> None:
        queue = self._queues.get(conn)
        if queue is None or conn.closed:
            return
        queue.scheduled = False
        self.serve(conn)
        conn.flush()

    # -- choking ------------------------------------------------------------------------------------

    def choke(self, conn: Any, choking: bool) -> None:
        if choking and not conn.am_choking:
            # BEP 3: a choke discards every request the peer had queued with us; BEP 6 rejects
            # each, and keeps those for allowed-fast pieces.
            queue = self._queues.get(conn)
            if queue is not None:
                self._discard(conn, queue, keep_allowed=conn.fast)
        conn.set_choking(choking)

    def interest_changed(self, conn: Any, peers: Any, now: float) -> None:
        if conn.peer_interested:
            if conn.am_choking and self.choker.has_room(self._unchoked_count(peers)):
                self.choke(conn, False)
                self.choker.took_slot(conn, now)
        else:
            self.not_interested(conn)
            if not conn.am_choking:
                self.choke(conn, True)
                self.rechoke(peers, now)

    def _unchoked_count(self, peers: Any) -> int:
        return sum(1 for p in peers if not p.am_choking)

    def rechoke(self, peers: Any, now: float) -> None:
        """BEP 3 choking (choker.py): reciprocate the best peers while downloading, take turns
        while seeding; rotate one optimistic slot."""
        interested = [p for p in peers if p.peer_interested and not p.closed]
        if self._seeding():
            unchoke = self.choker.rechoke_seeding(interested, now)
        else:
            unchoke = self.choker.rechoke(interested, lambda p: (p.down_rate, p.up_rate), now)
        for conn in list(peers):
            self.choke(conn, conn not in unchoke)
