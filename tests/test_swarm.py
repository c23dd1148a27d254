"""Tests for sta.swarm: which peers are known, dialled, admitted, backed off and banned."""

import unittest

from sta.swarm import (CONNECTS_PER_TICK, MAX_DIALLED_PEERS, MAX_KNOWN_PEERS,
                       MAX_PEERS_PER_TORRENT, RECONNECT_BASE, RECONNECT_MAX, Swarm)
from tests.fakes import OUR_PEER_ID, FakeConnection, peer_id_for


def addr(n):
    return ("10.0.%d.%d" % (n // 250, n % 250 + 1), 6881)


class Kit(unittest.TestCase):
    def setUp(self):
        self.dialled = []
        self.own = set()
        self.swarm = Swarm("t", OUR_PEER_ID, self.dialled.append, lambda a: a in self.own)

    def admitted(self, conn):
        """Admit ``conn``; its close reports back as PeerConnection's does."""
        reason = self.swarm.admit(conn)
        if reason is None:
            conn.joined = True
            conn.owner = self
        return reason

    def peer_left(self, conn):
        self.swarm.release(conn, 0.0)


class AddressTests(Kit):
    def test_add_peers_counts_only_new_addresses(self):
        self.assertEqual(self.swarm.add_peers([addr(1), addr(2), addr(1)], "tracker"), 2)
        self.assertEqual(self.swarm.add_peers([addr(2), addr(3)], "pex"), 1)
        self.assertEqual(sorted(self.swarm.addresses()), sorted([addr(1), addr(2), addr(3)]))
        self.assertEqual(self.swarm.known[addr(1)].source, "tracker")
        self.assertEqual(self.swarm.known[addr(3)].source, "pex")

    def test_our_own_listen_address_is_never_added(self):
        self.own.add(addr(7))
        self.assertEqual(self.swarm.add_peers([addr(7), addr(8)], "tracker"), 1)
        self.assertNotIn(addr(7), self.swarm.known)

    def test_an_address_found_to_be_ourselves_is_not_dialled_again(self):
        self.swarm.add_peers([addr(1)], "tracker")
        self.swarm.forget_self(addr(1))
        self.swarm.connect_more(0.0)
        self.assertEqual(self.dialled, [])


class DialTests(Kit):
    def test_each_known_address_is_dialled_once_while_the_attempt_runs(self):
        self.swarm.add_peers([addr(1), addr(2)], "tracker")
        self.swarm.connect_more(0.0)
        self.swarm.connect_more(1.0)
        self.assertEqual(sorted(self.dialled), sorted([addr(1), addr(2)]))
        self.assertEqual(self.swarm.dialling, {addr(1), addr(2)})

    def test_at_most_connects_per_tick_dials_per_call(self):
        self.swarm.add_peers([addr(n) for n in range(CONNECTS_PER_TICK * 2 + 5)], "tracker")
        self.swarm.connect_more(0.0)
        self.assertEqual(len(self.dialled), CONNECTS_PER_TICK)
        self.swarm.connect_more(1.0)
        self.assertEqual(len(self.dialled), 2 * CONNECTS_PER_TICK)
        self.assertEqual(len(set(self.dialled)), len(self.dialled))

    def test_connections_and_attempts_together_stay_within_the_dial_limit(self):
        for n in range(MAX_DIALLED_PEERS - 3):
            self.assertIsNone(self.admitted(FakeConnection(addr(1000 + n), incoming=True)))
        self.swarm.add_peers([addr(n) for n in range(10)], "tracker")
        self.swarm.connect_more(0.0)
        self.assertEqual(len(self.dialled), 3)
        self.swarm.connect_more(1.0)
        self.assertEqual(len(self.dialled), 3)

    def test_a_full_swarm_refuses_one_more_connection(self):
        for n in range(MAX_PEERS_PER_TORRENT):
            self.assertIsNone(self.admitted(FakeConnection(addr(n), incoming=True)))
        extra = FakeConnection(addr(MAX_PEERS_PER_TORRENT + 5), incoming=True)
        self.assertEqual(self.swarm.admit(extra), "too many peers")
        self.assertEqual(len(self.swarm.peers), MAX_PEERS_PER_TORRENT)

    def test_incoming_peers_beyond_the_dial_limit_are_admitted_but_no_more_dialled(self):
        self.assertGreater(MAX_PEERS_PER_TORRENT, MAX_DIALLED_PEERS)
        for n in range(MAX_DIALLED_PEERS + 50):
            self.assertIsNone(self.admitted(FakeConnection(addr(n), incoming=True)))
        self.swarm.add_peers([addr(5000 + n) for n in range(10)], "tracker")
        self.swarm.connect_more(0.0)
        self.assertEqual(self.dialled, [])

    def test_backoff_doubles_from_the_base_and_is_capped(self):
        self.swarm.add_peers([addr(1)], "tracker")
        record = self.swarm.known[addr(1)]
        now = 100.0
        delays = []
        for _ in range(8):
            self.swarm.connect_more(now)
            self.assertEqual(self.dialled[-1], addr(1))
            self.swarm.dial_failed(addr(1), now)
            delays.append(record.next_try - now)
            self.swarm.connect_more(record.next_try - 0.01)  # not yet due
            self.assertEqual(len(self.dialled), len(delays))
            now = record.next_try
        expected = [min(RECONNECT_MAX, RECONNECT_BASE * 2 ** k) for k in range(8)]
        self.assertEqual(delays, expected)
        self.assertEqual(delays[-1], RECONNECT_MAX)
        self.assertNotIn(addr(1), self.swarm.dialling)

    def test_a_closed_connection_is_redialled_after_a_backoff(self):
        self.swarm.add_peers([addr(1)], "tracker")
        self.swarm.connect_more(0.0)
        conn = FakeConnection(addr(1))
        self.assertIsNone(self.admitted(conn))
        self.assertEqual(self.swarm.known[addr(1)].failures, 0)
        self.swarm.release(conn, 10.0)
        self.assertNotIn(conn, self.swarm.peers)
        self.swarm.connect_more(10.0 + RECONNECT_BASE - 0.1)
        self.assertEqual(self.dialled, [addr(1)])
        self.swarm.connect_more(10.0 + RECONNECT_BASE)
        self.assertEqual(self.dialled, [addr(1), addr(1)])

    def test_retry_all_now_forgets_backoffs(self):
        self.swarm.add_peers([addr(1)], "tracker")
        self.swarm.connect_more(0.0)
        self.swarm.dial_failed(addr(1), 0.0)
        self.assertFalse(self.swarm.anyone_to_dial(1.0))
        self.swarm.retry_all_now()
        self.assertTrue(self.swarm.anyone_to_dial(1.0))
        self.swarm.connect_more(1.0)
        self.assertEqual(self.dialled, [addr(1), addr(1)])

    def test_skip_leaves_chosen_records_undialled(self):
        self.swarm.add_peers([addr(1), addr(2)], "tracker")
        self.swarm.mark_seed(FakeConnection(addr(1)))
        self.swarm.connect_more(0.0, skip=lambda record: record.seed)
        self.assertEqual(self.dialled, [addr(2)])


class AdmitTests(Kit):
    def test_an_outgoing_connection_leaves_the_dialling_set_and_is_recorded(self):
        self.swarm.add_peers([addr(1)], "tracker")
        self.swarm.connect_more(0.0)
        self.assertIsNone(self.admitted(FakeConnection(addr(1))))
        self.assertEqual(self.swarm.dialling, set())
        self.assertTrue(self.swarm.known[addr(1)].connected)

    def test_an_outgoing_connection_to_an_unknown_address_is_remembered_as_direct(self):
        self.assertIsNone(self.admitted(FakeConnection(addr(4))))
        self.assertEqual(self.swarm.known[addr(4)].source, "direct")

    def test_an_incoming_connection_does_not_add_its_port_to_the_known_addresses(self):
        self.assertIsNone(self.admitted(FakeConnection(("10.1.1.1", 50123), incoming=True)))
        self.assertEqual(self.swarm.known, {})

    def test_a_second_connection_with_the_same_peer_id_and_direction_is_refused(self):
        pid = peer_id_for(1)
        self.assertIsNone(self.admitted(FakeConnection(addr(1), peer_id=pid, incoming=True)))
        self.assertEqual(self.swarm.admit(FakeConnection(addr(2), peer_id=pid, incoming=True)),
                         "already connected to this peer")
        self.assertEqual(len(self.swarm.peers), 1)

    def test_crossed_connections_keep_the_one_opened_by_the_larger_peer_id(self):
        big, small = b"-SX0001-zzzzzzzzzzzz", b"-SX0001-aaaaaaaaaaaa"
        # (our id, the peer's id, the second connection is incoming, the second one is kept)
        cases = [(big, small, False, True), (big, small, True, False),
                 (small, big, True, True), (small, big, False, False)]
        for our_id, their_id, new_incoming, new_kept in cases:
            with self.subTest(ours_larger=our_id == big, new_incoming=new_incoming):
                self.swarm = Swarm("t", our_id, self.dialled.append)
                first = FakeConnection(addr(1), peer_id=their_id, incoming=not new_incoming)
                self.assertIsNone(self.admitted(first))
                second = FakeConnection(addr(2), peer_id=their_id, incoming=new_incoming)
                reason = self.admitted(second)
                if new_kept:
                    self.assertIsNone(reason)
                    self.assertTrue(first.closed)
                    self.assertEqual(self.swarm.peers, {second})
                else:
                    self.assertEqual(reason, "already connected to this peer")
                    self.assertFalse(first.closed)
                    self.assertEqual(self.swarm.peers, {first})

    def test_both_ends_of_a_crossed_pair_keep_the_same_connection(self):
        a_id, b_id = b"-SX0001-aaaaaaaaaaaa", b"-SX0001-bbbbbbbbbbbb"
        a = Swarm("a", a_id, lambda address: None)
        b = Swarm("b", b_id, lambda address: None)
        # Link 1 was opened by A, link 2 by B; each node sees its own link first.
        a_link1 = FakeConnection(addr(2), peer_id=b_id, incoming=False)
        a_link2 = FakeConnection(addr(3), peer_id=b_id, incoming=True)
        b_link2 = FakeConnection(addr(1), peer_id=a_id, incoming=False)
        b_link1 = FakeConnection(addr(4), peer_id=a_id, incoming=True)
        self.assertIsNone(a.admit(a_link1))
        self.assertIsNone(b.admit(b_link2))
        # B's id is larger: the link B opened (link 2) survives at both ends.
        self.assertIsNone(a.admit(a_link2))
        self.assertTrue(a_link1.closed)
        self.assertIsNotNone(b.admit(b_link1))
        self.assertFalse(b_link2.closed)


class BanTests(Kit):
    def test_ban_closes_the_peer_and_refuses_its_address_and_peer_id(self):
        pid = peer_id_for(5)
        conn = FakeConnection(addr(5), peer_id=pid)
        self.assertIsNone(self.admitted(conn))
        self.swarm.ban(addr(5), pid, "sent bad data")
        self.assertTrue(conn.closed)
        self.assertEqual(conn.close_reason, "sent bad data")
        self.assertNotIn(conn, self.swarm.peers)
        self.assertEqual(self.swarm.admit(FakeConnection(addr(5), peer_id=peer_id_for(6))),
                         "banned peer")
        self.assertEqual(self.swarm.admit(FakeConnection(("10.9.9.9", 40000), peer_id=pid,
                                                         incoming=True)), "banned peer")

    def test_a_banned_address_is_never_dialled(self):
        self.swarm.add_peers([addr(1), addr(2)], "tracker")
        self.swarm.ban(addr(1), None, "liar")
        self.swarm.connect_more(0.0)
        self.assertEqual(self.dialled, [addr(2)])
        self.assertFalse(self.swarm.anyone_to_dial(1000.0))

    def test_a_ban_holds_for_the_host_whatever_port_it_comes_back_from(self):
        host = addr(5)[0]
        self.swarm.add_peers([(host, 7000), (host, 7001), addr(6)], "tracker")
        self.swarm.ban((host, 7000), None, "liar")
        self.assertEqual(self.swarm.admit(FakeConnection((host, 51000), incoming=True,
                                                         peer_id=peer_id_for(9))),
                         "banned peer")
        self.assertEqual(self.swarm.add_peers([(host, 7002)], "pex"), 0)
        self.swarm.connect_more(0.0)
        self.assertEqual(self.dialled, [addr(6)])

    def test_ban_by_peer_id_closes_its_other_connections(self):
        pid = peer_id_for(5)
        first = FakeConnection(addr(5), peer_id=pid)
        other = FakeConnection(addr(6), peer_id=peer_id_for(6))
        self.admitted(first)
        self.admitted(other)
        self.swarm.ban(("10.7.7.7", 1), pid, "liar")
        self.assertTrue(first.closed)
        self.assertFalse(other.closed)

    def test_close_all_closes_every_connection(self):
        conns = [FakeConnection(addr(n)) for n in range(3)]
        for conn in conns:
            self.admitted(conn)
        self.swarm.close_all("stopping")
        self.assertTrue(all(c.closed and c.close_reason == "stopping" for c in conns))
        self.assertEqual(self.swarm.peers, set())


class BoundTests(Kit):
    def test_known_addresses_stop_at_the_bound_from_every_source(self):
        first = [("10.%d.%d.1" % divmod(n, 250), 6881) for n in range(MAX_KNOWN_PEERS - 10)]
        self.assertEqual(self.swarm.add_peers(first, "tracker"), MAX_KNOWN_PEERS - 10)
        more = [("11.%d.%d.1" % divmod(n, 250), 6881) for n in range(50)]
        self.assertEqual(self.swarm.add_peers(more, "pex"), 10)
        self.assertEqual(len(self.swarm.known), MAX_KNOWN_PEERS)


class TakeOverTests(Kit):
    def test_take_over_adopts_addresses_bans_and_attempts(self):
        other = Swarm("magnet", OUR_PEER_ID, lambda address: None)
        other.add_peers([addr(1), addr(2)], "magnet")
        other.connect_more(0.0)
        other.ban(addr(3), peer_id_for(3), "liar")
        self.swarm.take_over(other)
        self.assertEqual(set(self.swarm.known), {addr(1), addr(2), addr(3)})
        self.assertIn(peer_id_for(3), self.swarm.banned_ids)
        self.assertEqual(self.swarm.dialling, {addr(1), addr(2)})
        # Attempts the stand-in started are not started twice.
        self.swarm.connect_more(0.0)
        self.assertEqual(self.dialled, [])
        # An attempt that succeeds after the hand-over is admitted here.
        self.assertIsNone(self.admitted(FakeConnection(addr(1))))
        self.assertEqual(self.swarm.dialling, {addr(2)})
        self.assertEqual(self.swarm.admit(FakeConnection(addr(9), peer_id=peer_id_for(3))),
                         "banned peer")


if __name__ == "__main__":
    unittest.main()
