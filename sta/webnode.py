"""What the web front ends (the page's API and Transmission's RPC) share: the node, seen from
HTTP threads.

``WebNode`` wraps a running ``node.Node`` and adds only what a web client needs on top of its
methods and status dictionaries: a default download folder that ``session-set`` may change,
Transmission's small integer ids (given in the order torrents are first seen, never reused while
the node runs), adding a torrent from bytes, a magnet link, a path on this machine or an http(s)
URL, each file's bytes held and a piece map drawn from the node's bitfield, and the rates of the
last minutes for the speed graph. ``NoticeLog`` takes the node's background notices when there
is no console: they are logged, echoed if asked, and kept for the page.

Adding never makes the node fetch from anywhere but what the user gave: a path is read as a
regular file, an URL is fetched without following redirects, and nothing else is looked up.
"""

from __future__ import annotations

import base64
import binascii
import collections
import logging
import os
import stat
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from . import httpget, magnet, metainfo, preflight
from .errors import describe_error
from .metainfo import Info
from .node import Node, NodeError

__all__ = ["WebNode", "WebNodeError", "NoticeLog", "SpeedHistory", "file_progress",
           "piece_cells", "decode_base64", "MAX_TORRENT_BYTES"]

log = logging.getLogger(__name__)

# The speed graph's step and span: one point every 2 s for 10 minutes (300 points), the span of
# qBittorrent's and Transmission-Qt's speed graphs at their default zoom.
SAMPLE_INTERVAL = 2.0
HISTORY_SECONDS = 600.0
# Notices the page can still show; older ones are in the log.
MAX_NOTICES = 100
# The piece map is drawn in at most this many cells, each the share of its pieces held: a phone's
# width in pixels, while a torrent of two million pieces stays a small answer.
MAX_PIECE_CELLS = 512
# A .torrent given by path or URL: metainfo's own bound on a torrent file.
MAX_TORRENT_BYTES = metainfo.MAX_TORRENT_SIZE
# An http(s) .torrent must answer within this; a tracker's hosted file is small and near.
URL_TIMEOUT = 30.0


class WebNodeError(Exception):
    """A web request cannot be done as asked; the message says why."""


class NoticeLog:
    """The node's notices without a console (node.NoticeSink): logged, passed to ``echo`` (the
    `web` command's terminal), and the last MAX_NOTICES kept, numbered, for the page."""

    def __init__(self, echo: Optional[Callable[[str], None]] = None) -> None:
        self._echo = echo
        self._lock = threading.Lock()
        self._kept: Deque[Tuple[int, float, str]] = collections.deque(maxlen=MAX_NOTICES)
        self._number = 0

    def notice(self, text: str) -> None:
        log.info("%s", text)
        with self._lock:
            self._number += 1
            self._kept.append((self._number, time.time(), text))
        if self._echo is not None:
            self._echo(text)

    def was_logged(self, message: str) -> bool:
        return False  # nothing else shows the engine's log lines to this node's user

    def since(self, number: int) -> List[Dict[str, Any]]:
        """Notices after ``number``, oldest first."""
        with self._lock:
            return [{"number": n, "time": t, "text": text} for n, t, text in self._kept
                    if n > number]


class SpeedHistory:
    """Download and upload rates of each torrent and of the node, one sample a step."""

    def __init__(self, span: float = HISTORY_SECONDS, step: float = SAMPLE_INTERVAL) -> None:
        self._lock = threading.Lock()
        self._points = max(1, int(span / step))
        self._series: Dict[str, Deque[Tuple[float, float, float]]] = {}

    def record(self, now: float, rows: Sequence[Dict[str, Any]],
               total: Tuple[float, float]) -> None:
        with self._lock:
            present = {"": total}
            present.update((r["info_hash"], (r["down_rate"], r["up_rate"])) for r in rows)
            for key in list(self._series):
                if key not in present:
                    del self._series[key]
            for key, (down, up) in present.items():
                series = self._series.setdefault(key, collections.deque(maxlen=self._points))
                series.append((now, float(down), float(up)))

    def series(self, key: str = "") -> List[List[float]]:
        """[time, down, up] points of one torrent (by info hash hex), or of the node ("")."""
        with self._lock:
            return [[round(t, 1), round(d), round(u)] for t, d, u in self._series.get(key, ())]


