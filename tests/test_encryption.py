"""Encryption between STA nodes, end to end on 127.0.0.1.

What an observer on the wire sees (a recording relay between a downloader and a seed), what an
attacker on the wire can do (flip a byte; terminate TLS on both sides with its own certificate or
with the seed's stolen key), how each --encryption policy meets a plain peer, and announces over
HTTPS to `sta tracker --tls` trusted by its pinned self-made certificate.

The relay tests run both nodes in this process (tests/enginekit.py) so they can read the
torrents' state; the policy and tracker tests run `python sta.py` as a user would. Every node
uses a temporary STA_HOME whose key is made once for the module.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import tempfile
import threading
import unittest
from typing import Any, Callable, List, Optional, Tuple, Union
from unittest import mock

from sta import metainfo, tls, wire
from sta.session import Session
from sta.storage import FileStorage
from sta.torrent import Torrent
from tests import enginekit as kit
from tests.enginekit import WAIT
from tests.interop import clients

try:  # the info-hash proof lives in its own module once tls.py is split
    from sta import peerlink as _link
except ImportError:  # pragma: no cover - before the split
    _link = tls

MiB = 1 << 20
# The shared file: 2 MiB in 64 KiB pieces is 32 pieces, about a second on loopback even through
# a Python relay, and long enough that a tamper point at 512 KiB lands mid-transfer.
FILE_SIZE = 2 * MiB
PIECE_LENGTH = 64 * 1024
FILE_NAME = "share.bin"
# The known run an eavesdropper looks for: 64 bytes from the middle of the file, 1000 bytes into
# a 16 KiB block so the run never straddles two blocks (which a plain stream would split with a
# 13-byte message header).
RUN_SIZE = 64
RUN_OFFSET = (FILE_SIZE // 2 // wire.BLOCK_SIZE) * wire.BLOCK_SIZE + 1000
# The tampering relay flips one byte this far into the seed's stream of its first connection:
# well past the TLS handshake and the proof exchange, in the middle of the piece data.
TAMPER_AT = 512 * 1024
# The relays read this much at a time.
RELAY_CHUNK = 65536
# The MITM relay waits this long for the seed to answer the proof it tries.
REFLECT_WAIT = 10.0
# A download that must not succeed runs this long (--timeout) before it gives up.
REFUSED_TIMEOUT = 4
# A `require` downloader needs a second attempt to log that it will not go plain: the first
# attempt fails, and swarm.py dials an address again RECONNECT_BASE (5 s) later.
REQUIRE_TIMEOUT = 10
# The first byte of a TLS handshake record and of a plain BitTorrent handshake.
TLS_RECORD = 0x16
BT_HANDSHAKE = 0x13

_home: Optional[tempfile.TemporaryDirectory] = None
NODE_HOME = ""    # STA_HOME of every node (one key, made once)
OTHER_HOME = ""   # a second identity: the MITM's own certificate


def setUpModule() -> None:
    global _home, NODE_HOME, OTHER_HOME
    _home = tempfile.TemporaryDirectory(prefix="sta-enc-")
    NODE_HOME = os.path.join(_home.name, "node")
    OTHER_HOME = os.path.join(_home.name, "mitm")
    tls.ensure_node_identity(NODE_HOME)  # ~1-2 s of key generation, once
    tls.ensure_node_identity(OTHER_HOME)


def tearDownModule() -> None:
    if _home is not None:
        _home.cleanup()


# ------------------------------------------------------------------------------------- relays

class Recording:
    """The bytes one relayed connection carried each way (ciphertext, or for the MITM the
    plaintext it decrypted)."""

    def __init__(self) -> None:
        self.c2s = bytearray()
        self.s2c = bytearray()
        self.upstream_port = 0   # the relay's own port on its link to the server


class Relay:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target on its own event loop thread.

    Records both directions of every connection. ``tamper_at``: flip one byte of the server's
    stream, on the first connection only (later ones are an honest path): the byte at that
    offset, or given bytes, the last byte of their first occurrence.
    ``mitm``: (certfile, keyfile) to terminate the client's TLS with, using sta.tls's own
    contexts, while opening TLS to the server itself and relaying the decrypted bytes.
    """

    def __init__(self, test: unittest.TestCase, target_port: int, *,
                 tamper_at: Optional[Union[int, bytes]] = None,
                 mitm: Optional[Tuple[str, str]] = None) -> None:
        self.target_port = target_port
        self.tamper_at = tamper_at
        self.tampered = False
        self.connections: List[Recording] = []
        self.errors: List[str] = []
        self._server_context = tls.server_context(*mitm) if mitm else None
        self._client_context = tls.client_context() if mitm else None
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, ctx: self.errors.append(ctx["message"]))
        self._tasks: List["asyncio.Future[Any]"] = []
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()
        test.addCleanup(self.close)
        self._server = self._call(self._listen())
        self.port = self._server.sockets[0].getsockname()[1]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    async def _listen(self) -> Any:
        return await asyncio.start_server(self._accepted, "127.0.0.1", 0,
                                          ssl=self._server_context)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            self._call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(kit.STOP_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()

    def snapshot(self) -> List[Tuple[bytes, bytes]]:
        """(client->server, server->client) bytes of every connection so far."""
        async def take() -> List[Tuple[bytes, bytes]]:
            return [(bytes(c.c2s), bytes(c.s2c)) for c in self.connections]
        return self._call(take())

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        self._tasks.append(asyncio.ensure_future(self._serve(reader, writer)))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port, ssl=self._client_context)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append("cannot reach the server: %s" % exc)
            writer.close()
            return
        conn = Recording()
        conn.upstream_port = up_writer.get_extra_info("sockname")[1]
        first = not self.connections
        self.connections.append(conn)
        tamper = self._tamper if first and self.tamper_at is not None else None
        to_client = asyncio.ensure_future(self._pump(up_reader, writer, conn.s2c, tamper))
        try:
            await self._pump(reader, up_writer, conn.c2s, close=self._server_context is None)
            if self._server_context is not None:
                await self._after_client_left(conn, up_writer, to_client)
            await asyncio.wait_for(to_client, WAIT)
        finally:
            to_client.cancel()
            for w in (writer, up_writer):
                w.close()

    async def _after_client_left(self, conn: Recording, up_writer: asyncio.StreamWriter,
                                 to_client: "asyncio.Future[Any]") -> None:
        """Hook for the MITM: the client hung up; the link to the server is still open."""
        up_writer.close()

    def _tamper(self, record: bytearray, data: bytes) -> bytes:
        if self.tampered:
            return data
        offset = len(record)
        if isinstance(self.tamper_at, bytes):
            # Known plaintext: flip the last byte of its first occurrence, which (the run not
            # having been complete before) lies in this chunk.
            tail = bytes(record[-(len(self.tamper_at) - 1):])
            found = (tail + data).find(self.tamper_at)
            if found < 0:
                return data
            i = found + len(self.tamper_at) - 1 - len(tail)
        elif offset <= self.tamper_at < offset + len(data):
            i = self.tamper_at - offset
        else:
            return data
        self.tampered = True
        return data[:i] + bytes((data[i] ^ 0xFF,)) + data[i + 1:]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    record: bytearray,
                    tamper: Optional[Callable[[bytearray, bytes], bytes]] = None,
                    close: bool = True) -> None:
        """Copy reader to writer until EOF; keep reading (and recording) if the writer dies."""
        alive = True
        while True:
            try:
                data = await reader.read(RELAY_CHUNK)
            except (OSError, ssl.SSLError, EOFError):
                break
            if not data:
                break
            if tamper is not None:
                data = tamper(record, data)
            record += data
            if alive:
                try:
                    writer.write(data)
                    await writer.drain()
                except (OSError, ssl.SSLError, RuntimeError):
                    alive = False
        if close:
            writer.close()


