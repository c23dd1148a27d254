"""ui.py, byte for byte on small inputs: units, the progress line and the status block on a
terminal and in a pipe, lines printed above them, printable text, log lines, and the shell's
tables (status, peers, stats)."""

from __future__ import annotations

import io
import logging
import os
import threading
import unittest
from typing import Any, Dict, List
from unittest import mock

from sta import ui

MIB = 1 << 20


def torrent_row(**fields: Any) -> Dict[str, Any]:
    row = {"number": 1, "name": "a.bin", "state": "seeding", "size": 3 * MIB, "progress": 1.0,
           "down_rate": 0, "up_rate": 1024, "ratio": 0.5, "peers": 2, "seeds": 0, "eta": None,
           "error": None}
    row.update(fields)
    return row


# Hostile strings a torrent, a peer or a tracker may send, and what the terminal must get.
HOSTILE = {
    "a\x1b[31mred\x1b[0m": "ared",
    "x\x1b]0;new title\x07y": "xy",
    "x\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\": "xlink",
    "clear\x1b[2J\x1b[H": "clear",
    "lone\x1b": "lone",
    "esc\x1bcreset": "escreset",
    "eight\x9b2Jbit": "eightbit",
    "dcs\x1bPq#0;2;0;0;0\x1b\\end": "dcsend",
    "bell\x07 nul\x00 del\x7f": "bell? nul? del?",
    "tab\tnew\nline\rret": "tab new line ret",
    "bidi\u202etxt.exe": "bidi?txt.exe",
    "caf\u00e9 \u4e2d\u6587": "caf\u00e9 \u4e2d\u6587",
}


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def without_no_color() -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    return mock.patch.dict(os.environ, env, clear=True)


class PrintableTest(unittest.TestCase):
    def test_printable_removes_escapes_and_controls(self) -> None:
        for hostile, shown in HOSTILE.items():
            with self.subTest(text=hostile):
                self.assertEqual(ui.printable(hostile), shown)

    def test_printable_takes_any_value(self) -> None:
        self.assertEqual(ui.printable(None), "None")
        self.assertEqual(ui.printable(ValueError("bad\x1b[2J")), "bad")


class UnitsTest(unittest.TestCase):
    def test_human_units(self) -> None:
        self.assertEqual([ui.human_size(n) for n in (0, 1023, 1024, 1536, 10 ** 9, 1 << 30)],
                         ["0 B", "1023 B", "1 KiB", "1.50 KiB", "954 MiB", "1 GiB"])
        self.assertEqual(ui.human_size(1048575), "1.00 MiB")
        self.assertEqual(ui.human_rate(2.5 * 1024 * 1024), "2.50 MiB/s")
        self.assertEqual([ui.human_eta(s) for s in (None, float("inf"), -1, 5, 185, 7300, 90000)],
                         ["--", "--", "--", "5s", "3m05s", "2h01m", "1d01h"])

    def test_human_duration_keeps_tenths_under_a_minute(self) -> None:
        self.assertEqual([ui.human_duration(s) for s in (0.0, 0.04, 0.43, 12.46, 59.9, 185)],
                         ["0.0 s", "0.0 s", "0.4 s", "12.5 s", "59.9 s", "3m05s"])

    def test_progress_bar(self) -> None:
        self.assertEqual(ui.progress_bar(0.5, 10), "[#####.....]")
        self.assertEqual(ui.progress_bar(7, 4), "[####]")


class TorrentLineTest(unittest.TestCase):
    def test_torrent_line_shows_size_percent_rates_peers_and_eta(self) -> None:
        line = ui.torrent_line("a" * 40, 1 << 30, 0.456, 1024, 0, 3, 65, name_width=10)
        self.assertEqual(line, "aaaaaaaaa~    1 GiB  45.6%  down   1 KiB/s  up     0 B/s  "
                               "peers   3  eta 1m05s")

    def test_torrent_line_shows_the_state_when_not_downloading(self) -> None:
        line = ui.torrent_line("a.bin", 3000, 1.0, state="complete")
        self.assertTrue(line.endswith("peers   0  complete"), line)

    def test_torrent_line_fits_an_80_column_terminal_by_shrinking_the_name(self) -> None:
        for state, eta in (("downloading", 3 * 86400.0), ("incomplete", None),
                           ("complete", None)):
            with self.subTest(state=state):
                line = ui.torrent_line("a-rather-long-name-of-a-torrent.iso", 999 << 20, 0.5,
                                       999 << 20, 999 << 20, 120, eta, state=state, width=80)
                self.assertLess(len(line), 80, line)
                self.assertTrue(line.startswith("a-rather"), line)
                self.assertTrue(line.endswith(state if state != "downloading" else "3d00h"))
        wide = ui.torrent_line("a-rather-long-name-of-a-torrent.iso", 1, 0, width=200)
        self.assertTrue(wide.startswith("a-rather-long-name-of-a~ "), wide)

    def test_torrent_line_makes_the_name_printable(self) -> None:
        line = ui.torrent_line("x\x1b[2Jy\x07", 1, 0.0)
        self.assertTrue(line.startswith("xy?  "), repr(line))


