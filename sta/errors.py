"""How an error reaches a user: which exceptions are theirs to act on, and the one line that
says so. Shared by every front end (the commands, the shell, the node behind both)."""

from __future__ import annotations

import sys


def is_user_error(exc: BaseException) -> bool:
    """True for errors a user can act on: OSError and every error class defined by STA."""
    if isinstance(exc, OSError):
        return True
    return any(cls.__module__.startswith("sta.") and issubclass(cls, Exception)
               and cls is not Exception for cls in type(exc).__mro__)


def describe_error(exc: BaseException) -> str:
    """One line for the user; OSError as "what: file" rather than "[Errno 2] ..."."""
    urllib_error = sys.modules.get("urllib.error")  # loaded only by commands that use HTTP
    if urllib_error is not None:
        if isinstance(exc, urllib_error.HTTPError):
            return f"HTTP {exc.code} {exc.reason} from {exc.geturl()}"
        if isinstance(exc, urllib_error.URLError):
            return f"cannot reach the server: {exc.reason}"
    if isinstance(exc, OSError) and exc.strerror:
        if exc.filename is not None:
            return f"{exc.filename}: {exc.strerror}"
        return exc.strerror
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
