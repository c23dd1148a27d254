"""Who sent which block, and who lied: the torrent's "smart ban", as libtorrent calls it.

For every piece in progress this keeps the address that delivered each block. When a piece fails
its hash check:
- if one peer sent all of it, that peer is struck;
- if several did, each block's sender and SHA-1 digest are kept, and once the piece passes
  (fetched again), the blocks whose digest differs name the liars. An honest peer that shared a
  piece with a liar is never blamed.
A host is banned after MAX_HASH_FAILURES strikes (counted per host: a reconnect from another
port does not start a liar afresh). Pure bookkeeping: no I/O, no clock; the
torrent hashes, and acts on what ``piece_failed`` and ``piece_passed`` return.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set, Tuple

from .wire import BLOCK_SIZE

Address = Tuple[str, int]

# A peer whose data failed the hash this many times is banned (libtorrent bans after one piece
# it alone sent; we allow a few since a lab peer with a flaky disk is more likely than a liar).
MAX_HASH_FAILURES = 3


class SmartBan:
    def __init__(self) -> None:
        self._origins: Dict[int, Dict[int, Address]] = {}
        self._suspects: Dict[int, Dict[int, Tuple[Address, bytes]]] = {}
        self._strikes: Dict[str, int] = {}

    def block_from(self, index: int, begin: int, address: Address) -> None:
        """The block at ``begin`` of piece ``index`` arrived from ``address``."""
        origin = self._origins.get(index)
        if origin is None:
            origin = self._origins[index] = {}
        origin[begin] = address

    def suspect(self, index: int) -> bool:
        """The piece failed once with blocks from several peers: hash each block next time."""
        return index in self._suspects

    def piece_passed(self, index: int, digests: Optional[Sequence[bytes]]) -> Set[Address]:
        """The piece passed its check: the peers whose earlier blocks differed lied."""
        self._origins.pop(index, None)
        suspects = self._suspects.pop(index, None)
        if not suspects or not digests:
            return set()
        return {address for begin, (address, digest) in suspects.items()
                if digest != digests[begin // BLOCK_SIZE]}

    def piece_failed(self, index: int, digests: Optional[Sequence[bytes]]) -> Tuple[
            Set[Address], Optional[Address]]:
        """The piece failed its check. Returns (its senders, the one to strike now if it alone
        sent the piece)."""
        origins = self._origins.pop(index, {})
        sources = set(origins.values())
        if len(sources) == 1:
            return sources, next(iter(sources))
        if sources and digests:
            self._suspects[index] = {begin: (address, digests[begin // BLOCK_SIZE])
                                     for begin, address in origins.items()}
        return sources, None

    def piece_dropped(self, index: int) -> None:
        """The piece left the download unverified (the torrent stopped)."""
        self._origins.pop(index, None)

    def strike(self, address: Address) -> int:
        """One proven bad piece from ``address``; returns its host's strikes so far."""
        count = self._strikes.get(address[0], 0) + 1
        self._strikes[address[0]] = count
        return count

    def strikes(self, address: Address) -> int:
        """Proven bad pieces from ``address``'s host."""
        return self._strikes.get(address[0], 0)
