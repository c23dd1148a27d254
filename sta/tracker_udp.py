"""UDP front end of the tracker (BEP 15), on the HTTP tracker's port number, as opentracker does.

``UdpTrackerFront.answer(datagram, client address, now)`` is the whole protocol: it returns the
datagram to send back, or None to drop, and is tested without a socket. Announces and scrapes go
to the same ``TrackerStore`` as HTTP ones, through ``Tracker``'s rules (numwant bounds, the
``ip`` field from local networks only, the announce interval), and each announce counts under
the client's address group (``tracker_limits.address_group``), so the per-address limits on new
torrents and peers hold whichever protocol a client uses.

No amplification: a datagram without a valid connection id gets no answer at all, and the only
answer to one (a connect answer, 16 bytes) is no larger than the 16-byte connect request. The
connection ids are ``udptrackerproto.ConnectionIdMint``'s keyed hashes of the client's address,
so the tracker keeps no state per client and a forged or stale id is simply dropped, as is any
datagram that is not a BEP 15 request.

``TrackerUDPServer`` is the socket and the thread that serves it with blocking reads: one system
call per datagram, and none while idle.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import struct
import threading
import time
from operator import attrgetter
from typing import Callable, Optional, Tuple

from sta import udptrackerproto as proto
from sta.tracker_db import MAX_COUNTER, TrackerDbError
from sta.tracker_http import normalise_ip
from sta.tracker_limits import address_group

__all__ = ["UdpTrackerFront", "TrackerUDPServer", "MAX_NUMWANT_V6", "RECEIVE_BUFFER",
           "MAX_REQUEST"]

log = logging.getLogger(__name__)

# Peers in an answer to an IPv6 client: 18 bytes each, and 80 keep the answer (1,460 bytes)
# within one 1,500-byte Ethernet frame; an IPv4 answer holds the tracker's MAX_NUMWANT (200
# peers, 1,220 bytes) in one frame.
MAX_NUMWANT_V6 = 80

# Kernel receive buffer asked for: bursts of announces wait here while the one thread works. The
# kernel caps it at net.core.rmem_max (212,992 bytes by default, about 300 queued announces);
# opentracker asks for a larger buffer too.
RECEIVE_BUFFER = 4 << 20

# shutdown() sends a wake-up datagram this often, and gives up waiting for the thread after
# SHUTDOWN_TIMEOUT (the thread is a daemon: it cannot keep the process alive).
WAKE_INTERVAL = 0.1
SHUTDOWN_TIMEOUT = 5.0

# Bytes read of one datagram: a scrape of MAX_SCRAPE_HASHES is 1,496 bytes, an announce with
# BEP 41 options under 1,200. A longer datagram is cut, and then fails to parse or is ignored.
MAX_REQUEST = 2048

_HEADER = struct.Struct(">QII")
_ANNOUNCE_BODY = struct.Struct(">20s20sQQQIIIiH")
_ANNOUNCE_ANSWER = struct.Struct(">IIIII")
_EVENTS = proto.EVENTS_BY_CODE
_COMPACT = attrgetter("compact")


class UdpTrackerFront:
    """BEP 15 requests in, answers out, over a ``sta.tracker.Tracker``; no socket."""

    def __init__(self, app, key: Optional[bytes] = None) -> None:
        """``app`` is the ``sta.tracker.Tracker`` whose store and rules answer; ``key`` the
        connection id secret (random when not given, so ids die with the process)."""
        self.app = app
        self.store = app.store
        self.mint = proto.ConnectionIdMint(key or os.urandom(32))
        self.dropped = 0
        self._interval = app.interval
        self._default_numwant = app.default_numwant
        self._max_numwant = app.max_numwant

    def answer(self, data: bytes, address: Tuple, now: float) -> Optional[bytes]:
        """The datagram to send back to ``address`` for ``data``, or None to drop it."""
        if len(data) < 16:
            self.dropped += 1
            return None
        connection_id, action, tid = _HEADER.unpack_from(data)
        client_ip = address[0]
        if action == proto.CONNECT:
            if connection_id != proto.PROTOCOL_ID:
                self.dropped += 1
                return None
            return proto.connect_response(tid, self.mint.issue(client_ip.encode(), now))
        if not self.mint.check(connection_id, client_ip.encode(), now):
            self.dropped += 1
            return None
        if ":" in client_ip:
            client_ip = normalise_ip(client_ip)
        try:
            if action == proto.ANNOUNCE and len(data) >= proto.ANNOUNCE_REQUEST_SIZE:
                return self._announce(data, tid, client_ip)
            if action == proto.SCRAPE:
                return self._scrape(data, tid)
            raise proto.UdpTrackerError(f"action {action} with {len(data)} bytes")
        except TrackerDbError as exc:
            return proto.error_response(tid, str(exc))
        except proto.UdpTrackerError as exc:
            # The client proved its address: it may hear what was wrong.
            return proto.error_response(tid, f"bad request: {exc.reason}")

    def _announce(self, data: bytes, tid: int, client_ip: str) -> bytes:
        (info_hash, peer_id, downloaded, left, uploaded, event, ip, key, numwant,
         port) = _ANNOUNCE_BODY.unpack_from(data, 16)
        if not port:
            raise proto.UdpTrackerError("port must be a number from 1 to 65535")
        v6 = ":" in client_ip
        if numwant < 0:
            numwant = self._default_numwant
        elif numwant > self._max_numwant or (v6 and numwant > MAX_NUMWANT_V6):
            numwant = MAX_NUMWANT_V6 if v6 else self._max_numwant
        peer_ip = client_ip
        if ip and not v6:
            peer_ip = self.app.announced_ip(str(ipaddress.IPv4Address(ip)).encode(),
                                            client_ip)[0]
        if (uploaded | downloaded | left) > MAX_COUNTER:
            uploaded, downloaded, left = (min(n, MAX_COUNTER) for n in (uploaded, downloaded,
                                                                        left))
        seeders, leechers, _, peers = self.store.announce(
            info_hash, peer_id, peer_ip, port, uploaded, downloaded, left,
            _EVENTS.get(event, b""), b"%08X" % key, numwant,
            address_group(client_ip) if v6 else client_ip)
        if not peers:
            return _ANNOUNCE_ANSWER.pack(proto.ANNOUNCE, tid, self._interval, leechers, seeders)
        blob = b"".join(map(_COMPACT, peers))
        if len(blob) != (18 if v6 else 6) * len(peers):  # both families in the swarm
            blob = b"".join([p.compact for p in peers if p.is_v6 == v6])
        return _ANNOUNCE_ANSWER.pack(proto.ANNOUNCE, tid, self._interval, leechers,
                                     seeders) + blob

    def _scrape(self, data: bytes, tid: int) -> bytes:
        request = proto.parse_request(data)
        assert isinstance(request, proto.ScrapeRequest)
        counts = self.store.scrape(request.info_hashes)
        return proto.scrape_response(tid, [(c[0], c[2], c[1]) for c in (
            counts.get(h, (0, 0, 0)) for h in request.info_hashes)])


class TrackerUDPServer:
    """One UDP socket on (host, port) answered by a ``UdpTrackerFront`` in one thread."""

    def __init__(self, front: UdpTrackerFront, host: str, port: int,
                 clock: Callable[[], float] = time.time) -> None:
        """Binds at once; raises OSError when the port is taken."""
        self.front = front
        self.clock = clock
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6 and host == "::":
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            except OSError:
                pass  # the kernel's default buffer still works
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def start(self) -> "TrackerUDPServer":
        self._thread = threading.Thread(target=self.serve, name="tracker-udp", daemon=True)
        self._thread.start()
        return self

    def serve(self) -> None:
        """Answer datagrams until shutdown()."""
        sock, answer, clock, stop = self.sock, self.front.answer, self.clock, self._stop
        recvfrom, sendto = sock.recvfrom, sock.sendto
        while not stop.is_set():
            try:
                data, address = recvfrom(MAX_REQUEST)
            except OSError as exc:
                if stop.is_set() or sock.fileno() < 0:
                    return
                log.debug("udp receive failed: %s", exc)  # ICMP errors from earlier sends
                continue
            try:
                reply = answer(data, address, clock())
                if reply is not None:
                    sendto(reply, address)
            except OSError as exc:  # a full send buffer, an unreachable client
                log.debug("udp answer to %s not sent: %s", address[0], exc)
            except Exception:  # one bad datagram must not stop the tracker  # noqa: BLE001
                log.exception("udp request failed")

    def shutdown(self) -> None:
        """Stop the thread and close the socket. The thread waits in a blocking read (one
        system call per datagram, none when idle), so an empty datagram to our own address
        wakes it."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            host, port = self.sock.getsockname()[:2]
            if host in ("0.0.0.0", "::"):
                host = "127.0.0.1" if host == "0.0.0.0" else "::1"
            deadline = time.monotonic() + SHUTDOWN_TIMEOUT
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:
                    with socket.socket(self.sock.family, socket.SOCK_DGRAM) as waker:
                        waker.sendto(b"", (host, port))
                except OSError:
                    pass
                self._thread.join(WAKE_INTERVAL)
        self.sock.close()
