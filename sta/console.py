"""The shell's terminal: the prompt, the line being typed, and notices that arrive meanwhile.

``Console`` reads command lines (``input()`` with readline's editing on a terminal, plain lines
from a pipe) and writes background notices (a download finished, a torrent stopped by an error,
log warnings) to stderr as one line each, never in the middle of a command's output. On a colour
terminal with readline a notice appears above the prompt at once and the line being typed is
redrawn; elsewhere it waits for the next prompt (a terminal without readline or with NO_COLOR) or
is written at once (a pipe, where there is no prompt to disturb).

Around it: tab completion (commands, options, torrent names, file names) and a history kept across
runs; log records routed through the console while the shell runs; SIGTERM and SIGHUP turned into
``Terminate`` so the shell leaves as `exit` does, and Ctrl-C kept away from background threads.
The console knows no command: the shell hands it the words to complete and the function that runs
a line.
"""

from __future__ import annotations

import collections
import glob
import logging
import os
import queue
import shlex
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import ui
from .errors import describe_error, is_user_error

__all__ = ["Console", "Completer", "Terminate", "route_logging", "install_signal_handlers",
           "leave_signals_to_main_thread", "setup_readline", "save_history"]

PROMPT = "> "
# The notice thread gets this long to write what is queued once the shell leaves; it is a daemon
# after that.
NOTICE_JOIN_TIMEOUT = 5.0
# At most this many file names are offered by one Tab press.
MAX_COMPLETIONS = 200
# Readline history kept across runs, like bash's and Python's own.
HISTORY_FILE = os.path.join("~", ".sta_history")
HISTORY_LENGTH = 1000
# Log messages remembered so the watcher does not repeat what a log line just said; a few
# seconds of warnings from a busy session.
RECENT_LOG_MESSAGES = 50
# A yes/no question asks again this often when the answer is neither, then takes it as no: a
# command typed by mistake as the answer must not count as one, nor keep the prompt forever.
MAX_ANSWER_ATTEMPTS = 3
YES = ("y", "yes")
NO = ("n", "no", "")
# Ctrl-C and the termination signals; only the main thread, reading the prompt, takes them.
_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class Terminate(BaseException):
    """SIGTERM or SIGHUP: leave as `exit` does (trackers told "stopped")."""


