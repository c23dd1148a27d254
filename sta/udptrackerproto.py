"""The UDP tracker protocol (BEP 15) as data: datagrams in, values out, and back.

No socket and no clock: the client (``sta.udpannounce``) and the server (``sta.tracker_udp``)
own the I/O and pass the time in, so every packet and every rule is tested with byte strings.

- client side: ``connect_request``, ``announce_request`` (with the BEP 41 URL data option for a
  tracker URL that carries a path or a passkey), ``scrape_request``, and ``read_response``, which
  tells an answer to our request from a stray datagram and turns action 3 into a TrackerError;
- server side: ``parse_request`` and the four answers (``connect_response``,
  ``announce_response``, ``scrape_response``, ``error_response``), and ``ConnectionIdMint``,
  which makes connection ids that need no per-client state;
- the retry schedule, as data: ``RETRY_DELAYS``.

Integers are big-endian; BEP 15 calls them signed, but counters and keys are read unsigned (a
negative byte count means nothing) except ``num_want``, whose -1 means "the default".
"""

from __future__ import annotations

from hashlib import blake2b
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from sta.trackerproto import (MAX_MESSAGE_CHARS, AnnounceResponse, TrackerError,
                              check_announce, clean_text, compact_peers)

__all__ = [
    "UdpTrackerError", "ConnectRequest", "AnnounceRequest", "ScrapeRequest", "ConnectionIdMint",
    "connect_request", "announce_request", "scrape_request", "read_response", "parse_request",
    "connect_response", "announce_response", "scrape_response", "error_response",
    "url_data", "PROTOCOL_ID", "CONNECT", "ANNOUNCE", "SCRAPE", "ERROR", "EVENT_CODES",
    "EVENTS_BY_CODE", "CONNECTION_ID_LIFETIME", "RETRY_BASE_DELAY", "MAX_SENDS", "RETRY_DELAYS",
    "MAX_SCRAPE_HASHES", "MAX_DATAGRAM", "ANNOUNCE_REQUEST_SIZE",
]

# BEP 15's magic constant, the connection id of every connect request.
PROTOCOL_ID = 0x41727101980
CONNECT, ANNOUNCE, SCRAPE, ERROR = 0, 1, 2, 3
# BEP 15 event codes: 0 none, 1 completed, 2 started, 3 stopped.
EVENT_CODES = {None: 0, "completed": 1, "started": 2, "stopped": 3}
EVENTS_BY_CODE = {0: b"", 1: b"completed", 2: b"started", 3: b"stopped"}

# BEP 15: a client may use a connection id for one minute after it got it, and a tracker
# accepts it for two. The client cache keeps ids this long; the server rotates its secret this
# often and accepts ids made with the current or the previous one (so between 60 and 120 s).
CONNECTION_ID_LIFETIME = 60.0

# BEP 15's retry schedule: with no answer after 15 * 2^n seconds, send again (n = 0, 1, ...).
# The BEP lets n grow to 8 (over an hour); a tracker that has not answered twice (15 s, then
# 30 s: 45 s in all) counts as failed for this round, and the BEP 12 round moves on to the next
# tracker of the tier. libtorrent gives a UDP tracker less (tracker_completion_timeout, 30 s);
# the announce loop's own backoff (trackers.RETRY_BASE_DELAY, 15 s doubling) carries the BEP's
# doubling on across rounds.
RETRY_BASE_DELAY = 15.0
MAX_SENDS = 2
RETRY_DELAYS: Tuple[float, ...] = tuple(RETRY_BASE_DELAY * 2 ** n for n in range(MAX_SENDS))

# BEP 15: "up to about 74 torrents can be scraped at once" (an answer then fits one packet).
MAX_SCRAPE_HASHES = 74
# Largest datagram read. A UDP payload cannot be larger; an answer of 200 IPv4 peers is 1,220
# bytes, so the bound only matters to a hostile tracker, which still cannot exceed it.
MAX_DATAGRAM = 65535
# BEP 41: one URL data option carries at most 255 bytes; a longer path and query goes in
# several, up to MAX_URL_OPTIONS of them (a passkey URL needs one or two).
MAX_URL_DATA = 255
MAX_URL_OPTIONS = 4

_HEADER = struct.Struct(">QII")            # connection id, action, transaction id
_ANSWER_HEADER = struct.Struct(">II")      # action, transaction id
_CONNECT_ANSWER = struct.Struct(">IIQ")
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_ANNOUNCE_ANSWER = struct.Struct(">IIIII")
_SCRAPE_COUNTS = struct.Struct(">III")
ANNOUNCE_REQUEST_SIZE = _ANNOUNCE.size     # 98 bytes
_MAX_U32 = 0xFFFFFFFF


class UdpTrackerError(TrackerError):
    """A datagram that is not the BEP 15 packet it should be, or a tracker's error answer."""


# --- client side ---------------------------------------------------------------------------------

def connect_request(transaction_id: int) -> bytes:
    """The 16-byte connect request."""
    return _HEADER.pack(PROTOCOL_ID, CONNECT, transaction_id & _MAX_U32)


