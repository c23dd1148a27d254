"""uTP, the uTorrent transport protocol (BEP 29), as a sans-IO state machine with LEDBAT.

No socket, no clock, no task: the endpoint (``sta.utp``) feeds datagrams in with ``receive``,
asks ``datagrams(now)`` for what to put on the wire, and calls ``tick(now)`` when
``next_timer()`` comes due. Time is a float of seconds from a monotonic clock; the 32-bit
microsecond timestamps of the header are derived from it. Randomness (connection ids, initial
sequence numbers) comes from an injected ``random.Random``.

What the endpoint must know to demultiplex (as libtorrent's socket manager does):
- a socket receives on ``(address, recv_id)``; a datagram with an unknown pair that
  ``is_utp_packet`` and is an ST_SYN starts a new ``UtpSocket.accept``; one that is not gets
  ``reset_for`` (never answer a stray ST_RESET);
- a retransmitted SYN carries ``recv_id - 1`` of the socket it created (the acceptor receives
  on SYN id + 1): hand an ST_SYN whose ``(address, id + 1)`` is known to that socket;
- an ST_RESET may carry either id of the connection: try ``recv_id``, then ``send_id``.

The data path: send() appends to a bounded send buffer; datagrams() cuts it into packets of at
most PAYLOAD_SIZE while the congestion window (LEDBAT, RFC 6817, with libtorrent's slow start)
and the peer's advertised window allow; the receiver delivers in order through read() and
advertises its free buffer, so an application that stops reading closes the window. Losses
are found by duplicate acks, selective acks (three packets received past a hole) and the
retransmission timeout (RTT estimate per BEP 29, backoff doubling, bounded retries).
datagrams() returns at most one ack however many packets arrived since the last call, so an
endpoint that calls it once per batch of received datagrams coalesces its acks.
"""

from __future__ import annotations

import logging
import random
from typing import Dict, List, Optional, Set, Tuple, Union

from sta.ledbat import TARGET_DELAY, Ledbat
from sta.utpcodec import (EXT_NONE, HALF_SEQ, HEADER, HEADER_SIZE, MAX_PACKET, PAYLOAD_SIZE,
                          SEQ_MASK, ST_DATA, ST_FIN, ST_RESET, ST_STATE, ST_SYN, TS_MASK,
                          VERSION, Packet, UtpError, encode_packet, is_utp_packet, micros,
                          packet_connection_id, packet_type, parse_packet, reset_for, seq_less)

__all__ = [
    "ST_DATA", "ST_FIN", "ST_STATE", "ST_RESET", "ST_SYN", "UtpError", "UtpSocket",
    "is_utp_packet", "packet_connection_id", "packet_type", "reset_for", "parse_packet",
    "encode_packet", "Packet", "HEADER_SIZE", "MAX_PACKET", "PAYLOAD_SIZE", "SEND_BUFFER",
    "RECV_WINDOW", "CONNECT_TIMEOUT", "TARGET_DELAY",
]

log = logging.getLogger(__name__)

