"""One peer connection: the adapter between a transport and the peer protocol's state machine.

Below it, a ``transport.Transport`` (TCP, TLS, ...) moves bytes; above it, an owner (a torrent,
or a magnet link's stand-in) decides what to ask and what to serve. The connection itself keeps
only what belongs to one link: the ``peerproto.PeerProtocol`` that knows the conversation's
state, the byte counters and rates, the clock readings that drive keep-alives and timeouts, and
the batch of bytes waiting to be written.

What the connection needs from above is declared here as two small Protocols: ``ConnectionHost``
(the node running it: loop, peer id, which torrent an info hash names) and ``PeerOwner`` (the
torrent it belongs to). Nothing here imports the engine above it.

Hot path: the transport hands over the whole receive buffer; the protocol machine returns every
complete message at once; messages we send are gathered in a list and written with one call per
loop turn, so a burst of 256 requests or 64 blocks costs one system call, not hundreds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Dict, List, Optional, Protocol, Tuple

from . import peerproto, wire
from .peerproto import PeerProtocol, PeerProtocolError
from .transport import Transport

log = logging.getLogger(__name__)

CLIENT_VERSION = "STA 0.1"
# Our Azureus-style client code ("-SX0100-..."). "ST" is SymTorrent's in libtorrent's and
# Transmission's client tables; "SX" is in neither, so both show STA's peers as "SX 0.1.0"
# rather than as another client.
CLIENT_CODE = "SX"

# Requests we queue for one peer before refusing more: libtorrent's default
# max_allowed_in_request_queue is 2000 and it advertises that as `reqq`; we advertise and enforce
# the same so a fast downloader can keep a deep pipeline over a fat link.
MAX_INCOMING_REQUESTS = 2000

# Handshake must complete within this many seconds of the TCP connect, TLS and the info-hash
# proof included (libtorrent's handshake_timeout is 10 s).
HANDSHAKE_TIMEOUT = 10.0
# A peer that tells us nothing for this long is gone: BEP 3 suggests keep-alives every two
# minutes, so 2.5 minutes of silence is a dead link (libtorrent: inactivity_timeout 600 s,
# but it also sends keep-alives; we mirror Transmission's stricter idea of idle).
IDLE_TIMEOUT = 150.0
KEEPALIVE_INTERVAL = 90.0
# Rates are smoothed over a few seconds: new = old * (1 - RATE_WEIGHT) + this second's * weight.
RATE_WEIGHT = 0.4

Address = Tuple[str, int]


class ConnectionHost(Protocol):
    """What a connection needs from the node that runs it."""
    loop: asyncio.AbstractEventLoop
    peer_id: bytes
    listen_port: int

    def owner_for(self, info_hash: bytes) -> Optional["PeerOwner"]:
        """The torrent an incoming handshake names, if we have it."""

    def connection_opened(self, conn: "PeerConnection") -> bool:
        """A stream exists; False refuses it (a limit is reached)."""

    def connection_joined(self, conn: "PeerConnection") -> None:
        """The handshake completed and the owner admitted the peer."""

    def connection_closed(self, conn: "PeerConnection") -> None: ...

    def transport_failed(self, conn: "PeerConnection", error: BaseException) -> str:
        """An encrypted link failed (``error`` is a tls.TlsError): the host decides what
        follows (a retry in plain BitTorrent) and returns it for the log line."""

    def found_self(self, address: Address) -> None:
        """We dialled our own listen address."""


class PeerOwner(Protocol):
    """What a connection needs from the torrent (or magnet link) it belongs to."""
    info_hash: bytes
    name: str

    def peer_joined(self, conn: "PeerConnection") -> bool:
        """Both handshakes are done: admit (and send what goes first, the bitfield) or refuse."""

    def extension_fields(self) -> Dict[str, Any]:
        """Torrent-specific fields of our BEP 10 handshake (metadata_size); a "without" entry
        lists extensions this owner does not speak."""

    def peer_message(self, conn: "PeerConnection", event: Any) -> None:
        """One message after the handshake (a wire event)."""

    def peer_batch_done(self, conn: "PeerConnection") -> None:
        """Every message of one received chunk was handed over: refill, serve."""

    def peer_writable(self, conn: "PeerConnection") -> None:
        """The transport's write buffer drained below its low mark."""

    def peer_left(self, conn: "PeerConnection") -> None:
        """A connection the owner admitted has closed."""


