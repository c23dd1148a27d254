"""Command line: ``sta tracker | create | seed | download | shell | info``.

One argparse parser serves both the command line and the interactive shell, which parses each
line it reads with the same parser; so parsing never exits the process: ``StaArgumentParser``
raises ``UsageError`` (and ``ParserExit`` for --help), and ``main`` turns them into the usual
usage line and exit status.

Exit status: 0 success, 1 failure at run time (one line on stderr, ``sta: error: ...``), 2 bad
usage, 130 interrupted. A traceback is always a bug.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import re
import sys
import time
from typing import Any, Callable, List, NoReturn, Optional, Sequence, Tuple

from . import __version__, magnet, maketorrent, metainfo, ui, views
from .errors import describe_error, is_user_error

__all__ = [
    "main", "build_parser", "UsageError", "ParserExit", "StaArgumentParser", "tracker_url",
    "parse_size", "cmd_tracker", "cmd_create", "cmd_seed", "cmd_download", "cmd_shell", "cmd_info",
]

log = logging.getLogger(__name__)

PROG = "sta"
COMMANDS = ("tracker", "create", "seed", "download", "shell", "info")
DEFAULT_TRACKER_PORT = 4000
DEFAULT_PEER_PORT = 6881
DEFAULT_DOWNLOAD_DIR = os.path.join(".", "downloads")
ENCRYPTION_MODES = ("require", "prefer", "off")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_SIZE_RE = re.compile(r"^([0-9]+)\s*([kmg]?)(?:i?b)?$", re.IGNORECASE)


class UsageError(Exception):
    """The command line is wrong; ``usage`` is the usage line of the (sub)command."""

    def __init__(self, message: str, usage: str = "", prog: str = PROG) -> None:
        super().__init__(message)
        self.usage = usage
        self.prog = prog


class ParserExit(Exception):
    """argparse finished early (--help, --version) with ``status``; output already written."""

    def __init__(self, status: int = 0) -> None:
        super().__init__(status)
        self.status = status


class StaArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of calling sys.exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage(), self.prog)

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise ParserExit(status)


# ----------------------------------------------------------------------------- argument types

def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: expected 0-65535")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"bad number of seconds {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"bad number {text!r}: expected a positive integer")
    return int(text)


def _peer(text: str) -> Tuple[str, int]:
    """"HOST:PORT" or "[IPv6]:PORT" -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"bad peer {text!r}: expected HOST:PORT")
    return host, int(port)


def parse_size(text: str) -> int:
    """"262144", "256K", "256KiB", "1M", "4MB" -> bytes (binary multiples)."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise ValueError(f"bad size {text!r}: expected bytes or a number with K, M or G")
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[
        match.group(2).lower()]


def _piece_length(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    lo, hi = metainfo.MIN_PIECE_LENGTH, metainfo.MAX_PIECE_LENGTH
    if value < lo or value > hi or value & (value - 1):
        raise argparse.ArgumentTypeError(
            f"bad piece length {text!r}: expected a power of two from 16K to {hi >> 20}M")
    return value


def tracker_url(text: str) -> str:
    """A tracker as the user typed it -> an announce URL.

    A bare host (``192.168.88.114``) means ``http://HOST:4000/announce``, ``HOST:PORT`` means
    ``http://HOST:PORT/announce``; an http(s) URL without a path gets ``/announce``, the path
    STA's tracker (and most others) answer on. Raises ``UsageError`` for anything else.
    """
    text = text.strip()
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() not in ("http", "https", "udp") or not rest or rest[0] in "/?#":
            raise UsageError(f"bad tracker {text!r}: expected an http(s):// or udp:// URL "
                             "or HOST[:PORT]")
        if scheme.lower() in ("http", "https") and "/" not in rest.rstrip("/"):
            return f"{scheme}://{rest.rstrip('/')}/announce"
        return text
    host, port = _split_host_port(text)
    if host is None:
        raise UsageError(f"bad tracker {text!r}: expected a URL or HOST[:PORT]")
    return f"http://{host}:{port or DEFAULT_TRACKER_PORT}/announce"


def _split_host_port(text: str):
    """"h" / "h:p" / "[v6]:p" / "v6" -> (host for a URL, port or None); (None, None) if bad."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]")
        if not sep or not host or ":" not in host or (port and not port.startswith(":")):
            return None, None
        port = port[1:]
        host = f"[{host}]"
    elif text.count(":") > 1:  # a bare IPv6 address
        if not all(c in "0123456789abcdefABCDEF:." for c in text):
            return None, None
        return f"[{text}]", None
    else:
        host, _, port = text.partition(":")
        if not _HOST_RE.match(host):
            return None, None
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        return None, None
    return host, (int(port) if port else None)


