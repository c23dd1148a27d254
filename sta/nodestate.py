"""The node's saved list of torrents: what a long-running node seeds and downloads, kept across
restarts until `remove`, as every desktop client keeps its own (Transmission's resume folder,
qBittorrent's BT_backup).

Every long-running front end (the shell now, a web page later) runs one node and shares this one
list. Each entry holds what adding the torrent again needs without the file it came from: the
.torrent's bytes (or the magnet link's text), the folder it was added with (made absolute), and
its options (seed only, super-seed, the peers given, paused or not).

The file is ``STA_HOME/torrents.bencode`` (``~/.sta`` without STA_HOME), bencoded as
``{"version": 1, "torrents": [entry, ...]}`` in `status` order, and rewritten whole and
atomically (resume.write_atomically) on every change, so a crash leaves the old list or the new
one. A file that cannot be read is moved aside to ``torrents.bencode.bad`` with one warning, and
the node starts with no torrents rather than not at all.

One node at a time owns a list: it holds an OS lock on ``torrents.lock`` beside it (released by
the OS when the process ends, however it ends). A second node with the same STA_HOME runs with a
list in memory only, and says so.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from . import bencode, magnet, metainfo
from .resume import ResumeError, write_atomically

__all__ = ["SavedTorrent", "SavedList", "NodeStateError", "LIST_FILE", "entry_for",
           "with_metainfo"]

log = logging.getLogger(__name__)

LIST_FILE = "torrents.bencode"
LOCK_FILE = "torrents.lock"
BAD_SUFFIX = ".bad"
FORMAT_VERSION = 1
# The list is read whole into memory. A .torrent is tens of KiB to a few MiB (1 GiB in 16 KiB
# pieces: 1.3 MiB of piece hashes), so 1 GiB holds hundreds of large torrents, far beyond what a
# lab node keeps, while a damaged length cannot make the node read without end.
MAX_LIST_SIZE = 1 << 30


class NodeStateError(Exception):
    """The saved list of torrents cannot be read or written; the message says which and why."""


@dataclass(frozen=True)
class SavedTorrent:
    """One torrent of the list: ``torrent`` (a .torrent's bytes) or ``magnet`` (a link's text)."""

    info_hash: bytes
    name: str
    size: int
    folder: str
    torrent: Optional[bytes] = None
    magnet: Optional[str] = None
    seed_only: bool = False
    super_seed: bool = False
    paused: bool = False
    peers: Tuple[Tuple[str, int], ...] = ()
    added: int = 0

    def source(self) -> Any:
        """The Metainfo or Magnet to add; NodeStateError when the kept copy is unusable."""
        try:
            if self.torrent is not None:
                return metainfo.parse(self.torrent)
            return magnet.parse(self.magnet or "")
        except (metainfo.MetainfoError, magnet.MagnetError) as exc:
            raise NodeStateError(f"the saved copy of {self.name} is unusable: {exc}") from None


def entry_for(source: Any, folder: str, *, seed_only: bool = False, super_seed: bool = False,
              peers: Sequence[Tuple[str, int]] = ()) -> SavedTorrent:
    """The list entry for a Metainfo or a Magnet added with these options."""
    common = dict(folder=os.path.abspath(folder), seed_only=seed_only, super_seed=super_seed,
                  peers=tuple((host, int(port)) for host, port in peers), added=int(time.time()))
    if isinstance(source, magnet.Magnet):
        return SavedTorrent(source.info_hash, source.name or source.info_hash.hex(),
                            source.length or 0, magnet=magnet.format(source), **common)
    return SavedTorrent(source.info_hash, source.info.name, source.info.length,
                        torrent=_torrent_bytes(source), **common)


def with_metainfo(entry: SavedTorrent, meta: metainfo.Metainfo) -> SavedTorrent:
    """A magnet's entry once its metadata is in: the .torrent is kept instead of the link."""
    return replace(entry, name=meta.info.name, size=meta.info.length,
                   torrent=_torrent_bytes(meta), magnet=None)


def _torrent_bytes(meta: metainfo.Metainfo) -> bytes:
    """The .torrent again from its parsed value: the info dictionary's exact bytes (so the same
    info hash), its trackers, web seeds and free-text fields."""
    return metainfo.encode_torrent(meta.info.raw, meta.trackers, meta.url_list, meta.comment,
                                   meta.created_by, meta.creation_date)


# ------------------------------------------------------------------------------- encoding

def encode_list(entries: Sequence[SavedTorrent]) -> bytes:
    items = []
    for e in entries:
        item = {"info_hash": e.info_hash, "name": e.name, "size": e.size, "folder": e.folder,
                "seed_only": int(e.seed_only), "super_seed": int(e.super_seed),
                "paused": int(e.paused), "peers": [[h, p] for h, p in e.peers],
                "added": e.added}
        if e.torrent is not None:
            item["torrent"] = e.torrent
        if e.magnet is not None:
            item["magnet"] = e.magnet
        items.append(item)
    return bencode.encode({"version": FORMAT_VERSION, "torrents": items})


def decode_list(data: bytes) -> List[SavedTorrent]:
    """Entries of a list file; NodeStateError on anything but a whole, valid list."""
    try:
        top = bencode.decode(data)
    except bencode.BencodeError as exc:
        raise NodeStateError(f"not bencoded: {exc}") from None
    if not isinstance(top, dict) or top.get(b"version") != FORMAT_VERSION:
        raise NodeStateError("not a list of torrents of this version")
    items = top.get(b"torrents")
    if not isinstance(items, list):
        raise NodeStateError("no list of torrents in it")
    return [_decode_entry(item, n) for n, item in enumerate(items, 1)]


