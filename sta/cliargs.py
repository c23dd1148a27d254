"""The grammar of the commands: one argparse parser per command, and the argument types.

The command line (cli.py) and the interactive shell (shell.py) parse with the same parsers, so
parsing never exits the process: ``StaArgumentParser`` raises ``UsageError`` (and
``ParserExit`` for --help) and the caller turns them into a usage line and an exit status.

``create``, ``seed`` and ``download`` take options and paths in any order
(``create HOST -o x.torrent a.bin b.bin``), and a mistake in a command's arguments is reported
with that command's usage line, not the top-level one.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Callable, List, Mapping, NoReturn, Optional, Tuple

from . import __version__, metainfo
from .tracker_limits import DEFAULT_INTERVAL
from .trackerproto import DEFAULT_TRACKER_PORT

__all__ = [
    "PROG", "COMMANDS", "DEFAULT_PEER_PORT", "DEFAULT_DOWNLOAD_DIR", "DEFAULT_BIND",
    "DEFAULT_WEB_HOST", "DEFAULT_WEB_PORT", "web_address",
    "UsageError", "ParserExit", "StaArgumentParser", "build_parser", "tracker_url", "parse_size",
    "looks_like_tracker", "tracker_trust",
]

PROG = "sta"
COMMANDS = ("tracker", "create", "seed", "download", "shell", "web", "info", "dht")
# The DHT routers libtorrent, Transmission and qBittorrent join through when nothing else is
# known; a lab without Internet gives its own (`sta dht`) with --dht-bootstrap, or once for
# every command in the environment variable.
PUBLIC_DHT_ROUTERS = (("router.bittorrent.com", 6881), ("router.utorrent.com", 6881),
                      ("dht.transmissionbt.com", 6881), ("dht.libtorrent.org", 25401))
DHT_BOOTSTRAP_VARIABLE = "STA_DHT_BOOTSTRAP"
# BitTorrent's customary first port (6881-6889), as libtorrent and Transmission use.
DEFAULT_PEER_PORT = 6881
DEFAULT_DOWNLOAD_DIR = os.path.join(".", "downloads")
# Every address of the machine: what a peer listens on unless --bind says otherwise.
DEFAULT_BIND = "0.0.0.0"
# The web interface: this machine only unless told otherwise (with a password), on
# Transmission's RPC port, which its remotes try first.
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 9091
ENCRYPTION_MODES = ("require", "prefer", "off")
# Set (to anything but 0) in the environment, it turns local peer discovery off as --no-lsd
# does, for every node started from there (the test suite keeps its nodes off the network so).
NO_LSD_VARIABLE = "STA_NO_LSD"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

Handler = Callable[[argparse.Namespace], int]

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
    """An ArgumentParser that raises instead of calling sys.exit.

    ``intermixed`` lets positionals and options come in any order (argparse's
    parse_intermixed_args, Python 3.7+); ``own_usage`` makes a subcommand refuse arguments it
    does not know itself, so the error shows the subcommand's usage line.
    """

    def __init__(self, *args: Any, intermixed: bool = False, own_usage: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intermixed = intermixed
        self.own_usage = own_usage
        self._parsing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._parsing:  # parse_known_intermixed_args calls back in, twice
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            if self.intermixed:
                namespace, extras = self.parse_known_intermixed_args(args, namespace)
            else:
                namespace, extras = super().parse_known_args(args, namespace)
        finally:
            self._parsing = False
        if extras and self.own_usage:
            self.error("unrecognized arguments: " + " ".join(extras))
        return namespace, extras

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
        raise argparse.ArgumentTypeError(f"bad number of seconds {text!r}: expected a number "
                                         "above 0")
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
        raise argparse.ArgumentTypeError(f"bad peer {text!r}: expected HOST:PORT, "
                                         "like 192.168.88.178:6881")
    return host, int(port)


def _address(text: str) -> str:
    """--bind: an IP address or a host name (whether it is this machine's is checked later)."""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if ":" in bare and all(c in "0123456789abcdefABCDEF:." for c in bare):
        return bare  # IPv6
    if not _HOST_RE.match(bare):
        raise argparse.ArgumentTypeError(f"bad address {text!r}: expected an IP address of "
                                         "this machine, like 192.168.88.114")
    return bare


def web_address(text: str) -> Tuple[str, int]:
    """`shell --web`: "PORT", "HOST:PORT" or "[IPv6]:PORT" -> (host, port); the host defaults
    to DEFAULT_WEB_HOST."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_WEB_HOST, text
    try:
        return _address(host), _port(port)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"bad web address {text!r}: expected PORT or "
                                         "HOST:PORT, like 9091 or 127.0.0.1:9091") from None


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
        raise UsageError(f"bad tracker {text!r}: expected a URL or HOST[:PORT], like "
                         "192.168.88.114")
    return f"http://{host}:{port or DEFAULT_TRACKER_PORT}/announce"


def _split_host_port(text: str) -> Tuple[Optional[str], Optional[int]]:
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


def looks_like_tracker(text: str) -> bool:
    """The seed report's ``create HOST FILE...``: is the first argument the tracker?"""
    if "://" in text:
        return True
    if os.path.exists(text):
        return False
    return _split_host_port(text)[0] is not None


def tracker_trust(args: argparse.Namespace) -> Any:
    """The SSL context for https trackers: system CAs, or the lab's certificate or pin."""
    cafile = getattr(args, "tracker_cafile", None)
    pin = getattr(args, "tracker_pin", None)
    if not cafile and not pin:
        return None
    from . import announce, trackerproto  # the HTTP client: only for https trust
    try:
        return announce.make_ssl_context(cafile=cafile, pin_sha256=pin)
    except (OSError, ValueError, trackerproto.TrackerError) as exc:
        raise UsageError(f"cannot use the tracker certificate: {exc}", prog=PROG) from None


# --------------------------------------------------------------------------------- the parser

def build_parser(handlers: Optional[Mapping[str, Handler]] = None) -> StaArgumentParser:
    """The parser of every command; ``handlers`` (command name -> function) become each
    subcommand's ``handler`` default. The shell parses its lines without handlers."""
    parser = StaArgumentParser(
        prog=PROG, description="STA, the Simple Torrent-like Application: a BitTorrent tracker, "
                               "seeder and downloader.",
        epilog="Run 'sta COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    parents = _parent_parsers()
    for name, add_arguments, help_text, description, https in _COMMANDS:
        p = sub.add_parser(name, parents=parents[:2 if https else 1], help=help_text,
                           description=description, intermixed=name in _INTERMIXED,
                           own_usage=True)
        add_arguments(p)
        if handlers is not None:
            p.set_defaults(handler=handlers[name])
    return parser


def _parent_parsers() -> List[StaArgumentParser]:
    """[logging options (every command), trust for https trackers (commands that use them)]"""
    common = StaArgumentParser(add_help=False)
    group = common.add_argument_group("logging")
    group.add_argument("--log-level", choices=LOG_LEVELS, default="warning",
                       help="log messages from this level up (default: warning)")
    group.add_argument("--log-file", metavar="PATH",
                       help="write the full log to PATH instead of the terminal")
    https = StaArgumentParser(add_help=False)
    group = https.add_argument_group("https trackers")
    group.add_argument("--tracker-cafile", metavar="PEM",
                       help="trust the tracker certificate in PEM (a lab's self-made one)")
    group.add_argument("--tracker-pin", metavar="SHA256",
                       help="trust the tracker whose certificate has this SHA-256 fingerprint "
                            "(printed by 'sta tracker --tls')")
    return [common, https]


def _tracker_arguments(p: StaArgumentParser) -> None:
    p.add_argument("--host", default=DEFAULT_BIND, help="address to listen on (default: every "
                                                        "address of this machine)")
    p.add_argument("--port", type=_port, default=DEFAULT_TRACKER_PORT,
                   help=f"port to listen on (default: {DEFAULT_TRACKER_PORT})")
    p.add_argument("--db", default="tracker.db", metavar="PATH",
                   help="SQLite file for swarms and hosted torrents (default: tracker.db)")
    p.add_argument("--interval", type=_positive_int, default=DEFAULT_INTERVAL, metavar="SECONDS",
                   help=f"announce interval given to peers (default: {DEFAULT_INTERVAL})")
    p.add_argument("--tls", action="store_true", help="serve HTTPS")
    p.add_argument("--certfile", metavar="PEM", help="TLS certificate (with --tls)")
    p.add_argument("--keyfile", metavar="PEM", help="TLS private key (with --tls)")
    p.add_argument("--no-udp", action="store_true",
                   help="serve HTTP only, no UDP tracker (BEP 15) on the same port number")


def _create_arguments(p: StaArgumentParser) -> None:
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


def _peer_node_arguments(p: StaArgumentParser, port_help: str) -> None:
    """--port, --bind, --encryption, --no-lsd and --no-utp: the options of every command that runs a
    peer."""
    p.add_argument("--port", type=_port, default=DEFAULT_PEER_PORT,
                   help=f"port for peers (default: {DEFAULT_PEER_PORT}{port_help})")
    p.add_argument("--bind", type=_address, default=DEFAULT_BIND, metavar="ADDRESS",
                   help="listen on, and connect from, this address of this machine only "
                        "(default: every address)")
    p.add_argument("--encryption", choices=ENCRYPTION_MODES, default="prefer",
                   help="peer connection encryption (default: prefer)")
    p.add_argument("--no-lsd", action="store_true",
                   default=os.environ.get(NO_LSD_VARIABLE, "0") not in ("", "0"),
                   help="do not look for peers on the local network (BEP 14 multicast); "
                        "on by default")
    p.add_argument("--no-utp", action="store_true",
                   help="TCP only: neither accept nor dial uTP (BEP 29) on the port's UDP "
                        "number; on by default")
    _dht_choice_arguments(p)


def _dht_choice_arguments(p: StaArgumentParser) -> None:
    """--no-dht and --dht-bootstrap: whether a node finds peers through the DHT, and how it
    joins it."""
    p.add_argument("--no-dht", action="store_true",
                   help="do not use the DHT (BEP 5) to find peers")
    p.add_argument("--dht-bootstrap", action="append", default=[], type=_peer,
                   metavar="HOST:PORT", help="join the DHT through this node (a lab's `sta dht`); "
                                             "repeatable (default: $STA_DHT_BOOTSTRAP, else the "
                                             "public routers)")


def dht_bootstrap(args: argparse.Namespace) -> Optional[List[Tuple[str, int]]]:
    """Where a node joins the DHT: --dht-bootstrap, else $STA_DHT_BOOTSTRAP (comma-separated
    HOST:PORT; empty: only the nodes saved last time), else the public routers every client
    uses; None with --no-dht."""
    if getattr(args, "no_dht", True):
        return None
    if args.dht_bootstrap:
        return list(args.dht_bootstrap)
    configured = os.environ.get(DHT_BOOTSTRAP_VARIABLE)
    if configured is None:
        return list(PUBLIC_DHT_ROUTERS)
    try:
        return [_peer(part.strip()) for part in configured.split(",") if part.strip()]
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{DHT_BOOTSTRAP_VARIABLE}: {exc}", prog=PROG) from None


def _seed_arguments(p: StaArgumentParser) -> None:
    p.add_argument("torrents", nargs="+", metavar="TORRENT_OR_MAGNET",
                   help=".torrent files or magnet links")
    p.add_argument("--data", default=".", metavar="DIR",
                   help="folder holding the files (default: .)")
    _peer_node_arguments(p, ", the next free one if taken; 0 picks any")
    p.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                   help="stop after SECONDS (default: run until interrupted)")
    p.add_argument("--super-seed", action="store_true",
                   help="first seed of a swarm: reveal pieces one at a time so the downloaders "
                        "trade among themselves and this node sends about one copy (BEP 16)")


def _download_arguments(p: StaArgumentParser) -> None:
    p.add_argument("torrents", nargs="+", metavar="TORRENT_OR_MAGNET",
                   help=".torrent files or magnet links")
    p.add_argument("-o", "--output", default=DEFAULT_DOWNLOAD_DIR, metavar="DIR",
                   help="download folder (default: ./downloads)")
    _peer_node_arguments(p, ", the next free one if taken; 0 picks any")
    p.add_argument("--peer", action="append", default=[], type=_peer, metavar="HOST:PORT",
                   help="also connect to this peer; repeatable")
    p.add_argument("--seed", action="store_true", help="keep seeding after the download")
    p.add_argument("--recheck", action="store_true",
                   help="verify existing data in full before downloading")
    p.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                   help="give up after SECONDS")


