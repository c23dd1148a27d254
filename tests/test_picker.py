"""Tests for sta.picker: what gets requested from whom, and what comes back."""

import random
import unittest

from sta.bitfield import Bitfield
from sta.picker import ENDGAME_MAX_PEERS_PER_BLOCK, PickerError, PiecePicker
from sta.wire import BLOCK_SIZE

KIB = 1024


def make_picker(num_pieces, piece_length=64 * KIB, total=None, have=(), seed=0):
    if total is None:
        total = num_pieces * piece_length
    bits = Bitfield.from_indices(num_pieces, have)
    return PiecePicker(num_pieces, piece_length, total, bits, rng=random.Random(seed))


def blocks_of(picker, index):
    size = picker.piece_size(index)
    return [(index, b, min(BLOCK_SIZE, size - b)) for b in range(0, size, BLOCK_SIZE)]


def complete_piece(test, picker, peer, index):
    """Deliver every block of ``index`` from ``peer``; assert piece_done comes exactly once."""
    done = 0
    for _, begin, _ in blocks_of(picker, index):
        wanted, piece_done, _ = picker.block_received(peer, index, begin)
        test.assertTrue(wanted)
        done += piece_done
    test.assertEqual(done, 1)


class ConstructionTests(unittest.TestCase):
    def test_rejects_inconsistent_sizes(self):
        with self.assertRaises(PickerError):
            PiecePicker(3, 100, 400, Bitfield(3))
        with self.assertRaises(PickerError):
            PiecePicker(4, 100, 400, Bitfield(3))
        with self.assertRaises(ValueError):
            PiecePicker(4, 0, 400, Bitfield(4))

    def test_rejects_bitfield_of_other_size(self):
        picker = make_picker(4)
        with self.assertRaises(PickerError):
            picker.peer_added(Bitfield(5))

    def test_index_out_of_range(self):
        picker = make_picker(4)
        with self.assertRaises(PickerError):
            picker.peer_has(4)
        with self.assertRaises(PickerError):
            picker.piece_verified(-1)

    def test_empty_torrent_is_complete(self):
        picker = PiecePicker(0, 16 * KIB, 0, Bitfield(0))
        self.assertTrue(picker.complete)
        self.assertEqual(picker.next_requests("a", Bitfield.full(0), 10), [])


class EligibilityTests(unittest.TestCase):
    def test_never_requests_what_the_peer_lacks_or_we_have(self):
        rng = random.Random(3)
        have = [i for i in range(64) if rng.random() < 0.3]
        picker = make_picker(64, have=have)
        bits = Bitfield.from_indices(64, [i for i in range(64) if rng.random() < 0.5])
        picker.peer_added(bits)
        requests = picker.next_requests("a", bits, 10000)
        pieces = {r[0] for r in requests}
        self.assertTrue(pieces)
        for index in pieces:
            self.assertIn(index, bits)
            self.assertNotIn(index, picker.have)
        self.assertEqual(pieces, {i for i in bits.iter_set() if i not in have})

    def test_peer_with_nothing_useful_gets_nothing(self):
        picker = make_picker(8, have=[0, 1])
        bits = Bitfield.from_indices(8, [0, 1])
        picker.peer_added(bits)
        self.assertFalse(picker.interesting(bits))
        self.assertEqual(picker.next_requests("a", bits, 5), [])
        self.assertTrue(picker.interesting(Bitfield.from_indices(8, [1, 2])))
        self.assertTrue(picker.interesting(Bitfield.full(8)))

    def test_wants_answers_for_have_messages(self):
        picker = make_picker(4, have=[0])
        self.assertFalse(picker.wants(0))
        self.assertTrue(picker.wants(1))
        self.assertFalse(picker.wants(99))
        picker.set_wanted(Bitfield.from_indices(4, [2]))
        self.assertFalse(picker.wants(1))
        self.assertTrue(picker.wants(2))


