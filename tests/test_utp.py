"""Tests for sta.utp: STA sessions on 127.0.0.1 (port 0) moving torrents over uTP, directly and
through tests/relaykit.py's lossy, delayed relay; the DHT on the shared UDP port; the dial
policy (TransportMemory) and its fallbacks; stray packets; and the relay itself."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
import unittest
from typing import Any, Optional, Tuple
from unittest import mock

from sta import cliargs, connlimits, mse, peerlink, session as session_module, utpproto
from sta.session import Session
from sta.torrent import Torrent
from sta.utp import TransportMemory, UtpStream, UtpTransportError
from tests.relaykit import UdpRelay
from tests.test_session import (PIECE_LENGTH, POLL, SessionTestCase, make_metainfo, stored,
                                until)

HOST = "127.0.0.1"
# Big enough that uTP's window, acks and retransmissions do real work: 1 MiB is ~750 packets.
TORRENT_SIZE = 64 * PIECE_LENGTH + 1234
# Deadline of one transfer: 1 MiB over loopback uTP takes well under a second; through the
# relay (20 ms each way, 2% loss) a few seconds.
TIMEOUT = 60.0


class UtpTestCase(SessionTestCase):
    state = ""

    @classmethod
    def setUpClass(cls) -> None:
        """The sessions of a class share one state folder: the node key is made once."""
        folder = tempfile.TemporaryDirectory(prefix="sta-utp-")
        cls.addClassCleanup(folder.cleanup)
        cls.state = folder.name
        peerlink.PeerTls.for_node(cls.state)

    def run_async(self, coro: Any, timeout: float = TIMEOUT) -> Any:
        return super().run_async(coro, timeout)

    async def session(self, **options: Any) -> Session:  # type: ignore[override]
        options.setdefault("state_dir", self.state)
        node = Session(port=0, host=HOST, **options)
        await node.start()
        self.addCleanup(lambda: self.run_async(node.close()))
        return node

    async def watching(self, node: Session, done: Any) -> None:
        """Wait for ``done`` while keeping the most connections of each transport ``node``
        had at once (in self.most: two peers that both seed part once they are done)."""
        self.most = {"utp_peers": 0, "tcp_peers": 0}
        task = asyncio.ensure_future(done)
        while not task.done():
            stats = node.stats()
            for name in self.most:
                self.most[name] = max(self.most[name], stats[name])
            await asyncio.wait([task], timeout=POLL)
        task.result()

    def relay(self, port: int, **settings: Any) -> UdpRelay:
        relay = UdpRelay((HOST, port), **settings).start()
        self.addCleanup(relay.close)
        return relay

    def transfer(self, seed_options: Any, leech_options: Any, relay: Optional[dict] = None,
                 size: int = TORRENT_SIZE) -> Tuple[Session, Session, Torrent]:
        """A seed and a leech with these session options; the leech is told of the seed (or of
        a relay in front of it) and runs to the end."""
        meta, payload = make_metainfo(size)

        async def main() -> Tuple[Session, Session, Torrent]:
            seed_node = await self.session(**seed_options)
            leech_node = await self.session(**leech_options)
            await self.torrent(seed_node, meta, payload)
            leech = await self.torrent(leech_node, meta)
            port = seed_node.listen_port
            if relay is not None:
                self.last_relay = self.relay(port, **relay)
                port = self.last_relay.port
            leech.add_peers([(HOST, port)], "test")
            await self.watching(leech_node, leech.done.wait())
            return seed_node, leech_node, leech
        seed_node, leech_node, leech = self.run_async(main())
        self.assertEqual(stored(leech.storage, size), payload)
        return seed_node, leech_node, leech


class TransferTests(UtpTestCase):
    def test_two_sessions_transfer_a_torrent_over_utp_only(self) -> None:
        seed_node, leech_node, _ = self.transfer({"tcp": False}, {"tcp": False})
        self.assertIsNone(seed_node._server)
        self.assertEqual(leech_node.stats()["downloaded"], TORRENT_SIZE)
        self.assertEqual(self.most, {"utp_peers": 1, "tcp_peers": 0})
        self.assertTrue(self.log.matching("encrypted"), self.log.lines)

    def test_transfer_survives_delay_and_loss_through_a_relay(self) -> None:
        settings = {"delay": 0.02, "loss": 0.02, "reorder": 0.01, "duplicate": 0.01, "seed": 7}
        _, leech_node, _ = self.transfer({"tcp": False}, {"tcp": False}, relay=settings)
        counts = self.last_relay.counts
        self.assertGreater(counts["lost"], 0, counts)
        self.assertEqual(self.most, {"utp_peers": 1, "tcp_peers": 0})

    def test_a_peer_that_refuses_tcp_is_reached_over_utp(self) -> None:
        # The seed has no TCP listener: the leech's TCP dial is refused and uTP follows.
        _, leech_node, _ = self.transfer({"tcp": False}, {})
        self.assertTrue(self.log.matching("over utp"), self.log.lines)
        self.assertEqual(self.most, {"utp_peers": 1, "tcp_peers": 0})

    def test_dial_falls_back_to_tcp_when_the_peer_does_not_answer_utp(self) -> None:
        meta, payload = make_metainfo(TORRENT_SIZE)

        async def main() -> Tuple[Session, Torrent]:
            seed_node = await self.session(utp=False)
            await self.torrent(seed_node, meta, payload)
            leech_node = await self.session()
            leech = await self.torrent(leech_node, meta)
            address = (HOST, seed_node.listen_port)
            leech_node.note_utp(address)  # as a PEX flag would say; the seed has no uTP
            leech.add_peers([address], "test")
            await self.watching(leech_node, leech.done.wait())
            return leech_node, leech
        with mock.patch.object(session_module, "UTP_CONNECT_TIMEOUT", 0.5):
            leech_node, leech = self.run_async(main())
        self.assertEqual(stored(leech.storage, TORRENT_SIZE), payload)
        self.assertTrue(self.log.matching("over tcp"), self.log.lines)
        self.assertEqual(self.most, {"utp_peers": 0, "tcp_peers": 1})

    def test_incoming_utp_makes_the_peer_dialled_over_utp(self) -> None:
        async def main() -> Tuple[Session, Tuple[str, int]]:
            node = await self.session()
            other = await self.session()
            address = (HOST, other.listen_port)
            self.assertEqual(node._transports.first(address), "tcp")
            await other.utp.connect((HOST, node.listen_port), _Silent(), None)
            await until(lambda: len(node.connections) == 1)
            return node, address
        node, address = self.run_async(main())
        self.assertEqual(node._transports.first(address), "utp")

    def test_connection_limits_apply_to_incoming_utp(self) -> None:
        async def main() -> Tuple[Session, _Silent]:
            node = await self.session()
            other = await self.session()
            first = _Silent()
            await other.utp.connect((HOST, node.listen_port), first, None)
            with self.assertRaisesRegex(UtpTransportError, "reset by peer"):
                await other.utp.connect((HOST, node.listen_port), _Silent(), None)
            return node, first
        with mock.patch.object(connlimits, "MAX_PER_HOST", 1):
            node, first = self.run_async(main())
        self.assertEqual(len(node.connections), 1)
        self.assertIsNone(first.closed)
        self.assertTrue(self.log.matching("connection limit reached"), self.log.lines)


class _Silent:
    """A stream handler that takes what comes and says nothing."""

    def __init__(self) -> None:
        self.closed: Optional[str] = None

    def stream_opened(self, transport: Any) -> None:
        self.transport = transport

    def transport_ready(self, transport: Any) -> None:
        pass

    def stream_received(self, data: Any) -> None:
        pass

    def writing_paused(self) -> None:
        pass

    def writing_resumed(self) -> None:
        pass

    def transport_closed(self, reason: str, error: Any) -> None:
        self.closed = reason


class EndpointTests(UtpTestCase):
    def test_stray_utp_packet_gets_a_reset_and_garbage_gets_nothing(self) -> None:
        async def main() -> Session:
            return await self.session()
        node = self.run_async(main())
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        probe.settimeout(5)
        stray = utpproto.UtpSocket.connect(0.0).datagrams(0.0)[0]
        data = bytearray(stray)
        data[0] = (utpproto.ST_DATA << 4) | 1
        probe.sendto(b"\x99not utp", (HOST, node.listen_port))
        probe.sendto(bytes(data), (HOST, node.listen_port))
        reply = self._receive(probe, node)
        self.assertEqual(utpproto.packet_type(reply), utpproto.ST_RESET)
        self.assertEqual(node.utp.resets_sent, 1)

    def _receive(self, probe: socket.socket, node: Session) -> bytes:
        """Run the node's loop until the probe socket has an answer."""
        probe.setblocking(False)

        async def wait() -> bytes:
            while True:
                try:
                    return probe.recv(2048)
                except BlockingIOError:
                    await asyncio.sleep(POLL)
        return self.run_async(wait(), 5)

    def test_no_utp_leaves_no_udp_endpoint(self) -> None:
        node = self.run_async(self.session(utp=False))
        self.assertIsNone(node.utp)
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind((HOST, node.listen_port))  # nothing of ours holds the UDP port
        self.assertNotIn("utp_peers", {k for k, v in node.stats().items() if v})

    def test_no_utp_option_reaches_every_peer_command(self) -> None:
        parser = cliargs.build_parser()
        for argv in (["seed", "x.torrent", "--no-utp"], ["download", "x.torrent", "--no-utp"],
                     ["shell", "--no-utp"]):
            self.assertTrue(parser.parse_args(argv).no_utp, argv)
        self.assertFalse(parser.parse_args(["seed", "x.torrent"]).no_utp)

    def test_stats_say_how_many_peers_run_over_utp(self) -> None:
        from sta import ui
        from tests.test_ui import STATS
        self.assertIn("peers:        3 (2 over uTP)",
                      ui.stats_lines(dict(STATS, utp_peers=2, tcp_peers=1)))
        self.assertIn("peers:        3", ui.stats_lines(dict(STATS, utp_peers=0)))

    def test_dht_shares_the_utp_port_and_finds_an_announced_peer(self) -> None:
        info_hash = bytes(range(20))

        async def main() -> Any:
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                first = await self.session(dht_bootstrap=[], state_dir=a)
                second = await self.session(dht_bootstrap=[(HOST, first.listen_port)],
                                            state_dir=b)
                node = second.dht.node
                await until(lambda: node.node_count() > 0)
                accepted = await node.announce(info_hash, second.listen_port, timeout=10)
                peers = await node.get_peers(info_hash, timeout=10)
                own_sockets = (first.dht.node._endpoint, node._endpoint)
                await second.close()
                await first.close()
                return accepted, peers, own_sockets
        accepted, peers, own_sockets = self.run_async(main())
        self.assertEqual(own_sockets, (None, None))   # both run on the uTP endpoint
        self.assertGreaterEqual(accepted, 1)
        self.assertTrue(peers)


