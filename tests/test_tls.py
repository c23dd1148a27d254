"""Tests for sta.tls (contexts, the node's key material, TLS over memory, the plain/TLS policy)
and the whole sta.peerlink link over it. Everything runs in memory except one asyncio link and
one HTTPS exchange on 127.0.0.1. The certificate maker is tests/test_x509.py; the proof exchange
alone, as bytes, is tests/test_peerlink.py."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import http.server
import itertools
import os
import ssl
import stat
import tempfile
import threading
import unittest
from typing import List, Optional, Tuple
from unittest import mock

from sta import mse, peerlink, tls, x509

INFO_HASH = hashlib.sha1(b"the torrent both peers have").digest()
OTHER_HASH = hashlib.sha1(b"some other torrent").digest()
# Bounds for the in-memory ping-pong between two endpoints: a TLS handshake plus the proof takes
# three round trips; anything still talking after this many is stuck.
MAX_ROUNDS = 20

_tmp: Optional[tempfile.TemporaryDirectory] = None
KEYS: List[x509.RsaKey] = []
NODE: Tuple[str, str] = ("", "")      # (certfile, keyfile) of the honest server
MITM: Tuple[str, str] = ("", "")      # a different key and certificate


def write_identity(key: x509.RsaKey, name: str, hosts=("127.0.0.1",)) -> Tuple[str, str]:
    cert = x509.der_to_pem(x509.make_certificate(key, name, hosts), "CERTIFICATE")
    certfile = os.path.join(_tmp.name, name + "-cert.pem")
    keyfile = os.path.join(_tmp.name, name + "-key.pem")
    with open(certfile, "wb") as f:
        f.write(cert)
    with open(keyfile, "wb") as f:
        f.write(x509.private_key_pem(key))
    return certfile, keyfile


def setUpModule():
    global _tmp, NODE, MITM
    _tmp = tempfile.TemporaryDirectory()
    KEYS.extend(x509.generate_rsa_key() for _ in range(2))  # one for the node, one for a MITM
    NODE = write_identity(KEYS[0], "node")
    MITM = write_identity(KEYS[1], "mitm")


def tearDownModule():
    _tmp.cleanup()


def pump_layers(a: tls.TlsLayer, b: tls.TlsLayer, first: bytes) -> None:
    """Run a TLS handshake between two layers (a is the client) through memory."""
    to_b = first
    for _ in range(MAX_ROUNDS):
        b.receive(to_b)
        to_a = b.outgoing()
        a.receive(to_a)
        to_b = a.outgoing()
        if a.handshake_complete and b.handshake_complete and not to_a and not to_b:
            return
    raise AssertionError("TLS handshake did not finish")


class Wire:
    """Two SecureLinks joined through memory; records every byte in both directions."""

    def __init__(self, client: peerlink.SecureLink, server: peerlink.SecureLink,
                 tamper=None) -> None:
        self.client, self.server = client, server
        self.tamper = tamper or (lambda direction, data: data)
        self.seen = bytearray()
        self.to_client = b""        # plaintext the client got
        self.to_server = b""
        self.pending_client = client.start()
        self.pending_server = b""

    def run(self, client_sends: bytes = b"", server_sends: bytes = b"") -> None:
        for _ in range(MAX_ROUNDS):
            if self.client.authenticated and client_sends:
                self.pending_client += self.client.send(client_sends)
                client_sends = b""
            if self.server.authenticated and server_sends:
                self.pending_server += self.server.send(server_sends)
                server_sends = b""
            data, self.pending_client = self.tamper("c2s", self.pending_client), b""
            self.seen += data
            self.to_server += self.server.receive(data)
            self.pending_server += self.server.outgoing()
            data, self.pending_server = self.tamper("s2c", self.pending_server), b""
            self.seen += data
            self.to_client += self.client.receive(data)
            self.pending_client += self.client.outgoing()
            if not (self.pending_client or self.pending_server or client_sends
                    or server_sends):
                return
        raise AssertionError("link kept talking")


def node_tls() -> peerlink.PeerTls:
    return peerlink.PeerTls(*NODE)


def lookup_for(*info_hashes: bytes):
    table = {peerlink.torrent_id(h): h for h in info_hashes}
    return table.get


# ---------------------------------------------------------------------------------------------

class NodeIdentityTests(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.state = tmp.name

    def test_identity_is_made_once_and_reused(self):
        certfile, keyfile = tls.ensure_node_identity(self.state)
        with open(certfile, "rb") as f:
            cert = f.read()
        with open(keyfile, "rb") as f:
            key = f.read()
        self.assertEqual(tls.ensure_node_identity(self.state), (certfile, keyfile))
        with open(certfile, "rb") as f:
            self.assertEqual(f.read(), cert)
        with open(keyfile, "rb") as f:
            self.assertEqual(f.read(), key)
        self.assertEqual(os.path.dirname(certfile), os.path.join(self.state, "tls"))
        self.assertEqual(sorted(os.listdir(os.path.dirname(certfile))),
                         ["node-cert.pem", "node-key.pem"])  # no temporary files left
        peerlink.PeerTls(certfile, keyfile)

    @unittest.skipUnless(os.name == "posix", "file modes are a POSIX notion")
    def test_identity_is_owner_only(self):
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        certfile, keyfile = tls.ensure_node_identity(self.state)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(keyfile)).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(keyfile).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(certfile).st_mode), 0o600)

    @unittest.skipUnless(os.name == "posix", "file modes are a POSIX notion")
    def test_loose_key_permissions_are_tightened(self):
        certfile, keyfile = tls.ensure_node_identity(self.state)
        os.chmod(keyfile, 0o644)
        with self.assertLogs("sta.x509", "WARNING"):
            tls.ensure_node_identity(self.state)
        self.assertEqual(stat.S_IMODE(os.stat(keyfile).st_mode), 0o600)

    def test_new_hosts_remake_the_certificate_with_the_same_key(self):
        certfile, keyfile = tls.ensure_node_identity(self.state, ["127.0.0.1"])
        with open(keyfile, "rb") as f:
            key = f.read()
        with open(certfile, "rb") as f:
            first = x509.fingerprint_sha256(f.read())
        tls.ensure_node_identity(self.state, ["tracker.lab"])
        with open(keyfile, "rb") as f:
            self.assertEqual(f.read(), key)
        with open(certfile, "rb") as f:
            cert = f.read()
        self.assertNotEqual(x509.fingerprint_sha256(cert), first)
        self.assertEqual(x509.certificate_info(cert).hosts, ("127.0.0.1", "tracker.lab"))
        tls.https_server_context(certfile, keyfile)

    def test_damaged_key_is_reported(self):
        certfile, keyfile = tls.ensure_node_identity(self.state)
        with open(keyfile, "wb") as f:
            f.write(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        with self.assertRaisesRegex(tls.TlsError, "damaged"):
            tls.ensure_node_identity(self.state)

    def test_racing_processes_end_with_one_key(self):
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(
            tls.ensure_node_identity(self.state))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(len(results), 2)
        peerlink.PeerTls(*results[0])  # the certificate matches the key that won


class TlsLayerTests(unittest.TestCase):
    def layers(self, maximum=None):
        client_context = tls.client_context()
        if maximum:
            client_context.maximum_version = maximum
        client = tls.TlsLayer(client_context, server_side=False)
        server = tls.TlsLayer(tls.server_context(*NODE), server_side=True)
        pump_layers(client, server, client.start())
        return client, server

    def test_handshake_and_data_both_ways(self):
        client, server = self.layers()
        self.assertEqual(client.version, "TLSv1.3")
        data = os.urandom(1 << 20)
        self.assertEqual(server.receive(client.send(data)), data)
        self.assertEqual(client.receive(server.send_many([b"ab", b"cd", data])),
                         b"abcd" + data)

    def test_send_many_fills_records_across_messages(self):
        # A seed's batch: 13-byte piece headers and 16 KiB blocks. Every record but the last is
        # full, so the receiver makes one read per 16 KiB.
        client, server = self.layers()
        batch = []
        for i in range(20):
            batch += [bytes(13), os.urandom(16384 - i)]
        wire = server.send_many(batch)
        sizes = []
        pos = 0
        while pos < len(wire):
            length = int.from_bytes(wire[pos + 3:pos + 5], "big")
            sizes.append(length)
            pos += 5 + length
        total = sum(map(len, batch))
        self.assertEqual(len(sizes), -(-total // tls.TLS_MAX_PLAINTEXT))
        self.assertEqual(len(set(sizes[:-1])), 1)
        self.assertEqual(client.receive(wire), b"".join(batch))

    def test_plaintext_is_a_view_of_the_read_buffer_valid_until_the_next_read(self) -> None:
        client, server = self.layers()
        first = client.receive(server.send(b"first message"))
        self.assertIsInstance(first, memoryview)
        self.assertEqual(first, b"first message")
        copy = bytes(first)
        second = client.receive(server.send(b"SECOND"))
        self.assertEqual(second, b"SECOND")
        self.assertEqual(copy, b"first message")
        self.assertEqual(bytes(first[:6]), b"SECOND")  # the same buffer, read into again

    def test_plaintext_comes_out_whatever_the_ciphertext_cuts(self):
        # Cuts inside a record header, inside a body and exactly between records: every whole
        # record comes out at once, and nothing is held back for a later call.
        messages = [os.urandom(n) for n in (1, 100, 16384, 20000, 5)]
        _, server = self.layers()
        ends = list(itertools.accumulate(len(server.send(m)) for m in messages))  # fixed sizes
        for cut in sorted(set(ends[:-1]) | {3, ends[0] + 2, 500, ends[2] + 1000}):
            with self.subTest(cut=cut):
                client, server = self.layers()
                wire = b"".join(server.send(m) for m in messages)
                first = bytes(client.receive(wire[:cut]))  # the view lasts until the next read
                whole = sum(1 for end in ends if end <= cut)
                self.assertEqual(first, b"".join(messages[:whole]))
                self.assertEqual(first + client.receive(wire[cut:]), b"".join(messages))

    def test_client_sees_the_server_certificate_without_verifying_it(self):
        client, _ = self.layers()
        self.assertEqual(client.peer_certificate(), tls.read_certificate_der(NODE[0]))

    def test_tls_unique_agrees_on_both_sides(self):
        for maximum in (None, ssl.TLSVersion.TLSv1_2):
            with self.subTest(maximum=maximum):
                client, server = self.layers(maximum)
                self.assertEqual(client.tls_unique(), server.tls_unique())

    def test_close_notify_ends_the_stream(self):
        client, server = self.layers()
        self.assertEqual(server.receive(client.send(b"last") + client.close()), b"last")
        self.assertTrue(server.closed)
        server.receive_eof()  # a clean end is not an error

    def test_tampered_record_is_rejected(self):
        client, server = self.layers()
        record = bytearray(client.send(b"x" * 1000))
        record[100] ^= 1
        with self.assertRaisesRegex(tls.TlsError, "TLS record rejected"):
            server.receive(bytes(record))

    def test_plain_bittorrent_answer_means_no_tls(self):
        client = tls.TlsLayer(tls.client_context(), server_side=False)
        client.start()
        with self.assertRaises(tls.TlsUnsupported):
            client.receive(b"\x13BitTorrent protocol" + bytes(48))

    def test_hang_up_during_handshake_means_no_tls(self):
        client = tls.TlsLayer(tls.client_context(), server_side=False)
        client.start()
        with self.assertRaises(tls.TlsUnsupported):
            client.receive_eof()

    def test_truncated_stream_is_an_error(self):
        client, server = self.layers()
        server.receive(client.send(b"data"))
        with self.assertRaises(tls.TlsError):
            server.receive_eof()


class SecureLinkTests(unittest.TestCase):
    def link_pair(self, info_hash=INFO_HASH, served=(INFO_HASH,), client_context=None,
                  node=None):
        node = node or node_tls()
        client = peerlink.SecureLink.client(client_context or node.client_context, info_hash)
        server = node.accept(lookup_for(*served))
        return client, server

    def test_link_authenticates_and_carries_bittorrent(self):
        for maximum in (None, ssl.TLSVersion.TLSv1_2):
            with self.subTest(maximum=maximum):
                context = tls.client_context()
                if maximum:
                    context.maximum_version = maximum
                client, server = self.link_pair(client_context=context)
                wire = Wire(client, server)
                wire.run(client_sends=b"\x13BitTorrent protocol" + INFO_HASH,
                         server_sends=b"bitfield")
                self.assertTrue(client.authenticated and server.authenticated)
                self.assertEqual(server.info_hash, INFO_HASH)
                self.assertEqual(wire.to_server, b"\x13BitTorrent protocol" + INFO_HASH)
                self.assertEqual(wire.to_client, b"bitfield")

    def test_neither_info_hash_nor_torrent_id_crosses_in_clear(self):
        client, server = self.link_pair()
        wire = Wire(client, server)
        wire.run(client_sends=b"\x13BitTorrent protocol" + bytes(8) + INFO_HASH,
                 server_sends=b"\x13BitTorrent protocol" + bytes(8) + INFO_HASH)
        self.assertTrue(server.authenticated)
        seen = bytes(wire.seen)
        for secret in (INFO_HASH, peerlink.torrent_id(INFO_HASH), INFO_HASH.hex().encode()):
            self.assertNotIn(secret, seen)
            self.assertNotIn(secret[:8], seen)

    def test_no_file_data_before_authentication(self):
        client, _ = self.link_pair()
        with self.assertRaisesRegex(tls.TlsError, "not authenticated"):
            client.send(b"piece")

    def test_unknown_torrent_is_refused_politely(self):
        client, server = self.link_pair(served=(OTHER_HASH,))
        wire = Wire(client, server)
        with self.assertRaisesRegex(tls.TlsError, "does not have"):
            wire.run()
        refusal = server.outgoing()
        with self.assertRaisesRegex(tls.TlsError, "peer does not have this torrent"):
            client.receive(refusal)

    def test_man_in_the_middle_terminating_tls_is_detected(self):
        self.assert_relay_detected(peerlink.PeerTls(*MITM))

    def test_man_in_the_middle_with_the_stolen_key_is_detected_by_tls_unique(self):
        self.assert_relay_detected(peerlink.PeerTls(*NODE))

    def assert_relay_detected(self, mitm_node: peerlink.PeerTls) -> None:
        node = node_tls()
        client = peerlink.SecureLink.client(node.client_context, INFO_HASH)
        server = node.accept(lookup_for(INFO_HASH))
        # The relay: a TLS server toward the client, a TLS client toward the server, passing the
        # application bytes through unchanged. It does not know the info hash.
        facing_client = tls.TlsLayer(mitm_node.server_context, server_side=True)
        facing_server = tls.TlsLayer(mitm_node.client_context, server_side=False)
        pump_layers(facing_server, server.tls, facing_server.start())
        c2m = client.start()
        errors = []
        for _ in range(MAX_ROUNDS):
            try:
                plain = facing_client.receive(c2m)
                m2c = facing_client.outgoing()
                if plain:
                    server.receive(facing_server.send(plain))
                m2s_reply = server.outgoing()
                if m2s_reply:
                    back = facing_server.receive(m2s_reply)
                    if back:
                        m2c += facing_client.send(back)
                c2m = b""
                client.receive(m2c)
                c2m = client.outgoing()
            except tls.TlsAuthError as exc:
                errors.append(exc)
                break
            if not c2m and not m2c:
                break
        self.assertTrue(errors, "the relay was not detected")
        self.assertIn("proof mismatch", str(errors[0]))
        self.assertFalse(client.authenticated and server.authenticated)

    def test_without_tls_unique_the_binding_rests_on_the_key(self):
        # What the README says: tls-unique is what stops a relay that holds the node's own key.
        # With it missing on one side, only the certificate fingerprint binds the proofs, and a
        # relay with the stolen key goes unnoticed. This test pins that limit down.
        with mock.patch.object(tls.TlsLayer, "tls_unique", return_value=None):
            client = peerlink.SecureLink.client(tls.client_context(), INFO_HASH)
            server = node_tls().accept(lookup_for(INFO_HASH))
            stolen = peerlink.PeerTls(*NODE)
            facing_client = tls.TlsLayer(stolen.server_context, server_side=True)
            facing_server = tls.TlsLayer(stolen.client_context, server_side=False)
            pump_layers(facing_server, server.tls, facing_server.start())
            c2m = client.start()
            for _ in range(MAX_ROUNDS):
                plain = facing_client.receive(c2m)
                m2c = facing_client.outgoing()
                if plain:
                    server.receive(facing_server.send(plain))
                back = facing_server.receive(server.outgoing())
                if back:
                    m2c += facing_client.send(back)
                client.receive(m2c)
                c2m = client.outgoing()
                if not c2m and not m2c:
                    break
            self.assertTrue(client.authenticated and server.authenticated)

    def test_tampered_ciphertext_is_detected_by_tls(self):
        state = {"count": 0}

        def tamper(direction, data):
            if direction == "c2s" and data and state["count"] == 2:  # the proof's flight
                data = data[:-5] + bytes((data[-5] ^ 0x40,)) + data[-4:]
            if direction == "c2s" and data:
                state["count"] += 1
            return data

        client, server = self.link_pair()
        with self.assertRaisesRegex(tls.TlsError, "TLS record rejected"):
            Wire(client, server, tamper).run()

    def test_plain_peer_answer_means_no_tls(self):
        client, _ = self.link_pair()
        client.start()
        with self.assertRaises(tls.TlsUnsupported):
            client.receive(os.urandom(96) + bytes(300))  # what an MSE peer sends back

    def test_tls_server_without_sta_alpn_is_not_an_sta_node(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*NODE)
        client = peerlink.SecureLink.client(tls.client_context(), INFO_HASH)
        other = tls.TlsLayer(context, server_side=True)
        with self.assertRaisesRegex(tls.TlsUnsupported, "ALPN"):
            pump_layers(client.tls, other, client.start())
            client.receive(b"")


class PolicyTests(unittest.TestCase):
    def test_incoming_first_bytes_pick_the_path(self):
        hello = b"\x16\x03\x01\x02\x00"
        greeting = b"\x13BitTorrent protocol"
        self.assertEqual(tls.incoming_mode("prefer", hello), "tls")
        self.assertEqual(tls.incoming_mode("prefer", greeting), "plain")
        self.assertEqual(tls.incoming_mode("require", hello), "tls")
        self.assertEqual(tls.incoming_mode("off", greeting + bytes(8)), "plain")
        self.assertEqual(tls.incoming_mode("prefer", b"\x8f" + bytes(19)), "mse")
        self.assertEqual(tls.incoming_mode("require", b"\x8f"), "mse")
        with self.assertRaisesRegex(tls.TlsError, "encryption is required"):
            tls.incoming_mode("require", greeting)
        with self.assertRaisesRegex(tls.TlsError, "encryption is off"):
            tls.incoming_mode("off", hello)
        with self.assertRaisesRegex(mse.MseUnsupported, "MSE/PE peer: encryption is off"):
            tls.incoming_mode("off", b"\x8f")

    def test_incoming_mode_waits_until_the_first_bytes_tell(self):
        for head in (b"", b"\x16", b"\x13", b"\x13BitTorrent"):
            self.assertIsNone(tls.incoming_mode("prefer", head), head)

    def test_mse_key_that_starts_like_tls_or_bittorrent_is_mse(self):
        # One key in 128 from another client starts with 0x13 or 0x16; what follows tells.
        self.assertEqual(tls.incoming_mode("prefer", b"\x16\x9a" + bytes(18)), "mse")
        self.assertEqual(tls.incoming_mode("prefer", b"\x13Bit" + bytes(16)), "mse")
        self.assertEqual(tls.incoming_mode("prefer", b"\x13\x00"), "mse")

    def test_policy_names_are_checked(self):
        self.assertEqual(tls.parse_policy("require"), "require")
        with self.assertRaisesRegex(tls.TlsError, "require, prefer, off"):
            tls.parse_policy("always")

    def test_prefer_tries_tls_then_mse_then_plain_and_remembers(self):
        memory = tls.PeerModeMemory(ttl=100)
        address = ("10.0.0.2", 6881)
        self.assertEqual(memory.first_attempt("prefer", address, 0), "tls")
        self.assertEqual(memory.attempt_failed("prefer", address, "tls",
                                               tls.TlsUnsupported("x"), 1), "mse")
        self.assertEqual(memory.first_attempt("prefer", address, 2), "mse")
        self.assertEqual(memory.attempt_failed("prefer", address, "mse",
                                               mse.MseUnsupported("x"), 3), "plain")
        self.assertEqual(memory.first_attempt("prefer", address, 4), "plain")
        self.assertIsNone(memory.attempt_failed("prefer", address, "plain",
                                                mse.MseUnsupported("x"), 5))
        self.assertEqual(memory.first_attempt("prefer", address, 200), "tls")  # forgotten

    def test_what_worked_is_remembered(self):
        memory = tls.PeerModeMemory()
        memory.record("a", "mse", 0)
        self.assertEqual(memory.first_attempt("prefer", "a", 1), "mse")
        self.assertEqual(memory.first_attempt("require", "a", 1), "mse")
        self.assertEqual(memory.first_attempt("off", "a", 1), "plain")

    def test_require_goes_from_tls_to_mse_but_never_plain(self):
        memory = tls.PeerModeMemory()
        address = ("10.0.0.2", 6881)
        self.assertEqual(memory.attempt_failed("require", address, "tls",
                                               tls.TlsUnsupported("x"), 0), "mse")
        self.assertIsNone(memory.attempt_failed("require", address, "mse",
                                                mse.MseUnsupported("x"), 0))
        self.assertIsNone(memory.first_attempt("require", address, 1))
        self.assertEqual(memory.first_attempt("off", address, 1), "plain")

    def test_failed_proof_or_handshake_is_never_retried(self):
        memory = tls.PeerModeMemory()
        self.assertIsNone(memory.attempt_failed("prefer", "a", "tls", tls.TlsAuthError("x"), 0))
        self.assertIsNone(memory.attempt_failed("prefer", "a", "tls", tls.TlsError("no"), 0))
        self.assertIsNone(memory.attempt_failed("prefer", "a", "mse", mse.MseError("no"), 0))
        self.assertEqual(memory.first_attempt("prefer", "a", 1), "tls")

    def test_mse_policy_offers_rc4_only_when_required(self):
        self.assertEqual(tls.mse_crypto("require"), mse.CRYPTO_RC4)
        self.assertEqual(tls.mse_crypto("prefer"), mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT)

    def test_memory_is_bounded(self):
        memory = tls.PeerModeMemory(capacity=3)
        for i in range(10):
            memory.record(i, "tls", 0)
        self.assertEqual([memory.known(i, 0) for i in (6, 7, 8, 9)], [None, "tls", "tls", "tls"])


class AsyncioLinkTests(unittest.TestCase):
    """The way peer.py uses the pieces: a protocol that reads the first byte, then runs the
    link over its transport, on 127.0.0.1."""

    def test_link_over_asyncio_transport(self):
        node = node_tls()
        received = []

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport, self.link = transport, None

            def data_received(self, data):
                try:
                    if self.link is None:
                        self.assert_mode = tls.incoming_mode("require", data)
                        self.link = node.accept(lookup_for(INFO_HASH))
                    plain = self.link.receive(data)
                    self.transport.write(self.link.outgoing())
                    if plain:
                        received.append(plain)
                        self.transport.write(self.link.send(b"ok:" + plain))
                except tls.TlsError as exc:
                    received.append(exc)
                    self.transport.close()

        async def main():
            loop = asyncio.get_event_loop()
            server = await loop.create_server(Server, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            link = node.connect(INFO_HASH)
            writer.write(link.start())
            answer = b""
            sent = False
            while not answer:
                data = await asyncio.wait_for(reader.read(65536), 10)
                self.assertTrue(data, "server hung up")
                answer += link.receive(data)
                out = link.outgoing()
                if link.authenticated and not sent:
                    out += link.send(b"hello")
                    sent = True
                writer.write(out)
            writer.write(link.close())
            writer.close()
            server.close()
            await server.wait_closed()
            return answer

        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        self.assertEqual(loop.run_until_complete(asyncio.wait_for(main(), 30)), b"ok:hello")
        self.assertEqual(received, [b"hello"])


class HttpsTrackerContextTests(unittest.TestCase):
    """The tracker's HTTPS context with a self-made certificate, checked by http.client through
    sta.announce.make_ssl_context (CA-file trust and fingerprint pinning)."""

    @classmethod
    def setUpClass(cls):
        tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(tmp.cleanup)
        cls.certfile, cls.keyfile = tls.ensure_node_identity(tmp.name, ["127.0.0.1"])
        with open(cls.certfile, "rb") as f:
            cls.fingerprint = tls.fingerprint_sha256(f.read())

    def setUp(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                body = b"d8:intervali60ee"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        context = tls.https_server_context(self.certfile, self.keyfile)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        self.addCleanup(thread.join, 5)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.port = server.server_address[1]

    def get(self, context: ssl.SSLContext) -> bytes:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=context)
        self.addCleanup(conn.close)
        conn.request("GET", "/announce")
        return conn.getresponse().read()

    def test_cafile_trust_with_strict_checks(self):
        context = ssl.create_default_context(cafile=self.certfile)
        context.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
        self.assertEqual(self.get(context), b"d8:intervali60ee")

    def test_announce_context_trusts_the_file_or_the_pin(self):
        try:
            from sta import announce
        except ImportError:  # pragma: no cover - the tracker client is another module
            self.skipTest("sta.announce not available")
        self.assertEqual(self.get(announce.make_ssl_context(cafile=self.certfile)),
                         b"d8:intervali60ee")
        self.assertEqual(self.get(announce.make_ssl_context(pin_sha256=self.fingerprint)),
                         b"d8:intervali60ee")
        with self.assertRaises(ssl.SSLError):
            self.get(announce.make_ssl_context(pin_sha256="00" * 32))

    def test_system_trust_rejects_the_self_made_certificate(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.get(ssl.create_default_context())


if __name__ == "__main__":
    unittest.main()
