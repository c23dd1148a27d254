"""Shared helpers for tests that drive real BitTorrent clients (and for the benchmarks).

Finding tools:        which(tool), have_libtorrent(), LT_PYTHON, LT_HELPER, lt_helper_cmd(...),
                      lt_info(torrent)
Processes:            start(cmd, test=None, ...) -> Popen with its output read by threads;
                      wait_for_line(proc, prefix, timeout), wait_exit(proc, timeout),
                      stop(proc), output(proc)
Network and data:     free_port(), make_file(path, size, seed)
aria2:                aria2c_seed_cmd(...), aria2c_download_cmd(...), ARIA2_LISTENING
opentracker:          opentracker_cmd(...), write_whitelist(...), scrape_complete(...),
                      wait_for_seeders(...)
Transmission:         need_transmission(test), write_transmission_settings(...),
                      transmission_daemon_cmd(...), transmission_remote_cmd(...),
                      transmission_progress(info_text)

aria2c has no option to connect to a given peer: it learns peers from a tracker only, so a test
or benchmark that involves aria2c runs a tracker on 127.0.0.1 (opentracker, or STA's own) and hands
its announce URL to both sides.

Every wait here has a deadline, and every process started with a test case is stopped by the
test's cleanup, so a hung client fails a test instead of hanging the run.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
# libtorrent's Python bindings come from the system package and import only under this interpreter.
LT_PYTHON = "/usr/bin/python3"
LT_HELPER = os.path.join(HERE, "lt_helper.py")

# Time a process gets to exit after SIGTERM before it is killed: libtorrent and aria2 both finish
# within a second on loopback; more only slows down a failing run.
STOP_TIMEOUT = 5.0
# Deadline for the libtorrent import probe (the first import of the bindings takes ~0.2 s).
PROBE_TIMEOUT = 30.0
# Lines of a process's output kept for error messages: enough to show why it failed.
OUTPUT_TAIL_LINES = 40
# make_file writes in chunks of this size: large enough to amortise the Python overhead,
# small enough that a 1 GiB file never needs more than a few MiB of memory.
MAKE_FILE_CHUNK = 1 << 20
# Poll interval of wait_for_seeders; a tracker answers a scrape in well under this.
SCRAPE_POLL = 0.2

# aria2c prints this once its listen socket is open, which (with --check-integrity) is after it
# has verified the data: the line a test waits for before starting a downloader.
ARIA2_LISTENING = "listening on TCP port"


class InteropError(Exception):
    """A client did not behave as expected: exited early, timed out, or printed nonsense."""


_libtorrent_probe: Optional[bool] = None


def have_libtorrent() -> bool:
    """True if LT_PYTHON can import libtorrent (probed once per process)."""
    global _libtorrent_probe
    if _libtorrent_probe is None:
        try:
            done = subprocess.run([LT_PYTHON, "-c", "import libtorrent"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=PROBE_TIMEOUT)
            _libtorrent_probe = done.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _libtorrent_probe = False
    return _libtorrent_probe


def which(tool: str) -> Optional[str]:
    """Full path of a command, or None when it is not installed."""
    return shutil.which(tool)


def lt_helper_cmd(*args: str) -> List[str]:
    """The command line that runs lt_helper.py with the interpreter that has libtorrent."""
    return [LT_PYTHON, LT_HELPER] + [str(a) for a in args]


def lt_info(torrent: str, timeout: float = 60.0) -> Dict:
    """libtorrent's view of a .torrent (see lt_helper.py info)."""
    import json
    done = subprocess.run(lt_helper_cmd("info", torrent), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)
    if done.returncode != 0:
        raise InteropError("lt_helper info failed: %s" % done.stderr.decode(errors="replace"))
    return json.loads(done.stdout.decode())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    For tools that cannot listen on port 0 and report the port (aria2c, opentracker). Another
    process may take it before the tool binds it; that race is rare on a test machine.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ processes

_EOF = object()


