"""The local discovery service (lsd_service.py) and its place in the session.

What a received datagram leads to is tested by handing datagrams to ``LsdService.receive``
with a clock the test moves. Two services meeting over real multicast need an interface that
takes it: the loopback one, bound to 127.0.0.1, when it has the MULTICAST flag; otherwise, as
root, the loopback interface of a network namespace made for the test (nothing leaves it); else
the test skips and says why. The session's part (one service, torrents added and removed,
private and paused torrents left out) is tested with a recording stand-in for the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import unittest
from types import SimpleNamespace
from typing import Any, List, Tuple
from unittest import mock

from sta import session as session_module
from sta.lsd import SOURCE_BURST, encode_announce
from sta.lsd_service import (IFF_MULTICAST, IFF_UP, LsdService, ipv4_links, ipv6_links,
                             multicast_interfaces)
from sta.session import Session
from sta.torrent import DOWNLOADING, PAUSED, SEEDING

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H1 = bytes(range(20))
H2 = bytes(range(1, 21))
# Deadline for two services to hear each other: both announce as they start.
MEET_TIMEOUT = 10.0
# Deadline of the namespace commands and of the child process running the meeting.
CHILD_TIMEOUT = 60.0


class Recorder:
    """The owner's side of a service: which torrents want peers, and the peers handed over."""

    def __init__(self, wanted: Tuple[bytes, ...] = (H1,)) -> None:
        self.wanted = set(wanted)
        self.found: List[Tuple[bytes, Tuple[str, int]]] = []

    def wants(self, info_hash: bytes) -> bool:
        return info_hash in self.wanted

    def add(self, info_hash: bytes, address: Tuple[str, int]) -> None:
        self.found.append((info_hash, address))


class ReceiveTests(unittest.TestCase):
    def setUp(self) -> None:
        self.now = 100.0
        self.owner = Recorder()
        self.service = LsdService(self.owner.add, self.owner.wants, clock=lambda: self.now,
                                  cookie="c0ffee")
        self.service.add(H1)
        self.service.add(H2)

    def test_an_announce_for_our_torrent_hands_over_the_sender_with_its_port(self) -> None:
        self.service.receive(encode_announce([H1, bytes(19) + b"\x07"], 51413, "1"),
                             ("10.0.0.7", 6771))
        self.assertEqual(self.owner.found, [(H1, ("10.0.0.7", 51413))])

    def test_our_own_announce_is_ignored(self) -> None:
        self.service.receive(encode_announce([H1], 6881, "C0FFEE"), ("10.0.0.1", 6771))
        self.assertEqual(self.owner.found, [])

    def test_a_torrent_that_does_not_want_peers_gets_none(self) -> None:
        # H2 is added but not wanted (private, or paused): the owner says no.
        self.service.receive(encode_announce([H2], 6881, "1"), ("10.0.0.7", 6771))
        self.assertEqual(self.owner.found, [])

    def test_a_removed_torrent_gets_no_peers(self) -> None:
        self.service.remove(H1)
        self.service.receive(encode_announce([H1], 6881, "1"), ("10.0.0.7", 6771))
        self.assertEqual(self.owner.found, [])

    def test_malformed_datagrams_and_undiallable_senders_are_dropped(self) -> None:
        self.service.receive(b"GET / HTTP/1.1\r\n\r\n", ("10.0.0.7", 6771))
        self.service.receive(b"\xff" * 5000, ("10.0.0.7", 6771))
        self.service.receive(encode_announce([H1], 6881, "1"), ("fe80::7%eth0", 6771, 0, 2))
        self.assertEqual((self.owner.found, self.service.heard), ([], 0))

    def test_a_flooding_sender_is_read_only_at_its_rate(self) -> None:
        data = encode_announce([H1], 6881, "1")
        for _ in range(SOURCE_BURST + 20):
            self.service.receive(data, ("10.0.0.7", 6771))
        self.assertEqual(len(self.owner.found), SOURCE_BURST)
        self.assertEqual(self.service.status()["dropped"], 20)
        self.service.receive(data, ("10.0.0.8", 6771))   # another sender is still heard
        self.assertEqual(len(self.owner.found), SOURCE_BURST + 1)


