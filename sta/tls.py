"""Encrypted peer links and HTTPS key material: TLS contexts, the node's key, a TLS layer over
memory, and the STA peer proof.

How a link is chosen (the connection code in peer.py applies it):
  * An incoming connection is told apart by its first byte: 0x16 opens a TLS record (RFC 8446
    5.1, handshake), 0x13 is the length of "BitTorrent protocol" (BEP 3). ``incoming_mode``.
  * An outgoing connection with ``prefer`` or ``require`` starts with a TLS ClientHello. Other
    clients cannot answer it: libtorrent, Transmission and aria2 read it as the first 96 bytes of
    an MSE/PE key exchange and answer with their own random key, or drop it at once when they
    only take plain BitTorrent, so the TLS handshake fails on the first answer. With ``prefer``
    the node then reconnects in plain BitTorrent, and ``PeerModeMemory`` remembers per address
    which way worked, so only the first connection to a plain peer pays for the attempt.
    Advertising TLS inside a plain connection (a BEP 10 key) was rejected: the plain handshake
    has already sent the info hash in clear by then, which ``require`` forbids.

The link, once TLS is up (``SecureLink``; the framing is fixed-size, all integers one byte):
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
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import os
import secrets
import ssl
import threading
from typing import Callable, Iterable, NamedTuple, Optional, Tuple, Union

from . import x509
from .x509 import fingerprint_sha256, make_self_signed

__all__ = [
    "TlsError", "TlsUnsupported", "TlsAuthError", "ENCRYPTION_POLICIES", "DEFAULT_ENCRYPTION",
    "make_self_signed", "fingerprint_sha256", "ensure_node_identity", "client_context",
    "server_context", "https_server_context", "read_certificate_der", "torrent_id",
    "ChannelBinding", "ClientAuth", "ServerAuth", "TlsLayer", "SecureLink", "PeerTls",
    "parse_policy", "incoming_mode", "PeerModeMemory",
]

log = logging.getLogger(__name__)
_scratch = threading.local()

ENCRYPTION_POLICIES = ("require", "prefer", "off")
DEFAULT_ENCRYPTION = "prefer"

# First byte of a TLS record carrying a handshake message (RFC 8446 5.1), and of a plain
# BitTorrent handshake (the length 19 of "BitTorrent protocol", BEP 3).
TLS_HANDSHAKE_BYTE = 0x16
BITTORRENT_HANDSHAKE_BYTE = 0x13

# ALPN name both sides offer: the server picking it is the first sign that the peer is an STA
# node speaking this version of the link, before anything about the torrent is sent.
ALPN_PROTOCOL = "sta-peer/1"

# Largest plaintext of one TLS record (RFC 8446 5.1, RFC 5246 6.2.1: 2**14).
TLS_MAX_PLAINTEXT = 16384
# Smallest read buffer: a 256 KiB socket read (what asyncio hands a protocol) plus a partial
# record. One per thread, not per connection (receive() copies out of it before returning), so
# hundreds of links cost no more memory than one.
READ_BUFFER_SIZE = 256 * 1024 + TLS_MAX_PLAINTEXT
# send_many() joins small buffers (13-byte piece headers, requests) up to this size before
# encrypting, so records are full (16 KiB) rather than one per message.
WRITE_COALESCE_SIZE = 64 * 1024

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

# The node's key material lives in this folder of its state folder.
TLS_FOLDER = "tls"

# What PeerModeMemory keeps: an hour is long enough that reconnects to a plain client skip the
# TLS attempt, short enough to notice a peer that was upgraded; the entry cap bounds memory at a
# few MB however many peers a tracker hands out.
MODE_MEMORY_SECONDS = 3600.0
MODE_MEMORY_ENTRIES = 10000


class TlsError(Exception):
    """An encrypted link failed or was refused; the message says why, for the log."""


class TlsUnsupported(TlsError):
    """The peer does not speak STA over TLS (a plain client, or an STA node with encryption
    off). With ``prefer`` the caller retries the address in plain BitTorrent."""


class TlsAuthError(TlsError):
    """The peer failed the info-hash proof: it does not know the torrent, or a man in the
    middle is relaying. Never a reason to retry in plain."""


def parse_policy(text: str) -> str:
    """Validate an ``--encryption`` value."""
    if text not in ENCRYPTION_POLICIES:
        raise TlsError(f"encryption must be one of {', '.join(ENCRYPTION_POLICIES)}, "
                       f"not {text!r}")
    return text


def torrent_id(info_hash: bytes) -> bytes:
    """The name of a torrent on an STA link: a one-way, domain-separated hash of its info hash."""
    return hashlib.sha256(TORRENT_ID_LABEL + bytes(info_hash)).digest()


# ---------------------------------------------------------------------------------------------
# Contexts and key material

def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).replace("_", " ").lower()
    return str(exc) or exc.__class__.__name__


def client_context() -> ssl.SSLContext:
    """Context for outgoing peer links. Certificates are not checked here: nodes make their own,
    and the info-hash proof (bound to this TLS session) authenticates the peer instead."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ssl.HAS_ALPN:
        context.set_alpn_protocols([ALPN_PROTOCOL])
    return context