class OrderTests(unittest.TestCase):
    def test_rarest_piece_first(self):
        picker = make_picker(10, seed=1)
        everyone = Bitfield.full(10)
        common = Bitfield.from_indices(10, [i for i in range(10) if i != 7])
        picker.peer_added(everyone)
        picker.peer_added(common)
        picker.peer_added(common.copy())
        # piece 7 is held by one peer (the seed), every other piece by three
        self.assertEqual(picker.availability(7), 1)
        self.assertEqual(picker.availability(3), 3)
        first = picker.next_requests("seed", everyone, 1)
        self.assertEqual(first[0][0], 7)

    def test_rarest_first_among_partial_peers(self):
        picker = make_picker(6, seed=2)
        a = Bitfield.from_indices(6, [0, 1, 2, 3, 4])
        b = Bitfield.from_indices(6, [0, 1, 2, 4])
        c = Bitfield.from_indices(6, [0, 1, 4, 5])
        for bits in (a, b, c):
            picker.peer_added(bits)
        # availability for a's pieces: 0:3 1:3 2:2 3:1 4:3
        order = []
        for _ in range(5):
            reqs = picker.next_requests("a", a, 4)  # one 64 KiB piece = 4 blocks
            self.assertEqual(len({r[0] for r in reqs}), 1)
            order.append(reqs[0][0])
        self.assertEqual(order[:2], [3, 2])
        self.assertEqual(sorted(order[2:]), [0, 1, 4])

    def test_availability_follows_haves_and_departures(self):
        picker = make_picker(4)
        bits = Bitfield.from_indices(4, [0])
        picker.peer_added(bits)
        bits.set(3)
        picker.peer_has(3)
        self.assertEqual([picker.availability(i) for i in range(4)], [1, 0, 0, 1])
        seed = Bitfield.full(4)
        picker.peer_added(seed)
        self.assertEqual([picker.availability(i) for i in range(4)], [2, 1, 1, 2])
        picker.peer_removed(bits)
        picker.peer_removed(seed)
        self.assertEqual([picker.availability(i) for i in range(4)], [0, 0, 0, 0])

    def test_peer_completing_through_haves_then_leaving(self):
        picker = make_picker(3)
        bits = Bitfield(3)
        picker.peer_added(bits)
        seed = Bitfield.full(3)
        picker.peer_added(seed)
        for i in range(3):
            bits.set(i)
            picker.peer_has(i)
        picker.peer_removed(bits)     # complete now, though counted piece by piece
        self.assertEqual([picker.availability(i) for i in range(3)], [1, 1, 1])
        picker.peer_removed(seed)
        self.assertEqual([picker.availability(i) for i in range(3)], [0, 0, 0])
        lone = Bitfield.from_indices(3, [1])
        picker.peer_added(lone)
        self.assertEqual(picker.next_requests("x", lone, 100)[0][0], 1)

    def test_random_tie_break_spreads_over_equals(self):
        firsts = set()
        for seed in range(40):
            picker = make_picker(64, seed=seed)
            bits = Bitfield.full(64)
            picker.peer_added(bits)
            firsts.add(picker.next_requests("a", bits, 1)[0][0])
        self.assertGreater(len(firsts), 15)

    def test_unshared_only_asks_a_seed_only_for_pieces_no_other_peer_has(self):
        picker = make_picker(8, seed=3)
        seed = Bitfield.full(8)
        picker.peer_added(seed)
        picker.peer_added(Bitfield.from_indices(8, range(6)))   # a peer with pieces 0-5
        got = picker.next_requests("seed", seed, 100, unshared_only=True)
        self.assertEqual({index for index, _, _ in got}, {6, 7})
        self.assertEqual(picker.next_requests("seed", seed, 100, unshared_only=True), [])

    def test_unshared_only_skips_started_pieces_another_peer_has(self):
        picker = make_picker(4, seed=3)
        seed = Bitfield.full(4)
        partial = Bitfield(4)
        picker.peer_added(seed)
        picker.peer_added(partial)
        started = picker.next_requests("seed", seed, 1)[0][0]   # one block of a piece
        partial.set(started)
        picker.peer_has(started)
        got = picker.next_requests("seed", seed, 100, unshared_only=True)
        self.assertNotIn(started, {index for index, _, _ in got})
        rest = picker.next_requests("peer", partial, 100)
        self.assertEqual({index for index, _, _ in rest}, {started})

    def test_a_seed_is_asked_for_anything_without_unshared_only(self):
        picker = make_picker(8, seed=3)
        seed = Bitfield.full(8)
        picker.peer_added(seed)
        picker.peer_added(Bitfield.from_indices(8, range(6)))
        got = picker.next_requests("seed", seed, 100)
        self.assertEqual({index for index, _, _ in got}, set(range(8)))

    def test_same_rng_seed_same_choice(self):
        picks = []
        for _ in range(2):
            picker = make_picker(64, seed=5)
            bits = Bitfield.full(64)
            picker.peer_added(bits)
            picks.append(picker.next_requests("a", bits, 40))
        self.assertEqual(picks[0], picks[1])

    def test_started_pieces_are_finished_first(self):
        picker = make_picker(16, seed=4)
        seed = Bitfield.full(16)
        picker.peer_added(seed)
        first = picker.next_requests("a", seed, 1)
        index = first[0][0]
        second = picker.next_requests("b", seed, 2)
        self.assertEqual(second, [(index, BLOCK_SIZE, BLOCK_SIZE), (index, 2 * BLOCK_SIZE, BLOCK_SIZE)])
        # a peer that lacks the started piece starts another one
        other = Bitfield.from_indices(16, [i for i in range(16) if i != index])
        picker.peer_added(other)
        third = picker.next_requests("c", other, 1)
        self.assertNotEqual(third[0][0], index)
        # and the rest of the first piece still goes out before anything new
        fourth = picker.next_requests("a", seed, 1)
        self.assertEqual(fourth, [(index, 3 * BLOCK_SIZE, BLOCK_SIZE)])


