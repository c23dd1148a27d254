"""The STA peer link: TLS between two STA nodes, then a proof that both know the torrent.

``tls.py`` supplies the TLS layer, the contexts and the policy that decides when a link is tried;
this module is what runs inside it. The framing is fixed-size, all integers one byte:
    client -> server  MAGIC | flags | torrent_id (32) | client_nonce (32)
    server -> client  MAGIC | status | flags | server_nonce (32) | server_proof (32)
    client -> server  client_proof (32)
then the plain BitTorrent protocol (handshake with the real info hash, messages) runs inside TLS
unchanged. torrent_id = SHA-256("STA torrent id v1" | info_hash): the torrent is never named on
the wire but by a one-way hash. Not SHA-1(info_hash) or the bare info hash: a domain-separated
SHA-256 equals no value any other BitTorrent protocol sends (MSE sends SHA-1("req2" | info hash)
in clear; DHT and trackers send the info hash itself), and a server that does not have the
torrent learns nothing it can use elsewhere.

    proof = HMAC-SHA256(key=info_hash, label | client_hello | server_hello_head | binding)
    binding = SHA-256(server certificate DER) | tls-unique   (tls-unique when both sides have it)
Labels differ for the two proofs, so one side's proof is never accepted as the other's. The
certificate fingerprint is what each side sees (the client its peer's certificate, the server
its own), so a man in the middle who terminates TLS on both sides with its own certificate
cannot relay the proofs; tls-unique (the client's Finished message, which OpenSSL reports on
both sides for TLS 1.2 and 1.3) differs between its two TLS sessions even if it stole the node's
key. TLS exporters (RFC 5705, RFC 9266) would be the textbook binding, but Python's ssl module
does not expose SSL_export_keying_material.

Errors are tls.py's: ``TlsError`` and its kinds ``TlsUnsupported`` (the peer does not speak this
link: retry in plain with ``prefer``) and ``TlsAuthError`` (a failed proof: never retried).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import ssl
from typing import Callable, Iterable, NamedTuple, Optional, Union

from .tls import (ALPN_PROTOCOL, TlsAuthError, TlsError, TlsLayer, TlsUnsupported,
                  client_context, ensure_node_identity, read_certificate_der, server_context)

__all__ = [
    "torrent_id", "ChannelBinding", "ClientAuth", "ServerAuth", "SecureLink", "PeerTls",
]

# Greeting of the proof exchange: a length byte and a name, like BEP 3's handshake.
AUTH_MAGIC = b"\x0fSTA peer auth 1"
NONCE_SIZE = 32  # 256-bit nonces: no repeats in any realistic number of connections
PROOF_SIZE = 32  # HMAC-SHA256
TORRENT_ID_LABEL = b"STA torrent id v1"
CLIENT_PROOF_LABEL = b"STA peer auth 1 client proof"
SERVER_PROOF_LABEL = b"STA peer auth 1 server proof"
FLAG_TLS_UNIQUE = 0x01      # this side has the tls-unique channel binding
STATUS_OK = 0
STATUS_UNKNOWN_TORRENT = 1
CLIENT_HELLO_SIZE = len(AUTH_MAGIC) + 1 + 32 + NONCE_SIZE
SERVER_HELLO_SIZE = len(AUTH_MAGIC) + 2 + NONCE_SIZE + PROOF_SIZE
# Info hash lengths: 20 bytes for BitTorrent v1 (BEP 3), 32 for v2 (BEP 52).
INFO_HASH_SIZES = (20, 32)


def torrent_id(info_hash: bytes) -> bytes:
    """The name of a torrent on an STA link: a one-way, domain-separated hash of its info hash."""
    return hashlib.sha256(TORRENT_ID_LABEL + bytes(info_hash)).digest()


# ---------------------------------------------------------------------------------------------
# The proof exchange (sans-IO: bytes in, bytes out)

class ChannelBinding(NamedTuple):
    """What ties a proof to one TLS session, as this side sees it."""
    certificate_sha256: bytes       # SHA-256 of the server's certificate (DER)
    tls_unique: Optional[bytes]     # ssl's "tls-unique" value, None when it has none

    @property
    def flags(self) -> int:
        return FLAG_TLS_UNIQUE if self.tls_unique else 0

    def value(self, use_tls_unique: bool) -> bytes:
        return self.certificate_sha256 + ((self.tls_unique or b"") if use_tls_unique else b"")


_BAD_GREETING = "peer does not speak this version of the STA peer protocol (bad greeting)"
_MISMATCH = ("peer does not know the torrent (proof mismatch): a man in the middle, or a peer "
             "with a different torrent")


def _proof(label: bytes, info_hash: bytes, transcript: bytes, binding: bytes) -> bytes:
    # Label, hellos and fingerprint have fixed sizes; only the binding's tail varies, at the end.
    return hmac.new(info_hash, label + transcript + binding, hashlib.sha256).digest()


def _check_info_hash(info_hash: bytes) -> bytes:
    info_hash = bytes(info_hash)
    if len(info_hash) not in INFO_HASH_SIZES:
        raise TlsError(f"an info hash has 20 or 32 bytes, not {len(info_hash)}")
    return info_hash


class ClientAuth:
    """The connecting side of the proof exchange. ``hello()`` is sent first; ``receive`` takes
    the server's bytes and returns the bytes to send (the client proof) once it can."""

    def __init__(self, info_hash: bytes, binding: ChannelBinding,
                 nonce: Optional[bytes] = None) -> None:
        self.info_hash = _check_info_hash(info_hash)
        self.binding = binding
        nonce = nonce if nonce is not None else secrets.token_bytes(NONCE_SIZE)
        self._hello = (AUTH_MAGIC + bytes((binding.flags,)) + torrent_id(self.info_hash)
                       + nonce)
        self._buffer = b""
        self.refused = False  # (the server's flag; a client raises instead)
        self.complete = False
        self.leftover = b""

    def hello(self) -> bytes:
        return self._hello

    def receive(self, data: bytes) -> bytes:
        if self.complete:
            raise TlsAuthError("peer sent data after authentication finished")
        self._buffer += data
        if len(self._buffer) < len(AUTH_MAGIC) + 1:
            return b""
        if not self._buffer.startswith(AUTH_MAGIC):
            raise TlsError(_BAD_GREETING)
        status = self._buffer[len(AUTH_MAGIC)]
        if status == STATUS_UNKNOWN_TORRENT:
            raise TlsError("peer does not have this torrent")
        if status != STATUS_OK:
            raise TlsError(f"peer refused the connection (status {status})")
        if len(self._buffer) < SERVER_HELLO_SIZE:
            return b""
        if len(self._buffer) > SERVER_HELLO_SIZE:
            raise TlsAuthError("peer sent data before authentication finished")
        head, server_proof = self._buffer[:-PROOF_SIZE], self._buffer[-PROOF_SIZE:]
        server_flags = head[len(AUTH_MAGIC) + 1]
        binding = self.binding.value(bool(self.binding.flags & server_flags & FLAG_TLS_UNIQUE))
        transcript = self._hello + head
        expected = _proof(SERVER_PROOF_LABEL, self.info_hash, transcript, binding)
        if not hmac.compare_digest(expected, server_proof):
            raise TlsAuthError(_MISMATCH)
        self.complete = True
        self._buffer = b""
        return _proof(CLIENT_PROOF_LABEL, self.info_hash, transcript, binding)


