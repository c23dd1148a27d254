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

``TrackerUDPServer`` is the socket and the thread that serves it: non-blocking reads drained in
a loop (one system call per datagram under load), select() with a short timeout when idle, so
``shutdown()`` returns within POLL_SECONDS.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import socket
import struct
import threading
import time
from typing import Callable, Optional, Tuple

from sta import udptrackerproto as proto
from sta.tracker_db import MAX_COUNTER, TrackerDbError
from sta.tracker_http import normalise_ip
from sta.tracker_limits import address_group

__all__ = ["UdpTrackerFront", "TrackerUDPServer", "MAX_NUMWANT_V6", "RECEIVE_BUFFER",
           "POLL_SECONDS"]

log = logging.getLogger(__name__)

# Peers in an answer to an IPv6 client: 18 bytes each, and 80 keep the answer (1,460 bytes)
# within one 1,500-byte Ethernet frame; an IPv4 answer holds the tracker's MAX_NUMWANT (200
# peers, 1,220 bytes) in one frame.
MAX_NUMWANT_V6 = 80

# Kernel receive buffer asked for: bursts of announces wait here while the one thread works. The
# kernel caps it at net.core.rmem_max (212,992 bytes by default, about 300 queued announces);
# opentracker asks for a larger buffer too.
RECEIVE_BUFFER = 4 << 20

# How often the idle serving loop checks for shutdown().
POLL_SECONDS = 0.05

# Datagrams read before the loop looks at the shutdown flag again, so a flood cannot keep it
# from stopping.
BATCH = 256

_HEADER = struct.Struct(">QII")
_ANNOUNCE_BODY = struct.Struct(">20s20sQQQIIIiH")
_NO_PEERS = b""


class UdpTrackerFront:
    """BEP 15 requests in, answers out, over a ``sta.tracker.Tracker``; no socket."""

    def __init__(self, app, key: Optional[bytes] = None) -> None:
        """``app`` is the ``sta.tracker.Tracker`` whose store and rules answer; ``key`` the
        connection id secret (random when not given, so ids die with the process)."""
        self.app = app
        self.store = app.store
        self.mint = proto.ConnectionIdMint(key or os.urandom(32))
        self.dropped = 0

    def answer(self, data: bytes, address: Tuple, now: float) -> Optional[bytes]:
        """The datagram to send back to ``address`` for ``data``, or None to drop it."""
        if len(data) < 16:
            self.dropped += 1
            return None
        connection_id, action, tid = _HEADER.unpack_from(data)
        client_ip = address[0]
        client = client_ip.encode("ascii", "replace")
        if action == proto.CONNECT:
            if connection_id != proto.PROTOCOL_ID:
                self.dropped += 1
                return None
            return proto.connect_response(tid, self.mint.issue(client, now))
        if not self.mint.check(connection_id, client, now):
            self.dropped += 1
            return None
        try:
            if action == proto.ANNOUNCE and len(data) >= proto.ANNOUNCE_REQUEST_SIZE:
                return self._announce(data, tid, normalise_ip(client_ip))
            if action == proto.SCRAPE:
                request = proto.parse_request(data)
                assert isinstance(request, proto.ScrapeRequest)
                counts = self.store.scrape(request.info_hashes)
                return proto.scrape_response(tid, [
                    (c[0], c[2], c[1]) for c in (counts.get(h, (0, 0, 0))
                                                 for h in request.info_hashes)])
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
        limit = MAX_NUMWANT_V6 if v6 else self.app.max_numwant
        numwant = self.app.default_numwant if numwant < 0 else min(numwant, limit)
        peer_ip = client_ip
        if ip and not v6:
            peer_ip = self.app.announced_ip(str(ipaddress.IPv4Address(ip)).encode(),
                                            client_ip)[0]
        seeders, leechers, _, peers = self.store.announce(
            info_hash, peer_id, peer_ip, port, min(uploaded, MAX_COUNTER),
            min(downloaded, MAX_COUNTER), min(left, MAX_COUNTER),
            proto.EVENTS_BY_CODE.get(event, b""), b"%08X" % key, numwant,
            address_group(client_ip))
        blob = b"".join([p.compact for p in peers if p.is_v6 == v6]) if peers else _NO_PEERS
        return proto.announce_response(tid, self.app.interval, leechers, seeders, blob)


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
            self.sock.setblocking(False)
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
                for _ in range(BATCH):
                    data, address = recvfrom(2048)
                    reply = answer(data, address, clock())
                    if reply is not None:
                        try:
                            sendto(reply, address)
                        except OSError as exc:  # a full send buffer, an unreachable client
                            log.debug("udp answer to %s not sent: %s", address[0], exc)
            except (BlockingIOError, InterruptedError):
                try:
                    select.select([sock], [], [], POLL_SECONDS)
                except (OSError, ValueError):
                    return  # closed under us
            except OSError as exc:
                if stop.is_set() or sock.fileno() < 0:
                    return
                log.debug("udp receive failed: %s", exc)  # ICMP errors from earlier sends
            except Exception:  # one bad datagram must not stop the tracker  # noqa: BLE001
                log.exception("udp request failed")

    def shutdown(self) -> None:
        """Stop the thread (within POLL_SECONDS) and close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()