class BlockSizeTests(unittest.TestCase):
    def check_cover(self, picker, total):
        seed = Bitfield.full(picker.num_pieces)
        picker.peer_added(seed)
        reqs = picker.next_requests("a", seed, 10 ** 6)
        spans = sorted((i * picker.piece_size(0) + b, length) for i, b, length in reqs)
        pos = 0
        for start, length in spans:
            self.assertEqual(start, pos)
            self.assertLessEqual(length, BLOCK_SIZE)
            self.assertGreater(length, 0)
            pos += length
        self.assertEqual(pos, total)
        return reqs

    def test_short_last_block_and_last_piece(self):
        picker = PiecePicker(3, 40000, 100000, Bitfield(3), rng=random.Random(0))
        reqs = self.check_cover(picker, 100000)
        by_piece = {}
        for i, b, length in reqs:
            by_piece.setdefault(i, []).append((b, length))
        self.assertEqual(sorted(by_piece[0]), [(0, 16384), (16384, 16384), (32768, 7232)])
        self.assertEqual(sorted(by_piece[2]), [(0, 16384), (16384, 3616)])

    def test_one_piece_torrent(self):
        picker = PiecePicker(1, 256 * KIB, 256 * KIB, Bitfield(1))
        reqs = self.check_cover(picker, 256 * KIB)
        self.assertEqual(len(reqs), 16)

    def test_total_not_a_multiple_of_block_size(self):
        picker = PiecePicker(2, 32 * KIB, 32 * KIB + 1, Bitfield(2))
        reqs = self.check_cover(picker, 32 * KIB + 1)
        self.assertIn((1, 0, 1), reqs)

    def test_piece_length_larger_than_total(self):
        picker = PiecePicker(1, 1024 * KIB, 5000, Bitfield(1))
        reqs = self.check_cover(picker, 5000)
        self.assertEqual(reqs, [(0, 0, 5000)])
        wanted, done, _ = picker.block_received("a", 0, 0)
        self.assertTrue(wanted and done)
        picker.piece_verified(0)
        self.assertTrue(picker.complete)
        self.assertEqual(picker.left_bytes, 0)


