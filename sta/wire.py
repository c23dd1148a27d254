"""The peer wire protocol (BEP 3) with the fast (BEP 6) and extension (BEP 10) messages.

Sans-IO, in the manner of h11: ``MessageReader.feed(bytes)`` returns events, the encoders return
bytes. Nothing here touches a socket or a clock, so the caller owns all I/O and timing and every
edge case is a test of a few bytes.

The reader is the hot path of a transfer (a gibibyte is 65,536 piece messages), so it parses
straight out of each chunk it is fed with ``struct.unpack_from`` at an offset, copies nothing but
the block payloads, builds events with ``tuple.__new__`` (no Python-level constructor call) and
keeps only the unfinished tail of a chunk for the next call.

A peer that breaks the protocol makes the reader raise ``WireError`` with a message naming what
was wrong; the caller logs it and drops the connection. After a ``WireError`` the reader is in an
undefined state and must not be fed again.

The payloads inside extended messages have their own modules: the extension handshake is
``sta.extension`` (its event, ``ExtendedHandshake``, comes out of the reader) and BEP 9's
ut_metadata messages are ``sta.ut_metadata``.
"""

from __future__ import annotations

import logging
import struct
from itertools import starmap
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

from . import extension
from .extension import ExtendedHandshake

__all__ = [
    "WireError", "MessageReader",
    "Handshake", "KeepAlive", "Choke", "Unchoke", "Interested", "NotInterested", "Have",
    "BitfieldMessage", "Request", "Piece", "Cancel", "Port", "Suggest", "HaveAll", "HaveNone",
    "Reject", "AllowedFast", "ExtendedHandshake", "Extended",
    "handshake", "keepalive", "choke", "unchoke", "interested", "not_interested", "have",
    "bitfield", "request", "requests", "piece_header", "piece", "cancel", "port", "suggest",
    "have_all", "have_none", "reject", "allowed_fast", "extended", "extended_handshake",
]

log = logging.getLogger(__name__)

PROTOCOL = b"BitTorrent protocol"
HANDSHAKE_LENGTH = 68  # 1 + 19 + 8 reserved + 20 info hash + 20 peer id
_HANDSHAKE_PREFIX = bytes([len(PROTOCOL)]) + PROTOCOL

# The size of a block requested from a peer. BEP 3: "All current implementations use 2^14 (16
# kiB), and close connections which request an amount greater than that." Every block but the
# last of a piece is this size.
BLOCK_SIZE = 16384

# Largest length prefix accepted, id byte included. libtorrent drops a peer whose message is
# longer than 1 MiB, so no interoperable client sends more; it still holds the bitfield of
# 8,388,608 pieces (a 2**20-piece torrent needs 128 KiB) and any extension message.
MAX_MESSAGE_LENGTH = 1 << 20

# Largest block accepted in a piece message. libtorrent (packet_too_large) and Transmission
# (length > 16393) both drop a peer that sends more than 16 KiB, so no peer sends more, and we
# never ask for more.
MAX_BLOCK_LENGTH = BLOCK_SIZE

# Largest length accepted in request, cancel and reject messages. The original client served
# slices up to 2**17 bytes, so an old peer may ask that much; the reader lets it through and the
# session decides what it serves. Anything beyond is not a block request at all.
MAX_REQUEST_LENGTH = 1 << 17

# Reserved-byte bits of the handshake: (byte index, mask).
EXTENSION_BIT = (5, 0x10)  # BEP 10
FAST_BIT = (7, 0x04)  # BEP 6

# Message ids (BEP 3, BEP 5 port, BEP 6 fast extension, BEP 10 extended).
CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD = range(6)
REQUEST, PIECE, CANCEL, PORT = range(6, 10)
SUGGEST, HAVE_ALL, HAVE_NONE, REJECT, ALLOWED_FAST = range(13, 18)
EXTENDED = 20
EXTENDED_HANDSHAKE_ID = 0  # the ext id of the BEP 10 handshake inside an extended message

_MESSAGE_NAMES = {
    CHOKE: "choke", UNCHOKE: "unchoke", INTERESTED: "interested",
    NOT_INTERESTED: "not interested", HAVE: "have", BITFIELD: "bitfield", REQUEST: "request",
    PIECE: "piece", CANCEL: "cancel", PORT: "port", SUGGEST: "suggest piece",
    HAVE_ALL: "have all", HAVE_NONE: "have none", REJECT: "reject request",
    ALLOWED_FAST: "allowed fast", EXTENDED: "extended",
}

