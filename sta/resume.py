"""Resume state: which pieces were verified, and what the files looked like when that was recorded.

A resume file lets a restart (after a clean exit, a crash or ``kill -9``) skip re-hashing data that
is known to be good. It is a small bencoded dictionary:

    version       2
    info-hash     20 bytes, the torrent it belongs to
    piece-length  int   \\ checked against the torrent, so a resume file never
    num-pieces    int   / applies to different data
    verified      the verified-pieces bitfield (BEP 3 bit order)
    files         one [size, mtime_ns, inode, ctime_ns] per file entry of the torrent, taken right
                  after our writes were flushed to disk; all -1 means the file did not exist
    mac           HMAC-SHA256 of the other fields, keyed with this user's resume key

Size and mtime alone are easy to fake: ``cp -p``, ``rsync -a`` or ``touch -r`` put back the old
mtime over new content. The inode changes when a file is replaced, and the ctime (the inode's
change time, which no program can set back) changes with every write, ``utime`` or rename onto the
name; on Windows ``os.stat`` gives the file index and the creation time in those fields. The MAC
means only STA, run by the same user, wrote the record: a forged or edited resume file (one that
claims every piece over a file of zeros with the right stats), a file from another user, or one
from a version without MAC (version 1) is not trusted, and the data is checked again. The key is
32 random bytes in ``$STA_HOME/resume.key`` (default ``~/.sta``), made on first use, owner-only.

Where the file lives (``ResumeStore``): a download keeps it in its output folder,
``<output dir>/.sta/<info hash hex>.resume``. A read-only seed never writes into its data folder:
its state goes to ``$STA_HOME/resume/<info hash hex>-<folder tag>.resume``, and so does a
download's when the output folder's ``.sta`` cannot be written (read-only or shared folder, or a
link). A start reads whichever of the two is newest.

The file is replaced atomically (temporary file in the same folder, flush, fsync, ``os.replace``,
fsync of the folder), so at every instant the path holds either the old state or the new one, never
a torn mix.

On a start, ``plan_restore`` decides which recorded pieces can be trusted without reading them and
which must be hashed again; ``hash_pieces`` runs that hashing (or a full check) on every core.
``storage.py`` owns the data files and calls both.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple

from sta import bencode
from sta.bitfield import Bitfield
from sta.safepath import LinkError, check_below

__all__ = ["ResumeError", "ResumeState", "ResumeStore", "STATE_DIR_NAME", "resume_path",
           "home_resume_path", "default_home", "resume_key", "stat_file", "plan_restore",
           "hash_pieces", "write_atomically", "FileStat", "MISSING", "Progress"]

log = logging.getLogger(__name__)

# 2: files carry inode and ctime, and the record carries a MAC. Version 1 files (size and mtime,
# no MAC) are read as untrusted: their data is checked again once.
RESUME_VERSION = 2

# Folder inside the output directory holding resume files; a dot-folder so listings of downloaded
# data stay clean, like the state folders of other clients.
STATE_DIR_NAME = ".sta"

# Folder under STA_HOME holding the resume files of read-only seeds (and of downloads whose output
# folder cannot hold them), and the file holding the key that authenticates every resume file.
HOME_STATE_DIR = "resume"
RESUME_KEY_FILE = "resume.key"
# HMAC-SHA256 key size: the hash's output size, as RFC 2104 section 3 recommends.
RESUME_KEY_BYTES = 32
# Hex digits of SHA-256(data folder) that tell apart the seeds of one torrent from two folders:
# 64 bits, so two folders of one user never collide by chance.
FOLDER_TAG_CHARS = 16
# Binds the MAC to this use of the key, should the key ever serve another purpose.
_MAC_CONTEXT = b"sta resume state\0"

# A real resume file holds a bitfield (1 bit per piece) and four integers per file: even a torrent
# with a million pieces and 100,000 files stays under 8 MiB. Refusing more keeps a damaged or
# hostile file from being read whole into memory.
MAX_RESUME_BYTES = 64 * 1024 * 1024

# Pieces queued per checking thread: enough that no thread waits for work, few enough that a
# million-piece torrent does not create a million futures at once.
CHECK_QUEUE_PER_WORKER = 4

# Failures to write the output folder's state that moving it to STA_HOME cures: the folder is
# read-only, shared with other users, or its .sta is a link.
_RELOCATABLE = frozenset((errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP))

Progress = Callable[[int, int], Any]  # progress(done, total)

# (size, mtime_ns, inode, ctime_ns) of one file; MISSING when it does not exist.
FileStat = Tuple[int, int, int, int]
MISSING: FileStat = (-1, -1, -1, -1)


class ResumeError(Exception):
    """A resume file cannot be read, does not belong to this torrent, or cannot be written."""

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.errno = code  # the OSError's errno when writing failed


def default_home() -> str:
    """Where STA keeps what outlives one command: $STA_HOME, else ~/.sta."""
    return os.environ.get("STA_HOME") or os.path.join(os.path.expanduser("~"), ".sta")


def resume_path(state_dir: str, info_hash: bytes) -> str:
    """The resume file of the torrent ``info_hash`` inside ``state_dir``."""
    return os.path.join(state_dir, info_hash.hex() + ".resume")


def home_resume_path(home: str, info_hash: bytes, root: str) -> str:
    """The resume file of ``info_hash`` seeded from ``root``, kept under ``home``."""
    folder = os.path.normcase(os.path.realpath(root)).encode("utf-8", "surrogateescape")
    tag = hashlib.sha256(folder).hexdigest()[:FOLDER_TAG_CHARS]
    return os.path.join(home, HOME_STATE_DIR, f"{info_hash.hex()}-{tag}.resume")


def stat_file(path: str) -> FileStat:
    """(size, mtime_ns, inode, ctime_ns) of the regular file ``path``, else MISSING.

    On Windows the inode is the file index and the ctime the creation time: both still change
    when a file is replaced by a copy.
    """
    try:
        st = os.lstat(path)
    except OSError:
        # Missing, or unreachable (a parent turned into a file, no permission): either way its
        # pieces cannot be trusted, and treating it as missing makes them be checked again.
        return MISSING
    if not stat.S_ISREG(st.st_mode):
        return MISSING  # a link or a folder where the file should be: never trusted
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def resume_key(home: str) -> bytes:
    """This user's resume key, ``home/resume.key``: made on first use, owner-only (0600)."""
    path = os.path.join(home, RESUME_KEY_FILE)
    try:
        key = _read_key(path)
        if key is None:
            os.makedirs(home, mode=0o700, exist_ok=True)
            _make_key(path)
            key = _read_key(path)
    except OSError as exc:
        raise ResumeError(f"cannot set up the resume key {path}: {exc.strerror or exc}") from None
    if key is None or len(key) != RESUME_KEY_BYTES:
        raise ResumeError(f"the resume key {path} is damaged; delete it and a new one will be "
                          "made (resume files written with it will be checked again)")
    return key


