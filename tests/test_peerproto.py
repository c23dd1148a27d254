"""Tests for sta.peerproto: the rules of one peer wire conversation, driven with byte strings only
(sta.wire's encoders build the input)."""

from __future__ import annotations

import random
import unittest
from typing import Any, List, Tuple

from sta import ut_metadata, wire
from sta.peerproto import (DEFAULT_PEER_REQQ, EXTENSION_IDS, MAX_CLIENT_NAME, UT_METADATA,
                           PeerProtocol, PeerProtocolError)

INFO_HASH = bytes(range(20))
OTHER_HASH = bytes(range(100, 120))
OUR_ID = b"-SX0001-ourselves000"
PEER_ID = b"-XX0001-thepeer00000"
OUR_METADATA_ID = EXTENSION_IDS[UT_METADATA]
# Bounds of the randomized round trip: enough messages and seeds to meet every kind many times
# and every way of cutting them, small enough to run in a fraction of a second.
ROUND_TRIP_SEEDS = 20
ROUND_TRIP_MESSAGES = 60
MAX_CHUNK = 300

Errors = (PeerProtocolError, wire.WireError)


def peer_handshake(info_hash: bytes = INFO_HASH, peer_id: bytes = PEER_ID,
                   extensions: bool = True, fast: bool = False) -> bytes:
    return wire.handshake(info_hash, peer_id, extensions=extensions, fast=fast)


def plain(events: List[Any]) -> List[Any]:
    """Events with block views turned into bytes, to compare with expected values."""
    return [wire.Piece(e.index, e.begin, bytes(e.block)) if type(e) is wire.Piece else e
            for e in events]


def outgoing(open_: bool = True) -> PeerProtocol:
    """A conversation we dialled for INFO_HASH; ``open_`` sends our handshake first."""
    proto = PeerProtocol(OUR_ID, INFO_HASH)
    if open_:
        proto.send_handshake()
    return proto


def joined(extensions: bool = True, fast: bool = False) -> PeerProtocol:
    """An outgoing conversation with both handshakes done (BEP 6 on if ``fast``)."""
    proto = outgoing()
    events = proto.receive_data(peer_handshake(extensions=extensions, fast=fast))
    assert [type(e) for e in events] == [wire.Handshake]
    return proto


def ext_handshake(m: Any = None, **fields: Any) -> bytes:
    return wire.extended_handshake(m or {}, **fields)


