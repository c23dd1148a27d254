"""Human-facing pages of the tracker: the HTML dashboard and magnet links of hosted torrents.

Pure functions over the plain-data snapshot ``TrackerStore.stats()`` returns; every value that
came from a peer is HTML-escaped, and the page needs nothing but itself (no scripts, no external
style sheets or fonts), so it works on an isolated lab LAN.
"""

from __future__ import annotations

import html
import time
from typing import Any, Dict, List, Optional
from urllib.parse import quote

__all__ = ["dashboard", "magnet", "REFRESH_SECONDS", "NOT_UPLOADED_HINT"]

# How often the dashboard reloads itself: fast enough to watch a transfer in a lab demo, slow
# enough that an open browser tab costs the tracker nothing.
REFRESH_SECONDS = 5

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em;word-break:break-all}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f0f0f0}td.l{text-align:left;font-family:monospace}
.bar{display:inline-block;width:8em;height:.8em;background:#eee;vertical-align:middle}
.bar span{display:block;height:100%;background:#4a4}
.muted{color:#777}
"""


def magnet(info_hash: bytes, name: Optional[str], announce: str, source: str) -> str:
    """A magnet link (BEP 9) naming the tracker and, as xs, the hosted .torrent's URL."""
    parts = [f"magnet:?xt=urn:btih:{info_hash.hex()}"]
    if name:
        parts.append("dn=" + quote(name, safe=""))
    parts.append("tr=" + quote(announce, safe=""))
    parts.append("xs=" + quote(source, safe=""))
    return "&".join(parts)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


# What the dashboard says of a torrent that was announced but never uploaded: the tracker
# knows only its info hash, so it says how to give it a name and a size.
NOT_UPLOADED_HINT = ("not uploaded to this tracker, so its name and size are unknown: make "
                     "torrents with 'sta create --upload' to see them by name here")


def _ago(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _peer_rows(peers: List[Dict[str, Any]]) -> List[str]:
    rows = []
    for peer in peers:
        percent = peer["progress"] * 100
        rows.append(
            "<tr><td class=l>{client}</td><td class=l>{ip}</td><td>{port}</td>"
            "<td><span class=bar><span style=\"width:{pct:.1f}%\"></span></span> {pct:.1f}%</td>"
            "<td>{up}</td><td>{down}</td><td>{left}</td><td>as of {ago}</td></tr>".format(
                client=html.escape(peer["client"]), ip=html.escape(peer["ip"]),
                port=int(peer["port"]), pct=percent, up=_size(peer["uploaded"]),
                down=_size(peer["downloaded"]), left=_size(peer["left"]),
                ago=_ago(peer["last_seen_ago"])))
    return rows


def _title(torrent: Dict[str, Any]) -> str:
    """The torrent's name, or for one never uploaded its short hash and the hint (HTML)."""
    if torrent["name"]:
        return html.escape(torrent["name"])
    return "{short}&hellip; <span class=muted>({hint})</span>".format(
        short=html.escape(torrent["info_hash"][:12]), hint=html.escape(NOT_UPLOADED_HINT))


def _summary(torrents: List[Dict[str, Any]], interval: int) -> List[str]:
    out = ["<table><tr><th>torrent</th><th>size</th><th>seeders</th><th>leechers</th>"
           "<th>completed</th><th>uploaded</th><th>downloaded</th></tr>"]
    for torrent in torrents:
        out.append(
            "<tr><td class=l><a href=\"#t{ih}\">{title}</a></td><td>{size}</td><td>{s}</td>"
            "<td>{l}</td><td>{c}</td><td>{up}</td><td>{down}</td></tr>".format(
                ih=html.escape(torrent["info_hash"]), title=_title(torrent),
                size=_size(torrent["size"]) if torrent["size"] is not None else "unknown",
                s=int(torrent["seeders"]), l=int(torrent["leechers"]),
                c=int(torrent["completed"]), up=_size(torrent["uploaded"]),
                down=_size(torrent["downloaded"])))
    out.append("</table>")
    out.append("<p class=muted>Uploaded and downloaded add up what every peer reported, peers "
               "that have left included. Peers report only when they announce (every {} s), "
               "so each row says how old its figures are.</p>".format(int(interval)))
    return out


def _torrent_section(torrent: Dict[str, Any]) -> List[str]:
    ih = html.escape(torrent["info_hash"])
    if torrent["name"]:
        out = ["<h2 id=\"t{ih}\">{title} <span class=muted>{ih}</span></h2>".format(
                   ih=ih, title=html.escape(torrent["name"])),
               "<p><a href=\"/torrents/{ih}.torrent\">download .torrent</a></p>".format(ih=ih)]
    else:
        out = ["<h2 id=\"t{ih}\">{ih}</h2>".format(ih=ih),
               "<p class=muted>This torrent was {hint}.</p>".format(
                   hint=html.escape(NOT_UPLOADED_HINT))]
    if not torrent["peers"]:
        out.append("<p class=muted>no live peers</p>")
        return out
    out.append("<table><tr><th>client</th><th>address</th><th>port</th><th>progress</th>"
               "<th>uploaded</th><th>downloaded</th><th>left</th><th>figures</th></tr>")
    out.extend(_peer_rows(torrent["peers"]))
    out.append("</table>")
    hidden = torrent["seeders"] + torrent["leechers"] - torrent["peers_shown"]
    if hidden > 0:
        out.append(f"<p class=muted>and {hidden} more peers</p>")
    return out


def dashboard(stats: Dict[str, Any]) -> bytes:
    """The dashboard page (UTF-8 HTML) for a stats snapshot.

    Torrents and peers keep the order of the snapshot (first seen, joined), so rows do not
    jump around between refreshes."""
    out = [
        "<!DOCTYPE html><html><head><meta charset=utf-8>",
        f"<meta http-equiv=refresh content={REFRESH_SECONDS}>",
        "<title>STA tracker</title><style>", _STYLE, "</style></head><body>",
        "<h1>STA tracker</h1>",
        "<p>{} torrents, {} peers; announce interval {} s; updated {}.</p>".format(
            int(stats["torrent_count"]), int(stats["peer_count"]), int(stats["interval"]),
            html.escape(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stats["time"])))),
    ]
    out.extend(_summary(stats["torrents"], stats["interval"]))
    for torrent in stats["torrents"]:
        out.extend(_torrent_section(torrent))
    out.append("</body></html>\n")
    return "".join(out).encode("utf-8")
