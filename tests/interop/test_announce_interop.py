"""sta.announce against a real tracker: opentracker on 127.0.0.1 (skipped when not installed).

The Debian build of opentracker runs in whitelist mode, so the test writes the info hashes it
uses into a whitelist file before starting it. When started as root it chroots into its -d
directory and drops to user "nobody"; the whitelist is given relative to that directory, which
works both ways, and the directory is made world-readable.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
from typing import List

from sta import announce as A
from sta import trackerproto as TP
from sta import trackers as T

OPENTRACKER = shutil.which("opentracker")

# Seconds to wait for opentracker to accept connections; it starts in milliseconds.
START_TIMEOUT = 10.0
# Info hashes written to the whitelist: more than the tests use.
HASH_COUNT = 16


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(OPENTRACKER, "opentracker is not installed")
class OpentrackerTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(tmp.cleanup)
        os.chmod(tmp.name, 0o755)
        rng = random.Random()
        cls.hashes: List[bytes] = [bytes(rng.getrandbits(8) for _ in range(20))
                                   for _ in range(HASH_COUNT)]
        with open(os.path.join(tmp.name, "whitelist.txt"), "w") as f:
            f.write("".join(h.hex() + "\n" for h in cls.hashes))
        os.chmod(os.path.join(tmp.name, "whitelist.txt"), 0o644)
        port = free_port()
        log = open(os.path.join(tmp.name, "opentracker.log"), "wb")
        cls.addClassCleanup(log.close)
        udp_port = free_port(socket.SOCK_DGRAM)   # else it also binds UDP 6969
        cls.proc = subprocess.Popen(
            [OPENTRACKER, "-i", "127.0.0.1", "-p", str(port), "-P", str(udp_port),
             "-d", tmp.name, "-w", "whitelist.txt"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        cls.addClassCleanup(cls._stop)
        cls.url = f"http://127.0.0.1:{port}/announce"
        # Ready once it listens AND has loaded the whitelist (it loads it in the background,
        # after it starts listening): a "started" announce for a reserved hash then succeeds
        # ("stopped" is not a probe: opentracker may answer it before the list is in).
        probe = cls.hashes.pop()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if cls.proc.poll() is not None:
                raise RuntimeError(f"opentracker exited with code {cls.proc.returncode}")
            try:
                A.announce(cls.url, info_hash=probe, peer_id=b"-SX0001-probe0000000", port=1,
                           uploaded=0, downloaded=0, left=0, event="started", timeout=1)
                break
            except TP.TrackerError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"opentracker is not ready: {exc}") from None
                time.sleep(0.05)

    @classmethod
    def _stop(cls):
        if cls.proc.poll() is None:
            cls.proc.terminate()
            try:
                cls.proc.wait(5)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait(5)

    def setUp(self):
        self.info_hash = self.hashes.pop()

    def announce(self, peer: int, left: int = 1000, **kw) -> TP.AnnounceResponse:
        peer_id = b"-SX0001-" + b"%012d" % peer
        return A.announce(kw.pop("url", self.url), info_hash=self.info_hash, peer_id=peer_id,
                          port=peer, uploaded=0, downloaded=0, left=left, timeout=5, **kw)

    def test_second_peer_gets_the_first_back_compact(self):
        first = self.announce(40001, event="started")
        self.assertGreater(first.interval, 0)
        second = self.announce(40002, event="started")
        self.assertIn(("127.0.0.1", 40001), second.peers)
        self.assertEqual(second.incomplete, 2)

    def test_second_peer_gets_the_first_back_non_compact(self):
        try:
            self.announce(40011, event="started", compact=False)
        except TP.TrackerError as exc:
            if "HTTP 400" in str(exc):
                self.skipTest("this opentracker build serves compact peer lists only "
                              "(it answers compact=0 with HTTP 400)")
            raise
        second = self.announce(40012, event="started", compact=False)
        self.assertIn(("127.0.0.1", 40011), second.peers)

    def test_scrape_counts_follow_events(self):
        scrape_url = TP.scrape_url(self.url)
        self.announce(40021, event="started")
        self.announce(40022, left=0, event="started")
        self.assertEqual(A.scrape(scrape_url, [self.info_hash], timeout=5),
                         {self.info_hash: (1, 1, 0)})
        self.announce(40021, left=0, event="completed")
        self.assertEqual(A.scrape(scrape_url, [self.info_hash], timeout=5)[self.info_hash],
                         (2, 0, 1))
        self.announce(40022, left=0, event="stopped")
        self.assertEqual(A.scrape(scrape_url, [self.info_hash], timeout=5)[self.info_hash][0], 1)

    def test_unlisted_torrent_gives_the_trackers_failure_reason(self):
        self.info_hash = b"\x00" * 20
        with self.assertRaises(TP.TrackerError) as ctx:
            self.announce(40031, event="started")
        self.assertIn("failure reason: ", str(ctx.exception))
        self.assertTrue(ctx.exception.failure_reason)

    def test_tracker_list_fails_over_to_opentracker(self):
        dead = f"http://127.0.0.1:{free_port()}/announce"
        tl = T.TrackerList([[dead, self.url]], rng=random.Random(3))
        now = 0.0
        for _ in range(2):
            job, = tl.due(now)
            self.assertEqual(job.event, "started")
            try:
                response = self.announce(40041, url=job.url, event=job.event)
            except TP.TrackerError as exc:
                with self.assertLogs("sta.announce", "WARNING"):
                    tl.failed(job, exc, now)
                continue
            tl.succeeded(job, response, now)
            break
        self.assertEqual(tl.tiers[0][0], self.url)
        self.assertGreaterEqual(tl.next_due_at(), now + T.MIN_ANNOUNCE_INTERVAL)


if __name__ == "__main__":
    unittest.main()
