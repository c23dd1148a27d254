"""Tests for sta.transport: TcpStream over real loopback sockets (127.0.0.1, port 0) on an event
loop the test owns, with a fake handler above it recording what the stream reports."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
import unittest
from typing import Any, Callable, List, Optional, Tuple

from sta import mse, peerlink, tls, wire
from sta.transport import UNDECIDED, WRITE_BUFFER_HIGH, TcpStream

INFO_HASH = hashlib.sha1(b"the torrent both ends have").digest()
PEER_ID = b"-XX0001-plainpeer000"
HOST = "127.0.0.1"
# Deadline of one test's whole exchange; loopback answers in milliseconds when all is well.
TIMEOUT = 10.0
# Written at once to a reader that does not read: far past what the kernel's socket buffers take
# in one send (a few MiB at most), so the stream's own buffer passes WRITE_BUFFER_HIGH.
FLOOD = 16 * 1024 * 1024 + WRITE_BUFFER_HIGH

_state: Optional[tempfile.TemporaryDirectory] = None
PEER_TLS: Any = None  # one node identity, used by both ends (made once: key generation is slow)


def setUpModule() -> None:
    global _state, PEER_TLS
    _state = tempfile.TemporaryDirectory(prefix="sta-transport-")
    PEER_TLS = peerlink.PeerTls.for_node(_state.name)


def tearDownModule() -> None:
    _state.cleanup()


def lookup(torrent_id: bytes) -> Optional[bytes]:
    return INFO_HASH if torrent_id == peerlink.torrent_id(INFO_HASH) else None


class Handler:
    """A StreamHandler that records every report, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.calls: List[str] = []
        self.received = bytearray()
        self.closed: List[Tuple[str, Optional[BaseException]]] = []
        self.transport: Any = None
        self.at_ready: Tuple[Any, ...] = ()
        self.on_open: Optional[Callable[[Any], None]] = None
        self.on_ready: Optional[Callable[[Any], None]] = None
        self._changed = asyncio.Event()
        self._loop = loop

    def stream_opened(self, transport: Any) -> None:
        self.calls.append("opened")
        self.transport = transport
        if self.on_open:
            self.on_open(transport)
        self._changed.set()

    def transport_ready(self, transport: Any) -> None:
        self.calls.append("ready")
        self.at_ready = (transport.encrypted, transport.bound_info_hash)
        if self.on_ready:
            self.on_ready(transport)
        self._changed.set()

    def stream_received(self, data: Any) -> None:
        self.calls.append("data")
        self.received += data
        self._changed.set()

    def writing_paused(self) -> None:
        self.calls.append("paused")
        self._changed.set()

    def writing_resumed(self) -> None:
        self.calls.append("resumed")
        self._changed.set()

    def transport_closed(self, reason: str, error: Optional[BaseException]) -> None:
        self.calls.append("closed")
        self.closed.append((reason, error))
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate`` holds (the caller bounds the wait)."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()


