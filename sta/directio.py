"""Writing pieces (or a multi-file piece's page-aligned parts) past the page cache
(``O_DIRECT``), where the platform and file system allow it, and the page-aligned buffers that
such writes need.

Why: a downloaded piece is assembled in memory, hashed there and written once; nothing reads it
back soon. A buffered write copies it into the page cache first, and that copy is the largest
CPU cost of a fast download: on the measured machine (a virtual machine that hands memory back
to its host) writing 1 GiB into the cache cost 0.2 to 2.7 CPU seconds, depending on whether the
cache's pages had been used recently, against 0.11 s written directly (the device copies the
data out of our buffer). A direct write also leaves the page cache to the data the user is
working with. libtorrent 1.x offered the same as a setting (``disable_os_cache``).

When it applies: Linux (``os.O_DIRECT``) on a local disk file system (``LOCAL_FILE_SYSTEMS``:
not tmpfs, which has nothing to bypass, nor network file systems, where a direct write is a
synchronous round trip), for a write of at least ``DIRECT_MIN_BYTES`` whose offset, length and
buffer address are multiples of ``ALIGNMENT``. Everything else (other platforms, small pieces,
the last piece of a torrent, a file system that refuses at open or at the first write) takes
the ordinary buffered write: ``DirectFile.write`` returns 0 and the caller goes on as before.
``pwrite_rest`` finishes any positional write that came back short, direct or not.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["ALIGNMENT", "DIRECT_MIN_BYTES", "LOCAL_FILE_SYSTEMS", "aligned_buffer",
           "is_aligned_buffer", "parse_mountinfo", "file_system_type", "direct_writes_possible",
           "DirectFile", "BufferPool", "pwrite_rest"]

log = logging.getLogger(__name__)

# Offsets, lengths and buffer addresses of a direct write must be multiples of the device's
# logical block size: 512 on most disks, 4096 on "4Kn" disks. A page (4096) suits both, and
# every piece of a torrent but the last is a multiple of it (pieces are powers of two of at
# least 16 KiB, BEP 3/52 practice).
ALIGNMENT = 4096
# File systems whose direct writes go to a local device. Left out on purpose: tmpfs (the data is
# in memory anyway), overlay and FUSE file systems (behaviour depends on what lies below), and
# NFS/CIFS (a direct write waits for the server on every call).
LOCAL_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs",
                                "bcachefs"})
# Smallest write sent past the cache. A direct write waits for the device: measured during a
# download here, 0.5 ms per 128 KiB piece against 0.1 ms through the cache, so pieces that small
# queue up for the disk (memory, and data a kill -9 throws away) for little gain; from 256 KiB
# (what `sta create` picks for a few hundred MiB) the saved copy outweighs the wait: ten 100 MiB
# torrents of 256 KiB pieces downloaded at 420 MB/s direct against 270-310 through the cache.
DIRECT_MIN_BYTES = 256 * 1024
MOUNTINFO = "/proc/self/mountinfo"
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def aligned_buffer(size: int) -> mmap.mmap:
    """A zeroed, writable buffer of ``size`` bytes starting on a page boundary (an anonymous
    private mapping; the memory is returned when it is closed or collected)."""
    if hasattr(mmap, "MAP_PRIVATE"):
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return mmap.mmap(-1, size)  # Windows: backed by the paging file, page aligned too


def is_aligned_buffer(data: Any) -> bool:
    """True for a buffer made by ``aligned_buffer`` (mappings start on a page boundary)."""
    return type(data) is mmap.mmap


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as octal escapes (\040).
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> List[Tuple[str, str]]:
    """(mount point, file system type) for every line of /proc/self/mountinfo's format."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if sep and len(fields) >= 5 and tail:
            mounts.append((_unescape(fields[4]), tail[0]))
    return mounts


def file_system_type(path: str, mountinfo: Optional[str] = None) -> Optional[str]:
    """The type of the file system holding ``path`` (``ext4``...), None when it cannot be told
    (no /proc: not Linux). The last mount wins when several sit on the same point."""
    if mountinfo is None:
        try:
            with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
                mountinfo = f.read()
        except OSError:
            return None
    real = os.path.realpath(path)
    best, best_len = None, -1
    for point, fs_type in parse_mountinfo(mountinfo):
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best_len:
            best, best_len = fs_type, len(point)
    return best


def pwrite_rest(fd: int, data: Any, offset: int, written: int) -> None:
    """Finish a positional write that wrote only ``written`` bytes of ``data`` (OSError when the
    system stops making progress)."""
    view = memoryview(data)
    while written < len(view):
        n = os.pwrite(fd, view[written:], offset + written)
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        written += n


