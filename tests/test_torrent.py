"""Tests for sta.torrent: admission, what a peer is told, interest, serving, verdicts, status."""

import time
import unittest
from unittest import mock

from sta import ut_metadata, wire
from sta.trackerproto import AnnounceResponse
from sta.bitfield import Bitfield
from sta.choker import UNCHOKE_SLOTS
from sta.memstorage import MemoryStorage
from sta.peerproto import ALLOWED_FAST_SET_SIZE, EXTENSION_IDS, UT_METADATA, allowed_fast_set
from sta.smartban import MAX_HASH_FAILURES
from sta.superseed import REVEAL_AT_ONCE
from sta.torrent import DOWNLOADING, ERROR, PAUSED, SEEDING, STOPPED, Torrent
from tests.fakes import FakeConnection, FakeHost, join, make_torrent, receive

KIB = 1024
PIECES = 8
PIECE = 16 * KIB   # one block per piece: every Piece message completes a piece
TRACKER = "http://127.0.0.1:1/announce"

STATUS_KEYS = {"name", "info_hash", "state", "size", "have", "progress", "down_rate",
               "up_rate", "downloaded", "uploaded", "peers", "seeds", "eta", "error",
               "completed_after", "trackers", "known", "failed"}


def addr(n):
    return ("10.0.0.%d" % n, 6881)


class Kit(unittest.TestCase):
    def setUp(self):
        self.host = FakeHost(self)
        self.built = make_torrent(PIECES * PIECE, PIECE, trackers=[[TRACKER]])
        self.info = self.built.info

    def torrent(self, have=(), super_seed=False, private=False, start=True):
        """A torrent holding the pieces ``have`` (all: "all")."""
        built = self.built
        if private:
            built = self.built = make_torrent(PIECES * PIECE, PIECE, private=True)
            self.info = built.info
        if have == "all":
            have = range(PIECES)
        data = bytearray(self.info.length)
        for index in have:
            data[index * PIECE:(index + 1) * PIECE] = built.piece(index)
        self.storage = MemoryStorage(self.info, bytes(data))
        torrent = Torrent(self.host, built.meta, self.storage, super_seed=super_seed)
        if start:
            self.host.run(torrent.start())
        return torrent

    def peer(self, torrent, n=1, pieces=None, incoming=False):
        """A joined peer; ``pieces`` it announces with a bitfield."""
        conn = FakeConnection(addr(n), incoming=incoming)
        self.assertTrue(join(torrent, conn))
        if pieces is not None:
            receive(conn, wire.BitfieldMessage(self.bits(pieces)))
        return conn

    def bits(self, pieces):
        if pieces == "all":
            return Bitfield.full(PIECES).to_bytes()
        return Bitfield.from_indices(PIECES, pieces).to_bytes()

    def send_piece(self, conn, index, data=None):
        receive(conn, wire.Piece(index, 0, data if data is not None
                                 else self.built.piece(index)), now=time.monotonic())
        self.host.drain()  # the hash verdict comes back through the loop


class AdmissionTests(Kit):
    def test_a_torrent_still_checking_refuses_peers(self):
        torrent = self.torrent(start=False)
        conn = FakeConnection(addr(1))
        self.assertFalse(join(torrent, conn))
        self.assertTrue(conn.closed)
        self.assertEqual(conn.close_reason, "torrent is checking")
        self.assertEqual(torrent.peers, set())

    def test_a_paused_or_stopped_torrent_refuses_peers(self):
        torrent = self.torrent()
        self.host.run(torrent.pause())
        self.assertEqual(torrent.state, PAUSED)
        conn = FakeConnection(addr(1))
        self.assertFalse(join(torrent, conn))
        self.assertEqual(conn.close_reason, "torrent is paused")
        torrent.resume()
        self.assertEqual(torrent.state, DOWNLOADING)
        self.assertTrue(join(torrent, FakeConnection(addr(2))))
        torrent.stop()
        self.assertEqual(torrent.state, STOPPED)
        self.assertFalse(join(torrent, FakeConnection(addr(3))))

    def test_pause_closes_every_connection(self):
        torrent = self.torrent()
        conn = self.peer(torrent)
        self.host.run(torrent.pause())
        self.assertTrue(conn.closed)
        self.assertEqual(torrent.peers, set())

    def test_a_banned_peer_is_refused(self):
        torrent = self.torrent()
        torrent.swarm.ban(addr(1), None, "liar")
        conn = FakeConnection(addr(1))
        self.assertFalse(join(torrent, conn))
        self.assertEqual(conn.close_reason, "banned peer")