class ArrivalTests(unittest.TestCase):
    def setUp(self):
        self.picker = make_picker(4, seed=9)
        self.seed = Bitfield.full(4)
        self.picker.peer_added(self.seed)

    def test_piece_done_exactly_once_and_duplicates_unwanted(self):
        p = self.picker
        reqs = p.next_requests("a", self.seed, 4)
        index = reqs[0][0]
        results = [p.block_received("a", i, b) for i, b, _ in reqs]
        self.assertEqual([r[1] for r in results], [False, False, False, True])
        self.assertEqual(p.block_received("a", index, 0), (False, False, []))
        p.piece_verified(index)
        self.assertIn(index, p.have)
        self.assertEqual(p.block_received("a", index, 0), (False, False, []))
        self.assertEqual(p.outstanding("a"), 0)

    def test_unrequested_and_misaligned_blocks_are_unwanted(self):
        p = self.picker
        self.assertEqual(p.block_received("a", 0, 0), (False, False, []))
        index = p.next_requests("a", self.seed, 1)[0][0]
        self.assertFalse(p.block_received("a", index, 3 * BLOCK_SIZE)[0])  # beyond the cursor
        self.assertFalse(p.block_received("a", index, 1)[0])
        self.assertFalse(p.block_received("a", index, -BLOCK_SIZE)[0])
        self.assertTrue(p.block_received("a", index, 0)[0])

    def test_dropped_request_comes_back(self):
        p = self.picker
        reqs = p.next_requests("a", self.seed, 4)
        index, begin, length = reqs[1]
        p.request_dropped("a", index, begin)
        self.assertEqual(p.outstanding("a"), 3)
        self.assertEqual(p.next_requests("b", self.seed, 1), [(index, begin, length)])

    def test_late_block_after_timeout_is_taken_and_cancels_the_new_request(self):
        p = self.picker
        index, begin, length = p.next_requests("a", self.seed, 1)[0]
        p.request_dropped("a", index, begin)
        self.assertEqual(p.next_requests("b", self.seed, 1), [(index, begin, length)])
        wanted, done, cancels = p.block_received("a", index, begin)
        self.assertTrue(wanted)
        self.assertEqual(cancels, [("b", index, begin, length)])
        self.assertEqual(p.outstanding("b"), 0)

    def test_choke_returns_all_blocks_in_order(self):
        p = self.picker
        reqs = p.next_requests("a", self.seed, 6)
        p.block_received("a", *reqs[0][:2])
        p.requests_dropped("a")
        self.assertEqual(p.outstanding("a"), 0)
        again = p.next_requests("b", self.seed, 5)
        self.assertEqual(again, reqs[1:])

    def test_failed_piece_is_requested_again(self):
        p = self.picker
        reqs = p.next_requests("a", self.seed, 4)
        index = reqs[0][0]
        complete_piece(self, p, "a", index)
        p.piece_failed(index)
        self.assertNotIn(index, p.have)
        again = p.next_requests("b", self.seed, 4)
        self.assertEqual(sorted(again), sorted(reqs))
        complete_piece(self, p, "b", index)
        p.piece_verified(index)
        self.assertIn(index, p.have)

    def test_dropping_unknown_requests_is_harmless(self):
        p = self.picker
        p.requests_dropped("nobody")
        p.request_dropped("nobody", 0, 0)
        p.request_dropped("nobody", 0, 5)
        p.piece_failed(1)  # not in progress: nothing to undo
        self.assertEqual(len(p.next_requests("a", self.seed, 16)), 16)

    def test_timed_out_block_may_go_back_to_the_same_peer(self):
        p = self.picker
        index, begin, length = p.next_requests("a", self.seed, 1)[0]
        p.request_dropped("a", index, begin)
        self.assertEqual(p.next_requests("a", self.seed, 1), [(index, begin, length)])
        self.assertEqual(p.outstanding("a"), 1)

    def test_verifying_a_piece_not_started(self):
        p = self.picker
        p.piece_verified(2)
        p.piece_verified(2)
        reqs = p.next_requests("a", self.seed, 100)
        self.assertNotIn(2, {r[0] for r in reqs})
        self.assertEqual(p.left_bytes, 3 * 64 * KIB)


