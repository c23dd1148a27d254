"""HTTP/1.1 front end of the tracker: an http.server subclass tuned for announces.

BaseHTTPRequestHandler parses headers through the email package, which costs more than a whole
announce; this handler reads the request line and the few headers the tracker needs itself,
keeps connections alive (HTTP/1.1, Content-Length always set) so a client's announces share one
connection, bounds every part of a request, and hands (method, target, body, client address,
Host) to the application object (``sta.tracker.Tracker``) the server was given.

Every connection is one thread, admitted through ``tracker_conns.ConnectionTable`` before its
thread starts (and before any TLS handshake): the table bounds connections in all and per
address and gives each a whole-request deadline, which the accept loop enforces by closing
connections that pass it. Threads are bounded by MAX_THREADS whatever clients do.
"""

from __future__ import annotations

import email.utils
import http.server
import logging
import socket
import ssl
import threading
import time
from typing import Any, Optional, Tuple

from sta.tracker_conns import (IDLE_TIMEOUT, MAX_CONNECTIONS, BodyBudget, ConnectionSlot,
                               ConnectionTable)
from sta.tracker_limits import address_group

__all__ = ["TrackerHTTPServer", "TrackerRequestHandler", "normalise_ip", "MAX_REQUEST_LINE",
           "MAX_HEADER_BYTES", "MAX_HEADER_COUNT", "MAX_TORRENT_BYTES", "MAX_BODY_BYTES_HELD",
           "MAX_THREADS"]

log = logging.getLogger(__name__)

# Request size limits. An announce URL is under 400 bytes; 8 KiB is the request-line limit of
# Apache and nginx's default large buffer, and 16 KiB of headers (Apache's 100 x 8 KiB is far
# more than any tracker client sends) still leaves room for proxies.
MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 16384
MAX_HEADER_COUNT = 64

# The largest .torrent (request body) accepted by POST /torrents: libtorrent refuses to load
# .torrent files over 10 MB by default (load_torrent_limits), so no client could use a bigger one;
# that is also about 500,000 pieces, far more than any torrent made with a sensible piece size.
MAX_TORRENT_BYTES = 10_000_000

# Request bodies held in memory at once over all connections (a few uploads of the largest
# size); an upload past it is told to try again before its body is read.
MAX_BODY_BYTES_HELD = 4 * MAX_TORRENT_BYTES

# One read of a TLS handshake; the whole handshake is within the connection's request deadline
# (tracker_conns.REQUEST_TIMEOUT).
TLS_HANDSHAKE_TIMEOUT = 10.0

# After an error answer, input still arriving is read and dropped for at most this long and
# this many bytes before the connection is closed (see _linger).
LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024

# Pending connections the kernel queues before accept() (capped by net.core.somaxconn).
LISTEN_BACKLOG = 1024

# Threads serving connections: every admitted connection, plus connections closed to make
# room or for passing their deadline whose threads have not yet noticed (they do within
# milliseconds). Past this, new connections get 503 at once, from the accept loop.
MAX_THREADS = MAX_CONNECTIONS + 100

# How often the accept loop closes connections past their deadline.
REAP_INTERVAL = 0.5

_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n"
            b"\r\n")


def normalise_ip(text: str) -> str:
    """A client address as peers should see it (IPv4-mapped IPv6 back to IPv4, no zone)."""
    if text.startswith("::ffff:") and "." in text:
        return text[7:]
    return text.split("%", 1)[0]


