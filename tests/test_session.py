"""Tests for sta.session: sessions on 127.0.0.1 (port 0) in an event loop the test owns, with
torrents over MemoryStorage, fake owners that record what the session tells them, and raw
sockets on the other end."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import tempfile
import unittest
from typing import Any, Callable, Dict, List, Optional, Tuple
from unittest import mock

from sta import bencode, connlimits, metainfo, mse, peerlink, session as session_module, wire
from sta.memstorage import MemoryStorage
from sta.session import Session
from sta.torrent import Torrent
from tests import enginekit as kit
from tests.enginekit import LogCapture

HOST = "127.0.0.1"
PIECE_LENGTH = 16384  # the smallest piece length metainfo accepts
TORRENT_SIZE = 5 * PIECE_LENGTH + 1234  # six pieces, the last one short
# Deadline of one test's exchange: a loopback transfer of 80 KiB takes well under a second, and
# a session dials and ticks once a second.
TIMEOUT = 20.0
# Poll interval for conditions nothing signals (a set's size).
POLL = 0.02
PEER_ID = b"-XX0001-rawpeer00000"

_state: Optional[tempfile.TemporaryDirectory] = None


def setUpModule() -> None:
    """Every session here shares one state folder, so the node key is made only once."""
    global _state
    _state = tempfile.TemporaryDirectory(prefix="sta-session-")
    peerlink.PeerTls.for_node(_state.name)


def tearDownModule() -> None:
    _state.cleanup()


def make_metainfo(size: int = TORRENT_SIZE, seed: int = 1,
                  name: str = "t.bin") -> Tuple[metainfo.Metainfo, bytes]:
    payload = random.Random(seed).getrandbits(8 * size).to_bytes(size, "little")
    pieces = b"".join(hashlib.sha1(payload[i:i + PIECE_LENGTH]).digest()
                      for i in range(0, size, PIECE_LENGTH))
    info = bencode.encode({b"name": name.encode(), b"piece length": PIECE_LENGTH,
                           b"length": size, b"pieces": pieces})
    return metainfo.parse(metainfo.encode_torrent(info)), payload


def stored(storage: MemoryStorage, size: int) -> bytes:
    return b"".join(storage.read_block(i, 0, min(PIECE_LENGTH, size - begin))
                    for i, begin in enumerate(range(0, size, PIECE_LENGTH)))


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class FakeOwner:
    """A PeerOwner for dials: admits every peer and records what the session reports."""

    def __init__(self, info_hash: bytes, admit: bool = True) -> None:
        self.info_hash = info_hash
        self.name = "fake"
        self.admit = admit
        self.failed: List[Tuple[str, int]] = []
        self.joined: List[Any] = []
        self.changed = asyncio.Event()

    def dial_failed(self, address: Tuple[str, int]) -> None:
        self.failed.append(address)
        self.changed.set()

    def peer_joined(self, conn: Any) -> bool:
        self.joined.append(conn)
        self.changed.set()
        return self.admit

    def extension_fields(self) -> Dict[str, Any]:
        return {}

    def peer_message(self, conn: Any, event: Any) -> None:
        pass

    def peer_batch_done(self, conn: Any) -> None:
        pass

    def peer_writable(self, conn: Any) -> None:
        pass

    def peer_left(self, conn: Any) -> None:
        pass

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.changed.clear()
            await self.changed.wait()


class FakeTorrent(FakeOwner):
    """A ManagedTorrent with fixed counters, recording the session's calls."""

    def __init__(self, info_hash: bytes, downloaded: int = 0, uploaded: int = 0) -> None:
        super().__init__(info_hash)
        self.state = "seeding"
        self.done = asyncio.Event()
        self.downloaded = downloaded
        self.uploaded = uploaded
        self.calls: List[str] = []
        self.forgotten: List[Tuple[str, int]] = []

    async def start(self, recheck: bool = False) -> None:
        self.calls.append("start")

    def start_announcing(self) -> None:
        self.calls.append("announce")

    def tick(self, now: float) -> None:
        pass

    async def shutdown(self) -> None:
        self.calls.append("shutdown")

    def forget_self(self, address: Tuple[str, int]) -> None:
        self.forgotten.append(address)

    def status(self) -> Dict[str, Any]:
        return {"name": self.name}

    def forget_resume_state(self) -> None:
        self.calls.append("forget")

    def file_paths(self) -> List[str]:
        return []

    def delete_files(self) -> List[str]:
        return []


class SessionTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)
        if hasattr(self.loop, "shutdown_default_executor"):  # Python 3.9+
            self.addCleanup(self.run_async, self.loop.shutdown_default_executor())
        self.log = LogCapture(self)

    def run_async(self, coro: Any, timeout: float = TIMEOUT) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    async def session(self, encryption: str = "prefer") -> Session:
        node = Session(port=0, host=HOST, encryption=encryption, state_dir=_state.name)
        await node.start()
        self.addCleanup(lambda: self.run_async(node.close()))
        return node

    async def torrent(self, node: Session, meta: metainfo.Metainfo,
                      data: Optional[bytes] = None) -> Torrent:
        torrent = Torrent(node, meta, MemoryStorage(meta.info, data))
        await node.add(torrent)
        return torrent

    async def serving(self, serve_encryption: str, our_encryption: str
                      ) -> Tuple[Session, FakeOwner, Tuple[str, int]]:
        """A node seeding a torrent with ``serve_encryption``; our node with ``our_encryption``,
        a fake owner of the same torrent in it, and the seeding node's address."""
        meta, payload = make_metainfo()
        seeding = await self.session(serve_encryption)
        await self.torrent(seeding, meta, payload)
        node = await self.session(our_encryption)
        return node, FakeOwner(meta.info_hash), (HOST, seeding.listen_port)

    async def raw_client(self, port: int) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(HOST, port)
        self.addCleanup(writer.close)
        return reader, writer

    async def server(self, on_connect: Callable[[Any, Any], Any]) -> int:
        """A raw listener; ``on_connect(reader, writer)`` runs for each connection."""
        writers: List[Any] = []

        async def handle(reader: Any, writer: Any) -> None:
            writers.append(writer)
            await on_connect(reader, writer)
        server = await asyncio.start_server(handle, HOST, 0)

        def close() -> None:
            for writer in writers:
                writer.close()
            server.close()
            self.run_async(server.wait_closed())
        self.addCleanup(close)
        return server.sockets[0].getsockname()[1]


async def until(predicate: Callable[[], bool]) -> None:
    """Poll a condition nothing signals (the caller bounds the wait)."""
    while not predicate():
        await asyncio.sleep(POLL)


async def hold(reader: Any, writer: Any) -> None:
    """A peer that accepts and says nothing."""


async def hang_up(reader: Any, writer: Any) -> None:
    writer.close()


class TransferTests(SessionTestCase):
    def test_two_sessions_transfer_a_torrent_over_an_encrypted_link(self):
        meta, payload = make_metainfo()

        async def main() -> Tuple[Session, Session, Torrent, Torrent]:
            seed_node, leech_node = await self.session(), await self.session()
            seed = await self.torrent(seed_node, meta, payload)
            leech = await self.torrent(leech_node, meta)
            self.assertEqual((seed.state, leech.state), ("seeding", "downloading"))
            leech.add_peers([(HOST, seed_node.listen_port)], "test")
            await leech.done.wait()
            return seed_node, leech_node, seed, leech
        seed_node, leech_node, seed, leech = self.run_async(main())
        self.assertEqual(leech.state, "seeding")
        self.assertEqual(stored(leech.storage, TORRENT_SIZE), payload)
        joins = self.log.matching("connected to")
        self.assertTrue(joins and all("encrypted" in line for line in joins), joins)
        self.assertEqual(leech_node.stats()["downloaded"], TORRENT_SIZE)
        self.assertEqual(seed_node.stats()["uploaded"], TORRENT_SIZE)
        self.assertEqual(seed_node.stats()["downloaded"], 0)
        stats = leech_node.stats()
        self.assertEqual((stats["listen_port"], stats["torrents"]), (leech_node.listen_port, 1))
        self.assertEqual(stats["peer_id"].encode("latin-1"), leech_node.peer_id)


