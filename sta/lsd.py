"""Local Service Discovery (BEP 14): finding peers on the same subnet without a tracker.

A node says which torrents it takes part in with a `BT-SEARCH` request in one UDP datagram,
sent to a multicast group that every node on the subnet has joined:

    BT-SEARCH * HTTP/1.1\\r\\n
    Host: 239.192.152.143:6771\\r\\n
    Port: 6881\\r\\n
    Infohash: 0123456789abcdef0123456789abcdef01234567\\r\\n
    cookie: 5f3a09c1\\r\\n
    \\r\\n
    \\r\\n

A receiver takes the sender's address from the datagram's source and the port from `Port`, and
recognises its own announces (multicast loops back) by the cookie.

``encode_announce``/``decode_announce`` are the codec, bounded both ways; ``AnnounceSchedule``
says which torrent to announce when (each at most once every five minutes, the first at once,
the node as a whole within a burst bound); ``DatagramGate`` bounds what one sender, and all of
them together, may make us parse. Pure: the caller owns the sockets and passes the time.
"""

from __future__ import annotations

import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["LSD_PORT", "GROUP_V4", "GROUP_V6", "LsdError", "Announce", "encode_announce",
           "decode_announce", "AnnounceSchedule", "TokenBucket", "DatagramGate",
           "ANNOUNCE_INTERVAL", "MAX_DATAGRAM"]

# BEP 14's groups: org-local IPv4 and site-local IPv6, both on UDP port 6771.
LSD_PORT = 6771
GROUP_V4 = "239.192.152.143"
GROUP_V6 = "ff15::efc0:988f"

# Largest datagram read. BEP 14 keeps an announce with several info hashes under 1,400 bytes
# (one Ethernet frame); libtorrent reads into 1,500 bytes. Anything longer is not an announce.
MAX_DATAGRAM = 1500
# Largest announce we send: BEP 14's 1,400. We send one info hash per datagram (about 140
# bytes), as libtorrent and Transmission do: Transmission reads 200 bytes and one Infohash only.
MAX_SENT_DATAGRAM = 1400
# Info hashes read from one announce: 1,400 bytes hold 28 `Infohash:` lines of 50 bytes.
MAX_INFOHASHES = 28
# Header lines read from one announce: the info hashes, Host, Port, cookie, and a few more
# that a newer client may add (BEP 14: headers not understood are ignored).
MAX_HEADERS = MAX_INFOHASHES + 12

# BEP 14: "a LSD announce every 5 minutes" per torrent (libtorrent's
# local_service_announce_interval is 5 minutes; Transmission's is 4).
ANNOUNCE_INTERVAL = 300.0
# The node's announces together: a burst of 5 at once, then one a minute on average. BEP 14:
# "no more than 1 announce per minute ... If more than 5 torrents are active a client may
# round-robin": five torrents are each announced every five minutes, more take turns.
SEND_BURST = 5
SEND_REFILL = 60.0

# What one sender may make us parse: a burst of 10 datagrams, then one a second. An ordinary
# node sends one to three per torrent every five minutes (libtorrent repeats each announce
# twice, 2 and 6 s later).
SOURCE_BURST = 10
SOURCE_REFILL = 1.0
# All senders together: Transmission drops announces beyond ten a second on average.
ALL_BURST = 50
ALL_REFILL = 0.1
# Senders remembered for their rate: the least recently seen is forgotten beyond this.
MAX_SOURCES = 256

_HEX40 = re.compile(r"[0-9A-Fa-f]{40}\Z")
_REQUEST_LINE = re.compile(r"BT-SEARCH \* HTTP/1\.\d+\Z", re.IGNORECASE)
_LINE_END = re.compile(r"\r?\n")


class LsdError(Exception):
    """A datagram that is not a BEP 14 announce."""


@dataclass(frozen=True)
class Announce:
    """A decoded announce: the sender's peer port, the torrents it names, its cookie."""
    port: int
    info_hashes: Tuple[bytes, ...]
    cookie: str = ""


def make_cookie(random_bits: int) -> str:
    """A cookie from 32 random bits, in the hex form libtorrent sends (and compares)."""
    return f"{random_bits & 0xFFFFFFFF:x}"


def encode_announce(info_hashes: Sequence[bytes], port: int, cookie: str,
                    ipv6: bool = False) -> bytes:
    """One announce naming ``info_hashes`` (20 bytes each) for the group of ``ipv6``'s family."""
    if not 0 < port < 65536:
        raise LsdError(f"port {port} is not a TCP port")
    if not info_hashes or any(len(h) != 20 for h in info_hashes):
        raise LsdError("an announce names one or more 20-byte info hashes")
    host = f"[{GROUP_V6}]:{LSD_PORT}" if ipv6 else f"{GROUP_V4}:{LSD_PORT}"
    lines = ["BT-SEARCH * HTTP/1.1", f"Host: {host}", f"Port: {port}"]
    lines += [f"Infohash: {h.hex()}" for h in info_hashes]
    if cookie:
        lines.append(f"cookie: {cookie}")
    data = ("\r\n".join(lines) + "\r\n\r\n\r\n").encode("ascii")
    if len(data) > MAX_SENT_DATAGRAM:
        raise LsdError(f"{len(info_hashes)} info hashes do not fit in one announce")
    return data


