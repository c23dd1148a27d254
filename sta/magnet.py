"""Magnet links (BEP 9): parse and format ``magnet:?xt=urn:btih:...``.

Pure functions, no I/O. Parsing follows libtorrent where the BEP leaves room: parameter names may
carry a ``.N`` suffix (``tr.1``, ``tr.2``), ``+`` decodes to a space, unknown parameters are
ignored. Where libtorrent silently drops a malformed value of a parameter we understand (``xl``,
``so``, ``x.pe``), STA raises a ``MagnetError`` instead: a user who typed or pasted the link wants
to know it is broken rather than download something else.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

__all__ = ["MagnetError", "Magnet", "parse", "format"]

# A magnet link lives in a command line, a clipboard or a web page; browsers cap URLs near 64 KiB
# (and many at 2-8 KiB). Anything longer is not a link a person passed on.
MAX_URI_LENGTH = 65536

# libtorrent refuses select-only indices above 10000 so that a tiny link cannot allocate a huge
# priority table; the same bound keeps `so=0-999999999` from building a giant tuple here.
MAX_SELECT_INDEX = 10000

_PREFIX = "magnet:?"
_BTIH = "urn:btih:"
_HEX = frozenset("0123456789abcdefABCDEF")
_NUMBERED = re.compile(r"^(.+)\.([0-9]+)$")
_PORT_SUFFIX = re.compile(r"^(.*):([0-9]{1,5})$")
# Formatting percent-encodes everything but RFC 3986 unreserved characters and ":/@", which a
# query value may hold as they are (so "tr=http://host:4000/announce" stays readable). '&', '='
# and '+' are always encoded, so every value survives a round trip.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/@")
# libtorrent parses x.pe without unescaping it first, so "[v6]:port" must stay literal.
_SAFE_PEER = _SAFE | frozenset(b"[]")


class MagnetError(ValueError):
    """The text is not a magnet link STA can use; the message says why."""


@dataclass(frozen=True)
class Magnet:
    """What a magnet link carries.

    ``peers`` are "host:port" strings (``[v6]:port`` for IPv6); ``select_only`` holds the file
    indices of ``so`` (BEP 53) sorted, without duplicates.
    """

    info_hash: bytes
    name: Optional[str] = None
    trackers: Tuple[str, ...] = ()
    length: Optional[int] = None
    web_seeds: Tuple[str, ...] = ()
    sources: Tuple[str, ...] = ()
    peers: Tuple[str, ...] = ()
    select_only: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.info_hash, bytes) or len(self.info_hash) != 20:
            raise MagnetError("an info hash is 20 bytes")

    def uri(self) -> str:
        return format(self)


def parse(uri: str) -> Magnet:
    """Parse a magnet link; raise ``MagnetError`` with a readable reason if it is not usable."""
    if not isinstance(uri, str):
        raise MagnetError("a magnet link is text")
    uri = uri.strip()
    if len(uri) > MAX_URI_LENGTH:
        raise MagnetError(f"magnet link longer than {MAX_URI_LENGTH} characters")
    if uri[:len(_PREFIX)].lower() != _PREFIX:
        raise MagnetError("not a magnet link (it must start with 'magnet:?')")
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        # A command line with bytes that are not UTF-8 reaches us as lone surrogates.
        raise MagnetError("magnet link with characters that are not valid text") from None
    query = uri[len(_PREFIX):]
    # Some pages strip the query of trailing fragments; a '#...' is never part of a magnet.
    query = query.split("#", 1)[0]

    info_hash: Optional[bytes] = None
    other_xt: List[str] = []
    name: Optional[str] = None
    length: Optional[int] = None
    trackers: List[str] = []
    web_seeds: List[str] = []
    sources: List[str] = []
    peers: List[str] = []
    select = bytearray(MAX_SELECT_INDEX + 1)

    for field in query.split("&"):
        if not field:
            continue
        key, _, raw = field.partition("=")
        numbered = _NUMBERED.match(key)
        if numbered:
            key = numbered.group(1)
        key = key.lower()
        if key == "xt":
            value = _unescape(raw, key)
            if value[:len(_BTIH)].lower() != _BTIH:
                other_xt.append(value)
                continue
            if info_hash is None:  # the first btih wins, as in libtorrent
                info_hash = _parse_btih(value[len(_BTIH):])
        elif key == "dn":
            if name is None:
                name = _unescape(raw, key)
        elif key == "tr":
            _append_unique(trackers, _unescape(raw, key))
        elif key == "ws":
            _append_unique(web_seeds, _unescape(raw, key))
        elif key == "xs":
            _append_unique(sources, _unescape(raw, key))
        elif key == "x.pe":
            _append_unique(peers, _parse_peer(_unescape(raw, key)))
        elif key == "xl":
            length = _parse_length(_unescape(raw, key))
        elif key == "so":
            _parse_select(_unescape(raw, key), select)
        # anything else (as, kt, mt, dht, tr.x ...) is ignored, like libtorrent does

    if info_hash is None:
        if any(v[:9].lower() == "urn:btmh:" for v in other_xt):
            raise MagnetError("magnet link has only a BitTorrent v2 hash (urn:btmh); "
                              "STA needs a v1 hash (xt=urn:btih:...)")
        raise MagnetError("magnet link has no BitTorrent info hash (xt=urn:btih:...)")
    return Magnet(info_hash=info_hash, name=name or None, trackers=tuple(trackers), length=length,
                  web_seeds=tuple(web_seeds), sources=tuple(sources), peers=tuple(peers),
                  select_only=tuple(i for i, v in enumerate(select) if v))


def format(m: Magnet) -> str:  # noqa: A001 - the module's natural verb, used as magnet.format
    """Format a magnet link: hex info hash, then dn, xl, tr, ws, xs, x.pe, so."""
    parts = [_PREFIX + "xt=" + _BTIH + m.info_hash.hex()]
    if m.name:
        parts.append("dn=" + _escape(m.name))
    if m.length is not None:
        parts.append("xl=%d" % m.length)
    parts.extend("tr=" + _escape(t) for t in m.trackers)
    parts.extend("ws=" + _escape(w) for w in m.web_seeds)
    parts.extend("xs=" + _escape(s) for s in m.sources)
    parts.extend("x.pe=" + _escape(p, _SAFE_PEER) for p in m.peers)
    if m.select_only:
        parts.append("so=" + format_select(m.select_only))
    return parts[0] + "".join("&" + p for p in parts[1:])


def format_select(indices: Iterable[int]) -> str:
    """Write file indices compactly: (0, 2, 4, 5, 6) -> "0,2,4-6"."""
    ordered = sorted(set(indices))
    out: List[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else "%d-%d" % (ordered[i], ordered[j]))
        i = j + 1
    return ",".join(out)


def _append_unique(items: List[str], value: str) -> None:
    if value and value not in items:
        items.append(value)


def _unescape(raw: str, key: str) -> str:
    """Percent-decode strictly ('+' is a space, like libtorrent); a bad escape is an error."""
    out = bytearray()
    data = raw.encode("utf-8")
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x25:  # '%'
            pair = data[i + 1:i + 3]
            if len(pair) != 2 or not all(chr(b) in _HEX for b in pair):
                raise MagnetError(f"bad percent-escape in the '{key}' parameter")
            out.append(int(pair, 16))
            i += 3
            continue
        out.append(0x20 if c == 0x2B else c)
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise MagnetError(f"the '{key}' parameter is not valid UTF-8") from None


def _escape(value: str, safe: frozenset = _SAFE) -> str:
    return "".join(chr(b) if b in safe else "%%%02X" % b for b in value.encode("utf-8"))


def _parse_btih(text: str) -> bytes:
    if len(text) == 40:
        if not all(c in _HEX for c in text):
            raise MagnetError("info hash has 40 characters but is not hexadecimal")
        return bytes.fromhex(text)
    if len(text) == 32:
        try:
            return base64.b32decode(text.upper())
        except (binascii.Error, ValueError):
            raise MagnetError("info hash has 32 characters but is not base32") from None
    raise MagnetError(f"info hash has {len(text)} characters; "
                      "expected 40 (hexadecimal) or 32 (base32)")


def _parse_length(text: str) -> int:
    if not text or not all("0" <= c <= "9" for c in text):
        raise MagnetError(f"bad exact length xl={text!r}: expected a number of bytes")
    if len(text) > 20:  # 2**63 has 19 digits; nothing real is larger
        raise MagnetError(f"exact length xl={text[:24]}... is too large")
    return int(text)


def _parse_peer(text: str) -> str:
    """Check "host:port", "a.b.c.d:port" or "[v6]:port" (BEP 9 x.pe) and return it unchanged."""
    match = _PORT_SUFFIX.match(text)
    if not match:
        raise MagnetError(f"bad peer x.pe={text!r}: expected HOST:PORT")
    host, port = match.group(1), int(match.group(2))
    if not 0 < port < 65536:
        raise MagnetError(f"bad peer x.pe={text!r}: port out of range")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3 or ":" not in host:
            raise MagnetError(f"bad peer x.pe={text!r}: bad IPv6 address")
    elif not host or ":" in host or any(c.isspace() or c in "/[]@" for c in host):
        raise MagnetError(f"bad peer x.pe={text!r}: expected HOST:PORT")
    return text


def _parse_select(text: str, covered: bytearray) -> None:
    """BEP 53 select-only: mark "0,2,4-6" as 0, 2, 4, 5, 6 in ``covered`` (one byte per index).

    A byte table rather than a set keeps a hostile "0-10000,0-10000,..." link linear in its size.
    """
    for token in text.split(","):
        if not token:
            continue
        first, dash, last = token.partition("-")
        if not _is_index(first) or (dash and not _is_index(last)):
            raise MagnetError(f"bad file selection so={text!r}: expected indices like 0,2,4-6")
        start = int(first)
        end = int(last) if dash else start
        if end > MAX_SELECT_INDEX:
            raise MagnetError(f"bad file selection so={text!r}: "
                              f"index above {MAX_SELECT_INDEX}")
        if start > end:
            raise MagnetError(f"bad file selection so={text!r}: range {token} runs backwards")
        covered[start:end + 1] = b"\x01" * (end + 1 - start)


def _is_index(text: str) -> bool:
    return bool(text) and len(text) <= 9 and all("0" <= c <= "9" for c in text)
