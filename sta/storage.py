"""Pieces <-> files: block reads and writes, piece verification, full checks and resume state.

A torrent's data is one byte string cut into pieces (BEP 3); its files are consecutive ranges of
that string. ``FileStorage`` maps a block (piece index, offset, length) onto one or more file ranges
(the geometry of ``sta.piecemap``) and reads or writes them in place with ``os.pread``/``os.pwrite``
(seek + read/write under a per-handle lock where the platform has no positional I/O, i.e.
Windows), through a small cache of open file descriptors.

Safety rules (a crash, ``kill -9`` or power cut must never cost verified data):
- files are written in place, extended sparsely up to their final size (never filled with zeros,
  never truncated to a smaller size, never opened with O_TRUNC);
- a piece counts only once it was hashed (``verify_piece``) and recorded (``mark_verified``); after
  that ``write_block`` refuses to touch it;
- ``save`` fsyncs the data files before it records their verified pieces in the resume file, so the
  resume file never claims data that is not on disk yet (see ``sta.resume`` for the atomic write).

``sta.memstorage.MemoryStorage`` has the same interface over a bytearray, for engine tests.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Iterable, Optional

from sta.bitfield import Bitfield
from sta.piecemap import Data, PieceMap, StorageError
from sta.resume import (MISSING, STATE_DIR_NAME, Progress, ResumeError, ResumeState,
                        plan_restore, remove_stale_temporaries, resume_path, stat_file)

if TYPE_CHECKING:  # only for annotations: any object with Info's fields works (tests use one)
    from sta.metainfo import Info

__all__ = ["StorageError", "FileStorage", "MAX_OPEN_FILES", "Progress"]

log = logging.getLogger(__name__)

# Open file descriptors kept per torrent. A torrent can have tens of thousands of files, the
# default soft limit is 1024 on Linux and 256 on macOS, and the same process also needs sockets for
# hundreds of peers and other torrents. libtorrent's default file pool holds 40 handles for a whole
# session; 32 per torrent keeps a few torrents well inside macOS's 256 while pieces, which touch
# one or two files at a time, still find their handle open.
MAX_OPEN_FILES = 32

# Bytes read per hashing step. Bounds memory per checking thread whatever the piece length (pieces
# of 16 MiB and more exist) while keeping per-call overhead negligible next to SHA-1 work
# (measured: 1 MiB and 4 MiB reads hash at the same speed).
HASH_CHUNK = 4 * 1024 * 1024

# Positional I/O lets concurrent readers and the writer share one descriptor without a lock.
_HAVE_PIO = hasattr(os, "pwrite") and hasattr(os, "pread")
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation

# What a user can do about each failure; anything else gets "cannot write <path>: <reason>".
_NO_SPACE = ("no space left on device writing {path}: free some space and run the same command "
             "again")
_NO_ACCESS = ("permission denied to {verb} {path}: choose another output folder or fix the "
              "permissions of this one")
_ERROR_MESSAGES = {
    errno.ENOSPC: _NO_SPACE,
    getattr(errno, "EDQUOT", errno.ENOSPC): _NO_SPACE,
    errno.EACCES: _NO_ACCESS,
    errno.EPERM: _NO_ACCESS,
    errno.EROFS: "cannot write {path}: the file system is read-only; choose another output folder",
    errno.ENOTDIR: ("cannot create {path}: part of its folder path is a file, not a folder; move "
                    "that file away or choose another output folder"),
    errno.EISDIR: "cannot use {path}: a folder has that name; move it away or choose another "
                  "output folder",
    errno.EMFILE: "too many open files opening {path}: raise the open-file limit (ulimit -n) or "
                  "run fewer torrents at once",
}


class _Handle:
    __slots__ = ("fd", "writable", "users", "stale", "lock")

    def __init__(self, fd: int, writable: bool) -> None:
        self.fd = fd
        self.writable = writable
        self.users = 0
        self.stale = False  # evicted or replaced: close when the last user releases it
        self.lock = threading.Lock()  # serialises seek+read/write where there is no pread/pwrite


class FileStorage(PieceMap):
    """A torrent's pieces stored in its files under ``root`` (``root/<FileEntry.path...>``).

    ``readonly=True`` is for seeding complete data: files are opened read-only and never created,
    extended or written. Otherwise files are opened read-only until the first write to them.
    ``state_dir`` holds the resume file (default ``root/.sta``).

    Thread safety: write_block and read_block may run on the event loop while verify_piece, check
    and save run in worker threads. close() must be called when no other call is running.
    """

    def __init__(self, info: Info, root: str, *, readonly: bool = False,
                 state_dir: Optional[str] = None, max_open_files: int = MAX_OPEN_FILES) -> None:
        super().__init__(info)
        self.root = root
        self.readonly = readonly
        self.state_dir = state_dir if state_dir is not None else os.path.join(root, STATE_DIR_NAME)
        self.state_path = resume_path(self.state_dir, info.info_hash)
        self._paths = [os.path.join(root, *f.path) for f in info.files]
        self._max_open = max(1, max_open_files)
        self._handles: "OrderedDict[int, _Handle]" = OrderedDict()
        self._cache_lock = threading.Lock()
        self._unsynced: set = set()  # files written since the last save
        self._created_empty = False
        self._closed = False
        self._pio = _HAVE_PIO
        # Single-file torrents skip the cache and segment lookup: write_block goes straight to
        # os.pwrite at index * piece_length + begin once the file is open for writing.
        self._single = len(info.files) == 1 and not self._f_pad[0]
        self._fast_fd: Optional[int] = None

    # -- public I/O ---------------------------------------------------------------------------

    def file_path(self, file_index: int) -> str:
        return self._paths[file_index]

    @property
    def open_files(self) -> int:
        """Descriptors currently open (bounded by max_open_files, plus any in use right now)."""
        with self._cache_lock:
            return len(self._handles)

    def write_block(self, index: int, begin: int, data: Data) -> None:
        """Write a block of piece ``index`` at ``begin``; refuses pieces already verified."""
        n = len(data)
        if (not 0 <= index < self._num_pieces or begin < 0 or n <= 0
                or begin + n > (self._last_size if index == self._last else self._piece_length)):
            self._check_block(index, begin, n)
        if index in self._verified:
            raise StorageError(f"refusing to overwrite piece {index}: it is already verified")
        fd = self._fast_fd
        if fd is not None:
            offset = index * self._piece_length + begin
            try:
                written = os.pwrite(fd, data, offset)
                if written != n:
                    self._pwrite_rest(fd, data, offset, written)
            except OSError as exc:
                raise self._error(0, exc, writing=True) from None
            self._unsynced.add(0)
            return
        if self.readonly:
            raise StorageError("storage is read-only (seeding): blocks cannot be written")
        if self._closed:
            raise StorageError("storage is closed")
        if not self._created_empty:
            self._create_empty_files()
        mv = memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        for fi, foff, boff, length in self._segments(index, begin, n):
            if self._f_pad[fi]:
                continue  # BEP 47: padding is never stored; its bytes are zeros by definition
            self._write_at(fi, mv[boff:boff + length], foff)

    def read_block(self, index: int, begin: int, length: int) -> bytes:
        """The bytes of a block as stored (zeros for padding files)."""
        self._check_block(index, begin, length)
        if self._closed:
            raise StorageError("storage is closed")
        parts = []
        for fi, foff, _boff, n in self._segments(index, begin, length):
            if self._f_pad[fi]:
                parts.append(bytes(n))
                continue
            try:
                data = self._read_at(fi, n, foff)
            except OSError as exc:
                raise self._error(fi, exc, writing=False) from None
            if len(data) < n:
                raise StorageError(f"{self._paths[fi]} is shorter than expected: it was changed "
                                   "outside sta; check the data again")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def verify_piece(self, index: int) -> bool:
        """Read piece ``index`` back and compare its SHA-1 (thread-safe; run it off the loop)."""
        self._check_index(index)
        h = hashlib.sha1()
        for fi, foff, _boff, n in self._piece_segments(index):
            if self._f_pad[fi]:
                h.update(bytes(n))
                continue
            pos = 0
            while pos < n:
                want = min(HASH_CHUNK, n - pos)
                try:
                    data = self._read_at(fi, want, foff + pos)
                except OSError as exc:
                    log.debug("piece %d: cannot read %s: %s", index, self._paths[fi], exc)
                    return False
                if len(data) < want:
                    return False
                h.update(data)
                pos += want
        return h.digest() == self.info.piece_hash(index)

    # -- resume state -------------------------------------------------------------------------

    def restore(self, recheck: bool = False, progress: Optional[Progress] = None,
                workers: Optional[int] = None) -> Bitfield:
        """Load the resume file and re-hash only what it cannot vouch for; returns the record.

        Pieces touching a file whose size or mtime differs from the recorded one (changed,
        truncated, missing, or written after the last save) are hashed again; the others are
        trusted. No resume file, an unusable one, or ``recheck=True`` -> full check of the data
        that exists (so data already in place, e.g. the original files of a seed, is found).
        """
        remove_stale_temporaries(self.state_path)
        state = None
        if not recheck:
            try:
                state = ResumeState.load(self.state_path, self.info.info_hash, self._piece_length,
                                         self._num_pieces, len(self._paths))
            except ResumeError as exc:
                log.warning("%s: ignoring %s: %s; checking all data", self.info.name,
                            self.state_path, exc)
        if state is None:
            return self.check(progress, workers)
        stats = [MISSING if pad else stat_file(p) for p, pad in zip(self._paths, self._f_pad)]
        trusted, to_check, changed = plan_restore(state, stats, self.info.files,
                                                  self._piece_length)
        log.info("%s: resume: %d pieces trusted, %d files changed, %d pieces to re-check",
                 self.info.name, trusted.count, len(changed), len(to_check))
        if to_check:
            good = self._check_pieces(to_check, progress, workers)
            lost = sum(1 for i in to_check if i in state.verified and i not in good)
            if lost:
                log.warning("%s: %d pieces recorded as verified failed the check: their files "
                            "changed outside sta; they will be downloaded again", self.info.name,
                            lost)
            trusted = trusted | good
        with self._lock:
            self._verified = trusted
            self._unsaved = 0
            self._state_stale = bool(changed)
        return trusted

    def save(self) -> None:
        """Record the verified pieces in the resume file (blocking: fsyncs; run it off the loop).

        Order matters for crash safety: first snapshot the verified pieces, then fsync every file
        written since the last save, then take each file's size and mtime, then replace the resume
        file atomically. A piece in the snapshot had all its blocks written before it was verified,
        so the fsync covers it: the resume file never records a piece whose data could still be
        lost by ``kill -9`` or a power cut, and the recorded mtime is the one after our writes.
        In read-only mode a failure to write the file is only logged (seeding works without it).
        """
        with self._lock:
            snapshot = self._verified.copy()
            marks = self._unsaved
            was_stale = self._state_stale
            self._state_stale = False
        unsynced, self._unsynced = self._unsynced, set()
        try:
            self._fsync_files(unsynced)
        except StorageError:
            self._unsynced |= unsynced
            self._state_stale = self._state_stale or was_stale
            raise
        stats = [MISSING if self._f_pad[fi] else stat_file(p) for fi, p in enumerate(self._paths)]
        state = ResumeState(self.info.info_hash, self._piece_length, snapshot, stats)
        try:
            state.save(self.state_path)
        except ResumeError as exc:
            self._state_stale = self._state_stale or was_stale
            if self.readonly:
                log.warning("%s: %s; the data will be checked again on the next start",
                            self.info.name, exc)
                return
            raise StorageError(str(exc)) from None
        with self._lock:
            self._unsaved -= marks

    def close(self) -> None:
        """Close every file (does not save: call save() first to keep the progress)."""
        self._closed = True
        self._fast_fd = None
        with self._cache_lock:
            handles = list(self._handles.values())
            self._handles.clear()
        for h in handles:
            try:
                os.close(h.fd)
            except OSError:
                pass

    # -- checking helpers ---------------------------------------------------------------------

    def _current_sizes(self) -> dict:
        sizes = {}
        for fi, path in enumerate(self._paths):
            if not self._f_pad[fi] and self._f_len[fi]:
                sizes[fi] = stat_file(path)[0]
        return sizes

    def _piece_present(self, index: int, sizes: dict) -> bool:
        for fi, foff, _boff, n in self._piece_segments(index):
            if not self._f_pad[fi] and sizes[fi] < foff + n:
                return False
        return True

    # -- file handles -------------------------------------------------------------------------

    def _acquire(self, fi: int, write: bool) -> _Handle:
        with self._cache_lock:
            if self._closed:
                raise StorageError("storage is closed")
            h = self._handles.get(fi)
            if h is not None and (h.writable or not write):
                self._handles.move_to_end(fi)
                h.users += 1
                return h
            fd = self._open(fi, write)
            if h is not None:  # a read-only handle upgraded for writing
                self._retire(h)
            new = _Handle(fd, write)
            new.users = 1
            self._handles[fi] = new
            while len(self._handles) > self._max_open:
                _old_fi, old = self._handles.popitem(last=False)
                self._retire(old)
            if write and self._single and self._pio:
                # Pinned for the fast path: never released, closed by close().
                new.users += 1
                self._fast_fd = fd
            return new

    def _release(self, h: _Handle) -> None:
        with self._cache_lock:
            h.users -= 1
            if h.stale and h.users == 0:
                self._close_fd(h)

    def _retire(self, h: _Handle) -> None:
        # Caller holds the cache lock. A handle still in use by another thread stays open until
        # released: closing it now could let the fd number be reused for another file mid-read.
        h.stale = True
        if h.users == 0:
            self._close_fd(h)

    @staticmethod
    def _close_fd(h: _Handle) -> None:
        try:
            os.close(h.fd)
        except OSError:
            pass

    def _open(self, fi: int, write: bool) -> int:
        path = self._paths[fi]
        if not write:
            return os.open(path, os.O_RDONLY | _O_BINARY)
        # Never O_TRUNC: the file may hold verified pieces from an earlier run.
        flags = os.O_RDWR | os.O_CREAT | _O_BINARY
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:  # its folder does not exist yet (checked only then: cheaper)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, flags, 0o666)
        try:
            if os.fstat(fd).st_size < self._f_len[fi]:
                # Extending with ftruncate makes a sparse file on Linux/macOS file systems: the
                # size is final at once and no zeros are written. Only ever grows the file.
                os.ftruncate(fd, self._f_len[fi])
        except OSError:
            os.close(fd)
            raise
        return fd

    def _create_empty_files(self) -> None:
        # Zero-length files hold no piece, so no block ever creates them; make them with the
        # first write so a finished download has the torrent's whole file tree.
        for fi, path in enumerate(self._paths):
            if self._f_len[fi] == 0 and not self._f_pad[fi] and not os.path.exists(path):
                try:
                    folder = os.path.dirname(path)
                    if folder:
                        os.makedirs(folder, exist_ok=True)
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | _O_BINARY, 0o666))
                except OSError as exc:
                    raise self._error(fi, exc, writing=True) from None
        self._created_empty = True

    def _write_at(self, fi: int, data: memoryview, offset: int) -> None:
        try:
            h = self._acquire(fi, True)
        except OSError as exc:
            raise self._error(fi, exc, writing=True) from None
        try:
            if self._pio:
                written = os.pwrite(h.fd, data, offset)
                if written != len(data):
                    self._pwrite_rest(h.fd, data, offset, written)
            else:
                with h.lock:
                    os.lseek(h.fd, offset, os.SEEK_SET)
                    written = 0
                    while written < len(data):
                        written += os.write(h.fd, data[written:])
            self._unsynced.add(fi)
        except OSError as exc:
            raise self._error(fi, exc, writing=True) from None
        finally:
            self._release(h)

    @staticmethod
    def _pwrite_rest(fd: int, data: Data, offset: int, written: int) -> None:
        mv = memoryview(data)
        while written < len(mv):
            n = os.pwrite(fd, mv[written:], offset + written)
            if n <= 0:
                raise OSError(errno.EIO, "write made no progress")
            written += n

    def _read_at(self, fi: int, length: int, offset: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer only at end of file); OSError on failure."""
        h = self._acquire(fi, False)
        try:
            parts, got = [], 0
            while got < length:  # one pass for a regular file, unless it ends early
                if self._pio:
                    more = os.pread(h.fd, length - got, offset + got)
                else:
                    with h.lock:
                        os.lseek(h.fd, offset + got, os.SEEK_SET)
                        more = os.read(h.fd, length - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            self._release(h)

    def _fsync_files(self, files: Iterable[int]) -> None:
        for fi in sorted(files):
            with self._cache_lock:
                h = self._handles.get(fi)
                if h is not None and h.writable:
                    h.users += 1
                else:
                    h = None
            try:
                if h is not None:
                    os.fsync(h.fd)
                    continue
                # Evicted since it was written: reopen it, but never with O_CREAT. A file deleted
                # behind our back must stay missing (its stat then shows it, and restore re-checks
                # its pieces) rather than come back as an empty sparse file that looks unchanged.
                try:
                    fd = os.open(self._paths[fi], os.O_RDWR | _O_BINARY)
                except FileNotFoundError:
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise self._error(fi, exc, writing=True) from None
            finally:
                if h is not None:
                    self._release(h)

    def _error(self, fi: int, exc: OSError, writing: bool) -> StorageError:
        path = self._paths[fi]
        template = _ERROR_MESSAGES.get(exc.errno or 0)
        if exc.errno == errno.ENOENT and not writing:
            template = ("{path} is missing: it was moved or deleted outside sta; check the data "
                        "again")
        if template is None:
            template = "cannot {verb} {path}: {reason}"
        return StorageError(template.format(path=path, verb="write" if writing else "read",
                                            reason=exc.strerror or exc))
