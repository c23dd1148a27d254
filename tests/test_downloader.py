"""Tests for sta.downloader: the request pipeline, snubs and timeouts, blocks in, verdicts out."""

import random
import unittest

from sta.bitfield import Bitfield
from sta.downloader import (FEEDERS_CHECK_INTERVAL, MIN_OUTSTANDING_REQUESTS,
                            REQUEST_QUEUE_SECONDS, REQUEST_TIMEOUT, SNUB_TIMEOUT,
                            UNSHARED_QUEUE_BLOCKS, Downloader)
from sta.memstorage import MemoryStorage
from sta.picker import BLOCK_SIZE, PiecePicker
from tests.fakes import FakeConnection, FakeHost, blocks_of, make_torrent

KIB = 1024


class Kit(unittest.TestCase):
    # 16 pieces of 64 KiB, the last 1000 bytes short: 64 blocks, the last one partial.
    LENGTH = 16 * 64 * KIB - 1000
    PIECE = 64 * KIB

    def setUp(self):
        self.host = FakeHost(self)
        self.torrent = make_torrent(self.LENGTH, self.PIECE)
        info = self.info = self.torrent.info
        self.storage = MemoryStorage(info, readonly=getattr(self, "readonly", False))
        self.storage.check()
        self.picker = PiecePicker(info.num_pieces, info.piece_length, info.length,
                                  Bitfield(info.num_pieces), rng=random.Random(3))
        self.verified, self.errors, self.strikes = [], [], []
        self.dl = self.downloader()
        self.bits = {}

    def downloader(self, backlog=None, on_room=lambda: None):
        return Downloader(
            "t", self.info, self.storage, self.picker,
            run_in_pool=lambda call: self.host.loop.run_in_executor(self.host.hash_pool, call),
            on_verified=self.verified.append, on_error=self.errors.append,
            on_strike=lambda address, reason: self.strikes.append(address), on_room=on_room,
            backlog=backlog)

    def peer(self, n=1, pieces=None, reqq=250, now=0.0):
        """An unchoked peer we are interested in, with every piece unless ``pieces`` says."""
        conn = FakeConnection(("10.0.0.%d" % n, 6881), reqq=reqq)
        conn.peer_choking = False
        conn.am_interested = True
        count = self.info.num_pieces
        bits = (Bitfield.full(count) if pieces is None
                else Bitfield.from_indices(count, pieces))
        self.bits[conn] = bits
        self.picker.peer_added(bits)
        self.dl.peer_joined(conn, now)
        return conn

    def fill(self, conn, now=0.0):
        self.dl.fill(conn, self.bits[conn], now)

    def tick(self, conn, now):
        self.dl.tick(conn, self.bits[conn], now)

    def deliver(self, conn, index, begin, data=None, now=1.0):
        if data is None:
            data = self.torrent.block(index, begin, min(BLOCK_SIZE,
                                                        self.info.piece_size(index) - begin))
        conn.last_received = now
        self.dl.block(conn, index, begin, data)

    def deliver_piece(self, conn, index, corrupt=(), now=1.0):
        for _, begin, length in blocks_of(self.info, index):
            data = self.torrent.block(index, begin, length)
            if begin // BLOCK_SIZE in corrupt:
                data = bytes(length)
            self.deliver(conn, index, begin, data, now)

    def settle(self):
        self.host.run(self.dl.settle(5.0))


