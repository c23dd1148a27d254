"""Shared pieces of the benchmarks: peak memory of a child process, timing, medians, tables.

Benchmarks print figures and the command that reproduces each one; they assert nothing.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `python bench/x.py` puts bench/ on the path, not the repository
    sys.path.insert(0, REPO)

# How often the memory of a child is sampled. VmHWM (the kernel's own high-water mark) makes the
# peak exact whenever the last sample is taken while the process still exists; the interval only
# bounds how late that last sample can be (and how stale the anonymous-memory peak).
RSS_POLL_INTERVAL = 0.1
# Poll interval while waiting for a TCP port to accept connections.
PORT_POLL_INTERVAL = 0.05
# Time a child gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0

KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB
_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB,
          "g": GIB, "gb": GIB, "gib": GIB}

HAVE_PROC = os.path.exists("/proc/self/status")
# Clock ticks per second of /proc/PID/stat's CPU times.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchError(Exception):
    """A client in a benchmark failed, hung or is missing; the message says which and why."""


def parse_size(text: str) -> int:
    """'1GiB', '512M', '1000000' -> bytes (K, M, G are powers of 1024, as in the tools)."""
    t = text.strip().lower()
    number = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(number):]
    if unit not in _UNITS or not number:
        raise ValueError("bad size %r: use a number with an optional K/M/G suffix" % text)
    return int(float(number) * _UNITS[unit])


def human_bytes(n: Optional[float]) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size:
            return "%.1f %s" % (n / size, unit)
    return "%d B" % n


def median(values: Sequence[float]) -> float:
    """Median (mean of the middle two for an even count); the statistics module is overkill."""
    if not values:
        raise ValueError("median of nothing")
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def shell_command(cmd: Sequence[str], cwd: Optional[str] = None) -> str:
    """A command line a user can paste into a POSIX shell to reproduce a run."""
    text = " ".join(shlex.quote(str(c)) for c in cmd)
    return "(cd %s && %s)" % (shlex.quote(cwd), text) if cwd else text


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                out=None) -> None:
    """Plain aligned columns: the first left-aligned, the rest right-aligned (numbers)."""
    out = out or sys.stdout
    table = [list(headers)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for n, r in enumerate(table):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        out.write("  ".join(cells).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    out.flush()


# ------------------------------------------------------------------------------------ peak memory

def _read_status(pid: int) -> Dict[str, int]:
    """The memory lines of /proc/PID/status in bytes ({} once the process is gone)."""
    fields = {}
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            for line in f:
                if line.startswith((b"VmHWM", b"VmRSS", b"RssAnon")):
                    key, value = line.split(b":", 1)
                    fields[key.decode()] = int(value.split()[0]) * KIB
    except (OSError, ValueError, IndexError):
        return {}
    return fields


def _read_cpu(pid: int) -> Optional[float]:
    """User plus system CPU seconds of a process from /proc/PID/stat (None once reaped). A
    zombie still has them: read after the exit and before the reaping, they are final."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Samples a child's memory on a thread until stop().

    `peak_rss` is the kernel's VmHWM (peak resident set, exact) from the last sample, or the
    largest VmRSS seen; `peak_anon` is the largest RssAnon seen: resident memory not backed by a
    file, which is the figure to compare when a client maps the torrent's files into memory
    (libtorrent 2.0 does), since mapped file pages count in RSS but are page cache the kernel can
    drop. Off Linux nothing is sampled and `source` says so; rusage_fallback() can fill in.
    `cpu_seconds` is the process's user + system CPU time at the last sample.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss: Optional[int] = None
        self.peak_anon: Optional[int] = None
        self.cpu_seconds: Optional[float] = None
        self.source = "/proc VmHWM" if HAVE_PROC else "none"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if HAVE_PROC:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def sample(self) -> None:
        cpu = _read_cpu(self.pid)
        if cpu is not None:
            self.cpu_seconds = max(self.cpu_seconds or 0.0, cpu)
        fields = _read_status(self.pid)
        if not fields:
            return
        rss = max(fields.get("VmHWM", 0), fields.get("VmRSS", 0))
        self.peak_rss = max(self.peak_rss or 0, rss)
        if "RssAnon" in fields:
            self.peak_anon = max(self.peak_anon or 0, fields["RssAnon"])

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(RSS_POLL_INTERVAL)

    def stop(self) -> None:
        """Take a last sample (call it while the process still exists when possible)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            self.sample()

    def rusage_fallback(self) -> None:
        """Use ru_maxrss of all waited-for children when /proc gave nothing.

        It is the largest peak of any child this process has reaped so far, not of this one
        child, so `source` says so and the figure is an upper bound.
        """
        if self.peak_rss is not None:
            return
        try:
            import resource
        except ImportError:  # Windows
            return
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        # Linux reports KiB, macOS bytes.
        self.peak_rss = maxrss if sys.platform == "darwin" else maxrss * KIB
        self.source = "rusage children max (upper bound)"


# ----------------------------------------------------------------------------------- processes

class Child:
    """A started command with its memory sampled, its output kept in a file, and a deadline."""

    def __init__(self, cmd: Sequence[str], log_path: str, cwd: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.cmd = [str(c) for c in cmd]
        self.cwd = cwd
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT)
        except OSError as exc:
            self._log.close()
            raise BenchError("cannot start %s: %s" % (self.cmd[0], exc))
        self.memory = PeakMemory(self.proc.pid)
        self.elapsed: Optional[float] = None

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for exit within `timeout` seconds (else kill and raise); records elapsed time."""
        deadline = time.monotonic() + timeout
        try:
            self._wait_unreaped(timeout)
            rc = self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise BenchError("%s still running after %.0f s\n%s"
                             % (os.path.basename(self.cmd[0]), timeout, self.tail()))
        self.elapsed = time.monotonic() - self.started
        self.memory.stop()
        self.memory.rusage_fallback()
        self._log.close()
        return rc

    def _wait_unreaped(self, timeout: float) -> None:
        """Where the OS allows, wait for the exit without reaping the child and take the last
        sample from the zombie, whose CPU times are then final."""
        if not (HAVE_PROC and hasattr(os, "waitid")):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitid(os.P_PID, self.proc.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    break
            except ChildProcessError:
                return
            time.sleep(RSS_POLL_INTERVAL / 10)
        self.memory.sample()

    def stop(self) -> None:
        """Sample memory one last time, then terminate (kill after STOP_TIMEOUT)."""
        self.memory.stop()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self.memory.rusage_fallback()
        if not self._log.closed:
            self._log.close()

    def output(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join("    " + line for line in self.output().splitlines()[-lines:])

    def wait_for_output(self, match: Callable[[str], Optional[str]], timeout: float,
                        what: str) -> str:
        """Poll the output file until `match(line)` returns a value for some line."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.output().splitlines():
                found = match(line)
                if found is not None:
                    return found
            if not self.running():
                raise BenchError("%s exited (status %s) before %s\n%s"
                                 % (os.path.basename(self.cmd[0]), self.proc.returncode, what,
                                    self.tail()))
            if time.monotonic() >= deadline:
                raise BenchError("no %s within %.0f s\n%s" % (what, timeout, self.tail()))
            time.sleep(PORT_POLL_INTERVAL)


def wait_for_port(port: int, timeout: float, child: Optional[Child] = None,
                  host: str = "127.0.0.1") -> None:
    """Wait until host:port accepts a TCP connection (or `child` exits, or the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            pass
        if child is not None and not child.running():
            raise BenchError("%s exited (status %s) before listening on %d\n%s"
                             % (os.path.basename(child.cmd[0]), child.proc.returncode, port,
                                child.tail()))
        if time.monotonic() >= deadline:
            raise BenchError("nothing listening on %s:%d after %.0f s" % (host, port, timeout))
        time.sleep(PORT_POLL_INTERVAL)


def timed_run(cmd: Sequence[str], log_path: str, timeout: float,
              cwd: Optional[str] = None) -> Tuple[int, float, PeakMemory]:
    """Run a command to completion: (exit status, wall seconds, its PeakMemory)."""
    child = Child(cmd, log_path, cwd=cwd)
    rc = child.wait(timeout)
    return rc, child.elapsed or 0.0, child.memory