def _decode_entry(item: Any, number: int) -> SavedTorrent:
    def field(key: str, kind: type) -> Any:
        value = item.get(key.encode()) if isinstance(item, dict) else None
        if not isinstance(value, kind):
            raise NodeStateError(f"entry {number}: no valid {key!r}")
        return value

    def text(key: str) -> str:
        try:
            return field(key, bytes).decode("utf-8")
        except UnicodeDecodeError:
            raise NodeStateError(f"entry {number}: {key!r} is not UTF-8") from None

    info_hash = field("info_hash", bytes)
    peers = field("peers", list)
    if len(info_hash) != 20 or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], bytes)
            and isinstance(p[1], int) for p in peers):
        raise NodeStateError(f"entry {number}: bad info hash or peers")
    has_torrent = isinstance(item.get(b"torrent"), bytes)
    if not has_torrent and not isinstance(item.get(b"magnet"), bytes):
        raise NodeStateError(f"entry {number}: neither a .torrent nor a magnet link")
    return SavedTorrent(
        info_hash=info_hash, name=text("name"), size=field("size", int), folder=text("folder"),
        torrent=item[b"torrent"] if has_torrent else None,
        magnet=None if has_torrent else text("magnet"),
        seed_only=bool(field("seed_only", int)), super_seed=bool(field("super_seed", int)),
        paused=bool(field("paused", int)), added=field("added", int),
        peers=tuple((h.decode("utf-8", "replace"), p) for h, p in peers))


# ----------------------------------------------------------------------------------- the list

class SavedList:
    """The entries in `status` order, and the file they are kept in (None: memory only)."""

    def __init__(self, path: Optional[str] = None,
                 entries: Sequence[SavedTorrent] = ()) -> None:
        self.path = path
        self._entries = list(entries)
        self._lock: Any = None

    @classmethod
    def open(cls, state_dir: str) -> Tuple["SavedList", List[str]]:
        """The list kept in ``state_dir``, locked for this process, and the warnings to show.

        Never fails: a list that is locked by another node, unreadable or damaged gives a list
        in memory or an empty one, with a warning that says what happened.
        """
        path = os.path.join(state_dir, LIST_FILE)
        try:
            lock = _lock(os.path.join(state_dir, LOCK_FILE))
        except NodeStateError as exc:
            return cls(), [str(exc)]
        saved = cls(path)
        saved._lock = lock
        warnings = []
        try:
            saved._entries = _read(path)
        except NodeStateError as exc:
            warnings.append(_set_aside(path, str(exc)))
        return saved, warnings

    def close(self) -> None:
        """Let another node use this list."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    def __iter__(self) -> Iterator[SavedTorrent]:
        return iter(list(self._entries))

    def get(self, info_hash: bytes) -> Optional[SavedTorrent]:
        for entry in self._entries:
            if entry.info_hash == info_hash:
                return entry
        return None

    def put(self, entry: SavedTorrent) -> None:
        """Add an entry at the end, or replace the one with its info hash where it stands."""
        if self.get(entry.info_hash) is None:
            self._entries = self._entries + [entry]
        else:
            self._entries = [entry if e.info_hash == entry.info_hash else e
                             for e in self._entries]
        self.save()

    def update(self, info_hash: bytes, **changes: Any) -> None:
        """Change an entry's fields (no-op for one not in the list or already so)."""
        entries = []
        for entry in self._entries:
            if entry.info_hash == info_hash:
                entry = replace(entry, **changes)
            entries.append(entry)
        if entries != self._entries:
            self._entries = entries
            self.save()

    def remove(self, info_hash: bytes) -> None:
        entries = [e for e in self._entries if e.info_hash != info_hash]
        if len(entries) != len(self._entries):
            self._entries = entries
            self.save()

    def save(self) -> None:
        """Write the list, whole and atomically; NodeStateError says why it could not."""
        if self.path is None:
            return
        try:
            write_atomically(self.path, encode_list(self._entries))
        except ResumeError as exc:
            raise NodeStateError(f"cannot save the list of torrents: {exc}") from None


def _read(path: str) -> List[SavedTorrent]:
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_LIST_SIZE:
                raise NodeStateError(f"larger than {MAX_LIST_SIZE} bytes")
            data = f.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise NodeStateError(exc.strerror or str(exc)) from None
    return decode_list(data)


def _set_aside(path: str, reason: str) -> str:
    """Move a damaged list out of the way (keeping it for a person to look at); the warning."""
    bad = path + BAD_SUFFIX
    try:
        os.replace(path, bad)
    except OSError as exc:
        return (f"the saved list of torrents {path} cannot be read ({reason}) nor moved aside "
                f"({exc.strerror or exc}); starting with no torrents")
    return (f"the saved list of torrents {path} cannot be read ({reason}); it was kept as {bad} "
            "and this node starts with no torrents")


# ---------------------------------------------------------------------------------- the lock

class _FileLock:
    """An open file with an OS lock on it; the OS drops the lock when the process ends."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def close(self) -> None:
        self.handle.close()  # closing the descriptor releases both flock and msvcrt locks


def _lock(path: str) -> _FileLock:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = open(path, "a+b")
    except OSError as exc:
        raise NodeStateError(f"cannot open {path} ({exc.strerror or exc}); this node will not "
                             "remember its torrents") from None
    try:
        if os.name == "nt":
            import msvcrt
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise NodeStateError(f"another STA node uses the list of torrents in "
                             f"{os.path.dirname(path)}; this one will not remember its torrents "
                             "(give it its own STA_HOME)") from None
    return _FileLock(handle)