def _looks_like_tracker(text: str) -> bool:
    """The seed report's ``create HOST FILE...``: is the first argument the tracker?"""
    if "://" in text:
        return True
    if os.path.exists(text):
        return False
    return _split_host_port(text)[0] is not None


# --------------------------------------------------------------------------------- the parser

def build_parser() -> StaArgumentParser:
    """The parser for every command; the shell parses each line it reads with it."""
    common = StaArgumentParser(add_help=False)
    group = common.add_argument_group("logging")
    group.add_argument("--log-level", choices=LOG_LEVELS, default="warning",
                       help="log messages from this level up (default: warning)")
    group.add_argument("--log-file", metavar="PATH",
                       help="write the log to PATH instead of stderr")

    # Trust for https trackers, on every command that announces or fetches from them.
    https = StaArgumentParser(add_help=False)
    group = https.add_argument_group("https trackers")
    group.add_argument("--tracker-cafile", metavar="PEM",
                       help="trust the tracker certificate in PEM (a lab's self-made one)")
    group.add_argument("--tracker-pin", metavar="SHA256",
                       help="trust the tracker whose certificate has this SHA-256 fingerprint "
                            "(printed by 'sta tracker --tls')")

    parser = StaArgumentParser(
        prog=PROG, description="STA, the Simple Torrent-like Application: a BitTorrent tracker, "
                               "seeder and downloader.",
        epilog="Run 'sta COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str,
            description: str, tracker_client: bool = False) -> StaArgumentParser:
        parents = [common, https] if tracker_client else [common]
        p = sub.add_parser(name, parents=parents, help=help_text, description=description)
        p.set_defaults(handler=handler)
        return p

    p = add("tracker", cmd_tracker, "run a tracker",
            "Run a tracker: announce, scrape, hosted .torrent files and a dashboard over HTTP.")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    p.add_argument("--port", type=_port, default=DEFAULT_TRACKER_PORT,
                   help=f"port to listen on (default: {DEFAULT_TRACKER_PORT})")
    p.add_argument("--db", default="tracker.db", metavar="PATH",
                   help="SQLite file for swarms and hosted torrents (default: tracker.db)")
    p.add_argument("--interval", type=_positive_int, default=1800, metavar="SECONDS",
                   help="announce interval given to peers (default: 1800)")
    p.add_argument("--tls", action="store_true", help="serve HTTPS")
    p.add_argument("--certfile", metavar="PEM", help="TLS certificate (with --tls)")
    p.add_argument("--keyfile", metavar="PEM", help="TLS private key (with --tls)")

    p = add("create", cmd_create, "make a .torrent from files or a folder",
            "Make a .torrent. One file gives a single-file torrent, a folder or several paths a "
            "multi-file torrent. Without -t, a first argument that is a URL, or a host that is "
            "not an existing path, is the tracker: 'sta create 192.168.88.114 a.pdf b.pdf'.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to share")
    p.add_argument("-t", "--tracker", action="append", default=[], metavar="TRACKER",
                   help="announce URL or HOST[:PORT] (meaning http://HOST:4000/announce); "
                        "repeat for backup trackers, each its own tier")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="where to write the .torrent (default: NAME.torrent here)")
    p.add_argument("--piece-length", type=_piece_length, metavar="N",
                   help="piece length in bytes or with K/M (default: about 1,000-2,000 pieces)")
    p.add_argument("--name", help="torrent name (default: the file or folder name)")
    p.add_argument("--comment", help="free-text comment")
    p.add_argument("--private", action="store_true",
                   help="private torrent: peers only from the tracker (BEP 27)")
    p.add_argument("--web-seed", action="append", default=[], metavar="URL",
                   help="HTTP URL holding the same files (BEP 19); repeatable")
    p.add_argument("--upload", action="store_true",
                   help="also upload the .torrent to the tracker (POST /torrents)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing OUT")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="hashing threads (default: one per CPU)")

    p = add("seed", cmd_seed, "share files you have",
            "Seed torrents from the data in DIR.", tracker_client=True)
    p.add_argument("torrents", nargs="+", metavar="TORRENT", help=".torrent files to seed")
    p.add_argument("--data", default=".", metavar="DIR",
                   help="folder holding the files (default: .)")
    p.add_argument("--port", type=_port, default=DEFAULT_PEER_PORT,
                   help=f"port for peers (default: {DEFAULT_PEER_PORT}; 0 picks a free one)")
    p.add_argument("--encryption", choices=ENCRYPTION_MODES, default="prefer",
                   help="peer connection encryption (default: prefer)")
    p.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                   help="stop after SECONDS (default: run until interrupted)")
    p.add_argument("--super-seed", action="store_true",
                   help="first seed of a swarm: reveal pieces one at a time so the downloaders "
                        "trade among themselves and this node sends about one copy (BEP 16)")

    p = add("download", cmd_download, "download torrents or magnet links",
            "Download torrents, several at once, from the tracker's peers and given peers.",
            tracker_client=True)
    p.add_argument("torrents", nargs="+", metavar="TORRENT",
                   help=".torrent files or magnet links")
    p.add_argument("-o", "--output", default=DEFAULT_DOWNLOAD_DIR, metavar="DIR",
                   help="download folder (default: ./downloads)")
    p.add_argument("--port", type=_port, default=DEFAULT_PEER_PORT,
                   help=f"port for peers (default: {DEFAULT_PEER_PORT}; 0 picks a free one)")
    p.add_argument("--peer", action="append", default=[], type=_peer, metavar="HOST:PORT",
                   help="also connect to this peer; repeatable")
    p.add_argument("--seed", action="store_true", help="keep seeding after the download")
    p.add_argument("--recheck", action="store_true",
                   help="verify existing data in full before downloading")
    p.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                   help="give up after SECONDS")
    p.add_argument("--encryption", choices=ENCRYPTION_MODES, default="prefer",
                   help="peer connection encryption (default: prefer)")

    p = add("shell", cmd_shell, "interactive shell",
            "Interactive shell: create, seed, download and watch torrents in one session.",
            tracker_client=True)
    p.add_argument("--port", type=_port, default=DEFAULT_PEER_PORT,
                   help=f"port for peers (default: {DEFAULT_PEER_PORT})")
    p.add_argument("-o", "--output", default=DEFAULT_DOWNLOAD_DIR, metavar="DIR",
                   help="download folder (default: ./downloads)")
    p.add_argument("--encryption", choices=ENCRYPTION_MODES, default="prefer",
                   help="peer connection encryption (default: prefer)")

    p = add("info", cmd_info, "describe a .torrent or magnet link",
            "Show what a .torrent file or magnet link holds.", tracker_client=True)
    p.add_argument("target", metavar="TORRENT_OR_MAGNET")
    p.add_argument("--fetch", action="store_true",
                   help="fetch the metadata of a magnet link from peers")
    p.add_argument("--peer", action="append", default=[], type=_peer, metavar="HOST:PORT",
                   help="peer to fetch metadata from (with --fetch); repeatable")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="save the fetched .torrent to OUT (with --fetch)")
    p.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                   help="give up fetching after SECONDS (default: 60)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


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
        if exc.usage:
            sys.stderr.write(exc.usage)
        sys.stderr.write(f"{exc.prog}: error: {exc}\n")
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
        sys.stderr.write(f"{PROG}: error: {describe_error(exc)}\n")
        return 1