class ObservedStream(TcpStream):
    """A TcpStream that also says when asyncio reported the socket gone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost = asyncio.Event()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        super().connection_lost(exc)
        self.lost.set()


class Sink(asyncio.Protocol):
    """A raw peer on the other end: keeps what arrives; ``answer`` says what to do with it."""

    def __init__(self, answer: Optional[Callable[["Sink", bytes], None]] = None,
                 paused: bool = False) -> None:
        self.answer = answer
        self.paused = paused
        self.data = bytearray()
        self.transport: Any = None
        self.changed = asyncio.Event()
        self.eof = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.paused:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.changed.set()
        if self.answer:
            self.answer(self, data)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.eof = True
        self.changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.changed.clear()
            await self.changed.wait()


class TransportTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)
        self.streams: List[TcpStream] = []
        self.sinks: List[Sink] = []
        self.servers: List[Any] = []
        self.addCleanup(self.close_all)

    def run_async(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))

    def close_all(self) -> None:
        async def close() -> None:
            for stream in self.streams:
                stream.close()
            for sink in self.sinks:
                if sink.transport is not None:
                    sink.transport.close()
            for server in self.servers:
                server.close()
                await server.wait_closed()
            await asyncio.sleep(0)  # let asyncio run the connection_lost callbacks
        self.run_async(close())

    def handler(self) -> Handler:
        return Handler(self.loop)

    def stream(self, *args: Any, **kwargs: Any) -> ObservedStream:
        stream = ObservedStream(*args, **kwargs)
        self.streams.append(stream)
        return stream

    def sink(self, **kwargs: Any) -> Sink:
        sink = Sink(**kwargs)
        self.sinks.append(sink)
        return sink

    async def listen(self, factory: Callable[[], asyncio.Protocol]) -> int:
        server = await self.loop.create_server(factory, HOST, 0)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def incoming(self, choose: Callable[[bytes], Any]) -> Tuple[Handler, List[Any], int]:
        """A listener whose accepted streams share one handler; returns it, the accepted
        streams and the port."""
        handler = self.handler()
        accepted: List[Any] = []

        def factory() -> TcpStream:
            stream = self.stream(handler, choose=choose)
            accepted.append(stream)
            return stream
        return handler, accepted, await self.listen(factory)

    async def dial(self, port: int, link: Any = None) -> Tuple[Handler, ObservedStream]:
        handler = self.handler()
        address = (HOST, port)
        stream = self.stream(handler, address, link=link)
        await self.loop.create_connection(lambda: stream, HOST, port)
        return handler, stream

    async def dial_sink(self, link: Any = None, **sink_options: Any
                        ) -> Tuple[Sink, Handler, ObservedStream]:
        """An outgoing stream to a raw peer (a Sink made with ``sink_options``)."""
        sink = self.sink(**sink_options)
        port = await self.listen(lambda: sink)
        handler, stream = await self.dial(port, link)
        return sink, handler, stream

    async def raw_client(self, port: int) -> Sink:
        sink = self.sink()
        await self.loop.create_connection(lambda: sink, HOST, port)
        return sink


def recording_choice(chosen: List[int], choice: Callable[[bytes], Any]
                     ) -> Callable[[bytes], Any]:
    """Records the first byte of what each choice was made on."""
    def choose(head: bytes) -> Any:
        chosen.append(head[0])
        return choice(head)
    return choose


async def check_flow_control(test: unittest.TestCase, handler: Handler, stream: TcpStream,
                             resume: Callable[[], None], peer: Any,
                             received: Callable[[], int]) -> None:
    """Flood a peer that does not read: the handler hears paused at once, then resumed once
    ``resume()`` let the peer (a Sink or Handler) read it all; ``received()`` counts that."""
    stream.write([bytes(FLOOD // 2), bytes(FLOOD - FLOOD // 2)])
    test.assertEqual(handler.calls[-1:], ["paused"])  # asyncio pauses inside the write
    resume()
    await handler.until(lambda: "resumed" in handler.calls)
    test.assertEqual(handler.calls[-2:], ["paused", "resumed"])
    await peer.until(lambda: received() >= FLOOD)
    test.assertEqual(received(), FLOOD)


class PlainTests(TransportTestCase):
    def test_plain_outgoing_stream_is_ready_at_once(self):
        async def main() -> None:
            sink, handler, stream = await self.dial_sink()
            self.assertEqual(handler.calls, ["opened", "ready"])
            self.assertEqual((stream.incoming, stream.encrypted, stream.bound_info_hash),
                             (False, False, None))
            self.assertEqual(stream.address, (HOST, sink.transport.get_extra_info("sockname")[1]))
            stream.write([b"ab", memoryview(b"cd"), b"ef"])
            await sink.until(lambda: len(sink.data) >= 6)
            self.assertEqual(bytes(sink.data), b"abcdef")
        self.run_async(main())

    def test_incoming_first_byte_0x13_chooses_plain(self):
        async def main() -> None:
            chosen: List[int] = []
            handler, accepted, port = await self.incoming(recording_choice(chosen, lambda b: None))
            client = await self.raw_client(port)
            await handler.until(lambda: "opened" in handler.calls)
            self.assertEqual(handler.calls, ["opened"])  # the first byte has not come yet
            data = wire.handshake(INFO_HASH, PEER_ID)
            client.transport.write(data)
            await handler.until(lambda: len(handler.received) >= len(data))
            self.assertEqual(chosen, [0x13])
            self.assertEqual(bytes(handler.received), data)
            self.assertEqual(handler.calls[:3], ["opened", "ready", "data"])
            stream = accepted[0]
            self.assertTrue(stream.incoming)
            self.assertFalse(stream.encrypted)
            self.assertEqual(stream.address, client.transport.get_extra_info("sockname")[:2])
        self.run_async(main())

    def test_writes_before_ready_are_not_sent(self):
        async def main() -> None:
            handler, _, port = await self.incoming(lambda b: None)
            handler.on_open = lambda t: t.write([b"early"])
            handler.on_ready = lambda t: t.write([b"late"])
            client = await self.raw_client(port)
            client.transport.write(wire.handshake(INFO_HASH, PEER_ID))
            await client.until(lambda: len(client.data) >= len(b"late"))
            # TCP keeps order: had "early" been sent, it would have come first.
            self.assertEqual(bytes(client.data), b"late")
        self.run_async(main())

    def test_refused_choice_closes_with_the_reason_once(self):
        async def main() -> None:
            handler, accepted, port = await self.incoming(
                lambda b: tls.incoming_mode("require", b))
            client = await self.raw_client(port)
            client.transport.write(wire.handshake(INFO_HASH, PEER_ID))
            await client.until(lambda: client.eof)
            await accepted[0].lost.wait()
            self.assertEqual(handler.calls, ["opened", "closed"])
            [(reason, error)] = handler.closed
            self.assertIsInstance(error, tls.TlsError)
            self.assertIn("encryption is required", reason)
            self.assertEqual(bytes(client.data), b"")
        self.run_async(main())

    def test_close_by_the_handler_is_not_reported_to_it(self):
        async def main() -> None:
            sink, handler, stream = await self.dial_sink()
            stream.write([b"last words"])
            stream.close()
            stream.close()
            stream.write([b"after the end"])
            await sink.until(lambda: sink.eof)
            await stream.lost.wait()
            self.assertEqual(bytes(sink.data), b"last words")
            self.assertEqual(handler.calls, ["opened", "ready"])
        self.run_async(main())

    def test_close_by_the_peer_is_reported_once(self):
        async def main() -> None:
            sink, handler, stream = await self.dial_sink()
            sink.transport.close()
            await stream.lost.wait()
            stream.close()
            self.assertEqual(handler.closed, [("closed by peer", None)])
            self.assertEqual(handler.calls.count("closed"), 1)
        self.run_async(main())

    def test_pause_and_resume_writing_reach_the_handler(self):
        async def main() -> None:
            sink, handler, stream = await self.dial_sink(paused=True)
            await check_flow_control(self, handler, stream, sink.transport.resume_reading, sink,
                                     lambda: len(sink.data))
        self.run_async(main())


class TlsTests(TransportTestCase):
    def test_tls_streams_are_ready_only_after_the_proofs(self):
        async def main() -> None:
            chosen: List[int] = []
            links: List[Any] = [PEER_TLS.connect(INFO_HASH)]
            proved: List[bool] = []

            def accept(head: bytes) -> Any:
                links.append(PEER_TLS.accept(lookup))
                return links[-1]
            server, accepted, port = await self.incoming(recording_choice(chosen, accept))
            server.on_ready = lambda t: proved.append(links[1].authenticated)
            client = self.handler()
            client.on_ready = lambda t: proved.append(links[0].authenticated)
            stream = self.stream(client, (HOST, port), link=links[0])
            await self.loop.create_connection(lambda: stream, HOST, port)
            self.assertEqual(client.calls, ["opened"])  # TLS first: not ready yet
            await client.until(lambda: "ready" in client.calls)
            await server.until(lambda: "ready" in server.calls)
            self.assertEqual(chosen, [0x16])
            # Both sides became ready with the link authenticated and the torrent bound.
            self.assertEqual(proved, [True, True])
            self.assertEqual(client.at_ready, (True, INFO_HASH))
            self.assertEqual(server.at_ready, (True, INFO_HASH))
            self.assertTrue(accepted[0].encrypted)
            self.assertEqual(accepted[0].bound_info_hash, INFO_HASH)
            stream.write([b"hello ", b"world"])
            await server.until(lambda: len(server.received) >= 11)
            accepted[0].write([b"ok"])
            await client.until(lambda: len(client.received) >= 2)
            self.assertEqual((bytes(server.received), bytes(client.received)),
                             (b"hello world", b"ok"))
            self.assertEqual(server.calls, ["opened", "ready", "data"])
            self.assertEqual(client.calls, ["opened", "ready", "data"])
        self.run_async(main())

    def test_pause_and_resume_writing_reach_the_handler(self):
        async def main() -> None:
            server, accepted, port = await self.incoming(lambda b: PEER_TLS.accept(lookup))
            client, stream = await self.dial(port, PEER_TLS.connect(INFO_HASH))
            await server.until(lambda: "ready" in server.calls)
            accepted[0].pause_reading()
            await client.until(lambda: "ready" in client.calls)
            await check_flow_control(self, client, stream, accepted[0].resume_reading, server,
                                     lambda: len(server.received))
        self.run_async(main())

    # TcpStream._receive_tls (transport.py) returns b"" as soon as link.closed is set, dropping
    # the plaintext that the same receive() call decrypted before the peer's close_notify: a
    # peer's last messages sent with its TLS close never reach the handler.
    def test_data_before_the_peer_close_notify_is_delivered(self):
        link = PEER_TLS.accept(lookup)

        def answer(sink: Sink, data: bytes) -> None:
            link.receive(data)
            out = link.outgoing()
            if link.authenticated:  # one write: the last words and the TLS close together
                out += link.send(b"bye") + link.close()
            sink.transport.write(out)
        async def main() -> None:
            sink, handler, stream = await self.dial_sink(PEER_TLS.connect(INFO_HASH),
                                                         answer=answer)
            await handler.until(lambda: bool(handler.closed))
            self.assertEqual(handler.closed, [("peer closed the TLS session", None)])
            self.assertEqual(bytes(handler.received), b"bye")
        self.run_async(main())

    def test_writes_before_the_proofs_are_not_sent(self):
        async def main() -> None:
            server, _, port = await self.incoming(lambda b: PEER_TLS.accept(lookup))
            client = self.handler()
            client.on_open = lambda t: t.write([b"early"])
            client.on_ready = lambda t: t.write([b"late"])
            stream = self.stream(client, (HOST, port), link=PEER_TLS.connect(INFO_HASH))
            await self.loop.create_connection(lambda: stream, HOST, port)
            await server.until(lambda: len(server.received) >= 4)
            self.assertEqual(bytes(server.received), b"late")
        self.run_async(main())

    def test_plain_peer_answering_the_client_hello_gives_tls_unsupported(self):
        def answer(sink: Sink, data: bytes) -> None:
            if len(sink.data) == len(data):  # the first chunk: answer as a BitTorrent peer would
                sink.transport.write(wire.handshake(INFO_HASH, PEER_ID))
        async def main() -> None:
            sink, handler, stream = await self.dial_sink(PEER_TLS.connect(INFO_HASH),
                                                         answer=answer)
            await handler.until(lambda: bool(handler.closed))
            [(reason, error)] = handler.closed
            self.assertIsInstance(error, tls.TlsUnsupported)
            self.assertIn("encrypted link failed", reason)
            self.assertNotIn("ready", handler.calls)
            await sink.until(lambda: sink.eof)
        self.run_async(main())

    def test_plain_peer_hanging_up_on_the_client_hello_gives_tls_unsupported(self):
        async def main() -> None:
            sink, handler, stream = await self.dial_sink(
                PEER_TLS.connect(INFO_HASH), answer=lambda s, d: s.transport.close())
            await handler.until(lambda: bool(handler.closed))
            [(reason, error)] = handler.closed
            self.assertIsInstance(error, tls.TlsUnsupported)
            self.assertNotIn("ready", handler.calls)
        self.run_async(main())

    def test_node_with_encryption_off_gives_tls_unsupported(self):
        async def main() -> None:
            server, accepted, port = await self.incoming(lambda b: tls.incoming_mode("off", b))
            client, stream = await self.dial(port, PEER_TLS.connect(INFO_HASH))
            await client.until(lambda: bool(client.closed))
            self.assertIsInstance(client.closed[0][1], tls.TlsUnsupported)
            await server.until(lambda: bool(server.closed))
            self.assertIsInstance(server.closed[0][1], tls.TlsUnsupported)
            self.assertIn("encryption is off", server.closed[0][0])
        self.run_async(main())

    def test_node_without_the_torrent_is_a_tls_error_not_unsupported(self):
        async def main() -> None:
            server, _, port = await self.incoming(lambda b: PEER_TLS.accept(lambda tid: None))
            client, stream = await self.dial(port, PEER_TLS.connect(INFO_HASH))
            await client.until(lambda: bool(client.closed))
            [(reason, error)] = client.closed
            self.assertIsInstance(error, tls.TlsError)
            self.assertNotIsInstance(error, tls.TlsUnsupported)
            self.assertIn("does not have", reason)
            await server.until(lambda: bool(server.closed))
            self.assertNotIn("ready", client.calls + server.calls)
        self.run_async(main())


def mse_choice(policy: str) -> Callable[[bytes], Any]:
    """What the session does with an incoming stream's first bytes."""
    def choose(head: bytes) -> Any:
        mode = tls.incoming_mode(policy, head)
        if mode is None:
            return UNDECIDED
        if mode == "mse":
            return mse.MseLink.responder({mse.skey_hash(INFO_HASH): INFO_HASH}.get,
                                         tls.mse_crypto(policy))
        return None
    return choose


