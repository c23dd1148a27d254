"""uTP (BEP 29) on the node's UDP port: the endpoint that owns the socket, and the stream.

``UtpEndpoint`` is one asyncio datagram endpoint on the UDP port with the TCP listener's number
(one port for everything, as libtorrent does). Each datagram goes by its first bytes: a uTP
packet to the connection named by (address, connection id), a SYN from an unknown pair to a new
incoming connection (the session's connection limits decide, as for TCP), a bencoded message
(b"d...") to the DHT node sharing the socket (``dht``), and a uTP packet for no connection gets
a RESET. One timer drives every connection (the earliest ``next_timer``), and what the
connections have to send leaves once per loop turn, after a burst of datagrams was handled.

``UtpStream`` is one uTP connection as a ``transport.Transport``: the same reports to its
handler as ``transport.TcpStream``, the same links (TLS between STA nodes, MSE/PE with other
clients, chosen from an incoming stream's first bytes) through ``transport.LinkedStream``. The
protocol itself is utpproto.py (sans-IO); this module only moves its datagrams and bytes.

``TransportMemory`` is the dial policy: which transport to try first for an address, and which
to try when that one fails.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import utpproto, wire
from .transport import (WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW, IncomingChoice, Link,
                        LinkedStream, StreamHandler)

log = logging.getLogger(__name__)

Address = Tuple[str, int]
Key = Tuple[Address, int]

# SO_RCVBUF and SO_SNDBUF of the UDP socket. With the OS defaults (about 200 KiB on Linux) a
# burst of datagrams overflows the receive queue while Python handles the ones before it, and
# libtorrent itself drops datagrams at those defaults (its recv_socket_buffer_size and
# send_socket_buffer_size settings exist to raise them). The OS may cap it (net.core.rmem_max);
# then it keeps what it allows.
SOCKET_BUFFER = 4 * 1024 * 1024
# An outgoing uTP connection whose SYN is not answered in this long is given up and the peer
# dialled over TCP (libtorrent's utp_connect_timeout is 3 s).
UTP_CONNECT_TIMEOUT = 3.0
# uTP connections (incoming ones before the connection limits see them, and closing ones that
# still retransmit their FIN) at most: connlimits.MAX_CONNECTIONS (1,200) and room for those
# closing. A SYN beyond it gets a RESET.
MAX_SOCKETS = 2000
# Addresses whose transport is remembered (least recently used forgotten first).
MAX_REMEMBERED = 4096
# A timer this close to due runs now: the loop may wake a hair before the time it was set for.
TIMER_SLACK = 0.001
# Tries at a connection id that is not in use for that address before giving up.
ID_TRIES = 8
# The peer protocol's first bytes each way are the BitTorrent handshake, and the uTP packet that
# carries its end carries nothing after it. libtransmission (3.00, and 4.x alike) reads a uTP
# connection's buffer only when a packet arrives (for TCP it reads it again every bandwidth
# pulse), and its handshake stops reading at the handshake's end: what came after it in the same
# packet (our extension handshake and bitfield) stays unread until another packet comes, so a
# seed with nothing more to say is never asked for a piece.
HANDSHAKE_PACKET_END = wire.HANDSHAKE_LENGTH


class UtpTransportError(Exception):
    """A uTP connection could not be opened."""


class UtpStream(LinkedStream):
    """One uTP connection as a Transport; its endpoint drives it."""
    carrier = "utp"

    def __init__(self, endpoint: "UtpEndpoint", sock: Any, handler: StreamHandler,
                 address: Address, *, link: Optional[Link] = None,
                 choose: Optional[IncomingChoice] = None) -> None:
        super().__init__(handler, address, link=link, choose=choose)
        self.sock = sock
        self._endpoint = endpoint
        self._pending = bytearray()   # accepted from above, not yet taken by the socket
        self._writing_paused = False
        self._reading_paused = False
        self._finishing = False       # close once _pending has gone into the socket
        self._opened = False
        self._handshake_left = HANDSHAKE_PACKET_END   # peer protocol bytes before the break
        self._break_at: Optional[int] = None          # where in _pending a packet must end
        self.waiter: Optional["asyncio.Future[None]"] = None   # an outgoing connect's

    # -- Transport ----------------------------------------------------------------------------

    def write(self, chunks: List[Any]) -> None:
        if self._closed or not self._ready:
            return
        if self._handshake_left:
            data = b"".join(chunks)
            head = data[:self._handshake_left]
            self._handshake_left -= len(head)
            self._send_peer([head])
            if not self._handshake_left:
                self._end_packet()
            if len(data) == len(head):
                return
            chunks = [data[len(head):]]
        self._send_peer(chunks)

    def _send_peer(self, chunks: List[Any]) -> None:
        if self._link is None:
            self._send_raw(b"".join(chunks))
        else:
            self._send_raw(self._link.send_many(chunks))

    def _end_packet(self) -> None:
        """What was written so far ends a uTP packet (HANDSHAKE_PACKET_END)."""
        if self._pending:
            self._break_at = len(self._pending)
        else:
            self.sock.end_packet()

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._endpoint.touch(self)

    def close(self) -> None:
        """Close (FIN) after what was written has gone out. The handler closed us, so it is
        not told again."""
        if self._closed:
            return
        self._closed = True
        self._reported = True
        if not self._ready:
            # Refused (a connection limit) or given up before any peer protocol byte: a RESET
            # says so at once, and a dialler still waiting for our ST_STATE hears it too.
            self.sock.abort()
            self._endpoint.touch(self)
            return
        self._close_raw()

    # -- LinkedStream --------------------------------------------------------------------------

    def _send_raw(self, data: bytes) -> None:
        if self._finishing or not data:
            return
        self._pending += data
        self._endpoint.touch(self)

    def _close_raw(self) -> None:
        self._finishing = True
        self._endpoint.touch(self)

    # -- driven by the endpoint ----------------------------------------------------------------

    def open(self) -> None:
        """The connection exists: tell the handler, start an outgoing stream's link."""
        self._opened = True
        self.handler.stream_opened(self)  # type: ignore[arg-type]
        self._start_outgoing()

    def pump(self) -> None:
        """After the socket received or ticked: deliver what arrived, feed it what waits,
        notice its end."""
        sock = self.sock
        if not self._opened:
            if sock.connected:
                self.open()
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_result(None)
            elif sock.closed:
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_exception(UtpTransportError(
                        sock.error or "the peer refused the uTP connection"))
                return
        if not self._reading_paused or sock.closed:
            data = sock.read()
            if data and not self._closed:
                self.data_received(data)
        self._feed()
        if sock.closed and not self._closed:
            self._lost(f"uTP: {sock.error}" if sock.error else "closed by peer")

    def _feed(self) -> None:
        pending = self._pending
        sock = self.sock
        while pending and not sock.closed:
            free = sock.send_buffer_free()
            if self._break_at is not None:
                free = min(free, self._break_at)
            taken = sock.send(bytes(pending[:free])) if free > 0 else 0
            if not taken:
                break
            del pending[:taken]
            if self._break_at is not None:
                self._break_at -= taken
                if not self._break_at:
                    self._break_at = None
                    sock.end_packet()
        if self._writing_paused:
            if len(pending) <= WRITE_BUFFER_LOW and not self._closed:
                self._writing_paused = False
                self.handler.writing_resumed()
        elif len(pending) > WRITE_BUFFER_HIGH and not self._closed:
            self._writing_paused = True
            self.handler.writing_paused()
        if self._finishing and not self._pending and sock.state in ("syn_sent", "connected"):
            sock.close()


