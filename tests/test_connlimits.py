"""Connection limits as plain data, and a node under a flood of idle sockets.

The policy (connlimits.ConnectionLimits) is tested with made-up connections; the flood tests open
real sockets from other loopback addresses (127.0.0.2 and up, Linux) against in-process nodes
at their default limits, and check that a real download still completes.
"""

from __future__ import annotations

import os
import socket
import time
import unittest

from sta import peer
from sta.connlimits import (MAX_CONNECTIONS, MAX_PENDING_INCOMING, MAX_PENDING_PER_HOST,
                            MAX_PER_HOST, MAX_OUTGOING_PER_HOST, OUTGOING_RESERVE,
                            ConnectionLimits)
from tests import enginekit as kit

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

# Idle sockets the flood opens, as the attack it models does.
FLOOD_SOCKETS = 1000
# Source addresses the many-host flood spreads its sockets over (127.0.0.2 upwards).
FLOOD_HOSTS = 250
# File descriptors the test process needs: the flood plus the nodes' own sockets and files.
NEEDED_FDS = FLOOD_SOCKETS + 400


class PolicyTests(unittest.TestCase):

    def test_incoming_connections_of_one_host_are_capped_while_pending(self):
        limits = ConnectionLimits()
        for n in range(MAX_PENDING_PER_HOST):
            self.assertEqual(limits.admit(("c", n), "10.0.0.9", True), (None, None))
        refusal, _ = limits.admit(("c", "extra"), "10.0.0.9", True)
        self.assertIn("handshakes in progress", refusal)
        # Another host is not affected.
        self.assertEqual(limits.admit("other", "10.0.0.8", True), (None, None))

    def test_joined_connections_free_their_pending_slot_up_to_the_per_host_cap(self):
        limits = ConnectionLimits()
        for n in range(MAX_PER_HOST):
            self.assertIsNone(limits.admit(n, "10.0.0.9", True)[0])
            limits.joined(n)
        refusal, _ = limits.admit("one more", "10.0.0.9", True)
        self.assertIn("too many connections from 10.0.0.9", refusal)
        limits.closed(0)
        self.assertEqual(limits.admit("one more", "10.0.0.9", True), (None, None))

    def test_outgoing_connections_to_one_host_have_their_own_cap(self):
        limits = ConnectionLimits()
        for n in range(MAX_PER_HOST):   # incoming ones do not use up the dials
            self.assertIsNone(limits.admit(("in", n), "10.0.0.9", True)[0])
            limits.joined(("in", n))
        for n in range(MAX_OUTGOING_PER_HOST):
            self.assertTrue(limits.may_dial("10.0.0.9"))
            self.assertIsNone(limits.admit(("out", n), "10.0.0.9", False)[0])
        self.assertFalse(limits.may_dial("10.0.0.9"))
        refusal, _ = limits.admit("one more", "10.0.0.9", False)
        self.assertIn("too many connections to 10.0.0.9", refusal)
        limits.closed(("out", 0))
        self.assertTrue(limits.may_dial("10.0.0.9"))
        self.assertTrue(limits.may_dial("10.0.0.8"))

    def test_full_pending_pool_evicts_the_oldest_pending_connection(self):
        limits = ConnectionLimits()
        hosts = ["10.1.%d.%d" % divmod(n, 250) for n in range(MAX_PENDING_INCOMING)]
        for n, host in enumerate(hosts):
            self.assertEqual(limits.admit(n, host, True), (None, None))
        refusal, evict = limits.admit("newcomer", "10.2.0.1", True)
        self.assertIsNone(refusal)
        self.assertEqual(evict, 0, "the oldest pending connection makes room")
        limits.closed(0)
        self.assertEqual(limits.pending, MAX_PENDING_INCOMING)

    def test_incoming_connections_leave_slots_for_outgoing_ones(self):
        limits = ConnectionLimits()
        for n in range(MAX_CONNECTIONS - OUTGOING_RESERVE):
            host = "10.%d.%d.1" % divmod(n, 250)
            self.assertIsNone(limits.admit(n, host, True)[0])
            limits.joined(n)
        refusal, _ = limits.admit("in", "10.250.0.1", True)
        self.assertIn("incoming connection limit", refusal)
        self.assertTrue(limits.may_dial("10.250.0.2"))
        for n in range(OUTGOING_RESERVE):
            self.assertIsNone(limits.admit(("out", n), "10.251.%d.1" % n, False)[0])
        self.assertEqual(limits.total, MAX_CONNECTIONS)
        self.assertFalse(limits.may_dial("10.252.0.1"))
        self.assertIn("connection limit", limits.admit("x", "10.252.0.1", False)[0])

    def test_closing_an_unknown_connection_changes_nothing(self):
        limits = ConnectionLimits()
        limits.closed("never admitted")
        self.assertEqual((limits.total, limits.pending), (0, 0))