class ServerAuth:
    """The accepting side. ``lookup(torrent_id)`` returns the info hash of a torrent this node
    serves, or None. ``receive`` returns the bytes to send; after the client proof checks out,
    ``complete`` is true, ``info_hash`` is set and ``leftover`` holds the bytes that followed
    (the start of the BitTorrent handshake)."""

    def __init__(self, lookup: Callable[[bytes], Optional[bytes]], binding: ChannelBinding,
                 nonce: Optional[bytes] = None) -> None:
        self._lookup = lookup
        self.binding = binding
        self._nonce = nonce if nonce is not None else secrets.token_bytes(NONCE_SIZE)
        self._buffer = b""
        self._transcript = b""
        self._binding_value = b""
        self.info_hash: Optional[bytes] = None
        self.torrent_id: Optional[bytes] = None
        self.refused = False
        self.complete = False
        self.leftover = b""

    def receive(self, data: bytes) -> bytes:
        if self.complete or self.refused:
            raise TlsAuthError("peer sent data after authentication finished")
        self._buffer += data
        if self.info_hash is None:
            return self._receive_hello()
        if len(self._buffer) < PROOF_SIZE:
            return b""
        proof, self.leftover = self._buffer[:PROOF_SIZE], self._buffer[PROOF_SIZE:]
        self._buffer = b""
        expected = _proof(CLIENT_PROOF_LABEL, self.info_hash, self._transcript,
                          self._binding_value)
        if not hmac.compare_digest(expected, proof):
            raise TlsAuthError(_MISMATCH)
        self.complete = True
        return b""

    def _receive_hello(self) -> bytes:
        if len(self._buffer) >= len(AUTH_MAGIC) and not self._buffer.startswith(AUTH_MAGIC):
            raise TlsError(_BAD_GREETING)
        if len(self._buffer) < CLIENT_HELLO_SIZE:
            return b""
        if len(self._buffer) > CLIENT_HELLO_SIZE:
            raise TlsAuthError("peer sent data before the greeting was answered")
        hello, self._buffer = self._buffer, b""
        client_flags = hello[len(AUTH_MAGIC)]
        self.torrent_id = hello[len(AUTH_MAGIC) + 1:len(AUTH_MAGIC) + 33]
        info_hash = self._lookup(self.torrent_id)
        if info_hash is None or torrent_id(info_hash) != self.torrent_id:
            self.refused = True
            return (AUTH_MAGIC + bytes((STATUS_UNKNOWN_TORRENT, 0))
                    + bytes(NONCE_SIZE + PROOF_SIZE))
        self.info_hash = _check_info_hash(info_hash)
        head = AUTH_MAGIC + bytes((STATUS_OK, self.binding.flags)) + self._nonce
        self._transcript = hello + head
        self._binding_value = self.binding.value(
            bool(self.binding.flags & client_flags & FLAG_TLS_UNIQUE))
        return head + _proof(SERVER_PROOF_LABEL, self.info_hash, self._transcript,
                             self._binding_value)


