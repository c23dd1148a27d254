"""Many BitTorrent peers in one process: a load that downloads from one seed as real peers do.

    python3 bench/peer_load.py TORRENT HOST:PORT [--peers 1000]
                               [--source 10.77.1.10 | --source 10.77.1.10-10.77.4.241]...
                               [--duration 60] [--connect-timeout 120]

Each peer is one TCP connection (asyncio) that speaks the peer wire protocol with sta's codec
(sta/wire.py): a handshake with the info hash and the fast extension bit, `have none`, then
`interested` once it has seen what the seed has (a bitfield or `have all`); while unchoked it
keeps PIPELINE block requests outstanding on random pieces and reads every piece that comes;
a choke (with its rejects) empties its pipeline. It sends a keep-alive every KEEPALIVE seconds.

Peers are spread over the --source addresses in turn (each --source is an address, or
FIRST-LAST for every address between the two; STA's seed takes at most
connlimits.MAX_PER_HOST connections per address, libtorrent's one unless
allow_multiple_connections_per_ip) and start at most HANDSHAKES_IN_FLIGHT at a time (STA's seed
keeps at most connlimits.MAX_PENDING_INCOMING connections in their handshake and closes the
oldest beyond that). Once every peer is connected, or --connect-timeout passed, the
load runs --duration seconds and prints one JSON object on stdout: peers connected, peers that
closed during the run (dropped), peers that never got through their handshake (failed),
distinct peers unchoked at the start or during the run, and the bytes and rate of piece
payload received in the run. A benchmark tool: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import sys
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sta import metainfo, wire  # noqa: E402

# Block requests a peer keeps outstanding while unchoked: 16 x 16 KiB = 256 KiB, about what
# a client pipelines on a fast local link (the seed accepts peer.MAX_INCOMING_REQUESTS).
PIPELINE = 16
# Connections started but not yet through their handshake, at once: below the seed's
# MAX_PENDING_INCOMING (100), so the seed never has to close one to make room.
HANDSHAKES_IN_FLIGHT = 40
# Seconds between keep-alives (the seed closes a connection silent for peer.IDLE_TIMEOUT).
KEEPALIVE = 60.0
# Deadline of one connection's TCP connect and handshake; a refused or late one is retried.
HANDSHAKE_DEADLINE = 15.0
CONNECT_ATTEMPTS = 3
# How often progress is checked while connecting and running.
POLL = 0.25
# Addresses one FIRST-LAST --source may name: one per peer for the largest load a bench runs,
# with room to spare; a typo such as 10.0.0.1-10.9.0.1 is refused rather than expanded.
MAX_SOURCE_RANGE = 65536


class LoadError(Exception):
    """The load cannot run as asked; the message says why."""


class Stats:
    """What every peer reports, summed."""

    def __init__(self) -> None:
        self.connected = 0
        self.dropped = 0
        self.failed = 0
        self.unchoked: Set[int] = set()
        self.received = 0
        self.reasons: Dict[str, int] = {}
        self.measuring = False


class LoadPeer(asyncio.Protocol):
    """One peer: handshake, interested, requests while unchoked, pieces read and counted."""

    def __init__(self, number: int, info_hash: bytes, piece_size: List[int],
                 stats: Stats, rng: random.Random) -> None:
        self.number = number
        self.info_hash = info_hash
        self.piece_size = piece_size
        self.stats = stats
        self.rng = rng
        self.reader = wire.MessageReader(expect_handshake=True, copy_blocks=False)
        self.transport: Optional[asyncio.Transport] = None
        self.joined: "asyncio.Future[bool]" = asyncio.get_event_loop().create_future()
        self.seed_has = False
        self.choked = True
        self.outstanding: Set[Tuple[int, int, int]] = set()
        self.last_sent = time.monotonic()
        self.closed = False
        self._blocks: List[Tuple[int, int, int]] = []

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer_id = b"-LD0001-" + b"%012d" % self.number
        self.send(wire.handshake(self.info_hash, peer_id, extensions=False, fast=True))

    def data_received(self, data: bytes) -> None:
        try:
            events = self.reader.feed(data)
        except wire.WireError as exc:
            self.close(f"bad message: {exc}")
            return
        for event in events:
            self.handle(event)
        self.fill()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.closed:
            self.closed = True
            if self.joined.done():
                if self.stats.measuring:
                    self.stats.dropped += 1
                reason = "closed by the seed"
                self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
        if not self.joined.done():
            self.joined.set_result(False)

    # -- messages -------------------------------------------------------------------------------

    def handle(self, event: object) -> None:
        kind = type(event)
        if kind is wire.Piece:
            piece = event  # type: ignore[assignment]
            key = (piece.index, piece.begin, len(piece.block))  # type: ignore[attr-defined]
            self.outstanding.discard(key)
            if self.stats.measuring:
                self.stats.received += key[2]
        elif kind is wire.Handshake:
            if event.info_hash != self.info_hash:  # type: ignore[attr-defined]
                self.close("the seed answered for another torrent")
                return
            self.send(wire.have_none())
        elif kind in (wire.HaveAll, wire.BitfieldMessage):
            if not self.seed_has:
                self.seed_has = True
                self.send(wire.interested())
                self.stats.connected += 1
                if not self.joined.done():
                    self.joined.set_result(True)
        elif kind is wire.Unchoke:
            self.choked = False
            self.stats.unchoked.add(self.number)
        elif kind is wire.Choke:
            self.choked = True
            self.outstanding.clear()  # BEP 3: the seed dropped them (with fast: rejects follow)
        elif kind is wire.Reject:
            self.outstanding.discard((event.index, event.begin, event.length))  # type: ignore

    def fill(self) -> None:
        """Keep PIPELINE requests outstanding while unchoked."""
        if self.choked or self.closed or not self.seed_has:
            return
        wanted = PIPELINE - len(self.outstanding)
        if wanted <= 0:
            return
        batch = []
        for _ in range(wanted):
            if not self._blocks:
                self._blocks = self._random_piece()
            block = self._blocks.pop()
            self.outstanding.add(block)
            batch.append(block)
        self.send(wire.requests(batch))

    def _random_piece(self) -> List[Tuple[int, int, int]]:
        index = self.rng.randrange(len(self.piece_size))
        size = self.piece_size[index]
        blocks = [(index, begin, min(wire.BLOCK_SIZE, size - begin))
                  for begin in range(0, size, wire.BLOCK_SIZE)]
        blocks.reverse()  # popped from the end: in order
        return blocks

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)
            self.last_sent = time.monotonic()

    def keep_alive(self, now: float) -> None:
        if now - self.last_sent >= KEEPALIVE:
            self.send(wire.keepalive())

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
            if self.transport is not None:
                self.transport.close()
        if not self.joined.done():
            self.joined.set_result(False)


class Load:
    def __init__(self, info_hash: bytes, piece_size: List[int], seed: Tuple[str, int],
                 sources: Sequence[str], count: int) -> None:
        self.info_hash = info_hash
        self.piece_size = piece_size
        self.seed = seed
        self.sources = list(sources) or [""]
        self.count = count
        self.stats = Stats()
        self.peers: List[LoadPeer] = []
        self.rng = random.Random(1)

    async def connect_one(self, number: int, gate: asyncio.Semaphore) -> None:
        loop = asyncio.get_event_loop()
        source = self.sources[number % len(self.sources)]
        local = (source, 0) if source else None
        for _ in range(CONNECT_ATTEMPTS):
            peer = LoadPeer(number, self.info_hash, self.piece_size, self.stats, self.rng)
            async with gate:
                try:
                    await asyncio.wait_for(loop.create_connection(
                        lambda: peer, self.seed[0], self.seed[1], local_addr=local),
                        HANDSHAKE_DEADLINE)
                    ok = await asyncio.wait_for(asyncio.shield(peer.joined), HANDSHAKE_DEADLINE)
                except (OSError, asyncio.TimeoutError):
                    ok = False
            if ok:
                self.peers.append(peer)
                return
            peer.close("no handshake")
        self.stats.failed += 1

    async def run(self, duration: float, connect_timeout: float) -> Dict[str, object]:
        gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
        started = time.monotonic()
        tasks = [asyncio.ensure_future(self.connect_one(n, gate)) for n in range(self.count)]
        done = asyncio.gather(*tasks)
        try:
            await asyncio.wait_for(asyncio.shield(done), connect_timeout)
        except asyncio.TimeoutError:
            pass
        connect_time = time.monotonic() - started
        live = sum(1 for p in self.peers if not p.closed)
        self.stats.measuring = True
        self.stats.unchoked = {p.number for p in self.peers if not p.choked and not p.closed}
        run_started = time.monotonic()
        least = live
        while time.monotonic() - run_started < duration:
            await asyncio.sleep(POLL)
            now = time.monotonic()
            for peer in self.peers:
                peer.keep_alive(now)
            least = min(least, sum(1 for p in self.peers if not p.closed))
        elapsed = time.monotonic() - run_started
        self.stats.measuring = False
        for task in tasks:
            task.cancel()
        result = {
            "peers": self.count, "connected": live, "connect_seconds": round(connect_time, 2),
            "fewest_during_run": least, "dropped": self.stats.dropped,
            "failed": self.stats.failed, "ever_unchoked": len(self.stats.unchoked),
            "received": self.stats.received, "seconds": round(elapsed, 2),
            "rate": self.stats.received / elapsed if elapsed > 0 else 0.0,
            "close_reasons": self.stats.reasons,
        }
        for peer in self.peers:
            peer.close("load finished")
        return result


def source_addresses(text: str) -> List[str]:
    """'10.77.1.10' -> that address; '10.77.1.10-10.77.1.12' -> the three addresses."""
    first, sep, last = text.partition("-")
    try:
        start = ipaddress.ip_address(first.strip())
        end = ipaddress.ip_address(last.strip()) if sep else start
    except ValueError:
        raise LoadError(f"{text!r} is not an address or a FIRST-LAST range of addresses")
    if start.version != end.version or end < start:
        raise LoadError(f"{text!r}: LAST must follow FIRST, in the same address family")
    count = int(end) - int(start) + 1
    if count > MAX_SOURCE_RANGE:
        raise LoadError(f"{text!r} names {count} addresses, more than {MAX_SOURCE_RANGE}")
    return [str(start + n) for n in range(count)]


def _seed_address(text: str) -> Tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("torrent")
    parser.add_argument("seed", type=_seed_address, metavar="HOST:PORT")
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--source", action="append", default=[],
                        help="local address, or FIRST-LAST range, to connect from "
                             "(repeat; used in turn)")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        sources = [a for text in args.source for a in source_addresses(text)]
    except LoadError as exc:
        sys.stderr.write(f"peer_load: bad --source {exc}\n")
        return 2
    try:
        meta = metainfo.load(args.torrent)
    except Exception as exc:
        sys.stderr.write(f"peer_load: cannot read {args.torrent}: {exc}\n")
        return 1
    info = meta.info
    sizes = [info.piece_size(i) for i in range(info.num_pieces)]
    load = Load(meta.info_hash, sizes, args.seed, sources, args.peers)
    result = asyncio.run(load.run(args.duration, args.connect_timeout))
    print(json.dumps(result), flush=True)
    return 0 if result["connected"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
