"""The transport seam: the narrow byte stream a peer connection runs on.

A peer connection (peer.py) needs only this from the layer below it: write bytes, pause and
resume reading, close, the peer's address, and whether the stream is encrypted. ``Transport``
says so as a Protocol; whatever sits below (plain TCP, TLS between STA nodes, and later uTP or
protocol encryption) implements it and reports upward through ``StreamHandler``.

``TcpStream`` is the TCP implementation: an asyncio protocol on one socket. An outgoing stream
is plain or TLS from the start (the dialler chose); an incoming one lets its first byte decide
(0x13 starts plain BitTorrent, 0x16 a TLS ClientHello). With TLS, a ``peerlink.SecureLink``
filters every byte, and the stream reports itself ready only once both sides proved they know
the info hash; nothing of the peer protocol crosses before that.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Callable, List, Optional, Protocol, Tuple

from . import tls

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


class Transport(Protocol):
    """What a peer connection may do with its stream."""
    address: Address
    incoming: bool
    encrypted: bool
    # The info hash an encrypted stream proved both sides know (None for plain streams): the
    # peer protocol's handshake must name the same torrent.
    bound_info_hash: Optional[bytes]

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
        """The stream is gone; ``error`` is a tls.TlsError when an encrypted link failed."""


# An incoming stream's choice after its first byte: a SecureLink for TLS, None for plain;
# raises tls.TlsError when the policy refuses the connection.
IncomingChoice = Callable[[int], Optional[Any]]


class TcpStream(asyncio.Protocol):
    """One TCP connection as a Transport, optionally through a TLS SecureLink."""

    def __init__(self, handler: StreamHandler, address: Optional[Address] = None, *,
                 link: Any = None, choose: Optional[IncomingChoice] = None) -> None:
        """Outgoing: ``address`` and ``link`` (a client SecureLink, or None for plain).
        Incoming: ``choose`` picks the link from the first byte."""
        self.handler = handler
        self.address: Address = address or ("?", 0)
        self.incoming = choose is not None
        self.encrypted = False
        self.bound_info_hash: Optional[bytes] = None
        self._choose = choose
        self._link = link
        self._decided = not self.incoming
        self._ready = False
        self._closed = False
        self._reported = False
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
        if self._closed or self.incoming:
            return
        if self._link is not None:
            raw.write(self._link.start())
        else:
            self._become_ready()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if not self._decided:
            self._decided = True
            try:
                assert self._choose is not None
                self._link = self._choose(data[0])
            except tls.TlsError as exc:
                self._fail(str(exc), exc)
                return
            if self._link is None:
                self._become_ready()
        link = self._link
        if link is None:
            self.handler.stream_received(data)
            return
        data = self._receive_tls(data)
        if data and not self._closed:
            self.handler.stream_received(data)
        if link.closed and not self._closed:
            # What came with the peer's close_notify was delivered first.
            self._fail("peer closed the TLS session", None)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        link = self._link
        if link is not None and not link.authenticated and not self._closed:
            # A peer that hung up before the TLS handshake finished does not speak it (a plain
            # client answering our ClientHello); one that hung up during the proofs does.
            kind = tls.TlsError if link.handshake_complete else tls.TlsUnsupported
            error = kind("peer closed the connection during the TLS handshake")
            self._report(f"encrypted link failed: {error}", error)
        else:
            self._report(f"connection lost: {exc}" if exc else "closed by peer", None)
        self._closed = True

    def _report(self, reason: str, error: Optional[BaseException]) -> None:
        if not self._reported:
            self._reported = True
            self.handler.transport_closed(reason, error)

    def pause_writing(self) -> None:
        self.handler.writing_paused()

    def resume_writing(self) -> None:
        self.handler.writing_resumed()

    # -- TLS -----------------------------------------------------------------------------------

    def _become_ready(self) -> None:
        self._ready = True
        self.handler.transport_ready(self)

    def _receive_tls(self, data: bytes) -> bytes:
        """Ciphertext in, peer protocol bytes out (none until the proof exchange is over)."""
        link = self._link
        raw = self._raw
        assert link is not None and raw is not None
        try:
            plain = link.receive(data)
        except tls.TlsError as exc:
            reply = link.outgoing()
            if reply:
                raw.write(reply)
            if not link.handshake_complete and not isinstance(exc, tls.TlsUnsupported):
                exc = tls.TlsUnsupported(str(exc))  # never finished the TLS handshake
            self._fail(f"encrypted link failed: {exc}", exc)
            return b""
        reply = link.outgoing()
        if reply:
            raw.write(reply)
        if link.authenticated and not self._ready:
            self.encrypted = True
            self.bound_info_hash = link.info_hash
            self._become_ready()
        return plain

    def _fail(self, reason: str, error: Optional[BaseException]) -> None:
        if self._closed:
            return
        self._closed = True
        if self._raw is not None:
            self._raw.close()
        self._report(reason, error)
