"""STA's DHT node and libtorrent's on 127.0.0.1: each finds the peers the other announced.

A private DHT of two STA nodes (one the bootstrap node) and one libtorrent node, with
libtorrent's loopback settings (tests/interop/lt_helper.py, LOOPBACK_DHT_SETTINGS: one node per
IP and its flood protection off, since every node shares 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
import unittest
from typing import List, Tuple

from sta.dht import DhtNode
from sta.dht_store import QueryBudget
from tests.interop import clients

# Deadline for one direction: libtorrent joins and announces within a second or two on
# loopback; the rest is slack for a loaded machine.
FIND_TIMEOUT = 40.0
# Seconds between our repeated announces and lookups while waiting for the other side.
RETRY_INTERVAL = 1.0
# The TCP port STA announces for itself (nothing listens there: only the DHT is under test).
STA_PEER_PORT = 40002


@unittest.skipUnless(clients.have_libtorrent(),
                     "libtorrent's Python bindings do not import under %s" % clients.LT_PYTHON)
class DhtInteropTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.bootstrap = await self.start_node([])
        self.node = await self.start_node([self.bootstrap.address])
        await self.node.bootstrap()

    async def start_node(self, bootstrap: List[Tuple[str, int]]) -> DhtNode:
        node = DhtNode(bootstrap=bootstrap, budget=QueryBudget(per_window=100000))
        await node.start("127.0.0.1", 0)
        self.addAsyncCleanup(node.stop)
        return node

    def start_libtorrent(self, *args: str) -> "clients.subprocess.Popen":
        host, port = self.bootstrap.address
        return clients.start(clients.lt_helper_cmd("dht", "--bootstrap", "%s:%d" % (host, port),
                                                   *args), self)

    async def line(self, proc: object, prefix: str, timeout: float) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: clients.wait_for_line(
            proc, prefix, timeout, anywhere=True))

    async def test_sta_finds_the_peer_libtorrent_announced(self) -> None:
        info_hash = os.urandom(20)
        proc = self.start_libtorrent("--announce", info_hash.hex())
        port = int((await self.line(proc, "LISTENING ", FIND_TIMEOUT)).split()[1])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FIND_TIMEOUT
        found: List[Tuple[str, int]] = []
        while loop.time() < deadline:
            found = await self.node.get_peers(info_hash, timeout=5.0)
            if ("127.0.0.1", port) in found:
                return
            await asyncio.sleep(RETRY_INTERVAL)
        self.fail("STA never found libtorrent's peer 127.0.0.1:%d (last answer %r)\n%s"
                  % (port, found, clients.output(proc)))

    async def test_libtorrent_finds_the_peer_sta_announced(self) -> None:
        info_hash = os.urandom(20)
        proc = self.start_libtorrent("--get-peers", info_hash.hex())
        await self.line(proc, "LISTENING ", FIND_TIMEOUT)

        async def keep_announcing() -> None:
            while True:
                await self.node.announce(info_hash, STA_PEER_PORT, timeout=5.0)
                await asyncio.sleep(RETRY_INTERVAL)
        announcing = asyncio.ensure_future(keep_announcing())
        try:
            wanted = "PEERS %s " % info_hash.hex()
            while True:
                line = await self.line(proc, wanted, FIND_TIMEOUT)
                if "127.0.0.1:%d" % STA_PEER_PORT in line.split():
                    break
        finally:
            announcing.cancel()
            await asyncio.gather(announcing, return_exceptions=True)


if __name__ == "__main__":
    unittest.main()
