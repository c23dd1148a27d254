"""Tests for sta.uploader: which requests are accepted, how they are served, whom we unchoke."""

import random
import unittest

from sta.bitfield import Bitfield
from sta.choker import SEED_TURN, UNCHOKE_SLOTS, Choker
from sta.peer import MAX_INCOMING_REQUESTS
from sta.uploader import (ANNOUNCED_GRACE_SECONDS, HOLD_CREDIT, HOLD_RECENT_SECONDS, HOLD_SECONDS,
                          MAX_BAD_REQUESTS, MAX_REQUEST_LENGTH, UPLOAD_BATCH_BLOCKS, Uploader)
from tests.fakes import FakeConnection, make_torrent

BLOCK = 16384


class Kit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # 8 pieces of 1 MiB: 512 blocks, enough for several batches.
        cls.torrent = make_torrent(8 * 1024 * 1024, 1024 * 1024)

    def setUp(self):
        info = self.torrent.info
        self.have = set(range(info.num_pieces))
        self.later = []
        self.errors = []
        self.sent_bytes = []
        self.reads = 0
        self.seeding = False
        self.broken = False
        self.now = 100.0
        self.announced = {}   # conn -> the pieces it said it has
        self.uploader = Uploader(
            piece_size=info.piece_size, piece_length=info.piece_length,
            num_pieces=info.num_pieces, read=self.read,
            can_serve=lambda conn, index: index in self.have, later=self.later.append,
            on_error=self.errors.append, on_sent=self.sent_bytes.append,
            seeding=lambda: self.seeding, choker=Choker(random.Random(7)),
            clock=lambda: self.now,
            peer_bits=self.announced.get)

    def read(self, index, begin, length):
        self.reads += 1
        if self.broken:
            raise OSError("disk gone")
        return self.torrent.block(index, begin, length)

    def peer(self, n=1, unchoked=True):
        conn = FakeConnection(("10.0.0.%d" % n, 6881))
        self.uploader.peer_joined(conn)
        if unchoked:
            conn.peer_interested = True
            self.uploader.choke(conn, False)
        return conn

    def run_later(self):
        """Run what was scheduled for a later loop turn (once)."""
        calls, self.later[:] = list(self.later), []
        for call in calls:
            call()


class RequestTests(Kit):
    def test_a_valid_request_is_queued(self):
        conn = self.peer()
        self.uploader.request(conn, 2, BLOCK, BLOCK)
        self.assertEqual(self.uploader.queued(conn), 1)

    def test_invalid_requests_are_not_queued(self):
        conn = self.peer()
        info = self.torrent.info
        self.have.discard(5)
        for index, begin, length in [(info.num_pieces, 0, BLOCK), (-1, 0, BLOCK), (0, 0, 0),
                                     (0, 0, MAX_REQUEST_LENGTH + 1), (0, -1, BLOCK),
                                     (0, info.piece_length - 1, 2), (5, 0, BLOCK)]:
            self.uploader.request(conn, index, begin, length)
        self.assertEqual(self.uploader.queued(conn), 0)
        self.assertFalse(conn.closed)

    def test_a_peer_is_closed_after_max_bad_requests(self):
        conn = self.peer()
        for _ in range(MAX_BAD_REQUESTS):
            self.uploader.request(conn, 99, 0, BLOCK)
        self.assertFalse(conn.closed)
        self.uploader.request(conn, 99, 0, BLOCK)
        self.assertTrue(conn.closed)
        self.assertIn("too many invalid requests", conn.close_reason)

    def test_the_queue_is_capped_and_overflow_counts_as_bad(self):
        conn = self.peer()
        conn.writable = False  # nothing is served while the requests pile up
        blocks = [(i, b) for i in range(8) for b in range(0, 1024 * 1024, BLOCK)]
        n = 0
        while self.uploader.queued(conn) < MAX_INCOMING_REQUESTS:
            index, begin = blocks[n % len(blocks)]
            self.uploader.request(conn, index, begin, BLOCK)
            n += 1
        for _ in range(MAX_BAD_REQUESTS):
            self.uploader.request(conn, 0, 0, BLOCK)
        self.assertEqual(self.uploader.queued(conn), MAX_INCOMING_REQUESTS)
        self.assertFalse(conn.closed)
        self.uploader.request(conn, 0, 0, BLOCK)
        self.assertTrue(conn.closed)

    def test_cancel_removes_the_request(self):
        conn = self.peer()
        self.uploader.request(conn, 1, 0, BLOCK)
        self.uploader.request(conn, 1, BLOCK, BLOCK)
        self.uploader.cancel(conn, 1, 0, BLOCK)
        self.uploader.cancel(conn, 7, 0, BLOCK)  # never requested: ignored
        self.assertEqual(self.uploader.queued(conn), 1)
        self.uploader.serve(conn)
        self.assertEqual([b[:2] for b in conn.of("block")], [(1, BLOCK)])

    def test_not_interested_clears_the_queue(self):
        conn = self.peer()
        self.uploader.request(conn, 1, 0, BLOCK)
        self.uploader.not_interested(conn)
        self.assertEqual(self.uploader.queued(conn), 0)

    def test_requests_of_an_unknown_peer_are_ignored(self):
        conn = FakeConnection()
        self.uploader.request(conn, 1, 0, BLOCK)
        self.uploader.serve(conn)
        self.assertEqual(conn.sent, [])


