"""MSE/PE: RC4 against published vectors, the handshake with byte strings in both roles, against
each other and with every chunking of each side's stream, and the link the transport uses."""

from __future__ import annotations

import hashlib
import random
import unittest
from typing import List, Optional, Tuple

from sta import mse
from sta.mse import CRYPTO_PLAINTEXT, CRYPTO_RC4, MseError, MseHandshake, MseLink, MseUnsupported

INFO_HASH = hashlib.sha1(b"a torrent").digest()
OTHER_HASH = hashlib.sha1(b"another torrent").digest()
BOTH = CRYPTO_PLAINTEXT | CRYPTO_RC4


def lookup(skey: bytes) -> Optional[bytes]:
    return {mse.skey_hash(INFO_HASH): INFO_HASH}.get(skey)


def seeded(seed: int):
    """A deterministic random source, so a failing chunking is reproducible."""
    rng = random.Random(seed)
    return lambda n: bytes(rng.getrandbits(8) for _ in range(n))


def pair(provide: int = BOTH, allowed: int = BOTH, seed: int = 1,
         info_hash: bytes = INFO_HASH) -> Tuple[MseHandshake, MseHandshake]:
    a = MseHandshake(True, info_hash=info_hash, provide=provide, random_bytes=seeded(seed))
    b = MseHandshake(False, lookup=lookup, provide=allowed, random_bytes=seeded(seed + 1000))
    return a, b


def feed(side: MseHandshake, data: bytes, cuts=()) -> bytes:
    """Feed ``data`` cut at ``cuts``; return everything the side answered."""
    out = []
    last = 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]:
        if side.result is None:
            out.append(side.receive(data[last:cut]))
        else:  # the handshake is over: what follows is the caller's (MseLink's) business
            side.late = getattr(side, "late", b"") + data[last:cut]
        last = cut
    return b"".join(out)


def after(side: MseHandshake) -> bytes:
    """Every byte that followed the side's handshake, as received."""
    return side.result.remainder + getattr(side, "late", b"")


def run(a: MseHandshake, b: MseHandshake, cuts=((), (), (), ()), payload_ab: bytes = b"",
        payload_ba: bytes = b"") -> List[bytes]:
    """The whole exchange, message k cut at ``cuts[k]``; ``payload_*`` follow each side's last
    handshake message at once (as a BitTorrent handshake does). Returns the four messages."""
    msg1 = a.start()
    msg2 = feed(b, msg1, cuts[0])
    msg3 = feed(a, msg2, cuts[1])
    msg4 = feed(b, msg3 + payload_ab, cuts[2])
    feed(a, msg4 + payload_ba, cuts[3])
    return [msg1, msg2, msg3, msg4]


class Rc4Tests(unittest.TestCase):
    def test_keystream_matches_the_published_vectors(self):
        # RFC 6229 is for discarded streams; these are the classic Wikipedia/Schneier vectors.
        self.assertEqual(mse.RC4(b"Key", discard=0).crypt(b"Plaintext").hex(),
                         "bbf316e8d940af0ad3")
        self.assertEqual(mse.RC4(b"Wiki", discard=0).crypt(b"pedia").hex(), "1021bf0420")
        self.assertEqual(mse.RC4(b"Secret", discard=0).crypt(b"Attack at dawn").hex(),
                         "45a01f645fc35b383552544b9bf5")

    def test_rfc6229_40_bit_key_at_offsets_0_and_1024(self):
        # RFC 6229, key 0x0102030405; offset 1024 is where MSE's streams start.
        key = bytes([1, 2, 3, 4, 5])
        self.assertEqual(mse.RC4(key, discard=0).keystream(16).hex(),
                         "b2396305f03dc027ccc3524a0a1118a8")
        self.assertEqual(mse.RC4(key).keystream(16).hex(), "30abbcc7c20b01609f23ee2d5f6bb7df")

    def test_stream_continues_across_calls_of_any_size(self):
        data = bytes(range(256)) * 20
        whole = mse.RC4(b"k" * 20).crypt(data)
        rc4 = mse.RC4(b"k" * 20)
        pieces = []
        pos = 0
        for size in (1, 7, 255, 256, 257, 0, 1000, 3):
            pieces.append(rc4.crypt(data[pos:pos + size]))
            pos += size
        pieces.append(rc4.crypt(data[pos:]))
        self.assertEqual(b"".join(pieces), whole)

    def test_decrypting_gives_back_the_plaintext(self):
        data = bytes(random.Random(3).getrandbits(8) for _ in range(5000))
        self.assertEqual(mse.RC4(b"key").crypt(mse.RC4(b"key").crypt(data)), data)


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


