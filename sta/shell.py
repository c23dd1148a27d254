"""The interactive shell: one long-running node with a ``> `` prompt.

``sta shell [--port P] [-o DIR]`` starts one session (one listen port, many torrents) whose event
loop runs in a background thread, and reads commands in the main thread. ``create``, ``seed``,
``download`` and ``info`` lines are parsed by cli.build_parser(), so their grammar is exactly the
subcommands'; ``status``, ``peers``, ``stats``, ``pause``, ``resume``, ``remove``, ``help`` and
``exit`` have parsers of their own built from the same StaArgumentParser, so a mistyped line gets
a usage line and never ends the node.

Every command reaches the engine through asyncio.run_coroutine_threadsafe, status snapshots
included: the session's objects are only ever touched on its loop. Command output goes to stdout;
background notices (a download finished, a torrent stopped by an error, log warnings) go to stderr
as one line each, never in the middle of a command's output. On a colour terminal with readline
they appear above the prompt at once and the line being typed is redrawn; elsewhere they wait for
the next prompt (a terminal without readline or with NO_COLOR) or are written at once (a pipe,
where there is no prompt to disturb).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import glob
import json
import logging
import os
import queue
import shlex
import signal
import sys
import threading
import traceback
from difflib import get_close_matches
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import cli, transfer, ui
from .session import Session
from .torrent import DOWNLOADING, ERROR, PAUSED, SEEDING

__all__ = ["run", "Shell", "ShellError", "find_torrent", "status_table", "peers_table",
           "stats_lines", "ratio", "split_line"]

log = logging.getLogger(__name__)

PROMPT = "> "
# A command that only reads or flips engine state answers in milliseconds; `remove` may wait for
# the trackers' "stopped" answers (announcer.STOP_TIMEOUT, 5 s). 30 s means the loop is stuck.
COMMAND_TIMEOUT = 30.0
# `exit` waits this long for session.close() (every tracker told "stopped", in parallel per
# torrent, each bounded by announcer.STOP_TIMEOUT) before leaving anyway.
CLOSE_TIMEOUT = 10.0
# Background threads get this long to finish once the loop stops; they are daemons after that.
JOIN_TIMEOUT = 5.0
# How often the loop looks for finished or failed torrents to announce. Half a second feels
# immediate to a person and costs nothing for the few torrents a shell holds.
WATCH_INTERVAL = 0.5
# Tab completion reads torrent names from the loop; a busy loop must not freeze the keyboard.
COMPLETION_TIMEOUT = 0.5
# At most this many file names are offered by one Tab press.
MAX_COMPLETIONS = 200
# Readline history kept across runs, like bash's and Python's own.
HISTORY_FILE = os.path.join("~", ".sta_history")
HISTORY_LENGTH = 1000
# Log messages remembered so the watcher does not repeat what a log line just said; a few
# seconds of warnings from a busy session.
RECENT_LOG_MESSAGES = 50
# Column widths that keep a status row within 120 columns with long names.
NAME_WIDTH = 30
CLIENT_WIDTH = 24
BAR_WIDTH = 20

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
_STATE_COLORS = {SEEDING: "32", DOWNLOADING: "36", PAUSED: "33", ERROR: "31"}


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


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int],
           colors: Optional[Dict[Tuple[int, int], str]] = None) -> List[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def cell(i: int, text: str, row: int) -> str:
        padded = text.rjust(widths[i]) if i in right else text.ljust(widths[i])
        code = (colors or {}).get((row, i))
        return f"\x1b[{code}m{padded}\x1b[0m" if code else padded

    lines = ["  ".join(cell(i, h, -1) for i, h in enumerate(headers)).rstrip()]
    for n, r in enumerate(rows):
        lines.append("  ".join(cell(i, text, n) for i, text in enumerate(r)).rstrip())
    return lines


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "~"


def status_table(rows: Sequence[Dict[str, Any]], color: bool = False) -> List[str]:
    """The `status` table; ``rows`` are Torrent.status() dicts with "number" and "ratio" added."""
    headers = ("#", "NAME", "STATE", "SIZE", "PROGRESS", "DOWN", "UP", "RATIO", "PEERS", "ETA")
    cells = []
    colors: Dict[Tuple[int, int], str] = {}
    for n, s in enumerate(rows):
        cells.append((
            str(s["number"]), _clip(s["name"], NAME_WIDTH), s["state"], ui.human_size(s["size"]),
            "%s %5.1f%%" % (ui.progress_bar(s["progress"], BAR_WIDTH), 100.0 * s["progress"]),
            ui.human_rate(s["down_rate"]), ui.human_rate(s["up_rate"]), "%.2f" % s["ratio"],
            str(s["peers"]) + (f" ({s['seeds']} seeds)" if s["seeds"] else ""),
            ui.human_eta(s["eta"]) if s["state"] == DOWNLOADING else "-"))
        if color and s["state"] in _STATE_COLORS:
            colors[(n, 2)] = _STATE_COLORS[s["state"]]
    lines = _table(headers, cells, right=(0, 3, 5, 6, 7), colors=colors)
    lines += [f"{s['number']}: {s['name']}: {s['error']}" for s in rows if s.get("error")]
    return lines


def peers_table(rows: Sequence[Dict[str, Any]], with_torrent: bool) -> List[str]:
    """The `peers` table; ``rows`` are Torrent.peer_statuses() rows with "torrent" added."""
    headers = ("#",) * with_torrent + ("ADDRESS", "CLIENT", "FLAGS", "HAVE", "DOWN", "UP",
                                       "DOWNLOADED", "UPLOADED")
    cells = [(str(r["torrent"]),) * with_torrent + (
        r["address"], _clip(r["client"] or "?", CLIENT_WIDTH), r["flags"] or "-",
        "%.1f%%" % (100.0 * r["progress"]), ui.human_rate(r["down_rate"]),
        ui.human_rate(r["up_rate"]), ui.human_size(r["downloaded"]),
        ui.human_size(r["uploaded"])) for r in rows]
    first = 1 if with_torrent else 0
    return _table(headers, cells, right=[first + i for i in (3, 4, 5, 6, 7)])


def stats_lines(stats: Dict[str, Any]) -> List[str]:
    """The `stats` text; ``stats`` is the `stats --json` object."""
    states = ", ".join(f"{n} {state}" for state, n in sorted(stats["states"].items()))
    fields = [
        ("listening on", f"{stats['host']}:{stats['listen_port']}"),
        ("uptime", ui.human_eta(stats["uptime"]) if stats["uptime"] < 86400 * 99 else "long"),
        ("torrents", f"{stats['torrents']}" + (f" ({states})" if states else "")),
        ("peers", str(stats["peers"])),
        ("downloaded", f"{ui.human_size(stats['downloaded'])} "
                       f"(now {ui.human_rate(stats['down_rate'])})"),
        ("uploaded", f"{ui.human_size(stats['uploaded'])} "
                     f"(now {ui.human_rate(stats['up_rate'])})"),
        ("ratio", "%.2f" % stats["ratio"]),
        ("peer id", stats["peer_id"]),
    ]
    return [f"{label + ':':<14}{value}" for label, value in fields]


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


# ------------------------------------------------------------------------------ console

class _Console:
    """Prompt, command output and background notices, each line whole.

    The main thread holds ``lock`` while a command runs; the notice thread takes it to write, so a
    notice never lands inside a table. The loop thread only queues notices and never waits.
    """

    def __init__(self, stdin: Any, stdout: Any, stderr: Any) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.interactive = _isatty(stdin)
        self.readline = _load_readline() if self.interactive else None
        self.color = ui.use_color(stdout)
        # Redrawing the prompt under a notice needs readline's buffer and ANSI erase.
        self.redraw = self.readline is not None and self.color
        self.lock = threading.RLock()
        self._deferred: List[str] = []
        self._at_prompt = False
        self._prompt_shown = False
        self._told_how_to_leave = False
        self._recent: "collections.deque[str]" = collections.deque(maxlen=RECENT_LOG_MESSAGES)
        self._recent_lock = threading.Lock()
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._thread = threading.Thread(target=self._write_notices, name="sta-shell-notices",
                                        daemon=True)
        if self.readline is not None:
            hook = getattr(self.readline, "set_pre_input_hook", None)  # absent with libedit
            if hook is None:
                self.redraw = False
            else:
                hook(self._prompt_drawn)
            if not self.color and "libedit" not in (self.readline.__doc__ or ""):
                # bracketed-paste mode writes escapes around every prompt: not with NO_COLOR
                self.readline.parse_and_bind("set enable-bracketed-paste off")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread.ident is not None:
            self._thread.join(JOIN_TIMEOUT)
        with self.lock:
            self._flush_deferred()

    def notice(self, text: str) -> None:
        """One line for stderr. From the main thread it is part of the command being run and is
        written at once; from other threads it is queued (never blocks the event loop)."""
        if threading.current_thread() is threading.main_thread():
            with self.lock:
                self._err(text)
        else:
            self._queue.put(text)

    def logged(self, message: str) -> None:
        """Remember a log message shown, so the same news is not told twice."""
        with self._recent_lock:
            self._recent.append(message)

    def was_logged(self, message: str) -> bool:
        with self._recent_lock:
            return message in self._recent

    def _prompt_drawn(self) -> None:
        self._prompt_shown = True

    def _write_notices(self) -> None:
        _leave_signals_to_main_thread()
        while True:
            text = self._queue.get()
            if text is None:
                return
            with self.lock:
                try:
                    self._write_notice(text)
                except (OSError, ValueError):  # the terminal went away: nothing to tell
                    pass

    def _write_notice(self, text: str) -> None:
        if not (self.interactive and self._at_prompt):
            self._err(text)
        elif not self.redraw:
            self._deferred.append(text)  # shown before the next prompt
        elif not self._prompt_shown:
            self._err(text)  # the prompt comes right after
        else:
            typed = self.readline.get_line_buffer()
            self.stdout.write("\r\x1b[K")
            self.stdout.flush()
            self._err(text)
            self.stdout.write(PROMPT + typed)
            self.stdout.flush()

    def _err(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def _flush_deferred(self) -> None:
        for text in self._deferred:
            self._err(text)
        self._deferred.clear()

    def read_line(self) -> Optional[str]:
        """The next command line; None at end of input (Ctrl-D, closed pipe)."""
        with self.lock:
            self._flush_deferred()
            self._at_prompt = True
            self._prompt_shown = False
        try:
            if self.interactive:
                return input(PROMPT)
            line = self.stdin.readline()
            return line.rstrip("\r\n") if line else None
        except EOFError:
            return None
        finally:
            with self.lock:
                self._at_prompt = False

    def interrupted(self, during_command: bool = False) -> None:
        """Ctrl-C: a new line and prompt; the first time, say how to leave instead."""
        with self.lock:
            if self.interactive:
                self.stdout.write("\n")  # the terminal echoed ^C where the cursor was
                self.stdout.flush()
            if during_command or not self.interactive:
                self._err("interrupted")
            if not self._told_how_to_leave:
                self._told_how_to_leave = True
                self._err("(Ctrl-C cancels a line; 'exit' or Ctrl-D leaves)")

    def ask(self, question: str) -> bool:
        """A yes/no question on the terminal; anything but yes (Ctrl-C, Ctrl-D too) is no."""
        try:
            answer = input(question)
        except (EOFError, KeyboardInterrupt):
            self.stdout.write("\n")
            return False
        return answer.strip().lower() in ("y", "yes")

    def flush(self) -> None:
        for stream in (self.stdout, self.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


class _NoticeHandler(logging.Handler):
    """Log records as shell notices, so a warning from the loop thread cannot split the prompt."""

    def __init__(self, console: _Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.logged(record.getMessage())
            self.console.notice(self.format(record))
        except Exception:  # logging must never raise into the engine
            self.handleError(record)


def _describe_source(meta: Any) -> Tuple[str, str]:
    """(name, size) of a Metainfo or of a magnet link (whose size may be unknown)."""
    info = getattr(meta, "info", None)
    if info is not None:
        return info.name, ui.human_size(info.length)
    length = getattr(meta, "length", None)
    return (meta.name or meta.info_hash.hex(),
            ui.human_size(length) if length else "size not known yet")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


def _load_readline() -> Any:
    try:
        import readline
    except ImportError:  # Windows: input() still edits the line, without history or completion
        return None
    return readline


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
        self.console = _Console(stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr)
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
        _leave_signals_to_main_thread()  # inherited by the loop's worker threads too
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
        restore_log = _route_logging(self.console)
        restore_signals = _install_signal_handlers()
        history = self._setup_readline()
        with self.console.lock:
            self.console.stderr.write(f"Listening for peers on {self.host}:"
                                      f"{self.session.listen_port}; type 'help' for commands, "
                                      "'exit' to leave\n")
            self.console.flush()
        try:
            self.repl()
        except _Terminate:
            pass
        finally:
            restore_signals()
            if history:
                _save_history(self.console.readline, history)
            self.stop()
            restore_log()
        return 0

    def repl(self) -> None:
        while True:
            try:
                line = self.console.read_line()
            except KeyboardInterrupt:  # Ctrl-C drops the line being typed, not the node
                self.console.interrupted()
                continue
            if line is None:
                if self.console.interactive:
                    self.console.stdout.write("\n")
                return
            try:
                with self.console.lock:
                    try:
                        if not self.execute(line):
                            return
                    finally:
                        self.console.flush()
            except KeyboardInterrupt:
                self.console.interrupted(during_command=True)
            except BrokenPipeError:
                return

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
        except (KeyboardInterrupt, BrokenPipeError, _Terminate):
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
        completer = _Completer(self, readline, options)
        readline.set_completer(completer.complete)
        readline.set_completer_delims(" \t\n")
        if "libedit" in (readline.__doc__ or ""):  # macOS's readline is libedit underneath
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        path = os.path.expanduser(HISTORY_FILE)
        try:
            readline.read_history_file(path)
        except (OSError, UnicodeDecodeError):
            pass
        readline.set_history_length(HISTORY_LENGTH)
        return path

    def torrent_names(self) -> List[str]:
        def names() -> List[str]:
            assert self.session is not None
            return [t.name for t in self.session.torrents.values()]
        try:
            return self.call(names, timeout=COMPLETION_TIMEOUT)
        except ShellError:
            return []


class _Completer:
    """Tab completion: commands, then options, torrent names or file names."""

    def __init__(self, shell: Shell, readline: Any, options: Dict[str, List[str]]) -> None:
        self.shell = shell
        self.readline = readline
        self.options = options
        self.matches: List[str] = []

    def complete(self, text: str, state: int) -> Optional[str]:
        if state == 0:
            try:
                self.matches = self._matches(text)[:MAX_COMPLETIONS]
            except Exception:  # readline swallows errors; an empty list is the honest answer
                self.matches = []
        return self.matches[state] if state < len(self.matches) else None

    def _matches(self, text: str) -> List[str]:
        before = self.readline.get_line_buffer()[:self.readline.get_begidx()].split()
        if not before:
            return [c + " " for c in COMMANDS if c.startswith(text)]
        command = before[0].lower()
        if text.startswith("-"):
            return [o + " " for o in self.options.get(command, ()) if o.startswith(text)]
        if command == "help":
            return [c + " " for c in COMMANDS if c.startswith(text)]
        if command in TORRENT_COMMANDS:
            names = self.shell.torrent_names()
            return [shlex.quote(n) + " " for n in names if n.startswith(text)]
        return _complete_path(text)


def _complete_path(text: str) -> List[str]:
    expanded = os.path.expanduser(text)
    found = []
    for path in sorted(glob.glob(glob.escape(expanded) + "*"))[:MAX_COMPLETIONS]:
        shown = text + path[len(expanded):]
        found.append(shown + (os.sep if os.path.isdir(path) else " "))
    return found


def _save_history(readline: Any, path: str) -> None:
    try:
        readline.write_history_file(path)
    except OSError:
        pass


# ------------------------------------------------------------------------- process glue

class _Terminate(BaseException):
    """SIGTERM or SIGHUP: leave as `exit` does (trackers told "stopped")."""


def _leave_signals_to_main_thread() -> None:
    """Block Ctrl-C and the termination signals in the calling (background) thread.

    The kernel hands a process-wide signal to any thread that does not block it; only the main
    thread's read of the prompt is interrupted by it, so the others must not take it.
    """
    block = getattr(signal, "pthread_sigmask", None)
    if block is None:  # Windows: signals reach the main thread anyway
        return
    block(signal.SIG_BLOCK, [getattr(signal, n) for n in _SIGNALS if hasattr(signal, n)])


_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _install_signal_handlers() -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def terminate(signum: int, frame: Any) -> None:
        for sig in previous:  # a second signal while leaving must not interrupt the goodbyes
            signal.signal(sig, signal.SIG_IGN)
        raise _Terminate()

    for name in _SIGNALS[1:]:
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, terminate)
            except (OSError, ValueError):
                pass

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return restore


def _route_logging(console: _Console) -> Callable[[], None]:
    """Send log records meant for stderr through the console for the shell's lifetime."""
    root = logging.getLogger()
    swapped = []
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and handler.stream is sys.stderr:
            notice = _NoticeHandler(console)
            notice.setLevel(handler.level)
            notice.setFormatter(handler.formatter)
            root.removeHandler(handler)
            root.addHandler(notice)
            swapped.append((handler, notice))
    added = None
    if not root.handlers:  # no logging configured: warnings would go to logging.lastResort
        added = _NoticeHandler(console)
        added.setLevel(logging.WARNING)
        root.addHandler(added)

    def restore() -> None:
        for handler, notice in swapped:
            root.removeHandler(notice)
            root.addHandler(handler)
        if added is not None:
            root.removeHandler(added)
    return restore


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