def decode_announce(data: bytes) -> Announce:
    """Read one datagram; LsdError when it is not an announce we can use. Info hashes that are
    not 40 hex digits (or are all zeros) are skipped, as libtorrent does; an announce left with
    none is an error."""
    if len(data) > MAX_DATAGRAM:
        raise LsdError(f"datagram of {len(data)} bytes is longer than an announce")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise LsdError("announce is not ASCII") from None
    head, blank, _ = text.partition("\r\n\r\n") if "\r\n\r\n" in text else text.partition("\n\n")
    if not blank:
        raise LsdError("announce has no end of headers")
    lines = _LINE_END.split(head)
    if not _REQUEST_LINE.match(lines[0]):
        raise LsdError(f"not a BT-SEARCH request: {lines[0][:40]!r}")
    headers = _headers(lines[1:])
    port_text = headers.get("port", [""])[0]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise LsdError(f"bad Port {port_text[:20]!r}")
    hashes = []
    for value in headers.get("infohash", [])[:MAX_INFOHASHES]:
        if _HEX40.match(value) and value.strip("0"):
            hashes.append(binascii.unhexlify(value))
    if not hashes:
        raise LsdError("announce names no info hash")
    return Announce(int(port_text), tuple(dict.fromkeys(hashes)),
                    headers.get("cookie", [""])[0])


def _headers(lines: List[str]) -> Dict[str, List[str]]:
    if len(lines) > MAX_HEADERS:
        raise LsdError(f"announce has more than {MAX_HEADERS} headers")
    headers: Dict[str, List[str]] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise LsdError(f"bad header line {line[:40]!r}")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers


class TokenBucket:
    """A token bucket: ``burst`` events at once, then one every ``refill`` seconds."""

    def __init__(self, burst: int, refill: float, now: float) -> None:
        self.burst = burst
        self.refill = refill
        self.tokens = float(burst)
        self.updated = now

    def _fill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.burst),
                              self.tokens + (now - self.updated) / self.refill)
        self.updated = max(self.updated, now)

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        self._fill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def available(self, now: float) -> int:
        self._fill(now)
        return int(self.tokens)


class AnnounceSchedule:
    """Which torrents to announce when: each one as soon as it is added and then every
    ``interval`` seconds, no more than the node's ``TokenBucket`` allows at once (those waiting
    longest first, so with many torrents they take turns)."""

    def __init__(self, now: float, interval: float = ANNOUNCE_INTERVAL,
                 burst: int = SEND_BURST, refill: float = SEND_REFILL) -> None:
        self.interval = interval
        self.limit = TokenBucket(burst, refill, now)
        self._next: Dict[bytes, float] = {}

    def __contains__(self, info_hash: object) -> bool:
        return info_hash in self._next

    def __len__(self) -> int:
        return len(self._next)

    def add(self, info_hash: bytes, now: float) -> None:
        """A torrent to announce, the first time at once (again at once if re-added)."""
        self._next[info_hash] = now

    def remove(self, info_hash: bytes) -> None:
        self._next.pop(info_hash, None)

    def due(self, now: float, eligible: Callable[[bytes], bool] = lambda h: True
            ) -> List[bytes]:
        """The torrents to announce now; each is then due again one interval later. A due
        torrent that is not ``eligible`` (paused, say) stays due and costs nothing."""
        waiting = sorted((when, h) for h, when in self._next.items() if when <= now)
        chosen: List[bytes] = []
        for _, info_hash in waiting:
            if not eligible(info_hash):
                continue
            if not self.limit.allow(now):
                break
            self._next[info_hash] = now + self.interval
            chosen.append(info_hash)
        return chosen


class DatagramGate:
    """Whether to read a datagram from ``source``: a rate per sender and one for all senders,
    so a flood costs a dictionary look-up per datagram and never a parse."""

    def __init__(self, now: float, max_sources: int = MAX_SOURCES) -> None:
        self.max_sources = max_sources
        self.everyone = TokenBucket(ALL_BURST, ALL_REFILL, now)
        self._sources: Dict[str, TokenBucket] = {}
        self.dropped = 0

    def allow(self, source: str, now: float) -> bool:
        limit = self._sources.pop(source, None)
        if limit is None:
            limit = TokenBucket(SOURCE_BURST, SOURCE_REFILL, now)
            if len(self._sources) >= self.max_sources:
                del self._sources[next(iter(self._sources))]  # the least recently seen
        self._sources[source] = limit   # re-inserted: dictionaries keep insertion order
        if limit.allow(now) and self.everyone.allow(now):
            return True
        self.dropped += 1
        return False


def peer_host(source: Tuple[Any, ...]) -> Optional[str]:
    """The host to dial from a datagram's source address, or None for one we cannot use: an
    unspecified or multicast address, or an IPv6 link-local one, which needs its interface to
    be dialled (peer exchange and the connection limits know addresses without one)."""
    host = str(source[0])
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:   # "fe80::1%eth0": a link-local address with its interface
        return None
    if ip.is_unspecified or ip.is_multicast or (ip.version == 6 and ip.is_link_local):
        return None
    return host