class EndgameTests(unittest.TestCase):
    def test_no_duplicates_while_fresh_pieces_remain(self):
        picker = make_picker(8)
        seed = Bitfield.full(8)
        picker.peer_added(seed)
        a = picker.next_requests("a", seed, 8)
        b = picker.next_requests("b", seed, 8)
        self.assertFalse(set(a) & set(b))
        self.assertFalse(picker.endgame)

    def test_endgame_duplicates_and_cancels(self):
        picker = PiecePicker(1, 32 * KIB, 32 * KIB, Bitfield(1))
        seed = Bitfield.full(1)
        picker.peer_added(seed)
        picker.peer_added(seed)
        a = picker.next_requests("a", seed, 10)
        self.assertEqual(a, [(0, 0, BLOCK_SIZE), (0, BLOCK_SIZE, BLOCK_SIZE)])
        self.assertTrue(picker.endgame)
        self.assertEqual(picker.next_requests("a", seed, 10), [])  # never twice to one peer
        b = picker.next_requests("b", seed, 10)
        self.assertEqual(b, a[::-1])  # the copies: last asked first
        if ENDGAME_MAX_PEERS_PER_BLOCK == 2:
            self.assertEqual(picker.next_requests("c", seed, 10), [])
        wanted, done, cancels = picker.block_received("a", 0, 0)
        self.assertTrue(wanted)
        self.assertFalse(done)
        self.assertEqual(cancels, [("b", 0, 0, BLOCK_SIZE)])
        wanted, done, cancels = picker.block_received("b", 0, BLOCK_SIZE)
        self.assertTrue(wanted and done)
        self.assertEqual(cancels, [("a", 0, BLOCK_SIZE, BLOCK_SIZE)])
        self.assertEqual(picker.block_received("b", 0, 0), (False, False, []))
        self.assertEqual(picker.outstanding("a") + picker.outstanding("b"), 0)

    def test_endgame_copies_the_blocks_asked_for_last_first(self):
        picker = make_picker(3)
        seed = Bitfield.full(3)
        picker.peer_added(seed)
        picker.peer_added(seed)
        asked = picker.next_requests("a", seed, 100)
        self.assertEqual(len(asked), 3 * 4)  # every block of the three pieces, in order
        self.assertTrue(picker.endgame)
        # a dry peer takes one copy at a time: the block "a" will send last
        self.assertEqual(picker.next_requests("b", seed, 1), [asked[-1]])
        self.assertEqual(picker.next_requests("b", seed, 2), [asked[-2], asked[-3]])

    def test_endgame_duplicate_survives_the_original_choking(self):
        picker = PiecePicker(1, 16 * KIB, 16 * KIB, Bitfield(1))
        seed = Bitfield.full(1)
        picker.peer_added(seed)
        picker.next_requests("a", seed, 1)
        picker.next_requests("b", seed, 1)
        picker.requests_dropped("a")
        # still requested from b: nothing to hand out to a third peer beyond one duplicate
        self.assertEqual(picker.next_requests("c", seed, 1), [(0, 0, BLOCK_SIZE)])
        wanted, done, cancels = picker.block_received("b", 0, 0)
        self.assertTrue(wanted and done)
        self.assertEqual(cancels, [("c", 0, 0, BLOCK_SIZE)])

    def test_no_endgame_while_another_peer_could_serve_a_fresh_piece(self):
        picker = make_picker(2)
        a_bits = Bitfield.from_indices(2, [0])
        b_bits = Bitfield.from_indices(2, [0, 1])
        c_bits = Bitfield.from_indices(2, [0])
        for bits in (a_bits, b_bits, c_bits):
            picker.peer_added(bits)
        self.assertEqual({r[0] for r in picker.next_requests("a", a_bits, 4)}, {0})
        # piece 1 is fresh and b has it: no duplicates of piece 0 for anyone yet
        self.assertEqual(picker.next_requests("c", c_bits, 4), [])
        self.assertFalse(picker.endgame)
        self.assertEqual({r[0] for r in picker.next_requests("b", b_bits, 4)}, {1})
        self.assertTrue(picker.endgame)
        self.assertEqual(len(picker.next_requests("c", c_bits, 10)), 4)