class ProgressLineTest(unittest.TestCase):
    def test_progress_line_in_a_pipe_prints_plain_lines_every_interval(self) -> None:
        now = [0.0]
        out = io.StringIO()
        line = ui.ProgressLine(out, clock=lambda: now[0])
        self.assertFalse(line.tty)
        self.assertTrue(line.update("one"))
        now[0] = ui.PLAIN_INTERVAL / 2
        self.assertFalse(line.update("skipped"))
        line.message("a message")
        now[0] = ui.PLAIN_INTERVAL + 0.1
        self.assertTrue(line.update("two"))
        line.finish("done")
        self.assertEqual(out.getvalue(), "one\na message\ntwo\ndone\n")

    def test_progress_line_on_a_tty_redraws_in_place(self) -> None:
        out = FakeTty()
        with without_no_color():
            line = ui.ProgressLine(out, interval=0)
            line.update("long text")
            line.update("short")
            line.finish()
        self.assertEqual(out.getvalue(), "\rlong text\x1b[K\rshort\x1b[K\n")

    def test_message_on_a_tty_erases_the_line_prints_and_redraws(self) -> None:
        out = FakeTty()
        with without_no_color():
            line = ui.ProgressLine(out, interval=0)
            line.update("50%")
            line.message("tracker t unreachable\x1b[2J")
        self.assertEqual(out.getvalue(), "\r50%\x1b[K\r\x1b[Ktracker t unreachable\n\r50%\x1b[K")

    def test_no_color_means_no_ansi(self) -> None:
        out = FakeTty()
        with mock.patch.dict(os.environ, {"NO_COLOR": "1"}):
            self.assertFalse(ui.use_color(out))
            line = ui.ProgressLine(out, interval=0)
            line.update("long text")
            line.update("short")
            line.message("note")
        self.assertNotIn("\x1b", out.getvalue())
        self.assertEqual(out.getvalue(), "\rlong text\rshort    \r     \rnote\n\rshort")

    def test_progress_line_makes_its_text_printable(self) -> None:
        out = io.StringIO()
        ui.ProgressLine(out).update("a\x1b]0;t\x07b")
        self.assertEqual(out.getvalue(), "ab\n")


class StatusBlockTest(unittest.TestCase):
    def test_block_on_a_colour_tty_redraws_every_line_and_prints_messages_above(self) -> None:
        out = FakeTty()
        with without_no_color():
            block = ui.StatusBlock(out, interval=0)
            block.update(["one 1%", "two 2%"])
            block.update(["one 5%", "two 6%"])
            block.message("a\x07 note")
            block.finish(["one done", "two done"])
        self.assertEqual(out.getvalue(),
                         "\rone 1%\x1b[K\n\rtwo 2%\x1b[K\n"
                         "\x1b[2A\rone 5%\x1b[K\n\rtwo 6%\x1b[K\n"
                         "\x1b[2A\r\x1b[Ja? note\n\rone 5%\x1b[K\n\rtwo 6%\x1b[K\n"
                         "\x1b[2A\rone done\x1b[K\n\rtwo done\x1b[K\n")

    def test_block_of_one_torrent_is_a_progress_line(self) -> None:
        out = FakeTty()
        with without_no_color():
            block = ui.StatusBlock(out, interval=0)
            block.update(["only 1%"])
            block.message("note")
            block.finish(["only done"])
        self.assertEqual(out.getvalue(), "\ronly 1%\x1b[K\r\x1b[Knote\n\ronly 1%\x1b[K"
                                         "\ronly done\x1b[K\n")

    def test_block_in_a_pipe_prints_lines_and_messages_in_turn(self) -> None:
        out = io.StringIO()
        block = ui.StatusBlock(out, interval=0)
        block.update(["one", "two"])
        block.message("note")
        block.finish(["one done", "two done"])
        self.assertEqual(out.getvalue(), "one\ntwo\nnote\none done\ntwo done\n")
        self.assertIsNone(block.width)

    def test_messages_from_other_threads_are_never_cut_into_a_redraw(self) -> None:
        out = FakeTty()
        with without_no_color():
            block = ui.StatusBlock(out, interval=0)
            block.update(["one", "two"])

            def talk() -> None:
                for i in range(200):
                    block.message(f"message {i}")
            thread = threading.Thread(target=talk)
            thread.start()
            for _ in range(200):
                block.update(["one", "two"])
            thread.join(10)
        for chunk in out.getvalue().split("\n"):
            self.assertFalse("message" in chunk and ("one" in chunk or "two" in chunk), chunk)


