"""The tracker server: announce (BEP 3, 23, 7), scrape (BEP 48), hosted .torrent files, stats.

``Tracker`` turns one request (method, target, body, client address) into one response and knows
nothing about sockets (hosted .torrent files are ``tracker_hosting``'s part of it);
``TrackerServer`` puts it behind the HTTP/1.1 front end of ``tracker_http``, and the UDP one of
``tracker_udp`` (BEP 15) on the same port number, with the swarm store of ``tracker_db``
(answers from memory, SQLite written behind), and is what the `tracker` command runs. Every limit on what a client can make the tracker hold or do is a named constant of the
module that enforces it, tested without sockets through ``Tracker`` or the store.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import ssl
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from sta import bencode
from sta import tracker_pages
from sta.tracker_db import MAX_COUNTER, MAX_TORRENTS, TrackerDbError, TrackerStore
from sta.tracker_hosting import (LIST_PAGE, Response, TorrentHosting, json_response,
                                 text_response)
from sta.tracker_http import TrackerHTTPServer, normalise_ip
from sta.tracker_udp import TrackerUDPServer, UdpTrackerFront
from sta.tracker_limits import DEFAULT_INTERVAL, address_group
from sta.trackerproto import DEFAULT_TRACKER_PORT

__all__ = ["TrackerServerError", "Tracker", "TrackerServer", "run", "server_ssl_context",
           "lan_address", "DEFAULT_PORT", "DEFAULT_NUMWANT", "MAX_NUMWANT"]

log = logging.getLogger(__name__)

DEFAULT_PORT = DEFAULT_TRACKER_PORT

# BEP 3: numwant is optional and 50 is the customary default. Answers are capped at 200, what
# libtorrent asks for by default (Transmission asks for 80): more peers than a client can dial
# in one interval are wasted bytes, and 200 compact peers keep an answer near 1 KiB.
DEFAULT_NUMWANT = 50
MAX_NUMWANT = 200

# A peer asking too often gets the same peers back; half the interval (opentracker's choice)
# capped at two minutes, so a lab user who restarts a download is not kept waiting long.
MAX_MIN_INTERVAL = 120

# Scrape limits: explicit info hashes per request (a client scrapes a handful) and the number of
# torrents a full scrape (no info_hash) lists, so one request cannot dump an unbounded answer.
MAX_SCRAPE_HASHES = 100
MAX_SCRAPE_ALL = 1000

# /stats and the dashboard list at most this many torrents and peers per torrent.
MAX_STATS_TORRENTS = 500
MAX_STATS_PEERS = 200

# How often the accept loop checks for shutdown(): the longest shutdown() waits. Ctrl-C does not
# wait for it (the signal interrupts select()).
POLL_SECONDS = 0.05

# Every connection thread gives the GIL up at its next socket call, tens of microseconds after
# taking it; CPython's default 5 ms switch interval only adds forced hand-offs when hundreds of
# connections are busy at once (bench_tracker.py, 128 connections: 50 ms gave about a third more
# announces per second and a lower 99th-percentile latency). Set by run() only: it is
# process-wide, and the `tracker` command's process does nothing else.
GIL_SWITCH_INTERVAL = 0.05

# Client addresses whose "is it a local network" answer is remembered (cleared when full).
MAX_CACHED_ADDRESSES = 10_000

# A `key` longer than this is not a client's random key (they send 4-8 bytes of hex).
MAX_KEY_BYTES = 64

# BEP 3 lets the peer name its address with `ip`. opentracker honours it only from blessed proxy
# addresses; this tracker is meant for lab LANs where a machine may announce from one interface
# and want peers to use another, so it accepts `ip` from requests that come from loopback,
# private or link-local addresses, and ignores it (with a warning) from public ones, so nobody on
# the internet can point a swarm at a third party.
ACCEPT_IP_FROM_LOCAL_NETWORKS = True

_EVENTS = {b"": b"", b"started": b"started", b"completed": b"completed", b"stopped": b"stopped",
           # BEP 21's "paused" and BEP 3's "empty" (same as no event) are regular announces.
           b"paused": b"", b"empty": b""}

_MAX_COUNTER_DIGITS = len(str(MAX_COUNTER))


class TrackerServerError(Exception):
    """The tracker cannot start or serve (bad address, database, certificate)."""


class _BadRequest(Exception):
    """An announce or scrape to answer with a BEP 3 failure reason."""


def failure(reason: str) -> bytes:
    """A BEP 3 failure answer: the failure reason and nothing else."""
    return bencode.encode({b"failure reason": reason})


def unquote(value: bytes) -> bytes:
    """Percent-decode (and ``+`` as space, as form encoding does) to raw bytes."""
    # Clients escape every byte of a binary info_hash or peer_id ("%12%34..."): bytes.fromhex
    # decodes that in one C call, several times faster than the general unquote.
    if value[:1] == b"%" and len(value) % 3 == 0 and value[::3] == b"%" * (len(value) // 3):
        try:
            return bytes.fromhex(value.replace(b"%", b"").decode("ascii"))
        except ValueError:
            pass
    return unquote_to_bytes(value.replace(b"+", b" "))


def parse_query(query: bytes) -> List[Tuple[bytes, bytes]]:
    """Split a raw query string into (name, value) byte pairs, in order.

    Values carry raw bytes (info_hash, peer_id) percent-encoded: they are unquoted to bytes and
    never decoded as text. Invalid escapes are kept literally, as browsers and clients do.
    """
    pairs = []
    for part in query.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        if b"%" in value or b"+" in value:
            value = unquote(value)
        if b"%" in name or b"+" in name:
            name = unquote(name)
        pairs.append((name, value))
    return pairs


def query_dict(query: bytes) -> Dict[bytes, bytes]:
    """The query as a dictionary (the last of repeated names wins), built the fast way."""
    params = dict(part.partition(b"=")[::2] for part in query.split(b"&"))
    names = b"".join(params)
    if b"%" in names or b"+" in names:
        return dict(parse_query(query))
    for name, value in params.items():
        if b"%" in value or b"+" in value:
            params[name] = unquote(value)
    return params


def _counter(params: Dict[bytes, bytes], name: bytes, default: Optional[int] = None,
             maximum: int = MAX_COUNTER) -> int:
    value = params.get(name)
    if value is None:
        if default is None:
            raise _BadRequest(f"missing {name.decode()}")
        return default
    if not value.isdigit() or len(value) > _MAX_COUNTER_DIGITS:
        raise _BadRequest(f"{name.decode()} must be a whole number from 0 to {maximum}")
    number = int(value)
    if number > maximum:
        raise _BadRequest(f"{name.decode()} must be a whole number from 0 to {maximum}")
    return number


def _is_local(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return address.is_private or address.is_loopback or address.is_link_local


class Tracker:
    """Request -> response logic of the tracker; no sockets, so tests call it directly too."""

    def __init__(self, store: TrackerStore, scheme: str = "http") -> None:
        self.store = store
        self.scheme = scheme
        self.hosting = TorrentHosting(store)
        self.interval = store.interval
        self.min_interval = max(1, min(store.interval // 2, MAX_MIN_INTERVAL))
        self._local_cache: Dict[str, bool] = {}
        # The part of every answer that never changes, ready to paste after the counters.
        self._timing = b"8:intervali%de12:min intervali%de" % (self.interval, self.min_interval)
        self._tracker_id = b"10:tracker id%d:%s" % (len(store.tracker_id), store.tracker_id)
        # What the UDP front end (tracker_udp) answers by, the same as HTTP's.
        self.default_numwant = DEFAULT_NUMWANT
        self.max_numwant = MAX_NUMWANT

    # --- announce -------------------------------------------------------------------------------

    def announce(self, query: bytes, client_ip: str) -> bytes:
        """Answer one announce (the bencoded body; failures are BEP 3 failure answers)."""
        try:
            return self._announce(query_dict(query), client_ip)
        except _BadRequest as exc:
            return failure(str(exc))
        except TrackerDbError as exc:
            return failure(str(exc))

    def _announce(self, params: Dict[bytes, bytes], client_ip: str) -> bytes:
        info_hash = params.get(b"info_hash")
        if info_hash is None or len(info_hash) != 20:
            raise _BadRequest("info_hash must be 20 bytes (percent-encoded)")
        peer_id = params.get(b"peer_id")
        if peer_id is None or len(peer_id) != 20:
            raise _BadRequest("peer_id must be 20 bytes (percent-encoded)")
        port = params.get(b"port")
        if port is None or not port.isdigit() or len(port) > 5 or not 0 < int(port) < 65536:
            raise _BadRequest("port must be a number from 1 to 65535")
        port = int(port)
        left = _counter(params, b"left")
        uploaded = _counter(params, b"uploaded", 0)
        downloaded = _counter(params, b"downloaded", 0)
        warnings = []
        event = params.get(b"event", b"")
        if event not in _EVENTS:
            warnings.append("unknown event ignored")
            event = b""
        else:
            event = _EVENTS[event]
        numwant = params.get(b"numwant")
        if numwant is None or not numwant.isdigit() or len(numwant) > 6:
            numwant = DEFAULT_NUMWANT  # absent, or -1 / garbage: some clients mean "default"
        else:
            numwant = min(int(numwant), MAX_NUMWANT)
        key = params.get(b"key")
        if key is not None and len(key) > MAX_KEY_BYTES:
            raise _BadRequest(f"key longer than {MAX_KEY_BYTES} bytes")
        ip = client_ip
        wanted_ip = params.get(b"ip")
        if wanted_ip:
            ip, warning = self.announced_ip(wanted_ip, client_ip)
            if warning:
                warnings.append(warning)
        complete, incomplete, completed, peers = self.store.announce(
            info_hash, peer_id, ip, port, uploaded, downloaded, left, event, key, numwant,
            address_group(client_ip))
        # Keys in bencode order: complete downloaded incomplete interval "min interval" peers
        # peers6 "tracker id" "warning message".
        head = b"d8:completei%de10:downloadedi%de10:incompletei%de%s" % (
            complete, completed, incomplete, self._timing)
        if params.get(b"compact") == b"0":
            body = bencode.encode(self._peer_dicts(peers, params.get(b"no_peer_id") == b"1"))
            body = head + b"5:peers" + body + self._tracker_id
        else:
            v4 = b"".join([p.compact for p in peers if not p.is_v6])
            v6 = b"".join([p.compact for p in peers if p.is_v6])
            body = head + b"5:peers%d:%s" % (len(v4), v4)
            if v6:
                body += b"6:peers6%d:%s" % (len(v6), v6)
            body += self._tracker_id
        if warnings:
            message = "; ".join(warnings).encode()
            body += b"15:warning message%d:%s" % (len(message), message)
        return body + b"e"

    @staticmethod
    def _peer_dicts(peers: list, no_peer_id: bool) -> List[Dict[bytes, Any]]:
        # The BEP 3 dictionary model (clients that send compact=0); IPv6 peers are listed here
        # too, as text, since the model carries any address.
        if no_peer_id:
            return [{b"ip": p.ip, b"port": p.port} for p in peers]
        return [{b"ip": p.ip, b"peer id": p.peer_id, b"port": p.port} for p in peers]

    def announced_ip(self, wanted: bytes, client_ip: str) -> Tuple[str, Optional[str]]:
        """The address to record for a peer that names ``wanted`` (BEP 3 ``ip``) from
        ``client_ip``, and a warning when it is not honoured."""
        try:
            ip = normalise_ip(str(ipaddress.ip_address(wanted.decode("ascii"))))
        except (UnicodeDecodeError, ValueError):
            return client_ip, "ip parameter ignored: not an IP address"
        address = ipaddress.ip_address(ip)
        if address.is_unspecified or address.is_multicast:
            return client_ip, "ip parameter ignored: not a unicast address"
        if ip == client_ip:
            return ip, None
        local = self._local_cache.get(client_ip)
        if local is None:
            local = self._local_cache[client_ip] = _is_local(client_ip)
            if len(self._local_cache) > MAX_CACHED_ADDRESSES:
                self._local_cache.clear()
        if ACCEPT_IP_FROM_LOCAL_NETWORKS and local:
            return ip, None
        return client_ip, "ip parameter ignored: accepted only from local networks"

    # --- scrape ---------------------------------------------------------------------------------

    def scrape(self, query: bytes) -> bytes:
        """BEP 48: counts for the info hashes asked for, or for all torrents (capped)."""
        hashes = [value for name, value in parse_query(query) if name == b"info_hash"]
        if len(hashes) > MAX_SCRAPE_HASHES:
            return failure(f"at most {MAX_SCRAPE_HASHES} info_hash values per scrape")
        if any(len(h) != 20 for h in hashes):
            return failure("info_hash must be 20 bytes (percent-encoded)")
        if not hashes:
            hashes = self.store.known_hashes(MAX_SCRAPE_ALL)
        files = {info_hash: {b"complete": seeders, b"incomplete": leechers,
                             b"downloaded": completed}
                 for info_hash, (seeders, leechers, completed) in self.store.scrape(hashes).items()}
        return bencode.encode({b"files": files})

    # --- everything else ------------------------------------------------------------------------

    def handle(self, method: bytes, target: bytes, body: bytes, client_ip: str,
               host: bytes) -> Response:
        """Answer any request: (status, content type, body)."""
        path, _, query = target.partition(b"?")
        if method == b"GET" or method == b"HEAD":
            if path == b"/announce":
                return 200, "text/plain", self.announce(query, client_ip)
            if path == b"/scrape":
                return 200, "text/plain", self.scrape(query)
            if path == b"/stats":
                return json_response(200, self.stats())
            if path == b"/":
                return 200, "text/html; charset=utf-8", tracker_pages.dashboard(self.stats())
            if path == b"/torrents":
                return self._list_torrents(query, host)
            if path.startswith(b"/torrents/") and path.endswith(b".torrent"):
                return self.hosting.download(path[10:-8])
            return text_response(404, "not found")
        if method == b"POST":
            if path == b"/torrents":
                return self.hosting.upload(body, client_ip, self._base_url(host))
            return text_response(404, "not found")
        return text_response(405, "method not allowed")

    def stats(self) -> Dict[str, Any]:
        return self.store.stats(MAX_STATS_TORRENTS, MAX_STATS_PEERS)

    def _list_torrents(self, query: bytes, host: bytes) -> Response:
        params = query_dict(query) if query else {}
        try:
            offset = _counter(params, b"offset", 0, MAX_TORRENTS)
            limit = _counter(params, b"limit", LIST_PAGE, MAX_TORRENTS)
        except _BadRequest as exc:
            return text_response(400, str(exc))
        return self.hosting.listing(offset, limit, self._base_url(host))

    def _base_url(self, host: bytes) -> str:
        text = host.decode("ascii", "replace")
        if not host or len(host) > 255 or not all(c.isalnum() or c in ".-:[]" for c in text):
            text = "127.0.0.1"
        return f"{self.scheme}://{text}"


class TrackerServer:
    """The tracker: an HTTP(S) server on (host, port) with its SQLite database, and a BEP 15
    UDP tracker on the same port number unless ``udp`` is False."""

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT,
                 db_path: str = "tracker.db", interval: int = DEFAULT_INTERVAL,
                 ssl_context: Optional[ssl.SSLContext] = None,
                 clock: Callable[[], float] = time.time, udp: bool = True) -> None:
        if interval < 1:
            raise TrackerServerError("the announce interval must be at least 1 second")
        try:
            self.store = TrackerStore(db_path, interval, clock)
        except TrackerDbError as exc:
            raise TrackerServerError(str(exc)) from exc
        self.host = host
        self.app = Tracker(self.store, "https" if ssl_context else "http")
        try:
            self.httpd = TrackerHTTPServer((host, port), self.app, ssl_context)
        except OSError as exc:
            self.store.close()
            raise TrackerServerError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.udp: Optional[TrackerUDPServer] = None
        if udp:
            try:
                self.udp = TrackerUDPServer(UdpTrackerFront(self.app), host, self.port)
            except OSError as exc:
                self.httpd.server_close()
                self.store.close()
                raise TrackerServerError(
                    f"cannot listen on UDP {host}:{self.port}: {exc.strerror or exc} (--no-udp "
                    "serves HTTP only)") from exc
        self._thread: Optional[threading.Thread] = None
        self._serving: Optional[int] = None
        self._closed = False

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def urls(self) -> List[str]:
        """Base URLs the tracker answers on (loopback, and the LAN address when on all)."""
        scheme = self.app.scheme
        if self.host in ("", "0.0.0.0", "::"):
            hosts = ["127.0.0.1"]
            lan = lan_address()
            if lan and lan not in hosts:
                hosts.append(lan)
        else:
            hosts = [self.host]
        return [f"{scheme}://{_url_host(h)}:{self.port}" for h in hosts]

    def banner(self) -> List[str]:
        """The start-up lines the CLI prints."""
        lines = []
        if self.host in ("", "0.0.0.0", "::"):
            lines.append(f"* Running on all addresses ({self.host or '0.0.0.0'})")
        lines.extend(f"* Running on {url}" for url in self.urls)
        lines.append(f"* Announce URL: {self.urls[-1]}/announce")
        if self.udp is not None:
            lines.append(f"* UDP announce URL: udp://{self.urls[-1].split('://', 1)[1]}"
                         "/announce")
        lines.append(f"* Dashboard: {self.urls[0]}/  (Ctrl-C to stop)")
        return lines

    def start(self) -> "TrackerServer":
        """Serve in a background thread (tests, embedding); returns self."""
        self.store.start()
        if self.udp is not None:
            self.udp.start()
        self._thread = threading.Thread(target=self._serve, name="tracker-http", daemon=True)
        self._serving = -1  # a shutdown() before the thread runs must still stop it
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until shutdown() from another thread or KeyboardInterrupt."""
        self.store.start()
        if self.udp is not None:
            self.udp.start()
        self._serve()

    def _serve(self) -> None:
        self._serving = threading.get_ident()
        try:
            self.httpd.serve_forever(POLL_SECONDS)
        finally:
            self._serving = None

    def shutdown(self) -> None:
        """Stop serving, close connections, save pending changes and close the database."""
        if self._closed:
            return
        self._closed = True
        serving = self._serving
        if serving is not None and serving != threading.get_ident():
            self.httpd.shutdown()  # waits for the serving loop to notice (POLL_SECONDS)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.udp is not None:
            self.udp.shutdown()
        self.httpd.server_close()
        self.httpd.close_connections()
        self.store.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def lan_address() -> Optional[str]:
    """This host's LAN IPv4 address, found without sending a packet.

    connect() on a UDP socket only picks the route and source address; nothing is sent.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect(("10.255.255.255", 1))
        address = sock.getsockname()[0]
    except OSError:
        address = None
    finally:
        sock.close()
    if not address or address.startswith(("0.", "127.")):
        try:
            address = socket.gethostbyname(socket.gethostname())
        except OSError:
            return None
        if address.startswith("127."):
            return None
    return address


def server_ssl_context(certfile: str, keyfile: Optional[str] = None) -> ssl.SSLContext:
    """A server-side TLS context from PEM files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise TrackerServerError(f"cannot load certificate {certfile}: {exc}") from exc
    return context


