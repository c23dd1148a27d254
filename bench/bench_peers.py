"""One STA seed, a thousand peers: connections held, turns given, upload kept, memory and CPU.

    python3 bench/bench_peers.py [--peers 1000] [--sources 80] [--size 256MiB] [--runs 3]
                                 [--duration 30] [--single-duration 10] [--profile FILE]

Needs root: it makes two network namespaces joined by a veth pair, runs the seed in one
(10.77.0.1) and the load (bench/peer_load.py, a process of real peers speaking the wire
protocol) in the other, from --sources addresses 10.77.1.x (the seed takes at most
connlimits.MAX_PER_HOST connections per address). Everything made is removed at the end, also
after an error or Ctrl-C. Without root it says so in one line and exits with status 1.

Each run measures, with the same seed: one downloader alone (--single-duration seconds), then
--peers downloaders at once (--duration seconds once all are connected). Printed: peers
connected and dropped, distinct peers ever unchoked during the many-peer run, the upload rate
to one and to many and their ratio (median over the runs), the seed's peak RSS (VmHWM) and
its CPU seconds. --profile runs the seed under cProfile and writes its statistics there.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from bench.common import BenchError, Child, MIB  # noqa: E402

STA = os.path.join(common.REPO, "sta.py")
LOAD = os.path.join(common.REPO, "bench", "peer_load.py")
SEED_ADDRESS = "10.77.0.1"
SOURCE_PREFIX = "10.77.1."
FIRST_SOURCE = 10       # 10.77.1.10, .11, ...
PREFIX_LENGTH = 16      # one subnet for both ends: no routes needed
SEED_PORT = 6881
IP_TIMEOUT = 10.0
SEED_READY_TIMEOUT = 120.0
# The load's own connect deadline, and what the bench adds for start-up and the report.
CONNECT_TIMEOUT = 180.0
LOAD_SLACK = 60.0
# Targets from the task the figures are read against.
TARGET_RATIO = 0.5
TARGET_RSS = 100 * MIB


def note(text: str) -> None:
    print(text, flush=True)


def cpu_seconds(pid: int) -> Optional[float]:
    """User plus system CPU seconds of a running process (Linux /proc), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks   # utime, stime (fields 14 and 15)


def vm_hwm(pid: int) -> Optional[int]:
    """Peak resident memory of a running process in bytes (VmHWM), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def make_torrent(workdir: str, name: str, size: int, seed: int = 1,
                 piece_length: Optional[int] = None) -> str:
    """Write ``size`` bytes to workdir/data/name and a .torrent for it made by `sta create`;
    returns the .torrent's path."""
    from tests.interop import clients
    data_dir = os.path.join(workdir, "data")
    os.makedirs(data_dir, exist_ok=True)
    data = clients.make_file(os.path.join(data_dir, name), size, seed=seed)
    torrent = os.path.join(workdir, name + ".torrent")
    cmd = [sys.executable, STA, "create", data, "-o", torrent]
    if piece_length:
        cmd += ["--piece-length", str(piece_length)]
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            timeout=300)
    if result.returncode != 0:
        raise BenchError("making %s failed: %s" % (torrent, result.stderr.decode().strip()))
    return torrent


