"""The uTP wire format (BEP 29): the 20-byte header, the selective-ack extension, and the
quick tests the UDP endpoint uses to tell uTP from the DHT's bencoded datagrams.

Every field is big-endian. The first byte is the packet type (high nibble) and the version 1
(low nibble); then the first extension's type, the connection id, the sender's microsecond
timestamp, the timestamp difference it measured on the last packet it received, its receive
window in bytes, and the 16-bit sequence and ack numbers. Each extension is (next type, length,
body); type 1, the selective ack, is a bitmask, bit 0 of byte 0 standing for ack_nr + 2: BEP 29
says its length is a multiple of 4, but libtorrent sends as many bytes as its bits need (1 or 2
on a short reorder), so any non-zero length is read (we send multiples of 4). Unknown extensions are skipped; a chain that runs past the datagram
is malformed.
"""

from __future__ import annotations

import struct
from typing import Optional

__all__ = [
    "ST_DATA", "ST_FIN", "ST_STATE", "ST_RESET", "ST_SYN", "VERSION", "EXT_NONE", "EXT_SACK",
    "HEADER", "HEADER_SIZE", "SEQ_MASK", "HALF_SEQ", "TS_MASK", "MAX_PACKET", "PAYLOAD_SIZE",
    "UtpError", "Packet", "micros", "seq_less", "parse_packet", "encode_packet",
    "is_utp_packet", "packet_connection_id", "packet_type", "reset_for",
]

ST_DATA, ST_FIN, ST_STATE, ST_RESET, ST_SYN = 0, 1, 2, 3, 4
VERSION = 1
EXT_NONE, EXT_SACK = 0, 1
# type/ver, extension, connection_id, timestamp, timestamp difference, wnd_size, seq_nr, ack_nr.
HEADER = struct.Struct(">BBHIIIHH")
HEADER_SIZE = HEADER.size
SEQ_MASK = 0xFFFF
HALF_SEQ = 0x8000
TS_MASK = 0xFFFFFFFF
HALF_TS = 0x80000000

# Largest datagram we send. 1,400 bytes of UDP payload fit any path whose MTU is at least 1,448
# bytes with IPv6 (40) and UDP (8) headers, which leaves room under Ethernet's 1,500 for PPPoE
# (8) and one layer of tunnelling (6in4, 20; most VPNs) without IP fragmentation, which drops
# the whole datagram when one fragment is lost. libtorrent starts its MTU search from 1,500
# minus the same overheads and settles there on most paths; we do not probe.
MAX_PACKET = 1400
# Data packets carry no extension (a selective ack travels in its own ST_STATE), so the payload
# is all the rest.
PAYLOAD_SIZE = MAX_PACKET - HEADER_SIZE


class UtpError(Exception):
    """A malformed uTP datagram, or a packet that cannot do what was asked of it (accepting a
    connection from anything but a SYN)."""


def micros(now: float) -> int:
    """The header's 32-bit microsecond timestamp for ``now``."""
    return int(now * 1_000_000) & TS_MASK


def seq_less(a: int, b: int) -> bool:
    """a < b in 16-bit sequence space."""
    return a != b and ((b - a) & SEQ_MASK) < HALF_SEQ


class Packet:
    """One decoded datagram; ``payload`` is a memoryview into the datagram."""

    __slots__ = ("kind", "connection_id", "timestamp", "timestamp_diff", "wnd_size", "seq_nr",
                 "ack_nr", "sack", "payload")

    def __init__(self, kind: int, connection_id: int, timestamp: int, timestamp_diff: int,
                 wnd_size: int, seq_nr: int, ack_nr: int, sack: Optional[bytes],
                 payload: memoryview) -> None:
        self.kind = kind
        self.connection_id = connection_id
        self.timestamp = timestamp
        self.timestamp_diff = timestamp_diff
        self.wnd_size = wnd_size
        self.seq_nr = seq_nr
        self.ack_nr = ack_nr
        self.sack = sack
        self.payload = payload


def parse_packet(data: bytes) -> Packet:
    """Decode a datagram; UtpError if it is not well-formed uTP version 1."""
    _check_length(data)
    type_ver, ext, cid, ts, tsd, wnd, seq, ack = HEADER.unpack_from(data, 0)
    if type_ver & 15 != VERSION:
        raise UtpError("uTP version %d is not supported" % (type_ver & 15))
    kind = type_ver >> 4
    if kind > ST_SYN:
        raise UtpError("uTP packet type %d is unknown" % kind)
    offset, sack = HEADER_SIZE, None
    while ext != EXT_NONE:
        if offset + 2 > len(data):
            raise UtpError("uTP extension header is truncated")
        following, length = data[offset], data[offset + 1]
        start, offset = offset + 2, offset + 2 + length
        if offset > len(data):
            raise UtpError("uTP extension of %d bytes runs past the datagram" % length)
        if ext == EXT_SACK:
            if length == 0:
                raise UtpError("uTP selective ack is empty")
            sack = bytes(data[start:offset])
        ext = following
    return Packet(kind, cid, ts, tsd, wnd, seq, ack, sack, memoryview(data)[offset:])


def encode_packet(kind: int, connection_id: int, timestamp: int, timestamp_diff: int,
                  wnd_size: int, seq_nr: int, ack_nr: int, payload: bytes = b"",
                  sack: Optional[bytes] = None) -> bytes:
    """One datagram; ``sack`` (a bitmask, length a multiple of 4) adds the extension."""
    head = HEADER.pack((kind << 4) | VERSION, EXT_SACK if sack else EXT_NONE, connection_id,
                       timestamp, timestamp_diff, wnd_size, seq_nr, ack_nr)
    if sack:
        return head + bytes((EXT_NONE, len(sack))) + sack + payload
    return head + payload if payload else head


def is_utp_packet(data: bytes) -> bool:
    """Cheap demux test: a well-formed uTP v1 header and extension chain (DHT bencode starts
    with b"d", which reads as type 6)."""
    if len(data) < HEADER_SIZE or data[0] & 15 != VERSION or data[0] >> 4 > ST_SYN:
        return False
    try:
        parse_packet(data)
    except UtpError:
        return False
    return True


def _check_length(data: bytes) -> None:
    if len(data) < HEADER_SIZE:
        raise UtpError("uTP datagram of %d bytes is shorter than the header" % len(data))


def packet_connection_id(data: bytes) -> int:
    """The connection id of a datagram that passed ``is_utp_packet``."""
    _check_length(data)
    return (data[2] << 8) | data[3]


def packet_type(data: bytes) -> int:
    """The packet type (ST_DATA ... ST_SYN) of a datagram that passed ``is_utp_packet``."""
    _check_length(data)
    return data[0] >> 4


def reset_for(data: bytes, now: float) -> bytes:
    """The ST_RESET answering a stray packet: its connection id, ack_nr its seq_nr (never
    answer a stray ST_RESET: two endpoints would bounce resets forever)."""
    _check_length(data)
    _, _, cid, ts, _, _, seq, _ = HEADER.unpack_from(data, 0)
    return encode_packet(ST_RESET, cid, micros(now), (micros(now) - ts) & TS_MASK, 0, 0, seq)