class PeerConnection:
    """One peer link, over any Transport."""

    def __init__(self, host: ConnectionHost, owner: Optional[PeerOwner] = None,
                 address: Optional[Address] = None) -> None:
        """``owner`` and ``address`` for an outgoing connection; an incoming one learns both."""
        self.host = host
        self.owner = owner
        self.incoming = owner is None
        self.address: Address = address or ("?", 0)
        self.transport: Optional[Transport] = None
        self.proto = PeerProtocol(host.peer_id, owner.info_hash if owner else None)
        self.joined = False          # handshakes done and admitted by the owner
        self.closed = False
        self.close_reason = ""
        self.error: Optional[BaseException] = None   # what a failed transport said
        self.writable = True

        # Payload byte counters (pieces only) and the rates derived from them each second.
        self.downloaded = 0
        self.uploaded = 0
        self.down_rate = 0.0
        self.up_rate = 0.0
        self._rate_mark = (0, 0)

        now = time.monotonic()
        self.connected_at = now
        self.last_received = now
        self.last_sent = now

        self._out: List[Any] = []
        self._flush_scheduled = False

    # -- what the owner reads ----------------------------------------------------------------

    @property
    def peer_id(self) -> Optional[bytes]:
        return self.proto.peer_id

    @property
    def encrypted(self) -> bool:
        return self.transport is not None and self.transport.encrypted

    @property
    def over_utp(self) -> bool:
        return self.transport is not None and self.transport.carrier == "utp"

    @property
    def am_choking(self) -> bool:
        return self.proto.am_choking

    @property
    def am_interested(self) -> bool:
        return self.proto.am_interested

    @property
    def peer_choking(self) -> bool:
        return self.proto.peer_choking

    @property
    def peer_interested(self) -> bool:
        return self.proto.peer_interested

    @property
    def fast(self) -> bool:
        """The fast extension (BEP 6) is on for this connection."""
        return self.proto.fast

    @property
    def extensions(self) -> peerproto.PeerExtensions:
        return self.proto.extensions

    def extension_name(self, event: wire.Extended) -> Optional[str]:
        """Which of our extensions (peerproto.EXTENSION_IDS) the message was sent to."""
        return self.proto.extension_name(event)

    def ut_metadata_message(self, event: wire.Extended) -> Optional[Any]:
        """The BEP 9 message in an extended message, if it is one; a malformed one closes the
        connection (and gives None)."""
        try:
            return self.proto.ut_metadata_message(event)
        except PeerProtocolError as exc:
            self.close(str(exc))
            return None

    @property
    def client_name(self) -> str:
        return self.proto.extensions.client or client_from_peer_id(self.proto.peer_id or b"")

    # -- StreamHandler: what the transport reports ----------------------------------------------

    def stream_opened(self, transport: Transport) -> None:
        # The handshake deadline and the idle clock start at the connect, not when the
        # connection object was made (a dial may wait for its TCP connect).
        self.connected_at = self.last_received = self.last_sent = time.monotonic()
        self.transport = transport
        self.address = transport.address
        if not self.host.connection_opened(self):
            self.close("connection limit reached")

    def transport_ready(self, transport: Transport) -> None:
        if not self.incoming and not self.closed:
            self.send(self.proto.send_handshake())
            self.flush()

    def stream_received(self, data: Any) -> None:
        if self.closed:
            return
        self.last_received = time.monotonic()
        try:
            events = self.proto.receive_data(data)
            for event in events:
                if self.closed:
                    return
                kind = type(event)
                if kind is wire.Piece:
                    self.downloaded += len(event.block)
                elif kind is wire.Handshake:
                    self._on_handshake(event)
                    continue
                self.owner.peer_message(self, event)  # type: ignore[union-attr]
        except (wire.WireError, PeerProtocolError) as exc:
            self.close(f"protocol error: {exc}")
            return
        if self.joined and not self.closed:
            self.owner.peer_batch_done(self)  # type: ignore[union-attr]
        self.flush()

    def writing_paused(self) -> None:
        self.writable = False

    def writing_resumed(self) -> None:
        self.writable = True
        if self.joined and not self.closed:
            self.owner.peer_writable(self)  # type: ignore[union-attr]
            self.flush()

    def transport_closed(self, reason: str, error: Optional[BaseException]) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.error = error
            if error is not None:
                reason += self.host.transport_failed(self, error)
                log.info("%s: peer %s:%s closed: %s", self._label(), *self.address, reason)
            else:
                log.info("%s: peer %s:%s dropped the connection (%s)", self._label(),
                         *self.address, reason)
        self._cleanup()

    # -- the handshake --------------------------------------------------------------------------

    def _on_handshake(self, event: wire.Handshake) -> None:
        host = self.host
        bound = self.transport.bound_info_hash if self.transport is not None else None
        if bound is not None and event.info_hash != bound:
            self.close("handshake names another torrent than the one the peer proved it knows")
            return
        if self.owner is None:
            owner = host.owner_for(event.info_hash)
            if owner is None:
                self.close("handshake for a torrent we do not have")
                return
            self.owner = owner
            self.send(self.proto.send_handshake(event.info_hash))
        if event.peer_id == host.peer_id:
            host.found_self(self.address)
            self.close("connected to ourselves")
            return
        if not self.owner.peer_joined(self):
            if not self.closed:
                self.close("refused")
            return
        self.joined = True
        fields = {"v": CLIENT_VERSION, "reqq": MAX_INCOMING_REQUESTS}
        if host.listen_port:
            fields["p"] = host.listen_port
        fields.update(self.owner.extension_fields())
        message = self.proto.send_extended_handshake(**fields)
        if message:
            self.send(message)
        host.connection_joined(self)

    def hand_over(self, owner: PeerOwner) -> None:
        """A magnet link's stand-in passes this connection to the torrent it became."""
        self.owner = owner

    # -- sending ------------------------------------------------------------------------------

    def send(self, data: Any) -> None:
        """Queue bytes; they leave in one write at the end of this loop turn."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.host.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        out, self._out = self._out, []
        if self.transport is not None and not self.closed:
            self.transport.write(out)
            self.last_sent = time.monotonic()

    def set_interested(self, interested: bool) -> None:
        message = self.proto.send_interested(interested)
        if message:
            self.send(message)

    def set_choking(self, choking: bool) -> None:
        message = self.proto.send_choking(choking)
        if message:
            self.send(message)

    def send_have(self, index: int) -> None:
        self.send(self.proto.send_have(index))

    def send_bitfield(self, raw: bytes) -> None:
        self.send(self.proto.send_bitfield(raw))

    def send_have_all(self) -> None:
        self.send(self.proto.send_have_all())

    def send_have_none(self) -> None:
        self.send(self.proto.send_have_none())

    def send_allowed_fast(self, index: int) -> None:
        self.send(self.proto.send_allowed_fast(index))

    def send_reject(self, index: int, begin: int, length: int) -> None:
        """Refuse a request (fast extension); without it, nothing is sent."""
        message = self.proto.send_reject(index, begin, length)
        if message and not self.closed:
            self.send(message)

    def send_requests(self, blocks: List[Tuple[int, int, int]]) -> None:
        self.send(self.proto.send_requests(blocks))

    def send_cancel(self, index: int, begin: int, length: int) -> None:
        if not self.closed:
            self.send(self.proto.send_cancel(index, begin, length))

    def send_block(self, index: int, begin: int, block: Any) -> None:
        """A piece message: the header, then the block's bytes as they are (no copy)."""
        self.send(self.proto.send_piece_header(index, begin, len(block)))
        self.send(block)
        self.uploaded += len(block)

    def send_extended(self, name: str, payload: bytes) -> None:
        message = self.proto.send_extended(name, payload)
        if message:
            self.send(message)

    # -- timers (the session's tick) ----------------------------------------------------------

    def tick(self, now: float, elapsed: float) -> None:
        """Once a second: rates, handshake deadline, idle timeout, keep-alive."""
        down_mark, up_mark = self._rate_mark
        self._rate_mark = (self.downloaded, self.uploaded)
        self.down_rate += ((self.downloaded - down_mark) / elapsed - self.down_rate) * RATE_WEIGHT
        self.up_rate += ((self.uploaded - up_mark) / elapsed - self.up_rate) * RATE_WEIGHT
        if not self.joined:
            if now - self.connected_at > HANDSHAKE_TIMEOUT:
                self.close("no handshake in time")
            return
        if now - self.last_received > IDLE_TIMEOUT:
            self.close("idle too long")
        elif now - self.last_sent > KEEPALIVE_INTERVAL:
            self.send(self.proto.send_keepalive())

    # -- closing ------------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.info("%s: peer %s:%s closed: %s", self._label(), *self.address, reason)
        if self.transport is not None:
            if self._out:
                try:  # last words (a `not interested`, say) go out before the close
                    self.transport.write(self._out)
                except Exception:  # the transport may already be gone; nothing to keep
                    pass
                self._out = []
            self.transport.close()
        self._cleanup()

    def _cleanup(self) -> None:
        if getattr(self, "_cleaned", False):
            return
        self._cleaned = True
        self._out = []
        if self.joined and self.owner is not None:
            self.owner.peer_left(self)
        self.host.connection_closed(self)

    def _label(self) -> str:
        return self.owner.name if self.owner is not None else "-"

    def __repr__(self) -> str:
        return f"<peer {self.address[0]}:{self.address[1]}>"


