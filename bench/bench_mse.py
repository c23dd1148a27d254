"""Time MSE/PE: pure-Python RC4 and what it costs a transfer. Prints figures; asserts nothing.

    python3 bench/bench_mse.py [--size 64MiB] [--no-transfer]

- RC4: sta.mse.RC4.crypt over buffers of several sizes (what a link encrypts per write and
  decrypts per read), MB/s, best of a few rounds. One side of an RC4 link pays this once per
  byte it sends and once per byte it receives.
- handshakes: complete MSE/PE handshakes per second, both ends in this process (two 768-bit
  Diffie-Hellman exponentiations with 160-bit exponents per side, four RC4 key setups).
- transfer: an STA seed sends --size to a libtorrent downloader on 127.0.0.1, once with
  libtorrent's encryption forced (MSE/PE with RC4 throughout) and once with it disabled (plain
  BitTorrent); the time is libtorrent's, from adding the torrent to the last verified piece.
  Skipped when libtorrent's Python bindings are absent.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from typing import Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from bench.common import MIB, BenchError, Child  # noqa: E402
from sta import maketorrent, mse  # noqa: E402
from tests.interop import clients  # noqa: E402

BUFFER_SIZES = (16 * 1024, 256 * 1024, 4 * MIB)
RC4_BYTES = 8 * MIB  # per round and buffer size: a few seconds in all
ROUNDS = 3  # best of: the figure is the machine's, not its neighbours'
HANDSHAKES = 100
PIECE_LENGTH = 256 * 1024
# Deadlines: seeding starts once STA has hashed the file; a 64 MiB RC4 transfer at ~10 MB/s
# takes seconds, the rest is slack for a busy machine.
START_TIMEOUT = 120.0
TRANSFER_TIMEOUT = 900.0
STA = os.path.join(common.REPO, "sta.py")


def rc4_rate(size: int) -> float:
    data = os.urandom(size)
    count = max(1, RC4_BYTES // size)
    best = float("inf")
    for _ in range(ROUNDS):
        rc4 = mse.RC4(b"k" * 20)
        started = time.perf_counter()
        for _ in range(count):
            rc4.crypt(data)
        best = min(best, time.perf_counter() - started)
    return size * count / best / 1e6


def handshakes_per_second() -> float:
    info_hash = bytes(range(20))
    lookup = {mse.skey_hash(info_hash): info_hash}.get
    started = time.perf_counter()
    for _ in range(HANDSHAKES):
        a = mse.MseLink.initiator(info_hash, mse.CRYPTO_RC4)
        b = mse.MseLink.responder(lookup, mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT)
        b.receive(a.start())
        a.receive(b.outgoing())
        b.receive(a.outgoing())
        a.receive(b.outgoing())
        if not (a.authenticated and b.authenticated):
            raise BenchError("an MSE/PE handshake did not complete")
    return HANDSHAKES / (time.perf_counter() - started)


def _listen_port(line: str) -> Optional[str]:
    found = re.search(r"Listening for peers on \S*?(\d+)$", line)
    return found.group(1) if found else None


def transfer_seconds(workdir: str, torrent: str, data_dir: str, lt_encryption: str) -> float:
    """One STA seed -> libtorrent download; libtorrent's DONE time."""
    env = dict(os.environ, STA_HOME=os.path.join(workdir, "sta-home"))
    seed = Child([sys.executable, STA, "seed", torrent, "--data", data_dir, "--port", "0",
                  "--bind", "127.0.0.1", "--no-dht", "--no-lsd", "--log-level", "info"],
                 os.path.join(workdir, "seed-%s.log" % lt_encryption), env=env)
    try:
        port = int(seed.wait_for_output(_listen_port, START_TIMEOUT, "the seed's listen port"))
        seed.wait_for_output(lambda line: line if line.startswith("Seeding") else None,
                             START_TIMEOUT, "seeding")
        out = os.path.join(workdir, "out-%s" % lt_encryption)
        down = Child(clients.lt_helper_cmd("download", torrent, "--out", out, "--peer",
                                           "127.0.0.1:%d" % port, "--encryption", lt_encryption,
                                           "--timeout", str(TRANSFER_TIMEOUT)),
                     os.path.join(workdir, "lt-%s.log" % lt_encryption))
        status = down.wait(TRANSFER_TIMEOUT + 30)
        done = re.search(r"^DONE ([\d.]+)", down.output(), re.M)
        if status != 0 or done is None:
            raise BenchError("libtorrent did not finish (%s):\n%s\nseed:\n%s"
                             % (status, down.tail(), seed.tail()))
        return float(done.group(1))
    finally:
        seed.stop()


def transfers(size: int) -> Optional[Tuple[float, float]]:
    if not clients.have_libtorrent():
        print("transfer: skipped, libtorrent's Python bindings do not import under %s"
              % clients.LT_PYTHON)
        return None
    with tempfile.TemporaryDirectory(prefix="sta-bench-mse-") as workdir:
        data_dir = os.path.join(workdir, "data")
        path = clients.make_file(os.path.join(data_dir, "bench.bin"), size, seed=64)
        torrent = os.path.join(workdir, "bench.torrent")
        with open(torrent, "wb") as f:
            f.write(maketorrent.make_torrent([path], piece_length=PIECE_LENGTH))
        rc4 = transfer_seconds(workdir, torrent, data_dir, "forced")
        plain = transfer_seconds(workdir, torrent, data_dir, "disabled")
        return rc4, plain


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="64MiB", help="transfer size (default 64MiB)")
    parser.add_argument("--no-transfer", action="store_true", help="RC4 and handshakes only")
    args = parser.parse_args(argv)
    try:
        size = common.parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    print("RC4 (sta.mse.RC4.crypt, pure Python, %s):" % sys.version.split()[0])
    for buffer_size in BUFFER_SIZES:
        print("  %8s buffers: %6.1f MB/s" % (common.human_bytes(buffer_size),
                                              rc4_rate(buffer_size)))
    print("MSE/PE handshakes, both ends: %.0f per second" % handshakes_per_second())
    print("  command: %s bench/bench_mse.py --no-transfer" % sys.executable)
    try:
        result = None if args.no_transfer else transfers(size)
    except BenchError as exc:
        print("transfer failed: %s" % exc)
        return 1
    if result is not None:
        rc4, plain = result
        print("STA seed -> libtorrent, %s on 127.0.0.1:" % common.human_bytes(size))
        print("  MSE/PE RC4 (libtorrent encryption forced): %6.2f s  %6.1f MB/s"
              % (rc4, size / rc4 / 1e6))
        print("  plain BitTorrent (libtorrent encryption off): %4.2f s  %6.1f MB/s"
              % (plain, size / plain / 1e6))
        print("  command: %s bench/bench_mse.py --size %s" % (sys.executable, args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
