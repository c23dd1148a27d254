"""What a torrent, a magnet link's stand-in and their announce loops need from the node that runs
them, declared here so that they never import the session above them.

The session (session.py) implements ``TorrentHost``; tests hand a torrent a small fake instead.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any, Awaitable, Optional, Protocol, Tuple

from .blockcache import DiskBacklog

Address = Tuple[str, int]


class TorrentHost(Protocol):
    """The node around a torrent: its loop and threads, its identity, and its dialler."""
    loop: asyncio.AbstractEventLoop
    hash_pool: Executor           # hashing and writing pieces
    disk_backlog: DiskBacklog     # what waits for hash_pool, for every torrent
    peer_id: bytes
    key: int                      # the announce `key` (BEP 7), the same for every torrent
    listen_port: int
    encryption: str               # tls policy: "require", "prefer" or "off"
    tracker_ssl_context: Any      # trust for https trackers and sources

    def spawn(self, coro: Awaitable[Any]) -> "asyncio.Task[Any]":
        """Run a background task that the node cancels when it closes."""

    def dial(self, owner: Any, address: Address) -> None:
        """Open an outgoing connection for ``owner``; its failure comes back as
        ``owner.dial_failed(address)``, its success as ``owner.peer_joined(conn)``."""

    def is_self(self, address: Address) -> bool:
        """The address is our own listen socket (learned when we dialled it)."""

    def replace(self, old: Any, new: Any) -> None:
        """A magnet link's stand-in hands its place to the torrent it became."""

    def peer_owner(self, info_hash: bytes) -> Optional[Any]:
        """The torrent or stand-in of this info hash in the node, if any."""

    def note_utp(self, address: Address) -> None:
        """The peer listening at ``address`` speaks uTP (another peer's PEX flags said so)."""
