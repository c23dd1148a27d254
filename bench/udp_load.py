"""A load generator for UDP trackers (BEP 15), standard library only: several processes, each
with one socket, a connection id and a window of announces in flight, for thousands of peers of
one swarm. Used by bench_udp_tracker.py; runs on its own too:

    python3 bench/udp_load.py --port 4000 --peers 5000 --seconds 10

It only ever sends to 127.0.0.1. Each process connects (BEP 15), then keeps --window announces
in flight: every answer sends the next one (a closed loop, like wrk), and an announce with no
answer after REQUEST_TIMEOUT counts as lost and is replaced. An answer counts as failed unless it
is a BEP 15 announce answer (action 1) with whole 6-byte peer entries. Sending stops after
--seconds or --max-requests, whichever comes first, and answers still in flight are awaited for
REQUEST_TIMEOUT at most. Prints one JSON line with the totals.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import struct
import sys
import time
from typing import Dict, List

DEFAULT_PEERS = 5000
SEEDER_EVERY = 10
DEFAULT_INFO_HASH = bytes(range(1, 21))
# Announces one process keeps in flight: enough to keep a one-thread server busy while the
# process handles an answer, few enough that all processes together stay far under the kernel's
# default receive buffer (about 300 announces), so no datagram is dropped for lack of room.
DEFAULT_WINDOW = 16
DEFAULT_PROCESSES = 2
# An announce with no answer after this long is lost (a loopback answer takes microseconds).
REQUEST_TIMEOUT = 2.0
# Tries at the connect request before a process gives up.
CONNECT_TRIES = 5
# The whole run never takes longer than --seconds plus this (start, connect, drain, exit).
GRACE_SECONDS = 15.0
# A hard cap on announces per process, so even a very fast server ends a bounded run.
DEFAULT_MAX_REQUESTS = 5_000_000

HOST = "127.0.0.1"   # the only address this generator sends to
PROTOCOL_ID = 0x41727101980
_HEADER = struct.Struct(">QII")
_BODY = struct.Struct(">20s20sQQQIIIiH")
_ANSWER = struct.Struct(">II")


def announce_bodies(peers: int, info_hash: bytes, first: int, step: int) -> List[bytes]:
    """The part of each announce after the header, for peers first, first + step, ...:
    peer n announces port 10000 + n, one in ten a seeder, 50 peers wanted, key n."""
    bodies = []
    for n in range(first, peers, step):
        left = 0 if n % SEEDER_EVERY == 0 else 1000
        bodies.append(_BODY.pack(info_hash, b"-LD0001-%012d" % n, 0, left, 0, 0, 0, n, 50,
                                 10000 + n % 50000))
    return bodies


def _connect(sock: socket.socket) -> int:
    for attempt in range(CONNECT_TRIES):
        tid = 0x7F000000 + attempt
        sock.send(_HEADER.pack(PROTOCOL_ID, 0, tid))
        sock.settimeout(REQUEST_TIMEOUT)
        try:
            data = sock.recv(2048)
        except socket.timeout:
            continue
        if len(data) >= 16 and _ANSWER.unpack_from(data) == (0, tid):
            return struct.unpack_from(">Q", data, 8)[0]
    raise SystemExit("no connect answer from %s:%d" % sock.getpeername())


def worker(port: int, bodies: List[bytes], seconds: float, window: int, max_requests: int,
           results: "multiprocessing.Queue[Dict[str, float]]") -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((HOST, port))
    connection_id = _connect(sock)
    pack, send, recv = _HEADER.pack, sock.send, sock.recv
    in_flight: Dict[int, float] = {}
    ok = failed = lost = sent = 0
    latencies: List[float] = []
    tid = 1
    started = time.monotonic()
    stop_at = started + seconds
    sock.settimeout(0.2)

    def send_next(now: float) -> None:
        nonlocal tid, sent
        send(pack(connection_id, 1, tid) + bodies[tid % len(bodies)])
        in_flight[tid] = now
        tid += 1
        sent += 1

    now = time.monotonic()
    for _ in range(window):
        send_next(now)
    while in_flight:
        try:
            data = recv(2048)
        except socket.timeout:
            data = b""
        now = time.monotonic()
        if data:
            action, got = _ANSWER.unpack_from(data) if len(data) >= 8 else (None, 0)
            sent_at = in_flight.pop(got, None)
            if sent_at is None:
                continue  # an answer that came after its announce counted as lost
            if action == 1 and len(data) >= 20 and (len(data) - 20) % 6 == 0:
                ok += 1
                if ok % 16 == 0:
                    latencies.append(now - sent_at)
            else:
                failed += 1
        if data == b"" or tid % 256 == 0:
            for late in [t for t, at in in_flight.items() if now - at > REQUEST_TIMEOUT]:
                del in_flight[late]
                lost += 1
        while len(in_flight) < window and now < stop_at and sent < max_requests:
            send_next(now)
    duration = time.monotonic() - started
    results.put({"ok": ok, "failed": failed, "lost": lost, "sent": sent,
                 "duration": min(duration, seconds) if ok else duration,
                 "latencies": sorted(latencies)})


def run(port: int, peers: int, seconds: float, processes: int, window: int,
        max_requests: int, info_hash: bytes = DEFAULT_INFO_HASH) -> Dict[str, float]:
    """Run the load; the totals: announces answered per second, failed and lost ones."""
    results: "multiprocessing.Queue[Dict[str, float]]" = multiprocessing.Queue()
    procs = [multiprocessing.Process(
        target=worker, args=(port, announce_bodies(peers, info_hash, k, processes), seconds,
                             window, max_requests, results), daemon=True)
             for k in range(processes)]
    for proc in procs:
        proc.start()
    parts = []
    deadline = time.monotonic() + seconds + GRACE_SECONDS
    for _ in procs:
        try:
            parts.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
        except Exception:  # queue.Empty: a worker died or hung  # noqa: BLE001
            break
    for proc in procs:
        proc.join(timeout=max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.terminate()
            proc.join(1)
    if len(parts) < len(procs):
        raise SystemExit("%d of %d load processes gave no result" % (len(procs) - len(parts),
                                                                    len(procs)))
    latencies = sorted(x for p in parts for x in p["latencies"])
    ok = sum(p["ok"] for p in parts)
    duration = max(p["duration"] for p in parts)
    return {"announces_per_s": ok / duration if duration else 0.0, "ok": ok,
            "failed": sum(p["failed"] for p in parts), "lost": sum(p["lost"] for p in parts),
            "sent": sum(p["sent"] for p in parts), "seconds": duration,
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0}


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description="UDP tracker load on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peers", type=int, default=DEFAULT_PEERS)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS,
                        help="announces per process at most")
    args = parser.parse_args(argv)
    if not (0 < args.seconds <= 600 and 0 < args.processes <= (os.cpu_count() or 1) * 4
            and 0 < args.window <= 256 and 0 < args.peers <= 1_000_000):
        parser.error("seconds 0-600, processes up to 4 per core, window 1-256, peers up to 1M")
    print(json.dumps(run(args.port, args.peers, args.seconds, args.processes, args.window,
                         args.max_requests)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