class WantedTests(unittest.TestCase):
    def test_only_wanted_pieces_are_picked_and_complete_means_wanted(self):
        picker = make_picker(6)
        seed = Bitfield.full(6)
        picker.peer_added(seed)
        picker.set_wanted(Bitfield.from_indices(6, [1, 3]))
        self.assertEqual(picker.left_bytes, 2 * 64 * KIB)
        reqs = picker.next_requests("a", seed, 1000)
        self.assertEqual({r[0] for r in reqs}, {1, 3})
        self.assertFalse(picker.interesting(Bitfield.from_indices(6, [0, 2])))
        for index in (1, 3):
            complete_piece(self, picker, "a", index)
            self.assertFalse(picker.complete)
            picker.piece_verified(index)
        self.assertTrue(picker.complete)
        self.assertEqual(picker.left_bytes, 0)
        self.assertFalse(picker.interesting(seed))
        picker.set_wanted(None)
        self.assertFalse(picker.complete)
        self.assertEqual(picker.left_bytes, 4 * 64 * KIB)
        rest = picker.next_requests("a", seed, 1000)
        self.assertEqual({r[0] for r in rest}, {0, 2, 4, 5})

    def test_started_piece_is_finished_after_it_becomes_unwanted(self):
        picker = make_picker(4, seed=1)
        seed = Bitfield.full(4)
        picker.peer_added(seed)
        index = picker.next_requests("a", seed, 1)[0][0]
        picker.set_wanted(Bitfield.from_indices(4, [i for i in range(4) if i != index]))
        rest = picker.next_requests("a", seed, 100)
        self.assertEqual(sum(1 for r in rest if r[0] == index), 3)  # its other blocks
        complete_piece(self, picker, "a", index)
        picker.piece_verified(index)
        self.assertEqual(picker.left_bytes, 3 * 64 * KIB)
        self.assertFalse(picker.complete)

    def test_interesting_follows_verification(self):
        picker = make_picker(2)
        bits = Bitfield.from_indices(2, [1])
        picker.peer_added(bits)
        self.assertTrue(picker.interesting(bits))
        reqs = picker.next_requests("a", bits, 10)
        for i, b, _ in reqs:
            picker.block_received("a", i, b)
        picker.piece_verified(1)
        self.assertFalse(picker.interesting(bits))
        self.assertFalse(picker.wants(1))

    def test_left_bytes_counts_short_last_piece(self):
        picker = PiecePicker(3, 40000, 100000, Bitfield(3))
        self.assertEqual(picker.left_bytes, 100000)
        picker.set_wanted(Bitfield.from_indices(3, [2]))
        self.assertEqual(picker.left_bytes, 20000)


