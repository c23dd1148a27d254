"""The HTTP tracker protocol as data: announce URLs in, answers out.

What a BitTorrent client says to an HTTP(S) tracker and what it hears back, with no socket, no
thread and no clock, so every rule is tested with plain strings and bytes and the parsers run
under the fuzzer:

- requests: ``build_announce_url`` (the BEP 3 announce parameters, BEP 7 and BEP 23 asked for
  through ``compact``), ``scrape_url`` and ``build_scrape_url`` (BEP 48);
- answers: ``parse_announce_response`` (compact peers of BEP 23, the dictionary model of BEP 3,
  ``peers6`` of BEP 7) and ``parse_scrape_response`` (BEP 48), both raising ``TrackerError``
  with one readable line for a refusal or a malformed answer;
- URLs: ``is_supported_url`` (http, https, and udp with a port), ``is_udp_url`` and
  ``display_url`` (a URL without its passkey, for messages).

``sta.announce`` sends these requests over HTTP(S); UDP trackers (BEP 15) have their own codec,
``sta.udptrackerproto``, and answers of the same ``AnnounceResponse`` shape. ``sta.trackers``
decides which tracker to ask and when.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import struct
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import quote_from_bytes, urlsplit, urlunsplit

from sta.bencode import BencodeError, decode_prefix, kind

__all__ = [
    "TrackerError", "AnnounceResponse", "build_announce_url", "parse_announce_response",
    "scrape_url", "build_scrape_url", "parse_scrape_response", "is_supported_url", "display_url",
    "DEFAULT_NUMWANT", "DEFAULT_INTERVAL", "DEFAULT_TRACKER_PORT", "MAX_MESSAGE_CHARS",
    "compact_peers", "clean_text", "is_udp_url", "check_announce",
]

log = logging.getLogger(__name__)

# Peers asked for when the caller does not say: the number BEP 3-era trackers assume when
# numwant is absent, and far more connection candidates than one torrent can use at once.
DEFAULT_NUMWANT = 50

# Interval used when an answer has peers but no "interval" (BEP 3 makes it mandatory, yet some
# trackers omit it on "stopped"): the 30 minutes most trackers, ours included, hand out.
DEFAULT_INTERVAL = 1800
# The lab's tracker port: a bare host given as a tracker means http://HOST:4000/announce, and
# `sta tracker` listens there unless told otherwise.
DEFAULT_TRACKER_PORT = 4000

# Longest failure reason or warning message kept, in characters: a tracker's text is shown on
# one line of the UI, and a hostile tracker must not be able to flood it.
MAX_MESSAGE_CHARS = 300

# Only these bytes stay unescaped in info_hash, peer_id, key and trackerid: RFC 3986 "unreserved"
# (quote_from_bytes always keeps letters, digits and "_.-~"). libtorrent also leaves "!*()"
# alone (RFC 2396 marks) but escapes "'" because some trackers mishandle it; escaping every other
# byte is what every tracker decodes, so we take the strict set.
_URL_SAFE = ""

_EVENTS = ("started", "completed", "stopped")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?")


class TrackerError(Exception):
    """A tracker could not be reached or gave an unusable or negative answer.

    ``reason`` is the bare problem ("connection refused", "failure reason: unregistered
    torrent"); ``str()`` prefixes the tracker URL when known. ``failure_reason`` holds the
    tracker's own text when it refused the request.
    """

    def __init__(self, reason: str, url: Optional[str] = None,
                 failure_reason: Optional[str] = None) -> None:
        self.reason = reason
        self.url = url
        self.failure_reason = failure_reason
        super().__init__(f"tracker {display_url(url)}: {reason}" if url else reason)

    def for_url(self, url: str) -> "TrackerError":
        """The same error, naming ``url`` (kept when it already names one)."""
        return self if self.url else TrackerError(self.reason, url, self.failure_reason)


def display_url(url: str) -> str:
    """``url`` without user info and query: private trackers put a passkey there, and error
    messages end up in logs and on screens."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return url.split("?", 1)[0]
    return f"{parts.scheme}://{host}{port}{parts.path}"


def is_supported_url(url: str) -> bool:
    """True for the URLs the tracker client speaks: http:// and https:// (``sta.announce``), and
    udp:// with a port (``sta.udpannounce``, BEP 15, which has no default port)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in range
        if parts.scheme == "udp":
            return bool(parts.hostname) and bool(port)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def is_udp_url(url: str) -> bool:
    """True for a udp:// tracker URL (BEP 15): the client dispatches on this."""
    return url[:6].lower() == "udp://"


@dataclass(frozen=True)
class AnnounceResponse:
    """A successful announce answer. ``peers`` holds (host, port) pairs without duplicates: host
    is a dotted IPv4 address, a compressed IPv6 address or a DNS name (dictionary model)."""
    interval: int
    min_interval: Optional[int]
    peers: List[Tuple[str, int]]
    tracker_id: Optional[bytes]
    complete: Optional[int]
    incomplete: Optional[int]
    warning: Optional[str]


def build_announce_url(url: str, *, info_hash: bytes, peer_id: bytes, port: int, uploaded: int,
                       downloaded: int, left: int, event: Optional[str] = None,
                       numwant: int = DEFAULT_NUMWANT, key: Union[int, str, None] = None,
                       tracker_id: Optional[bytes] = None, compact: bool = True) -> str:
    """The announce URL with the BEP 3 parameters appended after any query it already has
    (``http://t/announce?passkey=x`` stays valid). ``key`` as an int is sent as 8 hex digits."""
    check_announce(info_hash, peer_id, port, uploaded, downloaded, left, event)
    params: List[Tuple[str, Union[bytes, str, int]]] = [
        ("info_hash", info_hash), ("peer_id", peer_id), ("port", port),
        ("uploaded", uploaded), ("downloaded", downloaded), ("left", left)]
    if key is not None:
        params.append(("key", "%08X" % (key & 0xFFFFFFFF) if isinstance(key, int) else key))
    if event is not None:
        params.append(("event", event))
    params += [("numwant", numwant), ("compact", 1 if compact else 0), ("no_peer_id", 1)]
    if tracker_id is not None:
        params.append(("trackerid", tracker_id))
    return _append_query(url, params)


def check_announce(info_hash: bytes, peer_id: bytes, port: int, uploaded: int, downloaded: int,
                   left: int, event: Optional[str]) -> None:
    """Raise ValueError for announce values no tracker should see (HTTP or UDP alike)."""
    if len(info_hash) != 20 or len(peer_id) != 20:
        raise ValueError("info_hash and peer_id must be 20 bytes each")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    if min(uploaded, downloaded, left) < 0:
        raise ValueError("uploaded, downloaded and left cannot be negative")
    if event is not None and event not in _EVENTS:
        raise ValueError(f"unknown event {event!r}")


def _append_query(url: str, params: Iterable[Tuple[str, Union[bytes, str, int]]]) -> str:
    parts = urlsplit(url)
    encoded = []
    for name, value in params:
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, str):
            value = value.encode("utf-8")
        encoded.append(f"{name}={quote_from_bytes(value, safe=_URL_SAFE)}")
    query = parts.query.rstrip("&")
    query = "&".join(([query] if query else []) + encoded)
    # The fragment is never sent to a server; dropping it keeps our parameters in the query.
    return urlunsplit(parts._replace(query=query, fragment=""))