def server_context(certfile: str, keyfile: Optional[str] = None) -> ssl.SSLContext:
    """Context for incoming peer links, with the node's certificate and key."""
    context = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), certfile, keyfile)
    if ssl.HAS_ALPN:
        context.set_alpn_protocols([ALPN_PROTOCOL])
    # No TLS 1.3 session tickets: clients never resume (each link proves itself afresh), so the
    # tickets would only cost bytes and a record after every handshake.
    context.num_tickets = 0
    return context


def https_server_context(certfile: str, keyfile: Optional[str] = None) -> ssl.SSLContext:
    """Context for the tracker's HTTPS server (TLS 1.2 and up, default ciphers)."""
    return _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), certfile, keyfile)


def _load(context: ssl.SSLContext, certfile: str, keyfile: Optional[str]) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load certificate {certfile} / key {keyfile or certfile}: "
                       f"{_ssl_reason(exc)}") from None
    return context


def read_certificate_der(certfile: str) -> bytes:
    """The DER bytes of the first certificate in a PEM file."""
    try:
        with open(certfile, "rb") as f:
            return x509.pem_to_der(f.read(), "CERTIFICATE")
    except OSError as exc:
        raise TlsError(f"cannot read certificate {certfile}: {exc.strerror}") from None
    except x509.X509Error as exc:
        raise TlsError(f"cannot read certificate {certfile}: {exc}") from None


def ensure_node_identity(state_dir: str, hosts: Iterable[str] = ()) -> Tuple[str, str]:
    """The node's (certfile, keyfile) in ``state_dir/tls``, made on first use and kept with
    owner-only permissions; the certificate is remade from the same key when it lacks one of
    ``hosts`` or is about to expire (see x509.ensure_identity)."""
    try:
        return x509.ensure_identity(os.path.join(state_dir, TLS_FOLDER), hosts)
    except x509.X509Error as exc:
        raise TlsError(str(exc)) from None


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
# TLS over memory