def _read_key(path: str) -> Optional[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode & 0o777
        if os.name == "posix" and mode & 0o077:
            log.warning("%s was open to others (mode %o); restricting it to its owner", path, mode)
            os.chmod(path, 0o600)
        return f.read(RESUME_KEY_BYTES + 1)


def _make_key(path: str) -> None:
    """Publish a new key at ``path`` unless another process made one first (theirs is kept)."""
    tmp = f"{path}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(RESUME_KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic and never replaces: the first of racing processes wins
        except FileExistsError:
            pass
        except OSError:  # no hard links here (FAT, some network file systems)
            if not os.path.exists(path):
                os.replace(tmp, path)
    finally:
        _remove_quietly(tmp)


def _mac(key: bytes, body: dict) -> bytes:
    return hmac.new(key, _MAC_CONTEXT + bencode.encode(body), hashlib.sha256).digest()


@dataclass
class ResumeState:
    """One saved record: the verified pieces and the file stats they were verified against."""

    info_hash: bytes
    piece_length: int
    verified: Bitfield
    files: List[FileStat]

    def encode(self, key: bytes) -> bytes:
        body = {
            b"version": RESUME_VERSION,
            b"info-hash": self.info_hash,
            b"piece-length": self.piece_length,
            b"num-pieces": len(self.verified),
            b"verified": self.verified.to_bytes(),
            b"files": [list(stats) for stats in self.files],
        }
        body[b"mac"] = _mac(key, body)
        return bencode.encode(body)

    @classmethod
    def decode(cls, data: bytes, info_hash: bytes, piece_length: int, num_pieces: int,
               num_files: int, key: Optional[bytes]) -> "ResumeState":
        """Parse ``data``, authenticate it with ``key`` and check it belongs to the torrent
        described by the other arguments. No key means nothing can be trusted: ResumeError."""
        try:
            d = bencode.decode(data)
        except bencode.BencodeError as exc:
            raise ResumeError(f"not a resume file ({exc})") from None
        if not isinstance(d, dict):
            raise ResumeError("not a resume file (top level is not a dictionary)")
        version = _field(d, b"version", int)
        if version < RESUME_VERSION:
            raise ResumeError("resume file from an older version of STA, which did not "
                              "authenticate it")
        if version != RESUME_VERSION:
            raise ResumeError(f"unsupported resume file version {version}")
        mac = d.pop(b"mac", None)
        if key is None:
            raise ResumeError("no resume key to authenticate it")
        if not isinstance(mac, bytes) or not hmac.compare_digest(mac, _mac(key, d)):
            raise ResumeError("its authentication code does not match: it was changed outside "
                              "STA or written with another user's key")
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
            if (not isinstance(item, list) or len(item) != len(MISSING)
                    or not all(isinstance(x, int) for x in item) or item[0] < -1):
                raise ResumeError("resume file has a bad file entry")
            files.append((item[0], item[1], item[2], item[3]))
        return cls(info_hash, piece_length, verified, files)

    @classmethod
    def load(cls, path: str, info_hash: bytes, piece_length: int, num_pieces: int,
             num_files: int, key: Optional[bytes]) -> Optional["ResumeState"]:
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
        return cls.decode(data, info_hash, piece_length, num_pieces, num_files, key)

    def save(self, path: str, key: bytes) -> None:
        """Replace ``path`` with this state, authenticated with ``key``, atomically."""
        write_atomically(path, self.encode(key))


class ResumeStore:
    """Where one torrent's resume file lives, and its authenticated reading and writing.

    ``path`` is where the next save goes: ``root/.sta/<hex>.resume`` for a download,
    ``home/resume/<hex>-<tag>.resume`` for a read-only seed (a seed never writes into its data
    folder), or inside ``state_dir`` when one is given. A save the output folder refuses
    (read-only or shared folder, ``.sta`` a link) moves to the home path for good, said once.
    """

    def __init__(self, info_hash: bytes, root: str, home: str, *, readonly: bool,
                 state_dir: Optional[str] = None) -> None:
        self._info_hash = info_hash
        self._root = root
        self._home = home
        self._in_root = resume_path(os.path.join(root, STATE_DIR_NAME), info_hash)
        self._at_home = home_resume_path(home, info_hash, root)
        if state_dir is not None:
            self.path = resume_path(state_dir, info_hash)
        else:
            self.path = self._at_home if readonly else self._in_root
        self._key: Optional[bytes] = None
        self._key_failed = False

    @property
    def paths(self) -> List[str]:
        """Every place this torrent's state may be, the save target first."""
        return list(dict.fromkeys((self.path, self._in_root, self._at_home)))

    def key(self) -> Optional[bytes]:
        """The resume key; None (said once in the log) when it can be neither read nor made."""
        if self._key is None and not self._key_failed:
            try:
                self._key = resume_key(self._home)
            except ResumeError as exc:
                self._key_failed = True
                log.warning("%s; until then no resume state is saved or trusted, and the data is "
                            "checked on every start", exc)
        return self._key

    def load(self, piece_length: int, num_pieces: int, num_files: int) -> Optional[ResumeState]:
        """The newest state saved for this torrent, None when there is none; ResumeError (naming
        the file) when it cannot be trusted."""
        newest: Optional[Tuple[int, str]] = None
        for path in self.paths:
            if path == self.path and self._safe_to_write(path):
                remove_stale_temporaries(path)  # only where we write: a seed leaves its data be
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                continue
            if newest is None or mtime > newest[0]:
                newest = (mtime, path)
        if newest is None:
            return None
        if newest[1] == self._at_home and self.path == self._in_root:
            self.path = self._at_home  # moved there by an earlier run: do not try the folder again
        try:
            return ResumeState.load(newest[1], self._info_hash, piece_length, num_pieces,
                                    num_files, self.key())
        except ResumeError as exc:
            raise ResumeError(f"{newest[1]}: {exc}") from None

    def save(self, state: ResumeState) -> None:
        """Write ``state`` (see the class docstring for where); ResumeError when it cannot be."""
        key = self.key()
        if key is None:
            return  # said once by key(): a file without a MAC would never be trusted anyway
        try:
            self._write(self.path, state, key)
        except ResumeError as exc:
            if self.path == self._at_home or exc.errno not in _RELOCATABLE:
                raise
            log.log(logging.WARNING if exc.errno == errno.ELOOP else logging.INFO,
                    "%s; keeping the resume state in %s instead", exc, self._at_home)
            self.path = self._at_home
            self._write(self.path, state, key)

    def forget(self) -> None:
        """Remove this torrent's resume files, then their folders if left empty."""
        for path in self.paths:
            if not self._safe_to_write(path):
                continue
            remove_stale_temporaries(path)
            _remove_quietly(path)
            folder = os.path.dirname(path)
            if os.path.normcase(folder) != os.path.normcase(self._home):
                try:
                    os.rmdir(folder)
                except OSError:
                    pass  # something else is kept there

    def _write(self, path: str, state: ResumeState, key: bytes) -> None:
        if not self._safe_to_write(path):
            exc = LinkError(self._root, (STATE_DIR_NAME,))
            raise ResumeError(str(exc), exc.errno)
        if path == self._at_home:
            try:  # owner-only, like the key: its listing tells what this user seeds
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            except OSError:
                pass  # write_atomically reports it
        state.save(path, key)

    def _safe_to_write(self, path: str) -> bool:
        """False when ``path`` is the output folder's state and ``root/.sta`` is a link."""
        if path != self._in_root:
            return True
        try:
            check_below(self._root, (STATE_DIR_NAME,))
        except LinkError:
            return False
        return True


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
    current stat_file() results. A file is changed when its size, mtime, inode or ctime differs
    from the recorded one: modified, truncated, deleted, replaced (even by a copy that kept the old
    mtime), or written after the last save (e.g. before a crash). Every piece touching a changed
    file is hashed again, verified or not: that also finds pieces completed after the last save.
    So is every piece touching a file recorded shorter than its final size (not created yet), in
    case it was put in place since; a missing or short file costs no reading. Pieces touching
    only unchanged files keep their recorded state. Padding files (BEP 47) never exist on disk and
    zero-length files hold no piece: they change nothing.
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
        raise ResumeError(_write_message(path, exc), exc.errno) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise ResumeError(_write_message(path, exc), exc.errno) from None
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
