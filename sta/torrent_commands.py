"""The `create` and `info` commands, shared by the command line and the shell.

Both work on one .torrent file or magnet link and need no running node (`info --fetch` runs a
short-lived session of its own). Their output is drawn by views.py; hashing progress by ui.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Callable, List, Optional

from . import magnet, maketorrent, metainfo, ui, views
from .cliargs import (PROG, UsageError, dht_bootstrap, looks_like_tracker, tracker_trust,
                      tracker_url)

__all__ = ["TorrentCommandError", "cmd_create", "cmd_info"]


class TorrentCommandError(Exception):
    """`create` or `info` cannot do what was asked; the message says why and what to do."""


# ----------------------------------------------------------------------------------- create

def cmd_create(args: argparse.Namespace) -> int:
    """`sta create PATH... [-t TRACKER]...`: write the .torrent, print its magnet link."""
    paths: List[str] = list(args.paths)
    trackers = [tracker_url(t) for t in args.tracker]
    if not trackers and len(paths) >= 2 and looks_like_tracker(paths[0]):
        trackers = [tracker_url(paths.pop(0))]  # the seed report's "create HOST FILE..."
    for path in paths:  # before any note, so that a mistyped name is the only line
        if not os.path.exists(path):
            raise TorrentCommandError(f"no such file or folder: {path}")
    if args.upload and not trackers:
        raise UsageError("--upload needs a tracker: give one with -t HOST", prog=f"{PROG} create")
    if not trackers:
        _note("no tracker given (-t): peers will have to be given with --peer")
    name = args.name
    if len(paths) > 1 and not name:
        name = maketorrent.default_name(paths)
        _note(f"several paths and no --name: the torrent is named {name!r}")
    out = _output_path(args.output, paths, name)
    if os.path.exists(out) and not args.force:
        raise TorrentCommandError(f"{out} already exists (use -f to overwrite it)")

    started = time.monotonic()
    data = _hash(args, paths, trackers, name, out)
    meta = metainfo.parse(data)
    _write_file(out, data)
    print("\n".join(views.created_lines(out, meta.info, time.monotonic() - started)))
    link = meta.magnet()
    if args.upload:
        # Imported here: the HTTP client costs 20 ms of start-up that `create` alone never needs.
        from . import metadata_source
        source = metadata_source.upload_torrent(trackers[0], data, meta.info_hash,
                                                tracker_trust(args))
        print(views.field("uploaded", source, views.CREATE_LABEL_WIDTH))
        link = dataclasses.replace(link, sources=(source,))
    print(views.field("magnet", link.uri(), views.CREATE_LABEL_WIDTH))
    return 0


def _hash(args: argparse.Namespace, paths: List[str], trackers: List[str],
          name: Optional[str], out: str) -> bytes:
    """The .torrent's bytes; a live hashing line on a terminal (in a pipe the few seconds of
    hashing need no lines)."""
    progress = ui.ProgressLine(sys.stderr)
    try:
        return maketorrent.make_torrent(
            paths, trackers, piece_length=args.piece_length, name=name, comment=args.comment,
            private=args.private, web_seeds=args.web_seed, workers=args.threads, exclude=[out],
            progress=_hashing_line(progress) if progress.tty else None)
    finally:
        if progress.tty:
            progress.finish()


def _hashing_line(progress: ui.ProgressLine) -> Callable[[int, int], None]:
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        rate = done / max(1e-6, time.monotonic() - started)
        progress.update("hashing %s %5.1f%%  %s of %s  %s  eta %s" % (
            ui.progress_bar(done / total), 100.0 * done / total, ui.human_size(done),
            ui.human_size(total), ui.human_rate(rate),
            ui.human_eta((total - done) / rate if rate else None)), force=done >= total)
    return show


def _note(text: str) -> None:
    sys.stderr.write(f"{PROG}: note: {ui.printable(text)}\n")


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
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise TorrentCommandError(f"cannot write {path}: the folder {folder} does not exist "
                                  "(create it, or give another place with -o)")
    tmp = path + ".part"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise TorrentCommandError(f"cannot write {path}: {exc.strerror or exc} (give another "
                                  "place with -o)") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# ------------------------------------------------------------------------------------- info

def cmd_info(args: argparse.Namespace) -> int:
    """`sta info TORRENT_OR_MAGNET [--fetch] [--json]`."""
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
    from . import transfer  # the engine: only --fetch needs it
    raw = transfer.fetch_metadata(m, args.peer, getattr(args, "timeout", None),
                                  tracker_ssl_context=tracker_trust(args),
                                  dht_bootstrap=dht_bootstrap(args))
    data = metainfo.encode_torrent(raw, trackers=m.trackers, url_list=m.web_seeds,
                                   created_by=metainfo.CREATED_BY)
    meta = metainfo.parse(data)
    if args.output:
        _write_file(args.output, data)
    _print_torrent(meta, args.json)
    if args.output and not args.json:
        print(f"saved to {ui.printable(args.output)}")
    return 0


def _print_torrent(meta: metainfo.Metainfo, as_json: bool) -> None:
    print(views.json_text(views.torrent_json(meta)) if as_json
          else "\n".join(views.torrent_lines(meta)))
