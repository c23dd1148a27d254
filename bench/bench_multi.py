"""Ten torrents at once in one `download`, against one torrent of the same bytes, from three seeds.

    python3 bench/bench_multi.py [--torrents 10] [--size 32MiB] [--seeds 3] [--runs 3]
                                  [--piece-length 256K]

Makes --torrents files of --size each, a .torrent per file, and one multi-file .torrent of the
same files together (the same bytes, the same total). Each run, with the same flags both times:
three STA seeds (127.0.0.1) seed the ten torrents and one `sta.py download t1 ... t10` fetches
them all; then three seeds seed the one big torrent and one download fetches it. Printed: each
download's wall time and throughput (total bytes / wall time, start-up included), and the ratio
ten / one of each run; the medians over the runs. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from bench.bench_peers import STA, _interrupt, make_torrent, note  # noqa: E402
from bench.common import BenchError, Child  # noqa: E402
from bench.bench_transfer import STA_PLAIN_FLAGS  # noqa: E402
from tests.interop import clients  # noqa: E402

SEED_READY_TIMEOUT = 300.0
# Deadline of one download: it takes seconds here; this only catches a hung client.
DOWNLOAD_TIMEOUT = 600.0
# 256 KiB: what `sta create` and libtorrent pick for a file of a few hundred MiB; the ten
# torrents and the one use the same, so only their number differs.
DEFAULT_PIECE_LENGTH = 256 * 1024
# The task's target for the ratio of the two throughputs.
TARGET_RATIO = 0.9


class Bench:
    def __init__(self, workdir: str, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.data = os.path.join(workdir, "data")
        self.children: List[Child] = []
        self.counter = 0

    def log(self, what: str) -> str:
        self.counter += 1
        return os.path.join(self.workdir, "%02d-%s.log" % (self.counter, what))

    def prepare(self) -> Tuple[List[str], str]:
        """The ten .torrents and the one of all their files, over the same data."""
        folder = os.path.join(self.data, "all")
        os.makedirs(folder)
        singles = []
        for n in range(self.args.torrents):
            made = make_torrent(self.workdir, "f%02d.bin" % (n + 1), self.args.size, seed=n + 1,
                                piece_length=self.args.piece_length)
            os.rename(os.path.join(self.data, "f%02d.bin" % (n + 1)),
                      os.path.join(folder, "f%02d.bin" % (n + 1)))
            singles.append(made)
        whole = os.path.join(self.workdir, "all.torrent")
        rc = Child([sys.executable, STA, "create", folder, "-o", whole,
                    "--piece-length", str(self.args.piece_length)],
                   self.log("create"), cwd=common.REPO).wait(SEED_READY_TIMEOUT)
        if rc != 0:
            raise BenchError("making %s failed" % whole)
        return singles, whole

    def start_seeds(self, torrents: Sequence[str], data: str) -> List[int]:
        ports = []
        for n in range(self.args.seeds):
            port = clients.free_port()
            cmd = [sys.executable, STA, "seed"] + list(torrents) + [
                "--data", data, "--port", str(port)] + list(STA_PLAIN_FLAGS)
            child = Child(cmd, self.log("seed%d" % (n + 1)), cwd=common.REPO)
            self.children.append(child)
            ports.append(port)
        for child in self.children:
            deadline = time.monotonic() + SEED_READY_TIMEOUT
            while sum(1 for line in child.output().splitlines()
                      if line.startswith("Seeding ")) < len(torrents):
                if not child.running() or time.monotonic() > deadline:
                    raise BenchError("a seed did not get ready\n%s" % child.tail())
                time.sleep(common.PORT_POLL_INTERVAL)
        return ports

    def stop_seeds(self) -> None:
        for child in self.children:
            child.stop()
        self.children = []

    def download(self, torrents: Sequence[str], seed_data: str, what: str
                 ) -> Tuple[float, List[str]]:
        """Seconds one download of ``torrents`` takes from fresh seeds, and its command."""
        ports = self.start_seeds(torrents, seed_data)
        out = os.path.join(self.workdir, "out")
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, STA, "download"] + list(torrents) + ["-o", out]
        for port in ports:
            cmd += ["--peer", "127.0.0.1:%d" % port]
        cmd += list(STA_PLAIN_FLAGS)
        try:
            child = Child(cmd, self.log("download-" + what), cwd=common.REPO)
            rc = child.wait(DOWNLOAD_TIMEOUT)
            if rc != 0:
                raise BenchError("download of %s exited with %d\n%s" % (what, rc, child.tail()))
        finally:
            self.stop_seeds()
        return child.elapsed or 0.0, cmd


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torrents", type=int, default=10)
    parser.add_argument("--size", type=common.parse_size, default=common.parse_size("32MiB"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--piece-length", type=common.parse_size, default=DEFAULT_PIECE_LENGTH,
                        help="of every .torrent, so both downloads move the same pieces")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: _interrupt())
    workdir = tempfile.mkdtemp(prefix="sta-bench-multi-")
    bench = Bench(workdir, args)
    total = args.torrents * args.size
    try:
        singles, whole = bench.prepare()
        ratios, many_rates, one_rates = [], [], []
        for run in range(args.runs):
            many, many_cmd = bench.download(singles, os.path.join(bench.data, "all"), "ten")
            one, one_cmd = bench.download([whole], bench.data, "one")
            many_rates.append(total / many / 1e6)
            one_rates.append(total / one / 1e6)
            ratios.append(one / many)
            note("run %d: %d torrents %.1f s (%.0f MB/s), one torrent %.1f s (%.0f MB/s), "
                 "ratio %.2f" % (run + 1, args.torrents, many, many_rates[-1], one,
                                 one_rates[-1], ratios[-1]))
        note("")
        common.print_table(["download of %s from %d seeds" % (common.human_bytes(total),
                                                              args.seeds),
                            "median MB/s"], [
            ["%d torrents in one command" % args.torrents, "%.0f" % common.median(many_rates)],
            ["one torrent of the same files", "%.0f" % common.median(one_rates)],
            ["ratio (same run; target >= %.2f)" % TARGET_RATIO,
             "%.2f" % common.median(ratios)],
        ])
        note("command (%d torrents): %s" % (args.torrents, common.shell_command(many_cmd)))
        note("command (one torrent): %s" % common.shell_command(one_cmd))
        note("the seeds: %s seed TORRENTS --data DIR --port PORT %s (x%d); whole bench: %s"
             % (os.path.basename(STA), " ".join(STA_PLAIN_FLAGS), args.seeds,
                common.shell_command([sys.executable, "bench/bench_multi.py"] + sys.argv[1:],
                                     cwd=common.REPO)))
        return 0
    except BenchError as exc:
        sys.stderr.write("bench_multi: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("bench_multi: interrupted\n")
        return 130
    finally:
        bench.stop_seeds()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
