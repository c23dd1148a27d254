"""What `info` and `create` say about a torrent or a magnet link, as text.

Plain functions from a Metainfo or a Magnet to lines (or to the JSON that ``--json`` prints);
cli.py and the shell write them out. Labels are padded so the values line up in one column.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Dict, List

from . import magnet, metainfo, ui

__all__ = ["torrent_json", "magnet_json", "json_text", "field", "torrent_lines", "magnet_lines",
           "created_lines"]

# Label column of `info`: fits its longest label, "created by:".
INFO_LABEL_WIDTH = 12
# Label column of `create`: fits its longest label, "info hash:".
CREATE_LABEL_WIDTH = 10
# Characters json.dumps(ensure_ascii=False) writes raw that a terminal would act on.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def torrent_json(meta: metainfo.Metainfo) -> Dict[str, Any]:
    info = meta.info
    return {
        "type": "torrent", "name": info.name, "info_hash": info.info_hash.hex(),
        "total_size": info.length, "piece_length": info.piece_length,
        "num_pieces": info.num_pieces, "private": info.private, "multi_file": info.multi_file,
        "files": [{"path": "/".join(f.path), "length": f.length, "offset": f.offset,
                   "pad": f.pad} for f in info.files],
        "announce": meta.announce, "trackers": [list(t) for t in meta.trackers],
        "url_list": list(meta.url_list), "comment": meta.comment, "created_by": meta.created_by,
        "creation_date": meta.creation_date, "magnet": meta.magnet_link(),
    }


def magnet_json(m: magnet.Magnet) -> Dict[str, Any]:
    return {
        "type": "magnet", "name": m.name, "info_hash": m.info_hash.hex(), "length": m.length,
        "trackers": list(m.trackers), "web_seeds": list(m.web_seeds),
        "sources": list(m.sources), "peers": list(m.peers),
        "select_only": list(m.select_only), "magnet": m.uri(),
    }


def json_text(value: Any) -> str:
    """What --json prints: indented, non-ASCII names left readable, but C1 controls and
    bidirectional overrides escaped as JSON escapes them (json escapes C0 controls itself), so
    the text is safe on a terminal and means the same to a JSON reader."""
    return _UNSAFE_IN_JSON.sub(lambda m: "\\u%04x" % ord(m.group()),
                               json.dumps(value, indent=2, ensure_ascii=False))


def field(label: str, value: Any, width: int = INFO_LABEL_WIDTH) -> str:
    """A "label:  value" line; the value made printable (names and comments come from
    whoever made the torrent)."""
    return f"{label + ':':<{width}} {ui.printable(value)}"


def torrent_lines(meta: metainfo.Metainfo) -> List[str]:
    """`sta info FILE.torrent`: the fields, then the files (padding files left out)."""
    info = meta.info
    lines = [
        field("name", info.name),
        field("info hash", info.info_hash.hex()),
        field("size", f"{ui.human_size(info.length)} ({info.length:,} bytes)"),
        field("pieces", f"{info.num_pieces} x {ui.human_size(info.piece_length)}"),
        field("private", "yes" if info.private else "no"),
    ]
    if not meta.trackers:
        lines.append(field("trackers", "none"))
    for i, tier in enumerate(meta.trackers):
        label = "tracker" if len(meta.trackers) == 1 else f"tier {i + 1}"
        lines.append(field(label, ", ".join(tier)))
    lines += [field("web seed", url) for url in meta.url_list]
    if meta.comment:
        lines.append(field("comment", meta.comment))
    if meta.created_by:
        lines.append(field("created by", meta.created_by))
    if meta.creation_date:
        lines.append(field("created on", time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                       time.gmtime(meta.creation_date))))
    lines.append(field("magnet", meta.magnet_link()))
    real = [f for f in info.files if not f.pad]
    lines.append(f"files ({len(real)}):")
    lines += [f"  {ui.human_size(f.length):>10}  {ui.printable('/'.join(f.path))}"
              for f in real]
    return lines


def magnet_lines(m: magnet.Magnet) -> List[str]:
    """`sta info MAGNET`: what the link itself says (no file list: that is in the metadata)."""
    lines = [field("name", m.name or "(not given)"), field("info hash", m.info_hash.hex())]
    if m.length is not None:
        lines.append(field("size", f"{ui.human_size(m.length)} ({m.length:,} bytes)"))
    if not m.trackers:
        lines.append(field("trackers", "none"))
    lines += [field("tracker", url) for url in m.trackers]
    lines += [field("web seed", url) for url in m.web_seeds]
    lines += [field("source", url) for url in m.sources]
    lines += [field("peer", peer) for peer in m.peers]
    if m.select_only:
        lines.append(field("files", "only " + magnet.format_select(m.select_only)))
    lines.append(field("magnet", m.uri()))
    lines.append("(a magnet link carries no file list; 'sta info --fetch' will get it from peers)")
    return lines


def created_lines(path: str, info: metainfo.Info, elapsed: float) -> List[str]:
    """What `sta create` says once the .torrent is written (the magnet link comes after, once
    an --upload has said where the .torrent can be fetched)."""
    return [
        field("torrent", path, CREATE_LABEL_WIDTH),
        field("name", f"{info.name} ({ui.human_size(info.length)}, {info.num_pieces} pieces of "
                      f"{ui.human_size(info.piece_length)}, hashed in "
                      f"{ui.human_duration(elapsed)})", CREATE_LABEL_WIDTH),
        field("info hash", info.info_hash.hex(), CREATE_LABEL_WIDTH),
    ]
