"""The lab's delaying relay (bench/lab_relay.py) on 127.0.0.1: it delays, and it loses nothing.

The lab itself needs root; this part runs anywhere, and importing bench.lab must too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import unittest
from unittest import mock

from bench import lab, lab_demo  # noqa: F401  (importable without root)

RELAY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                     "lab_relay.py")
DELAY_MS = 30
START_TIMEOUT = 10.0
IO_TIMEOUT = 10.0


class RelayTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(IO_TIMEOUT)
        self.addCleanup(self.server.close)
        threading.Thread(target=self._echo, daemon=True).start()
        self.relay = subprocess.Popen(
            [sys.executable, RELAY, "relay", "--to", "127.0.0.1:%d" % self.server.getsockname()[1],
             "--delay-ms", str(DELAY_MS)], stdout=subprocess.PIPE, text=True)
        self.addCleanup(self._stop_relay)
        line = self._readline(self.relay.stdout)
        self.assertTrue(line.startswith("LISTENING "), line)
        self.client = socket.create_connection(("127.0.0.1", int(line.split()[1])), IO_TIMEOUT)
        self.addCleanup(self.client.close)

    def _readline(self, stream) -> str:
        box = []
        reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        return box[0] if box else ""

    def _echo(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def _stop_relay(self) -> None:
        self.relay.terminate()
        try:
            self.relay.communicate(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.relay.kill()
            self.relay.communicate()

    def _round_trip(self, payload: bytes) -> bytes:
        self.client.sendall(payload)
        got = b""
        while len(got) < len(payload):
            data = self.client.recv(65536)
            if not data:
                break
            got += data
        return got

    def test_relay_holds_each_direction_for_the_delay(self) -> None:
        started = time.monotonic()
        self.assertEqual(self._round_trip(b"x"), b"x")
        self.assertGreaterEqual(time.monotonic() - started, 2 * DELAY_MS / 1000.0)

    def test_relay_passes_every_byte_in_order(self) -> None:
        payload = os.urandom(300 * 1024)
        self.assertEqual(self._round_trip(payload), payload)


class LabWithoutRootTests(unittest.TestCase):
    def test_lab_says_it_needs_root(self) -> None:
        with mock.patch("os.geteuid", return_value=1000):
            self.assertIn("needs root", lab.why_not_usable())

    def test_demo_reads_who_gave_what_from_the_download_summary(self) -> None:
        output = ("ass1.pdf: downloaded 12.1 MiB, uploaded 0 B in 3.1 s, average 3.91 MiB/s\n"
                  "  from 10.88.0.178:8080: 6.09 MiB\n  from 10.88.0.179:8080: 5.91 MiB\n")
        summary = lab_demo.parse_summary(output)
        self.assertEqual(summary["ass1.pdf"]["from"],
                         {"10.88.0.178": "6.09 MiB", "10.88.0.179": "5.91 MiB"})


if __name__ == "__main__":
    unittest.main()