class ReflectingMitm(Relay):
    """A man in the middle that terminates TLS on both sides and relays the plaintext.

    The downloader hangs up once the seed's proof (relayed to it) fails its check, so the relay
    never gets a client proof to pass on. It then tries the only proof it holds, the seed's own,
    on the seed: an attacker who does not know the info hash can do no better.
    """

    async def _after_client_left(self, conn: Recording, up_writer: asyncio.StreamWriter,
                                 to_client: "asyncio.Future[Any]") -> None:
        if len(conn.s2c) == _link.SERVER_HELLO_SIZE and \
                len(conn.c2s) == _link.CLIENT_HELLO_SIZE:
            up_writer.write(bytes(conn.s2c[-_link.PROOF_SIZE:]))
            try:
                await up_writer.drain()
                await asyncio.wait_for(asyncio.shield(to_client), REFLECT_WAIT)
            except (OSError, ssl.SSLError, asyncio.TimeoutError):
                pass
        up_writer.close()


# ------------------------------------------------------------------------------------ helpers

def make_share(test: unittest.TestCase, trackers: Tuple[str, ...] = ()
               ) -> Tuple[str, str, metainfo.Metainfo, bytes]:
    """A data folder holding FILE_NAME and its .torrent: (folder, torrent path, meta, data)."""
    tmp = kit.temp_dir(test)
    data_dir = os.path.join(tmp, "data")
    path = clients.make_file(os.path.join(data_dir, FILE_NAME), FILE_SIZE, seed=77)
    torrent = os.path.join(tmp, "share.torrent")
    meta = kit.write_torrent(path, torrent, trackers, PIECE_LENGTH)
    with open(path, "rb") as f:
        data = f.read()
    return data_dir, torrent, meta, data


