"""Fakes for the torrent-level engine tests: no sockets, no threads that outlive a test.

FakeConnection  a peer connection that records what the engine sends and holds the state the
                engine reads (peer.PeerConnection's public face); ``join`` and ``receive`` drive
                it the way PeerConnection's handshake and receive path drive an owner.
FakeHost        torrenthost.TorrentHost over an event loop the test runs, an inline hashing
                executor and a dialler that only records.
InlineExecutor  a concurrent.futures.Executor that runs each call at once, in the caller.
make_torrent    a real Info and Metainfo from random bytes, for MemoryStorage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import random
import unittest
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from sta import bencode, metainfo, ut_metadata, wire
from sta.blockcache import DiskBacklog
from sta.peerproto import DEFAULT_PEER_REQQ, EXTENSION_IDS, PeerExtensions

Address = Tuple[str, int]

# Seconds a test waits for an event on its loop before it fails: far above what the in-memory
# work takes, short enough that a hang fails the test quickly.
WAIT = 5.0
# Loop turns run by FakeHost.drain: enough for a future completed in an executor to reach its
# callbacks (two turns) and for what those callbacks schedule.
DRAIN_TURNS = 5

OUR_PEER_ID = b"-SX0001-ourpeerid000"


def peer_id_for(n: Any) -> bytes:
    """A distinct 20-byte peer id per number (or address)."""
    return b"-XX0001-" + hashlib.sha1(repr(n).encode()).hexdigest()[:12].encode()


# -- torrents ------------------------------------------------------------------------------------


class BuiltTorrent:
    """A torrent built from random bytes: its Metainfo, its payload, each piece's bytes."""

    def __init__(self, meta: metainfo.Metainfo, payload: bytes) -> None:
        self.meta = meta
        self.info = meta.info
        self.payload = payload

    def piece(self, index: int) -> bytes:
        size = self.info.piece_length
        return self.payload[index * size:(index + 1) * size]

    def block(self, index: int, begin: int, length: int = 16384) -> bytes:
        return self.piece(index)[begin:begin + length]


def make_torrent(length: int, piece_length: int = 16384, *, seed: int = 1, name: str = "t",
                 trackers: Sequence[Sequence[str]] = (), private: bool = False) -> BuiltTorrent:
    rng = random.Random(seed)
    payload = rng.getrandbits(8 * length).to_bytes(length, "little")
    pieces = b"".join(hashlib.sha1(payload[i:i + piece_length]).digest()
                      for i in range(0, length, piece_length))
    info: Dict[bytes, Any] = {b"name": name.encode(), b"piece length": piece_length,
                              b"pieces": pieces, b"length": length}
    if private:
        info[b"private"] = 1
    raw = bencode.encode(info)
    data = metainfo.encode_torrent(raw, trackers=tuple(tuple(t) for t in trackers))
    return BuiltTorrent(metainfo.parse(data), payload)


# -- the host ------------------------------------------------------------------------------------


class InlineExecutor(concurrent.futures.Executor):
    """Runs each submitted call at once: hashing in tests is deterministic and thread-free."""

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any
               ) -> "concurrent.futures.Future[Any]":
        future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


