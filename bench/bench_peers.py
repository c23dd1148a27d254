"""One seed, a thousand peers: connections held, turns given, upload kept, memory and CPU, for
STA and libtorrent 2.0 measured side by side in the same run.

    python3 bench/bench_peers.py [--clients sta,lt] [--peers 1000] [--sources N] [--size 256MiB]
                                 [--runs 3] [--duration 30] [--single-duration 10] [--profile FILE]

Needs root: it makes two network namespaces joined by a veth pair, runs the seed in one
(10.77.0.1) and the load (bench/peer_load.py, a process of real peers speaking the wire
protocol) in the other, from --sources addresses 10.77.1.10 onwards (default one per peer; the
seed's side routes them through the load's end of the link, so it keeps one neighbour entry,
not one per address). Everything made is removed at the end, also after an error or Ctrl-C.
Without root it says so in one line and exits with status 1.

Clients (--clients, default sta,lt; lt is left out with a one-line note when libtorrent does not
import under /usr/bin/python3): sta is `sta.py seed`; lt is `tests/interop/lt_helper.py seed` at
libtorrent's default settings, its connections_limit (200) included, but for LT_SETTINGS: it
listens on 10.77.0.1, allows one connection per address (libtorrent's default; lt_helper allows
more for loopback tests) and counts the load's 10.x peers as the internet peers they stand for
(by default libtorrent lets local-network peers skip its unchoke slots and exceed
connections_limit by half).

Each run measures every client in turn (same torrent, data, load and durations; the order
rotates from run to run), each with a fresh seed: one downloader alone (--single-duration
seconds), then --peers downloaders at once (--duration seconds once all are connected or the
load's connect deadline passed). Printed per client, as the load sees them: peers connected and
dropped, distinct peers unchoked during the many-peer run; then the upload rate to one and to all
and their ratio (medians over the runs), the seed's peak RSS (VmHWM) and peak anonymous RSS
(libtorrent maps the files it reads, and mapped pages count in RSS), its CPU seconds in the
many-peer run and over its whole life, and the commands that reproduce them. --profile runs the
STA seed under cProfile and writes its statistics there. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common, peer_load  # noqa: E402
from bench.common import BenchError, Child, MIB  # noqa: E402
from sta import connlimits  # noqa: E402
from tests.interop import clients  # noqa: E402

STA = os.path.join(common.REPO, "sta.py")
LOAD = os.path.join(common.REPO, "bench", "peer_load.py")
SEED_ADDRESS = "10.77.0.1"
# The load side's own end of the link: the seed's side routes every source address through it.
LOAD_ADDRESS = "10.77.0.2"
LINK_PREFIX = 24
SOURCE_ROUTE = "10.77.0.0/16"
FIRST_SOURCE = "10.77.1.10"
# One address per peer up to this many peers: all inside SOURCE_ROUTE, added in one `ip -batch`.
MAX_SOURCES = 8192
SEED_PORT = 6881
IP_TIMEOUT = 30.0
SEED_READY_TIMEOUT = 120.0
# The load's own connect deadline, and what the bench adds for start-up and the report.
CONNECT_TIMEOUT = 180.0
LOAD_SLACK = 60.0
# Targets from the task the figures are read against.
TARGET_RATIO = 0.5
TARGET_RSS = 100 * MIB
# lt_helper's seed at libtorrent's defaults but these (see the module docstring): one
# connection per address, as libtorrent allows by default, and 10.x peers in libtorrent's global
# peer class rather than its "local" one (unchoke slots ignored, connection_limit_factor 150).
LT_SETTINGS = ("allow_multiple_connections_per_ip=false", "ignore_limits_on_local_network=false")
CLIENT_NAMES = ("sta", "lt")


def note(text: str) -> None:
    print(text, flush=True)


def make_torrent(workdir: str, name: str, size: int, seed: int = 1,
                 piece_length: Optional[int] = None) -> str:
    """Write ``size`` bytes to workdir/data/name and a .torrent for it made by `sta create`;
    returns the .torrent's path."""
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


def source_range(count: int) -> str:
    """The load's source addresses as peer_load's FIRST-LAST --source."""
    last = ipaddress.ip_address(FIRST_SOURCE) + (count - 1)
    return FIRST_SOURCE if count == 1 else "%s-%s" % (FIRST_SOURCE, last)


