"""Status rows (statusrows.py): a connection's row and a torrent's discovery summary."""

import unittest
from types import SimpleNamespace

from sta.statusrows import STATUS_FAILED_ADDRESSES, discovery_status, peer_row
from sta.swarm import Swarm
from tests.fakes import OUR_PEER_ID, FakeConnection


class PeerRowTests(unittest.TestCase):
    def test_flags_say_who_wants_what_as_utorrent_shows_them(self):
        conn = FakeConnection(("10.0.0.5", 6881), incoming=True)
        conn.am_interested, conn.peer_choking = True, False      # D: downloading from it
        conn.peer_interested, conn.am_choking = True, True       # u: it wants, we choke
        conn.encrypted = True
        row = peer_row(conn, 0.5, snubbed=True)
        self.assertEqual(row["flags"], "DuEIS")
        self.assertEqual((row["address"], row["progress"]), ("10.0.0.5:6881", 0.5))

    def test_a_quiet_outgoing_plain_connection_has_no_flags(self):
        self.assertEqual(peer_row(FakeConnection(), 0.0, snubbed=False)["flags"], "")


class DiscoveryTests(unittest.TestCase):
    def test_trackers_known_and_failed_addresses_are_reported_bounded(self):
        swarm = Swarm("t", OUR_PEER_ID, lambda address: None)
        addresses = [("10.0.1.%d" % n, 6881) for n in range(STATUS_FAILED_ADDRESSES + 5)]
        swarm.add_peers(addresses, "tracker")
        for address in addresses:
            swarm.dial_failed(address, 0.0)
        announcer = SimpleNamespace(status=lambda: [SimpleNamespace(
            url="http://t/announce", last_error="connection refused", peers=None)])
        status = discovery_status(announcer, swarm)
        self.assertEqual(status["trackers"], [{"url": "http://t/announce",
                                               "error": "connection refused", "peers": None}])
        self.assertEqual(status["known"], len(addresses))
        self.assertEqual(len(status["failed"]), STATUS_FAILED_ADDRESSES)

    def test_without_an_announcer_there_are_no_trackers(self):
        swarm = Swarm("t", OUR_PEER_ID, lambda address: None)
        self.assertEqual(discovery_status(None, swarm),
                         {"trackers": [], "known": 0, "failed": []})


if __name__ == "__main__":
    unittest.main()
