"""Transmission's RPC protocol over the node: the part `transmission-remote` and the common
remote GUIs use.

A request is a JSON object ``{"method": ..., "arguments": {...}, "tag": n}``; the answer is
``{"result": "success" or an error text, "arguments": {...}, "tag": n}`` (the tag echoed, which
transmission-remote needs to know which answer it reads). Methods: ``session-get``,
``session-set`` (download-dir), ``session-stats``, ``torrent-get``, ``torrent-add`` (filename:
a path on this machine, a magnet link or an http(s) URL; metainfo: base64), ``torrent-start``,
``torrent-start-now``, ``torrent-stop``, ``torrent-verify`` and ``torrent-remove``
(delete-local-data). ``ids`` is absent (every torrent), an id, an info hash, a list of those, or
"recently-active". The HTTP side (the 409 exchange of X-Transmission-Session-Id, basic auth)
is web.py's.

Field names and meanings follow Transmission's rpc-spec (rpc-version 16, Transmission 3.00):
status 0 stopped, 2 checking, 4 downloading, 6 seeding; eta -1 when unknown; error 3 for a local
error. Integers are integers: transmission-remote reads rates and sizes as integers and skips a
torrent whose fields are of another type. Torrent fields STA has no notion of (bandwidth
priority, limits, queue) have Transmission's neutral defaults.
"""

from __future__ import annotations

import base64
import logging
import os
from typing import Any, Callable, Dict, List, Sequence

from . import __version__
from .magnet import Magnet, format as format_magnet
from .node import NodeError
from .webnode import WebNode, WebNodeError, decode_base64

__all__ = ["TransmissionRpc", "RpcError", "RPC_VERSION", "STATUS_CODES", "select_ids"]

log = logging.getLogger(__name__)

# Transmission 3.00 speaks rpc-version 16 and accepts clients from 1 on.
RPC_VERSION = 16
RPC_VERSION_MINIMUM = 1
# STA's torrent states as Transmission's status numbers (tr_torrent_activity).
STOPPED, CHECK_WAIT, CHECK, DOWNLOAD_WAIT, DOWNLOAD, SEED_WAIT, SEED = range(7)
STATUS_CODES = {"paused": STOPPED, "stopped": STOPPED, "error": STOPPED, "checking": CHECK,
                "metadata": DOWNLOAD, "downloading": DOWNLOAD, "seeding": SEED}
# Transmission's "local error" (TR_STAT_LOCAL_ERROR): what a stopped STA torrent has.
LOCAL_ERROR = 3
# Transmission's TR_ETA_NOT_AVAIL and TR_RATIO_NA.
ETA_UNKNOWN = -1
RATIO_UNKNOWN = -1.0
# Transmission's defaults for what STA does not limit.
DEFAULT_PEER_LIMIT = 50
DEFAULT_SEED_RATIO = 2.0
# Fields that need the torrent's files, pieces and peers (one detail call per torrent).
DETAIL_FIELDS = frozenset(("files", "fileStats", "priorities", "wanted", "pieces", "pieceCount",
                           "pieceSize", "peers", "isPrivate", "desiredAvailable"))
# Fields that need every connected peer (one call for all torrents).
PEER_COUNT_FIELDS = frozenset(("peersSendingToUs", "peersGettingFromUs"))
# At most this many ids in one request: more torrents than a node holds, and a bound on work.
MAX_IDS = 100000


class RpcError(Exception):
    """A request that cannot be answered; the message becomes the answer's "result"."""


