"""Run every benchmark, one after the other, with the interpreter that runs this file.

    python3 bench/run_all.py [--lab] [NAME ...]      (make bench; make lab-bench)

Each benchmark prints its own figures, ratios against the real clients measured in the same run,
and the command that reproduces them; nothing is asserted. NAME picks some of them (e.g.
`transfer tracker`). The end-to-end ones come first, the micro-benchmarks last.

The lab scenarios (bench/lab.py: network namespaces, shaped links, a real swarm) need root and
take about five minutes, so they run only when named (`lab-bandwidth lab-swarm`, which is
`make lab-bench`) or with --lab, after the others.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Order: what a user cares about first.
BENCHMARKS = ["transfer", "utp", "multi", "peers", "tracker", "udp_tracker", "create", "tls",
              "mse", "storage", "wire", "picker"]
LAB = {"lab-bandwidth": ["lab.py", "bandwidth"], "lab-swarm": ["lab.py", "swarm"]}
# Benchmarks that make network namespaces, which needs root.
NEEDS_ROOT = {"peers"} | set(LAB)


def command(name: str) -> list:
    """The script (in bench/) and arguments of a benchmark."""
    return LAB.get(name, [f"bench_{name}.py"])


def main(argv: list) -> int:
    with_lab = "--lab" in argv
    names = [a for a in argv if a != "--lab"]
    chosen = names or BENCHMARKS + (list(LAB) if with_lab else [])
    known = BENCHMARKS + list(LAB)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        sys.stderr.write(f"unknown benchmark {', '.join(unknown)}; choose from "
                         f"{', '.join(known)}\n")
        return 2
    failed = []
    for name in chosen:
        script, *args = command(name)
        if not os.path.exists(os.path.join(HERE, script)):
            continue
        shown = " ".join([f"bench/{script}"] + args)
        if name in NEEDS_ROOT and (not hasattr(os, "geteuid") or os.geteuid() != 0):
            print(f"\n===== {name}: skipped: it makes network namespaces, which needs root "
                  f"(run as root: {sys.executable} {shown})", flush=True)
            continue
        print(f"\n===== {name}: {sys.executable} {shown}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, os.path.join(HERE, script)] + args,
                                cwd=os.path.dirname(HERE))
        print(f"===== {name}: {time.monotonic() - started:.0f} s, exit {result.returncode}",
              flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that did not finish: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
