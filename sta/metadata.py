"""Metadata for magnet links: the info dictionary from peers (BEP 9 over BEP 10) or from a URL.

A magnet link carries only the info hash. The info dictionary it names comes either from peers
(``ut_metadata``, in 16 KiB pieces) or from a URL given as ``xs=`` (a tracker hosting the .torrent).
Both are checked the same way: the SHA-1 of the dictionary must be the info hash.

Like ``wire.py`` and ``picker.py``, the peer side is pure. ``MetadataFetcher`` takes events (a
peer's announced size, data, rejects, a peer gone) and says which pieces to request of whom; the
messages themselves and ``MetadataServer``, which answers them, are ``sta.ut_metadata``. The caller owns sockets and clocks: every
method that needs the time takes ``now`` (seconds, any monotonic time base). Peers are opaque
keys (the connection objects, or addresses).

Sizes that disagree. libtorrent keeps one size (the last handshake hint, else the first data
message) and ignores data of any other size; Transmission keeps the first size announced. Either
way one peer announcing a wrong size can hold up the whole fetch. Here each announced size is a
candidate with its own pieces, filled only by the peers that announced it, and the info hash
decides: the true size is the only one whose pieces can hash right. A few candidates are kept at
once (``MAX_CANDIDATE_SIZES``).

Lying peers. Pieces of one candidate are spread over its peers, so a liar rarely supplies them
all. When the assembled dictionary fails the hash, every piece is fetched again from a peer that
has not sent it yet, and assemblies are tried from the copies held: by majority, then trusting
each contributor in turn. A peer whose own complete copy fails is banned at once; when an assembly
verifies, every peer that sent a piece differing from it is proven a liar and banned. libtorrent
and Transmission only start over after a failure (libtorrent also makes the senders wait 20 to
70 seconds), which never finds a liar that keeps answering.

Fetching from an ``xs=`` URL and saving the fetched dictionary as a .torrent are
``sta.metadata_source``.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections import OrderedDict
from typing import Any, Dict, FrozenSet, Hashable, Iterator, List, Optional, Set, Tuple

from .ut_metadata import MAX_METADATA_SIZE, METADATA_PIECE_SIZE as PIECE_SIZE
# Re-exported until every caller imports them from ut_metadata:
from .ut_metadata import MetadataError

__all__ = ["MetadataFetcher", "DataResult"]

log = logging.getLogger(__name__)

# Requests in flight to one peer. libtorrent keeps 2 and Transmission sends about one per
# peer per pulse; 4 fills a LAN round trip with 64 KiB, and the fetcher also caps each peer at
# its share of the missing pieces, so several peers take part even when the dictionary is small.
MAX_OUTSTANDING_PER_PEER = 4
# A piece requested this long ago may be asked of another peer as well: the minimum repeat
# interval of both libtorrent and Transmission. 16 KiB takes milliseconds on a LAN.
REREQUEST_INTERVAL = 3.0
# A request unanswered this long is given up: it no longer holds one of the peer's slots, and
# the peer keeps a single request in flight until it answers something.
REQUEST_TIMEOUT = 20.0
# After a reject, leave the peer alone this long: libtorrent's back-off (one minute). A reject
# means the peer lacks the dictionary or is busy; neither is a reason to drop it.
REJECT_BACKOFF = 60.0

# Distinct announced sizes tracked at once. One is the truth; room for a couple of wrong ones
# means a broken or lying peer cannot lock the honest size out, while a swarm of liars cannot make
# us hold many dictionaries. Candidates without peers make way for new ones.
MAX_CANDIDATE_SIZES = 3
# Failed checks of one candidate before it is given up and every peer announcing that size is
# dropped. With one liar among honest peers the second or third check passes (each round every
# piece gets one more source); five leaves room for a second liar.
MAX_VERIFY_ROUNDS = 5
# Assemblies hashed per check: majority plus one trusting each of the main contributors. Each
# costs one SHA-1 over the dictionary (about 30 ms for the largest), so a check stays short.
MAX_ASSEMBLIES_PER_CHECK = 8
# Bytes of piece copies held across candidates: two dictionaries of the largest size, enough to
# set an honest copy beside a lying one. Past it, new copies are only fingerprinted (they still
# count as evidence against their sender) so liars cannot make us hold more.
MAX_HELD_BYTES = 2 * MAX_METADATA_SIZE
# Peers tracked at once, and banned keys remembered: far above the 80 connections a torrent keeps
# (torrent.py), and a bound on what a fetch can cost whatever the caller feeds it.
MAX_PEERS = 1000
MAX_BANNED = 1000

Key = Hashable


# ---------------------------------------------------------------------------------------------
# Fetching


class DataResult(str, enum.Enum):
    """What ``MetadataFetcher.on_data`` made of a piece."""
    ACCEPTED = "accepted"        # kept; more pieces are needed
    IGNORED = "ignored"          # not asked for, not needed, or the fetch is over
    BAD_PEER = "bad peer"        # the peer broke the rules: drop it (see bad_peers())
    HASH_FAILED = "hash failed"  # all pieces in, no assembly matched the info hash; refetching
    DONE = "done"                # the info dictionary is verified: see ``done``


class _Version:
    """One copy of one piece, and the peers that sent exactly these bytes."""
    __slots__ = ("digest", "data", "peers", "order")

    def __init__(self, digest: bytes, data: Optional[bytes], order: int) -> None:
        self.digest = digest
        self.data = data          # None when MAX_HELD_BYTES was reached: fingerprint only
        self.peers: Set[Key] = set()
        self.order = order


class _Candidate:
    """Pieces of the info dictionary for one announced size."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.num_pieces = -(-size // PIECE_SIZE)
        self.versions: List[Dict[bytes, _Version]] = [{} for _ in range(self.num_pieces)]
        # Pieces that need a copy from a new source in this round, and who had sent each piece
        # when the round began (a new source is anyone else).
        self.wanted: Set[int] = set(range(self.num_pieces))
        self.prior: List[FrozenSet[Key]] = [frozenset()] * self.num_pieces
        self.fresh = False   # a copy from a new source arrived since the last check
        self.failures = 0
        self.tried: Set[bytes] = set()   # fingerprints of the assemblies already hashed
        self.suspects: Set[Key] = set()  # contributors to a failed check

    def sources(self, index: int) -> FrozenSet[Key]:
        return frozenset(key for v in self.versions[index].values() for key in v.peers)


