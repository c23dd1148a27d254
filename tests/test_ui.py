"""The shell's tables in ui.py: status, peers and stats, byte for byte on small inputs."""

from __future__ import annotations

import unittest
from typing import Any, Dict

from sta import ui

MIB = 1 << 20


def torrent_row(**fields: Any) -> Dict[str, Any]:
    row = {"number": 1, "name": "a.bin", "state": "seeding", "size": 3 * MIB, "progress": 1.0,
           "down_rate": 0, "up_rate": 1024, "ratio": 0.5, "peers": 2, "seeds": 0, "eta": None,
           "error": None}
    row.update(fields)
    return row


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
         "peer_id": "-ST0100-abcdefghijkl"}


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
            "peer id:      -ST0100-abcdefghijkl",
        ])

    def test_stats_lines_say_long_for_uptime_past_99_days(self) -> None:
        lines = ui.stats_lines(dict(STATS, uptime=86400 * 99, torrents=0, states={}))
        self.assertEqual(lines[1:3], ["uptime:       long", "torrents:     0"])


if __name__ == "__main__":
    unittest.main()
