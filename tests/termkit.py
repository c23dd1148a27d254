"""Helpers for tests of what a terminal shows: run `sta` on a pseudo-terminal, and replay what it
wrote on a small screen model to get the lines a person would see.

``run_on_terminal`` needs the pty module (not on Windows): tests that use it are skipped there
with ``needs_pty``. ``screen`` understands the few controls STA writes: carriage return, line
feed, erase to the end of the line (ESC [ K), cursor up (ESC [ n A) and erase below (ESC [ J).
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
import unittest
from typing import Dict, List, Optional, Sequence, Tuple

try:
    import fcntl
    import pty
    import struct
    import termios
except ImportError:  # Windows
    pty = None  # type: ignore[assignment]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STA = os.path.join(ROOT, "sta.py")
# A command on the terminal gets this long before the test fails; only a hang comes near it.
TERMINAL_TIMEOUT = 60.0
# The classic terminal: what a lab machine's window opens with.
COLUMNS = 80
ROWS = 24

needs_pty = unittest.skipIf(pty is None or sys.platform == "win32",
                            "pseudo-terminals need the pty module (not on Windows)")

_CONTROL = re.compile(r"\x1b\[(\d*)([A-Za-z])|[\r\n]")


def open_terminal(columns: int = COLUMNS) -> Tuple[int, int]:
    """(master, slave) of a new pseudo-terminal ``columns`` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, columns, 0, 0))
    return master, slave


def read_all(master: int, deadline: float) -> bytes:
    """Everything written to the terminal until its other end is closed (or the deadline)."""
    shown = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the terminal was not closed in time; shown so far:\n"
                                 + shown.decode("utf-8", "replace"))
        ready, _, _ = select.select([master], [], [], min(left, 0.5))
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once every writer has closed its end
            break
        if not chunk:
            break
        shown += chunk
    return bytes(shown)


def run_on_terminal(args: Sequence[str], cwd: str, columns: int = COLUMNS,
                    env: Optional[Dict[str, str]] = None,
                    timeout: float = TERMINAL_TIMEOUT) -> Tuple[int, str]:
    """Run `python sta.py ARGS` with stdout and stderr on a pseudo-terminal; (exit status,
    everything it wrote there, escapes included)."""
    master, slave = open_terminal(columns)
    environment = dict(os.environ, PYTHONPATH=ROOT, TERM="xterm", PYTHONIOENCODING="utf-8")
    environment.pop("NO_COLOR", None)
    environment.update(env or {})
    try:
        proc = subprocess.Popen([sys.executable, STA] + list(args), cwd=cwd, env=environment,
                                stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    os.close(slave)
    try:
        shown = read_all(master, time.monotonic() + timeout)
        return proc.wait(timeout), shown.decode("utf-8", "replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def screen(shown: str) -> List[str]:
    """The lines left on the screen (scrolled-off lines included) after ``shown`` was written."""
    lines: List[List[str]] = [[]]
    row = col = 0
    pos = 0
    for match in _CONTROL.finditer(shown):
        row, col = _put(lines, row, col, shown[pos:match.start()])
        pos = match.end()
        token = match.group()
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            while len(lines) <= row:
                lines.append([])
        elif match.group(2) == "K":
            del lines[row][col:]
        elif match.group(2) == "A":
            row = max(0, row - int(match.group(1) or 1))
        elif match.group(2) == "J":
            del lines[row][col:]
            del lines[row + 1:]
    _put(lines, row, col, shown[pos:])
    return ["".join(line).rstrip() for line in lines if "".join(line).strip()]


def _put(lines: List[List[str]], row: int, col: int, text: str) -> Tuple[int, int]:
    line = lines[row]
    for ch in text:
        if col < len(line):
            line[col] = ch
        else:
            line.extend(" " * (col - len(line)))
            line.append(ch)
        col += 1
    return row, col