class SimulationTests(unittest.TestCase):
    """Peers with random bitfields deliver in random order, with timeouts and chokes."""

    MAX_STEPS = 200000  # bound on the loop; a run needs a few thousand steps

    def run_swarm(self, seed, num_pieces=37, piece_length=48 * KIB, total=None, fail_rate=0.0):
        rng = random.Random(seed)
        if total is None:
            total = num_pieces * piece_length - 5000
        picker = PiecePicker(num_pieces, piece_length, total, Bitfield(num_pieces),
                             rng=random.Random(seed))
        peers = ["p%d" % k for k in range(4)]
        bits = {p: Bitfield(num_pieces) for p in peers}
        for i in range(num_pieces):  # every piece held by at least one peer
            owners = [p for p in peers if rng.random() < 0.4] or [rng.choice(peers)]
            for p in owners:
                bits[p].set(i)
        for p in peers:
            picker.peer_added(bits[p])
        queues = {p: [] for p in peers}   # what the engine believes it asked each peer
        late = {p: [] for p in peers}     # cancelled blocks that were already on the wire
        received = {}   # (index, begin) -> times accepted since the piece was last reset
        done_count = {}
        verified = set()
        failed_once = set()
        for _ in range(self.MAX_STEPS):
            if picker.complete:
                break
            for p in peers:
                want = 8 - len(queues[p])
                for req in picker.next_requests(p, bits[p], want):
                    index, begin, length = req
                    self.assertIn(index, bits[p])
                    self.assertNotIn(index, picker.have)
                    self.assertNotIn(req, queues[p])
                    self.assertIn(req, blocks_of(picker, index))
                    queues[p].append(req)
            busy = [p for p in peers if queues[p] or late[p]]
            self.assertTrue(busy, "stalled with pieces missing")
            p = rng.choice(busy)
            roll = rng.random()
            if late[p] and (roll < 0.5 or not queues[p]):
                index, begin, _ = late[p].pop(0)
            else:
                q = queues[p]
                if roll < 0.02:
                    picker.requests_dropped(p)            # choke
                    q.clear()
                    continue
                index, begin, _ = q.pop(rng.randrange(min(3, len(q))))
                if roll < 0.06:
                    picker.request_dropped(p, index, begin)  # timeout
                    continue
            wanted, piece_done, cancels = picker.block_received(p, index, begin)
            for other, ci, cb, cl in cancels:
                self.assertNotEqual(other, p)
                self.assertIn((ci, cb, cl), queues[other])
                queues[other].remove((ci, cb, cl))
                if rng.random() < 0.3:  # the cancel crossed the block on the wire
                    late[other].append((ci, cb, cl))
            if wanted:
                key = (index, begin)
                received[key] = received.get(key, 0) + 1
                self.assertEqual(received[key], 1, "block accepted twice")
            if piece_done:
                self.assertTrue(wanted)
                done_count[index] = done_count.get(index, 0) + 1
                if index not in failed_once and rng.random() < fail_rate:
                    failed_once.add(index)
                    picker.piece_failed(index)
                    for b in range(0, picker.piece_size(index), BLOCK_SIZE):
                        del received[(index, b)]
                else:
                    self.assertNotIn(index, verified)
                    verified.add(index)
                    picker.piece_verified(index)
        self.assertTrue(picker.complete)
        self.assertEqual(verified, set(range(num_pieces)))
        expected_blocks = sum(len(blocks_of(picker, i)) for i in range(num_pieces))
        self.assertEqual(len(received), expected_blocks)
        for index in range(num_pieces):
            self.assertEqual(done_count[index], 1 + (index in failed_once))
        self.assertEqual(picker.left_bytes, 0)

    def test_random_swarm_completes_every_block_once(self):
        for seed in range(6):
            with self.subTest(seed=seed):
                self.run_swarm(seed)

    def test_random_swarm_with_hash_failures(self):
        for seed in range(3):
            with self.subTest(seed=seed):
                self.run_swarm(100 + seed, fail_rate=0.3)

    def test_random_swarm_one_short_piece(self):
        self.run_swarm(7, num_pieces=1, piece_length=256 * KIB, total=70000)


if __name__ == "__main__":
    unittest.main()