def _pump(stream, lines: "queue.Queue", kept: List[str]) -> None:
    """Read a child's stream to the end: lines go to `lines` (if given) and to `kept`."""
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            kept.append(line)
            if len(kept) > 4 * OUTPUT_TAIL_LINES:
                del kept[:-OUTPUT_TAIL_LINES]
            if lines is not None:
                lines.put(line)
    except (OSError, ValueError):
        pass
    finally:
        if lines is not None:
            lines.put(_EOF)
        try:
            stream.close()
        except OSError:
            pass


def start(cmd: Sequence[str], test=None, *, cwd: Optional[str] = None,
          env: Optional[Dict[str, str]] = None, stop_timeout: float = STOP_TIMEOUT
          ) -> subprocess.Popen:
    """Start a command with its stdout and stderr read by background threads.

    With a unittest.TestCase as `test`, the process is stopped by the test's cleanup. The
    returned Popen has three extra attributes used by the functions below: `lines` (a queue of
    stdout lines not yet consumed by wait_for_line), `stdout_tail` and `stderr_tail` (the last lines
    of each stream, for error messages). Reading on threads keeps the child from blocking on a full
    pipe and lets every wait have a deadline on every platform.
    """
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.cmd = [str(c) for c in cmd]
    proc.lines = queue.Queue()
    proc.stdout_tail = []
    proc.stderr_tail = []
    proc.readers = [
        threading.Thread(target=_pump, args=(proc.stdout, proc.lines, proc.stdout_tail),
                         daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, None, proc.stderr_tail), daemon=True),
    ]
    for reader in proc.readers:
        reader.start()
    if test is not None:
        test.addCleanup(stop, proc, stop_timeout)
    return proc


