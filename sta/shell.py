"""The interactive shell: one long-running node with a ``> `` prompt.

``sta shell [--port P] [-o DIR]`` starts one session (one listen port, many torrents) whose event
loop runs in a background thread, and reads commands in the main thread. ``create``, ``seed``,
``download`` and ``info`` lines are parsed by cli.build_parser(), so their grammar is exactly the
subcommands'; ``status``, ``peers``, ``stats``, ``pause``, ``resume``, ``remove``, ``help`` and
``exit`` have parsers of their own built from the same StaArgumentParser, so a mistyped line gets
a usage line and never ends the node.

Every command reaches the engine through asyncio.run_coroutine_threadsafe, status snapshots
included: the session's objects are only ever touched on its loop. Command output goes to stdout;
background notices (a download finished, a torrent stopped by an error) go through console.py,
which keeps them out of a command's output and off the line being typed; the tables of `status`,
`peers` and `stats` are drawn by ui.py.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import shlex
import sys
import threading
import traceback
from difflib import get_close_matches
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import cli, transfer, ui
from .console import (Completer, Console, Terminate, install_signal_handlers,
                      leave_signals_to_main_thread, route_logging, save_history, setup_readline)
from .session import Session
from .torrent import DOWNLOADING, ERROR, PAUSED, SEEDING
from .ui import peers_table, stats_lines, status_table

__all__ = ["run", "Shell", "ShellError", "find_torrent", "ratio", "split_line"]

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

CLI_COMMANDS = ("create", "seed", "download", "info")
SHELL_COMMANDS = ("status", "peers", "stats", "pause", "resume", "remove", "help", "exit")
COMMANDS = CLI_COMMANDS + SHELL_COMMANDS
TORRENT_COMMANDS = ("peers", "pause", "resume", "remove")
SUMMARIES = {
    "create": "make a .torrent from files or a folder",
    "seed": "share files you have (in the background)",
    "download": "download torrents (in the background; they keep seeding when done)",
    "info": "describe a .torrent or magnet link",
    "status": "every torrent: state, size, progress, rates, ratio, peers, ETA",
    "peers": "connected peers: client, address, flags, rates and totals",
    "stats": "session totals, uptime and the listen address",
    "pause": "disconnect a torrent's peers and leave its trackers; keeps its data",
    "resume": "start a paused torrent again",
    "remove": "stop a torrent and forget it; --delete-files also deletes its files",
    "help": "list the commands, or show one command's options",
    "exit": "tell every tracker 'stopped' and leave (also Ctrl-D)",
}


class ShellError(Exception):
    """A shell command could not do what was asked; the message says why."""


# ------------------------------------------------------------------------ pure helpers

def split_line(line: str) -> List[str]:
    """Words of a command line, with shell quoting ("my file.pdf").

    On Windows backslashes are path separators, not escapes, so quotes are only stripped.
    """
    try:
        if os.name == "nt":
            return [w[1:-1] if len(w) >= 2 and w[0] == w[-1] and w[0] in "\"'" else w
                    for w in shlex.split(line, posix=False)]
        return shlex.split(line)
    except ValueError as exc:
        raise ShellError(f"cannot read that line: {exc}") from None


def find_torrent(entries: Sequence[Tuple[str, str]], text: str) -> int:
    """Index into ``entries`` ((name, info hash hex) in `status` order) for what the user typed.

    TORRENT is the number shown by `status`, else an exact name, else a unique prefix of the info
    hash; anything ambiguous is refused rather than guessed.
    """
    if not entries:
        raise ShellError("there are no torrents in this session")
    if text.isdigit() and 1 <= int(text) <= len(entries):
        return int(text) - 1
    named = [i for i, (name, _) in enumerate(entries) if name == text]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ShellError(f"{len(named)} torrents are named {text!r}: use the number shown by "
                         "'status' or the info hash")
    prefix = text.lower()
    hashed = [i for i, (_, h) in enumerate(entries) if h.startswith(prefix)] if prefix else []
    if len(hashed) == 1:
        return hashed[0]
    if len(hashed) > 1:
        raise ShellError(f"{text!r} starts {len(hashed)} info hashes: type more of it")
    raise ShellError(f"no torrent {text!r}: give the number shown by 'status', the name, "
                     "or the start of the info hash")


def ratio(uploaded: int, downloaded: int, have: int) -> float:
    """Share ratio as Transmission shows it: uploaded over downloaded, or over the data held
    when nothing was downloaded (a seed that sent one full copy shows 1.00)."""
    base = downloaded or have
    return uploaded / base if base else 0.0


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _parser_actions(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    # argparse keeps its actions in a private list; there is no public accessor for either the
    # option strings (tab completion) or the subcommand parsers (help, shell-only defaults).
    return list(getattr(parser, "_actions", []))


def _subcommand_parsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in _parser_actions(parser):
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 (see above)
            return dict(action.choices)
    raise ShellError("the command line parser has no subcommands")


def _describe_source(meta: Any) -> Tuple[str, str]:
    """(name, size) of a Metainfo or of a magnet link (whose size may be unknown)."""
    info = getattr(meta, "info", None)
    if info is not None:
        return info.name, ui.human_size(info.length)
    length = getattr(meta, "length", None)
    return (meta.name or meta.info_hash.hex(),
            ui.human_size(length) if length else "size not known yet")


# ---------------------------------------------------------------------------------- shell

class Shell:
    def __init__(self, *, port: int = cli.DEFAULT_PEER_PORT,
                 folder: str = cli.DEFAULT_DOWNLOAD_DIR, host: str = "0.0.0.0",
                 tracker_ssl_context: Any = None, encryption: str = "prefer", stdin: Any = None,
                 stdout: Any = None, stderr: Any = None) -> None:
        self.port = port
        self.encryption = encryption
        self.tracker_ssl_context = tracker_ssl_context
        self.folder = folder
        self.host = host
        self.console = Console(stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr)
        self.cli_parser = cli.build_parser()
        self.cli_commands = _subcommand_parsers(self.cli_parser)
        # The shell has one port and its own download folder: a None default tells "given" apart.
        for name in ("seed", "download"):
            self.cli_commands[name].set_defaults(port=None)
        self.cli_commands["download"].set_defaults(output=None)
        self.parsers = self._shell_parsers()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.session: Optional[Session] = None
        self._thread: Optional[threading.Thread] = None
        self._reported: Dict[bytes, Tuple[Any, set]] = {}

    # -- parsers -----------------------------------------------------------------------------

    def _shell_parsers(self) -> Dict[str, cli.StaArgumentParser]:
        parsers = {}

        def add(name: str) -> cli.StaArgumentParser:
            p = cli.StaArgumentParser(prog=name, description=SUMMARIES[name] + ".")
            parsers[name] = p
            return p

        add("status").add_argument("--json", action="store_true", help="print JSON")
        p = add("peers")
        p.add_argument("torrent", nargs="?", metavar="TORRENT",
                       help="only this torrent's peers (default: every torrent's)")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.epilog = ("FLAGS: D downloading from the peer (d: we want to, it chokes us), U uploading "
                    "to it (u: it wants to, we choke it), E encrypted, I incoming, S snubbed.")
        add("stats").add_argument("--json", action="store_true", help="print JSON")
        for name in ("pause", "resume", "remove"):
            add(name).add_argument("torrent", metavar="TORRENT",
                                   help="number shown by 'status', name, or info hash prefix")
        parsers["remove"].add_argument(
            "--delete-files", action="store_true",
            help="also delete the torrent's files, and its folders left empty (for a seed: "
                 "the files in its --data folder)")
        parsers["remove"].add_argument("-y", "--yes", action="store_true",
                                       help="do not ask for confirmation on a terminal")
        add("help").add_argument("command", nargs="?", metavar="COMMAND")
        add("exit")
        return parsers

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
            raise ShellError(f"the node did not answer in {timeout:g} s") from None

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="sta-session", daemon=True)
        self._thread.start()
        self.console.start()
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
            except ShellError:
                self.console.notice(f"sta: note: not every tracker answered in "
                                    f"{CLOSE_TIMEOUT:g} s; leaving anyway")
        try:
            self.call(_cancel_other_tasks(), timeout=JOIN_TIMEOUT)
        except ShellError:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()
        self.console.stop()

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

    # -- the read-eval loop ------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
        except Exception as exc:
            self.stop()
            if not cli.is_user_error(exc):
                raise
            sys.stderr.write(f"{cli.PROG}: error: {cli.describe_error(exc)}\n")
            return 1
        assert self.session is not None
        restore_log = route_logging(self.console)
        restore_signals = install_signal_handlers()
        history = self._setup_readline()
        with self.console.lock:
            self.console.stderr.write(f"Listening for peers on {self.host}:"
                                      f"{self.session.listen_port}; type 'help' for commands, "
                                      "'exit' to leave\n")
            self.console.flush()
        try:
            self.console.repl(self.execute)
        except Terminate:
            pass
        finally:
            restore_signals()
            if history:
                save_history(self.console.readline, history)
            self.stop()
            restore_log()
        return 0

    def execute(self, line: str) -> bool:
        """Run one command line; False when the shell should end."""
        try:
            words = split_line(line)
            if not words or words[0].startswith("#"):
                return True
            name, rest = words[0].lower(), words[1:]
            if name in ("exit", "quit"):
                self.parsers["exit"].parse_args(rest)
                return False
            if name in CLI_COMMANDS:
                args = self.cli_parser.parse_args([name] + rest)
                getattr(self, "cmd_" + name)(args)
            elif name in self.parsers:
                getattr(self, "cmd_" + name)(self.parsers[name].parse_args(rest))
            else:
                self._unknown(name)
        except cli.UsageError as exc:
            self.console.stderr.write((exc.usage or "") + f"{exc.prog}: error: {exc}\n")
        except cli.ParserExit:
            pass
        except (KeyboardInterrupt, BrokenPipeError, Terminate):
            raise
        except Exception as exc:
            if cli.is_user_error(exc):
                self.console.stderr.write(f"{cli.PROG}: error: {cli.describe_error(exc)}\n")
            else:  # a bug: show it whole, and keep the node running
                traceback.print_exc(file=self.console.stderr)
        return True

    def _unknown(self, name: str) -> None:
        err = self.console.stderr
        err.write(f"usage: COMMAND [ARGS]; commands: {', '.join(COMMANDS)}\n")
        if name in ("tracker", "shell"):
            err.write(f"{name}: runs on its own: start it with 'python sta.py {name}' "
                      "in another terminal\n")
            return
        close = get_close_matches(name, COMMANDS + ("quit",), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; 'help' lists them"
        err.write(f"unknown command '{name}'{hint}\n")

    # -- create, info, seed, download --------------------------------------------------------

    def cmd_create(self, args: argparse.Namespace) -> None:
        self._shell_wide_options(args)
        cli.cmd_create(args)

    def cmd_info(self, args: argparse.Namespace) -> None:
        self._shell_wide_options(args)
        cli.cmd_info(args)

    def cmd_seed(self, args: argparse.Namespace) -> None:
        if not os.path.isdir(args.data):
            raise ShellError(f"{args.data}: no such folder (--data is the folder that holds "
                             "the files)")
        self._add(args, args.data, seed_only=True, peers=())

    def cmd_download(self, args: argparse.Namespace) -> None:
        self._add(args, args.output or self.folder, seed_only=False, peers=args.peer)

    def _shell_wide_options(self, args: argparse.Namespace) -> None:
        """Logging, and the tracker trust of torrents added to the one session, belong to the
        whole shell: say so when a command has them (`info --fetch` uses its trust itself)."""
        session_wide = args.command in ("seed", "download")
        given = [option for option, value in (
            ("--log-level", args.log_level != "warning"), ("--log-file", args.log_file),
            ("--tracker-cafile", session_wide and getattr(args, "tracker_cafile", None)),
            ("--tracker-pin", session_wide and getattr(args, "tracker_pin", None))) if value]
        if given:
            self.console.notice(f"sta: note: {', '.join(given)} apply to the whole shell and "
                                "are ignored here: give them to 'sta shell'")

    def _add(self, args: argparse.Namespace, folder: str, *, seed_only: bool,
             peers: Sequence[Tuple[str, int]]) -> None:
        self._shell_wide_options(args)
        assert self.session is not None
        if args.port is not None and args.port != self.session.listen_port:
            self.console.notice(f"sta: note: the shell serves every torrent on its one port "
                                f"({self.session.listen_port}); --port is ignored")
        metas = transfer.load_sources(args.torrents)
        for meta in metas:
            try:
                print(self.call(self._begin_add(meta, folder, seed_only, peers,
                                                getattr(args, "recheck", False), args.timeout)))
            except ShellError as exc:
                self.console.stderr.write(f"{cli.PROG}: error: {exc}\n")

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
            raise ShellError(f"{name} is already in this session (number {number} in 'status')")
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
            if not cli.is_user_error(exc):
                log.exception("%s: could not be added", name)
            self.console.notice(f"{name}: cannot {'seed' if seed_only else 'download'}: "
                                f"{cli.describe_error(exc)}")
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

    # -- status, peers, stats ----------------------------------------------------------------

    def _status_rows(self) -> List[Dict[str, Any]]:
        assert self.session is not None
        rows = []
        for number, t in enumerate(self.session.torrents.values(), 1):
            s = t.status()
            s["number"] = number
            s["ratio"] = ratio(s["uploaded"], s["downloaded"], s["have"])
            rows.append(s)
        return rows

    def cmd_status(self, args: argparse.Namespace) -> None:
        rows = self.call(self._status_rows)
        if args.json:
            _print_json(rows)
        elif not rows:
            print("no torrents: add one with 'seed' or 'download'")
        else:
            print("\n".join(status_table(rows, color=self.console.color)))

    def _resolve(self, text: str) -> Any:
        def on_loop() -> Any:
            assert self.session is not None
            torrents = list(self.session.torrents.values())
            return torrents[find_torrent([(t.name, t.info_hash.hex()) for t in torrents], text)]
        return self.call(on_loop)

    def _peer_rows(self, only: Any) -> List[Dict[str, Any]]:
        assert self.session is not None
        rows = []
        for number, t in enumerate(self.session.torrents.values(), 1):
            if only is None or t is only:
                for r in t.peer_statuses():
                    rows.append(dict(r, torrent=number, name=t.name,
                                     info_hash=t.info_hash.hex()))
        return rows

    def cmd_peers(self, args: argparse.Namespace) -> None:
        only = self._resolve(args.torrent) if args.torrent else None
        rows = self.call(self._peer_rows, only)
        if args.json:
            _print_json(rows)
        elif not rows:
            print("no peers connected")
        else:
            print("\n".join(peers_table(rows, with_torrent=only is None)))

    def _stats(self) -> Dict[str, Any]:
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

    def cmd_stats(self, args: argparse.Namespace) -> None:
        stats = self.call(self._stats)
        if args.json:
            _print_json(stats)
        else:
            print("\n".join(stats_lines(stats)))

    # -- pause, resume, remove ---------------------------------------------------------------

    def cmd_pause(self, args: argparse.Namespace) -> None:
        torrent = self._resolve(args.torrent)

        async def pause() -> str:
            before = torrent.state
            await torrent.pause()
            return before

        before = self.call(pause)
        if before in (DOWNLOADING, SEEDING):
            print(f"{torrent.name}: paused (its peers are disconnected; 'resume' starts it again)")
        else:
            print(f"{torrent.name}: not paused: it is {before}")

    def cmd_resume(self, args: argparse.Namespace) -> None:
        torrent = self._resolve(args.torrent)

        def resume() -> Tuple[str, str]:
            before = torrent.state
            torrent.resume()
            return before, torrent.state

        before, after = self.call(resume)
        if before == PAUSED:
            print(f"{torrent.name}: resumed ({after})")
        else:
            print(f"{torrent.name}: not paused: it is {before}")

    def cmd_remove(self, args: argparse.Namespace) -> None:
        torrent = self._resolve(args.torrent)

        def describe() -> Tuple[List[str], str]:
            storage = getattr(torrent, "storage", None)
            if storage is None:  # a magnet still fetching its metadata: no files yet
                return [], getattr(torrent, "folder", "")
            return [storage.file_path(i) for i, f in enumerate(torrent.info.files)
                    if not f.pad], storage.root

        files, root = self.call(describe)
        if args.delete_files and self.console.interactive and not args.yes:
            present = [p for p in files if os.path.isfile(p)]
            size = sum(os.path.getsize(p) for p in present)
            question = (f"Delete {len(present)} file{'s' * (len(present) != 1)} "
                        f"({ui.human_size(size)}) of {torrent.name} under {root}? [y/N] ")
            if not self.console.ask(question):
                print("nothing removed")
                return

        async def remove() -> List[str]:
            assert self.session is not None
            if self.session.torrents.get(torrent.info_hash) is not torrent:
                raise ShellError(f"{torrent.name} was already removed")
            return await self.session.remove(torrent, delete_files=args.delete_files)

        deleted = self.call(remove)
        if args.delete_files:
            print(f"{torrent.name}: removed; deleted {len(deleted)} of its {len(files)} "
                  f"file{'s' * (len(files) != 1)} under {root}")
        else:
            print(f"{torrent.name}: removed (its files stay in {root})")

    # -- help --------------------------------------------------------------------------------

    def cmd_help(self, args: argparse.Namespace) -> None:
        name = (args.command or "").lower()
        if not name:
            print("Commands (create, seed, download and info take the options of the sta "
                  "commands of the same name):")
            for command in COMMANDS:
                print(f"  {command:<10} {SUMMARIES[command]}")
            print("TORRENT is the number shown by 'status', a name, or the start of the info "
                  "hash.\n'help COMMAND' shows a command's options; Ctrl-C cancels the line "
                  "being typed.")
            return
        if name == "quit":
            name = "exit"
        if name in self.parsers:
            print(self.parsers[name].format_help().rstrip())
        elif name in CLI_COMMANDS:
            print(self.cli_commands[name].format_help().rstrip())
            if name in ("seed", "download"):
                print("\nIn the shell: every torrent is served on the shell's one port (--port "
                      "is ignored), runs in the background, and keeps seeding when complete; "
                      "--timeout pauses it." + (" -o defaults to the shell's -o."
                                                if name == "download" else ""))
        else:
            self._unknown(name)

    # -- readline ----------------------------------------------------------------------------

    def _setup_readline(self) -> Optional[str]:
        readline = self.console.readline
        if readline is None:
            return None
        options = {name: [s for a in _parser_actions(p) for s in a.option_strings]
                   for name, p in list(self.parsers.items()) + list(self.cli_commands.items())
                   if name in COMMANDS}
        completer = Completer(readline, COMMANDS, options, takes_command=("help",),
                              takes_torrent=TORRENT_COMMANDS, torrent_names=self.torrent_names)
        return setup_readline(readline, completer.complete)

    def torrent_names(self) -> List[str]:
        def names() -> List[str]:
            assert self.session is not None
            return [t.name for t in self.session.torrents.values()]
        try:
            return self.call(names, timeout=COMPLETION_TIMEOUT)
        except ShellError:
            return []


async def _cancel_other_tasks() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=JOIN_TIMEOUT)


def run(args: argparse.Namespace) -> int:
    """`sta shell`: run the node and its prompt until `exit`, Ctrl-D or SIGTERM."""
    return Shell(port=args.port, folder=args.output, encryption=args.encryption,
                 tracker_ssl_context=cli.tracker_trust(args)).run()
