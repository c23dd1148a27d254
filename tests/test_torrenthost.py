"""Tests for sta.torrenthost: the declared interface is all a torrent needs from its node."""

import concurrent.futures
import inspect
import time
import unittest
from unittest import mock

from sta import wire
from sta.announce import AnnounceResponse
from sta.bitfield import Bitfield
from sta.memstorage import MemoryStorage
from sta.torrent import SEEDING, Torrent
from sta.torrenthost import TorrentHost
from tests.fakes import FakeConnection, FakeHost, join, make_torrent, receive

PIECES = 6
PIECE = 32 * 1024
TRACKER = "http://127.0.0.1:1/announce"


class CountingPool(concurrent.futures.ThreadPoolExecutor):
    def __init__(self):
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn, *args, **kwargs):
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


class InterfaceTests(unittest.TestCase):
    def test_the_fake_host_has_every_member_of_the_protocol(self):
        host = FakeHost(self)
        for name in TorrentHost.__annotations__:
            self.assertTrue(hasattr(host, name), name)
        methods = [name for name, value in vars(TorrentHost).items()
                   if inspect.isfunction(value) and not name.startswith("_")]
        self.assertEqual(sorted(methods), ["dial", "is_self", "note_utp", "peer_owner", "replace", "spawn"])
        for name in methods:
            declared = list(inspect.signature(getattr(TorrentHost, name)).parameters)[1:]
            actual = list(inspect.signature(getattr(host, name)).parameters)
            self.assertEqual(actual, declared, name)


class RunTests(unittest.TestCase):
    def test_a_torrent_downloads_and_leaves_through_the_host_alone(self):
        host = FakeHost(self)
        pool = host.hash_pool = CountingPool()
        self.addCleanup(pool.shutdown, True)
        built = make_torrent(PIECES * PIECE, PIECE, trackers=[[TRACKER]])
        events = []

        def announce(url, **params):
            events.append(params["event"])
            return AnnounceResponse(interval=1800, min_interval=None, peers=[("10.0.0.1", 6881)],
                                    tracker_id=None, complete=1, incomplete=0, warning=None)
        patcher = mock.patch("sta.announce.announce", announce)
        patcher.start()
        self.addCleanup(patcher.stop)

        storage = MemoryStorage(built.info)
        torrent = Torrent(host, built.meta, storage)
        host.run(torrent.start())
        torrent.start_announcing()
        host.wait_until(lambda: host.dialled)
        ((owner, address),) = host.dialled
        self.assertIs(owner, torrent)

        seed = FakeConnection(address)
        self.assertTrue(join(torrent, seed))
        receive(seed, wire.BitfieldMessage(Bitfield.full(PIECES).to_bytes()), wire.Unchoke())
        answered = 0
        for _ in range(PIECES * PIECE // 16384 + 1):  # at most one round per block
            asked = seed.requested()
            if answered == len(asked):
                break
            for index, begin, length in asked[answered:]:
                receive(seed, wire.Piece(index, begin, built.block(index, begin, length)),
                        now=time.monotonic())
            answered = len(asked)
        host.run(torrent.done.wait())
        self.assertEqual(torrent.state, SEEDING)
        self.assertTrue(storage.complete)
        self.assertEqual(pool.submitted, PIECES)
        self.assertTrue(seed.closed)  # both sides are seeds now
        host.wait_until(lambda: "completed" in events)
        host.run(torrent.shutdown())
        self.assertEqual(events, ["started", "completed", "stopped"])


if __name__ == "__main__":
    unittest.main()
