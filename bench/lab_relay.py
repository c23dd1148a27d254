"""Delay for the lab: a TCP relay that holds every chunk for a one-way delay; and a raw TCP
source and sink to measure what a link carries.

    python3 bench/lab_relay.py relay --listen 127.0.0.1:0 --to HOST:PORT --delay-ms 10
    python3 bench/lab_relay.py source --port P --bytes N
    python3 bench/lab_relay.py sink --to HOST:PORT

How the delay is made. The relay runs on the downloader's host. It accepts a connection, opens
one to HOST:PORT (the seed) and copies both ways, each way by two threads: one reads chunks (up
to CHUNK bytes, as they come) and stamps each with now + delay; the other writes each chunk once
its time has come. So every byte is held for the one-way delay in each direction (the round
trip seen by the two programs is twice --delay-ms), and the rate is the rate at which the
chunks arrive, i.e. that of the shaped link in front of the relay: nothing is paced here.

Limits. The relay splits the TCP connection in two: each half has the round trip of its own
hop (near zero), so TCP's own window growth and loss recovery never see the delay. What does
see it is everything end to end: a request takes the delay to reach the seed and the block the
delay to come back, which is what limits a BitTorrent client that keeps too few requests in
flight (at 100 Mbit/s and 20 ms, 250 KB, 16 blocks of 16 KiB, must be outstanding). A chunk is
held to within the scheduler's wake-up error (well under a millisecond unless the machine is
loaded). At most QUEUE_LIMIT bytes wait per direction; beyond that the relay stops reading, so
a slow reader slows the sender as TCP would. Only connections made to the relay are delayed.

Measurement. For the direction towards the downloader the relay counts bytes as it delivers
them: the moment the first PAYLOAD_START bytes have gone by (handshakes done, the first block
arriving), the moment of the last byte, and the bytes between. It prints
`DOWN <bytes> <seconds>` after each connection closes and at exit (SIGTERM), for all of the
relay's connections together.
"""

from __future__ import annotations

import argparse
import collections
import signal
import socket
import sys
import threading
import time
from typing import Deque, Optional, Tuple

# Bytes read at once: a socket buffer's worth at most; smaller chunks only cost more wake-ups.
CHUNK = 64 * 1024
# Bytes waiting per direction before the relay stops reading: 4 MiB is 330 ms at 100 Mbit/s,
# far more than the rate x delay product the relay has to hold (250 KB at 100 Mbit/s, 20 ms).
QUEUE_LIMIT = 4 * 1024 * 1024
# The downloader-side clock starts once this much has come through: past the handshakes and the
# bitfield, at the first 16 KiB block.
PAYLOAD_START = 16 * 1024
# Deadline for connecting to the target and for a source's one client to arrive.
CONNECT_TIMEOUT = 10.0
ACCEPT_TIMEOUT = 120.0
SOURCE_BUFFER = 1024 * 1024


class RelayError(Exception):
    """A relay, source or sink could not do its job; the message says why."""


class DownCounter:
    """Bytes delivered towards the downloader, timed from the first PAYLOAD_START bytes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.at_start: Optional[Tuple[int, float]] = None
        self.last = 0.0

    def add(self, n: int) -> None:
        now = time.monotonic()
        with self.lock:
            self.total += n
            self.last = now
            if self.at_start is None and self.total >= PAYLOAD_START:
                self.at_start = (self.total, now)

    def line(self) -> str:
        with self.lock:
            if self.at_start is None:
                return "DOWN 0 0"
            total0, t0 = self.at_start
            return "DOWN %d %.6f" % (self.total - total0, self.last - t0)


class DelayedPipe:
    """One direction of a relayed connection: read, hold for `delay`, write."""

    def __init__(self, src: socket.socket, dst: socket.socket, delay: float,
                 counter: Optional[DownCounter]) -> None:
        self.src, self.dst, self.delay, self.counter = src, dst, delay, counter
        self.queue: Deque[Tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._write, daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.src.recv(CHUNK)
            except OSError:
                data = b""
            with self.cond:
                while self.queued > QUEUE_LIMIT:
                    self.cond.wait()
                self.queue.append((time.monotonic() + self.delay, data))
                self.queued += len(data)
                self.cond.notify_all()
            if not data:
                return

    def _write(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                due, data = self.queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.cond:
                self.queue.popleft()
                self.queued -= len(data)
                self.cond.notify_all()
            if not data:
                _shutdown(self.dst)
                return
            try:
                self.dst.sendall(data)
            except OSError:
                _shutdown(self.src)
                return
            if self.counter is not None:
                self.counter.add(len(data))

    def join(self) -> None:
        for t in self.threads:
            t.join()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def parse_address(text: str) -> Tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise RelayError("bad address %r: expected HOST:PORT" % text)
    return host, int(port)


def listen(host: str, port: int) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(16)
    print("LISTENING %d" % server.getsockname()[1], flush=True)
    return server


def relay(args: argparse.Namespace, counter: DownCounter) -> None:
    server = listen(*parse_address(args.listen))
    target = parse_address(args.to)
    delay = args.delay_ms / 1000.0

    def serve(client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        pipes = [DelayedPipe(client, upstream, delay, None),
                 DelayedPipe(upstream, client, delay, counter)]
        for pipe in pipes:
            pipe.join()
        client.close()
        upstream.close()
        print(counter.line(), flush=True)

    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


def source(args: argparse.Namespace) -> None:
    server = listen("0.0.0.0", args.port)
    server.settimeout(ACCEPT_TIMEOUT)
    try:
        conn, _ = server.accept()
    except socket.timeout:
        raise RelayError("no one connected within %.0f s" % ACCEPT_TIMEOUT)
    conn.settimeout(None)
    block = memoryview(bytes(SOURCE_BUFFER))
    left = args.bytes
    while left > 0:
        n = conn.send(block[:min(left, SOURCE_BUFFER)])
        left -= n
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)  # wait for the sink to close: every byte has arrived
    conn.close()


def sink(args: argparse.Namespace) -> None:
    conn = socket.create_connection(parse_address(args.to), timeout=CONNECT_TIMEOUT)
    conn.settimeout(None)
    started, total = time.monotonic(), 0
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        total += len(data)
    conn.close()
    print("RECEIVED %d %.6f" % (total, time.monotonic() - started), flush=True)


def _terminate(signum, frame):
    raise SystemExit(0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lab_relay", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    sub.required = True
    p = sub.add_parser("relay")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--to", required=True)
    p.add_argument("--delay-ms", type=float, default=10.0, help="one-way, each direction")
    p = sub.add_parser("source")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bytes", type=int, required=True)
    p = sub.add_parser("sink")
    p.add_argument("--to", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    counter = DownCounter()
    try:
        if args.mode == "relay":
            relay(args, counter)
        elif args.mode == "source":
            source(args)
        else:
            sink(args)
    except (RelayError, OSError) as exc:
        sys.stderr.write("lab_relay: error: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if args.mode == "relay":
            print(counter.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
