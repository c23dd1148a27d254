"""How many peer connections a node takes, and from whom: a policy with no sockets and no clock.

One host must not be able to fill a node with connections that never do anything. So:
- every connection counts against MAX_CONNECTIONS, but incoming ones only up to
  MAX_CONNECTIONS - OUTGOING_RESERVE: the slots kept back let the node always dial out;
- incoming connections that have not finished their handshake ("pending") are at most
  MAX_PENDING_INCOMING in all and MAX_PENDING_PER_HOST per address; when the pending pool is
  full, the oldest pending connection gives way to the newcomer (a real peer finishes its
  handshake in milliseconds, a silent one waits for its deadline), so sockets that never speak
  cannot lock real peers out, and slots are kept for peers that complete a handshake;
- at most MAX_PER_HOST incoming connections per remote address, and at most
  MAX_OUTGOING_PER_HOST outgoing ones: we choose whom we dial, and several nodes on one lab
  machine, each seeding several torrents, each need a connection per torrent.
The session asks ``admit`` when a stream opens and reports ``joined`` and ``closed``; the
handshake deadline itself is the connection's (peer.HANDSHAKE_TIMEOUT).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Hashable, Optional, Tuple

# Incoming connections for the whole node: a lab seed must take every peer of a 1,000-peer
# swarm at once, with room for a few more. libtorrent's connections_limit is 200 by default and
# raised for seed boxes; Transmission's peer-limit-global is 200. A seed in a lab is such a box.
MAX_INCOMING = 1100
# Slots only outgoing connections may take, so a flood of incoming ones never stops a node
# from dialling the peers it needs (libtorrent keeps connection slots for outgoing attempts in
# the same spirit with its connections_slack).
OUTGOING_RESERVE = 100
# Connections for the whole node, in and out.
MAX_CONNECTIONS = MAX_INCOMING + OUTGOING_RESERVE
# Incoming connections still in their handshake (TLS and proofs included), in all and per
# address. A real peer leaves this state within a round trip; libtorrent's half_open_limit once
# bounded outgoing attempts the same way.
MAX_PENDING_INCOMING = 100
# Per address: a node that starts ten torrents dials each of its peers ten times at once, one
# connection per torrent, so the handshakes of one host may arrive together; twelve covers that
# while one address still holds only an eighth of the pending pool.
MAX_PENDING_PER_HOST = 12
# Incoming connections per remote address. libtorrent allows one per IP by default; several
# nodes behind one NAT address, or several STA nodes on one lab machine, each need their own.
MAX_PER_HOST = 16
# Outgoing connections per remote address: three seeds on one lab machine serving ten torrents
# take thirty; the torrents' own dial limits (swarm.MAX_DIALLED_PEERS) bound the rest.
MAX_OUTGOING_PER_HOST = 64


class ConnectionLimits:
    def __init__(self) -> None:
        self._incoming = 0
        self._total = 0
        self._by_host: Dict[str, int] = {}       # incoming connections per address
        self._out_by_host: Dict[str, int] = {}   # outgoing connections per address
        self._pending: "OrderedDict[Hashable, str]" = OrderedDict()   # conn -> host, oldest first
        self._pending_by_host: Dict[str, int] = {}
        self._counted: Dict[Hashable, Tuple[str, bool]] = {}

    def admit(self, conn: Hashable, host: str, incoming: bool) -> Tuple[Optional[str], Any]:
        """(reason to refuse, or None; a pending connection to close to make room, or None).
        An admitted connection is counted until ``closed``."""
        if incoming and self._by_host.get(host, 0) >= MAX_PER_HOST:
            return f"too many connections from {host}", None
        if not incoming and self._out_by_host.get(host, 0) >= MAX_OUTGOING_PER_HOST:
            return f"too many connections to {host}", None
        if self._total >= MAX_CONNECTIONS:
            return "connection limit reached", None
        evict = None
        if incoming:
            if self._incoming >= MAX_CONNECTIONS - OUTGOING_RESERVE:
                return "incoming connection limit reached", None
            if self._pending_by_host.get(host, 0) >= MAX_PENDING_PER_HOST:
                return f"too many handshakes in progress from {host}", None
            if len(self._pending) >= MAX_PENDING_INCOMING:
                evict = next(iter(self._pending))
        self._count(conn, host, incoming)
        return None, evict

    def _count(self, conn: Hashable, host: str, incoming: bool) -> None:
        self._counted[conn] = (host, incoming)
        self._total += 1
        if not incoming:
            self._out_by_host[host] = self._out_by_host.get(host, 0) + 1
            return
        self._by_host[host] = self._by_host.get(host, 0) + 1
        self._incoming += 1
        self._pending[conn] = host
        self._pending_by_host[host] = self._pending_by_host.get(host, 0) + 1

    def joined(self, conn: Hashable) -> None:
        """The connection finished its handshake: it no longer counts as pending."""
        host = self._pending.pop(conn, None)
        if host is not None:
            _decrement(self._pending_by_host, host)

    def closed(self, conn: Hashable) -> None:
        counted = self._counted.pop(conn, None)
        if counted is None:
            return
        host, incoming = counted
        self.joined(conn)
        self._total -= 1
        if incoming:
            _decrement(self._by_host, host)
            self._incoming -= 1
        else:
            _decrement(self._out_by_host, host)

    def may_dial(self, host: str) -> bool:
        return (self._total < MAX_CONNECTIONS
                and self._out_by_host.get(host, 0) < MAX_OUTGOING_PER_HOST)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def total(self) -> int:
        return self._total


def _decrement(counts: Dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
