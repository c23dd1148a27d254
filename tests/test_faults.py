"""Faults for real: processes killed mid-transfer, seeds and trackers cut off and brought back,
lying, stalling and dropping peers, garbage on the listen port, disk errors, changed files, and
the log lines all of this must leave.

Every test runs real `python sta.py` processes on 127.0.0.1 (seeds run in process where the test
needs their exact upload count) and checks the downloaded file byte for byte. Process kills use
SIGKILL, so the tests that need it skip on Windows.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import unittest
from typing import Any, List, Optional
from urllib.parse import urlencode
from urllib.request import urlopen

from sta import cli, resume, wire
from sta.tracker_db import WRITE_BEHIND_SECONDS
from tests import faultkit
from tests.faultkit import (FakePeer, InProcessSeed, RawConnection, StaProc, WAIT,
                            allocated_bytes, make_torrent_file, read_lines, same_bytes,
                            temp_dir, wait_until)
from tests.interop.clients import free_port

MiB = 1 << 20
HAVE_SIGKILL = hasattr(signal, "SIGKILL")
ON_LINUX = sys.platform.startswith("linux")

# The kill test's file: big enough that a loopback transfer takes about a second here, so three
# kills land mid-transfer when polled every few milliseconds.
KILL_TEST_SIZE = 128 * MiB
# Fractions of the file on disk at which the download is killed, one kill per run.
KILL_AT = (0.2, 0.45, 0.7)
# The requirement: less than this share of the file may be transferred twice over all kills.
MAX_REFETCH_SHARE = 0.10
# The kill loop polls the output file this often: at loopback speed ~1 MiB arrives per 5 ms.
KILL_POLL = 0.005
# The seed cut-off test's file; killed when this share of it is on disk.
CUTOFF_SIZE = 64 * MiB
CUTOFF_AT = 0.3
# Time with no seed at all during the cut-off test, and the most CPU the downloader may use then
# (a busy loop would use a whole core).
OUTAGE_SECONDS = 2.0
MAX_IDLE_CPU_SHARE = 0.5
# Small files for the tests that only need a few pieces.
SMALL_SIZE = 4 * MiB
LOG_TEST_SIZE = 8 * MiB


def _peer(port: int) -> str:
    return "127.0.0.1:%d" % port


def _resumed_count(proc: StaProc) -> Optional[int]:
    """X of the "resuming with X of N pieces verified" line; 0 when the run started empty,
    -1 when it found the download already complete."""
    for line in proc.all_lines:
        m = re.search(r"resuming with (\d+) of (\d+) pieces verified", line)
        if m:
            return int(m.group(1))
        if "already complete" in line:
            return -1
    return 0


def _recorded_pieces(meta: Any, out: str) -> Optional[int]:
    """How many pieces the resume file in ``out`` records as verified (None: no usable file)."""
    try:
        state = resume.ResumeState.load(resume.resume_path(os.path.join(out, ".sta"),
                                                           meta.info_hash),
                                        meta.info_hash, meta.info.piece_length,
                                        meta.info.num_pieces, len(meta.info.files),
                                        resume.resume_key(resume.default_home()))
    except resume.ResumeError:
        return None
    return None if state is None else state.verified.count


def _log_tail(path: str, lines: int = 40) -> str:
    return "\n".join(read_lines(path)[-lines:])


def _exit_status(test: unittest.TestCase, proc: StaProc, log: str, timeout: float = WAIT) -> int:
    """proc's exit status; on a timeout the failure shows the tail of its log file too."""
    try:
        return proc.wait_exit(timeout)
    except faultkit.FaultTestError as exc:
        test.fail("%s\nlog %s:\n%s" % (exc, log, _log_tail(log)))


