"""The tracker client: HTTP(S) announce and scrape (BEP 3, 7, 23, 48).

Two layers, so that most of it is tested with plain bytes:

- pure functions: ``build_announce_url``, ``parse_announce_response``, ``scrape_url``,
  ``parse_scrape_response``, ``display_url``, ``is_supported_url``;
- blocking I/O: ``announce()`` and ``scrape()`` through ``sta.httpget`` (http.client, not
  urllib, so that TLS verification and certificate pinning stay under our control), with
  ``make_ssl_context`` for https trackers. The engine runs them in an executor thread.

Which tracker to ask and when (BEP 12 tiers, intervals, backoff, events) is ``sta.trackers``,
which builds on this module. Only http:// and https:// trackers are spoken: UDP trackers
(BEP 15) are refused by ``announce()`` with a message saying so.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import ssl
import struct
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote_from_bytes, urlsplit, urlunsplit

from sta import httpget
from sta.bencode import BencodeError, decode_prefix

__all__ = [
    "TrackerError", "AnnounceResponse", "announce", "scrape", "build_announce_url",
    "parse_announce_response", "scrape_url", "parse_scrape_response", "make_ssl_context",
    "is_supported_url", "display_url", "CertificatePinError",
]

log = logging.getLogger(__name__)

# Seconds allowed for one HTTP exchange (connect, request, whole answer) to one URL. A tracker on
# a LAN answers in milliseconds and a loaded public one in a few seconds; 15 s still leaves time
# to fail over to the next tracker of a tier long before the swarm notices.
DEFAULT_TIMEOUT = 15.0

# Largest answer body read. libtorrent's default tracker_maximum_response_length is 1 MiB too:
# 200 peers in the dictionary model take about 20 KB, so an honest tracker never gets close, and
# the bound stops a hostile or broken one from filling our memory.
MAX_RESPONSE_SIZE = 1 << 20

# Redirects followed for one request: room for http -> https plus a load balancer hop or two
# (libtorrent's HTTP client also stops after 5), and a redirect loop ends quickly.
MAX_REDIRECTS = 5

# Peers asked for when the caller does not say: the number BEP 3-era trackers assume when
# numwant is absent, and far more connection candidates than one torrent can use at once.
DEFAULT_NUMWANT = 50

# Interval used when an answer has peers but no "interval" (BEP 3 makes it mandatory, yet some
# trackers omit it on "stopped"): the 30 minutes most trackers, ours included, hand out.
DEFAULT_INTERVAL = 1800

# Info hashes per scrape request: each adds about 72 characters to the URL, and 50 keep the
# request line near 4 KB, under the 8 KB most HTTP servers accept. Longer lists are split.
MAX_SCRAPE_HASHES = 50

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
    """True for the http:// and https:// URLs this module can announce to."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a port that is not a number in range
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Requests and answers (pure)

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
    if len(info_hash) != 20 or len(peer_id) != 20:
        raise ValueError("info_hash and peer_id must be 20 bytes each")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    if min(uploaded, downloaded, left) < 0:
        raise ValueError("uploaded, downloaded and left cannot be negative")
    if event is not None and event not in _EVENTS:
        raise ValueError(f"unknown event {event!r}")
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
        peers += _compact_peers(raw_peers, 4)
    elif isinstance(raw_peers, list):
        peers += _dictionary_peers(raw_peers)
    elif raw_peers is not None:
        raise TrackerError(f"'peers' is a {_kind(raw_peers)}, not a string or a list")
    raw_peers6 = top.get(b"peers6")
    if isinstance(raw_peers6, bytes):
        peers += _compact_peers(raw_peers6, 16)
    elif raw_peers6 is not None:
        raise TrackerError(f"'peers6' is a {_kind(raw_peers6)}, not a string")
    tracker_id = top.get(b"tracker id")
    if tracker_id is not None and not isinstance(tracker_id, bytes):
        raise TrackerError(f"'tracker id' is a {_kind(tracker_id)}, not a string")
    warning = top.get(b"warning message")
    if warning is not None and not isinstance(warning, bytes):
        raise TrackerError(f"'warning message' is a {_kind(warning)}, not a string")
    return AnnounceResponse(
        interval=DEFAULT_INTERVAL if interval is None else interval,
        min_interval=_opt_int(top, b"min interval", minimum=0),
        peers=list(dict.fromkeys(peers)),
        tracker_id=tracker_id,
        complete=_opt_int(top, b"complete", minimum=0),
        incomplete=_opt_int(top, b"incomplete", minimum=0),
        warning=None if warning is None else _clean_text(warning))