# Azureus-style peer id prefixes ("-LT2080-") of the clients a lab will meet.
_CLIENT_CODES = {
    CLIENT_CODE: "STA", "ST": "SymTorrent", "LT": "libtorrent", "lt": "libTorrent (rakshasa)", "TR": "Transmission",
    "qB": "qBittorrent", "DE": "Deluge", "UT": "uTorrent", "AZ": "Vuze", "BI": "BiglyBT",
    "KT": "KTorrent", "WW": "WebTorrent", "BC": "BitComet", "FD": "Free Download Manager",
}


def client_from_peer_id(peer_id: bytes) -> str:
    """Name the client from an Azureus-style peer id ("-TR3000-..." is Transmission 3.00)."""
    if peer_id.startswith(b"A2-"):
        # aria2: "A2-1-37-0-" for 1.37.0
        parts = peer_id[3:].split(b"-")
        version = ".".join(p.decode("ascii", "replace") for p in parts[:3] if p.isdigit())
        return f"aria2 {version}".strip()
    if len(peer_id) >= 8 and peer_id[:1] == b"-" and peer_id[7:8] == b"-":
        code = peer_id[1:3].decode("ascii", "replace")
        digits = peer_id[3:7].decode("ascii", "replace")
        name = _CLIENT_CODES.get(code, code)
        return f"{name} {'.'.join(d for d in digits if d.isalnum())}"
    return "unknown"