def announce_request(connection_id: int, transaction_id: int, *, info_hash: bytes,
                     peer_id: bytes, downloaded: int, left: int, uploaded: int,
                     event: Optional[str], key: int, num_want: int, port: int,
                     ip: int = 0, request_path: bytes = b"") -> bytes:
    """The 98-byte announce request, then the BEP 41 URL data option for ``request_path``."""
    check_announce(info_hash, peer_id, port, uploaded, downloaded, left, event)
    packet = _ANNOUNCE.pack(connection_id, ANNOUNCE, transaction_id & _MAX_U32, info_hash,
                            peer_id, min(downloaded, 2 ** 63 - 1), min(left, 2 ** 63 - 1),
                            min(uploaded, 2 ** 63 - 1), EVENT_CODES[event], ip & _MAX_U32,
                            key & _MAX_U32, max(-1, min(num_want, 2 ** 31 - 1)), port)
    return packet + url_data(request_path)


def url_data(request_path: bytes) -> bytes:
    """BEP 41 options carrying ``request_path`` (the URL's path and query), in 255-byte pieces,
    then the end option; nothing for an empty path."""
    data = request_path[:MAX_URL_DATA * MAX_URL_OPTIONS]
    if not data:
        return b""
    options = [b"\x02%c%s" % (len(data[i:i + MAX_URL_DATA]), data[i:i + MAX_URL_DATA])
               for i in range(0, len(data), MAX_URL_DATA)]
    return b"".join(options) + b"\x00"


def scrape_request(connection_id: int, transaction_id: int, info_hashes: Sequence[bytes]) -> bytes:
    """A scrape request for up to MAX_SCRAPE_HASHES info hashes."""
    if not 0 < len(info_hashes) <= MAX_SCRAPE_HASHES:
        raise ValueError(f"a UDP scrape names 1 to {MAX_SCRAPE_HASHES} info hashes")
    if any(len(h) != 20 for h in info_hashes):
        raise ValueError("info hashes must be 20 bytes each")
    return _HEADER.pack(connection_id, SCRAPE, transaction_id & _MAX_U32) + b"".join(info_hashes)


Answer = Union[int, AnnounceResponse, List[Tuple[int, int, int]]]


def read_response(data: bytes, transaction_id: int, action: int, *, ipv6: bool = False,
                  scraped: int = 0) -> Optional[Answer]:
    """The answer to our request ``action`` with ``transaction_id``, or None for a datagram
    that answers something else (a late answer to an older request, another action), which
    the caller ignores and keeps waiting, as libtorrent does.

    Returns the connection id (connect), an ``AnnounceResponse`` (announce; peers of 18 bytes
    when the tracker was reached over IPv6, BEP 15) or ``scraped`` (seeders, completed,
    leechers) triples (scrape). Raises UdpTrackerError for the tracker's error answer (its
    text in ``failure_reason``) and for a malformed answer to our request.
    """
    if len(data) < _ANSWER_HEADER.size:
        return None
    got_action, got_id = _ANSWER_HEADER.unpack_from(data)
    if got_id != transaction_id & _MAX_U32:
        return None
    if got_action == ERROR:
        text = clean_text(data[8:]) or "no message"
        raise UdpTrackerError(f"failure reason: {text}", failure_reason=text)
    if got_action != action:
        return None
    if action == CONNECT:
        if len(data) < _CONNECT_ANSWER.size:
            raise UdpTrackerError(f"connect answer of {len(data)} bytes, expected 16")
        return _CONNECT_ANSWER.unpack_from(data)[2]
    if action == ANNOUNCE:
        return _announce_answer(data, ipv6)
    return _scrape_answer(data, scraped)


def _announce_answer(data: bytes, ipv6: bool) -> AnnounceResponse:
    if len(data) < _ANNOUNCE_ANSWER.size:
        raise UdpTrackerError(f"announce answer of {len(data)} bytes, expected at least 20")
    _, _, interval, leechers, seeders = _ANNOUNCE_ANSWER.unpack_from(data)
    try:
        peers = compact_peers(data[_ANNOUNCE_ANSWER.size:], 16 if ipv6 else 4)
    except TrackerError as exc:
        raise UdpTrackerError(exc.reason) from None
    return AnnounceResponse(interval=interval, min_interval=None, peers=list(dict.fromkeys(peers)),
                            tracker_id=None, complete=seeders, incomplete=leechers, warning=None)


def _scrape_answer(data: bytes, scraped: int) -> List[Tuple[int, int, int]]:
    expected = 8 + _SCRAPE_COUNTS.size * scraped
    if len(data) < expected:
        raise UdpTrackerError(f"scrape answer of {len(data)} bytes, expected {expected} for "
                              f"{scraped} torrents")
    return [_SCRAPE_COUNTS.unpack_from(data, 8 + 12 * i) for i in range(scraped)]


# --- server side ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConnectRequest:
    transaction_id: int