def parse_scrape_response(body: bytes) -> Dict[bytes, Tuple[int, int, int]]:
    """Parse a scrape answer (BEP 48) into {info_hash: (complete, incomplete, downloaded)}.
    Entries whose key is not a 20-byte info hash are skipped; missing counts read as 0."""
    top = _decode_dict(body)
    _raise_failure(top)
    files = top.get(b"files", {})
    if not isinstance(files, dict):
        raise TrackerError(f"'files' is a {_kind(files)}, not a dictionary")
    result = {}
    for info_hash, entry in files.items():
        if len(info_hash) != 20:
            log.debug("scrape answer: skipping a key of %d bytes", len(info_hash))
            continue
        if not isinstance(entry, dict):
            raise TrackerError(f"scrape entry is a {_kind(entry)}, not a dictionary")
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


def _decode_dict(body: bytes) -> dict:
    try:
        value, end = decode_prefix(body, sorted_keys=False)  # as libtorrent accepts them
    except BencodeError as exc:
        raise TrackerError(f"answer is not bencoded ({exc}){_preview(body)}") from None
    # Some trackers end the body with a newline; anything else after the value is garbage.
    if body[end:].strip():
        raise TrackerError(f"answer has {len(body) - end} bytes of garbage after the value")
    if not isinstance(value, dict):
        raise TrackerError(f"answer is a bencoded {_kind(value)}, not a dictionary")
    return value


def _raise_failure(top: dict) -> None:
    failure = top.get(b"failure reason")
    if failure is None:
        return
    text = _clean_text(failure) if isinstance(failure, bytes) else repr(failure)
    raise TrackerError(f"failure reason: {text}", failure_reason=text)


def _opt_int(top: dict, key: bytes, minimum: int) -> Optional[int]:
    value = top.get(key)
    if value is None:
        return None
    if not isinstance(value, int):
        raise TrackerError(f"'{key.decode()}' is a {_kind(value)}, not an integer")
    if value < minimum:
        raise TrackerError(f"'{key.decode()}' is {value}, below {minimum}")
    return value


def _compact_peers(data: bytes, address_size: int) -> List[Tuple[str, int]]:
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
            raise TrackerError(f"peer entry is a {_kind(entry)}, not a dictionary")
        raw_ip, port = entry.get(b"ip"), entry.get(b"port")
        if not isinstance(raw_ip, bytes):
            raise TrackerError(f"peer 'ip' is a {_kind(raw_ip)}, not a string")
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


