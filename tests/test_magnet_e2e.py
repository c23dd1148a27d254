"""Magnet links end to end: `sta.py seed` -> `sta.py download MAGNET` and `sta.py info --fetch`.

Each way a magnet can lead to the metadata is tried alone: a peer address (`x.pe`), a tracker
(`tr`), a hosted .torrent (`xs`); then the magnet `create --upload` prints (`tr` and `xs`). Then
what surrounds the fetch: a peer that serves a corrupt metadata piece, the fetched .torrent kept
beside the resume state (a restart with nobody to ask still starts), `info --fetch` printing and
saving, the one-line error when nothing answers, and one `download` taking a .torrent and a
magnet together.

The magnets are written by hand so each holds exactly the parameters the test names. Every STA
process runs with STA_HOME in a temporary folder (the node's TLS key lives there).
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import socket
import threading
import time
import unittest
from typing import Any, Sequence, Tuple
from unittest import mock

from sta import magnet as magnet_mod
from sta import metainfo, ut_metadata, wire
from tests import enginekit as kit

# The torrents here: 1-2 MiB of random bytes, in 64 KiB pieces, so a transfer has a few dozen
# pieces and takes about a second on loopback.
FILE_SIZE = 2 * 1024 * 1024 + 12345   # odd: the last piece is short
PIECE = 64 * 1024
# Deadline for a download that should succeed; generous for a loaded machine, the transfer itself
# takes a second or two.
DOWNLOAD_TIMEOUT = 30.0
# --timeout of the commands that must give up: long enough to try every source once, short
# enough to keep the file quick.
GIVE_UP_AFTER = 3
# The download by xs= alone gets less: it has nothing else to wait for once the tracker answers,
# and a failure should not take half the file's time budget.
XS_DOWNLOAD_TIMEOUT = 12.0
# A peer id of the lying test peer (Azureus style, a client code no real client uses).
LIAR_ID = b"-XX0001-metaliar0001"
# How long the gated proxy holds a connection before giving up on the gate: the test fails
# afterwards anyway if the liar was never asked.
GATE_TIMEOUT = 20.0


def hand_magnet(info_hash: bytes, **params: Any) -> str:
    """``magnet:?xt=urn:btih:HEX`` plus exactly the given parameters (``x_pe`` for x.pe)."""
    parts = ["xt=urn:btih:" + info_hash.hex()]
    for key, values in params.items():
        for value in values if isinstance(values, (list, tuple)) else [values]:
            parts.append("%s=%s" % (key.replace("_", "."), value))
    return "magnet:?" + "&".join(parts)


def dead_port() -> int:
    """A port on 127.0.0.1 nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MagnetCase(unittest.TestCase):
    """Temporary STA_HOME for every STA process, and helpers for seeds and torrents."""

    def setUp(self) -> None:
        self.tmp = kit.temp_dir(self)
        home = os.path.join(self.tmp, "home")
        os.makedirs(home)
        patcher = mock.patch.dict(os.environ, {"STA_HOME": home})
        patcher.start()
        self.addCleanup(patcher.stop)

    def make_torrent(self, name: str, trackers: Sequence[str] = (), seed: int = 0,
                     size: int = FILE_SIZE) -> Tuple[str, str, metainfo.Metainfo]:
        """A file `name` in its own data folder and its .torrent: (data dir, .torrent, meta)."""
        data = os.path.join(self.tmp, "data-" + name)
        kit.make_tree(data, {name: size}, seed=seed)
        torrent = os.path.join(self.tmp, name + ".torrent")
        meta = kit.write_torrent(os.path.join(data, name), torrent, trackers=trackers,
                                 piece_length=PIECE)
        return data, torrent, meta

    def start_seed(self, data: str, *torrents: str) -> Tuple[kit.StaProcess, int]:
        seed = kit.StaProcess(self, "seed", *torrents, "--data", data, "--port", "0")
        port = seed.listen_port()
        for _ in torrents:
            seed.wait_for(r"^Seeding ")
        return seed, port

    def download(self, *args: str, timeout: float = DOWNLOAD_TIMEOUT) -> kit.StaProcess:
        """`sta.py download ARGS --port 0 --timeout T`, waited for; returns the process."""
        proc = kit.StaProcess(self, "download", *args, "--port", "0",
                              "--timeout", "%g" % timeout)
        proc.wait_exit(timeout + 15)
        return proc

    def assert_downloaded(self, proc: kit.StaProcess, out: str, data: str, name: str) -> None:
        self.assertEqual(proc.proc.returncode, 0, proc.describe())
        self.assertNotIn("Traceback", proc.output)
        path = os.path.join(out, name)
        self.assertTrue(os.path.isfile(path), "%s missing\n%s" % (path, proc.describe()))
        with open(path, "rb") as got, open(os.path.join(data, name), "rb") as want:
            self.assertTrue(got.read() == want.read(), "%s differs from the seed's copy" % name)

    def assert_saved_torrent(self, out: str, meta: metainfo.Metainfo) -> str:
        """The fetched .torrent in OUT/.sta: a normal .torrent with the same info hash."""
        state = os.path.join(out, ".sta")
        saved = os.path.join(state, meta.info_hash.hex() + ".torrent")
        self.assertTrue(os.path.isfile(saved), "no %s; .sta holds %s" % (
            saved, sorted(os.listdir(state)) if os.path.isdir(state) else "nothing"))
        parsed = metainfo.load(saved)
        self.assertEqual(parsed.info_hash, meta.info_hash)
        self.assertEqual(parsed.info.raw, meta.info.raw)
        return saved


