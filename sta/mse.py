"""Message Stream Encryption (MSE/PE), the obfuscation other BitTorrent clients speak.

The Azureus/Vuze "Message Stream Encryption" specification, as libtorrent, Transmission,
qBittorrent, rtorrent and aria2 implement it. A (the connecting side) and B exchange
Diffie-Hellman keys over a 768-bit prime, then:

    1 A->B  Ya | PadA
    2 B->A  Yb | PadB
    3 A->B  SHA1('req1' S) | SHA1('req2' SKEY) xor SHA1('req3' S) |
            E(VC | crypto_provide | len(PadC) | PadC | len(IA)) | E(IA)
    4 B->A  E(VC | crypto_select | len(PadD) | PadD) | payload
    5 A->B  payload

S is the shared secret (96 bytes, big-endian), SKEY the info hash, VC eight zero bytes, E() RC4
keyed with SHA1('keyA' S SKEY) from A to B and SHA1('keyB' S SKEY) from B to A, each stream's
first 1024 bytes thrown away. crypto_provide is a bit field (1 plaintext, 2 RC4); B picks one
bit. With plaintext picked, only the handshake (and IA) is RC4; the payload goes in the clear.
Every pad is at most 512 bytes, which bounds how far each side scans for the other's marker
(SHA1('req1' S) for B, E(VC) for A).

``MseHandshake`` is the state machine (bytes in, bytes out, an ``Established`` result);
``MseLink`` is the whole link as ``transport.TcpStream`` uses it, the same shape as the TLS
``peerlink.SecureLink``. ``RC4`` is pure Python and the hot path: the keystream is made a whole
256-byte round at a time (the index i runs over a precomputed order, so it costs no arithmetic)
and XORed into whole buffers as big integers, so Python runs ~6 operations per byte and none for
the XOR. Sans-IO: randomness comes from the caller (``os.urandom`` by default), no clock.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterable, List, NamedTuple, Optional

__all__ = [
    "MseError", "MseUnsupported", "RC4", "Established", "MseHandshake", "MseLink",
    "CRYPTO_PLAINTEXT", "CRYPTO_RC4", "skey_hash",
]

# The group of the specification: a 768-bit safe prime (the Oakley group 1 prime) and 2.
PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3621"
    "0000000000090563", 16)
GENERATOR = 2
KEY_SIZE = 96  # bytes of Ya, Yb and S
# Private keys of 160 bits: the specification asks for at least 128 and says more than 180 adds
# nothing; Transmission and rtorrent use 160, libtorrent 768 (which only costs time).
PRIVATE_KEY_BYTES = 20
VC = bytes(8)
CRYPTO_PLAINTEXT = 0x01
CRYPTO_RC4 = 0x02
METHOD_NAMES = {CRYPTO_PLAINTEXT: "plaintext", CRYPTO_RC4: "RC4"}
# The specification's bound on every pad; libtorrent and Transmission refuse longer ones.
MAX_PAD = 512
# Bytes of each RC4 stream thrown away before use (the specification; RC4's first bytes leak).
RC4_DISCARD = 1024
HASH_SIZE = 20  # SHA-1
# The first bytes of a stream that other parts of STA read as something else: a plain
# BitTorrent handshake (0x13) and a TLS record (0x16). A's public key never starts with them, so
# even an STA node that looked at the first byte alone would see MSE.
_AMBIGUOUS_FIRST_BYTES = (0x13, 0x16)

_KEYSTREAM_ORDER = tuple(range(1, 256)) + (0,)  # i's values over one 256-byte round


class MseError(Exception):
    """The MSE/PE handshake failed; the message says why, for the log."""


class MseUnsupported(MseError):
    """The peer does not speak MSE/PE (it never answered with a key, or not with the markers):
    with ``prefer`` the caller retries in plain BitTorrent."""


def skey_hash(info_hash: bytes) -> bytes:
    """What B looks a torrent up by: SHA1('req2' | info hash)."""
    return hashlib.sha1(b"req2" + bytes(info_hash)).digest()


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def _xor(data: bytes, key: bytes) -> bytes:
    n = len(data)
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class RC4:
    """An RC4 stream with the first ``discard`` bytes of keystream thrown away.

    ``crypt(data)`` encrypts or decrypts (the same operation) and continues the stream."""

    def __init__(self, key: bytes, discard: int = RC4_DISCARD) -> None:
        s = list(range(256))
        j = 0
        length = len(key)
        for i in range(256):
            j = (j + s[i] + key[i % length]) & 255
            s[i], s[j] = s[j], s[i]
        self._s = s
        self._j = 0
        self._spare = b""  # keystream made but not used yet (the tail of the last round)
        if discard:
            self.keystream(discard)

    def keystream(self, n: int) -> bytes:
        """The next ``n`` bytes of keystream."""
        spare = self._spare
        if n <= len(spare):
            self._spare = spare[n:]
            return spare[:n]
        rounds = (n - len(spare) + 255) >> 8
        s = self._s
        j = self._j
        out: List[int] = []
        put = out.append
        order = _KEYSTREAM_ORDER
        for _ in range(rounds):
            for i in order:
                a = s[i]
                j = (j + a) & 255
                b = s[j]
                s[i] = b
                s[j] = a
                put(s[(a + b) & 255])
        self._j = j
        made = spare + bytes(out)
        self._spare = made[n:]
        return made[:n]

    def crypt(self, data: bytes) -> bytes:
        if not data:
            return b""
        return _xor(data, self.keystream(len(data)))


class Established(NamedTuple):
    """The handshake is over: which method B picked, the torrent, and what came after it."""
    method: int                 # CRYPTO_RC4 or CRYPTO_PLAINTEXT
    info_hash: bytes
    initial_payload: bytes      # A's IA, decrypted (B's side; empty on A's)
    remainder: bytes            # bytes that followed the handshake, as received
    encryptor: RC4              # our outgoing stream (used after the handshake for RC4)
    decryptor: RC4              # the peer's stream

    @property
    def method_name(self) -> str:
        return METHOD_NAMES.get(self.method, str(self.method))


def choose_method(provide: int, allowed: int) -> int:
    """B's pick: plaintext when A offers it and we allow it (what libtorrent does unless
    prefer_rc4 is set: RC4 costs time and protects little), otherwise RC4; 0 for none."""
    common = provide & allowed
    if common & CRYPTO_PLAINTEXT:
        return CRYPTO_PLAINTEXT
    if common & CRYPTO_RC4:
        return CRYPTO_RC4
    return 0


class MseHandshake:
    """One side of the handshake as a state machine.

    A: ``MseHandshake(True, info_hash=..., provide=...)``; send ``start()``. B:
    ``MseHandshake(False, lookup=..., allowed=...)``; ``lookup(skey_hash)`` returns the info
    hash of a torrent we have, or None. Feed every received chunk to ``receive``, which returns
    the bytes to send; ``result`` is set once the handshake is over. Raises MseError.
    """

    def __init__(self, initiator: bool, *, info_hash: Optional[bytes] = None,
                 lookup: Optional[Callable[[bytes], Optional[bytes]]] = None,
                 provide: int = CRYPTO_PLAINTEXT | CRYPTO_RC4,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if initiator and info_hash is None:
            raise MseError("the connecting side needs the info hash")
        if not initiator and lookup is None:
            raise MseError("the accepting side needs a torrent lookup")
        if not provide & (CRYPTO_PLAINTEXT | CRYPTO_RC4):
            raise MseError("no crypto method to offer")
        self.initiator = initiator
        self.info_hash = bytes(info_hash) if info_hash is not None else None
        self.provide = provide  # what A offers, or what B accepts
        self._lookup = lookup
        self._random = random_bytes
        while True:
            self._private = int.from_bytes(random_bytes(PRIVATE_KEY_BYTES), "big") | 1
            self.public_key = pow(GENERATOR, self._private, PRIME).to_bytes(KEY_SIZE, "big")
            if not initiator or self.public_key[0] not in _AMBIGUOUS_FIRST_BYTES:
                break
        self._buffer = b""
        self._secret = b""
        self._state = "key"
        self._need = 0  # bytes the current state waits for (after the scan)
        self._method = 0
        self._encryptor: Optional[RC4] = None
        self._decryptor: Optional[RC4] = None
        self._ia = b""
        self._vc_marker = b""
        self.peer_key_received = False
        self.synced = False
        self.result: Optional[Established] = None

    def _pad(self) -> bytes:
        return self._random(int.from_bytes(self._random(2), "big") % (MAX_PAD + 1))

    def start(self) -> bytes:
        """A's first message: Ya | PadA (B sends nothing first)."""
        return self.public_key + self._pad() if self.initiator else b""

    def receive(self, data: bytes) -> bytes:
        if self.result is not None:
            raise MseError("handshake already finished")
        self._buffer += data
        out: List[bytes] = []
        step = self._initiator_step if self.initiator else self._responder_step
        while self.result is None:
            reply = step()
            if reply is None:
                break
            out.append(reply)
        return b"".join(out)

    # -- both sides -------------------------------------------------------------------------

    def _take(self, n: int) -> Optional[bytes]:
        if len(self._buffer) < n:
            return None
        head, self._buffer = self._buffer[:n], self._buffer[n:]
        return head

    def _read_key(self) -> bool:
        key = self._take(KEY_SIZE)
        if key is None:
            return False
        peer = int.from_bytes(key, "big")
        if not 1 < peer < PRIME - 1:
            raise MseUnsupported("peer sent no valid MSE/PE public key")
        self.peer_key_received = True
        self._secret = pow(peer, self._private, PRIME).to_bytes(KEY_SIZE, "big")
        return True

    def _scan(self, marker: bytes, what: str) -> bool:
        """Skip the peer's pad up to ``marker``; False while it may still come."""
        found = self._buffer.find(marker, 0, MAX_PAD + len(marker))
        if found < 0:
            if len(self._buffer) >= MAX_PAD + len(marker):
                raise MseUnsupported(f"no {what} within {MAX_PAD} bytes of the peer's key")
            return False
        self._buffer = self._buffer[found + len(marker):]
        self.synced = True
        return True

    def _keys(self, info_hash: bytes) -> None:
        s = self._secret
        key_a = RC4(_sha1(b"keyA", s, info_hash))
        key_b = RC4(_sha1(b"keyB", s, info_hash))
        self._encryptor, self._decryptor = (key_a, key_b) if self.initiator else (key_b, key_a)

    def _finish(self, info_hash: bytes) -> None:
        assert self._encryptor is not None and self._decryptor is not None
        remainder, self._buffer = self._buffer, b""
        self.result = Established(self._method, info_hash, self._ia, remainder,
                                  self._encryptor, self._decryptor)

    # -- A -----------------------------------------------------------------------------------

    def _initiator_step(self) -> Optional[bytes]:
        assert self.info_hash is not None
        if self._state == "key":
            if not self._read_key():
                return None
            self._keys(self.info_hash)
            assert self._encryptor is not None and self._decryptor is not None
            s = self._secret
            self._vc_marker = self._decryptor.crypt(VC)
            self._state = "sync"
            # PadC empty, IA empty: the BitTorrent handshake follows once B has chosen.
            body = VC + self.provide.to_bytes(4, "big") + bytes(2) + bytes(2)
            return (_sha1(b"req1", s) + _xor(skey_hash(self.info_hash), _sha1(b"req3", s))
                    + self._encryptor.crypt(body))
        if self._state == "sync":
            if not self._scan(self._vc_marker, "encrypted verification constant"):
                return None
            self._state = "select"
        if self._state == "select":
            head = self._take(6)
            if head is None:
                return None
            assert self._decryptor is not None
            head = self._decryptor.crypt(head)
            self._method = int.from_bytes(head[:4], "big")
            self._need = int.from_bytes(head[4:], "big")
            if self._method not in METHOD_NAMES or not self._method & self.provide:
                raise MseError(f"peer chose crypto method {self._method:#x}, which was not "
                               f"offered")
            if self._need > MAX_PAD:
                raise MseError(f"peer's PadD is {self._need} bytes (at most {MAX_PAD})")
            self._state = "pad"
        pad = self._take(self._need)
        if pad is None:
            return None
        assert self._decryptor is not None
        self._decryptor.crypt(pad)
        self._finish(self.info_hash)
        return b""

    # -- B -----------------------------------------------------------------------------------

    def _responder_step(self) -> Optional[bytes]:
        if self._state == "key":
            if not self._read_key():
                return None
            self._state = "sync"
            return self.public_key + self._pad()
        if self._state == "sync":
            if not self._scan(_sha1(b"req1", self._secret), "key exchange hash"):
                return None
            self._state = "skey"
        if self._state == "skey":
            return self._read_skey()
        if self._state == "provide":
            return self._read_provide()
        if self._state == "padc":
            return self._read_padc()
        return self._read_ia()

    def _read_skey(self) -> Optional[bytes]:
        obscured = self._take(HASH_SIZE)
        if obscured is None:
            return None
        assert self._lookup is not None
        info_hash = self._lookup(_xor(obscured, _sha1(b"req3", self._secret)))
        if info_hash is None:
            raise MseError("peer asked for a torrent this node does not have")
        self.info_hash = bytes(info_hash)
        self._keys(self.info_hash)
        self._state = "provide"
        return b""

    def _read_provide(self) -> Optional[bytes]:
        head = self._take(len(VC) + 6)
        if head is None:
            return None
        assert self._decryptor is not None
        head = self._decryptor.crypt(head)
        if head[:len(VC)] != VC:
            raise MseError("peer's verification constant is wrong (not the same keys)")
        offered = int.from_bytes(head[8:12], "big")
        self._need = int.from_bytes(head[12:], "big")
        if self._need > MAX_PAD:
            raise MseError(f"peer's PadC is {self._need} bytes (at most {MAX_PAD})")
        self._method = choose_method(offered, self.provide)
        if not self._method:
            wanted = " and ".join(n for b, n in METHOD_NAMES.items() if b & self.provide)
            raise MseError(f"peer offers crypto {offered:#x}; this node takes {wanted} only")
        self._state = "padc"
        return b""

    def _read_padc(self) -> Optional[bytes]:
        tail = self._take(self._need + 2)
        if tail is None:
            return None
        assert self._decryptor is not None
        self._need = int.from_bytes(self._decryptor.crypt(tail)[-2:], "big")
        self._state = "ia"
        return b""

    def _read_ia(self) -> Optional[bytes]:
        ia = self._take(self._need)
        if ia is None:
            return None
        assert self._decryptor is not None and self._encryptor is not None
        assert self.info_hash is not None
        self._ia = self._decryptor.crypt(ia)
        reply = self._encryptor.crypt(VC + self._method.to_bytes(4, "big") + bytes(2))
        self._finish(self.info_hash)
        return reply


