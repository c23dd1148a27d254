"""Tests for sta.smartban: who is blamed for a piece that failed its hash check."""

import hashlib
import unittest

from sta.smartban import BLOCK_SIZE, SmartBan

A, B, C = ("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.3", 3)


def digests(*blocks):
    return [hashlib.sha1(b).digest() for b in blocks]


GOOD = [bytes([n]) * BLOCK_SIZE for n in range(4)]
BAD = b"\xff" * BLOCK_SIZE


def deliver(ban, index, senders):
    for block, sender in enumerate(senders):
        ban.block_from(index, block * BLOCK_SIZE, sender)


class SingleSenderTests(unittest.TestCase):
    def test_a_piece_sent_by_one_peer_that_fails_strikes_that_peer(self):
        ban = SmartBan()
        deliver(ban, 0, [A, A, A])
        sources, alone = ban.piece_failed(0, digests(GOOD[0], BAD, GOOD[2]))
        self.assertEqual(sources, {A})
        self.assertEqual(alone, A)
        self.assertFalse(ban.suspect(0))

    def test_strikes_add_up_per_host_whatever_the_port(self):
        ban = SmartBan()
        self.assertEqual(ban.strike(A), 1)
        self.assertEqual(ban.strike((A[0], 51413)), 2)  # the same host, reconnected
        self.assertEqual(ban.strike(B), 1)
        self.assertEqual((ban.strikes(A), ban.strikes(B), ban.strikes(C)), (2, 1, 0))

    def test_a_piece_that_passes_first_time_blames_nobody(self):
        ban = SmartBan()
        deliver(ban, 0, [A, B])
        self.assertEqual(ban.piece_passed(0, None), set())
        self.assertEqual((ban.strikes(A), ban.strikes(B)), (0, 0))


class MixedSenderTests(unittest.TestCase):
    def test_mixed_senders_are_not_struck_when_the_piece_fails(self):
        ban = SmartBan()
        deliver(ban, 3, [A, B, A])
        sources, alone = ban.piece_failed(3, digests(GOOD[0], BAD, GOOD[2]))
        self.assertEqual(sources, {A, B})
        self.assertIsNone(alone)
        self.assertTrue(ban.suspect(3))

    def test_only_the_sender_of_a_differing_block_is_named_once_the_piece_passes(self):
        ban = SmartBan()
        deliver(ban, 3, [A, B, A, C])
        ban.piece_failed(3, digests(GOOD[0], BAD, GOOD[2], GOOD[3]))
        deliver(ban, 3, [C, C, C, C])  # fetched again, this time right
        liars = ban.piece_passed(3, digests(*GOOD))
        self.assertEqual(liars, {B})
        self.assertFalse(ban.suspect(3))

    def test_an_honest_peer_sharing_a_piece_with_a_liar_is_never_named(self):
        ban = SmartBan()
        for _ in range(5):
            deliver(ban, 1, [A, B])
            ban.piece_failed(1, digests(GOOD[0], BAD))
            deliver(ban, 1, [A, A])
            self.assertNotIn(A, ban.piece_passed(1, digests(GOOD[0], GOOD[1])))
        self.assertEqual(ban.strikes(A), 0)

    def test_a_passing_piece_without_block_digests_names_nobody(self):
        ban = SmartBan()
        deliver(ban, 2, [A, B])
        ban.piece_failed(2, digests(GOOD[0], BAD))
        self.assertEqual(ban.piece_passed(2, None), set())

    def test_a_failure_without_digests_keeps_no_suspects(self):
        ban = SmartBan()
        deliver(ban, 2, [A, B])
        self.assertEqual(ban.piece_failed(2, None), ({A, B}, None))
        self.assertFalse(ban.suspect(2))


class BookkeepingTests(unittest.TestCase):
    def test_the_last_sender_of_a_block_is_the_one_remembered(self):
        ban = SmartBan()
        ban.block_from(0, 0, A)
        ban.block_from(0, 0, B)
        self.assertEqual(ban.piece_failed(0, None), ({B}, B))

    def test_a_dropped_piece_forgets_its_senders(self):
        ban = SmartBan()
        deliver(ban, 0, [A])
        ban.piece_dropped(0)
        self.assertEqual(ban.piece_failed(0, None), (set(), None))

    def test_pieces_are_kept_apart(self):
        ban = SmartBan()
        deliver(ban, 0, [A])
        deliver(ban, 1, [B])
        self.assertEqual(ban.piece_failed(1, None), ({B}, B))
        self.assertEqual(ban.piece_failed(0, None), ({A}, A))


if __name__ == "__main__":
    unittest.main()