# ---------------------------------------------------------------------------------------------
# The whole link: TLS, then the proof, then BitTorrent

class SecureLink:
    """One encrypted peer connection as a sans-IO object.

    ``receive(ciphertext)`` returns BitTorrent bytes only after both sides have proved they know
    the info hash; ``send`` refuses before that, so no file data leaves unauthenticated. After
    every call, and after a TlsError too (a refusal is sent politely), write ``outgoing()``.
    The caller checks that the BitTorrent handshakes that follow name ``info_hash``, the torrent
    both sides proved they know.
    """

    encrypted = True  # (transport.Link)

    def __init__(self, context: ssl.SSLContext, server_side: bool, *,
                 info_hash: Optional[bytes] = None,
                 lookup: Optional[Callable[[bytes], Optional[bytes]]] = None,
                 certificate_der: Optional[bytes] = None) -> None:
        if server_side and (lookup is None or certificate_der is None):
            raise TlsError("a server link needs a torrent lookup and its certificate")
        if not server_side and info_hash is None:
            raise TlsError("a client link needs the info hash")
        self.tls = TlsLayer(context, server_side)
        self.server_side = server_side
        self.info_hash = _check_info_hash(info_hash) if info_hash is not None else None
        self._lookup = lookup
        self._certificate_der = certificate_der
        self._auth: Optional[Union[ClientAuth, ServerAuth]] = None
        self.authenticated = False

    @classmethod
    def client(cls, context: ssl.SSLContext, info_hash: bytes) -> "SecureLink":
        return cls(context, False, info_hash=info_hash)

    @classmethod
    def server(cls, context: ssl.SSLContext, certificate_der: bytes,
               lookup: Callable[[bytes], Optional[bytes]]) -> "SecureLink":
        return cls(context, True, lookup=lookup, certificate_der=certificate_der)

    @property
    def handshake_complete(self) -> bool:
        return self.tls.handshake_complete

    @property
    def closed(self) -> bool:
        """The peer ended TLS cleanly: close the transport."""
        return self.tls.closed

    def start(self) -> bytes:
        """The client's first bytes (TLS ClientHello)."""
        return self.tls.start()

    def receive(self, data: bytes) -> bytes:
        plain = self.tls.receive(data)
        if self.authenticated or not self.tls.handshake_complete:
            return plain
        if self._auth is None:
            self._begin()
        if not plain:
            return b""
        auth = self._auth
        assert auth is not None
        reply = auth.receive(plain)
        if reply:
            self.tls.write(reply)
        if auth.refused:
            self.tls.shutdown()
            raise TlsError("peer asked for a torrent this node does not have")
        if not auth.complete:
            return b""
        self.authenticated = True
        self.info_hash = auth.info_hash
        return auth.leftover

    def _begin(self) -> None:
        if ssl.HAS_ALPN and self.tls.alpn_protocol != ALPN_PROTOCOL:
            raise TlsUnsupported("peer speaks TLS but not the STA peer protocol (no ALPN "
                                 f"{ALPN_PROTOCOL})")
        der = self._certificate_der if self.server_side else self.tls.peer_certificate()
        if not der:
            raise TlsAuthError("peer sent no TLS certificate")
        binding = ChannelBinding(hashlib.sha256(der).digest(), self.tls.tls_unique())
        if self._lookup is not None:
            self._auth = ServerAuth(self._lookup, binding)
        elif self.info_hash is not None:
            self._auth = ClientAuth(self.info_hash, binding)
            self.tls.write(self._auth.hello())

    def receive_eof(self) -> None:
        """The transport closed: raises the TlsError that explains it, if it was not clean."""
        self.tls.receive_eof()
        if not self.authenticated:
            raise TlsError("peer closed the connection during authentication")

    def lost_error(self) -> TlsError:
        """The transport closed before the link was ready: a peer that hung up before the TLS
        handshake finished does not speak it (a plain client answering our ClientHello); one
        that hung up during the proofs does."""
        kind = TlsError if self.tls.handshake_complete else TlsUnsupported
        return kind("peer closed the connection during the TLS handshake")

    def send(self, data: bytes) -> bytes:
        if not self.authenticated:
            raise TlsError("link not authenticated yet")
        return self.tls.send(data)

    def send_many(self, buffers: Iterable[bytes]) -> bytes:
        if not self.authenticated:
            raise TlsError("link not authenticated yet")
        return self.tls.send_many(buffers)

    def outgoing(self) -> bytes:
        return self.tls.outgoing()

    def close(self) -> bytes:
        return self.tls.close()


class PeerTls:
    """The node's TLS setup for peer links: both contexts and its certificate, loaded once."""

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.client_context = client_context()
        # Read the certificate around loading it, so the DER used in proofs is the one loaded
        # even if another process renews the file at that moment.
        for _ in range(3):
            der = read_certificate_der(certfile)
            self.server_context = server_context(certfile, keyfile)
            if read_certificate_der(certfile) == der:
                break
        self.certificate_der = der
        self.fingerprint = hashlib.sha256(der).hexdigest()

    @classmethod
    def for_node(cls, state_dir: str) -> "PeerTls":
        """Key material from ``state_dir`` (made there on first use)."""
        return cls(*ensure_node_identity(state_dir))

    def connect(self, info_hash: bytes) -> SecureLink:
        return SecureLink.client(self.client_context, info_hash)

    def accept(self, lookup: Callable[[bytes], Optional[bytes]]) -> SecureLink:
        return SecureLink.server(self.server_context, self.certificate_der, lookup)