class Namespaces:
    """Two namespaces, seed side and load side, with a veth pair between them."""

    def __init__(self, sources: int) -> None:
        tag = "stp%d" % (os.getpid() % 100000)
        self.seed_ns, self.load_ns = tag + "s", tag + "l"
        self.sources = peer_load.source_addresses(source_range(sources))
        self.made: List[str] = []

    def make(self) -> None:
        for name in (self.seed_ns, self.load_ns):
            _ip("netns", "add", name)
            self.made.append(name)
        seed_end, load_end = self.seed_ns + "v", self.load_ns + "v"
        _ip("link", "add", seed_end, "netns", self.seed_ns, "type", "veth",
            "peer", "name", load_end, "netns", self.load_ns)
        _ip("-n", self.seed_ns, "addr", "add", "%s/%d" % (SEED_ADDRESS, LINK_PREFIX),
            "dev", seed_end)
        _ip("-n", self.load_ns, "addr", "add", "%s/%d" % (LOAD_ADDRESS, LINK_PREFIX),
            "dev", load_end)
        for ns, end in ((self.seed_ns, seed_end), (self.load_ns, load_end)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", end, "up")
        _ip("-n", self.seed_ns, "route", "add", SOURCE_ROUTE, "via", LOAD_ADDRESS)
        _ip("-n", self.load_ns, "-batch", "-", batch="".join(
            "addr add %s/32 dev %s\n" % (address, load_end) for address in self.sources))

    def remove(self) -> None:
        for name in self.made:   # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", name], timeout=IP_TIMEOUT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.made = []

    def run_in(self, ns: str, cmd: Sequence[str]) -> List[str]:
        return ["ip", "netns", "exec", ns] + list(cmd)


def _ip(*args: str, batch: Optional[str] = None) -> None:
    result = subprocess.run(["ip"] + list(args), timeout=IP_TIMEOUT,
                            input=batch.encode() if batch is not None else None,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise BenchError("ip %s: %s" % (" ".join(args), result.stderr.decode().strip()))


# ------------------------------------------------------------------------------------ clients

def parse_clients(text: str) -> List[str]:
    """--clients 'sta,lt' -> ['sta', 'lt'] (order kept, repeats dropped); ValueError otherwise."""
    names: List[str] = []
    for name in (part.strip() for part in text.split(",")):
        if name not in CLIENT_NAMES:
            raise ValueError("--clients takes a comma-separated list of %s, not %r"
                             % (", ".join(CLIENT_NAMES), name))
        if name not in names:
            names.append(name)
    return names


def available_clients(names: Sequence[str],
                      lt_importable: Callable[[], bool]) -> Tuple[List[str], List[str]]:
    """(the clients that can run, notes to print): libtorrent is left out with a note when its
    bindings do not import; BenchError when nothing is left to run."""
    notes = []
    kept = list(names)
    if "lt" in kept and not lt_importable():
        kept.remove("lt")
        notes.append("lt left out: libtorrent is not importable by %s" % clients.LT_PYTHON)
    if not kept:
        raise BenchError("no client to run: %s" % "; ".join(notes))
    return kept, notes


def lt_defaults() -> Tuple[str, int, int]:
    """libtorrent's version, default connections_limit and connections_slack."""
    code = ("import json, libtorrent as lt; d = lt.default_settings(); print(json.dumps("
            "[lt.__version__, d['connections_limit'], d['connections_slack']]))")
    done = subprocess.run([clients.LT_PYTHON, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=clients.PROBE_TIMEOUT)
    if done.returncode != 0:
        raise BenchError("libtorrent's defaults: %s" % done.stderr.decode().strip())
    version, limit, slack = json.loads(done.stdout.decode())
    return str(version), int(limit), int(slack)


def seed_command(client: str, torrent: str, data_dir: str,
                 profile: Optional[str]) -> List[str]:
    """The seed as it runs inside the seed namespace, on SEED_ADDRESS:SEED_PORT."""
    if client == "lt":
        cmd = clients.lt_helper_cmd("seed", torrent, "--data", data_dir, "--port", SEED_PORT,
                                    "--setting", "listen_interfaces=%s:%d"
                                    % (SEED_ADDRESS, SEED_PORT))
        for setting in LT_SETTINGS:
            cmd += ["--setting", setting]
        return cmd
    python = [sys.executable] + (["-m", "cProfile", "-o", profile] if profile else [])
    return python + [STA, "seed", torrent, "--data", data_dir, "--port", str(SEED_PORT),
                     "--bind", SEED_ADDRESS, "--no-dht", "--no-lsd", "--encryption", "off"]


def seed_ready(client: str) -> Callable[[str], Optional[str]]:
    prefix = "SEEDING" if client == "lt" else "Seeding "
    return lambda line: line if line.startswith(prefix) else None


# ---------------------------------------------------------------------------------------- runs

def run_load(nets: Namespaces, torrent: str, peers: int, sources: str, duration: float,
             log_path: str) -> Tuple[Dict[str, object], List[str]]:
    """One load against the seed: (peer_load's JSON result, its command)."""
    cmd = nets.run_in(nets.load_ns, [
        sys.executable, LOAD, torrent, "%s:%d" % (SEED_ADDRESS, SEED_PORT),
        "--peers", str(peers), "--duration", str(duration),
        "--connect-timeout", str(CONNECT_TIMEOUT), "--source", sources])
    child = Child(cmd, log_path, cwd=common.REPO)
    try:
        rc = child.wait(CONNECT_TIMEOUT + duration + LOAD_SLACK)
    finally:
        child.stop()
    lines = [line for line in child.output().splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        raise BenchError("the load exited with status %s\n%s" % (rc, child.tail()))
    return json.loads(lines[-1]), cmd


def measure(nets: Namespaces, client: str, torrent: str, args: argparse.Namespace,
            workdir: str, number: int) -> Dict[str, object]:
    """One run of one client: a fresh seed, one downloader alone, then every peer at once."""
    logs = os.path.join(workdir, "%s-%d-" % (client, number))
    profile = os.path.abspath(args.profile) if args.profile and client == "sta" else None
    seed = Child(nets.run_in(nets.seed_ns, seed_command(
        client, torrent, os.path.join(workdir, "data"), profile)), logs + "seed.log",
        cwd=common.REPO)
    try:
        seed.wait_for_output(seed_ready(client), SEED_READY_TIMEOUT, "%s seed ready" % client)
        single, single_cmd = run_load(nets, torrent, 1, FIRST_SOURCE, args.single_duration,
                                      logs + "load-single.log")
        seed.memory.sample()
        before = seed.memory.cpu_seconds
        many, many_cmd = run_load(nets, torrent, args.peers, source_range(len(nets.sources)),
                                  args.duration, logs + "load-many.log")
        seed.memory.sample()
        after = seed.memory.cpu_seconds
    finally:
        seed.proc.send_signal(signal.SIGINT)   # a clean exit: a profiled seed writes its stats
        seed.stop()
    result = {"single": single, "many": many, "rss": seed.memory.peak_rss,
              "anon": seed.memory.peak_anon, "cpu_total": seed.memory.cpu_seconds,
              "cpu": after - before if before is not None and after is not None else None,
              "commands": [common.shell_command(c) for c in (seed.cmd, single_cmd, many_cmd)]}
    note("run %d, %s: one peer %.0f MB/s; %s of %d peers connected (%s s), %s dropped, "
         "fewest %s; %s ever unchoked in %s s; %.0f MB/s to all; seed CPU %s s"
         % (number, client, single["rate"] / 1e6, many["connected"], args.peers,  # type: ignore
            many["connect_seconds"], many["dropped"], many["fewest_during_run"],
            many["ever_unchoked"], many["seconds"], many["rate"] / 1e6,  # type: ignore
            "%.1f" % result["cpu"] if result["cpu"] is not None else "-"))
    if many["close_reasons"]:
        note("        connections closed: %s" % json.dumps(many["close_reasons"]))
    return result


def client_order(names: Sequence[str], number: int) -> List[str]:
    """The clients of run `number` (from 1): each run starts with the next one."""
    shift = (number - 1) % len(names)
    return list(names[shift:]) + list(names[:shift])


# -------------------------------------------------------------------------------------- report

def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return common.median(present) if present else None


def summarise(runs: Sequence[Dict[str, object]]) -> Dict[str, Optional[float]]:
    """One client's runs -> its figures: medians, but the most dropped in any run."""
    many = [r["many"] for r in runs]
    singles = [r["single"]["rate"] for r in runs]  # type: ignore[index]
    return {
        "connected": _median([m["connected"] for m in many]),  # type: ignore[index]
        "dropped": max((m["dropped"] for m in many), default=None),  # type: ignore[index]
        "fewest": _median([m["fewest_during_run"] for m in many]),  # type: ignore[index]
        "unchoked": _median([m["ever_unchoked"] for m in many]),  # type: ignore[index]
        "single_rate": _median(singles),  # type: ignore[arg-type]
        "many_rate": _median([m["rate"] for m in many]),  # type: ignore[index]
        "ratio": _median([m["rate"] / s if s else None  # type: ignore[index,operator]
                          for m, s in zip(many, singles)]),
        "rss": _median([r["rss"] for r in runs]),  # type: ignore[misc]
        "anon": _median([r["anon"] for r in runs]),  # type: ignore[misc]
        "cpu": _median([r["cpu"] for r in runs]),  # type: ignore[misc]
        "cpu_total": _median([r["cpu_total"] for r in runs]),  # type: ignore[misc]
    }


def table_rows(summaries: Dict[str, Optional[Dict[str, Optional[float]]]],
               names: Sequence[str], peers: int, duration: float) -> List[List[str]]:
    """The final table: one row per figure, one column per client, then the target."""
    mb = lambda v: "%.0f MB/s" % (v / 1e6)  # noqa: E731
    rows = [  # label, figure, format, target
        ("peers connected", "connected", lambda v: "%d of %d" % (v, peers), "all"),
        ("dropped during the run", "dropped", lambda v: "%d" % v, "0"),
        ("fewest connected during the run", "fewest", lambda v: "%d" % v, "-"),
        ("distinct peers ever unchoked", "unchoked", lambda v: "%d in %.0f s" % (v, duration),
         "-"),
        ("upload to one peer alone", "single_rate", mb, "-"),
        ("upload to all peers", "many_rate", mb, "-"),
        ("ratio all / one (same run)", "ratio", lambda v: "%.2f" % v, ">= %.2f" % TARGET_RATIO),
        ("seed peak RSS (VmHWM)", "rss", common.human_bytes,
         "< %s" % common.human_bytes(TARGET_RSS)),
        ("seed peak anonymous RSS", "anon", common.human_bytes, "-"),
        ("seed CPU, %d-peer run" % peers, "cpu", lambda v: "%.1f s" % v, "-"),
        ("seed CPU, whole life", "cpu_total", lambda v: "%.1f s" % v, "-"),
    ]
    table = []
    for label, key, fmt, target in rows:
        cells = []
        for name in names:
            value = (summaries.get(name) or {}).get(key)
            cells.append(fmt(value) if value is not None else "-")
        table.append([label] + cells + [target])
    return table


def bench_command(argv: Sequence[str], client: str) -> str:
    """The command that repeats this bench for one client: argv with its --clients replaced."""
    kept: List[str] = []
    skip = False
    for arg in argv:
        if skip or arg.startswith("--clients="):
            skip = False
            continue
        if arg == "--clients":
            skip = True
            continue
        kept.append(arg)
    return common.shell_command(["python3", "bench/bench_peers.py"] + kept
                                + ["--clients", client], cwd=common.REPO)


def report(results: Dict[str, List[Dict[str, object]]], errors: Dict[str, str],
           names: Sequence[str], args: argparse.Namespace,
           lt_facts: Optional[Tuple[str, int, int]], argv: Sequence[str]) -> None:
    summaries = {n: summarise(results[n]) if results[n] else None for n in names}
    headers = ["figure"] + ["%s (%d run%s)" % (n if n != "lt" or not lt_facts else
                                               "lt " + lt_facts[0], len(results[n]),
                                               "" if len(results[n]) == 1 else "s")
                            for n in names] + ["target"]
    note("")
    common.print_table(headers, table_rows(summaries, names, args.peers, args.duration))
    note("medians over the runs (dropped: the most in any run); peers as the load saw them, "
         "from %d source addresses" % args.sources)
    if lt_facts is not None:
        note("lt: libtorrent %s at its default connections_limit, %d (plus connections_slack "
             "%d while accepting), not raised;\n    lt_helper's settings changed: %s"
             % (lt_facts[0], lt_facts[1], lt_facts[2], ", ".join(LT_SETTINGS)))
    for name in names:
        if name in errors:
            note("%s: failed: %s" % (name, errors[name]))
        note("%s: reproduce with %s" % (name, bench_command(argv, name)))
        if results[name]:
            seed_cmd, single_cmd, many_cmd = results[name][0]["commands"]  # type: ignore[misc]
            note("    seed as run:  %s\n    one peer:     %s\n    all peers:    %s"
                 % (seed_cmd, single_cmd, many_cmd))


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default=",".join(CLIENT_NAMES),
                        help="comma-separated seeds to measure, in order (default sta,lt)")
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--sources", type=int,
                        help="load-side addresses (default one per peer; STA takes %d peers "
                             "per address, libtorrent one)" % connlimits.MAX_PER_HOST)
    parser.add_argument("--size", type=common.parse_size, default=common.parse_size("256MiB"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--single-duration", type=float, default=10.0)
    parser.add_argument("--profile", metavar="FILE", help="run the STA seed under cProfile")
    args = parser.parse_args(argv)
    try:
        args.client_names = parse_clients(args.clients)
    except ValueError as exc:
        parser.error(str(exc))
    if args.sources is None:
        args.sources = min(args.peers, MAX_SOURCES)
    if min(args.peers, args.sources, args.runs) < 1 or min(args.duration,
                                                           args.single_duration) <= 0:
        parser.error("--peers, --sources, --runs and the durations must be positive")
    if args.sources > MAX_SOURCES:
        parser.error("--sources is at most %d" % MAX_SOURCES)
    if args.peers > connlimits.MAX_PER_HOST * args.sources:
        parser.error("--sources %d carry at most %d peers (%d each)" % (
            args.sources, connlimits.MAX_PER_HOST * args.sources, connlimits.MAX_PER_HOST))
    return args


def run_all(nets: Namespaces, names: Sequence[str], torrent: str, args: argparse.Namespace,
            workdir: str) -> Tuple[Dict[str, List[Dict[str, object]]], Dict[str, str]]:
    """Every run, the clients interleaved; a client that fails is reported and left out of
    the runs after, the others go on."""
    results: Dict[str, List[Dict[str, object]]] = {n: [] for n in names}
    errors: Dict[str, str] = {}
    for number in range(1, args.runs + 1):
        for name in client_order(names, number):
            if name in errors:
                continue
            try:
                results[name].append(measure(nets, name, torrent, args, workdir, number))
            except BenchError as exc:
                errors[name] = str(exc)
                note("run %d, %s: failed: %s" % (number, name, exc))
    return results, errors


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        sys.stderr.write("bench_peers: needs root to make network namespaces; not run\n")
        return 1
    signal.signal(signal.SIGTERM, lambda signum, frame: _interrupt())
    workdir = tempfile.mkdtemp(prefix="sta-bench-peers-")
    nets = Namespaces(args.sources)
    try:
        names, notes = available_clients(args.client_names, clients.have_libtorrent)
        for text in notes:
            note(text)
        lt_facts = lt_defaults() if "lt" in names else None
        torrent = make_torrent(workdir, "peers.bin", args.size)
        nets.make()
        note("seeds in namespace %s at %s:%d; load from %d addresses in %s"
             % (nets.seed_ns, SEED_ADDRESS, SEED_PORT, len(nets.sources), nets.load_ns))
        results, errors = run_all(nets, names, torrent, args, workdir)
        report(results, errors, names, args, lt_facts, argv)
        if args.profile and results.get("sta"):
            note("profile of the last STA seed: %s (python3 -m pstats %s)"
                 % (args.profile, args.profile))
        return 0 if any(results.values()) else 1
    except BenchError as exc:
        sys.stderr.write("bench_peers: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("bench_peers: interrupted; cleaning up\n")
        return 130
    finally:
        nets.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def _interrupt() -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
