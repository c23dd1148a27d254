"""The node's Local Service Discovery (BEP 14) sockets: announcing our torrents on the subnet
and hearing the announces of others.

One receiving socket per address family, bound to UDP port 6771 (shared with every other
client on the machine), joined to the group on every interface that is up and takes multicast
(or on the --bind address's interface only), and one sending socket per interface, with a
time to live of 1 (the subnet only; Transmission sends with 1, libtorrent with 32) and
multicast loopback on, so two nodes on one machine hear each other. IPv6 is used where the
host has it and skipped quietly where it has not. The messages and the timing are lsd.py's;
this module only moves datagrams. What to announce, and what to do with a peer heard of, are
the owner's two callbacks (the session's).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import sys
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from .lsd import (GROUP_V4, GROUP_V6, LSD_PORT, AnnounceSchedule, DatagramGate, LsdError,
                  decode_announce, encode_announce, make_cookie, peer_host)

log = logging.getLogger(__name__)

# How often the announce loop looks for a due torrent (a newly added one wakes it at once).
POLL_INTERVAL = 1.0
# BEP 14 asks for a time to live above 1 only to reach beyond the subnet; a lab LAN is one
# subnet, and Transmission's lpd_ttlSameSubnet is 1.
MULTICAST_TTL = 1
# Interface flags (Linux's /sys/class/net/NAME/flags): up, and takes multicast.
IFF_UP = 0x1
IFF_MULTICAST = 0x1000
ANY_ADDRESSES = ("", "0.0.0.0", "::")

Address = Tuple[str, int]


class LsdServiceError(Exception):
    """Local service discovery could not use a socket."""


class GroupLink(NamedTuple):
    """One interface to join and send on: its name for the log, the membership request, and
    the outgoing-interface value for the socket option."""
    label: str
    membership: bytes
    outgoing: Any


def multicast_interfaces() -> List[Tuple[str, int]]:
    """(name, index) of every interface that is up and takes multicast; where the flags cannot
    be read (not Linux) every interface is tried and the joins that fail are skipped."""
    try:
        pairs = socket.if_nameindex()
    except (AttributeError, OSError):
        return []
    usable = []
    for index, name in pairs:
        try:
            with open(f"/sys/class/net/{name}/flags", encoding="ascii") as f:
                flags = int(f.read().strip(), 16)
        except (OSError, ValueError):
            flags = IFF_UP | IFF_MULTICAST
        if flags & IFF_UP and flags & IFF_MULTICAST:
            usable.append((name, index))
    return usable


def ipv4_links(bind: str) -> List[GroupLink]:
    """Where to join the IPv4 group: the --bind address (or host name), or every interface;
    OSError when the name does not resolve."""
    group = socket.inet_aton(GROUP_V4)
    if bind not in ANY_ADDRESSES:
        if ":" in bind:
            return []
        local = socket.inet_aton(socket.gethostbyname(bind))
        return [GroupLink(bind, group + local, local)]
    if sys.platform.startswith("linux"):
        # struct ip_mreqn: group, local address (any), interface index; Linux takes the same
        # structure for the outgoing interface.
        return [GroupLink(name, struct.pack("=4s4si", group, bytes(4), index),
                     struct.pack("=4s4si", group, bytes(4), index))
                for name, index in multicast_interfaces()]
    addresses = _host_ipv4_addresses() or ["0.0.0.0"]
    return [GroupLink(a, group + socket.inet_aton(a), socket.inet_aton(a)) for a in addresses]


def _host_ipv4_addresses() -> List[str]:
    """This machine's IPv4 addresses as its name resolves (macOS and Windows list every
    interface's this way)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def ipv6_links(bind: str) -> List[GroupLink]:
    """Where to join the IPv6 group: every interface, or the system's choice with an IPv6
    --bind address (none with an IPv4 one)."""
    group = socket.inet_pton(socket.AF_INET6, GROUP_V6)
    if bind not in ANY_ADDRESSES:
        return [GroupLink(bind, group + struct.pack("@I", 0), 0)] if ":" in bind else []
    return [GroupLink(name, group + struct.pack("@I", index), index)
            for name, index in multicast_interfaces()]


class _Sender:
    """One interface's sending socket."""

    def __init__(self, family: int, link: GroupLink, bind: str) -> None:
        self.label = link.label
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            if family == socket.AF_INET:
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, link.outgoing)
                self.destination: Tuple[Any, ...] = (GROUP_V4, LSD_PORT)
            else:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS,
                                     MULTICAST_TTL)
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, link.outgoing)
                self.destination = (GROUP_V6, LSD_PORT, 0, link.outgoing)
            if bind not in ANY_ADDRESSES:
                self.sock.bind((bind, 0))   # announces leave from the --bind address
        except OSError:
            self.sock.close()
            raise

    def send(self, data: bytes) -> bool:
        """Send one datagram; False when it could not leave. An interface that fails (no
        address yet, unplugged) is kept: the next announce may go through."""
        try:
            self.sock.sendto(data, self.destination)
            return True
        except BlockingIOError:
            return False   # a full send buffer: this announce is lost, the next one comes
        except OSError as exc:
            log.debug("local discovery: cannot send on %s: %s", self.label, exc.strerror)
            return False


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, received: Callable[[bytes, Tuple[Any, ...]], None]) -> None:
        self._received = received

    def datagram_received(self, data: bytes, addr: Tuple[Any, ...]) -> None:
        self._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("local discovery: receive error: %s", exc)


