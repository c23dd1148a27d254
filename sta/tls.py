"""TLS for STA: contexts and the node's key material, a TLS layer over memory, and the policy
that decides which way to talk to a peer. What runs inside a peer link (the info-hash proof,
``SecureLink``) is ``peerlink.py``, built on this module; MSE/PE for other clients is ``mse.py``.

How a link is chosen (the session applies it):
  * An incoming connection is told apart by its first bytes: 0x16 0x03 opens a TLS record (RFC
    8446 5.1, handshake), 0x13 "BitTorrent protocol" is a plain handshake (BEP 3), anything
    else is an MSE/PE public key (which is random). ``incoming_mode``.
  * An outgoing connection with ``prefer`` or ``require`` starts with a TLS ClientHello. Other
    clients cannot answer it: libtorrent, Transmission and aria2 read it as the first 96 bytes of
    an MSE/PE key exchange and answer with their own random key, or drop it at once when they
    only take plain BitTorrent, so the TLS handshake fails on the first answer (one round
    trip). The node then tries MSE/PE, and with ``prefer`` plain BitTorrent last: Transmission
    at its defaults and clients that require encryption answer nothing but MSE/PE, and a
    plain-first order would cost a timeout per such peer. ``PeerModeMemory`` remembers per
    address which way worked, so only the first connection to a peer pays for the attempts.
    Advertising TLS inside a plain connection (a BEP 10 key) was rejected: the plain handshake
    has already sent the info hash in clear by then, which ``require`` forbids.
"""

from __future__ import annotations

import collections
import logging
import os
import ssl
import threading
from typing import Iterable, Optional, Tuple, Union

from . import mse, x509
from .x509 import fingerprint_sha256, make_self_signed

__all__ = [
    "TlsError", "TlsUnsupported", "TlsAuthError", "ENCRYPTION_POLICIES", "DEFAULT_ENCRYPTION",
    "make_self_signed", "fingerprint_sha256", "ensure_node_identity", "client_context",
    "server_context", "https_server_context", "read_certificate_der", "TlsLayer",
    "parse_policy", "incoming_mode", "PeerModeMemory", "mse_crypto",
]

log = logging.getLogger(__name__)
_scratch = threading.local()

ENCRYPTION_POLICIES = ("require", "prefer", "off")
DEFAULT_ENCRYPTION = "prefer"

# First byte of a TLS record carrying a handshake message (RFC 8446 5.1), and of a plain
# BitTorrent handshake (the length 19 of "BitTorrent protocol", BEP 3).
TLS_HANDSHAKE_BYTE = 0x16
BITTORRENT_HANDSHAKE_BYTE = 0x13
# What follows them: a TLS record's version major (3 for SSL 3.0 to TLS 1.3), the greeting of a
# plain handshake. Checking these too tells an MSE/PE key that happens to start with 0x16 or
# 0x13 (one connection in 128 from other clients) from the real thing, as libtorrent does.
TLS_RECORD_MAJOR = 0x03
BITTORRENT_GREETING = b"\x13BitTorrent protocol"
# The ways to reach a peer, tried in this order; each policy uses a part of it.
DIAL_ORDER = ("tls", "mse", "plain")
DIAL_MODES = {"require": ("tls", "mse"), "prefer": DIAL_ORDER, "off": ("plain",)}

# ALPN name both sides offer: the server picking it is the first sign that the peer is an STA
# node speaking this version of the link, before anything about the torrent is sent.
ALPN_PROTOCOL = "sta-peer/1"