def raise_fd_limit(test: unittest.TestCase) -> None:
    if resource is None:
        test.skipTest("no resource module to read the open-file limit")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= NEEDED_FDS:
        return
    if hard != resource.RLIM_INFINITY and hard < NEEDED_FDS:
        test.skipTest("the open-file limit is %d and cannot be raised to %d" % (hard, NEEDED_FDS))
    resource.setrlimit(resource.RLIMIT_NOFILE, (NEEDED_FDS, hard))
    test.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))


class Flood:
    """Idle TCP connections to one port: they connect and never send a byte."""

    def __init__(self, test: unittest.TestCase, port: int, hosts: int) -> None:
        self.sockets = []
        test.addCleanup(self.close)
        for n in range(FLOOD_SOCKETS):
            source = "127.0.%d.%d" % divmod(2 + n % hosts, 256)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sockets.append(s)
            s.bind((source, 0))
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except (BlockingIOError, InterruptedError):
                pass

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets = []


@unittest.skipUnless(hasattr(socket, "SO_REUSEADDR") and os.name == "posix",
                     "needs POSIX sockets and several loopback addresses")
class FloodTests(unittest.TestCase):

    def setUp(self):
        kit.liar_host(self)  # skips where 127.0.0.2 cannot be bound
        raise_fd_limit(self)
        self.tmp = kit.temp_dir(self)
        self.engine = kit.Engine(self)
        data = os.path.join(self.tmp, "seed")
        kit.make_tree(data, {"payload.bin": 4 * 1024 * 1024}, seed=21)
        self.meta = kit.write_torrent(os.path.join(data, "payload.bin"),
                                      os.path.join(self.tmp, "payload.torrent"),
                                      piece_length=64 * 1024)
        with open(os.path.join(data, "payload.bin"), "rb") as f:
            self.content = f.read()
        self.data = data

    def download_through_flood(self, hosts: int) -> None:
        seed = self.engine.node(self.meta, self.data, readonly=True)
        Flood(self, seed.host.listen_port, hosts)
        out = os.path.join(self.tmp, "out")
        down = self.engine.node(self.meta, out)
        Flood(self, down.host.listen_port, hosts)
        self.engine.add_peers(down, [kit.listen_address(seed)])

        self.engine.wait_done([down])

        with open(os.path.join(out, "payload.bin"), "rb") as f:
            self.assertEqual(f.read(), self.content)
        for node in (seed, down):
            session = node.host
            self.assertLessEqual(self.engine.call(lambda: session.limits.pending),
                                 MAX_PENDING_INCOMING)
            self.assertLessEqual(self.engine.call(lambda: len(session.connections)),
                                 MAX_CONNECTIONS)

    def test_a_download_completes_while_one_host_holds_a_thousand_idle_sockets(self):
        self.download_through_flood(hosts=1)

    def test_a_download_completes_while_many_hosts_hold_a_thousand_idle_sockets(self):
        self.download_through_flood(hosts=FLOOD_HOSTS)

    def test_a_connection_that_never_handshakes_is_closed_at_the_deadline(self):
        seed = self.engine.node(self.meta, self.data, readonly=True)
        s = socket.create_connection(("127.0.0.1", seed.host.listen_port), timeout=5)
        self.addCleanup(s.close)
        started = time.monotonic()
        s.settimeout(peer.HANDSHAKE_TIMEOUT + 5)
        try:
            closed = s.recv(1) == b""
        except ConnectionResetError:
            closed = True
        waited = time.monotonic() - started
        self.assertTrue(closed, "the silent connection was not closed")
        self.assertGreaterEqual(waited, peer.HANDSHAKE_TIMEOUT - 1.5)
        self.assertLess(waited, peer.HANDSHAKE_TIMEOUT + 3)


if __name__ == "__main__":
    unittest.main()
