"""``MemoryStorage``: the ``sta.storage.Storage`` interface over one bytearray, for engine tests.

Every call of the interface (write_block, read_block, verify_piece, mark_verified, restore, save,
close, delete_files, forget_state, file_paths, dirty, readonly, state_path) with no files and no
resume file, so a test runs a whole transfer in memory.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, List, Optional

from sta.bitfield import Bitfield
from sta.piecemap import Data, PieceMap, StorageError
from sta.resume import Progress

if TYPE_CHECKING:  # only for annotations: any object with Info's fields works (tests use one)
    from sta.metainfo import Info

__all__ = ["MemoryStorage"]


class MemoryStorage(PieceMap):
    """The Storage interface over one bytearray, for engine tests (no files, no resume file).

    ``data`` (the torrent's whole content, padding as zeros) starts it as a seed after
    ``restore()``. The buffer's bytes are the torrent's in order, padding included, so a block is
    one slice whatever files it spans.
    """

    def __init__(self, info: Info, data: Optional[bytes] = None, *, readonly: bool = False) -> None:
        super().__init__(info)
        self.readonly = readonly
        if data is not None and len(data) != info.length:
            raise StorageError(f"data is {len(data)} bytes, the torrent has {info.length}")
        self._buf = bytearray(data) if data is not None else bytearray(info.length)
        self._has_pad = any(self._f_pad)
        self._closed = False

    @property
    def state_path(self) -> Optional[str]:
        """None: nothing outlives the object."""
        return None

    def write_block(self, index: int, begin: int, data: Data) -> None:
        n = len(data)
        self._check_block(index, begin, n)
        if index in self._verified:
            raise StorageError(f"refusing to overwrite piece {index}: it is already verified")
        if self.readonly:
            raise StorageError("storage is read-only (seeding): blocks cannot be written")
        if self._closed:
            raise StorageError("storage is closed")
        pos = index * self._piece_length + begin
        if not self._has_pad:
            self._buf[pos:pos + n] = data
            return
        mv = memoryview(data).cast("B")
        for fi, foff, boff, length in self._segments(index, begin, n):
            if not self._f_pad[fi]:  # BEP 47: padding stays zeros whatever a peer sends
                at = self._f_off[fi] + foff
                self._buf[at:at + length] = mv[boff:boff + length]

    def read_block(self, index: int, begin: int, length: int) -> bytes:
        self._check_block(index, begin, length)
        if self._closed:
            raise StorageError("storage is closed")
        pos = index * self._piece_length + begin
        return bytes(memoryview(self._buf)[pos:pos + length])  # one copy, not two

    def verify_piece(self, index: int) -> bool:
        self._check_index(index)
        start = index * self._piece_length
        size = self._last_size if index == self._last else self._piece_length
        digest = hashlib.sha1(memoryview(self._buf)[start:start + size]).digest()
        return digest == self.info.piece_hash(index)

    def restore(self, recheck: bool = False, progress: Optional[Progress] = None,
                workers: Optional[int] = None) -> Bitfield:
        """No resume file in memory: the same as check()."""
        return self.check(progress, workers)

    def save(self) -> None:
        with self._lock:
            self._unsaved = 0
            self._state_stale = False

    def close(self) -> None:
        self._closed = True

    def delete_files(self) -> List[str]:
        """Drop the data and the verified record; no file is deleted, so none is listed."""
        self.close()
        self._buf = bytearray(len(self._buf))
        with self._lock:
            self._verified = Bitfield(self._num_pieces)
            self._unsaved = 0
            self._state_stale = False
        return []

    def forget_state(self) -> None:
        """Nothing is saved outside the object, so there is nothing to forget."""

    def file_paths(self) -> List[str]:
        """No files: a memory storage claims no path (so it never overlaps another torrent)."""
        return []