# ------------------------------------------------------------------------------------------------


class MagnetSourceTests(MagnetCase):
    """One way to the metadata at a time: x.pe, tr, xs."""

    def create_uploaded(self, stem: str, seed: int) -> Tuple[Any, str, str, str, str]:
        """A tracker, and `create --upload` of a file STEM.bin in its own data folder:
        (tracker server, announce URL, data dir, .torrent, the magnet the command printed)."""
        server, announce = kit.start_tracker(self, self.tmp)
        data = os.path.join(self.tmp, "data-" + stem)
        kit.make_tree(data, {stem + ".bin": FILE_SIZE}, seed=seed)
        torrent = os.path.join(self.tmp, stem + ".torrent")
        created = kit.run_sta("create", os.path.join(data, stem + ".bin"), "-t", announce,
                              "-o", torrent, "--piece-length", "64K", "--upload")
        self.assertEqual(created.returncode, 0, created.stderr.decode(errors="replace"))
        printed = re.search(r"^magnet:\s+(\S+)", created.stdout.decode(), re.M)
        self.assertIsNotNone(printed, created.stdout.decode())
        return server, announce, data, torrent, printed.group(1)

    def test_download_by_magnet_with_only_a_peer_address(self):
        data, torrent, meta = self.make_torrent("pe.bin", seed=1)
        _, port = self.start_seed(data, torrent)
        link = hand_magnet(meta.info_hash, x_pe="127.0.0.1:%d" % port)
        self.assertEqual(magnet_mod.parse(link).trackers, ())
        out = os.path.join(self.tmp, "out")

        down = self.download(link, "-o", out)

        self.assert_downloaded(down, out, data, "pe.bin")
        self.assert_saved_torrent(out, meta)

    def test_download_by_magnet_with_only_a_tracker(self):
        server, announce = kit.start_tracker(self, self.tmp)
        data, torrent, meta = self.make_torrent("tr.bin", trackers=[announce], seed=2)
        self.start_seed(data, torrent)
        kit.wait_for_swarm(server, meta.info_hash, seeders=1)
        link = hand_magnet(meta.info_hash, tr=announce)
        out = os.path.join(self.tmp, "out")

        down = self.download(link, "-o", out)

        self.assert_downloaded(down, out, data, "tr.bin")
        self.assert_saved_torrent(out, meta)

    def test_download_by_magnet_with_only_a_hosted_torrent(self):
        # `create --upload` puts the .torrent on the tracker and prints a magnet with xs=; the
        # downloader gets only that xs=: the metadata comes from the tracker's copy and the peers
        # from the tracker that copy names.
        server, _, data, torrent, printed = self.create_uploaded("xs", seed=3)
        sources = magnet_mod.parse(printed).sources
        self.assertEqual(len(sources), 1, printed)
        meta = metainfo.load(torrent)
        self.start_seed(data, torrent)
        kit.wait_for_swarm(server, meta.info_hash, seeders=1)
        link = hand_magnet(meta.info_hash, xs=sources[0])
        out = os.path.join(self.tmp, "out")
        log = os.path.join(self.tmp, "down.log")

        down = self.download(link, "-o", out, "--log-level", "info", "--log-file", log,
                             timeout=XS_DOWNLOAD_TIMEOUT)

        with open(log, encoding="utf-8") as f:
            self.assertIn("metadata from %s" % sources[0], f.read(), down.describe())
        self.assert_saved_torrent(out, meta)
        # The metadata alone is not the download: the peers come from the tracker the hosted
        # .torrent names, since the magnet names none.
        self.assert_downloaded(down, out, data, "xs.bin")

    def test_download_by_the_magnet_create_upload_prints(self):
        # tr= and xs= together: the hosted copy usually arrives while the connection to the seed
        # the tracker named is still being set up, and that connection must still serve the
        # download once the torrent takes over from the magnet.
        server, announce, data, torrent, link = self.create_uploaded("up", seed=9)
        parsed = magnet_mod.parse(link)
        self.assertEqual((parsed.trackers, len(parsed.sources)), ((announce,), 1), link)
        meta = metainfo.load(torrent)
        self.start_seed(data, torrent)
        kit.wait_for_swarm(server, meta.info_hash, seeders=1)
        out = os.path.join(self.tmp, "out")

        down = self.download(link, "-o", out, timeout=XS_DOWNLOAD_TIMEOUT)

        self.assert_downloaded(down, out, data, "up.bin")
        self.assert_saved_torrent(out, meta)