@unittest.skipUnless(HAVE_SIGKILL, "needs SIGKILL (no such signal on Windows)")
class KillTests(unittest.TestCase):
    """Requirement 1 and 6: a download killed for real continues where it stopped."""

    def test_download_killed_three_times_resumes_and_refetches_under_10_percent(self):
        tmp = temp_dir(self)
        torrent = os.path.join(tmp, "big.torrent")
        meta = make_torrent_file(os.path.join(tmp, "data"), "big.bin", KILL_TEST_SIZE, torrent,
                                 seed=11)
        seed = InProcessSeed(self, meta, os.path.join(tmp, "data"))
        out = os.path.join(tmp, "out")
        target = os.path.join(out, "big.bin")
        if allocated_bytes(os.path.join(tmp, "data", "big.bin")) is None:
            self.skipTest("the file system does not report allocated blocks")
        runs: List[str] = []
        resumed: List[Optional[int]] = []

        def download(run: int) -> StaProc:
            return StaProc(self, "download", torrent, "-o", out, "--port", 0,
                           "--peer", _peer(seed.port), "--log-level", "info",
                           "--log-file", os.path.join(tmp, "run%d.log" % run))

        for run, fraction in enumerate(KILL_AT):
            proc = download(run)
            wanted = fraction * KILL_TEST_SIZE
            wait_until(lambda: (allocated_bytes(target) or 0) >= wanted or not proc.running(),
                       WAIT, "run %d to write %d%% of the file" % (run, fraction * 100),
                       poll=KILL_POLL)
            on_disk = allocated_bytes(target) or 0
            if not proc.running():
                self.fail("run %d finished before it could be killed at %d%%\n%s"
                          % (run, fraction * 100, proc.describe()))
            proc.kill()
            resumed.append(_resumed_count(proc))
            runs.append("run %d: killed with %.1f MiB on disk, seed has sent %.1f MiB"
                        % (run, on_disk / MiB, seed.uploaded / MiB))
            self.assertLess(on_disk, KILL_TEST_SIZE, "run %d was not killed mid-transfer" % run)

        last = download(len(KILL_AT))
        status = last.wait_exit(WAIT)
        resumed.append(_resumed_count(last))
        uploaded = seed.uploaded
        runs.append("final run: exit %s, seed has sent %.1f MiB in all" % (status, uploaded / MiB))
        report = "\n".join(runs) + "\nresumed with pieces: %s" % resumed
        self.assertEqual(status, 0, report + "\n" + last.describe())
        self.assertTrue(same_bytes(target, os.path.join(tmp, "data", "big.bin")),
                        "downloaded file differs from the original\n" + report)
        # Every restart after a kill kept verified pieces, and each kept more than the last.
        kept = resumed[1:]
        self.assertTrue(all(k is not None and k > 0 for k in kept),
                        "a restart did not resume from verified pieces\n" + report)
        self.assertEqual(kept, sorted(kept), "a restart lost pieces verified before\n" + report)
        refetched = uploaded - KILL_TEST_SIZE
        self.assertLess(refetched, MAX_REFETCH_SHARE * KILL_TEST_SIZE,
                        "%.1f MiB (%.1f%% of the file) were transferred twice over %d kills\n%s"
                        % (refetched / MiB, 100.0 * refetched / KILL_TEST_SIZE, len(KILL_AT),
                           report))



