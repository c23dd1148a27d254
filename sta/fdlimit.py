"""The open-file limit a node needs, raised at start-up where the platform allows.

Every peer connection is a file descriptor, and so is each data file the storage keeps open.
Linux starts most processes with a soft limit of 1,024 and macOS with 256, well below what
connlimits.MAX_CONNECTIONS needs; the hard limit is usually far higher, and a process may raise
its soft limit up to it. ``raise_open_file_limit`` does that once, at start-up, and says in one
line when it cannot reach what the node needs (Windows has no such limit for sockets, and no
``resource`` module).
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Tuple

from .connlimits import MAX_CONNECTIONS
from .storage import MAX_OPEN_FILES

log = logging.getLogger(__name__)

# Torrents whose data files may all be open at once, each with up to storage.MAX_OPEN_FILES
# handles: ten torrents at once is what a lab download of a course's material looks like.
TORRENTS_WITH_OPEN_FILES = 10
# Descriptors besides connections and data files: the listener, the DHT and LSD sockets, the
# event loop's own pipe, resume files being written, the web interface's connections.
OTHER_FILES = 100


def files_needed() -> int:
    """Descriptors a node needs to reach its connection limit with its torrents' files open."""
    return MAX_CONNECTIONS + TORRENTS_WITH_OPEN_FILES * MAX_OPEN_FILES + OTHER_FILES


def _resource_module() -> Any:
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource


def raise_open_file_limit(needed: Optional[int] = None,
                          resource: Any = None) -> Tuple[Optional[int], Optional[str]]:
    """Raise the soft RLIMIT_NOFILE towards ``needed`` (default ``files_needed()``), never
    lowering it. Returns (the soft limit now, or None where there is none to read; a one-line
    warning when the limit stays below what is needed, else None)."""
    want = files_needed() if needed is None else needed
    res = resource if resource is not None else _resource_module()
    if res is None:
        return None, None   # no per-process descriptor limit to raise
    try:
        soft, hard = res.getrlimit(res.RLIMIT_NOFILE)
    except (OSError, ValueError) as exc:
        return None, f"cannot read the open-file limit ({exc}); peers may be refused"
    if soft == res.RLIM_INFINITY or soft >= want:
        return soft, None
    target = want if hard == res.RLIM_INFINITY else min(want, hard)
    if target > soft:
        try:
            res.setrlimit(res.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            log.debug("setrlimit(%d) failed: %s", target, exc)
    if soft < want:
        return soft, (f"open-file limit is {soft}, below the {want} that {MAX_CONNECTIONS} "
                      f"peer connections need; raise it (ulimit -n {want}) to take that many "
                      "peers")
    return soft, None


def ensure_open_file_limit() -> None:
    """Raise the limit and log one warning when it stays too low (called by the commands that
    run a node)."""
    limit, warning = raise_open_file_limit()
    if warning is not None:
        log.warning("%s", warning)
    elif limit is not None:
        log.debug("open-file limit: %d", limit)