class ServeTests(Kit):
    def queue(self, conn, count):
        n = 0
        for index in range(8):
            for begin in range(0, 1024 * 1024, BLOCK):
                if n == count:
                    return
                self.uploader.request(conn, index, begin, BLOCK)
                n += 1

    def test_blocks_are_sent_with_the_right_bytes_and_counted(self):
        conn = self.peer()
        self.uploader.request(conn, 3, 2 * BLOCK, BLOCK)
        self.uploader.request(conn, 7, 0, 100)
        self.uploader.serve(conn)
        self.assertEqual(conn.of("block"), [(3, 2 * BLOCK, self.torrent.block(3, 2 * BLOCK)),
                                            (7, 0, self.torrent.block(7, 0, 100))])
        self.assertEqual(self.sent_bytes, [BLOCK, 100])
        self.assertEqual(self.uploader.queued(conn), 0)

    def test_a_batch_is_upload_batch_blocks_and_the_rest_goes_on_a_later_turn(self):
        conn = self.peer()
        self.queue(conn, UPLOAD_BATCH_BLOCKS * 2 + 3)
        self.uploader.serve(conn)
        self.assertEqual(len(conn.of("block")), UPLOAD_BATCH_BLOCKS)
        self.assertEqual(len(self.later), 1)
        self.uploader.serve(conn)  # another event meanwhile: one batch, no second schedule
        self.assertEqual(len(conn.of("block")), 2 * UPLOAD_BATCH_BLOCKS)
        self.assertEqual(len(self.later), 1)
        self.run_later()
        self.assertEqual(len(conn.of("block")), 2 * UPLOAD_BATCH_BLOCKS + 3)
        self.assertEqual(conn.flushes, 1)
        self.assertEqual(self.later, [])

    def test_blocks_are_read_through_the_cache(self):
        conn = self.peer()
        self.queue(conn, UPLOAD_BATCH_BLOCKS)  # the first 1 MiB piece, block by block
        self.uploader.serve(conn)
        self.assertEqual(self.reads, 1)
        self.assertEqual(b"".join(b[2] for b in conn.of("block")), self.torrent.piece(0))

    def test_serving_stops_while_the_peer_is_not_writable_and_resumes(self):
        conn = self.peer()
        self.queue(conn, 10)
        conn.writable = False
        self.uploader.serve(conn)
        self.assertEqual(conn.of("block"), [])
        self.assertEqual(self.later, [])
        conn.writable = True
        self.uploader.serve(conn)
        self.assertEqual(len(conn.of("block")), 10)

    def test_a_peer_that_fills_its_transport_mid_batch_is_not_rescheduled(self):
        conn = self.peer()
        self.queue(conn, 10)
        original = conn.send_block

        def send_block(index, begin, block):
            original(index, begin, block)
            if len(conn.of("block")) == 4:
                conn.writable = False
        conn.send_block = send_block
        self.uploader.serve(conn)
        self.assertEqual(len(conn.of("block")), 4)
        self.assertEqual(self.later, [])
        self.assertEqual(self.uploader.queued(conn), 6)

    def test_a_continuation_for_a_closed_peer_sends_nothing(self):
        conn = self.peer()
        self.queue(conn, UPLOAD_BATCH_BLOCKS + 1)
        self.uploader.serve(conn)
        conn.closed = True
        self.run_later()
        self.assertEqual(len(conn.of("block")), UPLOAD_BATCH_BLOCKS)

    def test_a_choked_peer_is_not_served(self):
        conn = self.peer(unchoked=False)
        self.uploader.request(conn, 0, 0, BLOCK)
        self.uploader.serve(conn)
        self.assertEqual(conn.of("block"), [])

    def test_a_storage_error_is_reported_and_serving_stops(self):
        conn = self.peer()
        self.queue(conn, 3)
        self.broken = True
        self.uploader.serve(conn)
        self.assertEqual(len(self.errors), 1)
        self.assertEqual(conn.of("block"), [])


