"""Files below a folder, reached without following links.

A download folder is shared ground: another program, another user or an earlier torrent can leave
a symbolic link (or, on Windows, a junction) in it. Following one would let a torrent named ``d``
write or delete ``outside/x`` through ``d -> ../outside``. So every file STA opens, creates or
deletes under an output folder is reached one path part at a time, and a part that is a link is
refused with a ``LinkError``. The folder itself (``root``) may be a link: it is the user's choice.

Where the platform can (Linux, macOS, the BSDs), each part is opened relative to the descriptor of
the folder above it with ``O_NOFOLLOW``, so the check and the use are one system call and a link
swapped in between cannot win. Elsewhere (Windows) each existing part is checked with ``lstat``
before the path is used, which leaves a short race but refuses every link already in place.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import unicodedata
from typing import Iterable, List, Sequence, Tuple

__all__ = ["LinkError", "open_below", "remove_below", "check_below", "remove_empty_folders",
           "is_link", "overlapping_paths", "USE_DIR_FD"]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FOLDER_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC

# Descriptor-relative calls with O_NOFOLLOW: race-free checks (POSIX.1-2008 *at() calls).
USE_DIR_FD = bool(_O_NOFOLLOW and _O_DIRECTORY and all(
    f in os.supports_dir_fd for f in (os.open, os.mkdir, os.rmdir, os.unlink, os.stat)))

# lstat() of a symbolic link or junction on Windows carries this attribute (Python 3.8+ opens name
# surrogates, the reparse points that stand for another path, without following them).
_REPARSE_POINT = stat.FILE_ATTRIBUTE_REPARSE_POINT

# Default case-insensitive file systems (APFS, HFS+, NTFS): names differing only in case, or in
# Unicode normalisation (HFS+ stores NFD), are one file there.
_FOLD_CASE = sys.platform in ("darwin", "win32")


class LinkError(OSError):
    """A part of a path below the output folder is a link; STA does not go through it."""

    def __init__(self, root: str, parts: Sequence[str]) -> None:
        self.path = os.path.join(root, *parts)
        super().__init__(errno.ELOOP, f"{self.path} is a link")

    def __str__(self) -> str:
        return (f"{self.path} is a symbolic link (or junction): STA does not read, write or delete "
                "through links inside its output folder; replace it with the real folder or "
                "file, or choose another output folder")


def is_link(st: os.stat_result) -> bool:
    """True for the lstat() result of a symbolic link, or of a junction on Windows."""
    return stat.S_ISLNK(st.st_mode) or bool(getattr(st, "st_file_attributes", 0) & _REPARSE_POINT)


def open_below(root: str, parts: Sequence[str], flags: int, mode: int = 0o666,
               make_dirs: bool = False) -> int:
    """``os.open(root/parts..., flags)`` refusing links below ``root`` (LinkError).

    ``make_dirs`` creates the missing folders (``root`` included) first. Other failures raise the
    usual OSError (FileNotFoundError when a part is missing and not created).
    """
    if not USE_DIR_FD:
        check_below(root, parts)
        path = os.path.join(root, *parts)
        try:
            return os.open(path, flags, mode)
        except FileNotFoundError:
            if not make_dirs:
                raise
        os.makedirs(os.path.dirname(path), exist_ok=True)
        check_below(root, parts)
        return os.open(path, flags, mode)
    dfd = _open_folders(root, parts[:-1], make_dirs)
    try:
        return os.open(parts[-1], flags | _O_NOFOLLOW | _O_CLOEXEC, mode, dir_fd=dfd)
    except FileNotFoundError:
        raise
    except OSError:
        _raise_if_link_at(dfd, root, parts)
        raise
    finally:
        os.close(dfd)


def remove_below(root: str, parts: Sequence[str]) -> bool:
    """Delete the regular file ``root/parts...``; False when there is none (or it is a folder).

    A link anywhere below ``root``, the file itself included, raises LinkError and deletes
    nothing: deleting through a link could remove a file outside the folder.
    """
    if not USE_DIR_FD:
        check_below(root, parts)
        path = os.path.join(root, *parts)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return False
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True
    try:
        dfd = _open_folders(root, parts[:-1], False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        if is_link(st):
            raise LinkError(root, parts)
        if not stat.S_ISREG(st.st_mode):
            return False
        os.unlink(parts[-1], dir_fd=dfd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dfd)


def check_below(root: str, parts: Sequence[str]) -> None:
    """Raise LinkError if an existing part of ``root/parts...`` below ``root`` is a link."""
    path = root
    for depth, part in enumerate(parts):
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return  # the rest does not exist yet: nothing there can be a link
        if is_link(st):
            raise LinkError(root, parts[:depth + 1])


def remove_empty_folders(root: str, folders: Iterable[Tuple[str, ...]]) -> None:
    """Remove each folder ``root/parts...`` that is empty, deepest first; never through a link.

    A folder that still holds anything, is missing or sits behind a link is left alone.
    """
    for parts in sorted(set(folders), key=len, reverse=True):
        if not parts:
            continue
        try:
            if USE_DIR_FD:
                dfd = _open_folders(root, parts[:-1], False)
                try:
                    if is_link(os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)):
                        continue
                    os.rmdir(parts[-1], dir_fd=dfd)
                finally:
                    os.close(dfd)
            else:
                check_below(root, parts)
                os.rmdir(os.path.join(root, *parts))
        except OSError:
            pass  # not empty, gone already, or reached through a link: leave it


def _open_folders(root: str, folders: Sequence[str], make_dirs: bool) -> int:
    """A descriptor of the folder ``root/folders...``, each part opened with O_NOFOLLOW."""
    try:
        dfd = os.open(root, _FOLDER_FLAGS & ~_O_NOFOLLOW)  # the root may be a link
    except FileNotFoundError:
        if not make_dirs:
            raise
        os.makedirs(root, exist_ok=True)
        dfd = os.open(root, _FOLDER_FLAGS & ~_O_NOFOLLOW)
    try:
        for depth, name in enumerate(folders):
            try:
                fd = os.open(name, _FOLDER_FLAGS, dir_fd=dfd)
            except FileNotFoundError:
                if not make_dirs:
                    raise
                try:
                    os.mkdir(name, 0o777, dir_fd=dfd)
                except FileExistsError:
                    pass  # made by another thread or process meanwhile
                fd = os.open(name, _FOLDER_FLAGS, dir_fd=dfd)
            except OSError:
                _raise_if_link_at(dfd, root, folders[:depth + 1])
                raise
            os.close(dfd)
            dfd = fd
    except BaseException:
        os.close(dfd)
        raise
    return dfd


def _raise_if_link_at(dfd: int, root: str, parts: Sequence[str]) -> None:
    # O_NOFOLLOW reports a link as ELOOP on Linux and macOS, EMLINK on FreeBSD, ENOTDIR with
    # O_DIRECTORY on some systems: look at the part itself rather than trust the error number.
    try:
        st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return
    if is_link(st):
        raise LinkError(root, parts)


def overlapping_paths(a: Iterable[str], b: Iterable[str]) -> List[str]:
    """Paths of ``a`` that collide with ``b``: the same file, or a file where the other needs
    a folder. Pure; give it ``file_paths()`` of two torrents (absolute and normalised)."""
    b_files, b_folders = set(), set()
    for path in b:
        key = _path_key(path)
        b_files.add(key)
        b_folders.update(_parents(key))
    clashes = []
    for path in a:
        key = _path_key(path)
        if key in b_files or key in b_folders or any(p in b_files for p in _parents(key)):
            clashes.append(path)
    return sorted(clashes)


def _path_key(path: str) -> str:
    key = os.path.normcase(os.path.normpath(path))
    return unicodedata.normalize("NFC", key).casefold() if _FOLD_CASE else key


def _parents(path: str) -> List[str]:
    out = []
    parent = os.path.dirname(path)
    while parent and parent != path:
        out.append(parent)
        path, parent = parent, os.path.dirname(parent)
    return out
