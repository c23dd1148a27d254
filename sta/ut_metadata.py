"""BEP 9 ut_metadata messages, and the side that serves an info dictionary with them.

A magnet link names a torrent by its info hash alone; peers send the info dictionary it names
inside BEP 10 extended messages, in 16 KiB pieces. This module is the codec of those messages'
payloads (request, data, reject), checked against BEP 9's bounds, and ``MetadataServer``, which
answers requests from a dictionary we have. Like ``wire.py`` it is pure: payload bytes in,
``MetadataMessage`` or payload bytes out; the extended message around a payload is
``wire.extended``. Deciding which pieces to ask of whom and checking what came back against the
info hash is ``sta.metadata``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from . import bencode

__all__ = [
    "MetadataError", "MetadataMessage", "MetadataServer",
    "metadata_request", "metadata_data", "metadata_reject", "decode_metadata", "refuse",
    "METADATA_PIECE_SIZE", "MAX_METADATA_SIZE", "MAX_METADATA_PIECES",
    "METADATA_REQUEST", "METADATA_DATA", "METADATA_REJECT",
]

# BEP 9: the info dictionary travels in 16 KiB pieces, the last one shorter.
METADATA_PIECE_SIZE = 16384

# Largest info dictionary fetched or accepted in a data message: libtorrent's default
# max_metadata_size (30 MiB); libtorrent only believes handshake hints up to 4 MiB, Transmission
# anything below 2 GiB. The dictionary is mostly 20 bytes of SHA-1 per piece, so 30 MiB holds
# 1.5 million pieces: 1.5 TiB at 1 MiB pieces, 24 TiB at 16 MiB, far past any torrent a lab shares
# (1 TB at 16 MiB pieces needs 1.2 MB). A fetch holds the whole dictionary in memory, so this is
# also the memory one honest fetch may take.
MAX_METADATA_SIZE = 30 * 1024 * 1024
MAX_METADATA_PIECES = -(-MAX_METADATA_SIZE // METADATA_PIECE_SIZE)

# BEP 9 msg_type values.
METADATA_REQUEST, METADATA_DATA, METADATA_REJECT = 0, 1, 2


class MetadataError(Exception):
    """A ut_metadata message was malformed, or metadata could not be served, fetched, checked or
    saved; the message says where and why."""


class MetadataMessage(NamedTuple):
    """A BEP 9 ut_metadata message. msg_type is METADATA_REQUEST/DATA/REJECT, or another value a
    newer peer sent (BEP 9: ignore it; piece is then -1). total_size is set for data only."""

    msg_type: int
    piece: int
    total_size: Optional[int]
    data: bytes

    # Equal only to another MetadataMessage, like the events of wire.py: never to a bare tuple.
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and tuple.__eq__(self, other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__


def metadata_request(piece_index: int) -> bytes:
    """Payload of an Extended message asking for one piece of the info dictionary."""
    return bencode.encode({"msg_type": METADATA_REQUEST, "piece": piece_index})


def metadata_data(piece_index: int, total_size: int, data: bytes) -> bytes:
    """Payload answering a request: the dict, then the piece's raw bytes."""
    header = bencode.encode({"msg_type": METADATA_DATA, "piece": piece_index,
                             "total_size": total_size})
    return header + bytes(data)


def metadata_reject(piece_index: int) -> bytes:
    return bencode.encode({"msg_type": METADATA_REJECT, "piece": piece_index})


def decode_metadata(payload: bytes) -> MetadataMessage:
    """Decode a ut_metadata payload and check it against BEP 9's bounds; MetadataError if the
    peer broke them."""
    try:
        header, end = bencode.decode_prefix(payload, sorted_keys=False)
    except bencode.BencodeError as exc:
        raise MetadataError(f"ut_metadata message is not valid bencoding: {exc}") from None
    if not isinstance(header, dict):
        raise MetadataError(f"ut_metadata message is a {bencode.kind(header)}, "
                            "not a dictionary")
    msg_type = header.get(b"msg_type")
    if not isinstance(msg_type, int):
        raise MetadataError("ut_metadata message without an integer msg_type")
    if msg_type not in (METADATA_REQUEST, METADATA_DATA, METADATA_REJECT):
        return MetadataMessage(msg_type, -1, None, b"")
    index = header.get(b"piece")
    if not isinstance(index, int) or not 0 <= index < MAX_METADATA_PIECES:
        raise MetadataError(f"ut_metadata piece {index!r} is not an index below "
                            f"{MAX_METADATA_PIECES}")
    if msg_type != METADATA_DATA:
        # Bytes after a request or reject carry nothing; ignoring them costs nothing.
        return MetadataMessage(msg_type, index, None, b"")
    data = bytes(payload[end:])
    total_size = header.get(b"total_size")
    if not isinstance(total_size, int) or not 0 < total_size <= MAX_METADATA_SIZE:
        raise MetadataError(f"ut_metadata total_size {total_size!r} is not between 1 and "
                            f"{MAX_METADATA_SIZE}")
    offset = index * METADATA_PIECE_SIZE
    if offset >= total_size:
        raise MetadataError(f"ut_metadata piece {index} is past the end of a "
                            f"{total_size}-byte info dictionary")
    expected = min(METADATA_PIECE_SIZE, total_size - offset)
    if len(data) != expected:
        raise MetadataError(f"ut_metadata piece {index} carries {len(data)} bytes, "
                            f"expected {expected}")
    return MetadataMessage(msg_type, index, total_size, data)


class MetadataServer:
    """Serves one info dictionary to peers that ask for it (BEP 9)."""

    def __init__(self, info_raw: bytes) -> None:
        if not info_raw:
            raise MetadataError("cannot serve an empty info dictionary")
        self._raw = bytes(info_raw)
        self.metadata_size = len(self._raw)  # for the "metadata_size" of the BEP 10 handshake
        self.num_pieces = -(-self.metadata_size // METADATA_PIECE_SIZE)

    def piece(self, index: int) -> bytes:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"metadata piece {index} out of range")
        return self._raw[index * METADATA_PIECE_SIZE:(index + 1) * METADATA_PIECE_SIZE]

    def answer(self, msg: MetadataMessage) -> Optional[bytes]:
        """The ut_metadata payload answering ``msg``: data for a request of a piece we have, a
        reject for one out of range, None for anything else.

        Data, rejects and unknown types get no answer: BEP 9 says to ignore unknown types, and
        answering a reject with a reject would let two nodes bounce rejects forever.
        """
        if msg.msg_type != METADATA_REQUEST:
            return None
        if not 0 <= msg.piece < self.num_pieces:
            return metadata_reject(msg.piece)
        return metadata_data(msg.piece, self.metadata_size, self.piece(msg.piece))


def refuse(msg: MetadataMessage) -> Optional[bytes]:
    """What a node without the info dictionary answers: a reject for a request (BEP 9), nothing
    otherwise."""
    if msg.msg_type == METADATA_REQUEST and msg.piece >= 0:
        return metadata_reject(msg.piece)
    return None