def start_node(engine: kit.Engine, meta: metainfo.Metainfo, folder: str, encryption: str, *,
               readonly: bool = False, peers: Tuple[Tuple[str, int], ...] = ()) -> Torrent:
    """A session with one torrent, on the engine's loop, with the module's STA_HOME."""
    async def start() -> Torrent:
        session = Session(port=0, host="127.0.0.1", encryption=encryption,
                          state_dir=NODE_HOME)
        await session.start()
        engine.sessions.append(session)
        torrent = Torrent(session, meta, FileStorage(meta.info, folder, readonly=readonly))
        await session.add(torrent)
        torrent.add_peers(list(peers), "test")
        return torrent
    return engine.run(start())


def log_lines_about(engine: kit.Engine, port: int, text: str) -> List[str]:
    """Engine log lines about the peer at 127.0.0.1:port that contain `text`."""
    return [line for line in engine.log.matching(text) if "127.0.0.1:%d " % port in line]


def wait_for_log(engine: kit.Engine, port: int, text: str, timeout: float = WAIT) -> str:
    kit.wait_for(lambda: bool(log_lines_about(engine, port, text)),
                 "a log line about 127.0.0.1:%d containing %r\nlog:\n%s"
                 % (port, text, engine.log.tail()), timeout)
    return log_lines_about(engine, port, text)[0]


# ------------------------------------------------------------------------------ on the wire

