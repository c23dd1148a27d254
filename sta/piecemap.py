"""The storage interface: a torrent's geometry, its verified-pieces record and the full check.

A torrent's data is one byte string cut into pieces (BEP 3); its files are consecutive ranges of
that string. ``PieceMap`` is the base every storage builds on (``FileStorage`` in
``sta.storage``, ``MemoryStorage`` in ``sta.memstorage``): it maps a block (piece index, offset,
length) onto the file ranges it covers, validates indices and block bounds, keeps the record of
verified pieces (thread-safe: hashing runs in worker threads) and runs a parallel check of all
data through the implementation's ``verify_piece``.
"""

from __future__ import annotations

import errno
import threading
from array import array
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple, Union

from sta.bitfield import Bitfield
from sta.resume import Progress, hash_pieces

if TYPE_CHECKING:  # only for annotations: any object with Info's fields works (tests use one)
    from sta.metainfo import Info

__all__ = ["StorageError", "PieceMap", "Data", "os_error"]

Data = Union[bytes, bytearray, memoryview]


class StorageError(Exception):
    """A read or write failed; the message says which file and what to do."""


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


def os_error(path: str, exc: OSError, writing: bool) -> StorageError:
    """The StorageError telling a user what to do about ``exc`` on ``path``."""
    template = _ERROR_MESSAGES.get(exc.errno or 0)
    if exc.errno == errno.ENOENT and not writing:
        template = ("{path} is missing: it was moved or deleted outside sta; check the data "
                    "again")
    if template is None:
        template = "cannot {verb} {path}: {reason}"
    return StorageError(template.format(path=path, verb="write" if writing else "read",
                                        reason=exc.strerror or exc))


class PieceMap:
    """Geometry shared by the file and memory storages, plus the verified-pieces record."""

    def __init__(self, info: Info) -> None:
        self.info = info
        self._piece_length = info.piece_length
        self._num_pieces = info.num_pieces
        self._last = self._num_pieces - 1
        self._last_size = info.piece_size(self._last) if self._num_pieces else 0
        files = info.files
        self._f_off = [f.offset for f in files]
        self._f_len = [f.length for f in files]
        self._f_pad = [bool(getattr(f, "pad", False)) for f in files]
        if sum(self._f_len) != info.length:
            raise StorageError("torrent file list does not add up to its total length")
        # First file holding each piece's first byte (zero-length files skipped): with it a block's
        # file ranges are found in a step or two, and it costs 8 bytes per piece where full span
        # tables would cost hundreds.
        first = array("q")
        fi, nf = 0, len(files)
        for i in range(self._num_pieces):
            start = i * self._piece_length
            while fi < nf and self._f_off[fi] + self._f_len[fi] <= start:
                fi += 1
            first.append(fi)
        self._first_file = first
        self._verified = Bitfield(self._num_pieces)
        self._lock = threading.Lock()  # guards the verified record and counters
        self._unsaved = 0  # pieces marked verified since the last save
        self._state_stale = False  # the record changed by a check or restore

    # -- verified record ----------------------------------------------------------------------

    @property
    def verified(self) -> Bitfield:
        """Pieces verified and recorded. Live until check() or restore() replace it (take it again
        after those); change it only through mark_verified."""
        return self._verified

    @property
    def complete(self) -> bool:
        return self._verified.count == self._num_pieces

    @property
    def dirty(self) -> bool:
        """True when the record changed since the last save."""
        return self._unsaved > 0 or self._state_stale

    @property
    def unsaved(self) -> int:
        """Pieces marked verified since the last save (for a save-every-N-pieces policy)."""
        return self._unsaved

    def mark_verified(self, index: int) -> None:
        """Record piece ``index`` as verified: from now on write_block refuses to touch it."""
        self._check_index(index)
        with self._lock:
            if index not in self._verified:
                self._verified.set(index)
                self._unsaved += 1

    def close(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- geometry -----------------------------------------------------------------------------

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._num_pieces:
            raise StorageError(f"piece {index} out of range (torrent has {self._num_pieces})")

    def _check_block(self, index: int, begin: int, length: int) -> None:
        self._check_index(index)
        size = self._last_size if index == self._last else self._piece_length
        if begin < 0 or length <= 0 or begin + length > size:
            raise StorageError(f"block {begin}+{length} outside piece {index} of {size} bytes")

    def _segments(self, index: int, begin: int, length: int) -> List[Tuple[int, int, int, int]]:
        """(file index, offset in file, offset in block, length) for each file range of a block."""
        pos = index * self._piece_length + begin
        end = pos + length
        start = pos
        fi = self._first_file[index]
        offs, lens = self._f_off, self._f_len
        out = []
        while pos < end:
            fend = offs[fi] + lens[fi]
            if fend > pos:
                n = (end if end < fend else fend) - pos
                out.append((fi, pos - offs[fi], pos - start, n))
                pos += n
            fi += 1
        return out

    def _piece_segments(self, index: int) -> List[Tuple[int, int, int, int]]:
        size = self._last_size if index == self._last else self._piece_length
        return self._segments(index, 0, size)

    # -- checking -----------------------------------------------------------------------------

    def verify_piece(self, index: int) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _piece_present(self, index: int, sizes: dict) -> bool:
        return True

    def _current_sizes(self) -> dict:
        return {}

    def check(self, progress: Optional[Progress] = None, workers: Optional[int] = None) -> Bitfield:
        """Hash all existing data and make the result the verified record; returns it."""
        result = self._check_pieces(range(self._num_pieces), progress, workers)
        with self._lock:
            self._verified = result
            self._unsaved = 0
            self._state_stale = True
        return result

    def _check_pieces(self, indices: Iterable[int], progress: Optional[Progress],
                      workers: Optional[int]) -> Bitfield:
        """Hash ``indices`` in parallel; pieces whose files are missing or short are not read."""
        indices = list(indices)
        sizes = self._current_sizes()
        candidates = [i for i in indices if self._piece_present(i, sizes)]
        return hash_pieces(self.verify_piece, candidates, len(indices), self._num_pieces,
                           progress, workers)