# Largest plaintext of one TLS record (RFC 8446 5.1, RFC 5246 6.2.1: 2**14).
TLS_MAX_PLAINTEXT = 16384
# Smallest read buffer: a 256 KiB socket read (what asyncio hands a protocol) plus a partial
# record. One per thread, not per connection (what receive() returns is consumed before the
# next read), so hundreds of links cost no more memory than one.
READ_BUFFER_SIZE = 256 * 1024 + TLS_MAX_PLAINTEXT
# send_many() joins small buffers (13-byte piece headers, requests) up to this size before
# encrypting, so records are full (16 KiB) rather than one per message. Each such write is cut at
# a record boundary and the tail carried into the next: a piece message is 13 bytes longer than
# a record, so cutting anywhere else would leave a short record (and one more read call on the
# receiving side) every few messages.
WRITE_COALESCE_SIZE = 64 * 1024

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

    def receive(self, data: bytes) -> Union[bytes, memoryview]:
        """Feed ciphertext; returns the plaintext it completes (b"" during the handshake).

        The plaintext is a view of a read buffer shared by every layer on this thread: it is
        valid until the next ``receive`` on the thread, so the caller consumes (or copies) it
        before it reads again. Handing it out rather than a copy saves a copy of every byte and
        a large short-lived allocation per read, whose pages the allocator would otherwise give
        back and fault in again (measured: a quarter of a TLS downloader's time).
        """
        if data:
            self._incoming.write(data)
        if not self.handshake_complete and not self._handshake():
            return b""
        # Plaintext cannot exceed the ciphertext waiting in the buffer plus the one partial
        # record OpenSSL may already hold (it holds no decrypted bytes: every call drains it),
        # so one read buffer of that size takes it all and the result is one copy out of it.
        # Every call into OpenSSL releases the GIL, letting the hashing threads in, so the loop
        # makes as few as it can: one read per record, none to ask SSL_pending().
        incoming = self._incoming
        bound = incoming.pending + TLS_MAX_PLAINTEXT
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
            if not incoming.pending:
                # OpenSSL takes a record at a time from the buffer (no read-ahead), so with it
                # empty no whole record is left: another read would only say so.
                break
        return view[:pos]

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

    def write(self, data: Union[bytes, memoryview]) -> None:
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
        """Encrypt a batch of buffers, joining small ones so records stay full: only the last
        record of the batch may be short."""
        write = self.write
        pending: list = []
        size = 0
        for buf in buffers:
            pending.append(buf)
            size += len(buf)
            if size >= WRITE_COALESCE_SIZE:
                data = b"".join(pending)  # (a single bytes object is returned as it is)
                whole = size - size % TLS_MAX_PLAINTEXT
                if whole == size:
                    write(data)
                    pending, size = [], 0
                else:
                    view = memoryview(data)
                    write(view[:whole])
                    pending, size = [view[whole:]], size - whole
        if pending:
            write(pending[0] if len(pending) == 1 else b"".join(pending))
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
# Policy: which way to talk to whom

def incoming_mode(policy: str, head: bytes) -> Optional[str]:
    """"tls", "mse" or "plain" for an incoming connection that began with ``head``, None while
    more bytes are needed to tell; raises TlsError or MseError with the reason to log when the
    policy refuses the peer's choice."""
    head = bytes(head)
    if not head:
        return None
    if head[0] == TLS_HANDSHAKE_BYTE:
        if len(head) < 2:
            return None
        if head[1] == TLS_RECORD_MAJOR:
            if policy == "off":
                raise TlsUnsupported("refused a TLS peer: encryption is off")
            return "tls"
    elif head[0] == BITTORRENT_HANDSHAKE_BYTE:
        if BITTORRENT_GREETING.startswith(head[:len(BITTORRENT_GREETING)]):
            if len(head) < len(BITTORRENT_GREETING):
                return None
            if policy == "require":
                raise TlsError("refused a plain BitTorrent peer: encryption is required")
            return "plain"
    if policy == "off":
        raise mse.MseUnsupported("refused an MSE/PE peer: encryption is off")
    return "mse"


def mse_crypto(policy: str) -> int:
    """The MSE/PE methods a policy offers (connecting) or accepts (accepting): ``require``
    wants the RC4 stream throughout; ``prefer`` takes plaintext too, and an accepting node
    picks it when offered, as libtorrent does by default (RC4 in pure Python costs ~100 ns per
    byte, and ``prefer`` is content to talk plain BitTorrent anyway)."""
    if policy == "require":
        return mse.CRYPTO_RC4
    return mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT


class PeerModeMemory:
    """Which way worked with each peer address ("tls", "mse" or "plain"), so only the first
    connection to another client pays for the attempts before it. Bounded in size and age;
    ``now`` is the caller's clock."""

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
        """"tls", "mse" or "plain" for a new connection, or None: do not connect (a known plain
        peer while encryption is required)."""
        modes = DIAL_MODES[policy]
        known = self.known(address, now)
        if known is None:
            return modes[0]
        if known in modes:
            return known
        return None if DIAL_ORDER.index(known) > DIAL_ORDER.index(modes[-1]) else modes[0]

    def record(self, address: object, mode: str, now: float) -> None:
        self._modes.pop(address, None)
        self._modes[address] = (mode, now)
        while len(self._modes) > self.capacity:
            self._modes.popitem(last=False)

    def attempt_failed(self, policy: str, address: object, mode: str, error: BaseException,
                       now: float) -> Optional[str]:
        """After an attempt in ``mode`` failed with ``error``: the mode to retry in at once, or
        None. Only a peer that does not speak ``mode`` at all moves on to the next way (and is
        remembered so); a failure after the handshake started (a wrong TLS proof, an MSE/PE
        peer without the torrent) is never retried: a relaying attacker would look like the
        first, and the second would fail again."""
        if not isinstance(error, (TlsUnsupported, mse.MseUnsupported)) or mode not in DIAL_ORDER:
            return None
        following = DIAL_ORDER[DIAL_ORDER.index(mode) + 1:]
        if not following:
            return None
        self.record(address, following[0], now)
        return following[0] if following[0] in DIAL_MODES[policy] else None