class SeedSharingTests(Kit):
    def test_a_lone_seed_is_asked_for_anything(self):
        seed = self.peer(1)
        self.fill(seed)
        self.assertEqual(self.dl.in_flight(seed), MIN_OUTSTANDING_REQUESTS)

    def test_while_a_peer_feeds_us_a_seed_is_asked_only_for_unshared_pieces(self):
        self.fill(self.peer(2, pieces=range(0, 14)))
        seed = self.peer(1)
        self.fill(seed)
        self.assertEqual({index for index, _, _ in seed.requested()}, {14, 15})
        self.assertLessEqual(self.dl.in_flight(seed), UNSHARED_QUEUE_BLOCKS)

    def test_a_seed_is_asked_for_shared_pieces_again_once_the_feeding_peer_chokes_us(self):
        other = self.peer(2, pieces=range(0, 14))
        seed = self.peer(1)
        self.fill(other)
        self.fill(seed)
        self.assertFalse({index for index, _, _ in seed.requested()} & set(range(14)))
        other.peer_choking = True
        self.dl.choked(other)
        self.fill(seed, now=FEEDERS_CHECK_INTERVAL)
        self.assertTrue({index for index, _, _ in seed.requested()} & set(range(14)))

    def test_a_peer_that_chokes_us_does_not_count_as_feeding_us(self):
        other = self.peer(2, pieces=range(0, 14))
        other.peer_choking = True
        seed = self.peer(1)
        self.fill(other)
        self.fill(seed)
        self.assertEqual(self.dl.in_flight(seed), MIN_OUTSTANDING_REQUESTS)
        self.assertTrue({index for index, _, _ in seed.requested()} & set(range(14)))


class PipelineTests(Kit):
    def test_a_new_peer_gets_the_minimum_pipeline(self):
        conn = self.peer()
        self.fill(conn)
        self.assertEqual(self.dl.in_flight(conn), MIN_OUTSTANDING_REQUESTS)
        self.assertEqual(len(conn.requested()), MIN_OUTSTANDING_REQUESTS)

    def test_slow_start_adds_one_request_per_block_received(self):
        conn = self.peer()
        self.fill(conn)
        for index, begin, _ in conn.requested()[:4]:
            self.deliver(conn, index, begin)
        self.fill(conn)
        self.assertEqual(self.dl.in_flight(conn), MIN_OUTSTANDING_REQUESTS + 4)

    def test_small_top_ups_wait_for_a_quarter_of_the_pipeline(self):
        conn = self.peer()
        self.fill(conn)
        index, begin, _ = conn.requested()[0]
        self.deliver(conn, index, begin)
        self.fill(conn)
        self.assertEqual(len(conn.of("requests")), 1)
        self.assertEqual(self.dl.in_flight(conn), MIN_OUTSTANDING_REQUESTS - 1)

    def test_slow_start_ends_when_the_rate_stops_growing(self):
        conn = self.peer()
        self.fill(conn)
        conn.downloaded = BLOCK_SIZE
        conn.down_rate = float(BLOCK_SIZE)
        self.tick(conn, 1.0)
        self.tick(conn, 2.0)  # same rate: slow start is over
        before = self.dl.in_flight(conn)
        for index, begin, _ in conn.requested()[:8]:
            self.deliver(conn, index, begin, now=2.0)
        self.fill(conn, 2.0)
        self.assertEqual(self.dl.in_flight(conn), before)

    def test_the_pipeline_covers_the_rate_for_request_queue_seconds(self):
        conn = self.peer()
        blocks_per_second = 15
        conn.down_rate = float(blocks_per_second * BLOCK_SIZE)
        self.tick(conn, 1.0)
        self.assertEqual(self.dl.in_flight(conn),
                         int(blocks_per_second * REQUEST_QUEUE_SECONDS))

    def test_the_pipeline_never_exceeds_the_peers_reqq(self):
        conn = self.peer(reqq=40)
        conn.down_rate = 100.0 * BLOCK_SIZE  # would want 300 requests
        self.tick(conn, 1.0)
        self.assertEqual(self.dl.in_flight(conn), 40)

    # A peer whose `reqq` is below MIN_OUTSTANDING_REQUESTS still gets 16 requests: _Fetch
    # starts at MIN_OUTSTANDING_REQUESTS whatever the peer said, and tick() applies
    # max(MIN_OUTSTANDING_REQUESTS, min(limit, ...)), so the minimum wins over the peer's limit.
    def test_a_peer_with_a_small_reqq_gets_no_more_requests_than_it_accepts(self):
        conn = self.peer(reqq=4)
        self.fill(conn)
        self.assertLessEqual(self.dl.in_flight(conn), 4)
        self.tick(conn, 1.0)
        self.assertLessEqual(self.dl.in_flight(conn), 4)

    def test_nothing_is_requested_of_a_choking_peer(self):
        conn = self.peer()
        conn.peer_choking = True
        self.fill(conn)
        self.assertEqual(conn.requested(), [])

    def test_a_choke_or_a_departure_returns_every_request_to_the_pool(self):
        for n, drop in enumerate((self.dl.choked, self.dl.peer_left)):
            with self.subTest(drop=drop.__name__):
                first = self.peer(2 * n + 1, pieces=[n])
                self.fill(first)
                drop(first)
                self.assertEqual(self.dl.in_flight(first), 0)
                second = self.peer(2 * n + 2, pieces=[n])
                self.fill(second)
                self.assertEqual(sorted(second.requested()), blocks_of(self.info, n))

    def test_a_peer_with_nothing_we_want_is_told_we_are_not_interested(self):
        conn = self.peer(pieces=[])
        self.fill(conn)
        self.assertEqual(conn.of("interested"), [(False,)])
        self.assertFalse(conn.am_interested)

    def test_endgame_asks_a_second_peer_for_one_block_at_a_time(self):
        first = self.peer(1, pieces=[3])
        self.fill(first)
        self.assertEqual(sorted(first.requested()), blocks_of(self.info, 3))
        second = self.peer(2, pieces=[3])
        self.fill(second)
        self.assertTrue(self.picker.endgame)
        self.assertEqual(self.dl.in_flight(second), 1)
        self.fill(second)
        self.assertEqual(self.dl.in_flight(second), 1)
        # The duplicate arrives first: the original request is cancelled.
        index, begin, length = second.requested()[0]
        self.deliver(second, index, begin)
        self.assertEqual(first.of("cancel"), [(index, begin, length)])


