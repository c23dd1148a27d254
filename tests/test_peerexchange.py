"""Peer exchange for a torrent (peerexchange.py) with fake connections and no clock."""

import unittest

from sta import bencode, pex
from sta.peerexchange import PEX_MIN_GAP, PeerExchange, listen_address
from sta.peerproto import PeerExtensions
from tests.fakes import FakeConnection


def conn(n, incoming=False, pex_ids=True, port=None):
    c = FakeConnection(("10.0.0.%d" % n, 6881 if not incoming else 40000 + n),
                       incoming=incoming, ids={"ut_pex": 3} if pex_ids else {})
    if port is not None:
        c.extensions = PeerExtensions(ids=dict(c.extensions.ids), listen_port=port)
    return c


class Kit(unittest.TestCase):
    def setUp(self):
        self.added = []
        self.exchange = PeerExchange(False, lambda addresses, source: self.added.append(
            (list(addresses), source)))


class SendTests(Kit):
    def test_each_peer_hears_of_the_others_with_flags_and_never_of_itself(self):
        a, b = conn(1), conn(2, incoming=True, port=7000)
        quiet = conn(3, pex_ids=False)
        self.exchange.tick([a, b, quiet], lambda c: c is a, 0.0)
        [(name, payload)] = [s[1:] for s in a.sent if s[0] == "extended"]
        told = pex.decode(payload)
        self.assertEqual(name, "ut_pex")
        self.assertEqual(sorted(told.added), [("10.0.0.2", 7000), ("10.0.0.3", 6881)])
        flags = dict(zip(told.added, told.flags))
        self.assertEqual(flags[("10.0.0.3", 6881)], pex.FLAG_REACHABLE)
        self.assertEqual(flags[("10.0.0.2", 7000)], 0)  # it reached us: not known reachable
        told_b = pex.decode([s for s in b.sent if s[0] == "extended"][0][2])
        self.assertIn(("10.0.0.1", 6881), told_b.added)
        self.assertEqual(dict(zip(told_b.added, told_b.flags))[("10.0.0.1", 6881)],
                         pex.FLAG_REACHABLE | pex.FLAG_SEED)
        self.assertEqual([s for s in quiet.sent if s[0] == "extended"], [])

    def test_a_peer_on_utp_is_flagged_as_speaking_it(self):
        a, b = conn(1), conn(2)
        b.over_utp = True
        self.exchange.tick([a, b], lambda c: False, 0.0)
        told = pex.decode([s for s in a.sent if s[0] == "extended"][0][2])
        self.assertEqual(dict(zip(told.added, told.flags))[("10.0.0.2", 6881)],
                         pex.FLAG_REACHABLE | pex.FLAG_UTP)

    def test_an_incoming_peer_without_a_listen_port_is_not_advertised(self):
        self.assertIsNone(listen_address(conn(4, incoming=True)))

    def test_a_private_torrent_neither_sends_nor_takes(self):
        exchange = PeerExchange(True, lambda *a: self.fail("took peers"))
        a, b = conn(1), conn(2)
        exchange.tick([a, b], lambda c: False, 0.0)
        exchange.received(a, pex.encode([(("10.9.9.9", 1), 0)], []), 0.0)
        self.assertEqual(a.sent, [])
        self.assertEqual(exchange.extension_fields(), {"without": ["ut_pex"]})


class ReceiveTests(Kit):
    def test_peers_heard_go_to_the_swarm_as_pex(self):
        a = conn(1)
        self.exchange.received(a, pex.encode([(("10.9.9.9", 6881), 0)], []), 0.0)
        self.assertEqual(self.added, [([("10.9.9.9", 6881)], "pex")])

    def test_peers_flagged_as_speaking_utp_are_reported_as_such(self):
        utp = []
        exchange = PeerExchange(False, lambda *a: None, utp.append)
        exchange.received(conn(1), pex.encode([(("10.9.9.9", 6881), pex.FLAG_UTP),
                                               (("10.9.9.8", 6881), pex.FLAG_SEED)], []), 0.0)
        self.assertEqual(utp, [("10.9.9.9", 6881)])

    def test_messages_closer_than_the_gap_and_malformed_ones_are_ignored(self):
        a = conn(1)
        self.exchange.received(a, b"garbage", 0.0)
        self.exchange.received(a, pex.encode([(("10.9.9.8", 1), 0)], []), PEX_MIN_GAP / 2)
        self.assertEqual(self.added, [])
        self.exchange.received(a, pex.encode([(("10.9.9.7", 1), 0)], []), PEX_MIN_GAP * 2)
        self.assertEqual(self.added, [([("10.9.9.7", 1)], "pex")])


if __name__ == "__main__":
    unittest.main()
