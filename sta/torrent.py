"""One torrent inside a session: its storage, picker, choker, peers and tracker announces.

The torrent is where policy meets mechanism. Connections (peer.py) report events here; the picker
(picker.py) decides which blocks to ask for; storage (storage.py) writes and verifies; the choker
below decides whom we upload to. Everything runs on the session's event loop except hashing and
resume-state saves, which go to the session's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from . import metadata, wire
from .announcer import Announcer
from .bitfield import Bitfield
from .blockcache import ReadCache, WriteBuffers, verify_and_write, verify_stored
from .choker import Choker
from .metadata import MetadataServer
from .peer import (IDLE_TIMEOUT, KEEPALIVE_INTERVAL, MAX_INCOMING_REQUESTS, UT_METADATA,
                   PeerConnection)
from .picker import PiecePicker
from .superseed import SuperSeeder
from .swarm import PeerRecord, Swarm

if TYPE_CHECKING:  # pragma: no cover
    from .metainfo import Metainfo
    from .session import Session

log = logging.getLogger(__name__)

# A peer that sends nothing we asked for in this long is snubbed: its requests go back to the
# pool for others and it keeps a single request in flight (libtorrent: 60 s; a lab LAN is fast,
# so we give up sooner).
SNUB_TIMEOUT = 20.0
# One request unanswered this long while other blocks arrive was lost or dropped by the peer.
REQUEST_TIMEOUT = 40.0

# A peer whose data failed the hash this many times is banned (libtorrent bans after one piece
# it alone sent; we allow a few since a lab peer with a flaky disk is more likely than a liar).
MAX_HASH_FAILURES = 3
# Requests in flight per peer in endgame mode: a peer asks for a block someone else is already
# sending only once it has nothing else to do, one at a time (libtorrent's strict end game mode),
# so the end of a download costs little more than the data.
ENDGAME_QUEUE = 1
# Invalid requests (out of range, oversized) tolerated before we drop the peer.
MAX_BAD_REQUESTS = 20

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


class Torrent(Swarm):
    def __init__(self, session: "Session", metainfo: "Metainfo", storage: Any) -> None:
        super().__init__(session, metainfo.info_hash, metainfo.info.name)
        self.metainfo = metainfo
        self.info = metainfo.info
        self.storage = storage
        self.state = CHECKING
        self.upload_only = getattr(storage, "readonly", False)
        self.super_seed = False  # BEP 16 while seeding complete data (`seed --super-seed`)
        self.super_seeder: Optional[SuperSeeder] = None
        self.error: Optional[str] = None
        self.picker: Optional[PiecePicker] = None
        self.uploaded = 0
        self.downloaded = 0
        self.wasted = 0
        self.started_at = time.monotonic()
        self.completed_at: Optional[float] = None
        self.done = asyncio.Event()
        self.contributions: Dict[Tuple[str, int], int] = {}
        self._write_buffers = WriteBuffers(self.info.piece_size)
        self._metadata_server = MetadataServer(self.info.raw)
        # Who sent each block of the pieces in progress, and for pieces that failed the hash
        # with blocks from several peers, each block's sender and digest (see _convict).
        self._block_origin: Dict[int, Dict[int, Tuple[str, int]]] = {}
        self._suspects: Dict[int, Dict[int, Tuple[Tuple[str, int], bytes]]] = {}
        self._hashing: Set["asyncio.Future[Any]"] = set()
        self.read_cache = ReadCache(storage.read_block, self.info.piece_size,
                                    self.info.piece_length)
        self._choker = Choker()
        self._last_resume_save = 0.0
        self._announcer: Any = None

    # -- life cycle --------------------------------------------------------------------------

    async def start(self, recheck: bool = False) -> None:
        """Check what is on disk, then download or seed."""
        loop = self.session.loop
        self.state = CHECKING
        have = await loop.run_in_executor(None, partial(self.storage.restore, recheck=recheck))
        self.picker = PiecePicker(self.info.num_pieces, self.info.piece_length, self.info.length,
                                  have)
        if self.picker.complete:
            self._become_seed(announce=False)
            if self.super_seed:
                self.super_seeder = SuperSeeder(self.info.num_pieces)
        elif self.upload_only:
            self.state = SEEDING  # a partial seed: shares what it has, never downloads
        else:
            self.state = DOWNLOADING
        log.info("%s: %d of %d pieces verified on disk", self.name, have.count,
                 self.info.num_pieces)

    def have_bits(self) -> Optional[Bitfield]:
        """What the handshake's bitfield shows: nothing while super-seeding (BEP 16), where
        pieces are revealed one `have` at a time instead."""
        if self.super_seeder is not None:
            return None
        return self.picker.have if self.picker is not None else None

    @property
    def left(self) -> int:
        return self.picker.left_bytes if self.picker is not None else self.info.length

    @property
    def complete(self) -> bool:
        return self.picker is not None and self.picker.complete

    def _become_seed(self, announce: bool = True) -> None:
        was_downloading = self.state == DOWNLOADING
        self.state = SEEDING
        if self.completed_at is None:
            self.completed_at = time.monotonic()
        if was_downloading:
            log.info("%s: download complete", self.name)
            self.storage.save()
        for conn in list(self.peers):
            conn.set_interested(False)
            if conn.is_seed:
                self._mark_seed(conn)
                conn.close("both sides are seeds")
        self.done.set()
        if announce and self._announcer is not None:
            self._announcer.completed()

    def _mark_seed(self, conn: PeerConnection) -> None:
        record = self.known.get(conn.address) if conn.address else None
        if record is not None:
            record.seed = True

    def storage_failed(self, exc: Exception) -> None:
        """A disk error stops this torrent; everything verified so far stays verified."""
        if self.state == ERROR:
            return
        self.state = ERROR
        self.error = str(exc)
        log.error("%s: stopped: %s", self.name, exc)
        for conn in list(self.peers):
            conn.close("torrent stopped by a storage error")
        self.done.set()

    def start_announcing(self) -> None:
        tiers = self.metainfo.trackers
        if tiers and self._announcer is None:
            self._announcer = Announcer(self, tiers, ssl_context=self.session.tracker_ssl_context)
            self._announcer.start()

    async def shutdown(self) -> None:
        """Stop, save the resume state, and tell the trackers we are leaving."""
        if self._hashing:
            # Pieces being hashed and written now are recorded before the state is saved.
            await asyncio.wait(list(self._hashing), timeout=SHUTDOWN_HASH_WAIT)
        self.stop()
        if self._announcer is not None:
            await self._announcer.stop()

    async def pause(self) -> None:
        """Close every connection and leave the trackers; keep everything verified."""
        if self.state not in (DOWNLOADING, SEEDING):
            return
        self.state = PAUSED
        for conn in list(self.peers):
            conn.close("torrent paused")
        announcer, self._announcer = self._announcer, None
        await self.session.loop.run_in_executor(None, self._save_resume_quietly)
        if announcer is not None:
            await announcer.stop()

    def resume(self) -> None:
        if self.state != PAUSED:
            return
        self.state = SEEDING if self.complete else DOWNLOADING
        for record in self.known.values():
            record.failures = 0
            record.next_try = 0.0
        self.start_announcing()

    def delete_files(self) -> List[str]:
        """Delete exactly this torrent's files, then its folders that are left empty."""
        self.storage.close()
        removed = []
        folders = set()
        root = os.path.abspath(self.storage.root)
        for index, entry in enumerate(self.info.files):
            if entry.pad:
                continue
            path = self.storage.file_path(index)
            if os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)
                removed.append(path)
            parent = os.path.dirname(os.path.abspath(path))
            while parent.startswith(root + os.sep):
                folders.add(parent)
                parent = os.path.dirname(parent)
        for folder in sorted(folders, key=len, reverse=True):
            try:
                os.rmdir(folder)  # fails, as it should, on a folder with other content
            except OSError:
                pass
        self.forget_resume_state()
        return removed

    def forget_resume_state(self) -> None:
        """Remove the resume file, and the state folder when nothing else is left in it."""
        for path in (self.storage.state_path, os.path.dirname(self.storage.state_path)):
            try:
                os.remove(path) if path == self.storage.state_path else os.rmdir(path)
            except OSError:
                pass

    def stop(self) -> None:
        if self.state not in (ERROR,):
            self.state = STOPPED
        for conn in list(self.peers):
            conn.close("torrent stopped")
        try:
            self.storage.save()
        except Exception as exc:
            log.warning("%s: could not save resume state: %s", self.name, exc)
        self.storage.close()

    # -- peers -------------------------------------------------------------------------------

    def wants_connections(self) -> bool:
        return self.state in (DOWNLOADING, SEEDING)

    def skips(self, record: PeerRecord) -> bool:
        return record.seed and self.state == SEEDING  # two seeds have nothing to trade

    def accept_peer(self, conn: PeerConnection) -> bool:
        if self.state not in (DOWNLOADING, SEEDING):
            conn.close(f"torrent is {self.state}")
            return False
        if not self.admit(conn):
            return False
        conn.bits = Bitfield(self.info.num_pieces)
        if self.super_seeder is not None:
            # Sent after our handshake and before anything else of ours: it stands in for the
            # bitfield (a peer without pieces may send no bitfield at all).
            for piece in self.super_seeder.peer_joined(conn):
                conn.send(wire.have(piece))
        log.info("%s: connected to %s:%s (%s, %s, %s)", self.name, conn.address[0],
                 conn.address[1], conn.client_name, "incoming" if conn.incoming else "outgoing",
                 "encrypted" if conn.encrypted else "plain")
        return True

    def adopt(self, conn: PeerConnection, raw_bits: Optional[bytes], haves: List[int]) -> None:
        """Take over a connection that a magnet's stand-in opened, replaying what the peer
        said it has before the piece count was known."""
        if not self.accept_peer(conn):
            return
        if raw_bits is not None:
            self.peer_bitfield(conn, raw_bits)
        for index in haves:
            if conn.closed:
                return
            self.peer_have(conn, index)
        if conn.bits is not None and not conn.closed:
            self._peer_bits_changed(conn)
        bits = self.have_bits()
        if bits is not None and not conn.closed:
            # BEP 3 allows a bitfield only right after the handshake, which is long past: what
            # the resume state found on disk goes out as `have` messages instead.
            for index in bits.iter_set():
                conn.send(wire.have(index))
        if not conn.closed:
            self._fill_requests(conn)

    def peer_closed(self, conn: PeerConnection) -> None:
        if not self.release(conn):
            return
        if self.super_seeder is not None:
            self.super_seeder.peer_left(conn)
        if self.picker is not None:
            if conn.bits is not None:
                self.picker.peer_removed(conn.bits)
            self.picker.requests_dropped(conn)
        conn.outstanding.clear()
        self._choker.forget(conn)
        if not conn.am_choking:
            self._rechoke(time.monotonic())

    # -- messages from peers -----------------------------------------------------------------

    def peer_bitfield(self, conn: PeerConnection, raw: bytes) -> None:
        try:
            bits = Bitfield.from_bytes(raw, self.info.num_pieces)
        except ValueError as exc:
            conn.close(f"bad bitfield: {exc}")
            return
        if self.picker is None:
            return
        if conn.bits is not None and conn.bits.count:
            self.picker.peer_removed(conn.bits)
        conn.bits = bits
        self.picker.peer_added(bits)
        if self.super_seeder is not None:
            self.super_seeder.peer_left(conn)
            for piece in self.super_seeder.peer_joined(conn, set(bits.iter_set())):
                conn.send(wire.have(piece))
        self._peer_bits_changed(conn)

    def peer_have(self, conn: PeerConnection, index: int) -> None:
        if not 0 <= index < self.info.num_pieces:
            conn.close(f"have for piece {index} out of range")
            return
        if conn.bits is None or index in conn.bits or self.picker is None:
            return
        conn.bits.set(index)
        self.picker.peer_has(index)
        if self.super_seeder is not None:
            for piece in self.super_seeder.peer_has(conn, index):
                conn.send(wire.have(piece))
        if not conn.am_interested and self.state == DOWNLOADING and index not in self.picker.have:
            conn.set_interested(self.picker.wants(index))
        if conn.bits.complete:
            self._peer_bits_changed(conn)

    def _peer_bits_changed(self, conn: PeerConnection) -> None:
        conn.is_seed = conn.bits is not None and conn.bits.complete
        if self.state == SEEDING and conn.is_seed:
            self._mark_seed(conn)
            conn.close("both sides are seeds")
            return
        if self.state == DOWNLOADING and self.picker is not None:
            conn.set_interested(self.picker.interesting(conn.bits))

    def peer_choked_us(self, conn: PeerConnection) -> None:
        # Without the fast extension a choke drops every request we had queued with the peer.
        if self.picker is not None:
            self.picker.requests_dropped(conn)
        conn.outstanding.clear()

    def peer_unchoked_us(self, conn: PeerConnection) -> None:
        self._fill_requests(conn)

    def peer_interest_changed(self, conn: PeerConnection) -> None:
        if conn.peer_interested:
            unchoked = sum(1 for p in self.peers if not p.am_choking)
            if self._choker.has_room(unchoked):
                conn.set_choking(False)
        elif not conn.am_choking:
            conn.set_choking(True)
            self._rechoke(time.monotonic())

    def peer_request(self, conn: PeerConnection, index: int, begin: int, length: int) -> None:
        if conn.am_choking:
            return  # BEP 3: requests from a choked peer are ignored
        picker = self.picker
        info = self.info
        if (picker is None or not 0 <= index < info.num_pieces or length <= 0
                or length > wire.MAX_REQUEST_LENGTH or begin < 0
                or begin + length > info.piece_size(index) or index not in picker.have
                or (self.super_seeder is not None
                    and not self.super_seeder.may_serve(conn, index))):
            self._bad_request(conn, f"refused request for piece {index} at {begin}+{length}")
            return
        if len(conn.upload_queue) >= MAX_INCOMING_REQUESTS:
            self._bad_request(conn, "request queue full")
            return
        conn.upload_queue.append((index, begin, length))

    def _bad_request(self, conn: PeerConnection, reason: str) -> None:
        conn.bad_requests += 1
        log.debug("%s: %r: %s", self.name, conn, reason)
        if conn.bad_requests > MAX_BAD_REQUESTS:
            conn.close(f"too many invalid requests ({reason})")

    def peer_block(self, conn: PeerConnection, index: int, begin: int, block: bytes) -> None:
        picker = self.picker
        if picker is None or self.state != DOWNLOADING:
            conn.outstanding.pop((index, begin), None)
            self.wasted += len(block)
            return
        conn.outstanding.pop((index, begin), None)
        size = len(block)
        if (not 0 <= index < self.info.num_pieces or begin % wire.BLOCK_SIZE
                or size != min(wire.BLOCK_SIZE, self.info.piece_size(index) - begin)):
            conn.close(f"block of {size} bytes at piece {index} offset {begin} does not fit")
            return
        conn.downloaded += size
        self.downloaded += size
        conn.snubbed = False
        wanted, piece_done, cancels = picker.block_received(conn, index, begin)
        if not wanted:
            self.wasted += size
            return
        if conn.address is not None:
            self.contributions[conn.address] = self.contributions.get(conn.address, 0) + size
            origin = self._block_origin.get(index)
            if origin is None:
                origin = self._block_origin[index] = {}
            origin[begin] = conn.address
        if not self._write_buffers.store(index, begin, block):
            try:
                self.storage.write_block(index, begin, block)
            except Exception as exc:
                self.storage_failed(exc)
                return
        for other, c_index, c_begin, c_length in cancels:
            other.cancel_request(c_index, c_begin, c_length)
        if piece_done:
            self._verify(index)

    def after_receive(self, conn: PeerConnection) -> None:
        """Called once per received batch: refill the request pipeline, serve uploads."""
        if conn.upload_queue and not conn.am_choking:
            conn.serve_uploads()
        if self.state == DOWNLOADING:
            self._fill_requests(conn)

    def _fill_requests(self, conn: PeerConnection) -> None:
        picker = self.picker
        if (picker is None or conn.peer_choking or not conn.am_interested or conn.closed
                or self.state != DOWNLOADING):
            return
        target = 1 if conn.snubbed else conn.queue_target
        if picker.endgame:
            # Every missing block is already asked of someone: a peer takes a duplicate only
            # when it is about to run dry, so the end of a download does not fetch it twice.
            target = min(target, ENDGAME_QUEUE)
        room = target - len(conn.outstanding)
        # Refill in batches of a quarter of the pipeline: one picker call and one write for
        # dozens of requests instead of one per arriving block.
        if room <= 0 or (conn.outstanding and room < target // 4):
            return
        blocks = picker.next_requests(conn, conn.bits, room)
        if blocks:
            conn.send_requests(blocks)
        elif not conn.outstanding and not picker.interesting(conn.bits):
            conn.set_interested(False)

    def peer_extended_handshake(self, conn: PeerConnection) -> None:
        pass

    def peer_extended(self, conn: PeerConnection, ext_id: int, payload: bytes) -> None:
        msg = conn.ut_metadata_message(ext_id, payload)
        if msg is None:
            return
        # A private torrent's metadata is not handed out (libtorrent does the same): its peers
        # get it from the .torrent file, through the tracker that admits them.
        answer = (metadata.refuse(msg) if self.info.private
                  else self._metadata_server.answer(msg))
        peer_id = conn.extensions.get(UT_METADATA)
        if answer is not None and peer_id:
            conn.send(wire.extended(peer_id, answer))

    def ext_handshake_fields(self, conn: PeerConnection) -> Dict[str, Any]:
        fields = super().ext_handshake_fields(conn)
        if not self.info.private:
            fields["metadata_size"] = len(self.info.raw)
        return fields

    # -- verification ------------------------------------------------------------------------

    def _verify(self, index: int) -> None:
        """Hash a whole piece off the loop (and write it, when it was assembled in memory)."""
        data = self._write_buffers.take(index)
        suspect = index in self._suspects
        if data is not None:
            call = partial(verify_and_write, self.storage, index, self.info.piece_hash(index), data,
                           wire.BLOCK_SIZE, suspect)
        else:
            call = partial(verify_stored, self.storage, index, self.info.piece_size(index),
                           wire.BLOCK_SIZE, suspect)
        future = self.session.loop.run_in_executor(self.session.hash_pool, call)
        self._hashing.add(future)
        if data is not None:
            future.add_done_callback(lambda _: self._write_buffers.release(len(data)))
        future.add_done_callback(partial(self._verified, index))

    def _verified(self, index: int, future: "asyncio.Future[Tuple[bool, Any]]") -> None:
        origins = self._block_origin.pop(index, {})
        self._hashing.discard(future)
        error = future.exception()  # always retrieved, even when the torrent has stopped
        picker = self.picker
        if picker is None:
            return
        if error is not None:
            self.storage_failed(error)
            return
        ok, digests = future.result()
        if ok and self.state != DOWNLOADING:
            # Finished after a disk error or a pause stopped the torrent: the piece is on disk
            # and verified, so the resume state must say so.
            picker.piece_verified(index)
            self.storage.mark_verified(index)
            return
        if self.state != DOWNLOADING:
            return
        if ok:
            picker.piece_verified(index)
            self.storage.mark_verified(index)
            self._convict(index, digests)
            message = wire.have(index)
            for conn in self.peers:
                conn.send(message)
                if (conn.am_interested and not conn.outstanding and conn.bits is not None
                        and not picker.interesting(conn.bits)):
                    conn.set_interested(False)
            if picker.complete:
                self._become_seed()
            return
        picker.piece_failed(index)
        self.wasted += self.info.piece_size(index)
        sources = set(origins.values())
        log.warning("%s: piece %d failed the hash check (blocks from %s)", self.name, index,
                    ", ".join(f"{h}:{p}" for h, p in sorted(sources)) or "?")
        if len(sources) == 1:
            self._strike(sources.pop(), f"piece {index} it alone sent failed the hash check")
        elif sources and digests:
            # Several peers sent blocks of it: remember who sent what, and once the piece passes
            # the check, the blocks that differ name the liar (libtorrent's "smart ban").
            self._suspects[index] = {begin: (address, digests[begin // wire.BLOCK_SIZE])
                                     for begin, address in origins.items()}

    def _convict(self, index: int, digests: Optional[List[bytes]]) -> None:
        """A piece that once failed now passed: strike the peers whose blocks were different."""
        suspects = self._suspects.pop(index, None)
        if not suspects or not digests:
            return
        liars = {address for begin, (address, digest) in suspects.items()
                 if digest != digests[begin // wire.BLOCK_SIZE]}
        for address in liars:
            self._strike(address, f"sent corrupt blocks of piece {index}")

    def _strike(self, address: Tuple[str, int], reason: str) -> None:
        """One proven bad piece from ``address``; ban it after MAX_HASH_FAILURES."""
        record = self.known.setdefault(address, PeerRecord(address, "incoming"))
        if record.banned:
            return
        record.hash_failures += 1
        log.warning("%s: peer %s:%s %s (%d of %d before a ban)", self.name, address[0],
                    address[1], reason, record.hash_failures, MAX_HASH_FAILURES)
        if record.hash_failures >= MAX_HASH_FAILURES and not record.banned:
            log.warning("%s: banned %s:%s after %d bad pieces", self.name, address[0], address[1],
                        record.hash_failures)
            peer_id = next((c.peer_id for c in self.peers if c.address == address), None)
            self.ban(address, peer_id, "sent data that failed the hash check")

    # -- periodic work -----------------------------------------------------------------------

    def tick(self, now: float, elapsed: float) -> None:
        for conn in list(self.peers):
            conn.update_rates(elapsed)
            if conn.closed:
                continue
            if now - conn.last_received > IDLE_TIMEOUT:
                conn.close("idle too long")
                continue
            if conn.outstanding:
                if now - conn.last_block > SNUB_TIMEOUT and not conn.snubbed:
                    conn.snubbed = True
                    log.info("%s: %r snubbed: no data for %.0f s", self.name, conn, SNUB_TIMEOUT)
                    if self.picker is not None:
                        self.picker.requests_dropped(conn)
                    conn.outstanding.clear()
                else:
                    self._expire_requests(conn, now)
            if now - conn.last_sent > KEEPALIVE_INTERVAL:
                conn.send(wire.keepalive())
            self._fill_requests(conn)
        if self._choker.due(now):
            self._rechoke(now)
        self.connect_more(now)
        if (self.state == DOWNLOADING and not self.peers and not self.connecting
                and self._announcer is not None
                and not any(r.next_try <= now and not r.banned for r in self.known.values())):
            self._announcer.need_peers()  # every peer is gone: ask the trackers again
        if (self.storage.dirty and now - self._last_resume_save >= RESUME_SAVE_INTERVAL
                and self.state in (DOWNLOADING, SEEDING)):
            self._last_resume_save = now
            self.session.loop.run_in_executor(None, self._save_resume_quietly)

    def _save_resume_quietly(self) -> None:
        try:
            self.storage.save()
        except Exception as exc:
            log.warning("%s: could not save resume state: %s", self.name, exc)

    def _expire_requests(self, conn: PeerConnection, now: float) -> None:
        outstanding = conn.outstanding
        expired = []
        for key, sent in outstanding.items():  # insertion order: oldest first
            if now - sent < REQUEST_TIMEOUT:
                break
            expired.append(key)
        for index, begin in expired:
            length = min(wire.BLOCK_SIZE, self.info.piece_size(index) - begin)
            conn.cancel_request(index, begin, length)
            if self.picker is not None:
                self.picker.request_dropped(conn, index, begin)

    def _rechoke(self, now: float) -> None:
        """BEP 3 choking (choker.py): reciprocate the best peers, rotate one optimistic slot."""
        interested = [p for p in self.peers if p.peer_interested and p.handshaken and not p.closed]
        if self.state == SEEDING:
            unchoke = self._choker.rechoke(interested, lambda p: (p.up_rate,), now)
        else:
            unchoke = self._choker.rechoke(interested, lambda p: (p.down_rate, p.up_rate), now)
        for conn in self.peers:
            conn.set_choking(conn not in unchoke)

    # -- status ------------------------------------------------------------------------------

    def peer_statuses(self) -> List[Dict[str, Any]]:
        """One row per connected peer, for `peers` in the shell."""
        rows = []
        n = self.info.num_pieces
        for conn in self.peers:
            # uTorrent/libtorrent-style flags: D/d downloading or want to, U/u uploading or
            # they want to, E encrypted, I incoming, S snubbed.
            flags = ""
            if conn.am_interested:
                flags += "d" if conn.peer_choking else "D"
            if conn.peer_interested:
                flags += "u" if conn.am_choking else "U"
            if getattr(conn, "encrypted", False):
                flags += "E"
            if conn.incoming:
                flags += "I"
            if conn.snubbed:
                flags += "S"
            host, port = conn.address or ("?", 0)
            rows.append({
                "address": f"{host}:{port}", "client": conn.client_name, "flags": flags,
                "choked": conn.peer_choking, "choking": conn.am_choking,
                "interested": conn.am_interested, "peer_interested": conn.peer_interested,
                "encrypted": bool(getattr(conn, "encrypted", False)), "incoming": conn.incoming,
                "down_rate": conn.down_rate, "up_rate": conn.up_rate,
                "downloaded": conn.downloaded, "uploaded": conn.uploaded,
                "progress": (conn.bits.count / n) if conn.bits is not None and n else 0.0,
            })
        rows.sort(key=lambda r: (-r["down_rate"], -r["up_rate"], r["address"]))
        return rows

    def status(self) -> Dict[str, Any]:
        down = sum(p.down_rate for p in self.peers)
        up = sum(p.up_rate for p in self.peers)
        total = self.info.length
        have = total - self.left
        return {
            "name": self.name, "info_hash": self.info_hash.hex(), "state": self.state,
            "size": total, "have": have, "progress": have / total if total else 1.0,
            "down_rate": down, "up_rate": up, "downloaded": self.downloaded,
            "uploaded": self.uploaded, "peers": len(self.peers),
            "seeds": sum(1 for p in self.peers if p.is_seed),
            "eta": (self.left / down) if down > 0 and self.left else None,
            "error": self.error,
        }