class TimerTests(Kit):
    def test_a_peer_silent_for_snub_timeout_is_snubbed_and_its_requests_freed(self):
        slow = self.peer(1, pieces=range(8))
        self.fill(slow)
        asked = set(slow.requested())
        self.tick(slow, SNUB_TIMEOUT - 1)
        self.assertFalse(self.dl.snubbed(slow))
        self.tick(slow, SNUB_TIMEOUT + 1)
        self.assertTrue(self.dl.snubbed(slow))
        self.assertEqual(self.dl.in_flight(slow), 1)  # one request at a time from now on
        fast = self.peer(2, pieces=range(8))
        self.fill(fast)
        self.assertEqual(len(asked & set(fast.requested())), MIN_OUTSTANDING_REQUESTS - 1)

    def test_a_block_from_a_snubbed_peer_lifts_the_snub(self):
        conn = self.peer()
        self.fill(conn)
        self.tick(conn, SNUB_TIMEOUT + 1)
        index, begin, _ = conn.requested()[-1]
        self.deliver(conn, index, begin, now=SNUB_TIMEOUT + 2)
        self.assertFalse(self.dl.snubbed(conn))

    # The snub clock runs from the peer's last block, or from its joining when it has sent none
    # (_Fetch.last_block), never from when the requests went out: a peer that kept us choked
    # for longer than SNUB_TIMEOUT is snubbed one tick after it unchokes us and gets its first
    # requests. libtorrent requires both the last piece and the last request to be older than
    # the timeout.
    def test_a_peer_is_not_snubbed_for_the_time_it_kept_us_choked(self):
        conn = self.peer(now=0.0)
        conn.peer_choking = True
        self.tick(conn, 50.0)
        conn.peer_choking = False  # unchoked at last: the first requests go out
        self.fill(conn, 100.0)
        self.assertEqual(self.dl.in_flight(conn), MIN_OUTSTANDING_REQUESTS)
        self.tick(conn, 101.0)
        self.assertFalse(self.dl.snubbed(conn))
        self.assertEqual(self.dl.in_flight(conn), MIN_OUTSTANDING_REQUESTS)

    def test_requests_unanswered_for_request_timeout_are_cancelled_and_asked_again(self):
        conn = self.peer()
        self.fill(conn, 0.0)
        first = conn.requested()
        index, begin, _ = first[0]
        self.deliver(conn, index, begin, now=REQUEST_TIMEOUT - 5)  # data still flows
        self.tick(conn, REQUEST_TIMEOUT + 1)
        self.assertFalse(self.dl.snubbed(conn))
        self.assertEqual(conn.of("cancel"), first[1:])
        again = conn.requested()[len(first):]
        self.assertTrue(set(first[1:]) <= set(again))

    def test_requests_younger_than_the_timeout_are_kept(self):
        conn = self.peer()
        self.fill(conn, 0.0)
        index, begin, _ = conn.requested()[0]
        self.deliver(conn, index, begin, now=10.0)
        self.tick(conn, REQUEST_TIMEOUT - 1)
        self.assertEqual(conn.of("cancel"), [])