class UtpEndpoint(asyncio.DatagramProtocol):
    """The node's UDP socket: uTP connections, and the DHT node's datagrams (``dht``).
    ``incoming(address)`` gives the handler and link choice for a new incoming connection, or
    None to refuse it."""

    def __init__(self, incoming: Callable[[Address], Optional[Tuple[StreamHandler,
                                                                    IncomingChoice]]]) -> None:
        self._incoming = incoming
        self.dht: Optional[Callable[[bytes, Address], None]] = None
        self.transport: Optional[asyncio.DatagramTransport] = None
        self.loop = asyncio.get_running_loop()   # made by open(), on the running loop
        self._streams: Dict[Key, UtpStream] = {}
        self._syns: Dict[Key, Key] = {}   # (address, SYN's id) -> the connection it opened
        self._touched: Dict[UtpStream, None] = {}
        self._flush_scheduled = False
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = 0.0
        self.resets_sent = 0

    @classmethod
    async def open(cls, host: str, port: int, incoming: Callable[..., Any]) -> "UtpEndpoint":
        """Bind UDP ``host``:``port``; raises OSError when it cannot be had."""
        loop = asyncio.get_running_loop()
        _, endpoint = await loop.create_datagram_endpoint(lambda: cls(incoming),
                                                          local_addr=(host, port))
        return endpoint  # type: ignore[return-value]

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    # -- the socket ----------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        raw = transport.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                raw.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:  # the OS keeps its own size; uTP works on, less smoothly
                pass

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)

    def send(self, data: bytes, address: Address) -> None:
        """One datagram out (the DHT node's DatagramSender)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, address)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        address = (addr[0], addr[1])
        if data[:1] == b"d":
            if self.dht is not None:
                self.dht(data, address)
            return
        if not utpproto.is_utp_packet(data):
            return
        now = self.loop.time()
        key = (address, utpproto.packet_connection_id(data))
        stream = self._streams.get(key)
        if stream is None and utpproto.packet_type(data) == utpproto.ST_SYN:
            opened = self._syns.get(key)
            stream = self._streams.get(opened) if opened is not None else None
            if stream is None:
                self._accept(data, address, key, now)
                return
        if stream is None:
            if utpproto.packet_type(data) != utpproto.ST_RESET:
                self.resets_sent += 1
                self.send(utpproto.reset_for(data, now), address)
                return
            stream = self._by_send_id(key)   # a RESET may carry either id
            if stream is None:
                return
        try:
            stream.sock.receive(data, now)
        except utpproto.UtpError as exc:
            log.debug("uTP %s:%d: %s", *address, exc)
        self.touch(stream)

    def _by_send_id(self, key: Key) -> Optional[UtpStream]:
        address, send_id = key
        for (other, _), stream in self._streams.items():
            if other == address and stream.sock.send_id == send_id:
                return stream
        return None

    def _accept(self, syn: bytes, address: Address, syn_key: Key, now: float) -> None:
        made = self._incoming(address) if len(self._streams) < MAX_SOCKETS else None
        if made is None:
            self.resets_sent += 1
            self.send(utpproto.reset_for(syn, now), address)
            return
        handler, choose = made
        sock = utpproto.UtpSocket.accept(syn, now)
        key = (address, sock.recv_id)
        if key in self._streams:  # the id is taken by another connection with that address
            self.send(utpproto.reset_for(syn, now), address)
            return
        stream = UtpStream(self, sock, handler, address, choose=choose)
        self._streams[key] = stream
        self._syns[syn_key] = key
        stream.open()
        self.touch(stream)

    # -- outgoing ------------------------------------------------------------------------------

    async def connect(self, address: Address, handler: StreamHandler, link: Optional[Link],
                      timeout: float = UTP_CONNECT_TIMEOUT) -> UtpStream:
        """Open a uTP connection; the handler hears ``stream_opened`` once the peer answered.
        Raises UtpTransportError or asyncio.TimeoutError (no answer within ``timeout``)."""
        if self.transport is None or self.transport.is_closing():
            raise UtpTransportError("the UDP socket is closed")
        now = self.loop.time()
        for _ in range(ID_TRIES):
            sock = utpproto.UtpSocket.connect(now)
            key = (address, sock.recv_id)
            if key not in self._streams:
                break
        else:
            raise UtpTransportError("no free uTP connection id")
        stream = UtpStream(self, sock, handler, address, link=link)
        stream.waiter = self.loop.create_future()
        self._streams[key] = stream
        self.touch(stream)
        try:
            await asyncio.wait_for(asyncio.shield(stream.waiter), timeout)
        except BaseException:
            if not stream.waiter.done():
                stream.waiter.cancel()
            sock.abort()
            self._forget(key, stream)
            raise
        return stream

    # -- driving the connections ---------------------------------------------------------------

    def touch(self, stream: UtpStream) -> None:
        """The stream has something to do: it is pumped and flushed at the end of this turn."""
        self._touched[stream] = None
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Pump every touched connection and send what each has to send."""
        self._flush_scheduled = False
        now = self.loop.time()
        while self._touched:
            touched = list(self._touched)
            self._touched.clear()
            for stream in touched:
                self._run(stream, now)

    def _run(self, stream: UtpStream, now: float) -> None:
        stream.pump()
        sock = stream.sock
        transport = self.transport
        if transport is None:
            return
        for datagram in sock.datagrams(now):
            transport.sendto(datagram, stream.address)
        if sock.closed:
            self._forget((stream.address, sock.recv_id), stream)
        else:
            when = sock.next_timer()
            if when is not None and (self._timer is None or when < self._timer_at):
                self._set_timer(when)

    def _set_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _arm(self) -> None:
        """Set the timer to the earliest of every connection's (after the timer ran, which
        only the connections it touched re-armed)."""
        whens = [w for w in (s.sock.next_timer() for s in self._streams.values())
                 if w is not None]
        if whens and (self._timer is None or min(whens) < self._timer_at):
            self._set_timer(min(whens))

    def _on_timer(self) -> None:
        self._timer = None
        now = self.loop.time()
        for stream in list(self._streams.values()):
            when = stream.sock.next_timer()
            if when is not None and when <= now + TIMER_SLACK:
                stream.sock.tick(max(now, when))
                self._touched[stream] = None
        self.flush()
        self._arm()

    def _forget(self, key: Key, stream: UtpStream) -> None:
        if self._streams.get(key) is stream:
            del self._streams[key]
            for syn_key in [k for k, v in self._syns.items() if v == key]:
                del self._syns[syn_key]
        self._touched.pop(stream, None)

    # -- the end -------------------------------------------------------------------------------

    def close(self) -> None:
        """Send what is due (the FINs of connections just closed) and close the socket."""
        if self._flush_scheduled:
            self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for stream in list(self._streams.values()):
            if stream.waiter is not None and not stream.waiter.done():
                stream.waiter.set_exception(UtpTransportError("the UDP socket is closed"))
        self._streams.clear()
        self._syns.clear()
        if self.transport is not None:
            self.transport.close()

    @property
    def connections(self) -> int:
        return len(self._streams)


