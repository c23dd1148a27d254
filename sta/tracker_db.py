"""Swarm state of the tracker: live peers in memory, SQLite written behind them.

Every announce is answered from memory (``tracker_swarm.SwarmEntry`` per torrent). A writer
thread saves the peers that changed into SQLite (WAL) in one transaction every
``WRITE_BEHIND_SECONDS``, so the cost of a disk write is shared by thousands of announces and a
restarted tracker still recovers its torrents, counters and live peers (it loses at most the
last half second of regular re-announces; started, completed and stopped are written before
they are answered while the database can be written). When the database cannot be written
(another process holds its lock, the disk is full), announces are still answered from memory
and the writer keeps the changes and retries until it can.

What one address can make the tracker hold is bounded (new torrents per minute, peers), and a
torrent that is neither hosted nor has live peers is forgotten at the next sweep, counters and
all, so made-up info hashes cannot fill the tracker for good.

The store takes a clock function, so tests can move time without sleeping.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from sta.tracker_limits import DEFAULT_INTERVAL, RateLimit, address_group
from sta.tracker_swarm import SwarmEntry, TrackedPeer, swarm_stats

__all__ = [
    "TrackerDbError", "HostedTorrent", "TrackerStore", "PEER_TIMEOUT_FACTOR",
    "MAX_COUNTER", "MAX_TORRENTS", "MAX_PEERS", "MAX_PEERS_PER_TORRENT", "MAX_PEERS_PER_ADDRESS",
    "NEW_TORRENTS_BURST", "NEW_TORRENTS_PER_MINUTE", "MAX_HOSTED_BYTES",
]

log = logging.getLogger(__name__)

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

# How long one write waits for another process's lock on the database file before it gives up
# and keeps its changes for the writer's next try (SQLite's own default is 5 s, which every
# started/completed/stopped announce would then wait).
DB_BUSY_TIMEOUT = 0.25

# SQLite stores integers as signed 64-bit; larger byte counters cannot be real and are refused.
MAX_COUNTER = 2 ** 63 - 1

# Memory bounds: a lab tracker serves tens of torrents, a public one a few million peers. About
# 530 bytes a peer (measured), so MAX_PEERS is about 530 MiB at worst.
MAX_TORRENTS = 100_000
MAX_PEERS = 1_000_000
MAX_PEERS_PER_TORRENT = 200_000
# Peers announced from one address (group, see tracker_limits): five times a 10,000-peer lab
# behind one NAT address, which is never throttled, and a fifth of MAX_PEERS, so a handful of
# addresses cannot fill the tracker (one address made up 200,000 peers before this limit).
MAX_PEERS_PER_ADDRESS = 50_000

# New torrents (swarms the tracker did not know) one address may start: a lab seeding a
# hundred torrents at once from one machine or NAT address, then one a second. Made-up info
# hashes from one address cannot fill MAX_TORRENTS (100,000 take more than a day).
NEW_TORRENTS_BURST = 100
NEW_TORRENTS_PER_MINUTE = 60
# New torrents from all addresses together: at most this many a minute, so a flood from many
# addresses keeps fewer live torrents than MAX_TORRENTS even at a 30-minute interval (peers live
# 2 x interval: 1,000 a minute x 60 minutes = 60,000); known torrents are never refused.
NEW_TORRENTS_BURST_ALL = 1000
NEW_TORRENTS_PER_MINUTE_ALL = 1000

# Bytes of .torrent files the tracker hosts in all: a lab's torrents are kilobytes to a few
# MiB each; a gibibyte bounds the database file against uploads of junk.
MAX_HOSTED_BYTES = 1 << 30

# The sweep walks every peer; once a minute is often enough for a timeout measured in intervals
# (the seed design swept every 10 minutes, which let dead peers linger in short-interval labs).
MAX_SWEEP_PERIOD = 60.0


class TrackerDbError(Exception):
    """An announce or upload the store refuses (the message is shown to the client)."""


class HostedTorrent:
    """A .torrent file stored on the tracker (metadata kept in memory, bytes in SQLite)."""

    __slots__ = ("info_hash", "name", "size", "added", "nbytes")

    def __init__(self, info_hash: bytes, name: str, size: int, added: float,
                 nbytes: int) -> None:
        self.info_hash = info_hash
        self.name = name
        self.size = size
        self.added = added
        self.nbytes = nbytes


_SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    info_hash BLOB NOT NULL, peer_id BLOB NOT NULL, ip TEXT NOT NULL, port INTEGER NOT NULL,
    uploaded INTEGER NOT NULL, downloaded INTEGER NOT NULL, "left" INTEGER NOT NULL,
    last_seen REAL NOT NULL, key BLOB, source TEXT,
    PRIMARY KEY (info_hash, peer_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS torrents (
    info_hash BLOB PRIMARY KEY, completed INTEGER NOT NULL DEFAULT 0,
    uploaded INTEGER NOT NULL DEFAULT 0, downloaded INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hosted (
    info_hash BLOB PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL, data BLOB NOT NULL,
    added REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

# Columns added after the first release, for databases made by it: (table, column, definition).
_ADDED_COLUMNS = (("peers", "source", "TEXT"),
                  ("torrents", "uploaded", "INTEGER NOT NULL DEFAULT 0"),
                  ("torrents", "downloaded", "INTEGER NOT NULL DEFAULT 0"))

_UPSERT_PEER = ('INSERT OR REPLACE INTO peers (info_hash, peer_id, ip, port, uploaded, '
                'downloaded, "left", last_seen, key, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
_UPSERT_TORRENT = ("INSERT OR REPLACE INTO torrents (info_hash, completed, uploaded, downloaded) "
                   "VALUES (?, ?, ?, ?)")

# What a change waiting for the writer is: the peer or swarm (saved with its values at flush
# time) or None (deleted).
_Pending = Dict[Tuple[bytes, bytes], Optional[TrackedPeer]]
_PendingSwarms = Dict[bytes, Optional[SwarmEntry]]

Counts = Tuple[int, int, int]


class TrackerStore:
    """All swarms, the hosted torrents and their SQLite file.

    Thread-safe: announces from many handler threads take one short lock; SQLite is touched only
    under a second lock, by the writer thread, by started/completed/stopped announces and by the
    (rare) hosted-torrent calls.
    """

    def __init__(self, db_path: str, interval: int = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        self.interval = interval
        self.peer_timeout = PEER_TIMEOUT_FACTOR * interval
        self.clock = clock
        self.swarms: Dict[bytes, SwarmEntry] = {}
        self.hosted: Dict[bytes, HostedTorrent] = {}
        self.new_torrents = RateLimit(NEW_TORRENTS_BURST, NEW_TORRENTS_PER_MINUTE, clock)
        self.new_torrents_all = RateLimit(NEW_TORRENTS_BURST_ALL, NEW_TORRENTS_PER_MINUTE_ALL,
                                          clock, max_keys=1)
        self._peer_total = 0
        self._peers_by_source: Dict[str, int] = {}
        self._hosted_bytes = 0
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._pending: _Pending = {}
        self._pending_swarms: _PendingSwarms = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: Optional[threading.Thread] = None
        self._last_sweep = clock()
        self.db_failing = False
        try:
            self._db = sqlite3.connect(db_path, timeout=DB_BUSY_TIMEOUT,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a process crash; only an OS crash can lose the last commit,
            # which the write-behind window already accepts.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._add_missing_columns()
            self.tracker_id = self._load_tracker_id()
            self._load()
        except sqlite3.Error as exc:
            raise TrackerDbError(f"cannot open tracker database {db_path}: {exc}") from exc

    # --- start-up -----------------------------------------------------------------------------

    def _add_missing_columns(self) -> None:
        for table, column, definition in _ADDED_COLUMNS:
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                with self._db:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def _load_tracker_id(self) -> bytes:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'tracker_id'").fetchone()
        if row:
            return row[0].encode("ascii")
        value = os.urandom(8).hex()
        with self._db:
            self._db.execute("INSERT INTO meta (name, value) VALUES ('tracker_id', ?)", (value,))
        return value.encode("ascii")

    def _load(self) -> None:
        cutoff = self.clock() - self.peer_timeout
        with self._db:
            self._db.execute("DELETE FROM peers WHERE last_seen < ?", (cutoff,))
        counts = {bytes(row[0]): tuple(row[1:]) for row in self._db.execute(
            "SELECT info_hash, completed, uploaded, downloaded FROM torrents")}
        for info_hash, name, size, added, nbytes in self._db.execute(
                "SELECT info_hash, name, size, added, length(data) FROM hosted ORDER BY added"):
            info_hash = bytes(info_hash)
            self.hosted[info_hash] = HostedTorrent(info_hash, name, size, added, nbytes)
            self._hosted_bytes += nbytes
            self.swarms[info_hash] = SwarmEntry(info_hash, *counts.get(info_hash, ()))
        for row in self._db.execute('SELECT info_hash, peer_id, ip, port, uploaded, downloaded, '
                                    '"left", last_seen, key, source FROM peers'):
            info_hash, peer_id, ip, port, uploaded, downloaded, left, last_seen, key, source = row
            info_hash = bytes(info_hash)
            try:
                peer = TrackedPeer(bytes(peer_id), ip, port, uploaded, downloaded, left,
                                   last_seen, None if key is None else bytes(key),
                                   source or address_group(ip))
            except ValueError:
                continue  # an address this version cannot pack: drop it, the peer re-announces
            swarm = self.swarms.get(info_hash)
            if swarm is None:
                swarm = self.swarms[info_hash] = SwarmEntry(info_hash,
                                                            *counts.get(info_hash, ()))
            self._add_peer(swarm, peer)
        # Counters of torrents with no live peer and no hosted file are forgotten: keeping them
        # would let made-up info hashes fill the tracker for good.
        forgotten = [(h,) for h in counts if h not in self.swarms]
        with self._db:
            self._db.executemany("DELETE FROM torrents WHERE info_hash = ?", forgotten)
        log.info("tracker database: %d torrents, %d live peers", len(self.swarms),
                 self._peer_total)

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
        if not self._save():
            log.warning("tracker database: %d changes could not be saved",
                        len(self._pending) + len(self._pending_swarms))
        with self._db_lock:
            self._db.close()

    # --- announces ----------------------------------------------------------------------------

    def announce(self, info_hash: bytes, peer_id: bytes, ip: str, port: int, uploaded: int,
                 downloaded: int, left: int, event: bytes, key: Optional[bytes], numwant: int,
                 source: Optional[str] = None) -> Tuple[int, int, int, List[TrackedPeer]]:
        """Record one announce; returns (seeders, leechers, completed, peers for the answer).

        ``event`` is the raw BEP 3 event (b"" for a regular announce); ``source`` the address
        group the request came from (``tracker_limits.address_group``; default: that of
        ``ip``). Raises TrackerDbError when the announce is refused.
        """
        if source is None:
            source = address_group(ip)
        now = self.clock()
        with self._lock:
            swarm = self.swarms.get(info_hash)
            peer = None if swarm is None else swarm.peers.get(peer_id)
            if peer is not None:
                _check_identity(peer, key, source)
            if event == b"stopped":
                if peer is not None:
                    peer.uploaded = uploaded  # its final figures count in the swarm's totals
                    peer.downloaded = downloaded
                    self._remove_peer(swarm, peer)
                if swarm is None:
                    return 0, 0, 0, []
                return len(swarm.seeders), len(swarm.leechers), swarm.completed, []
            if peer is None:
                self._check_new_peer(swarm, source)
                if swarm is None:
                    swarm = self._new_swarm(info_hash, source)
                peer = TrackedPeer(peer_id, ip, port, uploaded, downloaded, left, now, key,
                                   source)
                self._add_peer(swarm, peer)
            else:
                peer.move(ip, port)
                peer.uploaded = uploaded
                peer.downloaded = downloaded
                peer.last_seen = now
                if peer.key is None:
                    peer.key = key
                if left != peer.left:
                    swarm.set_left(peer, left)
            if event == b"completed":
                swarm.completed += 1
                self._pending_swarms[info_hash] = swarm
            pending = self._pending
            pending[(info_hash, peer_id)] = peer
            if len(pending) > WRITE_BEHIND_MAX_PENDING:
                self._wake.set()
            result = (len(swarm.seeders), len(swarm.leechers), swarm.completed,
                      swarm.sample(peer, numwant))
        if event:
            self._save_event()
        return result

    def _save_event(self) -> None:
        # started, completed and stopped are rare and each changes who is in the swarm for a
        # whole interval: they are on disk before the answer leaves, so a tracker killed right
        # after still knows. While the database cannot be written, the writer retries instead
        # and the answer does not wait for it.
        if self.db_failing:
            self._wake.set()
        else:
            self._save(DB_BUSY_TIMEOUT)

    def _check_new_peer(self, swarm: Optional[SwarmEntry], source: str) -> None:
        if swarm is not None and len(swarm.peers) >= MAX_PEERS_PER_TORRENT:
            raise TrackerDbError("tracker is full: too many peers on this torrent")
        if self._peer_total >= MAX_PEERS:
            raise TrackerDbError("tracker is full: too many peers")
        if self._peers_by_source.get(source, 0) >= MAX_PEERS_PER_ADDRESS:
            raise TrackerDbError(f"too many peers from your address (at most "
                                 f"{MAX_PEERS_PER_ADDRESS}); stop some first")

    def _new_swarm(self, info_hash: bytes, source: str) -> SwarmEntry:
        if len(self.swarms) >= MAX_TORRENTS:
            raise TrackerDbError("tracker is full: too many torrents")
        if not self.new_torrents.allow(source):
            wait = self.new_torrents.wait_seconds(source)
            raise TrackerDbError(f"too many new torrents from your address; try again in "
                                 f"{wait:.0f} s")
        if not self.new_torrents_all.allow(""):
            raise TrackerDbError("too many new torrents on this tracker right now; try again "
                                 "in a minute")
        swarm = self.swarms[info_hash] = SwarmEntry(info_hash)
        return swarm

    def _add_peer(self, swarm: SwarmEntry, peer: TrackedPeer) -> None:
        swarm.add(peer)
        self._peer_total += 1
        self._peers_by_source[peer.source] = self._peers_by_source.get(peer.source, 0) + 1

    def _remove_peer(self, swarm: SwarmEntry, peer: TrackedPeer) -> None:
        swarm.remove(peer)
        self._pending[(swarm.info_hash, peer.peer_id)] = None
        self._peer_total -= 1
        count = self._peers_by_source[peer.source] - 1
        if count:
            self._peers_by_source[peer.source] = count
        else:
            del self._peers_by_source[peer.source]
        if peer.uploaded or peer.downloaded:
            self._pending_swarms[swarm.info_hash] = swarm  # its totals changed

    def scrape(self, info_hashes: Iterable[bytes]) -> Dict[bytes, Counts]:
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
            return list(islice(self.swarms, limit))

    def sweep(self) -> int:
        """Remove peers silent for longer than the timeout, then torrents left with no peer
        that are not hosted; returns how many peers went."""
        cutoff = self.clock() - self.peer_timeout
        removed = 0
        with self._lock:
            empty = []
            for swarm in self.swarms.values():
                stale = [p for p in swarm.peers.values() if p.last_seen < cutoff]
                for peer in stale:
                    self._remove_peer(swarm, peer)
                removed += len(stale)
                if not swarm.peers and swarm.info_hash not in self.hosted:
                    empty.append(swarm.info_hash)
            for info_hash in empty:
                del self.swarms[info_hash]
                self._pending_swarms[info_hash] = None
        if removed or empty:
            log.info("swept %d silent peers and %d empty torrents", removed, len(empty))
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
                self._save()
            except Exception:  # a bug: keep serving from memory; the next flush retries
                log.exception("tracker database write failed")

    def _save(self, lock_timeout: float = -1) -> bool:
        """flush(), turning a database that cannot be written into a warning (once) and a
        retry by the writer; returns whether everything pending was saved. With a
        ``lock_timeout``, gives up (and leaves the saving to the writer) when another thread
        is writing for longer than that."""
        if not self._db_lock.acquire(timeout=lock_timeout):
            self._wake.set()
            return False
        try:
            self._write_pending()
        except sqlite3.Error as exc:
            if not self.db_failing:
                log.warning("cannot write the tracker database (%s); answering from memory and "
                            "retrying every %.1f s", exc, WRITE_BEHIND_SECONDS)
            self.db_failing = True
            return False
        finally:
            self._db_lock.release()
        if self.db_failing:
            log.warning("tracker database writable again; changes kept in memory are saved")
        self.db_failing = False
        return True

    def flush(self) -> int:
        """Write every pending change in one transaction; returns the number of rows.

        Raises sqlite3.Error when the database cannot be written; the changes stay pending."""
        with self._db_lock:
            return self._write_pending()

    def _write_pending(self) -> int:
        # The caller holds _db_lock; the changes are taken under _lock, as late as possible.
        with self._lock:
            if not self._pending and not self._pending_swarms:
                return 0
            pending, self._pending = self._pending, {}
            swarms, self._pending_swarms = self._pending_swarms, {}
            upserts, deletes = [], []
            for (info_hash, peer_id), peer in pending.items():
                if peer is None:
                    deletes.append((info_hash, peer_id))
                else:
                    upserts.append((info_hash, peer_id, peer.ip, peer.port, peer.uploaded,
                                    peer.downloaded, peer.left, peer.last_seen, peer.key,
                                    peer.source))
            counts = [(h, s.completed, s.gone_uploaded, s.gone_downloaded)
                      for h, s in swarms.items() if s is not None]
            forgotten = [(h,) for h, s in swarms.items() if s is None]
        try:
            with self._db:
                self._db.executemany(_UPSERT_PEER, upserts)
                self._db.executemany("DELETE FROM peers WHERE info_hash = ? AND peer_id = ?",
                                     deletes)
                self._db.executemany(_UPSERT_TORRENT, counts)
                self._db.executemany("DELETE FROM torrents WHERE info_hash = ?", forgotten)
        except sqlite3.Error:
            with self._lock:  # put the changes back unless newer ones replaced them
                for item, peer in pending.items():
                    self._pending.setdefault(item, peer)
                for info_hash, swarm in swarms.items():
                    self._pending_swarms.setdefault(info_hash, swarm)
            raise
        return len(upserts) + len(deletes) + len(counts) + len(forgotten)

    # --- hosted torrents -----------------------------------------------------------------------

    def add_hosted(self, info_hash: bytes, name: str, size: int,
                   data: bytes) -> Tuple[HostedTorrent, bool]:
        """Store a .torrent file (written at once: the client is told it is saved).

        Returns (the hosted torrent, True) or, when that info hash is hosted already, (the
        first upload, False): a later upload never replaces its trackers, web seeds or comment.
        Raises TrackerDbError when the tracker is full or the database cannot be written."""
        with self._lock:
            hosted = self.hosted.get(info_hash)
            if hosted is not None:
                return hosted, False
            if info_hash not in self.swarms and len(self.swarms) >= MAX_TORRENTS:
                raise TrackerDbError("tracker is full: too many torrents")
            if self._hosted_bytes + len(data) > MAX_HOSTED_BYTES:
                raise TrackerDbError(f"tracker is full: it hosts {MAX_HOSTED_BYTES} bytes of "
                                     f".torrent files already")
            hosted = HostedTorrent(info_hash, name, size, self.clock(), len(data))
            self.hosted[info_hash] = hosted  # reserved: a second upload now finds it
            self._hosted_bytes += len(data)
        try:
            with self._db_lock, self._db:
                self._db.execute("INSERT OR IGNORE INTO hosted (info_hash, name, size, data, "
                                 "added) VALUES (?, ?, ?, ?, ?)",
                                 (info_hash, name, size, data, hosted.added))
        except sqlite3.Error as exc:
            with self._lock:
                del self.hosted[info_hash]
                self._hosted_bytes -= len(data)
            raise TrackerDbError(f"cannot save the torrent now ({exc}); try again") from exc
        with self._lock:
            self.swarms.setdefault(info_hash, SwarmEntry(info_hash))
        return hosted, True

    def hosted_data(self, info_hash: bytes) -> Optional[bytes]:
        """The stored .torrent file, or None. Raises TrackerDbError when it cannot be read."""
        if info_hash not in self.hosted:
            return None
        try:
            with self._db_lock:
                row = self._db.execute("SELECT data FROM hosted WHERE info_hash = ?",
                                       (info_hash,)).fetchone()
        except sqlite3.Error as exc:
            raise TrackerDbError(f"cannot read the torrent now ({exc}); try again") from exc
        return None if row is None else bytes(row[0])

    def list_hosted(self, offset: int = 0, limit: int = MAX_TORRENTS) -> List[HostedTorrent]:
        """Hosted torrents in upload order, ``limit`` of them from ``offset``."""
        with self._lock:
            return list(islice(self.hosted.values(), offset, offset + limit))

    # --- monitoring -----------------------------------------------------------------------------

    def stats(self, max_torrents: int, max_peers: int) -> Dict[str, object]:
        """A snapshot of the swarms for /stats and the dashboard (plain data, JSON-ready).

        Torrents come in the order the tracker first saw them and peers in the order they
        joined, so rows keep their places from one refresh to the next. Peer ids are never
        shown (a peer id and its address are what a forged stopped announce would need).
        """
        now = self.clock()
        torrents = []
        with self._lock:
            for swarm in islice(self.swarms.values(), max_torrents):
                hosted = self.hosted.get(swarm.info_hash)
                torrents.append(swarm_stats(swarm, hosted.name if hosted else None,
                                            hosted.size if hosted else None, max_peers, now))
            total_peers = self._peer_total
            n_torrents = len(self.swarms)
        return {"time": now, "interval": self.interval, "torrents": torrents,
                "torrent_count": n_torrents, "peer_count": total_peers}


def _check_identity(peer: TrackedPeer, key: Optional[bytes], source: str) -> None:
    # The key (a BEP 3 extension every big client sends) is what lets a peer move to a new
    # address; a peer that announced one must always show it, or anyone could stop or move it.
    # A key-less peer stays where it announced from: nobody else can stop or move it.
    if peer.key is not None:
        if key != peer.key:
            raise TrackerDbError("peer id in use by another client (its key does not match)")
    elif source != peer.source:
        raise TrackerDbError("peer id already in use from another address")
