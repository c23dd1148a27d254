"""The UDP tracker client (BEP 15): announce and scrape, blocking.

``announce()`` takes the same arguments as ``sta.announce.announce`` and returns the same
``AnnounceResponse``, so the announce loop dispatches on the URL's scheme alone. One exchange is
a connect (skipped while a cached connection id is fresh) and then the announce or scrape, on a
socket of its own connected to the tracker's address, so the kernel drops datagrams from anyone
else. Each request is sent again on BEP 15's schedule (``udptrackerproto.RETRY_DELAYS``) until
the tries or the caller's ``timeout`` run out; then it raises TrackerError, as for every other
failure, with one line a user can read.

Connection ids are kept in a ``ConnectionIds`` cache for BEP 15's minute, per tracker address;
the announce loop keeps one per torrent and passes it in.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable, Dict, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from sta import udptrackerproto as proto
from sta.trackerproto import DEFAULT_NUMWANT, AnnounceResponse, TrackerError

__all__ = ["announce", "scrape", "ConnectionIds", "DEFAULT_TIMEOUT"]

# The whole exchange (name lookup aside) ends within this: every send of BEP 15's schedule.
DEFAULT_TIMEOUT = float(sum(proto.RETRY_DELAYS))

# Datagrams that are not our answer (late answers to an earlier try, strays) read while waiting
# for one answer: past this the tracker is misbehaving, and the exchange fails.
MAX_STRAY_DATAGRAMS = 64

# Tracker addresses a ConnectionIds cache holds; past this the oldest is forgotten. A torrent
# has a few trackers, a magnet link's list rarely more than a few dozen.
MAX_CACHED_TRACKERS = 256

Address = Tuple[str, int]


class ConnectionIds:
    """Connection ids per tracker address, each used for CONNECTION_ID_LIFETIME seconds after
    it arrived (BEP 15). Thread-safe: announces to several trackers run at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ids: Dict[Address, Tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, address: Address) -> Optional[int]:
        with self._lock:
            entry = self._ids.get(address)
            if entry is None:
                return None
            if self._clock() >= entry[1]:
                del self._ids[address]
                return None
            return entry[0]

    def put(self, address: Address, connection_id: int) -> None:
        with self._lock:
            self._ids.pop(address, None)
            if len(self._ids) >= MAX_CACHED_TRACKERS:
                del self._ids[next(iter(self._ids))]
            self._ids[address] = (connection_id, self._clock() + proto.CONNECTION_ID_LIFETIME)

    def forget(self, address: Address) -> None:
        with self._lock:
            self._ids.pop(address, None)


def announce(url: str, *, info_hash: bytes, peer_id: bytes, port: int, uploaded: int,
             downloaded: int, left: int, event: Optional[str] = None,
             numwant: int = DEFAULT_NUMWANT, key: Union[int, str, None] = None,
             tracker_id: Optional[bytes] = None, compact: bool = True,
             timeout: float = DEFAULT_TIMEOUT, ssl_context: object = None,
             connection_ids: Optional[ConnectionIds] = None,
             retry_delays: Sequence[float] = proto.RETRY_DELAYS) -> AnnounceResponse:
    """Announce to the udp:// tracker ``url``; blocking (run it in an executor).

    The arguments are ``sta.announce.announce``'s; ``tracker_id``, ``compact`` and
    ``ssl_context`` mean nothing to a UDP tracker and are ignored. ``retry_delays`` is how long
    to wait after each send (BEP 15's schedule by default). Raises TrackerError naming ``url``.
    """
    path = _request_path(url)
    exchange = _Exchange(url, timeout, connection_ids, retry_delays)
    try:
        def build(connection_id: int, transaction_id: int) -> bytes:
            return proto.announce_request(
                connection_id, transaction_id, info_hash=info_hash, peer_id=peer_id,
                downloaded=downloaded, left=left, uploaded=uploaded, event=event,
                key=_key_number(key), num_want=numwant, port=port, request_path=path)
        answer = exchange.run(build, proto.ANNOUNCE)
    finally:
        exchange.close()
    assert isinstance(answer, AnnounceResponse)
    return answer


def scrape(url: str, info_hashes: Sequence[bytes], *, timeout: float = DEFAULT_TIMEOUT,
           connection_ids: Optional[ConnectionIds] = None,
           retry_delays: Sequence[float] = proto.RETRY_DELAYS
           ) -> Dict[bytes, Tuple[int, int, int]]:
    """Scrape the udp:// tracker ``url``: {info_hash: (complete, incomplete, downloaded)}, the
    shape of ``sta.announce.scrape``. Blocking; raises TrackerError."""
    hashes = list(dict.fromkeys(info_hashes))
    result: Dict[bytes, Tuple[int, int, int]] = {}
    exchange = _Exchange(url, timeout, connection_ids, retry_delays)
    try:
        for start in range(0, len(hashes), proto.MAX_SCRAPE_HASHES):
            batch = hashes[start:start + proto.MAX_SCRAPE_HASHES]
            answer = exchange.run(lambda cid, tid: proto.scrape_request(cid, tid, batch),
                                  proto.SCRAPE, scraped=len(batch))
            assert isinstance(answer, list)
            for info_hash, (seeders, completed, leechers) in zip(batch, answer):
                result[info_hash] = (seeders, leechers, completed)
    finally:
        exchange.close()
    return result


