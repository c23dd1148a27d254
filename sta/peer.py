"""One peer connection: an asyncio protocol driving the sans-IO codec in wire.py.

The connection is mechanism only: it parses bytes into events, keeps the four state flags of
BEP 3, the requests in flight, and the byte counters. What to request and whom to unchoke are
decided by the torrent (torrent.py) and its picker and choker; the connection calls back into the
torrent for every event that changes shared state.

Hot path: ``data_received`` hands the whole receive buffer to the reader, which returns every
complete message at once; outgoing messages are gathered in a list and written with one
``transport.writelines`` per batch, so a burst of 256 requests or 64 blocks costs one system call,
not hundreds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Tuple

from . import peerlink, tls, wire
from .bitfield import Bitfield

if TYPE_CHECKING:  # pragma: no cover
    from .torrent import Torrent

log = logging.getLogger(__name__)

# Requests we queue for one peer before refusing more: libtorrent's default
# max_allowed_in_request_queue is 2000 and it advertises that as `reqq`; we advertise and enforce
# the same so a fast downloader can keep a deep pipeline over a fat link.
MAX_INCOMING_REQUESTS = 2000

# Requests we keep in flight to one peer, at most: 128 x 16 KiB = 2 MiB, several milliseconds
# at loopback speed and a full round trip on any LAN (measured on loopback: as fast as 500);
# within what every major client accepts (libtorrent 2000, Transmission 512) and clamped
# further by the peer's own `reqq`. Deeper would only add to what a crash throws away: requests
# in flight are lost with it (a kill -9 test measures that share).
MAX_OUTSTANDING_REQUESTS = 128
MIN_OUTSTANDING_REQUESTS = 16
# Seconds of transfer the request pipeline should cover at the peer's current rate (libtorrent's
# request_queue_time is 3 s).
REQUEST_QUEUE_SECONDS = 3.0
# Peers that do not say their `reqq` are treated like Transmission's default.
DEFAULT_PEER_REQQ = 250

# Upload batch per event loop turn: 64 blocks = 1 MiB. Enough to keep the socket full; small
# enough that one greedy peer cannot starve the rest of the loop.
UPLOAD_BATCH_BLOCKS = 64
# The transport's write buffer: above HIGH we stop reading blocks from disk for this peer.
# 1 MiB on top of the kernel's socket buffer keeps the link full without holding much data that
# a peer which disappears would never receive.
WRITE_BUFFER_HIGH = 1024 * 1024
WRITE_BUFFER_LOW = 256 * 1024

# Handshake must complete within this many seconds of the TCP connect (libtorrent's
# handshake_timeout is 10 s).
HANDSHAKE_TIMEOUT = 10.0

# A peer that tells us nothing for this long is gone: BEP 3 suggests keep-alives every two
# minutes, so 2.5 minutes of silence is a dead link (libtorrent: inactivity_timeout 600 s,
# but it also sends keep-alives; we mirror Transmission's stricter idea of idle).
IDLE_TIMEOUT = 150.0
KEEPALIVE_INTERVAL = 90.0

CLIENT_VERSION = "STA 0.1"

# BEP 10 extensions we speak, with the message ids we ask peers to use for them (libtorrent
# uses 2 for ut_metadata too; any id from 1 to 255 would do).
UT_METADATA = "ut_metadata"
EXTENSION_IDS = {UT_METADATA: 2}


class PeerConnection(asyncio.Protocol):
    """A TCP connection to one peer, plain BitTorrent framing."""

    def __init__(self, session: Any, torrent: Optional["Torrent"] = None,
                 address: Optional[Tuple[str, int]] = None, mode: str = "plain") -> None:
        """``torrent`` and ``address`` for an outgoing connection (``mode`` "tls" or "plain");
        an incoming one learns both, and its mode from the first byte the peer sends."""
        self.session = session
        self.torrent = torrent
        self.incoming = torrent is None
        self.address = address
        self.transport: Optional[asyncio.Transport] = None
        # TLS between STA nodes (tls.py): every byte passes through the link, and BitTorrent
        # starts inside it only once both sides proved they know the info hash.
        self.mode = mode if not self.incoming else ""
        self.link: Optional[peerlink.SecureLink] = None
        self.encrypted = False
        # Blocks come out as views into the received chunk, not copies: the torrent copies each
        # one into its piece buffer (or writes it) before data_received returns.
        self.reader = wire.MessageReader(expect_handshake=True, copy_blocks=False)
        self.peer_id: Optional[bytes] = None
        self.reserved = b"\0" * 8
        self.handshaken = False
        self.closed = False
        self.close_reason = ""

        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.bits: Optional[Bitfield] = None
        self.is_seed = False
        self.snubbed = False
        self.bad_requests = 0
        self.retry_plain = False

        # BEP 10 extension names -> the peer's message ids, and what its handshake said.
        self.extensions: Dict[str, int] = {}
        self.ext_info: Dict[bytes, Any] = {}
        self.peer_reqq = DEFAULT_PEER_REQQ

        # (index, begin) -> monotonic time the request was sent.
        self.outstanding: Dict[Tuple[int, int], float] = {}
        self.queue_target = MIN_OUTSTANDING_REQUESTS
        # Slow start, as in TCP: each block that arrives adds one request to the pipeline, so it
        # doubles every round trip until the rate stops growing; then the rate sizes it.
        self.slow_start = True
        self.upload_queue: Deque[Tuple[int, int, int]] = deque()

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
        self.last_block = now
        self.last_unchoked = 0.0

        self._out: List[bytes] = []
        self._flush_scheduled = False
        self._write_paused = False

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(  # type: ignore[attr-defined]
            high=WRITE_BUFFER_HIGH, low=WRITE_BUFFER_LOW)
        if self.address is None:
            peer = transport.get_extra_info("peername")
            self.address = (peer[0], peer[1]) if peer else ("?", 0)
        self.session.connection_opened(self)
        if self.torrent is not None and self.mode == "tls":
            self.link = self.session.peer_tls.connect(self.torrent.info_hash)
            self.transport.write(self.link.start())
        elif self.torrent is not None:
            self._send_handshake()
            self.flush()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_received = time.monotonic()
        if not self.mode:
            self._choose_mode(data[0])
            if self.closed:
                return
        if self.link is not None:
            data = self._receive_tls(data)
            if not data:
                return
        try:
            events = self.reader.feed(data)
            for event in events:
                if self.closed:
                    return
                self._dispatch(event)
        except wire.WireError as exc:
            self.close(f"protocol error: {exc}")
            return
        if self.torrent is not None and not self.closed:
            self.torrent.after_receive(self)
        self.flush()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.link is not None and not self.link.authenticated and not self.closed:
            self._tls_failed(tls.TlsError("peer closed the connection during the TLS handshake"))
        if not self.closed:
            self.closed = True
            self.close_reason = self.close_reason or (f"connection lost: {exc}" if exc else
                                                      "closed by peer")
            host, port = self.address or ("?", 0)
            log.info("%s: peer %s:%s dropped the connection (%s)",
                     self.torrent.name if self.torrent else "-", host, port, self.close_reason)
        self._cleanup()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.torrent is not None and self.upload_queue and not self.closed:
            self.serve_uploads()
            self.flush()

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue bytes; they leave in one write at the end of this loop turn."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.session.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.closed:
            if self.link is not None:
                if not self.link.authenticated:
                    return  # nothing but the proof exchange leaves before authentication
                out, self._out = self._out, []
                self.transport.write(self.link.send_many(out))
            else:
                out, self._out = self._out, []
                self.transport.writelines(out)
            self.last_sent = time.monotonic()
        elif self._out:
            self._out = []

    # -- TLS ---------------------------------------------------------------------------------

    def _choose_mode(self, first_byte: int) -> None:
        """An incoming connection: 0x13 starts plain BitTorrent, 0x16 a TLS ClientHello."""
        try:
            self.mode = tls.incoming_mode(self.session.encryption, first_byte)
        except tls.TlsError as exc:
            self.close(str(exc))
            return
        if self.mode == "tls":
            self.link = self.session.peer_tls.accept(self.session.info_hash_for_id)

    def _receive_tls(self, data: bytes) -> bytes:
        """Ciphertext in, BitTorrent bytes out (none until the proof exchange is over)."""
        link = self.link
        assert link is not None and self.transport is not None
        try:
            plain = link.receive(data)
        except tls.TlsError as exc:
            reply = link.outgoing()
            if reply:
                self.transport.write(reply)
            self._tls_failed(exc)
            return b""
        reply = link.outgoing()
        if reply:
            self.transport.write(reply)
        if link.authenticated and not self.encrypted:
            self.encrypted = True
            self.session.tls_worked(self.address)
            if not self.incoming:
                self._send_handshake()
            self.flush()
        if link.closed:
            self.close("peer closed the TLS session")
            return b""
        return plain

    def _tls_failed(self, exc: Exception) -> None:
        """A TLS attempt failed: a peer that never completed the TLS handshake does not speak
        it (a plain client answering our ClientHello); with `prefer` we dial it again in plain
        BitTorrent. A failure after the handshake (a wrong proof) is never retried: that is how
        a man in the middle looks."""
        assert self.link is not None
        unsupported = not self.link.handshake_complete or isinstance(exc, tls.TlsUnsupported)
        reason = f"encrypted link failed: {exc}"
        if not self.incoming and self.torrent is not None and self.address is not None:
            if unsupported:
                exc = tls.TlsUnsupported(str(exc))
            if self.session.tls_failed(self.torrent, self.address, exc):
                reason += "; retrying in plain BitTorrent"
                self.retry_plain = True
        self.close(reason)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        host, port = self.address or ("?", 0)
        log.info("%s: peer %s:%s closed: %s", self.torrent.name if self.torrent else "-",
                 host, port, reason)
        if self.transport is not None:
            self.flush_quietly()
            self.transport.close()
        self._cleanup()

    def flush_quietly(self) -> None:
        """Last words before closing (a `not interested`, say), through the TLS link if any."""
        if self._out and self.transport is not None:
            try:
                if self.link is None:
                    self.transport.writelines(self._out)
                elif self.link.authenticated:
                    self.transport.write(self.link.send_many(self._out))
            except Exception:  # the transport may already be gone; nothing to keep
                pass
        self._out = []

    def _cleanup(self) -> None:
        if getattr(self, "_cleaned", False):
            return
        self._cleaned = True
        self.upload_queue.clear()
        if self.torrent is not None:
            self.torrent.peer_closed(self)
        self.session.connection_closed(self)

    def _send_handshake(self) -> None:
        assert self.torrent is not None
        self.send(wire.handshake(self.torrent.info_hash, self.session.peer_id, extensions=True))

    # -- state changes we make ---------------------------------------------------------------

    def set_interested(self, interested: bool) -> None:
        if interested != self.am_interested:
            self.am_interested = interested
            self.send(wire.interested() if interested else wire.not_interested())

    def set_choking(self, choking: bool) -> None:
        if choking != self.am_choking:
            self.am_choking = choking
            if choking:
                # BEP 3: a choke discards every request the peer had queued with us.
                self.upload_queue.clear()
                self.send(wire.choke())
            else:
                self.last_unchoked = time.monotonic()
                self.send(wire.unchoke())

    def send_requests(self, blocks: List[Tuple[int, int, int]]) -> None:
        now = time.monotonic()
        outstanding = self.outstanding
        for index, begin, _length in blocks:
            outstanding[(index, begin)] = now
        self.send(wire.requests(blocks))

    def cancel_request(self, index: int, begin: int, length: int) -> None:
        if self.outstanding.pop((index, begin), None) is not None and not self.closed:
            self.send(wire.cancel(index, begin, length))

    def update_rates(self, elapsed: float) -> None:
        """Called once a second by the session: rates are smoothed over a few seconds."""
        down_mark, up_mark = self._rate_mark
        down = (self.downloaded - down_mark) / elapsed
        up = (self.uploaded - up_mark) / elapsed
        self._rate_mark = (self.downloaded, self.uploaded)
        previous = self.down_rate
        self.down_rate = self.down_rate * 0.6 + down * 0.4
        self.up_rate = self.up_rate * 0.6 + up * 0.4
        if self.slow_start and self.downloaded and self.down_rate < previous * 1.1:
            self.slow_start = False
        # Size the request pipeline for REQUEST_QUEUE_SECONDS at the current rate.
        target = int(self.down_rate * REQUEST_QUEUE_SECONDS / wire.BLOCK_SIZE)
        self.queue_target = max(MIN_OUTSTANDING_REQUESTS,
                                min(self.queue_limit, max(target, self.queue_target)))

    @property
    def queue_limit(self) -> int:
        return min(MAX_OUTSTANDING_REQUESTS, self.peer_reqq)

    # -- serving -----------------------------------------------------------------------------

    def serve_uploads(self) -> None:
        """Read queued blocks from storage and send them, a batch at a time."""
        torrent = self.torrent
        if torrent is None:
            return
        queue = self.upload_queue
        served = 0
        read_block = torrent.read_cache.read
        while queue and not self._write_paused and served < UPLOAD_BATCH_BLOCKS:
            index, begin, length = queue.popleft()
            try:
                block = read_block(index, begin, length)
            except Exception as exc:  # storage errors stop this torrent, not the process
                torrent.storage_failed(exc)
                return
            self.send(wire.piece_header(index, begin, length))
            self.send(block)
            self.uploaded += length
            torrent.uploaded += length
            served += 1
        if queue and not self._write_paused:
            # More to do: continue on a later loop turn so other peers get their share.
            self.session.loop.call_soon(self._continue_uploads)

    def _continue_uploads(self) -> None:
        if not self.closed:
            self.serve_uploads()
            self.flush()

    # -- event dispatch ----------------------------------------------------------------------

    def _dispatch(self, event: Any) -> None:
        kind = type(event)
        if kind is wire.Piece:
            self._on_piece(event)
            return
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event)

    def _on_handshake(self, event: "wire.Handshake") -> None:
        session = self.session
        if self.torrent is None:
            torrent = session.torrent_for(event.info_hash)
            if torrent is None:
                self.close("handshake for a torrent we do not have")
                return
            self.torrent = torrent
            self._send_handshake()
        elif event.info_hash != self.torrent.info_hash:
            self.close("handshake with the wrong info hash")
            return
        if self.link is not None and event.info_hash != self.link.info_hash:
            self.close("handshake names another torrent than the one the peer proved it knows")
            return
        if event.peer_id == session.peer_id:
            session.mark_self(self.address)
            self.close("connected to ourselves")
            return
        self.peer_id = event.peer_id
        self.reserved = event.reserved
        if not self.torrent.accept_peer(self):
            return
        self.handshaken = True
        if event.supports_extensions:
            fields = self.torrent.ext_handshake_fields(self)
            self.send(wire.extended_handshake(session.extension_ids(), **fields))
        bits = self.torrent.have_bits()
        if bits is not None and bits.count:
            self.send(wire.bitfield(bits.to_bytes()))

    def _require_handshake(self) -> bool:
        if not self.handshaken:
            self.close("message before the handshake")
            return False
        return True

    def _on_keepalive(self, event: Any) -> None:
        pass

    def _on_choke(self, event: Any) -> None:
        if self._require_handshake():
            self.peer_choking = True
            self.torrent.peer_choked_us(self)

    def _on_unchoke(self, event: Any) -> None:
        if self._require_handshake():
            self.peer_choking = False
            self.torrent.peer_unchoked_us(self)

    def _on_interested(self, event: Any) -> None:
        if self._require_handshake():
            self.peer_interested = True
            self.torrent.peer_interest_changed(self)

    def _on_not_interested(self, event: Any) -> None:
        if self._require_handshake():
            self.peer_interested = False
            self.upload_queue.clear()
            self.torrent.peer_interest_changed(self)

    def _on_have(self, event: "wire.Have") -> None:
        if self._require_handshake():
            self.torrent.peer_have(self, event.index)

    def _on_bitfield(self, event: "wire.Bitfield") -> None:
        if self._require_handshake():
            self.torrent.peer_bitfield(self, event.bits)

    def _on_request(self, event: "wire.Request") -> None:
        if self._require_handshake():
            self.torrent.peer_request(self, event.index, event.begin, event.length)

    def _on_cancel(self, event: "wire.Cancel") -> None:
        if self.handshaken:
            try:
                self.upload_queue.remove((event.index, event.begin, event.length))
            except ValueError:
                pass

    def _on_piece(self, event: "wire.Piece") -> None:
        if self._require_handshake():
            self.last_block = self.last_received
            if self.slow_start and self.queue_target < self.queue_limit:
                self.queue_target += 1
            self.torrent.peer_block(self, event.index, event.begin, event.block)

    def _on_ext_handshake(self, event: "wire.ExtendedHandshake") -> None:
        if not self._require_handshake():
            return
        payload = event.payload
        self.ext_info = payload
        m = payload.get(b"m")
        if isinstance(m, dict):
            for name, ext_id in m.items():
                if isinstance(name, bytes) and isinstance(ext_id, int):
                    key = name.decode("latin-1")
                    if ext_id == 0:
                        self.extensions.pop(key, None)  # BEP 10: id 0 disables an extension
                    elif 0 < ext_id < 256:
                        self.extensions[key] = ext_id
        reqq = payload.get(b"reqq")
        if isinstance(reqq, int) and reqq > 0:
            self.peer_reqq = reqq
        self.torrent.peer_extended_handshake(self)

    def _on_extended(self, event: "wire.Extended") -> None:
        if self._require_handshake():
            self.torrent.peer_extended(self, event.ext_id, event.payload)

    def ut_metadata_message(self, ext_id: int, payload: bytes) -> Optional["wire.MetadataMessage"]:
        """A BEP 9 message sent to our ut_metadata id, decoded; None for another extension or
        (after closing the connection) a malformed one."""
        if ext_id != EXTENSION_IDS[UT_METADATA]:
            return None
        try:
            return wire.decode_metadata(payload)
        except wire.WireError as exc:
            self.close(f"bad ut_metadata message: {exc}")
            return None

    # -- description for status views --------------------------------------------------------

    @property
    def client_name(self) -> str:
        v = self.ext_info.get(b"v") if self.ext_info else None
        if isinstance(v, bytes) and v:
            return v.decode("utf-8", "replace")[:40]
        return client_from_peer_id(self.peer_id or b"")

    def __repr__(self) -> str:
        host, port = self.address or ("?", 0)
        return f"<peer {host}:{port}>"


_HANDLERS = {
    wire.Handshake: PeerConnection._on_handshake,
    wire.KeepAlive: PeerConnection._on_keepalive,
    wire.Choke: PeerConnection._on_choke,
    wire.Unchoke: PeerConnection._on_unchoke,
    wire.Interested: PeerConnection._on_interested,
    wire.NotInterested: PeerConnection._on_not_interested,
    wire.Have: PeerConnection._on_have,
    wire.Bitfield: PeerConnection._on_bitfield,
    wire.Request: PeerConnection._on_request,
    wire.Cancel: PeerConnection._on_cancel,
    wire.ExtendedHandshake: PeerConnection._on_ext_handshake,
    wire.Extended: PeerConnection._on_extended,
}

# Azureus-style peer id prefixes ("-LT2080-") of the clients a lab will meet.
_CLIENT_CODES = {
    "ST": "STA", "LT": "libtorrent", "lt": "libTorrent (rakshasa)", "TR": "Transmission",
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