def stop(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> Optional[int]:
    """Terminate a process, kill it if it outlives `timeout`, and return its exit status."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        except OSError:
            pass
    for reader in getattr(proc, "readers", ()):
        reader.join(timeout)
    return proc.returncode


def output(proc: subprocess.Popen) -> str:
    """The last lines a process printed, for an error message."""
    parts = ["command: %s" % " ".join(getattr(proc, "cmd", [])),
             "exit status: %s" % proc.poll()]
    for name in ("stdout_tail", "stderr_tail"):
        tail = getattr(proc, name, [])[-OUTPUT_TAIL_LINES:]
        if tail:
            parts.append("%s:\n  %s" % (name.split("_")[0], "\n  ".join(tail)))
    return "\n".join(parts)


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float, *,
                  anywhere: bool = False) -> str:
    """Return the next stdout line that starts with `prefix` (contains it, with anywhere=True).

    Lines before it are consumed. Raises InteropError if the process closes its output first or
    nothing matches within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise InteropError("no line %r within %.0f s\n%s" % (prefix, timeout, output(proc)))
        try:
            line = proc.lines.get(timeout=left)
        except queue.Empty:
            continue
        if line is _EOF:
            proc.lines.put(_EOF)  # later waits fail fast too
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            raise InteropError("output ended before a line %r\n%s" % (prefix, output(proc)))
        if (prefix in line) if anywhere else line.startswith(prefix):
            return line


def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    """Wait for a process to exit; on timeout kill it and raise InteropError."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise InteropError("still running after %.0f s\n%s" % (timeout, output(proc)))
    for reader in getattr(proc, "readers", ()):
        reader.join(STOP_TIMEOUT)
    return proc.returncode


# ------------------------------------------------------------------------------------------ data

def make_file(path: str, size: int, seed: int = 0) -> str:
    """Write `size` pseudo-random bytes to `path` and return the path.

    The same (size, seed) gives the same bytes on every Python version and platform
    (Random.getrandbits is what Random.randbytes uses from 3.9 on). About 350 MB/s.
    """
    rng = random.Random(seed)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, MAKE_FILE_CHUNK)
            f.write(rng.getrandbits(n * 8).to_bytes(n, "little"))
            left -= n
    return path


# ----------------------------------------------------------------------------------------- aria2

def _aria2c_common(port: int, tracker: Optional[str], require_crypto: bool = False
                   ) -> List[str]:
    cmd = [
        which("aria2c") or "aria2c",
        "--listen-port=%d" % port,
        # Stay on the loopback interface and learn peers only from the tracker given here.
        "--interface=127.0.0.1",
        "--disable-ipv6=true",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        # Accept plain connections unless MSE/PE with RC4 throughout is asked for; aria2c
        # accepts both by default, say so.
        "--bt-require-crypto=%s" % ("true" if require_crypto else "false"),
        # The default allocation writes the whole file before downloading: not part of a transfer.
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--console-log-level=notice",
        "--summary-interval=0",
        "--show-console-readout=false",
        "--enable-color=false",
        "--follow-torrent=false",
    ]
    if require_crypto:
        cmd.append("--bt-min-crypto-level=arc4")
    if tracker:
        # Replace the torrent's own trackers with the local one.
        cmd += ["--bt-exclude-tracker=*", "--bt-tracker=%s" % tracker]
    return cmd


def aria2c_seed_cmd(torrent: str, data_dir: str, port: int,
                    tracker: Optional[str] = None, require_crypto: bool = False) -> List[str]:
    """aria2c seeding `torrent` from `data_dir` on 127.0.0.1:`port` until stopped.

    It verifies the data first and prints ARIA2_LISTENING when ready. Without `tracker` it
    announces to the torrent's own trackers. `require_crypto`: MSE/PE with RC4 only.
    """
    return _aria2c_common(port, tracker, require_crypto) + [
        "--dir=%s" % data_dir,
        "--check-integrity=true",
        "--seed-ratio=0.0",  # 0.0: keep seeding whatever the ratio
        str(torrent),
    ]


def aria2c_download_cmd(torrent: str, out_dir: str, port: int,
                        tracker: Optional[str] = None, require_crypto: bool = False
                        ) -> List[str]:
    """aria2c downloading `torrent` into `out_dir`; it exits 0 once complete (no seeding).
    `require_crypto`: MSE/PE with RC4 only."""
    return _aria2c_common(port, tracker, require_crypto) + [
        "--dir=%s" % out_dir,
        "--seed-time=0",
        "--bt-stop-timeout=0",
        str(torrent),
    ]


# ----------------------------------------------------------------------------------- opentracker

def write_whitelist(directory: str, info_hashes: Sequence[str]) -> str:
    """Write opentracker's access list (hex info hashes, one per line) into `directory`.

    Debian's opentracker is built with a whitelist: it refuses every torrent not listed.
    Returns the file name relative to `directory` (opentracker reads it after chroot).
    """
    name = "whitelist.txt"
    with open(os.path.join(directory, name), "w") as f:
        for h in info_hashes:
            f.write(h.lower() + "\n")
    os.chmod(os.path.join(directory, name), 0o644)
    return name


def opentracker_cmd(port: int, workdir: str, whitelist: Optional[str] = None) -> List[str]:
    """opentracker on 127.0.0.1:`port` (TCP and UDP); announce URL http://127.0.0.1:PORT/announce.

    Run as root it chroots into `workdir` and drops to user nobody, so `workdir` must be readable
    by everyone (mode 0755) and `whitelist` is a path inside it (see write_whitelist).
    """
    cmd = [which("opentracker") or "opentracker", "-i", "127.0.0.1", "-p", str(port),
           "-P", str(port), "-d", workdir]
    if whitelist:
        cmd += ["-w", whitelist]
    return cmd


def scrape_complete(announce_url: str, info_hash_hex: str, timeout: float = 5.0) -> int:
    """Seeders a tracker reports for a torrent (BEP 48 scrape; -1 if it does not know it)."""
    base, sep, rest = announce_url.rpartition("/announce")
    if not sep:
        raise InteropError("cannot derive a scrape URL from %s" % announce_url)
    url = "%s/scrape%s%sinfo_hash=%s" % (base, rest, "&" if "?" in rest else "?",
                                        urllib.parse.quote(bytes.fromhex(info_hash_hex)))
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read()
    match = re.search(rb"8:completei(\d+)e", body)
    return int(match.group(1)) if match else -1


def wait_for_seeders(announce_url: str, info_hash_hex: str, count: int, timeout: float) -> None:
    """Wait until a tracker lists `count` seeders, so a downloader that announces next finds them."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = scrape_complete(announce_url, info_hash_hex)
            if last >= count:
                return
        except OSError as exc:
            last = exc
        time.sleep(SCRAPE_POLL)
    raise InteropError("tracker %s did not list %d seeders within %.0f s (last answer: %s)"
                       % (announce_url, count, timeout, last))


# ----------------------------------------------------------------------------------- Transmission

# Transmission's own defaults for its peer and RPC ports: each daemon runs in its own network
# namespace in the tests, so the defaults never collide.
TRANSMISSION_PEER_PORT = 51413
TRANSMISSION_RPC_PORT = 9091
TRANSMISSION_TOOLS = ("transmission-daemon", "transmission-remote")


def need_transmission(test: Any) -> None:
    """Skip ``test`` with the reason when transmission-daemon or transmission-remote is absent."""
    for tool in TRANSMISSION_TOOLS:
        if which(tool) is None:
            test.skipTest("%s is not installed (apt-get install transmission-daemon "
                          "transmission-cli)" % tool)


def write_transmission_settings(config_dir: str, download_dir: str,
                                peer_port: int = TRANSMISSION_PEER_PORT,
                                rpc_port: int = TRANSMISSION_RPC_PORT) -> str:
    """Write a settings.json that sets only ports, paths and the RPC address and whitelist
    (127.0.0.1), and turns off port forwarding: no router answers UPnP or NAT-PMP in a test
    namespace, and the UPnP discovery holds up Transmission's first announce by about 8 s.
    Everything that shapes the peer protocol (encryption "preferred", uTP, DHT, PEX, local peer
    discovery) stays at Transmission's defaults. Returns the file's path."""
    import json
    os.makedirs(config_dir, exist_ok=True)
    os.makedirs(download_dir, exist_ok=True)
    settings = {
        "peer-port": peer_port,
        "rpc-port": rpc_port,
        "rpc-bind-address": "127.0.0.1",
        "rpc-whitelist": "127.0.0.1",
        "rpc-whitelist-enabled": True,
        "download-dir": download_dir,
        "port-forwarding-enabled": False,
    }
    path = os.path.join(config_dir, "settings.json")
    with open(path, "w") as f:
        json.dump(settings, f, indent=1)
    return path


def transmission_daemon_cmd(config_dir: str) -> List[str]:
    """transmission-daemon in the foreground with its state in `config_dir` (see
    write_transmission_settings), logging its messages to stderr."""
    return [which("transmission-daemon") or "transmission-daemon", "--foreground",
            "--config-dir", config_dir, "--log-info"]


def transmission_remote_cmd(*args: str, rpc_port: int = TRANSMISSION_RPC_PORT) -> List[str]:
    """transmission-remote talking to the daemon on 127.0.0.1:`rpc_port`, with `args`."""
    return [which("transmission-remote") or "transmission-remote",
            "127.0.0.1:%d" % rpc_port] + [str(a) for a in args]


def transmission_progress(info_text: str) -> Tuple[Optional[float], str]:
    """The percent done and the state ("Seeding", "Downloading", "Idle", ...) in the output of
    `transmission-remote -t ID --info`; (None, "") when the torrent is not listed yet."""
    done = re.search(r"Percent Done:\s*([\d.]+)%", info_text)
    state = re.search(r"State:\s*(.+)", info_text)
    return (float(done.group(1)) if done else None,
            state.group(1).strip() if state else "")


if __name__ == "__main__":  # pragma: no cover - a quick look at what this machine has
    print("python:", sys.version.split()[0])
    print("libtorrent:", have_libtorrent())
    for tool in ("aria2c", "opentracker", "mktorrent", "transmission-daemon"):
        print("%s: %s" % (tool, which(tool)))


def need_aria2c(test: Any) -> None:
    """Skip ``test`` with the reason when aria2c is absent."""
    if which("aria2c") is None:
        test.skipTest("aria2c is not installed")


def need_libtorrent(test: Any) -> None:
    """Skip ``test`` with the reason when libtorrent does not import."""
    if not have_libtorrent():
        test.skipTest("libtorrent's Python bindings do not import under %s" % LT_PYTHON)
