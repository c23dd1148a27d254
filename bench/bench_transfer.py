"""One seed, one downloader, one file on loopback: wall time, MB/s and peak memory per client pair.

    python3 bench/bench_transfer.py [--size 1GiB] [--runs N] [--only sta|lt|aria2|sta-tls]
                                    [--pair SEED:DOWNLOADER]... [--piece-length 1M] [--timeout S]

Clients: sta (python sta.py), sta-tls (the same with STA_TLS_FLAGS), lt (libtorrent through
tests/interop/lt_helper.py), aria2 (aria2c; it learns peers only from a tracker, so its runs use
opentracker on 127.0.0.1). The file and the .torrent are made once and shared by every client.

"time" is the downloader's wall time from process start to exit (start-up and, for aria2, the
tracker round trip included; seeds are ready before it starts). MB are 10^6 bytes. "x lt" is the
time divided by libtorrent's time. Peak RSS includes file pages a client maps into memory
(libtorrent 2.0 maps the torrent's files), so the anonymous peak is printed beside it.
"CPU s/GiB" is user + system CPU seconds per GiB moved (start-up and the downloader's hashing
included), read from /proc/PID/stat at exit; beside it the ratio to libtorrent's in the same run.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from bench.common import BenchError, Child, GIB  # noqa: E402
from tests.interop import clients  # noqa: E402

STA = os.path.join(common.REPO, "sta.py")
# Flags for both sides of an STA transfer: plain BitTorrent (as libtorrent and aria2 speak it),
# and TLS between the two STA nodes (the default between STA nodes).
# Loopback only: no DHT and no multicast discovery (the bench's peers are given with --peer).
STA_LOCAL_FLAGS: Tuple[str, ...] = ("--no-dht", "--no-lsd")
STA_PLAIN_FLAGS: Tuple[str, ...] = ("--encryption", "off") + STA_LOCAL_FLAGS
STA_TLS_FLAGS: Tuple[str, ...] = ("--encryption", "require") + STA_LOCAL_FLAGS

DEFAULT_SIZE = "1GiB"
# 1 MiB pieces: what libtorrent and qBittorrent pick for a file of about 1 GiB.
DEFAULT_PIECE_LENGTH = "1M"
# Deadline of one transfer: libtorrent moves 1 GiB in about 5 s here, so 120 s per GiB only
# catches a hung client; the fixed part covers start-up on a slow machine.
TIMEOUT_BASE = 30.0
TIMEOUT_PER_GIB = 120.0
# Deadline for a seed to check its data and listen (checking 1 GiB takes 1-10 s).
SEED_READY_TIMEOUT = 120.0
TRACKER_READY_TIMEOUT = 10.0
DATA_SEED = 1  # make_file seed: the same bytes on every run and machine
DEFAULT_PAIRS = (("sta", "sta"), ("lt", "lt"), ("aria2", "aria2"), ("sta-tls", "sta-tls"))


class Skip(Exception):
    """A pair that cannot run on this machine; the message says why."""


class Context:
    """Everything a client needs to seed or download the shared torrent."""

    def __init__(self, workdir: str, size: int, piece_length: int, timeout: float) -> None:
        self.workdir = workdir
        self.size = size
        self.piece_length = piece_length
        self.timeout = timeout
        self.seed_dir = os.path.join(workdir, "seed")
        self.name = "bench.bin"
        self.data = os.path.join(self.seed_dir, self.name)
        self.torrent = os.path.join(workdir, "bench.torrent")
        self.info_hash = ""
        self.tracker: Optional[str] = None
        self.children: List[Child] = []
        self.counter = 0

    def log(self, what: str) -> str:
        self.counter += 1
        return os.path.join(self.workdir, "%02d-%s.log" % (self.counter, what))

    def spawn(self, cmd: Sequence[str], what: str) -> Child:
        child = Child(cmd, self.log(what), cwd=common.REPO)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            child.stop()
        self.children = []


# --------------------------------------------------------------------------------------- clients

class Client:
    name = ""
    needs_tracker = False  # a downloader that cannot be pointed at a peer

    def unavailable(self) -> Optional[str]:
        """None when the client can run here, else the reason."""
        return None

    def start_seed(self, ctx: Context) -> Tuple[Child, int]:
        raise NotImplementedError

    def download_cmd(self, ctx: Context, out_dir: str, seed_port: int) -> List[str]:
        raise NotImplementedError


class StaClient(Client):
    def __init__(self, name: str, flags: Sequence[str]) -> None:
        self.name = name
        self.flags = list(flags)

    def unavailable(self) -> Optional[str]:
        if not os.path.exists(STA):
            return "sta.py not available yet"
        if self.name == "sta-tls" and not self.flags:
            return "no encryption flags yet (set STA_TLS_FLAGS in bench/bench_transfer.py)"
        return None

    def start_seed(self, ctx: Context) -> Tuple[Child, int]:
        port = clients.free_port()
        cmd = [sys.executable, STA, "seed", ctx.torrent, "--data", ctx.seed_dir,
               "--port", str(port)] + self.flags
        child = ctx.spawn(cmd, self.name + "-seed")
        # Ready means checked: a peer that connects while the seed still checks is turned away.
        child.wait_for_output(lambda line: line if line.startswith("Seeding ") else None,
                              SEED_READY_TIMEOUT, "'Seeding' line")
        return child, port

    def download_cmd(self, ctx: Context, out_dir: str, seed_port: int) -> List[str]:
        return [sys.executable, STA, "download", ctx.torrent, "-o", out_dir,
                "--peer", "127.0.0.1:%d" % seed_port] + self.flags


class LtClient(Client):
    name = "lt"

    def unavailable(self) -> Optional[str]:
        if not clients.have_libtorrent():
            return "libtorrent not importable by %s" % clients.LT_PYTHON
        return None

    def start_seed(self, ctx: Context) -> Tuple[Child, int]:
        # A fixed port rather than 0 so that the printed commands can be pasted as they are.
        cmd = clients.lt_helper_cmd("seed", ctx.torrent, "--data", ctx.seed_dir,
                                    "--port", str(clients.free_port()))
        if ctx.tracker:
            cmd += ["--tracker", ctx.tracker]
        child = ctx.spawn(cmd, "lt-seed")
        port = child.wait_for_output(
            lambda line: line.split()[1] if line.startswith("LISTENING ") else None,
            SEED_READY_TIMEOUT, "LISTENING line")
        return child, int(port)

    def download_cmd(self, ctx: Context, out_dir: str, seed_port: int) -> List[str]:
        return clients.lt_helper_cmd("download", ctx.torrent, "--out", out_dir,
                                     "--peer", "127.0.0.1:%d" % seed_port,
                                     "--timeout", "%.0f" % ctx.timeout)


class Aria2Client(Client):
    name = "aria2"
    needs_tracker = True

    def unavailable(self) -> Optional[str]:
        if not clients.which("aria2c"):
            return "aria2c not installed"
        return None

    def start_seed(self, ctx: Context) -> Tuple[Child, int]:
        port = clients.free_port()
        child = ctx.spawn(clients.aria2c_seed_cmd(ctx.torrent, ctx.seed_dir, port, ctx.tracker),
                          "aria2-seed")
        child.wait_for_output(lambda line: line if clients.ARIA2_LISTENING in line else None,
                              SEED_READY_TIMEOUT, "listening line")
        return child, port

    def download_cmd(self, ctx: Context, out_dir: str, seed_port: int) -> List[str]:
        return clients.aria2c_download_cmd(ctx.torrent, out_dir, clients.free_port(),
                                           ctx.tracker)


CLIENTS: Dict[str, Client] = {
    "sta": StaClient("sta", STA_PLAIN_FLAGS),
    "sta-tls": StaClient("sta-tls", STA_TLS_FLAGS),
    "lt": LtClient(),
    "aria2": Aria2Client(),
}


# ----------------------------------------------------------------------------------------- setup

def prepare(ctx: Context) -> None:
    piece_length = ctx.piece_length
    """Write the data file and the one .torrent every client uses."""
    t0 = time.monotonic()
    clients.make_file(ctx.data, ctx.size, seed=DATA_SEED)
    note("wrote %s of data in %.1f s" % (common.human_bytes(ctx.size), time.monotonic() - t0))
    t0 = time.monotonic()
    if clients.have_libtorrent():
        cmd = clients.lt_helper_cmd("create", ctx.data, "--out", ctx.torrent,
                                    "--piece-length", str(piece_length))
    elif clients.which("mktorrent"):
        if piece_length & (piece_length - 1):
            raise BenchError("mktorrent needs a power-of-two piece length")
        cmd = ["mktorrent", "-l", str(piece_length.bit_length() - 1), "-o", ctx.torrent,
               ctx.data]
    else:
        raise BenchError("need libtorrent or mktorrent to make the shared .torrent")
    rc = ctx.spawn(cmd, "create").wait(ctx.timeout)
    ctx.stop_all()
    if rc != 0:
        raise BenchError("making the torrent failed: %s" % common.shell_command(cmd))
    ctx.info_hash = info_hash_of(ctx.torrent)
    note("made %s (%s pieces, info hash %s) in %.1f s"
         % (os.path.basename(ctx.torrent), common.human_bytes(piece_length), ctx.info_hash,
            time.monotonic() - t0))


def info_hash_of(torrent: str) -> str:
    import hashlib
    from sta import bencode
    with open(torrent, "rb") as f:
        raw = bencode.raw_value(f.read(), b"info")
    if raw is None:
        raise BenchError("%s has no info dictionary" % torrent)
    return hashlib.sha1(raw).hexdigest()


def start_tracker(ctx: Context) -> Child:
    """opentracker on a fresh port, allowed to serve the bench torrent only."""
    if not clients.which("opentracker"):
        raise Skip("aria2c needs a tracker and opentracker is not installed")
    tdir = os.path.join(ctx.workdir, "tracker")
    os.makedirs(tdir, exist_ok=True)
    os.chmod(tdir, 0o755)  # opentracker drops to user nobody inside it
    whitelist = clients.write_whitelist(tdir, [ctx.info_hash])
    port = clients.free_port()
    child = ctx.spawn(clients.opentracker_cmd(port, tdir, whitelist), "opentracker")
    common.wait_for_port(port, TRACKER_READY_TIMEOUT, child)
    ctx.tracker = "http://127.0.0.1:%d/announce" % port
    return child


# ------------------------------------------------------------------------------------------- run

class Result:
    def __init__(self) -> None:
        self.times: List[float] = []
        self.seed_rss: List[int] = []
        self.seed_anon: List[int] = []
        self.dl_rss: List[int] = []
        self.dl_anon: List[int] = []
        self.seed_cpu: List[float] = []
        self.dl_cpu: List[float] = []
        self.rss_sources = set()
        self.commands: List[str] = []
        self.error: Optional[str] = None


def run_once(ctx: Context, seed: Client, down: Client, result: Result) -> None:
    tracker = None
    if down.needs_tracker:
        if isinstance(seed, StaClient):
            raise Skip("STA seed cannot be told a tracker URL yet; %s needs one" % down.name)
        tracker = start_tracker(ctx)
    try:
        seed_child, port = seed.start_seed(ctx)
        if tracker is not None:
            clients.wait_for_seeders(ctx.tracker, ctx.info_hash, 1, TRACKER_READY_TIMEOUT)
        out_dir = os.path.join(ctx.workdir, "out")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        cmd = down.download_cmd(ctx, out_dir, port)
        dl = ctx.spawn(cmd, down.name + "-download")
        rc = dl.wait(ctx.timeout)
        seed_child.stop()
        if rc != 0:
            raise BenchError("%s download exited with status %d\n%s" % (down.name, rc, dl.tail()))
        got = os.path.join(out_dir, ctx.name)
        if not os.path.exists(got) or not filecmp.cmp(ctx.data, got, shallow=False):
            raise BenchError("%s download finished but %s differs from the seed's file"
                             % (down.name, got))
        result.times.append(dl.elapsed or 0.0)
        for values, value in ((result.seed_rss, seed_child.memory.peak_rss),
                              (result.seed_anon, seed_child.memory.peak_anon),
                              (result.dl_rss, dl.memory.peak_rss),
                              (result.dl_anon, dl.memory.peak_anon)):
            if value is not None:
                values.append(value)
        for cpus, cpu in ((result.seed_cpu, seed_child.memory.cpu_seconds),
                          (result.dl_cpu, dl.memory.cpu_seconds)):
            if cpu is not None:
                cpus.append(cpu)
        result.rss_sources.update((seed_child.memory.source, dl.memory.source))
        if not result.commands:
            result.commands = [common.shell_command(c.cmd) for c in ctx.children]
        shutil.rmtree(out_dir, ignore_errors=True)
    finally:
        ctx.stop_all()
        ctx.tracker = None


def run_pair(ctx: Context, seed: Client, down: Client, runs: int) -> Result:
    result = Result()
    for client in {seed.name: seed, down.name: down}.values():
        reason = client.unavailable()
        if reason:
            result.error = "skipped: " + reason
            return result
    for n in range(runs):
        try:
            run_once(ctx, seed, down, result)
        except Skip as exc:
            result.error = "skipped: %s" % exc
            return result
        except BenchError as exc:
            result.error = "failed: %s" % exc
            return result
        note("%s -> %s run %d/%d: %.2f s" % (seed.name, down.name, n + 1, runs, result.times[-1]))
    return result


def _cpu_cell(cpus: List[float], lt_cpu: Optional[float], size: int) -> str:
    """CPU seconds per GiB moved, and the ratio to libtorrent's CPU seconds in the same run."""
    if not cpus:
        return "-"
    cpu = common.median(cpus)
    cell = "%.2f" % (cpu * GIB / size)
    return cell + (" (%.2fx lt)" % (cpu / lt_cpu) if lt_cpu else "")


