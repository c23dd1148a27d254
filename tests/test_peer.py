"""Tests for sta.peer: PeerConnection between a fake Transport below and a fake host and owner
above. No sockets and no event loop: the host's loop is a queue of callbacks the test runs."""

from __future__ import annotations

import unittest
from unittest import mock
from typing import Any, Callable, Dict, List, Optional, Tuple

from sta import peer, session, tls, wire
from sta.peer import (CLIENT_VERSION, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
                      MAX_INCOMING_REQUESTS, RATE_WEIGHT, PeerConnection)
from sta.peerproto import EXTENSION_IDS

INFO_HASH = bytes(range(20))
OTHER_HASH = bytes(range(100, 120))
OUR_ID = b"-SX0001-ourselves000"
PEER_ID = b"-TR4000-thepeer00000"
ADDRESS = ("192.0.2.7", 51413)
LISTEN_PORT = 6881
METADATA_SIZE = 4321


class FakeLoop:
    """call_soon into a list; ``run()`` runs one loop turn (what was queued before it)."""

    def __init__(self) -> None:
        self.queued: List[Tuple[Callable[..., Any], tuple]] = []

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.queued.append((callback, args))

    def run(self) -> None:
        turn, self.queued = self.queued, []
        for callback, args in turn:
            callback(*args)


class FakeTransport:
    def __init__(self, incoming: bool, address: Tuple[str, int] = ADDRESS,
                 bound_info_hash: Optional[bytes] = None) -> None:
        self.address = address
        self.incoming = incoming
        self.encrypted = bound_info_hash is not None
        self.bound_info_hash = bound_info_hash
        self.writes: List[List[bytes]] = []
        self.closes = 0
        self.log: List[str] = []

    def write(self, chunks: List[Any]) -> None:
        self.writes.append([bytes(c) for c in chunks])
        self.log.append("write")

    def pause_reading(self) -> None:
        self.log.append("pause_reading")

    def resume_reading(self) -> None:
        self.log.append("resume_reading")

    def close(self) -> None:
        self.closes += 1
        self.log.append("close")

    @property
    def sent(self) -> bytes:
        return b"".join(b"".join(w) for w in self.writes)

    def sent_events(self) -> List[Any]:
        """What the peer on the other end reads from all writes so far."""
        return wire.MessageReader(expect_handshake=True).feed(self.sent)


class FakeOwner:
    def __init__(self, info_hash: bytes = INFO_HASH, admit: bool = True) -> None:
        self.info_hash = info_hash
        self.name = "fake torrent"
        self.admit = admit
        self.on_join: Optional[Callable[[PeerConnection], None]] = None
        self.on_message: Optional[Callable[[PeerConnection, Any], None]] = None
        self.calls: List[str] = []
        self.messages: List[Any] = []
        self.left: List[PeerConnection] = []

    def peer_joined(self, conn: PeerConnection) -> bool:
        self.calls.append("joined")
        if self.on_join:
            self.on_join(conn)
        return self.admit

    def extension_fields(self) -> Dict[str, Any]:
        return {"metadata_size": METADATA_SIZE}

    def peer_message(self, conn: PeerConnection, event: Any) -> None:
        self.calls.append("message")
        self.messages.append(event)
        if self.on_message:
            self.on_message(conn, event)

    def peer_batch_done(self, conn: PeerConnection) -> None:
        self.calls.append("batch_done")

    def peer_writable(self, conn: PeerConnection) -> None:
        self.calls.append("writable")

    def peer_left(self, conn: PeerConnection) -> None:
        self.calls.append("left")
        self.left.append(conn)


