"""The rules of one peer wire conversation (BEP 3, BEP 10) as a state machine, in the style of h11.

``wire.py`` is the codec: bytes to message events and back. This module adds what a conversation
remembers and forbids, with no socket and no clock:

- the handshake comes first, both ways: ours is sent before any other message of ours, and the
  peer's is the first thing it sends; an outgoing connection checks that the peer names the
  torrent we dialled it for;
- the four flags of BEP 3 (am_choking, am_interested, peer_choking, peer_interested) change
  only through this machine, so they always say what was last sent and received;
- a request that arrives while we choke the peer is dropped here (BEP 3: a choked peer's
  requests are ignored), so the torrent never sees it; with the fast extension (BEP 6, on when
  both handshakes set its bit) it is passed on instead, because it must be answered: served if
  its piece is in the peer's allowed-fast set, rejected otherwise;
- the fast extension's messages (have all, have none, reject, allowed fast, suggest) are a
  protocol error from a peer that did not negotiate it (BEP 6: "MUST close the connection");
- the peer's BEP 10 handshake is parsed once into ``PeerExtensions`` (its message ids, client
  name, request queue, listen port, metadata size); an extension id of 0 turns one off.

``receive_data(bytes)`` returns events; the ``send_*`` methods return the bytes to write. The
caller (peer.py) owns the transport, the clock and every decision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from . import ut_metadata, wire

__all__ = ["PeerProtocol", "PeerProtocolError", "PeerExtensions", "EXTENSION_IDS", "UT_METADATA",
           "DEFAULT_PEER_REQQ", "allowed_fast_set"]

# BEP 10 extensions we speak, with the message ids we ask peers to use for them (libtorrent
# uses 1 for ut_pex and 2 for ut_metadata too; any id from 1 to 255 would do).
UT_METADATA = "ut_metadata"
UT_PEX = "ut_pex"
EXTENSION_IDS: Mapping[str, int] = {UT_PEX: 1, UT_METADATA: 2}

# Peers that do not say their `reqq` are treated like Transmission's default queue.
DEFAULT_PEER_REQQ = 250
# Client names longer than this are cut: a `v` field is free text from the peer.
MAX_CLIENT_NAME = 40
# Pieces a peer may fetch from us while choked (BEP 6 allowed fast): libtorrent's default
# allowed_fast_set_size is 5, enough for a newcomer to get its first pieces to trade.
ALLOWED_FAST_SET_SIZE = 5


class PeerProtocolError(Exception):
    """The peer broke the conversation's rules (or we tried to)."""


@dataclass
class PeerExtensions:
    """What the peer's BEP 10 handshake said, parsed once."""
    ids: Dict[str, int] = field(default_factory=dict)   # extension name -> the peer's id
    client: Optional[str] = None
    reqq: int = DEFAULT_PEER_REQQ
    listen_port: Optional[int] = None
    metadata_size: Optional[int] = None
    upload_only: bool = False

    def update(self, event: wire.ExtendedHandshake) -> None:
        """BEP 10: a later handshake updates the fields it names; id 0 disables an extension."""
        for name, ext_id in event.m.items():
            if ext_id == 0:
                self.ids.pop(name, None)
            else:
                self.ids[name] = ext_id
        client = event.client
        if client:
            self.client = client[:MAX_CLIENT_NAME]
        reqq = event.reqq
        if reqq is not None:
            self.reqq = reqq
        port = event.listen_port
        if port is not None:
            self.listen_port = port
        size = event.metadata_size
        if size is not None:
            self.metadata_size = size
        if b"upload_only" in event.payload:
            self.upload_only = event.upload_only