@unittest.skipUnless(HAVE_SIGKILL, "needs SIGKILL (no such signal on Windows)")
class ReconnectTests(unittest.TestCase):
    """Requirement 3 and 6: seeds and trackers that go away and come back."""

    def test_seed_killed_mid_transfer_and_restarted_on_the_same_port_is_found_again(self):
        tmp = temp_dir(self)
        data = os.path.join(tmp, "data")
        torrent = os.path.join(tmp, "cut.torrent")
        make_torrent_file(data, "cut.bin", CUTOFF_SIZE, torrent, seed=12)
        port = free_port()
        seed = StaProc(self, "seed", torrent, "--data", data, "--port", port)
        self.assertEqual(seed.seeding_port(), port)
        out = os.path.join(tmp, "out")
        target = os.path.join(out, "cut.bin")
        log = os.path.join(tmp, "download.log")
        down = StaProc(self, "download", torrent, "-o", out, "--port", 0, "--peer", _peer(port),
                       "--log-level", "info", "--log-file", log)
        wanted = CUTOFF_AT * CUTOFF_SIZE
        wait_until(lambda: (allocated_bytes(target) or 0) >= wanted or not down.running(), WAIT,
                   "the download to start", poll=KILL_POLL)
        seed.kill()
        on_disk = allocated_bytes(target) or 0
        self.assertTrue(down.running(), "the download ended with its only seed gone\n"
                        + down.describe())
        self.assertLess(on_disk, CUTOFF_SIZE, "the seed was not cut off mid-transfer")

        # With every peer gone the downloader waits for it without spinning.
        cpu_before = faultkit.process_cpu_seconds(down.pid)
        time.sleep(OUTAGE_SECONDS)
        cpu_after = faultkit.process_cpu_seconds(down.pid)
        self.assertTrue(down.running(), down.describe())
        if cpu_before is not None and cpu_after is not None:
            self.assertLess(cpu_after - cpu_before, MAX_IDLE_CPU_SHARE * OUTAGE_SECONDS,
                            "the downloader busy-loops while its seed is gone")

        again = StaProc(self, "seed", torrent, "--data", data, "--port", port)
        self.assertEqual(again.seeding_port(), port, "the seed came back on another port")
        status = _exit_status(self, down, log)
        self.assertEqual(status, 0, down.describe())
        self.assertTrue(same_bytes(target, os.path.join(data, "cut.bin")))
        connects = [line for line in read_lines(log)
                    if "connected to %s" % _peer(port) in line]
        self.assertGreaterEqual(len(connects), 2, "no reconnect to the seed in the log:\n"
                                + "\n".join(read_lines(log)[-30:]))

    def test_tracker_restarted_under_running_peers(self):
        tmp = temp_dir(self)
        data = os.path.join(tmp, "data")
        tracker_port = free_port()
        announce_url = "http://127.0.0.1:%d/announce" % tracker_port
        db = os.path.join(tmp, "tracker.db")
        torrent = os.path.join(tmp, "swarm.torrent")
        meta = make_torrent_file(data, "swarm.bin", SMALL_SIZE * 4, torrent,
                                 trackers=[announce_url], seed=13)

        def tracker() -> StaProc:
            proc = StaProc(self, "tracker", "--host", "127.0.0.1", "--port", tracker_port,
                           "--db", db, "--log-level", "info")
            proc.wait_for(r"Announce URL")
            return proc

        first = tracker()
        seed = StaProc(self, "seed", torrent, "--data", data, "--port", 0, "--log-level",
                       "info", "--log-file", os.path.join(tmp, "seed.log"))
        seed.seeding_port()
        wait_until(lambda: (faultkit.tracker_scrape(announce_url, meta.info_hash)
                            or (0,))[0] >= 1, WAIT, "the tracker to list the seed")
        # The tracker saves announces behind (tracker_db.WRITE_BEHIND_SECONDS); a crash inside
        # that window is test_tracker_killed_right_after_a_started_announce_still_knows_the_peer.
        saved_by = time.monotonic() + 2 * WRITE_BEHIND_SECONDS

        # A downloader that finds the seed through the tracker, which then crashes under it.
        log_a = os.path.join(tmp, "a.log")
        a = StaProc(self, "download", torrent, "-o", os.path.join(tmp, "a"), "--port", 0,
                    "--log-level", "info", "--log-file", log_a)
        wait_until(lambda: any("connected to" in line for line in read_lines(log_a)), WAIT,
                   "downloader A to reach the seed through the tracker")
        time.sleep(max(0.0, saved_by - time.monotonic()))
        first.kill()
        self.assertEqual(_exit_status(self, a, log_a), 0, "downloader A stopped with the "
                         "tracker\n" + a.describe())
        self.assertTrue(same_bytes(os.path.join(tmp, "a", "swarm.bin"),
                                   os.path.join(data, "swarm.bin")))
        self.assertTrue(seed.running(), "the seed stopped with the tracker\n" + seed.describe())

        # A downloader started while the tracker is down retries it with backoff ...
        log_b = os.path.join(tmp, "b.log")
        b = StaProc(self, "download", torrent, "-o", os.path.join(tmp, "b"), "--port", 0,
                    "--log-level", "info", "--log-file", log_b)
        wait_until(lambda: any("127.0.0.1:%d" % tracker_port in line and "WARNING" in line
                               for line in read_lines(log_b)), WAIT,
                   "downloader B to fail its first announce")
        # ... and the tracker comes back on the same port with the same database.
        second = tracker()
        log_c = os.path.join(tmp, "c.log")
        c = StaProc(self, "download", torrent, "-o", os.path.join(tmp, "c"), "--port", 0,
                    "--log-level", "info", "--log-file", log_c)
        self.assertEqual(_exit_status(self, c, log_c), 0, "a new downloader did not find the "
                         "seed through the restarted tracker\n" + c.describe())
        self.assertEqual(_exit_status(self, b, log_b), 0, "the downloader that started with "
                         "the tracker down never got peers from it\n" + b.describe())
        for folder in ("b", "c"):
            self.assertTrue(same_bytes(os.path.join(tmp, folder, "swarm.bin"),
                                       os.path.join(data, "swarm.bin")))
        self.assertTrue(second.running() and seed.running())

    def test_tracker_killed_right_after_a_started_announce_still_knows_the_peer(self):
        # A peer announces "started" once and then only every interval (30 minutes by default):
        # if a crash loses that announce, the peer is invisible to everyone for that long.
        tmp = temp_dir(self)
        port = free_port()
        db = os.path.join(tmp, "tracker.db")
        announce_url = "http://127.0.0.1:%d/announce" % port
        info_hash = os.urandom(20)

        def tracker() -> StaProc:
            proc = StaProc(self, "tracker", "--host", "127.0.0.1", "--port", port, "--db", db)
            proc.wait_for(r"Announce URL")
            return proc

        first = tracker()
        query = urlencode({"info_hash": info_hash, "peer_id": b"-XX0001-" + b"k" * 12,
                           "port": 6881, "uploaded": 0, "downloaded": 0, "left": 0,
                           "event": "started", "compact": 1})
        with urlopen(announce_url + "?" + query, timeout=10) as reply:
            self.assertNotIn(b"failure reason", reply.read())
        first.kill()
        tracker()
        self.assertEqual(faultkit.tracker_scrape(announce_url, info_hash), (1, 0, 0),
                         "the tracker forgot a seed that announced just before it crashed")

    def test_download_without_peers_waits_quietly_until_its_timeout(self):
        tmp = temp_dir(self)
        dead = free_port()
        torrent = os.path.join(tmp, "lonely.torrent")
        make_torrent_file(os.path.join(tmp, "data"), "lonely.bin", 64 * 1024, torrent,
                          trackers=["http://127.0.0.1:%d/announce" % free_port()])
        cpu_before = faultkit.cpu_seconds_of_children()
        started = time.monotonic()
        proc = StaProc(self, "download", torrent, "-o", os.path.join(tmp, "out"), "--port", 0,
                       "--peer", _peer(dead), "--timeout", 4)
        status = proc.wait_exit(WAIT)
        took = time.monotonic() - started
        cpu_after = faultkit.cpu_seconds_of_children()
        self.assertEqual(status, 1, proc.describe())
        self.assertIn("timed out", proc.output)
        self.assertGreaterEqual(took, 4.0)
        self.assertLess(took, 4.0 + 15.0, "the download overran its --timeout")
        if cpu_before is not None and cpu_after is not None:
            self.assertLess(cpu_after - cpu_before, MAX_IDLE_CPU_SHARE * took,
                            "the downloader busy-loops while it has no peer")


