"""uTP against TCP between two STA nodes: one file, one seed, one downloader, each in its own
process, on loopback and through tests/relaykit.py's relay (a rate limit and a delay).

    python3 bench/bench_utp.py [--size 256MiB] [--encryption off|prefer]
                               [--path loopback|wan|both] [--rate 100] [--delay 20] [--queue 50]

"loopback": straight over 127.0.0.1. "wan": through the relay, which limits each direction to
--rate Mbit/s behind a drop-tail queue of --queue ms and adds --delay ms one way (the relay runs as a
process of its own: `python3 -m tests.relaykit`); TCP is relayed the same way only for uTP, so
the wan row has no TCP figure. A node runs uTP only with its session's tcp=False, TCP only with
utp=False. The time is the downloader's, from adding the torrent to its last verified piece;
MB are 10^6 bytes. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

STA = os.path.join(common.REPO, "sta.py")
DEFAULT_SIZE = "256MiB"
# 1 MiB pieces, as bench_transfer.py.
PIECE_LENGTH = "1M"
# Deadline of one transfer: generous for a Python transport on a busy machine.
TIMEOUT = 600.0
# Deadline for a child to print its first line (the seed checks its data first).
READY_TIMEOUT = 120.0


async def _node(args: argparse.Namespace) -> int:
    """A child process: seed or download over one transport, print PORT and DONE lines."""
    from sta import metainfo
    from sta.session import Session
    from sta.storage import FileStorage
    from sta.torrent import Torrent
    meta = metainfo.load(args.torrent)
    session = Session(port=0, host="127.0.0.1", encryption=args.encryption,
                      tcp=args.transport == "tcp", utp=args.transport == "utp",
                      state_dir=args.state)
    await session.start()
    torrent = Torrent(session, meta, FileStorage(meta.info, args.data,
                                                 readonly=args.role == "seed"))
    await session.add(torrent, announce=False)
    print(f"PORT {session.listen_port}", flush=True)
    started = time.monotonic()
    if args.role == "seed":
        await asyncio.sleep(TIMEOUT)
    else:
        torrent.add_peers([("127.0.0.1", args.peer)], "bench")
        await torrent.done.wait()
        print(f"DONE {time.monotonic() - started:.3f}", flush=True)
    await session.close()
    return 0


def _child(cmd: Sequence[str]) -> "subprocess.Popen[str]":
    return subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=common.REPO)


def _line(child: "subprocess.Popen[str]", prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert child.stdout is not None
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.split()[1]
    raise common.BenchError(f"no {prefix} line from {child.args}")


def run_one(work: str, torrent: str, transport: str, encryption: str,
            relay: Optional[Tuple[float, float, float]]) -> float:
    """Seconds to download the torrent over ``transport`` (through a relay of (bits/s, delay
    s, queue s))."""
    out = tempfile.mkdtemp(dir=work)
    me = [sys.executable, os.path.abspath(__file__), "--torrent", torrent, "--transport",
          transport, "--encryption", encryption, "--state", os.path.join(work, "state")]
    children: List["subprocess.Popen[str]"] = []
    try:
        seed = _child(me + ["--role", "seed", "--data", os.path.join(work, "seed")])
        children.append(seed)
        port = int(_line(seed, "PORT", READY_TIMEOUT))
        if relay is not None:
            rate, delay, queue = relay
            proxy = _child([sys.executable, "-m", "tests.relaykit", "--target",
                            f"127.0.0.1:{port}", "--rate", str(rate), "--delay", str(delay),
                            "--queue-delay", str(queue)])
            children.append(proxy)
            port = int(_line(proxy, "RELAY", READY_TIMEOUT))
        down = _child(me + ["--role", "download", "--data", out, "--peer", str(port)])
        children.append(down)
        return float(_line(down, "DONE", TIMEOUT))
    finally:
        for child in children:
            child.kill()
            child.wait()
        shutil.rmtree(out, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default=DEFAULT_SIZE)
    p.add_argument("--encryption", default="off", choices=("off", "prefer", "require"))
    p.add_argument("--path", default="both", choices=("loopback", "wan", "both"))
    p.add_argument("--rate", type=float, default=100.0, help="relay rate, Mbit/s")
    p.add_argument("--delay", type=float, default=20.0, help="relay one-way delay, ms")
    p.add_argument("--queue", type=float, default=50.0, help="relay queue at the rate, ms")
    for name in ("--role", "--torrent", "--transport", "--data", "--state"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--peer", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        return asyncio.run(_node(args))
    size = common.parse_size(args.size)
    work = tempfile.mkdtemp(prefix="sta-bench-utp-")
    try:
        seed_dir = os.path.join(work, "seed")
        os.makedirs(seed_dir)
        data = os.path.join(seed_dir, "utp.bin")
        with open(data, "wb") as f:
            for _ in range(0, size, 1 << 20):
                f.write(os.urandom(min(1 << 20, size - f.tell())))
        torrent = os.path.join(work, "utp.torrent")
        subprocess.run([sys.executable, STA, "create", data, "-o", torrent, "--piece-length",
                        PIECE_LENGTH], check=True, stdout=subprocess.DEVNULL)
        rows = []
        if args.path in ("loopback", "both"):
            for transport in ("tcp", "utp"):
                seconds = run_one(work, torrent, transport, args.encryption, None)
                rows.append(["loopback", transport, f"{seconds:.1f}",
                             f"{size / seconds / 1e6:.1f}"])
        if args.path in ("wan", "both"):
            relay = (args.rate * 1e6, args.delay / 1000, args.queue / 1000)
            seconds = run_one(work, torrent, "utp", args.encryption, relay)
            rows.append([f"relay {args.rate:g} Mbit/s, {args.delay:g} ms, queue {args.queue:g} ms",
                         "utp",
                         f"{seconds:.1f}", f"{size / seconds / 1e6:.1f}"])
        common.print_table(["path", "transport", "seconds", "MB/s"], rows)
        print(f"\nreproduce: python3 bench/bench_utp.py --size {args.size} "
              f"--encryption {args.encryption} --path {args.path} --rate {args.rate:g} "
              f"--delay {args.delay:g} --queue {args.queue:g}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
