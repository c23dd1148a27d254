"""A load generator for HTTP trackers, standard library only: many keep-alive connections spread
over several processes (each its own interpreter and GIL), announcing for thousands of peers of
one swarm. Used by bench_tracker.py when wrk is not installed; runs on its own too:

    python3 bench/tracker_load.py --url http://127.0.0.1:4000 --peers 5000 --seconds 10

Each connection sends one request, reads the whole answer (Content-Length) and sends the next,
as wrk does. A server that closes the connection after an answer (opentracker does) gets a new
connection for the next request. An answer counts as failed unless it is "200" with a bencoded
body that has no "failure reason". Prints one JSON line with the totals.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import selectors
import socket
import sys
import time
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote_from_bytes, urlsplit

# Default swarm: thousands of peers in one torrent, one in ten a seeder (a typical ratio).
DEFAULT_PEERS = 5000
SEEDER_EVERY = 10
DEFAULT_INFO_HASH = bytes(range(1, 21))
# Answers larger than this are not tracker answers (50 compact peers are ~350 bytes).
MAX_ANSWER = 1 << 20
RECV_SIZE = 65536
# A request with no answer for this long counts as failed and its connection is replaced.
REQUEST_TIMEOUT = 5.0


def announce_requests(host: str, peers: int, info_hash: bytes) -> List[bytes]:
    """One ready-to-send GET per peer; peer n announces port 10000 + n."""
    ih = quote_from_bytes(info_hash)
    requests = []
    for n in range(peers):
        left = 0 if n % SEEDER_EVERY == 0 else 1000
        path = ("/announce?info_hash=%s&peer_id=-LD0001-%012d&port=%d&uploaded=0&downloaded=0"
                "&left=%d&compact=1&numwant=50&key=%08x" % (ih, n, 10000 + n % 50000, left, n))
        requests.append(("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sta-tracker-load\r\n"
                         "Accept-Encoding: identity\r\n\r\n" % (path, host)).encode())
    return requests


class _Connection:
    __slots__ = ("sock", "buffer", "sent_at", "busy", "answered")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.sent_at = 0.0
        self.busy = False
        self.answered = 0


def _answer_length(buffer: bytes) -> Optional[Tuple[int, bool, bool]]:
    """(total length, ok status, server closes) once the header is complete, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].lower()
    ok = head.startswith(b"http/1.1 200 ") or head.startswith(b"http/1.0 200 ")
    at = head.find(b"content-length:")
    if at < 0:
        return end + 4, False, True
    stop = head.find(b"\r\n", at)
    length = int(head[at + 15:stop if stop > 0 else len(head)])
    closes = b"connection: close" in head or head.startswith(b"http/1.0")
    return end + 4 + length, ok, closes