class RelayTests(unittest.TestCase):
    """Two STA nodes in this process; the downloader knows the seed only as a relay."""

    def setUp(self) -> None:
        self.data_dir, _, self.meta, self.data = make_share(self)
        self.out = os.path.join(kit.temp_dir(self), "out")
        self.engine = kit.Engine(self)

    def transfer_through(self, relay_factory: Callable[[int], Relay], encryption: str
                         ) -> Tuple[Relay, Torrent, Torrent]:
        seed = start_node(self.engine, self.meta, self.data_dir, encryption, readonly=True)
        relay = relay_factory(seed.host.listen_port)
        down = start_node(self.engine, self.meta, self.out, encryption,
                          peers=(("127.0.0.1", relay.port),))
        return relay, seed, down

    def recorded_transfer(self, encryption: str) -> List[Tuple[bytes, bytes]]:
        relay, _, down = self.transfer_through(lambda port: Relay(self, port), encryption)
        self.engine.wait_done([down])
        self.assertEqual(kit.read_file(os.path.join(self.out, FILE_NAME)), self.data)
        streams = relay.snapshot()
        self.assertTrue(streams, "nothing went through the relay")
        self.assertGreaterEqual(sum(len(s2c) for _, s2c in streams), FILE_SIZE,
                                "the file did not come through the relay")
        return streams

    def assertSeen(self, streams: List[Tuple[bytes, bytes]], needle: bytes, seen: bool,
                   what: str) -> None:
        found = any(needle in stream for pair in streams for stream in pair)
        self.assertEqual(found, seen, "%s %s in the relayed bytes"
                         % (what, "not found" if seen else "found"))

    def test_eavesdropper_sees_neither_file_data_nor_info_hash_with_encryption_on(self):
        streams = self.recorded_transfer("prefer")

        for c2s, s2c in streams:
            self.assertEqual((c2s[:1], s2c[:1]), (bytes((TLS_RECORD,)), bytes((TLS_RECORD,))),
                             "a connection through the relay was not TLS")
        run = self.data[RUN_OFFSET:RUN_OFFSET + RUN_SIZE]
        info_hash = self.meta.info_hash
        self.assertSeen(streams, run, False, "a 64-byte run of the file")
        self.assertSeen(streams, info_hash, False, "the info hash")
        self.assertSeen(streams, info_hash.hex().encode(), False, "the info hash in hex")
        self.assertSeen(streams, info_hash.hex().upper().encode(), False,
                        "the info hash in upper-case hex")
        self.assertSeen(streams, _link.torrent_id(info_hash), False, "the torrent id")

    def test_eavesdropper_sees_file_data_and_info_hash_with_encryption_off(self):
        # The same check on a plain transfer: it does find what the encrypted one hides.
        streams = self.recorded_transfer("off")

        self.assertEqual(streams[0][0][:1], bytes((BT_HANDSHAKE,)))
        self.assertSeen(streams, self.data[RUN_OFFSET:RUN_OFFSET + RUN_SIZE], True,
                        "a 64-byte run of the file")
        self.assertSeen(streams, self.meta.info_hash, True, "the info hash")

    def test_tampered_ciphertext_is_caught_by_tls_before_any_piece_check(self):
        relay, seed, down = self.transfer_through(
            lambda port: Relay(self, port, tamper_at=TAMPER_AT), "prefer")

        rejected = wait_for_log(self.engine, relay.port, "TLS record rejected")
        # Only the first connection was tampered with: the next one, dialled after the
        # reconnect backoff, is an honest path and finishes the file.
        self.engine.wait_done([down])

        self.assertTrue(relay.tampered)
        self.assertIn("encrypted link failed", rejected)
        self.assertEqual(kit.read_file(os.path.join(self.out, FILE_NAME)), self.data)
        # The flipped byte never reached the BitTorrent layer: no piece failed its hash check
        # and no block was ever blamed on a peer.
        self.assertEqual(self.engine.log.matching("corrupt"), [], self.engine.log.tail())
        self.assertEqual(self.engine.log.matching("hash check"), [], self.engine.log.tail())
        # The link was never downgraded: every connection through the relay was TLS.
        self.assertEqual(self.engine.log.matching("retrying in plain"), [])
        for c2s, _ in relay.snapshot():
            self.assertEqual(c2s[:1], bytes((TLS_RECORD,)))
        self.assertGreaterEqual(len(relay.connections), 2)

    def test_tampered_plain_stream_reaches_the_piece_check(self):
        # The control for the test above: without TLS the same relay's flipped byte is caught
        # only by the SHA-1 piece check, which the test above sees no trace of.
        run = self.data[RUN_OFFSET:RUN_OFFSET + RUN_SIZE]
        relay, _, down = self.transfer_through(
            lambda port: Relay(self, port, tamper_at=run), "off")

        self.engine.wait_done([down])

        self.assertTrue(relay.tampered)
        self.assertTrue(self.engine.log.matching("failed the hash check"), self.engine.log.tail())
        self.assertEqual(kit.read_file(os.path.join(self.out, FILE_NAME)), self.data)

    def mitm_is_detected(self, identity: Tuple[str, str]) -> None:
        relay, seed, down = self.transfer_through(
            lambda port: ReflectingMitm(self, port, mitm=identity), "prefer")

        # The downloader checks the seed's proof first: it was made for another TLS session.
        at_downloader = wait_for_log(self.engine, relay.port, "proof mismatch")
        kit.wait_for(lambda: bool(relay.connections), "the MITM to reach the seed")
        # The seed checks the proof the MITM tried on it.
        at_seed = wait_for_log(self.engine, relay.connections[0].upstream_port,
                               "proof mismatch")

        self.assertIn("man in the middle", at_downloader)
        self.assertIn("man in the middle", at_seed)
        streams = relay.snapshot()
        for c2s, s2c in streams:  # what the MITM decrypted: the proof exchange, nothing more
            self.assertEqual(len(c2s), _link.CLIENT_HELLO_SIZE)
            self.assertLessEqual(len(s2c), _link.SERVER_HELLO_SIZE)
            for stream in (c2s, s2c):
                self.assertNotIn(b"\x13BitTorrent protocol", stream)
                self.assertNotIn(self.meta.info_hash, stream)
        self.assertEqual(self.engine.call(lambda: (down.downloaded, seed.uploaded,
                                                   down.picker.have.count)), (0, 0, 0))
        self.assertEqual(self.engine.log.matching("retrying in plain"), [],
                         "a failed proof must never be retried in plain BitTorrent")

    def test_man_in_the_middle_with_its_own_certificate_is_detected_by_both_nodes(self):
        self.mitm_is_detected(tls.ensure_node_identity(OTHER_HOME))

    def test_man_in_the_middle_with_the_seeds_stolen_key_is_detected_by_tls_unique(self):
        # Same certificate on both of the MITM's TLS sessions as the seed's own, so the
        # certificate fingerprint in the proof matches; only tls-unique tells them apart.
        self.mitm_is_detected(tls.ensure_node_identity(NODE_HOME))