class LimitTests(SessionTestCase):
    def setUp(self) -> None:
        super().setUp()
        for name, value in (("MAX_CONNECTIONS", 1), ("OUTGOING_RESERVE", 0)):
            patcher = mock.patch.object(connlimits, name, value)
            patcher.start()
            self.addCleanup(patcher.stop)

    def test_incoming_stream_over_the_limit_is_refused(self):
        async def main() -> None:
            node = await self.session("off")
            first = await self.raw_client(node.listen_port)
            await until(lambda: len(node.connections) == 1)
            reader, _ = await self.raw_client(node.listen_port)
            self.assertEqual(await reader.read(), b"")  # closed at once
            self.assertEqual(len(node.connections), 1)
            first[1].close()
            await until(lambda: not node.connections)
            await self.raw_client(node.listen_port)
            await until(lambda: len(node.connections) == 1)
        self.run_async(main())

    def test_outgoing_stream_over_the_limit_comes_back_as_a_failed_dial(self):
        async def main() -> None:
            node = await self.session("off")
            owner = FakeOwner(bytes(20))
            addresses = [(HOST, await self.server(hold)), (HOST, await self.server(hold))]
            for address in addresses:  # both pass the check in dial(): nothing is open yet
                node.dial(owner, address)
            await owner.until(lambda: bool(owner.failed))
            self.assertEqual(len(node.connections), 1)
            [kept] = node.connections
            self.assertEqual(owner.failed, [a for a in addresses if a != kept.address])
        self.run_async(main())

    def test_dial_when_full_fails_at_once(self):
        async def main() -> None:
            node = await self.session("off")
            await self.raw_client(node.listen_port)
            await until(lambda: len(node.connections) == 1)
            owner = FakeOwner(bytes(20))
            node.dial(owner, (HOST, free_port()))
            self.assertEqual(len(owner.failed), 1)  # no attempt made
        self.run_async(main())


class DialTests(SessionTestCase):
    def test_a_bound_node_dials_from_its_own_address(self):
        source = kit.liar_host(self)  # a second loopback address (skips where there is none)

        async def main() -> None:
            node = Session(port=0, host=source, encryption="off", state_dir=_state.name)
            await node.start()
            self.addCleanup(lambda: self.run_async(node.close()))
            seen: List[str] = []

            async def note(reader: Any, writer: Any) -> None:
                seen.append(writer.get_extra_info("peername")[0])

            port = await self.server(note)
            node.dial(FakeOwner(bytes(20)), (HOST, port))
            await until(lambda: bool(seen))
            self.assertEqual(seen, [source])
        self.run_async(main())

    def test_refused_connect_comes_back_as_dial_failed(self):
        async def main() -> None:
            node = await self.session("off")
            owner = FakeOwner(bytes(20))
            address = (HOST, free_port())
            node.dial(owner, address)
            await owner.until(lambda: bool(owner.failed))
            self.assertEqual(owner.failed, [address])
            self.assertEqual(node.connections, set())
        self.run_async(main())

    def test_peer_hanging_up_before_the_handshake_comes_back_as_dial_failed(self):
        for encryption in ("off", "require"):
            with self.subTest(encryption=encryption):
                async def main() -> None:
                    node = await self.session(encryption)
                    owner = FakeOwner(bytes(20))
                    address = (HOST, await self.server(hang_up))
                    node.dial(owner, address)
                    await owner.until(lambda: bool(owner.failed))
                    await until(lambda: not node.connections)
                    self.assertEqual(owner.failed, [address])
                    self.assertEqual(owner.joined, [])
                self.run_async(main())

    # Session._connect (session.py) calls self.peer_tls inside its try block, which catches only
    # OSError and asyncio.TimeoutError; when the node's TLS key cannot be made (state folder not
    # writable), the TlsError ends the task ("background task failed") and the owner never hears
    # dial_failed, so its swarm keeps the address as "being dialled" for good.
    def test_dial_without_a_usable_tls_key_comes_back_as_dial_failed(self):
        async def main() -> None:
            blocked = tempfile.NamedTemporaryFile(prefix="sta-not-a-folder-")
            self.addCleanup(blocked.close)
            node = Session(port=0, host=HOST, state_dir=blocked.name)
            await node.start()
            self.addCleanup(lambda: self.run_async(node.close()))
            owner = FakeOwner(bytes(20))
            address = (HOST, free_port())
            node.dial(owner, address)
            await until(lambda: owner.failed or self.log.matching("background task failed"))
            self.assertEqual(owner.failed, [address])
        self.run_async(main())

    def test_joined_connection_is_not_a_failed_dial(self):
        async def main() -> None:
            node, owner, address = await self.serving("off", "off")
            node.dial(owner, address)
            await owner.until(lambda: bool(owner.joined))
            conn = owner.joined[0]
            conn.close("test is done")
            await until(lambda: not node.connections)
            self.assertEqual(owner.failed, [])
        self.run_async(main())


