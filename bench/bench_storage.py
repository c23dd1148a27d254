"""Time sta.storage on the engine's hot paths. Prints figures; asserts nothing.

    python3 bench/bench_storage.py [--size 1GiB] [--piece-length 256KiB] [--dir /tmp]

- write_block: the whole torrent in 16 KiB blocks from a memoryview, as the engine writes blocks
  arriving from peers (a single-file torrent: the os.pwrite fast path; and the same bytes as 64
  files, through the file-handle cache), against a bare os.pwrite loop for the ratio;
- save(): the fsync that makes those writes durable before they are recorded;
- verify_piece of every piece on 2 threads, as the engine hashes finished pieces off its loop;
- check(): the full check of existing data a start without resume file runs (every core).

The data was just written, so reads come from the page cache: the figures are the Python and
SHA-1 cost, not the disk's. The temporary folder is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sta import bencode  # noqa: E402
from sta.metainfo import parse_info  # noqa: E402
from sta.storage import FileStorage  # noqa: E402

BLOCK = 16 * 1024  # the block size every client requests (BEP 3 practice)
PATTERN = 4 * 1024 * 1024  # random bytes repeated through the torrent: hashes stay real, RAM low
MULTI_FILES = 64  # files in the multi-file layout: more than the handle cache holds (32)
ROUNDS = 3  # writes are timed best of 3: page-cache allocation makes single runs noisy
MIB = 1024 * 1024
_UNITS = {"": 1, "k": 1024, "kib": 1024, "m": MIB, "mib": MIB, "g": 1024 * MIB, "gib": 1024 * MIB}


def parse_size(text: str) -> int:
    t = text.strip().lower()
    number = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    return int(float(number) * _UNITS[t[len(number):]])


def make_info(size: int, piece_length: int, files: int):
    """An Info whose piece hashes match the repeated PATTERN."""
    pattern = os.urandom(PATTERN)
    doubled = pattern + pattern
    hashes = []
    cache = {}
    for start in range(0, size, piece_length):
        n = min(piece_length, size - start)
        key = (start % PATTERN, n)
        if key not in cache:
            cache[key] = hashlib.sha1(doubled[key[0]:key[0] + n]).digest() if n <= PATTERN \
                else hashlib.sha1(piece_bytes(pattern, start, n)).digest()
        hashes.append(cache[key])
    d = {b"name": b"bench", b"piece length": piece_length, b"pieces": b"".join(hashes)}
    if files == 1:
        d[b"length"] = size
    else:
        each = size // files
        lengths = [each] * (files - 1) + [size - each * (files - 1)]
        d[b"files"] = [{b"length": n, b"path": [b"f%03d" % i]} for i, n in enumerate(lengths)]
    return parse_info(bencode.encode(d)), memoryview(doubled)


def piece_bytes(pattern: bytes, start: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        at = (start + len(out)) % PATTERN
        out += pattern[at:at + n - len(out)]
    return bytes(out)


def write_all(st: FileStorage, info, data: memoryview) -> float:
    pl = info.piece_length
    t0 = time.perf_counter()
    for i in range(info.num_pieces):
        base = i * pl
        for begin in range(0, info.piece_size(i), BLOCK):
            at = (base + begin) % PATTERN
            st.write_block(i, begin, data[at:at + BLOCK])
    return time.perf_counter() - t0


def raw_pwrite(path: str, size: int, data: memoryview) -> float:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        os.ftruncate(fd, size)
        t0 = time.perf_counter()
        for pos in range(0, size, BLOCK):
            at = pos % PATTERN
            os.pwrite(fd, data[at:at + BLOCK], pos)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def best_write(tmp: str, info, data: memoryview, name: str):
    """Best of ROUNDS, each into a fresh folder as a new download; returns (seconds, the last
    round's storage, still open so save() has the writes to flush)."""
    best = float("inf")
    for r in range(ROUNDS):
        if r:
            st.close()
            shutil.rmtree(os.path.join(tmp, "%s%d" % (name, r - 1)))
        st = FileStorage(info, os.path.join(tmp, "%s%d" % (name, r)))
        best = min(best, write_all(st, info, data))
    return best, st


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1GiB", help="torrent size (default 1GiB)")
    parser.add_argument("--piece-length", default="256KiB", help="piece length (default 256KiB)")
    parser.add_argument("--dir", default=None, help="where the temporary files go")
    args = parser.parse_args()
    size, pl = parse_size(args.size), parse_size(args.piece_length)
    size -= size % BLOCK
    mb = size / MIB
    blocks = size // BLOCK
    print("sta.storage, %d MiB, pieces of %d KiB, %d cores, best of %d for writes"
          % (mb, pl // 1024, os.cpu_count() or 1, ROUNDS))
    print("reproduce with: python3 bench/bench_storage.py --size %s --piece-length %s"
          % (args.size, args.piece_length))
    tmp = tempfile.mkdtemp(prefix="sta-bench-storage-", dir=args.dir)
    rows = []
    try:
        pattern = memoryview(os.urandom(2 * PATTERN))
        raw = float("inf")
        for _ in range(ROUNDS):
            raw = min(raw, raw_pwrite(os.path.join(tmp, "raw"), size, pattern))
            os.unlink(os.path.join(tmp, "raw"))
        rows.append(("os.pwrite loop, 16 KiB blocks (reference)", mb / raw,
                     "%.1f us/block" % (raw / blocks * 1e6)))

        info, data = make_info(size, pl, 1)
        dt, st = best_write(tmp, info, data, "single")
        rows.append(("write_block, single file, 16 KiB blocks", mb / dt,
                     "%.1f us/block, %.0f%% of the reference" % (dt / blocks * 1e6,
                                                                100 * raw / dt)))
        st.mark_verified(0)  # something to record
        t0 = time.perf_counter()
        st.save()
        dt = time.perf_counter() - t0
        rows.append(("save(): fsync of the data + resume file", mb / dt, "%.2f s" % dt))
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            ok = sum(pool.map(st.verify_piece, range(info.num_pieces)))
        dt = time.perf_counter() - t0
        rows.append(("verify_piece, every piece, 2 threads", mb / dt,
                     "%d/%d verified" % (ok, info.num_pieces)))
        t0 = time.perf_counter()
        good = st.check()
        dt = time.perf_counter() - t0
        rows.append(("check(), every core", mb / dt, "%d/%d found" % (good.count, info.num_pieces)))
        st.close()
        shutil.rmtree(st.root)

        info, data = make_info(size, pl, MULTI_FILES)
        dt, st = best_write(tmp, info, data, "multi")
        rows.append(("write_block, %d files, 16 KiB blocks" % MULTI_FILES, mb / dt,
                     "%.1f us/block, %.0f%% of the reference" % (dt / blocks * 1e6,
                                                                100 * raw / dt)))
        t0 = time.perf_counter()
        good = st.check()
        dt = time.perf_counter() - t0
        rows.append(("check(), %d files, every core" % MULTI_FILES, mb / dt,
                     "%d/%d found" % (good.count, info.num_pieces)))
        st.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    for what, rate, note in rows:
        print("  %-*s  %7.0f MiB/s  %s" % (width, what, rate, note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