def parse_announce_response(body: bytes) -> AnnounceResponse:
    """Parse an announce answer: compact (BEP 23), dictionary model or ``peers6`` (BEP 7).

    Raises TrackerError for "failure reason" (the tracker's text in ``failure_reason``) and for
    any malformed answer, naming the problem.
    """
    top = _decode_dict(body)
    _raise_failure(top)
    interval = _opt_int(top, b"interval", minimum=0)
    peers: List[Tuple[str, int]] = []
    raw_peers = top.get(b"peers")
    if isinstance(raw_peers, bytes):
        peers += compact_peers(raw_peers, 4)
    elif isinstance(raw_peers, list):
        peers += _dictionary_peers(raw_peers)
    elif raw_peers is not None:
        raise TrackerError(f"'peers' is a {kind(raw_peers)}, not a string or a list")
    raw_peers6 = top.get(b"peers6")
    if isinstance(raw_peers6, bytes):
        peers += compact_peers(raw_peers6, 16)
    elif raw_peers6 is not None:
        raise TrackerError(f"'peers6' is a {kind(raw_peers6)}, not a string")
    tracker_id = top.get(b"tracker id")
    if tracker_id is not None and not isinstance(tracker_id, bytes):
        raise TrackerError(f"'tracker id' is a {kind(tracker_id)}, not a string")
    warning = top.get(b"warning message")
    if warning is not None and not isinstance(warning, bytes):
        raise TrackerError(f"'warning message' is a {kind(warning)}, not a string")
    return AnnounceResponse(
        interval=DEFAULT_INTERVAL if interval is None else interval,
        min_interval=_opt_int(top, b"min interval", minimum=0),
        peers=list(dict.fromkeys(peers)),
        tracker_id=tracker_id,
        complete=_opt_int(top, b"complete", minimum=0),
        incomplete=_opt_int(top, b"incomplete", minimum=0),
        warning=None if warning is None else clean_text(warning))


def parse_scrape_response(body: bytes) -> Dict[bytes, Tuple[int, int, int]]:
    """Parse a scrape answer (BEP 48) into {info_hash: (complete, incomplete, downloaded)}.
    Entries whose key is not a 20-byte info hash are skipped; missing counts read as 0."""
    top = _decode_dict(body)
    _raise_failure(top)
    files = top.get(b"files", {})
    if not isinstance(files, dict):
        raise TrackerError(f"'files' is a {kind(files)}, not a dictionary")
    result = {}
    for info_hash, entry in files.items():
        if len(info_hash) != 20:
            log.debug("scrape answer: skipping a key of %d bytes", len(info_hash))
            continue
        if not isinstance(entry, dict):
            raise TrackerError(f"scrape entry is a {kind(entry)}, not a dictionary")
        counts = tuple(_opt_int(entry, name, minimum=0) or 0
                       for name in (b"complete", b"incomplete", b"downloaded"))
        result[info_hash] = counts
    return result  # type: ignore[return-value]


