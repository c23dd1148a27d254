"""Metadata for magnet links from a URL (``xs=``), and keeping fetched metadata as a .torrent.

``fetch_torrent_from_source`` is blocking I/O (run it in a thread): GET an ``xs=`` URL (a tracker
hosting the .torrent) through ``sta.httpget`` and return the torrent once its info hash is the
magnet's, the same check ``sta.metadata`` makes of a dictionary fetched from peers.
``save_torrent`` writes a fetched dictionary as a normal .torrent, so a restart does not fetch it
again. ``upload_torrent`` is the other direction: `create --upload` posts a new .torrent to the
tracker, which then hosts it for magnets that carry ``xs=``. Errors are
``sta.ut_metadata.MetadataError``, whichever way the metadata came.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import time
from typing import Optional

from . import __version__, httpget, metainfo
from .magnet import Magnet
from .ut_metadata import MetadataError
from .resume import ResumeError, write_atomically
from .trackerproto import display_url

__all__ = ["fetch_torrent_from_source", "save_torrent", "saved_torrent_path", "upload_torrent"]

# A hosted .torrent is read whole: the same bound metainfo.py puts on a .torrent file.
MAX_SOURCE_SIZE = metainfo.MAX_TORRENT_SIZE
# Seconds allowed for a whole xs= download when the caller does not say.
DEFAULT_SOURCE_TIMEOUT = 30.0
# Characters of a short error body quoted in a message ("no such torrent on this tracker").
MAX_QUOTED_BODY = 120


def fetch_torrent_from_source(url: str, info_hash: bytes,
                              timeout: float = DEFAULT_SOURCE_TIMEOUT,
                              ssl_context: Optional[ssl.SSLContext] = None) -> metainfo.Metainfo:
    """GET the .torrent at an ``xs=`` URL and return it, once its info hash is the magnet's: its
    info dictionary completes the magnet, and its trackers find peers for a magnet that names
    none itself. Blocking: run it in a thread. Raises MetadataError naming the URL (without its
    query, which may hold a passkey)."""
    shown = display_url(url)
    try:
        body = httpget.get(url, timeout=timeout, max_size=MAX_SOURCE_SIZE,
                           max_redirects=httpget.DEFAULT_MAX_REDIRECTS,
                           deadline=time.monotonic() + timeout, ssl_context=ssl_context,
                           accept="application/x-bittorrent, */*")
    except httpget.HTTPGetError as exc:
        raise MetadataError(f"source {shown}: {_describe(exc)}") from None
    try:
        meta = metainfo.parse(body)
    except metainfo.MetainfoError as exc:
        raise MetadataError(f"source {shown}: {exc}") from None
    if meta.info_hash != info_hash:
        raise MetadataError(f"source {shown}: the torrent there has info hash "
                            f"{meta.info_hash.hex()}, not the magnet's {info_hash.hex()}")
    return meta


def _describe(exc: httpget.HTTPGetError) -> str:
    """A failed GET in the words of a hosted .torrent."""
    if exc.kind == httpget.STATUS:
        return exc.reason + _quote_body(exc.body)
    if exc.kind == httpget.SCHEME:
        return "only http and https sources are supported"
    if exc.kind == httpget.REDIRECT and exc.scheme == "http":
        return "refusing a redirect from https to http"
    if exc.kind == httpget.TOO_LARGE and exc.size is not None:
        return (f"answer of {exc.size} bytes is over the {exc.limit}-byte limit for a "
                ".torrent")
    if exc.kind == httpget.TOO_LARGE:
        return f"answer is over the {exc.limit}-byte limit for a .torrent"
    if isinstance(exc.cause, http.client.HTTPException):
        return f"bad HTTP answer ({type(exc.cause).__name__})"
    return exc.reason


def _quote_body(body: bytes) -> str:
    """A short plain-text error body, quoted after the status ("no such torrent")."""
    text = body[:MAX_QUOTED_BODY * 4].decode("utf-8", "replace").strip()
    line = text.splitlines()[0].strip() if text else ""
    if not line or len(line) > MAX_QUOTED_BODY or not line.isprintable() or line.startswith("<"):
        return ""
    return f": {line}"


def saved_torrent_path(state_dir: str, info_hash: bytes) -> str:
    """Where a fetched .torrent is kept: beside the resume file, ``<state_dir>/<hex>.torrent``."""
    return os.path.join(state_dir, info_hash.hex() + ".torrent")


def save_torrent(info_raw: bytes, magnet: Magnet, path: str) -> bytes:
    """Write a normal .torrent around a fetched info dictionary, atomically, and return its
    bytes. Trackers come from the magnet's ``tr=`` (one tier each, as libtorrent adds them) and
    web seeds from its ``ws=``."""
    if hashlib.sha1(info_raw).digest() != magnet.info_hash:
        raise MetadataError("the info dictionary does not match the magnet's info hash")
    try:
        data = metainfo.encode_torrent(info_raw, trackers=magnet.trackers,
                                       url_list=magnet.web_seeds, created_by=metainfo.CREATED_BY)
    except metainfo.MetainfoError as exc:
        raise MetadataError(f"cannot make a .torrent of the fetched metadata: {exc}") from None
    try:
        write_atomically(path, data)
    except ResumeError as exc:
        raise MetadataError(str(exc)) from None
    return data


# Uploading a .torrent to the tracker is one small POST; 30 s covers a slow lab network without
# leaving a user staring at a hung command.
UPLOAD_TIMEOUT = 30.0
# The tracker answers an upload with a short JSON document; more than this is not that answer.
MAX_UPLOAD_REPLY = 64 * 1024


def upload_torrent(announce: str, data: bytes, info_hash: bytes,
                   ssl_context: Optional[ssl.SSLContext] = None) -> str:
    """POST the .torrent to ``<tracker base>/torrents``; return the URL it can be fetched from."""
    import urllib.error  # here, not at the top: it costs ~20 ms of start-up for every command
    import urllib.request
    if not announce.lower().startswith(("http://", "https://")):
        raise MetadataError(f"cannot upload to {announce}: not an HTTP tracker")
    base = announce.split("?", 1)[0]
    if base.endswith("/announce"):
        base = base[:-len("/announce")]
    url = base.rstrip("/") + "/torrents"
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/x-bittorrent",
                                              "User-Agent": f"STA/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=UPLOAD_TIMEOUT,
                                    context=ssl_context) as reply:
            body = reply.read(MAX_UPLOAD_REPLY)
    except urllib.error.HTTPError as exc:
        detail = exc.read(MAX_UPLOAD_REPLY).decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        detail = " ".join(str(detail).split())[:200]
        raise MetadataError(f"upload to {url} failed: HTTP {exc.code}"
                                     + (f": {detail}" if detail else "")) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MetadataError(f"upload to {url} failed: {reason}") from None
    try:
        source = json.loads(body.decode("utf-8")).get("url")
    except (ValueError, AttributeError):
        source = None
    return source if isinstance(source, str) and source else \
        f"{base.rstrip('/')}/torrents/{info_hash.hex()}.torrent"