class StartTests(unittest.TestCase):
    def test_a_node_where_no_group_can_be_joined_runs_on_without_it(self) -> None:
        async def start() -> Tuple[bool, List[str]]:
            # 203.0.113.7 (TEST-NET-3) is no address of this machine: no interface to join on.
            service = LsdService(lambda *a: None, lambda h: True, bind="203.0.113.7")
            try:
                return await service.start(6881), service.joined
            finally:
                service.close()
        with self.assertLogs("sta.lsd_service", "WARNING") as logs:
            self.assertEqual(asyncio.run(start()), (False, []))
        self.assertIn("local peer discovery is off: IPv4: ", logs.output[0])


class InterfaceTests(unittest.TestCase):
    def test_a_bind_address_joins_on_that_address_only(self) -> None:
        links = ipv4_links("10.1.2.3")
        self.assertEqual([(l.membership, l.outgoing) for l in links],
                         [(bytes([239, 192, 152, 143, 10, 1, 2, 3]), bytes([10, 1, 2, 3]))])
        self.assertEqual(ipv6_links("10.1.2.3"), [])

    def test_a_bind_host_name_joins_on_the_address_it_names(self) -> None:
        self.assertEqual([l.outgoing for l in ipv4_links("localhost")], [bytes([127, 0, 0, 1])])

    def test_an_ipv6_bind_address_leaves_ipv4_out(self) -> None:
        self.assertEqual(ipv4_links("fd00::1"), [])
        self.assertEqual([l.outgoing for l in ipv6_links("fd00::1")], [0])

    @unittest.skipUnless(os.path.isdir("/sys/class/net"), "interface flags are read on Linux")
    def test_only_interfaces_that_are_up_and_take_multicast_are_joined(self) -> None:
        for name, _ in multicast_interfaces():
            with open(f"/sys/class/net/{name}/flags") as f:
                flags = int(f.read(), 16)
            self.assertEqual(flags & (IFF_UP | IFF_MULTICAST), IFF_UP | IFF_MULTICAST, name)


def loopback_takes_multicast() -> bool:
    try:
        with open("/sys/class/net/lo/flags") as f:
            return bool(int(f.read(), 16) & IFF_MULTICAST)
    except (OSError, ValueError):
        return False


async def two_services_meet() -> dict:
    """Two services on 127.0.0.1, one torrent each the other also has: what each heard."""
    owners = [Recorder(), Recorder()]
    heard = asyncio.Event()
    services = []
    for port, owner in zip((1111, 2222), owners):
        def found(info_hash: bytes, address: Tuple[str, int], owner: Recorder = owner) -> None:
            owner.add(info_hash, address)
            if all(o.found for o in owners):
                heard.set()
        service = LsdService(found, owner.wants, bind="127.0.0.1")
        services.append(service)
        if not await service.start(port):
            return {"error": "no group joined"}
    try:
        for service in services:
            service.add(H1)
        await asyncio.wait_for(heard.wait(), MEET_TIMEOUT)
    except asyncio.TimeoutError:
        pass
    finally:
        for service in services:
            service.close()
    return {"found": [[[h.hex(), list(a)] for h, a in o.found] for o in owners],
            "joined": services[0].joined}


class TwoServicesTests(unittest.TestCase):
    def meeting(self) -> dict:
        if loopback_takes_multicast():
            return asyncio.run(two_services_meet())
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("ip") is None:
            self.skipTest("the loopback interface has no MULTICAST flag, and making a network "
                          "namespace where it has one needs root and iproute2")
        namespace = "stalsd%d" % (os.getpid() % 100000)
        subprocess.run(["ip", "netns", "add", namespace], check=True, timeout=CHILD_TIMEOUT)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", namespace],
                        timeout=CHILD_TIMEOUT)
        for change in (["up"], ["multicast", "on"]):
            subprocess.run(["ip", "-n", namespace, "link", "set", "lo"] + change, check=True,
                           timeout=CHILD_TIMEOUT)
        code = ("import asyncio, json; from tests.test_lsd_service import two_services_meet; "
                "print(json.dumps(asyncio.run(two_services_meet())))")
        done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", code],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=CHILD_TIMEOUT)
        self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace"))
        return json.loads(done.stdout.decode().splitlines()[-1])

    def test_two_services_on_one_host_hear_each_other(self) -> None:
        result = self.meeting()
        self.assertIn("IPv4 127.0.0.1", result.get("joined", []), result)
        self.assertEqual(result["found"], [[[H1.hex(), ["127.0.0.1", 2222]]],
                                           [[H1.hex(), ["127.0.0.1", 1111]]]])