class Console:
    """Prompt, command output and background notices, each line whole.

    The main thread holds ``lock`` while a command runs; the notice thread takes it to write, so a
    notice never lands inside a table. The loop thread only queues notices and never waits.
    """

    def __init__(self, stdin: Any, stdout: Any, stderr: Any) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.interactive = bool(ui._isatty(stdin))
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
            self._thread.join(NOTICE_JOIN_TIMEOUT)
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
        leave_signals_to_main_thread()
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
        # Names, comments and peers' words reach notices and errors: no terminal escapes.
        self.stderr.write(ui.printable(text) + "\n")
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
        """A yes/no question on the terminal, default no. Anything but y, yes, n, no or an empty
        line asks again, a few times; Ctrl-D and Ctrl-C are no. Answers stay out of the
        history, so the up arrow finds the last command, not the last "y"."""
        for _ in range(MAX_ANSWER_ATTEMPTS):
            try:
                answer = input(question).strip().lower()
            except (EOFError, KeyboardInterrupt):
                self.stdout.write("\n")
                return False
            self._forget_answer(answer)
            if answer in YES or answer in NO:
                return answer in YES
            self._err("answer y or n")
        self._err("no answer; taken as no")
        return False

    def _forget_answer(self, answer: str) -> None:
        readline = self.readline
        if readline is None or not answer:
            return
        try:
            last = readline.get_current_history_length()
            if last and readline.get_history_item(last) is not None:
                readline.remove_history_item(last - 1)  # 1-based to read, 0-based to remove
        except (AttributeError, ValueError):  # libedit differs; a kept answer does no harm
            pass

    def error(self, text: str) -> None:
        """A command's error: the message alone, one line on stderr."""
        self._err(text)

    def report(self, exc: BaseException) -> None:
        """An exception from a command: its one-line message when the user can act on it, the
        whole traceback when it is a bug (the node keeps running either way)."""
        if is_user_error(exc):
            self.error(describe_error(exc))
        else:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=self.stderr)

    def flush(self) -> None:
        for stream in (self.stdout, self.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass

    def repl(self, execute: Callable[[str], bool]) -> None:
        """Read lines and run each with ``execute`` (holding ``lock``) until it returns False or
        the input ends; Ctrl-C drops the line being typed or the command running, not the node."""
        while True:
            try:
                line = self.read_line()
            except KeyboardInterrupt:
                self.interrupted()
                continue
            if line is None:
                if self.interactive:
                    self.stdout.write("\n")
                return
            try:
                with self.lock:
                    try:
                        if not execute(line):
                            return
                    finally:
                        self.flush()
            except KeyboardInterrupt:
                self.interrupted(during_command=True)
            except BrokenPipeError:
                return


class _NoticeHandler(logging.Handler):
    """Log records as shell notices, so a warning from the loop thread cannot split the prompt."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.logged(record.getMessage())
            self.console.notice(self.format(record))
        except Exception:  # logging must never raise into the engine
            self.handleError(record)


def _load_readline() -> Any:
    try:
        import readline
    except ImportError:  # Windows: input() still edits the line, without history or completion
        return None
    return readline


class Completer:
    """Tab completion: commands, then options, command names, torrent names or file names.

    ``options`` maps a command to its option strings; the words after a command in
    ``takes_command`` are command names, after one in ``takes_torrent`` torrent names (asked of
    ``torrent_names`` at each press), and file names after any other.
    """

    def __init__(self, readline: Any, commands: Sequence[str], options: Dict[str, List[str]], *,
                 takes_command: Sequence[str] = (), takes_torrent: Sequence[str] = (),
                 torrent_names: Callable[[], List[str]] = list) -> None:
        self.readline = readline
        self.commands = commands
        self.options = options
        self.takes_command = takes_command
        self.takes_torrent = takes_torrent
        self.torrent_names = torrent_names
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
            return [c + " " for c in self.commands if c.startswith(text)]
        command = before[0].lower()
        if text.startswith("-"):
            return [o + " " for o in self.options.get(command, ()) if o.startswith(text)]
        if command in self.takes_command:
            return [c + " " for c in self.commands if c.startswith(text)]
        if command in self.takes_torrent:
            names = self.torrent_names()
            return [shlex.quote(n) + " " for n in names if n.startswith(text)]
        return _complete_path(text)


def _complete_path(text: str) -> List[str]:
    expanded = os.path.expanduser(text)
    found = []
    for path in sorted(glob.glob(glob.escape(expanded) + "*"))[:MAX_COMPLETIONS]:
        shown = text + path[len(expanded):]
        found.append(shown + (os.sep if os.path.isdir(path) else " "))
    return found


def setup_readline(readline: Any, complete: Callable[[str, int], Optional[str]]) -> str:
    """Bind Tab to ``complete`` and load the history; returns the history file for save_history."""
    readline.set_completer(complete)
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


def save_history(readline: Any, path: str) -> None:
    """Write the history back for the next run; a read-only home is no reason to fail."""
    try:
        readline.write_history_file(path)
    except OSError:
        pass


def leave_signals_to_main_thread() -> None:
    """Block Ctrl-C and the termination signals in the calling (background) thread.

    The kernel hands a process-wide signal to any thread that does not block it; only the main
    thread's read of the prompt is interrupted by it, so the others must not take it.
    """
    block = getattr(signal, "pthread_sigmask", None)
    if block is None:  # Windows: signals reach the main thread anyway
        return
    block(signal.SIG_BLOCK, [getattr(signal, n) for n in _SIGNALS if hasattr(signal, n)])


def install_signal_handlers() -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def terminate(signum: int, frame: Any) -> None:
        for sig in previous:  # a second signal while leaving must not interrupt the goodbyes
            signal.signal(sig, signal.SIG_IGN)
        raise Terminate()

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


def route_logging(console: Console) -> Callable[[], None]:
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
