"""Command line: ``sta tracker | create | seed | download | shell | web | info | dht``.

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

from . import fdlimit, preflight, ui
from .cliargs import (COMMANDS, PROG, ParserExit, StaArgumentParser, UsageError, dht_bootstrap,
                      tracker_trust)
from .cliargs import build_parser as _build_parser
from .errors import describe_error, is_user_error, plain_reason
from .torrent_commands import cmd_create, cmd_info

__all__ = ["main", "build_parser", "configure_logging", "CliError", "COMMANDS", "cmd_tracker",
           "cmd_create", "cmd_seed", "cmd_download", "cmd_shell", "cmd_web", "cmd_info",
           "cmd_dht"]

# What a --log-file line holds; the terminal gets the message alone (ui.TerminalLogFormatter).
LOG_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CliError(Exception):
    """A command cannot run as asked; the message says what to change."""


def build_parser() -> StaArgumentParser:
    """The parser of every command, each subcommand's ``handler`` set to its cmd_ function."""
    return _build_parser(_handlers())


def _handlers() -> Dict[str, Any]:
    return {"tracker": cmd_tracker, "create": cmd_create, "seed": cmd_seed,
            "download": cmd_download, "shell": cmd_shell, "web": cmd_web, "info": cmd_info,
            "dht": cmd_dht}


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


# Seconds between checks of how many nodes the `dht` command knows (a line when it changed),
# and the longest it stays silent even when nothing changed.
DHT_STATUS_CHECK = 2.0
DHT_STATUS_EVERY = 5 * 60.0


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
        _raise_if_cannot_listen(exc, f"port {args.port}", "a tracker")
        raise


def _raise_if_cannot_listen(exc: Exception, where: str, who: str) -> None:
    """A server that could not bind its port (``exc`` caused by the OSError): the CliError
    that says what to do. Any other failure: nothing (the caller re-raises)."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
        raise CliError(f"cannot listen on {where}: another program uses it ({who} already "
                       "running?); stop it, or choose another port with --port") from None
    if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM):
        raise CliError(f"cannot listen on {where}: permission denied (ports below 1024 need "
                       "administrator rights); choose another with --port") from None


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
    fdlimit.ensure_open_file_limit()  # a peer per descriptor: up to the peer limit
    preflight.check_data_folder(args.data)
    from . import transfer  # the engine: not loaded by commands that do not need it
    return transfer.run(transfer.TransferOptions(
        sources=args.torrents, folder=args.data, port=args.port, host=args.bind,
        seed_only=True, super_seed=args.super_seed, timeout=args.timeout,
        encryption=args.encryption, lsd=not args.no_lsd, utp=not args.no_utp,
        tracker_ssl_context=tracker_trust(args), dht_bootstrap=dht_bootstrap(args)))


def cmd_download(args: argparse.Namespace) -> int:
    preflight.check_bind_address(args.bind)
    fdlimit.ensure_open_file_limit()  # a peer per descriptor: up to the peer limit
    preflight.check_download_folder(args.output)
    from . import transfer
    return transfer.run(transfer.TransferOptions(
        sources=args.torrents, folder=args.output, port=args.port, host=args.bind,
        peers=args.peer, keep_seeding=args.seed, recheck=args.recheck, timeout=args.timeout,
        encryption=args.encryption, lsd=not args.no_lsd, utp=not args.no_utp,
        tracker_ssl_context=tracker_trust(args), dht_bootstrap=dht_bootstrap(args)))


def cmd_shell(args: argparse.Namespace) -> int:
    preflight.check_bind_address(args.bind)
    fdlimit.ensure_open_file_limit()  # a peer per descriptor: up to the peer limit
    if args.web is not None:
        from . import web
        web.check_exposure(args.web[0], args.web_password)
    from . import shell
    return shell.run(args)


def cmd_web(args: argparse.Namespace) -> int:
    """`sta web`: the node, headless, behind the web interface (web.py)."""
    preflight.check_bind_address(args.bind)
    fdlimit.ensure_open_file_limit()  # a peer per descriptor: up to the peer limit
    preflight.check_download_folder(args.output)
    from . import web
    _stop_on_sigterm()
    return web.run(args, emit=_say)


# ------------------------------------------------------------------------------------ dht

def cmd_dht(args: argparse.Namespace) -> int:
    preflight.check_bind_address(args.bind)
    import asyncio
    from . import dht, resume  # the DHT node: only this command (for now) runs one
    state = os.path.join(resume.default_home(), dht.STATE_FILE)
    node = dht.DhtNode(bootstrap=args.dht_bootstrap, state_path=state)
    try:
        return asyncio.run(_run_dht(node, args.bind, args.port))
    except dht.DhtError as exc:
        _raise_if_cannot_listen(exc, f"UDP port {args.port}", "a DHT node or a peer")
        raise


async def _run_dht(node: Any, host: str, port: int) -> int:
    """Run ``node`` until SIGINT or SIGTERM; print its size when it changes; save at the end."""
    import asyncio
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # Windows: wake the loop instead
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    await node.start(host, port)
    bound_host, bound_port = node.address
    _say(f"DHT node {node.node_id.hex()} listening on UDP {bound_host}:{bound_port}")
    if bound_host in preflight.WILDCARD_ADDRESSES:
        from .tracker import lan_address
        bound_host = lan_address() or bound_host
    _say(f"* other nodes join with: --dht-bootstrap {bound_host}:{bound_port}")
    if node.state_path:
        _say(f"* state: {node.state_path} ({node.node_count()} nodes saved from last time)")
    shown, shown_at = -1, loop.time()
    try:
        while not stop.is_set():
            count = node.node_count()
            if count != shown or loop.time() - shown_at >= DHT_STATUS_EVERY:
                _say(f"knows {count} node{'s' if count != 1 else ''}")
                shown, shown_at = count, loop.time()
            try:
                await asyncio.wait_for(stop.wait(), DHT_STATUS_CHECK)
            except asyncio.TimeoutError:
                pass
    finally:
        await node.stop()
    _say(f"Stopped; saved {node.node_count()} nodes to {node.state_path}")
    return 0