class Namespaces:
    """Two namespaces, seed side and load side, with a veth pair between them."""

    def __init__(self, sources: int) -> None:
        tag = "stp%d" % (os.getpid() % 100000)
        self.seed_ns, self.load_ns = tag + "s", tag + "l"
        self.sources = [SOURCE_PREFIX + str(FIRST_SOURCE + n) for n in range(sources)]
        self.made: List[str] = []

    def make(self) -> None:
        for name in (self.seed_ns, self.load_ns):
            _ip("netns", "add", name)
            self.made.append(name)
        seed_end, load_end = self.seed_ns + "v", self.load_ns + "v"
        _ip("link", "add", seed_end, "netns", self.seed_ns, "type", "veth",
            "peer", "name", load_end, "netns", self.load_ns)
        _ip("-n", self.seed_ns, "addr", "add", "%s/%d" % (SEED_ADDRESS, PREFIX_LENGTH),
            "dev", seed_end)
        for address in self.sources:
            _ip("-n", self.load_ns, "addr", "add", "%s/%d" % (address, PREFIX_LENGTH),
                "dev", load_end)
        for ns, end in ((self.seed_ns, seed_end), (self.load_ns, load_end)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", end, "up")

    def remove(self) -> None:
        for name in self.made:   # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", name], timeout=IP_TIMEOUT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.made = []

    def run_in(self, ns: str, cmd: Sequence[str]) -> List[str]:
        return ["ip", "netns", "exec", ns] + list(cmd)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip"] + list(args), timeout=IP_TIMEOUT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise BenchError("ip %s: %s" % (" ".join(args), result.stderr.decode().strip()))


def run_load(nets: Namespaces, torrent: str, peers: int, sources: Sequence[str],
             duration: float, log_path: str) -> Dict[str, object]:
    cmd = [sys.executable, LOAD, torrent, "%s:%d" % (SEED_ADDRESS, SEED_PORT),
           "--peers", str(peers), "--duration", str(duration),
           "--connect-timeout", str(CONNECT_TIMEOUT)]
    for address in sources:
        cmd += ["--source", address]
    child = Child(nets.run_in(nets.load_ns, cmd), log_path, cwd=common.REPO)
    try:
        rc = child.wait(CONNECT_TIMEOUT + duration + LOAD_SLACK)
    finally:
        child.stop()
    lines = [line for line in child.output().splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        raise BenchError("the load exited with status %s\n%s" % (rc, child.tail()))
    return json.loads(lines[-1])


def one_run(nets: Namespaces, seed: Child, torrent: str, args: argparse.Namespace,
            workdir: str, number: int) -> Dict[str, object]:
    single = run_load(nets, torrent, 1, nets.sources[:1], args.single_duration,
                      os.path.join(workdir, "load-single-%d.log" % number))
    before = cpu_seconds(seed.proc.pid)
    many = run_load(nets, torrent, args.peers, nets.sources, args.duration,
                    os.path.join(workdir, "load-many-%d.log" % number))
    after = cpu_seconds(seed.proc.pid)
    cpu = (after - before) if before is not None and after is not None else None
    ratio = many["rate"] / single["rate"] if single["rate"] else 0.0  # type: ignore[operator]
    note("run %d: one peer %.0f MB/s; %s of %d peers connected (%s s), %s dropped, "
         "fewest %s; %s ever unchoked in %s s; %.0f MB/s to all; ratio %.2f; seed CPU %s s"
         % (number, single["rate"] / 1e6, many["connected"], args.peers,  # type: ignore
            many["connect_seconds"], many["dropped"], many["fewest_during_run"],
            many["ever_unchoked"], many["seconds"], many["rate"] / 1e6, ratio,  # type: ignore
            "%.1f" % cpu if cpu is not None else "-"))
    if many["close_reasons"]:
        note("        connections closed: %s" % json.dumps(many["close_reasons"]))
    return {"single": single, "many": many, "ratio": ratio, "cpu": cpu}


def seed_command(nets: Namespaces, torrent: str, data_dir: str,
                 profile: Optional[str]) -> List[str]:
    python = [sys.executable] + (["-m", "cProfile", "-o", profile] if profile else [])
    return nets.run_in(nets.seed_ns, python + [
        STA, "seed", torrent, "--data", data_dir, "--port", str(SEED_PORT),
        "--bind", SEED_ADDRESS, "--no-dht", "--no-lsd", "--encryption", "off"])


def report(runs: List[Dict[str, object]], peak: Optional[int], total_cpu: Optional[float],
           args: argparse.Namespace, command: str) -> None:
    many = [r["many"] for r in runs]
    ratio = common.median([r["ratio"] for r in runs])  # type: ignore[misc]
    note("")
    common.print_table(["figure", "median of %d run(s)" % len(runs), "target"], [
        ["peers connected", "%d of %d" % (common.median([m["connected"] for m in many]),
                                          args.peers), "all"],
        ["dropped during the run", "%d" % max(m["dropped"] for m in many), "0"],
        ["distinct peers ever unchoked", "%d in %.0f s" % (
            common.median([m["ever_unchoked"] for m in many]), args.duration), "-"],
        ["upload to one peer alone", "%.0f MB/s" % (
            common.median([r["single"]["rate"] for r in runs]) / 1e6), "-"],  # type: ignore
        ["upload to all peers", "%.0f MB/s" % (
            common.median([m["rate"] for m in many]) / 1e6), "-"],
        ["ratio all / one (same run)", "%.2f" % ratio, ">= %.2f" % TARGET_RATIO],
        ["seed peak RSS (VmHWM)", common.human_bytes(peak), "< %s" % common.human_bytes(
            TARGET_RSS)],
        ["seed CPU, %d-peer run" % args.peers, "%.1f s" % common.median(
            [r["cpu"] for r in runs if r["cpu"] is not None] or [0.0]), "-"],
        ["seed CPU, whole bench", "%.1f s" % total_cpu if total_cpu is not None else "-", "-"],
    ])
    note("command: %s" % command)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--sources", type=int, default=80,
                        help="load-side addresses (at most 16 peers each)")
    parser.add_argument("--size", type=common.parse_size, default=common.parse_size("256MiB"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--single-duration", type=float, default=10.0)
    parser.add_argument("--profile", metavar="FILE", help="run the seed under cProfile")
    args = parser.parse_args(argv)
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        sys.stderr.write("bench_peers: needs root to make network namespaces; not run\n")
        return 1
    if args.peers > 16 * args.sources:
        sys.stderr.write("bench_peers: --sources %d carry at most %d peers (16 each)\n"
                         % (args.sources, 16 * args.sources))
        return 2
    signal.signal(signal.SIGTERM, lambda signum, frame: _interrupt())
    command = common.shell_command([sys.executable, "bench/bench_peers.py"] + sys.argv[1:],
                                   cwd=common.REPO)
    workdir = tempfile.mkdtemp(prefix="sta-bench-peers-")
    nets = Namespaces(args.sources)
    seed: Optional[Child] = None
    try:
        torrent = make_torrent(workdir, "peers.bin", args.size)
        nets.make()
        profile = os.path.abspath(args.profile) if args.profile else None
        seed = Child(seed_command(nets, torrent, os.path.join(workdir, "data"), profile),
                     os.path.join(workdir, "seed.log"), cwd=common.REPO)
        seed.wait_for_output(lambda line: line if line.startswith("Seeding ") else None,
                             SEED_READY_TIMEOUT, "'Seeding' line")
        note("seed ready in namespace %s at %s:%d; load from %d addresses in %s"
             % (nets.seed_ns, SEED_ADDRESS, SEED_PORT, len(nets.sources), nets.load_ns))
        runs = [one_run(nets, seed, torrent, args, workdir, n + 1) for n in range(args.runs)]
        report(runs, vm_hwm(seed.proc.pid), cpu_seconds(seed.proc.pid), args, command)
        if profile:
            note("profile of the seed: %s (python3 -m pstats %s)" % (profile, profile))
        return 0
    except BenchError as exc:
        sys.stderr.write("bench_peers: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("bench_peers: interrupted; cleaning up\n")
        return 130
    finally:
        if seed is not None:
            seed.proc.send_signal(signal.SIGINT)   # so a profiled seed writes its statistics
            seed.stop()
        nets.remove()
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)


def _interrupt() -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
