"""Bencoding (BEP 3): a strict decoder and a canonical encoder.

Pure functions, no I/O. The decoder accepts exactly one canonical encoding of each value, so a
value decoded and encoded again gives the same bytes: integers without leading zeros or ``-0``,
dictionary keys that are byte strings in strictly increasing raw-byte order, nothing after the
value. Every error names the byte offset where the input went wrong.

Strings decode to ``bytes`` (torrent files carry raw bytes: SHA-1 hashes, compact peers, paths in
unknown encodings); the caller decides what is text.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

__all__ = ["BencodeError", "encode", "decode", "decode_prefix", "raw_value", "kind"]

# Deeper nesting than any real torrent, tracker answer or extension message uses (they stay under
# 10 levels); the bound keeps hostile input from exhausting the Python stack.
MAX_DEPTH = 64

# An integer longer than this is not a length, count or timestamp from any real client; bounding
# it keeps int() from spending quadratic time on a megabyte of digits.
MAX_INT_DIGITS = 64

_DIGITS = frozenset(b"0123456789")


class BencodeError(ValueError):
    """The input is not valid bencoding; ``offset`` is where decoding stopped."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"bad bencoding at byte {offset}: {message}")
        self.offset = offset


def encode(value: Any) -> bytes:
    """Encode ``value``: bytes-like and str (as UTF-8), int, list/tuple, dict."""
    out: List[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value: Any, out: List[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError("value nested too deeply to encode", 0)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, bool):
        # bool is an int subclass; encoding True as i1e silently hides a caller's mistake.
        raise BencodeError("cannot encode a bool", 0)
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, (list, tuple)):
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, dict):
        items = []
        for key, item in value.items():
            if isinstance(key, str):
                key = key.encode("utf-8")
            elif not isinstance(key, bytes):
                raise BencodeError(f"dictionary key of type {type(key).__name__}", 0)
            items.append((key, item))
        items.sort(key=lambda pair: pair[0])
        out.append(b"d")
        previous = None
        for key, item in items:
            if key == previous:
                raise BencodeError(f"duplicate dictionary key {key!r}", 0)
            previous = key
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(item, out, depth + 1)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot encode a value of type {type(value).__name__}", 0)


def decode(data: bytes, *, sorted_keys: bool = True) -> Any:
    """Decode exactly one value that fills all of ``data``.

    ``sorted_keys=False`` accepts dictionaries whose keys are out of order (duplicates are still
    refused): some trackers and clients write them so, and libtorrent, aria2 and Transmission all
    accept them; input from the network goes through this mode.
    """
    data = bytes(data)
    value, end = _decode(data, 0, 0, sorted_keys)
    if end != len(data):
        raise BencodeError("trailing data after the value", end)
    return value


def decode_prefix(data: bytes, start: int = 0, *, sorted_keys: bool = True) -> Tuple[Any, int]:
    """Decode one value starting at ``start``; return it and the offset just past it.

    For messages that carry a bencoded dictionary followed by raw bytes (BEP 9 metadata pieces).
    """
    data = bytes(data)
    if start < 0 or start > len(data):
        raise BencodeError("start offset outside the input", start)
    return _decode(data, start, 0, sorted_keys)


def raw_value(data: bytes, key: bytes, *, sorted_keys: bool = True) -> Optional[bytes]:
    """Return the exact bytes that encode ``key``'s value in the top-level dictionary of ``data``.

    The info hash is the SHA-1 of the info dictionary exactly as it stands in the file, so it is
    sliced out, never re-encoded. ``data`` must be a valid dictionary as a whole.
    """
    data = bytes(data)
    if not data.startswith(b"d"):
        raise BencodeError("expected a dictionary", 0)
    spans: Dict[bytes, Tuple[int, int]] = {}
    _, end = _decode_dict(data, 0, 0, sorted_keys, spans)
    if end != len(data):
        raise BencodeError("trailing data after the value", end)
    span = spans.get(key)
    return data[span[0]:span[1]] if span is not None else None


def kind(value: Any) -> str:
    """What a decoded value is, in the words of an error message: "string", "integer", "list" or
    "dictionary" (the type's name for anything else)."""
    return _KINDS.get(type(value), type(value).__name__)