class LoggingTest(unittest.TestCase):
    def record(self, message: str, *args: Any, exc: Any = None) -> logging.LogRecord:
        return logging.LogRecord("sta.announce", logging.WARNING, __file__, 1, message, args,
                                 (type(exc), exc, None) if exc else None)

    def test_terminal_formatter_gives_the_message_alone_and_printable(self) -> None:
        formatter = ui.TerminalLogFormatter()
        self.assertEqual(formatter.format(self.record("%s: tracker %s: %s", "a.bin",
                                                      "t\x1b[2J", "refused\nhere")),
                         "a.bin: tracker t: refused here")
        self.assertEqual(formatter.format(self.record("failed", exc=OSError("disk"))),
                         "failed (OSError: disk)")

    def test_message_handler_prints_above_the_block(self) -> None:
        lines: List[str] = []

        class Block:
            def message(self, text: str) -> None:
                lines.append(text)

        handler = ui.MessageHandler(Block())
        handler.setFormatter(ui.TerminalLogFormatter())
        handler.handle(self.record("hello %s", "there\x07"))
        self.assertEqual(lines, ["hello there?"])


SEEDING = torrent_row()
DOWNLOADING = torrent_row(number=2, name="a-name-longer-than-thirty-characters.iso",
                          state="downloading", size=1536, progress=0.25, down_rate=2048,
                          up_rate=0, ratio=0.0, peers=3, seeds=1, eta=125)
FAILED = torrent_row(number=3, name="broken", state="error", size=0, progress=0.0, up_rate=0,
                     ratio=0.0, peers=0, error="disk full")

PEERS = [
    {"torrent": 1, "address": "127.0.0.1:6881", "client": "qBittorrent 4.6.0", "flags": "DUE",
     "progress": 0.5, "down_rate": 1024, "up_rate": 0, "downloaded": 2 * MIB, "uploaded": 0},
    {"torrent": 2, "address": "10.0.0.2:51413", "client": None, "flags": "", "progress": 1.0,
     "down_rate": 0, "up_rate": 512, "downloaded": 0, "uploaded": 1536},
]

STATS = {"host": "0.0.0.0", "listen_port": 6881, "uptime": 3725, "torrents": 2,
         "states": {"seeding": 1, "downloading": 1}, "peers": 3, "downloaded": 5 * MIB,
         "down_rate": 0, "uploaded": 1536, "up_rate": 100, "ratio": 0.25,
         "peer_id": "-SX0100-abcdefghijkl"}