# Bytes the application may have queued and not yet acked (libtorrent's send buffer watermark
# is 500 KiB by default; one MiB keeps a 200 ms path at 5 MB/s busy).
SEND_BUFFER = 1 << 20
# Receive buffer, advertised as wnd_size: in-order bytes not yet read plus the reorder buffer
# (libtorrent's recv_buffer default is 1 MiB as well).
RECV_WINDOW = 1 << 20
# Packets in flight at most: a full window of full packets (760), with room for short ones,
# and far below half the 16-bit sequence space that modulo comparisons need.
MAX_IN_FLIGHT = 1024
# Largest selective ack we send: 32 bytes cover the 256 packets after ack_nr + 1 (libtorrent
# caps its bitmask at the same size).
MAX_SACK_BYTES = 32
# Connect: three SYNs, each waiting twice as long as the one before, then give up after 3.5 s
# in all (libtorrent: three SYNs, utp_syn_resends = 2, 3 s apart), so a dialler falls back to
# TCP soon; a path whose round trip is over half a second only costs a duplicate SYN.
SYN_DELAYS = (0.5, 1.0, 2.0)
SYN_SENDS = len(SYN_DELAYS)
CONNECT_TIMEOUT = sum(SYN_DELAYS)
# libtorrent caps a backed-off timeout at one minute.
MAX_RTO = 60.0
# Timeouts in a row before the connection is dead. libtorrent allows 3 (utp_num_resends); we
# allow 5 (0.5 + 1 + 2 + 4 + 8 s at the least) since a Python process on a loaded host may stall.
MAX_TIMEOUTS = 5
# Duplicate acks, or packets selectively acked past a hole, that count the hole as lost
# (BEP 29 and libtorrent: 3, as TCP's fast retransmit).
DUP_ACK_THRESHOLD = 3
# The congestion window never grows past what the send buffer can fill.
MAX_CWND = SEND_BUFFER
# An ST_STATE goes out after this much silence from us, so NAT mappings stay open (many NATs
# drop a UDP mapping after 30 s); nothing heard for IDLE_TIMEOUT closes the connection (the
# peer wire protocol sends a keep-alive every 2 minutes, so a live peer is never that quiet).
KEEPALIVE_INTERVAL = 29.0
IDLE_TIMEOUT = 300.0
# A reader that freed this much of the window since we last advertised it gets an ST_STATE at
# once, so a sender stalled on a closed window resumes without waiting for its probe.
WINDOW_UPDATE_STEP = RECV_WINDOW // 4


class _Sent:
    """A packet of ours not yet acked: its payload and when and how often it went out."""

    __slots__ = ("kind", "payload", "sent_at", "sends", "fast")

    def __init__(self, kind: int, payload: bytes) -> None:
        self.kind = kind
        self.payload = payload
        self.sent_at = 0.0
        self.sends = 0
        self.fast = False  # already fast-retransmitted once


