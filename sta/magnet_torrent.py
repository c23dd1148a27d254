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
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from . import metadata, metadata_source, metainfo, wire
from .announcer import Announcer, private_urls
from .magnet import Magnet
from .resume import STATE_DIR_NAME
from .peer import UT_METADATA, PeerConnection
from .swarm import Swarm

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session
    from .torrent import Torrent

log = logging.getLogger(__name__)

METADATA = "metadata"   # the state shown while the info dictionary is fetched


class MagnetTorrent(Swarm):
    """Stands in for a Torrent in the session until the metadata is verified."""

    def __init__(self, session: "Session", magnet: Magnet, folder: str,
                 build: Optional[Callable[[Any], "Torrent"]]) -> None:
        """``build`` makes the real torrent from the fetched Metainfo; None only fetches (the
        verified dictionary is then left in ``fetched``)."""
        super().__init__(session, magnet.info_hash, magnet.name or magnet.info_hash.hex())
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
        self.picker = None
        self.read_cache = None
        self.fetcher = metadata.MetadataFetcher(magnet.info_hash)
        self.source_errors: Dict[str, str] = {}
        self._build = build
        self._announcer: Optional[Announcer] = None
        self._finishing = False
        # Raw bitfields and haves of peers, replayed once the piece count is known.
        self._raw_bits: Dict[PeerConnection, bytes] = {}
        self._haves: Dict[PeerConnection, List[int]] = {}

    # -- the Torrent interface the session and connections use -------------------------------

    complete = False

    @property
    def left(self) -> int:
        """For announces: the magnet's `xl` if it says, else not zero, so that trackers do not
        count a node that has nothing yet as a seed."""
        return self.magnet.length or 1

    async def start(self, recheck: bool = False) -> None:
        for source in private_urls(self.magnet.sources, self.session.encryption, "source",
                                   self.name):
            self.session.spawn(self._fetch_source(source))
        peers = []
        for text in self.magnet.peers:
            host, _, port = text.rpartition(":")
            if port.isdigit():
                peers.append((host.strip("[]"), int(port)))
        self.add_peers(peers, "magnet")

    def start_announcing(self) -> None:
        if self.magnet.trackers and self._announcer is None:
            # A magnet has nothing but its trackers and peers: ask every tracker at once.
            self._announcer = Announcer(self, [[url] for url in self.magnet.trackers],
                                        all_at_once=True,
                                        ssl_context=self.session.tracker_ssl_context)
            self._announcer.start()

    def have_bits(self) -> None:
        return None

    def wants_connections(self) -> bool:
        return self.state == METADATA

    def accept_peer(self, conn: PeerConnection) -> bool:
        if self.successor is not None:
            # Dialled before the metadata arrived, handshaken after: the torrent takes it.
            conn.torrent = self.successor
            return self.successor.accept_peer(conn)
        return self.admit(conn)

    def peer_closed(self, conn: PeerConnection) -> None:
        if not self.release(conn):
            return
        self._raw_bits.pop(conn, None)
        self._haves.pop(conn, None)
        self.fetcher.peer_gone(conn)
        self._check_done()

    def peer_bitfield(self, conn: PeerConnection, raw: bytes) -> None:
        self._raw_bits[conn] = bytes(raw)

    def peer_have(self, conn: PeerConnection, index: int) -> None:
        haves = self._haves.setdefault(conn, [])
        if len(haves) < wire.MAX_METADATA_PIECES * 64:  # bounded: a piece count's worth
            haves.append(index)

    def peer_choked_us(self, conn: PeerConnection) -> None:
        pass

    def peer_unchoked_us(self, conn: PeerConnection) -> None:
        pass

    def peer_interest_changed(self, conn: PeerConnection) -> None:
        pass

    def peer_request(self, conn: PeerConnection, index: int, begin: int, length: int) -> None:
        pass  # we have nothing yet; BEP 3 lets us ignore it

    def peer_block(self, conn: PeerConnection, index: int, begin: int, block: bytes) -> None:
        pass  # never requested

    def peer_extended_handshake(self, conn: PeerConnection) -> None:
        if "ut_metadata" in conn.extensions:
            self.fetcher.peer_offers(conn, conn.ext_info.get(b"metadata_size"))
        self._request_metadata(conn, time.monotonic())

    def peer_extended(self, conn: PeerConnection, ext_id: int, payload: bytes) -> None:
        msg = conn.ut_metadata_message(ext_id, payload)
        if msg is None:
            return
        now = time.monotonic()
        if msg.msg_type == wire.METADATA_DATA:
            self.fetcher.on_data(conn, msg.piece, msg.total_size, msg.data, now)
        elif msg.msg_type == wire.METADATA_REJECT:
            self.fetcher.on_reject(conn, msg.piece, now)
        else:
            answer = metadata.refuse(msg)
            peer_id = conn.extensions.get(UT_METADATA)
            if answer is not None and peer_id:
                conn.send(wire.extended(peer_id, answer))
        self._drop_bad_peers()
        self._check_done()

    def after_receive(self, conn: PeerConnection) -> None:
        self._request_metadata(conn, time.monotonic())

    def storage_failed(self, exc: Exception) -> None:
        self.state = "error"
        self.error = str(exc)
        self.done.set()

    def tick(self, now: float, elapsed: float) -> None:
        for conn in list(self.peers):
            conn.update_rates(elapsed)
            self._request_metadata(conn, now)
        self._drop_bad_peers()
        self.connect_more(now)

    # -- metadata ----------------------------------------------------------------------------

    def _request_metadata(self, conn: PeerConnection, now: float) -> None:
        peer_id = conn.extensions.get(UT_METADATA)
        if not peer_id or conn.closed or self._finishing:
            return
        for piece in self.fetcher.next_requests(conn, now):
            conn.send(wire.extended(peer_id, wire.metadata_request(piece)))

    def _drop_bad_peers(self) -> None:
        for conn, reason in self.fetcher.bad_peers().items():
            log.warning("%s: dropping %r: %s", self.name, conn, reason)
            if conn.address is not None:
                self.ban(conn.address, conn.peer_id, reason)
            else:
                conn.close(reason)

    async def _fetch_source(self, url: str) -> None:
        try:
            meta = await self.session.loop.run_in_executor(
                None, partial(metadata_source.fetch_torrent_from_source, url, self.info_hash))
        except metadata.MetadataError as exc:
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
        self.session.spawn(self._hand_over(raw))

    async def _hand_over(self, raw: bytes) -> None:
        """Save the .torrent, build the real torrent, move connections and announcer to it."""
        try:
            meta = await self.session.loop.run_in_executor(None, partial(
                save_fetched, raw, self.magnet, self.folder))
            assert self._build is not None
            torrent = self._build(meta)
            await torrent.start()
        except (metadata.MetadataError, metainfo.MetainfoError, OSError) as exc:
            self.storage_failed(exc)
            return
        except Exception as exc:  # storage errors and the like stop this torrent only
            self.storage_failed(exc)
            return
        log.info("%s: metadata verified (%d bytes); downloading", torrent.name, len(raw))
        self.successor = torrent
        self.session.replace(self, torrent)
        torrent.known.update(self.known)
        torrent.banned_ids |= self.banned_ids
        for conn in list(self.peers):
            bits = self._raw_bits.pop(conn, None)
            haves = self._haves.pop(conn, [])
            conn.torrent = torrent
            torrent.adopt(conn, bits, haves)
        self.peers.clear()
        if self._announcer is not None:
            self._announcer.torrent = torrent
            torrent._announcer = self._announcer
            self._announcer = None
        else:
            torrent.start_announcing()
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
        addresses = [f"{h}:{p}" for h, p in self.known]
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
        for conn in list(self.peers):
            conn.close("torrent stopped")
        self.done.set()

    async def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def forget_resume_state(self) -> None:
        pass

    def delete_files(self) -> List[str]:
        return []

    def status(self) -> Dict[str, Any]:
        return {
            "name": self.name, "info_hash": self.info_hash.hex(), "state": self.state,
            "size": self.magnet.length or 0, "have": 0, "progress": self.fetcher.progress(),
            "down_rate": 0.0, "up_rate": 0.0, "downloaded": 0, "uploaded": 0,
            "peers": len(self.peers), "seeds": 0, "eta": None, "error": self.error,
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