# Exact length prefix (id byte included) of every fixed-size message.
_FIXED_LENGTH = {
    CHOKE: 1, UNCHOKE: 1, INTERESTED: 1, NOT_INTERESTED: 1, HAVE: 5, REQUEST: 13, CANCEL: 13,
    PORT: 3, SUGGEST: 5, HAVE_ALL: 1, HAVE_NONE: 1, REJECT: 13, ALLOWED_FAST: 5,
}


class WireError(Exception):
    """The peer broke the protocol (or an encoder was given values it cannot send)."""


# --- events ------------------------------------------------------------------------------------
# NamedTuples: the hot path builds one per block, and a tuple is the cheapest object to build.
# Equality is made type-aware below, so Have(3) != Suggest(3) and KeepAlive() != Choke().


class Handshake(NamedTuple):
    reserved: bytes
    info_hash: bytes
    peer_id: bytes

    @property
    def supports_extensions(self) -> bool:
        """The peer speaks the BEP 10 extension protocol."""
        return bool(self.reserved[EXTENSION_BIT[0]] & EXTENSION_BIT[1])

    @property
    def supports_fast(self) -> bool:
        """The peer set the BEP 6 bit (the extension is on only if both sides set it)."""
        return bool(self.reserved[FAST_BIT[0]] & FAST_BIT[1])


KeepAlive = NamedTuple("KeepAlive", [])
Choke = NamedTuple("Choke", [])
Unchoke = NamedTuple("Unchoke", [])
Interested = NamedTuple("Interested", [])
NotInterested = NamedTuple("NotInterested", [])
Have = NamedTuple("Have", [("index", int)])
# The raw payload: bitfield.Bitfield.from_bytes checks it against the torrent's piece count.
# Named apart from bitfield.Bitfield, the piece set.
BitfieldMessage = NamedTuple("BitfieldMessage", [("bits", bytes)])
Request = NamedTuple("Request", [("index", int), ("begin", int), ("length", int)])
Piece = NamedTuple("Piece", [("index", int), ("begin", int), ("block", bytes)])
Cancel = NamedTuple("Cancel", [("index", int), ("begin", int), ("length", int)])
Port = NamedTuple("Port", [("port", int)])  # BEP 5: the peer's DHT port
# BEP 6 fast extension
Suggest = NamedTuple("Suggest", [("index", int)])
HaveAll = NamedTuple("HaveAll", [])
HaveNone = NamedTuple("HaveNone", [])
Reject = NamedTuple("Reject", [("index", int), ("begin", int), ("length", int)])
AllowedFast = NamedTuple("AllowedFast", [("index", int)])
# BEP 10: ext_id is our id for the extension, as announced in the "m" of our handshake
Extended = NamedTuple("Extended", [("ext_id", int), ("payload", bytes)])


Event = Union[
    Handshake, KeepAlive, Choke, Unchoke, Interested, NotInterested, Have, BitfieldMessage,
    Request, Piece, Cancel, Port, Suggest, HaveAll, HaveNone, Reject, AllowedFast,
    ExtendedHandshake, Extended,
]


def _typed_eq(self: tuple, other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)  # type: ignore[arg-type]


def _typed_ne(self: tuple, other: object) -> bool:
    return not _typed_eq(self, other)


for _cls in (Handshake, KeepAlive, Choke, Unchoke, Interested, NotInterested, Have,
             BitfieldMessage, Request, Piece, Cancel, Port, Suggest, HaveAll, HaveNone, Reject,
             AllowedFast, Extended):
    _cls.__eq__ = _typed_eq  # type: ignore[assignment]
    _cls.__ne__ = _typed_ne  # type: ignore[assignment]
    _cls.__hash__ = tuple.__hash__  # type: ignore[assignment]
del _cls


# --- reader ------------------------------------------------------------------------------------

_new = tuple.__new__
_unpack_length = struct.Struct(">I").unpack_from
_unpack_header = struct.Struct(">IB").unpack_from
_unpack_piece_header = struct.Struct(">IBII").unpack_from  # length, id, index, begin
_unpack_iii = struct.Struct(">III").unpack_from
_unpack_h = struct.Struct(">H").unpack_from

# Payload-free events are immutable, so one instance of each serves every message.
_KEEPALIVE = KeepAlive()
_SIMPLE_EVENTS = {
    CHOKE: Choke(), UNCHOKE: Unchoke(), INTERESTED: Interested(),
    NOT_INTERESTED: NotInterested(), HAVE_ALL: HaveAll(), HAVE_NONE: HaveNone(),
}
_INDEX_EVENTS = {HAVE: Have, SUGGEST: Suggest, ALLOWED_FAST: AllowedFast}
_TRIPLE_EVENTS = {REQUEST: Request, CANCEL: Cancel, REJECT: Reject}
_PIECE_LIMIT = 9 + MAX_BLOCK_LENGTH  # length prefix of a piece message with the largest block