class MseLink:
    """One MSE/PE connection as the transport's link: the handshake, then the chosen method.

    ``receive(bytes)`` returns peer protocol bytes (none before the handshake is over); write
    ``outgoing()`` after every call. ``send_many`` encrypts (RC4) or joins (plaintext) what the
    peer protocol sends. ``info_hash`` is the torrent the handshake named: the BitTorrent
    handshakes that follow must name the same one.
    """

    closed = False  # MSE has no close message of its own

    def __init__(self, handshake: MseHandshake) -> None:
        self.handshake = handshake
        self.authenticated = False
        self.encrypted = False
        self.info_hash: Optional[bytes] = handshake.info_hash
        self.method = 0
        self._out: List[bytes] = []
        self._encryptor: Optional[RC4] = None
        self._decryptor: Optional[RC4] = None

    @classmethod
    def initiator(cls, info_hash: bytes, provide: int) -> "MseLink":
        return cls(MseHandshake(True, info_hash=info_hash, provide=provide))

    @classmethod
    def responder(cls, lookup: Callable[[bytes], Optional[bytes]], allowed: int) -> "MseLink":
        return cls(MseHandshake(False, lookup=lookup, provide=allowed))

    @property
    def handshake_complete(self) -> bool:
        """The peer speaks MSE/PE: a failure from here on is not a reason to go plain."""
        return self.handshake.peer_key_received

    def start(self) -> bytes:
        return self.handshake.start()

    def receive(self, data: bytes) -> bytes:
        if self.authenticated:
            decryptor = self._decryptor
            return decryptor.crypt(data) if decryptor is not None else data
        reply = self.handshake.receive(data)
        if reply:
            self._out.append(reply)
        result = self.handshake.result
        if result is None:
            return b""
        self.authenticated = True
        self.info_hash = result.info_hash
        self.method = result.method
        if result.method == CRYPTO_RC4:
            self.encrypted = True
            self._encryptor = result.encryptor
            self._decryptor = result.decryptor
            return result.initial_payload + result.decryptor.crypt(result.remainder)
        return result.initial_payload + result.remainder

    def lost_error(self) -> MseError:
        """What the peer closing the connection before the handshake was over means."""
        if not self.handshake.peer_key_received:
            return MseUnsupported("peer closed the connection without answering the MSE/PE "
                                  "key exchange")
        return MseError("peer closed the connection during the MSE/PE handshake")

    def send_many(self, buffers: Iterable[bytes]) -> bytes:
        if not self.authenticated:
            raise MseError("link not established yet")
        data = b"".join(buffers)
        encryptor = self._encryptor
        return encryptor.crypt(data) if encryptor is not None else data

    def outgoing(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)
