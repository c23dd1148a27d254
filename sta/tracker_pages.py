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

__all__ = ["dashboard", "magnet", "REFRESH_SECONDS"]

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


def _size(n: Optional[int]) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def _peer_rows(peers: List[Dict[str, Any]]) -> List[str]:
    rows = []
    for peer in peers:
        percent = peer["progress"] * 100
        rows.append(
            "<tr><td class=l>{client}</td><td class=l>{ip}</td><td>{port}</td>"
            "<td><span class=bar><span style=\"width:{pct:.1f}%\"></span></span> {pct:.1f}%</td>"
            "<td>{up}</td><td>{down}</td><td>{left}</td><td>{ago:.0f} s</td></tr>".format(
                client=html.escape(peer["client"]), ip=html.escape(peer["ip"]),
                port=int(peer["port"]), pct=percent, up=_size(peer["uploaded"]),
                down=_size(peer["downloaded"]), left=_size(peer["left"]),
                ago=peer["last_seen_ago"]))
    return rows


def dashboard(stats: Dict[str, Any]) -> bytes:
    """The dashboard page (UTF-8 HTML) for a stats snapshot."""
    out = [
        "<!DOCTYPE html><html><head><meta charset=utf-8>",
        f"<meta http-equiv=refresh content={REFRESH_SECONDS}>",
        "<title>STA tracker</title><style>", _STYLE, "</style></head><body>",
        "<h1>STA tracker</h1>",
        "<p>{} torrents, {} peers; announce interval {} s; updated {}.</p>".format(
            int(stats["torrent_count"]), int(stats["peer_count"]), int(stats["interval"]),
            html.escape(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stats["time"])))),
        "<table><tr><th>torrent</th><th>size</th><th>seeders</th><th>leechers</th>"
        "<th>completed</th><th>uploaded</th><th>downloaded</th></tr>",
    ]
    for torrent in stats["torrents"]:
        title = torrent["name"] or torrent["info_hash"]
        out.append(
            "<tr><td class=l><a href=\"#t{ih}\">{title}</a></td><td>{size}</td><td>{s}</td>"
            "<td>{l}</td><td>{c}</td><td>{up}</td><td>{down}</td></tr>".format(
                ih=html.escape(torrent["info_hash"]), title=html.escape(title),
                size=_size(torrent["size"]), s=int(torrent["seeders"]),
                l=int(torrent["leechers"]), c=int(torrent["completed"]),
                up=_size(torrent["uploaded"]), down=_size(torrent["downloaded"])))
    out.append("</table>")
    for torrent in stats["torrents"]:
        title = torrent["name"] or "(not hosted here)"
        out.append("<h2 id=\"t{ih}\">{title} <span class=muted>{ih}</span></h2>".format(
            ih=html.escape(torrent["info_hash"]), title=html.escape(title)))
        if torrent["name"]:
            out.append("<p><a href=\"/torrents/{ih}.torrent\">download .torrent</a></p>".format(
                ih=html.escape(torrent["info_hash"])))
        if not torrent["peers"]:
            out.append("<p class=muted>no live peers</p>")
            continue
        out.append("<table><tr><th>client</th><th>address</th><th>port</th><th>progress</th>"
                   "<th>uploaded</th><th>downloaded</th><th>left</th><th>last seen</th></tr>")
        out.extend(_peer_rows(torrent["peers"]))
        out.append("</table>")
        hidden = torrent["seeders"] + torrent["leechers"] - torrent["peers_shown"]
        if hidden > 0:
            out.append(f"<p class=muted>and {hidden} more peers</p>")
    out.append("</body></html>\n")
    return "".join(out).encode("utf-8")