class HandshakeTests(unittest.TestCase):
    def test_peer_handshake_is_the_first_event_and_records_the_peer(self):
        proto = outgoing()
        events = proto.receive_data(peer_handshake() + wire.unchoke())
        reserved = bytes(5) + b"\x10" + bytes(2)  # the BEP 10 bit
        self.assertEqual(events, [wire.Handshake(reserved, INFO_HASH, PEER_ID), wire.Unchoke()])
        self.assertTrue(proto.handshake_received)
        self.assertEqual(proto.peer_id, PEER_ID)
        self.assertTrue(proto.supports_extensions)

    def test_any_other_message_first_is_an_error(self):
        for first in (wire.unchoke(), wire.keepalive(), wire.have(1), wire.request(0, 0, 16384),
                      b"\x16\x03\x01\x02\x00", b"\x13BitTorrent protocoX"):
            with self.subTest(first=first):
                proto = outgoing()
                with self.assertRaises(Errors):
                    proto.receive_data(first + peer_handshake())
                self.assertFalse(proto.handshake_received)

    def test_outgoing_conversation_rejects_a_handshake_naming_another_torrent(self):
        proto = outgoing()
        with self.assertRaisesRegex(PeerProtocolError, "wrong info hash"):
            proto.receive_data(peer_handshake(OTHER_HASH))
        self.assertFalse(proto.handshake_received)

    def test_incoming_conversation_learns_the_info_hash_and_answers(self):
        proto = PeerProtocol(OUR_ID)
        self.assertIsNone(proto.info_hash)
        events = proto.receive_data(peer_handshake(OTHER_HASH))
        self.assertEqual(events[0].info_hash, OTHER_HASH)
        self.assertTrue(proto.handshake_received)
        answer = proto.send_handshake(events[0].info_hash)
        self.assertEqual(answer, wire.handshake(OTHER_HASH, OUR_ID, extensions=True, fast=True))
        self.assertEqual(proto.info_hash, OTHER_HASH)
        self.assertTrue(proto.handshake_sent)

    def test_incoming_conversation_cannot_answer_before_the_torrent_is_known(self):
        proto = PeerProtocol(OUR_ID)
        with self.assertRaisesRegex(PeerProtocolError, "torrent is known"):
            proto.send_handshake()
        self.assertFalse(proto.handshake_sent)

    # The peer's handshake sets nothing an incoming conversation can check our answer against:
    # _on_handshake (peerproto.py) records peer_id and reserved but not info_hash when
    # self.info_hash is None, so send_handshake's "another torrent than the peer's" check never
    # fires for an incoming conversation, and proto.info_hash stays None until we answer.
    def test_incoming_answer_naming_another_torrent_than_the_peer_is_refused(self):
        proto = PeerProtocol(OUR_ID)
        proto.receive_data(peer_handshake(INFO_HASH))
        with self.assertRaisesRegex(PeerProtocolError, "another torrent"):
            proto.send_handshake(OTHER_HASH)

    def test_outgoing_answer_for_another_torrent_is_refused(self):
        proto = PeerProtocol(OUR_ID, INFO_HASH)
        with self.assertRaisesRegex(PeerProtocolError, "another torrent"):
            proto.send_handshake(OTHER_HASH)
        self.assertEqual(proto.send_handshake(INFO_HASH),
                         wire.handshake(INFO_HASH, OUR_ID, fast=True))

    def test_nothing_may_be_sent_before_our_handshake(self):
        proto = outgoing(open_=False)
        proto.receive_data(peer_handshake())
        sends = [
            lambda: proto.send_extended_handshake(v="x"), lambda: proto.send_choking(False),
            lambda: proto.send_interested(True), lambda: proto.send_have(0),
            lambda: proto.send_bitfield(b"\xff"), lambda: proto.send_keepalive(),
            lambda: proto.send_cancel(0, 0, 16384), lambda: proto.send_piece_header(0, 0, 1),
            lambda: proto.send_requests([(0, 0, 16384)]),
            lambda: proto.send_extended(UT_METADATA, b"x"),
        ]
        for n, send in enumerate(sends):
            with self.subTest(send=n):
                with self.assertRaisesRegex(PeerProtocolError, "before our handshake"):
                    send()
        self.assertTrue(proto.am_choking)
        self.assertFalse(proto.am_interested)

    def test_sending_our_handshake_twice_is_an_error(self):
        proto = outgoing()
        with self.assertRaisesRegex(PeerProtocolError, "twice"):
            proto.send_handshake()

    def test_receiving_a_second_handshake_is_an_error(self):
        proto = joined()
        with self.assertRaises(Errors):
            proto.receive_data(peer_handshake())

    def test_handshake_bits_are_read_from_the_reserved_bytes(self):
        self.assertFalse(joined(extensions=False).supports_extensions)
        self.assertTrue(joined(extensions=True).supports_extensions)