class FakeHost:
    def __init__(self, owners: Tuple[FakeOwner, ...] = (), listen_port: int = LISTEN_PORT,
                 allow: bool = True) -> None:
        self.loop = FakeLoop()
        self.peer_id = OUR_ID
        self.listen_port = listen_port
        self.allow = allow
        self.owners = {o.info_hash: o for o in owners}
        self.asked: List[bytes] = []
        self.calls: List[str] = []
        self.selves: List[Tuple[str, int]] = []
        self.failures: List[BaseException] = []

    def owner_for(self, info_hash: bytes) -> Optional[FakeOwner]:
        self.asked.append(info_hash)
        return self.owners.get(info_hash)

    def connection_opened(self, conn: PeerConnection) -> bool:
        self.calls.append("opened")
        return self.allow

    def connection_joined(self, conn: PeerConnection) -> None:
        self.calls.append("joined")

    def connection_closed(self, conn: PeerConnection) -> None:
        self.calls.append("closed")

    def transport_failed(self, conn: PeerConnection, error: BaseException) -> str:
        self.failures.append(error)
        return "; retrying"

    def found_self(self, address: Tuple[str, int]) -> None:
        self.selves.append(address)


def peer_handshake(info_hash: bytes = INFO_HASH, peer_id: bytes = PEER_ID,
                   extensions: bool = True) -> bytes:
    return wire.handshake(info_hash, peer_id, extensions=extensions)


class PeerTestCase(unittest.TestCase):
    def incoming(self, *owners: FakeOwner, **transport: Any
                 ) -> Tuple[PeerConnection, FakeHost, FakeTransport]:
        host = FakeHost(owners)
        conn = PeerConnection(host)
        stream = FakeTransport(True, **transport)
        conn.stream_opened(stream)
        conn.transport_ready(stream)
        return conn, host, stream

    def outgoing(self, owner: Optional[FakeOwner] = None, listen_port: int = LISTEN_PORT
                 ) -> Tuple[PeerConnection, FakeHost, FakeTransport, FakeOwner]:
        owner = owner or FakeOwner()
        host = FakeHost((owner,), listen_port=listen_port)
        conn = PeerConnection(host, owner, ADDRESS)
        stream = FakeTransport(False)
        conn.stream_opened(stream)
        conn.transport_ready(stream)
        return conn, host, stream, owner

    def joined(self, extensions: bool = True
               ) -> Tuple[PeerConnection, FakeHost, FakeTransport, FakeOwner]:
        conn, host, stream, owner = self.outgoing()
        conn.stream_received(peer_handshake(extensions=extensions))
        self.assertTrue(conn.joined)
        host.loop.run()
        stream.writes.clear()
        stream.log.clear()
        return conn, host, stream, owner


