"""`make lab`: the seed report's demonstration ("File transfer within a subnet"), replayed and
verified in a lab on one machine.

    python3 bench/lab.py demo

Four hosts, as in the report: a tracker (10.88.0.114), two seeds (10.88.0.178, 10.88.0.179) and
a downloader (10.88.0.102), each seed's uplink shaped to SEED_RATE_MBIT so that one seed alone
cannot serve a downloader and both are used. Both seeds share ass1.pdf; the first also shares
slides.pdf, the second report.pdf. Then:

1. two seeds, one file: `download ass1.torrent`, and the downloader's summary must name both
   seeds among the peers it received from;
2. several files from different seeds at once (the report's "multidimensional data transfer"):
   one `download report.torrent slides.torrent`, each file coming from the seed that has it.

Every file is compared with the seed's copy. Exit 0 only if everything was received and verified.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from typing import Dict, List, Sequence, Tuple

from bench import common, lab
from bench.lab import Host, Lab, LabError

SEED_RATE_MBIT = 20
TRACKER_PORT = 4000  # the report's
PEER_PORT = 8080     # the report's
# Sizes of the three files: a few seconds each at the seeds' rate, so both seeds get to serve.
FILES = {"ass1.pdf": 12 * common.MIB, "slides.pdf": 5 * common.MIB,
         "report.pdf": 6 * common.MIB + 12345}
DOWNLOAD_TIMEOUT = 120.0
# "  from 10.88.0.178:8080: 6.1 MiB" under "ass1.pdf: downloaded 12.0 MiB, ..." in the summary.
_FROM_RE = re.compile(r"^\s+from ([0-9.]+):(\d+): (.+)$")
_TORRENT_RE = re.compile(r"^(\S+): downloaded (.+?), uploaded .* in (.+?)(?:, average (.+))?$")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the seed report's demonstration, verified (make lab)")
    p.set_defaults(run=run)


def parse_summary(output: str) -> Dict[str, Dict[str, object]]:
    """{torrent name: {"line": its summary line, "from": {address: amount text}}}."""
    found: Dict[str, Dict[str, object]] = {}
    current = None
    for line in output.splitlines():
        match = _TORRENT_RE.match(line)
        if match:
            current = {"line": line.strip(), "from": {}}
            found[match.group(1)] = current
            continue
        match = _FROM_RE.match(line)
        if match and current is not None:
            current["from"][match.group(1)] = match.group(3)  # type: ignore[index]
    return found


def setup(lb: Lab) -> Tuple[Dict[str, Host], Dict[str, str], List[str]]:
    """Hosts, data, torrents, tracker and seeds; returns (hosts, torrents by file, commands)."""
    hosts = {"tracker": lb.add_host("tracker", 114), "seed1": lb.add_host("seed1", 178),
             "seed2": lb.add_host("seed2", 179), "down": lb.add_host("down", 102)}
    for name in ("seed1", "seed2"):
        lb.shape(hosts[name], SEED_RATE_MBIT)
    shares = {"seed1": ["ass1.pdf", "slides.pdf"], "seed2": ["ass1.pdf", "report.pdf"]}
    torrents: Dict[str, str] = {}
    for number, (name, size) in enumerate(sorted(FILES.items())):
        path = lab.make_data(os.path.join(lb.workdir, "files", name), size, seed=number + 1)
        torrents[name] = os.path.join(lb.workdir, name.replace(".pdf", ".torrent"))
        lb.run(hosts["seed1"], lab.sta("create", hosts["tracker"].address, path,
                                       "-o", torrents[name]), "create", lab.READY_TIMEOUT)
    for seed, names in shares.items():
        folder = os.path.join(lb.workdir, seed)
        os.makedirs(folder)
        for name in names:
            os.link(os.path.join(lb.workdir, "files", name), os.path.join(folder, name))
    commands = []
    tracker_cmd = lab.sta("tracker", "--port", TRACKER_PORT,
                          "--db", os.path.join(lb.workdir, "tracker.db"))
    lb.spawn(hosts["tracker"], tracker_cmd, "tracker")
    commands.append(lab.command_line(hosts["tracker"], tracker_cmd))
    announce = "http://%s:%d/announce" % (hosts["tracker"].address, TRACKER_PORT)
    for seed, names in shares.items():
        cmd = lab.sta("seed", *[torrents[n] for n in names], "--data",
                      os.path.join(lb.workdir, seed), "--port", PEER_PORT, *lab.STA_LAB_FLAGS)
        child = lb.spawn(hosts[seed], cmd, "seed")
        for _ in names:
            lab.wait_line(child, "Seeding ")
        commands.append(lab.command_line(hosts[seed], cmd))
    for name in FILES:
        count = sum(name in names for names in shares.values())
        lab.wait_seeders(lb, hosts["tracker"], announce, lab.info_hash(torrents[name]), count)
    return hosts, torrents, commands


def download(lb: Lab, host: Host, torrents: Sequence[str], out: str,
             commands: List[str]) -> Tuple[Dict[str, Dict[str, object]], float]:
    cmd = lab.sta("download", *torrents, "-o", out, "--port", PEER_PORT, *lab.STA_LAB_FLAGS)
    commands.append(lab.command_line(host, cmd))
    started = time.monotonic()
    child = lb.run(host, cmd, "download", DOWNLOAD_TIMEOUT)
    return parse_summary(child.output()), time.monotonic() - started


def check(lb: Lab, hosts: Dict[str, Host], summary: Dict[str, Dict[str, object]], out: str,
          expect: Dict[str, Sequence[str]]) -> Tuple[List[str], bool]:
    """Report lines for each file, and whether each is verified and came from every seed in
    `expect` (file name -> the seeds that must have sent some of it)."""
    lines, ok = [], True
    for name, seeds in expect.items():
        got = summary.get(name)
        verified = lab.same_file(os.path.join(lb.workdir, "files", name),
                                 os.path.join(out, name))
        senders = dict(got["from"]) if got else {}  # type: ignore[arg-type]
        missing = [s for s in seeds if hosts[s].address not in senders]
        ok = ok and verified and got is not None and not missing
        lines.append("   %s: %s, %s" % (name, "identical to the seed's copy" if verified
                                        else "DIFFERENT FROM THE SEED'S COPY",
                                        got["line"].split(": ", 1)[1] if got else "no summary"))
        for address, amount in sorted(senders.items()):
            who = [s for s, h in hosts.items() if h.address == address]
            lines.append("     from %-12s %-6s %s" % (address, who[0] if who else "", amount))
        if missing:
            lines.append("     MISSING: nothing from %s" % ", ".join(missing))
    return lines, ok


def run(lb: Lab, args: argparse.Namespace) -> int:
    hosts, torrents, commands = setup(lb)
    out1 = os.path.join(lb.workdir, "down-1")
    summary, took1 = download(lb, hosts["down"], [torrents["ass1.pdf"]], out1, commands)
    lines1, ok1 = check(lb, hosts, summary, out1, {"ass1.pdf": ["seed1", "seed2"]})
    out2 = os.path.join(lb.workdir, "down-2")
    summary, took2 = download(lb, hosts["down"], [torrents["report.pdf"],
                                                  torrents["slides.pdf"]], out2, commands)
    lines2, ok2 = check(lb, hosts, summary, out2,
                        {"report.pdf": ["seed2"], "slides.pdf": ["seed1"]})
    print("== lab demo: the seed report's file transfer within a subnet (python3 bench/lab.py "
          "demo)")
    for role, host in hosts.items():
        shaped = " uplink %d Mbit/s" % SEED_RATE_MBIT if role.startswith("seed") else ""
        print("   %-8s %s%s" % (role, host.address, shaped))
    print("1. two seeds, one file (%.1f s):" % took1)
    print("\n".join(lines1))
    print("2. several files from different seeds, one download command (%.1f s):" % took2)
    print("\n".join(lines2))
    print("   commands (namespaces exist while the lab runs):")
    for command in commands:
        print("     " + command.replace(common.REPO + os.sep, ""))
    ok = ok1 and ok2
    print("== lab demo: %s" % ("every file received and verified" if ok else "FAILED"))
    if not ok:
        raise LabError("the demonstration did not verify (see above)")
    return 0
