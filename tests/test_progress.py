"""progress.py: what `seed` and `download` show, with stand-in torrents (status dicts and a few
attributes), in a pipe and on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
import time
import unittest
from types import SimpleNamespace
from typing import Any, Dict, List, Optional
from unittest import mock

from sta import progress
from tests import termkit

MIB = 1 << 20


class FakeTorrent:
    """What progress.py reads of a torrent; ``script`` gives the state of each status() call."""

    def __init__(self, name: str = "a.bin", state: str = "downloading",
                 script: Optional[List[str]] = None, **status: Any) -> None:
        self.name = name
        self.state = state
        self.script = list(script or [])
        self.error: Optional[str] = None
        self.downloaded = 0
        self.uploaded = 0
        self.started_at = 0.0
        self.completed_at: Optional[float] = None
        self.contributions: Dict[Any, int] = {}
        self.extra = status
        self.on_status: Any = None

    @property
    def complete(self) -> bool:
        return self.state == "seeding"

    def status(self) -> Dict[str, Any]:
        if self.script:
            self.state = self.script.pop(0)
        if self.on_status is not None:
            self.on_status()
        row = {"name": self.name, "info_hash": self.name, "state": self.state, "size": 3 * MIB,
               "progress": 1.0 if self.complete else 0.25, "down_rate": 0.0, "up_rate": 0.0,
               "peers": 0, "eta": None, "error": self.error}
        row.update(self.extra)
        return row


def watch(torrents: List[FakeTorrent], out: Any, *, stop: Optional[asyncio.Event] = None,
          timeout: Optional[float] = None, exit_when_complete: bool = True,
          clock: Any = None) -> int:
    async def run() -> int:
        with mock.patch.object(progress, "PROGRESS_INTERVAL", 0.001):
            return await progress.watch(torrents, out=out, stop=stop or asyncio.Event(),
                                        timeout=timeout, exit_when_complete=exit_when_complete,
                                        **({"clock": clock} if clock else {}))
    return asyncio.run(run())


def ticking(step: float) -> Any:
    now = [0.0]

    def clock() -> float:
        now[0] += step
        return now[0]
    return clock


class OutcomeTest(unittest.TestCase):
    def outcome(self, states: List[str], stop: bool = False, deadline: Optional[float] = None,
                exit_when_complete: bool = True) -> Any:
        event = threading.Event()  # what _outcome asks of it: is_set(); needs no event loop
        if stop:
            event.set()
        return progress._outcome([FakeTorrent(state=s) for s in states], event,  # type: ignore
                                 deadline, exit_when_complete, now=100.0)

    def test_a_download_ends_once_every_torrent_is_complete_or_failed(self) -> None:
        self.assertEqual(self.outcome(["seeding", "seeding"]), (0, progress.DONE))
        self.assertEqual(self.outcome(["seeding", "error"]), (1, progress.FAILED))
        self.assertIsNone(self.outcome(["seeding", "downloading"]))

    def test_ctrl_c_ends_a_seed_normally_and_an_incomplete_download_with_130(self) -> None:
        self.assertEqual(self.outcome(["seeding"], stop=True, exit_when_complete=False),
                         (0, progress.DONE))
        self.assertEqual(self.outcome(["downloading"], stop=True),
                         (130, progress.INTERRUPTED))

    def test_timeout_fails_a_download_and_ends_a_seed(self) -> None:
        self.assertEqual(self.outcome(["downloading"], deadline=50.0), (1, progress.TIMED_OUT))
        self.assertEqual(self.outcome(["seeding"], deadline=50.0, exit_when_complete=False),
                         (0, progress.DONE))
        self.assertIsNone(self.outcome(["downloading"], deadline=150.0))

    def test_every_torrent_failed_ends_even_a_seed(self) -> None:
        self.assertEqual(self.outcome(["error"], exit_when_complete=False),
                         (1, progress.FAILED))


class LinesTest(unittest.TestCase):
    def test_last_line_of_a_finished_download_says_complete_not_seeding(self) -> None:
        line = progress.status_line(FakeTorrent(state="seeding"), final=True)
        self.assertTrue(line.endswith("peers   0  complete"), line)
        self.assertTrue(progress.status_line(FakeTorrent(state="seeding")).endswith("seeding"))
        self.assertTrue(progress.status_line(FakeTorrent(), final=True).endswith("incomplete"))

    def test_closing_lines_say_how_to_carry_on(self) -> None:
        broken = FakeTorrent("b.bin", state="error")
        broken.error = "disk full"
        torrents = [FakeTorrent("a.bin"), broken, FakeTorrent("c.bin", state="seeding")]
        self.assertEqual(progress.closing_lines(torrents, progress.TIMED_OUT, 5.0), [
            "b.bin: stopped: disk full",
            "timed out after 5 s; incomplete: a.bin; run the same command again to continue "
            "where it stopped"])
        self.assertEqual(progress.closing_lines(torrents[:1], progress.INTERRUPTED, None), [
            "stopped; incomplete: a.bin; run the same command again to continue where it "
            "stopped"])
        self.assertEqual(progress.closing_lines(torrents[2:], progress.DONE, None), [])

    def test_summary_of_a_sub_second_transfer_gives_tenths(self) -> None:
        t = FakeTorrent(state="seeding")
        t.started_at, t.completed_at, t.downloaded = 10.0, 10.4, 300000
        t.contributions = {("10.0.0.2", 6881): 200000, ("10.0.0.3", 6881): 100000}
        out = io.StringIO()
        progress.summary(out, [t], clock=lambda: 99.0)
        self.assertEqual(out.getvalue().splitlines(), [
            "a.bin: downloaded 293 KiB, uploaded 0 B in 0.4 s, average 732 KiB/s",
            "  from 10.0.0.2:6881: 195 KiB", "  from 10.0.0.3:6881: 97.7 KiB"])

    def test_summary_of_a_seed_counts_until_now(self) -> None:
        t = FakeTorrent(state="seeding")
        t.uploaded = 5 * MIB
        out = io.StringIO()
        progress.summary(out, [t], clock=lambda: 125.0)
        self.assertEqual(out.getvalue(), "a.bin: downloaded 0 B, uploaded 5 MiB in 2m05s\n")

    def test_opening_lines_say_what_was_found_on_disk(self) -> None:
        def torrent(have: int) -> Any:
            return SimpleNamespace(name="a.bin", picker=SimpleNamespace(
                have=SimpleNamespace(count=have)), info=SimpleNamespace(num_pieces=4,
                                                                         length=4 * MIB),
                info_hash=b"\xab" * 20)
        out = io.StringIO()
        for have in (0, 2, 4):
            progress.report_start(out, torrent(have), seed_only=True, folder="lab")
        for have in (0, 2, 4):
            progress.report_start(out, torrent(have), seed_only=False, folder="dl")
        # A seed with none of its data prints nothing here: the command says it once, after
        # every torrent is checked (transfer._announce_seeds).
        self.assertEqual(out.getvalue().splitlines(), [
            "a.bin: only 2 of 4 pieces found in lab; seeding those",
            "Seeding a.bin (4 MiB), info hash " + "ab" * 20,
            "a.bin: resuming with 2 of 4 pieces verified",
            "a.bin: already complete in dl"])

    def test_listening_names_the_address_only_when_bound_to_one(self) -> None:
        out = io.StringIO()
        progress.listening(out, "0.0.0.0", 6881)
        progress.listening(out, "192.168.88.114", 6881)
        self.assertEqual(out.getvalue(), "Listening for peers on port 6881\n"
                                         "Listening for peers on 192.168.88.114:6881\n")


class WatchInAPipeTest(unittest.TestCase):
    def test_download_ends_when_complete_and_its_last_line_says_so(self) -> None:
        out = io.StringIO()
        status = watch([FakeTorrent(script=["downloading", "downloading", "seeding"])], out)
        self.assertEqual(status, 0)
        last = out.getvalue().splitlines()[-1]
        self.assertTrue(last.endswith("complete"), out.getvalue())

    def test_a_download_ends_as_its_last_torrent_completes_not_at_the_next_refresh(self) -> None:
        async def run() -> int:
            torrents = [FakeTorrent("a.bin"), FakeTorrent("b.bin")]
            for torrent in torrents:
                torrent.done = asyncio.Event()

            def finish(torrent: FakeTorrent) -> None:
                torrent.state = "seeding"
                torrent.done.set()

            loop = asyncio.get_running_loop()
            loop.call_later(0.02, finish, torrents[0])
            loop.call_later(0.04, finish, torrents[1])
            with mock.patch.object(progress, "PROGRESS_INTERVAL", 600.0):
                return await asyncio.wait_for(progress.watch(
                    torrents, out=io.StringIO(), stop=asyncio.Event(), timeout=None,
                    exit_when_complete=True), 10.0)

        self.assertEqual(asyncio.run(run()), 0)  # within wait_for's 10 s, not the 600 s refresh

    def test_a_torrent_without_peers_gets_one_plain_reason(self) -> None:
        dead = FakeTorrent(trackers=[{"url": "http://10.0.0.1:4000/announce",
                                      "error": "connection refused", "peers": None}],
                           known=0, failed=[])
        out = io.StringIO()
        status = watch([dead], out, timeout=40.0, clock=ticking(1.0))
        self.assertEqual(status, 1)
        notices = [line for line in out.getvalue().splitlines() if "no peer after" in line]
        self.assertEqual(len(notices), 1, out.getvalue())
        self.assertTrue(notices[0].startswith("a.bin: no peer after 1"), notices)
        self.assertIn("tracker 10.0.0.1:4000 unreachable: connection refused. Check the "
                      "tracker address", notices[0])

    def test_log_records_go_through_the_block_and_handlers_come_back(self) -> None:
        root = logging.getLogger()
        out = io.StringIO()
        plain = logging.StreamHandler(out)
        saved = root.handlers[:]
        root.handlers = [plain]
        self.addCleanup(setattr, root, "handlers", saved)
        torrent = FakeTorrent(script=["downloading", "seeding"])
        seen: List[Any] = []

        def log_once() -> None:
            if not seen:
                seen.append(list(root.handlers))
                logging.getLogger("sta.announce").warning("tracker \x1b[2Jdown")
        torrent.on_status = log_once
        self.assertEqual(watch([torrent], out), 0)
        self.assertNotIn(plain, seen[0])
        self.assertEqual(root.handlers, [plain])
        self.assertIn("tracker down", out.getvalue().splitlines())


@termkit.needs_pty
class WatchOnATerminalTest(unittest.TestCase):
    """A real pseudo-terminal: isatty is true and the width comes from the terminal."""

    def run_on_pty(self, torrents: List[FakeTorrent], **kwargs: Any) -> List[str]:
        master, slave = termkit.open_terminal(80)
        shown: List[bytes] = []
        reader = threading.Thread(target=lambda: shown.append(termkit.read_all(
            master, time.monotonic() + termkit.TERMINAL_TIMEOUT)))
        reader.start()  # drains the terminal while it is written, as a terminal window does
        out = os.fdopen(slave, "w", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
        try:
            with mock.patch.dict(os.environ, env, clear=True):
                self.status = watch(torrents, out, **kwargs)
        finally:
            out.close()
            reader.join(termkit.TERMINAL_TIMEOUT)
            os.close(master)
        self.raw = b"".join(shown).decode("utf-8", "replace")
        return termkit.screen(self.raw)

    def test_notices_and_logs_print_above_the_progress_line(self) -> None:
        torrent = FakeTorrent("evil\x1b]0;owned\x07.bin", known=0, failed=[],
                              trackers=[{"url": "http://t:4000/announce", "peers": 0,
                                         "error": None}])
        calls = [0]

        def log_sometimes() -> None:
            calls[0] += 1
            if calls[0] % 7 == 0:
                logging.getLogger("sta.test").warning("warning %d", calls[0])
        torrent.on_status = log_sometimes
        root = logging.getLogger()
        saved = root.handlers[:]
        self.addCleanup(setattr, root, "handlers", saved)
        root.handlers = []  # not configured: warnings must still go above the line
        lines = self.run_on_pty([torrent], timeout=30.0, clock=ticking(1.0))
        self.assertEqual(self.status, 1)
        self.assertNotIn("\x1b]", self.raw)
        progress_lines = [line for line in lines if line.startswith("evil.bin ")]
        self.assertEqual(len(progress_lines), 1, lines)  # redrawn in place, one left at the end
        self.assertTrue(progress_lines[0].endswith("incomplete"), lines)
        self.assertTrue(any(line.startswith("evil.bin: no peer after") for line in lines),
                        lines)
        self.assertTrue(any(line.startswith("warning ") for line in lines), lines)
        self.assertLess(len(progress_lines[0]), 80)  # messages may wrap; the status may not
        for line in lines:
            if "warning" in line or "no peer after" in line:
                self.assertNotIn("peers   0", line, lines)

    def test_several_torrents_redraw_as_a_block(self) -> None:
        torrents = [FakeTorrent("one.bin", script=["downloading"] * 3 + ["seeding"]),
                    FakeTorrent("two.bin", script=["downloading"] * 5 + ["seeding"])]
        lines = self.run_on_pty(torrents)
        self.assertEqual(self.status, 0)
        self.assertEqual([line.split()[0] for line in lines], ["one.bin", "two.bin"])
        self.assertTrue(all(line.endswith("complete") for line in lines), lines)


if __name__ == "__main__":
    unittest.main()
