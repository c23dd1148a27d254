"""Peer exchange for one torrent: what we tell each connected peer, and what we take from them.

Once a minute per peer (BEP 11), each connection that speaks `ut_pex` hears which peers we are
connected to (those it was not told of yet) and which left; the peers we reached ourselves are
flagged reachable, seeds as seeds, those on uTP as speaking uTP. What peers tell us goes to the swarm as one more peer source,
bounded there (swarm.MAX_KNOWN_PEERS) and here (pex.MAX_PEX_PEERS per message, one message per
peer per PEX_MIN_GAP), and the peers they flag as speaking uTP to ``speaks_utp``, so that the
node dials those over uTP first. A private torrent (BEP 27) neither sends nor takes any: its peers come
from its trackers only. The codec is pex.py.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from . import pex
from .pex import FLAG_REACHABLE, FLAG_SEED, FLAG_UTP, UT_PEX, PexState

log = logging.getLogger(__name__)

# Messages from one peer closer together than this are ignored: BEP 11 asks for at most one a
# minute, and half of that leaves room for a sender whose clock ticks early.
PEX_MIN_GAP = pex.PEX_INTERVAL / 2

Address = Tuple[str, int]


class PeerExchange:
    """``add_peers(addresses, source)`` hands what peers tell us to the swarm;
    ``speaks_utp(address)`` hears of each peer flagged as speaking uTP."""

    def __init__(self, private: bool,
                 add_peers: Callable[[List[Address], str], None],
                 speaks_utp: Optional[Callable[[Address], None]] = None) -> None:
        self.private = private
        self._add_peers = add_peers
        self._speaks_utp = speaks_utp
        self._states: Dict[Any, PexState] = {}
        self._last_heard: Dict[Any, float] = {}

    def extension_fields(self) -> Dict[str, Any]:
        """What our BEP 10 handshake leaves out: ut_pex, for a private torrent."""
        return {"without": [UT_PEX]} if self.private else {}

    def received(self, conn: Any, payload: bytes, now: float) -> None:
        if self.private:
            return
        last = self._last_heard.get(conn)
        if last is not None and now - last < PEX_MIN_GAP:
            return
        self._last_heard[conn] = now
        try:
            message = pex.decode(payload)
        except pex.PexError as exc:
            log.debug("%r: %s", conn, exc)
            return
        if message.added:
            if self._speaks_utp is not None:
                for address, flags in zip(message.added, message.flags):
                    if flags & FLAG_UTP:
                        self._speaks_utp(address)
            self._add_peers(message.added, "pex")

    def peer_left(self, conn: Any) -> None:
        self._states.pop(conn, None)
        self._last_heard.pop(conn, None)

    def tick(self, peers: Iterable[Any], is_seed: Callable[[Any], bool], now: float) -> None:
        """Send each ut_pex peer what changed since we last told it, when a minute has
        passed."""
        if self.private:
            return
        peers = list(peers)
        listed = {}
        for conn in peers:
            address = listen_address(conn)
            if address is not None:
                listed[address] = ((0 if conn.incoming else FLAG_REACHABLE)
                                   | (FLAG_SEED if is_seed(conn) else 0)
                                   | (FLAG_UTP if conn.over_utp else 0))
        for conn in peers:
            if UT_PEX not in conn.extensions.ids or conn.closed:
                continue
            state = self._states.get(conn)
            if state is None:
                state = self._states[conn] = PexState()
            others = {a: f for a, f in listed.items() if a != listen_address(conn)}
            added, dropped = state.update(others, now)
            if added or dropped:
                conn.send_extended(UT_PEX, pex.encode(added, dropped))


def listen_address(conn: Any) -> Optional[Address]:
    """Where others can reach this peer: the address we dialled, or for an incoming connection
    its address with the listen port its BEP 10 handshake gave (none without one)."""
    if not conn.incoming:
        return conn.address
    port = conn.extensions.listen_port
    return (conn.address[0], port) if port else None
