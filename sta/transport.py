"""The transport seam: the narrow byte stream a peer connection runs on.

A peer connection (peer.py) needs only this from the layer below it: write bytes, pause and
resume reading, close, the peer's address, and whether the stream is encrypted. ``Transport``
says so as a Protocol; whatever sits below (plain TCP, TLS between STA nodes, MSE/PE with other
clients, uTP in utp.py) implements it and reports upward through ``StreamHandler``.

``TcpStream`` is the TCP implementation: an asyncio protocol on one socket. An outgoing stream
is plain, TLS or MSE/PE from the start (the dialler chose); an incoming one lets its first bytes
decide (a plain BitTorrent handshake, a TLS ClientHello, or anything else: an MSE/PE key). An
encrypted stream runs through a ``Link``, a sans-IO filter (``peerlink.SecureLink`` for TLS,
``mse.MseLink`` for MSE/PE), and reports itself ready only once the link's handshake is over;
nothing of the peer protocol crosses before that. A link that settles on no encryption at all
(MSE/PE's plaintext method) steps aside, and the stream runs as plain TCP from then on.
``LinkedStream`` holds all of that apart from the socket, so uTP streams (utp.py) share it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Callable, Iterable, List, Optional, Protocol, Tuple

from . import mse, tls

log = logging.getLogger(__name__)

Address = Tuple[str, int]

# The socket's write buffer: above HIGH the connection stops producing (reading blocks from
# disk for this peer). 1 MiB on top of the kernel's buffer keeps a fast link full without
# holding much data that a peer which disappears would never receive.
WRITE_BUFFER_HIGH = 1024 * 1024
WRITE_BUFFER_LOW = 256 * 1024
# CPython 3.12.0-3.12.7 and 3.13.0 have a writelines() that never calls pause_writing
# (gh-127655): there a full buffer would grow without bound, so those versions join the chunks
# and write once (what writelines itself did before 3.12).
_WRITELINES_PAUSES = not ((3, 12, 0) <= sys.version_info[:3] <= (3, 12, 7)
                          or sys.version_info[:3] == (3, 13, 0))
# An incoming stream's first bytes are kept until they tell the protocol apart; a plain
# BitTorrent handshake's greeting (20 bytes) is the longest prefix that takes.
MAX_CHOICE_BYTES = 20
# Errors a link raises: the connection fails with them (tls.TlsError or mse.MseError).
LINK_ERRORS = (tls.TlsError, mse.MseError)


class Transport(Protocol):
    """What a peer connection may do with its stream."""
    address: Address
    incoming: bool
    encrypted: bool
    # The info hash an encrypted stream proved both sides know (None for plain streams): the
    # peer protocol's handshake must name the same torrent.
    bound_info_hash: Optional[bytes]
    carrier: str   # what carries the bytes: "tcp" or "utp"

    def write(self, chunks: List[Any]) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


class StreamHandler(Protocol):
    """What a transport reports to the connection above it."""

    def stream_opened(self, transport: Transport) -> None:
        """The connection exists (before any TLS handshake): count it, start its deadline."""

    def transport_ready(self, transport: Transport) -> None:
        """The stream carries peer protocol bytes from now on (after TLS authentication)."""

    def stream_received(self, data: Any) -> None: ...

    def writing_paused(self) -> None: ...

    def writing_resumed(self) -> None: ...

    def transport_closed(self, reason: str, error: Optional[BaseException]) -> None:
        """The stream is gone; ``error`` is a tls.TlsError or mse.MseError when an encrypted
        link failed (its kind says whether the peer speaks that protocol at all)."""


class Link(Protocol):
    """A sans-IO filter between the socket and the peer protocol: TLS or MSE/PE. After every
    call, write ``outgoing()``. Raises one of LINK_ERRORS."""
    authenticated: bool     # the handshake is over: peer protocol bytes flow
    encrypted: bool         # what flows is encrypted (False: the link steps aside once ready)
    closed: bool            # the peer ended the link cleanly
    info_hash: Optional[bytes]

    @property
    def handshake_complete(self) -> bool:
        """The peer speaks this link's protocol; a failure before this means it does not."""

    def start(self) -> bytes: ...

    def receive(self, data: bytes) -> bytes: ...

    def outgoing(self) -> bytes: ...

    def send_many(self, buffers: Iterable[Any]) -> bytes: ...

    def lost_error(self) -> Exception:
        """What the peer closing the connection before the link was ready means."""


# Returned by an IncomingChoice that needs more of the stream's first bytes.
UNDECIDED = object()
# An incoming stream's choice from its first bytes: a Link, None for plain, or UNDECIDED;
# raises one of LINK_ERRORS when the policy refuses the connection.
IncomingChoice = Callable[[bytes], Any]


