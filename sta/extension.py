"""The BEP 10 extension handshake: the dictionary two peers swap to agree on extensions.

After the BitTorrent handshake, peers that set the extension bit send one extended message with
id 0 whose payload is a bencoded dictionary: "m" maps extension names (ut_metadata, ut_pex, ...)
to the message id each side wants for them, beside optional fields (the client's name, its
listen port, how many requests it queues, the metadata size of BEP 9, ...). This module decodes
that payload into an ``ExtendedHandshake`` whose properties read each field, within bounds, and
encodes ours. It is pure, like ``wire.py``, which frames the payload as a message and hands the
event to the caller.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

from . import bencode
from .ut_metadata import MAX_METADATA_SIZE

__all__ = ["ExtensionError", "ExtendedHandshake", "decode_handshake", "encode_handshake",
           "MAX_EXTENDED_HANDSHAKE_LENGTH"]

# Largest extension handshake decoded. Real ones are a few hundred bytes (libtorrent's is about
# 250); the bound keeps a hostile peer from making us bdecode a megabyte of junk per message.
MAX_EXTENDED_HANDSHAKE_LENGTH = 64 * 1024


class ExtensionError(Exception):
    """An extension handshake could not be decoded or encoded; the message says why."""


class ExtendedHandshake(NamedTuple):
    """BEP 10 handshake. ``payload`` is the decoded dict as sent (byte-string keys, any values);
    the properties read the usual fields and answer None for a missing or ill-typed one."""

    payload: dict

    # Equal only to another ExtendedHandshake, like every event of wire.py.
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and tuple.__eq__(self, other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    @property
    def m(self) -> Dict[str, int]:
        """Extension name -> the id the peer wants for it; 0 means the peer disabled it."""
        value = self.payload.get(b"m")
        result: Dict[str, int] = {}
        if isinstance(value, dict):
            for name, ext_id in value.items():
                if isinstance(ext_id, int) and 0 <= ext_id <= 255:
                    try:
                        result[name.decode("utf-8")] = ext_id
                    except UnicodeDecodeError:
                        continue
        return result

    @property
    def metadata_size(self) -> Optional[int]:
        """BEP 9 size of the info dictionary, if given and within MAX_METADATA_SIZE."""
        return _int_field(self.payload, b"metadata_size", 1, MAX_METADATA_SIZE)

    @property
    def client(self) -> Optional[str]:
        """The ``v`` field: client name and version."""
        value = self.payload.get(b"v")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else None

    @property
    def listen_port(self) -> Optional[int]:
        """The ``p`` field: the TCP port the peer listens on."""
        return _int_field(self.payload, b"p", 1, 65535)

    @property
    def reqq(self) -> Optional[int]:
        """How many outstanding requests the peer queues without dropping any."""
        return _int_field(self.payload, b"reqq", 1, 1 << 31)

    @property
    def yourip(self) -> Optional[bytes]:
        """Our address as the peer sees it: 4 (IPv4) or 16 (IPv6) raw bytes."""
        value = self.payload.get(b"yourip")
        return value if isinstance(value, bytes) and len(value) in (4, 16) else None

    @property
    def upload_only(self) -> bool:
        """BEP 21: the peer is a seed (or wants nothing from us)."""
        return _int_field(self.payload, b"upload_only", 1, 1 << 63) is not None


def _int_field(payload: dict, key: bytes, low: int, high: int) -> Optional[int]:
    value = payload.get(key)
    if isinstance(value, int) and low <= value <= high:
        return value
    return None


def decode_handshake(payload: bytes) -> dict:
    """The dictionary of a handshake payload, keys in the order sent; ExtensionError if it is
    too long, not bencoding, or not a dictionary."""
    if len(payload) > MAX_EXTENDED_HANDSHAKE_LENGTH:
        raise ExtensionError(f"extension handshake of {len(payload)} bytes "
                             f"over limit {MAX_EXTENDED_HANDSHAKE_LENGTH}")
    try:
        value = bencode.decode(payload, sorted_keys=False)
    except bencode.BencodeError as exc:
        raise ExtensionError(f"extension handshake is not valid bencoding: {exc}") from None
    if not isinstance(value, dict):
        raise ExtensionError(f"extension handshake is a {bencode.kind(value)}, "
                             "not a dictionary")
    return value


def encode_handshake(m: Dict[str, int], **fields: Any) -> bytes:
    """The payload of our handshake. ``m`` maps extension names to our ids for them; ``fields``
    adds v, p, reqq, metadata_size, yourip, upload_only, ... (None values are left out)."""
    payload: Dict[str, Any] = {"m": dict(m)}
    for key, value in fields.items():
        if value is not None:
            payload[key] = value
    try:
        return bencode.encode(payload)
    except bencode.BencodeError as exc:
        raise ExtensionError(f"cannot encode extension handshake: {exc}") from None
