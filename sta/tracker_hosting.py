"""Hosted .torrent files: the logic of ``POST /torrents``, ``GET /torrents`` and
``GET /torrents/<info hash>.torrent`` over a ``TrackerStore``, without sockets.

Parsing an upload is the most expensive thing a client can ask of the tracker (a 9 MiB torrent
of 355,000 files took 6.6 s of CPU and 344 MiB), so it is bounded before it starts: uploads per
address, files per torrent (counted in the raw bytes before any decoding), and how many parse
at once. The first upload of an info hash is kept; a later one never replaces its trackers,
web seeds or comment.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Dict, Tuple

from sta import tracker_pages
from sta.tracker_db import HostedTorrent, TrackerDbError, TrackerStore
from sta.tracker_limits import RateLimit, address_group

__all__ = ["TorrentHosting", "Response", "text_response", "json_response", "MAX_HOSTED_FILES",
           "MAX_PARSES_AT_ONCE", "UPLOADS_BURST", "UPLOADS_PER_MINUTE", "LIST_PAGE",
           "MAX_LIST_PAGE"]

# (HTTP status, content type, body): what every request of the tracker is answered with.
Response = Tuple[int, str, bytes]

# Files in a hosted torrent. Parsing costs about 19 us and 1 KiB per file, so 10,000 files are
# at most 0.2 s and 10 MiB. Torrents with more files are still tracked (announces work for any
# info hash); they are only not stored here.
MAX_HOSTED_FILES = 10_000
# Each file of a torrent (BEP 3) is a dictionary with a "path" key; counting that key in the raw
# bytes is a C-speed upper bound on the number of files, checked before anything is decoded.
_PATH_KEY = b"4:path"

# Uploads parsed at the same time; the others wait for their turn up to PARSE_WAIT_SECONDS and
# are then told to try again. One parse at a time leaves the other core to announces.
MAX_PARSES_AT_ONCE = 1
PARSE_WAIT_SECONDS = 5.0

# Uploads one address (group) may make: a class behind one NAT address uploading its torrents
# at once, then one every three seconds.
UPLOADS_BURST = 20
UPLOADS_PER_MINUTE = 20

# GET /torrents lists this many hosted torrents unless ?limit= asks for more, and never more
# than MAX_LIST_PAGE; ?offset= pages on. A page shorter than asked for is the last one.
LIST_PAGE = 100
MAX_LIST_PAGE = 1000


def text_response(status: int, message: str) -> Response:
    return status, "text/plain; charset=utf-8", (message + "\n").encode()


def json_response(status: int, value: Any) -> Response:
    return status, "application/json", json.dumps(value).encode()


class TorrentHosting:
    """The hosted-torrent requests. Thread-safe; takes its clock from the store."""

    def __init__(self, store: TrackerStore) -> None:
        self.store = store
        self._uploads = RateLimit(UPLOADS_BURST, UPLOADS_PER_MINUTE, store.clock)
        self._uploads_lock = threading.Lock()
        self._parsing = threading.BoundedSemaphore(MAX_PARSES_AT_ONCE)

    def upload(self, body: bytes, client_ip: str, base: str) -> Response:
        """POST /torrents: store a .torrent; 201 when new, 200 when hosted already."""
        group = address_group(client_ip)
        with self._uploads_lock:
            allowed = self._uploads.allow(group)
            wait = 0.0 if allowed else self._uploads.wait_seconds(group)
        if not allowed:
            return _error(429, f"too many uploads from your address; try again in {wait:.0f} s")
        if body.count(_PATH_KEY) > MAX_HOSTED_FILES:
            return _too_many_files()
        if not self._parsing.acquire(timeout=PARSE_WAIT_SECONDS):
            return _error(503, "the tracker is busy with other uploads; try again")
        from sta import metainfo  # imported here: only this request needs the parser
        try:
            meta = metainfo.parse(body)
        except (metainfo.MetainfoError, ValueError) as exc:
            return _error(400, f"not a valid .torrent file: {exc}")
        finally:
            self._parsing.release()
        if len(meta.info.files) > MAX_HOSTED_FILES:
            return _too_many_files()
        try:
            hosted, created = self.store.add_hosted(meta.info_hash, meta.info.name,
                                                    meta.info.length, body)
        except TrackerDbError as exc:
            return _error(503, str(exc))
        reply = self.describe(hosted, base)
        if not created:
            reply["note"] = "already hosted: the first upload is kept"
        return json_response(201 if created else 200, reply)

    def listing(self, offset: int, limit: int, base: str) -> Response:
        """GET /torrents: one page of hosted torrents, in upload order."""
        limit = max(0, min(limit, MAX_LIST_PAGE))
        return json_response(200, [self.describe(h, base)
                                   for h in self.store.list_hosted(offset, limit)])

    def download(self, hex_hash: bytes) -> Response:
        """GET /torrents/<40 hex digits>.torrent: the stored file."""
        try:
            info_hash = bytes.fromhex(hex_hash.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            info_hash = b""
        if len(info_hash) != 20:
            return text_response(400, "expected /torrents/<40 hex digits>.torrent")
        try:
            data = self.store.hosted_data(info_hash)
        except TrackerDbError as exc:
            return text_response(503, str(exc))
        if data is None:
            return text_response(404, "no such torrent on this tracker")
        return 200, "application/x-bittorrent", data

    @staticmethod
    def describe(hosted: HostedTorrent, base: str) -> Dict[str, Any]:
        """What the tracker says about a hosted torrent (JSON-ready)."""
        hex_hash = hosted.info_hash.hex()
        url = f"{base}/torrents/{hex_hash}.torrent"
        return {"info_hash": hex_hash, "name": hosted.name, "size": hosted.size, "url": url,
                "magnet": tracker_pages.magnet(hosted.info_hash, hosted.name,
                                               f"{base}/announce", url)}


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def _too_many_files() -> Response:
    return _error(413, f"more than {MAX_HOSTED_FILES} files: too many to host here (the "
                       f"tracker still tracks the torrent; share the .torrent another way)")