# ------------------------------------------------------------------------------------------------


class CorruptMetadataPeer(kit.LoopbackServer):
    """A peer on its own loopback address (liars are banned with their whole host) that offers
    ut_metadata with the right metadata_size and answers every
    request with bytes of the right length that are not the info dictionary's.

    It speaks only plain BitTorrent: a TLS ClientHello fails its handshake check and the
    connection is closed (STA then dials again in plain). ``lied`` is set once a wrong piece
    went out; ``closed_after_lying`` counts connections the other side closed after that.
    """

    def __init__(self, test: Any, info: metainfo.Info) -> None:
        self.info_raw = info.raw
        self.info_hash = info.info_hash
        self.handshakes = 0
        self.pieces_sent = 0
        self.closed_after_lying = 0
        self.lied = threading.Event()
        super().__init__(test, host=kit.liar_host(test))

    def _wrong_piece(self, index: int) -> bytes:
        piece = self.info_raw[index * ut_metadata.METADATA_PIECE_SIZE:
                              (index + 1) * ut_metadata.METADATA_PIECE_SIZE]
        return bytes(b ^ 0x5A for b in piece)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(kit.SOCKET_POLL)
        reader = wire.MessageReader(expect_handshake=True)
        their_id = 0
        lied_here = False
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(kit.RECV_SIZE)
                except socket.timeout:
                    continue
                if not data:
                    break
                out = []
                for event in reader.feed(data):
                    if isinstance(event, wire.Handshake):
                        self.handshakes += 1
                        out.append(wire.handshake(self.info_hash, LIAR_ID, extensions=True))
                        out.append(wire.extended_handshake(
                            {"ut_metadata": 3}, metadata_size=len(self.info_raw), v="liar"))
                    elif isinstance(event, wire.ExtendedHandshake):
                        their_id = event.m.get("ut_metadata", 0)
                    elif isinstance(event, wire.Extended) and event.ext_id == 3 and their_id:
                        msg = ut_metadata.decode_metadata(event.payload)
                        if msg.msg_type == ut_metadata.METADATA_REQUEST:
                            out.append(wire.extended(their_id, ut_metadata.metadata_data(
                                msg.piece, len(self.info_raw), self._wrong_piece(msg.piece))))
                            self.pieces_sent += 1
                            lied_here = True
                if out:
                    conn.sendall(b"".join(out))
                    if lied_here:
                        self.lied.set()
        except (OSError, wire.WireError):
            return
        finally:
            if lied_here and not self._stop.is_set():
                self.closed_after_lying += 1
            conn.close()