def _shell_arguments(p: StaArgumentParser) -> None:
    _peer_node_arguments(p, "")
    p.add_argument("-o", "--output", default=DEFAULT_DOWNLOAD_DIR, metavar="DIR",
                   help="download folder (default: ./downloads)")
    p.add_argument("--web", type=web_address, metavar="[HOST:]PORT",
                   help="also serve the web interface and Transmission's RPC there (HOST "
                        f"defaults to {DEFAULT_WEB_HOST})")
    _web_password_argument(p)


def _web_password_argument(p: StaArgumentParser) -> None:
    p.add_argument("--web-password", metavar="PASS",
                   help="password of the web interface (HTTP basic auth, any user name); "
                        "needed to serve on an address other than this machine's loopback")


def _web_arguments(p: StaArgumentParser) -> None:
    p.add_argument("--web-host", type=_address, default=DEFAULT_WEB_HOST, metavar="ADDRESS",
                   help=f"address of the web interface (default: {DEFAULT_WEB_HOST}, this "
                        "machine only)")
    p.add_argument("--web-port", type=_port, default=DEFAULT_WEB_PORT, metavar="PORT",
                   help=f"port of the web interface (default: {DEFAULT_WEB_PORT}; 0 picks any)")
    _web_password_argument(p)
    _peer_node_arguments(p, "")
    p.add_argument("-o", "--output", default=DEFAULT_DOWNLOAD_DIR, metavar="DIR",
                   help="download folder (default: ./downloads)")


