"""The node: one session whose event loop runs in a background thread, and its saved list of
torrents.

A long-running front end (the shell) reads commands in its own thread; everything it asks of the
engine goes through ``Node.call`` (asyncio.run_coroutine_threadsafe), status snapshots included,
so the session's objects are only ever touched on its loop. Towards the front end a torrent is
its info hash; towards the engine the node uses only the session's and the torrents' public
methods and their status dictionaries.

The node keeps its saved list (nodestate.py) in step with what it runs: `seed` and `download` add
to it, `pause` and `resume` mark it, `remove` takes a torrent out, and on start every torrent in
it is added again. A saved torrent that cannot be added (its folder is gone, its data missing)
stays in the list as an error row until it is removed or `resume` brings it back.

Progress comes as notices through the console: data checked, metadata fetched, a download
finished, a torrent stopped by an error, --timeout reached.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Set, Tuple

from . import nodestate, transfer, ui
from .errors import describe_error, is_user_error
from .console import leave_signals_to_main_thread
from .magnet_torrent import METADATA, saved_metainfo
from .metainfo import Info
from .nodestate import NodeStateError, SavedList, SavedTorrent
from .session import Session, node_state_dir
from .torrent import DOWNLOADING, ERROR, PAUSED, SEEDING

__all__ = ["Node", "NodeError", "NoticeSink", "ratio"]

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


class NoticeSink(Protocol):
    """Where background notices go: the shell's Console, or a headless node's log."""

    def notice(self, text: str) -> None: ...

    def was_logged(self, message: str) -> bool: ...


def ratio(uploaded: int, downloaded: int, have: int) -> float:
    """Share ratio as Transmission shows it: uploaded over downloaded, or over the data held
    when nothing was downloaded (a seed that sent one full copy shows 1.00)."""
    base = downloaded or have
    return uploaded / base if base else 0.0


def shown_folder(folder: str) -> str:
    """A folder as a person would type it: relative to here when it is below here."""
    try:
        relative = os.path.relpath(folder)
    except ValueError:  # Windows: another drive
        return folder
    return folder if relative.startswith(os.pardir) else relative


def error_row(entry: SavedTorrent, error: str) -> Dict[str, Any]:
    """The status row of a saved torrent that is not running, with the keys of Torrent.status()."""
    return {"name": entry.name, "info_hash": entry.info_hash.hex(), "state": ERROR,
            "size": entry.size, "have": 0, "progress": 0.0, "down_rate": 0.0, "up_rate": 0.0,
            "downloaded": 0, "uploaded": 0, "peers": 0, "seeds": 0, "eta": None, "error": error}


@dataclass
class _Watched:
    """What the watcher knows of one running torrent between two looks."""

    started: float                   # loop time the add began
    kept: bool                       # a failure leaves an error row (see Node._start_adding)
    quiet: bool                      # added again on start: routine notices are not repeated
    deadline: Optional[float] = None  # --timeout: when to pause it
    recheck: bool = False            # every piece hashed, the resume state not trusted
    state: str = ""
    told: Set[str] = field(default_factory=set)


class Node:
    """One session on its own loop thread, and its saved list of torrents in ``state_dir``
    (default STA_HOME); ``console`` gets the background notices."""

    def __init__(self, console: NoticeSink, *, port: int, host: str = "0.0.0.0",
                 state_dir: Optional[str] = None, **session_options: Any) -> None:
        """``session_options`` go to the Session (encryption, tracker trust, DHT, LSD)."""
        self.console = console
        self.port = port
        self.host = host
        self.session_options = session_options
        self.state_dir = state_dir or node_state_dir()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.session: Optional[Session] = None
        self.saved = SavedList()
        self._thread: Optional[threading.Thread] = None
        self._watched: Dict[bytes, _Watched] = {}
        self._broken: Dict[bytes, str] = {}   # saved torrents that could not be added: why
        self._save_failed = False

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
        session = Session(port=self.port, host=self.host, state_dir=self.state_dir,
                          **self.session_options)
        await session.start()
        self.session = session
        session.spawn(self._watch())

    @property
    def listen_port(self) -> int:
        assert self.session is not None
        return self.session.listen_port

    def stop(self) -> None:
        """Close the session (trackers told "stopped"), the loop and its thread, and let go of
        the saved list (which keeps every torrent for the next start)."""
        if self.loop is None:
            return
        if self.session is not None:
            count = self.call(lambda: self.session.stats()["torrents"])
            if count:
                self.console.notice(f"stopping {count} torrent{'s' * (count != 1)} ...")
            try:
                self.call(self.session.close(), timeout=CLOSE_TIMEOUT)
            except NodeError:
                self.console.notice(f"note: not every tracker answered in {CLOSE_TIMEOUT:g} s; "
                                    "leaving anyway")
        try:
            self.call(_cancel_other_tasks(), timeout=JOIN_TIMEOUT)
        except NodeError:
            pass
        loop, self.loop = self.loop, None  # stopped once: a second stop() does nothing
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            if not self._thread.is_alive():
                loop.close()
        self.saved.close()

    def _change(self, method: Callable[..., None], *args: Any, **changes: Any) -> None:
        """Change the saved list; a list that cannot be written is told once, not each time."""
        try:
            method(*args, **changes)
        except NodeStateError as exc:
            if not self._save_failed:
                self.console.notice(f"warning: {exc}")
            self._save_failed = True
        else:
            self._save_failed = False

    # -- adding torrents ---------------------------------------------------------------------

    def restore(self) -> str:
        """Take the saved list (its warnings become notices) and add every torrent in it again;
        one line that says so ("" for none). Until then the node's list is in memory only."""
        self.saved, warnings = SavedList.open(self.state_dir)
        for warning in warnings:
            self.console.notice(f"warning: {warning}")
        return self.call(self._restore())

    async def _restore(self) -> str:
        entries = list(self.saved)
        for entry in entries:
            self._start_adding(entry, kept=True, quiet=True)
        await asyncio.sleep(0)  # each add registers its torrent (see _begin_add)
        if not entries:
            return ""
        paused = sum(1 for e in entries if e.paused)
        missing = len(self._broken)
        parts = [f"{paused} paused"] * bool(paused) + [
            f"{missing} whose folder is missing"] * bool(missing)
        return (f"Re-adding {len(entries)} torrent{'s' * (len(entries) != 1)} from the last run"
                + (f" ({', '.join(parts)})" if parts else "") + "; 'status' lists them")

    def add(self, source: Any, folder: str, *, seed_only: bool, super_seed: bool = False,
            peers: Sequence[Tuple[str, int]], recheck: bool, timeout: Optional[float]) -> str:
        """Start adding a Metainfo or magnet link in the background, and save it in the list;
        say what it will do. Its progress (data checked, metadata fetched, --timeout reached)
        comes as notices."""
        entry = nodestate.entry_for(source, folder, seed_only=seed_only, super_seed=super_seed,
                                    peers=peers)
        return self.call(self._begin_add(entry, recheck, timeout))

    async def _begin_add(self, entry: SavedTorrent, recheck: bool,
                         timeout: Optional[float]) -> str:
        assert self.session is not None
        key, name = entry.info_hash, entry.name
        if self.saved.get(key) is not None:
            number = self._number(key)
            torrent = self.session.torrent_for(key)
            if entry.peers and not entry.seed_only and torrent is not None:
                torrent.add_peers(list(entry.peers), "shell")
                count = len(entry.peers)
                return (f"{name}: already in the session (number {number}); added {count} "
                        f"peer{'s' * (count != 1)}")
            raise NodeError(f"{name} is already in this session (number {number} in 'status')")
        self._change(self.saved.put, entry)
        self._start_adding(entry, kept=False, quiet=False, recheck=recheck, timeout=timeout)
        # One turn of the loop lets the new task register the torrent (Session.add does so
        # before its first await), so a `status` typed right after already lists it.
        await asyncio.sleep(0)
        size = ui.human_size(entry.size) if entry.size else "size not known yet"
        if entry.seed_only:
            return f"{name}: checking the data in {shown_folder(entry.folder)} ({size}) to seed it"
        return f"{name}: downloading into {shown_folder(entry.folder)} ({size})"

    def _start_adding(self, entry: SavedTorrent, *, kept: bool, quiet: bool,
                      recheck: bool = False, timeout: Optional[float] = None) -> None:
        """Add ``entry`` in the background. ``kept``: a failure leaves it in the list as an error
        row (a torrent from the last run) instead of taking it out (one just typed)."""
        assert self.session is not None
        if kept and not os.path.isdir(entry.folder):
            self._broken[entry.info_hash] = (f"its folder {shown_folder(entry.folder)} is "
                                             "missing; 'resume' tries again once it is back")
            return
        self._broken.pop(entry.info_hash, None)
        now = asyncio.get_running_loop().time()
        watched = _Watched(started=now, kept=kept, quiet=quiet, recheck=recheck,
                           deadline=None if timeout is None else now + timeout)
        self.session.spawn(self._add(entry, watched))

    async def _add(self, entry: SavedTorrent, watched: _Watched) -> None:
        session = self.session
        assert session is not None
        try:
            torrent = await transfer.add_torrent(
                session, entry.source(), entry.folder, seed_only=entry.seed_only,
                recheck=watched.recheck, peers=() if entry.paused else entry.peers,
                super_seed=entry.super_seed, paused=entry.paused)
        except Exception as exc:
            if not is_user_error(exc):
                log.exception("%s: could not be added", entry.name)
            verb = "seed" if entry.seed_only else "download"
            self._failed(entry.info_hash, watched.kept, f"cannot {verb}: {describe_error(exc)}")
            return
        if entry.paused:  # restored as it was left: known peers are dialled on `resume`
            torrent.add_peers(list(entry.peers), "shell")
        self._watched[entry.info_hash] = watched
        status = torrent.status()
        watched.state = status["state"]
        if status["state"] == METADATA:
            if not watched.quiet:
                self.console.notice(f"{entry.name}: fetching the metadata from peers")
            return
        await self._started(entry.info_hash, status, watched)

    async def _started(self, key: bytes, status: Dict[str, Any], watched: _Watched) -> None:
        """Say what the data check found; a seed with none of its data does not stay."""
        entry = self.saved.get(key)
        if entry is None:  # removed meanwhile
            return
        name, have, size = status["name"], status["have"], status["size"]
        folder = shown_folder(entry.folder)
        if entry.seed_only and not have:
            torrent = self.session.torrent_for(key) if self.session else None
            if torrent is not None:
                await self.session.remove(torrent)  # type: ignore[union-attr]
            if watched.kept and not watched.recheck:
                # A resume state saved while the last run was still checking says "nothing":
                # a seed from the list is hashed in full once before it counts as missing.
                self._start_adding(entry, kept=True, quiet=watched.quiet, recheck=True)
                return
            self._failed(key, watched.kept, f"none of the data was found in {folder}; is --data "
                                            "the folder that holds it? (not seeding)")
        elif watched.quiet:
            pass
        elif entry.seed_only and have < size:
            self.console.notice(f"{name}: only {ui.human_size(have)} of {ui.human_size(size)} "
                                f"found in {folder}; seeding those")
        elif entry.seed_only:
            self.console.notice(f"{name}: seeding, info hash {status['info_hash']}")
        elif have == size:
            self.console.notice(f"{name}: already complete in {folder}; seeding")
        elif have:
            self.console.notice(f"{name}: resuming with {ui.human_size(have)} of "
                                f"{ui.human_size(size)} verified")

    def _failed(self, key: bytes, kept: bool, text: str) -> None:
        entry = self.saved.get(key)
        if entry is None:  # removed meanwhile
            return
        self._watched.pop(key, None)
        self.console.notice(f"{entry.name}: {text}")
        if kept:
            self._broken[key] = text
        else:
            self._change(self.saved.remove, key)

    # -- watching ----------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Announce metadata received, finished downloads and torrents stopped by an error, one
        line each, and pause torrents whose --timeout is reached."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                await self._look()
            except Exception:  # a bug here must not silence every later notice
                log.exception("watching the torrents failed")

    async def _look(self) -> None:
        session = self.session
        assert session is not None
        now = asyncio.get_running_loop().time()
        for key, watched in list(self._watched.items()):
            torrent = session.torrent_for(key)
            if torrent is None or self.saved.get(key) is None:
                if self.saved.get(key) is None:
                    del self._watched[key]
                continue
            status = torrent.status()
            before, watched.state = watched.state, status["state"]
            if before == METADATA and status["state"] not in (METADATA, ERROR):
                await self._metadata_received(key, status, watched)
            self._tell(status, watched, now)
            if watched.deadline is not None and now >= watched.deadline:
                watched.deadline = None
                await self._time_out(key, torrent, status, now - watched.started)

    def _tell(self, status: Dict[str, Any], watched: _Watched, now: float) -> None:
        name, told = status["name"], watched.told
        if status["size"] and status["have"] == status["size"] and status["downloaded"] \
                and "done" not in told:
            told.add("done")
            took = max(now - watched.started, 1e-3)
            self.console.notice(f"{name}: download complete ({ui.human_size(status['size'])} "
                                f"in {took:.1f} s, "
                                f"{ui.human_rate(status['downloaded'] / took)}); seeding")
        if status["state"] == ERROR and "error" not in told:
            told.add("error")
            text = f"{name}: stopped: {status['error']}"
            if not self.console.was_logged(text):  # the engine may have logged it
                self.console.notice(text)

    async def _metadata_received(self, key: bytes, status: Dict[str, Any],
                                 watched: _Watched) -> None:
        """A magnet became a torrent: keep its .torrent in the list from now on."""
        self.console.notice(f"{status['name']}: metadata received "
                            f"({ui.human_size(status['size'])})")
        entry = self.saved.get(key)
        if entry is not None and entry.torrent is None:
            meta = saved_metainfo(entry.source(), entry.folder)
            if meta is not None:
                self._change(self.saved.put, nodestate.with_metainfo(entry, meta))
        await self._started(key, status, watched)

    async def _time_out(self, key: bytes, torrent: Any, status: Dict[str, Any],
                        timeout: float) -> None:
        """--timeout in the shell pauses the torrent (the node itself keeps running)."""
        entry = self.saved.get(key)
        if entry is None:
            return
        if entry.seed_only and status["state"] == SEEDING:
            message = f"stopped seeding after {timeout:.0f} s (paused)"
        elif not entry.seed_only and status["state"] == DOWNLOADING:
            message = (f"gave up after {timeout:.0f} s (paused at "
                       f"{100.0 * status['progress']:.1f}%)")
        else:
            return
        await torrent.pause()
        self._change(self.saved.update, key, paused=True)
        self.console.notice(f"{status['name']}: {message}")

    # -- snapshots, taken on the loop --------------------------------------------------------

    def _rows(self) -> List[Tuple[bytes, Dict[str, Any]]]:
        """(info hash, status) of every torrent in `status` order: the saved list's, each from
        its running torrent or as an error row."""
        assert self.session is not None
        rows = []
        for entry in self.saved:
            key = entry.info_hash
            torrent = self.session.torrent_for(key)
            if torrent is not None:
                rows.append((key, torrent.status()))
            elif key in self._broken:
                rows.append((key, error_row(entry, self._broken[key])))
        return rows

    def _number(self, key: bytes) -> int:
        """The number `status` shows for a torrent in the list."""
        keys = [k for k, _ in self._rows()]
        return keys.index(key) + 1 if key in keys else len(keys) + 1

    def status_rows(self) -> List[Dict[str, Any]]:
        """Torrent.status() of every torrent in `status` order, with its number and ratio."""
        def on_loop() -> List[Dict[str, Any]]:
            rows = []
            for number, (_, s) in enumerate(self._rows(), 1):
                s = dict(s, number=number, ratio=ratio(s["uploaded"], s["downloaded"],
                                                       s["have"]))
                rows.append(s)
            return rows
        return self.call(on_loop)

    def peer_rows(self, only: Optional[bytes] = None) -> List[Dict[str, Any]]:
        """Torrent.peer_statuses() of one torrent, or of all, each with its torrent's number."""
        def on_loop() -> List[Dict[str, Any]]:
            assert self.session is not None
            rows = []
            for number, (key, s) in enumerate(self._rows(), 1):
                torrent = self.session.torrent_for(key)
                if torrent is not None and only in (None, key):
                    rows.extend(dict(r, torrent=number, name=s["name"], info_hash=key.hex())
                                for r in torrent.peer_statuses())
            return rows
        return self.call(on_loop)

    def stats(self) -> Dict[str, Any]:
        """Session.stats() with the host, the count of torrents in each state and the ratio."""
        def on_loop() -> Dict[str, Any]:
            assert self.session is not None
            stats = self.session.stats()
            states: Dict[str, int] = {}
            rows = [s for _, s in self._rows()]
            for s in rows:
                states[s["state"]] = states.get(s["state"], 0) + 1
            stats.update(host=self.host, states=states, torrents=len(rows),
                         ratio=ratio(stats["uploaded"], stats["downloaded"],
                                     sum(s["have"] for s in rows)))
            return stats
        return self.call(on_loop)

    def select(self, choose: Callable[[List[Tuple[str, str]]], int]) -> Tuple[bytes, str]:
        """(info hash, name) of the torrent ``choose`` picks from (name, info hash hex) pairs in
        `status` order; both run on the loop, so no torrent comes or goes in between."""
        def on_loop() -> Tuple[bytes, str]:
            rows = self._rows()
            key, status = rows[choose([(s["name"], key.hex()) for key, s in rows])]
            return key, status["name"]
        return self.call(on_loop)

    def torrent_names(self) -> List[str]:
        """Names for tab completion; none when the loop is too busy to answer at once."""
        try:
            return self.call(lambda: [s["name"] for _, s in self._rows()],
                             timeout=COMPLETION_TIMEOUT)
        except NodeError:
            return []

    def files(self, key: bytes) -> Tuple[List[str], str]:
        """Paths of a torrent's files (padding files left out) and the folder holding them,
        from its saved .torrent; none for a magnet still fetching its metadata."""
        def on_loop() -> Tuple[List[str], str]:
            entry = self.saved.get(key)
            if entry is None:
                raise NodeError("that torrent was removed meanwhile")
            root = shown_folder(entry.folder)
            if entry.torrent is None:
                return [], root
            info = entry.source().info
            return [os.path.join(root, *f.path) for f in info.files if not f.pad], root
        return self.call(on_loop)

    def pieces(self, key: bytes) -> Tuple[Optional[Info], bytes]:
        """A running torrent's info dictionary and its verified pieces as a BEP 3 bitfield;
        (None, b"") for a magnet still fetching its metadata or a torrent not running."""
        def on_loop() -> Tuple[Optional[Info], bytes]:
            assert self.session is not None
            torrent = self.session.torrent_for(key)
            picker = getattr(torrent, "picker", None)
            if picker is None:
                return None, b""
            return torrent.info, picker.have.to_bytes()  # type: ignore[union-attr]
        return self.call(on_loop)

    # -- pause, resume, remove ---------------------------------------------------------------

    def pause(self, key: bytes) -> str:
        """Pause a torrent and mark it paused in the list; return its state before."""
        async def on_loop() -> str:
            assert self.session is not None
            torrent = self.session.torrent_for(key)
            if torrent is None:
                return ERROR
            before = torrent.status()["state"]
            await torrent.pause()
            if torrent.status()["state"] == PAUSED:
                self._change(self.saved.update, key, paused=True)
            return before
        return self.call(on_loop)

    def resume(self, key: bytes) -> Tuple[str, str]:
        """Resume a paused torrent, or add again one that could not be added on start; return
        its state before and after."""
        def on_loop() -> Tuple[str, str]:
            assert self.session is not None
            torrent = self.session.torrent_for(key)
            entry = self.saved.get(key)
            if torrent is None:
                if entry is None or key not in self._broken:
                    raise NodeError("that torrent was removed meanwhile")
                self._change(self.saved.update, key, paused=False)
                self._start_adding(self.saved.get(key) or entry, kept=True, quiet=False)
                return ERROR, ERROR if key in self._broken else "checking"
            before = torrent.status()["state"]
            torrent.resume()
            if before == PAUSED:
                self._change(self.saved.update, key, paused=False)
            return before, torrent.status()["state"]
        return self.call(on_loop)

    def verify(self, key: bytes) -> None:
        """Hash every piece again (a resume state not trusted): the torrent leaves the session
        and is added back from the list, paused or not as it was."""
        async def on_loop() -> None:
            assert self.session is not None
            entry = self.saved.get(key)
            if entry is None:
                raise NodeError("that torrent was removed meanwhile")
            torrent = self.session.torrent_for(key)
            if torrent is not None:
                await self.session.remove(torrent)
            self._watched.pop(key, None)
            self._start_adding(entry, kept=True, quiet=True, recheck=True)
            await asyncio.sleep(0)  # the add registers its torrent (see _begin_add)
        self.call(on_loop)

    def remove(self, key: bytes, delete_files: bool = False) -> List[str]:
        """Remove a torrent from the session and from the list; return the files deleted."""
        async def on_loop() -> List[str]:
            assert self.session is not None
            if self.saved.get(key) is None:
                raise NodeError("that torrent was already removed")
            torrent = self.session.torrent_for(key)
            deleted: List[str] = []
            if torrent is not None:
                deleted = await self.session.remove(torrent, delete_files=delete_files)
            self._broken.pop(key, None)
            self._watched.pop(key, None)
            self._change(self.saved.remove, key)
            return deleted
        return self.call(on_loop)


async def _cancel_other_tasks() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=JOIN_TIMEOUT)