class ChokeTests(Kit):
    def test_choking_a_peer_clears_its_queue(self):
        conn = self.peer()
        self.uploader.request(conn, 0, 0, BLOCK)
        self.uploader.choke(conn, True)
        self.assertTrue(conn.am_choking)
        self.assertEqual(self.uploader.queued(conn), 0)
        self.assertEqual(conn.of("choke"), [(False,), (True,)])

    def test_an_interested_peer_is_unchoked_at_once_while_slots_are_free(self):
        peers = [self.peer(n, unchoked=False) for n in range(UNCHOKE_SLOTS + 2)]
        for conn in peers:
            conn.peer_interested = True
            self.uploader.interest_changed(conn, peers, 0.0)
        self.assertEqual(sum(not c.am_choking for c in peers), UNCHOKE_SLOTS + 1)
        self.assertTrue(peers[-1].am_choking)

    def test_a_peer_that_loses_interest_is_choked_and_its_queue_cleared(self):
        peers = [self.peer(n) for n in range(3)]
        self.uploader.request(peers[0], 0, 0, BLOCK)
        peers[0].peer_interested = False
        self.uploader.interest_changed(peers[0], peers, 0.0)
        self.assertTrue(peers[0].am_choking)
        self.assertEqual(self.uploader.queued(peers[0]), 0)

    def rated(self, count, attribute):
        peers = []
        for n in range(count):
            conn = self.peer(n, unchoked=False)
            conn.peer_interested = True
            setattr(conn, attribute, float(1000 * (n + 1)))
            peers.append(conn)
        return peers

    def test_rechoke_while_downloading_unchokes_those_that_give_most_plus_one(self):
        peers = self.rated(UNCHOKE_SLOTS + 4, "down_rate")
        bystander = self.peer(50)  # unchoked, but no longer interested
        bystander.peer_interested = False
        self.uploader.rechoke(peers + [bystander], 0.0)
        unchoked = {c for c in peers if not c.am_choking}
        best = set(peers[-UNCHOKE_SLOTS:])
        self.assertTrue(best <= unchoked)
        self.assertEqual(len(unchoked), UNCHOKE_SLOTS + 1)
        self.assertIn(self.uploader.choker.optimistic, set(peers) - best)
        self.assertTrue(bystander.am_choking)

    def test_rechoke_while_seeding_takes_turns_whatever_the_rates(self):
        self.seeding = True
        peers = self.rated(UNCHOKE_SLOTS + 4, "up_rate")
        ever = set()
        for now in (0.0, SEED_TURN):
            self.uploader.rechoke(peers, now)
            unchoked = {c for c in peers if not c.am_choking}
            self.assertEqual(len(unchoked), UNCHOKE_SLOTS + 1)
            ever |= unchoked
        self.assertEqual(ever, set(peers))  # the fastest do not keep the slots

    def test_a_peer_unchoked_into_a_free_slot_takes_its_turn_in_the_round_robin(self):
        self.seeding = True
        first = self.rated(UNCHOKE_SLOTS + 1, "up_rate")
        for conn in first:
            self.uploader.interest_changed(conn, first, 0.0)
        self.assertTrue(all(not c.am_choking for c in first))
        later = [self.peer(100 + n, unchoked=False) for n in range(UNCHOKE_SLOTS)]
        for conn in later:
            conn.peer_interested = True
        self.uploader.rechoke(first + later, SEED_TURN)
        self.assertTrue(all(not c.am_choking for c in later))

    def test_a_leaving_unchoked_peer_frees_its_slot_for_another(self):
        peers = self.rated(UNCHOKE_SLOTS + 2, "down_rate")
        self.uploader.rechoke(peers, 0.0)
        choked = [c for c in peers if c.am_choking]
        self.assertEqual(len(choked), 1)
        gone = peers[-1]
        peers.remove(gone)
        self.uploader.peer_left(gone, peers, 1.0)
        self.assertFalse(choked[0].am_choking)
        self.assertEqual(self.uploader.queued(gone), 0)


