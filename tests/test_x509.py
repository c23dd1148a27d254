"""Tests for sta.x509: RSA keys, self-signed certificates and the node's identity on disk, checked
against the rules the module states (FIPS 186-5 key checks, RFC 5280 limits, what OpenSSL's
strict mode asks of a root) and against the ssl module that must accept them."""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import ssl
import subprocess
import tempfile
import unittest
from typing import List, Tuple

from sta import der, x509

KEYS: List[x509.RsaKey] = []
_tmp = tempfile.TemporaryDirectory()


def setUpModule():
    KEYS.append(x509.generate_rsa_key())


def tearDownModule():
    _tmp.cleanup()


def write_pair(cert_pem: bytes, key_pem: bytes) -> Tuple[str, str]:
    folder = tempfile.mkdtemp(dir=_tmp.name)
    paths = (os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem"))
    for path, data in zip(paths, (cert_pem, key_pem)):
        with open(path, "wb") as f:
            f.write(data)
    return paths


def load_in_ssl(cert_pem: bytes, key_pem: bytes) -> None:
    """Raise unless the ssl module takes the pair as a server's identity."""
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(*write_pair(cert_pem, key_pem))


def extensions(cert_der: bytes) -> dict:
    """OID content bytes -> (critical, value bytes) of each extension of a certificate."""
    _, start, end = der.read_tlv(cert_der, 0)
    tbs = der.read_children(cert_der, start, end)[0]
    explicit = [f for f in der.read_children(cert_der, tbs[1], tbs[2]) if f[0] == 0xA3][0]
    seq = der.read_tlv(cert_der, explicit[1])
    found = {}
    for ext in der.read_children(cert_der, seq[1], seq[2]):
        parts = der.read_children(cert_der, ext[1], ext[2])
        critical = len(parts) == 3 and cert_der[parts[1][1]:parts[1][2]] == b"\xff"
        found[cert_der[parts[0][1]:parts[0][2]]] = (critical,
                                                    cert_der[parts[-1][1]:parts[-1][2]])
    return found


def oid(dotted: str) -> bytes:
    return der.der_oid(dotted)[2:]


class RsaTests(unittest.TestCase):
    def test_key_is_consistent_and_2048_bits(self):
        key = KEYS[0]
        self.assertEqual(key.n.bit_length(), 2048)
        self.assertEqual(key.e, 65537)
        self.assertEqual(key.p * key.q, key.n)
        self.assertEqual(pow(pow(12345, key.e, key.n), key.d, key.n), 12345)

    def test_key_meets_the_fips_186_5_checks_it_promises(self):
        key = KEYS[0]
        for prime in (key.p, key.q):
            self.assertEqual(prime.bit_length(), 1024)
            self.assertEqual(prime >> 1022, 0b11)  # top two bits set
        self.assertGreater(abs(key.p - key.q), 1 << (1024 - 100))
        self.assertGreater(key.d, 1 << 1024)
        self.assertEqual((key.dp, key.dq, key.qinv * key.q % key.p),
                         (key.d % (key.p - 1), key.d % (key.q - 1), 1))

    def test_miller_rabin_rejects_carmichael_numbers_and_accepts_primes(self):
        # 2**89 - 1 and 2**127 - 1 are Mersenne primes; 41041 is a Carmichael number and
        # 3215031751 fools bases 2, 3, 5 and 7.
        self.assertTrue(x509._miller_rabin(2 ** 89 - 1, 20))
        self.assertTrue(x509._miller_rabin(2 ** 127 - 1, 20))
        self.assertFalse(x509._miller_rabin(41041 * 65537 * 65539, 20))
        self.assertFalse(x509._miller_rabin(3215031751, 20))

    def test_key_sizes_below_1024_or_odd_are_refused(self):
        for bits in (512, 1023, 2049):
            with self.subTest(bits=bits), self.assertRaises(x509.X509Error):
                x509.generate_rsa_key(bits)

    def test_signature_is_pkcs1_v1_5_over_sha256(self):
        key = KEYS[0]
        signature = x509.rsa_sign_sha256(key, b"message")
        self.assertEqual(len(signature), 256)
        em = pow(int.from_bytes(signature, "big"), key.e, key.n).to_bytes(256, "big")
        digest_info = der.der_sequence(der.der_sequence(der.der_oid(x509.OID_SHA256),
                                                        der.der_null()),
                                       der.der_octet_string(hashlib.sha256(b"message").digest()))
        self.assertEqual(em, b"\x00\x01" + b"\xff" * (256 - 3 - len(digest_info)) + b"\x00"
                         + digest_info)

    def test_private_key_pem_round_trips(self):
        pem = x509.private_key_pem(KEYS[0])
        self.assertTrue(pem.startswith(b"-----BEGIN PRIVATE KEY-----\n"))
        self.assertEqual(x509.load_private_key(pem), KEYS[0])
        self.assertEqual(x509.load_private_key(pem.decode("ascii")), KEYS[0])

    def test_pkcs1_key_is_read_too(self):
        key = KEYS[0]
        pkcs1 = der.der_sequence(*(der.der_integer(v) for v in (0,) + tuple(key[:8])))
        self.assertEqual(x509.load_private_key(x509.der_to_pem(pkcs1, "RSA PRIVATE KEY")), key)

    def test_inconsistent_key_is_refused(self):
        key = KEYS[0]._replace(d=KEYS[0].d + 2)
        with self.assertRaisesRegex(x509.X509Error, "inconsistent"):
            x509.load_private_key(x509.private_key_pem(key))

    def test_damaged_key_is_an_x509_error_not_a_traceback(self):
        pem = x509.private_key_pem(KEYS[0])
        damaged = x509.der_to_pem(x509.pem_to_der(pem)[:100], "PRIVATE KEY")
        with self.assertRaises(x509.X509Error):
            x509.load_private_key(damaged)


class PemTests(unittest.TestCase):
    def test_pem_round_trip(self):
        data = bytes(range(256)) * 3
        pem = x509.der_to_pem(data, "CERTIFICATE")
        self.assertTrue(all(len(line) <= 64 for line in pem.splitlines()))
        self.assertEqual(x509.pem_to_der(pem, "CERTIFICATE"), data)
        with self.assertRaises(x509.X509Error):
            x509.pem_to_der(pem, "PRIVATE KEY")

    def test_first_block_with_the_label_is_taken(self):
        both = x509.der_to_pem(b"key", "PRIVATE KEY") + x509.der_to_pem(b"cert", "CERTIFICATE")
        self.assertEqual(x509.pem_to_der(both, "CERTIFICATE"), b"cert")
        self.assertEqual(x509.pem_to_der(both), b"key")

    def test_bad_base64_is_reported(self):
        with self.assertRaisesRegex(x509.X509Error, "bad base64"):
            x509.pem_to_der(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")


class CertificateTests(unittest.TestCase):
    def test_make_self_signed_returns_a_pair_ssl_accepts(self):
        cert, key = x509.make_self_signed("lab tracker", ["127.0.0.1", "tracker.lab", "::1"])
        load_in_ssl(cert, key)
        info = x509.certificate_info(cert)
        self.assertEqual(info.hosts, ("127.0.0.1", "tracker.lab", "::1"))
        self.assertEqual(info.public_key, (x509.load_private_key(key).n, 65537))

    def test_certificate_info_reads_back_dates_and_names(self):
        now = datetime.datetime(2049, 6, 1, tzinfo=datetime.timezone.utc)
        cert = x509.make_certificate(KEYS[0], "x", ["a.example", "10.0.0.1"], days=400, now=now)
        info = x509.certificate_info(cert)
        self.assertEqual(info.not_before, now - x509.BACKDATE)
        self.assertEqual(info.not_after, now + datetime.timedelta(days=400))  # GeneralizedTime
        self.assertEqual(info.hosts, ("a.example", "10.0.0.1"))
        load_in_ssl(x509.der_to_pem(cert, "CERTIFICATE"), x509.private_key_pem(KEYS[0]))

    def test_root_carries_what_strict_openssl_asks_of_it(self):
        found = extensions(x509.make_certificate(KEYS[0], "x", ["127.0.0.1"]))
        basic = found[oid(x509.OID_BASIC_CONSTRAINTS)]
        self.assertEqual(basic, (True, der.der_sequence(der.der_boolean(True),
                                                        der.der_integer(0))))  # CA, pathLen 0
        self.assertTrue(found[oid(x509.OID_KEY_USAGE)][0])
        for name in (x509.OID_SUBJECT_KEY_ID, x509.OID_AUTHORITY_KEY_ID,
                     x509.OID_SUBJECT_ALT_NAME, x509.OID_EXT_KEY_USAGE):
            self.assertIn(oid(name), found)

    def test_fingerprint_is_the_same_for_pem_and_der(self):
        cert = x509.make_certificate(KEYS[0], "x", ["127.0.0.1"])
        pem = x509.der_to_pem(cert, "CERTIFICATE")
        self.assertEqual(pem, ssl.DER_cert_to_PEM_cert(cert).encode("ascii"))
        expected = hashlib.sha256(cert).hexdigest()
        for form in (cert, pem, pem.decode("ascii")):
            self.assertEqual(x509.fingerprint_sha256(form), expected)

    def test_each_certificate_gets_its_own_serial(self):
        serials = set()
        for _ in range(3):
            cert = x509.make_certificate(KEYS[0], "x")
            _, start, end = der.read_tlv(cert, 0)
            tbs = der.read_children(cert, start, end)[0]
            serial = der.read_children(cert, tbs[1], tbs[2])[1]
            value = cert[serial[1]:serial[2]]
            self.assertLessEqual(len(value), 20)  # RFC 5280 4.1.2.2
            self.assertLess(value[0], 0x80)       # positive
            serials.add(value)
        self.assertEqual(len(serials), 3)

    def test_limits_on_names_and_lifetime(self):
        x509.make_certificate(KEYS[0], "n" * x509.MAX_COMMON_NAME)
        hosts = [f"h{i}.lab" for i in range(x509.MAX_HOSTS)]
        x509.make_certificate(KEYS[0], "x", hosts + hosts[:3])  # repeats count once
        for kwargs in ({"common_name": ""}, {"common_name": "n" * (x509.MAX_COMMON_NAME + 1)},
                       {"hosts": hosts + ["one.more"]}, {"days": 0}):
            args = {"common_name": "x", "hosts": (), "days": 1}
            args.update(kwargs)
            with self.subTest(kwargs=list(kwargs)), self.assertRaises(x509.X509Error):
                x509.make_certificate(KEYS[0], args["common_name"], args["hosts"],
                                      args["days"])

    def test_bad_host_names_are_rejected(self):
        for host in ("", "two words", "a/b"):
            with self.subTest(host=host), self.assertRaises(x509.X509Error):
                x509.make_certificate(KEYS[0], "x", [host])

    def test_truncated_certificate_is_an_x509_error_not_a_traceback(self):
        cert = x509.make_certificate(KEYS[0], "x", ["127.0.0.1"])
        for cut in (10, 200, len(cert) - 1):
            with self.subTest(cut=cut), self.assertRaises(x509.X509Error):
                x509.certificate_info(cert[:cut])
        for empty in (der.der_sequence(), der.der_sequence(der.der_sequence())):
            with self.subTest(empty=empty), self.assertRaises(x509.X509Error):
                x509.certificate_info(empty)  # fields missing, not cut short

    @unittest.skipUnless(shutil.which("openssl"), "no openssl command to cross-check with")
    def test_openssl_verifies_the_certificate_strictly(self):
        pem = x509.der_to_pem(x509.make_certificate(KEYS[0], "x", ["127.0.0.1"]), "CERTIFICATE")
        certfile, _ = write_pair(pem, b"")
        result = subprocess.run(
            ["openssl", "verify", "-x509_strict", "-CAfile", certfile, "-verify_ip", "127.0.0.1",
             certfile], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(result.returncode, 0, result.stdout)


class IdentityTests(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.folder = os.path.join(tmp.name, "tls")

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def test_certificate_close_to_its_end_is_remade_from_the_same_key(self):
        certfile, keyfile = x509.ensure_identity(self.folder, ["127.0.0.1"])
        key = x509.load_private_key(self.read(keyfile))
        short = x509.make_certificate(key, x509.NODE_COMMON_NAME, ["127.0.0.1"],
                                      days=x509.CERT_RENEW_BEFORE.days - 1)
        with open(certfile, "wb") as f:
            f.write(x509.der_to_pem(short, "CERTIFICATE"))
        self.assertEqual(x509.ensure_identity(self.folder, ["127.0.0.1"]), (certfile, keyfile))
        info = x509.certificate_info(self.read(certfile))
        self.assertEqual(info.public_key, (key.n, key.e))
        self.assertGreater(info.not_after - datetime.datetime.now(datetime.timezone.utc),
                           datetime.timedelta(days=x509.CERT_DAYS - 3))

    def test_certificate_for_another_key_is_replaced(self):
        certfile, keyfile = x509.ensure_identity(self.folder)
        other = x509.make_certificate(x509.generate_rsa_key(1024), x509.NODE_COMMON_NAME)
        with open(certfile, "wb") as f:
            f.write(x509.der_to_pem(other, "CERTIFICATE"))
        x509.ensure_identity(self.folder)
        key = x509.load_private_key(self.read(keyfile))
        self.assertEqual(x509.certificate_info(self.read(certfile)).public_key, (key.n, key.e))

    def test_unreadable_certificate_is_replaced(self):
        certfile, keyfile = x509.ensure_identity(self.folder)
        with open(certfile, "wb") as f:
            f.write(b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n")
        x509.ensure_identity(self.folder)
        load_in_ssl(self.read(certfile), self.read(keyfile))

    def test_names_already_listed_keep_the_certificate(self):
        certfile, _ = x509.ensure_identity(self.folder, ["127.0.0.1", "tracker.lab"])
        first = self.read(certfile)
        x509.ensure_identity(self.folder, ["tracker.lab"])
        self.assertEqual(self.read(certfile), first)


if __name__ == "__main__":
    unittest.main()