def _clean_text(raw: bytes) -> str:
    text = raw[:MAX_MESSAGE_CHARS * 4].decode("utf-8", "replace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 3] + "..."


def _preview(body: bytes) -> str:
    text = _clean_text(body[:60])
    return f"; it starts with {text!r}" if text else ""


def _kind(value: object) -> str:
    return {bytes: "string", int: "integer", list: "list", dict: "dictionary"}.get(
        type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------------
# HTTP(S) exchanges (blocking)

def announce(url: str, *, info_hash: bytes, peer_id: bytes, port: int, uploaded: int,
             downloaded: int, left: int, event: Optional[str] = None,
             numwant: int = DEFAULT_NUMWANT, key: Union[int, str, None] = None,
             tracker_id: Optional[bytes] = None, compact: bool = True,
             timeout: float = DEFAULT_TIMEOUT,
             ssl_context: Optional[ssl.SSLContext] = None) -> AnnounceResponse:
    """Announce to one tracker and return its answer; blocking (run it in an executor).

    ``uploaded``, ``downloaded`` and ``left`` are this session's true byte counts. ``event`` is
    "started", "completed", "stopped" or None for a regular announce. ``ssl_context`` applies
    to https URLs (default: system CAs, hostname checked); see ``make_ssl_context``.
    Raises TrackerError with a one-line message naming the tracker.
    """
    target = build_announce_url(
        url, info_hash=info_hash, peer_id=peer_id, port=port, uploaded=uploaded,
        downloaded=downloaded, left=left, event=event, numwant=numwant, key=key,
        tracker_id=tracker_id, compact=compact)
    body = _fetch(url, target, timeout, ssl_context)
    try:
        return parse_announce_response(body)
    except TrackerError as exc:
        raise exc.for_url(url) from None


def scrape(url: str, info_hashes: Sequence[bytes], *, timeout: float = DEFAULT_TIMEOUT,
           ssl_context: Optional[ssl.SSLContext] = None) -> Dict[bytes, Tuple[int, int, int]]:
    """Scrape (BEP 48) the scrape URL ``url`` (derive it with ``scrape_url``) for the given info
    hashes: {info_hash: (complete, incomplete, downloaded)}. Blocking; raises TrackerError."""
    result: Dict[bytes, Tuple[int, int, int]] = {}
    hashes = list(info_hashes)
    for start in range(0, len(hashes), MAX_SCRAPE_HASHES):
        batch = hashes[start:start + MAX_SCRAPE_HASHES]
        target = _append_query(url, [("info_hash", h) for h in batch])
        body = _fetch(url, target, timeout, ssl_context)
        try:
            result.update(parse_scrape_response(body))
        except TrackerError as exc:
            raise exc.for_url(url) from None
    return result


def _fetch(url: str, target: str, timeout: float, ssl_context: Optional[ssl.SSLContext]) -> bytes:
    """GET ``target`` following redirects; the body of a 200 answer. Errors name ``url``."""
    try:
        return httpget.get(target, timeout=timeout, max_size=MAX_RESPONSE_SIZE,
                           max_redirects=MAX_REDIRECTS, ssl_context=ssl_context)
    except httpget.HTTPGetError as exc:
        raise TrackerError(_describe(exc), url) from None


def _describe(exc: httpget.HTTPGetError) -> str:
    """A failed GET in a tracker's words."""
    if exc.kind == httpget.STATUS:
        message = exc.reason
        try:
            parse_announce_response(exc.body)
        except TrackerError as answer:
            if answer.failure_reason is not None:
                message += f": {answer.reason}"
        return message
    if exc.kind == httpget.REDIRECT and exc.from_https:
        # Following would send the passkey and our statistics in clear text.
        return "refusing a redirect from https to plain http"
    if exc.kind in (httpget.SCHEME, httpget.REDIRECT):
        return (f"unsupported scheme '{exc.scheme}' (only http and https trackers are "
                "supported)")
    if isinstance(exc.cause, CertificatePinError):
        return str(exc.cause)
    if isinstance(exc.cause, ssl.SSLCertVerificationError):
        return (f"certificate not trusted ({exc.cause.verify_message}); to use a lab's own "
                "certificate give its file as cafile or pin its SHA-256 fingerprint")
    if isinstance(exc.cause, ConnectionResetError):
        return "connection reset by the tracker"
    return exc.reason


# ---------------------------------------------------------------------------------------------
# TLS

class CertificatePinError(ssl.SSLError):
    """The server's certificate does not have the pinned SHA-256 fingerprint."""


class _PinnedContext(ssl.SSLContext):
    """A client context that trusts exactly one certificate, by fingerprint.

    The check runs in wrap_socket right after the handshake, so every blocking user of the
    context (http.client in sta.httpget) gets it, and the socket is closed before a byte is
    sent. asyncio wraps with wrap_bio instead: a caller using this context there must check the
    fingerprint of ``get_extra_info("ssl_object").getpeercert(True)`` itself.
    """
    pin_sha256 = b""

    def wrap_socket(self, *args, **kwargs):  # type: ignore[override]
        sock = super().wrap_socket(*args, **kwargs)
        handshaken = kwargs.get("do_handshake_on_connect", args[2] if len(args) > 2 else True)
        if handshaken:
            der = sock.getpeercert(binary_form=True) or b""
            seen = hashlib.sha256(der).digest()
            if seen != self.pin_sha256:
                sock.close()
                raise CertificatePinError(
                    f"certificate fingerprint {seen.hex()} does not match the pinned "
                    f"{self.pin_sha256.hex()}")
        return sock


def make_ssl_context(cafile: Optional[str] = None,
                     pin_sha256: Optional[str] = None) -> ssl.SSLContext:
    """A client TLS context for https trackers.

    - neither argument: the system's CAs, with hostname checks (same as the default);
    - ``cafile``: trust the certificate(s) in that PEM file instead of the system CAs, hostname
      still checked. A lab's self-signed certificate works as its own CA, provided its
      subjectAltName lists the name or IP address used in the tracker URL (for
      ``https://192.168.88.114:4000/announce`` it needs ``IP:192.168.88.114``);
    - ``pin_sha256``: the hex SHA-256 fingerprint of the server's DER certificate (colons and
      case ignored, as ``openssl x509 -fingerprint -sha256`` prints it). CA and hostname checks
      are off; the connection is accepted only if the fingerprint matches.
    """
    if pin_sha256 is not None:
        if cafile is not None:
            raise TrackerError("give either a CA file or a certificate pin, not both")
        digits = re.sub(r"[\s:]", "", pin_sha256).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digits):
            raise TrackerError("certificate pin must be 64 hex digits (a SHA-256 fingerprint), "
                               f"got {pin_sha256!r}")
        context = _PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.pin_sha256 = bytes.fromhex(digits)
        return context
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise TrackerError(f"cannot load CA file {cafile!r}: {exc}") from None
    if cafile is not None:
        # Python 3.13 turns on strict X.509 checks by default; self-made lab certificates often
        # lack the extensions they demand, and the file is trusted explicitly anyway.
        context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    return context