class BlockTests(Kit):
    def test_a_block_that_does_not_fit_closes_the_peer(self):
        last = self.info.num_pieces - 1
        last_size = self.info.piece_size(last)
        cases = [
            (self.info.num_pieces, 0, BLOCK_SIZE),                  # no such piece
            (0, 100, BLOCK_SIZE),                                   # not on a block boundary
            (0, 0, 1000),                                           # short block
            (0, self.PIECE, BLOCK_SIZE),                            # past the piece
            (last, last_size - last_size % BLOCK_SIZE, BLOCK_SIZE),  # the last block is short
        ]
        for n, (index, begin, size) in enumerate(cases):
            with self.subTest(index=index, begin=begin, size=size):
                conn = self.peer(10 + n)
                self.dl.block(conn, index, begin, bytes(size))
                self.assertTrue(conn.closed)
                self.assertIn("does not fit", conn.close_reason)
        self.assertEqual(self.dl.downloaded, 0)

    def test_a_duplicate_block_is_counted_as_wasted(self):
        conn = self.peer()
        self.fill(conn)
        index, begin, _ = conn.requested()[0]
        self.deliver(conn, index, begin)
        self.deliver(conn, index, begin)
        self.assertEqual(self.dl.downloaded, 2 * BLOCK_SIZE)
        self.assertEqual(self.dl.wasted, BLOCK_SIZE)
        self.assertEqual(self.dl.contributions, {conn.address: BLOCK_SIZE})
        self.assertFalse(conn.closed)

    def test_an_unrequested_block_is_wasted(self):
        conn = self.peer()
        self.deliver(conn, 5, 0)
        self.assertEqual(self.dl.wasted, BLOCK_SIZE)
        self.assertEqual(self.dl.contributions, {})

    def test_a_block_from_an_unknown_peer_is_wasted(self):
        self.dl.block(FakeConnection(), 0, 0, bytes(BLOCK_SIZE))
        self.assertEqual(self.dl.wasted, BLOCK_SIZE)
        self.assertEqual(self.dl.downloaded, 0)

    def test_a_block_that_arrives_through_another_peer_cancels_the_first_request(self):
        first = self.peer(1, pieces=[0])
        second = self.peer(2, pieces=[0])
        self.fill(first)
        index, begin, length = first.requested()[0]
        self.deliver(second, index, begin)
        self.assertEqual(first.of("cancel"), [(index, begin, length)])
        self.assertEqual(self.dl.in_flight(first), len(first.requested()) - 1)