class _Worker:
    """One process's share of the load: `connections` keep-alive connections, each sending
    the next request as soon as its answer is in; counts what completes after the warm-up."""

    def __init__(self, address: Tuple[str, int], requests: List[bytes], first: int, step: int,
                 measure_from: float) -> None:
        self.address = address
        self.requests = requests
        self.index = first
        self.step = step
        self.measure_from = measure_from
        self.selector = selectors.DefaultSelector()
        self.counts = {"ok": 0, "failed": 0, "errors": 0, "reconnects": 0, "retries": 0}

    def connect(self) -> _Connection:
        sock = socket.create_connection(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Connection(sock)
        self.selector.register(sock, selectors.EVENT_READ, conn)
        return conn

    def send(self, conn: _Connection, now: float) -> None:
        request = self.requests[self.index]
        self.index = (self.index + self.step) % len(self.requests)
        conn.sent_at = now
        conn.busy = True
        conn.sock.sendall(request)  # a few hundred bytes always fit the empty send buffer

    def replace(self, conn: _Connection) -> _Connection:
        self.selector.unregister(conn.sock)
        conn.sock.close()
        self.counts["reconnects"] += 1
        return self.connect()

    def on_closed(self, conn: _Connection, now: float) -> None:
        if conn.busy and conn.answered and not conn.buffer:
            # The server closed a connection it had answered on before, without saying so
            # (opentracker closes after every answer): like browsers, send the request again
            # on a new connection rather than count a failure.
            self.counts["retries"] += 1
            self.index = (self.index - self.step) % len(self.requests)
        elif conn.busy and now >= self.measure_from:
            self.counts["errors"] += 1
        self.send(self.replace(conn), now)

    def on_data(self, conn: _Connection, data: bytes, now: float) -> None:
        conn.buffer += data
        parsed = _answer_length(conn.buffer)
        if parsed is None or len(conn.buffer) < parsed[0]:
            if len(conn.buffer) > MAX_ANSWER:
                self.counts["errors"] += 1
                self.send(self.replace(conn), now)
            return
        total, ok, closes = parsed
        body = conn.buffer[conn.buffer.find(b"\r\n\r\n") + 4:total]
        conn.buffer = conn.buffer[total:]
        conn.busy = False
        conn.answered += 1
        if now >= self.measure_from:
            if ok and body[:1] == b"d" and b"failure reason" not in body:
                self.counts["ok"] += 1
            else:
                self.counts["failed"] += 1
        if closes:
            conn = self.replace(conn)
        self.send(conn, now)

    def replace_timed_out(self, now: float) -> None:
        for key in list(self.selector.get_map().values()):
            conn = key.data
            if conn.busy and now - conn.sent_at > REQUEST_TIMEOUT:
                if now >= self.measure_from:
                    self.counts["errors"] += 1
                self.send(self.replace(conn), now)

    def run(self, connections: int, stop_at: float) -> Dict[str, int]:
        now = time.monotonic()
        for _ in range(connections):
            self.send(self.connect(), now)
        while now < stop_at:
            for key, _ in self.selector.select(timeout=0.5):
                try:
                    data = key.data.sock.recv(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                now = time.monotonic()
                if data:
                    self.on_data(key.data, data, now)
                else:
                    self.on_closed(key.data, now)
            now = time.monotonic()
            self.replace_timed_out(now)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        return self.counts


def run_worker(address: Tuple[str, int], requests: List[bytes], first: int, step: int,
               connections: int, warmup: float, seconds: float,
               results: "multiprocessing.Queue") -> None:
    """Drive `connections` connections; counts what completes after the warm-up."""
    measure_from = time.monotonic() + warmup
    worker = _Worker(address, requests, first, step, measure_from)
    results.put(worker.run(connections, measure_from + seconds))


def run_load(url: str, peers: int = DEFAULT_PEERS, connections: int = 32, processes: int = 2,
             warmup: float = 2.0, seconds: float = 10.0,
             info_hash: bytes = DEFAULT_INFO_HASH) -> Dict[str, float]:
    """Run the load; returns totals and announces per second over the measured seconds."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    requests = announce_requests(parts.netloc, peers, info_hash)
    results: "multiprocessing.Queue" = multiprocessing.Queue()
    workers = []
    per_process = [connections // processes + (1 if i < connections % processes else 0)
                   for i in range(processes)]
    for i, count in enumerate(per_process):
        if count == 0:
            continue
        worker = multiprocessing.Process(
            target=run_worker, args=(address, requests, i, processes, count, warmup, seconds,
                                     results), daemon=True)
        worker.start()
        workers.append(worker)
    totals = {"ok": 0, "failed": 0, "errors": 0, "reconnects": 0, "retries": 0}
    for _ in workers:
        counts = results.get(timeout=warmup + seconds + 60)
        for name in totals:
            totals[name] += counts[name]
    for worker in workers:
        worker.join(10)
    result: Dict[str, float] = dict(totals)
    result["seconds"] = seconds
    result["announces_per_second"] = totals["ok"] / seconds
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="tracker base URL, e.g. http://127.0.0.1:4000")
    parser.add_argument("--peers", type=int, default=DEFAULT_PEERS)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--info-hash", default=DEFAULT_INFO_HASH.hex(), help="40 hex digits")
    args = parser.parse_args(argv)
    result = run_load(args.url, args.peers, args.connections, args.processes, args.warmup,
                      args.seconds, bytes.fromhex(args.info_hash))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
