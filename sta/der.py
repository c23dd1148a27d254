"""DER (X.690): the encoder a certificate needs, and a reader for what it writes.

``sta.x509`` builds keys and certificates out of these values. The encoder writes only the types a
certificate uses (SEQUENCE, SET OF, INTEGER, BOOLEAN, NULL, OBJECT IDENTIFIER, BIT and OCTET
STRING, UTF8String, the two time types and explicit tags), each in its one DER form. The reader
walks tag-length-value elements by offset into the caller's bytes; it is not a general ASN.1
parser (single-byte tags, lengths up to four bytes), just enough to read back a key or a
certificate. Pure functions, no I/O.
"""

from __future__ import annotations

import datetime
from typing import List, Tuple

__all__ = [
    "DerError", "tlv", "der_sequence", "der_set", "der_integer", "der_boolean", "der_null",
    "der_oid", "der_bit_string", "der_octet_string", "der_utf8_string", "der_time",
    "der_explicit", "read_tlv", "read_children", "expect_tag",
]

# RFC 5280 4.1.2.5: dates through 2049 are UTCTime, from 2050 GeneralizedTime.
UTCTIME_LAST_YEAR = 2049
# Bytes of a long-form length the reader accepts: four cover 4 GiB, far past any key or
# certificate (a 2048-bit certificate is about 1 KB).
MAX_LENGTH_BYTES = 4

# (tag, start of content, end of content) of an element, as offsets into the data read.
Element = Tuple[int, int, int]


class DerError(ValueError):
    """Bytes that are not the DER this module reads, or a value it cannot encode."""


# ---------------------------------------------------------------------------------------------
# Encoding

def tlv(tag: int, content: bytes) -> bytes:
    """One element: the tag byte, the length in its shortest form, the content."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def der_sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def der_set(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(items)))  # DER: SET OF elements in sorted order


def der_integer(value: int) -> bytes:
    if value < 0:
        raise DerError("negative integers are not used here")
    # One spare bit so a value with its top bit set gets the leading zero that keeps it positive.
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def der_boolean(value: bool) -> bytes:
    return tlv(0x01, b"\xff" if value else b"\x00")


def der_null() -> bytes:
    return b"\x05\x00"


def der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray()
    for arc in [40 * parts[0] + parts[1]] + parts[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def der_bit_string(data: bytes, unused_bits: int = 0) -> bytes:
    return tlv(0x03, bytes((unused_bits,)) + data)


def der_octet_string(data: bytes) -> bytes:
    return tlv(0x04, data)


def der_utf8_string(text: str) -> bytes:
    return tlv(0x0C, text.encode("utf-8"))


def der_time(moment: datetime.datetime) -> bytes:
    """UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280), always in UTC."""
    moment = moment.astimezone(datetime.timezone.utc)
    if moment.year <= UTCTIME_LAST_YEAR:
        return tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def der_explicit(number: int, content: bytes) -> bytes:
    return tlv(0xA0 | number, content)


# ---------------------------------------------------------------------------------------------
# Reading: just enough to read back what the encoder writes

def read_tlv(data: bytes, pos: int) -> Element:
    """(tag, content start, content end) of the element at ``pos``."""
    try:
        tag, first = data[pos], data[pos + 1]
        pos += 2
        if first & 0x80:
            count = first & 0x7F
            if not 1 <= count <= MAX_LENGTH_BYTES:
                raise DerError("DER length field too long")
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        else:
            length = first
    except IndexError:
        raise DerError("DER data ends early") from None
    if pos + length > len(data):
        raise DerError("DER element runs past the end of the data")
    return tag, pos, pos + length


def read_children(data: bytes, start: int, end: int) -> List[Element]:
    """The elements one after another in ``data[start:end]`` (the content of a SEQUENCE)."""
    items = []
    while start < end:
        tag, cstart, cend = read_tlv(data, start)
        items.append((tag, cstart, cend))
        start = cend
    return items


def expect_tag(item: Element, tag: int, what: str) -> Element:
    """``item`` itself if its tag is ``tag``; DerError naming ``what`` was expected otherwise."""
    if item[0] != tag:
        raise DerError(f"not a {what} (DER tag {item[0]:#04x}, expected {tag:#04x})")
    return item