class MseTests(TransportTestCase):
    async def exchange(self, server_policy: str, provide: int) -> Tuple[Handler, Handler, Any]:
        server, accepted, port = await self.incoming(mse_choice(server_policy))
        client, stream = await self.dial(port, mse.MseLink.initiator(INFO_HASH, provide))
        self.assertEqual(client.calls, ["opened"])  # the MSE/PE handshake first
        await client.until(lambda: "ready" in client.calls)
        await server.until(lambda: "ready" in server.calls)
        stream.write([b"hello ", b"world"])
        await server.until(lambda: len(server.received) >= 11)
        accepted[0].write([b"ok"])
        await client.until(lambda: len(client.received) >= 2)
        self.assertEqual((bytes(server.received), bytes(client.received)), (b"hello world", b"ok"))
        self.assertEqual((stream.bound_info_hash, accepted[0].bound_info_hash),
                         (INFO_HASH, INFO_HASH))
        return client, server, accepted[0]

    def test_rc4_stream_is_encrypted_and_bound_to_the_torrent(self):
        async def main() -> None:
            client, server, accepted = await self.exchange("require", mse.CRYPTO_RC4)
            self.assertEqual((client.at_ready, server.at_ready),
                             ((True, INFO_HASH), (True, INFO_HASH)))
        self.run_async(main())

    def test_plaintext_method_leaves_a_plain_stream(self):
        async def main() -> None:
            client, server, accepted = await self.exchange(
                "prefer", mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT)
            self.assertEqual((client.at_ready, server.at_ready),
                             ((False, INFO_HASH), (False, INFO_HASH)))
        self.run_async(main())

    def test_plain_handshake_sent_a_byte_at_a_time_is_still_plain(self):
        async def main() -> None:
            chosen: List[int] = []
            handler, _, port = await self.incoming(recording_choice(chosen, mse_choice("prefer")))
            client = await self.raw_client(port)
            data = wire.handshake(INFO_HASH, PEER_ID)
            for i in range(len(data)):
                client.transport.write(data[i:i + 1])
                await asyncio.sleep(0)
            await handler.until(lambda: len(handler.received) >= len(data))
            self.assertEqual(bytes(handler.received), data)
            self.assertEqual(handler.calls[:2], ["opened", "ready"])
            self.assertEqual(handler.at_ready, (False, None))
        self.run_async(main())

    def test_peer_hanging_up_on_the_mse_key_is_mse_unsupported(self):
        async def main() -> None:
            sink, handler, stream = await self.dial_sink(
                mse.MseLink.initiator(INFO_HASH, mse.CRYPTO_RC4),
                answer=lambda s, d: s.transport.close())
            await handler.until(lambda: bool(handler.closed))
            [(reason, error)] = handler.closed
            self.assertIsInstance(error, mse.MseUnsupported)
            self.assertIn("encrypted link failed", reason)
            self.assertNotIn("ready", handler.calls)
        self.run_async(main())

    def test_node_with_encryption_off_refuses_mse(self):
        async def main() -> None:
            server, _, port = await self.incoming(mse_choice("off"))
            client, stream = await self.dial(port, mse.MseLink.initiator(INFO_HASH, 3))
            await client.until(lambda: bool(client.closed))
            self.assertIsInstance(client.closed[0][1], mse.MseUnsupported)
            await server.until(lambda: bool(server.closed))
            self.assertIn("MSE/PE peer: encryption is off", server.closed[0][0])
        self.run_async(main())


if __name__ == "__main__":
    unittest.main()
