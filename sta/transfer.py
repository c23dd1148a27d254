"""The `seed` and `download` commands: one session, progress on screen, a summary at the end.

Both commands run the same thing: a session on one port with every torrent given, the torrents'
data checked (or trusted from the resume state), peers from the trackers and from --peer. A
download ends when every torrent is complete and verified (or keeps seeding with --seed); a seed
runs until Ctrl-C, SIGTERM or --timeout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

from . import magnet as magnet_mod
from . import metainfo as metainfo_mod
from .errors import describe_error
from .magnet_torrent import MagnetTorrent, saved_metainfo
from .session import Session
from .storage import FileStorage
from .torrent import Torrent
from . import progress, ui

log = logging.getLogger(__name__)

# Torrents checked at once at start-up. A fresh download's check is a few stat calls, and ten
# done one after another each wait for a loop already busy with the first torrents' transfers;
# data already on disk is hashed by each check's own workers, and more checks at once would only
# make a disk seek between files (libtorrent checks one torrent at a time: active_checking 1).
CHECKS_AT_ONCE = 4


class TransferError(Exception):
    """A seed or download could not start."""


@dataclass
class TransferOptions:
    sources: Sequence[str]
    folder: str
    port: int = 6881
    peers: Sequence[Tuple[str, int]] = ()
    seed_only: bool = False       # the `seed` command: never write, never download
    super_seed: bool = False      # BEP 16: reveal pieces one at a time (`seed --super-seed`)
    keep_seeding: bool = False    # `download --seed`
    recheck: bool = False
    timeout: Optional[float] = None
    host: str = "0.0.0.0"
    encryption: str = "prefer"
    lsd: bool = False             # local peer discovery (BEP 14); the commands turn it on
    utp: bool = True              # uTP (BEP 29) beside TCP; `--no-utp` turns it off
    out: Any = None               # stream for progress and summary (default stderr)
    tracker_ssl_context: Any = None   # trust for https trackers (announce.make_ssl_context)
    dht_bootstrap: Optional[List[Tuple[str, int]]] = None   # None: no DHT
    extra: dict = field(default_factory=dict)


def load_sources(sources: Sequence[str]) -> List[Any]:
    """Load every .torrent and parse every magnet link given; one clear error for the first
    that is unusable."""
    loaded: List[Any] = []
    for source in sources:
        if source.startswith("magnet:"):
            try:
                loaded.append(magnet_mod.parse(source))
            except magnet_mod.MagnetError as exc:
                shown = source if len(source) <= 60 else source[:57] + "..."
                raise TransferError(f"bad magnet link {shown}: {exc}") from None
            continue
        try:
            loaded.append(metainfo_mod.load(source))  # its errors name the file
        except OSError as exc:
            raise TransferError(describe_error(exc)) from None
    return loaded


def run(options: TransferOptions) -> int:
    """Run the command to the end; returns the exit status."""
    metainfos = load_sources(options.sources)
    return _run_loop(_transfer(options, metainfos))


def _run_loop(coro: Any) -> int:
    if sys.platform == "win32" and sys.version_info < (3, 8):  # pragma: no cover
        asyncio.set_event_loop_policy(asyncio.WindowsProactorEventLoopPolicy())
    return asyncio.run(coro)


async def _transfer(options: TransferOptions, metainfos: List[Any]) -> int:
    out = options.out if options.out is not None else sys.stderr
    session = Session(port=options.port, host=options.host, encryption=options.encryption,
                      tracker_ssl_context=options.tracker_ssl_context,
                      dht_bootstrap=options.dht_bootstrap, lsd=options.lsd, utp=options.utp)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    await session.start()
    torrents: List[Torrent] = []
    try:
        progress.listening(out, options.host, session.listen_port)
        torrents = await _add_all(session, metainfos, options, out)
        for torrent in torrents:
            progress.report_start(out, torrent, seed_only=options.seed_only,
                                  folder=options.folder)
        if options.seed_only:
            _announce_seeds(out, torrents, options.folder)
        status = await progress.watch(
            torrents, out=out, stop=stop, timeout=options.timeout, resolve=current,
            exit_when_complete=not options.seed_only and not options.keep_seeding)
    finally:
        await session.close()
    progress.summary(out, torrents)
    return status


async def _add_all(session: Session, metainfos: List[Any], options: TransferOptions,
                   out: Any) -> List[Torrent]:
    """Check and start every torrent, CHECKS_AT_ONCE at a time; in the order given."""
    gate = asyncio.Semaphore(CHECKS_AT_ONCE)

    async def add(meta: Any) -> Torrent:
        async with gate:
            if options.seed_only and not isinstance(meta, magnet_mod.Magnet):
                progress.checking(out, meta.info.name, options.folder)
            # A seed is announced only once its data is found: a tracker must never list a
            # peer that is about to give up.
            return await add_torrent(session, meta, options.folder, seed_only=options.seed_only,
                                     recheck=options.recheck, peers=options.peers,
                                     super_seed=options.super_seed,
                                     announce=not options.seed_only)

    adds = [asyncio.ensure_future(add(meta)) for meta in metainfos]
    try:
        return list(await asyncio.gather(*adds))
    finally:  # one failed: the command ends, so the others stop where they are
        for pending in adds:
            pending.cancel()
        await asyncio.gather(*adds, return_exceptions=True)


async def add_torrent(session: Session, meta: Any, folder: str, *, seed_only: bool = False,
                      recheck: bool = False, peers: Sequence[Tuple[str, int]] = (),
                      super_seed: bool = False, paused: bool = False,
                      announce: bool = True) -> Torrent:
    """Check the data of ``meta`` in ``folder`` and start it in ``session``.

    ``seed_only`` opens the files read-only: a seed never creates, grows or writes a file.
    """
    if isinstance(meta, magnet_mod.Magnet):
        saved = saved_metainfo(meta, folder)
        if saved is None:
            def build(fetched: Any) -> Torrent:
                return Torrent(session, fetched, FileStorage(fetched.info, folder,
                                                             readonly=seed_only))
            stand_in = MagnetTorrent(session, meta, folder, build)
            await session.add(stand_in, paused=paused, announce=announce)
            stand_in.add_peers(list(peers), "command line")
            return stand_in  # type: ignore[return-value]
        meta = saved  # fetched by an earlier run: no need to fetch it again
    storage = FileStorage(meta.info, folder, readonly=seed_only)
    torrent = Torrent(session, meta, storage, super_seed=super_seed)
    await session.add(torrent, recheck=recheck, paused=paused, announce=announce)
    torrent.add_peers(list(peers), "command line")
    return torrent


def _announce_seeds(out: Any, torrents: List[Any], folder: str) -> None:
    """Announce the seeds whose data was found; one error when none was."""
    empty = [t for t in torrents if not isinstance(t, MagnetTorrent) and not t.picker.have.count]
    if len(empty) == len(torrents):
        names = ", ".join(t.name for t in torrents)
        raise TransferError(f"none of the data of {names} is in {folder}; "
                            "pass --data FOLDER, the folder that holds it")
    for torrent in torrents:
        if torrent in empty:
            ui.write_line(out, f"{torrent.name}: none of its data is in {folder}; not seeding it")
        else:
            torrent.start_announcing()


def current(torrent: Any) -> Any:
    """A magnet's stand-in once its metadata arrived is the real torrent."""
    while getattr(torrent, "successor", None) is not None:
        torrent = torrent.successor
    return torrent


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            # Windows' event loops have no add_signal_handler: a plain handler that wakes the
            # loop from the signal context does the same.
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