def _message_name(msg_id: int) -> str:
    return _MESSAGE_NAMES.get(msg_id, f"message {msg_id}")


def _check_length(msg_id: int, length: int) -> None:
    """Raise WireError unless ``length`` (id byte included) suits message ``msg_id``."""
    if length > MAX_MESSAGE_LENGTH:
        raise WireError(f"message length {length} over limit {MAX_MESSAGE_LENGTH}")
    if msg_id == PIECE:
        if length <= 9:
            raise WireError(f"piece message with {length - 1}-byte payload (no block)")
        if length > _PIECE_LIMIT:
            raise WireError(f"piece message with a {length - 9}-byte block "
                            f"over limit {MAX_BLOCK_LENGTH}")
        return
    expected = _FIXED_LENGTH.get(msg_id)
    if expected is not None and length != expected:
        raise WireError(f"{_message_name(msg_id)} message with {length - 1}-byte payload "
                        f"(expected {expected - 1})")
    if msg_id == EXTENDED and length < 2:
        raise WireError("extended message without an extension id")


class MessageReader:
    """Turns the bytes a peer sends into events.

    ``expect_handshake``: the stream starts with the 68-byte handshake. The Handshake event comes
    out as soon as those bytes are in (an accepting side learns the info hash from it before it
    answers), followed by any messages that arrived in the same chunk.

    ``copy_blocks``: Piece.block is a bytes copy. With False, a block that lies wholly inside a
    ``bytes`` or ``memoryview`` chunk is a view of that chunk instead: no copy, but a view keeps
    a ``bytes`` chunk alive, and a ``memoryview`` chunk is taken as lent (a TLS layer's read
    buffer): its blocks are valid only until the caller reads into it again. So only a caller
    that copies or writes every block out before it feeds more should ask for it (peer.py does:
    see Downloader.block). A ``bytearray`` chunk's blocks are always copies.
    """

    __slots__ = ("_pending", "_expect_handshake", "_copy_blocks")

    def __init__(self, expect_handshake: bool = True, copy_blocks: bool = True) -> None:
        self._pending = bytearray()  # start of a message (or handshake) not yet complete
        self._expect_handshake = expect_handshake
        self._copy_blocks = copy_blocks

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._pending)

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> List[Event]:
        """Parse every complete message in the bytes fed so far; return their events in order."""
        events: List[Event] = []
        end = len(data)
        pos = 0
        if self._pending or self._expect_handshake:
            pos = self._finish_pending(data, events)
            if pos >= end:
                return events
        with memoryview(data) as view:
            if type(data) is bytes:
                # bytes slices are copies; views keep the chunk alive
                pos = _parse(data, pos, end, events, data if self._copy_blocks else view, False)
            elif type(data) is memoryview and not self._copy_blocks:
                pos = _parse(view, pos, end, events, view, False)  # lent until the next read
            else:
                # A caller's bytearray may change once we return: every block is copied out.
                pos = _parse(view, pos, end, events, view, True)
            if pos < end:
                self._pending = bytearray(view[pos:])
        return events

    def _finish_pending(self, data: Any, events: List[Event]) -> int:
        """Complete the handshake or the message started in an earlier chunk from the head of
        ``data``; return how many bytes of ``data`` that used (all of them if still short)."""
        pending = self._pending
        end = len(data)
        if self._expect_handshake:
            take = min(HANDSHAKE_LENGTH - len(pending), end)
            pending += data[:take]
            _check_handshake_prefix(pending)
            if len(pending) < HANDSHAKE_LENGTH:
                return end
            events.append(_new(Handshake, (bytes(pending[20:28]), bytes(pending[28:48]),
                                           bytes(pending[48:68]))))
            self._expect_handshake = False
            pending.clear()
            return take
        pos = 0
        if len(pending) < 5:
            take = min(5 - len(pending), end)
            pending += data[:take]
            pos = take
            if len(pending) >= 4 and _unpack_length(pending, 0)[0] == 0:
                # keep-alive: 4 bytes; anything taken past them starts the next message
                events.append(_KEEPALIVE)
                extra = len(pending) - 4
                pending.clear()
                return pos - extra
            if len(pending) < 5:
                if len(pending) == 4:
                    _check_length(-1, _unpack_length(pending, 0)[0])
                return end
        length, msg_id = _unpack_header(pending, 0)
        _check_length(msg_id, length)
        take = min(4 + length - len(pending), end - pos)
        with memoryview(data) as view:
            pending += view[pos:pos + take]
        pos += take
        if len(pending) < 4 + length:
            return end
        with memoryview(pending) as view:
            _parse(view, 0, len(view), events, view, True)
        pending.clear()
        return pos