@dataclass(frozen=True)
class AnnounceRequest:
    connection_id: int
    transaction_id: int
    info_hash: bytes
    peer_id: bytes
    downloaded: int
    left: int
    uploaded: int
    event: int
    ip: int
    key: int
    num_want: int
    port: int


@dataclass(frozen=True)
class ScrapeRequest:
    connection_id: int
    transaction_id: int
    info_hashes: Tuple[bytes, ...]


Request = Union[ConnectRequest, AnnounceRequest, ScrapeRequest]


def parse_request(data: bytes) -> Request:
    """A client's datagram as a request; UdpTrackerError for anything else (the server drops
    it without an answer). Bytes after an announce (BEP 41 options) are accepted and ignored;
    a scrape names 1 to MAX_SCRAPE_HASHES whole info hashes."""
    if len(data) < _HEADER.size:
        raise UdpTrackerError(f"datagram of {len(data)} bytes is shorter than a request")
    connection_id, action, transaction_id = _HEADER.unpack_from(data)
    if action == CONNECT:
        if connection_id != PROTOCOL_ID:
            raise UdpTrackerError("connect request without the BEP 15 protocol id")
        return ConnectRequest(transaction_id)
    if action == ANNOUNCE:
        if len(data) < ANNOUNCE_REQUEST_SIZE:
            raise UdpTrackerError(f"announce request of {len(data)} bytes, expected 98")
        fields = _ANNOUNCE.unpack_from(data)
        return AnnounceRequest(fields[0], *fields[2:])
    if action == SCRAPE:
        body = data[_HEADER.size:]
        count = len(body) // 20
        if len(body) % 20 or not 0 < count <= MAX_SCRAPE_HASHES:
            raise UdpTrackerError(f"scrape request with {len(body)} bytes of info hashes")
        return ScrapeRequest(connection_id, transaction_id,
                             tuple(body[i:i + 20] for i in range(0, len(body), 20)))
    raise UdpTrackerError(f"unknown action {action}")


def connect_response(transaction_id: int, connection_id: int) -> bytes:
    return _CONNECT_ANSWER.pack(CONNECT, transaction_id, connection_id)


def announce_response(transaction_id: int, interval: int, leechers: int, seeders: int,
                      peers: bytes) -> bytes:
    """``peers``: the compact entries, 6 bytes each (18 when answering over IPv6). The counts
    must fit 32 bits (a tracker holds far fewer peers)."""
    return _ANNOUNCE_ANSWER.pack(ANNOUNCE, transaction_id, interval, leechers, seeders) + peers


def scrape_response(transaction_id: int, counts: Sequence[Tuple[int, int, int]]) -> bytes:
    """``counts``: (seeders, completed, leechers) per info hash asked for, in order."""
    return _ANSWER_HEADER.pack(SCRAPE, transaction_id) + b"".join(
        _SCRAPE_COUNTS.pack(*(min(n, _MAX_U32) for n in c)) for c in counts)


def error_response(transaction_id: int, message: str) -> bytes:
    return _ANSWER_HEADER.pack(ERROR, transaction_id) + \
        message.encode("utf-8")[:MAX_MESSAGE_CHARS]


class ConnectionIdMint:
    """Connection ids that prove a client receives datagrams at its address, with no state kept
    per client (as opentracker does): the id is a keyed hash (BLAKE2b, 8 bytes) of the client's
    address under a secret that changes every CONNECTION_ID_LIFETIME seconds, derived from
    ``key`` and the period's number. An id is accepted for the current and the previous period,
    so between one and two minutes after it was issued (BEP 15: the tracker accepts ids for two
    minutes)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the connection id key must have at least 16 bytes")
        self._key = key
        self._hashers: Dict[int, "blake2b"] = {}
        self._period = -1           # the period of _current, the hasher tried first
        self._current = self._previous = self._hasher(0)

    def _hasher(self, period: int) -> "blake2b":
        """The keyed hash of ``period``, ready to copy for each address."""
        hasher = self._hashers.get(period)
        if hasher is None:
            if len(self._hashers) > 4:
                self._hashers.clear()
            secret = blake2b(b"%d" % period, key=self._key[:64], digest_size=32).digest()
            hasher = self._hashers[period] = blake2b(key=secret, digest_size=8)
        return hasher

    def issue(self, client: bytes, now: float) -> int:
        """The id for the client at ``client`` (its address, as text or packed bytes)."""
        hasher = self._hasher(int(now // CONNECTION_ID_LIFETIME)).copy()
        hasher.update(client)
        return int.from_bytes(hasher.digest(), "big")

    def check(self, connection_id: int, client: bytes, now: float) -> bool:
        period = int(now // CONNECTION_ID_LIFETIME)
        if period != self._period:
            self._period = period
            self._current = self._hasher(period)
            self._previous = self._hasher(period - 1)
        wanted = connection_id.to_bytes(8, "big")
        hasher = self._current.copy()
        hasher.update(client)
        if hasher.digest() == wanted:
            return True
        hasher = self._previous.copy()
        hasher.update(client)
        return hasher.digest() == wanted
