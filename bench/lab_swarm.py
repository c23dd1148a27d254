"""A swarm in the lab: one seed and 8 downloaders, every host's uplink 50 Mbit/s.

    python3 bench/lab.py swarm [--size 64MiB] [--downloaders 8] [--rate 50] [--runs 1]

Hosts: an STA tracker (10.88.0.2, `sta tracker`, the only way peers find each other), the seed
(10.88.0.1) and the downloaders (10.88.0.11...), each shaped to --rate Mbit/s by tbf on its
uplink. The downloaders all start at once and keep seeding once complete, as people in a lab
leave their clients running. The same swarm runs once per client (--clients): STA on every node
(plain BitTorrent, --encryption off, as libtorrent picks plaintext against itself), the same
with the seed super-seeding (BEP 16, `sta seed --super-seed`), then libtorrent on every node
(bench/lab_lt.py), normal and super-seeding, all with the same tracker and .torrent.

Figures, per client:
- the seed's upload per copy: what the seed's host sent on its link from the downloaders' start
  until its queues drained after the last one completed, divided by the file size (wire bytes,
  so IP/TCP headers are included, up to 5 % above the payload; target: <= 1.2); beside it the
  payload the seed itself reports (STA: its summary at exit, libtorrent: all_time_upload);
- when the last downloader completed, and the median downloader, from the moment they were
  started (start-up of the processes included): a seed alone at 50 Mbit/s needs
  downloaders x size / rate; a swarm that passes pieces on needs little more than size / rate.
  "x lt" divides by libtorrent's time with the same kind of seed (normal or super-seeding).
Completion is seen in each downloader's output ("download complete" at --log-level info for STA,
COMPLETE for lab_lt.py), read every POLL_SECONDS. Every downloaded file is compared with the
seed's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import time
from typing import Dict, List, Optional, Tuple

from bench import common, lab
from bench.lab import Host, Lab, LabError

LAB_LT = os.path.join(common.REPO, "bench", "lab_lt.py")
TRACKER_PORT = 4000
PEER_PORT = 6881
PIECE_LENGTH = 256 * 1024  # 256 pieces for 64 MiB: what libtorrent picks for that size
POLL_SECONDS = 0.1
# Deadline for the whole swarm: the seed alone would take 8 x 64 MiB at 50 Mbit/s = 86 s.
SWARM_TIMEOUT = 300.0
STA_FLAGS = ("--encryption", "off") + lab.STA_LAB_FLAGS
TARGET_UPLOAD = 1.2
# Each client with a normal seed, and with its seed super-seeding (BEP 16: it reveals pieces one
# at a time so that the downloaders pass them on): `sta seed --super-seed`, libtorrent's
# super_seeding flag.
CLIENTS = ("sta", "sta-super", "lt", "lt-super")
# After the last downloader completes, what the seed already handed to TCP still goes out: the
# seed's sent bytes are read once they grow by less than SETTLE_BYTES in SETTLE_SECONDS (at most
# SETTLE_TIMEOUT later), so that the figure holds everything the seed sent for this swarm.
SETTLE_BYTES = 64 * 1024
SETTLE_SECONDS = 0.5
SETTLE_TIMEOUT = 10.0
_UPLOADED_RE = re.compile(r"uploaded ([0-9.]+) (B|KiB|MiB|GiB)")
_UNITS = {"B": 1, "KiB": common.KIB, "MiB": common.MIB, "GiB": common.GIB}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("swarm", help="one seed, several downloaders: STA and libtorrent")
    p.add_argument("--size", default="64MiB", type=lab.size_arg,
                   help="file size (default 64MiB)")
    p.add_argument("--downloaders", type=int, default=8)
    p.add_argument("--rate", type=float, default=50.0, help="every uplink, Mbit/s")
    p.add_argument("--runs", type=int, default=1, help="runs of each client; medians shown")
    p.add_argument("--clients", default=",".join(CLIENTS),
                   help="comma-separated, from %s" % ", ".join(CLIENTS))
    p.set_defaults(run=run)


class Outcome:
    def __init__(self) -> None:
        self.wire_ratio: List[float] = []
        self.payload_ratio: List[float] = []
        self.last: List[float] = []
        self.median: List[float] = []
        self.commands: List[str] = []


class Swarm:
    def __init__(self, lb: Lab, args: argparse.Namespace) -> None:
        self.lb, self.args = lb, args
        self.size = args.size
        self.tracker = lb.add_host("tracker", 2)
        self.seed = lb.add_host("seed", 1)
        self.peers = [lb.add_host("d%d" % (n + 1), 11 + n) for n in range(args.downloaders)]
        for host in [self.tracker, self.seed] + self.peers:
            lb.shape(host, args.rate)
        self.folder = os.path.join(lb.workdir, "seed")
        self.data = lab.make_data(os.path.join(self.folder, "swarm.bin"), self.size, seed=11)
        self.announce = "http://%s:%d/announce" % (self.tracker.address, TRACKER_PORT)
        self.torrent = os.path.join(lb.workdir, "swarm.torrent")
        if lab.have_libtorrent():
            cmd = lab.lt_helper("create", self.data, "--out", self.torrent, "--tracker",
                                self.announce, "--piece-length", PIECE_LENGTH)
        else:
            cmd = lab.sta("create", self.data, "-t", self.announce, "-o", self.torrent,
                          "--piece-length", PIECE_LENGTH)
        lb.run(self.seed, cmd, "create", lab.READY_TIMEOUT)
        self.info_hash = lab.info_hash(self.torrent)

    def node_cmd(self, client: str, folder: str, seeding: bool) -> Tuple[List[str], str, str]:
        """(command, the line that says it is ready, the line that says it is complete)."""
        extra = ["--super-seed"] if seeding and client.endswith("-super") else []
        if client.startswith("lt"):
            return ([lab.LT_PYTHON, LAB_LT, self.torrent, "--data", folder, "--port", PEER_PORT]
                    + extra, "COMPLETE", "COMPLETE")
        if seeding:
            return (lab.sta("seed", self.torrent, "--data", folder, "--port", PEER_PORT,
                            *STA_FLAGS, *extra), "Seeding ", "")
        return (lab.sta("download", self.torrent, "-o", folder, "--port", PEER_PORT, "--seed",
                        "--log-level", "info", *STA_FLAGS), "", "download complete")

    def once(self, client: str, outcome: Outcome) -> None:
        lb = self.lb
        tracker_cmd = lab.sta("tracker", "--port", TRACKER_PORT, "--db",
                              os.path.join(lb.workdir, "tracker-%s.db" % client))
        started_children = [lb.spawn(self.tracker, tracker_cmd, "tracker")]
        try:
            seed_cmd, ready, _ = self.node_cmd(client, self.folder, True)
            seed = lb.spawn(self.seed, seed_cmd, client + "-seed")
            started_children.append(seed)
            lab.wait_line(seed, ready)
            lab.wait_seeders(lb, self.tracker, self.announce, self.info_hash, 1)
            sent_before = self.seed.tx_bytes()
            downloads, commands = [], [lab.command_line(self.tracker, tracker_cmd),
                                       lab.command_line(self.seed, seed_cmd)]
            started = time.monotonic()
            for n, host in enumerate(self.peers):
                cmd, _, done = self.node_cmd(client, self.out_dir(n), False)
                downloads.append(lb.spawn(host, cmd, client + "-download"))
                commands.append(lab.command_line(host, cmd))
            started_children += downloads
            times = self.wait_complete(downloads, done, started)
            sent = self.settled_tx_bytes() - sent_before
            lb.stop(started_children)
            self.verify(client)
        finally:
            lb.stop(started_children)
        outcome.wire_ratio.append(sent / self.size)
        payload = seed_payload(seed.output())
        if payload is not None:
            outcome.payload_ratio.append(payload / self.size)
        outcome.last.append(max(times))
        outcome.median.append(common.median(times))
        outcome.commands = outcome.commands or commands

    def settled_tx_bytes(self) -> int:
        """The seed's sent bytes once its queues have drained (see SETTLE_BYTES)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        last = self.seed.tx_bytes()
        while time.monotonic() < deadline:
            time.sleep(SETTLE_SECONDS)
            now = self.seed.tx_bytes()
            if now - last < SETTLE_BYTES:
                return now
            last = now
        return last

    def out_dir(self, n: int) -> str:
        return os.path.join(self.lb.workdir, "d%d" % (n + 1))

    def wait_complete(self, downloads: List[common.Child], done: str,
                      started: float) -> List[float]:
        """Seconds from `started` to each downloader's completion line."""
        times: Dict[int, float] = {}
        deadline = started + SWARM_TIMEOUT
        while len(times) < len(downloads):
            for n, child in enumerate(downloads):
                if n in times:
                    continue
                if done in child.output():
                    times[n] = time.monotonic() - started
                elif not child.running():
                    raise LabError("downloader d%d exited (status %s) before completing\n%s"
                                   % (n + 1, child.proc.returncode, child.tail()))
            if time.monotonic() > deadline:
                raise LabError("%d of %d downloaders incomplete after %.0f s"
                               % (len(downloads) - len(times), len(downloads), SWARM_TIMEOUT))
            time.sleep(POLL_SECONDS)
        return [times[n] for n in range(len(downloads))]

    def verify(self, client: str) -> None:
        for n in range(len(self.peers)):
            folder = self.out_dir(n)
            if not lab.same_file(self.data, os.path.join(folder, "swarm.bin")):
                raise LabError("%s: d%d's file differs from the seed's" % (client, n + 1))
            shutil.rmtree(folder, ignore_errors=True)