_KINDS = {bytes: "string", int: "integer", list: "list", dict: "dictionary"}


def _key_order_message(key: bytes, previous: bytes) -> str:
    if key == previous:
        return f"duplicate dictionary key {key!r}"
    return f"dictionary key {key!r} out of order"


def _decode(data: bytes, pos: int, depth: int, sorted_keys: bool = True) -> Tuple[Any, int]:
    if pos >= len(data):
        raise BencodeError("unexpected end of input", pos)
    lead = data[pos]
    if lead in _DIGITS:
        return _decode_string(data, pos, "string")
    if lead == 0x69:  # 'i'
        return _decode_int(data, pos)
    if depth >= MAX_DEPTH:
        raise BencodeError(f"nesting deeper than {MAX_DEPTH} levels", pos)
    if lead == 0x6C:  # 'l'
        items = []
        pos += 1
        while True:
            if pos >= len(data):
                raise BencodeError("unterminated list", pos)
            if data[pos] == 0x65:
                return items, pos + 1
            item, pos = _decode(data, pos, depth + 1, sorted_keys)
            items.append(item)
    if lead == 0x64:  # 'd'
        return _decode_dict(data, pos, depth, sorted_keys)
    raise BencodeError(f"unexpected byte {bytes([lead])!r}", pos)


def _decode_dict(data: bytes, pos: int, depth: int, sorted_keys: bool,
                 spans: Optional[Dict[bytes, Tuple[int, int]]] = None) -> Tuple[Any, int]:
    """The dictionary starting at ``pos``; ``spans`` receives where each value's bytes are."""
    result: Dict[bytes, Any] = {}
    pos += 1
    previous = None
    while True:
        if pos >= len(data):
            raise BencodeError("unterminated dictionary", pos)
        if data[pos] == 0x65:  # 'e'
            return result, pos + 1
        if data[pos] not in _DIGITS:
            raise BencodeError("dictionary key is not a string", pos)
        key_pos = pos
        key, pos = _decode_string(data, pos, "dictionary key")
        if sorted_keys:
            if previous is not None and key <= previous:
                raise BencodeError(_key_order_message(key, previous), key_pos)
            previous = key
        elif key in result:
            raise BencodeError(_key_order_message(key, key), key_pos)
        start = pos
        result[key], pos = _decode(data, pos, depth + 1, sorted_keys)
        if spans is not None:
            spans[key] = (start, pos)


def _decode_int(data: bytes, pos: int) -> Tuple[int, int]:
    end = data.find(b"e", pos + 1, pos + 2 + MAX_INT_DIGITS + 1)
    if end < 0:
        if data.find(b"e", pos + 1) < 0:
            raise BencodeError("unterminated integer", pos)
        raise BencodeError(f"integer longer than {MAX_INT_DIGITS} digits", pos)
    text = data[pos + 1:end]
    digits = text[1:] if text.startswith(b"-") else text
    if not digits or not all(c in _DIGITS for c in digits):
        raise BencodeError(f"malformed integer {text!r}", pos)
    if len(digits) > MAX_INT_DIGITS:
        raise BencodeError(f"integer longer than {MAX_INT_DIGITS} digits", pos)
    if digits[0] == 0x30 and len(digits) > 1:
        raise BencodeError("integer with a leading zero", pos)
    if text == b"-0":
        raise BencodeError("negative zero", pos)
    return int(text), end + 1


def _decode_string(data: bytes, pos: int, what: str) -> Tuple[bytes, int]:
    colon = data.find(b":", pos, pos + 21)
    if colon < 0:
        raise BencodeError(f"malformed {what} length", pos)
    text = data[pos:colon]
    if not text or not all(c in _DIGITS for c in text):
        raise BencodeError(f"malformed {what} length", pos)
    if text[0] == 0x30 and len(text) > 1:
        raise BencodeError(f"{what} length with a leading zero", pos)
    length = int(text)
    start = colon + 1
    end = start + length
    if end > len(data):
        raise BencodeError(f"{what} of {length} bytes runs past the end of the input", pos)
    return data[start:end], end
