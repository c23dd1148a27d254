"""Tests of the tracker's swarm store: persistence, sweeping, and what one address can make it
hold. The store is driven directly with a clock the test moves; no socket."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Any, Optional, Tuple

from sta import tracker_db
from sta.tracker import TrackerServer, TrackerServerError
from sta.tracker_db import TrackerDbError, TrackerStore
from tests.test_tracker import CLIENT_TIMEOUT, INTERVAL, Clock, TrackerTestCase, peer_id

INFO_HASH = bytes(range(1, 21))
# How long SQLite waits for another process's lock unless told otherwise (Python's default).
SQLITE_DEFAULT_BUSY_WAIT = 5.0


def made_up_hash(n: int) -> bytes:
    return b"\xee" * 12 + n.to_bytes(8, "big")


class StoreTestCase(unittest.TestCase):
    """A store on a temporary file with a hand-moved clock; ``restart`` reopens the file."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.db = os.path.join(tmp.name, "tracker.db")
        self.clock = Clock()
        self.store = self.open_store()

    def open_store(self) -> TrackerStore:
        store = TrackerStore(self.db, INTERVAL, self.clock)
        self.addCleanup(store.close)
        return store

    def restart(self) -> TrackerStore:
        self.store.close()
        self.store = self.open_store()
        return self.store

    def announce(self, pid: bytes, info_hash: bytes = INFO_HASH, source: str = "10.0.0.1",
                 event: bytes = b"", key: Optional[bytes] = None, left: int = 100,
                 uploaded: int = 0, downloaded: int = 0) -> Tuple[int, int, int, Any]:
        return self.store.announce(info_hash, pid, source, 6881, uploaded, downloaded, left,
                                   event, key, 50, source)

    def refusal(self, *args: Any, **kwargs: Any) -> str:
        with self.assertRaises(TrackerDbError) as ctx:
            self.announce(*args, **kwargs)
        return str(ctx.exception)

    def saved_torrents(self) -> int:
        db = sqlite3.connect(self.db)
        try:
            return db.execute("SELECT COUNT(*) FROM torrents").fetchone()[0]
        finally:
            db.close()

    def outlive_peers(self) -> None:
        """Move the clock past the peer timeout and sweep."""
        self.clock.now += tracker_db.PEER_TIMEOUT_FACTOR * INTERVAL + 1
        self.store.sweep()


class FilledForGoodTests(StoreTestCase):
    """Made-up info hashes cannot fill the tracker, not even across a restart."""

    def test_empty_torrent_that_is_not_hosted_is_forgotten_at_the_sweep(self):
        self.announce(peer_id(1), event=b"started")
        self.announce(peer_id(1), event=b"stopped")
        self.store.sweep()
        self.assertNotIn(INFO_HASH, self.store.swarms)

    def test_hosted_torrent_stays_when_its_peers_leave(self):
        self.store.add_hosted(INFO_HASH, "a.bin", 10, b"d4:infod4:name1:aee")
        self.announce(peer_id(1), event=b"completed", left=0)
        self.outlive_peers()
        self.assertEqual(self.restart().scrape([INFO_HASH]), {INFO_HASH: (0, 0, 1)})

    def test_completed_count_of_a_torrent_with_no_peer_left_is_not_reloaded(self):
        self.announce(peer_id(1), event=b"completed", left=0)
        self.store.flush()
        self.assertEqual(self.saved_torrents(), 1)
        self.store.close()
        self.clock.now += tracker_db.PEER_TIMEOUT_FACTOR * INTERVAL + 1
        self.store = self.open_store()
        self.assertEqual(self.store.swarms, {})
        self.assertEqual(self.saved_torrents(), 0)

    def test_new_torrents_from_one_address_are_limited_then_refilled(self):
        for n in range(tracker_db.NEW_TORRENTS_BURST):
            self.announce(peer_id(1), made_up_hash(n))
        n = tracker_db.NEW_TORRENTS_BURST
        self.assertIn("too many new torrents from your address", self.refusal(
            peer_id(1), made_up_hash(n)))
        self.announce(peer_id(2), made_up_hash(n), source="10.0.0.2")  # another address
        self.announce(peer_id(3), made_up_hash(0))  # a known torrent is never refused
        self.clock.now += 60 / tracker_db.NEW_TORRENTS_PER_MINUTE
        self.announce(peer_id(1), made_up_hash(n + 1))
        self.assertIn("too many new torrents", self.refusal(peer_id(1), made_up_hash(n + 2)))

    def test_new_torrents_from_all_addresses_are_limited_per_minute(self):
        for n in range(tracker_db.NEW_TORRENTS_BURST_ALL):
            self.announce(peer_id(1), made_up_hash(n), source="10.1.%d.%d" % divmod(n, 256))
        refusal = self.refusal(peer_id(1), made_up_hash(10 ** 6), source="10.2.0.1")
        self.assertIn("too many new torrents on this tracker", refusal)
        self.announce(peer_id(2), made_up_hash(0), source="10.2.0.1")
        self.clock.now += 60 / tracker_db.NEW_TORRENTS_PER_MINUTE_ALL
        self.announce(peer_id(1), made_up_hash(10 ** 6), source="10.2.0.1")

    def test_a_flood_of_made_up_torrents_leaves_room_for_new_ones_even_after_restart(self):
        # 100,000 completed announces of made-up info hashes from 1,000 addresses, as fast as
        # the store takes them: refused past the limits, forgotten once their peers time out.
        refused = 0
        for n in range(100_000):
            try:
                self.announce(peer_id(n), made_up_hash(n), event=b"completed", left=0,
                              source="10.3.%d.%d" % divmod(n % 1000, 256))
            except TrackerDbError:
                refused += 1
        self.assertLess(len(self.store.swarms), tracker_db.MAX_TORRENTS)
        self.assertEqual(len(self.store.swarms) + refused, 100_000)
        self.store.flush()
        self.outlive_peers()
        self.restart()
        self.assertEqual((len(self.store.swarms), self.saved_torrents()), (0, 0))
        self.announce(peer_id(1), INFO_HASH, event=b"started", source="10.4.0.1")