# ------------------------------------------------------------------- policies, as a user runs

class ProcessTestCase(unittest.TestCase):
    def setUp(self) -> None:
        patcher = mock.patch.dict(os.environ, {"STA_HOME": NODE_HOME})
        patcher.start()
        self.addCleanup(patcher.stop)
        self.data_dir, self.torrent, self.meta, self.data = make_share(self)
        self.out = os.path.join(kit.temp_dir(self), "out")

    def seed(self, *args: str) -> Tuple[kit.StaProcess, int]:
        proc = kit.StaProcess(self, "seed", self.torrent, "--data", self.data_dir, "--port", "0",
                              "--log-level", "info", *args)
        port = proc.listen_port()
        proc.wait_for(r"^Seeding %s" % re.escape(FILE_NAME))
        return proc, port

    def download(self, *args: str, out: Optional[str] = None) -> kit.StaProcess:
        return kit.StaProcess(self, "download", self.torrent, "-o", out or self.out,
                              "--port", "0", "--log-level", "info", *args)

    def assertRefused(self, proc: kit.StaProcess, timeout: float) -> None:
        """Gave up after --timeout with one line saying so; not a byte of the file arrived."""
        status = proc.wait_exit(timeout + WAIT)
        self.assertEqual(status, 1, proc.describe())
        self.assertNotIn("Traceback", proc.output)
        self.assertEqual(len([l for l in proc.all_lines if l.startswith("timed out after")]), 1,
                         proc.describe())
        self.assertRegex(proc.output, r"downloaded 0 B", proc.describe())
        self.assertEqual(kit.read_file(os.path.join(self.out, FILE_NAME)).strip(b"\0"), b"")