class HandshakeTests(unittest.TestCase):
    def test_both_sides_agree_on_plaintext_when_both_allow_it(self):
        a, b = pair()
        run(a, b)
        self.assertEqual((a.result.method, b.result.method), (CRYPTO_PLAINTEXT, CRYPTO_PLAINTEXT))
        self.assertEqual((a.result.info_hash, b.result.info_hash), (INFO_HASH, INFO_HASH))

    def test_rc4_is_chosen_when_either_side_insists(self):
        for provide, allowed in ((CRYPTO_RC4, BOTH), (BOTH, CRYPTO_RC4), (CRYPTO_RC4, CRYPTO_RC4)):
            with self.subTest(provide=provide, allowed=allowed):
                a, b = pair(provide, allowed)
                run(a, b)
                self.assertEqual((a.result.method, b.result.method), (CRYPTO_RC4, CRYPTO_RC4))

    def test_responder_refuses_plaintext_only_offer_when_rc4_is_required(self):
        a, b = pair(CRYPTO_PLAINTEXT, CRYPTO_RC4)
        with self.assertRaisesRegex(MseError, "offers crypto 0x1; this node takes RC4 only"):
            run(a, b)

    def test_responder_refuses_an_unknown_torrent(self):
        a, b = pair(info_hash=OTHER_HASH)
        with self.assertRaisesRegex(MseError, "torrent this node does not have"):
            run(a, b)

    def test_payload_after_each_handshake_is_left_for_the_caller(self):
        a, b = pair()
        run(a, b, payload_ab=b"from A", payload_ba=b"from B")
        self.assertEqual(b.result.remainder, b"from A")
        self.assertEqual(a.result.remainder, b"from B")

    def test_every_single_cut_of_every_message_gives_the_same_result(self):
        reference = run(*pair(provide=CRYPTO_RC4, seed=7), payload_ab=b"x" * 30,
                        payload_ba=b"y" * 30)
        for k, message in enumerate(reference):
            for cut in range(1, len(message) + 30):
                cuts = [(), (), (), ()]
                cuts[k] = (cut,)
                a, b = pair(provide=CRYPTO_RC4, seed=7)
                with self.subTest(message=k + 1, cut=cut):
                    self.assertEqual(run(a, b, cuts, b"x" * 30, b"y" * 30), reference)
                    self.assertEqual(after(b), b"x" * 30)
                    self.assertEqual(after(a), b"y" * 30)

    def test_byte_at_a_time_and_random_chunkings_give_the_same_result(self):
        for seed in range(12):
            reference = run(*pair(seed=seed), payload_ab=b"ab", payload_ba=b"ba")
            rng = random.Random(seed)
            every = [range(1, len(m) + 2) for m in reference]
            some = [rng.sample(range(1, len(m) + 2), min(len(m), rng.randrange(1, 40)))
                    for m in reference]
            for cuts in (every, some):
                a, b = pair(seed=seed)
                with self.subTest(seed=seed, every=cuts is every):
                    self.assertEqual(run(a, b, cuts, b"ab", b"ba"), reference)
                    self.assertEqual((after(a), after(b)), (b"ba", b"ab"))

    def test_initiator_key_never_starts_like_bittorrent_or_tls(self):
        for seed in range(300):
            a = MseHandshake(True, info_hash=INFO_HASH, random_bytes=seeded(seed))
            self.assertNotIn(a.start()[0], (0x13, 0x16))

    def test_responder_gives_up_when_no_marker_within_the_pad_bound(self):
        b = MseHandshake(False, lookup=lookup)
        a = MseHandshake(True, info_hash=INFO_HASH)
        b.receive(a.start()[:mse.KEY_SIZE])
        with self.assertRaisesRegex(MseUnsupported, "within 512 bytes"):
            b.receive(bytes(mse.MAX_PAD + mse.HASH_SIZE))

    def test_initiator_gives_up_when_no_marker_within_the_pad_bound(self):
        a = MseHandshake(True, info_hash=INFO_HASH)
        b = MseHandshake(False, lookup=lookup)
        a.start()
        a.receive(b.public_key)
        with self.assertRaisesRegex(MseUnsupported, "within 512 bytes"):
            a.receive(bytes(mse.MAX_PAD + 8))

    def test_trivial_public_keys_are_refused(self):
        for key in (0, 1, mse.PRIME - 1):
            b = MseHandshake(False, lookup=lookup)
            with self.subTest(key=key), self.assertRaises(MseUnsupported):
                b.receive(key.to_bytes(mse.KEY_SIZE, "big"))