class LinkedStream:
    """What every stream shares, whatever carries its bytes (TCP here, uTP in utp.py): the
    choice of an incoming stream's link from its first bytes, the link's handshake, and the
    reports to the handler. A subclass moves the raw bytes: ``_send_raw`` and ``_close_raw``,
    and hands what arrives to ``data_received``."""

    def __init__(self, handler: StreamHandler, address: Optional[Address] = None, *,
                 link: Optional[Link] = None, choose: Optional[IncomingChoice] = None) -> None:
        """Outgoing: ``address`` and ``link`` (a connecting Link, or None for plain).
        Incoming: ``choose`` picks the link from the first bytes."""
        self.handler = handler
        self.address: Address = address or ("?", 0)
        self.incoming = choose is not None
        self.encrypted = False
        self.bound_info_hash: Optional[bytes] = None
        self._choose = choose
        self._link: Optional[Link] = link
        self._head = b""  # an incoming stream's first bytes, until they choose the link
        self._decided = not self.incoming
        self._ready = False
        self._closed = False
        self._reported = False

    def _send_raw(self, data: bytes) -> None:
        raise NotImplementedError

    def _close_raw(self) -> None:
        raise NotImplementedError

    def _start_outgoing(self) -> None:
        """The carrier is connected: an outgoing stream starts its link (or is ready)."""
        if self._closed or self.incoming:
            return
        if self._link is not None:
            self._send_raw(self._link.start())
        else:
            self._become_ready()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if not self._decided:
            data = self._decide(data)
            if not data:
                return
        link = self._link
        if link is None:
            self.handler.stream_received(data)
            return
        data = self._receive_link(link, data)
        if data and not self._closed:
            self.handler.stream_received(data)
        if link.closed and not self._closed:
            # What came with the peer's close_notify was delivered first.
            self._fail("peer closed the TLS session", None)

    def _decide(self, data: bytes) -> bytes:
        """Let the first bytes choose the link; returns them once chosen (b"" until then)."""
        head = self._head + data
        assert self._choose is not None
        try:
            choice = self._choose(head[:MAX_CHOICE_BYTES])
        except LINK_ERRORS as exc:
            self._fail(str(exc), exc)
            return b""
        if choice is UNDECIDED and len(head) < MAX_CHOICE_BYTES:
            self._head = head
            return b""
        self._head = b""
        self._decided = True
        self._link = None if choice is UNDECIDED else choice
        if self._link is None:
            self._become_ready()
        return head

    def _lost(self, reason: str) -> None:
        """The carrier is gone (``reason`` says how, for a stream past its link)."""
        link = self._link
        if link is not None and not link.authenticated and not self._closed:
            # The link says whether the peer speaks its protocol at all (a plain client that
            # hangs up on our ClientHello or MSE key does not) or failed half-way.
            error = link.lost_error()
            self._report(f"encrypted link failed: {error}", error)
        else:
            self._report(reason, None)
        self._closed = True

    def _report(self, reason: str, error: Optional[BaseException]) -> None:
        if not self._reported:
            self._reported = True
            self.handler.transport_closed(reason, error)

    def _become_ready(self) -> None:
        self._ready = True
        self.handler.transport_ready(self)  # type: ignore[arg-type]

    def _receive_link(self, link: Link, data: bytes) -> bytes:
        """Link bytes in, peer protocol bytes out (none until the link's handshake is over)."""
        try:
            plain = link.receive(data)
        except LINK_ERRORS as exc:
            reply = link.outgoing()
            if reply:
                self._send_raw(reply)
            if isinstance(exc, tls.TlsError) and not link.handshake_complete and \
                    not isinstance(exc, tls.TlsUnsupported):
                exc = tls.TlsUnsupported(str(exc))  # never finished the TLS handshake
            self._fail(f"encrypted link failed: {exc}", exc)
            return b""
        reply = link.outgoing()
        if reply:
            self._send_raw(reply)
        if link.authenticated and not self._ready:
            self.encrypted = link.encrypted
            self.bound_info_hash = link.info_hash
            if not link.encrypted:
                self._link = None  # (MSE/PE plaintext) plain from here on
            self._become_ready()
        return plain

    def _fail(self, reason: str, error: Optional[BaseException]) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_raw()
        self._report(reason, error)


class TcpStream(LinkedStream, asyncio.Protocol):
    """One TCP connection as a Transport, optionally through a Link (TLS or MSE/PE)."""
    carrier = "tcp"

    def __init__(self, handler: StreamHandler, address: Optional[Address] = None, *,
                 link: Optional[Link] = None, choose: Optional[IncomingChoice] = None) -> None:
        super().__init__(handler, address, link=link, choose=choose)
        self._raw: Optional[asyncio.Transport] = None

    # -- Transport ----------------------------------------------------------------------------

    def write(self, chunks: List[Any]) -> None:
        raw = self._raw
        if raw is None or self._closed or not self._ready:
            return
        if self._link is None:
            if _WRITELINES_PAUSES:
                raw.writelines(chunks)
            else:
                raw.write(b"".join(chunks))
        else:
            raw.write(self._link.send_many(chunks))

    def pause_reading(self) -> None:
        if self._raw is not None and not self._closed:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._raw is not None and not self._closed:
            self._raw.resume_reading()

    def close(self) -> None:
        """Close after what was written has gone out. The handler closed us, so it is not told
        again."""
        if self._closed:
            return
        self._closed = True
        self._reported = True
        if self._raw is not None:
            self._raw.close()

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw: asyncio.Transport = transport  # type: ignore[assignment]
        self._raw = raw
        raw.set_write_buffer_limits(high=WRITE_BUFFER_HIGH, low=WRITE_BUFFER_LOW)
        if self.incoming:
            peer = raw.get_extra_info("peername")
            self.address = (peer[0], peer[1]) if peer else ("?", 0)
        self.handler.stream_opened(self)
        self._start_outgoing()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._lost(f"connection lost: {exc}" if exc else "closed by peer")

    def pause_writing(self) -> None:
        self.handler.writing_paused()

    def resume_writing(self) -> None:
        self.handler.writing_resumed()

    def _send_raw(self, data: bytes) -> None:
        assert self._raw is not None
        self._raw.write(data)

    def _close_raw(self) -> None:
        if self._raw is not None:
            self._raw.close()