class GatedProxy(kit.LoopbackServer):
    """Forwards connections on 127.0.0.1 to `upstream_port`, but only once `gate` is set.

    It puts an honest seed in the swarm from the start while making sure its answers arrive after
    the liar's: without it the honest seed may deliver the whole (one-piece) dictionary before the
    liar is asked anything, and the test would prove nothing.
    """

    def __init__(self, test: Any, upstream_port: int, gate: threading.Event) -> None:
        self.upstream_port = upstream_port
        self.gate = gate
        self.forwarded = 0
        super().__init__(test)

    def _serve(self, client: socket.socket) -> None:
        """Forward one client connection once the gate opens."""
        deadline = time.monotonic() + GATE_TIMEOUT
        while not self.gate.wait(kit.POLL):
            if self._stop.is_set() or time.monotonic() > deadline:
                client.close()
                return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), kit.WAIT)
        except OSError:
            client.close()
            return
        self.forwarded += 1
        pair = {client: upstream, upstream: client}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select(list(pair), [], [], kit.SOCKET_POLL)
                for sock in ready:
                    data = sock.recv(kit.RECV_SIZE)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()


class CorruptMetadataTests(MagnetCase):

    def test_peer_serving_corrupt_metadata_is_dropped_and_the_download_completes(self):
        data, torrent, meta = self.make_torrent("liar.bin", seed=4)
        _, seed_port = self.start_seed(data, torrent)
        liar = CorruptMetadataPeer(self, meta.info)
        honest = GatedProxy(self, seed_port, liar.lied)
        link = hand_magnet(meta.info_hash, x_pe=["%s:%d" % (liar.host, liar.port),
                                                 "127.0.0.1:%d" % honest.port])
        out = os.path.join(self.tmp, "out")
        log = os.path.join(self.tmp, "down.log")

        down = self.download(link, "-o", out, "--log-level", "info", "--log-file", log)

        self.assert_downloaded(down, out, data, "liar.bin")
        self.assert_saved_torrent(out, meta)
        self.assertTrue(liar.lied.is_set(), "the liar was never asked for metadata")
        self.assertGreaterEqual(honest.forwarded, 1)
        with open(log, encoding="utf-8") as f:
            text = f.read()
        dropped = [line for line in text.splitlines()
                   if "dropping <peer %s:%d>" % (liar.host, liar.port) in line]
        self.assertTrue(dropped, "the liar was not dropped; log:\n" + text[-4000:])
        self.assertIn("metadata", dropped[0])
        kit.wait_for(lambda: liar.closed_after_lying >= 1, "the downloader hangs up on the liar",
                     timeout=5)
        self.assertEqual(liar.handshakes, 1, "a banned liar must not be dialled again")


# ------------------------------------------------------------------------------------------------


class SavedMetainfoTests(MagnetCase):

    def test_fetched_torrent_is_kept_beside_the_resume_state_and_a_restart_needs_no_peer(self):
        data, torrent, meta = self.make_torrent("keep.bin", seed=5)
        seed, port = self.start_seed(data, torrent)
        out = os.path.join(self.tmp, "out")
        down = self.download(hand_magnet(meta.info_hash, x_pe="127.0.0.1:%d" % port), "-o", out)
        self.assert_downloaded(down, out, data, "keep.bin")
        saved = self.assert_saved_torrent(out, meta)
        resume = os.path.join(out, ".sta", meta.info_hash.hex() + ".resume")
        self.assertTrue(os.path.isfile(resume), "no resume state beside %s" % saved)
        seed.stop()

        # Again, with a peer that is not there: only the saved .torrent can tell what to check.
        again = self.download(hand_magnet(meta.info_hash, x_pe="127.0.0.1:%d" % dead_port()),
                              "-o", out, timeout=15)

        self.assertEqual(again.proc.returncode, 0, again.describe())
        self.assertNotIn("Traceback", again.output)
        self.assertNotIn("fetching the metadata", again.output)
        self.assertRegex(again.output, r"keep\.bin: already complete in ")


# ------------------------------------------------------------------------------------------------


