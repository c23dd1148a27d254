"""Time sta.wire on the hot path: parsing 256 KiB chunks of piece and request messages, and
encoding requests. Prints figures; asserts nothing.

    python3 bench/bench_wire.py

The stream is a 2 MiB loop of eight 256 KiB chunks fed over and over, so the chunks are warm in
the CPU cache as a chunk that a socket read has just written is; blocks are dropped at once, as
a writer that has written them would.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sta import wire  # noqa: E402

CHUNK = 256 * 1024  # what asyncio hands a protocol per read on loopback
LOOP = 8 * CHUNK
PASSES = 32  # 64 MiB fed per round
ROUNDS = 7  # best of: the figure is the machine's, not its neighbours'


def loop_chunks(messages: list) -> tuple:
    """Chunks of a stream of ``messages`` trimmed and then filled up to exactly LOOP bytes (with
    one piece message, or a few keep-alives), so the chunks can be fed round and round; returns
    (chunks, messages per loop)."""
    messages = list(messages)
    room = LOOP - sum(map(len, messages))
    while not (room == 0 or 14 <= room <= 13 + wire.BLOCK_SIZE or 0 < room < 64 and room % 4 == 0):
        room += len(messages.pop())
    if room >= 14:
        messages.append(wire.piece(0, 0, bytes(room - 13)))
    else:
        messages += [wire.keepalive()] * (room // 4)
    stream = b"".join(messages)
    assert len(stream) == LOOP
    return [stream[i:i + CHUNK] for i in range(0, LOOP, CHUNK)], len(messages)


def time_feed(chunks: list, per_loop: int, **options: bool) -> float:
    """Microseconds per message, best of ROUNDS."""
    best = float("inf")
    for _ in range(ROUNDS):
        reader = wire.MessageReader(expect_handshake=False, **options)
        count = 0
        start = time.perf_counter()
        for _ in range(PASSES):
            for chunk in chunks:
                count += len(reader.feed(chunk))
        best = min(best, time.perf_counter() - start)
        assert count == per_loop * PASSES
    return best / count * 1e6


def main() -> None:
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"sta.wire benchmark, Python {version}, {CHUNK // 1024} KiB chunks, best of {ROUNDS}")
    print("reproduce: python3 bench/bench_wire.py")

    block = os.urandom(wire.BLOCK_SIZE)
    pieces = [wire.piece(i // 16, (i % 16) * wire.BLOCK_SIZE, block) for i in range(128)]
    chunks, per_loop = loop_chunks(pieces)
    for copy in (True, False):
        per = time_feed(chunks, per_loop, copy_blocks=copy)
        label = "blocks copied " if copy else "blocks as views"
        print(f"  piece messages, {label}: {per:5.2f} us/message  "
              f"({wire.BLOCK_SIZE / per:,.0f} MB/s; 1 GiB of blocks: {65536 * per / 1e6:.2f} s)")

    triples = [(i // 16, (i % 16) * wire.BLOCK_SIZE, wire.BLOCK_SIZE) for i in range(LOOP // 17)]
    chunks, per_loop = loop_chunks([wire.request(*t) for t in triples])
    print(f"  request messages:                {time_feed(chunks, per_loop):5.2f} us/message")

    mixed = []
    for i in range(128):
        mixed += [wire.have(i), wire.piece(i, 0, block), wire.request(i, 0, wire.BLOCK_SIZE)]
    chunks, per_loop = loop_chunks(mixed)
    print(f"  have + piece + request mix:      {time_feed(chunks, per_loop):5.2f} us/message")

    batch = triples[:256]
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        wire.requests(batch)
    per = (time.perf_counter() - start) / (n * len(batch)) * 1e6
    start = time.perf_counter()
    for _ in range(n):
        for i, b, length in batch:
            wire.request(i, b, length)
    per_one = (time.perf_counter() - start) / (n * len(batch)) * 1e6
    print(f"  encode requests(256 triples):    {per:5.2f} us/request "
          f"(request() one at a time: {per_one:.2f})")


if __name__ == "__main__":
    main()
