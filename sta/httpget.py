"""A bounded HTTP(S) GET for small documents: tracker answers and hosted .torrent files.

``get()`` follows redirects up to a bound, never leaves https for plain http (that would send a
passkey in clear text), keeps to a time limit and a size cap, and returns the body of a 200
answer. Every failure is an ``HTTPGetError`` whose ``reason`` is one readable line; what a status
code means (a tracker's "failure reason" in an error page, a hosted file's "no such torrent")
stays with the caller, which gets the status, phrase and body of the answer.

It runs on http.client rather than urllib so that TLS stays under the caller's control: the
``ssl_context`` given goes straight to ``HTTPSConnection``, whose ``connect()`` calls the
context's ``wrap_socket``. That is where the pinning context of ``announce.make_ssl_context``
checks the certificate's fingerprint, so a wrong certificate ends the connection before the
request (with its passkey) is sent. Blocking: callers run it in an executor thread.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from typing import List, Optional, Tuple
from urllib.parse import urljoin, urlsplit

from sta import __version__

__all__ = [
    "HTTPGetError", "get", "USER_AGENT", "DEFAULT_MAX_REDIRECTS",
    "BAD_URL", "SCHEME", "REDIRECT", "REDIRECTS", "STATUS", "TOO_LARGE", "CUT_SHORT", "TIMEOUT",
    "NETWORK",
]

# Redirects a caller follows for one document: room for http -> https plus a load balancer hop or
# two (libtorrent's HTTP client also stops after 5), and a redirect loop ends quickly.
DEFAULT_MAX_REDIRECTS = 5

# Most bytes taken by one read1() call (one receive at most): it bounds one allocation, while
# max_size bounds the body; 64 KiB is a socket buffer's worth.
READ_CHUNK = 65536

USER_AGENT = "STA/" + __version__

_REDIRECT_STATUSES = (301, 302, 303, 307, 308)

# HTTPGetError.kind: what went wrong, for callers that word some failures their own way.
BAD_URL = "bad URL"             # unparsable, no host, or characters http.client refuses
SCHEME = "scheme"               # the URL given is not http or https (.scheme)
REDIRECT = "redirect"           # a redirect refused: to a scheme other than http or https, or
                                # from https to http (.scheme, .from_https)
REDIRECTS = "redirects"         # more redirects than allowed
STATUS = "status"               # an answer other than 200 (.status, .phrase, .body)
TOO_LARGE = "too large"         # over the size cap (.size: the announced length, if any; .limit)
CUT_SHORT = "cut short"         # the connection ended before Content-Length bytes came
TIMEOUT = "timeout"             # the time limit passed
NETWORK = "network"             # any other socket, TLS or HTTP failure (.cause)


class HTTPGetError(Exception):
    """A GET failed. ``str()`` is ``reason``, one line that does not name the URL (callers name
    it their own way, without a passkey). ``kind`` is one of the constants above; the other
    attributes hold the details that kind has, None or empty otherwise."""

    def __init__(self, reason: str, kind: str, *, scheme: Optional[str] = None,
                 from_https: bool = False, status: Optional[int] = None, phrase: str = "",
                 body: bytes = b"", size: Optional[int] = None, limit: Optional[int] = None,
                 cause: Optional[BaseException] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.scheme = scheme
        self.from_https = from_https
        self.status = status
        self.phrase = phrase
        self.body = body
        self.size = size
        self.limit = limit
        self.cause = cause


def get(url: str, *, timeout: float, max_size: int, max_redirects: int,
        deadline: Optional[float] = None, ssl_context: Optional[ssl.SSLContext] = None,
        accept: Optional[str] = None) -> bytes:
    """GET ``url`` and return the body of its 200 answer, following up to ``max_redirects``
    redirects.

    ``timeout`` bounds each request (connect, send, whole answer: a server dripping bytes still
    meets it); ``deadline``, a ``time.monotonic()`` value, also bounds the whole GET, redirects
    included. ``max_size`` caps the body. ``ssl_context`` applies to https URLs (default: the
    system's CAs, hostname checked). ``accept`` is sent as the Accept header. Raises
    HTTPGetError.
    """
    target = url
    for _ in range(max_redirects + 1):
        status, phrase, location, body = _get_once(target, timeout, deadline, max_size,
                                                   ssl_context, accept)
        if status in _REDIRECT_STATUSES and location:
            target = _redirect_target(target, location)
            continue
        if status != 200:
            raise HTTPGetError(f"HTTP {status} {phrase}".rstrip(), STATUS, status=status,
                               phrase=phrase, body=body)
        return body
    raise HTTPGetError(f"more than {max_redirects} redirects", REDIRECTS)


def _redirect_target(target: str, location: str) -> str:
    try:
        new_target = urljoin(target, location)
        scheme = urlsplit(new_target).scheme
    except ValueError as exc:
        raise HTTPGetError(f"bad URL ({exc})", BAD_URL) from None
    from_https = urlsplit(target).scheme == "https"
    if scheme not in ("http", "https"):
        raise HTTPGetError(f"redirected to a {scheme or 'relative'} URL; only http and https "
                           "are followed", REDIRECT, scheme=scheme, from_https=from_https)
    if from_https and scheme != "https":
        raise HTTPGetError("refusing a redirect from https to plain http", REDIRECT,
                           scheme=scheme, from_https=True)
    return new_target


def _get_once(target: str, timeout: float, deadline: Optional[float], max_size: int,
              ssl_context: Optional[ssl.SSLContext], accept: Optional[str]
              ) -> Tuple[int, str, Optional[str], bytes]:
    """One request: (status, phrase, Location header, body)."""
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError as exc:
        raise HTTPGetError(f"bad URL ({exc})", BAD_URL) from None
    if parts.scheme not in ("http", "https"):
        raise HTTPGetError(f"unsupported scheme '{parts.scheme}' (only http and https are "
                           "supported)", SCHEME, scheme=parts.scheme)
    if not parts.hostname:
        raise HTTPGetError("URL has no host", BAD_URL)
    now = time.monotonic()
    remaining = timeout if deadline is None else min(timeout, deadline - now)
    if remaining <= 0:
        raise HTTPGetError(f"timed out after {timeout:g} s", TIMEOUT)
    request_deadline = now + remaining
    conn: Optional[http.client.HTTPConnection] = None
    resp: Optional[http.client.HTTPResponse] = None
    try:
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname, port, timeout=remaining,
                context=ssl_context or ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=remaining)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.putrequest("GET", path)
        conn.putheader("User-Agent", USER_AGENT)
        if accept is not None:
            conn.putheader("Accept", accept)
        conn.putheader("Connection", "close")
        conn.endheaders()
        _set_remaining(conn, request_deadline)
        resp = conn.getresponse()
        body = _read_body(conn, resp, request_deadline, max_size)
        return resp.status, resp.reason, resp.getheader("Location"), body
    except HTTPGetError:
        raise
    except socket.timeout:
        raise HTTPGetError(f"timed out after {timeout:g} s", TIMEOUT) from None
    except http.client.InvalidURL as exc:  # characters http.client refuses to send
        raise HTTPGetError(f"bad URL ({exc})", BAD_URL, cause=exc) from None
    except (OSError, http.client.HTTPException) as exc:
        raise HTTPGetError(_describe(exc, parts.hostname), NETWORK, cause=exc) from None
    except ValueError as exc:
        # Characters the request line cannot be encoded with (non-ASCII). Caught after OSError
        # because ssl.SSLCertVerificationError is a ValueError too.
        raise HTTPGetError(f"bad URL ({exc})", BAD_URL, cause=exc) from None
    finally:
        if resp is not None:
            resp.close()  # its file object holds the socket open until closed
        if conn is not None:
            conn.close()


def _read_body(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
               deadline: float, max_size: int) -> bytes:
    """The answer's body, within the deadline and the size limit."""
    if resp.length is not None and resp.length > max_size:
        raise HTTPGetError(f"answer of {resp.length} bytes exceeds the {max_size}-byte "
                           "limit", TOO_LARGE, size=resp.length, limit=max_size)
    chunks: List[bytes] = []
    size = 0
    while True:
        _set_remaining(conn, deadline)
        # read1: one receive per call, so a server dripping bytes still meets the deadline.
        chunk = resp.read1(min(READ_CHUNK, max_size + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_size:
            raise HTTPGetError(f"answer exceeds the {max_size}-byte limit", TOO_LARGE,
                               limit=max_size)
    if resp.length:
        raise HTTPGetError(f"answer cut short, {resp.length} bytes missing", CUT_SHORT)
    return b"".join(chunks)


def _set_remaining(conn: http.client.HTTPConnection, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("timed out")
    if conn.sock is not None:
        conn.sock.settimeout(remaining)


def _describe(exc: BaseException, host: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name '{host}'"
    if isinstance(exc, ssl.SSLError):
        # An SSLError made in Python (a pinning context's) has no reason attribute.
        return f"TLS error: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP answer ({type(exc).__name__}: {exc})"
    return exc.strerror or str(exc) or type(exc).__name__  # type: ignore[union-attr]