class PolicyTests(ProcessTestCase):
    def test_prefer_downloader_falls_back_to_plain_with_an_off_seed(self):
        seed, port = self.seed("--encryption", "off")
        down = self.download("--peer", "127.0.0.1:%d" % port, "--encryption", "prefer",
                             "--timeout", str(WAIT))

        status = down.wait_exit(WAIT + 15)

        self.assertEqual(status, 0, down.describe())
        self.assertEqual(kit.read_file(os.path.join(self.out, FILE_NAME)), self.data)
        self.assertRegex(down.output, r"127\.0\.0\.1:%d closed: encrypted link failed: .*; "
                                      r"retrying in plain BitTorrent" % port)
        seed.wait_for(r"refused a TLS peer: encryption is off")
        self.assertNotIn("Traceback", down.output + seed.output)

    def test_require_downloader_refuses_an_off_seed_and_says_why(self):
        seed, port = self.seed("--encryption", "off")
        down = self.download("--peer", "127.0.0.1:%d" % port, "--encryption", "require",
                             "--timeout", str(REQUIRE_TIMEOUT))

        down.wait_for(r"127\.0\.0\.1:%d closed: encrypted link failed" % port)
        down.wait_for(r"not connecting to 127\.0\.0\.1:%d: it speaks only plain BitTorrent and "
                      r"encryption is required" % port)
        self.assertRefused(down, REQUIRE_TIMEOUT)
        self.assertNotIn("retrying in plain", down.output)
        self.assertIn("refused a TLS peer: encryption is off", seed.output)

    def test_require_seed_refuses_an_off_downloader(self):
        seed, port = self.seed("--encryption", "require")
        down = self.download("--peer", "127.0.0.1:%d" % port, "--encryption", "off",
                             "--timeout", str(REFUSED_TIMEOUT))

        seed.wait_for(r"refused a plain BitTorrent peer: encryption is required")
        self.assertRefused(down, REFUSED_TIMEOUT)
        self.assertNotIn("Traceback", seed.output)


# ----------------------------------------------------------------------------- https tracker

class HttpsTrackerTests(ProcessTestCase):
    def setUp(self) -> None:
        super().setUp()
        tracker_home = kit.temp_dir(self)  # a fresh STA_HOME: the tracker makes its own key
        with mock.patch.dict(os.environ, {"STA_HOME": tracker_home}):
            self.tracker = kit.StaProcess(self, "tracker", "--tls", "--host", "127.0.0.1",
                                          "--port", "0", "--db",
                                          os.path.join(tracker_home, "tracker.db"))
        self.pin = self.tracker.wait_for(r"--tracker-pin ([0-9a-f]{64})\b").group(1)
        self.announce = self.tracker.wait_for(r"Announce URL: (https://127\.0\.0\.1:\d+/\S+)"
                                              ).group(1)
        self.meta = kit.write_torrent(os.path.join(self.data_dir, FILE_NAME), self.torrent,
                                      [self.announce], PIECE_LENGTH)

    def test_nodes_find_each_other_through_an_https_tracker_pinned_by_fingerprint(self):
        # `require` on both: an http tracker would be skipped, so the swarm can only come from
        # the https one; neither node is told of the other.
        seed, port = self.seed("--encryption", "require", "--tracker-pin", self.pin)
        down = self.download("--encryption", "require", "--tracker-pin", self.pin,
                             "--timeout", str(WAIT))

        status = down.wait_exit(WAIT + 15)

        self.assertEqual(status, 0, down.describe() + "\n" + seed.describe())
        self.assertEqual(kit.read_file(os.path.join(self.out, FILE_NAME)), self.data)
        self.assertRegex(down.output, r"from 127\.0\.0\.1:%d: " % port)
        self.assertRegex(down.output, r"tracker https://127\.0\.0\.1:\d+/announce gave 1 peer")
        self.assertNotIn("not using", down.output + seed.output)
        self.assertNotIn("Traceback", down.output + seed.output)

    def test_announce_without_the_pin_or_with_a_wrong_one_fails_on_the_certificate(self):
        wrong = ("0" if self.pin[0] != "0" else "1") + self.pin[1:]
        out_wrong = os.path.join(kit.temp_dir(self), "out")
        no_pin = self.download("--timeout", str(REFUSED_TIMEOUT))
        wrong_pin = self.download("--tracker-pin", wrong, "--timeout", str(REFUSED_TIMEOUT),
                                  out=out_wrong)

        no_pin.wait_for(r"tracker https://127\.0\.0\.1:\d+/announce.*"
                        r"certificate not trusted")
        wrong_pin.wait_for(r"tracker https://127\.0\.0\.1:\d+/announce.*"
                           r"certificate fingerprint [0-9a-f]{64} does not match the pinned %s"
                           % wrong)
        for proc in (no_pin, wrong_pin):
            self.assertEqual(proc.wait_exit(REFUSED_TIMEOUT + WAIT), 1, proc.describe())
            self.assertNotIn("Traceback", proc.output)
            self.assertNotIn("gave", proc.output)


if __name__ == "__main__":
    unittest.main()