class HandshakeTests(PeerTestCase):
    def test_incoming_handshake_finds_the_owner_and_is_answered(self):
        owner = FakeOwner()
        conn, host, stream = self.incoming(owner)
        self.assertEqual(stream.writes, [])  # an incoming connection waits for the peer
        conn.stream_received(peer_handshake())
        self.assertEqual(host.asked, [INFO_HASH])
        self.assertIs(conn.owner, owner)
        self.assertTrue(conn.joined)
        events = stream.sent_events()
        self.assertEqual(events[0], wire.Handshake(events[0].reserved, INFO_HASH, OUR_ID))
        self.assertTrue(events[0].supports_extensions)
        self.assertEqual(host.calls, ["opened", "joined"])
        self.assertEqual(conn.peer_id, PEER_ID)

    def test_outgoing_connection_sends_its_handshake_when_the_transport_is_ready(self):
        conn, host, stream, owner = self.outgoing()
        self.assertEqual(stream.sent, wire.handshake(INFO_HASH, OUR_ID, fast=True))
        conn.stream_received(peer_handshake())
        self.assertEqual(host.asked, [])  # the owner is known already
        self.assertTrue(conn.joined)

    def test_handshake_for_an_unknown_torrent_is_refused(self):
        conn, host, stream = self.incoming(FakeOwner())
        conn.stream_received(peer_handshake(OTHER_HASH))
        self.assertEqual(host.asked, [OTHER_HASH])
        self.assertTrue(conn.closed)
        self.assertIn("do not have", conn.close_reason)
        self.assertEqual(stream.sent, b"")  # our handshake would name the torrent
        self.assertEqual(stream.closes, 1)
        self.assertEqual(host.calls, ["opened", "closed"])

    def test_connection_to_ourselves_is_closed_and_reported(self):
        conn, host, stream, owner = self.outgoing()
        conn.stream_received(peer_handshake(peer_id=OUR_ID))
        self.assertEqual(host.selves, [ADDRESS])
        self.assertTrue(conn.closed)
        self.assertEqual(owner.calls, [])
        self.assertEqual(host.calls, ["opened", "closed"])

    def test_incoming_connection_from_ourselves_is_closed_and_reported(self):
        conn, host, stream = self.incoming(FakeOwner())
        conn.stream_received(peer_handshake(peer_id=OUR_ID))
        self.assertEqual(host.selves, [ADDRESS])
        self.assertTrue(conn.closed)
        self.assertFalse(conn.joined)

    def test_handshake_not_matching_the_bound_info_hash_is_refused(self):
        owner, other = FakeOwner(), FakeOwner(OTHER_HASH)
        conn, host, stream = self.incoming(owner, other, bound_info_hash=INFO_HASH)
        conn.stream_received(peer_handshake(OTHER_HASH))
        self.assertTrue(conn.closed)
        self.assertIn("another torrent", conn.close_reason)
        self.assertEqual(host.asked, [])
        self.assertEqual(other.calls, [])
        self.assertEqual(stream.sent, b"")

    def test_handshake_matching_the_bound_info_hash_joins(self):
        conn, host, stream = self.incoming(FakeOwner(), bound_info_hash=INFO_HASH)
        conn.stream_received(peer_handshake(INFO_HASH))
        self.assertTrue(conn.joined)
        self.assertTrue(conn.encrypted)

    def test_owner_refusing_the_peer_closes_the_connection(self):
        owner = FakeOwner(admit=False)
        conn, host, stream, _ = self.outgoing(owner)
        conn.stream_received(peer_handshake() + wire.unchoke())
        self.assertTrue(conn.closed)
        self.assertEqual(conn.close_reason, "refused")
        self.assertFalse(conn.joined)
        self.assertEqual(owner.calls, ["joined"])  # no message, no batch, no peer_left
        self.assertEqual(host.calls, ["opened", "closed"])

    def test_owner_closing_with_its_own_reason_keeps_that_reason(self):
        owner = FakeOwner(admit=False)
        owner.on_join = lambda conn: conn.close("banned peer")
        conn, host, stream, _ = self.outgoing(owner)
        conn.stream_received(peer_handshake())
        self.assertEqual(conn.close_reason, "banned peer")
        self.assertEqual(stream.closes, 1)

    def test_extension_handshake_follows_what_the_owner_sent_on_joining(self):
        owner = FakeOwner()
        owner.on_join = lambda conn: conn.send_bitfield(b"\xff")
        conn, host, stream, _ = self.outgoing(owner)
        conn.stream_received(peer_handshake())
        kinds = [type(e) for e in stream.sent_events()]
        self.assertEqual(kinds, [wire.Handshake, wire.BitfieldMessage, wire.ExtendedHandshake])
        fields = stream.sent_events()[2].payload
        self.assertEqual(fields, {
            b"m": {name.encode(): ext_id for name, ext_id in EXTENSION_IDS.items()},
            b"v": CLIENT_VERSION.encode(), b"reqq": MAX_INCOMING_REQUESTS,
            b"p": LISTEN_PORT, b"metadata_size": METADATA_SIZE})

    def test_extension_handshake_leaves_out_an_unknown_listen_port(self):
        conn, host, stream, _ = self.outgoing(listen_port=0)
        conn.stream_received(peer_handshake())
        fields = stream.sent_events()[1].payload
        self.assertNotIn(b"p", fields)
        self.assertEqual(fields[b"reqq"], MAX_INCOMING_REQUESTS)

    def test_no_extension_handshake_to_a_peer_without_the_bit(self):
        conn, host, stream, _ = self.outgoing()
        conn.stream_received(peer_handshake(extensions=False))
        self.assertTrue(conn.joined)
        self.assertEqual([type(e) for e in stream.sent_events()], [wire.Handshake])

    def test_protocol_error_closes_the_connection(self):
        conn, host, stream, owner = self.joined()
        conn.stream_received(wire.have(1) + b"\x00\x10\x00\x00\x07")  # a 1 MiB length prefix
        self.assertTrue(conn.closed)
        self.assertIn("protocol error", conn.close_reason)
        self.assertEqual(owner.calls[-1], "left")


