"""bench/bench_peers.py's pure parts: client selection, the per-client summary and table, and
the reproducing command. The bench itself needs root and network namespaces; these do not."""

from __future__ import annotations

import contextlib
import io
import unittest

from bench import bench_peers
from bench.common import BenchError


def one_run(single: float, many: float, connected: int = 1000, dropped: int = 0,
            unchoked: int = 20, rss: int = 40 << 20, anon: int = 20 << 20,
            cpu: float = 30.0) -> dict:
    return {"single": {"rate": single},
            "many": {"connected": connected, "dropped": dropped, "fewest_during_run": connected,
                     "ever_unchoked": unchoked, "rate": many},
            "rss": rss, "anon": anon, "cpu": cpu, "cpu_total": cpu + 5,
            "commands": ["seed", "one", "all"]}


class ClientSelectionTests(unittest.TestCase):
    def test_default_clients_are_sta_then_libtorrent(self) -> None:
        args = bench_peers.parse_args([])
        self.assertEqual(args.client_names, ["sta", "lt"])

    def test_clients_keep_their_order_and_drop_repeats(self) -> None:
        self.assertEqual(bench_peers.parse_clients("lt, sta,lt"), ["lt", "sta"])

    def test_unknown_client_is_a_usage_error(self) -> None:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            with self.assertRaises(SystemExit) as caught:
                bench_peers.parse_args(["--clients", "sta,qbit"])
        self.assertEqual(caught.exception.code, 2)
        self.assertIn("'qbit'", err.getvalue())

    def test_libtorrent_left_out_with_a_note_when_not_importable(self) -> None:
        names, notes = bench_peers.available_clients(["sta", "lt"], lambda: False)
        self.assertEqual(names, ["sta"])
        self.assertEqual(len(notes), 1)
        self.assertIn("not importable", notes[0])

    def test_libtorrent_kept_when_importable(self) -> None:
        names, notes = bench_peers.available_clients(["sta", "lt"], lambda: True)
        self.assertEqual((names, notes), (["sta", "lt"], []))

    def test_libtorrent_alone_and_missing_leaves_nothing_to_run(self) -> None:
        with self.assertRaises(BenchError):
            bench_peers.available_clients(["lt"], lambda: False)

    def test_runs_rotate_which_client_goes_first(self) -> None:
        self.assertEqual(bench_peers.client_order(["sta", "lt"], 1), ["sta", "lt"])
        self.assertEqual(bench_peers.client_order(["sta", "lt"], 2), ["lt", "sta"])
        self.assertEqual(bench_peers.client_order(["sta"], 2), ["sta"])


class ArgumentTests(unittest.TestCase):
    def test_one_source_address_per_peer_by_default(self) -> None:
        self.assertEqual(bench_peers.parse_args(["--peers", "300"]).sources, 300)

    def test_source_range_covers_one_address_per_source(self) -> None:
        self.assertEqual(bench_peers.source_range(1), "10.77.1.10")
        self.assertEqual(bench_peers.source_range(1000), "10.77.1.10-10.77.4.241")
        self.assertEqual(len(bench_peers.peer_load.source_addresses(
            bench_peers.source_range(1000))), 1000)

    def test_too_few_sources_for_the_peers_is_a_usage_error(self) -> None:
        with contextlib.redirect_stderr(io.StringIO()):
            with self.assertRaises(SystemExit) as caught:
                bench_peers.parse_args(["--peers", "1000", "--sources", "10"])
        self.assertEqual(caught.exception.code, 2)

    def test_reproducing_command_names_one_client(self) -> None:
        command = bench_peers.bench_command(["--runs", "1", "--clients", "sta,lt"], "lt")
        self.assertTrue(command.endswith("bench/bench_peers.py --runs 1 --clients lt)"),
                        command)
        command = bench_peers.bench_command(["--clients=lt", "--peers", "5"], "sta")
        self.assertTrue(command.endswith("--peers 5 --clients sta)"), command)


class SummaryTests(unittest.TestCase):
    def test_summary_takes_medians_and_the_most_dropped(self) -> None:
        runs = [one_run(100e6, 80e6, dropped=0, cpu=10.0),
                one_run(200e6, 100e6, dropped=3, cpu=30.0),
                one_run(300e6, 600e6, dropped=1, cpu=20.0)]
        summary = bench_peers.summarise(runs)
        self.assertEqual(summary["single_rate"], 200e6)
        self.assertEqual(summary["many_rate"], 100e6)
        self.assertEqual(summary["dropped"], 3)
        self.assertEqual(summary["cpu"], 20.0)
        # The ratio is taken within each run (0.8, 0.5, 2.0), then the median.
        self.assertAlmostEqual(summary["ratio"], 0.8)

    def test_table_has_a_column_per_client(self) -> None:
        summaries = {"sta": bench_peers.summarise([one_run(1000e6, 1300e6)]),
                     "lt": bench_peers.summarise([one_run(700e6, 800e6, connected=200,
                                                          unchoked=9, anon=None)])}
        rows = {row[0]: row[1:] for row in bench_peers.table_rows(
            summaries, ["sta", "lt"], 1000, 30.0)}
        self.assertEqual(rows["peers connected"], ["1000 of 1000", "200 of 1000", "all"])
        self.assertEqual(rows["distinct peers ever unchoked"],
                         ["20 in 30 s", "9 in 30 s", "-"])
        self.assertEqual(rows["upload to all peers"][:2], ["1300 MB/s", "800 MB/s"])
        self.assertEqual(rows["seed peak anonymous RSS"][:2], ["20.0 MiB", "-"])

    def test_client_without_results_shows_dashes(self) -> None:
        summaries = {"sta": bench_peers.summarise([one_run(1e6, 1e6)]), "lt": None}
        for row in bench_peers.table_rows(summaries, ["sta", "lt"], 1000, 30.0):
            self.assertEqual(row[2], "-", row)


if __name__ == "__main__":
    unittest.main()
