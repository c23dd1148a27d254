"""A self-signed X.509 certificate and its RSA key, made in pure Python.

A lab machine may have neither the ``openssl`` command nor any third-party package, yet TLS needs
a key and a certificate. This module makes both with the standard library only: RSA key
generation (FIPS 186-5 appendix B.3.3 style: random primes with the top two bits set, a sieve of
small primes, then Miller-Rabin), the certificate's fields in DER (written with ``sta.der``), and
a sha256WithRSAEncryption signature (PKCS#1 v1.5, RFC 8017). The output is PEM that
``ssl.SSLContext.load_cert_chain`` accepts.

The certificate is its own issuer (a self-signed root, as ``openssl req -x509`` makes by default)
so that a client can trust exactly this file as its CA (``cafile``), and it carries the
extensions that OpenSSL's strict checks (on by default in Python 3.13) ask of such a root:
critical basicConstraints, keyUsage, subject and authority key identifiers, a non-empty
subjectAltName. pathLenConstraint 0 keeps the harm of a stolen key to that one trust: it may not
vouch for an intermediate CA.

``sta.der``'s small reader reads back what this module writes (the key, the names and dates of a
certificate); a file it cannot read is an X509Error like any other.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import ipaddress
import logging
import math
import os
import re
import secrets
from typing import Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple, TypeVar, Union

from .der import (
    DerError, der_bit_string, der_boolean, der_explicit, der_integer, der_null, der_octet_string,
    der_oid, der_sequence, der_set, der_time, der_utf8_string, expect_tag, read_children,
    read_tlv, tlv,
)

__all__ = [
    "X509Error", "RsaKey", "generate_rsa_key", "make_self_signed", "make_certificate",
    "fingerprint_sha256", "pem_to_der", "der_to_pem", "load_private_key", "certificate_info",
    "CertificateInfo", "private_key_pem", "ensure_identity",
]

log = logging.getLogger(__name__)

# RSA modulus size. 2048 bits is the floor of NIST SP 800-57 for use past 2030 and what every TLS
# stack accepts; larger keys would take many seconds to make in pure Python for no practical gain
# on a lab network.
RSA_BITS = 2048
# The public exponent every library uses (FIPS 186-5 requires 2**16 < e < 2**256).
RSA_EXPONENT = 65537
# Miller-Rabin rounds for each 1024-bit prime: FIPS 186-5 table B.1 gives 5 rounds for p and q of
# 1024 bits at an error probability of 2**-112, the security strength of a 2048-bit modulus.
MILLER_RABIN_ROUNDS = 5
# Small primes sieved out before any Miller-Rabin round. Up to 2**16, the sieve removes about 90%
# of the odd candidates, so a 1024-bit prime costs about 40 modular exponentiations (~0.15 s in
# CPython) instead of about 360.
SIEVE_LIMIT = 1 << 16
# Odd candidates in one sieve window. Primes near 2**1024 are about 710 apart, so one window of
# 4096 odd numbers (a span of 8192) holds one with overwhelming probability.
SIEVE_WINDOW = 4096
# Candidate windows tried before giving up: a safety bound, never reached in practice.
MAX_PRIME_WINDOWS = 1000
# A certificate's notBefore is set this far in the past, so a machine whose clock is a little
# behind the one that made the certificate still accepts it.
BACKDATE = datetime.timedelta(days=2)
# RFC 5280 (ub-common-name): a commonName has at most 64 characters.
MAX_COMMON_NAME = 64
# A certificate lists at most this many names; a self-made certificate for a lab needs a handful.
MAX_HOSTS = 64

# Object identifiers (RFC 8017, RFC 5280).
OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_SHA256_WITH_RSA = "1.2.840.113549.1.1.11"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_COMMON_NAME = "2.5.4.3"
OID_ORGANIZATION = "2.5.4.10"
OID_SUBJECT_KEY_ID = "2.5.29.14"
OID_KEY_USAGE = "2.5.29.15"
OID_SUBJECT_ALT_NAME = "2.5.29.17"
OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_AUTHORITY_KEY_ID = "2.5.29.35"
OID_EXT_KEY_USAGE = "2.5.29.37"
OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
OID_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"

ORGANIZATION = "STA"
# The node's own key material (ensure_identity).
CERT_FILE = "node-cert.pem"
KEY_FILE = "node-key.pem"
NODE_COMMON_NAME = "STA node"
# Lifetime of a certificate made here, and how long before its end the node's is made again
# from the same key (a pinned fingerprint changes then, so rarely: ten years).
CERT_DAYS = 3650
CERT_RENEW_BEFORE = datetime.timedelta(days=30)


class X509Error(Exception):
    """A key or certificate could not be made or read; the message says what was wrong."""


_T = TypeVar("_T")


def _reads_der(reader: Callable[..., _T]) -> Callable[..., _T]:
    """Make a reader of DER bytes raise X509Error for anything malformed in them, never a
    traceback: a truncated or foreign file can leave a field missing as well as cut short."""
    @functools.wraps(reader)
    def read(*args: object, **kwargs: object) -> _T:
        try:
            return reader(*args, **kwargs)
        except DerError as exc:
            raise X509Error(str(exc)) from None
        except (IndexError, ValueError):
            raise X509Error("a field is missing or malformed") from None
    return read


# ---------------------------------------------------------------------------------------------
# PEM (RFC 7468)

def der_to_pem(der: bytes, label: str) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {label}-----\n".encode("ascii") + b"\n".join(lines)
            + f"\n-----END {label}-----\n".encode("ascii"))


_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.S)


def pem_to_der(pem: Union[bytes, str], label: Optional[str] = None) -> bytes:
    """The DER bytes of the first PEM block (with that label, if given)."""
    if isinstance(pem, str):
        pem = pem.encode("ascii", "replace")
    for match in _PEM_RE.finditer(pem):
        if label is None or match.group(1).decode("ascii") == label:
            try:
                return base64.b64decode(re.sub(rb"\s+", b"", match.group(2)), validate=True)
            except ValueError:
                raise X509Error("damaged PEM block (bad base64)") from None
    raise X509Error(f"no PEM block{' ' + label if label else ''} found")


def fingerprint_sha256(certificate: Union[bytes, str]) -> str:
    """Lower-case hex SHA-256 of a certificate's DER bytes (given as DER or PEM), the fingerprint
    that ``openssl x509 -fingerprint -sha256`` prints (without its colons)."""
    data = certificate.encode("ascii") if isinstance(certificate, str) else bytes(certificate)
    if b"-----BEGIN" in data:
        data = pem_to_der(data, "CERTIFICATE")
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# RSA

class RsaKey(NamedTuple):
    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int

    @property
    def size(self) -> int:
        """Modulus length in bytes."""
        return (self.n.bit_length() + 7) // 8


_small_primes: List[int] = []


def _odd_small_primes() -> List[int]:
    if not _small_primes:
        sieve = bytearray([1]) * SIEVE_LIMIT
        sieve[0:2] = b"\0\0"
        for i in range(2, math.isqrt(SIEVE_LIMIT) + 1):
            if sieve[i]:
                sieve[i * i::i] = bytes(len(range(i * i, SIEVE_LIMIT, i)))
        _small_primes.extend(i for i in range(3, SIEVE_LIMIT) if sieve[i])
    return _small_primes


def _miller_rabin(n: int, rounds: int) -> bool:
    """Miller-Rabin with random bases (FIPS 186-5 B.3.1); ``n`` odd and larger than SIEVE_LIMIT."""
    d, s = n - 1, 0
    while not d & 1:
        d >>= 1
        s += 1
    for _ in range(rounds):
        a = 2 + secrets.randbelow(n - 3)
        x = pow(a, d, n)
        if x == 1 or x == n - 1:
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _random_prime(bits: int, e: int) -> int:
    """A random prime of exactly ``bits`` bits with its top two bits set (so a product of two is
    exactly 2*bits long and each factor exceeds sqrt(2) * 2**(bits-1), FIPS 186-5 B.3.3), and
    with gcd(p - 1, e) == 1. Searches upwards from a random odd start through a sieve window."""
    primes = _odd_small_primes()
    for _ in range(MAX_PRIME_WINDOWS):
        start = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if (start + 2 * SIEVE_WINDOW).bit_length() != bits:
            continue
        sieve = bytearray([1]) * SIEVE_WINDOW
        for p in primes:
            # First index i with start + 2i divisible by p: i = -start / 2 (mod p).
            i = (p - start % p) * ((p + 1) // 2) % p
            if i < SIEVE_WINDOW:
                sieve[i::p] = bytes(len(range(i, SIEVE_WINDOW, p)))
        index = sieve.find(1)
        while index >= 0:
            candidate = start + 2 * index
            if math.gcd(candidate - 1, e) == 1 and _miller_rabin(candidate, MILLER_RABIN_ROUNDS):
                return candidate
            index = sieve.find(1, index + 1)
    raise X509Error("could not find a prime (random source broken?)")


def generate_rsa_key(bits: int = RSA_BITS, e: int = RSA_EXPONENT) -> RsaKey:
    """A new RSA key pair (FIPS 186-5 B.3.3 checks: |p - q| > 2**(bits/2 - 100), d > 2**(bits/2),
    d computed modulo lcm(p - 1, q - 1))."""
    if bits < 1024 or bits % 2:
        raise X509Error("RSA key size must be an even number of bits, at least 1024")
    half = bits // 2
    while True:
        p = _random_prime(half, e)
        q = _random_prime(half, e)
        if abs(p - q) <= 1 << (half - 100):
            continue
        if p < q:
            p, q = q, p
        lam = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
        d = pow(e, -1, lam)
        if d <= 1 << half:
            continue
        return RsaKey(p * q, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))


def rsa_sign_sha256(key: RsaKey, message: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 signature with SHA-256 (RFC 8017 8.2.1), computed with the CRT and
    checked against the public key (a fault would otherwise leak the key)."""
    t = der_sequence(der_sequence(der_oid(OID_SHA256), der_null()),
                     der_octet_string(hashlib.sha256(message).digest()))  # DigestInfo
    k = key.size
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    m = int.from_bytes(em, "big")
    s1, s2 = pow(m, key.dp, key.p), pow(m, key.dq, key.q)
    s = s2 + key.q * (key.qinv * (s1 - s2) % key.p)
    if pow(s, key.e, key.n) != m:
        raise X509Error("RSA signature self-check failed")
    return s.to_bytes(k, "big")


