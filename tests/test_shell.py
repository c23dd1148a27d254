"""The interactive shell, driven as a user drives it: `python sta.py shell` through a pipe and
through a pseudo-terminal, with real seeds and real downloads on 127.0.0.1.

The pipe test runs the whole story with three nodes: shell A creates two torrents and seeds one
in full and one in part, shell B downloads both at once (one finishes, one stalls at the part A
has, so `status`, `peers`, `pause` and `resume` see a torrent that is really running), a `sta seed`
process C brings the rest, then B removes with --delete-files and exits. A small HTTP tracker
records the announces, so the test sees B's "stopped" on exit and the totals it reports.
The restart tests stop and start shells on one STA_HOME: the torrents come back, paused or not,
a missing folder as an error row, and a damaged or shared list never stops a shell.
The pty tests cover what only a terminal has: the prompt, Ctrl-C, Tab, colour, and the
confirmation before deleting files, which a command typed by mistake does not answer.
The kit (processes on pipes, waiting for output, a recording tracker) is tests/shellkit.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, Dict, List, Tuple

from sta import maketorrent, metainfo, shell
from tests.shellkit import (EXIT_WAIT, STA, WAIT, Output, PipeShell, Tracker, digest, sta_env,
                            status_of, wait_status, write_file)

# Ctrl-C on the pty: how long to wait for the new prompt, and how often to press it (see below).
CTRL_C_WAIT = 1.0
CTRL_C_ATTEMPTS = 5
MIB = 1 << 20
PIECE = 16384
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

try:
    import pty
except ImportError:  # Windows
    pty = None  # type: ignore[assignment]


# ------------------------------------------------------------------------ pure functions

class FindTorrentTest(unittest.TestCase):
    ENTRIES = [("alpha.bin", "ab12" + "0" * 36), ("beta", "ab34" + "1" * 36),
               ("7", "c0" + "2" * 38), ("notes.bin", "d0" + "3" * 38),
               ("Notebook", "e0" + "4" * 38)]

    def test_number_shown_by_status_comes_first(self) -> None:
        self.assertEqual(shell.find_torrent(self.ENTRIES, "2"), 1)
        self.assertEqual(shell.find_torrent(self.ENTRIES, "7"), 2)  # no 7th: the name

    def test_exact_name_then_unique_start_of_a_name_or_hash(self) -> None:
        self.assertEqual(shell.find_torrent(self.ENTRIES, "beta"), 1)
        self.assertEqual(shell.find_torrent(self.ENTRIES, "AB3"), 1)
        self.assertEqual(shell.find_torrent(self.ENTRIES, "c0"), 2)
        self.assertEqual(shell.find_torrent(self.ENTRIES, "notes"), 3)
        self.assertEqual(shell.find_torrent(self.ENTRIES, "NOTEB"), 4)
        self.assertEqual(shell.find_torrent(self.ENTRIES, "alp"), 0)

    def test_ambiguous_start_names_what_it_matches(self) -> None:
        with self.assertRaisesRegex(shell.ShellError, r"^'note' matches 2 torrents "
                                                      r"\(4 notes\.bin, 5 Notebook\): type more"):
            shell.find_torrent(self.ENTRIES, "note")
        with self.assertRaisesRegex(shell.ShellError, r"'ab' matches 2 torrents \(1 alpha\.bin, "
                                                      r"2 beta\)"):
            shell.find_torrent(self.ENTRIES, "ab")
        many = [(f"n{i}", f"{i:02d}" * 20) for i in range(8)]
        with self.assertRaisesRegex(shell.ShellError, r"\(1 n0, 2 n1, 3 n2, 4 n3, 5 n4 and 3 "
                                                      r"more\)"):
            shell.find_torrent(many, "n")

    def test_unknown_or_doubled_name_is_refused(self) -> None:
        with self.assertRaisesRegex(shell.ShellError, "no torrent 'gamma'"):
            shell.find_torrent(self.ENTRIES, "gamma")
        with self.assertRaisesRegex(shell.ShellError, "2 torrents are named"):
            shell.find_torrent([("x", "aa"), ("x", "bb")], "x")
        with self.assertRaisesRegex(shell.ShellError, "no torrents"):
            shell.find_torrent([], "1")

    def test_split_line_keeps_quoted_names_whole(self) -> None:
        self.assertEqual(shell.split_line('seed "my file.torrent" --data .'),
                         ["seed", "my file.torrent", "--data", "."])
        with self.assertRaisesRegex(shell.ShellError, "cannot read that line"):
            shell.split_line('seed "open')


class SuggestTest(unittest.TestCase):
    COMMANDS = shell.COMMANDS + ("quit",)

    def test_typing_distance_counts_a_swap_as_one_slip(self) -> None:
        self.assertEqual(shell.typing_distance("stauts", "status"), 1)
        self.assertEqual(shell.typing_distance("stauts", "stats"), 1)
        self.assertEqual(shell.typing_distance("", "abc"), 3)
        self.assertEqual(shell.typing_distance("peers", "peers"), 0)

    def test_swapped_letters_suggest_the_command_of_the_same_length(self) -> None:
        for typed, meant in (("stauts", "status"), ("stats", "stats"), ("remvoe", "remove"),
                             ("dowload", "download"), ("exti", "exit"), ("peer", "peers")):
            self.assertEqual(shell.suggest(typed, self.COMMANDS), meant)

    def test_words_far_from_every_command_suggest_nothing(self) -> None:
        for typed in ("foo", "rm", "x", "connect"):
            self.assertIsNone(shell.suggest(typed, self.COMMANDS))


# ------------------------------------------------------------------ processes and output

# ---------------------------------------------------------------------------- the pipe

class PipeShellTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        write_file(self.path("data", "alpha.bin"), os.urandom(3 * MIB))
        write_file(self.path("data", "beta", "x.bin"), os.urandom(2 * MIB))
        write_file(self.path("data", "beta", "sub", "y.bin"), os.urandom(MIB))
        os.makedirs(self.path("partial", "beta"))
        # a part of beta only: every piece inside x.bin, none of y.bin
        shutil.copyfile(self.path("data", "beta", "x.bin"), self.path("partial", "beta", "x.bin"))

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def test_pipe_session_create_seed_download_pause_remove_exit(self) -> None:
        self.tracker = Tracker(self)
        self.a = PipeShell(self, self.dir, "-o", "a_downloads", home=self.path("home-a"))
        self.create_and_seed_on_a()
        self.b = PipeShell(self, self.dir, "-o", "dl", home=self.path("home-b"))
        self.download_two_at_once_on_b()
        self.watch_pause_and_resume_a_live_torrent()
        self.finish_from_another_seed()
        self.mistakes_get_one_line_each()
        self.remove_with_and_without_files()
        self.magnet_finds_the_data_kept_by_remove()
        self.both_exit_and_the_tracker_heard_everything()

    def create_and_seed_on_a(self) -> None:
        a, tracker = self.a, self.tracker
        # create, with the grammar of `sta create`, and seed one torrent whole, one in part
        a.send(f"create data/alpha.bin -t {tracker.url} -o alpha.torrent --piece-length 16K")
        self.alpha_magnet = a.out.expect(r"magnet:\s+(magnet:\?xt=urn:btih:\S+)\n").group(1)
        a.send(f"create data/beta -t {tracker.url} -o beta.torrent --piece-length 16K")
        a.out.expect(r"magnet:\s+magnet:\?xt=urn:btih:")
        self.alpha = alpha = metainfo.load(self.path("alpha.torrent"))
        self.beta = metainfo.load(self.path("beta.torrent"))
        a.send("seed alpha.torrent --data data --port 7000")
        a.out.expect(r"alpha\.bin: checking the data in data")
        a.err.expect(r"--port is ignored")
        a.err.expect(r"alpha\.bin: seeding, info hash " + alpha.info_hash.hex())
        a.send("seed beta.torrent --data partial")
        a.err.expect(r"beta: only 2 MiB of 3 MiB found in partial; seeding those")

        # what --delete-files must leave alone: a same-named file beside the torrent's folder,
        # and other content inside the torrent's folder
        write_file(self.path("dl", "x.bin"), b"not the torrent's x.bin")
        write_file(self.path("dl", "beta", "keep.txt"), b"mine")

    def download_two_at_once_on_b(self) -> None:
        a, b = self.a, self.b
        info = b.json("info alpha.torrent --json")
        self.assertEqual((info["name"], info["num_pieces"]), ("alpha.bin", 192))

        # two downloads at once; the prompt answers at once
        b.send(f"download alpha.torrent beta.torrent --peer 127.0.0.1:{a.port}")
        b.out.expect(r"alpha\.bin: downloading into dl \(3 MiB\)")
        b.out.expect(r"beta: downloading into dl \(3 MiB\)")
        rows = b.json("status --json")
        self.assertEqual([(r["number"], r["name"]) for r in rows], [(1, "alpha.bin"), (2, "beta")])
        b.err.expect(r"alpha\.bin: download complete \(3 MiB in [0-9.]+ s, .*\); seeding")

    def watch_pause_and_resume_a_live_torrent(self) -> None:
        a, b, beta = self.a, self.b, self.beta
        # beta runs on with the two thirds A has: status, peers, pause and resume see it live
        row = wait_status(b, "beta", lambda r: r["have"] == 2 * MIB and r["peers"] == 1)
        self.assertEqual(row["state"], "downloading")
        self.assertAlmostEqual(row["progress"], 2 / 3, places=3)
        b.send("status")
        table = b.out.expect(r"#\s+NAME\s+STATE\s+SIZE\s+PROGRESS\s+DOWN\s+UP\s+RATIO\s+PEERS\s+"
                             r"ETA\n(.*)\n(.*)\n")
        self.assertRegex(table.group(1), r"^1\s+alpha\.bin\s+seeding\s+3 MiB\s+"
                                         r"\[#{20}\] 100\.0%\s+.*\s-$")
        self.assertRegex(table.group(2), r"^2\s+beta\s+downloading\s+3 MiB\s+"
                                         r"\[#{13}\.{7}\]  66\.7%\s+.*\s1\s+(--|\d+s)$")
        b.send("peers")
        row_text = b.out.expect(r"#\s+ADDRESS\s+CLIENT\s+FLAGS\s+HAVE\s+DOWN\s+UP\s+DOWNLOADED"
                                r"\s+UPLOADED\n(.*)\n").group(1)
        self.assertRegex(row_text,
                         rf"^2\s+127\.0\.0\.1:{a.port}\s+STA.*\s+66\.7%\s+.*\s2 MiB\s+0 B$")
        (peer,) = b.json(f"peers {beta.info_hash.hex()[:8]} --json")
        self.assertEqual(b.json("peers BET --json"), [peer])  # the start of its name, any case
        self.assertEqual((peer["address"], peer["torrent"], peer["name"]),
                         (f"127.0.0.1:{a.port}", 2, "beta"))
        self.assertTrue(peer["client"].startswith("STA"), peer)
        self.assertEqual(peer["downloaded"], 2 * MIB)
        self.assertFalse(peer["incoming"])
        self.assertEqual("E" in peer["flags"], peer["encrypted"])

        b.send("pause beta")
        b.out.expect(r"beta: paused.*\n")
        row = wait_status(b, "beta", lambda r: r["peers"] == 0)
        self.assertEqual(row["state"], "paused")
        b.send("resume 2")
        b.out.expect(r"beta: resumed \(downloading\)")
        self.assertEqual(status_of(b.json("status --json"), "beta")["state"], "downloading")

    def finish_from_another_seed(self) -> None:
        a, b = self.a, self.b
        # a whole copy elsewhere: A drops its part, C (`sta seed`) joins, B finishes beta
        a.send("remove beta")
        a.out.expect(r"beta: removed \(its files stay in partial\)")
        c = subprocess.Popen([sys.executable, STA, "seed", "beta.torrent", "--data", "data",
                              "--port", "0"], cwd=self.dir,
                             env=sta_env(STA_HOME=self.path("home-c")),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(c.stderr.close)
        self.addCleanup(c.wait, WAIT)
        self.addCleanup(c.terminate)
        c_out = Output(lambda: c.stderr.read1(65536))
        c_port = int(c_out.expect(r"Listening for peers on port (\d+)").group(1))
        c_out.expect(r"Seeding beta")  # checked: a peer arriving earlier is turned away
        b.send(f"download beta.torrent --peer 127.0.0.1:{c_port}")
        b.out.expect(r"beta: already in the session \(number 2\); added 1 peer")
        b.err.expect(r"beta: download complete")
        for parts in (("alpha.bin",), ("beta", "x.bin"), ("beta", "sub", "y.bin")):
            self.assertEqual(digest(self.path("dl", *parts)), digest(self.path("data", *parts)))

        stats = b.json("stats --json")
        self.assertEqual((stats["listen_port"], stats["host"], stats["torrents"]),
                         (b.port, "0.0.0.0", 2))
        self.assertEqual(stats["states"], {"seeding": 2})
        self.assertEqual(stats["downloaded"], 6 * MIB)
        b.send("stats")
        b.out.expect(rf"listening on: 0\.0\.0\.0:{b.port}\nuptime: +\S+\ntorrents: +2 "
                     r"\(2 seeding\)\npeers: +\d+\ndownloaded: +6 MiB")

    def mistakes_get_one_line_each(self) -> None:
        b = self.b
        # mistakes get one line each, the message alone, and the node carries on
        for line, message in (
                ("stauts", r"(?m)^unknown command 'stauts'; did you mean 'status'\?\n"),
                ("pause", r"(?m)^pause: the following arguments are required: TORRENT; "
                          r"'help pause' shows its options\n"),
                ("remove gamma", r"(?m)^no torrent 'gamma': "),
                ('seed "open', r"(?m)^cannot read that line"),
                ("download nothing.torrent", r"(?m)^nothing\.torrent: ")):
            b.send(line)
            b.err.expect(message)
        self.assertNotIn("usage:", b.err.text)
        self.assertNotIn("error:", b.err.text)
        if hasattr(signal, "SIGINT") and os.name != "nt":
            b.proc.send_signal(signal.SIGINT)  # Ctrl-C cancels a line, not the node
            b.err.expect(r"interrupted\n")
        self.assertEqual(b.json("stats --json")["torrents"], 2)

    def remove_with_and_without_files(self) -> None:
        b = self.b
        # remove --delete-files: exactly the torrent's files and its folders left empty
        b.send("remove beta --delete-files")
        b.out.expect(r"beta: removed; deleted 2 of its 2 files under dl")
        self.assertFalse(os.path.exists(self.path("dl", "beta", "x.bin")))
        self.assertFalse(os.path.exists(self.path("dl", "beta", "sub")))
        with open(self.path("dl", "beta", "keep.txt"), "rb") as f:
            self.assertEqual(f.read(), b"mine")
        with open(self.path("dl", "x.bin"), "rb") as f:
            self.assertEqual(f.read(), b"not the torrent's x.bin")
        # remove without it: the data stays, the resume state goes
        b.send("remove 1")
        b.out.expect(r"alpha\.bin: removed \(its files stay in dl\)")
        self.assertTrue(os.path.isfile(self.path("dl", "alpha.bin")))
        resume_files = os.listdir(self.path("dl", ".sta")) if os.path.isdir(
            self.path("dl", ".sta")) else []
        alpha_hex = self.alpha.info_hash.hex()
        self.assertFalse([f for f in resume_files if alpha_hex in f], resume_files)
        self.assertEqual(b.json("status --json"), [])
        b.send("status")
        b.out.expect(r"no torrents")
        # removed torrents still count in the session's totals
        self.assertEqual(b.json("stats --json")["downloaded"], 6 * MIB)

    def magnet_finds_the_data_kept_by_remove(self) -> None:
        a, b = self.a, self.b
        # a magnet link: the metadata comes from A, the data is already here (kept by `remove`)
        b.send(f"download {self.alpha_magnet} --peer 127.0.0.1:{a.port}")
        b.out.expect(r"alpha\.bin: downloading into dl \(3 MiB\)")
        b.err.expect(r"alpha\.bin: metadata received \(3 MiB\)")
        row = wait_status(b, "alpha.bin", lambda r: r["state"] == "seeding")
        self.assertEqual(row["have"], 3 * MIB)

    def both_exit_and_the_tracker_heard_everything(self) -> None:
        a, b, tracker, alpha, beta = self.a, self.b, self.tracker, self.alpha, self.beta
        b_port = b.port
        self.assertEqual(b.exit(), 0)
        self.assertEqual(a.exit(), 0)
        for node in (a, b):
            self.assertNotIn("Traceback", node.err.text)
            self.assertNotIn("\x1b", node.out.text + node.err.text)  # not a TTY: no ANSI

        # the tracker heard every start, pause, completion and removal, with the totals the
        # shell showed; and A's `exit` told it "stopped" for the torrent A still had
        def events(meta: Any, port: int) -> List[str]:
            return [e["event"] for e in tracker.events(meta.info_hash, port) if e.get("event")]

        self.assertEqual(events(alpha, b_port)[:3], ["started", "completed", "stopped"])
        self.assertEqual(events(alpha, b_port)[-1], "stopped")  # from the magnet, at exit
        self.assertEqual(events(beta, b_port),
                         ["started", "stopped", "started", "completed", "stopped"])
        for meta in (alpha, beta):  # the "stopped" sent by `remove`
            stopped = [e for e in tracker.events(meta.info_hash, b_port)
                       if e.get("event") == "stopped"][-1 if meta is beta else 0]
            self.assertEqual((stopped["downloaded"], stopped["left"]), (str(3 * MIB), "0"))
        self.assertEqual(events(alpha, a.port), ["started", "stopped"])
        self.assertEqual(events(beta, a.port), ["started", "stopped"])


class RestartTest(unittest.TestCase):
    """The shell remembers its torrents across restarts, through its saved list in STA_HOME."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.home = self.path("home")
        for name in ("notes.bin", "other.bin", "third.bin"):
            data = self.path(name + "-data", name)
            write_file(data, os.urandom(PIECE * 20))
            with open(self.path(name + ".torrent"), "wb") as f:
                f.write(maketorrent.make_torrent([data], []))

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def shell(self) -> PipeShell:
        return PipeShell(self, self.dir, home=self.home)

    def test_download_into_a_folder_that_cannot_exist_is_refused_before_starting(self) -> None:
        node = self.shell()
        write_file(self.path("blocker"), b"a file, not a folder")
        node.send("download notes.bin.torrent -o blocker/inside")
        node.err.expect(r"blocker.*-o")
        node.send("seed notes.bin.torrent --data notes.bin-data --bind 127.0.0.1")
        node.err.expect(r"--bind is ignored here")
        wait_status(node, "notes.bin", lambda r: r["state"] == "seeding")
        rows = node.json("status --json")
        self.assertEqual([r["name"] for r in rows], ["notes.bin"])  # the download never began
        self.assertEqual(node.exit(), 0)

    def test_torrents_come_back_paused_or_not_and_a_missing_folder_as_an_error_row(self) -> None:
        first = self.shell()
        for name in ("notes.bin", "other.bin", "third.bin"):
            first.send(f"seed {name}.torrent --data {name}-data")
            first.err.expect(re.escape(name) + r": seeding, info hash")
        first.send("pause oth")  # the start of a name is enough
        first.out.expect(r"other\.bin: paused")
        self.assertEqual(first.exit(), 0)
        for name in ("notes.bin", "other.bin", "third.bin"):  # the list keeps its own copies
            os.remove(self.path(name + ".torrent"))
        os.rename(self.path("third.bin-data"), self.path("moved"))

        second = self.shell()
        second.err.expect(r"Re-adding 3 torrents from the last run \(1 paused, 1 whose folder "
                          r"is missing\); 'status' lists them\n")
        wait_status(second, "notes.bin", lambda r: r["state"] == "seeding")
        # A torrent left paused checks its data first, as any added torrent does, then rests.
        wait_status(second, "other.bin", lambda r: r["state"] != "checking")
        rows = second.json("status --json")
        self.assertEqual([(r["number"], r["name"], r["state"]) for r in rows],
                         [(1, "notes.bin", "seeding"), (2, "other.bin", "paused"),
                          (3, "third.bin", "error")])
        second.send("status")
        second.out.expect(r"(?m)^3: third\.bin: its folder third\.bin-data is missing; "
                          r"'resume' tries again once it is back$")
        second.send("resume third")
        second.out.expect(r"third\.bin: still cannot be added; 'status' says why")
        os.rename(self.path("moved"), self.path("third.bin-data"))
        second.send("resume 3")
        second.out.expect(r"third\.bin: adding it again \(checking\)")
        wait_status(second, "third.bin", lambda r: r["state"] == "seeding")
        second.send("remove notes")
        second.out.expect(r"notes\.bin: removed")
        self.assertEqual(second.exit(), 0)

        third = self.shell()
        third.err.expect(r"Re-adding 2 torrents from the last run \(1 paused\)")
        self.assertEqual([(r["name"], r["state"]) for r in
                          [wait_status(third, "third.bin", lambda r: r["state"] == "seeding")] +
                          [status_of(third.json("status --json"), "other.bin")]],
                         [("third.bin", "seeding"), ("other.bin", "paused")])
        for _ in range(2):
            third.send("remove 1")
            third.out.expect(r"removed")
        self.assertEqual(third.exit(), 0)

        last = self.shell()
        self.assertEqual(last.json("status --json"), [])
        self.assertEqual(last.exit(), 0)
        self.assertNotIn("Re-adding", last.err.text)
        for node in (first, second, third, last):
            self.assertNotIn("Traceback", node.err.text)

    def test_damaged_list_is_kept_aside_and_a_second_shell_does_not_write(self) -> None:
        os.makedirs(self.home)
        with open(os.path.join(self.home, "torrents.bencode"), "wb") as f:
            f.write(b"not a list")
        first = self.shell()
        first.err.expect(r"warning: the saved list of torrents .*torrents\.bencode cannot be read "
                         r"\(.*\); it was kept as .*torrents\.bencode\.bad and this node starts "
                         r"with no torrents")
        self.assertEqual(first.json("status --json"), [])
        with open(os.path.join(self.home, "torrents.bencode.bad"), "rb") as f:
            self.assertEqual(f.read(), b"not a list")
        first.send("seed notes.bin.torrent --data notes.bin-data")
        first.err.expect(r"notes\.bin: seeding")

        second = self.shell()
        second.err.expect(r"warning: another STA node uses the list of torrents in .*; this one "
                          r"will not remember its torrents")
        self.assertEqual(second.json("status --json"), [])
        second.send("seed other.bin.torrent --data other.bin-data")
        second.err.expect(r"other\.bin: seeding")
        self.assertEqual(second.exit(), 0)
        self.assertEqual(first.exit(), 0)

        third = self.shell()  # the first shell's list, untouched by the second
        third.err.expect(r"Re-adding 1 torrent from the last run; 'status' lists them")
        self.assertEqual([r["name"] for r in third.json("status --json")], ["notes.bin"])
        self.assertEqual(third.exit(), 0)


