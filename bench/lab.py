"""A lab on one machine: hosts in network namespaces on one bridge, shaped links, real processes.

    python3 bench/lab.py demo          (make lab)  the seed report's demonstration, verified
    python3 bench/lab.py bandwidth     100 Mbit/s, 20 ms RTT: raw TCP, STA and libtorrent
    python3 bench/lab.py swarm         one seed, 8 downloaders at 50 Mbit/s: STA and libtorrent

Needs root (network namespaces) and iproute2 with tc. Each host is a namespace
`stalab<pid>-<name>` with one interface, eth0, addressed 10.88.0.X/24 and plugged into a Linux
bridge that lives in a namespace of its own (`stalab<pid>-br`), so nothing touches the
machine's own network. A process on a host runs as `ip netns exec <namespace> ...` with its own
STA_HOME.

Shaping (Lab.shape) is a tc token bucket (tbf) on the host's eth0, so it limits what the host
sends (its uplink), as a lab machine's link does. This kernel has no netem, so delay comes from
bench/lab_relay.py, a user-space TCP relay (see its docstring for how it delays and its limits).

Everything is removed at the end, also after an exception, SIGTERM or Ctrl-C (try/finally, a
SIGTERM handler and atexit), and a run first removes what an earlier run of this file left
behind when that run's process is gone (namespaces whose pid no longer exists, and the
processes still inside them).
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from bench.common import Child  # noqa: E402

# Every namespace of a run is named PREFIX + pid + "-" + host, so runs never collide and a
# run's leftovers are recognised (and removed) once its pid is gone.
PREFIX = "stalab"
_NAME_RE = re.compile(r"^%s(\d+)-" % PREFIX)
SUBNET = "10.88.0"  # the report's lab is 192.168.88.0/24; hosts keep its last numbers
PREFIX_LEN = 24
# Deadline of each ip/tc command: they take milliseconds; more means a wedged kernel or lock.
IP_TIMEOUT = 10.0
# tbf: burst is the bucket's depth, the bytes that may leave back to back at line speed. It
# must hold at least what the rate earns between two timer ticks (rate / HZ: 4 ms at HZ=250)
# or the link never reaches its rate; 4 ms worth (50 KB at 100 Mbit/s) is that, and a few
# 64 KiB GSO segments at most, so short bursts stay close to the rate.
TBF_BURST_SECONDS = 0.004
TBF_MIN_BURST = 16 * 1024
# tbf latency: how long a packet may wait in the queue before it is dropped, i.e. the queue's
# size (rate x latency). 50 ms is a switch-sized buffer: deep enough that TCP rarely loses a
# packet to it at these rates, shallow enough not to hide a sender that overruns the link.
TBF_LATENCY_MS = 50
# The interpreter that imports libtorrent's bindings (tests/interop/clients.LT_PYTHON).
LT_PYTHON = "/usr/bin/python3"


class LabError(Exception):
    """The lab cannot be built or a scenario failed; the message says which and why."""


def _run(cmd: Sequence[str], check: bool = True) -> str:
    try:
        done = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=IP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError("%s: %s" % (" ".join(cmd), exc))
    if check and done.returncode != 0:
        raise LabError("%s: %s" % (" ".join(cmd), done.stderr.decode(errors="replace").strip()))
    return done.stdout.decode(errors="replace")


def why_not_usable() -> str:
    """Why this machine cannot build a lab (no root, no ip or tc), or "" when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the lab needs root (it makes network namespaces): run it with sudo"
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            return "the lab needs iproute2's %s command" % tool
    try:
        _run(["ip", "netns", "list"])
    except LabError as exc:
        return "ip netns does not work here: %s" % exc
    return ""