def seed_payload(output: str) -> Optional[float]:
    """The payload the seed says it sent: lab_lt.py's last UPLOADED line, or STA's summary."""
    last = None
    for line in output.splitlines():
        if line.startswith("UPLOADED "):
            last = float(line.split()[1])
        else:
            match = _UPLOADED_RE.search(line)
            if match:
                last = float(match.group(1)) * _UNITS[match.group(2)]
    return last


def report(swarm: Swarm, outcomes: Dict[str, Outcome], skipped: Dict[str, str]) -> None:
    args = swarm.args
    print("== lab swarm: python3 bench/lab.py swarm --size %d --downloaders %d --rate %g "
          "--runs %d" % (args.size, args.downloaders, args.rate, args.runs))
    alone = args.downloaders * swarm.size * 8 / (args.rate * 1e6)
    print("   1 seed + %d downloaders, every uplink %g Mbit/s, %s, STA tracker; a seed alone "
          "would need %.0f s, one copy at the link rate %.1f s"
          % (args.downloaders, args.rate, common.human_bytes(swarm.size), alone,
             swarm.size * 8 / (args.rate * 1e6)))
    rows = []
    for client in CLIENTS:
        if client not in outcomes and client not in skipped:
            continue
        o = outcomes.get(client)
        if o is None:
            rows.append(["   " + client, "-", "-", "-", "-", "-", skipped.get(client, "")])
            continue
        last = common.median(o.last)
        lt_o = outcomes.get("lt-super" if client.endswith("-super") else "lt")
        lt_last = common.median(lt_o.last) if lt_o else None
        rows.append(["   " + client,
                     "%.2f" % common.median(o.wire_ratio),
                     "%.2f" % common.median(o.payload_ratio) if o.payload_ratio else "-",
                     "%.1f" % common.median(o.median), "%.1f" % last,
                     "%.2f" % (last / lt_last) if lt_last else "-", ""])
    common.print_table(["   client", "seed sent/size (wire)", "(payload)", "median done s",
                        "last done s", "last x lt", "note"], rows)
    for client in ("sta", "sta-super"):
        if client in outcomes:
            ratio = common.median(outcomes[client].wire_ratio)
            print("   target: %s's seed sends <= %.1f copies (wire): %s (%.2f)"
                  % (client, TARGET_UPLOAD, "met" if ratio <= TARGET_UPLOAD else "NOT met",
                     ratio))
    for client, o in outcomes.items():
        print("   %s (tracker, seed, then each downloader):" % client)
        for command in o.commands[:3]:
            print("     " + command)
        if len(o.commands) > 3:
            print("     ... and the same on the %d other downloaders" % (len(o.commands) - 3))


def run(lb: Lab, args: argparse.Namespace) -> int:
    if args.runs < 1 or args.downloaders < 1:
        raise LabError("--runs and --downloaders must be at least 1")
    swarm = Swarm(lb, args)
    chosen = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CLIENTS]
    if unknown or not chosen:
        raise LabError("unknown client %s: choose from %s"
                       % (", ".join(unknown) or "(none)", ", ".join(CLIENTS)))
    skipped: Dict[str, str] = {}
    if not lab.have_libtorrent():
        skipped.update((c, "libtorrent not importable by %s" % lab.LT_PYTHON)
                       for c in chosen if c.startswith("lt"))
    outcomes = {c: Outcome() for c in chosen if c not in skipped}
    for n in range(args.runs):
        for client, outcome in outcomes.items():
            swarm.once(client, outcome)
            lab.note("swarm %s run %d/%d: seed sent %.2f copies, last done %.1f s"
                     % (client, n + 1, args.runs, outcome.wire_ratio[-1], outcome.last[-1]))
    report(swarm, outcomes, skipped)
    return 0
