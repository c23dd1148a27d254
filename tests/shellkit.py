"""The shell's test kit: `sta shell` on pipes, output read with deadlines, a recording tracker.

Output collects what a process writes (a pipe or a pty master) and waits for patterns or JSON
documents with a deadline; PipeShell runs `python sta.py shell` with its own STA_HOME; Tracker
is a minimal HTTP tracker that records every announce and hands out no peers.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
from typing import Any, Dict, List

from sta import node

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STA = os.path.join(ROOT, "sta.py")
# Loopback transfers of a few MiB take well under a second; the bound is for a loaded CI box.
WAIT = 20.0
# A shell leaving waits at most node.CLOSE_TIMEOUT for its trackers, plus process exit.
EXIT_WAIT = node.CLOSE_TIMEOUT + 10.0


def sta_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONIOENCODING="utf-8")
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


class Output:
    """Collects what a process writes (a pipe or a pty master); waits for text with a deadline."""

    def __init__(self, read: Any) -> None:
        self._read = read
        self._text = ""
        self.pos = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                data = self._read()
            except (OSError, ValueError):
                data = b""
            with self._cond:
                if not data:
                    self._closed = True
                    self._cond.notify_all()
                    return
                self._text += data.decode("utf-8", "replace")
                self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return self._text

    def expect(self, pattern: str, timeout: float = WAIT) -> "re.Match[str]":
        """The first match of ``pattern`` after what earlier expects consumed."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search(self._text, self.pos)
                if match:
                    self.pos = match.end()
                    return match
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AssertionError(f"{pattern!r} not seen; output after the last "
                                         f"match: {self._text[self.pos:][-2000:]!r}")
                self._cond.wait(min(left, 0.2))

    def json(self, timeout: float = WAIT) -> Any:
        """The next complete JSON document."""
        decoder = json.JSONDecoder()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                rest = self._text[self.pos:]
                # a document starts a line: skip what is left of a line an expect() matched in
                found = re.search(r"^[\[{]", rest, re.MULTILINE)
                start = found.start() if found else len(rest)
                try:
                    value, end = decoder.raw_decode(rest, start)
                except ValueError:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closed:
                        raise AssertionError(f"no JSON document in:\n{rest}") from None
                    self._cond.wait(min(left, 0.2))
                    continue
                self.pos += end
                return value

    def join(self) -> None:
        self._thread.join(WAIT)


class PipeShell:
    """`sta shell` with stdin, stdout and stderr on pipes, and ``home`` as its STA_HOME."""

    def __init__(self, test: unittest.TestCase, cwd: str, *args: str, home: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, STA, "shell", "--port", "0"] + list(args), cwd=cwd,
            env=sta_env(STA_HOME=home),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        test.addCleanup(self.kill)
        self.out = Output(lambda: self.proc.stdout.read1(65536))
        self.err = Output(lambda: self.proc.stderr.read1(65536))
        self.port = int(self.err.expect(r"Listening for peers on 0\.0\.0\.0:(\d+)").group(1))

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def json(self, line: str) -> Any:
        self.send(line)
        return self.out.json()

    def exit(self) -> int:
        self.send("exit")
        code = self.proc.wait(EXIT_WAIT)
        self.out.join()
        self.err.join()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


class Tracker:
    """A minimal HTTP tracker that records every announce and returns no peers (so peers come
    only from --peer and the test stays deterministic)."""

    def __init__(self, test: unittest.TestCase) -> None:
        self.announces: List[Dict[str, str]] = []
        announces = self.announces

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                query = urllib.parse.urlsplit(self.path).query
                fields = {k: v[0] for k, v in
                          urllib.parse.parse_qs(query, encoding="latin-1").items()}
                announces.append(fields)
                body = b"d8:intervali1800e5:peers0:e"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/announce"
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        test.addCleanup(self.server.server_close)
        test.addCleanup(self.server.shutdown)

    def events(self, info_hash: bytes, port: int) -> List[Dict[str, str]]:
        raw = info_hash.decode("latin-1")
        return [a for a in self.announces if a.get("info_hash") == raw
                and a.get("port") == str(port)]


def write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def status_of(rows: List[Dict[str, Any]], name: str) -> Dict[str, Any]:
    found = [r for r in rows if r["name"] == name]
    assert len(found) == 1, rows
    return found[0]


def wait_status(node: PipeShell, name: str, predicate: Any) -> Dict[str, Any]:
    """Ask `status --json` until ``predicate(row)`` holds (bounded in time and count)."""
    deadline = time.monotonic() + WAIT
    while True:
        row = status_of(node.json("status --json"), name)
        if predicate(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} never reached the expected state: {row}")
        time.sleep(0.2)
