"""UDP announces per second (BEP 15) of STA's tracker and of opentracker, under the same load
generator in the same run, and their ratio. Prints figures and the commands that reproduce them;
asserts nothing.

    python3 bench/bench_udp_tracker.py [--peers 5000] [--seconds 10] [--processes 2]
                                       [--window 16] [--no-opentracker]

Each tracker runs in its own process (`sta.py tracker`, and /usr/bin/opentracker with the same
port for TCP and UDP), on a free port of 127.0.0.1. The load is bench/udp_load.py: a few
processes, each with a connection id and a window of announces in flight, for --peers peers of
one torrent (one in ten a seeder), 50 peers asked for. A short warm-up announces the swarm into
existence before the measured seconds; lost announces (no answer within 2 s) are counted and
printed, and should be 0. The server's CPU over the measured seconds says whether it or the load
generator was the limit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import udp_load  # noqa: E402
from bench.bench_tracker import cpu_seconds, free_port, start_opentracker  # noqa: E402
from bench.common import (REPO, BenchError, Child, print_table, shell_command,  # noqa: E402
                          wait_for_port)

START_TIMEOUT = 15.0
WARMUP_SECONDS = 1.0


def start_sta(workdir: str, port: int) -> Child:
    cmd = [sys.executable, os.path.join(REPO, "sta.py"), "tracker", "--host", "127.0.0.1",
           "--port", str(port), "--db", os.path.join(workdir, "sta-udp-%d.db" % port)]
    child = Child(cmd, os.path.join(workdir, "sta-udp-%d.log" % port), cwd=workdir)
    wait_for_port(port, START_TIMEOUT, child)
    return child


def load_command(port: int, args: argparse.Namespace) -> List[str]:
    return [sys.executable, "bench/udp_load.py", "--port", str(port), "--peers", str(args.peers),
            "--seconds", str(args.seconds), "--processes", str(args.processes),
            "--window", str(args.window)]


def measure(name: str, server: Child, port: int, args: argparse.Namespace) -> List[str]:
    """Warm up, then one measured run: a table row."""
    udp_load.run(port, args.peers, WARMUP_SECONDS, args.processes, args.window,
                 udp_load.DEFAULT_MAX_REQUESTS)
    cpu_before, wall_before = cpu_seconds(server.proc.pid), time.monotonic()
    result = udp_load.run(port, args.peers, args.seconds, args.processes, args.window,
                          udp_load.DEFAULT_MAX_REQUESTS)
    cpu_after, wall = cpu_seconds(server.proc.pid), time.monotonic() - wall_before
    cpu = ("%.0f%%" % (100 * (cpu_after - cpu_before) / wall)
           if cpu_before is not None and cpu_after is not None and wall > 0 else "?")
    if not server.running():
        raise BenchError("%s exited during the run\n%s" % (name, server.tail()))
    return [name, "%.0f" % result["announces_per_s"], "%d" % result["ok"],
            "%d" % result["failed"], "%d" % result["lost"], "%.2f" % result["p99_ms"], cpu]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=udp_load.DEFAULT_PEERS)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=udp_load.DEFAULT_PROCESSES)
    parser.add_argument("--window", type=int, default=udp_load.DEFAULT_WINDOW)
    parser.add_argument("--no-opentracker", action="store_true")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be from 0 to 600")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    rows: List[List[str]] = []
    reproduce: List[str] = []
    with tempfile.TemporaryDirectory(prefix="sta-bench-udp-") as workdir:
        try:
            port = free_port()
            sta = start_sta(workdir, port)
            try:
                reproduce.append("STA: " + shell_command(sta.cmd[:-2] + ["--db", "bench.db"]))
                rows.append(measure("STA", sta, port, args))
            finally:
                sta.stop()
            reproduce.append("load: " + shell_command(load_command(port, args)))
            if not args.no_opentracker and shutil.which("opentracker"):
                port = free_port()
                ot = start_opentracker(workdir, port)
                try:
                    reproduce.append("opentracker: " + shell_command(ot.cmd) + "  (whitelist.txt"
                                     " lists %s)" % udp_load.DEFAULT_INFO_HASH.hex())
                    rows.append(measure("opentracker", ot, port, args))
                finally:
                    ot.stop()
        except BenchError as exc:
            print("bench_udp_tracker: %s" % exc, file=sys.stderr)
            return 1
    print("UDP tracker (BEP 15): %d peers of one torrent, %d load processes x %d announces in "
          "flight, %.0f s" % (args.peers, args.processes, args.window, args.seconds))
    print_table(["server", "announces/s", "answered", "failed", "lost", "p99 ms", "server CPU"],
                rows)
    if len(rows) == 2 and float(rows[1][1]) > 0:
        print("STA / opentracker (UDP): %.2f" % (float(rows[0][1]) / float(rows[1][1])))
    else:
        print("opentracker not %s: no ratio" % ("run (--no-opentracker)" if args.no_opentracker
                                                else "installed"))
    print("(both measured with the same stdlib load generator on this machine's cores: a "
          "server far under 100% CPU was held back by the generator, not by itself)")
    print("reproduce:")
    for line in reproduce:
        print("  " + line)
    print("  all: %s" % shell_command([sys.executable, "bench/bench_udp_tracker.py"]
                                      + (argv_text(args))))
    return 0


def argv_text(args: argparse.Namespace) -> List[str]:
    return ["--peers", str(args.peers), "--seconds", "%g" % args.seconds, "--processes",
            str(args.processes), "--window", str(args.window)]


if __name__ == "__main__":
    sys.exit(main())
