"""Swarm state of the tracker: live peers in memory, SQLite written behind them.

Every announce is answered from memory: a dictionary per torrent plus two arrays (seeders and
leechers) that give an O(1) add/remove and an O(numwant) random sample, each peer carrying its
compact (BEP 23 / BEP 7) address ready to join into an answer. A writer thread saves the peers
that changed into SQLite (WAL) in one transaction every ``WRITE_BEHIND_SECONDS``, so the cost
of a disk write is shared by thousands of announces and a restarted tracker still recovers its
torrents, counters and live peers (it loses at most the last half second of regular
re-announces; started, completed and stopped are written before they are answered).

The store takes a clock function, so tests can move time without sleeping.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import sqlite3
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

__all__ = [
    "TrackerDbError", "Peer", "Swarm", "HostedTorrent", "TrackerStore", "compact_address",
    "DEFAULT_INTERVAL", "PEER_TIMEOUT_FACTOR", "MAX_COUNTER",
]

log = logging.getLogger(__name__)

# BEP 3 leaves the announce interval to the tracker; 30 minutes is what opentracker and most
# public trackers hand out, and what the `--interval` option defaults to.
DEFAULT_INTERVAL = 1800

# A peer that misses two announces in a row is gone (crashed, unplugged, NAT timeout): sweeping
# it after 2 x interval keeps dead addresses out of answers without dropping a peer whose single
# announce was late (opentracker keeps peers for about the same time).
PEER_TIMEOUT_FACTOR = 2

# How often changed peers are written to SQLite. Half a second is short enough that a crash
# loses almost nothing and long enough that a busy swarm's writes collapse into one transaction.
WRITE_BEHIND_SECONDS = 0.5

# Wake the writer early when this many changes are waiting, which bounds memory and the length
# of one transaction under a flood of new peers.
WRITE_BEHIND_MAX_PENDING = 50_000

# SQLite stores integers as signed 64-bit; larger byte counters cannot be real and are refused.
MAX_COUNTER = 2 ** 63 - 1

# Memory bounds: a lab tracker serves tens of torrents, a public one a few million peers. These
# keep a flood of made-up info hashes or peer ids from exhausting memory.
MAX_TORRENTS = 100_000
MAX_PEERS_PER_TORRENT = 200_000

# The sweep walks every peer; once a minute is often enough for a timeout measured in intervals
# (the seed design swept every 10 minutes, which let dead peers linger in short-interval labs).
MAX_SWEEP_PERIOD = 60.0


class TrackerDbError(Exception):
    """An announce the store refuses (message is shown to the peer as its failure reason)."""


def compact_address(ip: str, port: int) -> bytes:
    """The BEP 23 (4+2 bytes) or BEP 7 (16+2 bytes) form of an address."""
    return ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")


class Peer:
    """One peer in one swarm (mutable: updated in place on every announce)."""

    __slots__ = ("peer_id", "ip", "port", "uploaded", "downloaded", "left", "last_seen", "key",
                 "compact", "is_v6", "slot")

    def __init__(self, peer_id: bytes, ip: str, port: int, uploaded: int, downloaded: int,
                 left: int, last_seen: float, key: Optional[bytes]) -> None:
        self.peer_id = peer_id
        self.uploaded = uploaded
        self.downloaded = downloaded
        self.left = left
        self.last_seen = last_seen
        self.key = key
        self.slot = -1
        self.ip = ""
        self.port = 0
        self.compact = b""
        self.is_v6 = False
        self.move(ip, port)

    def move(self, ip: str, port: int) -> None:
        if ip != self.ip or port != self.port:
            self.ip = ip
            self.port = port
            self.compact = compact_address(ip, port)
            self.is_v6 = len(self.compact) == 18


class Swarm:
    """The peers of one torrent, split into seeders and leechers for sampling."""

    __slots__ = ("info_hash", "peers", "seeders", "leechers", "completed")

    def __init__(self, info_hash: bytes, completed: int = 0) -> None:
        self.info_hash = info_hash
        self.peers: Dict[bytes, Peer] = {}
        self.seeders: List[Peer] = []
        self.leechers: List[Peer] = []
        self.completed = completed

    def add(self, peer: Peer) -> None:
        self.peers[peer.peer_id] = peer
        group = self.seeders if peer.left == 0 else self.leechers
        peer.slot = len(group)
        group.append(peer)

    def remove(self, peer: Peer) -> None:
        del self.peers[peer.peer_id]
        self._unlink(peer, self.seeders if peer.left == 0 else self.leechers)

    def set_left(self, peer: Peer, left: int) -> None:
        """Update ``left``, moving the peer between seeders and leechers when it changes side."""
        if (peer.left == 0) != (left == 0):
            if peer.left == 0:
                self._unlink(peer, self.seeders)
                group = self.leechers
            else:
                self._unlink(peer, self.leechers)
                group = self.seeders
            peer.slot = len(group)
            group.append(peer)
        peer.left = left

    @staticmethod
    def _unlink(peer: Peer, group: List[Peer]) -> None:
        # Swap with the last element: O(1) and keeps the array dense for sampling.
        last = group.pop()
        if last is not peer:
            group[peer.slot] = last
            last.slot = peer.slot
        peer.slot = -1

    def sample(self, requester: Peer, numwant: int) -> List[Peer]:
        """Up to ``numwant`` random peers other than ``requester``.

        A seeder gets only leechers: one seeder has nothing to give another (opentracker does the
        same). Seeders and leechers are drawn in proportion to their numbers, each group evenly
        spaced from a random start (see _spread), which costs two slices of the peer arrays
        however large the swarm is.
        """
        seeders = _EMPTY if requester.left == 0 else self.seeders
        leechers = self.leechers
        n_seeders = len(seeders)
        total = n_seeders + len(leechers)
        if numwant <= 0 or total == 0:
            return []
        want = numwant + 1  # one more, in case the requester is among them
        if total <= want:
            chosen = seeders + leechers
        else:
            # Randomised rounding keeps the expected share of seeders exact.
            from_seeders = (want * n_seeders + random.randrange(total)) // total
            chosen = _spread(seeders, from_seeders) + _spread(leechers, want - from_seeders)
        try:
            chosen.remove(requester)
        except ValueError:
            pass
        del chosen[numwant:]
        return chosen


_EMPTY: List[Peer] = []


def _spread(group: List[Peer], count: int) -> List[Peer]:
    """``count`` peers of ``group`` evenly spaced from a random start, wrapping around.

    Every peer is equally likely to be picked and no peer twice; unlike random.sample (one
    Python-level random draw per peer, a quarter of an announce's time) this is one draw and two
    C-level slices. Peers are not in arrival order for long (removals move the last peer into
    the gap), so neighbours in the array are not a fixed group.
    """
    size = len(group)
    if count >= size:
        return group[:]
    if count <= 0:
        return []
    step = size // count
    start = random.randrange(size)
    picked = group[start::step]
    if len(picked) < count:
        picked += group[start + len(picked) * step - size::step]
    del picked[count:]
    return picked


class HostedTorrent:
    """A .torrent file stored on the tracker (metadata kept in memory, bytes in SQLite)."""

    __slots__ = ("info_hash", "name", "size", "added")

    def __init__(self, info_hash: bytes, name: str, size: int, added: float) -> None:
        self.info_hash = info_hash
        self.name = name
        self.size = size
        self.added = added


_SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    info_hash BLOB NOT NULL, peer_id BLOB NOT NULL, ip TEXT NOT NULL, port INTEGER NOT NULL,
    uploaded INTEGER NOT NULL, downloaded INTEGER NOT NULL, "left" INTEGER NOT NULL,
    last_seen REAL NOT NULL, key BLOB,
    PRIMARY KEY (info_hash, peer_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS torrents (
    info_hash BLOB PRIMARY KEY, completed INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hosted (
    info_hash BLOB PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL, data BLOB NOT NULL,
    added REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

_UPSERT_PEER = ('INSERT OR REPLACE INTO peers (info_hash, peer_id, ip, port, uploaded, '
                'downloaded, "left", last_seen, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')

# What a change waiting for the writer is: the peer (saved with its values at flush time) or
# None (deleted).
_Pending = Dict[Tuple[bytes, bytes], Optional[Peer]]


class TrackerStore:
    """All swarms, the hosted torrents and their SQLite file.

    Thread-safe: announces from many handler threads take one short lock; SQLite is touched only
    under a second lock, by the writer thread and by the (rare) hosted-torrent calls.
    """

    def __init__(self, db_path: str, interval: int = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        self.interval = interval
        self.peer_timeout = PEER_TIMEOUT_FACTOR * interval
        self.clock = clock
        self.swarms: Dict[bytes, Swarm] = {}
        self.hosted: Dict[bytes, HostedTorrent] = {}
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._pending: _Pending = {}
        self._pending_counts: Dict[bytes, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: Optional[threading.Thread] = None
        self._last_sweep = clock()
        try:
            self._db = sqlite3.connect(db_path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a process crash; only an OS crash can lose the last commit,
            # which the write-behind window already accepts.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self.tracker_id = self._load_tracker_id()
            self._load()
        except sqlite3.Error as exc:
            raise TrackerDbError(f"cannot open tracker database {db_path}: {exc}") from exc

    # --- start-up -----------------------------------------------------------------------------

    def _load_tracker_id(self) -> bytes:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'tracker_id'").fetchone()
        if row:
            return row[0].encode("ascii")
        value = os.urandom(8).hex()
        with self._db:
            self._db.execute("INSERT INTO meta (name, value) VALUES ('tracker_id', ?)", (value,))
        return value.encode("ascii")

    def _load(self) -> None:
        now = self.clock()
        cutoff = now - self.peer_timeout
        with self._db:
            self._db.execute("DELETE FROM peers WHERE last_seen < ?", (cutoff,))
        for info_hash, completed in self._db.execute("SELECT info_hash, completed FROM torrents"):
            self.swarms[bytes(info_hash)] = Swarm(bytes(info_hash), completed)
        for info_hash, name, size, added in self._db.execute(
                "SELECT info_hash, name, size, added FROM hosted"):
            info_hash = bytes(info_hash)
            self.hosted[info_hash] = HostedTorrent(info_hash, name, size, added)
            self.swarms.setdefault(info_hash, Swarm(info_hash))
        loaded = 0
        for row in self._db.execute('SELECT info_hash, peer_id, ip, port, uploaded, downloaded, '
                                    '"left", last_seen, key FROM peers'):
            info_hash, peer_id, ip, port, uploaded, downloaded, left, last_seen, key = row
            try:
                peer = Peer(bytes(peer_id), ip, port, uploaded, downloaded, left, last_seen,
                            None if key is None else bytes(key))
            except ValueError:
                continue  # an address this version cannot pack: drop it, the peer re-announces
            swarm = self.swarms.get(bytes(info_hash))
            if swarm is None:
                swarm = self.swarms[bytes(info_hash)] = Swarm(bytes(info_hash))
            swarm.add(peer)
            loaded += 1
        log.info("tracker database: %d torrents, %d live peers", len(self.swarms), loaded)

    def start(self) -> None:
        """Start the writer thread (saves changes and sweeps silent peers)."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="tracker-db-writer",
                                            daemon=True)
            self._writer.start()

    def close(self) -> None:
        """Stop the writer, save everything still pending and close the database."""
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=30)
            self._writer = None
        self.flush()
        with self._db_lock:
            self._db.close()

    # --- announces ----------------------------------------------------------------------------

    def announce(self, info_hash: bytes, peer_id: bytes, ip: str, port: int, uploaded: int,
                 downloaded: int, left: int, event: bytes, key: Optional[bytes],
                 numwant: int) -> Tuple[int, int, int, List[Peer]]:
        """Record one announce; returns (seeders, leechers, completed, peers for the answer).

        ``event`` is the raw BEP 3 event (b"" for a regular announce). Raises TrackerDbError when
        the announce is refused.
        """
        now = self.clock()
        with self._lock:
            swarm = self.swarms.get(info_hash)
            if swarm is None:
                if event == b"stopped":
                    return 0, 0, 0, []
                if len(self.swarms) >= MAX_TORRENTS:
                    raise TrackerDbError("tracker is full: too many torrents")
                swarm = self.swarms[info_hash] = Swarm(info_hash)
            peer = swarm.peers.get(peer_id)
            if peer is not None and peer.ip != ip and peer.key is not None and peer.key != key:
                # The key (BEP 3 extension used by all big clients) is what lets a peer move to a
                # new address; without the matching key a different host is not that peer.
                raise TrackerDbError("peer id already in use from another address")
            if event == b"stopped":
                if peer is not None:
                    swarm.remove(peer)
                    self._pending[(info_hash, peer_id)] = None
                return len(swarm.seeders), len(swarm.leechers), swarm.completed, []
            if peer is None:
                if len(swarm.peers) >= MAX_PEERS_PER_TORRENT:
                    raise TrackerDbError("tracker is full: too many peers on this torrent")
                peer = Peer(peer_id, ip, port, uploaded, downloaded, left, now, key)
                swarm.add(peer)
            else:
                peer.move(ip, port)
                peer.uploaded = uploaded
                peer.downloaded = downloaded
                peer.last_seen = now
                if key is not None:
                    peer.key = key
                if left != peer.left:
                    swarm.set_left(peer, left)
            if event == b"completed":
                swarm.completed += 1
                self._pending_counts[info_hash] = swarm.completed
            pending = self._pending
            pending[(info_hash, peer_id)] = peer
            if len(pending) > WRITE_BEHIND_MAX_PENDING:
                self._wake.set()
            peers = swarm.sample(peer, numwant)
            result = len(swarm.seeders), len(swarm.leechers), swarm.completed, peers
        if event:
            # started, completed and stopped are rare and each changes who is in the swarm for a
            # whole interval (a peer that started announces again only 30 minutes later): they
            # are on disk before the answer leaves, so a tracker killed right after still knows.
            self.flush()
        return result

    def scrape(self, info_hashes: Iterable[bytes]) -> Dict[bytes, Tuple[int, int, int]]:
        """(seeders, leechers, completed) of each known torrent among ``info_hashes``."""
        files = {}
        with self._lock:
            for info_hash in info_hashes:
                swarm = self.swarms.get(info_hash)
                if swarm is not None:
                    files[info_hash] = (len(swarm.seeders), len(swarm.leechers), swarm.completed)
        return files

    def known_hashes(self, limit: int) -> List[bytes]:
        with self._lock:
            return list(self.swarms)[:limit]

    def sweep(self) -> int:
        """Remove peers silent for longer than the timeout; returns how many went."""
        cutoff = self.clock() - self.peer_timeout
        removed = 0
        with self._lock:
            for swarm in self.swarms.values():
                stale = [p for p in swarm.peers.values() if p.last_seen < cutoff]
                for peer in stale:
                    swarm.remove(peer)
                    self._pending[(swarm.info_hash, peer.peer_id)] = None
                removed += len(stale)
        if removed:
            log.info("swept %d silent peers", removed)
        return removed

    # --- write-behind ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        sweep_period = min(MAX_SWEEP_PERIOD, max(1.0, self.interval / 2))
        while not self._stop.is_set():
            self._wake.wait(WRITE_BEHIND_SECONDS)
            self._wake.clear()
            try:
                now = self.clock()
                if now - self._last_sweep >= sweep_period:
                    self._last_sweep = now
                    self.sweep()
                self.flush()
            except Exception:  # keep serving from memory; the next flush retries the rows
                log.exception("tracker database write failed")

    def flush(self) -> int:
        """Write every pending change in one transaction; returns the number of rows."""
        with self._lock:
            if not self._pending and not self._pending_counts:
                return 0
            pending, self._pending = self._pending, {}
            counts, self._pending_counts = self._pending_counts, {}
            upserts = []
            deletes = []
            for (info_hash, peer_id), peer in pending.items():
                if peer is None:
                    deletes.append((info_hash, peer_id))
                else:
                    upserts.append((info_hash, peer_id, peer.ip, peer.port, peer.uploaded,
                                    peer.downloaded, peer.left, peer.last_seen, peer.key))
        try:
            with self._db_lock, self._db:
                self._db.executemany(_UPSERT_PEER, upserts)
                self._db.executemany("DELETE FROM peers WHERE info_hash = ? AND peer_id = ?",
                                     deletes)
                self._db.executemany(
                    "INSERT OR REPLACE INTO torrents (info_hash, completed) VALUES (?, ?)",
                    list(counts.items()))
        except sqlite3.Error:
            with self._lock:  # put the changes back unless newer ones replaced them
                for item, peer in pending.items():
                    self._pending.setdefault(item, peer)
                for info_hash, completed in counts.items():
                    self._pending_counts.setdefault(info_hash, completed)
            raise
        return len(upserts) + len(deletes) + len(counts)

    # --- hosted torrents -----------------------------------------------------------------------

    def add_hosted(self, info_hash: bytes, name: str, size: int, data: bytes) -> HostedTorrent:
        """Store a .torrent file (written at once: the client is told it is saved)."""
        added = self.clock()
        with self._db_lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO hosted (info_hash, name, size, data, added) "
                             "VALUES (?, ?, ?, ?, ?)", (info_hash, name, size, data, added))
        hosted = HostedTorrent(info_hash, name, size, added)
        with self._lock:
            self.hosted[info_hash] = hosted
            self.swarms.setdefault(info_hash, Swarm(info_hash))
        return hosted

    def hosted_data(self, info_hash: bytes) -> Optional[bytes]:
        with self._db_lock:
            row = self._db.execute("SELECT data FROM hosted WHERE info_hash = ?",
                                   (info_hash,)).fetchone()
        return None if row is None else bytes(row[0])

    def list_hosted(self) -> List[HostedTorrent]:
        with self._lock:
            return sorted(self.hosted.values(), key=lambda h: h.added)

    # --- monitoring -----------------------------------------------------------------------------

    def stats(self, max_torrents: int, max_peers: int) -> Dict[str, object]:
        """A snapshot of every swarm for /stats and the dashboard (plain data, JSON-ready)."""
        now = self.clock()
        torrents = []
        with self._lock:
            swarms = sorted(self.swarms.values(), key=lambda s: -len(s.peers))
            for swarm in swarms[:max_torrents]:
                hosted = self.hosted.get(swarm.info_hash)
                size = hosted.size if hosted else None
                peers = []
                uploaded = downloaded = 0
                for peer in swarm.peers.values():
                    uploaded += peer.uploaded
                    downloaded += peer.downloaded
                    if len(peers) < max_peers:
                        peers.append(_peer_stats(peer, size, now))
                torrents.append({
                    "info_hash": swarm.info_hash.hex(),
                    "name": hosted.name if hosted else None,
                    "size": size,
                    "seeders": len(swarm.seeders),
                    "leechers": len(swarm.leechers),
                    "completed": swarm.completed,
                    "uploaded": uploaded,
                    "downloaded": downloaded,
                    "peers": peers,
                    "peers_shown": len(peers),
                })
            total_peers = sum(len(s.peers) for s in self.swarms.values())
            n_torrents = len(self.swarms)
        return {"time": now, "interval": self.interval, "torrents": torrents,
                "torrent_count": n_torrents, "peer_count": total_peers}


def _peer_stats(peer: Peer, size: Optional[int], now: float) -> Dict[str, object]:
    if size:
        progress = max(0.0, min(1.0, (size - peer.left) / size))
    elif peer.left == 0:
        progress = 1.0
    else:
        # Without the torrent's size, downloaded/(downloaded+left) is the best estimate (it is
        # exact for a peer that started from nothing).
        progress = peer.downloaded / (peer.downloaded + peer.left)
    return {
        "peer_id": peer.peer_id.hex(),
        "client": _printable(peer.peer_id[:8]),
        "ip": peer.ip,
        "port": peer.port,
        "uploaded": peer.uploaded,
        "downloaded": peer.downloaded,
        "left": peer.left,
        "progress": round(progress, 4),
        "seeder": peer.left == 0,
        "last_seen_ago": round(max(0.0, now - peer.last_seen), 1),
    }


def _printable(raw: bytes) -> str:
    # Azureus-style peer ids start with "-XX1234-" naming the client; show that part as text.
    return "".join(chr(b) if 32 <= b < 127 else "." for b in raw)
