"""Bandwidth in the lab: one seed whose uplink is 100 Mbit/s, 20 ms round trip to a downloader.

    python3 bench/lab.py bandwidth [--size 128MiB] [--runs 3] [--rate 100] [--rtt 20]

Two hosts on the bridge: the seed (10.88.0.1, its uplink shaped by tbf) and the downloader
(10.88.0.2), which reaches the seed through bench/lab_relay.py on its own host (each direction
held for half the round trip). Per run, in turn:

- tcp: what the link carries: a plain Python socket source on the seed's host sends --size
  bytes through the relay to a sink on the downloader's;
- sta: `sta seed` and `sta download --peer <relay>` (plain BitTorrent: --encryption off, as
  libtorrent picks plaintext against itself);
- lt: libtorrent on both ends (tests/interop/lt_helper.py).

The rate is measured in the same place for all three: by the relay, on the downloader's side,
from the first 16 KiB delivered to the last byte (payload and the protocol's few framing bytes,
under 0.1 %). Medians of --runs runs; the runs of the three kinds alternate so that load from
elsewhere on the machine falls on all of them alike. Each STA and libtorrent download is
compared with the seed's file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Dict, List, Optional, Tuple

from bench import common, lab
from bench.lab import Host, Lab, LabError

RELAY = os.path.join(common.REPO, "bench", "lab_relay.py")
SEED_PORT = 6881  # each host is its own namespace: a fixed port cannot collide
PIECE_LENGTH = 256 * 1024  # what libtorrent picks for 128 MiB
# Deadline of one transfer: 128 MiB at 100 Mbit/s is 11 s; this only catches a hung client.
TRANSFER_TIMEOUT = 180.0
TARGET = 0.95  # of the measured TCP rate
KINDS = ("tcp", "sta", "lt")
STA_FLAGS = ("--encryption", "off") + lab.STA_LAB_FLAGS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bandwidth", help="raw TCP, STA and libtorrent over a shaped, delayed link")
    p.add_argument("--size", default="128MiB", type=lab.size_arg,
                   help="bytes to move (default 128MiB)")
    p.add_argument("--runs", type=int, default=3, help="runs of each kind; medians shown")
    p.add_argument("--rate", type=float, default=100.0, help="seed uplink in Mbit/s")
    p.add_argument("--rtt", type=float, default=20.0, help="round trip in ms")
    p.set_defaults(run=run)


class Bench:
    def __init__(self, lb: Lab, args: argparse.Namespace) -> None:
        self.lb, self.args = lb, args
        self.size = args.size
        self.seed = lb.add_host("seed", 1)
        self.down = lb.add_host("down", 2)
        lb.shape(self.seed, args.rate)
        self.folder = os.path.join(lb.workdir, "seed")
        self.data = lab.make_data(os.path.join(self.folder, "bench.bin"), self.size, seed=7)
        self.torrent = os.path.join(lb.workdir, "bench.torrent")
        self.commands: Dict[str, List[str]] = {}

    def make_torrent(self) -> None:
        if lab.have_libtorrent():
            cmd = lab.lt_helper("create", self.data, "--out", self.torrent,
                                "--piece-length", PIECE_LENGTH)
        else:
            cmd = lab.sta("create", self.data, "-t", "127.0.0.1", "-o", self.torrent,
                          "--piece-length", PIECE_LENGTH)
        self.lb.run(self.seed, cmd, "create", lab.READY_TIMEOUT)

    def relay(self) -> Tuple[common.Child, int]:
        cmd = [sys.executable, RELAY, "relay", "--listen", "127.0.0.1:0",
               "--to", "%s:%d" % (self.seed.address, SEED_PORT),
               "--delay-ms", "%g" % (self.args.rtt / 2)]
        child = self.lb.spawn(self.down, cmd, "relay")
        port = int(lab.wait_line(child, "LISTENING ").split()[1])
        return child, port

    def start_seed(self, kind: str) -> Tuple[common.Child, List[str]]:
        if kind == "tcp":
            cmd = [sys.executable, RELAY, "source", "--port", SEED_PORT, "--bytes", self.size]
            ready = "LISTENING "
        elif kind == "sta":
            cmd = lab.sta("seed", self.torrent, "--data", self.folder, "--port", SEED_PORT,
                          *STA_FLAGS)
            ready = "Seeding "
        else:
            cmd = lab.lt_helper("seed", self.torrent, "--data", self.folder, "--port", SEED_PORT,
                                "--setting", "listen_interfaces=0.0.0.0:%d" % SEED_PORT)
            ready = "SEEDING"
        child = self.lb.spawn(self.seed, cmd, kind + "-seed")
        lab.wait_line(child, ready)
        return child, cmd

    def download_cmd(self, kind: str, port: int, out: str) -> List[str]:
        peer = "127.0.0.1:%d" % port
        if kind == "tcp":
            return [sys.executable, RELAY, "sink", "--to", peer]
        if kind == "sta":
            return lab.sta("download", self.torrent, "-o", out, "--peer", peer, *STA_FLAGS)
        return lab.lt_helper("download", self.torrent, "--out", out, "--peer", peer,
                             "--timeout", "%.0f" % TRANSFER_TIMEOUT)

    def once(self, kind: str) -> float:
        """One transfer of `kind`; returns the downloader-side rate in bytes a second."""
        out = os.path.join(self.lb.workdir, "out")
        shutil.rmtree(out, ignore_errors=True)
        seed, seed_cmd = self.start_seed(kind)
        relay, port = self.relay()
        cmd = self.download_cmd(kind, port, out)
        try:
            self.lb.run(self.down, cmd, kind + "-download", TRANSFER_TIMEOUT)
        finally:
            self.lb.stop([relay, seed])
        if kind != "tcp" and not lab.same_file(self.data, os.path.join(out, "bench.bin")):
            raise LabError("%s: the downloaded file differs from the seed's" % kind)
        shutil.rmtree(out, ignore_errors=True)
        self.commands.setdefault(kind, [lab.command_line(self.seed, seed_cmd),
                                        lab.command_line(self.down, relay.cmd[6:]),
                                        lab.command_line(self.down, cmd)])
        lines = [ln for ln in relay.output().splitlines() if ln.startswith("DOWN ")]
        if not lines:
            raise LabError("%s: the relay reported nothing\n%s" % (kind, relay.tail()))
        moved, seconds = float(lines[-1].split()[1]), float(lines[-1].split()[2])
        if moved < self.size * 0.9 or seconds <= 0:
            raise LabError("%s: the relay saw only %d bytes" % (kind, moved))
        return moved / seconds


def report(bench: Bench, rates: Dict[str, List[float]], skipped: Dict[str, str]) -> bool:
    args = bench.args
    med = {k: common.median(v) for k, v in rates.items() if v}
    tcp, lt = med.get("tcp"), med.get("lt")
    print("== lab bandwidth: python3 bench/lab.py bandwidth --size %d --runs %d --rate %g "
          "--rtt %g" % (args.size, args.runs, args.rate, args.rtt))
    print("   seed uplink %g Mbit/s (tbf), %g ms round trip (relay), %s, median of %d runs"
          % (args.rate, args.rtt, common.human_bytes(bench.size), args.runs))
    rows = []
    for kind in KINDS:
        if kind not in med:
            rows.append([kind, "-", "-", "-", "-", skipped.get(kind, "")])
            continue
        rate = med[kind]
        rows.append([kind, "%.1f" % (rate * 8 / 1e6),
                     "%.1f%%" % (100 * rate / tcp) if tcp else "-",
                     "%.2f" % (rate / lt) if lt else "-",
                     " ".join("%.1f" % (r * 8 / 1e6) for r in rates[kind]), ""])
    common.print_table(["   kind", "Mbit/s", "of tcp", "x lt", "runs Mbit/s", "note"],
                       [["   " + r[0]] + r[1:] for r in rows])
    met = None
    if "sta" in med and tcp:
        met = med["sta"] >= TARGET * tcp
        print("   target: STA >= %d%% of the measured TCP rate: %s (%.1f%%)"
              % (TARGET * 100, "met" if met else "NOT met", 100 * med["sta"] / tcp))
    for kind, commands in bench.commands.items():
        print("   %s:" % kind)
        for command in commands:
            print("     " + command)
    return bool(met)


def run(lb: Lab, args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise LabError("--runs must be at least 1")
    bench = Bench(lb, args)
    bench.make_torrent()
    skipped: Dict[str, str] = {}
    if not lab.have_libtorrent():
        skipped["lt"] = "libtorrent not importable by %s" % lab.LT_PYTHON
    rates: Dict[str, List[float]] = {k: [] for k in KINDS if k not in skipped}
    for n in range(args.runs):
        for kind in rates:
            rate = bench.once(kind)
            rates[kind].append(rate)
            lab.note("bandwidth %s run %d/%d: %.1f Mbit/s"
                     % (kind, n + 1, args.runs, rate * 8 / 1e6))
    report(bench, rates, skipped)
    return 0
