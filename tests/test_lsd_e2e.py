"""Local peer discovery (BEP 14) end to end: two `sta.py` nodes on one subnet, no tracker.

The subnet is made here: two network namespaces joined by a veth pair, 10.77.x.1 and 10.77.x.2,
each with a route for multicast (224.0.0.0/4) on its end of the pair, so nothing a node sends
can leave them. Each node runs as `ip netns exec NS python3 sta.py ...` with its own STA_HOME.
Making namespaces needs root and iproute2: without them the tests skip and say so. Everything
made is removed by the test's cleanup, also when it fails.
"""

from __future__ import annotations

import os
import unittest
from typing import Any

from tests import enginekit as kit
from tests.interop import clients
from tests.netnskit import Subnet, namespace_python, namespaces_usable

# Deadline of the download that must find the seed: both nodes announce as they start, so the
# transfer should be done in a few seconds; generous for a loaded machine.
FIND_TIMEOUT = 30.0
# --timeout of the download that must not find the seed.
GIVE_UP_AFTER = 4
FILE_SIZE = 300 * 1024 + 17
# A libtorrent seed with local service discovery on: it prints "ready" once seeding and "lsd
# peer ..." (with the peer's address) for each peer it hears of by BEP 14, and runs until it is
# stopped.
LT_SEED = """
import sys, time, libtorrent as lt
s = lt.session({"listen_interfaces": "0.0.0.0:6881", "enable_lsd": True, "enable_dht": False,
                "enable_upnp": False, "enable_natpmp": False,
                "alert_mask": lt.alert.category_t.status_notification
                              | lt.alert.category_t.peer_notification})
h = s.add_torrent({"ti": lt.torrent_info(sys.argv[1]), "save_path": sys.argv[2]})
while not h.status().is_seeding:
    time.sleep(0.1)
print("ready", flush=True)
while True:
    for a in s.pop_alerts():
        if a.what() == "lsd_peer":   # the Python binding has no class for it: its message
            print("lsd peer", a.message(), flush=True)
    time.sleep(0.1)
"""


@unittest.skipIf(namespaces_usable(), namespaces_usable())
class TwoNodesOnASubnetTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = kit.temp_dir(self, "sta-lsd-")
        self.data = kit.make_tree(os.path.join(self.dir, "data"), {"notes.bin": FILE_SIZE})
        self.meta = kit.write_torrent(os.path.join(self.data, "notes.bin"),
                                      os.path.join(self.dir, "notes.torrent"))
        self.magnet = "magnet:?xt=urn:btih:" + self.meta.info_hash.hex()
        self.out = os.path.join(self.dir, "out")

    def node(self, subnet: Subnet, side: int, *args: Any) -> kit.StaProcess:
        python = namespace_python(self, self.dir, subnet.names[side], unset=("STA_NO_LSD",))
        return kit.StaProcess(self, *args, "--port", "0", python=python)

    def seed(self, subnet: Subnet, *extra: str) -> kit.StaProcess:
        seed = self.node(subnet, 0, "seed", os.path.join(self.dir, "notes.torrent"),
                         "--data", self.data, *extra)
        seed.wait_for("Seeding")
        return seed

    def test_a_magnet_with_only_its_info_hash_finds_the_seed_on_the_subnet(self) -> None:
        subnet = Subnet(self, 1)
        self.seed(subnet)
        download = self.node(subnet, 1, "download", self.magnet, "-o", self.out,
                             "--log-level", "info")
        status = download.wait_exit(FIND_TIMEOUT)
        self.assertEqual(status, 0, download.describe())
        self.assertEqual(kit.read_file(os.path.join(self.out, "notes.bin")),
                         kit.read_file(os.path.join(self.data, "notes.bin")))
        self.assertIn("local peer discovery on IPv4", download.output)

    @unittest.skipUnless(clients.have_libtorrent(), "libtorrent's Python binding is not installed")
    def test_libtorrent_hears_our_announce_and_serves_a_bare_magnet(self) -> None:
        subnet = Subnet(self, 3)
        seed = clients.start(["ip", "netns", "exec", subnet.names[0], clients.LT_PYTHON, "-c",
                              LT_SEED, os.path.join(self.dir, "notes.torrent"), self.data], self)
        clients.wait_for_line(seed, "ready", FIND_TIMEOUT)
        download = self.node(subnet, 1, "download", self.magnet, "-o", self.out)
        self.assertEqual(download.wait_exit(FIND_TIMEOUT), 0, download.describe())
        self.assertEqual(kit.read_file(os.path.join(self.out, "notes.bin")),
                         kit.read_file(os.path.join(self.data, "notes.bin")))
        heard = clients.wait_for_line(seed, "lsd peer", FIND_TIMEOUT)
        self.assertIn("%s:" % subnet.addresses[1], heard)

    def test_no_lsd_leaves_the_nodes_strangers(self) -> None:
        subnet = Subnet(self, 2)
        self.seed(subnet, "--no-lsd")
        download = self.node(subnet, 1, "download", self.magnet, "-o", self.out,
                             "--timeout", str(GIVE_UP_AFTER))
        self.assertNotEqual(download.wait_exit(FIND_TIMEOUT), 0, download.describe())
        self.assertFalse(os.path.exists(os.path.join(self.out, "notes.bin")))


if __name__ == "__main__":
    unittest.main()