def _request_path(url: str) -> bytes:
    """The path and query BEP 41 sends along, none for the plain "/announce" (or no path)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return b"" if path in ("", "/", "/announce") else path.encode("utf-8", "replace")


def _key_number(key: Union[int, str, None]) -> int:
    if key is None:
        return 0
    if isinstance(key, int):
        return key & 0xFFFFFFFF
    try:
        return int(key, 16) & 0xFFFFFFFF
    except ValueError:
        return int.from_bytes(key.encode("utf-8")[-4:].rjust(4, b"\0"), "big")


class _Exchange:
    """One socket to one tracker, and the sends, waits and retries of BEP 15 over it."""

    def __init__(self, url: str, timeout: float, connection_ids: Optional[ConnectionIds],
                 retry_delays: Sequence[float]) -> None:
        self.url = url
        self.deadline = time.monotonic() + timeout
        self.ids = connection_ids if connection_ids is not None else ConnectionIds()
        self.delays = tuple(retry_delays) or proto.RETRY_DELAYS
        self.sock: Optional[socket.socket] = None
        self.address, self.ipv6 = self._open(url)

    def _open(self, url: str) -> Tuple[Address, bool]:
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if parts.scheme != "udp" or not host or not port:
            raise TrackerError("a UDP tracker URL needs udp://HOST:PORT", url)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise TrackerError(f"cannot resolve {host}: {getattr(exc, 'strerror', exc)}",
                               url) from None
        family, _, _, _, sockaddr = infos[0]
        try:
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.connect(sockaddr)
        except OSError as exc:
            self.close()
            raise TrackerError(f"cannot reach {host}: {exc.strerror or exc}", url) from None
        return (sockaddr[0], sockaddr[1]), family == socket.AF_INET6

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def run(self, build: Callable[[int, int], bytes], action: int, scraped: int = 0
            ) -> proto.Answer:
        """Connect when needed, then send ``build(connection id, transaction id)``."""
        connection_id = self.ids.get(self.address)
        if connection_id is not None:
            tid = _transaction_id()
            answer = self._request(build(connection_id, tid), tid, action, scraped, sends=1,
                                   failing=False)
            if answer is not None:
                return answer
            # No answer with the cached id: the tracker may have restarted and forgotten its
            # secret. Take a fresh id rather than spend the rest of the schedule on this one.
            self.ids.forget(self.address)
        tid = _transaction_id()
        connection_id = self._request(proto.connect_request(tid), tid, proto.CONNECT)
        assert isinstance(connection_id, int)
        self.ids.put(self.address, connection_id)
        tid = _transaction_id()
        answer = self._request(build(connection_id, tid), tid, action, scraped)
        assert answer is not None
        return answer

    def _request(self, packet: bytes, tid: int, action: int, scraped: int = 0,
                 sends: Optional[int] = None, failing: bool = True) -> Optional[proto.Answer]:
        """Send ``packet`` on the retry schedule and return the answer. With no answer: raise
        TrackerError, or return None when ``failing`` is False."""
        assert self.sock is not None
        strays = sent = 0
        for delay in self.delays[:sends]:
            try:
                self.sock.send(packet)
            except OSError as exc:
                raise self._error(exc) from None
            sent += 1
            until = min(self.deadline, time.monotonic() + delay)
            while True:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self.sock.settimeout(remaining)
                try:
                    data = self.sock.recv(proto.MAX_DATAGRAM)
                except socket.timeout:
                    break
                except OSError as exc:
                    raise self._error(exc) from None
                try:
                    answer = proto.read_response(data, tid, action, ipv6=self.ipv6,
                                                 scraped=scraped)
                except TrackerError as exc:
                    raise exc.for_url(self.url) from None
                if answer is not None:
                    return answer
                strays += 1
                if strays > MAX_STRAY_DATAGRAMS:
                    raise TrackerError(f"more than {MAX_STRAY_DATAGRAMS} datagrams that answer "
                                       "nothing we asked", self.url)
            if time.monotonic() >= self.deadline:
                break
        if not failing:
            return None
        raise TrackerError(f"no answer (timed out; sent {sent} time{'s' if sent > 1 else ''})",
                           self.url)

    def _error(self, exc: OSError) -> TrackerError:
        if isinstance(exc, ConnectionRefusedError):
            return TrackerError("connection refused (nothing listens on that UDP port)",
                                self.url)
        return TrackerError(exc.strerror or str(exc), self.url)


def _transaction_id() -> int:
    return int.from_bytes(os.urandom(4), "big")
