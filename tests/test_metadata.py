"""Tests for sta.metadata: fetching an info dictionary from peers (BEP 9), liars included."""

from __future__ import annotations

import hashlib
import random
import unittest
from typing import Dict, List, Optional, Tuple

from sta import bencode, metadata, ut_metadata
from sta.metadata import DataResult, MetadataFetcher
from sta.ut_metadata import METADATA_PIECE_SIZE as PIECE_SIZE, MetadataServer


def make_info(hashes: int, name: str = "data") -> bytes:
    """A valid info dictionary; each piece hash adds 20 bytes, so 820 hashes is one 16 KiB
    metadata piece and 4000 hashes about five."""
    rng = random.Random(hashes)
    pieces = bytes(rng.getrandbits(8) for _ in range(20 * hashes))
    return bencode.encode({"name": name, "piece length": 16384, "pieces": pieces,
                           "length": 16384 * hashes})


INFO = make_info(4000)            # 80 KB: 5 metadata pieces, the last one short
INFO_HASH = hashlib.sha1(INFO).digest()
SIZE = len(INFO)
PIECES = -(-SIZE // PIECE_SIZE)


def piece_of(raw: bytes, index: int) -> bytes:
    return raw[index * PIECE_SIZE:(index + 1) * PIECE_SIZE]


def corrupt(block: bytes) -> bytes:
    return bytes([block[0] ^ 0xFF]) + block[1:]


class Swarm:
    """Drives a fetcher against simulated peers. ``lies`` maps a peer to the pieces it corrupts
    (None: all of them); answers are delivered in a random order."""

    def __init__(self, fetcher: MetadataFetcher, peers: List[str], rng: random.Random,
                 lies: Optional[Dict[str, Optional[set]]] = None, raw: bytes = INFO) -> None:
        self.fetcher = fetcher
        self.peers = list(peers)
        self.rng = rng
        self.lies = lies or {}
        self.raw = raw
        self.pending: List[Tuple[str, int]] = []
        self.asked: Dict[str, List[int]] = {p: [] for p in peers}
        self.now = 0.0
        for peer in peers:
            if not fetcher.peer_offers(peer, len(raw)):
                raise AssertionError(f"{peer} refused: {fetcher.reason(peer)}")

    def answer(self, peer: str, index: int) -> bytes:
        block = piece_of(self.raw, index)
        lies = self.lies.get(peer, set())
        if peer in self.lies and (lies is None or index in lies):
            block = corrupt(block)
        return block

    def run(self, max_steps: int = 2000) -> Optional[bytes]:
        for _ in range(max_steps):
            for peer in self.peers:
                if peer in self.fetcher.bad_peers():
                    self.fetcher.peer_gone(peer)
                    self.peers.remove(peer)
                    self.pending = [(p, i) for p, i in self.pending if p != peer]
            if self.fetcher.done is not None:
                return self.fetcher.done
            for peer in self.peers:
                for index in self.fetcher.next_requests(peer, self.now):
                    self.pending.append((peer, index))
                    self.asked[peer].append(index)
            if not self.pending:
                self.now += 1.0
                continue
            peer, index = self.pending.pop(self.rng.randrange(len(self.pending)))
            self.fetcher.on_data(peer, index, len(self.raw), self.answer(peer, index), self.now)
            self.now += 0.01
        return self.fetcher.done


# ---------------------------------------------------------------------------------------------
# Fetching from honest peers


class FetchTest(unittest.TestCase):
    def test_fetch_over_several_peers_in_random_order_completes(self) -> None:
        for seed in range(20):
            fetcher = MetadataFetcher(INFO_HASH)
            swarm = Swarm(fetcher, ["a", "b", "c"], random.Random(seed))
            self.assertEqual(swarm.run(), INFO, f"seed {seed}")
            self.assertEqual(fetcher.bad_peers(), {})
            self.assertGreater(sum(1 for p in swarm.asked.values() if p), 1)
            self.assertEqual(fetcher.progress(), 1.0)

    def test_fetcher_and_servers_talk_through_wire_messages(self) -> None:
        servers = {name: MetadataServer(INFO) for name in ("a", "b")}
        fetcher = MetadataFetcher(INFO_HASH)
        for name, server in servers.items():
            self.assertTrue(fetcher.peer_offers(name, server.metadata_size))
        for step in range(20):
            for name, server in servers.items():
                for index in fetcher.next_requests(name, float(step)):
                    request = ut_metadata.decode_metadata(ut_metadata.metadata_request(index))
                    answer = ut_metadata.decode_metadata(server.answer(request))
                    fetcher.on_data(name, answer.piece, answer.total_size, answer.data,
                                    float(step))
            if fetcher.done is not None:
                break
        self.assertEqual(fetcher.done, INFO)

    def test_pieces_are_spread_over_peers(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        for peer in "abcde":
            fetcher.peer_offers(peer, SIZE)
        asked = [fetcher.next_requests(peer, 0.0) for peer in "abcde"]
        self.assertEqual(sorted(i for pieces in asked for i in pieces), list(range(PIECES)))
        self.assertTrue(all(len(pieces) == 1 for pieces in asked))

    def test_one_peer_gets_at_most_max_outstanding(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("a", SIZE)
        self.assertEqual(fetcher.next_requests("a", 0.0, max_outstanding=2), [0, 1])
        self.assertEqual(fetcher.next_requests("a", 0.1, max_outstanding=2), [])
        fetcher.on_data("a", 0, SIZE, piece_of(INFO, 0), 0.2)
        self.assertEqual(fetcher.next_requests("a", 0.3, max_outstanding=2), [2])

    def test_last_piece_completes_and_returns_done(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("a", SIZE)
        results = []
        for _ in range(PIECES):
            for index in fetcher.next_requests("a", 0.0, max_outstanding=PIECES):
                results.append(fetcher.on_data("a", index, SIZE, piece_of(INFO, index), 0.0))
        self.assertEqual(results[-1], DataResult.DONE)
        self.assertTrue(all(r == DataResult.ACCEPTED for r in results[:-1]))
        self.assertEqual(fetcher.done, INFO)
        self.assertIn("complete", fetcher.summary())
        self.assertEqual(fetcher.on_data("a", 0, SIZE, piece_of(INFO, 0), 0.0),
                         DataResult.IGNORED)
        self.assertFalse(fetcher.peer_offers("b", SIZE))

    def test_one_piece_dictionary(self) -> None:
        raw = make_info(10)
        fetcher = MetadataFetcher(hashlib.sha1(raw).digest())
        fetcher.peer_offers("a", len(raw))
        self.assertEqual(fetcher.next_requests("a", 0.0), [0])
        self.assertEqual(fetcher.on_data("a", 0, len(raw), raw, 0.0), DataResult.DONE)
        self.assertEqual(fetcher.done, raw)

    def test_peer_without_metadata_size_is_probed_for_piece_zero(self) -> None:
        raw = make_info(10)
        fetcher = MetadataFetcher(hashlib.sha1(raw).digest())
        self.assertTrue(fetcher.peer_offers("a", None))
        self.assertEqual(fetcher.next_requests("a", 0.0), [0])
        self.assertEqual(fetcher.next_requests("a", 0.1), [])  # one probe at a time
        self.assertEqual(fetcher.on_data("a", 0, len(raw), raw, 0.2), DataResult.DONE)

    def test_peer_without_size_helps_the_announced_size(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("a", SIZE)
        fetcher.peer_offers("b", None)
        probe = fetcher.next_requests("b", 0.0)
        self.assertEqual(probe, [0])  # one request at a time until its size is known
        self.assertEqual(fetcher.next_requests("a", 0.0), [1, 2, 3, 4])

    def test_unsolicited_piece_is_ignored(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("a", SIZE)
        self.assertEqual(fetcher.on_data("a", 1, SIZE, piece_of(INFO, 1), 0.0),
                         DataResult.IGNORED)
        self.assertEqual(fetcher.on_data("x", 1, SIZE, piece_of(INFO, 1), 0.0),
                         DataResult.IGNORED)
        self.assertEqual(fetcher.bad_peers(), {})

    def test_peer_gone_returns_its_pieces(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("a", SIZE)
        fetcher.peer_offers("b", SIZE)
        taken = fetcher.next_requests("a", 0.0)
        fetcher.peer_gone("a")
        self.assertEqual(fetcher.next_requests("b", 0.1), list(range(4)))
        self.assertEqual(taken, [0, 1, 2])


# ---------------------------------------------------------------------------------------------
# Peers that break the rules


class BadPeerTest(unittest.TestCase):
    def setUp(self) -> None:
        self.fetcher = MetadataFetcher(INFO_HASH)
        self.fetcher.peer_offers("a", SIZE)
        self.fetcher.peer_offers("b", SIZE)
        self.a_pieces = self.fetcher.next_requests("a", 0.0)
        self.assertEqual(self.a_pieces, [0, 1, 2])

    def assert_dropped(self, result: DataResult, words: str) -> None:
        self.assertEqual(result, DataResult.BAD_PEER)
        self.assertIn("a", self.fetcher.bad_peers())
        self.assertIn(words, self.fetcher.bad_peers()["a"])
        self.assertEqual(self.fetcher.next_requests("a", 0.1), [])
        # a's pieces go back: b is asked for them
        self.assertEqual(self.fetcher.next_requests("b", 0.1), [0, 1, 2, 3])

    def test_wrong_total_size_drops_the_peer(self) -> None:
        result = self.fetcher.on_data("a", 0, SIZE + 1, piece_of(INFO, 0), 0.0)
        self.assert_dropped(result, "total_size")

    def test_wrong_piece_length_drops_the_peer(self) -> None:
        result = self.fetcher.on_data("a", 0, SIZE, piece_of(INFO, 0)[:-1], 0.0)
        self.assert_dropped(result, "expected 16384")

    def test_short_last_piece_must_be_exact(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("a", SIZE)
        fetcher.next_requests("a", 0.0, max_outstanding=PIECES)
        last = piece_of(INFO, PIECES - 1)
        self.assertEqual(fetcher.on_data("a", PIECES - 1, SIZE, last + b"\0", 0.0),
                         DataResult.BAD_PEER)

    def test_piece_out_of_range_drops_the_peer(self) -> None:
        result = self.fetcher.on_data("a", PIECES, SIZE, b"x", 0.0)
        self.assert_dropped(result, f"piece {PIECES}")

    def test_changed_metadata_size_drops_the_peer(self) -> None:
        self.assertFalse(self.fetcher.peer_offers("a", SIZE + 10))
        self.assertIn("changed its metadata_size", self.fetcher.bad_peers()["a"])

    def test_banned_peer_is_not_taken_back(self) -> None:
        self.fetcher.on_data("a", 0, SIZE + 1, piece_of(INFO, 0), 0.0)
        self.fetcher.peer_gone("a")
        self.assertFalse(self.fetcher.peer_offers("a", SIZE))
        self.assertIn("total_size", self.fetcher.reason("a"))
        self.assertIn("dropped", self.fetcher.summary())


class SizeBoundTest(unittest.TestCase):
    def test_bound_is_libtorrents_default(self) -> None:
        self.assertEqual(metadata.MAX_METADATA_SIZE, 30 * 1024 * 1024)

    def test_zero_or_oversized_metadata_size_is_refused(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        self.assertFalse(fetcher.peer_offers("a", 0))
        self.assertIn("no metadata", fetcher.reason("a"))
        self.assertFalse(fetcher.peer_offers("b", metadata.MAX_METADATA_SIZE + 1))
        self.assertIn("over the", fetcher.reason("b"))
        self.assertFalse(fetcher.peer_offers("c", b"12"))
        self.assertFalse(fetcher.peer_offers("d", True))
        self.assertEqual(fetcher.next_requests("a", 0.0), [])
        self.assertEqual(fetcher.bad_peers(), {})  # refused, not dropped

    def test_caller_bound_applies_to_data(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH, max_size=SIZE - 1)
        self.assertFalse(fetcher.peer_offers("a", SIZE))
        fetcher.peer_offers("b", None)
        self.assertEqual(fetcher.next_requests("b", 0.0), [0])
        self.assertEqual(fetcher.on_data("b", 0, SIZE, piece_of(INFO, 0), 0.0),
                         DataResult.BAD_PEER)

    def test_candidate_sizes_are_bounded(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        for n in range(metadata.MAX_CANDIDATE_SIZES):
            self.assertTrue(fetcher.peer_offers(f"p{n}", SIZE + n))
        self.assertFalse(fetcher.peer_offers("late", SIZE + 99))
        self.assertIn("different sizes", fetcher.reason("late"))
        fetcher.peer_gone("p1")  # its size has no peer left: room for a new one
        self.assertTrue(fetcher.peer_offers("late", SIZE + 99))


# ---------------------------------------------------------------------------------------------
# Liars


class RandomLiarSwarm(Swarm):
    """Peers whose name starts with "liar" send a different wrong first byte every time."""

    def answer(self, peer: str, index: int) -> bytes:
        block = piece_of(self.raw, index)
        if peer.startswith("liar"):
            return bytes([block[0] ^ (1 + self.rng.randrange(255))]) + block[1:]
        return block


class LiarTest(unittest.TestCase):
    def run_swarm(self, swarm: Swarm, max_steps: int = 2000) -> Optional[bytes]:
        with self.assertLogs("sta.metadata", "WARNING") as logs:
            result = swarm.run(max_steps)
        self.assertTrue(any("fails the info hash" in line for line in logs.output))
        return result

    def test_liar_among_honest_peers_is_dropped_and_fetch_completes(self) -> None:
        for seed in range(20):
            fetcher = MetadataFetcher(INFO_HASH)
            swarm = Swarm(fetcher, ["h1", "liar", "h2"], random.Random(seed),
                          lies={"liar": None})
            self.assertEqual(self.run_swarm(swarm), INFO, f"seed {seed}")
            self.assertIn("does not match the info hash", fetcher.reason("liar") or "")
            self.assertIsNone(fetcher.reason("h1"))
            self.assertIsNone(fetcher.reason("h2"))

    def test_liar_that_corrupts_one_piece_against_one_honest_peer(self) -> None:
        for seed in range(20):
            fetcher = MetadataFetcher(INFO_HASH)
            # asked first, the liar is always handed piece 0 (its share is pieces 0-2)
            swarm = Swarm(fetcher, ["liar", "honest"], random.Random(seed), lies={"liar": {0}})
            self.assertEqual(self.run_swarm(swarm), INFO, f"seed {seed}")
            self.assertEqual(swarm.asked["liar"][:3], [0, 1, 2])
            self.assertIsNone(fetcher.reason("honest"))
            self.assertIn("piece 0 that does not match", fetcher.reason("liar") or "")

    def test_two_random_liars_against_one_honest_peer(self) -> None:
        for seed in range(20):
            fetcher = MetadataFetcher(INFO_HASH)
            swarm = RandomLiarSwarm(fetcher, ["liar1", "honest", "liar2"], random.Random(seed))
            self.assertEqual(self.run_swarm(swarm, 5000), INFO, f"seed {seed}")
            self.assertIsNone(fetcher.reason("honest"))
            self.assertIsNotNone(fetcher.reason("liar1"))
            self.assertIsNotNone(fetcher.reason("liar2"))

    def test_lone_liar_is_banned_when_its_copy_fails(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("liar", SIZE)
        results = []
        with self.assertLogs("sta.metadata", "WARNING"):
            for index in fetcher.next_requests("liar", 0.0, max_outstanding=PIECES):
                block = corrupt(piece_of(INFO, index))
                results.append(fetcher.on_data("liar", index, SIZE, block, 0.0))
        self.assertEqual(results[-1], DataResult.HASH_FAILED)
        self.assertIn("fails the info hash", fetcher.bad_peers()["liar"])
        self.assertIsNone(fetcher.done)

    def test_liar_that_goes_silent_does_not_hold_up_the_check(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("liar", SIZE)
        fetcher.peer_offers("honest", SIZE)
        with self.assertLogs("sta.metadata", "WARNING"):
            self.assertEqual(fetcher.next_requests("liar", 0.0), [0, 1, 2])
            self.assertEqual(fetcher.next_requests("honest", 0.0), [3, 4])
            for index in (0, 1, 2):
                fetcher.on_data("liar", index, SIZE, corrupt(piece_of(INFO, index)), 0.1)
            results = [fetcher.on_data("honest", i, SIZE, piece_of(INFO, i), 0.1)
                       for i in (3, 4)]
        self.assertEqual(results[-1], DataResult.HASH_FAILED)
        # second round: each piece from the peer that has not sent it; the liar never answers
        self.assertEqual(fetcher.next_requests("liar", 1.0), [3, 4])
        self.assertEqual(fetcher.next_requests("honest", 1.0), [0, 1, 2])
        for index in (0, 1, 2):
            self.assertEqual(fetcher.on_data("honest", index, SIZE, piece_of(INFO, index), 1.1),
                             DataResult.ACCEPTED)
        self.assertIsNone(fetcher.done)
        self.assertEqual(fetcher.next_requests("honest", 1.0 + metadata.REQUEST_TIMEOUT), [])
        self.assertEqual(fetcher.done, INFO)
        self.assertIn("does not match", fetcher.bad_peers()["liar"])
        self.assertNotIn("honest", fetcher.bad_peers())

    def test_colluding_liars_are_both_banned(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        swarm = Swarm(fetcher, ["l1", "l2"], random.Random(1), lies={"l1": None, "l2": None})
        self.assertIsNone(self.run_swarm(swarm, 300))
        self.assertIn("fails the info hash", fetcher.reason("l1") or "")
        self.assertIn("fails the info hash", fetcher.reason("l2") or "")

    def test_wrong_announced_size_does_not_block_the_true_one(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("wrong", SIZE + 100)
        fetcher.peer_offers("honest", SIZE)
        wrong = fetcher.next_requests("wrong", 0.0)
        self.assertEqual(wrong, [0, 1, 2, 3])
        for index in wrong:
            block = piece_of(INFO + b"x" * 100, index)
            fetcher.on_data("wrong", index, SIZE + 100, block, 0.1)
        for _ in range(PIECES):
            for index in fetcher.next_requests("honest", 0.2):
                fetcher.on_data("honest", index, SIZE, piece_of(INFO, index), 0.3)
        self.assertEqual(fetcher.done, INFO)
        self.assertIn("announced metadata_size", fetcher.bad_peers()["wrong"])


# ---------------------------------------------------------------------------------------------
# Time: timeouts and rejects


class TimingTest(unittest.TestCase):
    def setUp(self) -> None:
        self.raw = make_info(10)
        self.size = len(self.raw)
        self.fetcher = MetadataFetcher(hashlib.sha1(self.raw).digest())
        self.fetcher.peer_offers("slow", self.size)
        self.fetcher.peer_offers("fast", self.size)

    def test_timed_out_piece_is_asked_of_another_peer(self) -> None:
        self.assertEqual(self.fetcher.next_requests("slow", 0.0), [0])
        self.assertEqual(self.fetcher.next_requests("fast", 1.0), [])
        self.assertEqual(self.fetcher.next_requests("fast", metadata.REREQUEST_INTERVAL), [0])
        self.assertEqual(self.fetcher.on_data("fast", 0, self.size, self.raw, 3.5),
                         DataResult.DONE)

    def test_late_answer_after_timeout_is_still_used(self) -> None:
        self.assertEqual(self.fetcher.next_requests("slow", 0.0), [0])
        self.fetcher.peer_gone("fast")
        later = metadata.REQUEST_TIMEOUT + 1
        self.assertEqual(self.fetcher.next_requests("slow", later), [0])  # slot freed: asked again
        self.assertEqual(self.fetcher.on_data("slow", 0, self.size, self.raw, later + 1),
                         DataResult.DONE)

    def test_slow_peer_keeps_one_request_in_flight(self) -> None:
        fetcher = MetadataFetcher(INFO_HASH)
        fetcher.peer_offers("a", SIZE)
        self.assertEqual(len(fetcher.next_requests("a", 0.0)), 4)
        later = metadata.REQUEST_TIMEOUT
        self.assertEqual(len(fetcher.next_requests("a", later)), 1)
        self.assertEqual(fetcher.next_requests("a", later + 1), [])

    def test_reject_backs_the_peer_off_and_frees_the_piece(self) -> None:
        self.assertEqual(self.fetcher.next_requests("slow", 0.0), [0])
        self.fetcher.on_reject("slow", 0, 0.5)
        self.assertEqual(self.fetcher.next_requests("fast", 0.6), [0])
        self.assertEqual(self.fetcher.next_requests("slow", 0.5 + metadata.REJECT_BACKOFF - 1),
                         [])
        self.fetcher.peer_gone("fast")
        self.assertEqual(self.fetcher.next_requests("slow", 0.5 + metadata.REJECT_BACKOFF), [0])
        self.assertEqual(self.fetcher.bad_peers(), {})


if __name__ == "__main__":
    unittest.main()
