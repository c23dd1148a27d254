"""Checks made before a command fetches or serves a single byte, so that a mistake a user can
fix (a download folder that cannot be written, an address that is not this machine's) is told
at once, in one line, rather than after the first piece arrives or as a socket error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
from typing import List, Optional, Sequence, Tuple

from .errors import plain_reason

__all__ = ["PreflightError", "check_download_folder", "check_data_folder", "check_files",
           "check_bind_address", "WILDCARD_ADDRESSES"]

# Addresses that mean "every address of this machine": nothing to check.
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")
# Prefix of the probe file written and removed in a download folder; a leading dot keeps it out
# of `ls` should a crash leave it behind.
PROBE_PREFIX = ".sta-write-test-"

# How to list this machine's addresses, for the message when --bind names another machine's.
_LIST_ADDRESSES = "'ip addr' on Linux, 'ifconfig' on macOS, 'ipconfig' on Windows"


class PreflightError(Exception):
    """A command cannot start; the message says what to change."""


def check_download_folder(folder: str, option: str = "-o") -> None:
    """Raise PreflightError unless a file can be created in ``folder`` (made if missing).

    Folders made for the check are removed again, so a command that fails later for another
    reason (a mistyped .torrent name) leaves nothing behind. The message names the folder, the
    reason and ``option``, the way to choose another.
    """
    advice = f"choose another folder with {option} DIR"
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise PreflightError(f"cannot download into {folder}: it is a file, not a folder; "
                             f"{advice}")
    made = _missing_folders(folder)
    try:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise PreflightError(f"cannot create the download folder {folder}: "
                                 f"{plain_reason(exc)}; {advice}") from None
        try:
            fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
        except OSError as exc:
            raise PreflightError(f"cannot write in the download folder {folder}: "
                                 f"{plain_reason(exc)}; {advice}") from None
        os.close(fd)
        with contextlib.suppress(OSError):  # written, so writable: all that was asked
            os.remove(probe)
    finally:
        for path in made:  # deepest first
            try:
                os.rmdir(path)
            except OSError:
                break


def _missing_folders(folder: str) -> List[str]:
    """The folders os.makedirs(folder) would create, deepest first."""
    missing = []
    path = os.path.abspath(folder)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def check_data_folder(folder: str, option: str = "--data") -> None:
    """Raise PreflightError unless ``folder`` (the files a seed shares) is a folder."""
    if not os.path.isdir(folder):
        what = "not a folder" if os.path.exists(folder) else "no such folder"
        raise PreflightError(f"{option} {folder}: {what}; give the folder that holds the "
                             f"files with {option} DIR")


def check_files(paths_by_option: Sequence[Tuple[str, Optional[str]]]) -> None:
    """Raise PreflightError for the first (option, path) whose path is given but is not a
    readable file."""
    for option, path in paths_by_option:
        if path is not None and not os.path.isfile(path):
            what = "it is a folder, not a file" if os.path.isdir(path) else \
                "no such file"
            raise PreflightError(f"{option} {path}: {what}")


def check_bind_address(address: str, option: str = "--bind") -> None:
    """Raise PreflightError unless ``address`` is an address of this machine (or a wildcard);
    the message names ``option``, the option that gave it."""
    if address in WILDCARD_ADDRESSES:
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise PreflightError(f"{option} {address}: no such address or host name "
                             f"({getattr(exc, 'strerror', None) or exc}); list this machine's "
                             f"addresses with {_LIST_ADDRESSES}") from None
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.bind(sockaddr)
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise PreflightError(f"{option} {address}: not an address of this machine; list its "
                                 f"addresses with {_LIST_ADDRESSES}") from None
        raise PreflightError(f"{option} {address}: cannot use it: {plain_reason(exc)}") from None