def scrape_url(announce_url: str) -> Optional[str]:
    """The BEP 48 scrape URL: the last path component must start with "announce", which becomes
    "scrape" (``/x/announce.php?k=1`` -> ``/x/scrape.php?k=1``). None when there is none."""
    try:
        parts = urlsplit(announce_url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    head, _, last = parts.path.rpartition("/")
    if not last.startswith("announce"):
        return None
    path = f"{head}/scrape{last[len('announce'):]}"
    return urlunsplit(parts._replace(path=path, fragment=""))


def build_scrape_url(url: str, info_hashes: Iterable[bytes]) -> str:
    """The scrape request for ``info_hashes`` at the scrape URL ``url`` (from ``scrape_url``):
    one ``info_hash`` parameter per hash, after any query the URL already has (BEP 48)."""
    return _append_query(url, [("info_hash", info_hash) for info_hash in info_hashes])


def _decode_dict(body: bytes) -> dict:
    try:
        value, end = decode_prefix(body, sorted_keys=False)  # as libtorrent accepts them
    except BencodeError as exc:
        raise TrackerError(f"answer is not bencoded ({exc}){_preview(body)}") from None
    # Some trackers end the body with a newline; anything else after the value is garbage.
    if body[end:].strip():
        raise TrackerError(f"answer has {len(body) - end} bytes of garbage after the value")
    if not isinstance(value, dict):
        raise TrackerError(f"answer is a bencoded {kind(value)}, not a dictionary")
    return value


def _raise_failure(top: dict) -> None:
    failure = top.get(b"failure reason")
    if failure is None:
        return
    text = clean_text(failure) if isinstance(failure, bytes) else repr(failure)
    raise TrackerError(f"failure reason: {text}", failure_reason=text)


def _opt_int(top: dict, key: bytes, minimum: int) -> Optional[int]:
    value = top.get(key)
    if value is None:
        return None
    if not isinstance(value, int):
        raise TrackerError(f"'{key.decode()}' is a {kind(value)}, not an integer")
    if value < minimum:
        raise TrackerError(f"'{key.decode()}' is {value}, below {minimum}")
    return value


def compact_peers(data: bytes, address_size: int) -> List[Tuple[str, int]]:
    """Compact peer entries (BEP 23 and BEP 7; BEP 15 answers too): ``address_size`` bytes of
    address and 2 of port each. Port 0 and unspecified addresses are dropped."""
    entry = address_size + 2
    if len(data) % entry:
        name = "peers" if address_size == 4 else "peers6"
        raise TrackerError(f"compact '{name}' of {len(data)} bytes is not a multiple of {entry}")
    peers = []
    for address, port in struct.iter_unpack(f">{address_size}sH", data):
        ip = ipaddress.ip_address(address)
        host = _normalise_ip(ip)
        if port and host:
            peers.append((host, port))
    return peers


def _dictionary_peers(entries: list) -> List[Tuple[str, int]]:
    peers = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise TrackerError(f"peer entry is a {kind(entry)}, not a dictionary")
        raw_ip, port = entry.get(b"ip"), entry.get(b"port")
        if not isinstance(raw_ip, bytes):
            raise TrackerError(f"peer 'ip' is a {kind(raw_ip)}, not a string")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise TrackerError(f"peer 'port' {port!r} is not a port number")
        host = _parse_host(raw_ip)
        if port and host:
            peers.append((host, port))
    return peers


def _parse_host(raw: bytes) -> Optional[str]:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise TrackerError(f"peer address {raw[:64]!r} is not ASCII") from None
    try:
        return _normalise_ip(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if _HOSTNAME_RE.fullmatch(text):
        return text
    raise TrackerError(f"peer address {text[:64]!r} is neither an IP address nor a host name")


def _normalise_ip(ip: Union[ipaddress.IPv4Address, ipaddress.IPv6Address]) -> Optional[str]:
    # An IPv4-mapped IPv6 address is the same peer as its IPv4 form; 0.0.0.0 and :: are
    # nobody's address, so, like port 0, they are dropped.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return None if ip.is_unspecified else str(ip)


def clean_text(raw: bytes) -> str:
    """A tracker's message as one printable line of at most MAX_MESSAGE_CHARS characters."""
    text = raw[:MAX_MESSAGE_CHARS * 4].decode("utf-8", "replace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 3] + "..."


def _preview(body: bytes) -> str:
    text = clean_text(body[:60])
    return f"; it starts with {text!r}" if text else ""
