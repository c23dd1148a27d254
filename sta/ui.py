"""Terminal output: human units, a progress line that redraws on a TTY, plain lines elsewhere.

On a terminal the progress line is redrawn in place with a carriage return, like aria2 and
Transmission; in a pipe or a log file a plain line is written every few seconds instead, so the
file stays readable. Colour (ANSI escapes) is used only on a TTY and never when NO_COLOR is set
(https://no-color.org) or TERM is "dumb".

Every text that came from outside (a torrent's names and comment, a peer's client name, a
tracker's message) reaches the terminal through ``printable``, which removes control characters
and escape sequences: a hostile name cannot clear the screen, retitle the window or hide text.

The shell's tables are here too, as plain functions from status dicts to lines of text:
``status_table`` (Torrent.status() rows), ``peers_table`` (Torrent.peer_statuses() rows) and
``stats_lines`` (the `stats --json` object).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

__all__ = [
    "printable", "human_size", "human_rate", "human_eta", "human_duration", "progress_bar",
    "torrent_line", "use_color", "ProgressLine", "StatusBlock", "write_line",
    "TerminalLogFormatter", "MessageHandler", "status_table", "peers_table", "stats_lines",
]

# A non-TTY progress line every 5 s: often enough that a log shows movement, rarely enough that a
# day-long download does not fill it (17,280 lines a day at most).
PLAIN_INTERVAL = 5.0
# Redrawing more often than 10 times a second is invisible to a person and costs CPU in the
# terminal emulator.
TTY_INTERVAL = 0.1
# Width used when the terminal does not say (pipes, some IDE consoles).
DEFAULT_WIDTH = 80
# Name column of a progress line: 24 characters, and on a narrow terminal no fewer than 8, so
# that the rest (size, percent, rates, peers, ETA: about 70 columns) fits in 80.
NAME_WIDTH = 24
MIN_NAME_WIDTH = 8
# Column widths that keep a status row within 120 columns with long names.
TABLE_NAME_WIDTH = 30
TABLE_CLIENT_WIDTH = 24
TABLE_BAR_WIDTH = 20

# Below this many seconds a duration is shown with a tenth ("0.4 s", "12.5 s"); above, as an ETA.
PRECISE_DURATION = 60.0

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
# Escape sequences, removed whole: CSI (ESC [ ... final byte, or the 8-bit CSI 0x9b), OSC, DCS,
# SOS, PM and APC strings up to their terminator (BEL or ST) or the end of the text, and any
# other ESC with its intermediate and final bytes, or a lone ESC (ECMA-48, sections 5.3-5.6).
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?")
# What is left to neutralise: C0 and C1 controls, DEL, and the Unicode bidirectional overrides
# and isolates that make a terminal show text in another order than it is.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_WHITESPACE_CONTROLS = "\t\n\v\f\r"
# ANSI colours of Torrent.state values in the status table.
_STATE_COLORS = {"seeding": "32", "downloading": "36", "paused": "33", "error": "31"}


def printable(text: Any) -> str:
    """``text`` safe to write to a terminal, on one line: escape sequences removed, tabs and line
    breaks turned into spaces, every other control character shown as "?"."""
    text = _ESCAPES.sub("", str(text))
    return _CONTROLS.sub(lambda m: " " if m.group() in _WHITESPACE_CONTROLS else "?", text)


def human_size(n: float) -> str:
    """1536 -> "1.5 KiB"; binary units, three significant figures, bytes without decimals."""
    if n < 0:
        return "-" + human_size(-n)
    if n < 1024:
        return "%d B" % n
    value = float(n)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if value >= 1000 and unit < len(_UNITS) - 1:
        # 1023.9 KiB would print as "1024 KiB"; say "1.00 MiB" instead
        value /= 1024
        unit += 1
    if value == int(value):
        text = "%d" % value
    elif value >= 100:
        text = "%.0f" % value
    elif value >= 10:
        text = "%.1f" % value
    else:
        text = "%.2f" % value
    return "%s %s" % (text, _UNITS[unit])


def human_rate(bytes_per_second: float) -> str:
    """2_500_000 -> "2.38 MiB/s"."""
    return human_size(max(0.0, bytes_per_second)) + "/s"


def human_eta(seconds: Optional[float]) -> str:
    """Seconds left as "45s", "3m05s", "2h07m", "3d04h"; None or infinity as "--"."""
    if seconds is None or seconds != seconds or seconds == float("inf") or seconds < 0:
        return "--"
    s = int(seconds + 0.5)
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%dm%02ds" % (s // 60, s % 60)
    if s < 86400:
        return "%dh%02dm" % (s // 3600, s % 3600 // 60)
    if s < 100 * 86400:
        return "%dd%02dh" % (s // 86400, s % 86400 // 3600)
    return "--"


def human_duration(seconds: float) -> str:
    """How long something took: "0.4 s", "12.5 s", then "3m05s", "2h07m" as an ETA shows."""
    if seconds < PRECISE_DURATION:
        return "%.1f s" % max(0.0, seconds)
    return human_eta(seconds)


def progress_bar(fraction: float, width: int = 20) -> str:
    """A bar like "[######..............]" for 0.0 <= fraction <= 1.0."""
    fraction = min(1.0, max(0.0, fraction))
    filled = int(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def torrent_line(name: str, size: int, fraction: float, down_rate: float = 0.0,
                 up_rate: float = 0.0, peers: int = 0, eta: Optional[float] = None,
                 name_width: int = NAME_WIDTH, state: Optional[str] = None,
                 width: Optional[int] = None) -> str:
    """One status line per torrent: name, size, percent, rates, peers, ETA (or the state).

    With ``width`` (a terminal's columns) the name column shrinks, down to MIN_NAME_WIDTH, so
    that the line fits and its end (the ETA, or how a torrent was left) stays on the screen.
    """
    tail = "eta " + human_eta(eta) if state in (None, "downloading") else state
    rest = "%8s %5.1f%%  down %9s  up %9s  peers %3d  %s" % (
        human_size(size), 100.0 * min(1.0, max(0.0, fraction)), human_rate(down_rate),
        human_rate(up_rate), peers, tail)
    if width is not None:
        name_width = max(MIN_NAME_WIDTH, min(name_width, width - 2 - len(rest)))
    return "%-*s %s" % (name_width, _clip(printable(name), name_width), rest)


def use_color(stream: TextIO) -> bool:
    """True when ANSI escapes may be written to ``stream``."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


class _Throttle:
    """Lets a redraw through when ``interval`` has passed since the last one (or when forced)."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self._clock = clock
        self._last: Optional[float] = None

    def due(self, force: bool) -> bool:
        now = self._clock()
        if not force and self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True


class ProgressLine:
    """A status line: redrawn in place on a TTY, a plain line every few seconds elsewhere.

    ``update(text)`` may be called as often as the caller likes; it writes only when the last write
    is older than the interval (or ``force`` is set). ``message(text)`` prints a line above it
    (and redraws it); ``finish(text)`` ends the line. Safe to call from several threads.
    """

    def __init__(self, stream: Optional[TextIO] = None, *, tty: Optional[bool] = None,
                 interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.color = self.tty and use_color(self.stream)
        self._throttle = _Throttle(interval if interval is not None else (
            TTY_INTERVAL if self.tty else PLAIN_INTERVAL), clock)
        self._lock = threading.RLock()
        self._text = ""
        self._drawn = 0  # characters on the current TTY line

    def update(self, text: str, force: bool = False) -> bool:
        """Show ``text``; returns True when something was written."""
        with self._lock:
            if not self._throttle.due(force):
                return False
            self._text = printable(text)
            if self.tty:
                self._draw()
            else:
                self.stream.write(self._text + "\n")
            self.stream.flush()
            return True

    def message(self, text: str) -> None:
        """A line of its own above the status line, which is then drawn again below it."""
        with self._lock:
            drawn = self.tty and self._drawn > 0
            if drawn:
                self._erase()
            self.stream.write(printable(text) + "\n")
            if drawn:
                self._draw()
            self.stream.flush()

    def finish(self, text: Optional[str] = None) -> None:
        """Write the final ``text`` (if any) and end the line."""
        with self._lock:
            if text is not None:
                self.update(text, force=True)
            if self.tty and self._drawn:
                self.stream.write("\n")
                self.stream.flush()
            self._drawn = 0

    @property
    def drawn(self) -> bool:
        """True while a TTY line is on the screen (a message must go above it)."""
        return self.tty and self._drawn > 0

    def _draw(self) -> None:
        text = self._text[:_terminal_width(self.stream) - 1]
        if self.color:
            self.stream.write("\r" + text + "\x1b[K")
        else:
            # no ANSI: overwrite the rest of the previous text with spaces
            self.stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
        self._drawn = len(text)

    def _erase(self) -> None:
        if self.color:
            self.stream.write("\r\x1b[K")
        else:
            self.stream.write("\r" + " " * self._drawn + "\r")
        self._drawn = 0


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
    except (AttributeError, ValueError, OSError):
        return DEFAULT_WIDTH


def write_line(stream: TextIO, text: str) -> None:
    """One plain line of output (messages between progress updates), made printable."""
    stream.write(printable(text) + "\n")
    stream.flush()


class StatusBlock:
    """Several status lines (one per torrent) redrawn in place on a colour TTY.

    On a TTY with ANSI allowed the block moves the cursor up and redraws every line; on a TTY
    without ANSI (NO_COLOR) it falls back to one line, the torrents' lines joined, redrawn with a
    carriage return; in a pipe it prints the lines every few seconds. ``message(text)`` prints a
    line above the block, which is then drawn again below it: a log line or a notice is never
    glued onto a status line. Safe to call from several threads.
    """

    def __init__(self, stream: Optional[TextIO] = None, *, tty: Optional[bool] = None,
                 interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.ansi = self.tty and use_color(self.stream)
        interval = interval if interval is not None else (
            TTY_INTERVAL if self.tty else PLAIN_INTERVAL)
        self._throttle = _Throttle(interval, clock)
        self._lock = threading.RLock()
        self._lines: List[str] = []
        self._drawn = 0  # lines of the block on the screen, the cursor below the last
        self._single = ProgressLine(self.stream, tty=self.tty, interval=interval, clock=clock)

    @property
    def width(self) -> Optional[int]:
        """The terminal's columns; None in a pipe, where lines are not cut."""
        return _terminal_width(self.stream) if self.tty else None

    def update(self, lines: Sequence[str], force: bool = False) -> bool:
        with self._lock:
            if len(lines) == 1 or (self.tty and not self.ansi):
                return self._single.update(" | ".join(lines), force=force)
            if not self._throttle.due(force):
                return False
            self._lines = [printable(line) for line in lines]
            if self.ansi:
                self._draw()
            else:
                for line in self._lines:
                    self.stream.write(line + "\n")
            self.stream.flush()
            return True

    def message(self, text: str) -> None:
        """A line of its own above the status lines."""
        with self._lock:
            if self._single.drawn or not self._drawn:
                self._single.message(text)
                return
            self.stream.write("\x1b[%dA\r\x1b[J" % self._drawn)  # up, then erase below
            self.stream.write(printable(text) + "\n")
            self._drawn = 0
            self._draw()
            self.stream.flush()

    def finish(self, lines: Sequence[str]) -> None:
        with self._lock:
            self.update(lines, force=True)
            if len(lines) == 1 or (self.tty and not self.ansi):
                self._single.finish()
            self._drawn = 0

    def _draw(self) -> None:
        width = _terminal_width(self.stream)
        if self._drawn:
            self.stream.write("\x1b[%dA" % self._drawn)
        for line in self._lines:
            self.stream.write("\r" + line[:width - 1] + "\x1b[K\n")
        self._drawn = len(self._lines)


class TerminalLogFormatter(logging.Formatter):
    """A log record as a person reads it on a terminal: the message alone, on one line, without
    the time, level and module that a --log-file keeps, and with control characters removed."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f" ({type(error).__name__}: {error})"
        return printable(text)


class MessageHandler(logging.Handler):
    """Log records as ``block.message`` lines: above the live status, never glued onto it."""

    def __init__(self, block: Any, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.block = block

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.block.message(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int],
           colors: Optional[Dict[Tuple[int, int], str]] = None) -> List[str]:
    rows = [[printable(text) for text in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def cell(i: int, text: str, row: int) -> str:
        padded = text.rjust(widths[i]) if i in right else text.ljust(widths[i])
        code = (colors or {}).get((row, i))
        return f"\x1b[{code}m{padded}\x1b[0m" if code else padded

    lines = ["  ".join(cell(i, h, -1) for i, h in enumerate(headers)).rstrip()]
    for n, r in enumerate(rows):
        lines.append("  ".join(cell(i, text, n) for i, text in enumerate(r)).rstrip())
    return lines


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "~"


def status_table(rows: Sequence[Dict[str, Any]], color: bool = False) -> List[str]:
    """The `status` table; ``rows`` are Torrent.status() dicts with "number" and "ratio" added."""
    headers = ("#", "NAME", "STATE", "SIZE", "PROGRESS", "DOWN", "UP", "RATIO", "PEERS", "ETA")
    cells = []
    colors: Dict[Tuple[int, int], str] = {}
    for n, s in enumerate(rows):
        cells.append((
            str(s["number"]), _clip(s["name"], TABLE_NAME_WIDTH), s["state"], human_size(s["size"]),
            "%s %5.1f%%" % (progress_bar(s["progress"], TABLE_BAR_WIDTH), 100.0 * s["progress"]),
            human_rate(s["down_rate"]), human_rate(s["up_rate"]), "%.2f" % s["ratio"],
            str(s["peers"]) + (f" ({s['seeds']} seeds)" if s["seeds"] else ""),
            human_eta(s["eta"]) if s["state"] == "downloading" else "-"))
        if color and s["state"] in _STATE_COLORS:
            colors[(n, 2)] = _STATE_COLORS[s["state"]]
    lines = _table(headers, cells, right=(0, 3, 5, 6, 7), colors=colors)
    lines += [printable(f"{s['number']}: {s['name']}: {s['error']}")
              for s in rows if s.get("error")]
    return lines


def peers_table(rows: Sequence[Dict[str, Any]], with_torrent: bool) -> List[str]:
    """The `peers` table; ``rows`` are Torrent.peer_statuses() rows with "torrent" added."""
    headers = ("#",) * with_torrent + ("ADDRESS", "CLIENT", "FLAGS", "HAVE", "DOWN", "UP",
                                       "DOWNLOADED", "UPLOADED")
    cells = [(str(r["torrent"]),) * with_torrent + (
        r["address"], _clip(r["client"] or "?", TABLE_CLIENT_WIDTH), r["flags"] or "-",
        "%.1f%%" % (100.0 * r["progress"]), human_rate(r["down_rate"]),
        human_rate(r["up_rate"]), human_size(r["downloaded"]),
        human_size(r["uploaded"])) for r in rows]
    first = 1 if with_torrent else 0
    return _table(headers, cells, right=[first + i for i in (3, 4, 5, 6, 7)])


def stats_lines(stats: Dict[str, Any]) -> List[str]:
    """The `stats` text; ``stats`` is the `stats --json` object."""
    states = ", ".join(f"{n} {state}" for state, n in sorted(stats["states"].items()))
    fields = [
        ("listening on", f"{stats['host']}:{stats['listen_port']}"),
        ("uptime", human_eta(stats["uptime"]) if stats["uptime"] < 86400 * 99 else "long"),
        ("torrents", f"{stats['torrents']}" + (f" ({states})" if states else "")),
        ("peers", str(stats["peers"]) + (f" ({stats['utp_peers']} over uTP)"
                                          if stats.get("utp_peers") else "")),
        ("downloaded", f"{human_size(stats['downloaded'])} "
                       f"(now {human_rate(stats['down_rate'])})"),
        ("uploaded", f"{human_size(stats['uploaded'])} "
                     f"(now {human_rate(stats['up_rate'])})"),
        ("ratio", "%.2f" % stats["ratio"]),
        ("peer id", stats["peer_id"]),
    ]
    return [f"{label + ':':<14}{printable(value)}" for label, value in fields]