class TlsLayer:
    """An ``ssl.SSLObject`` between two memory buffers: ciphertext in, plaintext out, and back.

    For an asyncio protocol that has already read the first bytes itself (so ``start_tls`` does
    not fit, and the Windows proactor loop has no ``add_reader`` anyway). After every call, write
    ``outgoing()`` to the transport if it is not empty. OpenSSL does all per-byte work; Python
    runs once per 16 KiB record at most.
    """

    def __init__(self, context: ssl.SSLContext, server_side: bool,
                 server_hostname: Optional[str] = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self.server_side = server_side
        self.handshake_complete = False
        self.closed = False  # the peer ended TLS (close_notify)

    def start(self) -> bytes:
        """The client's first flight (the ClientHello)."""
        self._handshake()
        return self.outgoing()

    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            raise TlsUnsupported(f"TLS handshake failed: {_ssl_reason(exc)}") from None
        self.handshake_complete = True
        return True

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext; returns the plaintext it completes (b"" during the handshake)."""
        if data:
            self._incoming.write(data)
        if not self.handshake_complete and not self._handshake():
            return b""
        # Plaintext cannot exceed the ciphertext waiting in the buffer plus the one partial
        # record OpenSSL may already hold, so one read buffer of that size takes it all and
        # the result is one copy out of it.
        bound = self._incoming.pending + self._ssl.pending() + TLS_MAX_PLAINTEXT
        buffer = getattr(_scratch, "buffer", None)
        if buffer is None or len(buffer) < bound:
            buffer = _scratch.buffer = bytearray(max(bound, READ_BUFFER_SIZE))
        view = memoryview(buffer)
        read = self._ssl.read
        pos = 0
        while pos < bound:
            try:
                n = read(bound - pos, view[pos:])
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                n = 0
            except ssl.SSLError as exc:
                raise TlsError(f"TLS record rejected: {_ssl_reason(exc)}") from None
            if not n:  # the peer's close_notify (ssl reports it as a read of 0 bytes)
                self.closed = True
                break
            pos += n
        return bytes(view[:pos])

    def receive_eof(self) -> None:
        """The transport closed. Raises TlsUnsupported when the handshake had not finished (the
        peer hung up on our ClientHello), TlsError when data was cut short without a TLS close."""
        if self.closed:
            return
        # receive() drains everything that has arrived, so a close_notify would have been seen
        # already; asking OpenSSL now gives different answers on different Python versions.
        self._incoming.write_eof()
        if not self.handshake_complete:
            raise TlsUnsupported("peer closed the connection during the TLS handshake")
        raise TlsError("peer closed the connection without ending TLS")

    def write(self, data: bytes) -> None:
        """Encrypt ``data`` into the outgoing buffer (take it with ``outgoing()``)."""
        if not self.handshake_complete:
            raise TlsError("TLS handshake not finished")
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:
            raise TlsError(f"TLS write failed: {_ssl_reason(exc)}") from None

    def send(self, data: bytes) -> bytes:
        """Encrypt ``data``; returns the ciphertext to write (with anything else pending)."""
        self.write(data)
        return self._outgoing.read()

    def send_many(self, buffers: Iterable[bytes]) -> bytes:
        """Encrypt a batch of buffers, joining small ones so records stay full."""
        pending: list = []
        size = 0
        for buf in buffers:
            pending.append(buf)
            size += len(buf)
            if size >= WRITE_COALESCE_SIZE:
                self.write(pending[0] if len(pending) == 1 else b"".join(pending))
                pending, size = [], 0
        if pending:
            self.write(pending[0] if len(pending) == 1 else b"".join(pending))
        return self._outgoing.read()

    def outgoing(self) -> bytes:
        """Ciphertext waiting to be written to the transport."""
        return self._outgoing.read()

    def shutdown(self) -> None:
        """Queue our close_notify (the peer's is not awaited)."""
        try:
            self._ssl.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError, ValueError):
            pass

    def close(self) -> bytes:
        """Our close_notify, to write before closing the transport."""
        self.shutdown()
        return self._outgoing.read()

    def peer_certificate(self) -> Optional[bytes]:
        """The peer's certificate (DER), sent even though it is not verified; None if none."""
        return self._ssl.getpeercert(binary_form=True)

    def tls_unique(self) -> Optional[bytes]:
        try:
            return self._ssl.get_channel_binding("tls-unique") or None
        except (ValueError, ssl.SSLError):
            return None

    @property
    def alpn_protocol(self) -> Optional[str]:
        return self._ssl.selected_alpn_protocol()

    @property
    def version(self) -> Optional[str]:
        return self._ssl.version()

    @property
    def cipher(self) -> Optional[str]:
        cipher = self._ssl.cipher()
        return cipher[0] if cipher else None


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


# ---------------------------------------------------------------------------------------------
# Policy: which way to talk to whom

def incoming_mode(policy: str, first_byte: int) -> str:
    """"tls" or "plain" for an incoming connection that began with ``first_byte``; raises
    TlsError with the reason to log when the policy refuses it."""
    if first_byte == TLS_HANDSHAKE_BYTE:
        if policy == "off":
            raise TlsUnsupported("refused a TLS peer: encryption is off")
        return "tls"
    if first_byte == BITTORRENT_HANDSHAKE_BYTE:
        if policy == "require":
            raise TlsError("refused a plain BitTorrent peer: encryption is required")
        return "plain"
    raise TlsError(f"refused a peer speaking neither BitTorrent nor TLS (first byte "
                   f"{first_byte:#04x}; MSE/PE obfuscation is not supported)")


class PeerModeMemory:
    """Which way worked with each peer address, so only the first connection to a plain client
    pays for a TLS attempt. Bounded in size and age; ``now`` is the caller's clock."""

    def __init__(self, ttl: float = MODE_MEMORY_SECONDS,
                 capacity: int = MODE_MEMORY_ENTRIES) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._modes: "collections.OrderedDict[object, Tuple[str, float]]" = \
            collections.OrderedDict()

    def known(self, address: object, now: float) -> Optional[str]:
        entry = self._modes.get(address)
        if entry is None or now - entry[1] > self.ttl:
            return None
        return entry[0]

    def first_attempt(self, policy: str, address: object, now: float) -> Optional[str]:
        """"tls" or "plain" for a new connection, or None: do not connect (a known plain peer
        while encryption is required)."""
        if policy == "off":
            return "plain"
        known = self.known(address, now)
        if policy == "require":
            return None if known == "plain" else "tls"
        return known or "tls"

    def record(self, address: object, mode: str, now: float) -> None:
        self._modes.pop(address, None)
        self._modes[address] = (mode, now)
        while len(self._modes) > self.capacity:
            self._modes.popitem(last=False)

    def tls_failed(self, policy: str, address: object, error: BaseException,
                   now: float) -> bool:
        """After a TLS attempt failed with ``error``: True when the caller should retry now in
        plain BitTorrent. Only ``prefer`` retries, and only when the peer does not do TLS (a
        failed proof is never retried: that is how a relaying attacker would look)."""
        if not isinstance(error, TlsUnsupported):
            return False
        self.record(address, "plain", now)
        return policy == "prefer"
