"""The DHT node: its answers over a fake endpoint, hostile datagrams, a DHT of STA nodes on
127.0.0.1, its saved state, and the `dht` command as a process."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import signal
import socket
import sys
import tempfile
import unittest
import unittest.mock
from typing import List, Tuple

from sta import bencode, krpc
from sta.dht import STATE_FILE, DhtError, DhtNode
from sta.dht_store import QueryBudget
from sta.krpc import NodeInfo, Query, Response
from tests.interop import clients

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = ("10.0.0.7", 6000)
OTHER_ID = b"\x77" * 20
INFO_HASH = b"\x42" * 20
# Nodes in the loopback DHT: enough for several buckets and multi-hop lookups.
SWARM_SIZE = 12
# Deadline for a whole loopback DHT test: a lookup there takes milliseconds.
NETWORK_TIMEOUT = 30.0
# Random datagrams thrown at one node; each is handled in microseconds.
FUZZ_ROUNDS = 2000
# Deadline for the `dht` process to print a line or exit.
PROCESS_TIMEOUT = 20.0


def read_state(path: str) -> dict:
    with open(path, "rb") as f:
        return bencode.decode(f.read())


def loopback_budget() -> QueryBudget:
    """Every node of a loopback test shares one IP and queries in bursts."""
    return QueryBudget(per_window=100000)


class FakeSender:
    def __init__(self) -> None:
        self.sent: List[Tuple[bytes, Tuple[str, int]]] = []

    def send(self, data: bytes, address: Tuple[str, int]) -> None:
        self.sent.append((data, address))

    def last(self) -> object:
        return krpc.decode_message(self.sent[-1][0])


class NodeAnswerTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.sender = FakeSender()
        self.node = DhtNode(rng=random.Random(1))
        await self.node.start(sender=self.sender)
        self.addAsyncCleanup(self.node.stop)

    def ask(self, method: str, address: Tuple[str, int] = PEER, **args: object) -> object:
        self.node.datagram_received(krpc.encode_query(b"q1", method, OTHER_ID, **args), address)
        return self.sender.last()

    async def test_ping_is_answered_with_our_id_and_the_node_is_remembered(self) -> None:
        answer = self.ask("ping")
        self.assertEqual((answer.tid, answer.sender), (b"q1", self.node.node_id))
        self.assertIn(b"2:ip6:\x0a\x00\x00\x07\x17\x70", self.sender.sent[-1][0])
        self.assertEqual(self.node.node_count(), 1)

    async def test_find_node_answers_with_known_nodes(self) -> None:
        self.ask("ping")
        answer = self.ask("find_node", ("10.0.0.8", 1), target=OTHER_ID)
        self.assertEqual(answer.nodes, (NodeInfo(OTHER_ID, *PEER),))

    async def test_announce_with_a_token_is_stored_and_returned(self) -> None:
        token = self.ask("get_peers", info_hash=INFO_HASH).token
        self.assertIsInstance(self.ask("announce_peer", info_hash=INFO_HASH, port=7000,
                                       token=token), Response)
        answer = self.ask("get_peers", ("10.0.0.9", 1), info_hash=INFO_HASH)
        self.assertEqual(answer.values, (("10.0.0.7", 7000),))

    async def test_implied_port_stores_the_source_port(self) -> None:
        token = self.ask("get_peers", info_hash=INFO_HASH).token
        self.ask("announce_peer", info_hash=INFO_HASH, port=1, implied_port=1, token=token)
        self.assertEqual(self.ask("get_peers", info_hash=INFO_HASH).values, (PEER,))

    async def test_announce_with_another_ips_token_is_refused(self) -> None:
        token = self.ask("get_peers", ("10.0.0.99", 1), info_hash=INFO_HASH).token
        answer = self.ask("announce_peer", info_hash=INFO_HASH, port=7000, token=token)
        self.assertEqual(answer.code, krpc.ERROR_PROTOCOL)
        self.assertEqual(self.ask("get_peers", info_hash=INFO_HASH).values, ())

    async def test_unknown_method_without_target_gets_error_204(self) -> None:
        self.assertEqual(self.ask("vote").code, krpc.ERROR_METHOD_UNKNOWN)

    async def test_address_over_its_budget_gets_no_answer(self) -> None:
        for _ in range(60):
            self.ask("ping")
        self.assertEqual(len(self.sender.sent), 50)

    async def test_answer_from_another_address_than_asked_is_ignored(self) -> None:
        self.node.query_timeout = 0.2
        asking = asyncio.ensure_future(self.node._query(PEER, "ping"))
        await asyncio.sleep(0)
        tid = krpc.decode_message(self.sender.sent[-1][0]).tid
        forged = krpc.encode_response(tid, OTHER_ID)
        self.node.datagram_received(forged, ("10.6.6.6", PEER[1]))
        self.assertIsNone(await asyncio.wait_for(asking, 5))
        self.assertEqual(self.node.node_count(), 0)

    async def test_hostile_datagrams_are_dropped_and_the_node_still_answers(self) -> None:
        rng = random.Random(3)
        seeds = [krpc.encode_query(b"aa", "announce_peer", OTHER_ID, info_hash=INFO_HASH,
                                   port=1, token=b"t"),
                 krpc.encode_query(b"ab", "find_node", OTHER_ID, target=INFO_HASH),
                 krpc.encode_response(b"ac", OTHER_ID, nodes=[NodeInfo(INFO_HASH, "1.2.3.4",
                                                                       5)]),
                 b"d1:eli201e1:xe1:t2:aa1:y1:ee"]
        for i in range(FUZZ_ROUNDS):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 3)):
                where = rng.randrange(len(data))
                data[where:where + rng.randint(0, 3)] = bytes(
                    rng.randrange(256) for _ in range(rng.randint(0, 3)))
            source = ("10.%d.%d.1" % (i % 200, i // 200 % 200), 1 + i % 60000)
            self.node.datagram_received(bytes(data), source)
        self.node.datagram_received(os.urandom(5000), ("::1", 5))
        self.node.datagram_received(b"d" * 10000, PEER)
        for data, _ in self.sender.sent:
            self.assertLess(len(data), 1500)
        self.assertIsInstance(self.ask("ping", ("10.250.0.1", 9)), Response)

    async def test_lookup_before_start_is_refused(self) -> None:
        idle = DhtNode()
        with self.assertRaisesRegex(DhtError, "not started"):
            await idle.get_peers(INFO_HASH)


class LoopbackDhtTests(unittest.IsolatedAsyncioTestCase):
    async def start_node(self, bootstrap: List[Tuple[str, int]], **kwargs: object) -> DhtNode:
        node = DhtNode(bootstrap=bootstrap, budget=loopback_budget(), **kwargs)
        await node.start("127.0.0.1", 0)
        self.addAsyncCleanup(node.stop)
        return node

    async def join_swarm(self) -> Tuple[DhtNode, List[DhtNode]]:
        first = await self.start_node([])
        others = [await self.start_node([first.address]) for _ in range(SWARM_SIZE - 1)]
        await asyncio.gather(*(n.bootstrap() for n in others))
        return first, others

    async def test_a_peer_announced_by_one_node_is_found_by_another(self) -> None:
        async def scenario() -> None:
            first, others = await self.join_swarm()
            self.assertTrue(all(n.node_count() >= 3 for n in others),
                            [n.node_count() for n in others])
            accepted = await others[2].announce(INFO_HASH, 51413)
            self.assertGreaterEqual(accepted, 3)
            found = await others[-1].get_peers(INFO_HASH)
            self.assertIn(("127.0.0.1", 51413), found)
            self.assertEqual(await others[-1].get_peers(b"\x01" * 20), [])
        await asyncio.wait_for(scenario(), NETWORK_TIMEOUT)

    async def test_state_is_saved_and_a_restart_rejoins_without_bootstrap(self) -> None:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        path = os.path.join(folder.name, STATE_FILE)

        async def scenario() -> None:
            first, others = await self.join_swarm()
            node = await self.start_node([first.address], state_path=path)
            await node.bootstrap()
            known = node.node_count()
            await node.stop()
            state = read_state(path)
            self.assertEqual(state[b"id"], node.node_id)
            self.assertEqual(len(krpc.unpack_nodes(state[b"nodes"], 1000)), known)
            await first.stop()  # the bootstrap node is gone: the saved nodes must do
            await others[0].announce(INFO_HASH, 6881)
            again = await self.start_node([], state_path=path)
            self.assertEqual((again.node_id, again.node_count()), (node.node_id, known))
            self.assertIn(("127.0.0.1", 6881), await again.get_peers(INFO_HASH))
        await asyncio.wait_for(scenario(), NETWORK_TIMEOUT)

    async def test_a_saved_table_of_departed_nodes_still_joins_through_bootstrap(self) -> None:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        path = os.path.join(folder.name, STATE_FILE)
        departed = [krpc.NodeInfo(os.urandom(20), "127.0.0.1", 1000 + i) for i in range(20)]
        with open(path, "wb") as f:
            f.write(bencode.encode({b"id": os.urandom(20), b"nodes": krpc.pack_nodes(departed)}))

        async def scenario() -> None:
            first, others = await self.join_swarm()
            await others[0].announce(INFO_HASH, 6881)
            node = await self.start_node([first.address], state_path=path,
                                         query_timeout=0.5)
            self.assertGreaterEqual(node.node_count(), 8)
            self.assertIn(("127.0.0.1", 6881), await node.get_peers(INFO_HASH, timeout=10))
        await asyncio.wait_for(scenario(), NETWORK_TIMEOUT)

    async def test_unreadable_state_starts_afresh(self) -> None:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        path = os.path.join(folder.name, STATE_FILE)
        with open(path, "wb") as f:
            f.write(b"d2:id3:abce")
        with self.assertLogs("sta.dht", "WARNING"):
            node = DhtNode(state_path=path)
        self.assertEqual(len(node.node_id), 20)


class DhtCommandTests(unittest.TestCase):
    def test_dht_command_prints_its_address_counts_nodes_and_saves_on_sigterm(self) -> None:
        home = tempfile.TemporaryDirectory()
        self.addCleanup(home.cleanup)
        env = dict(os.environ, STA_HOME=home.name)
        proc = clients.start([sys.executable, os.path.join(ROOT, "sta.py"), "dht", "--port",
                              "0", "--bind", "127.0.0.1"], self, env=env)
        line = clients.wait_for_line(proc, "DHT node ", PROCESS_TIMEOUT)
        host, port = line.rsplit(" ", 1)[1].rsplit(":", 1)
        self.assertEqual(host, "127.0.0.1")
        clients.wait_for_line(proc, "knows 0 nodes", PROCESS_TIMEOUT)

        async def join() -> None:
            node = DhtNode(bootstrap=[(host, int(port))])
            await node.start("127.0.0.1", 0)
            try:
                self.assertEqual(await node.bootstrap(), 1)
            finally:
                await node.stop()
        asyncio.run(asyncio.wait_for(join(), PROCESS_TIMEOUT))
        clients.wait_for_line(proc, "knows 1 node", PROCESS_TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(clients.wait_exit(proc, PROCESS_TIMEOUT), 0, clients.output(proc))
        clients.wait_for_line(proc, "Stopped; saved 1 nodes", PROCESS_TIMEOUT)
        state = read_state(os.path.join(home.name, STATE_FILE))
        self.assertEqual(len(krpc.unpack_nodes(state[b"nodes"])), 1)

    def test_dht_command_on_a_busy_port_says_so_in_one_line(self) -> None:
        from sta import cli
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        home = tempfile.TemporaryDirectory()
        self.addCleanup(home.cleanup)
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors), \
                unittest.mock.patch.dict(os.environ, {"STA_HOME": home.name}):
            status = cli.main(["dht", "--port", str(port), "--bind", "127.0.0.1"])
        self.assertEqual(status, 1)
        self.assertEqual(errors.getvalue(), f"sta: error: cannot listen on UDP port {port}: "
                         "another program uses it (a DHT node or a peer already running?); "
                         "stop it, or choose another port with --port\n")

    def test_dht_command_refuses_a_bad_bootstrap_address(self) -> None:
        from sta import cli
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            status = cli.main(["dht", "--dht-bootstrap", "nowhere"])
        self.assertEqual(status, 2)
        self.assertIn("bad peer 'nowhere'", errors.getvalue())


if __name__ == "__main__":
    unittest.main()
