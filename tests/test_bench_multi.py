"""bench/bench_multi.py's choice of clients and the commands it runs, without running them."""

from __future__ import annotations

import contextlib
import io
import unittest

from bench import bench_multi
from tests.interop import clients


def parse(*argv: str, have_lt: bool = True):
    return bench_multi.parse_args(list(argv), have_lt)


class ClientChoiceTest(unittest.TestCase):
    def test_default_measures_sta_then_libtorrent(self) -> None:
        args = parse()
        self.assertEqual(args.client_names, ["sta", "lt"])
        self.assertIsNone(args.client_note)

    def test_default_without_libtorrent_measures_sta_with_a_note(self) -> None:
        args = parse(have_lt=False)
        self.assertEqual(args.client_names, ["sta"])
        self.assertIn("libtorrent is not importable", args.client_note)
        self.assertNotIn("\n", args.client_note)

    def test_clients_flag_keeps_the_run_order_and_drops_repeats(self) -> None:
        self.assertEqual(parse("--clients", "lt,sta,lt").client_names, ["sta", "lt"])
        self.assertEqual(parse("--clients", "sta").client_names, ["sta"])
        self.assertEqual(parse("--clients", " lt ").client_names, ["lt"])

    def test_sta_alone_needs_no_libtorrent(self) -> None:
        self.assertEqual(parse("--clients", "sta", have_lt=False).client_names, ["sta"])

    def assert_usage_error(self, *argv: str, have_lt: bool = True) -> str:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as raised:
            parse(*argv, have_lt=have_lt)
        self.assertEqual(raised.exception.code, 2)
        return err.getvalue()

    def test_unknown_client_is_a_usage_error(self) -> None:
        self.assertIn("bad --clients 'aria2'", self.assert_usage_error("--clients", "aria2"))
        self.assertIn("bad --clients", self.assert_usage_error("--clients", ","))

    def test_libtorrent_asked_for_but_absent_is_a_usage_error(self) -> None:
        self.assertIn("not importable", self.assert_usage_error("--clients", "sta,lt",
                                                                have_lt=False))

    def test_counts_must_be_positive(self) -> None:
        self.assertIn("must be positive", self.assert_usage_error("--runs", "0"))


class CommandTest(unittest.TestCase):
    def setUp(self) -> None:
        self.bench = bench_multi.Bench("/nonexistent", parse())
        self.torrents = ["t1.torrent", "t2.torrent", "t3.torrent"]

    def test_libtorrent_downloads_every_torrent_in_one_helper_process(self) -> None:
        cmd = self.bench.download_cmd("lt", self.torrents, "out", [7001, 7002])
        self.assertEqual(cmd[:3], [clients.LT_PYTHON, clients.LT_HELPER, "download"])
        self.assertEqual(cmd[3:6], self.torrents)
        self.assertEqual(cmd.count("--peer"), 2)
        self.assertIn("127.0.0.1:7002", cmd)

    def test_both_clients_seed_every_torrent_from_one_data_folder(self) -> None:
        for client in ("sta", "lt"):
            cmd = self.bench.seed_cmd(client, self.torrents, "data", 7001)
            start = cmd.index("seed") + 1
            self.assertEqual(cmd[start:start + 3], self.torrents, client)
            self.assertEqual(cmd[cmd.index("--data") + 1], "data", client)
            self.assertEqual(cmd[cmd.index("--port") + 1], "7001", client)

    def test_sta_seed_is_ready_once_every_torrent_seeds(self) -> None:
        one = "Seeding t1 on port 1\n"
        self.assertFalse(bench_multi.seeding("sta", one, 2))
        self.assertTrue(bench_multi.seeding("sta", one + one.replace("t1", "t2"), 2))

    def test_libtorrent_seed_is_ready_at_its_seeding_line(self) -> None:
        self.assertFalse(bench_multi.seeding("lt", "LISTENING 7001\n", 10))
        self.assertTrue(bench_multi.seeding("lt", "LISTENING 7001\nSEEDING\n", 10))


if __name__ == "__main__":
    unittest.main()
