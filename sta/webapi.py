"""The page's JSON API: what sta/webui/app.js reads and asks, over a ``WebNode``.

    GET  /api/torrents?notices=N    every torrent's status row, the node's totals and rates, and
                                    the notices after number N
    GET  /api/torrents/HASH         one torrent: its row, files (bytes held each), peers, piece
                                    map and the rates of the last minutes
    POST /api/add                   {"metainfo": base64 of a .torrent} or {"magnet": link}
    POST /api/torrents/HASH/ACTION  pause, resume, verify, or remove ({"delete_files": bool})

Answers are JSON objects; a failure is ``{"error": "one line"}`` with 400 (a request that cannot
be done) or 404 (no such torrent or path). Authentication and the session-id check that every
POST must pass are web.py's; this module only maps paths to the node's methods.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Tuple
from urllib.parse import parse_qs

from .node import NodeError
from .webnode import WebNode, WebNodeError, decode_base64

__all__ = ["WebApi", "ApiError", "API_PREFIX"]

API_PREFIX = "/api/"
_TORRENT_PATH = re.compile(r"^/api/torrents/([0-9a-fA-F]{40})(?:/([a-z]+))?$")
ACTIONS = ("pause", "resume", "verify", "remove")

Answer = Tuple[int, Dict[str, Any]]


class ApiError(Exception):
    """A request the API cannot answer; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class WebApi:
    """The page's requests answered from a ``WebNode``."""

    def __init__(self, web: WebNode) -> None:
        self.web = web

    def get(self, path: str, query: str = "") -> Answer:
        return self._answer(lambda: self._get(path, query))

    def post(self, path: str, body: Any) -> Answer:
        return self._answer(lambda: self._post(path, body))

    @staticmethod
    def _answer(work: Any) -> Answer:
        try:
            return 200, work()
        except ApiError as exc:
            return exc.status, {"error": str(exc)}
        except (WebNodeError, NodeError) as exc:
            status = 404 if str(exc).startswith("no torrent") else 400
            return status, {"error": str(exc)}

    # -- reading -----------------------------------------------------------------------------

    def _get(self, path: str, query: str) -> Dict[str, Any]:
        if path == "/api/torrents":
            return self.overview(_number(parse_qs(query).get("notices", ["0"])[0]))
        match = _TORRENT_PATH.match(path)
        if match and match.group(2) is None:
            detail = self.web.detail(match.group(1))
            detail.pop("bitfield", None)  # bytes: the page draws the cells instead
            return detail
        raise ApiError(f"no such path {path[:80]}", 404)

    def overview(self, after: int = 0) -> Dict[str, Any]:
        """Every torrent, the node's totals, its rates and the notices after ``after``."""
        stats = self.web.node.stats()
        stats.pop("peer_id", None)
        return {"torrents": self.web.rows(), "stats": stats, "folder": self.web.folder,
                "rates": self.web.history.series(), "notices": self.web.notices.since(after)}

    # -- changing ----------------------------------------------------------------------------

    def _post(self, path: str, body: Any) -> Dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError("the request body is not a JSON object")
        if path == "/api/add":
            return {"torrent": self.add(body)}
        match = _TORRENT_PATH.match(path)
        if not match or match.group(2) not in ACTIONS:
            raise ApiError(f"no such path {path[:80]}", 404)
        row = self.web.find(match.group(1))
        key = bytes.fromhex(row["info_hash"])
        action = match.group(2)
        node = self.web.node
        if action == "pause":
            return {"before": node.pause(key)}
        if action == "resume":
            before, after = node.resume(key)
            return {"before": before, "after": after}
        if action == "verify":
            node.verify(key)
            return {}
        deleted = node.remove(key, delete_files=bool(body.get("delete_files")))
        return {"deleted": len(deleted)}

    def add(self, body: Dict[str, Any]) -> Dict[str, Any]:
        meta, link = body.get("metainfo"), body.get("magnet")
        if isinstance(meta, str) and meta:
            return self.web.add_metainfo(decode_base64(meta))
        if isinstance(link, str) and link.strip():
            return self.web.add_magnet(link)
        raise ApiError("give a .torrent file or a magnet link")


def _number(text: str) -> int:
    return int(text) if text.isdigit() and len(text) < 16 else 0