class FlagTests(unittest.TestCase):
    def test_peer_flags_follow_what_the_peer_sends(self):
        proto = joined()
        self.assertEqual((proto.peer_choking, proto.peer_interested), (True, False))
        steps = [
            (wire.unchoke(), (False, False)), (wire.interested(), (False, True)),
            (wire.choke(), (True, True)), (wire.not_interested(), (True, False)),
            (wire.unchoke() + wire.interested() + wire.choke(), (True, True)),
        ]
        for data, flags in steps:
            proto.receive_data(data)
            self.assertEqual((proto.peer_choking, proto.peer_interested), flags)
        # Our own flags did not move.
        self.assertEqual((proto.am_choking, proto.am_interested), (True, False))

    def test_our_flags_change_only_when_a_message_goes_out(self):
        proto = joined()
        self.assertEqual(proto.send_choking(True), b"")
        self.assertEqual(proto.send_interested(False), b"")
        self.assertEqual(proto.send_choking(False), wire.unchoke())
        self.assertFalse(proto.am_choking)
        self.assertEqual(proto.send_choking(False), b"")
        self.assertEqual(proto.send_interested(True), wire.interested())
        self.assertTrue(proto.am_interested)
        self.assertEqual(proto.send_interested(True), b"")
        self.assertEqual(proto.send_choking(True), wire.choke())
        self.assertEqual(proto.send_interested(False), wire.not_interested())
        self.assertEqual((proto.am_choking, proto.am_interested), (True, False))
        # The peer's flags did not move.
        self.assertEqual((proto.peer_choking, proto.peer_interested), (True, False))

    def test_requests_while_we_choke_are_dropped_and_counted(self):
        proto = joined()
        events = proto.receive_data(wire.request(0, 0, 16384) + wire.have(3)
                                    + wire.requests([(1, 0, 16384), (1, 16384, 16384)]))
        self.assertEqual(events, [wire.Have(3)])
        self.assertEqual(proto.ignored_requests, 3)

    def test_requests_are_kept_once_we_unchoke(self):
        proto = joined()
        proto.receive_data(wire.request(0, 0, 16384))
        proto.send_choking(False)
        events = proto.receive_data(wire.request(2, 0, 16384) + wire.cancel(2, 0, 16384))
        self.assertEqual(events, [wire.Request(2, 0, 16384), wire.Cancel(2, 0, 16384)])
        self.assertEqual(proto.ignored_requests, 1)
        proto.send_choking(True)
        self.assertEqual(proto.receive_data(wire.request(3, 0, 16384)), [])
        self.assertEqual(proto.ignored_requests, 2)

    def test_cancel_and_piece_pass_whatever_we_choke(self):
        proto = joined()
        events = proto.receive_data(wire.cancel(1, 0, 10) + wire.piece(1, 0, b"abc"))
        self.assertEqual(plain(events), [wire.Cancel(1, 0, 10), wire.Piece(1, 0, b"abc")])
        self.assertEqual(proto.ignored_requests, 0)


