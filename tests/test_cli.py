"""The command line, run as a user runs it: `python sta.py ...` in a subprocess.

Every failure must be one line on stderr with exit status 1 (run time) or 2 (usage), never a
traceback. The parser itself is also tested in-process, because the shell reuses it.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest
from contextlib import redirect_stderr, redirect_stdout
from typing import List, Tuple
from unittest import mock

from sta import bencode, cli, magnet, metainfo, ui

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STA = os.path.join(ROOT, "sta.py")
# A CLI run takes ~0.1 s; the bound only stops a hung command from hanging the suite.
RUN_TIMEOUT = 60.0


def run(*args: str, cwd: str = ROOT) -> Tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT, NO_COLOR="1")
    done = subprocess.run([sys.executable, STA] + list(args), cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


class CliTestCase(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name

    def file(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def assertFailsCleanly(self, result: Tuple[int, str, str], status: int,
                           message: str) -> None:
        code, out, err = result
        self.assertEqual(code, status, err)
        self.assertNotIn("Traceback", err)
        self.assertIn(message, err)
        if status == 1:
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertTrue(err.startswith("sta: error: "), err)

    def field(self, out: str, name: str) -> str:
        for line in out.splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"no {name!r} line in:\n{out}")


class GeneralTest(CliTestCase):
    def test_help_lists_every_command(self) -> None:
        code, out, _ = run("--help")
        self.assertEqual(code, 0)
        for command in cli.COMMANDS:
            self.assertIn(command, out)

    def test_subcommand_help_exits_zero(self) -> None:
        for command in cli.COMMANDS:
            with self.subTest(command=command):
                code, out, _ = run(command, "--help")
                self.assertEqual(code, 0)
                self.assertIn("--log-level", out)

    def test_no_command_is_a_usage_error(self) -> None:
        code, _, err = run()
        self.assertEqual(code, 2)
        self.assertIn("usage:", err)

    def test_unknown_command_is_a_usage_error(self) -> None:
        self.assertFailsCleanly(run("frobnicate"), 2, "invalid choice")

    def test_bad_option_value_is_a_usage_error(self) -> None:
        self.assertFailsCleanly(run("tracker", "--port", "70000"), 2, "bad port")
        self.assertFailsCleanly(run("info", "x", "--log-level", "loud"), 2, "invalid choice")

    def test_python_dash_m_sta_works(self) -> None:
        done = subprocess.run([sys.executable, "-m", "sta", "--version"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
        self.assertEqual(done.returncode, 0)
        self.assertIn(b"sta ", done.stdout)

    def test_log_file_is_written(self) -> None:
        data = self.file("a.bin", b"x" * 1000)
        log = os.path.join(self.dir, "sta.log")
        code, _, err = run("create", "-t", "h", data, "-o", os.path.join(self.dir, "a.torrent"),
                           "--log-level", "debug", "--log-file", log)
        self.assertEqual(code, 0, err)
        self.assertTrue(os.path.exists(log))


class CreateTest(CliTestCase):
    def test_create_single_file_prints_path_hash_and_magnet(self) -> None:
        data = os.urandom(50000)
        self.file("ass1.pdf", data)
        code, out, err = run("create", "-t", "192.168.88.114", "ass1.pdf", cwd=self.dir)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.field(out, "torrent"), "ass1.torrent")
        meta = metainfo.load(os.path.join(self.dir, "ass1.torrent"))
        self.assertEqual(self.field(out, "info hash"), meta.info_hash.hex())
        self.assertEqual(magnet.parse(self.field(out, "magnet")).info_hash, meta.info_hash)
        self.assertEqual(meta.announce, "http://192.168.88.114:4000/announce")
        self.assertEqual(meta.info.name, "ass1.pdf")
        self.assertEqual(meta.info.pieces[:20], hashlib.sha1(data[:16384]).digest())

    def test_create_seed_report_form_takes_first_argument_as_tracker(self) -> None:
        self.file("lab/ass1.pdf", b"1" * 3000)
        self.file("lab/report.pdf", b"2" * 5000)
        lab = os.path.join(self.dir, "lab")
        code, out, err = run("create", "192.168.88.114", "ass1.pdf", "report.pdf", cwd=lab)
        self.assertEqual(code, 0, err)
        self.assertIn("named 'lab'", err)
        meta = metainfo.load(os.path.join(lab, self.field(out, "torrent")))
        self.assertEqual(meta.announce, "http://192.168.88.114:4000/announce")
        self.assertEqual([f.path for f in meta.info.files],
                         [("lab", "ass1.pdf"), ("lab", "report.pdf")])

    def test_create_url_first_argument_is_tracker(self) -> None:
        self.file("a.txt", b"a")
        self.file("b.txt", b"b")
        code, out, err = run("create", "http://t.example/announce", "a.txt", "b.txt",
                             "--name", "pair", cwd=self.dir)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.field(out, "torrent"), "pair.torrent")
        meta = metainfo.load(os.path.join(self.dir, "pair.torrent"))
        self.assertEqual(meta.announce, "http://t.example/announce")

    def test_create_each_tracker_is_its_own_tier(self) -> None:
        f = self.file("a.bin", b"a" * 100)
        out_path = os.path.join(self.dir, "x.torrent")
        code, _, err = run("create", f, "-t", "host1", "-t", "host2:5000", "-t",
                           "udp://t:1337/announce", "-o", out_path)
        self.assertEqual(code, 0, err)
        meta = metainfo.load(out_path)
        self.assertEqual(meta.trackers, (("http://host1:4000/announce",),
                                         ("http://host2:5000/announce",),
                                         ("udp://t:1337/announce",)))

    def test_create_folder_with_options(self) -> None:
        self.file("share/a", b"a" * 40000)
        self.file("share/sub/b", b"b" * 10)
        out_path = os.path.join(self.dir, "out")
        os.makedirs(out_path)
        code, out, err = run("create", "share", "-t", "h", "-o", "out", "--piece-length", "32K",
                             "--comment", "lab", "--private", "--web-seed", "http://w/",
                             cwd=self.dir)
        self.assertEqual(code, 0, err)
        meta = metainfo.load(os.path.join(out_path, "share.torrent"))
        self.assertEqual((meta.info.piece_length, meta.comment, meta.info.private, meta.url_list),
                         (32768, "lab", True, ("http://w/",)))
        self.assertEqual(len(meta.info.files), 2)

    def test_create_same_input_same_info_hash(self) -> None:
        self.file("d/f", os.urandom(70000))
        hashes = []
        for i in range(2):
            code, out, err = run("create", "-t", "h", "d", "-o", f"{i}.torrent", cwd=self.dir)
            self.assertEqual(code, 0, err)
            hashes.append(self.field(out, "info hash"))
        self.assertEqual(hashes[0], hashes[1])

    def test_create_refuses_to_overwrite_without_force(self) -> None:
        self.file("a.bin", b"a")
        self.assertEqual(run("create", "-t", "h", "a.bin", cwd=self.dir)[0], 0)
        self.assertFailsCleanly(run("create", "-t", "h", "a.bin", cwd=self.dir), 1,
                                "already exists (use -f")
        self.assertEqual(run("create", "-t", "h", "a.bin", "-f", cwd=self.dir)[0], 0)

    def test_create_without_tracker_warns(self) -> None:
        self.file("a.bin", b"a")
        code, _, err = run("create", "a.bin", cwd=self.dir)
        self.assertEqual(code, 0, err)
        self.assertIn("no tracker", err)
        self.assertIsNone(metainfo.load(os.path.join(self.dir, "a.torrent")).announce)

    def test_create_missing_file_fails_cleanly(self) -> None:
        self.assertFailsCleanly(run("create", "-t", "h", "missing.pdf", cwd=self.dir), 1,
                                "no such file or folder: missing.pdf")

    def test_create_missing_file_in_seed_report_form_fails_cleanly(self) -> None:
        self.file("a.pdf", b"a")
        self.assertFailsCleanly(run("create", "h.example", "a.pdf", "gone.pdf", cwd=self.dir), 1,
                                "no such file or folder: gone.pdf")

    def test_create_empty_file_fails_cleanly(self) -> None:
        self.file("empty", b"")
        self.assertFailsCleanly(run("create", "-t", "h", "empty", cwd=self.dir), 1,
                                "every file is empty")

    def test_create_bad_piece_length_is_a_usage_error(self) -> None:
        self.file("a", b"a")
        for value in ("1000", "8K", "abc", "3M"):
            with self.subTest(value=value):
                self.assertFailsCleanly(run("create", "-t", "h", "a", "--piece-length", value,
                                            cwd=self.dir), 2, "--piece-length")

    def test_create_bad_tracker_is_a_usage_error(self) -> None:
        self.file("a", b"a")
        self.assertFailsCleanly(run("create", "-t", "ftp://x/announce", "a", cwd=self.dir), 2,
                                "bad tracker")
        self.assertFailsCleanly(run("create", "-t", "bad host", "a", cwd=self.dir), 2,
                                "bad tracker")

    def test_create_output_in_unwritable_place_fails_cleanly(self) -> None:
        self.file("a", b"a")
        self.assertFailsCleanly(run("create", "-t", "h", "a", "-o",
                                    os.path.join(self.dir, "no", "such", "dir", "a.torrent"),
                                    cwd=self.dir), 1, "No such file or directory")


class UploadHandler(http.server.BaseHTTPRequestHandler):
    received: List[Tuple[str, str, bytes]] = []
    status = 201

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, self.headers.get("Content-Type", ""), body))
        if self.status == 201:
            info_hash = hashlib.sha1(bencode.raw_value(body, b"info")).hexdigest()
            reply = json.dumps({"url": f"http://{self.headers['Host']}/torrents/"
                                       f"{info_hash}.torrent"}).encode()
        else:
            reply = json.dumps({"error": "not a valid .torrent file: nope"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


class UploadTest(CliTestCase):
    def start_server(self, status: int) -> int:
        handler = type("Handler", (UploadHandler,), {"received": [], "status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.handler = handler
        return server.server_address[1]

    def test_upload_posts_the_torrent_and_adds_xs(self) -> None:
        port = self.start_server(201)
        self.file("a.bin", b"a" * 5000)
        code, out, err = run("create", "-t", f"127.0.0.1:{port}", "a.bin", "--upload",
                             cwd=self.dir)
        self.assertEqual(code, 0, err)
        [(path, ctype, body)] = self.handler.received
        self.assertEqual((path, ctype), ("/torrents", "application/x-bittorrent"))
        with open(os.path.join(self.dir, "a.torrent"), "rb") as f:
            self.assertEqual(body, f.read())
        m = magnet.parse(self.field(out, "magnet"))
        self.assertEqual(m.sources, (f"http://127.0.0.1:{port}/torrents/{m.info_hash.hex()}"
                                     ".torrent",))

    def test_upload_rejected_by_tracker_fails_cleanly(self) -> None:
        port = self.start_server(400)
        self.file("a.bin", b"a")
        self.assertFailsCleanly(run("create", "-t", f"127.0.0.1:{port}", "a.bin", "--upload",
                                    cwd=self.dir), 1, "HTTP 400: not a valid .torrent file")

    def test_upload_to_unreachable_tracker_fails_cleanly(self) -> None:
        port = self.start_server(201)  # bound, then closed below: nothing listens there
        self.doCleanups()
        self.setUp()
        self.file("a.bin", b"a")
        self.assertFailsCleanly(run("create", "-t", f"127.0.0.1:{port}", "a.bin", "--upload",
                                    cwd=self.dir), 1, "upload to")


class InfoTest(CliTestCase):
    def make(self) -> str:
        self.file("d/x.txt", b"x" * 20000)
        self.file("d/y.txt", b"y" * 10)
        path = os.path.join(self.dir, "d.torrent")
        code, _, err = run("create", "-t", "tracker.example", "--comment", "hello",
                           os.path.join(self.dir, "d"), "-o", path)
        self.assertEqual(code, 0, err)
        return path

    def test_info_shows_everything_about_a_torrent(self) -> None:
        path = self.make()
        meta = metainfo.load(path)
        code, out, err = run("info", path)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.field(out, "name"), "d")
        self.assertEqual(self.field(out, "info hash"), meta.info_hash.hex())
        self.assertIn("19.5 KiB", self.field(out, "size"))
        self.assertEqual(self.field(out, "pieces"), "2 x 16 KiB")
        self.assertEqual(self.field(out, "private"), "no")
        self.assertEqual(self.field(out, "tracker"), "http://tracker.example:4000/announce")
        self.assertEqual(self.field(out, "comment"), "hello")
        self.assertEqual(self.field(out, "magnet"), meta.magnet_link())
        self.assertIn("d/x.txt", out)
        self.assertIn("d/y.txt", out)

    def test_info_json(self) -> None:
        path = self.make()
        code, out, err = run("info", path, "--json")
        self.assertEqual(code, 0, err)
        doc = json.loads(out)
        self.assertEqual(doc["type"], "torrent")
        self.assertEqual(doc["total_size"], 20010)
        self.assertEqual([f["path"] for f in doc["files"]], ["d/x.txt", "d/y.txt"])
        self.assertEqual(doc["trackers"], [["http://tracker.example:4000/announce"]])
        self.assertEqual(doc["info_hash"], metainfo.load(path).info_hash.hex())

    def test_info_magnet(self) -> None:
        uri = ("magnet:?xt=urn:btih:" + "ab" * 20 + "&dn=My+File&xl=2048"
               "&tr=http%3A%2F%2Ft%2Fannounce&x.pe=1.2.3.4:5&so=0-2")
        code, out, err = run("info", uri)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.field(out, "name"), "My File")
        self.assertEqual(self.field(out, "info hash"), "ab" * 20)
        self.assertEqual(self.field(out, "tracker"), "http://t/announce")
        self.assertEqual(self.field(out, "peer"), "1.2.3.4:5")
        code, out, err = run("info", uri, "--json")
        doc = json.loads(out)
        self.assertEqual((doc["type"], doc["length"], doc["select_only"]), ("magnet", 2048,
                                                                           [0, 1, 2]))

    def test_info_bad_magnet_fails_cleanly(self) -> None:
        self.assertFailsCleanly(run("info", "magnet:?xt=urn:btih:1234"), 1, "bad magnet link")

    def test_info_corrupt_torrent_fails_cleanly(self) -> None:
        path = self.file("bad.torrent", b"d8:announce")
        self.assertFailsCleanly(run("info", path), 1, "not a torrent file")

    def test_info_invalid_torrent_fails_cleanly(self) -> None:
        info = {b"name": b"..", b"piece length": 16384, b"pieces": b"", b"length": 0}
        path = self.file("evil.torrent", bencode.encode({b"info": info}))
        self.assertFailsCleanly(run("info", path), 1, "not allowed")

    def test_info_missing_file_fails_cleanly(self) -> None:
        self.assertFailsCleanly(run("info", os.path.join(self.dir, "nope.torrent")), 1,
                                "No such file or directory")

    def test_info_folder_fails_cleanly(self) -> None:
        self.assertFailsCleanly(run("info", self.dir), 1, "sta: error:")

    def test_info_fetch_without_any_source_fails_in_one_line(self) -> None:
        self.assertFailsCleanly(
            run("info", "magnet:?xt=urn:btih:" + "ab" * 20, "--fetch", "--timeout", "1"), 1,
            "no metadata within 1 s; tried nothing: the magnet names no tracker")

    def test_info_fetch_of_a_torrent_file_is_a_usage_error(self) -> None:
        self.assertFailsCleanly(run("info", "x.torrent", "--fetch"), 2,
                                "--fetch is for magnet links")


class ParserTest(unittest.TestCase):
    """In-process: the shell reuses build_parser, so parsing must raise, never exit."""

    def parse(self, *args: str):
        return cli.build_parser().parse_args(list(args))

    def test_defaults_of_every_command(self) -> None:
        a = self.parse("tracker")
        self.assertEqual((a.host, a.port, a.db, a.interval, a.tls, a.certfile, a.keyfile),
                         ("0.0.0.0", 4000, "tracker.db", 1800, False, None, None))
        a = self.parse("seed", "a.torrent", "b.torrent")
        self.assertEqual((a.torrents, a.data, a.port, a.encryption, a.timeout),
                         (["a.torrent", "b.torrent"], ".", 6881, "prefer", None))
        a = self.parse("download", "a.torrent", "--peer", "h:1", "--peer", "[::1]:2",
                       "--timeout", "2.5")
        self.assertEqual((a.output, a.port, a.peer, a.seed, a.recheck, a.timeout, a.encryption),
                         (cli.DEFAULT_DOWNLOAD_DIR, 6881, [("h", 1), ("::1", 2)], False, False, 2.5,
                          "prefer"))
        a = self.parse("shell")
        self.assertEqual((a.port, a.output), (6881, cli.DEFAULT_DOWNLOAD_DIR))
        a = self.parse("info", "x.torrent")
        self.assertEqual((a.target, a.fetch, a.peer, a.output, a.json),
                         ("x.torrent", False, [], None, False))
        a = self.parse("create", "f")
        self.assertEqual((a.paths, a.tracker, a.output, a.piece_length, a.private),
                         (["f"], [], None, None, False))

    def test_every_command_has_log_options_and_a_handler(self) -> None:
        for command, extra in (("tracker", []), ("create", ["f"]), ("seed", ["t"]),
                               ("download", ["t"]), ("shell", []), ("info", ["t"])):
            a = self.parse(command, *extra, "--log-level", "debug", "--log-file", "x.log")
            self.assertEqual((a.log_level, a.log_file), ("debug", "x.log"))
            self.assertIs(a.handler, getattr(cli, "cmd_" + command))
            self.assertEqual(self.parse(command, *extra).log_level, "warning")

    def test_parse_error_raises_usage_error(self) -> None:
        with self.assertRaises(cli.UsageError) as caught:
            self.parse("seed")
        self.assertIn("usage: sta seed", caught.exception.usage)
        with self.assertRaises(cli.UsageError):
            self.parse("download", "t", "--peer", "nope")
        with self.assertRaises(cli.UsageError):
            self.parse("seed", "t", "--encryption", "maybe")
        with self.assertRaises(cli.UsageError):
            self.parse("download", "t", "--timeout", "-1")

    def test_help_raises_parser_exit(self) -> None:
        with redirect_stdout(io.StringIO()) as out:
            with self.assertRaises(cli.ParserExit) as caught:
                self.parse("info", "--help")
        self.assertEqual(caught.exception.status, 0)
        self.assertIn("TORRENT_OR_MAGNET", out.getvalue())

    def test_main_returns_status_instead_of_exiting(self) -> None:
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertEqual(cli.main(["seed"]), 2)
            self.assertEqual(cli.main(["info", "magnet:?xt=urn:btih:00"]), 1)
        lines = err.getvalue().splitlines()
        self.assertTrue(lines[-1].startswith("sta: error: bad magnet link"))

    def test_tracker_url(self) -> None:
        cases = {
            "192.168.88.114": "http://192.168.88.114:4000/announce",
            "tracker.lan:8000": "http://tracker.lan:8000/announce",
            "[::1]:9000": "http://[::1]:9000/announce",
            "[::1]": "http://[::1]:4000/announce",
            "fe80::1": "http://[fe80::1]:4000/announce",
            "http://h:4000": "http://h:4000/announce",
            "http://h:4000/": "http://h:4000/announce",
            "https://h/custom/announce": "https://h/custom/announce",
            "udp://h:1337": "udp://h:1337",
        }
        for text, url in cases.items():
            with self.subTest(text=text):
                self.assertEqual(cli.tracker_url(text), url)
        for bad in ("", "h:0", "h:99999", "ftp://h/", "http://", "a b", "-h", "[::1"):
            with self.subTest(bad=bad):
                with self.assertRaises(cli.UsageError):
                    cli.tracker_url(bad)

    def test_parse_size(self) -> None:
        self.assertEqual(cli.parse_size("262144"), 262144)
        self.assertEqual(cli.parse_size("256K"), 262144)
        self.assertEqual(cli.parse_size("256KiB"), 262144)
        self.assertEqual(cli.parse_size("4m"), 4 << 20)
        self.assertEqual(cli.parse_size("1G"), 1 << 30)
        with self.assertRaises(ValueError):
            cli.parse_size("4 parsecs")

    def test_user_errors_are_recognised(self) -> None:
        self.assertTrue(cli.is_user_error(metainfo.MetainfoError("x")))
        self.assertTrue(cli.is_user_error(magnet.MagnetError("x")))
        self.assertTrue(cli.is_user_error(bencode.BencodeError("x", 0)))
        self.assertTrue(cli.is_user_error(FileNotFoundError(2, "No such file", "f")))
        self.assertFalse(cli.is_user_error(ValueError("bug")))
        self.assertFalse(cli.is_user_error(KeyError("bug")))


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


class UiTest(unittest.TestCase):
    """ui.py is the CLI's presentation layer; its behaviour is part of what a user sees."""

    def test_human_units(self) -> None:
        self.assertEqual([ui.human_size(n) for n in (0, 1023, 1024, 1536, 10 ** 9, 1 << 30)],
                         ["0 B", "1023 B", "1 KiB", "1.50 KiB", "954 MiB", "1 GiB"])
        self.assertEqual(ui.human_size(1048575), "1.00 MiB")
        self.assertEqual(ui.human_rate(2.5 * 1024 * 1024), "2.50 MiB/s")
        self.assertEqual([ui.human_eta(s) for s in (None, float("inf"), -1, 5, 185, 7300, 90000)],
                         ["--", "--", "--", "5s", "3m05s", "2h01m", "1d01h"])

    def test_progress_bar_and_torrent_line(self) -> None:
        self.assertEqual(ui.progress_bar(0.5, 10), "[#####.....]")
        self.assertEqual(ui.progress_bar(7, 4), "[####]")
        line = ui.torrent_line("a" * 40, 1 << 30, 0.456, 1024, 0, 3, 65, name_width=10)
        self.assertTrue(line.startswith("aaaaaaaaa~ "))
        for part in ("1 GiB", "45.6%", "1 KiB/s", "peers   3", "eta 1m05s"):
            self.assertIn(part, line)

    def test_progress_line_in_a_pipe_prints_plain_lines_every_interval(self) -> None:
        now = [0.0]
        out = io.StringIO()
        line = ui.ProgressLine(out, clock=lambda: now[0])
        self.assertFalse(line.tty)
        self.assertTrue(line.update("one"))
        now[0] = ui.PLAIN_INTERVAL / 2
        self.assertFalse(line.update("skipped"))
        now[0] = ui.PLAIN_INTERVAL + 0.1
        self.assertTrue(line.update("two"))
        line.finish("done")
        self.assertEqual(out.getvalue(), "one\ntwo\ndone\n")

    def test_progress_line_on_a_tty_redraws_in_place(self) -> None:
        out = FakeTty()
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
        with mock.patch.dict(os.environ, env, clear=True):
            line = ui.ProgressLine(out, interval=0)
            line.update("long text")
            line.update("short")
            line.finish()
        self.assertEqual(out.getvalue(), "\rlong text\x1b[K\rshort\x1b[K\n")

    def test_no_color_means_no_ansi(self) -> None:
        out = FakeTty()
        with mock.patch.dict(os.environ, {"NO_COLOR": "1"}):
            self.assertFalse(ui.use_color(out))
            line = ui.ProgressLine(out, interval=0)
            line.update("long text")
            line.update("short")
        self.assertNotIn("\x1b", out.getvalue())
        self.assertEqual(out.getvalue(), "\rlong text\rshort    ")

    @unittest.skipUnless(hasattr(os, "openpty") and sys.platform != "win32", "needs a pty")
    def test_create_shows_progress_on_a_terminal(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "f"), "wb") as f:
                f.write(b"x" * 100000)
            master, slave = os.openpty()
            try:
                done = subprocess.run([sys.executable, STA, "create", "-t", "h", "f"], cwd=d,
                                      stdout=subprocess.PIPE, stderr=slave, timeout=RUN_TIMEOUT,
                                      env=dict(os.environ, PYTHONPATH=ROOT))
                os.close(slave)
                slave = -1
                shown = b""
                while True:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO once the child's end is closed
                        break
                    if not chunk:
                        break
                    shown += chunk
            finally:
                os.close(master)
                if slave >= 0:
                    os.close(slave)
        self.assertEqual(done.returncode, 0)
        self.assertIn(b"\rhashing [", shown)
        self.assertIn(b"100.0%", shown)


if __name__ == "__main__":
    unittest.main()