class _ReplyAndClose(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TrackerRequestHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, parsing only the headers the tracker uses."""

    protocol_version = "HTTP/1.1"
    server_version = "STA-tracker"
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True
    server: "TrackerHTTPServer"

    # Set by the server for each connection; None when a test drives the handler by hand.
    slot: Optional[ConnectionSlot] = None
    bodies: Optional[BodyBudget] = None
    _held = 0  # bytes of bodies this connection holds in ``bodies``

    def __init__(self, request: Any, client_address: Any, server: Any,
                 slot: Optional[ConnectionSlot] = None) -> None:
        self.slot = slot
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.client_ip = normalise_ip(self.client_address[0])
        self.bodies = self.server.bodies

    def handle_one_request(self) -> None:
        self.close_connection = True
        try:
            request = self._read_request()
            if request is not None:
                self._answer(*request)
        except _ReplyAndClose as exc:
            self._send(exc.status, "text/plain; charset=utf-8", (str(exc) + "\n").encode(),
                       False)
            self._linger()
        except (OSError, ValueError):  # timeout, reset, or the server closing the socket
            pass
        finally:
            if self._held:
                self.bodies.release(self._held)
                self._held = 0

    def _answer(self, method: bytes, target: bytes, body: bytes, host: bytes,
                keep_alive: bool) -> None:
        slot = self.slot
        if slot is not None:
            slot.answering(time.monotonic())
        app = self.server.app
        try:
            if method == b"GET" and target.startswith(b"/announce?"):
                status, ctype, payload = 200, "text/plain", app.announce(target[10:],
                                                                         self.client_ip)
            else:
                status, ctype, payload = app.handle(method, target, body, self.client_ip, host)
        except Exception:  # a bug: log it, answer 500, keep serving everyone else
            log.exception("error answering %s %r", method, target[:200])
            self._send(500, "text/plain; charset=utf-8", b"internal error\n", False)
            return
        if method == b"HEAD":
            self._send(status, ctype, b"", keep_alive, len(payload))
        else:
            self._send(status, ctype, payload, keep_alive)
        self.close_connection = not keep_alive
        if slot is not None and keep_alive:
            slot.wait_for_request(time.monotonic())

    def _read_request(self) -> Optional[Tuple[bytes, bytes, bytes, bytes, bool]]:
        rfile = self.rfile
        line = rfile.readline(MAX_REQUEST_LINE + 1)
        if not line:
            return None
        self.raw_requestline = line
        if len(line) > MAX_REQUEST_LINE:
            raise _ReplyAndClose(414, "request line too long")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or parts[1][:1] != b"/":
            raise _ReplyAndClose(400, "malformed request line")
        method, target, version = parts
        self.command = method.decode("latin-1")
        self.path = target.decode("latin-1")
        self.request_version = version.decode("latin-1")
        length = 0
        connection = b""
        host = b""
        total = 0
        for _ in range(MAX_HEADER_COUNT):
            header = rfile.readline(MAX_HEADER_BYTES + 1)
            total += len(header)
            if total > MAX_HEADER_BYTES:
                raise _ReplyAndClose(431, "request headers too large")
            if header == b"\r\n" or header == b"\n":
                break
            if not header:
                return None
            name, sep, value = header.partition(b":")
            if not sep:
                raise _ReplyAndClose(400, "malformed header line")
            name = name.strip().lower()
            if name == b"content-length":
                value = value.strip()
                if not value.isdigit() or len(value) > 12:
                    raise _ReplyAndClose(400, "bad Content-Length")
                length = int(value)
                if length > MAX_TORRENT_BYTES:
                    raise _ReplyAndClose(413, "request body too large")
            elif name == b"connection":
                connection = value.strip().lower()
            elif name == b"host":
                host = value.strip()
            elif name == b"transfer-encoding":
                raise _ReplyAndClose(411, "send the body with a Content-Length")
        else:
            raise _ReplyAndClose(431, "too many request headers")
        if version == b"HTTP/1.1":
            keep_alive = connection != b"close"
        else:
            keep_alive = connection == b"keep-alive"
        body = b""
        if length:
            body = self._read_body(method, length)
            if body is None:
                return None
        return method, target, body, host, keep_alive

    def _read_body(self, method: bytes, length: int) -> Optional[bytes]:
        if method == b"GET" or method == b"HEAD":
            raise _ReplyAndClose(400, "GET and HEAD requests take no body")
        if self.bodies is not None:
            if not self.bodies.reserve(length):
                raise _ReplyAndClose(503, "too many uploads at once; try again in a moment")
            self._held = length
        if self.slot is not None:
            self.slot.receiving_body(length)
        body = self.rfile.read(length)
        return body if len(body) == length else None

    def _linger(self) -> None:
        # Closing a socket with unread input makes the kernel send a reset, and a reset can
        # destroy the error answer before the client reads it. Like Apache's lingering close:
        # stop sending, read what the client still sends (bounded in bytes and time), then close.
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            left = LINGER_BYTES
            while left > 0:
                data = self.rfile.read1(min(left, 65536))
                if not data:
                    break
                left -= len(data)
        except (OSError, ValueError):
            pass

    def _send(self, status: int, ctype: str, payload: bytes, keep_alive: bool,
              length: Optional[int] = None) -> None:
        head = self.server.status_line(status) + (
            b"Content-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
                ctype.encode(), len(payload) if length is None else length,
                b"" if keep_alive else b"Connection: close\r\n"))
        try:
            self.wfile.write(head + payload)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class name)
        log.debug("%s %s", self.client_ip, format % args)


class TrackerHTTPServer(http.server.HTTPServer):
    """One thread per admitted connection; see the module docstring."""

    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs when many peers (or a load test) connect at
    # once, and each dropped SYN costs that client a one-second retransmit.
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: Tuple[str, int], app: Any,
                 ssl_context: Optional[ssl.SSLContext]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.ssl_context = ssl_context
        self.connections = ConnectionTable(time.monotonic)
        self.bodies = BodyBudget(MAX_BODY_BYTES_HELD)
        self.max_threads = MAX_THREADS
        self._threads = 0
        self._threads_lock = threading.Lock()
        self._next_reap = 0.0
        self._date = (0, b"")
        super().__init__(address, TrackerRequestHandler)

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind's getfqdn(): a reverse lookup can stall start-up for
        # seconds on a LAN without DNS.
        if self.address_family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            try:  # "::" serves IPv4 too where the system allows it
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except (OSError, AttributeError):
                pass
        super(http.server.HTTPServer, self).server_bind()
        self.server_name, self.server_port = self.server_address[:2]

    def status_line(self, status: int) -> bytes:
        # A Date header is required of servers with a clock (RFC 9110); formatting it once a
        # second instead of per response saves a measurable share of an announce.
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, b"Date: %s\r\nServer: STA-tracker\r\n" % (
                email.utils.formatdate(now, usegmt=True).encode()))
        return b"HTTP/1.1 %d %s\r\n%s" % (status, _REASONS.get(status, b"Error"), self._date[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        # Runs in the accept loop: admission costs no thread and no TLS handshake.
        address = address_group(normalise_ip(client_address[0]))
        slot, evicted = self.connections.admit(address, request)
        for victim in evicted:
            _hang_up(victim.handle)
        if slot is not None:
            with self._threads_lock:
                started = self._threads < self.max_threads
                if started:
                    self._threads += 1
            if started:
                try:
                    threading.Thread(target=self._serve_connection, daemon=True,
                                     args=(request, client_address, slot)).start()
                    return
                except RuntimeError:  # the system has no thread to give: refuse this one
                    with self._threads_lock:
                        self._threads -= 1
            self.connections.release(slot)
        try:
            request.sendall(_REFUSAL)
        except OSError:
            pass
        self.shutdown_request(request)

    def _serve_connection(self, request: Any, client_address: Any,
                          slot: ConnectionSlot) -> None:
        try:
            self.finish_request(request, client_address, slot)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.connections.release(slot)
            self.shutdown_request(request)
            with self._threads_lock:
                self._threads -= 1

    def finish_request(self, request: Any, client_address: Any,
                       slot: Optional[ConnectionSlot] = None) -> None:
        conn = request
        try:
            if self.ssl_context is not None:
                # The TLS handshake runs here, in the connection's own thread, so a slow or
                # silent client cannot stall accept() for everyone else; the connection's
                # deadline covers it.
                request.settimeout(TLS_HANDSHAKE_TIMEOUT)
                try:
                    conn = self.ssl_context.wrap_socket(request, server_side=True,
                                                        do_handshake_on_connect=False)
                    if slot is not None:
                        # The plain socket is detached from its descriptor now: closing the
                        # connection to make room must reach the TLS socket, handshake or not.
                        slot.handle = conn
                        if slot.closed:  # closed while its socket could not be reached
                            return
                    conn.do_handshake()
                except (OSError, ValueError) as exc:
                    log.debug("TLS handshake with %s failed: %s", client_address, exc)
                    return
            self.RequestHandlerClass(conn, client_address, self, slot)
        finally:
            if conn is not request:
                conn.close()

    def service_actions(self) -> None:
        # Called by serve_forever() after every accept and every poll interval.
        now = time.monotonic()
        if now >= self._next_reap:
            self._next_reap = now + REAP_INTERVAL
            for slot in self.connections.expired():
                _hang_up(slot.handle)

    def close_connections(self) -> None:
        for slot in self.connections.slots():
            _hang_up(slot.handle)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client vanishing mid-answer is routine for a tracker; anything else is a bug worth a
        # log line, never a traceback on the console.
        log.debug("error while serving %s", client_address, exc_info=True)


def _hang_up(sock: Any) -> None:
    """Wake the thread reading ``sock`` with end-of-file; that thread closes it.

    The plain socket call, also for a TLS socket: SSLSocket.shutdown would drop its TLS state
    under the thread still using it."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


_REASONS = {200: b"OK", 201: b"Created", 400: b"Bad Request", 404: b"Not Found",
            405: b"Method Not Allowed", 411: b"Length Required", 413: b"Payload Too Large",
            414: b"URI Too Long", 429: b"Too Many Requests",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
            503: b"Service Unavailable"}