# ---------------------------------------------------------------------- the terminal

@unittest.skipIf(pty is None or not hasattr(os, "fork"), "no pseudo-terminals on this platform")
class TerminalShellTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        write_file(os.path.join(self.dir, "data", "alpha.bin"), os.urandom(2 * MIB))
        with open(os.path.join(self.dir, "alpha.torrent"), "wb") as f:
            f.write(maketorrent.make_torrent([os.path.join(self.dir, "data", "alpha.bin")], []))
        write_file(os.path.join(self.dir, "dl", "other", "alpha.bin"), b"same name, elsewhere")
        seed = subprocess.Popen([sys.executable, STA, "seed", "alpha.torrent", "--data", "data",
                                 "--port", "0"], cwd=self.dir,
                                env=sta_env(STA_HOME=os.path.join(self.dir, "home-seed")),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(seed.stderr.close)
        self.addCleanup(seed.wait, WAIT)
        self.addCleanup(seed.terminate)
        seed_out = Output(lambda: seed.stderr.read1(65536))
        self.seed_port = int(seed_out.expect(r"Listening for peers on port (\d+)").group(1))
        seed_out.expect(r"Seeding alpha\.bin")

    def spawn(self, env: Dict[str, str],
              without_readline: bool = False) -> Tuple[int, Any, Output]:
        """`sta shell` on a new pseudo-terminal; returns (pid, type keys, output)."""
        argv = [sys.executable, STA, "shell", "--port", "0", "-o", "dl"]
        if without_readline:  # as on Windows: no readline module at all
            argv = [sys.executable, "-c", "import sys; sys.modules['readline'] = None; "
                    "sys.argv = sys.argv[1:]; from sta.cli import main; raise SystemExit(main())",
                    "sta", "shell", "--port", "0", "-o", "dl"]
        env = dict(env, HOME=self.dir)  # readline history goes to the temporary folder
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once, nothing else (the parent has threads)
            try:
                os.chdir(self.dir)
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        self.addCleanup(os.close, fd)
        self.addCleanup(self._reap, pid)
        return pid, (lambda text: os.write(fd, text.encode())), Output(lambda: os.read(fd, 65536))

    def _reap(self, pid: int) -> None:
        try:
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def wait_exit(self, pid: int) -> int:
        deadline = time.monotonic() + EXIT_WAIT
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
            time.sleep(0.05)
        raise AssertionError("the shell did not exit")

    def test_terminal_prompt_ctrl_c_tab_colour_and_confirmed_delete(self) -> None:
        try:
            import readline  # noqa: F401  (decides whether Tab can be tested)
            has_readline = True
        except ImportError:
            has_readline = False
        pid, type_keys, out = self.spawn(sta_env(TERM="xterm"))
        out.expect(r"Listening for peers on 0\.0\.0\.0:\d+")
        out.expect(r"> ")
        type_keys(f"download alpha.torrent --peer 127.0.0.1:{self.seed_port}\r")
        out.expect(r"alpha\.bin: downloading into dl")
        # the notice arrives while the prompt waits, and the prompt is drawn again below it
        out.expect(r"alpha\.bin: download complete .*\r\n> ")
        type_keys("sta")
        out.expect("sta")
        # Ctrl-C: the line is dropped, the node lives. CPython's readline checks for signals
        # only when its select() is interrupted, so a SIGINT that lands while it is echoing a
        # key waits for the next key; a person never types that fast, a test can: press again.
        for attempt in range(CTRL_C_ATTEMPTS):
            type_keys("\x03")
            try:
                out.expect(r"\r\n> ", timeout=CTRL_C_WAIT)
                break
            except AssertionError:
                if attempt == CTRL_C_ATTEMPTS - 1:
                    raise
        type_keys("statu\t\r" if has_readline else "status\r")
        table = out.expect(r"#\s+NAME\s+STATE.*\r\n(.*)\r\n").group(1)
        self.assertIn("\x1b[32mseeding\x1b[0m", table)  # colour on a terminal
        self.assertRegex(ANSI.sub("", table), r"^1\s+alpha\.bin\s+seeding\s+2 MiB\s+\[#{20}\]")

        # the question is not answered by a command typed as if it were not there
        type_keys("remove alp --delete-files\r")
        question = r"Delete 1 file \(2 MiB\) of alpha\.bin under dl\? \[y/N\] "
        out.expect(question)
        type_keys("status\r")
        out.expect(r"answer y or n\r\n" + question)
        type_keys("\r")  # Enter: the default, no
        out.expect(r"nothing removed")
        type_keys("remove alpha.bin --delete-files\r")
        out.expect(question)
        type_keys("\x04")  # Ctrl-D: no
        out.expect(r"nothing removed")
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "dl", "alpha.bin")))
        type_keys("remove 1 --delete-files\r")
        out.expect(r"\[y/N\] ")
        type_keys("y\r")
        out.expect(r"alpha\.bin: removed; deleted 1 of its 1 file under dl")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "dl", "alpha.bin")))
        with open(os.path.join(self.dir, "dl", "other", "alpha.bin"), "rb") as f:
            self.assertEqual(f.read(), b"same name, elsewhere")
        out.expect(r"> ")
        type_keys("\x04")  # Ctrl-D leaves like `exit`
        self.assertEqual(self.wait_exit(pid), 0)
        self.assertNotIn("Traceback", out.text)

    def test_terminal_with_no_color_and_no_readline_writes_no_escapes(self) -> None:
        pid, type_keys, out = self.spawn(sta_env(TERM="xterm", NO_COLOR="1"),
                                         without_readline=True)
        out.expect(r"> ")
        type_keys(f"download alpha.torrent --peer 127.0.0.1:{self.seed_port}\r")
        out.expect(r"alpha\.bin: downloading into dl")
        out.expect(r"> ")
        # without readline a notice waits for the next prompt instead of redrawing this one
        deadline = time.monotonic() + WAIT
        while "download complete" not in out.text:
            self.assertLess(time.monotonic(), deadline, out.text)
            type_keys("stats\r")
            out.expect(r"ratio: .*\r\n(?:.*\r\n)*?> ")
            time.sleep(0.2)
        type_keys("status\r")
        out.expect(r"1\s+alpha\.bin\s+seeding")
        type_keys("exit\r")
        self.assertEqual(self.wait_exit(pid), 0)
        self.assertIsNone(ANSI.search(out.text), repr(out.text))
        self.assertNotIn("Traceback", out.text)


if __name__ == "__main__":
    unittest.main()