class PeerProtocol:
    """One side of one BitTorrent conversation.

    ``info_hash`` is given for an outgoing connection (the torrent we dial for); an incoming one
    learns it from the peer's handshake and answers with ``send_handshake(info_hash)`` once the
    caller has found the torrent.
    """

    def __init__(self, our_peer_id: bytes, info_hash: Optional[bytes] = None,
                 extension_ids: Mapping[str, int] = EXTENSION_IDS) -> None:
        self.our_peer_id = our_peer_id
        self.info_hash = info_hash
        self.extension_ids = dict(extension_ids)
        # Blocks come out as views into the received chunk, not copies: the caller copies each
        # one into its piece buffer before it feeds the next chunk.
        self._reader = wire.MessageReader(expect_handshake=True, copy_blocks=False)
        self.handshake_sent = False
        self.handshake_received = False
        self.peer_id: Optional[bytes] = None
        self.reserved = b"\0" * 8
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.extensions = PeerExtensions()
        self.ignored_requests = 0

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: Any) -> List[Any]:
        """Bytes in, events out. Raises PeerProtocolError (or wire.WireError) on a broken rule;
        the connection must then be closed."""
        events = self._reader.feed(data)
        dropped = 0
        for event in events:
            kind = type(event)
            if kind is wire.Piece:
                continue
            if kind is wire.Request:
                dropped += self.am_choking and not self.fast
                continue
            handler = _STATE_CHANGES.get(kind)
            if handler is not None:
                handler(self, event)
            elif kind in _FAST_MESSAGES and not self.fast:
                raise PeerProtocolError(f"{kind.__name__} without the fast extension")
        if dropped:
            # Only we change am_choking, and not while a batch is parsed: either every request
            # of this batch came while we choke the peer, or none did.
            self.ignored_requests += dropped
            events = [e for e in events if type(e) is not wire.Request]
        return events

    def _on_handshake(self, event: wire.Handshake) -> None:
        if self.info_hash is not None and event.info_hash != self.info_hash:
            raise PeerProtocolError("handshake with the wrong info hash")
        # An incoming conversation is about the torrent the peer named; our answer must be too.
        self.info_hash = event.info_hash
        self.handshake_received = True
        self.peer_id = event.peer_id
        self.reserved = event.reserved

    def _on_choke(self, event: Any) -> None:
        self.peer_choking = True

    def _on_unchoke(self, event: Any) -> None:
        self.peer_choking = False

    def _on_interested(self, event: Any) -> None:
        self.peer_interested = True

    def _on_not_interested(self, event: Any) -> None:
        self.peer_interested = False

    def _on_ext_handshake(self, event: wire.ExtendedHandshake) -> None:
        self.extensions.update(event)

    def ut_metadata_message(self, event: wire.Extended
                            ) -> Optional[ut_metadata.MetadataMessage]:
        """A BEP 9 message sent to our ut_metadata id, decoded; None for another extension.
        Raises PeerProtocolError for a malformed one."""
        if event.ext_id != self.extension_ids.get(UT_METADATA):
            return None
        try:
            return ut_metadata.decode_metadata(event.payload)
        except ut_metadata.MetadataError as exc:
            raise PeerProtocolError(f"bad ut_metadata message: {exc}") from None

    @property
    def fast(self) -> bool:
        """BEP 6 is on: we always set its bit, so it is on when the peer set it too."""
        return bool(self.reserved[wire.FAST_BIT[0]] & wire.FAST_BIT[1])

    @property
    def supports_extensions(self) -> bool:
        return bool(self.reserved[wire.EXTENSION_BIT[0]] & wire.EXTENSION_BIT[1])

    # -- sending -----------------------------------------------------------------------------

    def send_handshake(self, info_hash: Optional[bytes] = None) -> bytes:
        """Our handshake: first thing we send. An incoming connection names the torrent now."""
        if self.handshake_sent:
            raise PeerProtocolError("handshake sent twice")
        if info_hash is not None:
            if self.info_hash is not None and info_hash != self.info_hash:
                raise PeerProtocolError("handshake for another torrent than the peer's")
            self.info_hash = info_hash
        if self.info_hash is None:
            raise PeerProtocolError("handshake before the torrent is known")
        self.handshake_sent = True
        return wire.handshake(self.info_hash, self.our_peer_id, extensions=True, fast=True)

    def _check_open(self) -> None:
        if not self.handshake_sent:
            raise PeerProtocolError("message before our handshake")

    def send_extended_handshake(self, without: Iterable[str] = (), **fields: Any) -> bytes:
        """Our BEP 10 handshake, only to a peer that set the extension bit; the extensions
        named in ``without`` are left out (a private torrent does no peer exchange)."""
        self._check_open()
        if not self.supports_extensions:
            return b""
        for name in without:
            self.extension_ids.pop(name, None)
        return wire.extended_handshake(self.extension_ids, **fields)

    def extension_name(self, event: wire.Extended) -> Optional[str]:
        """Which of our extensions an extended message was sent to, if any."""
        for name, ext_id in self.extension_ids.items():
            if ext_id == event.ext_id:
                return name
        return None

    def send_choking(self, choking: bool) -> bytes:
        """Choke or unchoke; nothing when the flag already says so."""
        self._check_open()
        if choking == self.am_choking:
            return b""
        self.am_choking = choking
        return wire.choke() if choking else wire.unchoke()

    def send_interested(self, interested: bool) -> bytes:
        self._check_open()
        if interested == self.am_interested:
            return b""
        self.am_interested = interested
        return wire.interested() if interested else wire.not_interested()

    def send_have(self, index: int) -> bytes:
        self._check_open()
        return wire.have(index)

    def send_bitfield(self, raw: bytes) -> bytes:
        self._check_open()
        return wire.bitfield(raw)

    def send_have_all(self) -> bytes:
        self._check_fast()
        return wire.have_all()

    def send_have_none(self) -> bytes:
        self._check_fast()
        return wire.have_none()

    def send_reject(self, index: int, begin: int, length: int) -> bytes:
        """A request we will not serve (BEP 6); nothing without the fast extension, where a
        dropped request is simply not answered."""
        self._check_open()
        return wire.reject(index, begin, length) if self.fast else b""

    def send_allowed_fast(self, index: int) -> bytes:
        self._check_fast()
        return wire.allowed_fast(index)

    def _check_fast(self) -> None:
        self._check_open()
        if not self.fast:
            raise PeerProtocolError("fast extension message to a peer without it")

    def send_keepalive(self) -> bytes:
        self._check_open()
        return wire.keepalive()

    def send_cancel(self, index: int, begin: int, length: int) -> bytes:
        self._check_open()
        return wire.cancel(index, begin, length)

    def send_piece_header(self, index: int, begin: int, length: int) -> bytes:
        """The header of a piece message; the block's bytes follow it unchanged (no copy)."""
        self._check_open()
        return wire.piece_header(index, begin, length)

    def send_requests(self, blocks: Iterable[Tuple[int, int, int]]) -> bytes:
        self._check_open()
        return wire.requests(blocks)

    def send_extended(self, name: str, payload: bytes) -> bytes:
        """A message of extension ``name`` under the peer's id for it; nothing when the peer
        does not speak it."""
        self._check_open()
        ext_id = self.extensions.ids.get(name)
        return wire.extended(ext_id, payload) if ext_id else b""