class ExtensionTests(unittest.TestCase):
    def test_extension_handshake_is_parsed_into_peer_extensions(self):
        proto = joined()
        events = proto.receive_data(ext_handshake(
            {"ut_metadata": 3, "ut_pex": 1}, v="Transmission 4.0", reqq=500, p=51413,
            metadata_size=12345, upload_only=1))
        self.assertEqual(type(events[0]), wire.ExtendedHandshake)
        ext = proto.extensions
        self.assertEqual(ext.ids, {"ut_metadata": 3, "ut_pex": 1})
        self.assertEqual(ext.client, "Transmission 4.0")
        self.assertEqual(ext.reqq, 500)
        self.assertEqual(ext.listen_port, 51413)
        self.assertEqual(ext.metadata_size, 12345)
        self.assertTrue(ext.upload_only)

    def test_missing_fields_keep_their_defaults(self):
        proto = joined()
        proto.receive_data(ext_handshake({}))
        ext = proto.extensions
        self.assertEqual(ext.ids, {})
        self.assertIsNone(ext.client)
        self.assertEqual(ext.reqq, DEFAULT_PEER_REQQ)
        self.assertIsNone(ext.listen_port)
        self.assertIsNone(ext.metadata_size)
        self.assertFalse(ext.upload_only)

    def test_out_of_range_fields_are_ignored(self):
        proto = joined()
        proto.receive_data(ext_handshake({"ut_metadata": 300}, reqq=0, p=70000,
                                         metadata_size=-5))
        ext = proto.extensions
        self.assertEqual(ext.ids, {})
        self.assertEqual(ext.reqq, DEFAULT_PEER_REQQ)
        self.assertIsNone(ext.listen_port)
        self.assertIsNone(ext.metadata_size)

    def test_id_zero_in_a_later_handshake_disables_an_extension(self):
        proto = joined()
        proto.receive_data(ext_handshake({"ut_metadata": 3, "ut_pex": 1}, reqq=77))
        proto.receive_data(ext_handshake({"ut_metadata": 0}))
        self.assertEqual(proto.extensions.ids, {"ut_pex": 1})
        self.assertEqual(proto.extensions.reqq, 77)  # not named again: kept
        self.assertEqual(proto.send_extended(UT_METADATA, b"x"), b"")

    # PeerExtensions.update (peerproto.py) sets upload_only from every handshake, so a later
    # handshake that does not name upload_only (one that only turns an extension off, say)
    # clears it, unlike every other field and unlike its docstring ("a later handshake updates
    # the fields it names").
    def test_later_handshake_without_upload_only_keeps_it(self):
        proto = joined()
        proto.receive_data(ext_handshake({"ut_metadata": 3}, upload_only=1))
        proto.receive_data(ext_handshake({"ut_metadata": 0}))
        self.assertTrue(proto.extensions.upload_only)

    def test_client_name_is_cut_to_the_limit(self):
        proto = joined()
        proto.receive_data(ext_handshake(v="x" * (MAX_CLIENT_NAME * 3)))
        self.assertEqual(proto.extensions.client, "x" * MAX_CLIENT_NAME)

    def test_send_extended_uses_the_peer_id_and_sends_nothing_for_a_missing_extension(self):
        proto = joined()
        self.assertEqual(proto.send_extended(UT_METADATA, b"payload"), b"")
        proto.receive_data(ext_handshake({UT_METADATA: 9}))
        self.assertEqual(proto.send_extended(UT_METADATA, b"payload"),
                         wire.extended(9, b"payload"))
        self.assertEqual(proto.send_extended("ut_pex", b"payload"), b"")

    def test_our_extension_handshake_goes_only_to_a_peer_with_the_bit(self):
        self.assertEqual(joined(extensions=False).send_extended_handshake(v="STA"), b"")
        message = joined(extensions=True).send_extended_handshake(v="STA", reqq=10)
        self.assertEqual(message, wire.extended_handshake(dict(EXTENSION_IDS), v="STA", reqq=10))

    def test_ut_metadata_message_decodes_only_our_id(self):
        proto = joined()
        ours = wire.Extended(OUR_METADATA_ID, ut_metadata.metadata_request(4))
        self.assertEqual(proto.ut_metadata_message(ours),
                         ut_metadata.MetadataMessage(ut_metadata.METADATA_REQUEST, 4, None, b""))
        data = wire.Extended(OUR_METADATA_ID, ut_metadata.metadata_data(0, 5, b"hello"))
        self.assertEqual(proto.ut_metadata_message(data),
                         ut_metadata.MetadataMessage(ut_metadata.METADATA_DATA, 0, 5, b"hello"))
        other = wire.Extended(OUR_METADATA_ID + 1, ut_metadata.metadata_request(4))
        self.assertIsNone(proto.ut_metadata_message(other))

    def test_malformed_ut_metadata_payload_is_a_protocol_error(self):
        proto = joined()
        for payload in (b"", b"not bencoding", b"le", b"d5:piecei0ee",
                        b"d8:msg_typei0e5:piecei-1ee",
                        ut_metadata.metadata_data(0, 5, b"too long by far")):
            with self.subTest(payload=payload):
                with self.assertRaises(PeerProtocolError):
                    proto.ut_metadata_message(wire.Extended(OUR_METADATA_ID, payload))

    def test_extended_messages_pass_through_as_events(self):
        proto = joined()
        events = proto.receive_data(wire.extended(OUR_METADATA_ID, ut_metadata.metadata_reject(1)))
        self.assertEqual(events, [wire.Extended(OUR_METADATA_ID, ut_metadata.metadata_reject(1))])


# Every message kind, built by sta.wire's encoders, with the event it decodes to.
def random_message(rng: random.Random) -> Tuple[bytes, Any]:
    index, begin = rng.randrange(1 << 20), rng.randrange(0, 1 << 20, 16384)
    length = rng.randint(1, wire.MAX_REQUEST_LENGTH)
    block = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    ext_id = rng.randint(1, 255)
    kinds = [
        lambda: (wire.keepalive(), wire.KeepAlive()),
        lambda: (wire.choke(), wire.Choke()),
        lambda: (wire.unchoke(), wire.Unchoke()),
        lambda: (wire.interested(), wire.Interested()),
        lambda: (wire.not_interested(), wire.NotInterested()),
        lambda: (wire.have(index), wire.Have(index)),
        lambda: (wire.bitfield(block), wire.BitfieldMessage(block)),
        lambda: (wire.request(index, begin, length), wire.Request(index, begin, length)),
        lambda: (wire.piece(index, begin, block), wire.Piece(index, begin, block)),
        lambda: (wire.cancel(index, begin, length), wire.Cancel(index, begin, length)),
        lambda: (wire.port(index & 0xFFFF), wire.Port(index & 0xFFFF)),
        lambda: (wire.suggest(index), wire.Suggest(index)),
        lambda: (wire.have_all(), wire.HaveAll()),
        lambda: (wire.have_none(), wire.HaveNone()),
        lambda: (wire.reject(index, begin, length), wire.Reject(index, begin, length)),
        lambda: (wire.allowed_fast(index), wire.AllowedFast(index)),
        lambda: (wire.extended(ext_id, block), wire.Extended(ext_id, block)),
        lambda: (ext_handshake({"ut_metadata": ext_id}, reqq=length),
                 wire.ExtendedHandshake({b"m": {b"ut_metadata": ext_id}, b"reqq": length})),
    ]
    return kinds[rng.randrange(len(kinds))]()