class TrafficTests(PeerTestCase):
    def test_messages_reach_the_owner_then_one_batch_done(self):
        conn, host, stream, owner = self.joined()
        owner.calls.clear()
        conn.stream_received(wire.unchoke() + wire.have(2) + wire.have(3))
        self.assertEqual(owner.messages, [wire.Unchoke(), wire.Have(2), wire.Have(3)])
        self.assertEqual(owner.calls, ["message"] * 3 + ["batch_done"])
        self.assertFalse(conn.peer_choking)

    def test_piece_payload_is_counted_in_downloaded(self):
        conn, host, stream, owner = self.joined()
        conn.stream_received(wire.piece(0, 0, b"x" * 1000) + wire.have(1)
                             + wire.piece(0, 1000, b"y" * 500))
        self.assertEqual(conn.downloaded, 1500)
        self.assertEqual(conn.uploaded, 0)

    def test_send_block_counts_uploaded_and_sends_the_block_as_is(self):
        conn, host, stream, owner = self.joined()
        block = memoryview(b"z" * 700)
        conn.send_block(3, 16384, block)
        host.loop.run()
        self.assertEqual(conn.uploaded, 700)
        self.assertEqual(conn.downloaded, 0)
        self.assertEqual(stream.sent, wire.piece(3, 16384, b"z" * 700))

    def test_sends_of_one_loop_turn_leave_in_one_write(self):
        conn, host, stream, owner = self.joined()
        conn.set_interested(True)
        conn.send_have(4)
        conn.send_requests([(1, 0, 16384), (1, 16384, 16384)])
        conn.set_choking(False)
        conn.set_choking(False)  # no change: nothing to send
        self.assertEqual(stream.writes, [])
        host.loop.run()
        self.assertEqual(len(stream.writes), 1)
        self.assertEqual(stream.writes[0], [
            wire.interested(), wire.have(4),
            wire.requests([(1, 0, 16384), (1, 16384, 16384)]), wire.unchoke()])
        host.loop.run()
        self.assertEqual(len(stream.writes), 1)

    def test_what_the_owner_sends_while_a_chunk_is_handled_leaves_in_one_write(self):
        conn, host, stream, owner = self.joined()
        owner.on_message = lambda c, event: c.send_have(event.index)
        conn.stream_received(wire.have(1) + wire.have(2) + wire.have(3))
        self.assertEqual(stream.writes, [[wire.have(1), wire.have(2), wire.have(3)]])
        host.loop.run()  # the scheduled flush finds nothing left
        self.assertEqual(len(stream.writes), 1)

    def test_requests_while_choking_never_reach_the_owner(self):
        conn, host, stream, owner = self.joined()
        conn.stream_received(wire.request(0, 0, 16384))
        self.assertEqual(owner.messages, [])
        conn.set_choking(False)
        conn.stream_received(wire.request(0, 0, 16384))
        self.assertEqual(owner.messages, [wire.Request(0, 0, 16384)])

    def test_writing_resumed_tells_the_owner(self):
        conn, host, stream, owner = self.joined()
        conn.writing_paused()
        self.assertFalse(conn.writable)
        conn.writing_resumed()
        self.assertTrue(conn.writable)
        self.assertEqual(owner.calls[-1], "writable")

    def test_send_extended_needs_the_peer_extension(self):
        conn, host, stream, owner = self.joined()
        conn.send_extended("ut_metadata", b"d8:msg_typei0e5:piecei0ee")
        host.loop.run()
        self.assertEqual(stream.writes, [])
        conn.stream_received(wire.extended_handshake({"ut_metadata": 4}))
        conn.send_extended("ut_metadata", b"d8:msg_typei0e5:piecei0ee")
        host.loop.run()
        self.assertEqual(stream.sent, wire.extended(4, b"d8:msg_typei0e5:piecei0ee"))

    def test_malformed_ut_metadata_message_closes_the_connection(self):
        conn, host, stream, owner = self.joined()
        event = wire.Extended(EXTENSION_IDS["ut_metadata"], b"garbage")
        self.assertIsNone(conn.ut_metadata_message(event))
        self.assertTrue(conn.closed)

    def test_client_name_from_the_extension_handshake_or_the_peer_id(self):
        conn, host, stream, owner = self.joined()
        self.assertEqual(conn.client_name, "Transmission 4.0.0.0")
        conn.stream_received(wire.extended_handshake({}, v="Transmission 4.0.5"))
        self.assertEqual(conn.client_name, "Transmission 4.0.5")


