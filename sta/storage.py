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

Links: every file is opened, created and deleted through ``sta.safepath``, which refuses a
link (or junction) on any part of the path below the output folder, so a link left in a shared
download folder cannot make a torrent write or delete files outside it. A torrent whose name is
the state folder's (``.sta``) is stored under ``_.sta``, so no torrent reaches the resume files.

``Storage`` is the interface the engine uses; ``FileStorage`` implements it over files and
``sta.memstorage.MemoryStorage`` over a bytearray (for engine tests).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Iterable, List, Optional, Protocol, Sequence, Tuple, \
    runtime_checkable

from sta.bitfield import Bitfield
from sta.directio import (ALIGNMENT, DirectFile, direct_writes_possible, is_aligned_buffer,
                          pwrite_rest)
from sta.piecemap import Data, PieceMap, StorageError, os_error
from sta.resume import (MISSING, STATE_DIR_NAME, Progress, ResumeError, ResumeState,
                        ResumeStore, default_home, plan_restore, stat_file)
from sta.safepath import (LinkError, check_below, open_below, overlapping_paths, remove_below,
                          remove_empty_folders)

if TYPE_CHECKING:  # only for annotations: any object with Info's fields works (tests use one)
    from sta.metainfo import Info

__all__ = ["Storage", "StorageError", "FileStorage", "MAX_OPEN_FILES", "Progress",
           "overlapping_paths", "storage_parts"]

log = logging.getLogger(__name__)


@runtime_checkable
class Storage(Protocol):
    """What the engine needs from a torrent's storage (FileStorage, MemoryStorage).

    Blocking calls (restore, verify_piece, save, delete_files) belong in a worker thread;
    read_block, write_block and mark_verified are cheap enough for the event loop. Every failure
    is a StorageError whose message says what to do.
    """

    @property
    def readonly(self) -> bool:
        """Seeding complete data: write_block refuses, nothing is created or written."""

    @property
    def dirty(self) -> bool:
        """The verified record changed since the last save."""

    @property
    def state_path(self) -> Optional[str]:
        """Where save() writes the resume state next (None: nothing is kept)."""

    def restore(self, recheck: bool = False, progress: Optional[Progress] = None,
                workers: Optional[int] = None) -> Bitfield:
        """Load the saved state, hash what it cannot vouch for; the verified pieces."""

    def read_block(self, index: int, begin: int, length: int) -> bytes:
        """The stored bytes of a block (zeros for padding)."""

    def write_block(self, index: int, begin: int, data: Data) -> None:
        """Store a block, or a whole piece at begin 0; refuses verified pieces."""

    def verify_piece(self, index: int) -> bool:
        """Hash the stored piece against the torrent."""

    def mark_verified(self, index: int) -> None:
        """Record a piece as verified (write_block refuses it from then on)."""

    def save(self) -> None:
        """Record the verified pieces durably."""

    def close(self) -> None:
        """Release files; call save() first to keep the progress."""

    def delete_files(self) -> List[str]:
        """Close, delete exactly the torrent's files and the folders left empty, forget the
        state; the paths deleted. Never deletes through a link: StorageError, nothing deleted."""

    def forget_state(self) -> None:
        """Remove the saved resume state (and its folder when left empty)."""

    def file_paths(self) -> List[str]:
        """Absolute, normalised paths of the torrent's files, padding files left out."""


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

# Prefix given to a top-level name that is the state folder's, as metainfo (after libtorrent)
# prefixes Windows device names: the data stays downloadable under a visible, predictable name.
RESERVED_NAME_PREFIX = "_"

# Positional I/O lets concurrent readers and the writer share one descriptor without a lock.
_HAVE_PIO = hasattr(os, "pwrite") and hasattr(os, "pread")
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def storage_parts(path: Sequence[str]) -> Tuple[str, ...]:
    """The parts of a file's path below the output folder, as stored.

    The first part (the torrent's name, or a single file's name) is prefixed with ``_`` when it
    names the state folder, compared the way case-insensitive file systems and Windows (which
    drops trailing dots and spaces) would. A part that could leave the folder is refused.
    """
    for part in path:
        if part in ("", ".", "..") or "\0" in part or os.sep in part or (
                os.altsep and os.altsep in part):
            raise StorageError(f"refusing file path {'/'.join(path)!r}: it leaves the output "
                               "folder")
    parts = tuple(path)
    if parts and parts[0].rstrip(" .").casefold() == STATE_DIR_NAME.casefold():
        parts = (RESERVED_NAME_PREFIX + parts[0],) + parts[1:]
    return parts