def feed_in_chunks(proto: PeerProtocol, data: bytes, rng: random.Random) -> List[Any]:
    events: List[Any] = []
    pos = 0
    while pos < len(data):
        step = rng.randint(1, MAX_CHUNK)
        events += plain(proto.receive_data(data[pos:pos + step]))
        pos += step
    return events


class StreamTests(unittest.TestCase):
    def conversation(self) -> Tuple[bytes, List[Any]]:
        data = (peer_handshake() + ext_handshake({"ut_metadata": 5}, v="peer") + wire.unchoke()
                + wire.bitfield(b"\xf0") + wire.request(1, 0, 16384)
                + wire.piece(1, 0, b"x" * 1000) + wire.keepalive()
                + wire.extended(OUR_METADATA_ID, ut_metadata.metadata_request(0)) + wire.interested())
        whole = outgoing()
        whole.send_choking(False)
        return data, plain(whole.receive_data(data))

    def test_one_byte_at_a_time_gives_the_same_events(self):
        data, expected = self.conversation()
        self.assertEqual(len(expected), 9)
        proto = outgoing()
        proto.send_choking(False)
        events: List[Any] = []
        for n in range(len(data)):
            events += plain(proto.receive_data(data[n:n + 1]))
        self.assertEqual(events, expected)
        self.assertEqual(proto.extensions.ids, {"ut_metadata": 5})
        self.assertEqual((proto.peer_choking, proto.peer_interested), (False, True))

    def test_random_cuts_give_the_same_events(self):
        data, expected = self.conversation()
        for seed in range(ROUND_TRIP_SEEDS):
            with self.subTest(seed=seed):
                proto = outgoing()
                proto.send_choking(False)
                self.assertEqual(feed_in_chunks(proto, data, random.Random(seed)), expected)

    def test_randomized_round_trip_of_every_message_kind(self):
        seen = set()
        for seed in range(ROUND_TRIP_SEEDS):
            rng = random.Random(seed)
            messages = [random_message(rng) for _ in range(ROUND_TRIP_MESSAGES)]
            # The peer speaks the fast extension, so every kind may come, and a request while
            # we choke is passed on (to be served or rejected), never dropped.
            data = peer_handshake(fast=True) + b"".join(m[0] for m in messages)
            expected = [m[1] for m in messages]
            seen.update(type(e) for e in expected)
            for choking in (False, True):
                with self.subTest(seed=seed, choking=choking):
                    proto = outgoing()
                    proto.send_choking(choking)
                    events = feed_in_chunks(proto, data, rng)
                    self.assertEqual(type(events[0]), wire.Handshake)
                    self.assertEqual(events[1:], expected)
                    self.assertEqual(proto.ignored_requests, 0)
                    flags = [e for e in expected if type(e) in (wire.Choke, wire.Unchoke)]
                    if flags:
                        self.assertEqual(proto.peer_choking, type(flags[-1]) is wire.Choke)
        self.assertEqual(len(seen), 18)  # every kind but the handshake met at least once

    def test_what_one_machine_sends_the_other_receives(self):
        for seed in range(ROUND_TRIP_SEEDS):
            rng = random.Random(seed)
            us = PeerProtocol(OUR_ID, INFO_HASH)
            them = PeerProtocol(PEER_ID)
            them.receive_data(us.send_handshake())
            us.receive_data(them.send_handshake(INFO_HASH))
            them.send_choking(False)  # so that requests reach `them`
            us.receive_data(ext_handshake({UT_METADATA: 7}))  # the id `them` wants
            stream, expected = self.random_sends(us, rng)
            with self.subTest(seed=seed):
                self.assertEqual(feed_in_chunks(them, stream, rng), expected)
                self.assertEqual(them.peer_choking, us.am_choking)
                self.assertEqual(them.peer_interested, us.am_interested)

    def random_sends(self, us: PeerProtocol, rng: random.Random) -> Tuple[bytes, List[Any]]:
        out: List[bytes] = [us.send_extended_handshake(v="STA")]
        expected: List[Any] = [wire.ExtendedHandshake(
            {b"m": {b"ut_metadata": OUR_METADATA_ID, b"ut_pex": EXTENSION_IDS["ut_pex"]},
             b"v": b"STA"})]
        for _ in range(ROUND_TRIP_MESSAGES):
            n = rng.randrange(9)
            index = rng.randrange(1000)
            if n == 0:
                flag = rng.random() < 0.5
                message = us.send_choking(flag)
                event: Any = wire.Choke() if flag else wire.Unchoke()
            elif n == 1:
                flag = rng.random() < 0.5
                message = us.send_interested(flag)
                event = wire.Interested() if flag else wire.NotInterested()
            elif n == 2:
                message, event = us.send_have(index), wire.Have(index)
            elif n == 3:
                message, event = us.send_bitfield(b"\x80\x01"), wire.BitfieldMessage(b"\x80\x01")
            elif n == 4:
                message, event = us.send_keepalive(), wire.KeepAlive()
            elif n == 5:
                message, event = us.send_cancel(index, 0, 16384), wire.Cancel(index, 0, 16384)
            elif n == 6:
                block = bytes([index & 0xFF]) * rng.randint(1, 100)
                message = us.send_piece_header(index, 16384, len(block)) + block
                event = wire.Piece(index, 16384, block)
            elif n == 7:
                message = us.send_requests([(index, 0, 16384), (index, 16384, 100)])
                out.append(message)
                expected += [wire.Request(index, 0, 16384), wire.Request(index, 16384, 100)]
                continue
            else:
                message = us.send_extended(UT_METADATA, ut_metadata.metadata_request(index))
                event = wire.Extended(7, ut_metadata.metadata_request(index))
            if message:
                out.append(message)
                expected.append(event)
        return b"".join(out), expected