class _Peer:
    __slots__ = ("key", "size", "target", "asked", "late", "backoff_until", "slow", "refused",
                 "bad")

    def __init__(self, key: Key) -> None:
        self.key = key
        self.size: Optional[int] = None     # announced (or first sent) metadata size
        self.target: Optional[int] = None   # candidate size its requests belong to
        self.asked: Dict[int, float] = {}   # piece -> time requested
        self.late: Set[int] = set()         # requests that timed out; an answer is still welcome
        self.backoff_until = 0.0
        self.slow = False
        self.refused: Optional[str] = None  # not used for metadata, but not at fault
        self.bad: Optional[str] = None      # broke the rules: the caller drops it


class MetadataFetcher:
    """Fetches the info dictionary of ``info_hash`` from several peers at once (BEP 9).

    Feed it events: ``peer_offers`` after a peer's extension handshake, ``on_data`` and
    ``on_reject`` for its ut_metadata answers, ``peer_gone`` when the connection closes. Ask
    ``next_requests`` which pieces to request of a peer (after its handshake, after each answer
    and once a second). After any event, ``done`` may hold the verified dictionary and
    ``bad_peers()`` may name peers to drop.
    """

    def __init__(self, info_hash: bytes, max_size: int = MAX_METADATA_SIZE) -> None:
        if len(info_hash) != 20:
            raise ValueError("an info hash is 20 bytes")
        self.info_hash = bytes(info_hash)
        self.max_size = min(int(max_size), MAX_METADATA_SIZE)
        self._peers: Dict[Key, _Peer] = {}
        self._candidates: Dict[int, _Candidate] = {}
        self._banned: "OrderedDict[Key, str]" = OrderedDict()
        self._done: Optional[bytes] = None
        self._held = 0
        self._order = 0
        self._now = 0.0  # the latest time a caller passed in

    # -- state -----------------------------------------------------------------------------

    @property
    def done(self) -> Optional[bytes]:
        """The verified info dictionary once fetched, else None."""
        return self._done

    def bad_peers(self) -> Dict[Key, str]:
        """Peers that broke the rules and are still tracked, with the reason: drop them (and call
        ``peer_gone``)."""
        return {p.key: p.bad for p in self._peers.values() if p.bad}

    def reason(self, peer: Key) -> Optional[str]:
        """Why the peer is not used for metadata (refused or bad), or None."""
        p = self._peers.get(peer)
        if p is not None:
            return p.bad or p.refused
        return self._banned.get(peer)

    def progress(self) -> float:
        """Fraction of pieces received for the most complete candidate size (1.0 when done)."""
        if self._done is not None:
            return 1.0
        return max((sum(1 for v in c.versions if v) / c.num_pieces
                    for c in self._candidates.values()), default=0.0)

    def summary(self) -> str:
        """One line for a status view or an error message."""
        if self._done is not None:
            return f"metadata complete ({len(self._done)} bytes)"
        usable = sum(1 for p in self._peers.values() if not p.bad and not p.refused)
        bad = len(self._banned)
        text = f"{usable} peer{'s' if usable != 1 else ''} offering metadata"
        if self._candidates:
            text += f", {self.progress():.0%} received"
        if bad:
            text += f", {bad} dropped (last: {next(reversed(self._banned.values()))})"
        return text

    # -- events ----------------------------------------------------------------------------

    def peer_offers(self, peer: Key, metadata_size: Any) -> bool:
        """A peer's extension handshake listed ut_metadata. ``metadata_size`` is the raw value of
        its "metadata_size" field (None when absent: the peer is then asked one piece at a time,
        as libtorrent does, and its first answer tells its size). False when the peer will not
        be asked; ``reason(peer)`` says why."""
        if self._done is not None:
            return False
        if peer in self._banned:
            return False
        p = self._peers.get(peer)
        if p is None:
            if len(self._peers) >= MAX_PEERS:
                return False
            p = self._peers[peer] = _Peer(peer)
        if p.bad:
            return False
        p.refused = None
        if metadata_size is None:
            return p.size is None or self._join(p, p.size)
        if isinstance(metadata_size, bool) or not isinstance(metadata_size, int):
            p.refused = f"metadata_size {metadata_size!r} is not a number"
        elif metadata_size <= 0:
            p.refused = f"metadata_size {metadata_size} (the peer has no metadata)"
        elif metadata_size > self.max_size:
            p.refused = (f"metadata_size {metadata_size} is over the {self.max_size}-byte "
                         "limit")
        elif p.size is not None and p.size != metadata_size:
            self._mark_bad(peer, f"changed its metadata_size from {p.size} to {metadata_size}")
            return False
        if p.refused:
            self._drop_requests(p)
            log.debug("metadata: not asking %r: %s", peer, p.refused)
            return False
        return self._join(p, metadata_size)

    def next_requests(self, peer: Key, now: float,
                      max_outstanding: int = MAX_OUTSTANDING_PER_PEER) -> List[int]:
        """Metadata pieces to request of ``peer`` now; each is then in flight to it. A peer gets
        at most ``max_outstanding`` (one while slow or of unknown size) and at most its share of
        the missing pieces, so they spread over the peers; a piece in flight elsewhere for
        REREQUEST_INTERVAL may be asked again here."""
        self._expire(now)
        p = self._peers.get(peer)
        if (p is None or p.bad or p.refused or self._done is not None
                or now < p.backoff_until):
            return []
        c = self._candidates.get(p.size) if p.size is not None else self._leading()
        if c is None:
            if p.size is not None or p.asked:
                return []
            p.target = None  # nobody has said a size yet: ask for piece 0 to learn it
            p.asked[0] = now
            return [0]
        if p.asked and p.target != c.size:
            return []
        limit = 1 if (p.slow or p.size is None) else max(1, max_outstanding)
        available = self._available(c, now)
        if p.key in c.suspects and any(q.key not in c.suspects and not q.slow
                                       for q in available):
            return []  # after a failed check, unsuspected peers refetch first
        share = -(-len(c.wanted) // max(1, len(available)))
        room = min(limit, max(1, share)) - len(p.asked)
        if room <= 0:
            return []
        in_flight: Dict[int, float] = {}
        for q in self._peers.values():
            if q is not p and q.target == c.size and not q.bad:
                for index, sent in q.asked.items():
                    if in_flight.get(index, -1.0) < sent:
                        in_flight[index] = sent
        fresh: List[int] = []
        repeat: List[Tuple[float, int]] = []
        for index in sorted(c.wanted):
            if index in p.asked or p.key in c.prior[index]:
                continue
            sent = in_flight.get(index)
            if sent is None:
                fresh.append(index)
                if len(fresh) >= room:
                    break
            elif now - sent >= REREQUEST_INTERVAL:
                repeat.append((sent, index))
        chosen = fresh + [index for _, index in sorted(repeat)]
        chosen = chosen[:room]
        p.target = c.size
        for index in chosen:
            p.asked[index] = now
        return chosen

    def on_data(self, peer: Key, piece: int, total_size: Any, data: bytes,
                now: float) -> DataResult:
        """A ut_metadata data message from ``peer``."""
        self._now = max(self._now, now)
        p = self._peers.get(peer)
        if p is None or p.bad or self._done is not None:
            return DataResult.IGNORED
        if (isinstance(total_size, bool) or not isinstance(total_size, int)
                or not 0 < total_size <= self.max_size):
            return self._mark_bad(peer, f"sent total_size {total_size!r}, not between 1 and "
                                     f"{self.max_size}")
        if p.size is not None and total_size != p.size:
            return self._mark_bad(peer, f"sent total_size {total_size} after announcing "
                                     f"metadata_size {p.size}")
        count = -(-total_size // PIECE_SIZE)
        if isinstance(piece, bool) or not isinstance(piece, int) or not 0 <= piece < count:
            return self._mark_bad(peer, f"sent metadata piece {piece!r} of a {total_size}-byte "
                                     f"dictionary ({count} pieces)")
        expected = min(PIECE_SIZE, total_size - piece * PIECE_SIZE)
        if len(data) != expected:
            return self._mark_bad(peer, f"sent {len(data)} bytes as metadata piece {piece}, "
                                     f"expected {expected}")
        if piece in p.asked:
            del p.asked[piece]
        elif piece in p.late:
            p.late.discard(piece)
        else:
            return DataResult.IGNORED  # never asked of this peer (or already answered)
        p.slow = False
        if p.size is None and not self._join(p, total_size):
            return DataResult.IGNORED
        c = self._candidates.get(total_size)
        if c is None:  # its candidate was given up
            return DataResult.IGNORED
        block = bytes(data)
        digest = hashlib.sha1(block).digest()
        versions = c.versions[piece]
        for other in versions.values():
            if peer in other.peers and other.digest != digest:
                return self._mark_bad(peer, f"sent two different copies of metadata piece {piece}")
        version = versions.get(digest)
        if version is None:
            keep = self._held + len(block) <= MAX_HELD_BYTES
            self._order += 1
            version = versions[digest] = _Version(digest, block if keep else None, self._order)
            self._held += len(block) if keep else 0
        version.peers.add(peer)
        if piece in c.wanted and peer not in c.prior[piece]:
            c.wanted.discard(piece)
            c.fresh = True
        return self._check(c)

    def on_reject(self, peer: Key, piece: int, now: float) -> None:
        """A ut_metadata reject: the piece goes back, the peer is left alone for a while."""
        p = self._peers.get(peer)
        if p is None or (piece not in p.asked and piece not in p.late):
            return
        p.asked.pop(piece, None)
        p.late.discard(piece)
        p.backoff_until = now + REJECT_BACKOFF
        log.debug("metadata: %r rejected piece %d; asking it again in %.0f s", peer, piece,
                  REJECT_BACKOFF)
        self._expire(now)
        c = self._candidates.get(p.size) if p.size is not None else None
        if c is not None and self._done is None:
            self._check(c)

    def peer_gone(self, peer: Key) -> None:
        """The connection closed. Its pieces stay (they are checked by hash); its requests go
        back. The copies held may now be all there is to check, so this can finish the fetch."""
        p = self._peers.pop(peer, None)
        if p is None or self._done is not None:
            return
        c = self._candidates.get(p.size) if p.size is not None else None
        if c is not None:
            self._check(c)

    # -- internals ---------------------------------------------------------------------------

    def _join(self, p: _Peer, size: int) -> bool:
        if size not in self._candidates:
            if len(self._candidates) >= MAX_CANDIDATE_SIZES:
                self._prune()
            if len(self._candidates) >= MAX_CANDIDATE_SIZES:
                p.refused = (f"metadata_size {size}: already comparing "
                             f"{len(self._candidates)} different sizes")
                self._drop_requests(p)
                return False
            self._candidates[size] = _Candidate(size)
        if p.size != size:
            self._drop_requests(p)
        p.size = size
        return True

    def _prune(self) -> None:
        """Forget candidates no live peer supports, to make room for a new size."""
        for size, c in list(self._candidates.items()):
            if not any(q.size == size and not q.bad for q in self._peers.values()):
                self._forget(c)

    def _forget(self, c: _Candidate) -> None:
        for versions in c.versions:
            for version in versions.values():
                if version.data is not None:
                    self._held -= len(version.data)
        self._candidates.pop(c.size, None)

    def _leading(self) -> Optional[_Candidate]:
        """The candidate most peers announced: the one a peer of unknown size is asked for."""
        best: Optional[_Candidate] = None
        best_count = -1
        for c in self._candidates.values():
            count = sum(1 for q in self._peers.values() if q.size == c.size and not q.bad)
            if count > best_count:
                best, best_count = c, count
        return best

    def _available(self, c: _Candidate, now: float) -> List[_Peer]:
        return [q for q in self._peers.values()
                if q.size == c.size and not q.bad and not q.refused and now >= q.backoff_until]

    def _expire(self, now: float) -> None:
        """Give up requests unanswered for REQUEST_TIMEOUT. A peer that slow no longer holds up
        a check, so the copies already held may now be checked."""
        self._now = max(self._now, now)
        stalled: Set[int] = set()
        for q in self._peers.values():
            expired = [i for i, sent in q.asked.items() if now - sent >= REQUEST_TIMEOUT]
            for index in expired:
                del q.asked[index]
                q.late.add(index)
                q.slow = True
            if expired and q.target is not None:
                stalled.add(q.target)
                log.debug("metadata: %r did not answer %d request(s) in %.0f s", q.key,
                          len(expired), REQUEST_TIMEOUT)
        for size in stalled:
            c = self._candidates.get(size)
            if c is not None and self._done is None:
                self._check(c)

    def _drop_requests(self, p: _Peer) -> None:
        p.asked.clear()
        p.late.clear()
        p.target = None

    def _mark_bad(self, key: Key, reason: str) -> DataResult:
        """Ban a peer, connected or not; its requests go back to the pool."""
        p = self._peers.get(key)
        if p is not None and not p.bad:
            p.bad = reason
            self._drop_requests(p)
            log.info("metadata: dropping %r: %s", key, reason)
        self._banned[key] = reason
        self._banned.move_to_end(key)
        while len(self._banned) > MAX_BANNED:
            self._banned.popitem(last=False)
        return DataResult.BAD_PEER

    def _check(self, c: _Candidate) -> DataResult:
        """Hash the candidate once nothing more can be learned in this round: every wanted piece
        has come, or no peer could send it soon (all sent it before, or are slow or backing
        off)."""
        usable = {q.key for q in self._peers.values()
                  if q.size == c.size and not q.bad and not q.refused and not q.slow
                  and self._now >= q.backoff_until}
        if usable and any(not c.prior[index].issuperset(usable) for index in c.wanted):
            return DataResult.ACCEPTED
        if not c.fresh or not all(c.versions):
            return DataResult.ACCEPTED  # nothing new to try, or a piece nobody can give yet
        c.fresh = False
        winner = self._try_assemblies(c)
        if winner is not None:
            self._finish(c, winner)
            return DataResult.DONE
        self._round_failed(c)
        return DataResult.HASH_FAILED

    def _assemblies(self, c: _Candidate) -> Iterator[List[_Version]]:
        def score(v: _Version) -> Tuple[int, int]:
            honest = sum(1 for key in v.peers if key not in self._banned)
            return honest, -v.order
        majority = [max(versions.values(), key=score) for versions in c.versions]
        yield majority
        counts: Dict[Key, int] = {}
        for versions in c.versions:
            for version in versions.values():
                for key in version.peers:
                    counts[key] = counts.get(key, 0) + 1
        for key in sorted(counts, key=lambda k: (k in self._banned, -counts[k])):
            yield [next((v for v in versions.values() if key in v.peers), majority[i])
                   for i, versions in enumerate(c.versions)]

    def _try_assemblies(self, c: _Candidate) -> Optional[List[_Version]]:
        tries = 0
        for plan in self._assemblies(c):
            if tries >= MAX_ASSEMBLIES_PER_CHECK:
                break
            if any(v.data is None for v in plan):
                continue
            tag = hashlib.sha1(b"".join(v.digest for v in plan)).digest()
            if tag in c.tried:
                continue
            tries += 1
            c.tried.add(tag)
            h = hashlib.sha1()
            for v in plan:
                h.update(v.data)  # type: ignore[arg-type]
            if h.digest() == self.info_hash:
                return plan
        return None

    def _finish(self, c: _Candidate, plan: List[_Version]) -> None:
        self._done = b"".join(v.data for v in plan)  # type: ignore[misc]
        log.info("metadata: %d-byte info dictionary verified", c.size)
        for index, versions in enumerate(c.versions):
            for version in versions.values():
                if version is not plan[index]:
                    for key in version.peers:
                        self._mark_bad(key, f"sent a copy of metadata piece {index} that does not "
                                         "match the info hash")
        for q in list(self._peers.values()):
            if q.size is not None and q.size != c.size:
                self._mark_bad(q.key, f"announced metadata_size {q.size}, but the info dictionary "
                                  f"is {c.size} bytes")
            self._drop_requests(q)
        for other in list(self._candidates.values()):
            self._forget(other)
        self._held = 0

    def _round_failed(self, c: _Candidate) -> None:
        c.failures += 1
        contributors = frozenset().union(*(c.sources(i) for i in range(c.num_pieces)))
        log.warning("metadata: %d-byte dictionary from %d peer(s) fails the info hash "
                    "(check %d of %d)", c.size, len(contributors), c.failures, MAX_VERIFY_ROUNDS)
        for key in contributors:
            own = [next((v for v in versions.values() if key in v.peers), None)
                   for versions in c.versions]
            if all(v is not None for v in own):
                tag = hashlib.sha1(b"".join(v.digest for v in own)).digest()  # type: ignore
                if tag in c.tried:
                    self._mark_bad(key, "its copy of the metadata fails the info hash")
        c.suspects |= contributors
        if c.failures >= MAX_VERIFY_ROUNDS:
            for q in list(self._peers.values()):
                if q.size == c.size:
                    self._mark_bad(q.key, f"its {c.size}-byte metadata still fails the info hash "
                                      f"after {c.failures} checks")
            self._forget(c)
            return
        # Next round: every piece again, each from a peer that has not sent it yet.
        c.prior = [c.sources(index) for index in range(c.num_pieces)]
        c.wanted = set(range(c.num_pieces))