class FirstWordsTests(Kit):
    def test_our_bitfield_goes_first_when_we_have_pieces(self):
        torrent = self.torrent(have=[1, 6])
        conn = self.peer(torrent)
        self.assertEqual(conn.sent[0], ("bitfield", self.bits([1, 6])))

    def test_no_bitfield_when_we_have_nothing(self):
        torrent = self.torrent()
        conn = self.peer(torrent)
        self.assertEqual(conn.of("bitfield"), [])

    def test_a_super_seed_reveals_a_few_pieces_with_haves_instead(self):
        torrent = self.torrent(have="all", super_seed=True)
        self.assertEqual(torrent.state, SEEDING)
        conn = self.peer(torrent)
        self.assertEqual(conn.of("bitfield"), [])
        shown = [index for (index,) in conn.of("have")]
        self.assertEqual(len(shown), REVEAL_AT_ONCE)
        other = self.peer(torrent, 2)
        self.assertFalse(set(shown) & {index for (index,) in other.of("have")})

    def test_a_super_seed_serves_only_what_it_revealed(self):
        torrent = self.torrent(have="all", super_seed=True)
        conn = self.peer(torrent)
        shown = [index for (index,) in conn.of("have")]
        hidden = next(i for i in range(PIECES) if i not in shown)
        receive(conn, wire.Interested())
        receive(conn, wire.Request(shown[0], 0, PIECE), wire.Request(hidden, 0, PIECE))
        self.assertEqual([b[0] for b in conn.of("block")], [shown[0]])

    # A super-seed reveals pieces with haves as soon as a peer joins, before the peer's own
    # bitfield arrives; the bitfield then makes it forget what it revealed (torrent.py,
    # _peer_bitfield: super_seeder.peer_left then peer_joined) and reveal other pieces, so the
    # peer's requests for the first ones are refused as invalid.
    def test_a_super_seed_serves_a_piece_it_revealed_before_the_peers_bitfield(self):
        torrent = self.torrent(have="all", super_seed=True)
        conn = self.peer(torrent)
        first = [index for (index,) in conn.of("have")]
        owned = next(i for i in range(PIECES) if i not in first)
        receive(conn, wire.BitfieldMessage(self.bits([owned])))
        receive(conn, wire.Interested())
        receive(conn, wire.Request(first[0], 0, PIECE))
        self.assertEqual([b[0] for b in conn.of("block")], [first[0]])


class SeedTests(Kit):
    def test_two_seeds_part_and_the_seed_is_not_dialled_again(self):
        torrent = self.torrent(have="all")
        torrent.add_peers([addr(1), addr(2)])
        self.assertEqual(sorted(self.host.dialled_addresses()), [addr(1), addr(2)])
        seed = self.peer(torrent, 1, pieces="all")
        self.assertTrue(seed.closed)
        self.assertEqual(seed.close_reason, "both sides are seeds")
        leech = self.peer(torrent, 2, pieces=[0])
        self.assertFalse(leech.closed)
        leech.close("gone")
        torrent.dial_failed(addr(2))
        torrent.tick(time.monotonic() + 3600)
        self.assertEqual(self.host.dialled_addresses().count(addr(1)), 1)
        self.assertEqual(self.host.dialled_addresses().count(addr(2)), 2)

    def test_a_peer_that_becomes_a_seed_through_haves_is_dropped_by_a_seed(self):
        torrent = self.torrent(have="all")
        conn = self.peer(torrent, pieces=range(PIECES - 1))
        self.assertFalse(conn.closed)
        receive(conn, wire.Have(PIECES - 1))
        self.assertTrue(conn.closed)

    def test_finishing_the_download_drops_seeds_and_loses_interest_in_the_rest(self):
        torrent = self.torrent(have=range(1, PIECES))
        seed = self.peer(torrent, 1, pieces="all")
        leech = self.peer(torrent, 2, pieces=[3])
        self.assertTrue(seed.am_interested)
        receive(seed, wire.Unchoke())
        self.assertEqual(seed.requested(), [(0, 0, PIECE)])
        self.send_piece(seed, 0)
        self.assertEqual(torrent.state, SEEDING)
        self.assertTrue(torrent.done.is_set())
        self.assertTrue(seed.closed)
        self.assertFalse(leech.closed)
        self.assertIn((0,), leech.of("have"))
        self.assertFalse(leech.am_interested)