def configure_logging(level: str, log_file: Optional[str] = None) -> None:
    handlers: List[logging.Handler] = [
        logging.FileHandler(log_file, encoding="utf-8") if log_file
        else logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# ------------------------------------------------------------------------------- commands

def cmd_tracker(args: argparse.Namespace) -> int:
    from . import tracker
    _stop_on_sigterm()
    context = None
    if args.tls and not args.certfile:
        context = _self_made_tracker_context(args)
    return tracker.run(args, emit=_say, ssl_context=context)


def _self_made_tracker_context(args: argparse.Namespace) -> Any:
    """`tracker --tls` without files: a certificate STA makes (once) for this host, and its
    fingerprint for clients to pin."""
    from . import session, tls, tracker, x509
    hosts = ["127.0.0.1", "localhost", socket.gethostname()]
    lan = tracker.lan_address()
    if lan:
        hosts.append(lan)
    if args.host not in ("0.0.0.0", "::", ""):
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
    print(line, flush=True)


def tracker_trust(args: argparse.Namespace) -> Any:
    """The SSL context for https trackers: system CAs, or the lab's certificate or pin."""
    cafile = getattr(args, "tracker_cafile", None)
    pin = getattr(args, "tracker_pin", None)
    if not cafile and not pin:
        return None
    from . import announce
    try:
        return announce.make_ssl_context(cafile=cafile, pin_sha256=pin)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot use the tracker certificate: {exc}", prog=PROG) from None


def cmd_seed(args: argparse.Namespace) -> int:
    from . import transfer
    return transfer.run(transfer.TransferOptions(
        sources=args.torrents, folder=args.data, port=args.port, seed_only=True,
        super_seed=args.super_seed, timeout=args.timeout, encryption=args.encryption,
        tracker_ssl_context=tracker_trust(args)))


def cmd_download(args: argparse.Namespace) -> int:
    from . import transfer
    return transfer.run(transfer.TransferOptions(
        sources=args.torrents, folder=args.output, port=args.port, peers=args.peer,
        keep_seeding=args.seed, recheck=args.recheck, timeout=args.timeout,
        encryption=args.encryption, tracker_ssl_context=tracker_trust(args)))


def cmd_shell(args: argparse.Namespace) -> int:
    from . import shell
    return shell.run(args)


def cmd_create(args: argparse.Namespace) -> int:
    paths: List[str] = list(args.paths)
    trackers = [tracker_url(t) for t in args.tracker]
    if not trackers and len(paths) >= 2 and _looks_like_tracker(paths[0]):
        trackers = [tracker_url(paths.pop(0))]  # the seed report's "create HOST FILE..."
    for p in paths:
        if not os.path.exists(p):
            raise metainfo.MetainfoError(f"no such file or folder: {p}")
        if not os.path.isfile(p) and not os.path.isdir(p):
            raise metainfo.MetainfoError(f"not a regular file or folder: {p}")
    if not trackers:
        _note("no tracker given (-t): peers will have to be given with --peer")
    name = args.name
    if len(paths) > 1 and not name:
        name = maketorrent.default_name(paths)
        _note(f"several paths and no --name: the torrent is named {name!r}")
    out = _output_path(args.output, paths, name)
    if os.path.exists(out) and not args.force:
        raise metainfo.MetainfoError(f"{out} already exists (use -f to overwrite it)")

    # progress only on a terminal: in a pipe the few seconds of hashing need no log lines
    progress = ui.ProgressLine(sys.stderr) if _isatty(sys.stderr) else None
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        if progress is None:
            return
        elapsed = max(1e-6, time.monotonic() - started)
        rate = done / elapsed
        progress.update("hashing %s %5.1f%%  %s of %s  %s  eta %s" % (
            ui.progress_bar(done / total), 100.0 * done / total, ui.human_size(done),
            ui.human_size(total), ui.human_rate(rate),
            ui.human_eta((total - done) / rate if rate else None)), force=done >= total)

    try:
        data = maketorrent.make_torrent(
            paths, trackers, piece_length=args.piece_length, name=name, comment=args.comment,
            private=args.private, web_seeds=args.web_seed, progress=show, workers=args.threads,
            exclude=[out])
    finally:
        if progress is not None:
            progress.finish()
    meta = metainfo.parse(data)
    _write_file(out, data)
    elapsed = time.monotonic() - started
    info = meta.info
    print("\n".join(views.created_lines(out, info, elapsed)))
    link = meta.magnet()
    if args.upload:
        if not trackers:
            raise metainfo.MetainfoError("--upload needs a tracker (-t)")
        # Imported here: the HTTP client costs 20 ms of start-up that `create` alone never needs.
        from . import metadata_source
        source = metadata_source.upload_torrent(trackers[0], data, info.info_hash,
                                                tracker_trust(args))
        print(views.field("uploaded", source, views.CREATE_LABEL_WIDTH))
        link = dataclasses.replace(link, sources=(source,))
    print(views.field("magnet", link.uri(), views.CREATE_LABEL_WIDTH))
    return 0


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _note(text: str) -> None:
    sys.stderr.write(f"{PROG}: note: {text}\n")


def _output_path(output: Optional[str], paths: List[str], name: Optional[str]) -> str:
    """NAME.torrent in the current folder (or in OUT if OUT is a folder), else OUT itself."""
    if output and not os.path.isdir(output):
        return output
    if len(paths) == 1 and not os.path.isdir(paths[0]):
        base = os.path.splitext(name or os.path.basename(os.path.abspath(paths[0])))[0]
    else:
        base = name or os.path.basename(os.path.abspath(paths[0]))
    base = metainfo.safe_path_part(base or "torrent", windows=True)
    return os.path.join(output, base + ".torrent") if output else base + ".torrent"


def _write_file(path: str, data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a .torrent."""
    tmp = path + ".part"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cmd_info(args: argparse.Namespace) -> int:
    target = args.target
    if args.fetch and target[:7].lower() != "magnet:":
        raise UsageError("--fetch is for magnet links (a .torrent already has its metadata)",
                         prog=f"{PROG} info")
    if target[:7].lower() == "magnet:":
        try:
            m = magnet.parse(target)
        except magnet.MagnetError as exc:
            raise magnet.MagnetError(f"bad magnet link: {exc}") from None
        if args.fetch:
            return _info_fetch(args, m)
        print(views.json_text(views.magnet_json(m)) if args.json
              else "\n".join(views.magnet_lines(m)))
        return 0
    _print_torrent(metainfo.load(target), args.json)
    return 0


def _info_fetch(args: argparse.Namespace, m: magnet.Magnet) -> int:
    """`info MAGNET --fetch`: get the metadata from the swarm, print it like a .torrent's."""
    from . import transfer
    raw = transfer.fetch_metadata(m, args.peer, getattr(args, "timeout", None),
                                  tracker_ssl_context=tracker_trust(args))
    data = metainfo.encode_torrent(raw, trackers=m.trackers, url_list=m.web_seeds,
                                   created_by=metainfo.CREATED_BY)
    meta = metainfo.parse(data)
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
    _print_torrent(meta, args.json)
    if args.output and not args.json:
        print(f"saved to {args.output}")
    return 0


def _print_torrent(meta: metainfo.Metainfo, as_json: bool) -> None:
    print(views.json_text(views.torrent_json(meta)) if as_json
          else "\n".join(views.torrent_lines(meta)))