def _rsa_public_key_der(key: RsaKey) -> bytes:
    return der_sequence(der_integer(key.n), der_integer(key.e))


def private_key_pem(key: RsaKey) -> bytes:
    """The key as PKCS#8 PEM ("BEGIN PRIVATE KEY", RFC 5208), wrapping PKCS#1 RSAPrivateKey."""
    pkcs1 = der_sequence(*(der_integer(v) for v in (0, key.n, key.e, key.d, key.p, key.q,
                                                    key.dp, key.dq, key.qinv)))
    pkcs8 = der_sequence(der_integer(0),
                         der_sequence(der_oid(OID_RSA_ENCRYPTION), der_null()),
                         der_octet_string(pkcs1))
    return der_to_pem(pkcs8, "PRIVATE KEY")


@_reads_der
def load_private_key(pem: Union[bytes, str]) -> RsaKey:
    """Read back an RSA key written by ``private_key_pem`` (PKCS#8) or in PKCS#1 PEM."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    if b"BEGIN RSA PRIVATE KEY" in data:
        der = pem_to_der(data, "RSA PRIVATE KEY")
    else:
        outer = pem_to_der(data, "PRIVATE KEY")
        top = expect_tag(read_tlv(outer, 0), 0x30, "PKCS#8 key")
        items = read_children(outer, top[1], top[2])
        if len(items) < 3:
            raise X509Error("PKCS#8 key has too few fields")
        expect_tag(items[2], 0x04, "PKCS#8 key payload")
        der = outer[items[2][1]:items[2][2]]
    top = expect_tag(read_tlv(der, 0), 0x30, "RSA private key")
    fields = [int.from_bytes(der[s:e], "big") for tag, s, e in read_children(der, top[1], top[2])
              if tag == 0x02]
    if len(fields) != 9:
        raise X509Error("not an RSA private key (wrong number of fields)")
    key = RsaKey(*fields[1:])
    if key.p * key.q != key.n or pow(pow(2, key.e, key.n), key.d, key.n) != 2:
        raise X509Error("RSA private key is inconsistent")
    return key


# ---------------------------------------------------------------------------------------------
# Certificates (RFC 5280)

def _name(common_name: str) -> bytes:
    return der_sequence(
        der_set(der_sequence(der_oid(OID_ORGANIZATION), der_utf8_string(ORGANIZATION))),
        der_set(der_sequence(der_oid(OID_COMMON_NAME), der_utf8_string(common_name))))


def _general_names(hosts: Sequence[str]) -> bytes:
    names = []
    for host in hosts:
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None:
            names.append(tlv(0x87, ip.packed))  # iPAddress [7] IMPLICIT OCTET STRING
            continue
        try:
            ascii_name = host.encode("idna")
        except UnicodeError:
            raise X509Error(f"not a host name: {host!r}") from None
        if not ascii_name or not re.fullmatch(rb"[A-Za-z0-9*._-]+", ascii_name):
            raise X509Error(f"not a host name: {host!r}")
        names.append(tlv(0x82, ascii_name))  # dNSName [2] IMPLICIT IA5String
    return der_sequence(*names)


def _extension(oid: str, critical: bool, value: bytes) -> bytes:
    parts = [der_oid(oid)] + ([der_boolean(True)] if critical else []) + [der_octet_string(value)]
    return der_sequence(*parts)


def make_certificate(key: RsaKey, common_name: str, hosts: Iterable[str] = (),
                     days: int = CERT_DAYS, now: Optional[datetime.datetime] = None) -> bytes:
    """A self-signed X.509 v3 certificate (DER) for ``key``, valid ``days`` from now, naming
    ``hosts`` (DNS names and IP addresses) in its subjectAltName."""
    if not common_name or len(common_name) > MAX_COMMON_NAME:
        raise X509Error(f"common name must have 1 to {MAX_COMMON_NAME} characters")
    hosts = list(dict.fromkeys(hosts))
    if len(hosts) > MAX_HOSTS:
        raise X509Error(f"at most {MAX_HOSTS} host names in one certificate")
    if days < 1:
        raise X509Error("a certificate must be valid for at least one day")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    algorithm = der_sequence(der_oid(OID_SHA256_WITH_RSA), der_null())
    public_key = _rsa_public_key_der(key)
    spki = der_sequence(der_sequence(der_oid(OID_RSA_ENCRYPTION), der_null()),
                        der_bit_string(public_key))
    key_id = hashlib.sha1(public_key).digest()  # RFC 5280 4.2.1.2 method (1); an identifier only
    # keyUsage bits: digitalSignature (0), keyEncipherment (2), keyCertSign (5) -> 0b10100100;
    # two unused bits at the end of the byte.
    key_usage = der_bit_string(bytes((0b10100100,)), unused_bits=2)
    extensions = [
        _extension(OID_BASIC_CONSTRAINTS, True,
                   der_sequence(der_boolean(True), der_integer(0))),
        _extension(OID_KEY_USAGE, True, key_usage),
        _extension(OID_EXT_KEY_USAGE, False,
                   der_sequence(der_oid(OID_SERVER_AUTH), der_oid(OID_CLIENT_AUTH))),
        _extension(OID_SUBJECT_KEY_ID, False, der_octet_string(key_id)),
        _extension(OID_AUTHORITY_KEY_ID, False, der_sequence(tlv(0x80, key_id))),
    ]
    if hosts:
        extensions.append(_extension(OID_SUBJECT_ALT_NAME, False, _general_names(hosts)))
    # Serial: 16 random bytes, positive, under the 20-octet limit of RFC 5280 4.1.2.2.
    serial = secrets.randbits(127) | 1 << 126
    name = _name(common_name)
    tbs = der_sequence(
        der_explicit(0, der_integer(2)),  # version v3
        der_integer(serial),
        algorithm,
        name,
        der_sequence(der_time(now - BACKDATE), der_time(now + datetime.timedelta(days=days))),
        name,
        spki,
        der_explicit(3, der_sequence(*extensions)))
    return der_sequence(tbs, algorithm, der_bit_string(rsa_sign_sha256(key, tbs)))


def make_self_signed(common_name: str, hosts: Iterable[str] = (),
                     days: int = CERT_DAYS) -> Tuple[bytes, bytes]:
    """A new RSA-2048 key and a self-signed certificate for it: (cert_pem, key_pem)."""
    key = generate_rsa_key()
    cert = make_certificate(key, common_name, hosts, days)
    return der_to_pem(cert, "CERTIFICATE"), private_key_pem(key)


class CertificateInfo(NamedTuple):
    """What ``ensure_node_identity`` needs to know about a certificate it made earlier."""
    public_key: Tuple[int, int]      # (n, e)
    not_before: datetime.datetime
    not_after: datetime.datetime
    hosts: Tuple[str, ...]           # subjectAltName entries, IP addresses as text


def _parse_time(tag: int, text: bytes) -> datetime.datetime:
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    try:
        moment = datetime.datetime.strptime(text.decode("ascii"), fmt)
    except (UnicodeDecodeError, ValueError):
        raise X509Error("certificate has a date in an unknown format") from None
    return moment.replace(tzinfo=datetime.timezone.utc)


_SAN_OID_CONTENT = der_oid(OID_SUBJECT_ALT_NAME)[2:]


@_reads_der
def certificate_info(certificate: Union[bytes, str]) -> CertificateInfo:
    """Public key, validity and subjectAltName of an RSA certificate (DER or PEM)."""
    der = certificate.encode("ascii") if isinstance(certificate, str) else bytes(certificate)
    if b"-----BEGIN" in der:
        der = pem_to_der(der, "CERTIFICATE")
    cert = expect_tag(read_tlv(der, 0), 0x30, "certificate")
    tbs = expect_tag(read_children(der, cert[1], cert[2])[0], 0x30, "certificate body")
    fields = read_children(der, tbs[1], tbs[2])
    if fields and fields[0][0] == 0xA0:
        fields = fields[1:]
    if len(fields) < 6:
        raise X509Error("certificate body has too few fields")
    validity = read_children(der, fields[3][1], fields[3][2])
    if len(validity) != 2:
        raise X509Error("certificate validity is malformed")
    not_before, not_after = (_parse_time(t, der[s:e]) for t, s, e in validity)
    spki = read_children(der, fields[5][1], fields[5][2])
    bits = expect_tag(spki[1], 0x03, "public key")
    rsa = der[bits[1] + 1:bits[2]]
    top = expect_tag(read_tlv(rsa, 0), 0x30, "RSA public key")
    numbers = [int.from_bytes(rsa[s:e], "big") for _, s, e in read_children(rsa, top[1], top[2])]
    if len(numbers) != 2:
        raise X509Error("not an RSA public key")
    hosts: List[str] = []
    for tag, s, e in fields[6:]:
        if tag != 0xA3:
            continue
        for ext in read_children(der, *expect_tag(read_tlv(der, s), 0x30, "extensions")[1:]):
            parts = read_children(der, ext[1], ext[2])
            if der[parts[0][1]:parts[0][2]] != _SAN_OID_CONTENT:
                continue
            value = parts[-1]
            names = read_tlv(der, value[1])
            for ntag, ns, ne in read_children(der, names[1], names[2]):
                if ntag == 0x82:
                    hosts.append(der[ns:ne].decode("ascii", "replace"))
                elif ntag == 0x87:
                    hosts.append(str(ipaddress.ip_address(der[ns:ne])))
    return CertificateInfo((numbers[0], numbers[1]), not_before, not_after, tuple(hosts))


# ---------------------------------------------------------------------------------------------
# The node's identity on disk

def _publish(path: str, data: bytes, replace: bool) -> None:
    """Write ``data`` to ``path`` with owner-only permissions, atomically: a reader never sees a
    partial file. Without ``replace`` the first of several racing processes wins."""
    tmp = f"{path}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError:  # no hard links here (some Windows and network file systems)
            if not os.path.exists(path):
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _owner_only(path: str, mode: int) -> None:
    if os.name != "posix":
        return  # Windows: the user profile's ACL already keeps other users out
    current = os.stat(path).st_mode & 0o777
    if current & ~mode:
        log.warning("%s was open to others (mode %o); restricting it to its owner", path, current)
        os.chmod(path, mode)


def _existing_certificate(certfile: str, key: RsaKey, hosts: List[str]) -> Tuple[str, List[str]]:
    """('', names) if ``certfile`` is fine for ``key`` and ``hosts``, else (why not, names)."""
    if not os.path.exists(certfile):
        return "none yet", []
    try:
        with open(certfile, "rb") as f:
            info = certificate_info(f.read())
    except (OSError, X509Error) as exc:
        return f"the old one is unreadable ({exc})", []
    names = list(info.hosts)
    if info.public_key != (key.n, key.e):
        return "the old one does not match the key", names
    if info.not_after - datetime.datetime.now(datetime.timezone.utc) < CERT_RENEW_BEFORE:
        return "the old one expires soon", names
    missing = [h for h in hosts if h not in names]
    if missing:
        return f"the old one lacks {', '.join(missing)}", names
    return "", names


def ensure_identity(folder: str, hosts: Iterable[str] = ()) -> Tuple[str, str]:
    """(certfile, keyfile) in ``folder``, made on first use: the folder mode 0o700 and both files
    0o600 on POSIX. The key is made once and kept; the certificate is remade from the same key
    when it lacks one of ``hosts`` (names and IP addresses HTTPS clients will use) or is about
    to expire, so a pinned fingerprint changes only then."""
    certfile, keyfile = os.path.join(folder, CERT_FILE), os.path.join(folder, KEY_FILE)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        _owner_only(folder, 0o700)
        if not os.path.exists(keyfile):
            log.info("making this node's TLS key in %s (once)", folder)
            _publish(keyfile, private_key_pem(generate_rsa_key()), replace=False)
        _owner_only(keyfile, 0o600)
        with open(keyfile, "rb") as f:
            key = load_private_key(f.read())
    except OSError as exc:
        raise X509Error(f"cannot set up the TLS key in {folder}: {exc.strerror or exc}") from None
    except X509Error as exc:
        raise X509Error(f"the TLS key {keyfile} is damaged ({exc}); delete it and a new one "
                        "will be made") from None
    wanted = list(dict.fromkeys(hosts))
    reason, names = _existing_certificate(certfile, key, wanted)
    if not reason:
        return certfile, keyfile
    names = list(dict.fromkeys(names + wanted))
    if len(names) > MAX_HOSTS:
        names = wanted[:MAX_HOSTS]
    log.info("making a TLS certificate in %s (%s)", folder, reason)
    try:
        der = make_certificate(key, NODE_COMMON_NAME, names, CERT_DAYS)
        _publish(certfile, der_to_pem(der, "CERTIFICATE"), replace=os.path.exists(certfile))
    except OSError as exc:
        raise X509Error(f"cannot write {certfile}: {exc.strerror or exc}") from None
    return certfile, keyfile