class FakeHost:
    """torrenthost.TorrentHost for one test: a fresh loop (also the thread's current loop, so
    asyncio objects made outside a coroutine bind to it on Python 3.8 and 3.9), one worker thread
    as the loop's default executor, and records of what the engine asked of the node."""

    def __init__(self, test: unittest.TestCase, peer_id: bytes = OUR_PEER_ID,
                 encryption: str = "off") -> None:
        self.loop = asyncio.new_event_loop()
        self._default_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.loop.set_default_executor(self._default_pool)
        asyncio.set_event_loop(self.loop)
        self.hash_pool: concurrent.futures.Executor = InlineExecutor()
        self.disk_backlog = DiskBacklog()
        self.peer_id = peer_id
        self.key = 0x5EED
        self.listen_port = 6881
        self.encryption = encryption
        self.tracker_ssl_context = None
        self.dialled: List[Tuple[Any, Address]] = []
        self.replaced: List[Tuple[Any, Any]] = []
        self.self_addresses: set = set()
        self.utp_peers: set = set()
        self.owners: Dict[bytes, Any] = {}
        self.tasks: List["asyncio.Task[Any]"] = []
        test.addCleanup(self.close)

    # TorrentHost

    def spawn(self, coro: Any) -> "asyncio.Task[Any]":
        task = self.loop.create_task(coro)
        self.tasks.append(task)
        return task

    def dial(self, owner: Any, address: Address) -> None:
        self.dialled.append((owner, address))

    def is_self(self, address: Address) -> bool:
        return address in self.self_addresses

    def replace(self, old: Any, new: Any) -> None:
        self.replaced.append((old, new))
        self.owners[new.info_hash] = new

    def peer_owner(self, info_hash: bytes) -> Optional[Any]:
        return self.owners.get(info_hash)

    def note_utp(self, address: Address) -> None:
        self.utp_peers.add(address)

    # driving the loop

    def run(self, awaitable: Any, timeout: float = WAIT) -> Any:
        """Run a coroutine or future on the loop, failing after ``timeout`` seconds."""
        return self.loop.run_until_complete(asyncio.wait_for(awaitable, timeout))

    def drain(self) -> None:
        """Let callbacks already scheduled on the loop run."""
        for _ in range(DRAIN_TURNS):
            self.loop.run_until_complete(asyncio.sleep(0))

    def wait_until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        """Run the loop until ``condition()`` holds; AssertionError after ``timeout``."""
        async def poll() -> None:
            while not condition():
                await asyncio.sleep(0.005)
        try:
            self.run(poll(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"condition not met within {timeout} s") from None

    def dialled_addresses(self) -> List[Address]:
        return [address for _, address in self.dialled]

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        pending = [t for t in self.tasks if not t.done()]
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending, timeout=WAIT))
        self._default_pool.shutdown(wait=True)
        asyncio.set_event_loop(None)
        self.loop.close()


# -- connections ---------------------------------------------------------------------------------


