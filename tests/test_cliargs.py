"""The commands' grammar, in-process: the shell parses its lines with the same parsers, so parsing
must raise (UsageError, ParserExit), never exit the process."""

from __future__ import annotations

import argparse
import io
import unittest
from contextlib import redirect_stdout
from typing import Any

from sta import cliargs, shell
from sta.tracker_limits import DEFAULT_INTERVAL


def parse(*args: str) -> argparse.Namespace:
    return cliargs.build_parser().parse_args(list(args))


class DefaultsTest(unittest.TestCase):
    def test_defaults_of_every_command(self) -> None:
        a = parse("tracker")
        self.assertEqual((a.host, a.port, a.db, a.interval, a.tls, a.certfile, a.keyfile),
                         ("0.0.0.0", 4000, "tracker.db", DEFAULT_INTERVAL, False, None, None))
        a = parse("seed", "a.torrent", "b.torrent")
        self.assertEqual((a.torrents, a.data, a.port, a.bind, a.encryption, a.timeout),
                         (["a.torrent", "b.torrent"], ".", 6881, "0.0.0.0", "prefer", None))
        a = parse("download", "a.torrent", "--peer", "h:1", "--peer", "[::1]:2",
                  "--timeout", "2.5")
        self.assertEqual((a.output, a.port, a.bind, a.peer, a.seed, a.recheck, a.timeout,
                          a.encryption),
                         (cliargs.DEFAULT_DOWNLOAD_DIR, 6881, "0.0.0.0", [("h", 1), ("::1", 2)],
                          False, False, 2.5, "prefer"))
        a = parse("shell")
        self.assertEqual((a.port, a.output, a.bind), (6881, cliargs.DEFAULT_DOWNLOAD_DIR,
                                                      "0.0.0.0"))
        a = parse("info", "x.torrent")
        self.assertEqual((a.target, a.fetch, a.peer, a.output, a.json),
                         ("x.torrent", False, [], None, False))
        a = parse("create", "f")
        self.assertEqual((a.paths, a.tracker, a.output, a.piece_length, a.private),
                         (["f"], [], None, None, False))

    def test_every_command_takes_the_log_options(self) -> None:
        for command, extra in (("tracker", []), ("create", ["f"]), ("seed", ["t"]),
                               ("download", ["t"]), ("shell", []), ("info", ["t"])):
            with self.subTest(command=command):
                a = parse(command, *extra, "--log-level", "debug", "--log-file", "x.log")
                self.assertEqual((a.log_level, a.log_file), ("debug", "x.log"))
                self.assertEqual(parse(command, *extra).log_level, "warning")

    def test_handlers_are_set_only_when_given(self) -> None:
        handlers = {name: (lambda args, name=name: name) for name in cliargs.COMMANDS}
        parser = cliargs.build_parser(handlers)
        for name in cliargs.COMMANDS:
            extra = {"create": ["f"], "seed": ["t"], "download": ["t"], "info": ["t"]}
            args = parser.parse_args([name] + extra.get(name, []))
            self.assertEqual(args.handler(args), name)
        self.assertFalse(hasattr(parse("shell"), "handler"))

    def test_seed_and_download_say_they_take_magnet_links(self) -> None:
        for command in ("seed", "download"):
            with self.subTest(command=command):
                text = help_of(command)
                self.assertIn("TORRENT_OR_MAGNET", text)
                self.assertIn("magnet links", text)


def help_of(command: str) -> str:
    with redirect_stdout(io.StringIO()) as out:
        with unittest.TestCase().assertRaises(cliargs.ParserExit):
            parse(command, "--help")
    return out.getvalue()


class IntermixedTest(unittest.TestCase):
    def test_create_takes_options_between_paths(self) -> None:
        a = parse("create", "HOST", "-o", "x.torrent", "a.bin", "b.bin")
        self.assertEqual((a.paths, a.output), (["HOST", "a.bin", "b.bin"], "x.torrent"))
        a = parse("create", "-t", "h", "a.bin", "--name", "pair", "b.bin", "--private")
        self.assertEqual((a.paths, a.tracker, a.name, a.private),
                         (["a.bin", "b.bin"], ["h"], "pair", True))

    def test_download_and_seed_take_options_between_torrents(self) -> None:
        a = parse("download", "a.torrent", "--peer", "h:1", "b.torrent", "-o", "out", "c")
        self.assertEqual((a.torrents, a.peer, a.output),
                         (["a.torrent", "b.torrent", "c"], [("h", 1)], "out"))
        a = parse("seed", "a.torrent", "--data", "d", "b.torrent")
        self.assertEqual((a.torrents, a.data), (["a.torrent", "b.torrent"], "d"))

    def test_intermixed_create_parses_from_a_shell_line(self) -> None:
        parser = cliargs.build_parser()
        words = shell.split_line('create HOST -o "my x.torrent" a.bin "b c.bin"')
        a = parser.parse_args(words)
        self.assertEqual((a.paths, a.output), (["HOST", "a.bin", "b c.bin"], "my x.torrent"))
        # the same parser, again, after a failed line: nothing is left half-switched
        with self.assertRaises(cliargs.UsageError):
            parser.parse_args(["create", "-o", "x.torrent"])
        self.assertEqual(parser.parse_args(["create", "a", "-o", "y", "b"]).paths, ["a", "b"])

    def test_missing_paths_are_still_a_usage_error(self) -> None:
        with self.assertRaises(cliargs.UsageError) as caught:
            parse("create", "-o", "x.torrent")
        self.assertIn("usage: sta create", caught.exception.usage)


