"""Torrent metainfo (BEP 3, 12, 19, 27, 47): parse and validate .torrent files, and wrap them.

Parsing is pure (bytes in, frozen values out). The info hash is the SHA-1 of the info dictionary's
bytes exactly as they stand in the file, sliced out with ``bencode.raw_value`` and never
re-encoded, so a torrent whose encoder made unusual choices keeps the hash its swarm uses.

File paths are the part a hostile torrent attacks. A path part that is empty, ``.``, ``..``, holds
a NUL or a separator (``/`` or ``\\``) is rejected: such a torrent was made to escape the download
folder or is broken. Characters a file system cannot hold are made safe the way libtorrent does
it: control characters and, on Windows, ``<>:"|?*`` become ``_``, bidirectional overrides (which
disguise extensions) are dropped, Windows device names get a ``_`` prefix, trailing dots and
spaces go on Windows, and a part longer than 255 bytes is shortened keeping its extension. Like
libtorrent the rules depend on the platform, so data made by another client on this platform is
found under the names that client used.

Making a torrent from files on disk (walking folders, hashing pieces) is ``sta.maketorrent``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import __version__, bencode, magnet

__all__ = [
    "MetainfoError", "FileEntry", "Info", "Metainfo", "parse", "load", "parse_info",
    "encode_torrent", "safe_path_part", "check_piece_length",
]

# BEP 52 makes 16 KiB (one block) the smallest piece; every client assumes a piece holds whole
# blocks, and powers of two keep piece/block arithmetic exact.
MIN_PIECE_LENGTH = 16 * 1024
# 128 MiB: above what any creator offers (mktorrent and libtorrent stop at 64 MiB or below); a
# whole piece sits in memory while it is verified, so the bound is also a memory bound.
MAX_PIECE_LENGTH = 128 * 1024 * 1024
# libtorrent refuses .torrent files above 10 MB by default; 32 MiB leaves room for big dataset
# torrents (1.5 million pieces) while bounding what a hostile file makes us decode.
MAX_TORRENT_SIZE = 32 * 1024 * 1024
# libtorrent's default max_pieces; a torrent with more is either hostile or unusable.
MAX_PIECES = 2 ** 21
# Each file costs a FileEntry (~200 bytes) and an open() while checking; a million is far above
# real torrents (large ones hold tens of thousands) and bounds memory at ~200 MB.
MAX_FILES = 1000000
# Directory depth: libtorrent stops at 100 levels for v2 file trees; no real v1 torrent comes near.
MAX_PATH_DEPTH = 100
# Most file systems hold 255 bytes per name; longer parts are shortened to this many bytes,
# extension kept, like libtorrent does (it cuts at 240 and re-appends the extension).
MAX_NAME_BYTES = 255
# An extension longer than this is not an extension worth keeping when shortening a name.
MAX_EXTENSION_CHARS = 10
# What STA writes as "created by" in the .torrent files it makes or wraps.
CREATED_BY = "STA/" + __version__

_WINDOWS = os.name == "nt"
# Bidirectional-text overrides and marks: "abc\u202egpj.exe" shows as "abcexe.jpg".
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u200e\u200f")
_WINDOWS_BAD = frozenset('<>:"|?*\b')
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul", "clock$"]
    + ["com%d" % i for i in range(10)] + ["lpt%d" % i for i in range(10)])
_BITCOMET_PAD = "_____padding_file_"


class MetainfoError(Exception):
    """A .torrent is invalid or cannot be made; the message says what is wrong."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a torrent.

    ``path`` holds the parts relative to the download folder, the torrent name first for a
    multi-file torrent, already made safe for this platform's file system. ``offset`` is where
    the file's first byte sits in the torrent's concatenated data. ``pad`` marks a BEP 47 padding
    file, which is never written to disk.
    """

    path: Tuple[str, ...]
    length: int
    offset: int
    pad: bool = False


@dataclass(frozen=True)
class Info:
    """The validated info dictionary; ``raw`` is its exact bytes, ``info_hash`` their SHA-1."""

    name: str
    piece_length: int
    pieces: bytes = field(repr=False)
    files: Tuple[FileEntry, ...] = field(repr=False)
    length: int
    private: bool
    multi_file: bool
    raw: bytes = field(repr=False)
    info_hash: bytes

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) // 20

    def piece_hash(self, index: int) -> bytes:
        if not 0 <= index < self.num_pieces:
            raise IndexError("piece index out of range")
        return self.pieces[20 * index:20 * index + 20]

    def piece_size(self, index: int) -> int:
        if not 0 <= index < self.num_pieces:
            raise IndexError("piece index out of range")
        if index == self.num_pieces - 1:
            return self.length - index * self.piece_length
        return self.piece_length


@dataclass(frozen=True)
class Metainfo:
    """A whole .torrent: the info dictionary plus where to find peers and free-text fields."""

    info: Info
    announce: Optional[str] = None
    trackers: Tuple[Tuple[str, ...], ...] = ()
    url_list: Tuple[str, ...] = ()
    comment: Optional[str] = None
    created_by: Optional[str] = None
    creation_date: Optional[int] = None

    @property
    def info_hash(self) -> bytes:
        return self.info.info_hash

    def tracker_urls(self) -> Tuple[str, ...]:
        """Every tracker once, tier order."""
        seen: List[str] = []
        for tier in self.trackers:
            seen.extend(url for url in tier if url not in seen)
        return tuple(seen)

    def magnet(self) -> magnet.Magnet:
        return magnet.Magnet(info_hash=self.info_hash, name=self.info.name,
                             trackers=self.tracker_urls(), length=self.info.length,
                             web_seeds=self.url_list)

    def magnet_link(self) -> str:
        return magnet.format(self.magnet())


# ------------------------------------------------------------------------------------- parsing

def load(path: Union[str, os.PathLike]) -> Metainfo:
    """Read and parse a .torrent file."""
    with open(path, "rb") as f:
        data = f.read(MAX_TORRENT_SIZE + 1)
    name = os.fspath(path)
    if len(data) > MAX_TORRENT_SIZE:
        raise MetainfoError(f"not a .torrent file: {name} (larger than {MAX_TORRENT_SIZE} "
                            "bytes)")
    try:
        return parse(data)
    except MetainfoError as exc:
        # The plain sentence first, the technical detail after: "not a .torrent file: x.pdf
        # (bad bencoding at byte 0: ...)"; a torrent that parses but breaks a rule is "unusable".
        text = str(exc)
        if text.startswith("not a torrent file"):
            detail = text[len("not a torrent file"):].strip()
            raise MetainfoError(f"not a .torrent file: {name} {detail}".rstrip()) from None
        raise MetainfoError(f"unusable .torrent file: {name} ({text})") from None


def parse(data: bytes) -> Metainfo:
    """Parse and validate the bytes of a .torrent file."""
    if len(data) > MAX_TORRENT_SIZE:
        raise MetainfoError(f"larger than {MAX_TORRENT_SIZE} bytes; not a torrent file")
    try:
        top = bencode.decode(data)
        raw = bencode.raw_value(data, b"info") if isinstance(top, dict) else None
    except bencode.BencodeError as exc:
        raise MetainfoError(f"not a torrent file ({exc})") from None
    if not isinstance(top, dict):
        raise MetainfoError("not a torrent file (not a bencoded dictionary)")
    if raw is None:
        raise MetainfoError("not a torrent file (no info dictionary)")
    info = _parse_info_dict(top[b"info"], bytes(raw))

    announce = _url(top.get(b"announce"))
    tiers: List[Tuple[str, ...]] = []
    announce_list = top.get(b"announce-list")
    if isinstance(announce_list, list):
        # BEP 12: a client that understands announce-list ignores announce. Malformed entries are
        # skipped rather than fatal, as libtorrent and Transmission do.
        for tier in announce_list:
            if not isinstance(tier, list):
                continue
            urls = tuple(dict.fromkeys(u for u in map(_url, tier) if u))
            if urls:
                tiers.append(urls)
    if not tiers and announce:
        tiers.append((announce,))
    if announce is None and tiers:
        announce = tiers[0][0]

    url_list = top.get(b"url-list")  # BEP 19: one URL or a list of them
    seeds = [url_list] if isinstance(url_list, bytes) else url_list
    web_seeds = tuple(dict.fromkeys(
        u for u in map(_url, seeds if isinstance(seeds, list) else []) if u))

    date = top.get(b"creation date")
    return Metainfo(
        info=info, announce=announce, trackers=tuple(tiers), url_list=web_seeds,
        comment=_optional_text(top.get(b"comment.utf-8", top.get(b"comment"))),
        created_by=_optional_text(top.get(b"created by")),
        creation_date=date if isinstance(date, int) and date >= 0 else None)


def parse_info(raw: bytes) -> Info:
    """Parse and validate an info dictionary on its own (from a BEP 9 metadata exchange)."""
    if len(raw) > MAX_TORRENT_SIZE:
        raise MetainfoError(f"info dictionary larger than {MAX_TORRENT_SIZE} bytes")
    try:
        value = bencode.decode(raw)
    except bencode.BencodeError as exc:
        raise MetainfoError(f"bad info dictionary ({exc})") from None
    return _parse_info_dict(value, bytes(raw))


def _parse_info_dict(d: Any, raw: bytes) -> Info:
    if not isinstance(d, dict):
        raise MetainfoError("the info entry is not a dictionary")
    name_value = d.get(b"name.utf-8")
    if not isinstance(name_value, bytes) or not name_value:
        name_value = d.get(b"name")
    if not isinstance(name_value, bytes) or not name_value:
        raise MetainfoError("the torrent has no name")
    name = _path_part(name_value, "name")

    piece_length = d.get(b"piece length")
    if not isinstance(piece_length, int):
        raise MetainfoError("missing or bad 'piece length'")
    check_piece_length(piece_length)
    pieces = d.get(b"pieces")
    if not isinstance(pieces, bytes):
        raise MetainfoError("missing or bad 'pieces'")
    if len(pieces) % 20:
        raise MetainfoError(f"'pieces' is {len(pieces)} bytes, not a multiple of 20")

    has_files, has_length = b"files" in d, b"length" in d
    if has_files and has_length:
        raise MetainfoError("the info dictionary has both 'files' and 'length'")
    files: List[FileEntry] = []
    if has_files:
        files = _parse_files(d[b"files"], name)
    elif has_length:
        length = d[b"length"]
        if not isinstance(length, int) or length < 0:
            raise MetainfoError("bad 'length'")
        files = [FileEntry(path=(name,), length=length, offset=0)]
    else:
        raise MetainfoError("the info dictionary has neither 'length' nor 'files'")

    total = sum(f.length for f in files)
    if total == 0:
        raise MetainfoError("the torrent holds no data (total length 0)")
    expected = -(-total // piece_length)
    if expected > MAX_PIECES:
        raise MetainfoError(f"{expected} pieces; more than the {MAX_PIECES} STA accepts")
    if len(pieces) // 20 != expected:
        raise MetainfoError(f"'pieces' holds {len(pieces) // 20} hashes but {total} bytes in "
                            f"pieces of {piece_length} make {expected}")
    return Info(name=name, piece_length=piece_length, pieces=pieces, files=tuple(files),
                length=total, private=d.get(b"private") == 1, multi_file=has_files, raw=raw,
                info_hash=hashlib.sha1(raw).digest())


def _parse_files(value: Any, name: str) -> List[FileEntry]:
    if not isinstance(value, list) or not value:
        raise MetainfoError("'files' is not a non-empty list")
    if len(value) > MAX_FILES:
        raise MetainfoError(f"{len(value)} files; more than the {MAX_FILES} STA accepts")
    files: List[FileEntry] = []
    offset = 0
    seen: Dict[Tuple[str, ...], bool] = {}  # path -> is a directory
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise MetainfoError(f"file {index} is not a dictionary")
        length = entry.get(b"length")
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise MetainfoError(f"file {index} has a missing or bad 'length'")
        attr = entry.get(b"attr")
        pad = isinstance(attr, bytes) and b"p" in attr
        raw_path = entry.get(b"path.utf-8")
        if not isinstance(raw_path, list) or not raw_path:
            raw_path = entry.get(b"path")
        if (raw_path is None or raw_path == []) and pad:
            raw_path = [b".pad", str(length).encode()]  # BEP 47 allows a pad file without a path
        if not isinstance(raw_path, list) or not raw_path:
            raise MetainfoError(f"file {index} has a missing or empty 'path'")
        if len(raw_path) > MAX_PATH_DEPTH:
            raise MetainfoError(f"file {index}: path deeper than {MAX_PATH_DEPTH} folders")
        if raw_path[0] in (b"", b"/", b"\\") or (isinstance(raw_path[0], bytes)
                                                 and raw_path[0][:1] in (b"/", b"\\")):
            raise MetainfoError(f"file {index}: absolute path")
        parts = tuple(_path_part(p, f"file {index} path") for p in raw_path)
        pad = pad or parts[-1].startswith(_BITCOMET_PAD)
        path = (name,) + parts
        if not pad:
            _claim_path(seen, path)
        files.append(FileEntry(path=path, length=length, offset=offset, pad=pad))
        offset += length
    return files


def _claim_path(seen: Dict[Tuple[str, ...], bool], path: Tuple[str, ...]) -> None:
    """Refuse two files at one path, or a file where another file needs a folder."""
    shown = "/".join(path)
    if path in seen:
        raise MetainfoError(f"two entries for '{shown}'")
    for depth in range(1, len(path)):
        prefix = path[:depth]
        if seen.get(prefix) is False:
            raise MetainfoError(f"'{'/'.join(prefix)}' is both a file and a folder")
        seen[prefix] = True
    seen[path] = False


def check_piece_length(n: int) -> None:
    """Raise MetainfoError unless ``n`` is a piece length STA accepts."""
    if isinstance(n, bool) or n < MIN_PIECE_LENGTH or n & (n - 1):
        raise MetainfoError(f"piece length {n} is not a power of two of at least "
                            f"{MIN_PIECE_LENGTH // 1024} KiB")
    if n > MAX_PIECE_LENGTH:
        raise MetainfoError(f"piece length {n} is above the {MAX_PIECE_LENGTH // 2**20} MiB "
                            "STA accepts")


def _path_part(value: Any, what: str) -> str:
    """Validate one raw path part and return it made safe for this platform."""
    if not isinstance(value, bytes):
        raise MetainfoError(f"{what}: a path part is not a string")
    if value in (b"", b".", b".."):
        raise MetainfoError(f"{what}: path part {value.decode()!r} is not allowed")
    if b"\0" in value:
        raise MetainfoError(f"{what}: path part contains a NUL byte")
    if b"/" in value or b"\\" in value:
        raise MetainfoError(f"{what}: path part {_decode_lossy(value)!r} contains a separator")
    return safe_path_part(_decode_lossy(value))


def _decode_lossy(value: bytes) -> str:
    """UTF-8 text with each invalid byte replaced by '_', like libtorrent's verify_encoding."""
    text = value.decode("utf-8", "surrogateescape")
    if any("\udc80" <= c <= "\udcff" for c in text):
        text = "".join("_" if "\udc80" <= c <= "\udcff" else c for c in text)
    return text