class EncryptionTests(SessionTestCase):
    def test_prefer_falls_back_to_plain_for_a_node_with_encryption_off(self):
        async def main() -> None:
            node, owner, address = await self.serving("off", "prefer")
            node.dial(owner, address)
            await owner.until(lambda: bool(owner.joined))
            first = owner.joined[0]
            self.assertFalse(first.encrypted)
            self.assertEqual(owner.failed, [])
            # Refused twice: the TLS attempt, then the MSE/PE one.
            self.assertEqual(len(self.log.matching("refused a TLS peer: encryption is off")), 1)
            self.assertEqual(len(self.log.matching("refused an MSE/PE peer: encryption is off")),
                             1)
            first.close("test: dial again")
            await until(lambda: not node.connections)
            # The address is known to speak plain BitTorrent now: no second TLS or MSE attempt.
            node.dial(owner, address)
            await owner.until(lambda: len(owner.joined) == 2)
            self.assertFalse(owner.joined[1].encrypted)
            self.assertEqual(len(self.log.matching("encryption is off")), 2)
            self.assertEqual(owner.failed, [])
        self.run_async(main())

    def test_require_refuses_a_node_with_encryption_off(self):
        async def main() -> None:
            node, owner, address = await self.serving("off", "require")
            node.dial(owner, address)
            await owner.until(lambda: bool(owner.failed))
            await until(lambda: not node.connections)
            self.assertEqual(owner.failed, [address])
            self.assertEqual(owner.joined, [])
            node.dial(owner, address)  # known plain: not even tried
            self.assertEqual(owner.failed, [address, address])
            self.assertEqual(node.connections, set())
        self.run_async(main())

    def test_encryption_off_talks_plain_to_a_prefer_node(self):
        async def main() -> None:
            node, owner, address = await self.serving("prefer", "off")
            node.dial(owner, address)
            await owner.until(lambda: bool(owner.joined))
            self.assertFalse(owner.joined[0].encrypted)
        self.run_async(main())


class MseTests(SessionTestCase):
    async def mse_only_peer(self, info_hash: bytes, allowed: int) -> Tuple[int, List[str]]:
        """A peer like Transmission at its defaults: it answers a TLS ClientHello with nothing
        useful and takes only an MSE/PE handshake, then a BitTorrent one. Returns its port and
        what each connection began with ("tls" or the method it settled on)."""
        seen: List[str] = []

        async def serve(reader: Any, writer: Any) -> None:
            first = await reader.read(1)
            if first == b"\x16":
                seen.append("tls")
                writer.write(bytes(96))   # a "key" the TLS client cannot read
                return
            link = mse.MseLink.responder({mse.skey_hash(info_hash): info_hash}.get, allowed)
            data = first
            while not link.authenticated:
                link.receive(data)
                writer.write(link.outgoing())
                data = await reader.read(4096)
                if not data:
                    return
            seen.append(mse.METHOD_NAMES[link.method])
            link.receive(data)
            writer.write(link.send_many([wire.handshake(info_hash, b"-TR4000-" + bytes(12))]))
            await reader.read(4096)

        return await self.server(serve), seen

    async def dial_mse_only_peer(self, policy: str
                                 ) -> Tuple[Session, FakeOwner, int, List[str]]:
        """Our node with ``policy`` dials a peer that takes both MSE/PE methods, until joined."""
        node = await self.session(policy)
        owner = FakeOwner(hashlib.sha1(b"mse torrent").digest())
        port, seen = await self.mse_only_peer(owner.info_hash,
                                              mse.CRYPTO_PLAINTEXT | mse.CRYPTO_RC4)
        node.dial(owner, (HOST, port))
        await owner.until(lambda: bool(owner.joined))
        return node, owner, port, seen

    def test_prefer_reaches_an_mse_only_peer_after_one_tls_attempt_and_remembers(self):
        async def main() -> None:
            node, owner, port, seen = await self.dial_mse_only_peer("prefer")
            self.assertEqual(seen, ["tls", "plaintext"])
            self.assertFalse(owner.joined[0].encrypted)  # plaintext picked: no RC4 to pay
            self.assertTrue(self.log.matching("retrying with MSE/PE"))
            owner.joined[0].close("test: dial again")
            await until(lambda: not node.connections)
            node.dial(owner, (HOST, port))
            await owner.until(lambda: len(owner.joined) == 2)
            self.assertEqual(seen, ["tls", "plaintext", "plaintext"])  # no second TLS try
            self.assertEqual(owner.failed, [])
        self.run_async(main())

    def test_require_reaches_an_mse_peer_with_rc4_throughout(self):
        async def main() -> None:
            node, owner, port, seen = await self.dial_mse_only_peer("require")
            self.assertEqual(seen, ["tls", "RC4"])
            self.assertTrue(owner.joined[0].encrypted)
        self.run_async(main())

    def test_nodes_remembered_as_mse_connect_with_mse(self):
        for serve, ours, encrypted in (("prefer", "prefer", False), ("require", "prefer", True),
                                       ("prefer", "require", True)):
            with self.subTest(serve=serve, ours=ours):
                async def main() -> None:
                    node, owner, address = await self.serving(serve, ours)
                    node._modes.record(address, "mse", 0.0)  # as after a failed TLS attempt
                    node._modes.ttl = float("inf")
                    node.dial(owner, address)
                    await owner.until(lambda: bool(owner.joined))
                    self.assertEqual(owner.joined[0].encrypted, encrypted)
                    self.assertEqual(self.log.matching("encrypted link failed"), [])
                self.run_async(main())

    def test_mse_peer_asking_for_a_torrent_we_lack_is_refused(self):
        async def main() -> None:
            node, owner, address = await self.serving("prefer", "prefer")
            stranger = FakeOwner(hashlib.sha1(b"not served").digest())
            node._modes.record(address, "mse", 0.0)
            node._modes.ttl = float("inf")
            node.dial(stranger, address)
            await stranger.until(lambda: bool(stranger.failed))
            self.assertTrue(self.log.matching("torrent this node does not have"))
            self.assertEqual(self.log.matching("retrying in plain"), [])
        self.run_async(main())