class FastExtensionTests(unittest.TestCase):
    """BEP 6: on only when both handshakes set its bit; its messages are errors otherwise."""

    def slow(self) -> PeerProtocol:
        proto = outgoing()
        proto.receive_data(peer_handshake(fast=False))
        return proto

    def test_our_handshake_offers_the_fast_extension(self):
        proto = outgoing(open_=False)
        self.assertTrue(wire.Handshake(*_split(proto.send_handshake())).supports_fast)

    def test_fast_messages_from_a_peer_without_it_are_a_protocol_error(self):
        for message in (wire.have_all(), wire.have_none(), wire.reject(0, 0, 16384),
                        wire.allowed_fast(3), wire.suggest(1)):
            with self.subTest(message=message), self.assertRaises(PeerProtocolError):
                self.slow().receive_data(message)

    def test_fast_messages_pass_when_both_sides_offer_it(self):
        proto = joined(fast=True)
        self.assertTrue(proto.fast)
        events = proto.receive_data(wire.have_all() + wire.reject(0, 0, 16384))
        self.assertEqual([type(e) for e in events], [wire.HaveAll, wire.Reject])

    def test_a_request_while_we_choke_is_passed_on_to_be_answered_with_fast(self):
        proto = joined(fast=True)
        self.assertTrue(proto.am_choking)
        events = proto.receive_data(wire.request(2, 0, 16384))
        self.assertEqual(events, [wire.Request(2, 0, 16384)])
        self.assertEqual(proto.ignored_requests, 0)

    def test_without_fast_a_request_while_we_choke_is_dropped_and_nothing_is_rejected(self):
        proto = self.slow()
        self.assertEqual(proto.receive_data(wire.request(2, 0, 16384)), [])
        self.assertEqual(proto.send_reject(2, 0, 16384), b"")
        with self.assertRaises(PeerProtocolError):
            proto.send_have_all()

    def test_fast_senders_give_the_wire_messages(self):
        proto = joined(fast=True)
        self.assertEqual(proto.send_have_all(), wire.have_all())
        self.assertEqual(proto.send_have_none(), wire.have_none())
        self.assertEqual(proto.send_reject(1, 16384, 100), wire.reject(1, 16384, 100))
        self.assertEqual(proto.send_allowed_fast(7), wire.allowed_fast(7))


def _split(handshake: bytes):
    return handshake[20:28], handshake[28:48], handshake[48:68]


if __name__ == "__main__":
    unittest.main()