def remove_stale() -> List[str]:
    """Remove namespaces of earlier runs whose process is gone (and what still runs in them)."""
    removed = []
    for line in _run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME_RE.match(name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        _kill_inside(name)
        _run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process a lab left running inside one of its own namespaces."""
    for text in _run(["ip", "netns", "pids", namespace], check=False).split():
        if text.isdigit() and int(text) != os.getpid():
            try:
                os.kill(int(text), signal.SIGKILL)
            except OSError:
                pass


class Host:
    """One machine of the lab: a namespace with eth0 on the bridge."""

    def __init__(self, name: str, namespace: str, address: str, home: str) -> None:
        self.name = name
        self.namespace = namespace
        self.address = address
        self.home = home  # STA_HOME of the STA processes run here

    def prefix(self) -> List[str]:
        """The command words that run a program on this host."""
        return ["ip", "netns", "exec", self.namespace, "env", "STA_HOME=" + self.home]

    def tx_bytes(self) -> int:
        """Bytes this host has sent on its link (IP and TCP headers included)."""
        text = _run(["ip", "netns", "exec", self.namespace, "cat",
                     "/sys/class/net/eth0/statistics/tx_bytes"])
        return int(text.strip())


class Lab:
    """The bridge and the hosts of one run; close() removes them all (and is idempotent)."""

    def __init__(self, workdir: str) -> None:
        self.tag = "%s%d" % (PREFIX, os.getpid())
        self.workdir = workdir
        self.bridge_ns = self.tag + "-br"
        self.hosts: Dict[str, Host] = {}
        self.namespaces: List[str] = []
        self.children: List[Child] = []
        self._logs = 0

    def start(self) -> None:
        """Make the bridge (in a namespace of its own); close() removes it, also half made."""
        self._add_namespace(self.bridge_ns)
        _run(["ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge"])
        # No IGMP snooping: multicast (local peer discovery) reaches every port without a querier.
        _run(["ip", "-n", self.bridge_ns, "link", "set", "br0", "type", "bridge",
              "mcast_snooping", "0"])
        _run(["ip", "-n", self.bridge_ns, "link", "set", "br0", "up"])

    def _add_namespace(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)

    def add_host(self, name: str, number: int) -> Host:
        """A host called `name` at 10.88.0.<number>."""
        namespace = "%s-%s" % (self.tag, name)
        self._add_namespace(namespace)
        port = "p%d" % number
        _run(["ip", "-n", self.bridge_ns, "link", "add", port, "type", "veth",
              "peer", "name", "eth0", "netns", namespace])
        _run(["ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up"])
        address = "%s.%d" % (SUBNET, number)
        _run(["ip", "-n", namespace, "addr", "add", "%s/%d" % (address, PREFIX_LEN),
              "dev", "eth0"])
        for dev in ("lo", "eth0"):
            _run(["ip", "-n", namespace, "link", "set", dev, "up"])
        _run(["ip", "-n", namespace, "route", "add", "224.0.0.0/4", "dev", "eth0"])
        home = os.path.join(self.workdir, "home-" + name)
        os.makedirs(home, exist_ok=True)
        host = Host(name, namespace, address, home)
        self.hosts[name] = host
        return host

    def shape(self, host: Host, rate_mbit: float) -> None:
        """Limit what `host` sends to rate_mbit (tbf on its eth0; see the module constants)."""
        rate_bytes = rate_mbit * 1e6 / 8
        burst = max(int(rate_bytes * TBF_BURST_SECONDS), TBF_MIN_BURST)
        _run(["ip", "netns", "exec", host.namespace, "tc", "qdisc", "replace", "dev", "eth0",
              "root", "tbf", "rate", "%gmbit" % rate_mbit, "burst", str(burst),
              "latency", "%dms" % TBF_LATENCY_MS])

    def spawn(self, host: Host, cmd: Sequence[str], what: str) -> Child:
        """Start `cmd` on `host`; its output goes to a log file in the work directory."""
        self._logs += 1
        log = os.path.join(self.workdir, "%02d-%s-%s.log" % (self._logs, host.name, what))
        child = Child(host.prefix() + [str(c) for c in cmd], log, cwd=common.REPO)
        self.children.append(child)
        return child

    def run(self, host: Host, cmd: Sequence[str], what: str, timeout: float) -> Child:
        """Run `cmd` on `host` to its end (within `timeout`); raises LabError if it fails."""
        child = self.spawn(host, cmd, what)
        rc = child.wait(timeout)
        if rc != 0:
            raise LabError("%s on %s exited with status %d\n%s"
                           % (what, host.name, rc, child.tail()))
        return child

    def stop(self, children: Sequence[Child]) -> None:
        for child in children:
            child.stop()

    def close(self) -> None:
        """Stop every process, then remove every namespace (the bridge's last)."""
        self.stop(self.children)
        self.children = []
        for name in reversed(self.namespaces):
            _kill_inside(name)
            _run(["ip", "netns", "del", name], check=False)
        self.namespaces = []


# ------------------------------------------------------------------ what the scenarios share

STA = os.path.join(common.REPO, "sta.py")
LT_HELPER = os.path.join(common.REPO, "tests", "interop", "lt_helper.py")
# STA nodes in the lab find peers by the tracker (or --peer) only, as the benchmarks do.
STA_LAB_FLAGS = ("--no-dht", "--no-lsd")
# Deadline for a seed to check its data (128 MiB: a second or two) and for a tracker to start.
READY_TIMEOUT = 60.0
# Deadline for the tracker to count a seed: one announce, sent as the seed starts.
ANNOUNCE_TIMEOUT = 30.0


def note(text: str) -> None:
    """Progress on stderr, so that stdout holds the figures alone."""
    sys.stderr.write("lab: %s\n" % text)
    sys.stderr.flush()


def size_arg(text: str) -> int:
    """argparse type for sizes such as 128MiB."""
    try:
        value = common.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    if value < 1:
        raise argparse.ArgumentTypeError("a size must be positive")
    return value


def sta(*args: str) -> List[str]:
    """An STA command line: python3 sta.py ARGS."""
    return [sys.executable, STA] + [str(a) for a in args]


def lt_helper(*args: str) -> List[str]:
    return [LT_PYTHON, LT_HELPER] + [str(a) for a in args]


def have_libtorrent() -> bool:
    from tests.interop import clients
    return clients.have_libtorrent()


def wait_line(child: Child, start: str, timeout: float = READY_TIMEOUT) -> str:
    """The first line of `child`'s output that starts with `start` (BenchError at the deadline)."""
    return child.wait_for_output(lambda line: line if line.startswith(start) else None,
                                 timeout, repr(start) + " line")


def wait_seeders(lab: Lab, host: Host, announce: str, info_hash: str, count: int) -> None:
    """Wait until the tracker at `announce` counts `count` seeds (scraped from `host`)."""
    code = ("import sys; from tests.interop import clients; "
            "clients.wait_for_seeders(sys.argv[1], sys.argv[2], int(sys.argv[3]), "
            "float(sys.argv[4]))")
    lab.run(host, [sys.executable, "-c", code, announce, info_hash, count, ANNOUNCE_TIMEOUT],
            "scrape", ANNOUNCE_TIMEOUT + IP_TIMEOUT)


def info_hash(torrent: str) -> str:
    """The torrent's v1 info hash in hex."""
    from bench.bench_transfer import info_hash_of
    return info_hash_of(torrent)


def make_data(path: str, size: int, seed: int) -> str:
    from tests.interop import clients
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return clients.make_file(path, size, seed=seed)


def same_file(a: str, b: str) -> bool:
    import filecmp
    return os.path.exists(b) and filecmp.cmp(a, b, shallow=False)


def command_line(host: Host, cmd: Sequence[str]) -> str:
    """How to run `cmd` by hand on `host` (the namespace exists only while the lab runs)."""
    words = [str(c) for c in cmd]
    if words and words[0] == sys.executable:
        words[0] = "python3"
    if len(words) > 1 and words[1].startswith(common.REPO + os.sep):
        words[1] = os.path.relpath(words[1], common.REPO)
    return "ip netns exec %s %s" % (host.namespace, " ".join(shlex.quote(w) for w in words))


def _terminate(signum, frame):  # SIGTERM and SIGHUP clean up like Ctrl-C
    raise KeyboardInterrupt


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    from bench import lab_bandwidth, lab_demo, lab_swarm
    parser = argparse.ArgumentParser(prog="lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="where to put the lab's temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep data and logs (path printed)")
    sub = parser.add_subparsers(dest="scenario")
    sub.required = True
    for module in (lab_demo, lab_bandwidth, lab_swarm):
        module.add_parser(sub)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    reason = why_not_usable()
    if reason:
        sys.stderr.write("lab: %s\n" % reason)
        return 1
    for name in remove_stale():
        sys.stderr.write("lab: removed %s, left by an earlier run\n" % name)
    workdir = tempfile.mkdtemp(prefix="sta-lab-", dir=args.workdir)
    os.chmod(workdir, 0o755)
    lab: Optional[Lab] = None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        lab = Lab(workdir)
        atexit.register(lab.close)
        lab.start()
        return args.run(lab, args)
    except KeyboardInterrupt:
        sys.stderr.write("lab: interrupted; removed the lab\n")
        return 130
    except (LabError, common.BenchError) as exc:
        sys.stderr.write("lab: %s\n" % exc)
        return 1
    finally:
        if lab is not None:
            lab.close()
        if args.keep:
            sys.stderr.write("lab: kept %s\n" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