def allowed_fast_set(ip: str, info_hash: bytes, num_pieces: int,
                     size: int = ALLOWED_FAST_SET_SIZE) -> List[int]:
    """BEP 6's canonical allowed-fast set for a peer at ``ip`` (IPv4; none for IPv6, for which
    the BEP defines no set): the same pieces whoever computes them."""
    parts = ip.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return []
    size = min(size, num_pieces)
    x = bytes(int(p) for p in parts[:3]) + b"\0" + info_hash  # the /24 the peer is in
    pieces: List[int] = []
    while len(pieces) < size:
        x = hashlib.sha1(x).digest()
        for i in range(0, 20, 4):
            index = int.from_bytes(x[i:i + 4], "big") % num_pieces
            if index not in pieces:
                pieces.append(index)
            if len(pieces) == size:
                break
    return pieces


_FAST_MESSAGES = frozenset((wire.HaveAll, wire.HaveNone, wire.Reject, wire.AllowedFast,
                            wire.Suggest))

_STATE_CHANGES = {
    wire.Handshake: PeerProtocol._on_handshake,
    wire.Choke: PeerProtocol._on_choke,
    wire.Unchoke: PeerProtocol._on_unchoke,
    wire.Interested: PeerProtocol._on_interested,
    wire.NotInterested: PeerProtocol._on_not_interested,
    wire.ExtendedHandshake: PeerProtocol._on_ext_handshake,
}