class FakeConnection:
    """What the engine sees of a peer connection. Every send is recorded in ``sent`` as a tuple
    (kind, *arguments); choke and interest are recorded only when they change, as the protocol
    machine only sends them then."""

    def __init__(self, address: Address = ("10.0.0.2", 6881), *, peer_id: Optional[bytes] = None,
                 incoming: bool = False, reqq: int = DEFAULT_PEER_REQQ,
                 ids: Optional[Dict[str, int]] = None, metadata_size: Optional[int] = None,
                 fast: bool = False) -> None:
        self.address = address
        self.fast = fast  # the fast extension (BEP 6) negotiated
        self.incoming = incoming
        self.peer_id = peer_id if peer_id is not None else peer_id_for(address)
        self.owner: Any = None
        self.joined = False
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.extensions = PeerExtensions(ids=dict(ids or {}), reqq=reqq,
                                         metadata_size=metadata_size)
        self.down_rate = 0.0
        self.up_rate = 0.0
        self.downloaded = 0
        self.uploaded = 0
        self.last_received = 0.0
        self.writable = True
        self.closed = False
        self.close_reason = ""
        self.client_name = "Fake 1.0"
        self.encrypted = False
        self.over_utp = False
        self.flushes = 0
        self.sent: List[Tuple[Any, ...]] = []

    def __repr__(self) -> str:
        return f"<fake peer {self.address[0]}:{self.address[1]}>"

    # what the engine calls

    def set_interested(self, interested: bool) -> None:
        if interested != self.am_interested:
            self.am_interested = interested
            self.sent.append(("interested", interested))

    def set_choking(self, choking: bool) -> None:
        if choking != self.am_choking:
            self.am_choking = choking
            self.sent.append(("choke", choking))

    def send_have(self, index: int) -> None:
        self.sent.append(("have", index))

    def send_bitfield(self, raw: bytes) -> None:
        self.sent.append(("bitfield", bytes(raw)))

    def send_requests(self, blocks: List[Tuple[int, int, int]]) -> None:
        self.sent.append(("requests", list(blocks)))

    def send_have_all(self) -> None:
        assert self.fast, "have all without the fast extension"
        self.sent.append(("have_all",))

    def send_have_none(self) -> None:
        assert self.fast, "have none without the fast extension"
        self.sent.append(("have_none",))

    def send_allowed_fast(self, index: int) -> None:
        assert self.fast, "allowed fast without the fast extension"
        self.sent.append(("allowed_fast", index))

    def send_reject(self, index: int, begin: int, length: int) -> None:
        if self.fast:  # as PeerConnection: nothing is sent without the fast extension
            self.sent.append(("reject", index, begin, length))

    def send_cancel(self, index: int, begin: int, length: int) -> None:
        self.sent.append(("cancel", index, begin, length))

    def send_block(self, index: int, begin: int, block: Any) -> None:
        self.sent.append(("block", index, begin, bytes(block)))
        self.uploaded += len(block)

    def extension_name(self, event: Any) -> Optional[str]:
        for name, ext_id in EXTENSION_IDS.items():
            if ext_id == event.ext_id:
                return name
        return None

    def send_extended(self, name: str, payload: bytes) -> None:
        self.sent.append(("extended", name, bytes(payload)))

    def flush(self) -> None:
        self.flushes += 1

    def hand_over(self, owner: Any) -> None:
        self.owner = owner

    def ut_metadata_message(self, event: wire.Extended) -> Optional[ut_metadata.MetadataMessage]:
        if event.ext_id != EXTENSION_IDS["ut_metadata"]:
            return None
        try:
            return ut_metadata.decode_metadata(event.payload)
        except wire.WireError as exc:
            self.close(f"bad ut_metadata message: {exc}")
            return None

    def close(self, reason: str) -> None:
        """As PeerConnection.close: an admitted connection reports to its owner once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self.joined and self.owner is not None:
            self.owner.peer_left(self)

    # what tests read

    def of(self, kind: str) -> List[Tuple[Any, ...]]:
        """The recorded sends of one kind, without the kind."""
        return [entry[1:] for entry in self.sent if entry[0] == kind]

    def requested(self) -> List[Tuple[int, int, int]]:
        """Every block requested of this peer, in order."""
        return [block for (blocks,) in self.of("requests") for block in blocks]


def join(owner: Any, conn: FakeConnection) -> bool:
    """Both handshakes are done: the owner admits the connection or refuses it, as in
    PeerConnection._on_handshake."""
    conn.owner = owner
    admitted = owner.peer_joined(conn)
    if not admitted and not conn.closed:
        conn.close("refused")
    conn.joined = admitted
    return admitted


def receive(conn: FakeConnection, *events: Any, now: Optional[float] = None) -> None:
    """Messages from the peer, as one received chunk: the protocol machine's state changes
    (peerproto.PeerProtocol.receive_data), each event to the owner, then the batch callback."""
    if conn.closed:
        return
    if now is not None:
        conn.last_received = now
    for event in events:
        if conn.closed:
            return
        kind = type(event)
        if kind is wire.Choke:
            conn.peer_choking = True
        elif kind is wire.Unchoke:
            conn.peer_choking = False
        elif kind is wire.Interested:
            conn.peer_interested = True
        elif kind is wire.NotInterested:
            conn.peer_interested = False
        elif kind is wire.ExtendedHandshake:
            conn.extensions.update(event)
        elif kind is wire.Request and conn.am_choking and not conn.fast:
            continue  # the protocol machine drops requests from a peer we choke (not BEP 6)
        elif kind is wire.Piece:
            conn.downloaded += len(event.block)
        conn.owner.peer_message(conn, event)
    if conn.joined and not conn.closed:
        conn.owner.peer_batch_done(conn)


def blocks_of(info: Any, index: int, block_size: int = 16384) -> List[Tuple[int, int, int]]:
    size = info.piece_size(index)
    return [(index, begin, min(block_size, size - begin)) for begin in range(0, size, block_size)]