def file_progress(info: Info, bitfield: bytes) -> List[int]:
    """Bytes of each file (padding files included) inside the verified pieces."""
    size = info.piece_length

    def held(index: int) -> bool:
        return bool(bitfield[index >> 3] & (0x80 >> (index & 7))) if index >> 3 < len(
            bitfield) else False

    done = []
    for f in info.files:
        total = 0
        if f.length:
            end = f.offset + f.length
            for index in range(f.offset // size, (end - 1) // size + 1):
                if held(index):
                    total += min(end, (index + 1) * size) - max(f.offset, index * size)
        done.append(total)
    return done


def piece_cells(bitfield: bytes, count: int, cells: int = MAX_PIECE_CELLS) -> List[float]:
    """The piece map in at most ``cells`` cells, each the share (0 to 1) of its pieces held."""
    if count <= 0:
        return []
    bits = [bool(bitfield[i >> 3] & (0x80 >> (i & 7))) if i >> 3 < len(bitfield) else False
            for i in range(count)]
    cells = min(cells, count)
    shares = []
    for cell in range(cells):
        start, stop = cell * count // cells, (cell + 1) * count // cells
        shares.append(round(sum(bits[start:stop]) / (stop - start), 2))
    return shares


class WebNode:
    """A running node and what web clients add to it (see the module's docstring)."""

    def __init__(self, node: Node, folder: str, notices: Optional[NoticeLog] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.folder = os.path.abspath(folder)
        self.notices = notices or NoticeLog()
        self.history = SpeedHistory()
        self.started = clock()
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: Dict[str, int] = {}
        self._seen: Dict[str, float] = {}
        self._stop = threading.Event()
        self._sampler: Optional[threading.Thread] = None

    # -- the sampler -------------------------------------------------------------------------

    def start(self) -> None:
        """Sample the rates every SAMPLE_INTERVAL in a thread of its own."""
        self._sampler = threading.Thread(target=self._sample_loop, name="sta-web-rates",
                                         daemon=True)
        self._sampler.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(SAMPLE_INTERVAL * 2)

    def _sample_loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            try:
                self.sample()
            except NodeError as exc:  # a busy loop: skip one point
                log.debug("rates not sampled: %s", exc)

    def sample(self) -> None:
        rows = self.node.status_rows()
        stats = self.node.stats()
        self.history.record(self._clock(), rows, (stats["down_rate"], stats["up_rate"]))

    # -- torrents ----------------------------------------------------------------------------

    def rows(self) -> List[Dict[str, Any]]:
        """node.status_rows(), each with its Transmission ``id`` and ``seen``, when this front
        end first saw it (its "added" date: a torrent restored on start is seen at start)."""
        rows = self.node.status_rows()
        with self._lock:
            for row in rows:
                key = row["info_hash"]
                row["id"] = self._ids.setdefault(key, len(self._ids) + 1)
                row["seen"] = self._seen.setdefault(key, self._clock())
        return rows

    def find(self, key: str) -> Dict[str, Any]:
        """The row of one torrent by info hash hex (either case); WebNodeError if none."""
        for row in self.rows():
            if row["info_hash"] == key.lower():
                return row
        raise WebNodeError(f"no torrent with info hash {key[:40]!r} in this node")

    def detail(self, key: str) -> Dict[str, Any]:
        """One torrent's row with its files (bytes held each), peers, piece map and rates."""
        row = self.find(key)
        info_hash = bytes.fromhex(row["info_hash"])
        info, bitfield = self.node.pieces(info_hash)
        files: List[Dict[str, Any]] = []
        if info is not None:
            for f, done in zip(info.files, file_progress(info, bitfield)):
                if not f.pad:
                    files.append({"name": "/".join(f.path), "length": f.length, "done": done})
        count = info.num_pieces if info is not None else 0
        return dict(row, files=files, peers=self.node.peer_rows(info_hash),
                    piece_count=count, piece_size=info.piece_length if info else 0,
                    pieces=piece_cells(bitfield, count), bitfield=bitfield,
                    rates=self.history.series(row["info_hash"]))

    # -- adding ------------------------------------------------------------------------------

    def add_metainfo(self, data: bytes, folder: Optional[str] = None) -> Dict[str, Any]:
        """Add a .torrent's bytes; the row of the torrent, with "duplicate" True when it was
        already in the node (nothing is changed then)."""
        try:
            meta = metainfo.parse(data)
        except metainfo.MetainfoError as exc:
            raise WebNodeError(f"not a usable .torrent: {exc}") from None
        return self._add(meta, folder)

    def add_magnet(self, link: str, folder: Optional[str] = None) -> Dict[str, Any]:
        try:
            source = magnet.parse(link.strip())
        except magnet.MagnetError as exc:
            raise WebNodeError(f"bad magnet link: {exc}") from None
        return self._add(source, folder)

    def add_file(self, path: str, folder: Optional[str] = None) -> Dict[str, Any]:
        """Add the .torrent at ``path`` on this machine: a regular file, bounded in size."""
        try:
            # Checked before opening: opening a FIFO would wait for a writer forever.
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise WebNodeError(f"{path}: not a regular file")
            with open(path, "rb") as f:
                data = f.read(MAX_TORRENT_BYTES + 1)
        except OSError as exc:
            raise WebNodeError(describe_error(exc)) from None
        if len(data) > MAX_TORRENT_BYTES:
            raise WebNodeError(f"{path}: larger than {MAX_TORRENT_BYTES} bytes: not a .torrent")
        return self.add_metainfo(data, folder)

    def add_url(self, url: str, folder: Optional[str] = None) -> Dict[str, Any]:
        """Fetch a .torrent from an http(s) URL, that URL only (no redirect is followed)."""
        try:
            data = httpget.get(url, timeout=URL_TIMEOUT, max_size=MAX_TORRENT_BYTES,
                               max_redirects=0, accept="application/x-bittorrent")
        except httpget.HTTPGetError as exc:
            raise WebNodeError(f"cannot fetch {url}: {exc}") from None
        return self.add_metainfo(data, folder)

    def _add(self, source: Any, folder: Optional[str]) -> Dict[str, Any]:
        key = source.info_hash.hex()
        for row in self.rows():
            if row["info_hash"] == key:
                return dict(row, duplicate=True)
        target = os.path.abspath(folder) if folder else self.folder
        try:
            preflight.check_download_folder(target, "download-dir")
        except preflight.PreflightError as exc:
            raise WebNodeError(str(exc)) from None
        self.node.add(source, target, seed_only=False, peers=(), recheck=False, timeout=None)
        return dict(self.find(key), duplicate=False)

    def set_folder(self, folder: str) -> None:
        """The folder new torrents download into (Transmission's download-dir)."""
        if not folder or not os.path.isabs(folder):
            raise WebNodeError(f"download-dir {folder!r}: give an absolute path")
        self.folder = os.path.normpath(folder)


def decode_base64(text: str) -> bytes:
    """Base64 (Transmission's metainfo field) to bytes; WebNodeError when it is not."""
    try:
        return base64.b64decode("".join(text.split()).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise WebNodeError("metainfo is not base64") from None
