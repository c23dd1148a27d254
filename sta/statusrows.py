"""Status rows for front ends: one connection as a row of the `peers` table, and where a
torrent's peers come from (each tracker's last answer, the addresses known and dialled in vain),
which a front end uses to explain a torrent that has none."""

from __future__ import annotations

from typing import Any, Dict, Optional

# Addresses listed in the status as "dialled and did not answer" (for the no-peers hint).
STATUS_FAILED_ADDRESSES = 8


def discovery_status(announcer: Optional[Any], swarm: Any) -> Dict[str, Any]:
    """Where peers come from, for a front end that explains a torrent with none: each tracker's
    last answer, how many addresses are known, and which were dialled in vain."""
    trackers = []
    if announcer is not None:
        for status in announcer.status():
            trackers.append({"url": status.url, "error": status.last_error,
                             "peers": status.peers})
    failed = [f"{h}:{p}" for (h, p), r in swarm.known.items()
              if r.failures and not r.connected and not r.banned]
    return {"trackers": trackers, "known": len(swarm.known),
            "failed": failed[:STATUS_FAILED_ADDRESSES]}


def peer_row(conn: Any, progress: float, snubbed: bool) -> Dict[str, Any]:
    """A connection as a status row. Flags as uTorrent and libtorrent show them: D/d downloading
    or want to, U/u uploading or they want to, E encrypted, I incoming, S snubbed."""
    flags = ""
    if conn.am_interested:
        flags += "d" if conn.peer_choking else "D"
    if conn.peer_interested:
        flags += "u" if conn.am_choking else "U"
    if conn.encrypted:
        flags += "E"
    if conn.incoming:
        flags += "I"
    if snubbed:
        flags += "S"
    host, port = conn.address
    return {
        "address": f"{host}:{port}", "client": conn.client_name, "flags": flags,
        "choked": conn.peer_choking, "choking": conn.am_choking,
        "interested": conn.am_interested, "peer_interested": conn.peer_interested,
        "encrypted": conn.encrypted, "incoming": conn.incoming,
        "down_rate": conn.down_rate, "up_rate": conn.up_rate,
        "downloaded": conn.downloaded, "uploaded": conn.uploaded, "progress": progress,
    }