class StatusTableTest(unittest.TestCase):
    def test_status_table_clips_names_and_shows_eta_only_while_downloading(self) -> None:
        self.assertEqual(ui.status_table([SEEDING, DOWNLOADING, FAILED]), [
            "#  NAME                            STATE            SIZE  PROGRESS             "
            "             DOWN       UP  RATIO  PEERS        ETA",
            "1  a.bin                           seeding         3 MiB  [####################] "
            "100.0%    0 B/s  1 KiB/s   0.50  2            -",
            "2  a-name-longer-than-thirty-cha~  downloading  1.50 KiB  [#####...............] "
            " 25.0%  2 KiB/s    0 B/s   0.00  3 (1 seeds)  2m05s",
            "3  broken                          error             0 B  [....................] "
            "  0.0%    0 B/s    0 B/s   0.00  0            -",
            "3: broken: disk full",
        ])

    def test_status_table_colours_only_the_state_column_when_asked(self) -> None:
        self.assertEqual(ui.status_table([SEEDING, FAILED], color=True), [
            "#  NAME    STATE     SIZE  PROGRESS                        DOWN       UP  RATIO  "
            "PEERS  ETA",
            "1  a.bin   \x1b[32mseeding\x1b[0m  3 MiB  [####################] 100.0%  0 B/s  "
            "1 KiB/s   0.50  2      -",
            "3  broken  \x1b[31merror  \x1b[0m    0 B  [....................]   0.0%  0 B/s    "
            "0 B/s   0.00  0      -",
            "3: broken: disk full",
        ])


    def test_status_table_makes_names_and_errors_printable(self) -> None:
        lines = ui.status_table([dict(FAILED, name="x\x1b[2Jy", error="z\x1b]0;t\x07!")])
        self.assertTrue(lines[1].startswith("3  xy  "), lines[1])
        self.assertEqual(lines[-1], "3: xy: z!")


class PeersTableTest(unittest.TestCase):
    def test_peers_table_marks_unknown_client_and_empty_flags(self) -> None:
        self.assertEqual(ui.peers_table(PEERS, with_torrent=False), [
            "ADDRESS         CLIENT             FLAGS    HAVE     DOWN       UP  DOWNLOADED  "
            "UPLOADED",
            "127.0.0.1:6881  qBittorrent 4.6.0  DUE     50.0%  1 KiB/s    0 B/s       2 MiB  "
            "     0 B",
            "10.0.0.2:51413  ?                  -      100.0%    0 B/s  512 B/s         0 B  "
            "1.50 KiB",
        ])

    def test_peers_table_of_every_torrent_starts_with_its_number(self) -> None:
        self.assertEqual(ui.peers_table(PEERS, with_torrent=True), [
            "#  ADDRESS         CLIENT             FLAGS    HAVE     DOWN       UP  DOWNLOADED  "
            "UPLOADED",
            "1  127.0.0.1:6881  qBittorrent 4.6.0  DUE     50.0%  1 KiB/s    0 B/s       2 MiB  "
            "     0 B",
            "2  10.0.0.2:51413  ?                  -      100.0%    0 B/s  512 B/s         0 B  "
            "1.50 KiB",
        ])

    def test_peers_table_makes_hostile_client_names_printable(self) -> None:
        rows = [dict(PEERS[0], client="\x1b]0;owned\x07Evil\x1b[2J 1.0\x07")]
        lines = ui.peers_table(rows, with_torrent=False)
        self.assertEqual(lines[1][:33], "127.0.0.1:6881  Evil 1.0?  DUE   ")
        self.assertNotIn("\x1b", "".join(lines))

    def test_peers_table_without_rows_is_the_header(self) -> None:
        self.assertEqual(ui.peers_table([], with_torrent=False),
                         ["ADDRESS  CLIENT  FLAGS  HAVE  DOWN  UP  DOWNLOADED  UPLOADED"])


class StatsLinesTest(unittest.TestCase):
    def test_stats_lines_align_labels_and_count_states(self) -> None:
        self.assertEqual(ui.stats_lines(STATS), [
            "listening on: 0.0.0.0:6881",
            "uptime:       1h02m",
            "torrents:     2 (1 downloading, 1 seeding)",
            "peers:        3",
            "downloaded:   5 MiB (now 0 B/s)",
            "uploaded:     1.50 KiB (now 100 B/s)",
            "ratio:        0.25",
            "peer id:      -SX0100-abcdefghijkl",
        ])

    def test_stats_lines_make_the_peer_id_printable(self) -> None:
        lines = ui.stats_lines(dict(STATS, peer_id="-XX0001-\x1b[2J\x07abc"))
        self.assertEqual(lines[-1], "peer id:      -XX0001-?abc")

    def test_stats_lines_say_long_for_uptime_past_99_days(self) -> None:
        lines = ui.stats_lines(dict(STATS, uptime=86400 * 99, torrents=0, states={}))
        self.assertEqual(lines[1:3], ["uptime:       long", "torrents:     0"])


if __name__ == "__main__":
    unittest.main()