def fetch_metadata(link: "magnet_mod.Magnet", peers: Sequence[Tuple[str, int]],
                   timeout: Optional[float], port: int = 0,
                   tracker_ssl_context: Any = None,
                   dht_bootstrap: Optional[List[Tuple[str, int]]] = None) -> bytes:
    """`info --fetch`: the verified info dictionary of a magnet link, from its trackers, its
    sources and its peers; TransferError naming every source tried when none answers."""
    return _run_loop(_fetch(link, peers, timeout or DEFAULT_FETCH_TIMEOUT, port,
                            tracker_ssl_context, dht_bootstrap))


# Seconds `info --fetch` waits without --timeout: long enough for a tracker round trip and a
# few peers on a LAN, short enough that a dead magnet does not hang a script.
DEFAULT_FETCH_TIMEOUT = 60.0


async def _fetch(link: "magnet_mod.Magnet", peers: Sequence[Tuple[str, int]], timeout: float,
                 port: int, tracker_ssl_context: Any,
                 dht_bootstrap: Optional[List[Tuple[str, int]]]) -> bytes:
    session = Session(port=port, tracker_ssl_context=tracker_ssl_context,
                      dht_bootstrap=dht_bootstrap)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    await session.start()
    try:
        stand_in = MagnetTorrent(session, link, ".", None)
        await session.add(stand_in)
        stand_in.add_peers(list(peers), "command line")
        waiter = asyncio.ensure_future(stand_in.done.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, stopper], timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if stand_in.fetched is None:
            if stop.is_set():
                raise KeyboardInterrupt
            raise TransferError(f"no metadata within {timeout:g} s; tried "
                                + stand_in.sources_tried())
        return stand_in.fetched
    finally:
        await session.close()