class _Handle:
    __slots__ = ("fd", "writable", "users", "stale", "lock", "direct")

    def __init__(self, fd: int, writable: bool, direct: Optional[DirectFile] = None) -> None:
        self.fd = fd
        self.writable = writable
        self.direct = direct  # the same file past the page cache (directio.py)
        self.users = 0
        self.stale = False  # evicted or replaced: close when the last user releases it
        self.lock = threading.Lock()  # serialises seek+read/write where there is no pread/pwrite


class FileStorage(PieceMap):
    """A torrent's pieces stored in its files under ``root`` (``root/<FileEntry.path...>``).

    ``readonly=True`` is for seeding complete data: files are opened read-only and never created,
    extended or written, and the resume state goes under ``home`` rather than into ``root``.
    Otherwise files are opened read-only until the first write to them. ``home`` (default
    $STA_HOME or ~/.sta) holds the key that authenticates resume files; ``state_dir`` overrides
    where the resume file goes (see ``sta.resume.ResumeStore`` for the default places).

    Thread safety: write_block and read_block may run on the event loop while verify_piece, check
    and save run in worker threads. close() must be called when no other call is running.
    """

    def __init__(self, info: Info, root: str, *, readonly: bool = False,
                 state_dir: Optional[str] = None, home: Optional[str] = None,
                 max_open_files: int = MAX_OPEN_FILES) -> None:
        super().__init__(info)
        self.root = root
        self.readonly = readonly
        self._store = ResumeStore(info.info_hash, root, home or default_home(),
                                  readonly=readonly, state_dir=state_dir)
        self._parts = [storage_parts(f.path) for f in info.files]
        if self._parts and self._parts[0][:1] != tuple(info.files[0].path[:1]):
            log.info("%s: stored as %s: %s is the name of STA's state folder", info.name,
                     self._parts[0][0], STATE_DIR_NAME)
        self._paths = [os.path.join(root, *parts) for parts in self._parts]
        self._real_root = os.path.realpath(root)
        self._max_open = max(1, max_open_files)
        self._handles: "OrderedDict[int, _Handle]" = OrderedDict()
        self._cache_lock = threading.Lock()
        self._unsynced: set = set()  # files written since the last save
        self._save_lock = threading.Lock()
        self._state_stale = True  # the first save writes a state even with nothing new
        self._created_empty = False
        self._closed = False
        self._save_failed = False  # a read-only seed's failure to save was logged once
        self._unreadable: set = set()  # files whose link refusal was logged
        self._pio = _HAVE_PIO
        # Single-file torrents skip the cache and segment lookup: write_block goes straight to
        # os.pwrite at index * piece_length + begin once the file is open for writing.
        self._single = len(info.files) == 1 and not self._f_pad[0]
        self._fast_fd: Optional[int] = None
        self._direct: Optional[DirectFile] = None  # its handle's page cache bypass
        self._direct_ok = not readonly and direct_writes_possible(root)

    # -- public I/O ---------------------------------------------------------------------------

    @property
    def state_path(self) -> str:
        """Where save() writes the resume state next (it may move to STA_HOME: see ResumeStore)."""
        return self._store.path

    def file_path(self, file_index: int) -> str:
        return self._paths[file_index]

    def file_paths(self) -> List[str]:
        """Absolute paths of the non-padding files, under the output folder's real path."""
        return [os.path.join(self._real_root, *parts)
                for parts, pad in zip(self._parts, self._f_pad) if not pad]

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
                written = self._direct.write(data, offset) or os.pwrite(fd, data, offset)
                if written != n:
                    pwrite_rest(fd, data, offset, written)
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
        whole = begin == 0 and is_aligned_buffer(data)  # a piece in its aligned buffer
        for fi, foff, boff, length in self._segments(index, begin, n):
            if self._f_pad[fi]:
                continue  # BEP 47: padding is never stored; its bytes are zeros by definition
            self._write_at(fi, mv[boff:boff + length], foff, whole and boff % ALIGNMENT == 0)

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
                    if isinstance(exc, LinkError) and fi not in self._unreadable:
                        self._unreadable.add(fi)  # said once per file, not once per piece
                        log.warning("%s: %s", self.info.name, exc)
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

        Pieces touching a file whose size, mtime, inode or ctime differs from the recorded one
        (changed, replaced, truncated, missing, or written after the last save) are hashed again;
        the others are trusted. No resume file, one that fails authentication or does not fit, or
        ``recheck=True`` -> full check of the data that exists (so data already in place, e.g. the
        original files of a seed, is found, and nothing a forged file claims is believed).
        """
        state = None
        if not recheck:
            try:
                state = self._store.load(self._piece_length, self._num_pieces, len(self._paths))
            except ResumeError as exc:
                log.warning("%s: ignoring %s; checking all data", self.info.name, exc)
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
        written since the last save, then take each file's stats, then replace the resume file
        atomically. A piece in the snapshot had all its blocks written before it was verified,
        so the fsync covers it: the resume file never records a piece whose data could still be
        lost by ``kill -9`` or a power cut, and the recorded stats are the ones after our writes.
        A read-only seed that cannot write its state logs it once and carries on: seeding works
        without it, and the data is checked again on the next start.
        """
        with self._save_lock:  # a second save must not record what the first still fsyncs
            if not (self.dirty or self._unsynced):
                return  # nothing verified or written since the last save
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
            stats = [MISSING if pad else stat_file(p) for p, pad in zip(self._paths, self._f_pad)]
            state = ResumeState(self.info.info_hash, self._piece_length, snapshot, stats)
            try:
                self._store.save(state)
            except ResumeError as exc:
                if not self.readonly:
                    self._state_stale = self._state_stale or was_stale
                    raise StorageError(str(exc)) from None
                log.log(logging.DEBUG if self._save_failed else logging.WARNING,
                        "%s: %s; the data will be checked again on the next start",
                        self.info.name, exc)
                self._save_failed = True
            with self._lock:
                self._unsaved -= marks

    def delete_files(self) -> List[str]:
        """Close, then delete exactly this torrent's files and the folders they leave empty, and
        forget its resume state; returns the paths deleted (spelled as file_paths() does).

        Every path is checked first: if any part of one below the output folder is a link,
        nothing is deleted (StorageError), since deleting through it could remove files outside.
        """
        self.close()
        mine = [fi for fi in range(len(self._parts)) if not self._f_pad[fi]]
        try:
            for fi in mine:
                check_below(self.root, self._parts[fi])
        except LinkError as exc:
            raise StorageError(f"nothing deleted: {exc}") from None
        removed, folders = [], set()
        for fi in mine:
            parts = self._parts[fi]
            try:
                if remove_below(self.root, parts):
                    removed.append(os.path.join(self._real_root, *parts))
            except LinkError as exc:  # put in place since the check: skip it, delete the rest
                log.warning("%s: not deleted: %s", self.info.name, exc)
            except OSError as exc:
                log.warning("%s: cannot delete %s: %s", self.info.name, self._paths[fi],
                            exc.strerror or exc)
            folders.update(parts[:depth] for depth in range(1, len(parts)))
        remove_empty_folders(self.root, folders)
        self.forget_state()
        return removed

    def forget_state(self) -> None:
        """Remove this torrent's resume files (every place they may be) and the state folders
        left empty."""
        self._store.forget()

    def close(self) -> None:
        """Close every file (does not save: call save() first to keep the progress)."""
        self._closed = True
        self._fast_fd = None
        with self._cache_lock:
            handles = list(self._handles.values())
            self._handles.clear()
        for h in handles:
            self._close_fd(h)

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
            new = _Handle(fd, write, write and DirectFile(self._paths[fi], fd, self._direct_ok)
                          or None)
            new.users = 1
            self._handles[fi] = new
            while len(self._handles) > self._max_open:
                _old_fi, old = self._handles.popitem(last=False)
                self._retire(old)
            if write and self._single and self._pio:
                # Pinned for the fast path: never released, closed by close().
                new.users += 1
                self._direct = new.direct  # before: another thread may take the path at once
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
        if h.direct is not None:
            h.direct.close()
        try:
            os.close(h.fd)
        except OSError:
            pass

    def _open(self, fi: int, write: bool) -> int:
        # Through safepath: a link on the path below root raises LinkError (an OSError).
        if not write:
            return open_below(self.root, self._parts[fi], os.O_RDONLY | _O_BINARY)
        # Never O_TRUNC: the file may hold verified pieces from an earlier run.
        fd = open_below(self.root, self._parts[fi], os.O_RDWR | os.O_CREAT | _O_BINARY,
                        make_dirs=True)
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
        for fi, parts in enumerate(self._parts):
            if self._f_len[fi] == 0 and not self._f_pad[fi]:
                try:  # O_CREAT without O_TRUNC: an existing file is left as it is
                    os.close(open_below(self.root, parts, os.O_WRONLY | os.O_CREAT | _O_BINARY,
                                        make_dirs=True))
                except OSError as exc:
                    raise self._error(fi, exc, writing=True) from None
        self._created_empty = True

    def _write_at(self, fi: int, data: memoryview, offset: int, aligned: bool = False) -> None:
        try:
            h = self._acquire(fi, True)
        except OSError as exc:
            raise self._error(fi, exc, writing=True) from None
        try:
            if self._pio:
                written = (aligned and h.direct is not None and h.direct.write(data, offset, True)
                           or os.pwrite(h.fd, data, offset))
                if written != len(data):
                    pwrite_rest(h.fd, data, offset, written)
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
                    fd = open_below(self.root, self._parts[fi], os.O_RDWR | _O_BINARY)
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
        if isinstance(exc, LinkError):
            return StorageError(str(exc))
        return os_error(self._paths[fi], exc, writing)
