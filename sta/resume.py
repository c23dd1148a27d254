"""Resume state: which pieces were verified, and what the files looked like when that was recorded.

A resume file lets a restart (after a clean exit, a crash or ``kill -9``) skip re-hashing data that
is known to be good. It is a small bencoded dictionary kept in a state folder
(``<output dir>/.sta/<info hash hex>.resume`` by default):

    version       1
    info-hash     20 bytes, the torrent it belongs to
    piece-length  int   \\ checked against the torrent, so a resume file never
    num-pieces    int   / applies to different data
    verified      the verified-pieces bitfield (BEP 3 bit order)
    files         one [size, mtime_ns] per file entry of the torrent, taken right after our writes
                  were flushed to disk; size -1 means the file did not exist

The file is replaced atomically (temporary file in the same folder, flush, fsync, ``os.replace``,
fsync of the folder), so at every instant the path holds either the old state or the new one, never
a torn mix.

On a start, ``plan_restore`` decides which recorded pieces can be trusted without reading them and
which must be hashed again; ``hash_pieces`` runs that hashing (or a full check) on every core.
``storage.py`` owns the data files and calls both.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple

from sta import bencode
from sta.bitfield import Bitfield

__all__ = ["ResumeError", "ResumeState", "STATE_DIR_NAME", "resume_path", "stat_file",
           "plan_restore", "hash_pieces", "write_atomically", "FileStat", "MISSING", "Progress"]

log = logging.getLogger(__name__)

RESUME_VERSION = 1

# Folder inside the output directory holding resume files; a dot-folder so listings of downloaded
# data stay clean, like the state folders of other clients.
STATE_DIR_NAME = ".sta"

# A real resume file holds a bitfield (1 bit per piece) and two integers per file: even a torrent
# with a million pieces and 100,000 files stays under 4 MiB. Refusing more keeps a damaged or
# hostile file from being read whole into memory.
MAX_RESUME_BYTES = 64 * 1024 * 1024

# Pieces queued per checking thread: enough that no thread waits for work, few enough that a
# million-piece torrent does not create a million futures at once.
CHECK_QUEUE_PER_WORKER = 4

Progress = Callable[[int, int], Any]  # progress(done, total)

# (size, mtime_ns) of one file; MISSING when it does not exist.
FileStat = Tuple[int, int]
MISSING: FileStat = (-1, -1)


class ResumeError(Exception):
    """A resume file cannot be read, does not belong to this torrent, or cannot be written."""


def resume_path(state_dir: str, info_hash: bytes) -> str:
    """The resume file of the torrent ``info_hash`` inside ``state_dir``."""
    return os.path.join(state_dir, info_hash.hex() + ".resume")


def stat_file(path: str) -> FileStat:
    """(size, mtime_ns) of ``path``, or MISSING when there is no such file."""
    try:
        st = os.stat(path)
    except OSError:
        # Missing, or unreachable (a parent turned into a file, no permission): either way its
        # pieces cannot be trusted, and treating it as missing makes them be checked again.
        return MISSING
    return (st.st_size, st.st_mtime_ns)


@dataclass
class ResumeState:
    """One saved record: the verified pieces and the file stats they were verified against."""

    info_hash: bytes
    piece_length: int
    verified: Bitfield
    files: List[FileStat]

    def encode(self) -> bytes:
        return bencode.encode({
            "version": RESUME_VERSION,
            "info-hash": self.info_hash,
            "piece-length": self.piece_length,
            "num-pieces": len(self.verified),
            "verified": self.verified.to_bytes(),
            "files": [[size, mtime] for size, mtime in self.files],
        })

    @classmethod
    def decode(cls, data: bytes, info_hash: bytes, piece_length: int, num_pieces: int,
               num_files: int) -> "ResumeState":
        """Parse ``data`` and check it belongs to the torrent described by the other arguments."""
        try:
            d = bencode.decode(data)
        except bencode.BencodeError as exc:
            raise ResumeError(f"not a resume file ({exc})") from None
        if not isinstance(d, dict):
            raise ResumeError("not a resume file (top level is not a dictionary)")
        if _field(d, b"version", int) != RESUME_VERSION:
            raise ResumeError(f"unsupported resume file version {d.get(b'version')!r}")
        if _field(d, b"info-hash", bytes) != info_hash:
            raise ResumeError("resume file belongs to another torrent")
        if _field(d, b"piece-length", int) != piece_length:
            raise ResumeError("resume file has a different piece length")
        if _field(d, b"num-pieces", int) != num_pieces:
            raise ResumeError("resume file has a different number of pieces")
        try:
            verified = Bitfield.from_bytes(_field(d, b"verified", bytes), num_pieces, strict=True)
        except ValueError as exc:
            raise ResumeError(f"resume file has a bad bitfield ({exc})") from None
        raw_files = _field(d, b"files", list)
        if len(raw_files) != num_files:
            raise ResumeError("resume file lists a different number of files")
        files: List[FileStat] = []
        for item in raw_files:
            if (not isinstance(item, list) or len(item) != 2
                    or not all(isinstance(x, int) for x in item) or item[0] < -1):
                raise ResumeError("resume file has a bad file entry")
            files.append((item[0], item[1]))
        return cls(info_hash, piece_length, verified, files)

    @classmethod
    def load(cls, path: str, info_hash: bytes, piece_length: int, num_pieces: int,
             num_files: int) -> Optional["ResumeState"]:
        """The state saved at ``path``; None when there is none; ResumeError when it is unusable."""
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_RESUME_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise ResumeError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > MAX_RESUME_BYTES:
            raise ResumeError(f"{path} is too large to be a resume file")
        return cls.decode(data, info_hash, piece_length, num_pieces, num_files)

    def save(self, path: str) -> None:
        """Replace ``path`` with this state atomically."""
        write_atomically(path, self.encode())


def hash_pieces(verify: Callable[[int], bool], candidates: Sequence[int], total: int,
                num_pieces: int, progress: Optional[Progress] = None,
                workers: Optional[int] = None) -> Bitfield:
    """Run ``verify`` over ``candidates`` on ``workers`` threads (default: every core).

    Returns the pieces that verified. hashlib releases the GIL while hashing large buffers, so
    threads use all cores. ``total`` counts the pieces of the whole check, including those the
    caller already knows are missing: ``progress(done, total)`` starts at the difference and is
    called from this thread after each piece.
    """
    good = Bitfield(num_pieces)
    done = total - len(candidates)
    if progress is not None:
        progress(done, total)
    workers = max(1, min(workers or os.cpu_count() or 1, len(candidates)))
    if workers == 1:
        for i in candidates:
            if verify(i):
                good.set(i)
            done += 1
            if progress is not None:
                progress(done, total)
        return good
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sta-check") as pool:
        window: Deque[Tuple[int, Future]] = deque()
        pending = iter(candidates)
        while True:
            for i in pending:
                window.append((i, pool.submit(verify, i)))
                if len(window) >= workers * CHECK_QUEUE_PER_WORKER:
                    break
            if not window:
                return good
            i, future = window.popleft()
            if future.result():
                good.set(i)
            done += 1
            if progress is not None:
                progress(done, total)


def plan_restore(state: ResumeState, stats_now: Sequence[FileStat], files: Sequence[Any],
                 piece_length: int) -> Tuple[Bitfield, List[int], List[int]]:
    """Decide what a restart may trust: returns (trusted pieces, pieces to hash, changed files).

    ``files`` are the torrent's FileEntry values (offset, length, pad) and ``stats_now`` their
    current stat_file() results. A file is changed when its size or mtime differs from the
    recorded one: modified, truncated, deleted, or written after the last save (e.g. before a
    crash). Every piece touching a changed file is hashed again, verified or not: that also finds
    pieces completed after the last save. So is every piece touching a file recorded shorter than
    its final size (not created yet), in case it was put in place since; a missing or short file
    costs no reading. Pieces touching only unchanged files keep their recorded state. Padding
    files (BEP 47) never exist on disk and zero-length files hold no piece: they change nothing.
    """
    n = len(state.verified)
    suspect = bytearray(n)
    changed = []
    for fi, (entry, now, recorded) in enumerate(zip(files, stats_now, state.files)):
        if entry.pad or entry.length == 0:
            continue
        if now != recorded:
            changed.append(fi)
        elif recorded[0] >= entry.length:
            continue
        first = entry.offset // piece_length
        last = (entry.offset + entry.length - 1) // piece_length
        suspect[first:last + 1] = b"\x01" * (last + 1 - first)
    trusted = Bitfield(n)
    for i in state.verified.iter_set():
        if not suspect[i]:
            trusted.set(i)
    to_check = [i for i in range(n) if suspect[i]]
    return trusted, to_check, changed


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash at any point leaves the old file or the new one.

    The temporary file lives in the same folder (``os.replace`` is only atomic within one file
    system), is fsynced before the rename (otherwise a power loss can leave the new name pointing at
    an empty file on file systems that reorder metadata and data), and the folder is fsynced after
    it so the rename itself is durable where the platform allows opening a folder.
    """
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ResumeError(_write_message(path, exc)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise ResumeError(_write_message(path, exc)) from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_dir(folder)


def fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        dfd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        # Some file systems (and Windows, if it ever gets here) refuse fsync on a folder; the data
        # file itself was fsynced, which is the part that matters most.
        pass
    finally:
        os.close(dfd)


def remove_stale_temporaries(path: str) -> None:
    """Delete temporary files left by a save that was interrupted (they are never read)."""
    folder = os.path.dirname(path) or "."
    prefix = os.path.basename(path) + "."
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            _remove_quietly(os.path.join(folder, name))


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_message(path: str, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return (f"no space left on device writing {path}: free some space and run the same "
                "command again")
    return f"cannot write {path}: {exc.strerror or exc}"


def _field(d: dict, key: bytes, kind: type) -> Any:
    value = d.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ResumeError(f"resume file has a missing or bad {key.decode()!r} field")
    return value
