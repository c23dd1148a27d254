"""Ten torrents at once in one `download`, against one torrent of the same bytes, from three seeds.

    python3 bench/bench_multi.py [--torrents 10] [--size 32MiB] [--seeds 3] [--runs 3]
                                  [--piece-length 256K] [--clients sta,lt]

Makes --torrents files of --size each, a .torrent per file, and one multi-file .torrent of the
same files together (the same bytes, the same total), all with `sta create` and the same piece
length; every client downloads these same .torrent files. Each run, for each client in turn
(STA, then libtorrent 2.0 through tests/interop/lt_helper.py, at its default settings on
127.0.0.1 with TCP only): three seeds of that client (127.0.0.1) seed the ten torrents and one
download of that client fetches them all in one command (`sta.py download t1 ... t10`, or one
`lt_helper.py download t1 ... t10`); then three seeds seed the one big torrent and one download
fetches it. Printed: each download's wall time and throughput (total bytes / wall time, start-up
included), and the ratio ten / one of each run; then per client the medians over the runs, so
STA's ratio stands beside libtorrent's measured on the same machine in the same run, and the
commands that reproduce them. --clients picks the clients (default sta,lt; sta alone, with a
note, when libtorrent does not import under /usr/bin/python3). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from bench.bench_peers import STA, _interrupt, make_torrent, note  # noqa: E402
from bench.common import BenchError, Child  # noqa: E402
from bench.bench_transfer import STA_PLAIN_FLAGS  # noqa: E402
from tests.interop import clients  # noqa: E402

SEED_READY_TIMEOUT = 300.0
# Deadline of one download: it takes seconds here; this only catches a hung client.
DOWNLOAD_TIMEOUT = 600.0
# Time lt_helper gets past its own --timeout to report it and exit.
EXIT_SLACK = 30.0
# 256 KiB: what `sta create` and libtorrent pick for a file of a few hundred MiB; the ten
# torrents and the one use the same, so only their number differs.
DEFAULT_PIECE_LENGTH = 256 * 1024
# The task's target for the ratio of the two throughputs.
TARGET_RATIO = 0.9
# The clients, in the order each run measures them.
CLIENT_NAMES = ("sta", "lt")
LT_VERSION_TIMEOUT = 30.0


def choose_clients(text: Optional[str], have_lt: bool) -> Tuple[List[str], Optional[str]]:
    """The clients --clients names (None: the default), and a note when libtorrent is left out.

    Raises ValueError with a readable message for an unknown name or for lt without libtorrent.
    """
    if text is None:
        if have_lt:
            return list(CLIENT_NAMES), None
        return ["sta"], ("libtorrent is not importable by %s: measuring sta only"
                         % clients.LT_PYTHON)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CLIENT_NAMES]
    if unknown or not names:
        raise ValueError("bad --clients %r: use a comma-separated list of %s"
                         % (text, ", ".join(CLIENT_NAMES)))
    if "lt" in names and not have_lt:
        raise ValueError("--clients lt: libtorrent is not importable by %s" % clients.LT_PYTHON)
    return [name for name in CLIENT_NAMES if name in names], None


def parse_args(argv: Optional[Sequence[str]], have_lt: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_multi", description=__doc__.split("\n")[0])
    parser.add_argument("--torrents", type=int, default=10)
    parser.add_argument("--size", type=common.parse_size, default=common.parse_size("32MiB"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--piece-length", type=common.parse_size, default=DEFAULT_PIECE_LENGTH,
                        help="of every .torrent, so both downloads move the same pieces")
    parser.add_argument("--clients", metavar="sta,lt",
                        help="clients to measure (default: sta,lt; sta when libtorrent is "
                             "not importable by %s)" % clients.LT_PYTHON)
    args = parser.parse_args(argv)
    if min(args.torrents, args.size, args.seeds, args.runs, args.piece_length) < 1:
        parser.error("--torrents, --size, --seeds, --runs and --piece-length must be positive")
    try:
        args.client_names, args.client_note = choose_clients(args.clients, have_lt)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def lt_version() -> str:
    """libtorrent's version as its bindings report it ('?' when they do not say)."""
    try:
        done = subprocess.run([clients.LT_PYTHON, "-c",
                               "import libtorrent; print(libtorrent.__version__)"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              timeout=LT_VERSION_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.decode(errors="replace").strip() or "?"


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

    def seed_cmd(self, client: str, torrents: Sequence[str], data: str, port: int) -> List[str]:
        if client == "lt":
            return clients.lt_helper_cmd("seed", *torrents, "--data", data, "--port", port)
        return [sys.executable, STA, "seed"] + list(torrents) + [
            "--data", data, "--port", str(port)] + list(STA_PLAIN_FLAGS)

    def download_cmd(self, client: str, torrents: Sequence[str], out: str,
                     ports: Sequence[int]) -> List[str]:
        peers = [arg for port in ports for arg in ("--peer", "127.0.0.1:%d" % port)]
        if client == "lt":
            return clients.lt_helper_cmd("download", *torrents, "--out", out, *peers,
                                         "--timeout", "%.0f" % DOWNLOAD_TIMEOUT)
        return [sys.executable, STA, "download"] + list(torrents) + ["-o", out] + peers + list(
            STA_PLAIN_FLAGS)

    def start_seeds(self, client: str, torrents: Sequence[str], data: str) -> List[int]:
        """Start the seeds and wait until each has checked its data; their ports."""
        ports = []
        for n in range(self.args.seeds):
            # A fixed port rather than 0 so that the printed commands can be pasted as they are.
            port = clients.free_port()
            child = Child(self.seed_cmd(client, torrents, data, port),
                          self.log("%s-seed%d" % (client, n + 1)), cwd=common.REPO)
            self.children.append(child)
            ports.append(port)
        for child in self.children:
            deadline = time.monotonic() + SEED_READY_TIMEOUT
            while not seeding(client, child.output(), len(torrents)):
                if not child.running() or time.monotonic() > deadline:
                    raise BenchError("a %s seed did not get ready\n%s" % (client, child.tail()))
                time.sleep(common.PORT_POLL_INTERVAL)
        return ports

    def stop_seeds(self) -> None:
        for child in self.children:
            child.stop()
        self.children = []

    def download(self, client: str, torrents: Sequence[str], seed_data: str, what: str
                 ) -> Tuple[float, List[str], List[str]]:
        """Seconds one download of ``torrents`` takes from fresh seeds, its command and the
        first seed's."""
        ports = self.start_seeds(client, torrents, seed_data)
        seed_cmd = self.children[0].cmd
        out = os.path.join(self.workdir, "out")
        shutil.rmtree(out, ignore_errors=True)
        cmd = self.download_cmd(client, torrents, out, ports)
        try:
            child = Child(cmd, self.log("%s-download-%s" % (client, what)), cwd=common.REPO)
            rc = child.wait(DOWNLOAD_TIMEOUT + EXIT_SLACK)
            if rc != 0:
                raise BenchError("%s download of %s exited with %d\n%s"
                                 % (client, what, rc, child.tail()))
        finally:
            self.stop_seeds()
            shutil.rmtree(out, ignore_errors=True)
        return child.elapsed or 0.0, cmd, seed_cmd


def seeding(client: str, output: str, torrents: int) -> bool:
    """Whether a seed's output says it has checked all its torrents and accepts peers."""
    lines = output.splitlines()
    if client == "lt":
        return "SEEDING" in lines
    return sum(1 for line in lines if line.startswith("Seeding ")) >= torrents


class Figures:
    """One client's figures over the runs, and the commands of its last run."""

    def __init__(self) -> None:
        self.many_rates: List[float] = []
        self.one_rates: List[float] = []
        self.ratios: List[float] = []
        self.commands: Dict[str, List[str]] = {}


def measure(bench: Bench, client: str, singles: Sequence[str], whole: str, run: int,
            figures: Figures) -> None:
    """One run of one client: the ten torrents, then the one."""
    args = bench.args
    total = args.torrents * args.size
    many, many_cmd, many_seed = bench.download(client, singles,
                                               os.path.join(bench.data, "all"), "ten")
    one, one_cmd, one_seed = bench.download(client, [whole], bench.data, "one")
    figures.many_rates.append(total / many / 1e6)
    figures.one_rates.append(total / one / 1e6)
    figures.ratios.append(one / many)
    figures.commands = {"many": many_cmd, "one": one_cmd, "many seed": many_seed,
                        "one seed": one_seed}
    note("run %d %s: %d torrents %.1f s (%.0f MB/s), one torrent %.1f s (%.0f MB/s), "
         "ratio %.2f" % (run + 1, client, args.torrents, many, figures.many_rates[-1], one,
                         figures.one_rates[-1], figures.ratios[-1]))


def report(args: argparse.Namespace, results: Dict[str, Figures], labels: Dict[str, str]
           ) -> None:
    total = args.torrents * args.size
    note("")
    note("download of %s (%d torrents of %s, or one of the same files), %s pieces, from %d "
         "seeds of the same client, on 127.0.0.1; median of %d run%s"
         % (common.human_bytes(total), args.torrents, common.human_bytes(args.size),
            common.human_bytes(args.piece_length), args.seeds, args.runs,
            "s" if args.runs > 1 else ""))
    common.print_table(
        ["client", "%d torrents MB/s" % args.torrents, "one torrent MB/s",
         "ratio (target >= %.2f)" % TARGET_RATIO],
        [[labels[client], "%.0f" % common.median(f.many_rates),
          "%.0f" % common.median(f.one_rates), "%.2f" % common.median(f.ratios)]
         for client, f in results.items()])
    for client, figures in results.items():
        note("%s: ratios %s" % (client, ", ".join("%.2f" % r for r in figures.ratios)))
        cmds = figures.commands
        note("  command (%d torrents): %s" % (args.torrents, common.shell_command(cmds["many"])))
        note("  command (one torrent): %s" % common.shell_command(cmds["one"]))
        note("  seeds (x%d, each on its own port): %s; %s"
             % (args.seeds, common.shell_command(cmds["many seed"]),
                common.shell_command(cmds["one seed"])))
    note("whole bench: %s" % common.shell_command(
        [sys.executable, "bench/bench_multi.py"] + sys.argv[1:], cwd=common.REPO))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv, clients.have_libtorrent())
    if args.client_note:
        note(args.client_note)
    labels = {"sta": "sta", "lt": "lt"}
    if "lt" in args.client_names:
        labels["lt"] = "lt (libtorrent %s)" % lt_version()
    signal.signal(signal.SIGTERM, lambda signum, frame: _interrupt())
    workdir = tempfile.mkdtemp(prefix="sta-bench-multi-")
    bench = Bench(workdir, args)
    try:
        singles, whole = bench.prepare()
        results = {client: Figures() for client in args.client_names}
        for run in range(args.runs):
            for client in args.client_names:
                measure(bench, client, singles, whole, run, results[client])
        report(args, results, labels)
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