class _Endpoint:
    """What a UtpStream asks of its endpoint: to be pumped (the test pumps it)."""

    def touch(self, stream: Any) -> None:
        pass


class _Answering:
    """A peer connection that answers the handshake it reads with its own and its first
    messages in one write, as the peer protocol does (a 68-byte handshake, then 146 bytes)."""
    HANDSHAKE = b"\x13" + b"h" * 67
    FIRST_WORDS = b"m" * 146

    def __init__(self) -> None:
        self.transport: Any = None
        self.received = b""

    def stream_opened(self, transport: Any) -> None:
        self.transport = transport

    def transport_ready(self, transport: Any) -> None:
        if not transport.incoming:
            transport.write([self.HANDSHAKE])

    def stream_received(self, data: Any) -> None:
        self.received += bytes(data)
        if self.transport.incoming and len(self.received) >= len(self.HANDSHAKE):
            self.transport.write([self.HANDSHAKE, self.FIRST_WORDS])


class HandshakePacketTests(unittest.TestCase):
    """The uTP packet that carries the end of our BitTorrent handshake carries nothing after it
    (utp.HANDSHAKE_PACKET_END): libtransmission reads what follows the handshake in the same
    packet only once another packet arrives, and a seed then never hears a request."""

    INFO_HASH = bytes(range(20))

    def sockets(self) -> Tuple[utpproto.UtpSocket, utpproto.UtpSocket]:
        dialler = utpproto.UtpSocket.connect(1.0)
        [syn] = dialler.datagrams(1.0)
        acceptor = utpproto.UtpSocket.accept(syn, 1.0)
        for datagram in acceptor.datagrams(1.0):
            dialler.receive(datagram, 1.0)
        return dialler, acceptor

    def payloads(self, stream: Any, peer: utpproto.UtpSocket) -> list:
        """Pump the stream, deliver its datagrams to ``peer`` and return their payloads; acks
        go back until nothing more moves."""
        got = []
        for _ in range(10):
            stream.pump()
            sent = stream.sock.datagrams(2.0)
            out = [d for d in sent if utpproto.packet_type(d) == utpproto.ST_DATA]
            for datagram in sent:
                peer.receive(datagram, 2.0)
            got += [bytes(utpproto.parse_packet(d).payload) for d in out]
            for datagram in peer.datagrams(2.0):
                stream.sock.receive(datagram, 2.0)
            if not out:
                break
        return got

    def test_incoming_mse_stream_ends_a_packet_at_the_end_of_its_handshake(self) -> None:
        dialler, acceptor = self.sockets()
        handler = _Answering()
        stream = UtpStream(_Endpoint(), acceptor, handler, ("10.0.0.2", 51413),  # type: ignore
                           choose=lambda head: mse.MseLink.responder(
                               {mse.skey_hash(self.INFO_HASH): self.INFO_HASH}.get,
                               mse.CRYPTO_RC4))
        stream.open()
        peer = mse.MseLink.initiator(self.INFO_HASH, mse.CRYPTO_RC4)
        stream.data_received(peer.start())
        for _ in range(10):   # the key exchange, until the peer's link is up
            for data in self.payloads(stream, dialler):
                peer.receive(data)
            if peer.authenticated:
                break
            stream.data_received(peer.outgoing())
        stream.data_received(peer.outgoing() + peer.send_many([_Answering.HANDSHAKE]))
        packets = self.payloads(stream, dialler)
        self.assertEqual([peer.receive(p) for p in packets],
                         [_Answering.HANDSHAKE, _Answering.FIRST_WORDS])

    def test_outgoing_plain_stream_sends_its_handshake_in_a_packet_of_its_own(self) -> None:
        dialler, acceptor = self.sockets()
        handler = _Answering()
        stream = UtpStream(_Endpoint(), dialler, handler, ("10.0.0.2", 51413))  # type: ignore
        stream.open()                        # plain and outgoing: ready, writes its handshake
        stream.write([b"m" * 10])            # then its first words, in the same loop turn
        self.assertEqual(self.payloads(stream, acceptor), [_Answering.HANDSHAKE, b"m" * 10])
        stream.write([b"n" * 10, b"o" * 10])  # past the handshake, writes join as before
        self.assertEqual(self.payloads(stream, acceptor), [b"n" * 10 + b"o" * 10])