class InterestTests(Kit):
    def test_interest_follows_what_the_peer_has(self):
        torrent = self.torrent(have=[2])
        conn = self.peer(torrent)
        receive(conn, wire.Have(2))  # a piece we have: no reason to ask
        self.assertFalse(conn.am_interested)
        receive(conn, wire.Have(5))
        self.assertTrue(conn.am_interested)
        self.assertEqual(conn.of("interested"), [(True,)])

    def test_a_bitfield_of_pieces_we_have_is_not_interesting(self):
        torrent = self.torrent(have=[0, 1])
        conn = self.peer(torrent, pieces=[0, 1])
        self.assertFalse(conn.am_interested)
        other = self.peer(torrent, 2, pieces=[1, 4])
        self.assertTrue(other.am_interested)

    def test_interest_ends_when_we_got_everything_the_peer_has(self):
        torrent = self.torrent()
        seed = self.peer(torrent, 1, pieces="all")
        partial = self.peer(torrent, 2, pieces=[4])
        self.assertTrue(partial.am_interested)
        receive(seed, wire.Unchoke())
        self.send_piece(seed, seed.requested()[0][0])
        while (4, 0, PIECE) not in seed.requested():
            index = seed.requested()[-1][0]
            self.send_piece(seed, index)
        self.send_piece(seed, 4)
        self.assertFalse(partial.am_interested)
        self.assertTrue(seed.am_interested)

    def test_a_have_out_of_range_closes_the_peer(self):
        torrent = self.torrent()
        conn = self.peer(torrent)
        receive(conn, wire.Have(PIECES))
        self.assertTrue(conn.closed)
        self.assertNotIn(conn, torrent.peers)

    def test_a_bitfield_of_the_wrong_size_closes_the_peer(self):
        torrent = self.torrent()
        conn = self.peer(torrent)
        receive(conn, wire.BitfieldMessage(b"\xff\xff"))
        self.assertTrue(conn.closed)
        self.assertIn("bad bitfield", conn.close_reason)


class UploadTests(Kit):
    def test_an_interested_peer_is_unchoked_and_served(self):
        torrent = self.torrent(have=[3])
        conn = self.peer(torrent)
        receive(conn, wire.Interested())
        self.assertFalse(conn.am_choking)
        receive(conn, wire.Request(3, 0, PIECE))
        self.assertEqual(conn.of("block"), [(3, 0, self.built.piece(3))])
        self.assertEqual(torrent.uploaded, PIECE)
        self.assertEqual(torrent.status()["uploaded"], PIECE)

    def test_a_request_for_a_piece_we_lack_is_not_served(self):
        torrent = self.torrent(have=[3])
        conn = self.peer(torrent)
        receive(conn, wire.Interested(), wire.Request(4, 0, PIECE))
        self.assertEqual(conn.of("block"), [])

    def test_a_request_cancelled_before_it_is_served_is_dropped(self):
        torrent = self.torrent(have=[3])
        conn = self.peer(torrent)
        receive(conn, wire.Interested())
        conn.writable = False
        receive(conn, wire.Request(3, 0, PIECE), wire.Cancel(3, 0, PIECE))
        conn.writable = True
        torrent.peer_writable(conn)
        self.assertEqual(conn.of("block"), [])

    def test_metadata_is_served_to_peers_that_ask_unless_private(self):
        for private in (False, True):
            with self.subTest(private=private):
                torrent = self.torrent(have="all", private=private)
                conn = self.peer(torrent, 1 + private)
                receive(conn, wire.Extended(EXTENSION_IDS[UT_METADATA],
                                            ut_metadata.metadata_request(0)))
                (name, payload), = conn.of("extended")
                self.assertEqual(name, UT_METADATA)
                answer = ut_metadata.decode_metadata(payload)
                self.assertEqual(answer.msg_type,
                                 ut_metadata.METADATA_REJECT if private else ut_metadata.METADATA_DATA)
                if not private:
                    self.assertEqual(answer.data, self.info.raw)
                # A private torrent names neither its metadata size nor peer exchange.
                self.assertEqual(torrent.extension_fields(),
                                 {"without": ["ut_pex"]} if private
                                 else {"metadata_size": len(self.info.raw)})