class PeerLimitTests(StoreTestCase):
    def test_peers_from_one_address_are_capped(self):
        limit = tracker_db.MAX_PEERS_PER_ADDRESS
        for n in range(limit):
            self.announce(peer_id(n), made_up_hash(n % 10))
        self.assertIn("too many peers from your address", self.refusal(peer_id(limit)))
        self.announce(peer_id(limit), source="10.0.0.2")
        self.announce(peer_id(0), made_up_hash(0))  # a known peer re-announces
        self.announce(peer_id(0), made_up_hash(0), event=b"stopped")
        self.announce(peer_id(limit + 1))

    def test_ten_thousand_peers_and_their_announces_from_one_address_are_never_refused(self):
        for _ in range(3):
            for n in range(10_000):
                self.announce(peer_id(n), left=n % 2)
        self.assertEqual(self.store.scrape([INFO_HASH]), {INFO_HASH: (5000, 5000, 0)})

    def test_peers_per_torrent_are_capped(self):
        limit = tracker_db.MAX_PEERS_PER_TORRENT
        per_address = tracker_db.MAX_PEERS_PER_ADDRESS
        for n in range(limit):
            self.announce(peer_id(n), source="10.5.0.%d" % (n // per_address))
        self.assertIn("too many peers on this torrent",
                      self.refusal(peer_id(limit), source="10.6.0.1"))
        self.announce(peer_id(limit), made_up_hash(1), source="10.6.0.1")


class TotalsTests(StoreTestCase):
    def test_totals_of_peers_that_left_are_kept_across_a_restart(self):
        self.store.add_hosted(INFO_HASH, "a.bin", 10, b"d4:infod4:name1:aee")
        self.announce(peer_id(1), uploaded=700, left=0)
        self.announce(peer_id(2), downloaded=500)
        self.announce(peer_id(2), downloaded=900, event=b"stopped")
        self.restart()
        torrent = self.store.stats(10, 10)["torrents"][0]
        self.assertEqual((torrent["uploaded"], torrent["downloaded"]), (700, 900))


class LockedDatabaseStoreTests(StoreTestCase):
    def hold_lock(self) -> sqlite3.Connection:
        other = sqlite3.connect(self.db, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN EXCLUSIVE")
        return other

    def test_event_announces_do_not_wait_for_a_locked_database(self):
        other = self.hold_lock()
        with self.assertLogs("sta.tracker_db", "WARNING") as logs:
            started = time.monotonic()
            for n in range(10):
                self.announce(peer_id(n), event=b"started")
            elapsed = time.monotonic() - started
            self.assertEqual(len(logs.records), 1, "one warning, not one per announce")
            self.assertTrue(self.store.db_failing)
            other.execute("ROLLBACK")
            self.store.start()
            deadline = time.monotonic() + 10
            while self.store.db_failing and time.monotonic() < deadline:
                time.sleep(tracker_db.WRITE_BEHIND_SECONDS / 5)
        self.assertLess(elapsed, SQLITE_DEFAULT_BUSY_WAIT / 2)  # not 10 x 5 s as it was
        self.assertIn("writable again", logs.records[-1].getMessage())
        self.assertEqual(len(self.restart().swarms[INFO_HASH].peers), 10)

    def test_event_announces_at_the_same_moment_do_not_queue_behind_a_locked_database(self):
        other = self.hold_lock()
        threads = [threading.Thread(target=self.announce, args=(peer_id(n),),
                                    kwargs={"event": b"started"}) for n in range(20)]
        with self.assertLogs("sta.tracker_db", "WARNING"):
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(SQLITE_DEFAULT_BUSY_WAIT)
            elapsed = time.monotonic() - started
            other.execute("ROLLBACK")
            self.restart()  # saves what was kept in memory
        self.assertLess(elapsed, SQLITE_DEFAULT_BUSY_WAIT / 2)
        self.assertEqual(len(self.store.swarms[INFO_HASH].peers), 20)


class LockedDatabaseTests(TrackerTestCase):
    """Another process holding the SQLite file's lock: answers from memory, never a 500."""

    def lock_database(self) -> subprocess.Popen:
        code = ("import sqlite3, sys\n"
                "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "db.execute('BEGIN EXCLUSIVE')\n"
                "print('locked', flush=True)\n"
                "sys.stdin.read()\n")
        holder = subprocess.Popen([sys.executable, "-c", code, self.db], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        self.addCleanup(holder.wait, 30)
        self.addCleanup(holder.stdin.close)
        self.addCleanup(holder.stdout.close)
        self.assertEqual(holder.stdout.readline(), b"locked\n")
        return holder

    def saved_peers(self) -> int:
        db = sqlite3.connect(self.db, timeout=CLIENT_TIMEOUT)
        try:
            return db.execute("SELECT COUNT(*) FROM peers").fetchone()[0]
        finally:
            db.close()

    def test_announces_are_answered_at_once_and_saved_once_the_lock_is_gone(self):
        holder = self.lock_database()
        with self.assertLogs("sta", "WARNING") as logs:
            started = time.monotonic()
            self.announce(peer_id(1), 7001, event="started")
            answer = self.announce(peer_id(2), 7002, event="started")
            elapsed = time.monotonic() - started
            self.assertEqual(answer[b"peers"], b"\x7f\x00\x00\x01\x1b\x59")
            self.assertEqual(self.announce(peer_id(3), 7003, event="stopped")[b"incomplete"], 2)
            holder.stdin.close()
            holder.wait(CLIENT_TIMEOUT)
            deadline = time.monotonic() + CLIENT_TIMEOUT
            while self.saved_peers() < 2 and time.monotonic() < deadline:
                time.sleep(tracker_db.WRITE_BEHIND_SECONDS / 5)
        # SQLite's default made each started announce wait 5 s, then answer 500.
        self.assertLess(elapsed, SQLITE_DEFAULT_BUSY_WAIT / 2)
        self.assertEqual(self.saved_peers(), 2)
        self.assertTrue(all(r.levelno < logging.ERROR and not r.exc_info for r in logs.records),
                        [r.getMessage() for r in logs.records])

    def test_upload_while_locked_is_a_503_with_a_reason(self):
        self.lock_database()
        data = self.make_torrent()
        status, headers, body = self.request("POST", "/torrents", body=data)
        self.assertEqual((status, headers["content-type"]), (503, "application/json"))
        self.assertIn("try again", json.loads(body)["error"])
        self.assertEqual(json.loads(self.get("/torrents")[2]), [])


class PersistenceTests(TrackerTestCase):
    def test_restart_keeps_torrents_counters_and_live_peers(self):
        self.announce(peer_id(1), 7001, left=0, event="completed")
        self.server.shutdown()
        server = self.start_server()
        answer = self.announce(peer_id(2), 7002, server=server)
        self.assertEqual(answer[b"peers"], b"\x7f\x00\x00\x01\x1b\x59")
        self.assertEqual((answer[b"complete"], answer[b"downloaded"]), (1, 1))

    def test_restart_forgets_stopped_peers(self):
        self.announce(peer_id(1), 7001)
        self.announce(peer_id(1), 7001, event="stopped")
        self.server.shutdown()
        server = self.start_server()
        self.assertEqual(self.announce(peer_id(2), 7002, server=server)[b"peers"], b"")

    def test_writer_flushes_without_shutdown(self):
        self.announce(peer_id(1), 7001)
        self.server.store.flush()
        store = tracker_db.TrackerStore(self.db, INTERVAL, self.clock)
        self.addCleanup(store.close)
        self.assertIn(peer_id(1), store.swarms[INFO_HASH].peers)

    def test_restart_drops_peers_that_timed_out_while_down(self):
        self.announce(peer_id(1), 7001)
        self.server.shutdown()
        self.clock.now += tracker_db.PEER_TIMEOUT_FACTOR * INTERVAL + 1
        server = self.start_server()
        self.assertEqual(self.announce(peer_id(2), 7002, server=server)[b"peers"], b"")

    def test_sweep_removes_silent_peers(self):
        self.announce(peer_id(1), 7001)
        self.clock.now += INTERVAL
        self.announce(peer_id(2), 7002)
        self.clock.now += tracker_db.PEER_TIMEOUT_FACTOR * INTERVAL - INTERVAL + 1
        self.assertEqual(self.server.store.sweep(), 1)
        answer = self.announce(peer_id(3), 7003)
        self.assertEqual(answer[b"peers"], b"\x7f\x00\x00\x01\x1b\x5a")

    def test_sweep_keeps_peers_that_announce_in_time(self):
        self.announce(peer_id(1), 7001)
        self.clock.now += INTERVAL
        self.assertEqual(self.server.store.sweep(), 0)

    def test_unopenable_database_is_a_tracker_error(self):
        with self.assertRaises(TrackerServerError):
            TrackerServer("127.0.0.1", 0, os.path.join(self.dir, "no", "such", "dir.db"))


