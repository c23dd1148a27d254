"""One torrent inside a node: its life cycle and status, and the peer messages routed to the parts
that act on them.

The work is split by idea, as the original client split it: the swarm (swarm.py) knows the peers
and dials them; the downloader (downloader.py) asks for blocks and verifies pieces; the uploader
(uploader.py) serves requests and chokes; the super-seeder (superseed.py) and the metadata
server (metadata.py) answer what they own. The torrent owns what they share, each peer's
bitfield, and its own state (checking, downloading, seeding, paused, stopped, error). It reaches
the node only through ``torrenthost.TorrentHost`` and its connections only through their public
methods (peer.py), and is itself the ``peer.PeerOwner`` of its connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import ut_metadata, wire
from .announcer import Announcer, Transferred
from .bitfield import Bitfield
from .downloader import Downloader
from .peerexchange import PeerExchange
from .peerproto import UT_METADATA, UT_PEX, allowed_fast_set
from .statusrows import discovery_status, peer_row
from .picker import PiecePicker
from .saver import StateSaver
from .smartban import MAX_HASH_FAILURES
from .superseed import SuperSeeder
from .swarm import Swarm
from .torrenthost import TorrentHost
from .uploader import Uploader

log = logging.getLogger(__name__)

# At exit, wait this long for pieces still being hashed and written, so they are recorded.
SHUTDOWN_HASH_WAIT = 10.0
# Save the resume state at most this often while pieces keep arriving.
RESUME_SAVE_INTERVAL = 5.0

# States, as shown by the user interface.
CHECKING = "checking"
DOWNLOADING = "downloading"
SEEDING = "seeding"
PAUSED = "paused"
ERROR = "error"
STOPPED = "stopped"

Address = Tuple[str, int]


class Torrent:
    def __init__(self, host: TorrentHost, metainfo: Any, storage: Any, *,
                 super_seed: bool = False) -> None:
        self.host = host
        self.metainfo = metainfo
        self.info = metainfo.info
        self.info_hash: bytes = metainfo.info_hash
        self.name: str = metainfo.info.name
        self.storage = storage
        self.state = CHECKING
        self.upload_only = bool(getattr(storage, "readonly", False))
        self.super_seed = super_seed   # BEP 16 while seeding complete data (`seed --super-seed`)
        self.super_seeder: Optional[SuperSeeder] = None
        self.error: Optional[str] = None
        self.picker: Optional[PiecePicker] = None
        self.downloader: Optional[Downloader] = None
        self.uploaded = 0
        self.started_at = time.monotonic()
        self.completed_at: Optional[float] = None
        self.done = asyncio.Event()
        self.swarm = Swarm(self.name, host.peer_id, partial(host.dial, self), host.is_self)
        self._bits: Dict[Any, Bitfield] = {}
        self.uploader = Uploader(
            piece_size=self.info.piece_size, piece_length=self.info.piece_length,
            num_pieces=self.info.num_pieces, read=storage.read_block, can_serve=self._can_serve,
            later=host.loop.call_soon, on_error=self.storage_failed, on_sent=self._sent,
            seeding=lambda: self.state == SEEDING, peer_bits=self._bits.get)
        self.exchange = PeerExchange(bool(self.info.private), self.add_peers, host.note_utp)
        self._metadata_server = ut_metadata.MetadataServer(self.info.raw)
        self._last_resume_save = 0.0
        self._saver = StateSaver(host.loop, storage.save, self.name)
        self._announcer: Optional[Announcer] = None

    # -- counters ------------------------------------------------------------------------------

    @property
    def downloaded(self) -> int:
        return self.downloader.downloaded if self.downloader is not None else 0

    @property
    def wasted(self) -> int:
        return self.downloader.wasted if self.downloader is not None else 0

    @property
    def contributions(self) -> Dict[Address, int]:
        return self.downloader.contributions if self.downloader is not None else {}

    @property
    def peers(self) -> Any:
        return self.swarm.peers

    @property
    def private(self) -> bool:
        """BEP 27: peers from the torrent's trackers only (no DHT, no peer exchange)."""
        return bool(self.info.private)

    @property
    def left(self) -> int:
        return self.picker.left_bytes if self.picker is not None else self.info.length

    @property
    def complete(self) -> bool:
        return self.picker is not None and self.picker.complete

    def _sent(self, length: int) -> None:
        self.uploaded += length

    def transferred(self) -> Transferred:
        return Transferred(self.uploaded, self.downloaded, self.left)

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self, recheck: bool = False) -> None:
        """Check what is on disk, then download or seed."""
        self.state = CHECKING
        have = await self.host.loop.run_in_executor(
            None, partial(self.storage.restore, recheck=recheck))
        info = self.info
        # The picker gets its own copy: the storage's record must see each new piece as new,
        # or the resume state is never due for a save.
        self.picker = PiecePicker(info.num_pieces, info.piece_length, info.length, have.copy())
        self.downloader = Downloader(
            self.name, info, self.storage, self.picker, run_in_pool=self._run_in_pool,
            on_verified=self._piece_verified, on_error=self.storage_failed,
            on_strike=self._strike, on_room=self._refill, backlog=self.host.disk_backlog)
        if self.picker.complete:
            self._become_seed(announce=False)
            if self.super_seed:
                self.super_seeder = SuperSeeder(info.num_pieces)
        elif self.upload_only:
            self.state = SEEDING  # a partial seed: shares what it has, never downloads
        else:
            self.state = DOWNLOADING
        log.info("%s: %d of %d pieces verified on disk", self.name, have.count, info.num_pieces)

    def _refill(self) -> None:
        """The disk caught up: every peer's pipeline may grow again."""
        if self.state == DOWNLOADING and self.downloader is not None:
            now = time.monotonic()
            for conn in list(self.swarm.peers):
                self.downloader.fill(conn, self._bits.get(conn), now)

    def _run_in_pool(self, call: Callable[[], Any]) -> "asyncio.Future[Any]":
        return self.host.loop.run_in_executor(self.host.hash_pool, call)

    def start_announcing(self, announcer: Optional[Announcer] = None) -> None:
        """Start the announce loop (or take over a magnet stand-in's running one)."""
        if announcer is not None:
            announcer.rebind(self.name, self.transferred, self.add_peers)
            self._announcer = announcer
        elif self.metainfo.trackers and self._announcer is None:
            self._announcer = Announcer(self.host, self.info_hash, self.name,
                                        self.metainfo.trackers, counters=self.transferred,
                                        on_peers=self.add_peers)
            self._announcer.start()

    def add_peers(self, addresses: List[Address], source: str = "tracker") -> None:
        self.swarm.add_peers(addresses, source)
        self._connect_more(time.monotonic())  # now, not at the next tick (not while paused)

    def _become_seed(self, announce: bool = True) -> None:
        was_downloading = self.state == DOWNLOADING
        self.state = SEEDING
        if self.completed_at is None:
            self.completed_at = time.monotonic()
        if was_downloading:
            log.info("%s: download complete", self.name)
            self._saver.request()  # off the loop: the other torrents' transfers go on meanwhile
        for conn in list(self.swarm.peers):
            conn.set_interested(False)
            if self._is_seed(conn):
                self.swarm.mark_seed(conn)
                conn.close("both sides are seeds")
        self.done.set()
        if announce and self._announcer is not None:
            self._announcer.completed()

    def storage_failed(self, exc: Exception) -> None:
        """A disk error stops this torrent; everything verified so far stays verified."""
        if self.state == ERROR:
            return
        self.state = ERROR
        self.error = str(exc)
        if self.downloader is not None:
            self.downloader.stop()
        log.error("%s: stopped: %s", self.name, exc)
        self.swarm.close_all("torrent stopped by a storage error")
        self.done.set()

    async def shutdown(self) -> None:
        """Stop, save the resume state off the loop, and tell the trackers we are leaving."""
        if self.downloader is not None:
            # Pieces being hashed and written now are recorded before the state is saved.
            await self.downloader.settle(SHUTDOWN_HASH_WAIT)
        self._halt()
        if self.picker is not None:  # a torrent stopped while checking has nothing to record
            await self._saver.flush()
        self.storage.close()
        if self._announcer is not None:
            await self._announcer.stop()

    async def pause(self) -> None:
        """Close every connection and leave the trackers; keep everything verified."""
        if self.state not in (DOWNLOADING, SEEDING):
            return
        self.state = PAUSED
        self.swarm.close_all("torrent paused")
        announcer, self._announcer = self._announcer, None
        await self._saver.flush()
        if announcer is not None:
            await announcer.stop()

    def resume(self) -> None:
        if self.state != PAUSED:
            return
        self.state = SEEDING if self.complete else DOWNLOADING
        self.swarm.retry_all_now()
        self.start_announcing()

    def stop(self) -> None:
        """Stop now, saving on the caller's thread (``shutdown`` saves off the loop)."""
        self._halt()
        if self.picker is not None:  # a torrent stopped while checking has nothing to record
            self._saver.save_now()
        self.storage.close()

    def _halt(self) -> None:
        if self.state != ERROR:
            self.state = STOPPED
        if self.downloader is not None:
            self.downloader.stop()
        self.swarm.close_all("torrent stopped")

    def delete_files(self) -> List[str]:
        """Delete exactly this torrent's files (not through links), empty folders, resume."""
        self.storage.close()
        removed = self.storage.delete_files()
        self.storage.forget_state()
        return removed

    def forget_resume_state(self) -> None:
        self.storage.forget_state()

    def file_paths(self) -> List[str]:
        """The files this torrent writes or reads, for the session's overlap check."""
        return self.storage.file_paths()

    # -- the swarm -----------------------------------------------------------------------------

    def _connect_more(self, now: float) -> None:
        if self.state in (DOWNLOADING, SEEDING):
            seeding = self.state == SEEDING
            # Two seeds have nothing to trade.
            self.swarm.connect_more(now, skip=lambda record: seeding and record.seed)

    def dial_failed(self, address: Address) -> None:
        self.swarm.dial_failed(address, time.monotonic())

    def forget_self(self, address: Address) -> None:
        self.swarm.forget_self(address)

    def strikes(self, address: Address) -> int:
        """Pieces proven bad that ``address`` sent."""
        if self.downloader is None:
            return 0
        return self.downloader.smart_ban.strikes(address)

    def _strike(self, address: Address, reason: str) -> None:
        """One proven bad piece from ``address``; ban it after MAX_HASH_FAILURES."""
        if address[0] in self.swarm.banned_hosts:
            return
        strikes = self.strikes(address)
        log.warning("%s: peer %s:%s %s (%d of %d before a ban)", self.name, address[0],
                    address[1], reason, strikes, MAX_HASH_FAILURES)
        if strikes >= MAX_HASH_FAILURES:
            log.warning("%s: banned %s:%s after %d bad pieces", self.name, address[0],
                        address[1], strikes)
            peer_id = next((c.peer_id for c in self.swarm.peers if c.address == address), None)
            self.swarm.ban(address, peer_id, "sent data that failed the hash check")

    # -- PeerOwner: what connections report -------------------------------------------------------

    def peer_joined(self, conn: Any, first_words: bool = True) -> bool:
        """Admit a peer whose handshake just completed; ``first_words=False`` for one adopted
        from a magnet's stand-in, whose first words were said long ago."""
        if self.state not in (DOWNLOADING, SEEDING):
            conn.close(f"torrent is {self.state}")
            return False
        reason = self.swarm.admit(conn)
        if reason is not None:
            conn.close(reason)
            return False
        self._bits[conn] = Bitfield(self.info.num_pieces)
        now = time.monotonic()
        if first_words:
            self._send_first_words(conn)
        assert self.downloader is not None
        self.downloader.peer_joined(conn, now)
        self.uploader.peer_joined(conn)
        if conn.fast and self.super_seeder is None and self.picker is not None:
            self.uploader.grant(conn, [i for i in allowed_fast_set(
                conn.address[0], self.info_hash, self.info.num_pieces) if i in self.picker.have])
        log.info("%s: connected to %s:%s (%s, %s, %s)", self.name, conn.address[0],
                 conn.address[1], conn.client_name, "incoming" if conn.incoming else "outgoing",
                 "encrypted" if conn.encrypted else "plain")
        return True

    def _send_first_words(self, conn: Any) -> None:
        """What we have, first thing after the handshake: a bitfield (BEP 3), or with the fast
        extension exactly one of have all, have none or a bitfield (BEP 6); a super-seed
        reveals pieces one `have` at a time instead (BEP 16)."""
        have = self.picker.have if self.picker is not None else None
        count = have.count if have is not None else 0
        if self.super_seeder is not None:
            if conn.fast:
                conn.send_have_none()
            for piece in self.super_seeder.peer_joined(conn):
                conn.send_have(piece)
        elif conn.fast and count == self.info.num_pieces:
            conn.send_have_all()
        elif conn.fast and count == 0:
            conn.send_have_none()
        elif count:
            assert have is not None
            conn.send_bitfield(have.to_bytes())

    def adopt(self, conn: Any, raw_bits: Optional[bytes], haves: List[int],
              have_all: bool = False) -> None:
        """Take over a connection that a magnet's stand-in opened, replaying what the peer
        said it has before the piece count was known (its bitfield, or `have all`)."""
        conn.hand_over(self)
        if not self.peer_joined(conn, first_words=False):
            return
        have = self.picker.have if self.picker is not None else None
        if have is not None and self.super_seeder is None:
            # The bitfield (or have all) may only follow the handshake, which is long past:
            # what the check found on disk goes out as `have` messages instead.
            for index in have.iter_set():
                conn.send_have(index)
        if have_all:
            raw_bits = Bitfield.full(self.info.num_pieces).to_bytes()
        if raw_bits is not None:
            self._peer_bitfield(conn, raw_bits)
        for index in haves:
            if conn.closed:
                return
            self._peer_have(conn, index)
        if not conn.closed:
            self._bits_changed(conn)
        if not conn.closed:
            self.peer_batch_done(conn)

    def extension_fields(self) -> Dict[str, Any]:
        # A private torrent's metadata is not handed out (libtorrent does the same), nor does
        # it exchange peers.
        fields = self.exchange.extension_fields()
        if not self.info.private:
            fields["metadata_size"] = len(self.info.raw)
        return fields

    def peer_message(self, conn: Any, event: Any) -> None:
        kind = type(event)
        if kind is wire.Piece:
            assert self.downloader is not None
            self.downloader.block(conn, event.index, event.begin, event.block)
            return
        handler = _MESSAGES.get(kind)
        if handler is not None:
            handler(self, conn, event)

    def peer_batch_done(self, conn: Any) -> None:
        """Once per received chunk: serve uploads, refill the request pipeline."""
        self.uploader.serve(conn)
        if self.state == DOWNLOADING and self.downloader is not None:
            self.downloader.fill(conn, self._bits.get(conn), conn.last_received)

    def peer_writable(self, conn: Any) -> None:
        self.uploader.serve(conn)

    def peer_left(self, conn: Any) -> None:
        now = time.monotonic()
        self.swarm.release(conn, now)
        if self.super_seeder is not None:
            self.super_seeder.peer_left(conn)
        bits = self._bits.pop(conn, None)
        if self.picker is not None and bits is not None:
            self.picker.peer_removed(bits)
        if self.downloader is not None:
            self.downloader.peer_left(conn)
        self.uploader.peer_left(conn, self.swarm.peers, now)
        self.exchange.peer_left(conn)

    # -- messages ----------------------------------------------------------------------------------

    def _peer_bitfield(self, conn: Any, raw: bytes) -> None:
        try:
            bits = Bitfield.from_bytes(raw, self.info.num_pieces)
        except ValueError as exc:
            conn.close(f"bad bitfield: {exc}")
            return
        if self.picker is None:
            return
        old = self._bits.get(conn)
        if old is not None and old.count:
            self.picker.peer_removed(old)
        self._bits[conn] = bits
        self.picker.peer_added(bits)
        if self.super_seeder is not None:
            # What was revealed at the join stands; the bitfield only adds what the peer has.
            for index in bits.iter_set():
                for piece in self.super_seeder.peer_has(conn, index):
                    conn.send_have(piece)
        self._bits_changed(conn)

    def _on_bitfield(self, conn: Any, event: Any) -> None:
        self._peer_bitfield(conn, event.bits)

    def _on_have_all(self, conn: Any, event: Any) -> None:
        self._peer_bitfield(conn, Bitfield.full(self.info.num_pieces).to_bytes())

    def _on_have_none(self, conn: Any, event: Any) -> None:
        self._peer_bitfield(conn, Bitfield(self.info.num_pieces).to_bytes())

    def _on_reject(self, conn: Any, event: Any) -> None:
        if self.downloader is not None:
            self.downloader.rejected(conn, event.index, event.begin)

    def _on_allowed_fast(self, conn: Any, event: Any) -> None:
        if self.downloader is not None:
            self.downloader.allowed_fast(conn, event.index)

    def _on_have(self, conn: Any, event: Any) -> None:
        self._peer_have(conn, event.index)

    def _peer_have(self, conn: Any, index: int) -> None:
        if not 0 <= index < self.info.num_pieces:
            conn.close(f"have for piece {index} out of range")
            return
        bits = self._bits.get(conn)
        picker = self.picker
        if bits is None or index in bits or picker is None:
            return
        bits.set(index)
        picker.peer_has(index)
        if self.super_seeder is not None:
            for piece in self.super_seeder.peer_has(conn, index):
                conn.send_have(piece)
        if not conn.am_interested and self.state == DOWNLOADING and index not in picker.have:
            conn.set_interested(picker.wants(index))
        if bits.complete:
            self._bits_changed(conn)

    def _is_seed(self, conn: Any) -> bool:
        bits = self._bits.get(conn)
        return bits is not None and bits.complete

    def _bits_changed(self, conn: Any) -> None:
        if self.state == SEEDING and self._is_seed(conn):
            self.swarm.mark_seed(conn)
            conn.close("both sides are seeds")
            return
        if self.state == DOWNLOADING and self.picker is not None:
            conn.set_interested(self.picker.interesting(self._bits[conn]))

    def _on_choke(self, conn: Any, event: Any) -> None:
        if self.downloader is not None:
            self.downloader.choked(conn)

    def _on_interest(self, conn: Any, event: Any) -> None:
        self.uploader.interest_changed(conn, self.swarm.peers, time.monotonic())

    def _on_request(self, conn: Any, event: Any) -> None:
        self.uploader.request(conn, event.index, event.begin, event.length)

    def _on_cancel(self, conn: Any, event: Any) -> None:
        self.uploader.cancel(conn, event.index, event.begin, event.length)

    def _can_serve(self, conn: Any, index: int) -> bool:
        return (self.picker is not None and index in self.picker.have
                and (self.super_seeder is None or self.super_seeder.may_serve(conn, index)))

    def _on_extended(self, conn: Any, event: Any) -> None:
        if conn.extension_name(event) == UT_PEX:
            self.exchange.received(conn, event.payload, time.monotonic())
            return
        msg = conn.ut_metadata_message(event)
        if msg is None:
            return
        # A private torrent's metadata is not handed out (libtorrent does the same): its peers
        # get it from the .torrent file, through the tracker that admits them.
        answer = (ut_metadata.refuse(msg) if self.info.private
                  else self._metadata_server.answer(msg))
        if answer is not None:
            conn.send_extended(UT_METADATA, answer)

    # -- verdicts ------------------------------------------------------------------------------------

    def _piece_verified(self, index: int) -> None:
        if self.state != DOWNLOADING:
            return
        picker = self.picker
        assert picker is not None
        for conn in self.swarm.peers:
            conn.send_have(index)
            bits = self._bits.get(conn)
            if (conn.am_interested and bits is not None and self.downloader is not None
                    and not self.downloader.in_flight(conn) and not picker.interesting(bits)):
                conn.set_interested(False)
        if picker.complete:
            self._become_seed()

    # -- periodic work ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        downloader = self.downloader
        if downloader is not None and self.state == DOWNLOADING:
            for conn in list(self.swarm.peers):
                if not conn.closed:
                    downloader.tick(conn, self._bits.get(conn), now)
        if self.uploader.choker.due(now):
            self.uploader.rechoke(self.swarm.peers, now)
        self.uploader.tick(now)
        self.exchange.tick(self.swarm.peers, self._is_seed, now)
        self._connect_more(now)
        if (self.state == DOWNLOADING and not self.swarm.peers and not self.swarm.dialling
                and self._announcer is not None and not self.swarm.anyone_to_dial(now)):
            self._announcer.need_peers()  # every peer is gone: ask the trackers again
        if (self.storage.dirty and now - self._last_resume_save >= RESUME_SAVE_INTERVAL
                and self.state in (DOWNLOADING, SEEDING)):
            self._last_resume_save = now
            self._saver.request()

    # -- status ------------------------------------------------------------------------------------

    def peer_statuses(self) -> List[Dict[str, Any]]:
        """One row per connected peer, for `peers` in the shell."""
        rows = []
        n = self.info.num_pieces
        downloader = self.downloader
        for conn in self.swarm.peers:
            bits = self._bits.get(conn)
            snubbed = downloader is not None and downloader.snubbed(conn)
            rows.append(peer_row(conn, (bits.count / n) if bits is not None and n else 0.0,
                                 snubbed))
        rows.sort(key=lambda r: (-r["down_rate"], -r["up_rate"], r["address"]))
        return rows

    def status(self) -> Dict[str, Any]:
        peers = self.swarm.peers
        down = sum(p.down_rate for p in peers)
        up = sum(p.up_rate for p in peers)
        total = self.info.length
        left = self.left
        have = total - left
        return {
            "name": self.name, "info_hash": self.info_hash.hex(), "state": self.state,
            "size": total, "have": have, "progress": have / total if total else 1.0,
            "down_rate": down, "up_rate": up, "downloaded": self.downloaded,
            "uploaded": self.uploaded, "peers": len(peers),
            "seeds": sum(1 for p in peers if self._is_seed(p)),
            "eta": (left / down) if down > 0 and left else None,
            "error": self.error,
            # Seconds from the start to complete data (the check's length for data that was
            # complete from the start); None until then.
            "completed_after": (self.completed_at - self.started_at
                                if self.completed_at is not None else None),
            **discovery_status(self._announcer, self.swarm),
        }


_MESSAGES: Dict[type, Callable[[Torrent, Any, Any], None]] = {
    wire.BitfieldMessage: Torrent._on_bitfield,
    wire.Have: Torrent._on_have,
    wire.Choke: Torrent._on_choke,
    # An unchoke needs no handler: the refill runs once the whole batch is handled.
    wire.Interested: Torrent._on_interest,
    wire.NotInterested: Torrent._on_interest,
    wire.Request: Torrent._on_request,
    wire.Cancel: Torrent._on_cancel,
    wire.Extended: Torrent._on_extended,
    wire.HaveAll: Torrent._on_have_all,
    wire.HaveNone: Torrent._on_have_none,
    wire.Reject: Torrent._on_reject,
    wire.AllowedFast: Torrent._on_allowed_fast,
    # A suggested piece (BEP 6) is advice we do not take: rarest first serves a swarm better.
}
