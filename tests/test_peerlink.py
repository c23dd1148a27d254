"""Tests for sta.peerlink: the proof exchange between two STA nodes as bytes (no TLS), checked
against the framing and the proof formula its docstring states, and the link's refusals."""

from __future__ import annotations

import hashlib
import hmac
import unittest

from sta import peerlink, tls

INFO_HASH = hashlib.sha1(b"the torrent both peers have").digest()
OTHER_HASH = hashlib.sha1(b"some other torrent").digest()
CLIENT_NONCE = bytes(range(32))
SERVER_NONCE = bytes(range(32, 64))


def lookup_for(*info_hashes: bytes):
    table = {peerlink.torrent_id(h): h for h in info_hashes}
    return table.get


class ProofTests(unittest.TestCase):
    """The proof exchange alone, as bytes (no TLS)."""

    BINDING = peerlink.ChannelBinding(b"F" * 32, b"finished")

    def exchange(self, client_hash, server_hashes, client_binding=None, server_binding=None):
        client = peerlink.ClientAuth(client_hash, client_binding or self.BINDING)
        server = peerlink.ServerAuth(lookup_for(*server_hashes), server_binding or self.BINDING)
        reply = server.receive(client.hello())
        proof = client.receive(reply)
        server.receive(proof + b"\x13BitTorrent protocol")
        return client, server

    def test_same_info_hash_succeeds(self):
        client, server = self.exchange(INFO_HASH, [OTHER_HASH, INFO_HASH])
        self.assertTrue(client.complete and server.complete)
        self.assertEqual(server.info_hash, INFO_HASH)
        self.assertEqual(server.leftover, b"\x13BitTorrent protocol")

    def test_unknown_torrent_is_refused_without_a_proof(self):
        client = peerlink.ClientAuth(INFO_HASH, self.BINDING)
        server = peerlink.ServerAuth(lookup_for(OTHER_HASH), self.BINDING)
        reply = server.receive(client.hello())
        self.assertTrue(server.refused)
        self.assertEqual(reply[len(peerlink.AUTH_MAGIC) + 2:], bytes(64))
        with self.assertRaisesRegex(tls.TlsError, "does not have this torrent"):
            client.receive(reply)

    def test_different_binding_fails_on_both_sides(self):
        other = peerlink.ChannelBinding(b"M" * 32, b"finished")
        client = peerlink.ClientAuth(INFO_HASH, other)
        server = peerlink.ServerAuth(lookup_for(INFO_HASH), self.BINDING)
        reply = server.receive(client.hello())
        with self.assertRaisesRegex(tls.TlsAuthError, r"proof mismatch"):
            client.receive(reply)
        # and a client that pressed on anyway is caught by the server
        forged = peerlink._proof(peerlink.CLIENT_PROOF_LABEL, INFO_HASH,
                                 client.hello() + reply[:-32], other.value(True))
        with self.assertRaises(tls.TlsAuthError):
            server.receive(forged)

    def test_server_proof_is_not_accepted_as_client_proof(self):
        client = peerlink.ClientAuth(INFO_HASH, self.BINDING)
        server = peerlink.ServerAuth(lookup_for(INFO_HASH), self.BINDING)
        reply = server.receive(client.hello())
        with self.assertRaises(tls.TlsAuthError):
            server.receive(reply[-32:])  # reflected

    def test_flags_are_covered_by_the_proofs(self):
        client = peerlink.ClientAuth(INFO_HASH, self.BINDING)
        server = peerlink.ServerAuth(lookup_for(INFO_HASH), self.BINDING)
        hello = bytearray(client.hello())
        hello[len(peerlink.AUTH_MAGIC)] = 0  # a relay strips the tls-unique flag
        with self.assertRaises(tls.TlsAuthError):
            client.receive(server.receive(bytes(hello)))

    def test_tls_unique_is_used_only_when_both_have_it(self):
        without = peerlink.ChannelBinding(b"F" * 32, None)
        client, server = self.exchange(INFO_HASH, [INFO_HASH], without, self.BINDING)
        self.assertTrue(server.complete)

    def test_messages_arrive_in_pieces(self):
        client = peerlink.ClientAuth(INFO_HASH, self.BINDING)
        server = peerlink.ServerAuth(lookup_for(INFO_HASH), self.BINDING)
        reply = b""
        for byte in client.hello():
            reply += server.receive(bytes((byte,)))
        proof = b""
        for byte in reply:
            proof += client.receive(bytes((byte,)))
        for byte in proof:
            server.receive(bytes((byte,)))
        self.assertTrue(server.complete)

    def test_bad_greeting_and_early_data_are_errors(self):
        server = peerlink.ServerAuth(lookup_for(INFO_HASH), self.BINDING)
        with self.assertRaisesRegex(tls.TlsError, "bad greeting"):
            server.receive(b"\x13BitTorrent protocol")
        client = peerlink.ClientAuth(INFO_HASH, self.BINDING)
        server = peerlink.ServerAuth(lookup_for(INFO_HASH), self.BINDING)
        with self.assertRaises(tls.TlsAuthError):
            server.receive(client.hello() + b"x")

    def test_torrent_id_is_domain_separated(self):
        self.assertNotEqual(peerlink.torrent_id(INFO_HASH), hashlib.sha256(INFO_HASH).digest())
        self.assertNotEqual(peerlink.torrent_id(INFO_HASH)[:20], hashlib.sha1(INFO_HASH).digest())
        self.assertEqual(len(peerlink.torrent_id(bytes(32))), 32)  # v2 info hashes too