def direct_writes_possible(folder: str) -> bool:
    """Can files under ``folder`` be written directly (platform and file system)?"""
    return bool(_O_DIRECT) and file_system_type(folder) in LOCAL_FILE_SYSTEMS


class DirectFile:
    """A second descriptor on one file, opened with ``O_DIRECT`` on the first aligned write.

    ``fd``, the file's ordinary descriptor, is reopened through /proc/self/fd, so the direct one
    names the same file whatever happens to the path later (the storage opened it without
    following links: safepath.py). Without it, ``path`` is opened (tests). ``write`` returns how
    many bytes it wrote directly: 0 means "not here, write it the usual way" (too small,
    unaligned, unsupported, or refused once and so switched off for this file). Thread safe.
    """

    def __init__(self, path: str, fd: Optional[int] = None,
                 enabled: Optional[bool] = None) -> None:
        self.path = path
        self._target = path if fd is None else "/proc/self/fd/%d" % fd
        self.enabled = direct_writes_possible(path) if enabled is None else enabled
        self._fd: Optional[int] = None
        self._open_lock = threading.Lock()

    def write(self, data: Any, offset: int, aligned: Optional[bool] = None) -> int:
        """Write ``data`` at ``offset`` directly if it can; ``aligned``: the caller vouches that
        ``data`` (a view into an ``aligned_buffer``) starts on a page boundary."""
        n = len(data)
        if (not self.enabled or n < DIRECT_MIN_BYTES or offset % ALIGNMENT or n % ALIGNMENT
                or not (is_aligned_buffer(data) if aligned is None else aligned)):
            return 0
        fd = self._fd if self._fd is not None else self._open()
        if fd is None:
            return 0
        try:
            return os.pwrite(fd, data, offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise  # a real write error (ENOSPC, EIO): the caller reports it
            self._switch_off("the file system refused a direct write")
            return 0

    def _open(self) -> Optional[int]:
        with self._open_lock:
            if self._fd is None and self.enabled:
                try:
                    self._fd = os.open(self._target,
                                       os.O_WRONLY | _O_DIRECT | getattr(os, "O_CLOEXEC", 0))
                except OSError as exc:
                    self._switch_off("cannot open it for direct writes: %s" % exc.strerror)
            return self._fd

    def _switch_off(self, why: str) -> None:
        log.debug("%s: %s; writing through the page cache", self.path, why)
        self.enabled = False

    def close(self) -> None:
        fd, self._fd = self._fd, None
        self.enabled = False
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


class BufferPool:
    """Aligned buffers by size, kept for reuse up to ``keep_bytes``: a new mapping costs a page
    fault per 4 KiB on first use, and unmapping one costs more again on a virtual machine (every
    core that ran one of our threads must drop it from its TLB), while a reused one costs
    nothing. ``trim``, called every second or so, gives back those that no one took since the
    call before, so an idle process holds none. Thread safe (one pool serves every session of a
    process)."""

    def __init__(self, keep_bytes: int) -> None:
        self._keep = keep_bytes
        self._free: Dict[int, List[mmap.mmap]] = {}
        self._lock = threading.Lock()
        self.kept_bytes = 0
        # The fewest bytes kept at any moment since the last trim: buffers that many bytes
        # worth were not needed in all that time.
        self._unused_bytes = 0

    def get(self, size: int) -> mmap.mmap:
        with self._lock:
            free = self._free.get(size)
            if free:
                self.kept_bytes -= size
                self._unused_bytes = min(self._unused_bytes, self.kept_bytes)
                return free.pop()
        return aligned_buffer(size)

    def put(self, buffer: Any) -> None:
        """Take back a buffer from ``get`` (nothing else may still use it)."""
        size = len(buffer)
        with self._lock:
            if self.kept_bytes + size <= self._keep:
                self._free.setdefault(size, []).append(buffer)
                self.kept_bytes += size
                return
        _close(buffer)

    def trim(self) -> int:
        """Close the buffers no one took since the previous call; returns the bytes freed."""
        closing = []
        with self._lock:
            excess = self._unused_bytes
            for size, free in self._free.items():
                while free and excess >= size:   # the longest unused first (get takes the last)
                    closing.append(free.pop(0))
                    excess -= size
            freed = sum(len(buffer) for buffer in closing)
            self.kept_bytes -= freed
            self._unused_bytes = self.kept_bytes
        for buffer in closing:
            _close(buffer)
        return freed

    def clear(self) -> None:
        with self._lock:
            buffers = [b for kept in self._free.values() for b in kept]
            self._free.clear()
            self.kept_bytes = self._unused_bytes = 0
        for buffer in buffers:
            _close(buffer)


def _close(buffer: mmap.mmap) -> None:
    try:
        buffer.close()
    except BufferError:  # a view of it still exists somewhere: the collector frees it
        pass
