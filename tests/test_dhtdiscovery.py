"""The DHT as a peer source (dhtdiscovery.py): the schedule with a fake node, and a magnet link
with nothing but its info hash downloaded between STA nodes that met through a DHT on
127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import random
import unittest
from typing import Any, List

from sta import dht, maketorrent, metainfo
from sta.dhtdiscovery import (DHT_FIRST_DELAY, DHT_FIRST_RETRY, DHT_REANNOUNCE, DHT_RETRY,
                              DhtDiscovery)
from sta.magnet import Magnet
from sta.transfer import add_torrent
from tests import enginekit as kit
from tests.enginekit import WAIT


class FakeNode:
    def __init__(self, peers: List[Any]) -> None:
        self.peers = peers
        self.lookups: List[bytes] = []
        self.announces: List[Any] = []

    async def get_peers(self, info_hash: bytes) -> List[Any]:
        self.lookups.append(info_hash)
        return list(self.peers)

    async def announce(self, info_hash: bytes, port: int) -> int:
        self.announces.append((info_hash, port))
        return 1


class FakeTorrent:
    name = "t"

    def __init__(self) -> None:
        self.added: List[Any] = []
        self.peers: List[Any] = []

    def add_peers(self, peers: List[Any], source: str) -> None:
        self.added.append((list(peers), source))


class ScheduleTests(unittest.TestCase):
    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)
        self.tasks: List[Any] = []

    def discovery(self, peers: List[Any]) -> DhtDiscovery:
        self.node = FakeNode(peers)
        self.torrent = FakeTorrent()
        return DhtDiscovery(self.node, lambda ih: self.torrent if ih == b"i" * 20 else None,
                            lambda coro: self.tasks.append(self.loop.create_task(coro)),
                            lambda: 6881, rng=random.Random(1))

    def drain(self) -> None:
        self.loop.run_until_complete(asyncio.gather(*self.tasks))
        self.tasks.clear()

    def test_a_torrent_is_looked_up_soon_then_announced_and_repeated_every_interval(self):
        d = self.discovery([("10.0.0.1", 6881)])
        d.add(b"i" * 20, 0.0)
        d.tick(DHT_FIRST_DELAY)
        self.drain()
        self.assertEqual(self.torrent.added, [([("10.0.0.1", 6881)], "dht")])
        self.assertEqual(self.node.announces, [(b"i" * 20, 6881)])
        d.tick(DHT_FIRST_DELAY + DHT_REANNOUNCE - 1)
        self.assertEqual(self.tasks, [])
        d.tick(DHT_FIRST_DELAY + DHT_REANNOUNCE)
        self.drain()
        self.assertEqual(len(self.node.lookups), 2)

    def test_a_torrent_without_peers_is_looked_up_again_sooner_and_less_often_each_time(self):
        d = self.discovery([])
        d.add(b"i" * 20, 0.0)
        now = DHT_FIRST_DELAY
        d.tick(now)
        self.drain()
        gaps = []
        for _ in range(5):
            gap = next(g for g in range(1, int(DHT_RETRY) + 2)
                       if d.tick(now + g) is None and self.tasks)
            self.drain()
            now += gap
            gaps.append(gap)
        first = int(DHT_FIRST_RETRY)
        self.assertEqual(gaps, [first, 2 * first, 4 * first, int(DHT_RETRY), int(DHT_RETRY)])
        self.assertEqual(len(self.node.lookups), 6)

    def test_a_removed_torrent_is_never_looked_up(self):
        d = self.discovery([("10.0.0.1", 6881)])
        d.add(b"i" * 20, 0.0)
        d.remove(b"i" * 20)
        d.tick(DHT_REANNOUNCE * 2)
        self.assertEqual((self.tasks, self.node.lookups), ([], []))


class MagnetOverDhtTests(unittest.TestCase):
    def test_a_magnet_with_only_its_info_hash_is_downloaded_through_the_dht(self):
        tmp = kit.temp_dir(self)
        data = os.path.join(tmp, "seed")
        kit.make_tree(data, {"lab.bin": 1024 * 1024}, seed=51)
        meta = kit.write_torrent(os.path.join(data, "lab.bin"), os.path.join(tmp, "lab.torrent"),
                                 piece_length=64 * 1024)
        engine = kit.Engine(self)
        # Each node its own home, as on two machines: one DHT id each, no table saved by
        # another test.
        homes = [os.path.join(tmp, name) for name in ("seed-home", "peer-home")]
        for home in homes:
            os.mkdir(home)
        boot = dht.DhtNode(state_path=None)
        engine.run(boot.start("127.0.0.1", 0))
        self.addCleanup(lambda: engine.run(boot.stop()))
        bootstrap = [boot.address]
        seed = engine.node(meta, data, readonly=True, dht_bootstrap=bootstrap,
                           state_dir=homes[0])
        self.assertIsNotNone(seed.host.dht, "the seed's DHT did not start")

        async def download() -> Any:
            session = await engine.session(dht_bootstrap=bootstrap, state_dir=homes[1])
            await add_torrent(session, Magnet(meta.info_hash), os.path.join(tmp, "out"))
            return session
        session = engine.run(download())

        engine.wait_until(lambda: getattr(session.torrents[meta.info_hash], "complete", False),
                          "the magnet downloaded through the DHT", timeout=WAIT)
        with open(os.path.join(tmp, "out", "lab.bin"), "rb") as got, \
                open(os.path.join(data, "lab.bin"), "rb") as want:
            self.assertEqual(got.read(), want.read())
        # Each side looked the torrent up; whichever dialled first found the other there.
        sources = engine.call(lambda: {r.source for t in (seed, session.torrents[meta.info_hash])
                                       for r in t.swarm.known.values()})
        self.assertIn("dht", sources)

    def test_private_torrents_never_reach_the_dht(self):
        tmp = kit.temp_dir(self)
        data = os.path.join(tmp, "seed")
        kit.make_tree(data, {"secret.bin": 100000}, seed=52)
        torrent = os.path.join(tmp, "secret.torrent")
        with open(torrent, "wb") as f:
            f.write(maketorrent.make_torrent([os.path.join(data, "secret.bin")], [],
                                             private=True))
        meta = metainfo.load(torrent)
        engine = kit.Engine(self)
        node = engine.node(meta, data, readonly=True, dht_bootstrap=[])
        self.assertTrue(node.private)
        self.assertIsNotNone(node.host.dht)
        self.assertEqual(engine.call(node.host.stats)["dht_torrents"], 0)


if __name__ == "__main__":
    unittest.main()
