"""The interactive shell: one long-running node with a ``> `` prompt.

``sta shell [--port P] [-o DIR]`` starts one node (one session: one listen port, many torrents)
whose event loop runs in a background thread (node.py), and reads commands in the main thread.
``create``, ``seed``, ``download`` and ``info`` lines are parsed by cliargs.build_parser(), so their
grammar is exactly the subcommands'; ``status``, ``peers``, ``stats``, ``pause``, ``resume``,
``remove``, ``help`` and ``exit`` have parsers of their own built from the same
StaArgumentParser, so a mistyped line gets a usage line and never ends the node.

Every command reaches the engine through the node, status snapshots included: the session's
objects are only ever touched on its loop. Command output goes to stdout; background notices (a
download finished, a torrent stopped by an error) go through console.py, which keeps them out of
a command's output and off the line being typed; the tables of `status`, `peers` and `stats` are
drawn by ui.py.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import cliargs, preflight, transfer, ui, views
from .cliargs import PROG, ParserExit, StaArgumentParser, UsageError
from .errors import describe_error, is_user_error
from .torrent_commands import cmd_create, cmd_info
from .console import (Completer, Console, Terminate, install_signal_handlers, route_logging,
                      save_history, setup_readline)
from .node import Node, NodeError
from .torrent import DOWNLOADING, ERROR, PAUSED, SEEDING
from .ui import peers_table, stats_lines, status_table

__all__ = ["run", "Shell", "ShellError", "find_torrent", "split_line", "suggest"]

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
    "resume": "start a paused torrent again, or retry one that could not be re-added",
    "remove": "stop a torrent and forget it; --delete-files also deletes its files (asks first)",
    "help": "list the commands, or show one command's options",
    "exit": "tell every tracker 'stopped' and leave (also Ctrl-D)",
}
# An unknown command is matched to a known one within this many typing slips (a missing, extra,
# wrong or swapped letter), as git's "did you mean" does for its commands.
MAX_TYPING_SLIPS = 2
# An ambiguous TORRENT lists at most this many of the torrents it matches.
MAX_LISTED_MATCHES = 5


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

    TORRENT is the number shown by `status`, else an exact name, else the start of one name or
    of one info hash (either case); anything ambiguous is refused, naming what it matches.
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
    start = text.lower()
    matches = [i for i, (name, info_hash) in enumerate(entries)
               if start and (name.lower().startswith(start) or info_hash.startswith(start))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(f"{i + 1} {entries[i][0]}" for i in matches[:MAX_LISTED_MATCHES])
        more = len(matches) - MAX_LISTED_MATCHES
        raise ShellError(f"{text!r} matches {len(matches)} torrents ({listed}"
                         f"{f' and {more} more' if more > 0 else ''}): type more of it, or "
                         "the number")
    raise ShellError(f"no torrent {text!r}: give the number shown by 'status', a name or its "
                     "start, or the start of the info hash")


def typing_distance(a: str, b: str) -> int:
    """Edits between two words, a swap of two neighbouring letters counting as one (optimal
    string alignment): the usual slips of typing."""
    previous2: List[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], previous2[j - 2] + 1)
        previous2, previous = previous, row
    return previous[-1]


def suggest(word: str, choices: Sequence[str]) -> Optional[str]:
    """The choice ``word`` was most likely meant to be: fewest typing slips (at most
    MAX_TYPING_SLIPS, and fewer than half the word), then the same length, then the first."""
    ranked = sorted((typing_distance(word, c), len(c) != len(word), n, c)
                    for n, c in enumerate(choices))
    if ranked and ranked[0][0] <= min(MAX_TYPING_SLIPS, (len(word) - 1) // 2):
        return ranked[0][3]
    return None


def _parser_actions(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    # argparse keeps its actions in a private list; there is no public accessor for either the
    # option strings (tab completion) or the subcommand parsers (help, shell-only defaults).
    return list(getattr(parser, "_actions", []))


def _subcommand_parsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in _parser_actions(parser):
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 (see above)
            return dict(action.choices)
    raise ShellError("the command line parser has no subcommands")


# ---------------------------------------------------------------------------------- shell

class Shell:
    def __init__(self, *, port: int = cliargs.DEFAULT_PEER_PORT,
                 folder: str = cliargs.DEFAULT_DOWNLOAD_DIR, host: str = cliargs.DEFAULT_BIND,
                 tracker_ssl_context: Any = None, encryption: str = "prefer", lsd: bool = False,
                 utp: bool = True,
                 stdin: Any = None, stdout: Any = None, stderr: Any = None,
                 web: Optional[Tuple[str, int]] = None, web_password: Optional[str] = None,
                 dht_bootstrap: Any = None) -> None:
        self.folder = folder
        self.web_address = web
        self.web_password = web_password
        self.web_server: Any = None
        self.console = Console(stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr)
        self.node = Node(self.console, port=port, host=host, encryption=encryption,
                         tracker_ssl_context=tracker_ssl_context, dht_bootstrap=dht_bootstrap,
                         lsd=lsd, utp=utp)
        self.cli_parser = cliargs.build_parser()
        self.cli_commands = _subcommand_parsers(self.cli_parser)
        # The shell has one port and its own download folder: a None default tells "given" apart.
        for name in ("seed", "download"):
            self.cli_commands[name].set_defaults(port=None, no_lsd=None, no_utp=None)
        self.cli_commands["download"].set_defaults(output=None)
        self.parsers = self._shell_parsers()

    # -- parsers -----------------------------------------------------------------------------

    def _shell_parsers(self) -> Dict[str, StaArgumentParser]:
        parsers = {}

        def add(name: str) -> StaArgumentParser:
            p = StaArgumentParser(prog=name, description=SUMMARIES[name] + ".")
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
                                   help="number shown by 'status', a name or its start, or the "
                                        "start of the info hash")
        parsers["remove"].add_argument(
            "--delete-files", action="store_true",
            help="also delete the torrent's files, and its folders left empty (for a seed: "
                 "the files in its --data folder)")
        parsers["remove"].add_argument("-y", "--yes", action="store_true",
                                       help="do not ask for confirmation on a terminal")
        add("help").add_argument("command", nargs="?", metavar="COMMAND")
        add("exit")
        return parsers

    # -- the node ----------------------------------------------------------------------------

    def start(self) -> None:
        self.console.start()
        self.node.start()
        if self.web_address is not None:
            self._start_web(*self.web_address)

    def _start_web(self, host: str, port: int) -> None:
        """`shell --web`: the web interface (web.py) in front of this shell's node."""
        from .web import WebServer
        from .webnode import WebNode
        web = WebNode(self.node, self.folder)
        self.web_server = WebServer(web, host, port, self.web_password)
        self.web_server.start()
        web.start()

    def stop(self) -> None:
        """Stop the web server, the node (trackers told "stopped"), then the console's
        notices."""
        if self.web_server is not None:
            self.web_server.web.stop()
            self.web_server.stop()
        self.node.stop()
        self.console.stop()

    # -- the read-eval loop ------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
        except Exception as exc:
            self.stop()
            if not is_user_error(exc):
                raise
            sys.stderr.write(f"{PROG}: error: {describe_error(exc)}\n")
            return 1
        restore_log = route_logging(self.console)
        restore_signals = install_signal_handlers()
        history = self._setup_readline()
        with self.console.lock:
            self.console.stderr.write(f"Listening for peers on {self.node.host}:"
                                      f"{self.node.listen_port}; type 'help' for commands, "
                                      "'exit' to leave\n")
            if self.web_server is not None:
                self.console.stderr.write(f"Web interface on {self.web_server.url}\n")
            restored = self.node.restore()
            if restored:
                self.console.stderr.write(restored + "\n")
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
        except UsageError as exc:
            command = exc.prog.split()[-1]  # "sta download" -> "download"
            self.console.error(f"{command}: {exc}; 'help {command}' shows its options")
        except ParserExit:
            pass
        except (KeyboardInterrupt, BrokenPipeError, Terminate):
            raise
        except Exception as exc:
            self.console.report(exc)
        return True

    def _unknown(self, name: str) -> None:
        if name in ("tracker", "shell", "web"):
            self.console.error(f"{name} runs on its own: start it with 'python sta.py {name}' "
                               "in another terminal")
            return
        close = suggest(name, COMMANDS + ("quit",))
        hint = f"did you mean '{close}'?" if close else "'help' lists the commands"
        self.console.error(f"unknown command '{name}'; {hint}")

    # -- create, info, seed, download --------------------------------------------------------

    def cmd_create(self, args: argparse.Namespace) -> None:
        self._shell_wide_options(args)
        cmd_create(args)

    def cmd_info(self, args: argparse.Namespace) -> None:
        self._shell_wide_options(args)
        cmd_info(args)

    def cmd_seed(self, args: argparse.Namespace) -> None:
        if not os.path.isdir(args.data):
            raise ShellError(f"{args.data}: no such folder (--data is the folder that holds "
                             "the files)")
        self._add(args, args.data, seed_only=True, peers=())

    def cmd_download(self, args: argparse.Namespace) -> None:
        folder = args.output or self.folder
        preflight.check_download_folder(folder)  # before any byte is fetched
        self._add(args, folder, seed_only=False, peers=args.peer)

    def _shell_wide_options(self, args: argparse.Namespace) -> None:
        """Logging, local peer discovery, and the tracker trust of torrents added to the one
        session, belong to the whole shell: say so when a command has them (`info --fetch`
        uses its trust itself)."""
        session_wide = args.command in ("seed", "download")
        given = [option for option, value in (
            ("--log-level", args.log_level != "warning"), ("--log-file", args.log_file),
            ("--tracker-cafile", session_wide and getattr(args, "tracker_cafile", None)),
            ("--tracker-pin", session_wide and getattr(args, "tracker_pin", None)),
            ("--no-lsd", session_wide and getattr(args, "no_lsd", None)),
            ("--no-utp", session_wide and getattr(args, "no_utp", None))) if value]
        if given:
            self.console.notice(f"note: {', '.join(given)} apply to the whole shell and "
                                "are ignored here: give them to 'sta shell'")

    def _add(self, args: argparse.Namespace, folder: str, *, seed_only: bool,
             peers: Sequence[Tuple[str, int]]) -> None:
        self._shell_wide_options(args)
        port = self.node.listen_port
        if args.port is not None and args.port != port:
            self.console.notice(f"note: the shell serves every torrent on its one port "
                                f"({port}); --port is ignored")
        if getattr(args, "bind", None):
            self.console.notice("note: the shell listens on the address it was started with "
                                "(sta shell --bind ADDRESS); --bind is ignored here")
        metas = transfer.load_sources(args.torrents)
        for meta in metas:
            try:
                print(self.node.add(meta, folder, seed_only=seed_only, peers=peers,
                                    super_seed=getattr(args, "super_seed", False),
                                    recheck=getattr(args, "recheck", False),
                                    timeout=args.timeout))
            except NodeError as exc:
                self.console.error(str(exc))

    # -- status, peers, stats ----------------------------------------------------------------

    def cmd_status(self, args: argparse.Namespace) -> None:
        rows = self.node.status_rows()
        if args.json:
            print(views.json_text(rows))
        elif not rows:
            print("no torrents: add one with 'seed' or 'download'")
        else:
            print("\n".join(status_table(rows, color=self.console.color)))

    def _resolve(self, text: str) -> Tuple[bytes, str]:
        """(info hash, name) of the torrent TORRENT names."""
        return self.node.select(lambda entries: find_torrent(entries, text))

    def cmd_peers(self, args: argparse.Namespace) -> None:
        only = self._resolve(args.torrent)[0] if args.torrent else None
        rows = self.node.peer_rows(only)
        if args.json:
            print(views.json_text(rows))
        elif not rows:
            print("no peers connected")
        else:
            print("\n".join(peers_table(rows, with_torrent=only is None)))

    def cmd_stats(self, args: argparse.Namespace) -> None:
        stats = self.node.stats()
        if args.json:
            print(views.json_text(stats))
        else:
            print("\n".join(stats_lines(stats)))

    # -- pause, resume, remove ---------------------------------------------------------------

    def cmd_pause(self, args: argparse.Namespace) -> None:
        key, name = self._resolve(args.torrent)
        before = self.node.pause(key)
        if before in (DOWNLOADING, SEEDING):
            print(f"{name}: paused (its peers are disconnected; 'resume' starts it again)")
        else:
            print(f"{name}: not paused: it is {before}")

    def cmd_resume(self, args: argparse.Namespace) -> None:
        key, name = self._resolve(args.torrent)
        before, after = self.node.resume(key)
        if before == PAUSED:
            print(f"{name}: resumed ({after})")
        elif before == ERROR and after != ERROR:
            print(f"{name}: adding it again ({after})")
        elif before == ERROR:
            print(f"{name}: still cannot be added; 'status' says why")
        else:
            print(f"{name}: not paused: it is {before}")

    def cmd_remove(self, args: argparse.Namespace) -> None:
        key, name = self._resolve(args.torrent)
        files, root = self.node.files(key)
        if args.delete_files and self.console.interactive and not args.yes:
            present = [p for p in files if os.path.isfile(p)]
            size = sum(os.path.getsize(p) for p in present)
            question = (f"Delete {len(present)} file{'s' * (len(present) != 1)} "
                        f"({ui.human_size(size)}) of {name} under {root}? [y/N] ")
            if not self.console.ask(question):
                print("nothing removed")
                return

        deleted = self.node.remove(key, delete_files=args.delete_files)
        if args.delete_files:
            print(f"{name}: removed; deleted {len(deleted)} of its {len(files)} "
                  f"file{'s' * (len(files) != 1)} under {root}")
        else:
            print(f"{name}: removed (its files stay in {root})")

    # -- help --------------------------------------------------------------------------------

    def cmd_help(self, args: argparse.Namespace) -> None:
        name = (args.command or "").lower()
        if not name:
            print("Commands (create, seed, download and info take the options of the sta "
                  "commands of the same name):")
            for command in COMMANDS:
                print(f"  {command:<10} {SUMMARIES[command]}")
            print("TORRENT is the number shown by 'status', a name or its start, or the start of "
                  "the info hash.\nTorrents are remembered across restarts until 'remove'.\n"
                  "'help COMMAND' shows a command's options; Ctrl-C cancels the line being typed.")
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
                              takes_torrent=TORRENT_COMMANDS,
                              torrent_names=self.node.torrent_names)
        return setup_readline(readline, completer.complete)


def run(args: argparse.Namespace) -> int:
    """`sta shell`: run the node and its prompt until `exit`, Ctrl-D or SIGTERM."""
    return Shell(port=args.port, folder=args.output, host=args.bind, encryption=args.encryption,
                 tracker_ssl_context=cliargs.tracker_trust(args), web=args.web,
                 web_password=args.web_password, dht_bootstrap=cliargs.dht_bootstrap(args),
                 lsd=not args.no_lsd, utp=not args.no_utp).run()