def _listening_socket(family: int) -> socket.socket:
    """The family's socket on port 6771, shared with other clients on this machine."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT") and not sys.platform.startswith("linux"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # BSD and macOS
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(("::", LSD_PORT))
        else:
            # Bound to the group where the system allows it, so unicast to 6771 stays out.
            sock.bind(("" if sys.platform == "win32" else GROUP_V4, LSD_PORT))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class LsdService:
    """Local service discovery for one node. ``wants(info_hash)`` says whether a torrent is to
    be announced and take peers now (active, not private); ``found(info_hash, address)`` gets
    each peer heard of for a torrent that wants them."""

    def __init__(self, found: Callable[[bytes, Address], None], wants: Callable[[bytes], bool],
                 *, bind: str = "0.0.0.0", clock: Callable[[], float] = time.monotonic,
                 cookie: Optional[str] = None) -> None:
        self._found = found
        self._wants = wants
        self.bind = bind
        self._clock = clock
        self.cookie = cookie or make_cookie(random.SystemRandom().getrandbits(32))
        self.schedule = AnnounceSchedule(clock())
        self.gate = DatagramGate(clock())
        self.listen_port = 0
        self.joined: List[str] = []       # "IPv4 eth0" and the like, for the log and status
        self.sent = 0
        self.heard = 0
        self._senders: List[Tuple[_Sender, bool]] = []   # (sender, is IPv6)
        self._transports: List[asyncio.BaseTransport] = []
        self._task: Optional["asyncio.Task[None]"] = None
        self._wake: Optional[asyncio.Event] = None

    async def start(self, listen_port: int) -> bool:
        """Join the groups and start announcing; False (with a warning) when no group could be
        joined, and the node runs on without local discovery."""
        self.listen_port = listen_port
        loop = asyncio.get_running_loop()
        errors: Dict[str, str] = {}
        for name, family, links_for in (("IPv4", socket.AF_INET, ipv4_links),
                                        ("IPv6", socket.AF_INET6, ipv6_links)):
            try:
                links = links_for(self.bind)
                if not links:
                    continue   # IPv6 with an IPv4 --bind address, say
                await self._open_family(loop, family, links)
            except (OSError, LsdServiceError) as exc:
                errors[name] = f"{name}: {getattr(exc, 'strerror', None) or exc}"
                log.debug("local discovery: %s", errors[name])
        if not self._transports:
            log.warning("local peer discovery is off: %s",
                        "; ".join(errors.values()) or "no interface takes multicast")
            return False
        if "IPv4" in errors:
            # IPv6 alone goes on quietly; IPv4 is what most LANs use, so its loss is said.
            log.warning("local peer discovery is off on %s", errors["IPv4"])
        log.info("local peer discovery on %s", ", ".join(self.joined))
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._announce_loop())
        return True

    async def _open_family(self, loop: asyncio.AbstractEventLoop, family: int,
                           links: List[GroupLink]) -> None:
        if family == socket.AF_INET6 and not socket.has_ipv6:
            raise LsdServiceError("no IPv6 on this host")
        sock = _listening_socket(family)
        joined = []
        level, option = ((socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP) if family == socket.AF_INET
                         else (socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP))
        for link in links:
            try:
                sock.setsockopt(level, option, link.membership)
                self._senders.append((_Sender(family, link, self.bind), family == socket.AF_INET6))
                joined.append(link.label)
            except OSError as exc:
                log.debug("local discovery: cannot use %s: %s", link.label, exc.strerror)
        if not joined:
            sock.close()
            raise LsdServiceError("no interface takes multicast")
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self.receive), sock=sock)
        self._transports.append(transport)
        name = "IPv4" if family == socket.AF_INET else "IPv6"
        self.joined += [f"{name} {label}" for label in joined]

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        for sender, _ in self._senders:
            sender.sock.close()
        self._senders.clear()

    # -- torrents ----------------------------------------------------------------------------

    def add(self, info_hash: bytes) -> None:
        """Announce a torrent from now on, the first time at once."""
        self.schedule.add(info_hash, self._clock())
        if self._wake is not None:
            self._wake.set()

    def remove(self, info_hash: bytes) -> None:
        self.schedule.remove(info_hash)

    # -- announcing --------------------------------------------------------------------------

    async def _announce_loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            self.announce_due()
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)
            except asyncio.TimeoutError:
                pass

    def announce_due(self) -> None:
        """Send an announce for each torrent the schedule says is due, on every interface."""
        for info_hash in self.schedule.due(self._clock(), self._wants):
            for sender, ipv6 in self._senders:
                if sender.send(encode_announce([info_hash], self.listen_port, self.cookie, ipv6)):
                    self.sent += 1

    # -- hearing -----------------------------------------------------------------------------

    def receive(self, data: bytes, source: Tuple[Any, ...]) -> None:
        """One datagram from the group: each torrent it names that wants peers gets the sender."""
        if not self.gate.allow(str(source[0]), self._clock()):
            return
        try:
            announce = decode_announce(data)
        except LsdError as exc:
            log.debug("local discovery: dropped a datagram from %s: %s", source[0], exc)
            return
        host = peer_host(source)
        if announce.cookie.lower() == self.cookie or host is None:
            return   # our own announce, looped back; or an address we cannot dial
        self.heard += 1
        for info_hash in announce.info_hashes:
            if info_hash in self.schedule and self._wants(info_hash):
                log.debug("local discovery: %s:%d has %s", host, announce.port, info_hash.hex())
                self._found(info_hash, (host, announce.port))

    def status(self) -> Dict[str, Any]:
        return {"interfaces": list(self.joined), "sent": self.sent, "heard": self.heard,
                "dropped": self.gate.dropped}
