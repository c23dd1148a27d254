"""Making a .torrent from files on disk (BEP 3, 12, 19): walk, check names, hash, wrap.

``make_torrent`` collects the files (folders walked in sorted order, symbolic-link loops
skipped), checks that every name survives ``sta.metainfo``'s own parsing unchanged, hashes the
pieces and wraps the info dictionary with ``metainfo.encode_torrent``. ``hash_files`` reads files
in large piece-aligned chunks and hashes them on every core: hashlib releases the GIL on large
buffers, so a thread pool is enough. Errors are ``metainfo.MetainfoError``, as for a torrent that
fails to parse.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from bisect import bisect_right
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from . import bencode, metainfo
from .metainfo import MetainfoError

__all__ = ["make_torrent", "hash_files", "auto_piece_length", "default_name"]

log = logging.getLogger(__name__)

# Automatic piece length: aim for 1,000-2,000 pieces (a .torrent of 20-40 KB) between 16 KiB and
# 16 MiB, like the defaults of libtorrent and qBittorrent.
TARGET_MAX_PIECES = 2000
MAX_AUTO_PIECE_LENGTH = 16 * 1024 * 1024
# Hashing work is handed to threads in piece-aligned chunks of 8 MiB: large enough that the
# executor's per-task cost (tens of microseconds) disappears, small enough to spread a file over
# every core and to report progress often.
HASH_CHUNK_BYTES = 8 * 1024 * 1024
# A chunk is read in blocks of about 1 MiB (whole pieces), each hashed right away while it is
# still in the CPU cache; measured faster than reading the whole chunk first. One block buffer
# per thread bounds memory at threads x 1 MiB (or one piece when pieces are larger).
HASH_READ_BYTES = 1024 * 1024
# Chunks queued ahead per hashing thread: enough to keep every core busy, few enough that an
# interrupt stops quickly (Python 3.8's executor cannot cancel queued work).
HASH_QUEUE_PER_WORKER = 2

ProgressCallback = Callable[[int, int], None]


def auto_piece_length(total: int) -> int:
    """Smallest power of two from 16 KiB that cuts ``total`` into at most 2,000 pieces."""
    n = metainfo.MIN_PIECE_LENGTH
    while n < MAX_AUTO_PIECE_LENGTH and total > n * TARGET_MAX_PIECES:
        n *= 2
    return n


def default_name(paths: Sequence[str]) -> str:
    """Name for a torrent of several paths given without a name.

    The folder that holds them all when they share one (the files came from there, and a
    multi-file torrent is downloaded as a folder of that name), else the first path's stem.
    """
    parents = {os.path.dirname(os.path.abspath(p)) for p in paths}
    if len(parents) == 1:
        folder = os.path.basename(parents.pop())
        if folder:
            return folder
    first = os.path.basename(os.path.abspath(paths[0]))
    return os.path.splitext(first)[0] or first


def make_torrent(paths: Sequence[str], trackers: metainfo.TrackerTiers = (),
                 piece_length: Optional[int] = None, name: Optional[str] = None,
                 comment: Optional[str] = None, private: bool = False,
                 web_seeds: Iterable[str] = (), progress: Optional[ProgressCallback] = None,
                 workers: Optional[int] = None, created_by: Optional[str] = metainfo.CREATED_BY,
                 creation_date: Optional[int] = None,
                 exclude: Iterable[str] = ()) -> bytes:
    """Make a .torrent of one file, one folder, or several paths (a multi-file torrent).

    Folders are walked in sorted order, hidden files included; symbolic links are followed except
    those that lead back into a folder being walked (a loop); sockets, pipes and devices are
    skipped. Nothing that depends on time goes into the info dictionary, so the same files give
    the same info hash. ``exclude`` lists paths to leave out (the .torrent being written).
    ``progress(done_bytes, total_bytes)`` is called as hashing goes. ``creation_date`` defaults
    to now.
    """
    if not paths:
        raise MetainfoError("nothing to share: no file or folder given")
    excluded = {os.path.realpath(p) for p in exclude}
    torrent_name, multi, entries = _collect(list(paths), name, excluded)
    total = sum(size for _, _, size in entries)
    if total == 0:
        raise MetainfoError("nothing to share: every file is empty")
    if piece_length is None:
        piece_length = auto_piece_length(total)
    metainfo.check_piece_length(piece_length)

    def build(pieces: bytes) -> bytes:
        info: Dict[bytes, Any] = {b"name": torrent_name, b"piece length": piece_length,
                                  b"pieces": pieces}
        if multi:
            info[b"files"] = [{b"length": size, b"path": list(parts)}
                              for parts, _, size in entries]
        else:
            info[b"length"] = total
        if private:
            info[b"private"] = 1
        return bencode.encode(info)

    # Check names and sizes before spending time on hashing.
    placeholder = metainfo.parse_info(build(bytes(20 * -(-total // piece_length))))
    for entry, (parts, ospath, _) in zip(placeholder.files, entries):
        expected = ((torrent_name,) + parts) if multi else (torrent_name,)
        if entry.path != expected:
            raise MetainfoError(f"cannot share {ospath!r}: its name is not portable "
                                f"(a downloader would store it as {'/'.join(entry.path)!r})")
    pieces = hash_files([(ospath, size) for _, ospath, size in entries], piece_length,
                        progress=progress, workers=workers)
    return metainfo.encode_torrent(build(pieces), trackers, url_list=web_seeds, comment=comment,
                          created_by=created_by,
                          creation_date=int(time.time()) if creation_date is None
                          else creation_date)


def _collect(paths: List[str], name: Optional[str],
             excluded: set) -> Tuple[str, bool, List[Tuple[Tuple[str, ...], str, int]]]:
    """Return (torrent name, multi-file?, [(relative parts, os path, size)])."""
    for p in paths:
        if not os.path.exists(p):
            raise MetainfoError(f"no such file or folder: {p}")
    if len(paths) == 1 and not os.path.isdir(paths[0]):
        p = paths[0]
        if not os.path.isfile(p):
            raise MetainfoError(f"not a regular file or folder: {p}")
        return name or _utf8_name(p), False, [((), p, os.path.getsize(p))]
    entries: List[Tuple[Tuple[str, ...], str, int]] = []
    if len(paths) == 1:
        torrent_name = name or _utf8_name(paths[0])
        _walk(paths[0], (), entries, excluded, set())
    else:
        torrent_name = name or default_name(paths)
        tops = set()
        for p in paths:
            top = _utf8_name(p)
            if top in tops:
                raise MetainfoError(f"two paths are both named {top!r}; "
                                    "put them in a folder and share the folder")
            tops.add(top)
            if os.path.isdir(p):
                _walk(p, (top,), entries, excluded, set())
            elif os.path.isfile(p):
                entries.append(((top,), p, os.path.getsize(p)))
            else:
                raise MetainfoError(f"not a regular file or folder: {p}")
    if not entries:
        raise MetainfoError("nothing to share: no files in " + ", ".join(paths))
    entries.sort(key=lambda e: e[0])
    return torrent_name, True, entries


def _walk(folder: str, prefix: Tuple[str, ...], out: List[Tuple[Tuple[str, ...], str, int]],
          excluded: set, active: set) -> None:
    st = os.stat(folder)
    key = (st.st_dev, st.st_ino)
    if key in active:
        log.warning("skipping %s: a symbolic link loop", folder)
        return
    if len(prefix) >= metainfo.MAX_PATH_DEPTH:
        raise MetainfoError(f"{folder}: folders nested deeper than "
                            f"{metainfo.MAX_PATH_DEPTH} levels")
    active.add(key)
    try:
        with os.scandir(folder) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            # realpath costs a system call per path component: only for a name that may match
            if excluded and any(item.name == os.path.basename(x) for x in excluded) \
                    and os.path.realpath(item.path) in excluded:
                continue
            if item.is_dir():
                _walk(item.path, prefix + (_utf8_name(item.path),), out, excluded, active)
            elif item.is_file():
                out.append((prefix + (_utf8_name(item.path),), item.path, item.stat().st_size))
                if len(out) > metainfo.MAX_FILES:
                    raise MetainfoError(f"more than {metainfo.MAX_FILES} files")
            elif item.is_symlink():
                log.warning("skipping %s: a broken symbolic link", item.path)
            else:
                log.warning("skipping %s: not a regular file", item.path)
    finally:
        active.discard(key)


def _utf8_name(path: str) -> str:
    """The last part of ``path``, which must be valid UTF-8 to go into a torrent (BEP 3)."""
    part = os.path.basename(os.path.abspath(path))
    try:
        part.encode("utf-8")
    except UnicodeEncodeError:
        raise MetainfoError(f"{path!r}: the file name is not valid UTF-8") from None
    return part


def hash_files(files: Sequence[Tuple[Optional[str], int]], piece_length: int,
               progress: Optional[ProgressCallback] = None,
               workers: Optional[int] = None) -> bytes:
    """SHA-1 of every piece of the files laid end to end, hashed on ``workers`` threads.

    Each task covers one piece-aligned chunk of HASH_CHUNK_BYTES (crossing file boundaries as
    needed). It reads it in blocks of about HASH_READ_BYTES into its thread's own buffer and
    hashes each block through a memoryview while it is still in the CPU cache: no copy after the
    read. ``files`` are (path, expected size), path None for a pad file (zeros); a file that got
    shorter is an error.
    """
    total = sum(size for _, size in files)
    starts: List[int] = []
    pos = 0
    for _, size in files:
        starts.append(pos)
        pos += size
    workers = workers or os.cpu_count() or 1
    chunk = max(1, HASH_CHUNK_BYTES // piece_length) * piece_length
    block = max(1, HASH_READ_BYTES // piece_length) * piece_length
    num_chunks = -(-total // chunk)
    local = threading.local()

    def hash_chunk(index: int) -> bytes:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = memoryview(bytearray(block))
        start = index * chunk
        end = min(total, start + chunk)
        sha1 = hashlib.sha1
        digests: List[bytes] = []
        handles: Dict[Optional[str], Any] = {}
        try:
            for at in range(start, end, block):
                n = min(block, end - at)
                _read_range(files, starts, at, n, buf, handles)
                digests.extend(sha1(buf[p:min(p + piece_length, n)]).digest()
                               for p in range(0, n, piece_length))
        finally:
            for f in handles.values():
                f.close()
        return b"".join(digests)

    out: List[bytes] = []
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sta-hash") as pool:
        pending: deque = deque()
        next_chunk = 0
        while next_chunk < num_chunks or pending:
            while next_chunk < num_chunks and len(pending) < workers * HASH_QUEUE_PER_WORKER:
                pending.append(pool.submit(hash_chunk, next_chunk))
                next_chunk += 1
            future: Future = pending.popleft()
            try:
                out.append(future.result())
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
            done = min(total, done + chunk)
            if progress is not None:
                progress(done, total)
    return b"".join(out)


def _read_range(files: Sequence[Tuple[Optional[str], int]], starts: List[int], start: int,
                length: int, buf: memoryview, handles: Dict[Optional[str], Any]) -> None:
    """Fill ``buf[:length]`` with the torrent bytes from ``start``, file after file.

    ``handles`` keeps files open between calls of one task (the caller closes them).
    """
    i = bisect_right(starts, start) - 1
    filled = 0
    while filled < length:
        path, size = files[i]
        within = start + filled - starts[i]
        want = min(size - within, length - filled)
        if want > 0 and path is None:  # a BEP 47 pad file: zeros, never on disk
            buf[filled:filled + want] = bytes(want)
            filled += want
        elif want > 0:
            f = handles.get(path)
            if f is None:
                for old in handles.values():  # one open file per task is enough
                    old.close()
                handles.clear()
                f = handles[path] = open(path, "rb", buffering=0)
            f.seek(within)
            while want > 0:
                n = f.readinto(buf[filled:filled + want])
                if not n:
                    raise MetainfoError(f"{path} changed while it was being hashed "
                                        "(it is shorter now)")
                filled += n
                want -= n
        i += 1
