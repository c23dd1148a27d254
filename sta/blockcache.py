"""Piece-sized buffers between the network and the disk, on both sides of a transfer.

Downloading: blocks of a piece are gathered in memory (``WriteBuffers``, in page-aligned buffers
that are reused) and, once the piece is whole, hashed and written with one positional write
(past the page cache where ``directio`` allows), both in a worker thread. That keeps the
event loop free of disk writes (65,536 small writes per GiB cost more than the hashing), hashes
without reading the piece back, and means data that fails the hash never reaches the disk.
Past a memory bound, pieces fall back to block-by-block writes verified by reading back.

Seeding: requests arrive block by block, mostly in order within a piece; ``ReadCache`` reads a
chunk of up to 1 MiB once and serves its blocks as slices, so 64 system calls become one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from sta.directio import BufferPool

if TYPE_CHECKING:
    from sta.storage import Storage

# Memory for pieces being assembled. A loopback pipeline of 500 blocks spans about 8 MiB, so
# 32 MiB holds every piece in flight for one fast peer with room for a few more, and keeps a
# downloader's resident size well under 100 MB.
MAX_WRITE_BUFFER_BYTES = 32 * 1024 * 1024
# Of those, what is kept for reuse once written, for all torrents of the process together (the
# pool trims what sat unused for a second, so this is the most a busy download holds on to).
# Ten torrents at once keep about 50 MiB of pieces in flight, one fast torrent about 10; when
# the pool kept only 16 MiB, ten torrents mapped and unmapped a thousand buffers per GiB and
# took about 10 % longer than one torrent of the same bytes.
POOL_KEEP_BYTES = 64 * 1024 * 1024
# One pool for the whole process: torrents downloading at once take turns with the same buffers
# rather than each faulting in its own (ten torrents of 32 MiB made 331 buffers with a pool
# each, one torrent of the same bytes 36).
SHARED_POOL = BufferPool(POOL_KEEP_BYTES)

# Read unit of the seeding cache: pieces up to this size are read whole, larger ones in aligned
# chunks of this size (piece lengths are powers of two, so chunks never straddle pieces).
READ_CHUNK = 1024 * 1024
# Chunks kept for seeding: enough for a few peers each working through a different piece.
READ_CACHE_CHUNKS = 16


class DiskBacklog:
    """Bytes of whole pieces handed to a node's hashing threads and not yet hashed and written,
    for all its torrents together: they share the threads, so a bound per torrent would let
    ten torrents queue ten times the memory of one, and a kill -9 lose ten times the data.

    A downloader sends no new request while the count is at its limit, asks to be called back
    (``wait``), and is called once the count has fallen under that limit again."""

    def __init__(self) -> None:
        self.bytes = 0
        self._waiting: Dict[Any, Tuple[int, Callable[[], None]]] = {}

    def add(self, size: int) -> None:
        self.bytes += size

    def wait(self, key: Any, limit: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the count is under ``limit`` (one wait per ``key``)."""
        self._waiting[key] = (limit, callback)

    def done(self, size: int) -> None:
        self.bytes -= size
        if self._waiting:
            ready = [key for key, (limit, _) in self._waiting.items() if self.bytes < limit]
            for key in ready:
                self._waiting.pop(key)[1]()


class WriteBuffers:
    """In-memory assembly of pieces; ``take`` hands a whole piece over for hashing and writing."""

    def __init__(self, piece_size: Callable[[int], int],
                 limit: int = MAX_WRITE_BUFFER_BYTES) -> None:
        self._piece_size = piece_size
        self._limit = limit
        self._pieces: Dict[int, Any] = {}  # aligned buffers (directio)
        self._unbuffered: set = set()   # pieces written block by block (buffer was full)
        self.buffered_bytes = 0
        # Page-aligned, so a whole piece can be written past the page cache (directio.py), and
        # reused, so their pages are not faulted in again for every piece.
        self._pool = SHARED_POOL

    def store(self, index: int, begin: int, block: bytes) -> bool:
        """Keep the block; False means the piece is written to disk directly instead."""
        buffer = self._pieces.get(index)
        if buffer is None:
            if index in self._unbuffered:
                return False
            size = self._piece_size(index)
            if self.buffered_bytes + size > self._limit:
                self._unbuffered.add(index)
                return False
            buffer = self._pieces[index] = self._pool.get(size)
            self.buffered_bytes += size
        buffer[begin:begin + len(block)] = block
        return True

    def take(self, index: int) -> Optional[Any]:
        """The assembled piece (None when it was written directly), handed over for hashing.

        Its bytes still count against the limit until ``release``: pieces queued for a busy
        hashing pool are memory too, and must not pile up without bound.
        """
        self._unbuffered.discard(index)
        return self._pieces.pop(index, None)

    def release(self, size: int, buffer: Any = None) -> None:
        """A piece handed out by ``take`` has been hashed and written (or dropped); ``buffer``,
        that piece's buffer, is reused unless something else may still hold it."""
        self.buffered_bytes -= size
        if buffer is not None:
            self._pool.put(buffer)

    def discard(self, index: int) -> None:
        buffer = self.take(index)
        if buffer is not None:
            self.release(len(buffer), buffer)

    def clear(self) -> None:
        self._pieces.clear()
        self._unbuffered.clear()
        self.buffered_bytes = 0


def block_digests(data: Any, block_size: int) -> List[bytes]:
    """SHA-1 of each block of a piece: what tells, after a piece failed and was fetched again,
    which of the peers that sent its blocks sent the corrupt ones."""
    view = memoryview(data)
    return [hashlib.sha1(view[begin:begin + block_size]).digest()
            for begin in range(0, len(view), block_size)]


def verify_and_write(storage: Storage, index: int, expected: bytes, data: Any,
                     block_size: int, want_digests: bool) -> Tuple[bool, Optional[List[bytes]]]:
    """Worker-thread half of a buffered piece: hash it, and only if it matches, write it.

    Returns (ok, block digests): the digests come with a failure, or when asked for.
    """
    ok = hashlib.sha1(data).digest() == expected
    digests = block_digests(data, block_size) if want_digests or not ok else None
    if ok:
        storage.write_block(index, 0, data)
    return ok, digests


def verify_stored(storage: Storage, index: int, size: int, block_size: int,
                  want_digests: bool) -> Tuple[bool, Optional[List[bytes]]]:
    """The same for a piece written block by block: hash it by reading it back."""
    ok = storage.verify_piece(index)
    digests = (block_digests(storage.read_block(index, 0, size), block_size)
               if want_digests or not ok else None)
    return ok, digests


class ReadCache:
    """A small LRU of recently read chunks for serving blocks."""

    def __init__(self, read: Callable[[int, int, int], bytes], piece_size: Callable[[int], int],
                 piece_length: int, chunks: int = READ_CACHE_CHUNKS) -> None:
        self._read = read
        self._piece_size = piece_size
        self._chunk = min(READ_CHUNK, piece_length)
        self._capacity = chunks
        self._cache: "OrderedDict[Tuple[int, int], memoryview]" = OrderedDict()

    def read(self, index: int, begin: int, length: int) -> memoryview:
        chunk = self._chunk
        start = begin - begin % chunk
        if begin + length > start + chunk:
            # A request straddling our chunk boundary (only odd requests do): read it alone.
            return memoryview(self._read(index, begin, length))
        key = (index, start)
        data = self._cache.get(key)
        if data is None:
            size = min(chunk, self._piece_size(index) - start)
            data = memoryview(self._read(index, start, size))
            self._cache[key] = data
            if len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        offset = begin - start
        return data[offset:offset + length]

    def clear(self) -> None:
        self._cache.clear()
