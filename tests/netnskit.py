"""Network namespaces for tests: two namespaces joined by a veth pair, made and removed by a test.

Some behaviour cannot be seen on 127.0.0.1: local peer discovery needs a multicast route, and
Transmission ignores peers on 127.0.0.0/8. A `Subnet` gives a test two namespaces, A and B, with
10.OCTET.N.1 and 10.OCTET.N.2 on the two ends of a veth pair and a multicast route on each end, so
nothing sent inside can leave them. `in_namespace` prefixes a command with `ip netns exec`;
`namespace_python` writes a launcher that runs Python (and so `sta.py`) in a namespace with its
own STA_HOME.

Making namespaces needs root and iproute2: `namespaces_usable()` says why not, for skipIf.
Everything made is removed by the test's cleanup, also when the test fails.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import unittest
from typing import List, Sequence

# Deadline of one `ip` command: each takes milliseconds; generous for a loaded machine.
IP_TIMEOUT = 10.0
# Interface names have at most 15 characters (IFNAMSIZ - 1): the tag, the subnet number, the side
# letter and a "v" for the veth end must fit.
IFNAME_MAX = 15


def _ip(*args: str) -> None:
    subprocess.run(["ip"] + list(args), check=True, timeout=IP_TIMEOUT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def namespaces_usable() -> str:
    """Why namespace tests cannot run here, or "" when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    return ""


class Subnet:
    """Two namespaces, A (`names[0]`, `addresses[0]`) and B, joined by a veth pair.

    `label` (two or three letters) names the suite and `octet` picks its 10.OCTET.0.0/16, so two
    suites running at once never collide; `number` tells apart the subnets of one suite. The
    process id goes into the names, so two runs never collide either.
    """

    def __init__(self, test: unittest.TestCase, number: int, label: str = "sl",
                 octet: int = 77) -> None:
        tag = "%s%d" % (label, os.getpid() % 100000)
        self.names = ["%s%da" % (tag, number), "%s%db" % (tag, number)]
        self.addresses = ["10.%d.%d.1" % (octet, number), "10.%d.%d.2" % (octet, number)]
        ends = [name + "v" for name in self.names]
        if max(len(end) for end in ends) > IFNAME_MAX:
            raise ValueError("interface name %r is too long" % ends[0])
        for name in self.names:
            _ip("netns", "add", name)
            test.addCleanup(subprocess.run, ["ip", "netns", "del", name], timeout=IP_TIMEOUT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _ip("link", "add", ends[0], "netns", self.names[0], "type", "veth",
            "peer", "name", ends[1], "netns", self.names[1])
        for name, end, address in zip(self.names, ends, self.addresses):
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "addr", "add", address + "/24", "dev", end)
            _ip("-n", name, "link", "set", end, "up")
            _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", end)


def in_namespace(namespace: str, cmd: Sequence[str]) -> List[str]:
    """`cmd` run inside `namespace`."""
    return ["ip", "netns", "exec", namespace] + [str(part) for part in cmd]


def namespace_python(test: unittest.TestCase, folder: str, namespace: str,
                     unset: Sequence[str] = ()) -> str:
    """A launcher that runs Python in ``namespace`` with STA_HOME in ``folder`` and the
    environment variables in ``unset`` removed (StaProcess takes it as its interpreter)."""
    home = os.path.join(folder, "home-" + namespace)
    os.makedirs(home, exist_ok=True)
    path = os.path.join(folder, "python-" + namespace)
    drop = "".join("-u %s " % name for name in unset)
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec env %sSTA_HOME='%s' ip netns exec %s '%s' \"$@\"\n"
                % (drop, home, namespace, sys.executable))
    os.chmod(path, stat.S_IRWXU)
    return path