def _parse(data: Any, pos: int, end: int, events: List[Event], blocks: Any,
           convert: bool) -> int:
    """Append the events of the complete messages in ``data[pos:end]``; return the offset of the
    first byte not consumed (the start of an unfinished message). Blocks are sliced out of
    ``blocks`` (``data`` or a view of it) and turned into bytes if ``convert``."""
    append = events.append
    while True:
        avail = end - pos
        if avail >= 13:
            length, msg_id, index, begin = _unpack_piece_header(data, pos)
        elif avail >= 5:
            length, msg_id = _unpack_header(data, pos)
            index = begin = 0
        elif avail == 4:
            length = _unpack_length(data, pos)[0]
            if length == 0:
                append(_KEEPALIVE)
                pos += 4
            else:
                _check_length(-1, length)
            break
        else:
            break
        if length == 0:
            append(_KEEPALIVE)
            pos += 4
            continue
        stop = pos + 4 + length
        # Fast paths first: piece and request are nearly all of a transfer's messages.
        if msg_id == PIECE and 9 < length <= _PIECE_LIMIT:
            if stop > end:
                break
            block = blocks[pos + 13:stop]
            append(_new(Piece, (index, begin, bytes(block) if convert else block)))
            pos = stop
            continue
        if msg_id == REQUEST and length == 13:
            if stop > end:
                break
            triple = _unpack_iii(data, pos + 5)
            if not 0 < triple[2] <= MAX_REQUEST_LENGTH:
                raise WireError(_bad_request_length(REQUEST, triple[2]))
            append(_new(Request, triple))
            pos = stop
            continue
        _check_length(msg_id, length)
        if stop > end:
            break
        event = _decode_other(msg_id, data, pos + 5, stop)
        if event is not None:
            append(event)
        pos = stop
    return pos


def _bad_request_length(msg_id: int, length: int) -> str:
    if length == 0:
        return f"{_message_name(msg_id)} message for 0 bytes"
    return (f"{_message_name(msg_id)} message for {length} bytes "
            f"over limit {MAX_REQUEST_LENGTH}")


def _decode_other(msg_id: int, data: Any, start: int, stop: int) -> Optional[Event]:
    """Decode a message other than piece and request whose length is already checked."""
    simple = _SIMPLE_EVENTS.get(msg_id)
    if simple is not None:
        return simple
    cls = _INDEX_EVENTS.get(msg_id)
    if cls is not None:
        return _new(cls, _unpack_length(data, start))
    cls = _TRIPLE_EVENTS.get(msg_id)
    if cls is not None:
        triple = _unpack_iii(data, start)
        if not 0 < triple[2] <= MAX_REQUEST_LENGTH:
            raise WireError(_bad_request_length(msg_id, triple[2]))
        return _new(cls, triple)
    if msg_id == BITFIELD:
        return BitfieldMessage(bytes(data[start:stop]))
    if msg_id == PORT:
        return Port(_unpack_h(data, start)[0])
    if msg_id == EXTENDED:
        ext_id = data[start]
        payload = bytes(data[start + 1:stop])
        if ext_id == EXTENDED_HANDSHAKE_ID:
            return ExtendedHandshake(_decode_extended_handshake(payload))
        return Extended(ext_id, payload)
    # Unknown ids are skipped. libtorrent and Transmission drop the peer instead, but skipping
    # costs nothing and keeps a peer that sends something newer (the BEP 52 hash messages 21-23,
    # a vendor message) whose length framing is still sound.
    log.debug("skipping unknown message id %d (%d-byte payload)", msg_id, stop - start)
    return None


def _decode_extended_handshake(payload: bytes) -> dict:
    try:
        return extension.decode_handshake(payload)
    except extension.ExtensionError as exc:
        raise WireError(str(exc)) from None


def _check_handshake_prefix(data: bytearray) -> None:
    """Raise WireError as soon as the received start of a handshake is not BEP 3's."""
    if not data:
        return
    if data[0] != len(PROTOCOL):
        raise WireError(f"not a BitTorrent handshake: first byte {data[0]}, "
                        f"expected {len(PROTOCOL)}")
    got = bytes(data[:len(_HANDSHAKE_PREFIX)])
    if got != _HANDSHAKE_PREFIX[:len(got)]:
        raise WireError(f"handshake protocol string {got[1:]!r} is not {PROTOCOL!r}")


