"""Time `sta create` on a 1 GiB file, and mktorrent on the same file in the same run.

Run from the repository root:

    python3 bench/bench_create.py [--size 1G] [--runs 5] [--piece-length 1M] [--threads N]

The file is written to a temporary folder (pseudo-random data) and removed afterwards. Both tools
hash it from the page cache (it is read once before timing), with the same piece length and the
same number of threads (mktorrent -t N; STA uses one hashing thread per CPU unless --threads says
otherwise), alternating which runs first. Each figure is wall time of the whole command, Python
start-up included. The target is a ratio (STA / mktorrent) of 1.0 or less. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import REPO, median, parse_size, shell_command  # noqa: E402
from sta import maketorrent, metainfo  # noqa: E402

STA = os.path.join(REPO, "sta.py")
TRACKER = "http://127.0.0.1:4000/announce"
# Random data is written as one repeated block: SHA-1 cost does not depend on the bytes, and
# writing 1 GiB of os.urandom would take longer than the benchmark.
BLOCK = 16 * 1024 * 1024
# A hung tool should fail the benchmark, not hang it; 1 GiB takes about a second.
RUN_TIMEOUT = 600.0


def write_file(path: str, size: int) -> None:
    block = os.urandom(min(BLOCK, size))
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def read_once(path: str) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(BLOCK):
            pass


def timed(cmd: List[str], cwd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=RUN_TIMEOUT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit("%s failed: %s" % (cmd[0], done.stderr.decode(errors="replace")))
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1G", help="file size (default: 1G)")
    parser.add_argument("--runs", type=int, default=5, help="runs per tool (default: 5)")
    parser.add_argument("--piece-length", default="1M",
                        help="piece length, a power of two (default: 1M, what STA picks for 1 GiB)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="hashing threads for both tools (default: CPU count)")
    parser.add_argument("--dir", help="where to put the temporary file (default: system temp)")
    args = parser.parse_args()
    size = parse_size(args.size)
    piece_length = parse_size(args.piece_length)
    if piece_length & (piece_length - 1) or piece_length < 16384:
        raise SystemExit("--piece-length must be a power of two of at least 16K")
    log2 = piece_length.bit_length() - 1
    mktorrent = shutil.which("mktorrent")

    work = tempfile.mkdtemp(prefix="sta-bench-create-", dir=args.dir)
    try:
        data = os.path.join(work, "data.bin")
        write_file(data, size)
        read_once(data)
        sta_cmd = [sys.executable, STA, "create", "-f", "-t", TRACKER, "data.bin",
                   "-o", "sta.torrent", "--piece-length", str(piece_length),
                   "--threads", str(args.threads)]
        mk_cmd = [mktorrent or "mktorrent", "-t", str(args.threads), "-l", str(log2),
                  "-a", TRACKER, "-o", "mk.torrent", "data.bin"]

        sta_times: List[float] = []
        mk_times: List[float] = []
        inproc: List[float] = []
        for run in range(args.runs):
            order = [("sta", sta_cmd), ("mk", mk_cmd)]
            if run % 2:
                order.reverse()
            for name, cmd in order:
                if name == "mk" and not mktorrent:
                    continue
                if name == "mk" and os.path.exists(os.path.join(work, "mk.torrent")):
                    os.remove(os.path.join(work, "mk.torrent"))  # mktorrent will not overwrite
                (sta_times if name == "sta" else mk_times).append(timed(cmd, work))
            start = time.perf_counter()
            maketorrent.hash_files([(data, size)], piece_length, workers=args.threads)
            inproc.append(time.perf_counter() - start)

        mib = size / (1024 * 1024)
        print("create: %s file, piece length %d, %d threads, %d runs, %d CPUs, Python %s"
              % (args.size, piece_length, args.threads, args.runs, os.cpu_count() or 1,
                 sys.version.split()[0]))
        print("  %-28s best %6.3f s  median %6.3f s  (%5.0f MiB/s best)"
              % ("sta create", min(sta_times), median(sta_times), mib / min(sta_times)))
        print("  %-28s best %6.3f s  median %6.3f s  (%5.0f MiB/s best)"
              % ("hash_files (in process)", min(inproc), median(inproc), mib / min(inproc)))
        if mk_times:
            print("  %-28s best %6.3f s  median %6.3f s  (%5.0f MiB/s best)"
                  % ("mktorrent", min(mk_times), median(mk_times), mib / min(mk_times)))
            print("  ratio sta/mktorrent: best %.2f, median %.2f (target <= 1.0)"
                  % (min(sta_times) / min(mk_times), median(sta_times) / median(mk_times)))
            same = (metainfo.load(os.path.join(work, "sta.torrent")).info_hash
                    == metainfo.load(os.path.join(work, "mk.torrent")).info_hash)
            print("  same info hash as mktorrent: %s" % ("yes" if same else "NO"))
        else:
            print("  mktorrent is not installed: no ratio")
        print("reproduce: python3 bench/bench_create.py --size %s --runs %d --piece-length %s "
              "--threads %d" % (args.size, args.runs, args.piece_length, args.threads))
        print("  sta:       %s" % shell_command(sta_cmd, cwd="DIR"))
        if mktorrent:
            print("  mktorrent: %s" % shell_command(mk_cmd, cwd="DIR"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
