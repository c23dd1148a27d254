"""Command line: ``sta tracker | create | seed | download | shell | info``.

The grammar is in cliargs.py (the shell parses its lines with the same parsers); ``create`` and
``info`` are in torrent_commands.py (the shell runs them too). Here: ``main``, which turns what
went wrong into an exit status and one line on stderr, the logging set-up, and the commands that
run a server or a node.

Exit status: 0 success, 1 failure at run time (one line on stderr, ``sta: error: ...``, saying
what and what to do), 2 bad usage, 130 interrupted. A traceback is always a bug.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
from typing import Any, Dict, List, Optional, Sequence

from . import preflight, ui
from .cliargs import COMMANDS, PROG, ParserExit, StaArgumentParser, UsageError, tracker_trust
from .cliargs import build_parser as _build_parser
from .errors import describe_error, is_user_error, plain_reason
from .torrent_commands import cmd_create, cmd_info

__all__ = ["main", "build_parser", "configure_logging", "CliError", "COMMANDS", "cmd_tracker",
           "cmd_create", "cmd_seed", "cmd_download", "cmd_shell", "cmd_info"]

# What a --log-file line holds; the terminal gets the message alone (ui.TerminalLogFormatter).
LOG_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CliError(Exception):
    """A command cannot run as asked; the message says what to change."""


def build_parser() -> StaArgumentParser:
    """The parser of every command, each subcommand's ``handler`` set to its cmd_ function."""
    return _build_parser(_handlers())


def _handlers() -> Dict[str, Any]:
    return {"tracker": cmd_tracker, "create": cmd_create, "seed": cmd_seed,
            "download": cmd_download, "shell": cmd_shell, "info": cmd_info}


# ----------------------------------------------------------------------------------- main

def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command line; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "handler", None) is None:
            parser.print_help(sys.stderr)
            return 2
        configure_logging(args.log_level, args.log_file)
        return args.handler(args)
    except UsageError as exc:
        sys.stderr.write((exc.usage or "") + f"{exc.prog}: error: {ui.printable(exc)}\n")
        return 2
    except ParserExit as exc:
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (sta info ... | head): nothing left to tell anyone
        _silence_stdout()
        return 1
    except Exception as exc:
        if not is_user_error(exc):
            raise
        sys.stderr.write(f"{PROG}: error: {ui.printable(describe_error(exc))}\n")
        return 1


def configure_logging(level: str, log_file: Optional[str] = None) -> None:
    """Log records from ``level`` up: in full to ``log_file``, else as plain lines on stderr
    (the message alone, made printable; progress.py prints them above a live status line)."""
    handler: logging.Handler
    if log_file:
        try:
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write the log file {log_file}: {plain_reason(exc)}; give "
                           "another with --log-file PATH") from None
        handler.setFormatter(logging.Formatter(LOG_FILE_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ui.TerminalLogFormatter())
    handlers: List[logging.Handler] = [handler]
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=handlers, force=True)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# -------------------------------------------------------------------------------- tracker

def cmd_tracker(args: argparse.Namespace) -> int:
    from . import tracker  # SQLite and the HTTP server: only this command needs them
    preflight.check_bind_address(args.host, "--host")
    preflight.check_files([("--certfile", args.certfile), ("--keyfile", args.keyfile)])
    _stop_on_sigterm()
    context = None
    if args.tls and not args.certfile:
        context = _self_made_tracker_context(args)
    try:
        return tracker.run(args, emit=_say, ssl_context=context)
    except tracker.TrackerServerError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            raise CliError(f"cannot listen on port {args.port}: another program uses it (a "
                           "tracker already running?); stop it, or choose another port with "
                           "--port") from None
        if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM):
            raise CliError(f"cannot listen on port {args.port}: permission denied (ports below "
                           "1024 need administrator rights); choose another with --port") \
                from None
        raise


def _self_made_tracker_context(args: argparse.Namespace) -> Any:
    """`tracker --tls` without files: a certificate STA makes (once) for this host, and its
    fingerprint for clients to pin."""
    from . import session, tls, tracker, x509
    hosts = ["127.0.0.1", "localhost", socket.gethostname()]
    lan = tracker.lan_address()
    if lan:
        hosts.append(lan)
    if args.host not in preflight.WILDCARD_ADDRESSES:
        hosts.append(args.host)
    certfile, keyfile = tls.ensure_node_identity(session.node_state_dir(), hosts)
    with open(certfile, "rb") as f:
        fingerprint = x509.fingerprint_sha256(f.read())
    _say(f"* TLS certificate {certfile}")
    _say(f"* clients trust it with: --tracker-pin {fingerprint}")
    return tls.https_server_context(certfile, keyfile)


def _stop_on_sigterm() -> None:
    """SIGTERM ends the command the way Ctrl-C does, so it shuts down cleanly (the tracker
    flushes its database; nothing is left half-written)."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, handler)


def _say(line: str) -> None:
    print(ui.printable(line), flush=True)


# ------------------------------------------------------------------- seed, download, shell

def cmd_seed(args: argparse.Namespace) -> int:
    preflight.check_bind_address(args.bind)
    preflight.check_data_folder(args.data)
    from . import transfer  # the engine: not loaded by commands that do not need it
    return transfer.run(transfer.TransferOptions(
        sources=args.torrents, folder=args.data, port=args.port, host=args.bind,
        seed_only=True, super_seed=args.super_seed, timeout=args.timeout,
        encryption=args.encryption, lsd=not args.no_lsd,
        tracker_ssl_context=tracker_trust(args)))


def cmd_download(args: argparse.Namespace) -> int:
    preflight.check_bind_address(args.bind)
    preflight.check_download_folder(args.output)
    from . import transfer
    return transfer.run(transfer.TransferOptions(
        sources=args.torrents, folder=args.output, port=args.port, host=args.bind,
        peers=args.peer, keep_seeding=args.seed, recheck=args.recheck, timeout=args.timeout,
        encryption=args.encryption, lsd=not args.no_lsd,
        tracker_ssl_context=tracker_trust(args)))


def cmd_shell(args: argparse.Namespace) -> int:
    preflight.check_bind_address(args.bind)
    from . import shell
    return shell.run(args)