class HandBuiltPeerTests(unittest.TestCase):
    """The other side written out from the specification, with the pads and IA that
    Transmission and libtorrent send, so the two state machines are not only checked against
    each other."""

    def test_responder_takes_a_peer_with_pad_c_and_an_initial_payload(self):
        b = MseHandshake(False, lookup=lookup, provide=BOTH)
        xa = 0x1234567890ABCDEF1234567890ABCDEF12345678
        ya = pow(2, xa, mse.PRIME).to_bytes(96, "big")
        reply = b.receive(ya + b"\x55" * 100)  # Ya and a 100-byte PadA
        self.assertTrue(96 <= len(reply) <= 96 + mse.MAX_PAD, len(reply))  # Yb and PadB
        yb = int.from_bytes(reply[:96], "big")
        s = pow(yb, xa, mse.PRIME).to_bytes(96, "big")
        enc = mse.RC4(sha1(b"keyA", s, INFO_HASH))
        dec = mse.RC4(sha1(b"keyB", s, INFO_HASH))
        ia = b"\x13BitTorrent protocol" + bytes(8) + INFO_HASH + b"-TR4000-abcdefghijkl"
        body = (bytes(8) + (3).to_bytes(4, "big") + (7).to_bytes(2, "big") + b"padpadp"
                + len(ia).to_bytes(2, "big") + ia)
        step3 = (sha1(b"req1", s) + bytes(x ^ y for x, y in zip(sha1(b"req2", INFO_HASH),
                                                                 sha1(b"req3", s)))
                 + enc.crypt(body))
        step4 = b.receive(step3 + enc.crypt(b"after IA"))
        self.assertEqual(b.result.initial_payload, ia)
        self.assertEqual(b.result.method, CRYPTO_PLAINTEXT)
        self.assertEqual(dec.crypt(step4), bytes(8) + b"\0\0\0\x01" + b"\0\0")
        # Plaintext chosen: what A sent after step 3 is A's business (here: RC4, so garbage).
        self.assertEqual(len(b.result.remainder), len(b"after IA"))

    def test_initiator_takes_a_peer_with_pad_b_and_pad_d(self):
        a = MseHandshake(True, info_hash=INFO_HASH, provide=CRYPTO_RC4)
        msg1 = a.start()
        xb = 0xFEDCBA0987654321FEDCBA0987654321FEDCBA09
        yb = pow(2, xb, mse.PRIME).to_bytes(96, "big")
        s = pow(int.from_bytes(msg1[:96], "big"), xb, mse.PRIME).to_bytes(96, "big")
        step3 = a.receive(yb + b"\xaa" * 300)
        dec = mse.RC4(sha1(b"keyA", s, INFO_HASH))
        enc = mse.RC4(sha1(b"keyB", s, INFO_HASH))
        self.assertEqual(step3[:20], sha1(b"req1", s))
        self.assertEqual(bytes(x ^ y for x, y in zip(step3[20:40], sha1(b"req3", s))),
                         sha1(b"req2", INFO_HASH))
        self.assertEqual(dec.crypt(step3[40:]), bytes(8) + b"\0\0\0\x02" + b"\0\0" + b"\0\0")
        a.receive(enc.crypt(bytes(8) + b"\0\0\0\x02" + b"\0\x05" + b"12345") + enc.crypt(b"bt"))
        self.assertEqual(a.result.method, CRYPTO_RC4)
        self.assertEqual(a.result.decryptor.crypt(a.result.remainder), b"bt")

    def test_initiator_refuses_a_method_it_did_not_offer(self):
        a = MseHandshake(True, info_hash=INFO_HASH, provide=CRYPTO_RC4)
        msg1 = a.start()
        xb = 0xFEDCBA0987654321FEDCBA0987654321FEDCBA09
        s = pow(int.from_bytes(msg1[:96], "big"), xb, mse.PRIME).to_bytes(96, "big")
        a.receive(pow(2, xb, mse.PRIME).to_bytes(96, "big"))
        enc = mse.RC4(sha1(b"keyB", s, INFO_HASH))
        with self.assertRaisesRegex(MseError, "chose crypto method 0x1, which was not offered"):
            a.receive(enc.crypt(bytes(8) + b"\0\0\0\x01" + b"\0\0"))