class VerdictTests(Kit):
    def test_a_whole_piece_is_verified_recorded_and_reported(self):
        conn = self.peer(pieces=[2])
        self.fill(conn)
        self.deliver_piece(conn, 2)
        self.settle()
        self.assertEqual(self.verified, [2])
        self.assertIn(2, self.storage.verified)
        self.assertIn(2, self.picker.have)
        self.assertEqual(self.storage.read_block(2, 0, self.PIECE), self.torrent.piece(2))
        self.assertEqual(self.strikes, [])
        self.assertEqual(self.dl.wasted, 0)

    def test_the_short_last_piece_is_verified(self):
        last = self.info.num_pieces - 1
        conn = self.peer(pieces=[last])
        self.fill(conn)
        self.deliver_piece(conn, last)
        self.settle()
        self.assertEqual(self.verified, [last])

    def test_a_corrupt_piece_from_one_peer_strikes_it_and_is_fetched_again(self):
        conn = self.peer(pieces=[1])
        self.fill(conn)
        with self.assertLogs("sta.downloader", "WARNING") as logs:
            self.deliver_piece(conn, 1, corrupt=[2])
            self.settle()
        self.assertIn("piece 1 failed the hash check", logs.output[0])
        self.assertEqual(self.verified, [])
        self.assertEqual(self.strikes, [conn.address])
        self.assertNotIn(1, self.storage.verified)
        self.assertEqual(self.dl.wasted, self.PIECE)
        self.fill(conn)
        self.assertEqual(sorted(conn.requested()[-4:]), blocks_of(self.info, 1))

    def test_only_the_sender_of_the_corrupt_block_is_struck_once_the_piece_passes(self):
        honest, liar, other = (self.peer(n, pieces=[0]) for n in (1, 2, 3))
        self.fill(honest)
        blocks = blocks_of(self.info, 0)
        for index, begin, length in blocks[:2]:
            self.deliver(honest, index, begin)
        for index, begin, length in blocks[2:]:
            data = bytes(length) if begin == blocks[3][1] else None
            self.deliver(liar, index, begin, data)
        with self.assertLogs("sta.downloader", "WARNING"):
            self.settle()
        self.assertEqual(self.strikes, [])  # two senders: nobody is blamed yet
        self.fill(other)
        self.deliver_piece(other, 0)
        self.settle()
        self.assertEqual(self.verified, [0])
        self.assertEqual(self.strikes, [liar.address])

    def test_a_piece_finished_after_stop_is_still_recorded(self):
        conn = self.peer(pieces=[4])
        self.fill(conn)
        self.deliver_piece(conn, 4)
        self.dl.stop()
        self.settle()
        self.assertIn(4, self.storage.verified)

    def test_blocks_after_stop_are_dropped(self):
        conn = self.peer(pieces=[4])
        self.fill(conn)
        self.dl.stop()
        self.deliver_piece(conn, 4)
        self.settle()
        self.assertEqual(self.dl.downloaded, 0)
        self.assertEqual(self.dl.wasted, self.PIECE)
        self.assertEqual(self.verified, [])
        self.fill(conn)
        self.assertEqual(len(conn.of("requests")), 1)


class WriteErrorTests(Kit):
    readonly = True

    def test_a_storage_error_while_writing_a_piece_is_reported(self):
        conn = self.peer(pieces=[0])
        self.fill(conn)
        self.deliver_piece(conn, 0)
        self.settle()
        self.assertEqual(len(self.errors), 1)
        self.assertEqual(self.verified, [])


if __name__ == "__main__":
    unittest.main()