def report(ctx: Context, args: argparse.Namespace,
           results: Dict[Tuple[str, str], Result]) -> None:
    pairs, runs = args.pairs, args.runs
    lt = results.get(("lt", "lt"))
    lt_time = common.median(lt.times) if lt is not None and lt.times else None
    lt_cpu = [common.median(v) if lt is not None and v else None
              for v in ((lt.seed_cpu, lt.dl_cpu) if lt is not None else ((), ()))]
    headers = ["pair", "time s", "MB/s", "x lt", "seed RSS", "seed anon", "dl RSS", "dl anon",
               "seed CPU s/GiB", "dl CPU s/GiB"]
    rows = []
    for pair in pairs:
        r = results[pair]
        label = "%s -> %s" % pair
        if not r.times:
            rows.append([label] + ["-"] * (len(headers) - 1))
            continue
        t = common.median(r.times)
        rows.append([
            label, "%.2f" % t, "%.0f" % (ctx.size / t / 1e6),
            "%.2f" % (t / lt_time) if lt_time else "-",
            *(common.human_bytes(common.median(v)) if v else "-"
              for v in (r.seed_rss, r.seed_anon, r.dl_rss, r.dl_anon)),
            *(_cpu_cell(v, base, ctx.size) for v, base in zip((r.seed_cpu, r.dl_cpu), lt_cpu)),
        ])
    print()
    print("transfer of %s (%s pieces) on 127.0.0.1, %s%s"
          % (common.human_bytes(ctx.size), common.human_bytes(ctx.piece_length),
             "median of %d runs" % runs if runs > 1 else "1 run", ", memory from " +
             ", ".join(sorted({s for r in results.values() for s in r.rss_sources}) or ["-"])))
    common.print_table(headers, rows)
    print()
    for pair in pairs:
        r = results[pair]
        label = "%s -> %s" % pair
        if r.error:
            print("%s: %s" % (label, r.error))
        if r.times:
            if len(r.times) > 1:
                print("%s: times %s" % (label, ", ".join("%.2f" % t for t in r.times)))
            print("%s: reproduce with\n  %s\n  or by hand (data and torrent kept by --keep):"
                  % (label, bench_command(args, pair)))
            for command in r.commands:
                print("    " + command)