if __name__ == "__main__":
    unittest.main()


class FastExtensionTests(Kit):
    """BEP 6: no request is dropped silently; allowed-fast pieces are served while choked."""

    def fast_peer(self, n=1, unchoked=True):
        conn = FakeConnection(("10.0.0.%d" % n, 6881), fast=True)
        self.uploader.peer_joined(conn)
        if unchoked:
            conn.peer_interested = True
            self.uploader.choke(conn, False)
        return conn

    def test_a_choke_rejects_every_queued_request_but_allowed_fast_ones(self):
        conn = self.fast_peer()
        self.uploader.grant(conn, [5])
        for index in (1, 5, 2):
            self.uploader.request(conn, index, 0, BLOCK)
        self.uploader.choke(conn, True)
        self.assertEqual(conn.of("reject"), [(1, 0, BLOCK), (2, 0, BLOCK)])
        self.assertEqual(self.uploader.queued(conn), 1)
        self.uploader.serve(conn)
        self.assertEqual([(i, b) for i, b, _ in conn.of("block")], [(5, 0)])

    def test_a_cancel_is_answered_with_a_reject(self):
        conn = self.fast_peer()
        self.uploader.request(conn, 3, 0, BLOCK)
        self.uploader.cancel(conn, 3, 0, BLOCK)
        self.assertEqual(conn.of("reject"), [(3, 0, BLOCK)])
        self.uploader.cancel(conn, 3, 0, BLOCK)  # nothing queued any more: nothing to answer
        self.assertEqual(len(conn.of("reject")), 1)

    def test_invalid_requests_and_a_full_queue_are_rejected_not_dropped(self):
        conn = self.fast_peer()
        self.have.discard(4)
        self.uploader.request(conn, 4, 0, BLOCK)
        self.assertEqual(conn.of("reject"), [(4, 0, BLOCK)])

    def test_grant_tells_the_peer_once_per_piece(self):
        conn = self.fast_peer(unchoked=False)
        self.uploader.grant(conn, [2, 7, 2])
        self.assertEqual(conn.of("allowed_fast"), [(2,), (7,)])

    def test_without_fast_a_choke_discards_silently(self):
        conn = self.peer()
        self.uploader.request(conn, 1, 0, BLOCK)
        self.uploader.choke(conn, True)
        self.assertEqual((conn.of("reject"), self.uploader.queued(conn)), ([], 0))