class UtpSocket:
    """One uTP connection's state: build it with ``connect`` or ``accept``."""

    def __init__(self, recv_id: int, send_id: int, seq_nr: int, now: float,
                 rng: random.Random) -> None:
        self.recv_id = recv_id
        self.send_id = send_id
        self.state = "connected"
        self.error: Optional[str] = None
        self._rng = rng
        self._seq = seq_nr                        # next sequence number we use
        self._acked = (seq_nr - 1) & SEQ_MASK     # ours that the peer acked, cumulatively
        self._out: Dict[int, _Sent] = {}          # sent or cut, not acked, by seq
        self._lost: Set[int] = set()              # of those, the ones to (re)send
        self._out_bytes = 0                       # payload held in _out
        self._inflight = 0                        # payload on the wire (in _out, not lost)
        self._chunks: List[bytes] = []            # queued by send(), not yet cut into packets
        self._chunk_pos = 0
        self._unsent = 0
        self._queued_total = 0                    # bytes ever queued by send()
        self._breaks: List[int] = []              # queued totals at which a packet must end
        self._fin_wanted = False
        self._fin_sent = False
        self._ack_nr = 0                          # last of the peer's packets received in order
        self._syn_seq: Optional[int] = None       # the peer's SYN (acceptor side)
        self._inbuf = bytearray()                 # in order, not yet read
        self._reorder: Dict[int, Tuple[int, bytes]] = {}
        self._reorder_bytes = 0
        self._ack_owed = False
        self._adv_wnd = RECV_WINDOW
        self._peer_wnd = RECV_WINDOW
        self._reply_micro = 0                     # timestamp difference we echo
        self._final: List[bytes] = []             # what a closed socket still has to say
        self._rto_at: Optional[float] = None
        self._last_recv = self._last_sent = now
        self._timeouts = 0
        self._dup_acks = 0
        self._probe = False
        self._cc = Ledbat(PAYLOAD_SIZE, MAX_CWND, now)
        self._loss_seq = self._acked
        self._retransmits = 0
        self._packets_lost = 0

    # --- construction -------------------------------------------------------------------

    @classmethod
    def connect(cls, now: float, *, rng: Optional[random.Random] = None) -> "UtpSocket":
        """The dialling side; its SYN is the first of datagrams()."""
        rng = rng or random.Random()
        recv_id = rng.randrange(SEQ_MASK + 1)
        sock = cls(recv_id, (recv_id + 1) & SEQ_MASK, rng.randrange(SEQ_MASK + 1), now, rng)
        sock.state = "syn_sent"
        seq = sock._next_seq()
        sock._out[seq] = _Sent(ST_SYN, b"")
        sock._lost.add(seq)
        return sock

    @classmethod
    def accept(cls, syn: bytes, now: float, *,
               rng: Optional[random.Random] = None) -> "UtpSocket":
        """The answering side, from a received SYN; its ST_STATE is the first of datagrams()."""
        pkt = parse_packet(syn)
        if pkt.kind != ST_SYN:
            raise UtpError("uTP packet of type %d does not open a connection" % pkt.kind)
        rng = rng or random.Random()
        sock = cls((pkt.connection_id + 1) & SEQ_MASK, pkt.connection_id,
                   rng.randrange(SEQ_MASK + 1), now, rng)
        sock._syn_seq = sock._ack_nr = pkt.seq_nr
        sock._peer_wnd = pkt.wnd_size
        sock._reply_micro = (micros(now) - pkt.timestamp) & TS_MASK
        sock._ack_owed = True
        return sock

    # --- the application's side ------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.state in ("connected", "closing")

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    def send_buffer_free(self) -> int:
        return max(0, SEND_BUFFER - self._unsent - self._out_bytes)

    def send(self, data: Union[bytes, bytearray, memoryview]) -> int:
        """Queue payload; returns how much fitted in the send buffer (0 when full or closing)."""
        if self.state not in ("connected", "syn_sent") or self._fin_wanted:
            return 0
        n = min(len(data), self.send_buffer_free())
        if n:
            self._chunks.append(bytes(data[:n]))
            self._unsent += n
            self._queued_total += n
        return n

    def end_packet(self) -> None:
        """What send() queued so far ends a packet: the next bytes start a new one, and the
        packet that ends here leaves without waiting for acks (no Nagle). The receiver's
        application then sees those bytes in a read of their own: libtransmission, which
        reads a uTP packet at a time, leaves what follows its peer's BitTorrent handshake in
        the same packet unread until another packet arrives."""
        end = self._queued_total
        if self._unsent and (not self._breaks or self._breaks[-1] != end):
            self._breaks.append(end)

    def read(self) -> bytes:
        """In-order payload received so far; reading reopens the advertised window."""
        if not self._inbuf:
            return b""
        data = bytes(self._inbuf)
        self._inbuf.clear()
        if self._window() - self._adv_wnd >= WINDOW_UPDATE_STEP and not self.closed:
            self._ack_owed = True
        return data

    def close(self) -> None:
        """Send ST_FIN once everything queued is sent; closed when the FIN is acked."""
        if self.state == "syn_sent":
            self._fail(None)
        elif self.state == "connected":
            self._fin_wanted = True
            self.state = "closing"

    def abort(self) -> None:
        """ST_RESET to the peer; closed now."""
        if self.state in ("connected", "closing"):
            self._final.append(encode_packet(
                ST_RESET, self.send_id, 0, self._reply_micro, 0, self._seq, self._ack_nr))
        self._fail(None)

    def stats(self) -> Dict[str, float]:
        cc = self._cc
        return {"cwnd": int(cc.cwnd), "rtt": cc.rtt or 0.0, "rto": cc.rto,
                "bytes_in_flight": self._inflight, "retransmits": self._retransmits,
                "packets_lost": self._packets_lost, "our_delay": cc.our_delay / 1e6,
                "peer_window": self._peer_wnd, "slow_start": cc.slow_start}

    # --- helpers -----------------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) & SEQ_MASK
        return seq

    def _window(self) -> int:
        return max(0, RECV_WINDOW - len(self._inbuf) - self._reorder_bytes)

    def _fail(self, error: Optional[str]) -> None:
        if self.state != "closed":
            if error:
                log.debug("uTP connection %d closed: %s", self.recv_id, error)
            self.state = "closed"
            self.error = error
        self._rto_at = None

    # --- receiving ---------------------------------------------------------------------------

    def receive(self, datagram: bytes, now: float) -> None:
        """Take one datagram addressed to this connection; garbage is ignored, never raised."""
        if self.state == "closed":
            return
        try:
            pkt = parse_packet(datagram)
        except UtpError:
            return
        kind = pkt.kind
        if kind == ST_RESET:
            if pkt.connection_id in (self.recv_id, self.send_id):
                self._fail("reset by peer")
            return
        if kind == ST_SYN:
            # Our ST_STATE was lost and the dialler sent its SYN again: answer it again.
            if pkt.connection_id == self.send_id and pkt.seq_nr == self._syn_seq:
                self._ack_owed = True
            return
        if pkt.connection_id != self.recv_id:
            return
        if self.state == "syn_sent":
            if pkt.ack_nr != (self._acked + 1) & SEQ_MASK or kind not in (ST_STATE, ST_DATA):
                return
            self.state = "closing" if self._fin_wanted else "connected"
            self._ack_nr = (pkt.seq_nr - 1) & SEQ_MASK
        self._last_recv = now
        self._reply_micro = (micros(now) - pkt.timestamp) & TS_MASK
        self._peer_wnd = pkt.wnd_size
        self._on_ack(pkt, now)
        if kind == ST_DATA or kind == ST_FIN:
            self._on_data(kind, pkt.seq_nr, pkt.payload, now)

    def _on_data(self, kind: int, seq: int, payload: memoryview, now: float) -> None:
        self._ack_owed = True
        ahead = (seq - self._ack_nr) & SEQ_MASK
        if ahead == 0 or ahead >= HALF_SEQ or ahead > MAX_IN_FLIGHT:
            return  # a duplicate (acked again: our ack may have been lost), or out of range
        if ahead > 1:
            if seq not in self._reorder and (len(self._inbuf) + self._reorder_bytes
                                             + len(payload) <= RECV_WINDOW):
                self._reorder[seq] = (kind, bytes(payload))
                self._reorder_bytes += len(payload)
            return
        # One packet of slack past the window lets a zero-window probe through.
        if len(self._inbuf) + self._reorder_bytes + len(payload) > RECV_WINDOW + PAYLOAD_SIZE:
            return
        self._ack_nr = seq
        self._deliver(kind, payload, now)
        reorder = self._reorder
        while reorder and self.state != "closed":
            nxt = (self._ack_nr + 1) & SEQ_MASK
            item = reorder.pop(nxt, None)
            if item is None:
                break
            self._reorder_bytes -= len(item[1])
            self._ack_nr = nxt
            self._deliver(item[0], item[1], now)

    def _deliver(self, kind: int, payload: Union[bytes, memoryview], now: float) -> None:
        if kind == ST_DATA:
            self._inbuf += payload
            return
        # ST_FIN: everything before it is delivered; ack it and end the connection.
        self._reorder.clear()
        self._reorder_bytes = 0
        self._final.append(self._state_packet(now))
        self._ack_owed = False
        self._fail(None)

    def _on_ack(self, pkt: Packet, now: float) -> None:
        ack = pkt.ack_nr
        advance = (ack - self._acked) & SEQ_MASK
        sent = (self._seq - 1 - self._acked) & SEQ_MASK
        before = self._inflight
        acked = 0
        if 0 < advance <= sent:
            out = self._out
            for i in range(1, advance + 1):
                seq = (self._acked + i) & SEQ_MASK
                sent_packet = out.pop(seq, None)
                if sent_packet is not None:
                    acked += self._retire(seq, sent_packet, now)
            self._acked = ack
            self._timeouts = self._dup_acks = 0
            self._rto_at = now + self._cc.rto if self._out else None
        elif advance == 0 and pkt.kind == ST_STATE and self._out:
            self._dup_acks += 1
            if self._dup_acks == DUP_ACK_THRESHOLD:
                self._mark_lost((ack + 1) & SEQ_MASK)
        if pkt.sack is not None and advance <= sent:
            acked += self._on_sack(ack, pkt.sack, sent, now)
        if acked:
            self._cc.on_ack(acked, before, pkt.timestamp_diff, now)
        if self._fin_sent and not self._out and self.state == "closing":
            self._fail(None)

    def _retire(self, seq: int, sent: _Sent, now: float) -> int:
        """Forget a packet the peer has; returns its payload size."""
        size = len(sent.payload)
        if seq in self._lost:
            self._lost.discard(seq)
        else:
            self._inflight -= size
        self._out_bytes -= size
        if sent.sends == 1:
            self._cc.rtt_sample(now - sent.sent_at)
        return size

    def _on_sack(self, ack: int, mask: bytes, sent: int, now: float) -> int:
        """Selective ack: bit i of byte i // 8 (least significant first) is ack_nr + 2 + 8k + i.
        A packet with DUP_ACK_THRESHOLD packets received after it is lost."""
        acked = received = 0
        out = self._out
        bits = int.from_bytes(mask, "little")
        for i in range(min(len(mask) * 8, sent) - 1, -2, -1):
            seq = (ack + 2 + i) & SEQ_MASK
            if i >= 0 and (bits >> i) & 1:
                received += 1
                sent_packet = out.pop(seq, None)
                if sent_packet is not None:
                    acked += self._retire(seq, sent_packet, now)
            elif received >= DUP_ACK_THRESHOLD and seq in out:
                self._mark_lost(seq)
        return acked

    def _mark_lost(self, seq: int) -> None:
        """A fast retransmit: send ``seq`` again, and halve cwnd once per window of data."""
        sent = self._out.get(seq)
        if sent is None or sent.fast or seq in self._lost or not sent.sends:
            return
        sent.fast = True
        self._lost.add(seq)
        self._inflight -= len(sent.payload)
        self._packets_lost += 1
        if seq_less(self._loss_seq, seq):
            self._cc.on_loss()
            self._loss_seq = (self._seq - 1) & SEQ_MASK

    # --- sending -----------------------------------------------------------------------------

    def datagrams(self, now: float) -> List[bytes]:
        """Everything to put on the wire now: retransmissions, new data as the congestion and
        the peer's windows allow, the FIN, and an ack (with a selective ack over holes)."""
        out, self._final = self._final, []
        if self.state == "closed":
            return out
        if self.state == "syn_sent":
            self._send_lost(now, out)
            return out
        if self._lost:
            self._send_lost(now, out)
        if self._unsent:
            self._send_new(now, out)
        if self._fin_wanted and not self._unsent and not self._fin_sent:
            self._fin_sent = True
            seq = self._next_seq()
            self._out[seq] = sent = _Sent(ST_FIN, b"")
            out.append(self._emit(seq, sent, now))
        if self._ack_owed:
            out.append(self._state_packet(now))
        return out

    def _send_lost(self, now: float, out: List[bytes]) -> None:
        limit = min(self._cc.cwnd, self._peer_wnd)
        acked = self._acked
        for seq in sorted(self._lost, key=lambda s: (s - acked) & SEQ_MASK):
            sent = self._out[seq]
            size = len(sent.payload)
            if self._inflight and self._inflight + size > limit:
                break
            self._lost.discard(seq)
            self._inflight += size
            self._retransmits += sent.sends > 0
            out.append(self._emit(seq, sent, now))

    def _send_new(self, now: float, out: List[bytes]) -> None:
        limit = min(self._cc.cwnd, self._peer_wnd)
        while self._unsent:
            size = min(self._unsent, PAYLOAD_SIZE)
            ends_here = False
            if self._breaks:
                to_break = self._breaks[0] - (self._queued_total - self._unsent)
                if to_break <= size:
                    size, ends_here = to_break, True
            if size < PAYLOAD_SIZE and self._out and not self._fin_wanted and not ends_here:
                break  # Nagle: a short packet waits until everything before it is acked
            if len(self._out) >= MAX_IN_FLIGHT:
                break
            if self._inflight + size > limit:
                if self._inflight or not self._probe:
                    if not self._inflight and self._rto_at is None:
                        self._rto_at = now + self._cc.rto  # the zero-window probe's timer
                    break
                self._probe = False
            if ends_here:
                self._breaks.pop(0)
            seq = self._next_seq()
            self._out[seq] = sent = _Sent(ST_DATA, self._take(size))
            self._out_bytes += size
            self._inflight += size
            out.append(self._emit(seq, sent, now))

    def _take(self, size: int) -> bytes:
        """The next ``size`` queued bytes, as one bytes object."""
        parts = []
        need = size
        chunks = self._chunks
        while need:
            chunk = chunks[0]
            pos = self._chunk_pos
            avail = len(chunk) - pos
            if avail <= need:
                parts.append(chunk[pos:] if pos else chunk)
                chunks.pop(0)
                self._chunk_pos = 0
                need -= avail
            else:
                parts.append(chunk[pos:pos + need])
                self._chunk_pos = pos + need
                need = 0
        self._unsent -= size
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _emit(self, seq: int, sent: _Sent, now: float) -> bytes:
        sent.sent_at = now
        sent.sends += 1
        self._last_sent = now
        if self._rto_at is None:
            self._rto_at = now + self._current_rto()
        kind = sent.kind
        wnd = self._adv_wnd = self._window()
        if kind != ST_SYN and not self._reorder:
            self._ack_owed = False
        cid = self.recv_id if kind == ST_SYN else self.send_id
        return HEADER.pack((kind << 4) | VERSION, EXT_NONE, cid, int(now * 1_000_000) & TS_MASK,
                           self._reply_micro, wnd, seq, self._ack_nr) + sent.payload

    def _state_packet(self, now: float) -> bytes:
        """ST_STATE: an ack carrying our window, with a selective ack when packets are held
        past a hole."""
        self._ack_owed = False
        self._last_sent = now
        wnd = self._adv_wnd = self._window()
        return encode_packet(ST_STATE, self.send_id, micros(now), self._reply_micro, wnd,
                             self._seq, self._ack_nr, sack=self._sack())

    def _sack(self) -> Optional[bytes]:
        if not self._reorder:
            return None
        first = (self._ack_nr + 2) & SEQ_MASK
        bits = 0
        for seq in self._reorder:
            i = (seq - first) & SEQ_MASK
            if i < MAX_SACK_BYTES * 8:
                bits |= 1 << i
        if not bits:
            return None
        return bits.to_bytes((bits.bit_length() + 31) // 32 * 4, "little")

    # --- time --------------------------------------------------------------------------------

    def _current_rto(self) -> float:
        if self.state == "syn_sent":
            syn = self._out[(self._acked + 1) & SEQ_MASK]
            return SYN_DELAYS[max(0, min(syn.sends, SYN_SENDS) - 1)]
        return min(self._cc.rto * 2 ** self._timeouts, MAX_RTO)

    def next_timer(self) -> Optional[float]:
        """When tick() is next due (None once closed)."""
        if self.state == "closed":
            return None
        due = self._last_recv + IDLE_TIMEOUT
        if self.state != "syn_sent":
            due = min(due, self._last_sent + KEEPALIVE_INTERVAL)
        if self._rto_at is not None:
            due = min(due, self._rto_at)
        return due

    def tick(self, now: float) -> None:
        """Retransmission timeout, zero-window probe, keepalive, connect and idle timeouts.
        What they want to send comes out of the next datagrams()."""
        if self.state == "closed":
            return
        if now - self._last_recv >= IDLE_TIMEOUT:
            self._fail("timed out")
            return
        if self._rto_at is not None and now >= self._rto_at:
            self._rto_at = None
            self._on_timeout(now)
            if self.state == "closed":
                return
        if self.state != "syn_sent" and now - self._last_sent >= KEEPALIVE_INTERVAL:
            self._ack_owed = True

    def _on_timeout(self, now: float) -> None:
        if self.state == "syn_sent":
            seq = (self._acked + 1) & SEQ_MASK
            if self._out[seq].sends >= SYN_SENDS:
                self._fail("connect timed out")
            else:
                self._lost.add(seq)
            return
        if not self._out:
            self._probe = bool(self._unsent)  # the peer's window is closed: probe it
            return
        if self._peer_wnd >= PAYLOAD_SIZE:  # a peer that says it is full is not lost
            self._timeouts += 1
            if self._timeouts > MAX_TIMEOUTS:
                self._fail("timed out")
                return
            self._cc.on_timeout()
            self._loss_seq = (self._seq - 1) & SEQ_MASK
        for seq, sent in self._out.items():
            if seq not in self._lost and sent.sends:
                self._lost.add(seq)
                self._packets_lost += 1
        self._inflight = 0
        self._rto_at = now + self._current_rto()
