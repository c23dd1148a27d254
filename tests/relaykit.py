"""A user-space UDP relay on 127.0.0.1 that makes loopback look like a real path: one-way
delay, loss, reordering, duplication and a rate limit with a bounded queue, all seeded.

A client sends to the relay's port as if it were the target; the relay forwards each datagram
to the target from a socket of its own for that client (so the target sees one address per
client) and sends the target's answers back to the client from its front port. Each direction
is its own path with the same settings:

- ``rate`` (bytes per second, None: unlimited): datagrams leave one after another at that rate,
  as through a bottleneck link; a datagram that would wait more than ``queue_delay`` seconds
  behind the others is dropped (a drop-tail router queue of rate * queue_delay bytes);
- ``delay``: seconds added to every datagram after its turn on the link;
- ``loss``, ``duplicate``, ``reorder``: the share of datagrams dropped, sent twice, or held back
  an extra random time up to ``reorder_spread`` seconds so that later ones overtake them.

The relay runs on a thread (``UdpRelay``) or as a process (``python3 -m tests.relaykit
--target HOST:PORT ...`` prints ``RELAY <port>`` and runs until killed), so a benchmark keeps
its Python work off the nodes' interpreters.
"""

from __future__ import annotations

import argparse
import heapq
import random
import select
import socket
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

Address = Tuple[str, int]

# Datagrams waiting in the relay at most (all directions); more are dropped. Bounds memory when
# the delay is long and the sender fast.
MAX_QUEUED = 20000
# Clients the relay serves at most (each has a socket toward the target).
MAX_CLIENTS = 64
# Largest datagram read (uTP's are under 1500 bytes; a DHT answer under 1.5 KiB).
MAX_DATAGRAM = 65536
# Socket buffers of the relay's sockets, as the nodes' (utp.SOCKET_BUFFER).
SOCKET_BUFFER = 4 * 1024 * 1024
# The select() wait when nothing is due: bounds how late close() is noticed.
IDLE_WAIT = 0.05
# Datagrams read from one socket per wake-up before the others get their turn.
READ_BURST = 64


def _udp_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


class _Path:
    """One direction's link: when it is free again, for the rate limit."""

    def __init__(self) -> None:
        self.free_at = 0.0


class UdpRelay:
    def __init__(self, target: Address, *, delay: float = 0.0, loss: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, reorder_spread: float = 0.005,
                 rate: Optional[float] = None, queue_delay: float = 0.05, seed: int = 0) -> None:
        self.target = target
        self.delay = delay
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.reorder_spread = reorder_spread
        self.rate = rate
        self.queue_delay = queue_delay
        self.rng = random.Random(seed)
        self.front = _udp_socket()
        self.port: int = self.front.getsockname()[1]
        self._backs: Dict[Address, socket.socket] = {}
        self._clients: Dict[socket.socket, Address] = {}
        self._paths: Dict[Tuple[Address, bool], _Path] = {}
        self._queue: List[Tuple[float, int, socket.socket, bytes, Address]] = []
        self._seq = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.counts = {"in": 0, "out": 0, "lost": 0, "queue_full": 0, "duplicated": 0,
                       "reordered": 0}

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> "UdpRelay":
        self._thread = threading.Thread(target=self.run, name="udp-relay", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close every socket (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for sock in [self.front, *self._backs.values()]:
            sock.close()
        self._backs.clear()
        self._clients.clear()

    def run(self) -> None:
        while not self._stop.is_set():
            wait = IDLE_WAIT
            if self._queue:
                wait = min(wait, max(0.0, self._queue[0][0] - time.monotonic()))
            readable, _, _ = select.select([self.front, *self._backs.values()], [], [], wait)
            for sock in readable:
                self._read(sock)
            self._deliver(time.monotonic())

    # -- datagrams -----------------------------------------------------------------------------

    def _read(self, sock: socket.socket) -> None:
        for _ in range(READ_BURST):
            try:
                data, source = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error from an earlier send; nothing to relay
                return
            self.counts["in"] += 1
            if sock is self.front:
                back = self._back_for((source[0], source[1]))
                if back is not None:
                    self._schedule(data, back, self.target, ((source[0], source[1]), True))
            else:
                client = self._clients.get(sock)
                if client is not None:
                    self._schedule(data, self.front, client, (client, False))

    def _back_for(self, client: Address) -> Optional[socket.socket]:
        back = self._backs.get(client)
        if back is None and len(self._backs) < MAX_CLIENTS:
            back = _udp_socket()
            self._backs[client] = back
            self._clients[back] = client
        return back

    def _schedule(self, data: bytes, via: socket.socket, to: Address,
                  direction: Tuple[Address, bool]) -> None:
        rng = self.rng
        if rng.random() < self.loss:
            self.counts["lost"] += 1
            return
        now = time.monotonic()
        leave = now
        if self.rate:
            path = self._paths.setdefault(direction, _Path())
            start = max(now, path.free_at)
            if start - now > self.queue_delay:
                self.counts["queue_full"] += 1
                return
            path.free_at = start + len(data) / self.rate
            leave = path.free_at
        copies = 2 if rng.random() < self.duplicate else 1
        self.counts["duplicated"] += copies - 1
        for _ in range(copies):
            due = leave + self.delay
            if rng.random() < self.reorder:
                self.counts["reordered"] += 1
                due += rng.uniform(0.0, self.reorder_spread)
            if len(self._queue) >= MAX_QUEUED:
                self.counts["queue_full"] += 1
                return
            self._seq += 1
            heapq.heappush(self._queue, (due, self._seq, via, data, to))

    def _deliver(self, now: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= now:
            _, _, via, data, to = heapq.heappop(queue)
            try:
                via.sendto(data, to)
                self.counts["out"] += 1
            except OSError:  # a full send buffer or a gone peer: the datagram is lost
                self.counts["lost"] += 1


def _target(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="relaykit", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", type=_target, required=True, help="HOST:PORT to relay to")
    p.add_argument("--delay", type=float, default=0.0, help="one-way delay in seconds")
    p.add_argument("--loss", type=float, default=0.0, help="share of datagrams lost (0-1)")
    p.add_argument("--duplicate", type=float, default=0.0)
    p.add_argument("--reorder", type=float, default=0.0)
    p.add_argument("--rate", type=float, default=0.0, help="bits per second (0: unlimited)")
    p.add_argument("--queue-delay", type=float, default=0.05,
                   help="seconds of queue at the rate limit before drops")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    relay = UdpRelay(args.target, delay=args.delay, loss=args.loss, duplicate=args.duplicate,
                     reorder=args.reorder, rate=args.rate / 8 if args.rate else None,
                     queue_delay=args.queue_delay, seed=args.seed)
    sys.stdout.write(f"RELAY {relay.port}\n")
    sys.stdout.flush()
    try:
        relay.run()
    except KeyboardInterrupt:
        pass
    finally:
        relay.close()
        sys.stderr.write(f"relay: {relay.counts}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
