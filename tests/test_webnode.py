"""What the web front ends add to the node: file progress and piece cells from a bitfield, the
speed history, headless notices, and adding by path or URL without fetching anything else."""

from __future__ import annotations

import http.server
import os
import threading
import unittest
from typing import List

from sta.metainfo import FileEntry, Info
from sta.webnode import (MAX_TORRENT_BYTES, NoticeLog, SpeedHistory, WebNodeError,
                         decode_base64, file_progress, piece_cells)
from tests.webkit import WebFixture


def info(lengths: List[int], piece_length: int) -> Info:
    files, offset = [], 0
    for n, length in enumerate(lengths):
        files.append(FileEntry(("t", f"f{n}"), length, offset))
        offset += length
    pieces = -(-offset // piece_length)
    return Info(name="t", piece_length=piece_length, pieces=b"\0" * 20 * pieces,
                files=tuple(files), length=offset, private=False, multi_file=True, raw=b"",
                info_hash=b"\0" * 20)


class PureTest(unittest.TestCase):
    def test_file_progress_counts_each_file_share_of_held_pieces(self) -> None:
        # pieces of 10: file 0 is bytes 0-14, file 1 is 15-29 (+ an empty file), 30-34
        layout = info([15, 15, 0, 5], 10)
        self.assertEqual(file_progress(layout, bytes([0b10000000])), [10, 0, 0, 0])
        self.assertEqual(file_progress(layout, bytes([0b01000000])), [5, 5, 0, 0])
        self.assertEqual(file_progress(layout, bytes([0b11110000])), [15, 15, 0, 5])
        self.assertEqual(file_progress(layout, b""), [0, 0, 0, 0])

    def test_piece_cells_share_pieces_between_cells(self) -> None:
        self.assertEqual(piece_cells(bytes([0b10100000]), 4), [1.0, 0.0, 1.0, 0.0])
        self.assertEqual(piece_cells(bytes([0b11100000]), 4, cells=2), [1.0, 0.5])
        self.assertEqual(piece_cells(b"", 0), [])
        self.assertEqual(len(piece_cells(b"\xff" * 1000, 8000)), 512)

    def test_speed_history_keeps_its_span_and_forgets_removed_torrents(self) -> None:
        history = SpeedHistory(span=3, step=1)
        for t in range(5):
            history.record(t, [{"info_hash": "aa", "down_rate": t * 10, "up_rate": 1.4}],
                           (t, 0))
        self.assertEqual(history.series("aa"), [[2, 20, 1], [3, 30, 1], [4, 40, 1]])
        self.assertEqual([p[1] for p in history.series()], [2, 3, 4])
        history.record(5, [], (0, 0))
        self.assertEqual(history.series("aa"), [])

    def test_notice_log_keeps_numbered_notices_and_echoes_them(self) -> None:
        echoed: List[str] = []
        notices = NoticeLog(echoed.append)
        notices.notice("one")
        notices.notice("two")
        self.assertEqual([n["text"] for n in notices.since(1)], ["two"])
        self.assertEqual(echoed, ["one", "two"])
        self.assertFalse(notices.was_logged("one"))

    def test_base64_decoding_refuses_what_is_not(self) -> None:
        self.assertEqual(decode_base64("aGk=\n"), b"hi")
        for bad in ("!!", "é"):
            with self.assertRaisesRegex(WebNodeError, "not base64"):
                decode_base64(bad)


class _Redirect(http.server.BaseHTTPRequestHandler):
    target = ""
    hits: List[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class AddingTest(unittest.TestCase):
    def setUp(self) -> None:
        self.web = WebFixture(self)

    def test_path_that_is_not_a_regular_small_file_is_refused(self) -> None:
        paths = [self.web.dir]
        if hasattr(os, "mkfifo"):
            paths.append(os.path.join(self.web.dir, "fifo.torrent"))
            os.mkfifo(paths[-1])  # opening it would wait for a writer forever
        for path in paths:
            with self.assertRaisesRegex(WebNodeError, "not a regular file"):
                self.web.web.add_file(path)
        big = os.path.join(self.web.dir, "big.torrent")
        with open(big, "wb") as f:
            f.truncate(MAX_TORRENT_BYTES + 1)
        with self.assertRaisesRegex(WebNodeError, "larger than"):
            self.web.web.add_file(big)
        self.assertEqual(self.web.node.status_rows(), [])

    def test_url_redirect_is_not_followed(self) -> None:
        _Redirect.hits = []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
        self.addCleanup(server.server_close)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.shutdown)
        port = server.server_address[1]
        _Redirect.target = f"http://127.0.0.1:{port}/elsewhere.torrent"
        with self.assertRaisesRegex(WebNodeError, "cannot fetch"):
            self.web.web.add_url(f"http://127.0.0.1:{port}/given.torrent")
        self.assertEqual(_Redirect.hits, ["/given.torrent"])

    def test_url_is_fetched_and_added(self) -> None:
        data = self.web.torrent_bytes()

        class Serve(_Redirect):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serve)
        self.addCleanup(server.server_close)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        row = self.web.web.add_url(f"http://127.0.0.1:{server.server_address[1]}/t.torrent")
        self.assertEqual((row["name"], row["duplicate"]), ("notes.bin", False))


if __name__ == "__main__":
    unittest.main()