class HostilePeerTests(unittest.TestCase):
    """Requirement 4: garbage, oversized messages and wrong info hashes on the listen port."""

    def test_listen_port_closes_only_the_connection_that_misbehaves(self):
        tmp = temp_dir(self)
        data = os.path.join(tmp, "data")
        torrent = os.path.join(tmp, "port.torrent")
        meta = make_torrent_file(data, "port.bin", SMALL_SIZE, torrent, seed=14)
        seed = StaProc(self, "seed", torrent, "--data", data, "--port", 0)
        port = seed.seeding_port()

        good = RawConnection(self, port)
        good.handshake(meta.info_hash)
        good.wait_event(wire.Handshake)
        good.send(wire.interested())
        good.wait_event(wire.Unchoke)

        attacks = {
            "garbage": os.urandom(4096),
            "wrong info hash": wire.handshake(b"\x01" * 20, b"-RW0001-abcdefabcdef"),
            "oversized message": wire.handshake(meta.info_hash, b"-RW0001-abcdefabcdef")
            + b"\x7f\xff\xff\xff\x07" + b"\x00" * 1024,
            "oversized block": wire.handshake(meta.info_hash, b"-RW0001-bcdefabcdefa")
            + (16384 + 100 + 9).to_bytes(4, "big") + b"\x07" + bytes(8 + 16484),
            "bitfield of the wrong size": wire.handshake(meta.info_hash, b"-RW0001-cdefabcdefab")
            + wire.bitfield(b"\xff" * 1000),
        }
        for name, payload in attacks.items():
            with self.subTest(attack=name):
                bad = RawConnection(self, port)
                try:
                    bad.send(payload)
                except OSError:
                    pass  # closed while we were still sending: that is the point
                self.assertTrue(bad.closed_by_peer(10.0), "the seed kept a connection that "
                                "sent %s" % name)
                bad.close()
        self.assertTrue(seed.running(), seed.describe())

        # The well-behaved connection is still served.
        good.send(wire.request(0, 0, wire.BLOCK_SIZE))
        block = good.wait_event(wire.Piece)
        with open(os.path.join(data, "port.bin"), "rb") as f:
            self.assertEqual(bytes(block.block), f.read(wire.BLOCK_SIZE))
        # And so is a real downloader.
        down = StaProc(self, "download", torrent, "-o", os.path.join(tmp, "out"), "--port", 0,
                       "--peer", _peer(port))
        self.assertEqual(down.wait_exit(WAIT), 0, down.describe())


