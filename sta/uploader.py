"""Uploading for one torrent: whom we unchoke, which requests we accept, and serving them.

Each admitted peer has a queue of the requests it made while unchoked; ``serve`` reads blocks
through a small read cache and sends them a batch at a time, stopping while the peer's transport
is full (``conn.writable``) and resuming when it drains. Whom to unchoke is the choker's policy
(choker.py); this module applies it. Invalid requests are counted and a peer that keeps sending
them is dropped.

With the fast extension (BEP 6) nothing is dropped silently: a request we will not serve, one
discarded by a choke, a `not interested` or a cancel is answered with a reject; and a peer may
fetch the few pieces of its allowed-fast set (``grant``) even while choked.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, Optional, Set, Tuple

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

Block = Tuple[int, int, int]


class _Queue:
    __slots__ = ("requests", "bad", "scheduled", "allowed")

    def __init__(self) -> None:
        self.requests: Deque[Block] = deque()
        self.bad = 0
        self.scheduled = False
        self.allowed: Set[int] = set()   # pieces the peer may fetch while choked (BEP 6)


class Uploader:
    """``can_serve(conn, index)`` says whether a piece may go to this peer (we have it; the
    super-seeder agrees); ``read`` reads a block from storage; ``later`` runs a callback on a
    later loop turn; ``on_error`` stops the torrent on a storage failure; ``on_sent`` counts
    payload bytes; ``seeding()`` says whether we rank peers by what they take (seeding) or by
    what they give (downloading)."""

    def __init__(self, *, piece_size: Callable[[int], int], piece_length: int,
                 num_pieces: int, read: Callable[[int, int, int], bytes],
                 can_serve: Callable[[Any, int], bool], later: Callable[[Callable[[], None]], Any],
                 on_error: Callable[[Exception], None], on_sent: Callable[[int], None],
                 seeding: Callable[[], bool], choker: Optional[Choker] = None) -> None:
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
        return len(queue.requests) if queue is not None else 0

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
        if len(queue.requests) >= MAX_INCOMING_REQUESTS:
            conn.send_reject(index, begin, length)
            self._bad_request(conn, queue, "request queue full")
            return
        queue.requests.append((index, begin, length))

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
        try:
            queue.requests.remove((index, begin, length))
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
        if queue is None or not queue.requests:
            return
        requests = queue.requests
        served = 0
        read = self.cache.read
        while requests and conn.writable and served < UPLOAD_BATCH_BLOCKS:
            index, begin, length = requests.popleft()
            try:
                block = read(index, begin, length)
            except Exception as exc:  # storage errors stop this torrent, not the process
                self._on_error(exc)
                return
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