class TimerTests(PeerTestCase):
    def test_rates_are_smoothed_by_the_rate_weight(self):
        conn, host, stream, owner = self.joined()
        start = conn.last_received
        conn.stream_received(wire.piece(0, 0, b"x" * 1000))
        conn.send_block(0, 0, b"y" * 4000)
        conn.tick(start + 1, 2.0)
        self.assertAlmostEqual(conn.down_rate, 500 * RATE_WEIGHT)
        self.assertAlmostEqual(conn.up_rate, 2000 * RATE_WEIGHT)
        conn.tick(start + 2, 1.0)
        self.assertAlmostEqual(conn.down_rate, 500 * RATE_WEIGHT * (1 - RATE_WEIGHT))
        self.assertAlmostEqual(conn.up_rate, 2000 * RATE_WEIGHT * (1 - RATE_WEIGHT))
        conn.stream_received(wire.piece(0, 1000, b"x" * 300))
        conn.tick(start + 3, 1.0)
        expected = 500 * RATE_WEIGHT * (1 - RATE_WEIGHT) ** 2 + 300 * RATE_WEIGHT
        self.assertAlmostEqual(conn.down_rate, expected)

    def assert_closes_after(self, conn: PeerConnection, start: float, limit: float,
                            reason: str) -> None:
        conn.tick(start + limit - 0.5, 1.0)
        self.assertFalse(conn.closed)
        conn.tick(start + limit + 0.5, 1.0)
        self.assertTrue(conn.closed)
        self.assertIn(reason, conn.close_reason)

    def test_handshake_timeout_closes_a_connection_that_never_joined(self):
        conn, host, stream, owner = self.outgoing()
        self.assert_closes_after(conn, conn.connected_at, HANDSHAKE_TIMEOUT, "handshake")
        self.assertEqual(owner.calls, [])

    # PeerConnection.__init__ (peer.py) sets connected_at, and session._connect builds the
    # connection before create_connection starts, so a TCP connect that takes most of
    # CONNECT_TIMEOUT leaves almost no time for the handshake, against HANDSHAKE_TIMEOUT's
    # comment ("within this many seconds of the TCP connect").
    def test_handshake_timeout_counts_from_the_tcp_connect(self):
        owner = FakeOwner()
        host = FakeHost((owner,))
        with mock.patch("sta.peer.time.monotonic", return_value=1000.0):
            conn = PeerConnection(host, owner, ADDRESS)   # the dial starts
        stream = FakeTransport(False)
        with mock.patch("sta.peer.time.monotonic", return_value=1008.0):
            conn.stream_opened(stream)                  # TCP connected 8 s later
            conn.transport_ready(stream)
        conn.tick(1008.0 + HANDSHAKE_TIMEOUT / 2, 1.0)
        self.assertFalse(conn.closed)

    def test_handshake_timeout_does_not_apply_once_joined(self):
        conn, host, stream, owner = self.joined()
        conn.tick(conn.connected_at + HANDSHAKE_TIMEOUT + 0.5, 1.0)
        self.assertFalse(conn.closed)

    def test_idle_timeout_closes_a_silent_connection(self):
        conn, host, stream, owner = self.joined()
        self.assert_closes_after(conn, conn.last_received, IDLE_TIMEOUT, "idle")
        self.assertEqual(owner.left, [conn])

    def test_keepalive_after_the_interval_without_sending(self):
        conn, host, stream, owner = self.joined()
        quiet = max(conn.last_sent, conn.last_received)
        conn.tick(quiet + KEEPALIVE_INTERVAL - 0.5, 1.0)
        host.loop.run()
        self.assertEqual(stream.writes, [])
        conn.tick(quiet + KEEPALIVE_INTERVAL + 0.5, 1.0)
        host.loop.run()
        self.assertEqual(stream.sent, wire.keepalive())
        self.assertFalse(conn.closed)