def _info_arguments(p: StaArgumentParser) -> None:
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
    _dht_choice_arguments(p)


def _dht_arguments(p: StaArgumentParser) -> None:
    p.add_argument("--port", type=_port, default=DEFAULT_PEER_PORT,
                   help=f"UDP port for the DHT (default: {DEFAULT_PEER_PORT}; 0 picks any)")
    p.add_argument("--bind", type=_address, default=DEFAULT_BIND, metavar="ADDRESS",
                   help="listen on this address of this machine only (default: every address)")
    p.add_argument("--dht-bootstrap", action="append", default=[], type=_peer,
                   metavar="HOST:PORT", help="join the DHT through this node; repeatable "
                                             "(none: wait for others to join through this one)")


# Commands whose paths may come between options: `create HOST -o x.torrent a.bin b.bin`.
_INTERMIXED = ("create", "seed", "download")
# (name, arguments, one-line help, description, takes the https tracker options)
_COMMANDS: Tuple[Tuple[str, Callable[[StaArgumentParser], None], str, str, bool], ...] = (
    ("tracker", _tracker_arguments, "run a tracker",
     "Run a tracker: announce, scrape, hosted .torrent files and a dashboard over HTTP, and "
     "announce and scrape over UDP (BEP 15) on the same port number.", False),
    ("create", _create_arguments, "make a .torrent from files or a folder",
     "Make a .torrent. One file gives a single-file torrent, a folder or several paths a "
     "multi-file torrent. Without -t, a first argument that is a URL, or a host that is not an "
     "existing path, is the tracker: 'sta create 192.168.88.114 a.pdf b.pdf'. Options and paths "
     "may come in any order.", False),
    ("seed", _seed_arguments, "share files you have",
     "Seed .torrent files or magnet links from the data in DIR, until Ctrl-C or --timeout. A "
     "magnet link's metadata is fetched from its trackers and peers first.", True),
    ("download", _download_arguments, "download torrents or magnet links",
     "Download .torrent files or magnet links, several at once, from the trackers' peers and "
     "the peers given with --peer; exit once every one is complete.", True),
    ("shell", _shell_arguments, "interactive shell",
     "Interactive shell: create, seed, download and watch torrents in one session.", True),
    ("web", _web_arguments, "node with a web interface",
     "Run the node without a terminal: a web page to add, watch, pause and remove torrents, and "
     "Transmission's RPC for transmission-remote and remote GUIs. Torrents are remembered "
     "across restarts, as in the shell.", True),
    ("info", _info_arguments, "describe a .torrent or magnet link",
     "Show what a .torrent file or magnet link holds.", True),
    ("dht", _dht_arguments, "run a DHT node (a lab's bootstrap node)",
     "Run a DHT node (BEP 5) until Ctrl-C: peers find each other through it without a "
     "tracker. It prints its address and, from time to time, how many nodes it knows, and "
     "keeps its id and nodes in STA_HOME/dht.bencode to rejoin from.", False),
)