def safe_path_part(part: str, windows: bool = _WINDOWS) -> str:
    """Make one file or folder name storable (see the module docstring for the rules)."""
    out = []
    for c in part:
        if c in _BIDI:
            continue
        if c < " " or (windows and c in _WINDOWS_BAD):
            out.append("_")
        else:
            out.append(c)
    text = "".join(out)
    if len(text.encode("utf-8")) > MAX_NAME_BYTES:
        text = _shorten(text)
    if windows:
        text = text.rstrip(" .")
        if text.split(".", 1)[0].lower() in _WINDOWS_RESERVED:
            text = "_" + text
    if text in ("", ".", ".."):
        text = "_"
    return text


def _shorten(text: str) -> str:
    dot = text.rfind(".")
    ext = text[dot:] if 0 < dot and len(text) - dot <= MAX_EXTENSION_CHARS else ""
    budget = MAX_NAME_BYTES - len(ext.encode("utf-8"))
    stem = text[:len(text) - len(ext)].encode("utf-8")[:budget].decode("utf-8", "ignore")
    return stem + ext


def _url(value: Any) -> Optional[str]:
    if not isinstance(value, bytes):
        return None
    try:
        text = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return text or None


def _optional_text(value: Any) -> Optional[str]:
    if not isinstance(value, bytes):
        return None
    return value.decode("utf-8", "replace") or None


