"""Which block to ask which peer for next: the piece picker.

Pure policy: no I/O, no clock. The engine reports what peers have (peer_added / peer_has /
peer_removed), asks for requests (next_requests), and reports arrivals (block_received), losses
(request_dropped on a timeout, requests_dropped on a choke or disconnect; the engine owns the
clock) and hash verdicts (piece_verified / piece_failed).

Policy, as in the original client and libtorrent: never a piece the peer lacks, we have, or do
not want (set_wanted); blocks of started pieces first (oldest first), so pieces complete early
and can be verified and shared; then rarest first with a random tie-break; endgame once every
missing block some connected peer has is requested: a block may then go to a second peer
(ENDGAME_MAX_PEERS_PER_BLOCK) and block_received returns the other requests to cancel.

Why it is cheap per block (budget: well under 10 microseconds per 16 KiB block):
- fresh pieces (missing, wanted, not started) live in an ``Availability`` (availability.py):
  peer counts per piece plus one int bitmask of fresh pieces per count, so the rarest fresh
  piece of a peer is C-level work once per started piece, never a Python loop over pieces;
- a started piece has a cursor to its next never-requested block plus a stack of blocks that
  came back, so handing out blocks is a few list operations;
- an outstanding request is an int key (index * blocks_per_piece + block) in a per-peer set, so
  requests_dropped(peer) touches only that peer's requests.

Who sent which block is not kept here: the engine's smart ban (smartban.py) records it, in one
place. wants(index) is an O(1) "does a have for this piece make the peer interesting?"; a block is
accepted only if it was requested from some peer at some point (a late block after a timeout
counts), so unsolicited data is refused as libtorrent does.
"""

from __future__ import annotations

import random
from typing import Hashable, List, Optional, Set, Tuple

from .availability import Availability
from .bitfield import Bitfield
from .wire import BLOCK_SIZE

__all__ = ["PiecePicker", "PickerError", "ENDGAME_MAX_PEERS_PER_BLOCK"]

# In endgame a block may be outstanding at this many peers at once. libtorrent's default
# ("strict end game mode") lets a block be requested twice; more copies only multiply the
# wasted bytes when the tail is short, and the cancels bound the waste of the second copy.
ENDGAME_MAX_PEERS_PER_BLOCK = 2

Peer = Hashable
Request = Tuple[int, int, int]           # (index, begin, length)
Cancel = Tuple[Peer, int, int, int]      # (peer, index, begin, length)

# Piece states (one byte per piece).
_FRESH = 0      # missing, wanted, not started: lives in the Availability's fresh set
_ACTIVE = 1     # started: has a _Piece in _active (downloading, or complete and being hashed)
_HAVE = 2       # verified
_UNWANTED = 3   # missing and not wanted, not started


class PickerError(ValueError):
    """The picker was given inconsistent sizes or an index outside the torrent."""


class _Piece:
    """Download state of one started piece."""

    __slots__ = ("index", "seq", "size", "nblocks", "cursor", "returned", "holders", "got", "ngot",
                 "dups")

    def __init__(self, index: int, seq: int, size: int, nblocks: int) -> None:
        self.index = index
        self.seq = seq                   # start order: older pieces are finished first
        self.size = size
        self.nblocks = nblocks
        self.cursor = 0                  # blocks [0, cursor) have been requested at least once
        self.returned = []               # type: List[int]  # requested, dropped, to hand out again
        self.holders = [None] * nblocks  # type: List[Optional[Peer]]  # peer it is requested from
        self.got = bytearray(nblocks)    # 1 once the block arrived
        self.ngot = 0
        self.dups = None                 # type: Optional[Dict[int, List[Peer]]]  # endgame extras


def _has_unrequested(ps: _Piece) -> bool:
    if ps.cursor < ps.nblocks:
        return True
    got = ps.got
    holders = ps.holders
    for b in ps.returned:
        if not got[b] and holders[b] is None:
            return True
    return False