class TransportMemoryTests(unittest.TestCase):
    A = ("10.0.0.1", 6881)

    def test_unknown_peers_get_tcp_and_utp_speakers_get_utp(self) -> None:
        memory = TransportMemory()
        self.assertEqual(memory.first(self.A), "tcp")
        memory.speaks_utp(self.A)
        self.assertEqual(memory.first(self.A), "utp")

    def test_a_failed_transport_is_followed_by_the_other_once(self) -> None:
        memory = TransportMemory()
        self.assertEqual(memory.failed(self.A, "tcp"), "utp")
        self.assertEqual(memory.first(self.A), "utp")
        self.assertIsNone(memory.failed(self.A, "utp"))
        self.assertEqual(memory.first(self.A), "tcp")   # both failed: start afresh next time

    def test_without_utp_there_is_no_fallback_and_without_tcp_only_utp(self) -> None:
        self.assertIsNone(TransportMemory(utp=False).failed(self.A, "tcp"))
        self.assertEqual(TransportMemory(tcp=False).first(self.A), "utp")
        self.assertIsNone(TransportMemory(tcp=False).failed(self.A, "utp"))


class RelayTests(unittest.TestCase):
    def echo(self) -> socket.socket:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(server.close)
        server.bind((HOST, 0))
        server.settimeout(5)
        return server

    def client(self) -> socket.socket:
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(client.close)
        client.settimeout(5)
        return client

    def test_relay_delays_and_duplicates_both_ways(self) -> None:
        server, client = self.echo(), self.client()
        relay = UdpRelay(server.getsockname(), delay=0.05, duplicate=1.0).start()
        self.addCleanup(relay.close)
        started = time.monotonic()
        client.sendto(b"ping", (HOST, relay.port))
        first, via = server.recvfrom(100)
        second, _ = server.recvfrom(100)
        self.assertEqual((first, second), (b"ping", b"ping"))
        self.assertGreaterEqual(time.monotonic() - started, 0.05)
        server.sendto(b"pong", via)
        self.assertEqual(client.recvfrom(100)[0], b"pong")
        self.assertEqual(relay.counts["duplicated"], 2)

    def test_relay_loses_the_share_it_is_told_and_is_repeatable(self) -> None:
        counts = []
        for _ in range(2):
            server, client = self.echo(), self.client()
            relay = UdpRelay(server.getsockname(), loss=0.5, seed=3).start()
            self.addCleanup(relay.close)
            for i in range(200):
                client.sendto(b"%d" % i, (HOST, relay.port))
            received = 0
            server.settimeout(0.5)   # what the relay kept arrives at once: no delay is set
            while received < 200:
                try:
                    server.recvfrom(100)
                except socket.timeout:
                    break
                received += 1
            relay.close()
            counts.append((received, relay.counts["lost"]))
        self.assertEqual(counts[0], counts[1])
        received, lost = counts[0]
        self.assertEqual(received + lost, 200)
        self.assertTrue(60 < lost < 140, lost)


if __name__ == "__main__":
    unittest.main()