# ------------------------------------------------------------------------------------ encoding

TrackerTiers = Iterable[Union[str, Sequence[str]]]


def encode_torrent(info_raw: bytes, trackers: TrackerTiers = (), url_list: Iterable[str] = (),
                   comment: Optional[str] = None, created_by: Optional[str] = None,
                   creation_date: Optional[int] = None) -> bytes:
    """Wrap an info dictionary's exact bytes into a .torrent.

    ``trackers`` holds tiers: a string is a tier of one tracker, a sequence of strings a tier of
    several (BEP 12). The first tracker becomes ``announce``; ``announce-list`` is written when
    there is more than one tracker.
    """
    parse_info(info_raw)  # never wrap something STA itself would refuse
    tiers = [[t] if isinstance(t, str) else [u for u in t] for t in trackers]
    tiers = [t for t in tiers if t]
    top: Dict[bytes, Any] = {}
    if tiers:
        top[b"announce"] = tiers[0][0]
        if sum(len(t) for t in tiers) > 1:
            top[b"announce-list"] = tiers
    if comment:
        top[b"comment"] = comment
    if created_by:
        top[b"created by"] = created_by
    if creation_date is not None:
        top[b"creation date"] = int(creation_date)
    seeds = list(url_list)
    if seeds:
        top[b"url-list"] = seeds
    # Keys in raw byte order with the info bytes spliced in untouched.
    out = [b"d"]
    for key in sorted(list(top) + [b"info"]):
        out.append(bencode.encode(key))
        out.append(info_raw if key == b"info" else bencode.encode(top[key]))
    out.append(b"e")
    return b"".join(out)