def run(args: Any, emit: Optional[Callable[[str], None]] = None,
        ssl_context: Optional[ssl.SSLContext] = None) -> int:
    """The `tracker` command: serve until Ctrl-C. ``args`` has host, port, db, interval,
    certfile, keyfile, tls, no_udp; ``emit`` receives the lines to show; ``ssl_context`` (from --tls)
    takes precedence over certfile/keyfile. Raises TrackerServerError when it cannot start."""
    emit = emit or log.info
    context = ssl_context
    certfile = getattr(args, "certfile", None)
    keyfile = getattr(args, "keyfile", None)
    if context is None and certfile:
        context = server_ssl_context(certfile, keyfile)
    elif context is None and keyfile:
        raise TrackerServerError("--keyfile needs --certfile")
    if context is None and getattr(args, "tls", False):
        raise TrackerServerError("--tls needs a TLS context; pass --certfile and --keyfile")
    server = TrackerServer(getattr(args, "host", "0.0.0.0"), getattr(args, "port", DEFAULT_PORT),
                           getattr(args, "db", "tracker.db"),
                           getattr(args, "interval", DEFAULT_INTERVAL), context,
                           udp=not getattr(args, "no_udp", False))
    for line in server.banner():
        emit(line)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        # `kill` (or a service manager) stops the tracker as cleanly as Ctrl-C: pending peer
        # changes are saved before it exits.
        previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        emit("Stopping the tracker")
    finally:
        sys.setswitchinterval(previous)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        server.shutdown()
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
