"""The command line, run as a user runs it: `python sta.py ...` in a subprocess.

Every failure must be one line on stderr with exit status 1 (run time) or 2 (usage), never a
traceback. The parser itself is also tested in-process, because the shell reuses it.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
from contextlib import redirect_stderr
from typing import List, Tuple

from sta import bencode, cli, magnet, metainfo
from tests import enginekit, termkit

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

    def test_seed_help_says_magnet_links_are_accepted(self) -> None:
        code, out, _ = run("seed", "--help")
        self.assertEqual(code, 0)
        self.assertIn("TORRENT_OR_MAGNET", out)
        self.assertIn("magnet links", out)
        self.assertIn("--bind ADDRESS", out)

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

    def test_create_takes_options_between_paths(self) -> None:
        self.file("a.bin", b"a" * 3000)
        self.file("b.bin", b"b" * 5000)
        code, out, err = run("create", "192.168.88.114", "-o", "x.torrent", "a.bin", "b.bin",
                             "--name", "pair", cwd=self.dir)
        self.assertEqual(code, 0, err)
        meta = metainfo.load(os.path.join(self.dir, "x.torrent"))
        self.assertEqual(meta.announce, "http://192.168.88.114:4000/announce")
        self.assertEqual([f.path for f in meta.info.files], [("pair", "a.bin"),
                                                             ("pair", "b.bin")])

    def test_create_in_the_shell_takes_options_between_paths(self) -> None:
        self.file("a.bin", b"a" * 3000)
        self.file("b.bin", b"b" * 5000)
        done = subprocess.run(
            [sys.executable, STA, "shell", "--port", "0", "--bind", "127.0.0.1"], cwd=self.dir,
            input=b"create 192.168.88.114 -o x.torrent a.bin b.bin --name pair\nexit\n",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT,
            env=dict(os.environ, PYTHONPATH=ROOT, NO_COLOR="1"))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(b"Listening for peers on 127.0.0.1:", done.stderr)
        meta = metainfo.load(os.path.join(self.dir, "x.torrent"))
        self.assertEqual((meta.announce, len(meta.info.files)),
                         ("http://192.168.88.114:4000/announce", 2))

    def test_create_upload_without_tracker_is_a_usage_error(self) -> None:
        self.file("a.bin", b"a")
        self.assertFailsCleanly(run("create", "a.bin", "--upload", cwd=self.dir), 2,
                                "--upload needs a tracker")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "a.torrent")))

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
                                    cwd=self.dir), 1, "dir does not exist (create it, or give "
                                                      "another place with -o)")


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
        self.assertFailsCleanly(run("info", path), 1, f"not a .torrent file: {path} (bad "
                                                      "bencoding at byte 11")

    def test_info_invalid_torrent_fails_cleanly(self) -> None:
        info = {b"name": b"..", b"piece length": 16384, b"pieces": b"", b"length": 0}
        path = self.file("evil.torrent", bencode.encode({b"info": info}))
        self.assertFailsCleanly(run("info", path), 1, "not allowed")

    def test_info_missing_file_fails_cleanly(self) -> None:
        self.assertFailsCleanly(run("info", os.path.join(self.dir, "nope.torrent")), 1,
                                "nope.torrent: no such file or folder")

    def test_info_folder_fails_cleanly(self) -> None:
        self.assertFailsCleanly(run("info", self.dir), 1, "it is a folder, not a file")

    def test_info_of_a_hostile_torrent_writes_no_control_character(self) -> None:
        info = {b"name": b"evil\x1b]0;owned\x07.bin", b"piece length": 16384,
                b"pieces": b"\0" * 20, b"length": 5}
        path = self.file("evil.torrent", bencode.encode({
            b"info": info, b"comment": "hi\x1b[2J\x1b[31mthere\x9b1m".encode(),
            b"created by": b"\x07x", b"announce": b"http://t/announce\r\nfake: line"}))
        code, out, err = run("info", path)
        self.assertEqual(code, 0, err)
        self.assertIsNone(re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", out), repr(out))
        self.assertEqual(self.field(out, "comment"), "hithere")
        self.assertEqual(self.field(out, "created by"), "?x")
        code, out, err = run("info", path, "--json")
        self.assertEqual(json.loads(out)["comment"], "hi\x1b[2J\x1b[31mthere\x9b1m")
        self.assertNotIn("\x1b", out)
        self.assertNotIn("\x9b", out)

    def test_info_fetch_without_any_source_fails_in_one_line(self) -> None:
        self.assertFailsCleanly(
            run("info", "magnet:?xt=urn:btih:" + "ab" * 20, "--fetch", "--timeout", "1"), 1,
            "no metadata within 1 s; tried nothing: the magnet names no tracker")

    def test_info_fetch_of_a_torrent_file_is_a_usage_error(self) -> None:
        self.assertFailsCleanly(run("info", "x.torrent", "--fetch"), 2,
                                "--fetch is for magnet links")


class MainTest(unittest.TestCase):
    """In-process: main returns the status instead of exiting, and each handler is its cmd_."""

    def test_every_command_runs_its_handler(self) -> None:
        parser = cli.build_parser()
        for command, extra in (("tracker", []), ("create", ["f"]), ("seed", ["t"]),
                               ("download", ["t"]), ("shell", []), ("info", ["t"])):
            with self.subTest(command=command):
                args = parser.parse_args([command] + extra)
                self.assertIs(args.handler, getattr(cli, "cmd_" + command))

    def test_main_returns_status_instead_of_exiting(self) -> None:
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertEqual(cli.main(["seed"]), 2)
            self.assertEqual(cli.main(["info", "magnet:?xt=urn:btih:00"]), 1)
        lines = err.getvalue().splitlines()
        self.assertTrue(lines[-1].startswith("sta: error: bad magnet link"))

    def test_error_lines_are_made_printable(self) -> None:
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertEqual(cli.main(["info", "no\x1b]0;owned\x07such\x1b[2J.torrent"]), 1)
            self.assertEqual(cli.main(["seed", "t", "--encryption", "\x1b[31mred"]), 2)
        self.assertNotIn("\x1b", err.getvalue())
        self.assertIn("sta: error: nosuch.torrent: no such file or folder", err.getvalue())

    def test_terminal_log_lines_are_plain_and_the_log_file_keeps_everything(self) -> None:
        root = logging.getLogger()
        saved = (root.handlers[:], root.level)
        self.addCleanup(lambda: (setattr(root, "handlers", saved[0]), root.setLevel(saved[1])))
        err = io.StringIO()
        with redirect_stderr(err):
            cli.configure_logging("warning")
            logging.getLogger("sta.announce").warning("a.bin: tracker %s: %s", "t\x1b[2J",
                                                      "connection refused")
        self.assertEqual(err.getvalue(), "a.bin: tracker t: connection refused\n")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "sta.log")
            cli.configure_logging("info", path)
            logging.getLogger("sta.announce").info("in the file")
            logging.shutdown()
            for handler in logging.getLogger().handlers:
                handler.close()
            with open(path, encoding="utf-8") as f:
                self.assertRegex(f.read(), r"^\S+ \S+ INFO sta.announce: in the file\n$")


class UserErrorTest(CliTestCase):
    """What the README promises: one line saying what and what to do, exit status 1."""

    def test_missing_torrent_is_named(self) -> None:
        for command in ("info", "seed", "download"):
            with self.subTest(command=command):
                self.assertFailsCleanly(run(command, "ass1.torrnt", cwd=self.dir), 1,
                                        "sta: error: ass1.torrnt: no such file or folder")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "downloads")),
                         "a failed download left its folder behind")

    def test_a_file_that_is_not_a_torrent_says_so_first(self) -> None:
        self.file("ass1.pdf", b"%PDF-1.4 not bencoded")
        for command in ("info", "seed", "download"):
            with self.subTest(command=command):
                code, _, err = run(command, "ass1.pdf", cwd=self.dir)
                self.assertFailsCleanly((code, "", err), 1, "bad bencoding")
                self.assertTrue(err.startswith("sta: error: not a .torrent file: ass1.pdf ("),
                                err)

    def test_tracker_port_in_use_suggests_port(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            result = run("tracker", "--host", "127.0.0.1", "--port", str(port),
                         "--db", os.path.join(self.dir, "t.db"))
        self.assertFailsCleanly(result, 1, f"cannot listen on port {port}: another program "
                                           "uses it")
        self.assertIn("--port", result[2])

    def test_unwritable_download_folder_fails_before_any_transfer(self) -> None:
        torrent = self.torrent()
        self.file("afile", b"x")
        out = os.path.join(self.dir, "afile", "downloads")
        code, stdout, err = run("download", torrent, "-o", out, "--port", "0")
        self.assertFailsCleanly((code, stdout, err), 1, "cannot create the download folder")
        self.assertIn("choose another folder with -o DIR", err)
        self.assertNotIn("Listening", stdout + err)

    @unittest.skipIf(os.name == "nt" or os.geteuid() == 0,
                     "permissions do not stop root, and Windows has no chmod 555")
    def test_read_only_download_folder_fails_before_any_transfer(self) -> None:
        torrent = self.torrent()
        out = os.path.join(self.dir, "locked")
        os.makedirs(out)
        os.chmod(out, 0o555)
        self.addCleanup(os.chmod, out, 0o755)
        self.assertFailsCleanly(run("download", torrent, "-o", out, "--port", "0"), 1,
                                "cannot write in the download folder")

    def test_bind_to_another_machines_address_is_refused(self) -> None:
        torrent = self.torrent()
        for command in (("download", torrent), ("seed", torrent), ("shell",)):
            with self.subTest(command=command[0]):
                self.assertFailsCleanly(run(*command, "--bind", "203.0.113.7", "--port", "0",
                                            cwd=self.dir), 1,
                                        "--bind 203.0.113.7: not an address of this machine")
        self.assertFailsCleanly(run("tracker", "--host", "203.0.113.7", "--port", "0"), 1,
                                "--host 203.0.113.7: not an address of this machine")

    def test_seed_from_a_missing_folder_fails_before_listening(self) -> None:
        torrent = self.torrent()
        code, out, err = run("seed", torrent, "--data", os.path.join(self.dir, "gone"),
                             "--port", "0")
        self.assertFailsCleanly((code, out, err), 1, "gone: no such folder; give the folder "
                                                     "that holds the files with --data DIR")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "gone")))

    def test_tracker_certificate_that_is_missing_is_named(self) -> None:
        self.assertFailsCleanly(run("tracker", "--certfile", "no-cert.pem", "--keyfile",
                                    "no-key.pem", cwd=self.dir), 1,
                                "--certfile no-cert.pem: no such file")

    def test_unwritable_log_file_is_one_line(self) -> None:
        self.assertFailsCleanly(run("info", "x.torrent", "--log-file",
                                    os.path.join(self.dir, "no", "x.log")), 1,
                                "cannot write the log file")

    def torrent(self) -> str:
        self.file("data/a.bin", os.urandom(40000))
        path = os.path.join(self.dir, "a.torrent")
        code, _, err = run("create", os.path.join(self.dir, "data", "a.bin"), "-o", path)
        self.assertEqual(code, 0, err)
        return path


class TransferOutputTest(CliTestCase):
    """A real seed and a real download on 127.0.0.1: what the download prints at the end."""

    def start_seed(self) -> int:
        """Seed a 293 KiB file on 127.0.0.1 only; its port."""
        data = self.file("share/a.bin", os.urandom(300000))
        self.torrent_path = os.path.join(self.dir, "a.torrent")
        code, _, err = run("create", data, "-o", self.torrent_path)
        self.assertEqual(code, 0, err)
        seed = enginekit.StaProcess(self, "seed", self.torrent_path, "--data",
                                    os.path.join(self.dir, "share"), "--port", "0",
                                    "--bind", "127.0.0.1")
        port = int(seed.wait_for(r"Listening for peers on 127\.0\.0\.1:(\d+)").group(1))
        seed.wait_for(r"^Seeding a\.bin")
        return port

    def test_download_ends_with_complete_and_a_precise_time(self) -> None:
        port = self.start_seed()
        code, out, err = run("download", self.torrent_path, "-o", os.path.join(self.dir, "dl"),
                             "--peer", f"127.0.0.1:{port}", "--port", "0", "--bind", "127.0.0.1")
        self.assertEqual(code, 0, err)
        progress = [line for line in err.splitlines() if line.startswith("a.bin ")]
        self.assertTrue(progress[-1].endswith("complete"), err)
        self.assertNotIn("seeding", progress[-1])
        self.assertRegex(err, r"a\.bin: downloaded 293 KiB, uploaded 0 B in \d+\.\d s, average")
        self.assertRegex(err, rf"  from 127\.0\.0\.1:{port}: 293 KiB")

    @termkit.needs_pty
    def test_download_on_a_terminal_ends_with_complete(self) -> None:
        port = self.start_seed()
        code, shown = termkit.run_on_terminal(
            ["download", self.torrent_path, "-o", os.path.join(self.dir, "dl"), "--peer",
             f"127.0.0.1:{port}", "--port", "0"], cwd=self.dir)
        lines = termkit.screen(shown)
        self.assertEqual(code, 0, shown)
        [last] = [line for line in lines if line.startswith("a.bin ")]
        self.assertTrue(last.endswith("complete"), lines)
        self.assertLessEqual(max(len(line) for line in lines[:3]), termkit.COLUMNS)
        self.assertRegex(lines[-2], r"in \d+\.\d s")


class TerminalTest(CliTestCase):
    @termkit.needs_pty
    def test_create_shows_progress_on_a_terminal(self) -> None:
        self.file("f", b"x" * 100000)
        code, shown = termkit.run_on_terminal(["create", "-t", "h", "f"], cwd=self.dir)
        self.assertEqual(code, 0, shown)
        self.assertIn("\rhashing [", shown)
        self.assertIn("100.0%", shown)

    @termkit.needs_pty
    def test_log_lines_are_never_glued_onto_the_progress_line(self) -> None:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead = closed.getsockname()[1]  # nothing listens there once closed
        self.file("data/a.bin", os.urandom(40000))
        code, _, err = run("create", "-t", f"127.0.0.1:{dead}", "data/a.bin", "-o", "a.torrent",
                           cwd=self.dir)
        self.assertEqual(code, 0, err)
        code, shown = termkit.run_on_terminal(
            ["download", "a.torrent", "--port", "0", "--timeout", "2"], cwd=self.dir)
        lines = termkit.screen(shown)
        self.assertEqual(code, 1, shown)
        warnings = [line for line in lines if "connection refused" in line]
        self.assertTrue(warnings, lines)
        for line in warnings:
            self.assertNotIn("peers", line, lines)
            self.assertTrue(line.startswith("a.bin: tracker "), lines)
        self.assertIn("incomplete", [line for line in lines if line.startswith("a.bin  ")][-1])

if __name__ == "__main__":
    unittest.main()