class CloseTests(PeerTestCase):
    def test_close_sends_last_words_then_closes_once(self):
        conn, host, stream, owner = self.joined()
        conn.set_interested(True)
        conn.send_have(9)
        conn.close("done")
        self.assertEqual(stream.log, ["write", "close"])
        self.assertEqual(stream.writes, [[wire.interested(), wire.have(9)]])
        conn.close("again")
        conn.transport_closed("closed by peer", None)
        host.loop.run()
        self.assertEqual(stream.log, ["write", "close"])
        self.assertEqual(conn.close_reason, "done")
        self.assertEqual(owner.left, [conn])
        self.assertEqual(host.calls.count("closed"), 1)

    def test_sends_after_close_go_nowhere(self):
        conn, host, stream, owner = self.joined()
        conn.close("done")
        conn.send_have(1)
        conn.send_cancel(1, 0, 16384)
        host.loop.run()
        self.assertEqual(stream.writes, [])

    def test_transport_closing_tells_owner_and_host_once(self):
        conn, host, stream, owner = self.joined()
        conn.transport_closed("closed by peer", None)
        conn.transport_closed("closed by peer", None)
        conn.close("late")
        self.assertEqual(conn.close_reason, "closed by peer")
        self.assertEqual(owner.left, [conn])
        self.assertEqual(host.calls, ["opened", "joined", "closed"])
        self.assertEqual(stream.closes, 0)  # the transport closed itself

    def test_failed_encrypted_link_is_handed_to_the_host(self):
        conn, host, stream, owner = self.outgoing()
        error = tls.TlsUnsupported("peer closed the connection during the TLS handshake")
        conn.transport_closed("encrypted link failed", error)
        self.assertEqual(host.failures, [error])
        self.assertIs(conn.error, error)
        self.assertEqual(owner.calls, [])
        self.assertEqual(host.calls, ["opened", "closed"])

    def test_peer_left_only_for_joined_connections(self):
        for close in (lambda c: c.close("x"), lambda c: c.transport_closed("gone", None)):
            conn, host, stream, owner = self.outgoing()
            close(conn)
            self.assertEqual(owner.left, [])
            self.assertEqual(host.calls, ["opened", "closed"])
            conn, host, stream, owner = self.joined()
            close(conn)
            self.assertEqual(owner.left, [conn])

    def test_connection_refused_by_the_host_closes_at_once(self):
        host = FakeHost((FakeOwner(),), allow=False)
        conn = PeerConnection(host)
        stream = FakeTransport(True)
        conn.stream_opened(stream)
        self.assertTrue(conn.closed)
        self.assertIn("limit", conn.close_reason)
        self.assertEqual(stream.closes, 1)
        self.assertEqual(host.calls, ["opened", "closed"])


class ClientNameTests(unittest.TestCase):
    def test_client_is_named_from_azureus_and_aria2_peer_ids(self):
        self.assertEqual(peer.client_from_peer_id(b"-LT2080-abcdefghijkl"), "libtorrent 2.0.8.0")
        self.assertEqual(peer.client_from_peer_id(b"A2-1-37-0-abcdefghij"), "aria2 1.37.0")
        self.assertEqual(peer.client_from_peer_id(b"-ZZ0100-abcdefghijkl"), "ZZ 0.1.0.0")
        # Our own code, which no other client uses; "ST" is SymTorrent's.
        own = session.make_peer_id()
        self.assertTrue(own.startswith(b"-SX") and len(own) == 20, own)
        self.assertTrue(peer.client_from_peer_id(own).startswith("STA "))
        self.assertTrue(peer.client_from_peer_id(b"-ST0100-abcdefghijkl").startswith("SymTorrent"))
        self.assertEqual(peer.client_from_peer_id(b"M7-2-3--abcdefghijkl"), "unknown")


if __name__ == "__main__":
    unittest.main()