class LoggingTests(unittest.TestCase):
    """Requirement 4 and 7: a lying peer is banned, and the log names who did what."""

    def test_log_names_torrent_and_peer_for_connects_drops_bans_tracker_errors_resume(self):
        tmp = temp_dir(self)
        data = os.path.join(tmp, "data")
        torrent = os.path.join(tmp, "logged.torrent")
        dead_tracker = "http://127.0.0.1:%d/announce" % free_port()
        meta = make_torrent_file(data, "logged.bin", LOG_TEST_SIZE, torrent,
                                 trackers=[dead_tracker], seed=15)
        seed = InProcessSeed(self, meta, data)
        liar = FakePeer(self, meta.info, "liar")
        dropper = FakePeer(self, meta.info, "dropper")
        out = os.path.join(tmp, "out")
        log = os.path.join(tmp, "download.log")
        args = ("download", torrent, "-o", out, "--port", 0, "--peer", liar.address,
                "--peer", dropper.address, "--peer", _peer(seed.port), "--log-level", "info")
        down = StaProc(self, *args, "--log-file", log)
        status = down.wait_exit(WAIT)
        liar_connects = list(liar.connected_at)
        lines = read_lines(log)
        shown = "\n".join(lines[-60:])
        self.assertEqual(status, 0, down.describe() + "\nlog:\n" + shown)
        self.assertTrue(same_bytes(os.path.join(out, "logged.bin"), os.path.join(data,
                                                                             "logged.bin")))
        self.assertFalse(down.output.count("Traceback"), down.describe())
        # A second run of the same command decides from the resume state.
        log2 = os.path.join(tmp, "again.log")
        again = StaProc(self, *args, "--log-file", log2)
        self.assertEqual(again.wait_exit(WAIT), 0, again.describe())
        name = meta.info.name
        names = (name, meta.info_hash.hex())

        def lines_with(*words: str) -> List[str]:
            return [line for line in lines if all(w.lower() in line.lower() for w in words)]

        def names_torrent(line: str) -> bool:
            return any(n in line for n in names)

        with self.subTest("the liar is banned and stays away; the honest seed is not"):
            bans = lines_with(liar.address, "banned")
            self.assertTrue(bans, shown)
            self.assertFalse(lines_with(_peer(seed.port), "banned"),
                             "the honest seed was banned for pieces the liar spoiled:\n" + shown)
            banned_at = faultkit.log_time(bans[0])
            if banned_at is not None:
                later = [t for t in liar_connects if t > banned_at + 0.5]
                self.assertFalse(later, "the banned liar was connected again %d times" % len(later))
        with self.subTest("connects name the peer and the torrent"):
            found = lines_with("connected to", _peer(seed.port))
            self.assertTrue(found and all(names_torrent(line) for line in found), shown)
        with self.subTest("hash failures name the peer and the torrent"):
            found = lines_with("hash", liar.address)
            self.assertTrue(found and all(names_torrent(line) for line in found), shown)
        with self.subTest("bans name the peer and the torrent"):
            found = lines_with("banned", liar.address)
            self.assertTrue(found and all(names_torrent(line) for line in found), shown)
        with self.subTest("a peer that drops the connection is logged with the torrent"):
            # The dropper hangs up once a plain BitTorrent session is up (after any encrypted
            # attempt): a line about it must follow its last "connected to" line.
            self.assertGreater(dropper.drops, 0, "the dropper never got to hang up")
            about = lines_with(dropper.address)
            connects = [i for i, line in enumerate(about) if "connected to" in line]
            found = [line for line in about[connects[-1] + 1:]] if connects else []
            self.assertTrue(found and any(names_torrent(line) for line in found),
                            "no line tells that %s dropped the connection:\n%s"
                            % (dropper.address, "\n".join(about)))
        with self.subTest("tracker errors name the tracker and the torrent"):
            host = dead_tracker.split("/")[2]
            found = lines_with(host)
            self.assertTrue(found, shown)
            self.assertTrue(all(names_torrent(line) for line in found),
                            "tracker error lines without the torrent:\n" + "\n".join(found))
        with self.subTest("resume decisions name the torrent"):
            lines = read_lines(log2)
            shown = "\n".join(lines[-60:])
            found = lines_with("resume")
            self.assertTrue(found, shown)
            self.assertTrue(all(names_torrent(line) for line in found),
                            "resume lines without the torrent:\n" + "\n".join(found))

    def test_every_command_takes_log_level_and_log_file(self):
        parser = cli.build_parser()
        minimal = {"tracker": [], "create": ["x"], "seed": ["x.torrent"],
                   "download": ["x.torrent"], "shell": [], "web": [], "info": ["x.torrent"],
                   "dht": []}
        self.assertEqual(set(minimal), set(cli.COMMANDS))
        for command, rest in minimal.items():
            with self.subTest(command=command):
                args = parser.parse_args([command] + rest + ["--log-level", "debug",
                                                             "--log-file", "f.log"])
                self.assertEqual((args.log_level, args.log_file), ("debug", "f.log"))
        tmp = temp_dir(self)
        log = os.path.join(tmp, "create.log")
        done = faultkit.run_sta("create", faultkit.clients.make_file(
            os.path.join(tmp, "f.bin"), 1000), "-o", os.path.join(tmp, "f.torrent"),
            "--log-level", "debug", "--log-file", log)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertTrue(os.path.exists(log))
        self.assertNotIn(b"DEBUG", done.stderr, "log lines went to stderr despite --log-file")