class VerdictTests(Kit):
    def test_a_verified_piece_is_announced_to_every_peer(self):
        torrent = self.torrent()
        seed = self.peer(torrent, 1, pieces="all")
        other = self.peer(torrent, 2)
        receive(seed, wire.Unchoke())
        index = seed.requested()[0][0]
        self.send_piece(seed, index)
        self.assertIn((index,), seed.of("have"))
        self.assertIn((index,), other.of("have"))
        self.assertEqual(torrent.downloaded, PIECE)
        self.assertEqual(torrent.left, (PIECES - 1) * PIECE)

    # The picker is handed the storage's own verified Bitfield (storage.restore returns its
    # live record) and sets each verified piece in it before the downloader calls
    # storage.mark_verified, which then finds the piece already set and does not count it:
    # the storage never turns dirty again after its first save, so tick() never saves the
    # resume state while the download runs.
    def test_a_verified_piece_makes_the_resume_state_due_for_a_save(self):
        torrent = self.torrent()
        self.storage.save()
        self.assertFalse(self.storage.dirty)
        seed = self.peer(torrent, 1, pieces="all")
        receive(seed, wire.Unchoke())
        self.send_piece(seed, seed.requested()[0][0])
        self.assertEqual(torrent.downloaded, PIECE)
        self.assertTrue(self.storage.dirty)

    def test_a_peer_is_banned_after_max_hash_failures(self):
        torrent = self.torrent()
        liar = self.peer(torrent, 1, pieces="all")
        receive(liar, wire.Unchoke())
        with self.assertLogs("sta", "WARNING") as logs:
            for strike in range(1, MAX_HASH_FAILURES + 1):
                self.assertFalse(liar.closed)
                index = liar.requested()[-1][0]
                self.send_piece(liar, index, bytes(PIECE))
                self.assertEqual(torrent.strikes(liar.address), strike)
                receive(liar, wire.KeepAlive())  # the next batch asks for the piece again
        self.assertTrue(any("banned" in line for line in logs.output))
        self.assertTrue(liar.closed)
        self.assertEqual(torrent.downloaded, MAX_HASH_FAILURES * PIECE)
        self.assertEqual(torrent.wasted, MAX_HASH_FAILURES * PIECE)
        again = FakeConnection(("10.0.0.1", 50000), peer_id=liar.peer_id, incoming=True)
        self.assertFalse(join(torrent, again))

    # Torrent._strike takes the peer's record with swarm.record(address), which creates one for
    # an address the swarm never knew: an incoming peer's source port. That record is neither
    # connected nor banned, so the next tick dials the source port (while the peer is still
    # connected), and keeps redialling it with backoff.
    def test_a_struck_incoming_peers_source_port_is_never_dialled(self):
        torrent = self.torrent()
        conn = FakeConnection(("10.0.0.1", 50000), incoming=True)
        self.assertTrue(join(torrent, conn))
        receive(conn, wire.BitfieldMessage(self.bits("all")), wire.Unchoke())
        with self.assertLogs("sta", "WARNING"):
            self.send_piece(conn, conn.requested()[0][0], bytes(PIECE))
        self.assertEqual(torrent.strikes(conn.address), 1)
        torrent.tick(time.monotonic() + 1)
        self.assertEqual(self.host.dialled_addresses(), [])

    def test_a_storage_error_stops_the_torrent(self):
        torrent = self.torrent()
        conn = self.peer(torrent)
        with self.assertLogs("sta.torrent", "ERROR"):
            torrent.storage_failed(OSError("disk full"))
        self.assertEqual(torrent.state, ERROR)
        self.assertEqual(torrent.status()["error"], "disk full")
        self.assertTrue(conn.closed)
        self.assertTrue(torrent.done.is_set())


class TickTests(Kit):
    def test_tick_dials_known_peers_only_while_active(self):
        torrent = self.torrent()
        self.host.run(torrent.pause())
        torrent.add_peers([addr(1)])
        torrent.tick(time.monotonic())
        self.assertEqual(self.host.dialled, [])
        torrent.resume()
        torrent.tick(time.monotonic())
        self.assertEqual(self.host.dialled, [(torrent, addr(1))])

    def test_tick_saves_the_resume_state_when_it_changed(self):
        torrent = self.torrent(have=[0])
        self.assertTrue(self.storage.dirty)  # the check replaced the record
        torrent.tick(time.monotonic())
        self.host.wait_until(lambda: not self.storage.dirty)

    def test_tick_unchokes_the_peers_that_give_most(self):
        torrent = self.torrent(have=[0])
        peers = [self.peer(torrent, n) for n in range(1, 12)]
        for n, conn in enumerate(peers):
            conn.down_rate = float(n)
            receive(conn, wire.Interested())
        torrent.tick(time.monotonic())
        best = peers[-UNCHOKE_SLOTS:]
        self.assertTrue(all(not c.am_choking for c in best))
        self.assertEqual(sum(not c.am_choking for c in peers), UNCHOKE_SLOTS + 1)