class FakeService:
    """Records what the session asks of its service."""
    instances: List["FakeService"] = []

    def __init__(self, found: Any, wants: Any, *, bind: str) -> None:
        self.found, self.wants, self.bind = found, wants, bind
        self.added: List[bytes] = []
        self.removed: List[bytes] = []
        self.closed = False
        FakeService.instances.append(self)

    async def start(self, listen_port: int) -> bool:
        self.listen_port = listen_port
        return True

    def add(self, info_hash: bytes) -> None:
        self.added.append(info_hash)

    def remove(self, info_hash: bytes) -> None:
        self.removed.append(info_hash)

    def close(self) -> None:
        self.closed = True


class FakeTorrent:
    downloaded = uploaded = 0

    def __init__(self, info_hash: bytes, private: bool = False, magnet: bool = False) -> None:
        self.info_hash = info_hash
        self.name = info_hash.hex()[:8]
        self.state = "metadata" if magnet else DOWNLOADING
        if not magnet:
            self.info = SimpleNamespace(private=private)
        self.peers_added: List[Tuple[List[Tuple[str, int]], str]] = []

    async def start(self, recheck: bool = False) -> None:
        pass

    def start_announcing(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def file_paths(self) -> List[str]:
        return []

    def forget_resume_state(self) -> None:
        pass

    def add_peers(self, addresses: List[Tuple[str, int]], source: str) -> None:
        self.peers_added.append((addresses, source))


class SessionTests(unittest.TestCase):
    def run_session(self, lsd: bool, body: Any) -> Any:
        async def main() -> Any:
            session = Session(port=0, host="127.0.0.1", lsd=lsd)
            await session.start()
            try:
                return await body(session)
            finally:
                await session.close()
        FakeService.instances = []
        with mock.patch.object(session_module, "LsdService", FakeService):
            return asyncio.run(main())

    def test_the_session_owns_one_service_for_all_its_torrents(self) -> None:
        async def body(session: Session) -> FakeService:
            a, b = FakeTorrent(H1), FakeTorrent(H2, magnet=True)
            await session.add(a)
            await session.add(b)
            await session.remove(a)
            return session.lsd
        service = self.run_session(True, body)
        self.assertEqual(FakeService.instances, [service])
        self.assertEqual((service.added, service.removed, service.closed),
                         ([H1, H2], [H1], True))
        self.assertEqual((service.bind, service.listen_port > 0), ("127.0.0.1", True))

    def test_private_paused_and_unknown_torrents_are_not_announced(self) -> None:
        async def body(session: Session) -> List[bool]:
            public, private = FakeTorrent(H1), FakeTorrent(H2, private=True)
            magnet = FakeTorrent(bytes(20), magnet=True)
            for torrent in (public, private, magnet):
                await session.add(torrent)
            wants = session.lsd.wants
            answers = [wants(H1), wants(H2), wants(bytes(20)), wants(b"\x09" * 20)]
            public.state = PAUSED
            answers.append(wants(H1))
            public.state = SEEDING
            answers.append(wants(H1))
            return answers
        self.assertEqual(self.run_session(True, body),
                         [True, False, True, False, False, True])

    def test_a_peer_found_reaches_the_torrent_as_from_lsd(self) -> None:
        async def body(session: Session) -> List[Any]:
            torrent = FakeTorrent(H1)
            await session.add(torrent)
            session.lsd.found(H1, ("10.0.0.7", 6881))
            session.lsd.found(H2, ("10.0.0.7", 6881))   # not ours: nobody to tell
            return torrent.peers_added
        self.assertEqual(self.run_session(True, body), [([("10.0.0.7", 6881)], "lsd")])

    def test_without_lsd_there_is_no_service(self) -> None:
        async def body(session: Session) -> Any:
            await session.add(FakeTorrent(H1))
            return session.lsd
        self.assertIsNone(self.run_session(False, body))
        self.assertEqual(FakeService.instances, [])


if __name__ == "__main__":
    unittest.main()
