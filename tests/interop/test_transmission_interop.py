"""STA and Transmission (3.00) at its default settings, both ways, in network namespaces.

Transmission ignores peers on 127.0.0.0/8, so each test makes a subnet (tests/netnskit.py): STA's
tracker and the STA node run in namespace A (10.78.N.1), transmission-daemon in namespace B
(10.78.N.2) with a settings.json that sets only ports, paths and the RPC whitelist: encryption
stays "preferred", uTP on, DHT, PEX and local peer discovery on. The STA nodes run with --no-dht
and --no-lsd, so the tracker is the only way the two learn of each other, and the order in which
they start decides who dials whom: a node hears of the other at its first announce only if the
other has announced before; the tracker's interval is long enough that nobody asks it again
within a test.

What Transmission 3.00 does when it dials a peer (handshake.c, peer-mgr.c): it tries uTP first;
when that times out (about 9 s, errno ETIMEDOUT) it marks the peer as not speaking uTP, reconnects
over TCP and sends a plain handshake, but then falls through to its "libevent got an error" branch
and aborts the new TCP connection at once ("handshakeDone: aborting"); the peer is marked
unreachable and not tried again for 15 minutes. So a peer without uTP is never downloaded from by
a Transmission that has to dial it; one that dials Transmission over TCP is served normally.

Where STA must use uTP with Transmission, STA's namespace refuses TCP to Transmission's peer port
with an `ip rule` (a routing rule that matches ports: Linux 4.17 on), so STA's TCP dial fails at
once and its fallback dials uTP; those tests skip when the rule cannot be made.

Needs root, iproute2 and transmission-daemon with transmission-remote; skips with the reason when
one is missing. Everything started is stopped, and the namespaces removed, by each test's cleanup.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
import unittest
from typing import Any, List

from tests import enginekit as kit
from tests import netnskit
from tests.interop import clients

# A few MiB in 256 KiB pieces: several pieces, and a transfer of about a second on a veth pair.
FILE_SIZE = 3 * 1024 * 1024 + 12345
PIECE_LENGTH = 256 * 1024
TRACKER_PORT = 4000
# Longer than any test: after its first announce a node never asks the tracker again, so who dials
# whom follows from the start order alone.
TRACKER_INTERVAL = 3600
# Deadline of a transfer between the two: 13 to 17 s on an idle machine, most of it spent before
# the first piece moves (Transmission unchokes a new peer at its next rechoke, every 10 s in
# peer-mgr.c); generous for a loaded machine, and past Transmission's uTP timeout (about 9 s), so
# a TCP fallback after it would be seen.
TRANSFER_TIMEOUT = 35.0
# Deadline of the daemon's RPC answering, and of its check of the data it seeds.
DAEMON_TIMEOUT = 20.0
# Deadline of one transmission-remote call (each takes milliseconds).
REMOTE_TIMEOUT = 10.0
# Poll interval of Transmission's progress: its own status updates once a second.
PROGRESS_POLL = 0.25
# What `transmission-remote --info-trackers` shows once an announce was answered.
ANNOUNCED = "Got a list of"
# Subnet numbers: one per test, so a cleanup that lags never meets the next test's names.
_numbers = itertools.count(1)


@unittest.skipIf(netnskit.namespaces_usable(), netnskit.namespaces_usable())
class TransmissionInteropTests(unittest.TestCase):
    def setUp(self) -> None:
        clients.need_transmission(self)
        self.dir = kit.temp_dir(self, "sta-transmission-")
        self.subnet = netnskit.Subnet(self, next(_numbers), label="tr", octet=78)
        self.sta_ns, self.tr_ns = self.subnet.names
        self.sta_ip, self.tr_ip = self.subnet.addresses
        self.data = os.path.join(self.dir, "data")
        self.source = clients.make_file(os.path.join(self.data, "payload.bin"), FILE_SIZE, 7)
        self.torrent = os.path.join(self.dir, "payload.torrent")
        kit.write_torrent(self.source, self.torrent,
                          ["https://%s:%d/announce" % (self.sta_ip, TRACKER_PORT)],
                          piece_length=PIECE_LENGTH)
        self.python = netnskit.namespace_python(self, self.dir, self.sta_ns)
        self.nodes: List[kit.StaProcess] = []
        tracker = self.sta("tracker", "--host", self.sta_ip, "--port", TRACKER_PORT, "--tls",
                           "--interval", TRACKER_INTERVAL, "--db",
                           os.path.join(self.dir, "tracker.db"), "--no-udp")
        self.tracker_cert = tracker.wait_for(r"TLS certificate (\S+)").group(1)
        tracker.wait_for("Announce URL")
        self.daemon = self.start_transmission()

    # ------------------------------------------------------------------------------ helpers

    def sta(self, *args: Any) -> kit.StaProcess:
        """`sta.py ARGS` in namespace A (its output is shown when a wait fails)."""
        node = kit.StaProcess(self, *args, python=self.python)
        self.nodes.append(node)
        return node

    def sta_seed(self, *options: str) -> kit.StaProcess:
        seed = self.sta("seed", self.torrent, "--data", self.data, "--port", "0", "--no-dht",
                        "--no-lsd", "--tracker-cafile", self.tracker_cert, "--log-level", "info",
                        *options)
        seed.wait_for("Seeding")
        return seed

    def start_transmission(self) -> Any:
        config = os.path.join(self.dir, "transmission")
        clients.write_transmission_settings(config, os.path.join(self.dir, "tr-downloads"))
        # Transmission's HTTP client trusts the certificates named in CURL_CA_BUNDLE (web.c).
        env = dict(os.environ, CURL_CA_BUNDLE=self.tracker_cert)
        daemon = clients.start(netnskit.in_namespace(
            self.tr_ns, clients.transmission_daemon_cmd(config)), self, env=env)
        deadline = time.monotonic() + DAEMON_TIMEOUT
        while self.remote_call("--list").returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                self.fail("transmission-daemon's RPC did not answer\n" + clients.output(daemon))
            time.sleep(PROGRESS_POLL)
        return daemon

    def remote_call(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(netnskit.in_namespace(self.tr_ns, clients.transmission_remote_cmd(
            *args)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=REMOTE_TIMEOUT)

    def remote(self, *args: str) -> str:
        """transmission-remote ARGS against the daemon; fails the test if it fails."""
        done = self.remote_call(*args)
        text = done.stdout.decode("utf-8", "replace")
        self.assertEqual(done.returncode, 0, "transmission-remote %s: %s" % (args, text))
        return text

    def wait_transmission(self, state: str, timeout: float) -> None:
        """Wait until Transmission has the whole torrent and is in `state` ("Seeding" or
        "Idle"); fail with its view of the torrent and its peers if not within `timeout`."""
        deadline = time.monotonic() + timeout
        info = ""
        while time.monotonic() < deadline:
            info = self.remote("-t", "all", "--info")
            done, now = clients.transmission_progress(info)
            if done == 100.0 and now in (state, "Idle", "Seeding"):
                return
            time.sleep(PROGRESS_POLL)
        self.fail("Transmission did not complete within %.0f s:\n%s\npeers:\n%s\n%s\n%s"
                  % (timeout, info, self.remote("-t", "all", "--info-peers") + self.remote("-t", "all", "--info-trackers"),
                     clients.output(self.daemon),
                     "\n".join(node.describe() for node in self.nodes)))

    def transmission_seeds(self) -> None:
        """Transmission checks the data and seeds it (and announces to the tracker)."""
        self.remote("--add", self.torrent, "--download-dir", self.data)
        self.wait_transmission("Seeding", DAEMON_TIMEOUT)

    def transmission_downloads(self) -> None:
        """Transmission starts downloading, and has announced to the tracker on return."""
        self.remote("--add", self.torrent)
        deadline = time.monotonic() + DAEMON_TIMEOUT
        while ANNOUNCED not in self.remote("-t", "all", "--info-trackers"):
            if time.monotonic() > deadline:
                self.fail("Transmission did not announce\n" + clients.output(self.daemon))
            time.sleep(PROGRESS_POLL)

    def assert_transmission_has_the_file(self) -> None:
        got = os.path.join(self.dir, "tr-downloads", "payload.bin")
        self.assertEqual(kit.read_file(got), kit.read_file(self.source))

    def sta_downloads(self, *options: str) -> str:
        """STA downloads from Transmission (told its address); returns STA's output."""
        out = os.path.join(self.dir, "sta-downloads")
        down = self.sta("download", self.torrent, "-o", out, "--port", "0", "--no-dht",
                        "--no-lsd", "--peer", "%s:%d" % (self.tr_ip,
                                                         clients.TRANSMISSION_PEER_PORT),
                        "--tracker-cafile", self.tracker_cert, "--timeout",
                        str(int(TRANSFER_TIMEOUT)), "--log-level", "info", *options)
        self.assertEqual(down.wait_exit(TRANSFER_TIMEOUT + 15), 0, down.describe())
        self.assertNotIn("Traceback", down.output)
        self.assertEqual(kit.read_file(os.path.join(out, "payload.bin")),
                         kit.read_file(self.source))
        return down.output

    def refuse_tcp_to_transmission(self) -> None:
        """STA's namespace refuses TCP to Transmission's peer port (a routing rule: no firewall
        needed), so STA's TCP dial fails at once and it dials over uTP. Skips when the kernel's
        rules cannot match on ports (Linux before 4.17)."""
        done = subprocess.run(netnskit.in_namespace(self.sta_ns, [
            "ip", "rule", "add", "ipproto", "tcp", "dport", str(clients.TRANSMISSION_PEER_PORT),
            "prohibit"]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=REMOTE_TIMEOUT)
        if done.returncode != 0:
            self.skipTest("ip rule cannot match TCP ports here: %s"
                          % done.stdout.decode("utf-8", "replace").strip())

    # -------------------------------------------------------- Transmission downloads from STA

    def transmission_downloads_from_a_seed_that_dials_it(self, *seed_options: str) -> None:
        # Transmission announces first, so the seed hears of it at its own first announce and
        # dials it over TCP.
        self.transmission_downloads()
        self.sta_seed(*seed_options)
        self.wait_transmission("Seeding", TRANSFER_TIMEOUT)
        self.assert_transmission_has_the_file()

    def test_transmission_downloads_from_a_seed_that_dials_it(self) -> None:
        self.transmission_downloads_from_a_seed_that_dials_it()

    def test_transmission_downloads_from_a_plain_seed_that_dials_it(self) -> None:
        self.transmission_downloads_from_a_seed_that_dials_it("--encryption", "off")

    def test_transmission_downloads_over_rc4_from_a_seed_that_requires_encryption(self) -> None:
        # `require` offers MSE/PE with RC4 only: the transfer itself shows RC4 was agreed.
        self.transmission_downloads_from_a_seed_that_dials_it("--encryption", "require")

    def test_transmission_downloads_from_a_seed_that_dials_it_over_utp(self) -> None:
        # TCP to Transmission is refused: the seed dials it over uTP, sends its handshake and
        # bitfield, and then has nothing more to say until Transmission asks for pieces.
        self.refuse_tcp_to_transmission()
        self.transmission_downloads_from_a_seed_that_dials_it()
        self.assertIn("trying %s:%d over utp" % (self.tr_ip, clients.TRANSMISSION_PEER_PORT),
                      self.nodes[-1].output)

    # Transmission dials a peer over uTP first; should that time out, its TCP fallback aborts
    # itself (handshake.c gotError) and the peer is backed off for 15 minutes: a seed that
    # Transmission must dial is downloaded from only because it answers uTP.
    def test_transmission_downloads_from_a_seed_it_dials(self) -> None:
        self.sta_seed()   # announces first: it never hears of Transmission
        self.transmission_downloads()
        self.wait_transmission("Seeding", TRANSFER_TIMEOUT)
        self.assert_transmission_has_the_file()

    # -------------------------------------------------------- STA downloads from Transmission

    def test_sta_downloads_from_a_transmission_seed(self) -> None:
        self.transmission_seeds()
        self.sta_downloads()

    def test_sta_downloads_in_plain_bittorrent_from_a_transmission_seed(self) -> None:
        self.transmission_seeds()
        self.sta_downloads("--encryption", "off")

    def test_sta_requiring_encryption_downloads_over_rc4_from_a_transmission_seed(self) -> None:
        self.transmission_seeds()
        self.sta_downloads("--encryption", "require")

    # STA dials over uTP a peer whose TCP it cannot reach (or that PEX or an incoming uTP
    # connection said speaks uTP): then Transmission answers the uTP SYN, and STA's handshake
    # and first messages reach it over uTP, with MSE/PE and without.
    def test_sta_dialling_over_utp_downloads_from_a_transmission_seed(self) -> None:
        self.transmission_seeds()
        self.refuse_tcp_to_transmission()
        output = self.sta_downloads()
        self.assertIn("trying %s:%d over utp" % (self.tr_ip, clients.TRANSMISSION_PEER_PORT),
                      output)

    def test_sta_dialling_over_utp_downloads_in_plain_bittorrent_from_transmission(self) -> None:
        self.transmission_seeds()
        self.refuse_tcp_to_transmission()
        output = self.sta_downloads("--encryption", "off")
        self.assertIn("trying %s:%d over utp" % (self.tr_ip, clients.TRANSMISSION_PEER_PORT),
                      output)


if __name__ == "__main__":
    unittest.main()
