"""What `seed` and `download` show while they run.

The opening lines (where the node listens, what was found on disk), one live status line per
torrent, a plain sentence when a torrent waits for peers that do not come (nopeers.py), the
closing lines and the summary. transfer.py runs the session and calls these; it writes nothing
itself. On a terminal the status lines are redrawn in place and every other line, log records
included, is printed above them, never glued onto them; in a pipe, plain lines every few
seconds. Names and messages pass through ui.printable on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Callable, Iterator, List, Optional, Sequence, TextIO, Tuple

from . import ui
from .magnet_torrent import MagnetTorrent
from .nopeers import NoPeerNotices
from .preflight import WILDCARD_ADDRESSES
from .torrent import DOWNLOADING, ERROR, SEEDING

__all__ = ["listening", "checking", "report_start", "watch", "status_line", "summary",
           "PROGRESS_INTERVAL"]

# Progress is refreshed this often; ui.StatusBlock decides how often it is actually drawn.
PROGRESS_INTERVAL = 0.5
# What a torrent's last status line says once the command has ended: nothing is seeding or
# downloading any more then, so the line tells how it was left.
FINAL_STATES = {SEEDING: "complete", DOWNLOADING: "incomplete", "metadata": "no metadata"}
# How a command ended, for its closing lines and its exit status.
DONE, FAILED, INTERRUPTED, TIMED_OUT = "done", "failed", "interrupted", "timed out"
# Exit status of a download stopped by Ctrl-C or SIGTERM before it completed (128 + SIGINT).
INTERRUPTED_STATUS = 130


# ------------------------------------------------------------------------- opening lines

def listening(out: TextIO, host: str, port: int) -> None:
    where = f"port {port}" if host in WILDCARD_ADDRESSES else f"{host}:{port}"
    ui.write_line(out, f"Listening for peers on {where}")


def checking(out: TextIO, name: str, folder: str) -> None:
    ui.write_line(out, f"Checking {name} in {folder} ...")


def report_start(out: TextIO, torrent: Any, *, seed_only: bool, folder: str) -> None:
    """What was found on disk for a torrent just added (or that its metadata comes first)."""
    if isinstance(torrent, MagnetTorrent):
        ui.write_line(out, f"{torrent.name}: fetching the metadata from peers, trackers and "
                           "sources")
        return
    have = torrent.picker.have.count if torrent.picker else 0
    total = torrent.info.num_pieces
    if seed_only:
        if not have:
            return  # the seed command says it once, after every torrent is checked
        if have < total:
            ui.write_line(out, f"{torrent.name}: only {have} of {total} pieces found in "
                               f"{folder}; seeding those")
        else:
            ui.write_line(out, f"Seeding {torrent.name} ({ui.human_size(torrent.info.length)}), "
                               f"info hash {torrent.info_hash.hex()}")
    elif have == total:
        ui.write_line(out, f"{torrent.name}: already complete in {folder}")
    elif have:
        ui.write_line(out, f"{torrent.name}: resuming with {have} of {total} pieces verified")


# ------------------------------------------------------------------------------ the watch

async def watch(torrents: List[Any], *, out: TextIO, stop: asyncio.Event,
                timeout: Optional[float], exit_when_complete: bool,
                resolve: Callable[[Any], Any] = lambda t: t,
                clock: Callable[[], float] = time.monotonic) -> int:
    """Show progress until the command's end; returns its exit status.

    ``exit_when_complete``: a download (not --seed) ends once every torrent is complete or
    failed; otherwise the command runs until ``stop`` (Ctrl-C, SIGTERM) or ``timeout``.
    ``resolve`` maps a torrent to what replaced it (a magnet link's stand-in to the torrent);
    ``torrents`` is updated in place.
    """
    block = ui.StatusBlock(out)
    notices = NoPeerNotices()
    deadline = None if timeout is None else clock() + timeout
    with log_above(block):
        while True:
            torrents[:] = [resolve(t) for t in torrents]
            block.update([status_line(t, width=block.width) for t in torrents])
            for torrent in torrents:
                status = torrent.status()
                text = notices.check(status.get("info_hash", id(torrent)), status, clock())
                if text is not None:
                    block.message(f"{torrent.name}: {text}")
            ended = _outcome(torrents, stop, deadline, exit_when_complete, clock())
            if ended is not None:
                break
            await _next_refresh(stop, torrents, PROGRESS_INTERVAL)
        block.finish([status_line(t, final=True, width=block.width) for t in torrents])
    exit_status, how = ended
    for line in closing_lines(torrents, how, timeout):
        ui.write_line(out, line)
    return exit_status


async def _next_refresh(stop: asyncio.Event, torrents: Sequence[Any], interval: float) -> None:
    """Sleep ``interval``, or less: until ``stop`` is set or a torrent is done (complete or
    failed), so a download ends the moment its last torrent does, not at the next refresh."""
    if stop.is_set():
        return
    events = [stop] + [getattr(t, "done", None) for t in torrents]
    waits = [asyncio.ensure_future(event.wait()) for event in events
             if isinstance(event, asyncio.Event) and not event.is_set()]
    try:
        await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _outcome(torrents: Sequence[Any], stop: asyncio.Event, deadline: Optional[float],
             exit_when_complete: bool, now: float) -> Optional[Tuple[int, str]]:
    """(exit status, how it ended) once the command should end, else None."""
    failed = [t for t in torrents if t.state == ERROR]
    if exit_when_complete and all(t.state in (SEEDING, ERROR) for t in torrents):
        return (1, FAILED) if failed else (0, DONE)
    if stop.is_set():
        # Ctrl-C ends a seed normally; a download stopped early can be resumed later.
        if not exit_when_complete or all(t.complete for t in torrents):
            return 0, DONE
        return INTERRUPTED_STATUS, INTERRUPTED
    if deadline is not None and now >= deadline:
        if exit_when_complete or any(t.state == DOWNLOADING for t in torrents):
            return 1, TIMED_OUT
        return 0, DONE
    if failed and len(failed) == len(torrents):
        return 1, FAILED
    return None


def closing_lines(torrents: Sequence[Any], how: str, timeout: Optional[float]) -> List[str]:
    """What is said under the last status lines: why a torrent stopped, what was left undone
    and how to carry on."""
    lines = [f"{t.name}: stopped: {t.error}" for t in torrents if t.state == ERROR]
    left = [t.name for t in torrents if not t.complete and t.state != ERROR]
    if how == TIMED_OUT:
        lines += [f"{t.name}: no metadata within {timeout:g} s; tried {t.sources_tried()}"
                  for t in torrents if isinstance(t, MagnetTorrent)]
        lines.append(f"timed out after {timeout:g} s; incomplete: {', '.join(left)}; run the "
                     "same command again to continue where it stopped")
    elif how == INTERRUPTED and left:
        lines.append(f"stopped; incomplete: {', '.join(left)}; run the same command again to "
                     "continue where it stopped")
    return lines


def status_line(torrent: Any, final: bool = False, width: Optional[int] = None) -> str:
    """The live line of one torrent, fitted to ``width`` columns; ``final``: its last, once
    the command has ended."""
    s = torrent.status()
    state = FINAL_STATES.get(s["state"], s["state"]) if final else s["state"]
    return ui.torrent_line(s["name"], s["size"], s["progress"], s["down_rate"], s["up_rate"],
                           s["peers"], s["eta"], state=state, width=width)


@contextlib.contextmanager
def log_above(block: ui.StatusBlock) -> Iterator[None]:
    """While the status block is live, log records meant for its stream are printed above it
    (ui.MessageHandler); the handlers are put back afterwards. A --log-file is left alone."""
    root = logging.getLogger()
    swapped = []
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and handler.stream is block.stream:
            above = ui.MessageHandler(block, handler.level)
            above.setFormatter(handler.formatter or ui.TerminalLogFormatter())
            swapped.append((handler, above))
    if not root.handlers:  # logging not configured: warnings would go to logging.lastResort
        added = ui.MessageHandler(block, logging.WARNING)
        added.setFormatter(ui.TerminalLogFormatter())
        swapped.append((None, added))
    for handler, above in swapped:
        if handler is not None:
            root.removeHandler(handler)
        root.addHandler(above)
    try:
        yield
    finally:
        for handler, above in swapped:
            root.removeHandler(above)
            if handler is not None:
                root.addHandler(handler)


# -------------------------------------------------------------------------------- summary

def summary(out: TextIO, torrents: Sequence[Any],
            clock: Callable[[], float] = time.monotonic) -> None:
    """Per torrent: bytes each way, how long, the average rate, and what each peer gave."""
    for t in torrents:
        end = t.completed_at if t.completed_at and t.downloaded else clock()
        took = max(end - t.started_at, 1e-6)
        ui.write_line(out, f"{t.name}: downloaded {ui.human_size(t.downloaded)}, uploaded "
                           f"{ui.human_size(t.uploaded)} in {ui.human_duration(took)}"
                           + (f", average {ui.human_rate(t.downloaded / took)}"
                              if t.downloaded else ""))
        for (host, port), amount in sorted(t.contributions.items(), key=lambda kv: -kv[1]):
            ui.write_line(out, f"  from {host}:{port}: {ui.human_size(amount)}")
