"""The shell's node: one session whose event loop runs in a background thread.

The shell reads commands in the main thread; everything it asks of the engine goes through
``Node.call`` (asyncio.run_coroutine_threadsafe), status snapshots included, so the session's
objects are only ever touched on its loop. The node also adds torrents in the background (a
seed's data check, a magnet's metadata, --timeout) and watches its torrents, telling the console
when a download finishes or a torrent is stopped by an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import transfer, ui
from .errors import describe_error, is_user_error
from .console import Console, leave_signals_to_main_thread
from .session import Session
from .torrent import DOWNLOADING, ERROR, SEEDING

__all__ = ["Node", "NodeError", "ratio"]

log = logging.getLogger(__name__)

# A command that only reads or flips engine state answers in milliseconds; `remove` may wait for
# the trackers' "stopped" answers (announcer.STOP_TIMEOUT, 5 s). 30 s means the loop is stuck.
COMMAND_TIMEOUT = 30.0
# `exit` waits this long for session.close() (every tracker told "stopped", in parallel per
# torrent, each bounded by announcer.STOP_TIMEOUT) before leaving anyway.
CLOSE_TIMEOUT = 10.0
# The loop's thread and its tasks get this long to finish once the shell leaves; they are
# daemons after that.
JOIN_TIMEOUT = 5.0
# How often the loop looks for finished or failed torrents to announce. Half a second feels
# immediate to a person and costs nothing for the few torrents a shell holds.
WATCH_INTERVAL = 0.5
# Tab completion reads torrent names from the loop; a busy loop must not freeze the keyboard.
COMPLETION_TIMEOUT = 0.5


class NodeError(Exception):
    """The node could not do what was asked; the message says why."""


def ratio(uploaded: int, downloaded: int, have: int) -> float:
    """Share ratio as Transmission shows it: uploaded over downloaded, or over the data held
    when nothing was downloaded (a seed that sent one full copy shows 1.00)."""
    base = downloaded or have
    return uploaded / base if base else 0.0


def _describe_source(meta: Any) -> Tuple[str, str]:
    """(name, size) of a Metainfo or of a magnet link (whose size may be unknown)."""
    info = getattr(meta, "info", None)
    if info is not None:
        return info.name, ui.human_size(info.length)
    length = getattr(meta, "length", None)
    return (meta.name or meta.info_hash.hex(),
            ui.human_size(length) if length else "size not known yet")


class Node:
    """One session on its own loop thread; ``console`` gets the background notices."""

    def __init__(self, console: Console, *, port: int, host: str = "0.0.0.0",
                 encryption: str = "prefer", tracker_ssl_context: Any = None) -> None:
        self.console = console
        self.port = port
        self.host = host
        self.encryption = encryption
        self.tracker_ssl_context = tracker_ssl_context
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.session: Optional[Session] = None
        self._thread: Optional[threading.Thread] = None
        self._reported: Dict[bytes, Tuple[Any, set]] = {}

    # -- the event loop thread ---------------------------------------------------------------

    def call(self, coro_or_func: Any, *args: Any, timeout: float = COMMAND_TIMEOUT) -> Any:
        """Run a coroutine, or a plain function, on the session's loop; return its result."""
        async def on_loop() -> Any:
            if asyncio.iscoroutine(coro_or_func):
                return await coro_or_func
            result = coro_or_func(*args)
            return (await result) if asyncio.iscoroutine(result) else result

        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(on_loop(), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise NodeError(f"the node did not answer in {timeout:g} s") from None

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="sta-session", daemon=True)
        self._thread.start()
        self.call(self._start_session())

    def _run_loop(self) -> None:
        assert self.loop is not None
        leave_signals_to_main_thread()  # inherited by the loop's worker threads too
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _start_session(self) -> None:
        # Built on the loop: engine objects create asyncio primitives that bind to it on 3.8.
        session = Session(port=self.port, host=self.host, encryption=self.encryption,
                          tracker_ssl_context=self.tracker_ssl_context)
        await session.start()
        self.session = session
        asyncio.get_running_loop().create_task(self._watch())

    @property
    def listen_port(self) -> int:
        assert self.session is not None
        return self.session.listen_port

    def stop(self) -> None:
        """Close the session (trackers told "stopped"), then the loop and its thread."""
        if self.loop is None:
            return
        if self.session is not None:
            count = self.call(len, self.session.torrents)
            if count:
                self.console.notice(f"stopping {count} torrent{'s' * (count != 1)} ...")
            try:
                self.call(self.session.close(), timeout=CLOSE_TIMEOUT)
            except NodeError:
                self.console.notice(f"sta: note: not every tracker answered in "
                                    f"{CLOSE_TIMEOUT:g} s; leaving anyway")
        try:
            self.call(_cancel_other_tasks(), timeout=JOIN_TIMEOUT)
        except NodeError:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()

    async def _watch(self) -> None:
        """Announce finished downloads and torrents stopped by an error, one line each."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                self._report_changes()
            except Exception:  # a bug here must not silence every later notice
                log.exception("watching the torrents failed")

    def _report_changes(self) -> None:
        session = self.session
        if session is not None:
            for key in [k for k, (t, _) in self._reported.items()
                        if session.torrents.get(k) is not t]:
                del self._reported[key]
            for key, t in session.torrents.items():
                seen = self._reported.setdefault(key, (t, set()))[1]
                completed_at = getattr(t, "completed_at", None)  # magnet stand-ins have none
                if completed_at is not None and t.downloaded and "done" not in seen:
                    seen.add("done")
                    took = max(completed_at - t.started_at, 1e-3)
                    self.console.notice(f"{t.name}: download complete "
                                        f"({ui.human_size(t.info.length)} in {took:.1f} s, "
                                        f"{ui.human_rate(t.downloaded / took)}); seeding")
                if t.state == ERROR and "error" not in seen:
                    seen.add("error")
                    text = f"{t.name}: stopped: {t.error}"
                    if not self.console.was_logged(text):  # the engine may have logged it
                        self.console.notice(text)

    # -- adding torrents ---------------------------------------------------------------------

    def add(self, meta: Any, folder: str, *, seed_only: bool, peers: Sequence[Tuple[str, int]],
            recheck: bool, timeout: Optional[float]) -> str:
        """Start adding a Metainfo or magnet link in the background; say what it will do.

        Its progress (data checked, metadata fetched, --timeout reached) comes as notices.
        """
        return self.call(self._begin_add(meta, folder, seed_only, peers, recheck, timeout))

    async def _begin_add(self, meta: Any, folder: str, seed_only: bool,
                         peers: Sequence[Tuple[str, int]], recheck: bool,
                         timeout: Optional[float]) -> str:
        session = self.session
        assert session is not None
        name, size = _describe_source(meta)
        existing = session.torrents.get(meta.info_hash)
        if existing is not None:
            number = list(session.torrents).index(meta.info_hash) + 1
            if peers and not seed_only:
                existing.add_peers(list(peers), "shell")
                return f"{name}: already in the session (number {number}); " \
                       f"added {len(peers)} peer{'s' * (len(peers) != 1)}"
            raise NodeError(f"{name} is already in this session (number {number} in 'status')")
        session.spawn(self._add_and_report(meta, folder, seed_only, peers, recheck, timeout))
        # One turn of the loop lets the new task register the torrent (Session.add does so
        # before its first await), so a `status` typed right after already lists it.
        await asyncio.sleep(0)
        if seed_only:
            return f"{name}: checking the data in {folder} ({size}) to seed it"
        return f"{name}: downloading into {folder} ({size})"

    async def _add_and_report(self, meta: Any, folder: str, seed_only: bool,
                              peers: Sequence[Tuple[str, int]], recheck: bool,
                              timeout: Optional[float]) -> None:
        session = self.session
        assert session is not None
        name = _describe_source(meta)[0]
        started = session.loop.time()
        try:
            torrent = await transfer.add_torrent(session, meta, folder, seed_only=seed_only,
                                                 recheck=recheck, peers=peers)
        except Exception as exc:
            if not is_user_error(exc):
                log.exception("%s: could not be added", name)
            self.console.notice(f"{name}: cannot {'seed' if seed_only else 'download'}: "
                                f"{describe_error(exc)}")
            return
        if getattr(meta, "info", None) is None:  # a magnet link: the info dictionary comes later
            self.console.notice(f"{name}: fetching the metadata from peers")
            await torrent.done.wait()  # set on hand-over to the real torrent, or on failure
            if getattr(torrent, "successor", None) is None:
                return  # the watcher reports the error
            torrent = torrent.successor
            self.console.notice(f"{torrent.name}: metadata received "
                                f"({ui.human_size(torrent.info.length)})")
            meta = torrent.metainfo
        have = torrent.picker.have.count if torrent.picker else 0
        total = meta.info.num_pieces
        if seed_only and not have:
            await session.remove(torrent)
            self.console.notice(f"{name}: none of the data was found in {folder}; is --data the "
                                "folder that holds it? (not seeding)")
            return
        if seed_only and have < total:
            self.console.notice(f"{name}: only {have} of {total} pieces found in {folder}; "
                                "seeding those")
        elif seed_only:
            self.console.notice(f"{name}: seeding, info hash {meta.info_hash.hex()}")
        elif torrent.complete:
            self.console.notice(f"{name}: already complete in {folder}; seeding")
        elif have:
            self.console.notice(f"{name}: resuming with {have} of {total} pieces verified")
        if timeout is not None:
            await asyncio.sleep(max(0.0, timeout - (session.loop.time() - started)))
            await self._time_out(torrent, timeout, seed_only)

    async def _time_out(self, torrent: Any, timeout: float, seed_only: bool) -> None:
        """--timeout in the shell pauses the torrent (the node itself keeps running)."""
        session = self.session
        assert session is not None
        torrent = transfer.current(torrent)  # a magnet's stand-in hands over to the real one
        if session.torrents.get(torrent.info_hash) is not torrent:
            return
        if seed_only and torrent.state == SEEDING:
            await torrent.pause()
            self.console.notice(f"{torrent.name}: stopped seeding after {timeout:g} s (paused)")
        elif not seed_only and torrent.state == DOWNLOADING:
            await torrent.pause()
            self.console.notice(f"{torrent.name}: gave up after {timeout:g} s (paused at "
                                f"{100.0 * torrent.status()['progress']:.1f}%)")

    # -- snapshots, taken on the loop --------------------------------------------------------

    def status_rows(self) -> List[Dict[str, Any]]:
        """Torrent.status() of every torrent in `status` order, with its number and ratio."""
        def on_loop() -> List[Dict[str, Any]]:
            assert self.session is not None
            rows = []
            for number, t in enumerate(self.session.torrents.values(), 1):
                s = t.status()
                s["number"] = number
                s["ratio"] = ratio(s["uploaded"], s["downloaded"], s["have"])
                rows.append(s)
            return rows
        return self.call(on_loop)

    def peer_rows(self, only: Any = None) -> List[Dict[str, Any]]:
        """Torrent.peer_statuses() of one torrent, or of all, each with its torrent's number."""
        def on_loop() -> List[Dict[str, Any]]:
            assert self.session is not None
            rows = []
            for number, t in enumerate(self.session.torrents.values(), 1):
                if only is None or t is only:
                    for r in t.peer_statuses():
                        rows.append(dict(r, torrent=number, name=t.name,
                                         info_hash=t.info_hash.hex()))
            return rows
        return self.call(on_loop)

    def stats(self) -> Dict[str, Any]:
        """Session.stats() with the host, the count of torrents in each state and the ratio."""
        def on_loop() -> Dict[str, Any]:
            assert self.session is not None
            stats = self.session.stats()
            states: Dict[str, int] = {}
            have = 0
            for t in self.session.torrents.values():
                states[t.state] = states.get(t.state, 0) + 1
                have += t.status()["have"]
            stats.update(host=self.host, states=states,
                         ratio=ratio(stats["uploaded"], stats["downloaded"], have))
            return stats
        return self.call(on_loop)

    def select(self, choose: Callable[[List[Tuple[str, str]]], int]) -> Any:
        """The torrent ``choose`` picks from (name, info hash hex) pairs in `status` order; both
        run on the loop, so no torrent comes or goes in between."""
        def on_loop() -> Any:
            assert self.session is not None
            torrents = list(self.session.torrents.values())
            return torrents[choose([(t.name, t.info_hash.hex()) for t in torrents])]
        return self.call(on_loop)

    def torrent_names(self) -> List[str]:
        """Names for tab completion; none when the loop is too busy to answer at once."""
        def names() -> List[str]:
            assert self.session is not None
            return [t.name for t in self.session.torrents.values()]
        try:
            return self.call(names, timeout=COMPLETION_TIMEOUT)
        except NodeError:
            return []

    def files(self, torrent: Any) -> Tuple[List[str], str]:
        """Paths of a torrent's files (padding files left out) and the folder holding them."""
        def on_loop() -> Tuple[List[str], str]:
            storage = getattr(torrent, "storage", None)
            if storage is None:  # a magnet still fetching its metadata: no files yet
                return [], getattr(torrent, "folder", "")
            return [storage.file_path(i) for i, f in enumerate(torrent.info.files)
                    if not f.pad], storage.root
        return self.call(on_loop)

    # -- pause, resume, remove ---------------------------------------------------------------

    def pause(self, torrent: Any) -> str:
        """Pause a torrent; return its state before."""
        async def on_loop() -> str:
            before = torrent.state
            await torrent.pause()
            return before
        return self.call(on_loop)

    def resume(self, torrent: Any) -> Tuple[str, str]:
        """Resume a torrent; return its state before and after."""
        def on_loop() -> Tuple[str, str]:
            before = torrent.state
            torrent.resume()
            return before, torrent.state
        return self.call(on_loop)

    def remove(self, torrent: Any, delete_files: bool = False) -> List[str]:
        """Remove a torrent from the session; return the files deleted."""
        async def on_loop() -> List[str]:
            assert self.session is not None
            if self.session.torrents.get(torrent.info_hash) is not torrent:
                raise NodeError(f"{torrent.name} was already removed")
            return await self.session.remove(torrent, delete_files=delete_files)
        return self.call(on_loop)


async def _cancel_other_tasks() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=JOIN_TIMEOUT)