class InfoFetchTests(MagnetCase):

    def test_info_fetch_prints_like_info_on_a_file_and_saves_with_o(self):
        data, torrent, meta = self.make_torrent("info.bin", seed=6)
        _, port = self.start_seed(data, torrent)
        saved = os.path.join(self.tmp, "fetched.torrent")
        link = hand_magnet(meta.info_hash)

        fetched = kit.run_sta("info", link, "--fetch", "--peer", "127.0.0.1:%d" % port,
                              "-o", saved, "--timeout", "20", timeout=40)

        stdout = fetched.stdout.decode()
        self.assertEqual(fetched.returncode, 0, fetched.stderr.decode(errors="replace"))
        self.assertNotIn("Traceback", fetched.stderr.decode(errors="replace"))
        self.assertTrue(os.path.isfile(saved))
        self.assertEqual(metainfo.load(saved).info.raw, meta.info.raw)
        # Exactly what `info` prints for the saved file, plus the line saying where it went.
        on_file = kit.run_sta("info", saved)
        self.assertEqual(on_file.returncode, 0)
        self.assertEqual(stdout, on_file.stdout.decode() + "saved to %s\n" % saved)
        # And the lines about the content are those of the seed's own .torrent.
        original = kit.run_sta("info", torrent).stdout.decode()
        for label in ("name", "info hash", "size", "pieces", "private"):
            line = re.search(r"^%s:.*$" % label, original, re.M).group(0)
            self.assertIn(line, stdout.splitlines())
        self.assertIn("files (1):", stdout)


class NoMetadataTests(MagnetCase):

    def dead_sources(self) -> Tuple[str, str, str, str]:
        tracker = "http://127.0.0.1:%d/announce" % dead_port()
        source = "http://127.0.0.1:%d/torrents/x.torrent" % dead_port()
        peer = "127.0.0.1:%d" % dead_port()
        info_hash = hashlib.sha1(b"no such torrent").digest()
        return hand_magnet(info_hash, tr=tracker, xs=source, x_pe=peer), tracker, source, peer

    def assert_names_sources(self, line: str, *sources: str) -> None:
        for source in sources:
            self.assertIn(source, line)

    def test_info_fetch_with_no_metadata_ends_with_one_line_naming_the_sources(self):
        link, tracker, source, peer = self.dead_sources()

        done = kit.run_sta("info", link, "--fetch", "--timeout", str(GIVE_UP_AFTER), timeout=40)

        stderr = done.stderr.decode(errors="replace")
        self.assertEqual(done.returncode, 1, stderr)
        self.assertEqual(done.stdout, b"")
        self.assertNotIn("Traceback", stderr)
        # Warnings logged on the way may come first (the default log level shows them); the
        # command ends with one error line that names every source.
        lines = stderr.splitlines()
        errors = [line for line in lines if line.startswith("sta: error:")]
        self.assertEqual(errors, lines[-1:], stderr)
        self.assertTrue(lines[-1].startswith("sta: error: no metadata within %d s; tried "
                                             % GIVE_UP_AFTER), lines[-1])
        self.assert_names_sources(lines[-1], tracker, source, peer)

    def test_download_with_no_metadata_ends_with_one_line_naming_the_sources(self):
        link, tracker, source, peer = self.dead_sources()
        out = os.path.join(self.tmp, "out")

        down = self.download(link, "-o", out, timeout=GIVE_UP_AFTER)

        self.assertEqual(down.proc.returncode, 1, down.describe())
        self.assertNotIn("Traceback", down.output)
        named = [line for line in down.all_lines if "no metadata within" in line]
        self.assertEqual(len(named), 1, down.describe())
        self.assert_names_sources(named[0], tracker, source, peer)


class MixedSourcesTests(MagnetCase):

    def test_one_download_takes_a_torrent_file_and_a_magnet(self):
        data, first, first_meta = self.make_torrent("first.bin", seed=7)
        kit.make_tree(data, {"second.bin": FILE_SIZE // 2}, seed=8)
        second = os.path.join(self.tmp, "second.torrent")
        second_meta = kit.write_torrent(os.path.join(data, "second.bin"), second,
                                        piece_length=PIECE)
        _, port = self.start_seed(data, first, second)
        out = os.path.join(self.tmp, "out")
        peer = "127.0.0.1:%d" % port

        down = self.download(first, hand_magnet(second_meta.info_hash, x_pe=peer),
                             "-o", out, "--peer", peer)

        self.assert_downloaded(down, out, data, "first.bin")
        self.assert_downloaded(down, out, data, "second.bin")
        self.assert_saved_torrent(out, second_meta)
        self.assertFalse(os.path.exists(os.path.join(
            out, ".sta", first_meta.info_hash.hex() + ".torrent")),
            "a .torrent given on the command line is not a fetched one")


if __name__ == "__main__":
    unittest.main()
