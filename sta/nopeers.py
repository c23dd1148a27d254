"""Why a torrent has no peer yet, in one plain line, and when to say it.

A download whose tracker cannot be reached, a magnet nobody serves, a torrent nobody seeds: each
shows 0% and nothing else. ``why_no_peers`` turns a torrent's status dict into the sentence a
person needs (what is wrong, what to try); ``NoPeerNotices`` decides when to say it: once a
torrent has been without a peer for NO_PEER_NOTICE_AFTER seconds, then again every
NO_PEER_NOTICE_EVERY seconds while that lasts. Both are pure: the caller gives the clock.

The status keys read (missing ones only make the sentence shorter): "state", "peers" (connected
count), "trackers" (list of {"url", "error" (str or None), "peers" (int, or None before the first
answer)}), "known" (peer addresses known) and "failed" ("host:port" dialled without an answer).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

__all__ = ["why_no_peers", "NoPeerNotices", "tracker_address", "NO_PEER_NOTICE_AFTER",
           "NO_PEER_NOTICE_EVERY", "WAITING_STATES"]

# Seconds without a peer before saying why. On a LAN a tracker answers and a first peer
# connects within a second or two; 10 s is well past that, and short enough that nobody has
# given up on a silent 0% yet (aria2 starts warning about an unreachable tracker after its
# 60 s timeout, which is too late for a person at a lab machine).
NO_PEER_NOTICE_AFTER = 10.0
# Seconds between repeats while there is still no peer: rarely enough that the notices do not
# bury the progress line, often enough that whoever comes back to the terminal sees the reason.
NO_PEER_NOTICE_EVERY = 120.0
# States in which a torrent needs peers to get anywhere: downloading data, or fetching a magnet
# link's metadata (magnet_torrent.METADATA). A seed without peers is simply waiting.
WAITING_STATES = ("downloading", "metadata")
# Trackers and addresses named in one notice; the rest are counted.
SHOWN_TRACKERS = 3
SHOWN_ADDRESSES = 3

_PEER_ADVICE = "give a peer with --peer HOST:PORT"


def why_no_peers(status: Mapping[str, Any], waited: float) -> Optional[str]:
    """The notice for a torrent without peers for ``waited`` seconds, or None when there is
    nothing to say (it has peers, it is not waiting for any, or it has not waited long)."""
    if status.get("peers") or status.get("state") not in WAITING_STATES \
            or waited < NO_PEER_NOTICE_AFTER:
        return None
    clauses, advice = _explain(status)
    head = f"no peer after {int(waited)} s"
    return f"{head}: {'; '.join(clauses)}. {advice}." if clauses else f"{head}. {advice}."


def _explain(status: Mapping[str, Any]) -> Tuple[List[str], str]:
    """(what is wrong, as clauses; what to try, as one sentence)."""
    trackers: Optional[Sequence[Mapping[str, Any]]] = status.get("trackers")
    failed: Sequence[str] = status.get("failed") or ()
    known = status.get("known")
    clauses: List[str] = []
    if failed:
        clauses.append("no peer answered on " + _some(list(failed), SHOWN_ADDRESSES))
    elif known:
        clauses.append(f"{known} peer address{'es' * (known != 1)} known, none connected yet")
    kinds = [_tracker_kind(t) for t in trackers or ()]
    if trackers is not None and not trackers and not known:
        clauses.append("the torrent names no tracker")
    clauses += [_tracker_clause(t, kind) for t, kind in
                list(zip(trackers or (), kinds))[:SHOWN_TRACKERS]]
    if trackers and len(trackers) > SHOWN_TRACKERS:
        clauses.append(f"and {len(trackers) - SHOWN_TRACKERS} more trackers")

    if failed:
        advice = ("Check that the seed is running and that no firewall blocks its port, or "
                  + _PEER_ADVICE)
    elif kinds and all(kind in ("unreachable", "refused", "http", "waiting") for kind in kinds):
        advice = "Check the tracker address and that the tracker is running, or " + _PEER_ADVICE
    elif "empty" in kinds and not known:
        advice = "Start a seed of it ('sta seed'), or " + _PEER_ADVICE
    elif trackers is None and known is None:
        advice = "Check the tracker address, or " + _PEER_ADVICE
    else:
        advice = _PEER_ADVICE[0].upper() + _PEER_ADVICE[1:]
    return clauses, advice


def _tracker_kind(tracker: Mapping[str, Any]) -> str:
    error = tracker.get("error")
    if error:
        if error.startswith("failure reason"):
            return "refused"
        return "http" if error.startswith("HTTP ") else "unreachable"
    peers = tracker.get("peers")
    if peers is None:
        return "waiting"
    return "empty" if peers == 0 else "answered"


def _tracker_clause(tracker: Mapping[str, Any], kind: str) -> str:
    where = f"tracker {tracker_address(str(tracker.get('url', '')))}"
    error = str(tracker.get("error") or "")
    if kind == "refused":
        return f"{where} refused it: {error.partition(':')[2].strip() or error}"
    if kind == "http":
        return f"{where} answered {error} (is that the tracker's address?)"
    if kind == "unreachable":
        return f"{where} unreachable: {error}"
    if kind == "waiting":
        return f"{where} has not answered yet"
    if kind == "empty":
        return f"{where} knows no other peer of this torrent"
    peers = tracker.get("peers")
    return f"{where} gave {peers} peer{'s' * (peers != 1)}"


def tracker_address(url: str) -> str:
    """"http://user:key@10.0.0.1:4000/announce?passkey=x" -> "10.0.0.1:4000": enough to know
    which tracker, and no passkey on the screen."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return url.split("?", 1)[0]
    if not host:
        return url.split("?", 1)[0]
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def _some(items: List[str], shown: int) -> str:
    text = ", ".join(items[:shown])
    return text + (f" and {len(items) - shown} more" if len(items) > shown else "")


class NoPeerNotices:
    """When each torrent's no-peer notice is due; keyed by whatever names a torrent (its info
    hash), so a magnet link's stand-in and the torrent it becomes share one clock."""

    def __init__(self) -> None:
        self._since: Dict[Any, float] = {}   # without a peer since
        self._said: Dict[Any, float] = {}    # last notice

    def check(self, key: Any, status: Mapping[str, Any], now: float) -> Optional[str]:
        """The notice to show now for this torrent, or None."""
        if status.get("peers") or status.get("state") not in WAITING_STATES:
            self._since.pop(key, None)
            self._said.pop(key, None)
            return None
        since = self._since.setdefault(key, now)
        last = self._said.get(key)
        if last is not None and now - last < NO_PEER_NOTICE_EVERY:
            return None
        text = why_no_peers(status, now - since)
        if text is not None:
            self._said[key] = now
        return text