def bench_command(args: argparse.Namespace, pair: Tuple[str, str]) -> str:
    cmd = [os.path.basename(sys.executable), "bench/bench_transfer.py", "--size", args.size,
           "--runs", str(args.runs), "--piece-length", args.piece_length]
    if args.timeout:
        cmd += ["--timeout", "%g" % args.timeout]
    if args.workdir:
        cmd += ["--workdir", args.workdir]
    return common.shell_command(cmd + ["--pair", "%s:%s" % pair])


def note(text: str) -> None:
    sys.stderr.write("bench_transfer: %s\n" % text)
    sys.stderr.flush()


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_transfer",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default=DEFAULT_SIZE, help="bytes to move (default 1GiB)")
    parser.add_argument("--runs", type=int, default=1, help="runs per pair; median shown")
    parser.add_argument("--only", choices=sorted(CLIENTS), help="just this client's own pair")
    parser.add_argument("--pair", action="append", default=[], metavar="SEED:DOWNLOADER",
                        help="a pair to run, e.g. lt:sta (repeatable; replaces the defaults)")
    parser.add_argument("--piece-length", default=DEFAULT_PIECE_LENGTH)
    parser.add_argument("--timeout", type=float,
                        help="deadline of one transfer in seconds (default 30 + 120 per GiB)")
    parser.add_argument("--workdir", help="where to put the temporary directory")
    parser.add_argument("--no-baseline", action="store_true",
                        help="do not add the libtorrent pair that the x lt column needs")
    parser.add_argument("--keep", action="store_true",
                        help="keep the data, torrent and logs (the path is printed)")
    args = parser.parse_args(argv)
    pairs: List[Tuple[str, str]] = []
    for text in args.pair:
        seed, sep, down = text.partition(":")
        if not sep or seed not in CLIENTS or down not in CLIENTS:
            parser.error("bad --pair %r: use SEED:DOWNLOADER with clients %s"
                         % (text, ", ".join(sorted(CLIENTS))))
        pairs.append((seed, down))
    if args.only:
        pairs.append((args.only, args.only))
    args.pairs = pairs or list(DEFAULT_PAIRS)
    if ("lt", "lt") not in args.pairs and not args.no_baseline:
        # Every figure is reported relative to libtorrent, so its pair always runs.
        args.pairs.append(("lt", "lt"))
    try:
        args.size_bytes = common.parse_size(args.size)
        args.piece_bytes = common.parse_size(args.piece_length)
    except ValueError as exc:
        parser.error(str(exc))
    if args.runs < 1 or args.size_bytes < 1:
        parser.error("--runs and --size must be positive")
    return args


def _terminate(signum, frame):  # SIGTERM cleans up like Ctrl-C
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    timeout = args.timeout or TIMEOUT_BASE + TIMEOUT_PER_GIB * args.size_bytes / GIB
    workdir = tempfile.mkdtemp(prefix="sta-bench-", dir=args.workdir)
    ctx = Context(workdir, args.size_bytes, args.piece_bytes, timeout)
    previous = signal.signal(signal.SIGTERM, _terminate)
    # Also when started in the background by a shell, which makes it ignore SIGINT.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        needed = {c for pair in args.pairs for c in pair}
        if any(CLIENTS[c].unavailable() is None for c in needed):
            prepare(ctx)
        results = {}
        # libtorrent first: the other pairs are reported relative to it.
        order = sorted(args.pairs, key=lambda p: p != ("lt", "lt"))
        for pair in order:
            results[pair] = run_pair(ctx, CLIENTS[pair[0]], CLIENTS[pair[1]], args.runs)
        report(ctx, args, results)
        return 0
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    except BenchError as exc:
        note(str(exc))
        return 1
    finally:
        ctx.stop_all()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if args.keep:
            note("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
