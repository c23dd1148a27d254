"""The tracker's open connections: how many, from whom, and which to close; no sockets.

Each connection costs the HTTP front end a thread, so the table bounds them in all and per
address (group, see tracker_limits), and gives every connection a deadline for what it is
doing: a new connection must deliver its first whole request (TLS handshake included) within
REQUEST_TIMEOUT, a kept-alive one its next whole request within IDLE_TIMEOUT, and an answer
must be written within ANSWER_TIMEOUT. A deadline covers the whole request, not one read: a
client that sends a byte every few seconds (slowloris) is closed when it passes, however
steadily it dribbles.

When the table (or an address's share of it) is full, a new connection is not refused while
an older one is only waiting: the one that has waited longest for a request is closed to make
room, as Apache's event MPM closes idle keep-alive connections when it runs short of workers.
A silent or dribbling connection is always waiting, so holding slots that way cannot lock
clients out; only connections whose answer is being worked on are never closed early.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

__all__ = ["ConnectionSlot", "ConnectionTable", "BodyBudget", "MAX_CONNECTIONS",
           "MAX_CONNECTIONS_PER_ADDRESS", "REQUEST_TIMEOUT", "IDLE_TIMEOUT", "ANSWER_TIMEOUT",
           "MIN_BODY_RATE"]

# Connections (each one thread) open at once; past this, a waiting one is closed for a new one,
# or the new one gets 503 when every one is busy answering.
MAX_CONNECTIONS = 1000

# Connections from one address (group) at once. bench_tracker.py's heaviest load (128
# keep-alive connections from one address) fits. A lab behind one NAT address makes one short
# connection per announce (10,000 peers at a 60 s interval: 170 a second, each open for about a
# millisecond), and kept-alive idle ones are closed to make room rather than refused.
MAX_CONNECTIONS_PER_ADDRESS = 128

# A whole request must arrive within this after the connection opens (Apache mod_reqtimeout's
# default: headers within 20 s); tracker clients send theirs in one packet.
REQUEST_TIMEOUT = 20.0
# A kept-alive connection must bring its next whole request within this (clients announce every
# interval and reconnect anyway).
IDLE_TIMEOUT = 30.0
# Working on an answer and writing it (a hosted .torrent of up to 10 MB, an upload waiting for
# its turn to be parsed) must end within this.
ANSWER_TIMEOUT = 60.0
# A request body (POST /torrents) gets this many bytes a second beyond REQUEST_TIMEOUT: a 10 MB
# upload may take 150 s more, a trickle of bytes does not keep a connection forever.
MIN_BODY_RATE = 65536


class ConnectionSlot:
    """One connection's place in the table: whom it is from, what it is doing, until when."""

    __slots__ = ("address", "handle", "waiting", "since", "deadline", "closed")

    def __init__(self, address: str, handle: Any, now: float) -> None:
        self.address = address
        self.handle = handle  # the socket, for the front end; this module never touches it
        self.closed = False  # out of the table: released, or to be closed by the front end
        self.waiting = True
        self.since = now
        self.deadline = now + REQUEST_TIMEOUT

    def wait_for_request(self, now: float) -> None:
        """An answer was sent on a kept-alive connection: the next request may come."""
        self.waiting = True
        self.since = now
        self.deadline = now + IDLE_TIMEOUT

    def answering(self, now: float) -> None:
        """A whole request arrived: the connection is busy until its answer is written."""
        self.waiting = False
        self.deadline = now + ANSWER_TIMEOUT

    def receiving_body(self, length: int) -> None:
        """The headers announce a body of ``length`` bytes: allow time for it at MIN_BODY_RATE."""
        self.deadline += length / MIN_BODY_RATE


class ConnectionTable:
    """The open connections, with limits in all and per address. Thread-safe."""

    def __init__(self, clock: Callable[[], float], max_connections: int = MAX_CONNECTIONS,
                 max_per_address: int = MAX_CONNECTIONS_PER_ADDRESS) -> None:
        self.clock = clock
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self._by_address: Dict[str, Set[ConnectionSlot]] = {}
        self._count = 0
        self._lock = threading.Lock()

    def admit(self, address: str, handle: Any
              ) -> Tuple[Optional[ConnectionSlot], List[ConnectionSlot]]:
        """Make room for a new connection from ``address``.

        Returns (its slot, or None when it is refused; the slots the caller must close, already
        taken out of the table)."""
        now = self.clock()
        evicted: List[ConnectionSlot] = []
        with self._lock:
            mine = self._by_address.get(address, ())
            if len(mine) >= self.max_per_address:
                victim = _longest_waiting(mine)
                if victim is None:
                    return None, evicted
                self._remove(victim)
                evicted.append(victim)
            if self._count >= self.max_connections:
                victim = _longest_waiting(s for group in self._by_address.values()
                                          for s in group)
                if victim is None:
                    return None, evicted
                self._remove(victim)
                evicted.append(victim)
            slot = ConnectionSlot(address, handle, now)
            self._by_address.setdefault(address, set()).add(slot)
            self._count += 1
        return slot, evicted

    def release(self, slot: ConnectionSlot) -> None:
        """The connection ended (a slot already taken out is ignored)."""
        with self._lock:
            group = self._by_address.get(slot.address)
            if group is not None and slot in group:
                self._remove(slot)

    def expired(self) -> List[ConnectionSlot]:
        """Take out and return every connection past its deadline, for the caller to close."""
        now = self.clock()
        with self._lock:
            late = [s for group in self._by_address.values() for s in group if s.deadline < now]
            for slot in late:
                self._remove(slot)
        return late

    def slots(self) -> List[ConnectionSlot]:
        with self._lock:
            return [s for group in self._by_address.values() for s in group]

    def _remove(self, slot: ConnectionSlot) -> None:
        slot.closed = True
        group = self._by_address[slot.address]
        group.discard(slot)
        if not group:
            del self._by_address[slot.address]
        self._count -= 1


def _longest_waiting(slots: Any) -> Optional[ConnectionSlot]:
    best = None
    for slot in slots:
        if slot.waiting and (best is None or slot.since < best.since):
            best = slot
    return best


class BodyBudget:
    """Bytes of request bodies being read or held at once, over all connections. Thread-safe.

    Each POST /torrents body (up to 10 MB) is read into memory whole before it is parsed; this
    bounds what many uploads at once can take.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> bool:
        """Take ``nbytes`` of the budget; False (nothing taken) when they do not fit."""
        with self._lock:
            if self._used + nbytes > self.limit:
                return False
            self._used += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self._used -= nbytes
