"""The web front end's HTTP server: the page, its JSON API and Transmission's RPC, on one port.

``WebServer`` is an http.server ThreadingHTTPServer on a thread of its own; every request reaches
the node through ``WebNode`` (node.call runs the work on the node's loop). Routes:

    GET  /  /app.js  /style.css        the page, from the package's own webui folder
    GET  /api/...  POST /api/...        the page's JSON API (webapi.py)
    POST /transmission/rpc              Transmission's RPC (webrpc.py)

Security, in the order a request meets it:
- it listens on 127.0.0.1 unless told otherwise, and any other address needs a password
  (``check_exposure``), so the node is never open to a network by accident;
- without a password only a Host header naming a loopback address, ``localhost`` or the listening
  address is served: a web page elsewhere cannot reach the node by pointing a name of its own at
  127.0.0.1 (DNS rebinding; Transmission's rpc-host-whitelist does the same);
- with a password every request needs HTTP basic auth (any user name), 401 otherwise;
- every POST needs the X-Transmission-Session-Id header with this server's token, which only a
  reader of this server's answers learns (409 tells it, as Transmission does): a form posted by
  another site cannot send it, so it cannot act for the user (CSRF);
- files are served from a fixed table of names, never from a path in the URL; bodies, headers,
  connections and idle time are bounded; answers forbid framing and loading anything from
  elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import http.server
import ipaddress
import json
import logging
import os
import secrets
import socket
import threading
from typing import Any, Callable, Optional, Tuple
from urllib.parse import urlsplit

from .cliargs import DEFAULT_WEB_HOST, DEFAULT_WEB_PORT, dht_bootstrap, tracker_trust
from .node import Node
from .webapi import API_PREFIX, WebApi
from .webnode import MAX_TORRENT_BYTES, NoticeLog, WebNode
from .webrpc import TransmissionRpc

__all__ = ["WebServer", "WebError", "run", "check_exposure", "is_loopback", "DEFAULT_WEB_HOST",
           "DEFAULT_WEB_PORT", "SESSION_HEADER", "RPC_PATH", "ASSETS_DIR", "MAX_BODY_BYTES"]

log = logging.getLogger(__name__)

RPC_PATH = "/transmission/rpc"
# transmission-remote posts to RPC_PATH + "/", the web client to RPC_PATH: both are the RPC.
RPC_PATHS = (RPC_PATH, RPC_PATH + "/")
SESSION_HEADER = "X-Transmission-Session-Id"
ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "webui")
# URL path -> (file in ASSETS_DIR, content type). Nothing else is ever read from disk.
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
# The largest request body: a .torrent of metainfo's largest size in base64 (4/3 of it) inside a
# JSON request, with room for the JSON around it.
MAX_BODY_BYTES = MAX_TORRENT_BYTES * 4 // 3 + 64 * 1024
# A connection that sends nothing for this long is closed, so idle or stalled clients cannot hold
# the server's threads (the tracker's own front end uses the same bound).
IDLE_TIMEOUT = 30.0
# Connections served at once; past this a new one is closed at once. A person's browser opens six
# per host, a remote GUI one or two: 64 is many clients, and a bound on threads.
MAX_CONNECTIONS = 64
# The `web` command's main thread wakes this often, so Ctrl-C is taken at once on every system.
WAIT_STEP = 1.0
# Headers the server reads in one request (http.server's own limit is 100).
MAX_HEADERS = 64
# Answers that must not be cached, framed or sniffed, and a page that loads nothing from
# elsewhere.
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"),
)


class WebError(Exception):
    """The web server cannot start as asked; the message says what to change."""


def is_loopback(host: str) -> bool:
    """Is ``host`` an address (or the name localhost) only this machine reaches?"""
    bare = host.strip("[]").lower()
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, password: Optional[str]) -> None:
    """Refuse to serve on an address other machines reach without a password."""
    if not is_loopback(host) and not password:
        raise WebError(f"the web interface on {host} would let anyone who reaches it control "
                       "this node: give --web-password PASS, or keep the default 127.0.0.1 and "
                       "reach it through an SSH tunnel")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], app: "WebServer") -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            log.warning("web: %d connections open; refusing %s", MAX_CONNECTIONS,
                        client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class WebServer:
    """The page, its API and Transmission's RPC over one ``WebNode``."""

    def __init__(self, web: WebNode, host: str = DEFAULT_WEB_HOST, port: int = DEFAULT_WEB_PORT,
                 password: Optional[str] = None) -> None:
        check_exposure(host, password)
        self.web = web
        self.host = host
        self.password = password
        self.session_id = secrets.token_urlsafe(36)
        self.api = WebApi(web)
        self.rpc = TransmissionRpc(web)
        self._requested_port = port
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        try:
            self._server = _Server((self.host, self._requested_port), self)
        except OSError as exc:
            raise WebError(f"cannot serve the web interface on {self.host}:"
                           f"{self._requested_port}: {exc.strerror or exc}; choose another "
                           "with --web-port or --web-host") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="sta-web",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(IDLE_TIMEOUT)

    # -- checks ------------------------------------------------------------------------------

    def host_allowed(self, header: Optional[str]) -> bool:
        """Without a password, only Host headers that name this machine's loopback (or the
        address listened on) are served; see the module's docstring."""
        if self.password:
            return True
        if not header:
            return False
        host = urlsplit("//" + header).hostname or ""
        return is_loopback(host) or host == self.host.strip("[]").lower()

    def authorised(self, header: Optional[str]) -> bool:
        if not self.password:
            return True
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _, _, given = base64.b64decode(value.strip(), validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(given.encode(), self.password.encode())

    def session_ok(self, header: Optional[str]) -> bool:
        return hmac.compare_digest((header or "").encode(), self.session_id.encode())


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = IDLE_TIMEOUT
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "STA"

    @property
    def app(self) -> WebServer:
        return self.server.app

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class name)
        log.debug("web %s: " + format, self.client_address[0], *args)

    # -- answers -----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS + headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json", headers)

    def _text(self, status: int, text: str, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        self._send(status, text.encode("utf-8"), "text/plain; charset=utf-8", headers)

    def _session_conflict(self) -> None:
        self._text(409, f"{SESSION_HEADER}: {self.app.session_id}\n",
                   ((SESSION_HEADER, self.app.session_id),))

    # -- requests ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        if len(self.headers) > MAX_HEADERS:
            self.close_connection = True
            return self._text(431, "too many headers\n")
        if not self.app.host_allowed(self.headers.get("Host")):
            self.close_connection = True
            return self._text(403, "this address is not served: open the page through "
                                   "127.0.0.1 or localhost, or start with --web-password\n")
        if not self.app.authorised(self.headers.get("Authorization")):
            self.close_connection = True
            return self._text(401, "sign in: the password is the node's --web-password\n",
                              (("WWW-Authenticate", 'Basic realm="STA", charset="UTF-8"'),))
        path, _, query = self.path.partition("?")
        if self.command == "POST" or path in RPC_PATHS:
            if not self.app.session_ok(self.headers.get(SESSION_HEADER)):
                self._discard_body()
                return self._session_conflict()
        if path in RPC_PATHS:
            return self._rpc()
        if path.startswith(API_PREFIX):
            return self._api(path, query)
        if self.command in ("GET", "HEAD") and path in ASSETS:
            return self._asset(*ASSETS[path])
        self._text(404, "not found\n")

    def _asset(self, name: str, content_type: str) -> None:
        with open(os.path.join(ASSETS_DIR, name), "rb") as f:
            self._send(200, f.read(), content_type)

    def _api(self, path: str, query: str) -> None:
        if self.command == "POST":
            body = self._body()
            if body is None:
                return
            status, answer = self.app.api.post(path, body)
        else:
            status, answer = self.app.api.get(path, query)
        self._json(status, answer, ((SESSION_HEADER, self.app.session_id),))

    def _rpc(self) -> None:
        if self.command != "POST":
            return self._text(405, "Transmission's RPC takes POST\n", (("Allow", "POST"),))
        request = self._body()
        if request is not None:
            self._json(200, self.app.rpc.handle(request))

    def _body(self) -> Any:
        """The request's JSON body; None after answering a bad one."""
        length = self.headers.get("Content-Length", "")
        if self.headers.get("Transfer-Encoding") or not length.isdigit():
            self.close_connection = True
            self._text(411, "a body with Content-Length is needed\n")
            return None
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            self._text(413, f"the body is larger than {MAX_BODY_BYTES} bytes\n")
            return None
        data = self.rfile.read(int(length))
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._json(400, {"error": "the body is not JSON", "result": "the body is not JSON"})
            return None

    def _discard_body(self) -> None:
        """Read a refused request's body (a small one) so the connection can go on."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= MAX_BODY_BYTES:
            self.rfile.read(int(length))
        else:
            self.close_connection = True


def run(args: Any, emit: Callable[[str], None]) -> int:
    """`sta web`: the node, headless, with its saved torrents, and the web server in front of
    it, until Ctrl-C or SIGTERM (KeyboardInterrupt), which end it cleanly (exit status 0);
    ``emit`` writes one line for the user."""
    check_exposure(args.web_host, args.web_password)
    notices = NoticeLog(emit)
    node = Node(notices, port=args.port, host=args.bind, encryption=args.encryption,
                tracker_ssl_context=tracker_trust(args), dht_bootstrap=dht_bootstrap(args),
                lsd=not args.no_lsd, utp=not args.no_utp)
    web: Optional[WebNode] = None
    server: Optional[WebServer] = None
    try:
        node.start()
        web = WebNode(node, args.output, notices)
        server = WebServer(web, args.web_host, args.web_port, args.web_password)
        server.start()
        web.start()
        emit(f"Web interface on {server.url} (Transmission RPC at {RPC_PATH}); peers on "
             f"{node.host}:{node.listen_port}; Ctrl-C stops")
        restored = node.restore()
        if restored:
            emit(restored.replace("; 'status' lists them", ""))
        stop = threading.Event()
        while not stop.wait(WAIT_STEP):
            pass
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way to stop a server, not a failure
        emit("stopping ...")
    finally:
        if server is not None:
            server.stop()
        if web is not None:
            web.stop()
        node.stop()
    return 0