class FramingTests(unittest.TestCase):
    """The bytes on the wire, rebuilt from the module's docstring rather than from its code."""

    BINDING = peerlink.ChannelBinding(b"F" * 32, b"finished")

    def test_torrent_id_is_sha256_of_label_and_info_hash(self):
        self.assertEqual(peerlink.torrent_id(INFO_HASH),
                         hashlib.sha256(b"STA torrent id v1" + INFO_HASH).digest())

    def test_hellos_and_proofs_are_framed_as_documented(self):
        client = peerlink.ClientAuth(INFO_HASH, self.BINDING, nonce=CLIENT_NONCE)
        server = peerlink.ServerAuth(lookup_for(INFO_HASH), self.BINDING, nonce=SERVER_NONCE)
        magic = b"\x0fSTA peer auth 1"
        hello = client.hello()
        self.assertEqual(hello, magic + b"\x01" + peerlink.torrent_id(INFO_HASH) + CLIENT_NONCE)
        reply = server.receive(hello)
        head = magic + b"\x00\x01" + SERVER_NONCE  # status OK, flags: tls-unique
        self.assertEqual(reply[:-32], head)
        binding = b"F" * 32 + b"finished"
        self.assertEqual(reply[-32:], hmac.new(
            INFO_HASH, b"STA peer auth 1 server proof" + hello + head + binding,
            hashlib.sha256).digest())
        proof = client.receive(reply)
        self.assertEqual(proof, hmac.new(
            INFO_HASH, b"STA peer auth 1 client proof" + hello + head + binding,
            hashlib.sha256).digest())
        self.assertEqual(server.receive(proof), b"")
        self.assertTrue(server.complete)

    def test_nonces_are_fresh_for_each_connection(self):
        first = peerlink.ClientAuth(INFO_HASH, self.BINDING).hello()
        second = peerlink.ClientAuth(INFO_HASH, self.BINDING).hello()
        self.assertEqual(first[:-peerlink.NONCE_SIZE], second[:-peerlink.NONCE_SIZE])
        self.assertNotEqual(first[-peerlink.NONCE_SIZE:], second[-peerlink.NONCE_SIZE:])

    def test_only_v1_and_v2_info_hash_lengths_are_accepted(self):
        for size in peerlink.INFO_HASH_SIZES:
            peerlink.ClientAuth(bytes(size), self.BINDING)
        for size in (0, 19, 21, 64):
            with self.subTest(size=size), self.assertRaisesRegex(tls.TlsError, "20 or 32"):
                peerlink.ClientAuth(bytes(size), self.BINDING)

    def test_lookup_answering_another_torrent_is_a_refusal(self):
        server = peerlink.ServerAuth(lambda tid: OTHER_HASH, self.BINDING)
        server.receive(peerlink.ClientAuth(INFO_HASH, self.BINDING).hello())
        self.assertTrue(server.refused)
        self.assertIsNone(server.info_hash)

    def test_unknown_status_is_an_error_naming_it(self):
        client = peerlink.ClientAuth(INFO_HASH, self.BINDING)
        with self.assertRaisesRegex(tls.TlsError, r"status 7"):
            client.receive(peerlink.AUTH_MAGIC + b"\x07")

    def test_nothing_is_accepted_after_the_exchange(self):
        client = peerlink.ClientAuth(INFO_HASH, self.BINDING)
        server = peerlink.ServerAuth(lookup_for(INFO_HASH), self.BINDING)
        server.receive(client.receive(server.receive(client.hello())))
        for side in (client, server):
            with self.subTest(side=type(side).__name__), \
                    self.assertRaisesRegex(tls.TlsAuthError, "after authentication"):
                side.receive(b"x")


class SecureLinkSetupTests(unittest.TestCase):
    def test_a_server_link_needs_a_lookup_and_its_certificate(self):
        context = tls.client_context()
        with self.assertRaisesRegex(tls.TlsError, "lookup and its certificate"):
            peerlink.SecureLink(context, True, lookup=lookup_for(INFO_HASH))
        with self.assertRaisesRegex(tls.TlsError, "needs the info hash"):
            peerlink.SecureLink(context, False)

    def test_nothing_is_sent_before_authentication(self):
        link = peerlink.SecureLink.client(tls.client_context(), INFO_HASH)
        for send in (lambda: link.send(b"piece"), lambda: link.send_many([b"piece"])):
            with self.assertRaisesRegex(tls.TlsError, "not authenticated"):
                send()


if __name__ == "__main__":
    unittest.main()
