"""Peer exchange (BEP 11, `ut_pex`): telling connected peers whom else we are connected to.

The message is a bencoded dictionary inside a BEP 10 extended message: `added` and `dropped`
hold peers in the compact form (4-byte IPv4 address and 2-byte port; `added6`/`dropped6` for
IPv6 with 16-byte addresses), `added.f`/`added6.f` one flag byte per added peer.

``encode``/``decode`` are the codec, bounded both ways; ``PexState`` remembers, per connection,
what we last told the peer, so each message carries only the difference (BEP 11: at most one
message a minute, at most 50 added and 50 dropped entries). Pure: no sockets, no clock.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Dict, Iterable, List, NamedTuple, Set, Tuple

from . import bencode

__all__ = ["UT_PEX", "PexError", "PexMessage", "PexState", "encode", "decode",
           "FLAG_SEED", "FLAG_REACHABLE", "PEX_INTERVAL", "MAX_PEX_PEERS"]

UT_PEX = "ut_pex"
# BEP 11: "Peers should not send PEX messages more often than once a minute."
PEX_INTERVAL = 60.0
# BEP 11: at most 50 added and 50 dropped entries per message (libtorrent's max_pex_peers).
MAX_PEX_PEERS = 50
# Largest PEX payload decoded: 50 + 50 IPv6 entries and flags fit in 4 KiB; libtorrent drops
# larger ones too.
MAX_PEX_PAYLOAD = 8 * 1024

# Flag bits of `added.f` (BEP 11).
FLAG_ENCRYPTION = 0x01
FLAG_SEED = 0x02
FLAG_UTP = 0x04
FLAG_HOLEPUNCH = 0x08
FLAG_REACHABLE = 0x10   # the sender reached this peer with an outgoing connection

Address = Tuple[str, int]


class PexError(Exception):
    """A PEX message that cannot be read."""


class PexMessage(NamedTuple):
    added: List[Address]
    flags: List[int]           # one per added peer, 0 when the sender gave none
    dropped: List[Address]


def _compact(addresses: Iterable[Address], family: int) -> bytes:
    out = []
    for host, port in addresses:
        ip = ipaddress.ip_address(host)
        if ip.version == family:
            out.append(ip.packed + struct.pack(">H", port))
    return b"".join(out)


def _parse(raw: object, size: int, key: str) -> List[Address]:
    if not isinstance(raw, bytes) or len(raw) % (size + 2):
        raise PexError(f"{key} is not a list of compact peers")
    peers = []
    for i in range(0, len(raw), size + 2):
        ip = ipaddress.ip_address(raw[i:i + size])
        (port,) = struct.unpack_from(">H", raw, i + size)
        if port:
            peers.append((str(ip), port))
    return peers


def encode(added: Iterable[Tuple[Address, int]], dropped: Iterable[Address]) -> bytes:
    """The payload for ``added`` (address, flags) pairs and ``dropped`` addresses, IPv4 and
    IPv6 alike, at most MAX_PEX_PEERS of each."""
    added = list(added)[:MAX_PEX_PEERS]
    dropped = list(dropped)[:MAX_PEX_PEERS]
    message: Dict[bytes, bytes] = {}
    for family, suffix in ((4, b""), (6, b"6")):
        mine = [(a, f) for a, f in added if ipaddress.ip_address(a[0]).version == family]
        message[b"added" + suffix] = _compact((a for a, _ in mine), family)
        message[b"added" + suffix + b".f"] = bytes(f & 0xFF for _, f in mine)
        message[b"dropped" + suffix] = _compact(dropped, family)
    return bencode.encode(message)


def decode(payload: bytes) -> PexMessage:
    """A PEX payload; raises PexError for anything malformed or oversized."""
    if len(payload) > MAX_PEX_PAYLOAD:
        raise PexError(f"PEX message of {len(payload)} bytes is too large")
    try:
        message = bencode.decode(bytes(payload), sorted_keys=False)
    except bencode.BencodeError as exc:
        raise PexError(f"PEX message is not bencoded: {exc}") from None
    if not isinstance(message, dict):
        raise PexError("PEX message is not a dictionary")
    added: List[Address] = []
    flags: List[int] = []
    dropped: List[Address] = []
    for size, suffix in ((4, b""), (16, b"6")):
        name = "added" + suffix.decode()
        peers = _parse(message.get(b"added" + suffix, b""), size, name)
        raw_flags = message.get(b"added" + suffix + b".f", b"")
        if not isinstance(raw_flags, bytes):
            raise PexError(f"{name}.f is not a byte string")
        added.extend(peers)
        flags.extend(raw_flags[i] if i < len(raw_flags) else 0 for i in range(len(peers)))
        dropped.extend(_parse(message.get(b"dropped" + suffix, b""), size,
                              "dropped" + suffix.decode()))
    return PexMessage(added[:MAX_PEX_PEERS], flags[:MAX_PEX_PEERS], dropped[:MAX_PEX_PEERS])


class PexState:
    """What we last told one peer; ``update`` gives the next message's changes."""

    def __init__(self) -> None:
        self.told: Set[Address] = set()
        self.last_sent = float("-inf")

    def update(self, current: Dict[Address, int], now: float
               ) -> Tuple[List[Tuple[Address, int]], List[Address]]:
        """(added with flags, dropped) since the last message, each at most MAX_PEX_PEERS;
        nothing when the last message was less than PEX_INTERVAL ago or nothing changed."""
        if now - self.last_sent < PEX_INTERVAL:
            return [], []
        added = [(a, f) for a, f in current.items() if a not in self.told][:MAX_PEX_PEERS]
        dropped = [a for a in self.told if a not in current][:MAX_PEX_PEERS]
        if added or dropped:
            self.last_sent = now
            self.told.update(a for a, _ in added)
            self.told.difference_update(dropped)
        return added, dropped