class TransportMemory:
    """Which transport to dial an address with first, and which next when that fails.

    libtorrent tries uTP first with every peer (a peer's supports_utp starts true and is
    cleared when a uTP attempt fails, after utp_connect_timeout, 3 s), and Transmission does
    the same unless the peer's uTP failed before. We try uTP first only with a peer known to
    speak it (it opened a uTP connection to us, or told so in PEX) and TCP with the rest: our
    uTP runs in Python and moves data several times slower than TCP (bench/bench_utp.py), so
    it is what we use where the peer asks for it, not what we impose. Either transport that
    fails (no answer, refused, or a TCP peer that hangs up without a word, as libtorrent does
    with incoming TCP off) is followed by one attempt over the other. Those clients dial us
    over uTP first anyway, so most connections with them run on uTP."""

    def __init__(self, tcp: bool = True, utp: bool = True) -> None:
        self.tcp = tcp
        self.utp = utp
        self._utp_speakers: "OrderedDict[Address, None]" = OrderedDict()
        self._failed: "OrderedDict[Tuple[Address, str], None]" = OrderedDict()

    def speaks_utp(self, address: Address) -> None:
        _remember(self._utp_speakers, address)
        self._failed.pop((address, "utp"), None)

    def first(self, address: Address) -> Optional[str]:
        """"utp" or "tcp" (None: neither is on)."""
        if not self.tcp:
            return "utp" if self.utp else None
        if self.utp and (address in self._utp_speakers or (address, "tcp") in self._failed) \
                and (address, "utp") not in self._failed:
            return "utp"
        return "tcp"

    def failed(self, address: Address, transport: str) -> Optional[str]:
        """``transport`` failed to reach the peer: the one to try next, or None."""
        _remember(self._failed, (address, transport))
        other = "tcp" if transport == "utp" else "utp"
        if not getattr(self, other):
            return None
        if (address, other) in self._failed:  # both failed: the next dial starts afresh
            self._failed.pop((address, other), None)
            self._failed.pop((address, transport), None)
            return None
        return other

    def succeeded(self, address: Address, transport: str) -> None:
        self._failed.pop((address, transport), None)


def _remember(memory: "OrderedDict[Any, None]", key: Any) -> None:
    memory[key] = None
    memory.move_to_end(key)
    while len(memory) > MAX_REMEMBERED:
        memory.popitem(last=False)


def stream_counts(transports: List[Any]) -> Dict[str, int]:
    """How many of the connections run on uTP and how many on TCP (for the node's stats)."""
    opened = [t for t in transports if t is not None]
    utp = sum(1 for t in opened if isinstance(t, UtpStream))
    return {"utp_peers": utp, "tcp_peers": len(opened) - utp}


__all__ = ["UtpEndpoint", "UtpStream", "UtpTransportError", "TransportMemory",
           "SOCKET_BUFFER", "UTP_CONNECT_TIMEOUT", "stream_counts"]