class HoldTests(Kit):
    """While seeding, a fast peer's request for a piece just sent to another peer waits a
    little, then is rejected; it is served if asked again."""

    def setUp(self):
        super().setUp()
        self.seeding = True

    def fast_peer(self, n, announced=(6,)):
        """A downloader in the middle of a swarm: it has announced piece 6, used nowhere else."""
        conn = FakeConnection(("10.0.0.%d" % n, 6881), fast=True)
        self.announced[conn] = Bitfield.from_indices(self.torrent.info.num_pieces, announced)
        self.uploader.peer_joined(conn)
        conn.peer_interested = True
        self.uploader.choke(conn, False)
        return conn

    def send(self, conn, index, begin=0):
        """``conn`` asks for a block and is served at once."""
        self.uploader.request(conn, index, begin, BLOCK)
        self.uploader.serve(conn)

    def served(self, conn):
        return [(i, b) for i, b, _ in conn.of("block")]

    def test_a_lone_downloader_is_never_delayed(self):
        alone = self.fast_peer(1)
        for begin in (0, BLOCK, 0):     # the same piece again, even the same block
            self.send(alone, 3, begin)
        self.assertEqual(self.served(alone), [(3, 0), (3, BLOCK), (3, 0)])
        self.assertEqual((self.uploader.held(alone), alone.of("reject")), (0, []))

    def test_a_piece_just_sent_to_another_peer_waits_while_new_pieces_are_served(self):
        first, second = self.fast_peer(1), self.fast_peer(2)
        self.send(first, 3)
        self.now += HOLD_RECENT_SECONDS / 2
        self.uploader.request(second, 3, BLOCK, BLOCK)
        self.uploader.request(second, 4, 0, BLOCK)
        self.uploader.serve(second)
        self.assertEqual(self.served(second), [(4, 0)])
        self.assertEqual(self.uploader.held(second), 1)
        self.assertEqual(second.of("reject"), [])

    def test_held_requests_are_rejected_after_the_hold_then_served_when_asked_again(self):
        first, second = self.fast_peer(1), self.fast_peer(2)
        self.send(first, 3)
        self.uploader.request(second, 3, 0, BLOCK)
        self.now += HOLD_SECONDS - 0.1
        self.uploader.tick(self.now)
        self.assertEqual((second.of("reject"), self.uploader.held(second)), ([], 1))
        self.now += 0.1
        self.uploader.tick(self.now)
        self.assertEqual((second.of("reject"), self.uploader.held(second)), ([(3, 0, BLOCK)], 0))
        self.send(second, 3)   # it asks again: nowhere else to get it
        self.assertEqual(self.served(second), [(3, 0)])

    def test_serving_the_peer_releases_its_due_requests_between_ticks(self):
        first, second = self.fast_peer(1), self.fast_peer(2)
        self.send(first, 3)
        self.uploader.request(second, 3, 0, BLOCK)
        self.now += HOLD_SECONDS
        self.uploader.serve(second)
        self.assertEqual(second.of("reject"), [(3, 0, BLOCK)])

    def test_a_hold_ends_a_grace_after_the_peer_that_got_the_piece_announces_it(self):
        first, second = self.fast_peer(1), self.fast_peer(2)
        self.send(first, 3)
        self.uploader.request(second, 3, 0, BLOCK)
        self.announced[first].set(3)
        self.uploader.serve(first)      # any peer's turn notices the announcement
        self.now += ANNOUNCED_GRACE_SECONDS / 2
        self.uploader.serve(first)
        self.assertEqual((second.of("reject"), self.uploader.held(second)), ([], 1))
        self.now += ANNOUNCED_GRACE_SECONDS / 2
        self.uploader.serve(first)
        self.assertLess(ANNOUNCED_GRACE_SECONDS, HOLD_SECONDS)
        self.assertEqual((second.of("reject"), self.uploader.held(second)), ([(3, 0, BLOCK)], 0))
        self.send(second, 3)   # it asks again: served
        self.assertEqual(self.served(second), [(3, 0)])

    def test_a_hold_lasts_while_the_peer_that_got_the_piece_has_not_announced_it(self):
        first, second = self.fast_peer(1), self.fast_peer(2)
        self.send(first, 3)
        self.uploader.request(second, 3, 0, BLOCK)
        self.now += HOLD_SECONDS - 0.1
        self.uploader.serve(first)
        self.uploader.tick(self.now)
        self.assertEqual((second.of("reject"), self.uploader.held(second)), ([], 1))

    def test_a_piece_sent_long_enough_ago_is_served_at_once(self):
        first, second = self.fast_peer(1), self.fast_peer(2)
        self.send(first, 3)
        self.now += HOLD_RECENT_SECONDS
        self.uploader.tick(self.now)
        self.send(second, 3)
        self.assertEqual(self.served(second), [(3, 0)])

    def test_without_fast_or_while_downloading_nothing_is_held(self):
        first, plain = self.fast_peer(1), self.peer(2)
        self.send(first, 3)
        self.send(plain, 3)     # no reject possible: holding would only delay it
        self.assertEqual(self.served(plain), [(3, 0)])
        self.seeding = False
        second = self.fast_peer(3)
        self.send(second, 3)
        self.assertEqual(self.served(second), [(3, 0)])

    def hold_and_reject(self, first, second, index):
        """``first`` gets ``index``; ``second``'s request for it is held, then rejected."""
        self.send(first, index)
        self.uploader.request(second, index, 0, BLOCK)
        self.now += HOLD_SECONDS
        self.uploader.tick(self.now)
        self.assertIn((index, 0, BLOCK), second.of("reject"))
        self.now += HOLD_RECENT_SECONDS   # the next piece starts afresh
        self.uploader.tick(self.now)

    def test_a_peer_that_announced_no_piece_is_never_held(self):
        first, empty = self.fast_peer(1), self.fast_peer(2, announced=())
        self.send(first, 3)
        self.send(empty, 3)       # it trades nothing (yet): holding would only slow it down
        self.assertEqual(self.served(empty), [(3, 0)])

    def test_a_peer_that_never_gets_held_pieces_elsewhere_stops_being_held(self):
        first, second = self.fast_peer(1), self.fast_peer(2)
        for index in range(HOLD_CREDIT):
            self.hold_and_reject(first, second, index)
        self.send(first, 7)
        self.send(second, 7)      # out of credit: served at once, as if the rule did not exist
        self.assertEqual(self.served(second), [(7, 0)])
        self.assertEqual(self.uploader.held(second), 0)

    def test_a_peer_that_gets_held_pieces_elsewhere_keeps_being_held(self):
        first, second = self.fast_peer(1), self.fast_peer(2)
        for index in range(HOLD_CREDIT + 2):
            self.hold_and_reject(first, second, index)
            self.announced[second].set(index)   # it took the piece from another peer
        self.send(first, 7)
        self.uploader.request(second, 7, 0, BLOCK)
        self.assertEqual(self.uploader.held(second), 1)

    def test_a_held_request_cancelled_or_choked_is_rejected_once(self):
        first, second = self.fast_peer(1), self.fast_peer(2)
        self.send(first, 3)
        self.uploader.request(second, 3, 0, BLOCK)
        self.uploader.request(second, 3, BLOCK, BLOCK)
        self.uploader.cancel(second, 3, 0, BLOCK)
        self.uploader.choke(second, True)
        self.assertEqual(second.of("reject"), [(3, 0, BLOCK), (3, BLOCK, BLOCK)])
        self.assertEqual(self.uploader.queued(second), 0)