class StatusTests(Kit):
    def test_status_has_every_key_and_counts_peers_and_seeds(self):
        torrent = self.torrent(have=[0, 1])
        self.peer(torrent, 1, pieces="all")
        self.peer(torrent, 2, pieces=[5])
        status = torrent.status()
        self.assertEqual(set(status), STATUS_KEYS)
        self.assertEqual(status["state"], DOWNLOADING)
        self.assertEqual(status["info_hash"], self.info.info_hash.hex())
        self.assertEqual((status["size"], status["have"]), (PIECES * PIECE, 2 * PIECE))
        self.assertEqual(status["progress"], 2 / PIECES)
        self.assertEqual((status["peers"], status["seeds"]), (2, 1))
        self.assertIsNone(status["eta"])
        self.assertEqual(status["trackers"], [])  # not announcing yet

    def test_status_lists_known_and_failed_addresses(self):
        torrent = self.torrent()
        torrent.add_peers([addr(1), addr(2), addr(3)])
        torrent.dial_failed(addr(2))
        status = torrent.status()
        self.assertEqual(status["known"], 3)
        self.assertEqual(status["failed"], ["10.0.0.2:6881"])

    def test_status_lists_each_trackers_last_answer(self):
        response = AnnounceResponse(interval=1800, min_interval=None, peers=[addr(9)],
                                    tracker_id=None, complete=1, incomplete=0, warning=None)
        with mock.patch("sta.announce.announce", return_value=response):
            torrent = self.torrent()
            torrent.start_announcing()
            self.host.wait_until(lambda: addr(9) in torrent.swarm.known)
        self.assertEqual(torrent.status()["trackers"],
                         [{"url": TRACKER, "error": None, "peers": 1}])
        self.assertIn(addr(9), self.host.dialled_addresses())

    def test_peer_rows_show_flags_and_progress(self):
        torrent = self.torrent()
        conn = self.peer(torrent, 1, pieces=[0, 1], incoming=True)
        conn.encrypted = True
        (row,) = torrent.peer_statuses()
        self.assertEqual(row["address"], "10.0.0.1:6881")
        self.assertEqual(row["progress"], 2 / PIECES)
        self.assertEqual(row["flags"], "dEI")  # interested, choked by it; encrypted; incoming


if __name__ == "__main__":
    unittest.main()


class FastExtensionTests(Kit):
    """BEP 6 seen from the torrent: first words, allowed fast, have all / none, rejects."""

    def fast_peer(self, torrent, n=1):
        conn = FakeConnection(addr(n), fast=True)
        self.assertTrue(join(torrent, conn))
        return conn

    def test_first_words_are_exactly_one_of_have_all_have_none_or_a_bitfield(self):
        for have, first in (("all", ("have_all",)), ((), ("have_none",)),
                            ([1, 6], ("bitfield", self.bits([1, 6])))):
            with self.subTest(have=have):
                conn = self.fast_peer(self.torrent(have=have))
                self.assertEqual(conn.sent[0], first)

    def test_a_fast_peer_gets_its_canonical_allowed_fast_pieces_that_we_have(self):
        torrent = self.torrent(have="all")
        conn = self.fast_peer(torrent, 3)
        granted = [index for (index,) in conn.of("allowed_fast")]
        expected = allowed_fast_set(conn.address[0], self.info.info_hash, PIECES)
        self.assertEqual(granted, expected)
        self.assertEqual(len(granted), min(ALLOWED_FAST_SET_SIZE, PIECES))

    def test_a_choked_fast_peer_is_served_an_allowed_piece_and_rejected_others(self):
        torrent = self.torrent(have="all")
        conn = self.fast_peer(torrent, 3)
        allowed = [index for (index,) in conn.of("allowed_fast")]
        other = next(i for i in range(PIECES) if i not in allowed)
        self.assertTrue(conn.am_choking)
        receive(conn, wire.Request(allowed[0], 0, 16384), wire.Request(other, 0, 16384))
        self.assertEqual(conn.of("reject"), [(other, 0, 16384)])
        self.assertEqual(conn.of("block"), [(allowed[0], 0, self.built.piece(allowed[0])[:16384])])

    def test_have_all_and_have_none_count_as_bitfields(self):
        torrent = self.torrent()
        seed = self.fast_peer(torrent, 1)
        receive(seed, wire.HaveAll())
        self.assertTrue(seed.am_interested)
        empty = self.fast_peer(torrent, 2)
        receive(empty, wire.HaveNone())
        self.assertFalse(empty.am_interested)
        self.assertEqual(torrent.status()["seeds"], 1)
