"""Picker cost per 16 KiB block: next_requests + block_received + piece_verified.

Run from the repository root:

    python3 bench/bench_picker.py

Each scenario drives a PiecePicker the way the engine does (keep a pipeline of requests per
peer full, deliver blocks, verify completed pieces) with no sockets and no disk, and prints the
CPU time per block, best of REPEATS runs (CPU time and the best run keep the figure steady on a
machine that is busy with other work). The figures include the small simulation loop around the
picker, so they are an upper bound on the picker's own cost. The budget is 10 microseconds per
block (1 GiB = 65,536 blocks -> 0.66 s). Nothing is asserted.
"""

from __future__ import annotations

import os
import platform
import random
import sys
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sta.bitfield import Bitfield  # noqa: E402
from sta.picker import PiecePicker  # noqa: E402

KIB = 1024
REPEATS = 3  # best of three: enough to drop a run disturbed by other processes
clock = time.process_time


def one_seed(num_pieces, piece_length, pipeline, refill):
    """One seed, ``pipeline`` requests outstanding, topped up ``refill`` at a time."""
    picker = PiecePicker(num_pieces, piece_length, num_pieces * piece_length,
                         Bitfield(num_pieces), rng=random.Random(1))
    seed = Bitfield.full(num_pieces)
    picker.peer_added(seed)
    peer = object()
    queue = deque()
    blocks = 0
    start = clock()
    queue.extend(picker.next_requests(peer, seed, pipeline))
    while queue:
        index, begin, _ = queue.popleft()
        _, done, _ = picker.block_received(peer, index, begin)
        blocks += 1
        if done:
            picker.piece_verified(index)
        missing = pipeline - len(queue)
        if missing >= refill:
            queue.extend(picker.next_requests(peer, seed, missing))
    elapsed = clock() - start
    assert picker.complete
    return blocks, elapsed


def swarm(num_pieces, piece_length, num_peers, num_seeds, pipeline, have_rate):
    """``num_peers`` peers (``num_seeds`` of them seeds, the rest with random bitfields that
    fill up through have messages), round-robin delivery, ``pipeline`` requests per peer."""
    rng = random.Random(2)
    picker = PiecePicker(num_pieces, piece_length, num_pieces * piece_length,
                         Bitfield(num_pieces), rng=random.Random(3))
    peers = []
    for k in range(num_peers):
        if k < num_seeds:
            bits = Bitfield.full(num_pieces)
        else:
            density = rng.uniform(0.3, 0.9)
            bits = Bitfield.from_indices(
                num_pieces, [i for i in range(num_pieces) if rng.random() < density])
        picker.peer_added(bits)
        peers.append((k, bits, deque()))
    blocks = haves = 0
    start = clock()
    active = True
    while active and not picker.complete:
        active = False
        for peer, bits, queue in peers:
            missing = pipeline - len(queue)
            if missing >= 4:
                queue.extend(picker.next_requests(peer, bits, missing))
            if not queue:
                continue
            active = True
            index, begin, _ = queue.popleft()
            wanted, done, cancels = picker.block_received(peer, index, begin)
            blocks += 1
            for other, ci, cb, cl in cancels:
                q = peers[other][2]
                if (ci, cb, cl) in q:
                    q.remove((ci, cb, cl))
            if done:
                picker.piece_verified(index)
            # the rest of the swarm makes progress too: have messages trickle in
            if rng.random() < have_rate:
                _, pbits, _ = peers[rng.randrange(num_seeds, num_peers)]
                i = rng.randrange(num_pieces)
                if pbits.set(i):
                    picker.peer_has(i)
                    haves += 1
    elapsed = clock() - start
    return blocks, haves, elapsed, picker.complete


def peer_churn(num_pieces, rounds):
    """Cost of a partial peer arriving and leaving (bitfield message, disconnect)."""
    rng = random.Random(4)
    picker = PiecePicker(num_pieces, 256 * KIB, num_pieces * 256 * KIB, Bitfield(num_pieces))
    fields = [Bitfield.from_indices(num_pieces, [i for i in range(num_pieces) if rng.random() < 0.5])
              for _ in range(rounds)]
    start = clock()
    for bits in fields:
        picker.peer_added(bits)
    for bits in fields:
        picker.interesting(bits)
    for bits in fields:
        picker.peer_removed(bits)
    return (clock() - start) / rounds


def main() -> int:
    print("picker benchmark, Python {} on {}".format(platform.python_version(), platform.machine()))
    print("command: {} bench/bench_picker.py".format(os.path.basename(sys.executable)))
    print()
    rows = [
        ("1 seed, 4096 x 256 KiB, 256 outstanding, refill 1", (4096, 256 * KIB, 256, 1)),
        ("1 seed, 4096 x 256 KiB, 512 outstanding, refill 64", (4096, 256 * KIB, 512, 64)),
        ("1 seed, 65536 x 16 KiB (1 block a piece), 256 outstanding", (65536, 16 * KIB, 256, 1)),
        ("1 seed, 1024 x 4 MiB, 256 outstanding, refill 1", (1024, 4096 * KIB, 256, 1)),
    ]
    for label, args in rows:
        runs = [one_seed(*args) for _ in range(REPEATS)]
        blocks, elapsed = min(runs, key=lambda run: run[1])
        print("{:<62} {:>7} blocks {:6.2f} us/block  ({:.2f} s per GiB)".format(
            label, blocks, elapsed / blocks * 1e6, elapsed / blocks * 65536))
    runs = [swarm(10000, 256 * KIB, 50, 0, 32, 0.2) for _ in range(REPEATS)]
    blocks, haves, elapsed, complete = min(runs, key=lambda run: run[2])
    print("{:<62} {:>7} blocks {:6.2f} us/block  ({} haves, complete={})".format(
        "50 partial peers, 10000 x 256 KiB, 32 outstanding each", blocks,
        elapsed / blocks * 1e6, haves, complete))
    runs = [swarm(10000, 256 * KIB, 50, 5, 32, 0.2) for _ in range(REPEATS)]
    blocks, haves, elapsed, complete = min(runs, key=lambda run: run[2])
    print("{:<62} {:>7} blocks {:6.2f} us/block  ({} haves, complete={})".format(
        "45 partial peers + 5 seeds, 10000 x 256 KiB", blocks,
        elapsed / blocks * 1e6, haves, complete))
    per_peer = min(peer_churn(10000, 50) for _ in range(REPEATS))
    print("{:<62} {:8.0f} us per peer".format(
        "peer_added + interesting + peer_removed, 10000 pieces, half set", per_peer * 1e6))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