class SelfTests(SessionTestCase):
    def test_dialling_our_own_listener_marks_the_address_in_every_torrent(self):
        meta, payload = make_metainfo()

        async def main() -> None:
            node = await self.session()
            torrent = await self.torrent(node, meta, payload)
            other = FakeTorrent(hashlib.sha1(b"another torrent").digest())
            await node.add(other)
            own = (HOST, node.listen_port)
            torrent.add_peers([own], "test")
            await until(lambda: node.is_self(own))
            self.assertIn(own, other.forgotten)
            self.assertTrue(torrent.swarm.known[own].banned)
            await until(lambda: not node.connections)
            self.assertEqual(torrent.peers, set())
            # A torrent told of the address later never stores it.
            self.assertEqual(torrent.swarm.add_peers([own], "tracker"), 0)
        self.run_async(main())


class StatsTests(SessionTestCase):
    def test_stats_total_every_torrent_including_removed_ones(self):
        async def main() -> None:
            node = await self.session()
            first = FakeTorrent(bytes(20), downloaded=1000, uploaded=10)
            second = FakeTorrent(bytes(range(20)), downloaded=500, uploaded=7)
            await node.add(first)
            await node.add(second)
            self.assertEqual(first.calls, ["start", "announce"])
            stats = node.stats()
            self.assertEqual((stats["torrents"], stats["downloaded"], stats["uploaded"]),
                             (2, 1500, 17))
            self.assertEqual((stats["peers"], stats["down_rate"], stats["up_rate"]), (0, 0, 0))
            await node.remove(first)
            self.assertEqual(first.calls, ["start", "announce", "shutdown", "forget"])
            stats = node.stats()
            self.assertEqual((stats["torrents"], stats["downloaded"], stats["uploaded"]),
                             (1, 1500, 17))
        self.run_async(main())

    def test_adding_a_torrent_twice_is_an_error(self):
        async def main() -> None:
            node = await self.session()
            await node.add(FakeTorrent(bytes(20)))
            with self.assertRaises(session_module.SessionError):
                await node.add(FakeTorrent(bytes(20)))
        self.run_async(main())

    def test_owner_for_finds_a_torrent_by_info_hash(self):
        async def main() -> None:
            node = await self.session()
            torrent = FakeTorrent(bytes(20))
            await node.add(torrent)
            self.assertIs(node.owner_for(bytes(20)), torrent)
            self.assertIsNone(node.owner_for(bytes(range(20))))
        self.run_async(main())

    def test_raw_peer_naming_an_unknown_torrent_is_dropped(self):
        async def main() -> None:
            node = await self.session("off")
            reader, writer = await self.raw_client(node.listen_port)
            writer.write(wire.handshake(bytes(20), PEER_ID))
            self.assertEqual(await reader.read(), b"")
            await until(lambda: not node.connections)
        self.run_async(main())


if __name__ == "__main__":
    unittest.main()