class DataSafetyTests(unittest.TestCase):
    """Requirement 1 and 2: disk errors and files changed behind STA's back."""

    def test_unwritable_output_folder_fails_with_one_clear_line(self):
        tmp = temp_dir(self)
        data = os.path.join(tmp, "data")
        torrent = os.path.join(tmp, "nowhere.torrent")
        meta = make_torrent_file(data, "nowhere.bin", 256 * 1024, torrent, seed=16)
        seed = InProcessSeed(self, meta, data)
        blocker = os.path.join(tmp, "a-file")
        with open(blocker, "w") as f:
            f.write("not a folder")
        proc = StaProc(self, "download", torrent, "-o", os.path.join(blocker, "sub"), "--port",
                       0, "--peer", _peer(seed.port), "--timeout", 30)
        status = proc.wait_exit(WAIT)
        self.assertEqual(status, 1, proc.describe())
        self.assertNotIn("Traceback", proc.output)
        self.assertIn(blocker, proc.output, "the error does not name the folder")
        self.assertNotIn("timed out", proc.output, "the torrent was not stopped by the error")

    @unittest.skipUnless(hasattr(os, "fork") and ON_LINUX,
                         "simulates a full disk with RLIMIT_FSIZE (Linux)")
    def test_full_disk_stops_the_torrent_and_keeps_what_was_verified(self):
        import resource
        tmp = temp_dir(self)
        data = os.path.join(tmp, "data")
        torrent = os.path.join(tmp, "full.torrent")
        size = 16 * MiB
        meta = make_torrent_file(data, "full.bin", size, torrent, seed=17)
        seed = InProcessSeed(self, meta, data)
        out = os.path.join(tmp, "out")
        target = os.path.join(out, "full.bin")
        os.makedirs(out)
        with open(target, "wb") as f:
            f.truncate(size)  # in place at full size: only writes past the limit fail
        limit = size * 3 // 4

        def small_disk() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        proc = StaProc(self, "download", torrent, "-o", out, "--port", 0, "--peer",
                       _peer(seed.port), "--timeout", 50, preexec_fn=small_disk)
        status = proc.wait_exit(WAIT)
        self.assertEqual(status, 1, proc.describe())
        self.assertNotIn("Traceback", proc.output)
        self.assertIn(target, proc.output, "the error does not name the file")
        self.assertNotIn("timed out", proc.output, "the torrent was not stopped by the error")
        good = faultkit.good_pieces(meta.info, target)
        self.assertTrue(good, "nothing was verified before the disk filled up\n"
                        + proc.describe())
        sent_before = seed.uploaded
        recorded = _recorded_pieces(meta, out)

        again = StaProc(self, "download", torrent, "-o", out, "--port", 0, "--peer",
                        _peer(seed.port))
        self.assertEqual(again.wait_exit(WAIT), 0, again.describe())
        self.assertEqual(_resumed_count(again), len(good),
                         "the restart did not keep exactly the %d pieces verified on disk "
                         "(the resume file recorded %s)\n%s"
                         % (len(good), recorded, again.describe()))
        self.assertTrue(same_bytes(target, os.path.join(data, "full.bin")))
        refetched = seed.uploaded - sent_before
        self.assertLessEqual(refetched, size - len(good) * meta.info.piece_length
                             + 64 * wire.BLOCK_SIZE, "verified pieces were fetched again")

    def test_changed_truncated_and_silently_corrupted_files_are_checked_and_repaired(self):
        tmp = temp_dir(self)
        data = os.path.join(tmp, "data")
        torrent = os.path.join(tmp, "check.torrent")
        meta = make_torrent_file(data, "check.bin", SMALL_SIZE, torrent, seed=18,
                                 piece_length=64 * 1024)
        original = os.path.join(data, "check.bin")
        seed = InProcessSeed(self, meta, data)
        out = os.path.join(tmp, "out")
        target = os.path.join(out, "check.bin")
        piece = meta.info.piece_length

        def download(*extra: str) -> StaProc:
            proc = StaProc(self, "download", torrent, "-o", out, "--port", 0, "--peer",
                           _peer(seed.port), *extra)
            self.assertEqual(proc.wait_exit(WAIT), 0, proc.describe())
            self.assertTrue(same_bytes(target, original), proc.describe())
            return proc

        download()

        def corrupt(offset: int, keep_mtime: bool) -> None:
            st = os.stat(target)
            with open(target, "r+b") as f:
                f.seek(offset)
                byte = f.read(1)
                f.seek(offset)
                f.write(bytes([byte[0] ^ 0xFF]))
            if keep_mtime:
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

        with self.subTest("a byte changed behind STA's back is found and fetched again"):
            corrupt(5 * piece + 123, keep_mtime=False)
            sent = seed.uploaded
            download()
            self.assertLessEqual(seed.uploaded - sent, 2 * piece)
        with self.subTest("a truncated file keeps the pieces before the cut"):
            with open(target, "r+b") as f:
                f.truncate(SMALL_SIZE // 3)
            sent = seed.uploaded
            proc = download()
            self.assertGreater(_resumed_count(proc), 0, proc.describe())
            self.assertLessEqual(seed.uploaded - sent, SMALL_SIZE - SMALL_SIZE // 3 + 2 * piece)
        with self.subTest("--recheck finds a change that kept size and time"):
            corrupt(9 * piece + 7, keep_mtime=True)
            sent = seed.uploaded
            download("--recheck")
            self.assertLessEqual(seed.uploaded - sent, 2 * piece)
            self.assertGreater(seed.uploaded - sent, 0)


class SlowTests(unittest.TestCase):
    """Waits out the engine's 20 s snub timeout (torrent.SNUB_TIMEOUT)."""

    def test_stalling_peer_is_snubbed_and_its_requests_go_elsewhere(self):
        tmp = temp_dir(self)
        data = os.path.join(tmp, "data")
        torrent = os.path.join(tmp, "stall.torrent")
        meta = make_torrent_file(data, "stall.bin", SMALL_SIZE, torrent, seed=19)
        staller = FakePeer(self, meta.info, "staller")
        log = os.path.join(tmp, "download.log")
        out = os.path.join(tmp, "out")
        down = StaProc(self, "download", torrent, "-o", out, "--port", 0, "--peer",
                       staller.address, "--log-level", "info", "--log-file", log)
        port = down.listen_port()
        wait_until(lambda: staller.requests, WAIT, "requests to the staller")
        wait_until(lambda: any("snubbed" in line and staller.address in line
                               for line in read_lines(log)), WAIT, "the staller to be snubbed")
        # Then a seed calls in: the blocks the staller sat on must come from it.
        seed = InProcessSeed(self, meta, data)
        seed.add_peer(port)
        self.assertEqual(down.wait_exit(WAIT), 0, down.describe())
        self.assertTrue(same_bytes(os.path.join(out, "stall.bin"), os.path.join(data,
                                                                           "stall.bin")))


if __name__ == "__main__":
    unittest.main()