class PiecePicker:
    """Block selection for one torrent.

    ``have`` is our Bitfield; the picker keeps it and sets a bit on ``piece_verified``. ``peer``
    arguments are any hashable object (the engine passes its connection objects); ``bits`` is
    that peer's Bitfield, which the engine keeps current (``set`` the bit, then ``peer_has``).
    """

    def __init__(self, num_pieces: int, piece_length: int, total_length: int, have: Bitfield,
                 rng: Optional[random.Random] = None, block_size: int = BLOCK_SIZE) -> None:
        if piece_length <= 0 or block_size <= 0 or total_length < 0:
            raise PickerError("piece length and block size must be positive, total length >= 0")
        expected = -(-total_length // piece_length)
        if num_pieces != expected:
            raise PickerError("{} bytes in pieces of {} make {} pieces, not {}".format(
                total_length, piece_length, expected, num_pieces))
        if len(have) != num_pieces:
            raise PickerError("have bitfield has {} bits for {} pieces".format(len(have), num_pieces))
        self._n = num_pieces
        self._plen = piece_length
        self._total = total_length
        self._bs = block_size
        self._bpp = -(-piece_length // block_size)       # blocks in a full piece
        self._last_size = total_length - (num_pieces - 1) * piece_length if num_pieces else 0
        self._have = have
        self._wanted = None  # type: Optional[Bitfield]
        rng = rng if rng is not None else random.Random()
        self._av = Availability(num_pieces, rng.random)   # counts, fresh set, rarest first
        self._st = bytearray(num_pieces)
        for i in have.iter_set():
            self._st[i] = _HAVE
        self._active = {}                 # type: Dict[int, _Piece]
        self._open = {}                   # type: Dict[int, _Piece]  # active, blocks to hand out
        self._started = 0                 # pieces started so far (gives _Piece.seq)
        self._out = {}                    # type: Dict[Peer, Set[int]]  # outstanding request keys
        self._need = None                 # type: Optional[int]  # cached wanted & ~have
        self._nmissing = 0                # wanted pieces not verified
        self._left = 0                    # their bytes
        self._rebuild()

    # -- sizes ----------------------------------------------------------------------------

    @property
    def num_pieces(self) -> int:
        return self._n

    def piece_size(self, index: int) -> int:
        self._check_index(index)
        return self._last_size if index == self._n - 1 else self._plen

    # -- what peers have ------------------------------------------------------------------

    def peer_added(self, bits: Bitfield) -> None:
        """A peer's bitfield (or BEP 6 have_all / have_none) arrived."""
        self._check_bits(bits)
        self._av.peer_added(bits)

    def peer_removed(self, bits: Bitfield) -> None:
        """A peer went away; ``bits`` is its bitfield as it is now."""
        self._check_bits(bits)
        self._av.peer_removed(bits)

    def peer_has(self, index: int) -> None:
        """A peer announced piece ``index``: call it only when ``bits.set(index)`` returned True,
        so a repeated ``have`` is not counted twice."""
        self._check_index(index)
        self._av.peer_has(index, self._st[index] == _FRESH)

    def availability(self, index: int) -> int:
        """Number of connected peers that have piece ``index``."""
        self._check_index(index)
        return self._av.avail[index] + self._av.seeds

    def interesting(self, bits: Bitfield) -> bool:
        """Does the peer have a wanted piece we lack?"""
        need = self._need
        if need is None:
            need = self._need = self._wanted_int() & ~self._have.to_int()
        if bits.complete:
            return need != 0
        return (bits.to_int() & need) != 0

    def wants(self, index: int) -> bool:
        """Is piece ``index`` wanted and not yet verified? (O(1), for ``have`` messages.)"""
        st = self._st[index] if 0 <= index < self._n else _HAVE
        if st == _FRESH:
            return True
        if st == _ACTIVE:
            return self._wanted is None or index in self._wanted
        return False

    # -- requests -------------------------------------------------------------------------

    def next_requests(self, peer: Peer, bits: Bitfield, count: int,
                      unshared_only: bool = False) -> List[Request]:
        """Up to ``count`` more (index, begin, length) requests to send to ``peer``.

        ``unshared_only``: only pieces that no connected non-seed peer has (the engine asks
        this of a seed while other peers are feeding us; see UNSHARED_FROM_SEEDS)."""
        out = []  # type: List[Request]
        if count <= 0:
            return out
        reqs = self._out.get(peer)
        if reqs is None:
            reqs = self._out[peer] = set()
        seed = bits.complete
        need = count
        avail = self._av.avail
        # 1. blocks of started pieces (oldest first)
        if self._open:
            exhausted = []
            for index, ps in self._open.items():
                if (seed or index in bits) and not (unshared_only and avail[index]):
                    need = self._take(ps, peer, reqs, out, need)
                    if ps.cursor == ps.nblocks and not ps.returned:
                        exhausted.append(index)
                    if not need:
                        break
            for index in exhausted:
                del self._open[index]
        # 2. new pieces, rarest first
        av = self._av
        max_avail = 0 if unshared_only else -1
        while need and av.nfresh:
            index = av.take_rarest(bits, seed, max_avail)
            if index < 0:
                break
            ps = self._start(index)
            need = self._take(ps, peer, reqs, out, need)
            if ps.cursor == ps.nblocks:
                del self._open[index]
        # 3. endgame: blocks already requested from someone else
        if need and self._active and self._in_endgame():
            self._take_endgame(peer, bits, seed, reqs, out, need, unshared_only)
        return out

    def _take(self, ps: _Piece, peer: Peer, reqs: Set[int], out: List[Request],
              need: int) -> int:
        """Hand out up to ``need`` unrequested blocks of ``ps``; returns how many are still due."""
        index = ps.index
        bs = self._bs
        base = index * self._bpp
        holders = ps.holders
        returned = ps.returned
        while returned and need:
            b = returned.pop()
            if ps.got[b] or holders[b] is not None:
                continue  # arrived late after a timeout, or handed out again already
            holders[b] = peer
            reqs.add(base + b)
            begin = b * bs
            out.append((index, begin, min(bs, ps.size - begin)))
            need -= 1
        c = ps.cursor
        nb = ps.nblocks
        if need == 1 and c < nb:
            # The steady state: one block out for each block in, so no slices for one block.
            holders[c] = peer
            reqs.add(base + c)
            begin = c * bs
            out.append((index, begin, bs if begin + bs <= ps.size else ps.size - begin))
            ps.cursor = c + 1
            return 0
        if need and c < nb:
            end = c + need if c + need < nb else nb
            holders[c:end] = [peer] * (end - c)
            reqs.update(range(base + c, base + end))
            out.extend([(index, b * bs, bs) for b in range(c, end)])
            if end == nb:
                last = (nb - 1) * bs
                if ps.size - last != bs:
                    out[-1] = (index, last, ps.size - last)
            ps.cursor = end
            need -= end - c
        return need

    def _start(self, index: int) -> _Piece:
        """Start piece ``index``, just taken out of the fresh set."""
        self._st[index] = _ACTIVE
        size = self._last_size if index == self._n - 1 else self._plen
        self._started += 1
        ps = _Piece(index, self._started, size, -(-size // self._bs))
        self._active[index] = ps
        self._open[index] = ps
        return ps

    def _in_endgame(self) -> bool:
        """Has every missing block that some connected peer has been requested?"""
        av = self._av
        if av.fresh_at_peers():
            return False
        seeds = av.seeds
        avail = av.avail
        stale = []
        result = True
        for index, ps in self._open.items():
            if not _has_unrequested(ps):
                stale.append(index)  # only late arrivals left on its stack
            elif seeds or avail[index]:
                result = False
                break
        for index in stale:
            del self._open[index]
        return result

    @property
    def endgame(self) -> bool:
        return bool(self._active) and self._in_endgame()

    def _take_endgame(self, peer: Peer, bits: Bitfield, seed: bool, reqs: Set[int],
                      out: List[Request], need: int, unshared_only: bool) -> None:
        bs = self._bs
        bpp = self._bpp
        extra_max = ENDGAME_MAX_PEERS_PER_BLOCK - 1
        if extra_max <= 0:
            return
        avail = self._av.avail
        # Newest first: a peer serves requests in the order they came, so the blocks asked for
        # last (the newest piece's last blocks) are the ones its holder sends last. A copy of
        # those saves time; a copy of the first ones, already on their way, is only waste (ten
        # torrents ending one after another on loopback fetched 3 % of their data twice).
        for index, ps in reversed(self._active.items()):
            if (ps.ngot == ps.nblocks or not (seed or index in bits)
                    or (unshared_only and avail[index])):
                continue
            holders = ps.holders
            got = ps.got
            for b in range(ps.cursor - 1, -1, -1):
                h = holders[b]
                if got[b] or h is None or h == peer:
                    continue
                dups = ps.dups
                if dups is None:
                    dups = ps.dups = {}
                extra = dups.get(b)
                if extra is None:
                    dups[b] = [peer]
                elif len(extra) >= extra_max or peer in extra:
                    continue
                else:
                    extra.append(peer)
                reqs.add(index * bpp + b)
                begin = b * bs
                out.append((index, begin, min(bs, ps.size - begin)))
                need -= 1
                if not need:
                    return

    # -- arrivals and losses --------------------------------------------------------------

    def block_received(self, peer: Peer, index: int, begin: int
                       ) -> Tuple[bool, bool, List[Cancel]]:
        """A block arrived: returns (wanted, piece_done, cancels).

        ``wanted`` is False for a duplicate, an unrequested block or a block of a piece we no
        longer download; the engine drops its data. ``piece_done`` is True exactly once per
        completion of a piece: the engine hashes it and calls piece_verified or piece_failed.
        ``cancels`` lists (other_peer, index, begin, length) requests for the same block
        (endgame) that the engine should cancel.
        """
        bs = self._bs
        b = begin // bs
        ps = self._active.get(index)
        key = index * self._bpp + b
        reqs = self._out.get(peer)
        if ps is None or begin < 0 or begin - b * bs or b >= ps.cursor or ps.got[b]:
            if reqs is not None and 0 <= b < self._bpp and begin >= 0:
                reqs.discard(key)
            return False, False, []
        if reqs is not None:
            reqs.discard(key)
        ps.got[b] = 1
        ps.ngot += 1
        holders = ps.holders
        holder = holders[b]
        holders[b] = None
        cancels = []  # type: List[Cancel]
        if holder is not None and holder != peer:
            self._cancel(holder, ps, b, key, cancels)
        if ps.dups:
            extra = ps.dups.pop(b, None)
            if extra:
                for other in extra:
                    if other != peer:
                        self._cancel(other, ps, b, key, cancels)
        if ps.ngot == ps.nblocks:
            self._open.pop(index, None)  # may linger there with stale returned entries
            return True, True, cancels
        return True, False, cancels

    def _cancel(self, other: Peer, ps: _Piece, b: int, key: int, cancels: List[Cancel]) -> None:
        r = self._out.get(other)
        if r is not None:
            r.discard(key)
        begin = b * self._bs
        cancels.append((other, ps.index, begin, min(self._bs, ps.size - begin)))

    def request_dropped(self, peer: Peer, index: int, begin: int) -> None:
        """One request to ``peer`` timed out (or was rejected): its block goes back to the pool."""
        bs = self._bs
        b = begin // bs
        if begin < 0 or begin - b * bs or b >= self._bpp:
            return
        reqs = self._out.get(peer)
        if reqs is not None:
            reqs.discard(index * self._bpp + b)
        ps = self._active.get(index)
        if ps is not None and b < ps.cursor and not ps.got[b]:
            self._release(ps, b, peer)

    def requests_dropped(self, peer: Peer) -> None:
        """``peer`` choked us or disconnected: all its outstanding blocks go back to the pool."""
        reqs = self._out.pop(peer, None)
        if not reqs:
            return
        bpp = self._bpp
        active = self._active
        # Highest first: returned blocks are a stack, so they are handed out again in order.
        for key in sorted(reqs, reverse=True):
            index, b = divmod(key, bpp)
            ps = active.get(index)
            if ps is not None and not ps.got[b]:
                self._release(ps, b, peer)

    def _release(self, ps: _Piece, b: int, peer: Peer) -> None:
        dups = ps.dups
        extra = dups.get(b) if dups else None
        if ps.holders[b] == peer:
            if extra:
                ps.holders[b] = extra.pop(0)  # still requested from an endgame duplicate
                if not extra:
                    del dups[b]
            else:
                ps.holders[b] = None
                ps.returned.append(b)
                if ps.index not in self._open:
                    self._reopen(ps)
        elif extra and peer in extra:
            extra.remove(peer)
            if not extra:
                del dups[b]

    def _reopen(self, ps: _Piece) -> None:
        """Put a piece with returned blocks back among the open ones, oldest first."""
        open_ = self._open
        open_[ps.index] = ps
        if len(open_) > 1:
            # Rare (a timeout or a choke) and the open pieces are few: re-sorting is cheap.
            self._open = dict(sorted(open_.items(), key=lambda item: item[1].seq))

    def outstanding(self, peer: Peer) -> int:
        """Number of requests the picker believes are outstanding at ``peer``."""
        reqs = self._out.get(peer)
        return len(reqs) if reqs else 0

    # -- verdicts -------------------------------------------------------------------------

    def piece_verified(self, index: int) -> None:
        """The piece passed its hash check (or was found complete on disk)."""
        self._check_index(index)
        st = self._st[index]
        if st == _HAVE:
            return
        if st == _ACTIVE:
            ps = self._active.pop(index)
            self._open.pop(index, None)
            self._forget_requests(ps)
        elif st == _FRESH:
            self._av.remove(index)
        if self._wanted is None or index in self._wanted:
            self._nmissing -= 1
            self._left -= self._last_size if index == self._n - 1 else self._plen
        self._st[index] = _HAVE
        self._have.set(index)
        self._need = None

    def piece_failed(self, index: int) -> None:
        """The piece failed its hash check: all its blocks will be fetched again."""
        self._check_index(index)
        if self._st[index] != _ACTIVE:
            return
        ps = self._active.pop(index)
        self._open.pop(index, None)
        self._forget_requests(ps)
        if self._wanted is None or index in self._wanted:
            self._av.add(index)
            self._st[index] = _FRESH
        else:
            self._st[index] = _UNWANTED

    def _forget_requests(self, ps: _Piece) -> None:
        """Drop the outstanding-request records of a piece that leaves the download."""
        base = ps.index * self._bpp
        for b in range(ps.cursor):
            if ps.got[b]:
                continue
            peers = [ps.holders[b]] + (ps.dups.get(b, []) if ps.dups else [])
            for p in peers:
                r = self._out.get(p) if p is not None else None
                if r is not None:
                    r.discard(base + b)

    # -- wanted pieces and progress -------------------------------------------------------

    def set_wanted(self, bits: Optional[Bitfield]) -> None:
        """Restrict downloading to the pieces set in ``bits`` (None: all pieces).

        Pieces already started are finished either way (their blocks are already on the way;
        a piece at a file boundary belongs to a wanted file anyway), but are not counted in
        ``complete`` / ``left_bytes`` unless wanted.
        """
        if bits is not None:
            self._check_bits(bits)
            bits = bits.copy()
        self._wanted = bits
        self._rebuild()

    def _wanted_int(self) -> int:
        return (1 << self._n) - 1 if self._wanted is None else self._wanted.to_int()

    def _rebuild(self) -> None:
        """Recompute the fresh set and the progress counters from scratch: O(pieces)."""
        n = self._n
        wanted = self._wanted
        st = self._st
        fresh = []
        for i in range(n):
            s = st[i]
            if s == _HAVE or s == _ACTIVE:
                continue
            if wanted is None or i in wanted:
                st[i] = _FRESH
                fresh.append(i)
            else:
                st[i] = _UNWANTED
        self._av.reset(fresh)
        need = self._wanted_int() & ~self._have.to_int()
        self._need = need
        self._nmissing = bin(need).count("1")
        self._left = self._nmissing * self._plen
        if n and need >> (n - 1):
            self._left -= self._plen - self._last_size

    @property
    def have(self) -> Bitfield:
        return self._have

    @property
    def complete(self) -> bool:
        """Every wanted piece is verified."""
        return self._nmissing == 0

    @property
    def left_bytes(self) -> int:
        """Bytes of wanted pieces not yet verified (the tracker's ``left``)."""
        return self._left

    # -- internals ------------------------------------------------------------------------

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._n:
            raise PickerError("piece index {} out of range (0..{})".format(index, self._n - 1))

    def _check_bits(self, bits: Bitfield) -> None:
        if len(bits) != self._n:
            raise PickerError("bitfield has {} bits for {} pieces".format(len(bits), self._n))
