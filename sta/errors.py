"""How an error reaches a user: which exceptions are theirs to act on, and the one line that
says so. Shared by every front end (the commands, the shell, the node behind both)."""

from __future__ import annotations

import errno
import sys

__all__ = ["is_user_error", "describe_error", "plain_reason"]

# What an operating-system error means, in the words of someone who is not a programmer; the
# file it is about (if any) is named by the caller. Errors not listed keep the system's words.
_PLAIN_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the disk is read-only",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOSPC: "the disk is full",
    errno.EADDRINUSE: "the address and port are in use by another program",
    errno.EADDRNOTAVAIL: "the address is not one of this machine's",
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "no route to the host",
    errno.ENETUNREACH: "the network is unreachable",
}


def is_user_error(exc: BaseException) -> bool:
    """True for errors a user can act on: OSError and every error class defined by STA."""
    if isinstance(exc, OSError):
        return True
    return any(cls.__module__.startswith("sta.") and issubclass(cls, Exception)
               and cls is not Exception for cls in type(exc).__mro__)


def plain_reason(exc: OSError) -> str:
    """An OSError's reason in plain words, without "[Errno N]" and without the file name."""
    reason = _PLAIN_REASONS.get(exc.errno) if exc.errno is not None else None
    if reason is None:
        reason = exc.strerror or str(exc) or type(exc).__name__
        reason = reason[:1].lower() + reason[1:]
    return reason


def describe_error(exc: BaseException) -> str:
    """One line for the user; OSError as "x.torrent: no such file or folder", not "[Errno 2]"."""
    urllib_error = sys.modules.get("urllib.error")  # loaded only by commands that use HTTP
    if urllib_error is not None:
        if isinstance(exc, urllib_error.HTTPError):
            return f"HTTP {exc.code} {exc.reason} from {exc.geturl()}"
        if isinstance(exc, urllib_error.URLError):
            reason = exc.reason
            return "cannot reach the server: " + (plain_reason(reason) if isinstance(
                reason, OSError) else str(reason))
    if isinstance(exc, OSError) and (exc.strerror or exc.errno in _PLAIN_REASONS):
        reason = plain_reason(exc)
        return reason if exc.filename is None else f"{exc.filename}: {reason}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
