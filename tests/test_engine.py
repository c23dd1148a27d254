"""The peer engine end to end: real sessions and real `sta.py` processes on 127.0.0.1.

Transfers between STA nodes (multi-file, two seeds, two torrents, a swarm that trades), a lying
peer, the rules a seed applies to what it serves, and the exit codes of `seed` and `download`.
In-process tests run every session on one event loop in a background thread (enginekit.Engine)
and read the engine's own counters; process tests read what the commands print.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import unittest

from sta import smartban
from sta import wire
from tests import enginekit as kit
from tests.enginekit import WAIT

# Pieces of the small torrents: two blocks each, so block-to-piece assembly is exercised, and
# torrents of a few hundred KiB still have many pieces.
SMALL_PIECE = 32 * 1024


class StaTransferTests(unittest.TestCase):
    """`sta.py seed` and `sta.py download` processes moving real files."""

    def test_multi_file_torrent_with_nested_empty_and_small_files_arrives_byte_exact(self):
        tmp = kit.temp_dir(self)
        data = os.path.join(tmp, "data")
        sizes = {
            "tree/a/b/c/deep.bin": 200003,       # nested three folders deep
            "tree/a/empty.dat": 0,               # zero-length file
            "tree/a/tiny.txt": 1001,             # smaller than a piece
            "tree/top.bin": 150000,              # spans piece boundaries
            "tree/z/last.bin": 33333,            # odd total size: the last piece is short
        }
        kit.make_tree(data, sizes, seed=1)
        torrent = os.path.join(tmp, "tree.torrent")
        meta = kit.write_torrent(os.path.join(data, "tree"), torrent, piece_length=SMALL_PIECE)
        self.assertEqual(sum(sizes.values()) % 2, 1)
        self.assertEqual(len(meta.info.files), len(sizes))

        seed = kit.StaProcess(self, "seed", torrent, "--data", data, "--port", "0")
        port = seed.listen_port()
        seed.wait_for(r"^Seeding tree")
        out = os.path.join(tmp, "out")
        down = kit.StaProcess(self, "download", torrent, "-o", out, "--port", "0",
                              "--peer", "127.0.0.1:%d" % port, "--timeout", str(WAIT))
        status = down.wait_exit(WAIT + 15)

        self.assertEqual(status, 0, down.describe())
        self.assertNotIn("Traceback", down.output)
        self.assertEqual(kit.tree_bytes(os.path.join(out, "tree")),
                         kit.tree_bytes(os.path.join(data, "tree")))
        self.assertTrue(os.path.isfile(os.path.join(out, "tree", "a", "empty.dat")),
                        "the zero-length file must exist after the download")

    def test_one_download_command_fetches_two_torrents_from_different_seeds(self):
        tmp = kit.temp_dir(self)
        data1, data2 = os.path.join(tmp, "d1"), os.path.join(tmp, "d2")
        kit.make_tree(data1, {"first.bin": 300001}, seed=2)
        kit.make_tree(data2, {"second/x.bin": 200000, "second/y.bin": 77777}, seed=3)
        t1, t2 = os.path.join(tmp, "1.torrent"), os.path.join(tmp, "2.torrent")
        kit.write_torrent(os.path.join(data1, "first.bin"), t1, piece_length=SMALL_PIECE)
        kit.write_torrent(os.path.join(data2, "second"), t2, piece_length=SMALL_PIECE)

        seed1 = kit.StaProcess(self, "seed", t1, "--data", data1, "--port", "0")
        seed2 = kit.StaProcess(self, "seed", t2, "--data", data2, "--port", "0")
        port1, port2 = seed1.listen_port(), seed2.listen_port()
        seed1.wait_for(r"^Seeding first\.bin")
        seed2.wait_for(r"^Seeding second")
        out = os.path.join(tmp, "out")
        down = kit.StaProcess(self, "download", t1, t2, "-o", out, "--port", "0",
                              "--peer", "127.0.0.1:%d" % port1, "--peer", "127.0.0.1:%d" % port2,
                              "--timeout", str(WAIT))
        status = down.wait_exit(WAIT + 15)

        self.assertEqual(status, 0, down.describe())
        self.assertEqual(kit.tree_bytes(out), {
            "first.bin": kit.tree_bytes(data1)["first.bin"],
            "second/x.bin": kit.tree_bytes(data2)["second/x.bin"],
            "second/y.bin": kit.tree_bytes(data2)["second/y.bin"],
        })
        # Each torrent came from its own seed (the summary names the peers per torrent).
        self.assertRegex(down.output, r"first\.bin: downloaded .*\n  from 127\.0\.0\.1:%d:"
                         % port1)
        self.assertRegex(down.output, r"second: downloaded .*\n  from 127\.0\.0\.1:%d:" % port2)


class SwarmTests(unittest.TestCase):
    """Several sessions in one process: who sends what, counted by the engine itself."""

    def setUp(self):
        self.tmp = kit.temp_dir(self)
        self.engine = kit.Engine(self)

    def shared_file(self, size, piece_length, trackers=(), seed=0):
        data = os.path.join(self.tmp, "seed")
        kit.make_tree(data, {"payload.bin": size}, seed=seed)
        meta = kit.write_torrent(os.path.join(data, "payload.bin"),
                                 os.path.join(self.tmp, "payload.torrent"), trackers=trackers,
                                 piece_length=piece_length)
        with open(os.path.join(data, "payload.bin"), "rb") as f:
            return meta, data, f.read()

    def downloaded(self, folder):
        with open(os.path.join(folder, "payload.bin"), "rb") as f:
            return f.read()

    def test_two_seeds_present_from_the_start_each_send_at_least_a_quarter(self):
        size = 16 * 1024 * 1024
        meta, data, content = self.shared_file(size, 128 * 1024, seed=4)
        copy = os.path.join(self.tmp, "seed2")
        shutil.copytree(data, copy)
        seed_a = self.engine.node(meta, data, readonly=True)
        seed_b = self.engine.node(meta, copy, readonly=True)
        peers = [kit.listen_address(seed_a), kit.listen_address(seed_b)]
        out = os.path.join(self.tmp, "out")
        down = self.engine.node(meta, out, peers=peers)

        self.engine.wait_done([down])

        self.assertEqual(self.downloaded(out), content)
        contributions = self.engine.call(lambda: dict(down.contributions))
        uploads = self.engine.call(lambda: (seed_a.uploaded, seed_b.uploaded))
        for address, uploaded in zip(peers, uploads):
            self.assertGreaterEqual(
                contributions.get(address, 0), size // 4,
                "seed %s:%d contributed %d of %d bytes (contributions %s, seeds uploaded %s)"
                % (address[0], address[1], contributions.get(address, 0), size, contributions,
                   uploads))
            self.assertGreaterEqual(uploaded, size // 4)

    def four_downloaders(self, super_seed: bool, seed_number: int):
        # The downloaders start in the same loop turn; each is told of the seed and of those
        # started before it (a tracker's answer), so every pair is connected once, from the
        # start, and each downloader has the same chance to fetch from the seed or a peer.
        size = 8 * 1024 * 1024
        meta, data, content = self.shared_file(size, 64 * 1024, seed=seed_number)
        seed = self.engine.node(meta, data, readonly=True, super_seed=super_seed)
        outs = [os.path.join(self.tmp, "out%d" % i) for i in range(4)]
        downloaders = self.engine.mesh(meta, outs, peers=[kit.listen_address(seed)])

        self.engine.wait_done(downloaders, timeout=2 * WAIT)

        for out in outs:
            self.assertEqual(self.downloaded(out), content, out)
        uploaded = self.engine.call(lambda: seed.uploaded)
        traded = self.engine.call(lambda: [d.uploaded for d in downloaders])
        return size, uploaded, traded

    def test_four_downloaders_trade_pieces_among_themselves(self):
        # A plain seed on loopback has bandwidth to spare and serves everyone; still, rarest
        # first makes every downloader pass pieces on to the others.
        size, uploaded, traded = self.four_downloaders(False, 5)
        self.assertTrue(all(t > 0 for t in traded),
                        "a downloader sent the others nothing: %s" % traded)
        self.assertLess(uploaded, 4 * size, "the seed sent every downloader the whole file")

    def test_four_downloaders_of_a_super_seed_trade_so_it_uploads_less_than_twice_the_data(self):
        size, uploaded, traded = self.four_downloaders(True, 6)
        self.assertGreater(sum(traded), 0, "the downloaders sent each other nothing")
        self.assertLess(uploaded, 2 * size,
                        "the seed uploaded %.2f copies of the data; the downloaders uploaded "
                        "%s copies" % (uploaded / size, [round(t / size, 2) for t in traded]))

    def test_four_downloaders_with_a_seed_fetch_little_more_than_the_data(self):
        # Same swarm as above. Endgame duplicates and blocks that arrive after their piece is
        # done are the waste; a tenth of the file is generous (libtorrent wastes a few blocks).
        size = 8 * 1024 * 1024
        meta, data, content = self.shared_file(size, 64 * 1024, seed=11)
        seed = self.engine.node(meta, data, readonly=True)
        outs = [os.path.join(self.tmp, "out%d" % i) for i in range(4)]
        downloaders = self.engine.mesh(meta, outs, peers=[kit.listen_address(seed)])

        self.engine.wait_done(downloaders, timeout=2 * WAIT)

        received = self.engine.call(lambda: [d.downloaded for d in downloaders])
        wasted = self.engine.call(lambda: [d.wasted for d in downloaders])
        for n, out in enumerate(outs):
            self.assertEqual(self.downloaded(out), content, out)
            self.assertLess(received[n], size * 1.1,
                            "downloader %d received %.2f copies of the data (wasted %.2f)"
                            % (n, received[n] / size, wasted[n] / size))

    def test_peers_learn_of_each_other_through_peer_exchange_without_a_tracker(self):
        # The seed lacks its last piece, so nobody ever completes and every connection stays.
        # B is told only of A; A, connected to the seed, tells B of it (ut_pex), so B reaches
        # the seed too, with no tracker at all.
        meta, data, content = self.shared_file(2 * 1024 * 1024, 64 * 1024, seed=13)
        with open(os.path.join(data, "payload.bin"), "r+b") as f:
            f.seek(len(content) - 100)
            f.write(b"spoiled")
        seed = self.engine.node(meta, data, readonly=True)
        seed_address = kit.listen_address(seed)
        a = self.engine.node(meta, os.path.join(self.tmp, "a"), peers=[seed_address])
        self.engine.wait_until(lambda: len(a.peers) == 1, "A connected to the seed")
        b = self.engine.node(meta, os.path.join(self.tmp, "b"), peers=[kit.listen_address(a)])

        self.engine.wait_until(lambda: len(b.peers) == 2, "B connected to A and to the seed")

        self.assertEqual(self.engine.call(lambda: b.swarm.known[seed_address].source), "pex")

    def test_two_nodes_that_dial_each_other_at_once_still_connect(self):
        # Each is told of the other and both dial in the same tick: each side then sees two
        # connections to the same peer id and must keep the same one of them.
        meta, data, content = self.shared_file(1024 * 1024, 32 * 1024, seed=10)
        out = os.path.join(self.tmp, "out")
        seed, down = self.engine.mesh(meta, [data, out], both_ways=True)

        self.engine.wait_done([down], timeout=20)

        self.assertEqual(self.downloaded(out), content)

    def test_a_finished_download_closes_the_encrypted_link_cleanly(self):
        # Two STA nodes talk TLS. When the download completes, the downloader queues "not
        # interested" and closes the link to the seed ("both sides are seeds"): whatever it
        # still sends must go through TLS, or the seed sees a broken TLS record.
        meta, data, content = self.shared_file(512 * 1024, 32 * 1024, seed=12)
        seed = self.engine.node(meta, data, readonly=True)
        out = os.path.join(self.tmp, "out")
        down = self.engine.node(meta, out, peers=[kit.listen_address(seed)])

        self.engine.wait_done([down])
        self.engine.wait_until(lambda: not seed.peers, "the seed's connection is closed")

        self.assertEqual(self.downloaded(out), content)
        self.assertTrue(self.engine.log.matching("encrypted)"),
                        "the nodes did not use TLS:\n" + self.engine.log.tail())
        self.assertEqual(self.engine.log.matching("encrypted link failed"), [],
                         "\n" + self.engine.log.tail())

    def test_a_peer_sending_corrupt_pieces_is_banned_and_the_file_is_still_exact(self):
        # One block per piece: every piece the liar sends is wholly its own, so each one it
        # answers is a hash failure charged to it alone.
        size = 2 * 1024 * 1024 + 12345
        meta, data, content = self.shared_file(size, 16 * 1024, seed=6)
        liar = kit.LyingSeed(self, meta)
        honest = self.engine.node(meta, data, readonly=True)
        out = os.path.join(self.tmp, "out")
        liar_address = (liar.host, liar.port)
        down = self.engine.node(meta, out, peers=[liar_address])
        # The honest seed joins once the liar has answered: from then on both serve, and the
        # honest one cannot finish the whole download before the liar's first answer arrives.
        kit.wait_for(lambda: liar.blocks_sent > 0, "the liar is asked for data")
        self.engine.add_peers(down, [kit.listen_address(honest)])

        self.engine.wait_done([down])

        self.assertEqual(self.downloaded(out), content)
        self.engine.wait_until(lambda: down.swarm.known[liar_address].banned,
                               "the lying peer is banned", timeout=10)
        failures = self.engine.call(lambda: down.strikes(liar_address))
        self.assertGreaterEqual(failures, smartban.MAX_HASH_FAILURES)
        self.assertEqual(liar.handshakes, 1, "a banned peer must not be connected again")
        honest_record = self.engine.call(lambda: down.swarm.known[kit.listen_address(honest)])
        self.assertFalse(honest_record.banned)
        self.assertEqual(self.engine.call(lambda: down.strikes(kit.listen_address(honest))), 0)

    def test_pieces_mixing_good_and_corrupt_blocks_do_not_ban_the_honest_seed(self):
        # Four blocks per piece. The liar sends a wrong first block of each piece it is asked
        # for, then chokes: the other three blocks come from the honest seed, and each of those
        # pieces fails its hash with two contributors. The honest seed must not be banned for
        # them: it is the only source of good data, so banning it stalls the download.
        size = 2 * 1024 * 1024
        meta, data, content = self.shared_file(size, 64 * 1024, seed=7)
        liar = kit.LyingSeed(self, meta, first_blocks_only=True)
        honest = self.engine.node(meta, data, readonly=True)
        honest_address = kit.listen_address(honest)
        out = os.path.join(self.tmp, "out")
        down = self.engine.node(meta, out, peers=[(liar.host, liar.port)])
        kit.wait_for(lambda: liar.blocks_sent > 0, "the liar is asked for data")
        self.engine.add_peers(down, [honest_address])

        def done_or_honest_banned():
            record = down.swarm.known.get(honest_address)
            return down.done.is_set() or (record is not None and record.banned)
        self.engine.wait_until(done_or_honest_banned, "download complete")

        honest_record = self.engine.call(lambda: down.swarm.known[honest_address])
        self.assertFalse(honest_record.banned,
                         "honest seed banned after %d failed pieces it shared with the liar:\n%s"
                         % (self.engine.call(lambda: down.strikes(honest_address)),
                            self.engine.log.tail()))
        self.engine.wait_done([down])
        self.assertEqual(self.downloaded(out), content)
        self.engine.wait_until(lambda: down.swarm.known[(liar.host, liar.port)].banned,
                               "the liar is banned once its blocks are told apart", timeout=10)


class ServingRulesTests(unittest.TestCase):
    """A raw wire client against an STA seed that lacks one piece."""

    MISSING = 5

    def setUp(self):
        tmp = kit.temp_dir(self)
        data = os.path.join(tmp, "data")
        kit.make_tree(data, {"serve.bin": 8 * SMALL_PIECE}, seed=8)
        self.meta = kit.write_torrent(os.path.join(data, "serve.bin"),
                                      os.path.join(tmp, "serve.torrent"),
                                      piece_length=SMALL_PIECE)
        # Spoil one piece of the seed's copy: the seed finds it missing when it checks.
        with open(os.path.join(data, "serve.bin"), "r+b") as f:
            f.seek(self.MISSING * SMALL_PIECE + 100)
            f.write(b"spoiled")
        self.engine = kit.Engine(self)
        self.seed = self.engine.node(self.meta, data)
        self.port = self.seed.host.listen_port

    def connect(self):
        """A raw peer past the handshake, interested and unchoked; returns it and the seed's bits."""
        peer = kit.RawPeer(self.port)
        self.addCleanup(peer.close)
        theirs = peer.handshake(self.meta.info_hash)
        self.assertEqual(theirs.info_hash, self.meta.info_hash)
        bits = peer.read_until(lambda e: isinstance(e, wire.BitfieldMessage))
        peer.send(wire.interested())
        peer.read_until(lambda e: isinstance(e, wire.Unchoke))
        return peer, bits.bits

    def assertServes(self, peer, index):
        peer.send(wire.request(index, 0, wire.BLOCK_SIZE))
        block = peer.read_until(lambda e: isinstance(e, wire.Piece))
        self.assertEqual((block.index, block.begin, len(block.block)),
                         (index, 0, wire.BLOCK_SIZE))

    def test_request_for_a_piece_the_seed_does_not_have_is_refused(self):
        peer, bits = self.connect()
        self.assertFalse(bits[self.MISSING // 8] & (0x80 >> self.MISSING % 8),
                         "the seed must not claim the piece it lacks")
        peer.send(wire.request(self.MISSING, 0, wire.BLOCK_SIZE))
        # Past the end of piece 2: refused too.
        peer.send(wire.request(2, SMALL_PIECE - wire.BLOCK_SIZE // 2, wire.BLOCK_SIZE))
        # Requests are served in order: a reply to either refused one would come first.
        peer.send(wire.request(1, 0, wire.BLOCK_SIZE))
        block = peer.read_until(lambda e: isinstance(e, wire.Piece))
        self.assertEqual((block.index, block.begin), (1, 0))
        self.assertFalse([e for e in peer.events if isinstance(e, wire.Piece)])
        self.assertEqual(self.engine.call(lambda: self.seed.uploaded), wire.BLOCK_SIZE)

    def test_oversized_request_is_refused(self):
        peer, _ = self.connect()
        peer.send(wire.request(1, 0, 1 << 20))
        peer.send(wire.request(2, 0, wire.BLOCK_SIZE))
        # Refusing may mean ignoring the request or dropping the connection: either way no data
        # for the 1 MiB request, and nothing counted as uploaded for it.
        try:
            block = peer.read_until(lambda e: isinstance(e, wire.Piece), timeout=15)
        except kit.EngineTestError:
            self.assertTrue(peer.closed, "the seed neither answered nor closed")
        else:
            self.assertEqual((block.index, len(block.block)), (2, wire.BLOCK_SIZE))
        self.assertLessEqual(self.engine.call(lambda: self.seed.uploaded), wire.BLOCK_SIZE)
        # The seed serves others as before.
        other, _ = self.connect()
        self.assertServes(other, 3)

    def test_garbage_on_the_listen_port_closes_only_that_connection(self):
        good, _ = self.connect()
        # Not a plain or TLS handshake, so the node reads it as an MSE/PE key (answering with
        # its own) and gives up once no MSE/PE marker came within the pad bound (~600 bytes).
        junk = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.addCleanup(junk.close)
        junk.sendall(b"GET /announce HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + os.urandom(1000))
        while junk.recv(65536):  # until the node closes (a timeout fails the test)
            pass
        # A peer that handshakes properly, then sends a message of absurd length.
        bad = kit.RawPeer(self.port)
        self.addCleanup(bad.close)
        bad.handshake(self.meta.info_hash, peer_id=b"-XX0001-badframing01")
        bad.send(b"\xff\xff\xff\xf0\x07" + os.urandom(64))
        bad.wait_closed(timeout=30)

        self.assertServes(good, 0)
        fresh, _ = self.connect()
        self.assertServes(fresh, 4)


class CommandLineTests(unittest.TestCase):
    """Exit statuses and messages of `seed` and `download` as a user sees them."""

    def setUp(self):
        self.tmp = kit.temp_dir(self)

    def small_torrent(self, trackers=()):
        data = os.path.join(self.tmp, "data")
        kit.make_tree(data, {"cli.bin": 100001}, seed=9)
        path = os.path.join(self.tmp, "cli.torrent")
        meta = kit.write_torrent(os.path.join(data, "cli.bin"), path, trackers=trackers,
                                 piece_length=SMALL_PIECE)
        return meta, path, data

    @unittest.skipIf(sys.platform == "win32", "SIGTERM cannot be delivered to a process there")
    def test_seed_announces_then_exits_zero_on_sigterm_and_says_stopped(self):
        server, announce = kit.start_tracker(self, self.tmp)
        meta, torrent, data = self.small_torrent(trackers=[announce])
        seed = kit.StaProcess(self, "seed", torrent, "--data", data, "--port", "0")
        seed.wait_for(r"^Seeding cli\.bin")
        kit.wait_for_swarm(server, meta.info_hash, seeders=1)

        seed.proc.send_signal(signal.SIGTERM)
        status = seed.wait_exit(30)

        self.assertEqual(status, 0, seed.describe())
        self.assertNotIn("Traceback", seed.output)
        # The "stopped" announce took it out of the swarm.
        swarm = server.store.scrape([meta.info_hash]).get(meta.info_hash, (0, 0, 0))
        self.assertEqual(swarm[0], 0, "the tracker still lists the seed: %s" % (swarm,))

    def test_download_with_no_peers_times_out_with_status_one_and_one_line(self):
        _, torrent, _ = self.small_torrent()
        out = os.path.join(self.tmp, "out")
        down = kit.StaProcess(self, "download", torrent, "-o", out, "--port", "0",
                              "--timeout", "2")
        status = down.wait_exit(WAIT)

        self.assertEqual(status, 1, down.describe())
        self.assertNotIn("Traceback", down.output)
        timeouts = [line for line in down.all_lines if "timed out" in line]
        self.assertEqual(len(timeouts), 1, down.describe())
        self.assertIn("cli.bin", timeouts[0])

    def test_download_of_a_corrupt_torrent_fails_with_one_line(self):
        bad = os.path.join(self.tmp, "bad.torrent")
        with open(bad, "wb") as f:
            f.write(b"d8:announce3:abc4:infod6:lengthi-5ee")
        done = kit.run_sta("download", bad, "-o", os.path.join(self.tmp, "out"), "--port", "0",
                           "--timeout", "10")
        err = done.stderr.decode("utf-8", "replace")
        self.assertEqual(done.returncode, 1, err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("bad.torrent", err)
        self.assertEqual(done.stdout, b"")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "out", "cli.bin")))

    def test_download_of_a_truncated_torrent_fails_with_one_line(self):
        _, torrent, _ = self.small_torrent()
        with open(torrent, "rb") as f:
            data = f.read()
        with open(torrent, "wb") as f:
            f.write(data[:len(data) // 2])
        done = kit.run_sta("download", torrent, "-o", os.path.join(self.tmp, "out"),
                           "--port", "0")
        err = done.stderr.decode("utf-8", "replace")
        self.assertEqual(done.returncode, 1, err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)


if __name__ == "__main__":
    unittest.main()
