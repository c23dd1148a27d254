"""Run every benchmark, one after the other, with the interpreter that runs this file.

    python3 bench/run_all.py [NAME ...]      (make bench)

Each benchmark prints its own figures, ratios against the real clients measured in the same run,
and the command that reproduces them; nothing is asserted. NAME picks some of them (e.g.
`transfer tracker`). The end-to-end ones come first, the micro-benchmarks last.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Order: what a user cares about first.
BENCHMARKS = ["transfer", "utp", "tracker", "udp_tracker", "create", "tls", "mse", "storage", "wire",
              "picker"]


def main(argv: list) -> int:
    chosen = argv or BENCHMARKS
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        sys.stderr.write(f"unknown benchmark {', '.join(unknown)}; choose from "
                         f"{', '.join(BENCHMARKS)}\n")
        return 2
    failed = []
    for name in chosen:
        script = os.path.join(HERE, f"bench_{name}.py")
        if not os.path.exists(script):
            continue
        print(f"\n===== {name}: {sys.executable} bench/bench_{name}.py", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, script], cwd=os.path.dirname(HERE))
        print(f"===== {name}: {time.monotonic() - started:.0f} s, exit {result.returncode}",
              flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that did not finish: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