class UsageErrorTest(unittest.TestCase):
    def test_parse_error_raises_usage_error_with_the_command_usage(self) -> None:
        with self.assertRaises(cliargs.UsageError) as caught:
            parse("seed")
        self.assertIn("usage: sta seed", caught.exception.usage)
        for bad in (["download", "t", "--peer", "nope"], ["seed", "t", "--encryption", "maybe"],
                    ["download", "t", "--timeout", "-1"], ["seed", "t", "--bind", "a b"]):
            with self.subTest(args=bad):
                with self.assertRaises(cliargs.UsageError):
                    parse(*bad)

    def test_unknown_argument_shows_the_subcommand_usage(self) -> None:
        with self.assertRaises(cliargs.UsageError) as caught:
            parse("info", "a.torrent", "b.torrent")
        self.assertIn("usage: sta info", caught.exception.usage)
        self.assertEqual(caught.exception.prog, "sta info")
        self.assertIn("unrecognized arguments: b.torrent", str(caught.exception))

    def test_tracker_has_host_not_bind(self) -> None:
        with self.assertRaises(cliargs.UsageError):
            parse("tracker", "--bind", "127.0.0.1")
        self.assertEqual(parse("tracker", "--host", "127.0.0.1").host, "127.0.0.1")

    def test_bind_takes_addresses_and_host_names(self) -> None:
        for text, value in (("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("[::1]", "::1"),
                            ("lab-pc.local", "lab-pc.local")):
            with self.subTest(text=text):
                self.assertEqual(parse("download", "t", "--bind", text).bind, value)

    def test_help_raises_parser_exit(self) -> None:
        self.assertIn("TORRENT_OR_MAGNET", help_of("info"))


class ArgumentTypesTest(unittest.TestCase):
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
                self.assertEqual(cliargs.tracker_url(text), url)
        for bad in ("", "h:0", "h:99999", "ftp://h/", "http://", "a b", "-h", "[::1"):
            with self.subTest(bad=bad):
                with self.assertRaises(cliargs.UsageError):
                    cliargs.tracker_url(bad)

    def test_parse_size(self) -> None:
        self.assertEqual(cliargs.parse_size("262144"), 262144)
        self.assertEqual(cliargs.parse_size("256K"), 262144)
        self.assertEqual(cliargs.parse_size("256KiB"), 262144)
        self.assertEqual(cliargs.parse_size("4m"), 4 << 20)
        self.assertEqual(cliargs.parse_size("1G"), 1 << 30)
        with self.assertRaises(ValueError):
            cliargs.parse_size("4 parsecs")

    def test_first_argument_is_a_tracker_only_when_it_is_not_a_path(self) -> None:
        self.assertTrue(cliargs.looks_like_tracker("192.168.88.114"))
        self.assertTrue(cliargs.looks_like_tracker("http://t/announce"))
        self.assertFalse(cliargs.looks_like_tracker(__file__))
        self.assertFalse(cliargs.looks_like_tracker("not a host"))

    def test_no_trust_options_means_no_ssl_context(self) -> None:
        self.assertIsNone(cliargs.tracker_trust(argparse.Namespace()))

    def test_bad_pin_is_a_usage_error(self) -> None:
        args: Any = argparse.Namespace(tracker_cafile=None, tracker_pin="abc")
        with self.assertRaises(cliargs.UsageError):
            cliargs.tracker_trust(args)


class WebOptionsTest(unittest.TestCase):
    def test_web_defaults_to_loopback_on_transmissions_port(self) -> None:
        args = cliargs.build_parser().parse_args(["web"])
        self.assertEqual((args.web_host, args.web_port, args.web_password),
                         ("127.0.0.1", 9091, None))

    def test_shell_web_takes_a_port_or_host_and_port(self) -> None:
        self.assertEqual(cliargs.web_address("9092"), ("127.0.0.1", 9092))
        self.assertEqual(cliargs.web_address("0.0.0.0:80"), ("0.0.0.0", 80))
        self.assertEqual(cliargs.web_address("[::1]:9091"), ("::1", 9091))
        self.assertIsNone(cliargs.build_parser().parse_args(["shell"]).web)

    def test_bad_web_address_is_a_usage_error(self) -> None:
        for bad in ("x", "host:99999", "a b:1"):
            with self.assertRaises(cliargs.UsageError):
                cliargs.build_parser().parse_args(["shell", "--web", bad])


if __name__ == "__main__":
    unittest.main()
