"""Terminal output: human units, a progress line that redraws on a TTY, plain lines elsewhere.

On a terminal the progress line is redrawn in place with a carriage return, like aria2 and
Transmission; in a pipe or a log file a plain line is written every few seconds instead, so the
file stays readable. Colour (ANSI escapes) is used only on a TTY and never when NO_COLOR is set
(https://no-color.org) or TERM is "dumb".

The shell's tables are here too, as plain functions from status dicts to lines of text:
``status_table`` (Torrent.status() rows), ``peers_table`` (Torrent.peer_statuses() rows) and
``stats_lines`` (the `stats --json` object).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

__all__ = [
    "human_size", "human_rate", "human_eta", "progress_bar", "torrent_line", "use_color",
    "ProgressLine", "StatusBlock", "write_line", "status_table", "peers_table", "stats_lines",
]

# A non-TTY progress line every 5 s: often enough that a log shows movement, rarely enough that a
# day-long download does not fill it (17,280 lines a day at most).
PLAIN_INTERVAL = 5.0
# Redrawing more often than 10 times a second is invisible to a person and costs CPU in the
# terminal emulator.
TTY_INTERVAL = 0.1
# Width used when the terminal does not say (pipes, some IDE consoles).
DEFAULT_WIDTH = 80
# Column widths that keep a status row within 120 columns with long names.
TABLE_NAME_WIDTH = 30
TABLE_CLIENT_WIDTH = 24
TABLE_BAR_WIDTH = 20

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
# ANSI colours of Torrent.state values in the status table.
_STATE_COLORS = {"seeding": "32", "downloading": "36", "paused": "33", "error": "31"}


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


def progress_bar(fraction: float, width: int = 20) -> str:
    """A bar like "[######..............]" for 0.0 <= fraction <= 1.0."""
    fraction = min(1.0, max(0.0, fraction))
    filled = int(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def torrent_line(name: str, size: int, fraction: float, down_rate: float = 0.0,
                 up_rate: float = 0.0, peers: int = 0, eta: Optional[float] = None,
                 name_width: int = 24, state: Optional[str] = None) -> str:
    """One status line per torrent: name, size, percent, rates, peers, ETA (or the state)."""
    if len(name) > name_width:
        name = name[:name_width - 1] + "~"
    tail = human_eta(eta) if state in (None, "downloading") else state
    return "%-*s %10s %6.1f%%  down %11s  up %11s  peers %3d  %s" % (
        name_width, name, human_size(size), 100.0 * min(1.0, max(0.0, fraction)),
        human_rate(down_rate), human_rate(up_rate), peers,
        ("eta " + tail) if state in (None, "downloading") else tail)


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


class ProgressLine:
    """A status line: redrawn in place on a TTY, a plain line every few seconds elsewhere.

    ``update(text)`` may be called as often as the caller likes; it writes only when the last write
    is older than the interval (or ``force`` is set). ``finish(text)`` ends the line.
    """

    def __init__(self, stream: Optional[TextIO] = None, *, tty: Optional[bool] = None,
                 interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.color = self.tty and use_color(self.stream)
        self.interval = interval if interval is not None else (
            TTY_INTERVAL if self.tty else PLAIN_INTERVAL)
        self._clock = clock
        self._last: Optional[float] = None
        self._drawn = 0  # characters on the current TTY line

    def update(self, text: str, force: bool = False) -> bool:
        """Show ``text``; returns True when something was written."""
        now = self._clock()
        if not force and self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        if self.tty:
            width = _terminal_width(self.stream)
            text = text[:width - 1]
            if self.color:
                self.stream.write("\r" + text + "\x1b[K")
            else:
                # no ANSI: overwrite the rest of the previous text with spaces
                self.stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
            self._drawn = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        return True

    def finish(self, text: Optional[str] = None) -> None:
        """Write the final ``text`` (if any) and end the line."""
        if text is not None:
            self.update(text, force=True)
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = 0

    def clear(self) -> None:
        """Remove the current TTY line (before printing a message above it)."""
        if self.tty and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
    except (AttributeError, ValueError, OSError):
        return DEFAULT_WIDTH


def write_line(stream: TextIO, text: str) -> None:
    """One plain line of output (messages between progress updates)."""
    stream.write(text + "\n")
    stream.flush()


class StatusBlock:
    """Several status lines (one per torrent) redrawn in place on a colour TTY.

    On a TTY with ANSI allowed the block moves the cursor up and redraws every line; on a TTY
    without ANSI (NO_COLOR) it falls back to one line per torrent, each redrawn with a carriage
    return when there is a single torrent and printed in turn otherwise; in a pipe it prints the
    lines every few seconds.
    """

    def __init__(self, stream: Optional[TextIO] = None, *, tty: Optional[bool] = None,
                 interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.ansi = self.tty and use_color(self.stream)
        self.interval = interval if interval is not None else (
            TTY_INTERVAL if self.tty else PLAIN_INTERVAL)
        self._clock = clock
        self._last: Optional[float] = None
        self._drawn = 0
        self._single = ProgressLine(self.stream, tty=self.tty, interval=self.interval,
                                    clock=clock)

    def update(self, lines: "list[str]", force: bool = False) -> bool:
        if len(lines) == 1 or (self.tty and not self.ansi):
            return self._single.update(" | ".join(lines), force=force)
        now = self._clock()
        if not force and self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        if self.ansi:
            width = _terminal_width(self.stream)
            if self._drawn:
                self.stream.write("\x1b[%dA" % self._drawn)
            for line in lines:
                self.stream.write("\r" + line[:width - 1] + "\x1b[K\n")
            self._drawn = len(lines)
        else:
            for line in lines:
                self.stream.write(line + "\n")
        self.stream.flush()
        return True

    def finish(self, lines: "list[str]") -> None:
        self.update(lines, force=True)
        if len(lines) == 1 or (self.tty and not self.ansi):
            self._single.finish()
        self._drawn = 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int],
           colors: Optional[Dict[Tuple[int, int], str]] = None) -> List[str]:
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
    lines += [f"{s['number']}: {s['name']}: {s['error']}" for s in rows if s.get("error")]
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
        ("peers", str(stats["peers"])),
        ("downloaded", f"{human_size(stats['downloaded'])} "
                       f"(now {human_rate(stats['down_rate'])})"),
        ("uploaded", f"{human_size(stats['uploaded'])} "
                     f"(now {human_rate(stats['up_rate'])})"),
        ("ratio", "%.2f" % stats["ratio"]),
        ("peer id", stats["peer_id"]),
    ]
    return [f"{label + ':':<14}{value}" for label, value in fields]
