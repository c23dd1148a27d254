"""The tracker client: HTTP(S) announce and scrape, blocking.

``announce()`` and ``scrape()`` send the requests ``sta.trackerproto`` builds and hand the answers
to its parsers. They go through ``sta.httpget`` (http.client, not urllib, so that TLS verification
and certificate pinning stay under our control), with ``make_ssl_context`` for https trackers.
The engine runs them in an executor thread.

Which tracker to ask and when (BEP 12 tiers, intervals, backoff, events) is ``sta.trackers``.
Only http:// and https:// trackers are spoken: UDP trackers (BEP 15) are refused by
``announce()`` with a message saying so.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from typing import Dict, Optional, Sequence, Tuple, Union

from sta import httpget
from sta.trackerproto import (DEFAULT_NUMWANT, AnnounceResponse, TrackerError, build_announce_url,
                              build_scrape_url, parse_announce_response, parse_scrape_response)

__all__ = ["announce", "scrape", "make_ssl_context", "CertificatePinError"]

# Seconds allowed for one HTTP exchange (connect, request, whole answer) to one URL. A tracker on
# a LAN answers in milliseconds and a loaded public one in a few seconds; 15 s still leaves time
# to fail over to the next tracker of a tier long before the swarm notices.
DEFAULT_TIMEOUT = 15.0

# Largest answer body read. libtorrent's default tracker_maximum_response_length is 1 MiB too:
# 200 peers in the dictionary model take about 20 KB, so an honest tracker never gets close, and
# the bound stops a hostile or broken one from filling our memory.
MAX_RESPONSE_SIZE = 1 << 20

# Info hashes per scrape request: each adds about 72 characters to the URL, and 50 keep the
# request line near 4 KB, under the 8 KB most HTTP servers accept. Longer lists are split.
MAX_SCRAPE_HASHES = 50


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
        target = build_scrape_url(url, batch)
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
                           max_redirects=httpget.DEFAULT_MAX_REDIRECTS, ssl_context=ssl_context)
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