def select_ids(ids: Any, rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The rows ``ids`` names (see the module's docstring); unknown ids are left out, as
    Transmission does."""
    if ids is None or ids == "recently-active":
        return list(rows)
    if not isinstance(ids, list):
        ids = [ids]
    if len(ids) > MAX_IDS:
        raise RpcError(f"more than {MAX_IDS} ids")
    wanted = set()
    for item in ids:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise RpcError(f"bad id {item!r}: expected a number or an info hash")
        wanted.add(item.lower() if isinstance(item, str) else item)
    return [r for r in rows if r["id"] in wanted or r["info_hash"] in wanted]


def _status_fields(row: Dict[str, Any], folder: str) -> Dict[str, Any]:
    size, have, state = row["size"], row["have"], row["state"]
    error = row.get("error") if state == "error" else None
    eta = row.get("eta")
    return {
        "id": row["id"], "name": row["name"], "hashString": row["info_hash"],
        "status": STATUS_CODES.get(state, STOPPED), "error": LOCAL_ERROR if error else 0,
        "errorString": error or "", "totalSize": size, "sizeWhenDone": size,
        "leftUntilDone": max(size - have, 0), "haveValid": have, "haveUnchecked": 0,
        "percentDone": float(row["progress"]) if state != "metadata" else 0.0,
        "metadataPercentComplete": float(row["progress"]) if state == "metadata" else 1.0,
        "recheckProgress": float(row["progress"]) if state == "checking" else 0.0,
        "rateDownload": int(row["down_rate"]), "rateUpload": int(row["up_rate"]),
        "downloadedEver": row["downloaded"], "uploadedEver": row["uploaded"],
        "uploadRatio": float(row["ratio"]) if row["downloaded"] or have else RATIO_UNKNOWN,
        "eta": int(eta) if eta is not None else ETA_UNKNOWN, "peersConnected": row["peers"],
        "isFinished": False, "isStalled": False, "downloadDir": folder,
        "addedDate": int(row["seen"]), "activityDate": int(row["seen"]),
        "startDate": int(row["seen"]), "doneDate": 0, "dateCreated": 0,
        "comment": "", "creator": "", "corruptEver": 0, "queuePosition": row["id"] - 1,
        "magnetLink": format_magnet(Magnet(bytes.fromhex(row["info_hash"]), name=row["name"])),
        "trackers": [{"id": n, "announce": t["url"], "scrape": "", "tier": n}
                     for n, t in enumerate(row.get("trackers", []))],
        "webseeds": [], "webseedsSendingToUs": 0, "secondsDownloading": 0,
        "secondsSeeding": 0, "peer-limit": DEFAULT_PEER_LIMIT, "bandwidthPriority": 0,
        "downloadLimit": 0, "downloadLimited": False, "uploadLimit": 0,
        "uploadLimited": False, "honorsSessionLimits": True, "seedRatioMode": 0,
        "seedRatioLimit": DEFAULT_SEED_RATIO, "labels": [],
    }


def _detail_fields(detail: Dict[str, Any]) -> Dict[str, Any]:
    files = detail["files"]
    return {
        "files": [{"name": f["name"], "length": f["length"], "bytesCompleted": f["done"]}
                  for f in files],
        "fileStats": [{"bytesCompleted": f["done"], "wanted": True, "priority": 0}
                      for f in files],
        "priorities": [0] * len(files), "wanted": [1] * len(files),
        "pieces": base64.b64encode(detail["bitfield"]).decode("ascii"),
        "pieceCount": detail["piece_count"], "pieceSize": detail["piece_size"],
        "isPrivate": False, "desiredAvailable": max(detail["size"] - detail["have"], 0),
        "peers": [_peer(p) for p in detail["peers"]],
    }


def _peer(p: Dict[str, Any]) -> Dict[str, Any]:
    host, _, port = p["address"].rpartition(":")
    return {
        "address": host.strip("[]"), "port": int(port or 0), "clientName": p["client"],
        "progress": float(p["progress"]), "rateToClient": int(p["down_rate"]),
        "rateToPeer": int(p["up_rate"]), "flagStr": p["flags"],
        "isEncrypted": p["encrypted"], "isIncoming": p["incoming"],
        "isDownloadingFrom": _sending(p), "isUploadingTo": _getting(p),
        "clientIsChoked": p["choked"], "clientIsInterested": p["interested"],
        "peerIsChoked": p["choking"], "peerIsInterested": p["peer_interested"],
        "isUTP": False,
    }


def _sending(p: Dict[str, Any]) -> bool:
    """The peer sends to us: we want its pieces and it does not choke us."""
    return bool(p["interested"] and not p["choked"])


def _getting(p: Dict[str, Any]) -> bool:
    """The peer gets from us: it wants our pieces and we do not choke it."""
    return bool(p["peer_interested"] and not p["choking"])


class TransmissionRpc:
    """Transmission's methods over a ``WebNode``; ``handle`` answers one decoded request."""

    def __init__(self, web: WebNode) -> None:
        self.web = web
        self._methods: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
            "session-get": self.session_get, "session-set": self.session_set,
            "session-stats": self.session_stats, "torrent-get": self.torrent_get,
            "torrent-add": self.torrent_add, "torrent-start": self.torrent_start,
            "torrent-start-now": self.torrent_start, "torrent-stop": self.torrent_stop,
            "torrent-verify": self.torrent_verify, "torrent-remove": self.torrent_remove,
        }

    def handle(self, request: Any) -> Dict[str, Any]:
        """The answer to one request; a failure is told in "result", never raised."""
        if not isinstance(request, dict):
            return {"result": "request is not a JSON object", "arguments": {}}
        answer: Dict[str, Any] = {"arguments": {}}
        if "tag" in request:
            answer["tag"] = request["tag"]
        method = self._methods.get(request.get("method"))  # type: ignore[arg-type]
        arguments = request.get("arguments", {})
        if method is None:
            answer["result"] = "method name not recognized"
        elif not isinstance(arguments, dict):
            answer["result"] = "arguments is not a JSON object"
        else:
            try:
                answer["arguments"] = method(arguments)
                answer["result"] = "success"
            except (RpcError, WebNodeError, NodeError) as exc:
                answer["result"] = str(exc)
        return answer

    # -- session -----------------------------------------------------------------------------

    def session_get(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        node = self.web.node
        return {
            "download-dir": self.web.folder, "version": f"3.00 (STA {__version__})",
            "rpc-version": RPC_VERSION, "rpc-version-minimum": RPC_VERSION_MINIMUM,
            "peer-port": node.listen_port,
            "encryption": {"require": "required", "off": "tolerated"}.get(
                node.session_options.get("encryption", "prefer"), "preferred"),
            "config-dir": node.state_dir, "speed-limit-down-enabled": False,
            "speed-limit-up-enabled": False, "alt-speed-enabled": False,
            "seedRatioLimited": False, "seedRatioLimit": DEFAULT_SEED_RATIO,
            "pex-enabled": False, "dht-enabled": False, "lpd-enabled": False,
            "utp-enabled": False, "port-forwarding-enabled": False,
            "peer-limit-global": DEFAULT_PEER_LIMIT * 4,
            "peer-limit-per-torrent": DEFAULT_PEER_LIMIT, "start-added-torrents": True,
            "incomplete-dir-enabled": False, "download-queue-enabled": False,
            "seed-queue-enabled": False, "units": {
                "speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"], "speed-bytes": 1000,
                "size-units": ["kB", "MB", "GB", "TB"], "size-bytes": 1000,
                "memory-units": ["KiB", "MiB", "GiB", "TiB"], "memory-bytes": 1024},
        }

    def session_set(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        """Only download-dir is STA's to change; other settings are accepted and ignored."""
        folder = arguments.get("download-dir")
        if folder is not None:
            if not isinstance(folder, str):
                raise RpcError("download-dir is not a string")
            self.web.set_folder(folder)
        return {}

    def session_stats(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        stats = self.web.node.stats()
        rows = self.web.rows()
        active = sum(1 for r in rows if r["state"] in ("downloading", "seeding", "metadata",
                                                        "checking"))
        seconds = int(stats["uptime"])
        totals = {"uploadedBytes": stats["uploaded"], "downloadedBytes": stats["downloaded"],
                  "filesAdded": len(rows), "sessionCount": 1, "secondsActive": seconds}
        return {"activeTorrentCount": active, "pausedTorrentCount": len(rows) - active,
                "torrentCount": len(rows), "downloadSpeed": int(stats["down_rate"]),
                "uploadSpeed": int(stats["up_rate"]), "cumulative-stats": dict(totals),
                "current-stats": dict(totals)}

    # -- torrents ----------------------------------------------------------------------------

    def torrent_get(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        fields = arguments.get("fields")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise RpcError("no fields specified")
        rows = select_ids(arguments.get("ids"), self.web.rows())
        wanted = set(fields)
        counts: Dict[str, List[int]] = {}
        if wanted & PEER_COUNT_FIELDS:
            for p in self.web.node.peer_rows():
                count = counts.setdefault(p["info_hash"], [0, 0])
                count[0] += _sending(p)
                count[1] += _getting(p)
        torrents = []
        for row in rows:
            values = _status_fields(row, self._folder(row) if "downloadDir" in wanted else "")
            sending, getting = counts.get(row["info_hash"], [0, 0])
            values.update(peersSendingToUs=sending, peersGettingFromUs=getting)
            if wanted & DETAIL_FIELDS:
                try:
                    values.update(_detail_fields(self.web.detail(row["info_hash"])))
                except WebNodeError:  # removed meanwhile
                    continue
            torrents.append({f: values[f] for f in fields if f in values})
        answer: Dict[str, Any] = {"torrents": torrents}
        if arguments.get("ids") == "recently-active":
            answer["removed"] = []
        return answer

    def _folder(self, row: Dict[str, Any]) -> str:
        try:
            return os.path.abspath(self.web.node.files(bytes.fromhex(row["info_hash"]))[1])
        except NodeError:
            return self.web.folder

    def torrent_add(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        folder = arguments.get("download-dir")
        if folder is not None and not isinstance(folder, str):
            raise RpcError("download-dir is not a string")
        filename, meta = arguments.get("filename"), arguments.get("metainfo")
        if isinstance(meta, str):
            row = self.web.add_metainfo(decode_base64(meta), folder)
        elif isinstance(filename, str) and filename.startswith("magnet:"):
            row = self.web.add_magnet(filename, folder)
        elif isinstance(filename, str) and filename.lower().startswith(("http://", "https://")):
            row = self.web.add_url(filename, folder)
        elif isinstance(filename, str) and filename:
            row = self.web.add_file(filename, folder)
        else:
            raise RpcError("torrent-add needs filename or metainfo")
        added = {"id": row["id"], "name": row["name"], "hashString": row["info_hash"]}
        return {"torrent-duplicate" if row["duplicate"] else "torrent-added": added}

    def _each(self, arguments: Dict[str, Any], act: Callable[[bytes], Any]) -> Dict[str, Any]:
        for row in select_ids(arguments.get("ids"), self.web.rows()):
            try:
                act(bytes.fromhex(row["info_hash"]))
            except NodeError as exc:
                log.info("%s: %s", row["name"], exc)
        return {}

    def torrent_start(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        return self._each(arguments, self.web.node.resume)

    def torrent_stop(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        return self._each(arguments, self.web.node.pause)

    def torrent_verify(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        return self._each(arguments, self.web.node.verify)

    def torrent_remove(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        delete = bool(arguments.get("delete-local-data", False))
        return self._each(arguments, lambda key: self.web.node.remove(key, delete_files=delete))
