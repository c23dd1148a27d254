"""A mainline DHT node (BEP 5): a full member that answers ping, find_node, get_peers and
announce_peer, keeps a routing table, and looks up and announces peers for the engine.

The node speaks through a datagram endpoint it is given: something with ``send(data,
address)``; whoever owns the socket hands every DHT datagram to ``datagram_received(data,
address)``. ``start()`` without an endpoint opens its own UDP socket (``UdpEndpoint``); a
session that shares the peer port's UDP socket with uTP passes its own.

What the engine calls (all on the node's event loop):

- ``await start(host, port)``, ``await stop()`` (which saves), ``save()``;
- ``await get_peers(info_hash) -> [(host, port), ...]``: one bounded lookup;
- ``await announce(info_hash, port) -> int``: a lookup, then announce_peer to the nearest
  nodes that gave a token; the number that accepted. Call it again every 15 minutes (as
  libtorrent's dht_announce_interval) while the torrent runs.

**Private torrents (BEP 27, ``info.private``) must never reach the DHT**: neither
``get_peers`` nor ``announce`` may be called for them. The node cannot tell a private info
hash from another, so the rule is the caller's.

The node's id and the nodes it knows are saved in ``state_path`` (the ``dht`` command uses
``STA_HOME/dht.bencode``) with an atomic write, on ``stop`` and every SAVE_INTERVAL, so a
restart rejoins from them without a bootstrap node.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple

from . import bencode, krpc
from .dht_lookup import Lookup
from .dht_routing import K, RoutingError, RoutingTable
from .dht_store import PeerStore, QueryBudget, TokenKeeper
from .krpc import KrpcError, KrpcFailure, NodeInfo, Query, Response
from .resume import ResumeError, write_atomically

__all__ = ["DhtNode", "DhtError", "DatagramSender", "UdpEndpoint", "STATE_FILE",
           "QUERY_TIMEOUT", "LOOKUP_TIMEOUT"]

log = logging.getLogger(__name__)

Address = Tuple[str, int]

# The state file's name under STA_HOME (beside torrents.bencode).
STATE_FILE = "dht.bencode"
# Seconds a query waits for its answer. On a LAN an answer takes milliseconds; libtorrent
# moves on from a slow node after a 1 s "short timeout" and gives it up after 15 s; 3 s keeps
# a lookup moving without writing off a node that is merely slow.
QUERY_TIMEOUT = 3.0
# Seconds after which a lookup stops waiting on a query before asking another node in its
# stead (the query stays open until QUERY_TIMEOUT): libtorrent's "short timeout" of 1 s.
SHORT_TIMEOUT = 1.0
# Seconds one lookup (get_peers, announce, bootstrap, refresh) may take in all.
LOOKUP_TIMEOUT = 20.0
# Queries awaiting an answer at once; more waits for a free slot's worth of answers (bounds
# memory and what a burst of lookups can send; libtorrent caps its transactions similarly).
MAX_PENDING = 512
# Seconds between maintenance passes (bucket refresh, pings, expiry, bootstrap retry).
MAINTENANCE_INTERVAL = 5.0
# A node with fewer good nodes than this bootstraps again, at most every BOOTSTRAP_RETRY s.
BOOTSTRAP_RETRY = 30.0
# Questionable nodes pinged per maintenance pass, least recently seen first.
PINGS_PER_PASS = 8
# Seconds between periodic saves of the state (besides the one at stop).
SAVE_INTERVAL = 10 * 60.0
# Nodes written to the state file: enough to rejoin from, nearest buckets first
# (libtorrent saves its routing table's nodes, a few hundred at most).
MAX_SAVED_NODES = 200
# Largest state file read back: 200 nodes are about 5 KB.
MAX_STATE_BYTES = 1 << 16


class DhtError(Exception):
    """The DHT node cannot do what was asked (not started, cannot bind its port)."""


class DatagramSender(Protocol):
    """Whoever owns the UDP socket: sends one datagram to an address."""

    def send(self, data: bytes, address: Address) -> None: ...


@dataclass
class _Pending:
    address: Address
    node_id: Optional[bytes]
    future: "asyncio.Future[Optional[Response]]"


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


class DhtNode:
    """One DHT node. ``bootstrap``: (host, port) pairs to join through (host names are
    resolved at each bootstrap). ``state_path``: where the id and nodes are saved (None: not
    saved). ``clock``, ``rng`` and ``budget`` are for tests."""

    def __init__(self, *, bootstrap: Sequence[Address] = (), state_path: Optional[str] = None,
                 node_id: Optional[bytes] = None, clock: Callable[[], float] = time.monotonic,
                 rng: Optional[random.Random] = None, budget: Optional[QueryBudget] = None,
                 query_timeout: float = QUERY_TIMEOUT) -> None:
        self.bootstrap_addresses = list(bootstrap)
        self.state_path = state_path
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self.query_timeout = query_timeout
        saved_id, saved_nodes = self._load_state()
        self.node_id = node_id or saved_id or os.urandom(20)
        now = clock()
        self.routing = RoutingTable(self.node_id, now)
        self.routing.add_all(((n.node_id, n.address) for n in saved_nodes), now)
        self.tokens = TokenKeeper(now, os.urandom)
        self.peer_store = PeerStore()
        self.budget = budget or QueryBudget()
        self._sender: Optional[DatagramSender] = None
        self._endpoint: Optional[UdpEndpoint] = None
        self._pending: Dict[bytes, _Pending] = {}
        self._next_tid = self.rng.randrange(1 << 16)
        self._slots: Optional[asyncio.Semaphore] = None
        self._tasks: List["asyncio.Task[Any]"] = []
        self._last_bootstrap = float("-inf")
        self._last_save = now
        self.address: Optional[Address] = None

    # ------------------------------------------------------------------------- life cycle

    async def start(self, host: str = "0.0.0.0", port: int = 0,
                    sender: Optional[DatagramSender] = None) -> None:
        """Listen (on our own UDP socket unless ``sender`` is given) and begin joining."""
        if sender is None:
            self._endpoint = await UdpEndpoint.open(host, port, self)
            sender = self._endpoint
            self.address = self._endpoint.address
        self._sender = sender
        self._slots = asyncio.Semaphore(MAX_PENDING)
        self._tasks.append(asyncio.ensure_future(self._maintain()))

    async def stop(self) -> None:
        """Stop every lookup and timer, save the state, close our socket."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_result(None)
        self._pending.clear()
        self.save()
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
        self._sender = None

    def node_count(self) -> int:
        """Nodes in the routing table (good and questionable)."""
        return len(self.routing)

    # ------------------------------------------------------------------------------- state

    def _load_state(self) -> Tuple[Optional[bytes], Tuple[NodeInfo, ...]]:
        if not self.state_path or not os.path.exists(self.state_path):
            return None, ()
        try:
            with open(self.state_path, "rb") as f:
                data = f.read(MAX_STATE_BYTES + 1)
            state = bencode.decode(data) if len(data) <= MAX_STATE_BYTES else None
            node_id = state.get(b"id") if isinstance(state, dict) else None
            nodes = state.get(b"nodes", b"") if isinstance(state, dict) else b""
            if not isinstance(node_id, bytes) or len(node_id) != 20 \
                    or not isinstance(nodes, bytes):
                raise KrpcError("not a DHT state file")
            return node_id, krpc.unpack_nodes(nodes, MAX_SAVED_NODES)
        except (OSError, bencode.BencodeError, KrpcError) as exc:
            log.warning("DHT state %s not used (%s): starting afresh", self.state_path, exc)
            return None, ()

    def save(self) -> None:
        """Write the id and the nodes worth rejoining from, atomically (a failure is logged)."""
        if not self.state_path:
            return
        now = self.clock()
        entries = sorted((e for e in self.routing.nodes() if e.state(now) != "bad"),
                         key=lambda e: e.state(now) != "good")[:MAX_SAVED_NODES]
        nodes = [NodeInfo(e.node_id, *e.address) for e in entries if _is_ipv4(e.address[0])]
        data = bencode.encode({b"id": self.node_id, b"nodes": krpc.pack_nodes(nodes)})
        try:
            write_atomically(self.state_path, data)
            self._last_save = now
        except ResumeError as exc:
            log.warning("cannot save the DHT state: %s", exc)

    # ------------------------------------------------------------------------ datagrams in

    def datagram_received(self, data: bytes, address: Address) -> None:
        """One datagram from ``address``; anything malformed or unexpected is dropped."""
        if not self._sender or not _is_ipv4(address[0]) or not 0 < address[1] < 65536:
            return
        try:
            message = krpc.decode_message(data)
        except KrpcError as exc:
            log.debug("DHT datagram from %s:%d dropped: %s", address[0], address[1], exc)
            return
        if isinstance(message, Query):
            self._answer(message, address)
            return
        pending = self._pending.get(message.tid)
        if pending is None or pending.address != address:
            return  # not an answer to anything we asked from there
        del self._pending[message.tid]
        if not pending.future.done():
            pending.future.set_result(message if isinstance(message, Response) else None)
        if isinstance(message, KrpcFailure):
            log.debug("DHT error %d from %s: %s", message.code, address, message.text)

    def _answer(self, query: Query, address: Address) -> None:
        now = self.clock()
        if not self.budget.allow(address, now):
            return
        if not query.read_only:
            self._heard(query.sender, address, now, answered=False)
        method = query.method
        nodes = []
        if query.target is not None and method != "announce_peer":
            nodes = [NodeInfo(e.node_id, *e.address)
                     for e in self.routing.closest(query.target, K, now)]
        if method == "ping":
            reply = krpc.encode_response(query.tid, self.node_id, requester=address)
        elif method == "get_peers":
            values = self.peer_store.peers(query.target or b"", now, self.rng)
            reply = krpc.encode_response(query.tid, self.node_id, nodes=nodes, values=values,
                                         token=self.tokens.token_for(address[0], now),
                                         requester=address)
        elif method == "announce_peer":
            reply = self._announced(query, address, now)
        elif query.target is not None:  # find_node, and unknown methods naming a target
            reply = krpc.encode_response(query.tid, self.node_id, nodes=nodes,
                                         requester=address)
        else:
            reply = krpc.encode_error(query.tid, krpc.ERROR_METHOD_UNKNOWN, "Method Unknown")
        self._send(reply, address)

    def _announced(self, query: Query, address: Address, now: float) -> bytes:
        if not self.tokens.check(query.token or b"", address[0], now):
            return krpc.encode_error(query.tid, krpc.ERROR_PROTOCOL, "bad token")
        port = address[1] if query.implied_port or query.port is None else query.port
        self.peer_store.add(query.target or b"", (address[0], port), now)
        return krpc.encode_response(query.tid, self.node_id, requester=address)

    def _heard(self, node_id: bytes, address: Address, now: float, answered: bool) -> None:
        try:
            to_ping = self.routing.heard_from(node_id, address, now, answered)
        except RoutingError:
            return
        if to_ping is not None and self._sender is not None:
            self._spawn(self._ping(to_ping.address, to_ping.node_id))

    def _send(self, data: bytes, address: Address) -> None:
        if self._sender is None:
            return
        try:
            self._sender.send(data, address)
        except OSError as exc:
            log.debug("DHT send to %s failed: %s", address, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: "asyncio.Task[Any]") -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("DHT task failed: %s", task.exception())

    # ---------------------------------------------------------------------- queries out

    def _new_tid(self) -> bytes:
        for _ in range(1 << 16):
            self._next_tid = (self._next_tid + 1) & 0xFFFF
            tid = self._next_tid.to_bytes(2, "big")
            if tid not in self._pending:
                return tid
        raise DhtError("no free transaction id")  # unreachable under MAX_PENDING

    async def _query(self, address: Address, method: str, node_id: Optional[bytes] = None,
                     **args: Any) -> Optional[Response]:
        """Send one query and wait for its answer; None on silence or an error answer."""
        if self._sender is None or self._slots is None:
            raise DhtError("the DHT node is not started")
        async with self._slots:
            tid = self._new_tid()
            future: "asyncio.Future[Optional[Response]]" = \
                asyncio.get_running_loop().create_future()
            self._pending[tid] = _Pending(address, node_id, future)
            self._send(krpc.encode_query(tid, method, self.node_id, **args), address)
            try:
                response = await asyncio.wait_for(future, self.query_timeout)
            except asyncio.TimeoutError:
                response = None
            finally:
                self._pending.pop(tid, None)
        now = self.clock()
        if response is not None:
            self._heard(response.sender, address, now, answered=True)
        elif node_id is not None:
            self.routing.failed(node_id, now)
        return response

    async def _ping(self, address: Address, node_id: Optional[bytes] = None) -> bool:
        return await self._query(address, "ping", node_id) is not None

    # ------------------------------------------------------------------------- lookups

    async def _bootstrap_seeds(self, target: bytes) -> List[NodeInfo]:
        """Bootstrap addresses as lookup candidates; their ids are unknown, so each stands in
        with the target's id (asked first) until it answers with its own."""
        loop = asyncio.get_running_loop()
        seeds = []
        for host, port in self.bootstrap_addresses:
            try:
                infos = await loop.getaddrinfo(host, port, family=socket.AF_INET,
                                                type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning("DHT bootstrap node %s:%d not found: %s", host, port, exc)
                continue
            for info in infos[:1]:
                if (info[4][0], info[4][1]) != self.address:
                    seeds.append(NodeInfo(target, info[4][0], info[4][1]))
        return seeds

    async def _lookup(self, target: bytes, method: str, timeout: float,
                      max_peers: Optional[int] = None) -> Lookup:
        if self._sender is None:
            raise DhtError("the DHT node is not started")
        lookup = Lookup(target, **({} if max_peers is None else {"max_peers": max_peers}))
        now = self.clock()
        known = [NodeInfo(e.node_id, *e.address) for e in self.routing.closest(target, 2 * K,
                                                                                  now)]
        lookup.add_candidates(known)
        # Saved nodes are only questionable until they answer, and after days away they may all
        # be gone: the bootstrap nodes are asked too until K nodes have answered us.
        if self.routing.counts(now)["good"] < K:
            lookup.add_candidates(await self._bootstrap_seeds(target))
        arg = "target" if method == "find_node" else "info_hash"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        running: Dict["asyncio.Future[Any]", NodeInfo] = {}
        slow_at: Dict["asyncio.Future[Any]", float] = {}  # when a query counts as slow
        try:
            while not lookup.done:
                for node in lookup.next_queries():
                    query = self._query(node.address, method,
                                        None if node.node_id == target else node.node_id,
                                        **{arg: target})
                    future = asyncio.ensure_future(query)
                    running[future] = node
                    slow_at[future] = loop.time() + SHORT_TIMEOUT
                now = loop.time()
                if not running or now >= deadline:
                    break
                wake = min([deadline] + list(slow_at.values()))
                finished, _ = await asyncio.wait(list(running), timeout=max(0.0, wake - now),
                                                 return_when=asyncio.FIRST_COMPLETED)
                for future in finished:
                    slow_at.pop(future, None)
                    self._record(lookup, running.pop(future), future.result())
                for future in [f for f, at in slow_at.items() if at <= loop.time()]:
                    del slow_at[future]
                    lookup.slow(running[future])
        finally:
            for future in running:
                future.cancel()
        return lookup

    @staticmethod
    def _record(lookup: Lookup, node: NodeInfo, response: Optional[Response]) -> None:
        if response is None:
            lookup.failed(node)
        else:
            lookup.answered(NodeInfo(response.sender, node.host, node.port), response.nodes,
                            response.values, response.token)

    async def bootstrap(self, timeout: float = LOOKUP_TIMEOUT) -> int:
        """Look ourselves up (through the bootstrap nodes when the table is nearly empty);
        returns the number of nodes known afterwards."""
        self._last_bootstrap = self.clock()
        await self._lookup(self.node_id, "find_node", timeout)
        return len(self.routing)

    async def get_peers(self, info_hash: bytes, timeout: float = LOOKUP_TIMEOUT,
                        max_peers: int = 200) -> List[Address]:
        """Peers of ``info_hash`` from one lookup (and what was announced to us), at most
        ``max_peers``, within ``timeout`` seconds. Never for a private torrent."""
        lookup = await self._lookup(_info_hash(info_hash), "get_peers", timeout, max_peers)
        local = self.peer_store.peers(info_hash, self.clock(), self.rng, max_peers)
        found = list(dict.fromkeys(lookup.peers + local))
        return found[:max_peers]

    async def announce(self, info_hash: bytes, port: int, timeout: float = LOOKUP_TIMEOUT,
                       implied_port: bool = False) -> int:
        """Tell the nodes nearest ``info_hash`` that we serve it on TCP ``port``; returns how
        many accepted. Never for a private torrent."""
        if not 0 < port < 65536:
            raise DhtError(f"cannot announce port {port}")
        lookup = await self._lookup(_info_hash(info_hash), "get_peers", timeout)
        answers = await asyncio.gather(*(
            self._query(node.address, "announce_peer", node.node_id, info_hash=info_hash,
                        port=port, token=token, implied_port=1 if implied_port else None)
            for node, token in lookup.announce_targets()))
        return sum(1 for a in answers if a is not None)

    # ---------------------------------------------------------------------- maintenance

    async def _maintain(self) -> None:
        """Bootstrap, refresh stale buckets, ping questionable nodes, expire peers, save."""
        while True:
            now = self.clock()
            if self.routing.counts(now)["good"] < K and \
                    now - self._last_bootstrap >= BOOTSTRAP_RETRY:
                await self.bootstrap()
            for target in self.routing.refresh_targets(now, self.rng):
                self.routing.refreshed(target, now)
                self._spawn(self._lookup(target, "find_node", LOOKUP_TIMEOUT))
            for entry in self.routing.questionable(now)[:PINGS_PER_PASS]:
                self._spawn(self._ping(entry.address, entry.node_id))
            self.peer_store.expire(now)
            if now - self._last_save >= SAVE_INTERVAL:
                self.save()
            await asyncio.sleep(MAINTENANCE_INTERVAL)


def _info_hash(value: bytes) -> bytes:
    if not isinstance(value, bytes) or len(value) != 20:
        raise DhtError("an info hash is 20 bytes")
    return value


class UdpEndpoint(asyncio.DatagramProtocol):
    """The node's own UDP socket: datagrams in go to the node, ``send`` writes one out."""

    def __init__(self, node: DhtNode) -> None:
        self.node = node
        self.transport: Optional[asyncio.DatagramTransport] = None

    @classmethod
    async def open(cls, host: str, port: int, node: DhtNode) -> "UdpEndpoint":
        loop = asyncio.get_running_loop()
        try:
            _, endpoint = await loop.create_datagram_endpoint(lambda: cls(node),
                                                              local_addr=(host, port))
        except OSError as exc:
            raise DhtError(f"cannot listen for the DHT on UDP {host}:{port}: "
                           f"{exc.strerror or exc}") from exc
        return endpoint

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.node.datagram_received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("DHT socket error: %s", exc)

    def send(self, data: bytes, address: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, address)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