class LinkTests(unittest.TestCase):
    def links(self, provide: int, allowed: int) -> Tuple[MseLink, MseLink]:
        a = MseLink.initiator(INFO_HASH, provide)
        b = MseLink.responder(lookup, allowed)
        b.receive(a.start())
        a.receive(b.outgoing())
        return a, b

    def test_rc4_link_carries_bytes_both_ways_encrypted(self):
        a, b = self.links(CRYPTO_RC4, BOTH)
        step3 = a.outgoing()
        self.assertEqual(b.receive(step3), b"")
        self.assertTrue(b.authenticated)
        self.assertEqual(a.receive(b.outgoing()), b"")
        self.assertTrue(a.authenticated and a.encrypted and b.encrypted)
        wire_ab = a.send_many([b"\x13BitTorrent", b" protocol"])
        self.assertNotIn(b"BitTorrent", wire_ab)
        self.assertEqual(b.receive(wire_ab[:5]) + b.receive(wire_ab[5:]),
                         b"\x13BitTorrent protocol")
        self.assertEqual(a.receive(b.send_many([b"answer"])), b"answer")
        self.assertEqual((a.info_hash, b.info_hash), (INFO_HASH, INFO_HASH))

    def test_plaintext_link_passes_payload_unchanged(self):
        a, b = self.links(BOTH, BOTH)
        b.receive(a.outgoing())
        a.receive(b.outgoing())
        self.assertFalse(a.encrypted or b.encrypted)
        self.assertEqual(a.send_many([b"abc", b"def"]), b"abcdef")
        self.assertEqual(b.receive(b"abcdef"), b"abcdef")

    def test_nothing_is_sent_before_the_link_is_established(self):
        a = MseLink.initiator(INFO_HASH, BOTH)
        a.start()
        with self.assertRaises(MseError):
            a.send_many([b"early"])

    def test_a_peer_that_never_answers_the_key_does_not_speak_mse(self):
        a = MseLink.initiator(INFO_HASH, BOTH)
        a.start()
        a.receive(b"\x13BitTorrent protocol")
        self.assertIsInstance(a.lost_error(), MseUnsupported)
        self.assertFalse(a.handshake_complete)

    def test_a_peer_that_hangs_up_after_its_key_is_an_mse_failure(self):
        a, _ = self.links(BOTH, BOTH)
        self.assertTrue(a.handshake_complete)
        error = a.lost_error()
        self.assertIsInstance(error, MseError)
        self.assertNotIsInstance(error, MseUnsupported)


if __name__ == "__main__":
    unittest.main()
