"""A torrent known only by its magnet link, until its info dictionary arrives.

It joins the swarm like any torrent (same listen port, same connections, the trackers of every
`tr=` at once, the peers of `x.pe=` and --peer), but instead of pieces it fetches the info
dictionary: from peers over ut_metadata (BEP 9, metadata.MetadataFetcher decides who is asked
what) and from every `xs=` URL in a thread; the first verified answer wins. It then saves the
.torrent beside the resume state, builds the real Torrent, and hands it the same connections and
announcer, so the download starts with the peers that were already talking to us.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import metadata, metadata_source, metainfo, ut_metadata, wire
from .announcer import Announcer, Transferred, private_urls
from .magnet import Magnet
from .peerexchange import PeerExchange
from .peerproto import UT_METADATA, UT_PEX
from .resume import STATE_DIR_NAME
from .swarm import Swarm
from .statusrows import discovery_status
from .torrent import PAUSED, Torrent
from .torrenthost import TorrentHost

log = logging.getLogger(__name__)

METADATA = "metadata"   # the state shown while the info dictionary is fetched
# What a peer's `have all` (BEP 6) is remembered as until the piece count is known.
HAVE_ALL = b"all"


class MagnetTorrent:
    """Stands in for a Torrent in the node until the metadata is verified. It is the
    ``peer.PeerOwner`` of the connections it opens, and answers the same life-cycle and status
    calls as a Torrent (``session.ManagedTorrent``)."""

    def __init__(self, host: TorrentHost, magnet: Magnet, folder: str,
                 build: Optional[Callable[[Any], "Torrent"]]) -> None:
        """``build`` makes the real torrent from the fetched Metainfo; None only fetches (the
        verified dictionary is then left in ``fetched``)."""
        self.host = host
        self.info_hash = magnet.info_hash
        self.name = magnet.name or magnet.info_hash.hex()
        self.magnet = magnet
        self.folder = folder
        self.state = METADATA
        self.error: Optional[str] = None
        self.uploaded = 0
        self.downloaded = 0
        self.started_at = time.monotonic()
        self.completed_at: Optional[float] = None
        self.contributions: Dict[Tuple[str, int], int] = {}
        self.done = asyncio.Event()
        self.successor: Optional["Torrent"] = None
        self.fetched: Optional[bytes] = None
        self.swarm = Swarm(self.name, host.peer_id, partial(host.dial, self), host.is_self)
        self.exchange = PeerExchange(False, self.add_peers, host.note_utp)
        self.fetcher = metadata.MetadataFetcher(magnet.info_hash)
        self.source_errors: Dict[str, str] = {}
        self._build = build
        self._announcer: Optional[Announcer] = None
        self._finishing = False
        # Raw bitfields and haves of peers, replayed once the piece count is known.
        self._raw_bits: Dict[Any, bytes] = {}
        self._haves: Dict[Any, List[int]] = {}

    complete = False
    private = False   # not known before the metadata arrives; a magnet uses every source

    @property
    def peers(self) -> Any:
        return self.swarm.peers

    @property
    def left(self) -> int:
        """For announces: the magnet's `xl` if it says, else not zero, so that trackers do not
        count a node that has nothing yet as a seed."""
        return self.magnet.length or 1

    def transferred(self) -> Transferred:
        return Transferred(0, 0, self.left)

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self, recheck: bool = False) -> None:
        for source in private_urls(self.magnet.sources, self.host.encryption, "source",
                                   self.name):
            self.host.spawn(self._fetch_source(source))
        peers = []
        for text in self.magnet.peers:
            host, _, port = text.rpartition(":")
            if port.isdigit():
                peers.append((host.strip("[]"), int(port)))
        self.add_peers(peers, "magnet")

    def start_announcing(self) -> None:
        if self.magnet.trackers and self._announcer is None:
            # A magnet has nothing but its trackers and peers: ask every tracker at once.
            self._announcer = Announcer(self.host, self.info_hash, self.name,
                                        [[url] for url in self.magnet.trackers],
                                        counters=self.transferred, on_peers=self.add_peers,
                                        all_at_once=True)
            self._announcer.start()

    def add_peers(self, addresses: List[Tuple[str, int]], source: str = "tracker") -> None:
        self.swarm.add_peers(addresses, source)
        self._connect_more(time.monotonic())

    def _connect_more(self, now: float) -> None:
        if self.state == METADATA:
            self.swarm.connect_more(now)

    def dial_failed(self, address: Tuple[str, int]) -> None:
        if self.successor is not None:
            self.successor.dial_failed(address)
        else:
            self.swarm.dial_failed(address, time.monotonic())

    def forget_self(self, address: Tuple[str, int]) -> None:
        self.swarm.forget_self(address)

    def storage_failed(self, exc: Exception) -> None:
        self.state = "error"
        self.error = str(exc)
        self.done.set()

    def tick(self, now: float) -> None:
        for conn in list(self.swarm.peers):
            self._request_metadata(conn, now)
        self._drop_bad_peers()
        self._connect_more(now)

    # -- PeerOwner ---------------------------------------------------------------------------------

    def peer_joined(self, conn: Any) -> bool:
        if self.successor is not None:
            # Dialled before the metadata arrived, handshaken after: the torrent takes it.
            conn.hand_over(self.successor)
            return self.successor.peer_joined(conn)
        reason = self.swarm.admit(conn)
        if reason is not None:
            conn.close(reason)
            return False
        if conn.fast:
            conn.send_have_none()  # BEP 6: one of have all, have none or a bitfield comes first
        return True

    def extension_fields(self) -> Dict[str, Any]:
        return {}

    def peer_message(self, conn: Any, event: Any) -> None:
        kind = type(event)
        if kind is wire.BitfieldMessage:
            self._raw_bits[conn] = bytes(event.bits)
        elif kind is wire.HaveAll:
            self._raw_bits[conn] = HAVE_ALL
        elif kind is wire.Request:
            conn.send_reject(event.index, event.begin, event.length)  # BEP 6: we have nothing
        elif kind is wire.Have:
            haves = self._haves.setdefault(conn, [])
            if len(haves) < ut_metadata.MAX_METADATA_PIECES * 64:  # bounded: a piece count's worth
                haves.append(event.index)
        elif kind is wire.ExtendedHandshake:
            if UT_METADATA in conn.extensions.ids:
                self.fetcher.peer_offers(conn, conn.extensions.metadata_size)
        elif kind is wire.Extended:
            self._on_extended(conn, event)
        # Without the fast extension requests go unanswered (BEP 3 allows it); blocks are never
        # asked for; have none says what we assume anyway.

    def peer_batch_done(self, conn: Any) -> None:
        self._request_metadata(conn, time.monotonic())

    def peer_writable(self, conn: Any) -> None:
        pass  # nothing is ever queued for upload before the metadata arrives

    def peer_left(self, conn: Any) -> None:
        self.swarm.release(conn, time.monotonic())
        self._raw_bits.pop(conn, None)
        self._haves.pop(conn, None)
        self.exchange.peer_left(conn)
        self.fetcher.peer_gone(conn)
        self._check_done()

    def _on_extended(self, conn: Any, event: Any) -> None:
        if conn.extension_name(event) == UT_PEX:
            # Peers from peers help find the metadata too (whether the torrent is private is
            # not known yet; libtorrent takes them as well).
            self.exchange.received(conn, event.payload, time.monotonic())
            return
        msg = conn.ut_metadata_message(event)
        if msg is None:
            return
        now = time.monotonic()
        if msg.msg_type == ut_metadata.METADATA_DATA:
            self.fetcher.on_data(conn, msg.piece, msg.total_size, msg.data, now)
        elif msg.msg_type == ut_metadata.METADATA_REJECT:
            self.fetcher.on_reject(conn, msg.piece, now)
        else:
            answer = ut_metadata.refuse(msg)
            if answer is not None:
                conn.send_extended(UT_METADATA, answer)
        self._drop_bad_peers()
        self._check_done()

    # -- metadata ----------------------------------------------------------------------------

    def _request_metadata(self, conn: Any, now: float) -> None:
        if UT_METADATA not in conn.extensions.ids or conn.closed or self._finishing:
            return
        for piece in self.fetcher.next_requests(conn, now):
            conn.send_extended(UT_METADATA, ut_metadata.metadata_request(piece))

    def _drop_bad_peers(self) -> None:
        for conn, reason in self.fetcher.bad_peers().items():
            log.warning("%s: dropping %r: %s", self.name, conn, reason)
            self.swarm.ban(conn.address, conn.peer_id, reason)

    async def _fetch_source(self, url: str) -> None:
        try:
            meta = await self.host.loop.run_in_executor(
                None, partial(metadata_source.fetch_torrent_from_source, url, self.info_hash))
        except ut_metadata.MetadataError as exc:
            self.source_errors[url] = str(exc)
            log.warning("%s: %s", self.name, exc)
            return
        raw = meta.info.raw
        if not self.magnet.trackers:
            # The magnet names no tracker: the hosted .torrent's trackers find the peers.
            self.magnet = dataclasses.replace(
                self.magnet, trackers=tuple(url for tier in meta.trackers for url in tier))
        log.info("%s: metadata from %s", self.name, url)
        self._finish(raw)

    def _check_done(self) -> None:
        raw = self.fetcher.done
        if raw is not None:
            self._finish(raw)

    def _finish(self, raw: bytes) -> None:
        if self._finishing:
            return
        self._finishing = True
        if self._build is None:
            self.fetched = raw
            self.state = "fetched"
            self.done.set()
            return
        self.host.spawn(self._hand_over(raw))

    async def _hand_over(self, raw: bytes) -> None:
        """Save the .torrent, build the real torrent, move connections and announcer to it."""
        try:
            meta = await self.host.loop.run_in_executor(None, partial(
                save_fetched, raw, self.magnet, self.folder))
            assert self._build is not None
            torrent = self._build(meta)
            await torrent.start()
        except (ut_metadata.MetadataError, metainfo.MetainfoError, OSError) as exc:
            self.storage_failed(exc)
            return
        except Exception as exc:  # storage errors and the like stop this torrent only
            self.storage_failed(exc)
            return
        log.info("%s: metadata verified (%d bytes); downloading", torrent.name, len(raw))
        self.successor = torrent
        self.host.replace(self, torrent)
        torrent.swarm.take_over(self.swarm)
        for conn in self.swarm.hand_off():
            raw = self._raw_bits.pop(conn, None)
            torrent.adopt(conn, None if raw is HAVE_ALL else raw, self._haves.pop(conn, []),
                          have_all=raw is HAVE_ALL)
        announcer, self._announcer = self._announcer, None
        torrent.start_announcing(announcer)
        self.state = "handed over"
        self.done.set()

    # -- life cycle and status ---------------------------------------------------------------

    def sources_tried(self) -> str:
        """For the error when no metadata came: every source and what it said."""
        parts = []
        if self._announcer is not None:
            for status in self._announcer.status():
                parts.append(f"tracker {status.url}"
                             + (f" ({status.last_error})" if status.last_error else
                                f" ({status.peers} peers)"))
        for url in self.magnet.sources:
            # The fetch error names the source already ("source URL: connection refused").
            parts.append(self.source_errors.get(url, f"source {url}"))
        addresses = [f"{h}:{p}" for h, p in self.swarm.known]
        if addresses:
            parts.append("peers " + ", ".join(addresses[:8])
                         + (f" and {len(addresses) - 8} more" if len(addresses) > 8 else ""))
        if not parts:
            return ("nothing: the magnet names no tracker (tr=), source (xs=) or peer (x.pe=); "
                    "give one with --peer HOST:PORT")
        parts.append(self.fetcher.summary())
        return "; ".join(parts)

    async def shutdown(self) -> None:
        self.stop()
        if self._announcer is not None:
            await self._announcer.stop()

    def stop(self) -> None:
        if self.state == METADATA:
            self.state = "stopped"
        self.swarm.close_all("torrent stopped")
        self.done.set()

    async def pause(self) -> None:
        """Stop fetching: close every connection and leave the trackers."""
        if self.state != METADATA:
            return
        self.state = PAUSED
        self.swarm.close_all("torrent paused")
        announcer, self._announcer = self._announcer, None
        if announcer is not None:
            await announcer.stop()

    def resume(self) -> None:
        if self.state != PAUSED:
            return
        self.state = METADATA
        self.swarm.retry_all_now()
        self.start_announcing()

    def forget_resume_state(self) -> None:
        pass

    def delete_files(self) -> List[str]:
        return []

    def file_paths(self) -> List[str]:
        return []  # not known before the metadata arrives

    def status(self) -> Dict[str, Any]:
        return {
            "name": self.name, "info_hash": self.info_hash.hex(), "state": self.state,
            "size": self.magnet.length or 0, "have": 0, "progress": self.fetcher.progress(),
            "down_rate": 0.0, "up_rate": 0.0, "downloaded": 0, "uploaded": 0,
            "peers": len(self.swarm.peers), "seeds": 0, "eta": None, "error": self.error,
            **discovery_status(self._announcer, self.swarm),
        }

    def peer_statuses(self) -> List[Dict[str, Any]]:
        return []


def save_fetched(raw: bytes, magnet: Magnet, folder: str) -> Any:
    """Keep the fetched metadata as a .torrent beside the resume state and parse it."""
    path = _saved_path(magnet, folder)
    return metainfo.parse(metadata_source.save_torrent(raw, magnet, path))


def _saved_path(magnet: Magnet, folder: str) -> str:
    return metadata_source.saved_torrent_path(os.path.join(folder, STATE_DIR_NAME),
                                              magnet.info_hash)


def saved_metainfo(magnet: Magnet, folder: str) -> Optional[Any]:
    """The .torrent fetched by an earlier run into ``folder``, if there is a usable one."""
    path = _saved_path(magnet, folder)
    if not os.path.exists(path):
        return None
    try:
        meta = metainfo.load(path)
    except (metainfo.MetainfoError, OSError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    return meta if meta.info_hash == magnet.info_hash else None