class FastExtensionTests(Kit):
    """BEP 6 seen from the downloader: a choke keeps requests until each is answered, rejects
    return blocks to the pool, allowed-fast pieces are fetched while choked."""

    def fast_peer(self, n=1, pieces=None):
        conn = self.peer(n, pieces)
        conn.fast = True
        return conn

    def test_a_choke_keeps_requests_until_a_reject_returns_each(self):
        conn = self.fast_peer()
        self.fill(conn)
        asked = conn.of("requests")[0][0]
        conn.peer_choking = True
        self.dl.choked(conn)
        self.assertEqual(self.dl.in_flight(conn), len(asked))
        index, begin, _ = asked[0]
        self.dl.rejected(conn, index, begin)
        self.assertEqual(self.dl.in_flight(conn), len(asked) - 1)
        other = self.peer(2)
        self.fill(other)
        self.assertIn((index, begin), [(i, b) for i, b, _ in other.of("requests")[0][0]])

    def test_a_choked_peer_is_asked_only_for_its_allowed_fast_pieces(self):
        conn = self.fast_peer()
        conn.peer_choking = True
        self.fill(conn)
        self.assertEqual(conn.of("requests"), [])
        self.dl.allowed_fast(conn, 9)
        self.fill(conn)
        [(blocks,)] = conn.of("requests")
        self.assertEqual({index for index, _, _ in blocks}, {9})

    def test_allowed_fast_indices_out_of_range_are_ignored(self):
        conn = self.fast_peer()
        conn.peer_choking = True
        self.dl.allowed_fast(conn, 10_000)
        self.fill(conn)
        self.assertEqual(conn.of("requests"), [])


class DiskBackpressureTests(Kit):
    """Pieces waiting for the hashing pool hold new requests back, so a slow disk bounds what
    sits in memory (and what a crash throws away); the pool catching up refills the pipes."""

    def test_requests_pause_while_verified_pieces_wait_for_the_pool_and_resume_after(self):
        rooms = []
        self.dl._on_room = lambda: rooms.append(True)
        self.dl._pending_limit = 2 * self.PIECE   # two pieces, as for a small torrent
        conn = self.peer()
        self.fill(conn)
        [(asked,)] = conn.of("requests")
        pieces = sorted({index for index, _, _ in asked})
        self.assertGreaterEqual(len(pieces), 2)
        for index, begin, _ in asked:              # whole pieces arrive, handed to the pool
            self.deliver(conn, index, begin)
        self.fill(conn)
        self.assertEqual(len(conn.of("requests")), 1, "requested while the pool is full")
        self.settle()
        self.assertEqual(rooms, [True])
        self.fill(conn)
        self.assertEqual(len(conn.of("requests")), 2)
        self.assertEqual(sorted(self.verified), pieces)

    def test_torrents_of_one_node_share_the_bound_and_all_refill_after(self):
        backlog = self.host.disk_backlog
        rooms = []
        self.dl = self.downloader(backlog, on_room=lambda: rooms.append("first"))
        self.dl._pending_limit = 2 * self.PIECE
        conn = self.peer()
        self.fill(conn)
        [(asked,)] = conn.of("requests")
        for index, begin, _ in asked:              # the first torrent's pieces fill the pool
            self.deliver(conn, index, begin)
        self.assertGreaterEqual(backlog.bytes, 2 * self.PIECE)
        self.fill(conn)
        self.assertEqual(len(conn.of("requests")), 1)
        other_info = make_torrent(self.LENGTH, self.PIECE).info
        other_picker = PiecePicker(other_info.num_pieces, other_info.piece_length,
                                   other_info.length, Bitfield(other_info.num_pieces))
        other = Downloader(
            "u", other_info, MemoryStorage(other_info), other_picker,
            run_in_pool=lambda call: self.host.loop.run_in_executor(self.host.hash_pool, call),
            on_verified=lambda index: None, on_error=self.errors.append,
            on_strike=lambda address, reason: None, on_room=lambda: rooms.append("second"),
            backlog=backlog)
        other._pending_limit = 2 * self.PIECE
        other_conn = FakeConnection(("10.0.0.9", 6881))
        other_conn.peer_choking, other_conn.am_interested = False, True
        full = Bitfield.full(other_info.num_pieces)
        other_picker.peer_added(full)
        other.peer_joined(other_conn, 0.0)
        other.fill(other_conn, full, 0.0)
        self.assertEqual(other_conn.of("requests"), [], "asked while the node's pool is full")
        self.settle()
        self.assertEqual(backlog.bytes, 0)
        self.assertEqual(sorted(rooms), ["first", "second"])
        other.fill(other_conn, full, 0.0)
        self.assertEqual(len(other_conn.of("requests")), 1)