# --- encoders ----------------------------------------------------------------------------------

_pack_iii = struct.Struct(">III").pack
_pack_index_message = struct.Struct(">IBI").pack  # length 5, id, index
_pack_triple_message = struct.Struct(">IBIII").pack  # length 13, id, index, begin, length
_pack_piece_header = struct.Struct(">IBII").pack
_REQUEST_PREFIX = b"\x00\x00\x00\x0d\x06"


def handshake(info_hash: bytes, peer_id: bytes, extensions: bool = True,
              fast: bool = False) -> bytes:
    """The 68-byte handshake; ``extensions`` sets the BEP 10 bit, ``fast`` the BEP 6 bit."""
    if len(info_hash) != 20 or len(peer_id) != 20:
        raise WireError(f"handshake needs a 20-byte info hash and peer id, "
                        f"got {len(info_hash)} and {len(peer_id)} bytes")
    reserved = bytearray(8)
    if extensions:
        reserved[EXTENSION_BIT[0]] |= EXTENSION_BIT[1]
    if fast:
        reserved[FAST_BIT[0]] |= FAST_BIT[1]
    return _HANDSHAKE_PREFIX + bytes(reserved) + bytes(info_hash) + bytes(peer_id)


def keepalive() -> bytes:
    return b"\x00\x00\x00\x00"


def choke() -> bytes:
    return b"\x00\x00\x00\x01\x00"


def unchoke() -> bytes:
    return b"\x00\x00\x00\x01\x01"


def interested() -> bytes:
    return b"\x00\x00\x00\x01\x02"


def not_interested() -> bytes:
    return b"\x00\x00\x00\x01\x03"


def have(index: int) -> bytes:
    return _pack_index_message(5, HAVE, index)


def bitfield(bits: bytes) -> bytes:
    return _pack_header(BITFIELD, len(bits)) + bytes(bits)


def request(index: int, begin: int, length: int) -> bytes:
    return _pack_triple_message(13, REQUEST, index, begin, length)


def requests(triples: Iterable[Tuple[int, int, int]]) -> bytes:
    """Many request messages in one buffer, from (index, begin, length) triples."""
    packed = _REQUEST_PREFIX.join(starmap(_pack_iii, triples))
    return _REQUEST_PREFIX + packed if packed else b""


def piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes before a block of ``length`` bytes: write them, then the block, so the
    block is never copied into a bigger buffer."""
    return _pack_piece_header(9 + length, PIECE, index, begin)


def piece(index: int, begin: int, block: bytes) -> bytes:
    """A whole piece message (one copy of the block; the sender uses piece_header instead)."""
    return _pack_piece_header(9 + len(block), PIECE, index, begin) + bytes(block)


def cancel(index: int, begin: int, length: int) -> bytes:
    return _pack_triple_message(13, CANCEL, index, begin, length)


def port(dht_port: int) -> bytes:
    """BEP 5: tell the peer the UDP port of our DHT node."""
    return struct.pack(">IBH", 3, PORT, dht_port)


def suggest(index: int) -> bytes:
    return _pack_index_message(5, SUGGEST, index)


def have_all() -> bytes:
    return b"\x00\x00\x00\x01\x0e"


def have_none() -> bytes:
    return b"\x00\x00\x00\x01\x0f"


def reject(index: int, begin: int, length: int) -> bytes:
    return _pack_triple_message(13, REJECT, index, begin, length)


def allowed_fast(index: int) -> bytes:
    return _pack_index_message(5, ALLOWED_FAST, index)


def extended(ext_id: int, payload: bytes) -> bytes:
    """A BEP 10 message: ``ext_id`` is the id the peer chose in its handshake's "m"."""
    if not 0 <= ext_id <= 255:
        raise WireError(f"extension id {ext_id} is not a byte")
    return _pack_header(EXTENDED, 1 + len(payload)) + bytes([ext_id]) + bytes(payload)


def extended_handshake(m: Dict[str, int], **fields: Any) -> bytes:
    """The BEP 10 handshake message. ``m`` maps extension names to our ids for them; ``fields``
    adds v, p, reqq, metadata_size, yourip, upload_only, ... (None values are left out)."""
    try:
        payload = extension.encode_handshake(m, **fields)
    except extension.ExtensionError as exc:
        raise WireError(str(exc)) from None
    return extended(EXTENDED_HANDSHAKE_ID, payload)


def _pack_header(msg_id: int, payload_length: int) -> bytes:
    return struct.pack(">IB", 1 + payload_length, msg_id)


# --- BEP 9 ut_metadata (the codec is sta.ut_metadata) ------------------------------------------
