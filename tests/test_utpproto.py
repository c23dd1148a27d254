"""uTP connections (BEP 29) driven with datagrams and a fake clock: the handshake both ways,
byte streams through a lossy, reordering, duplicating channel, sequence numbers that wrap,
flow control, FIN and RESET, every timeout, LEDBAT's response to queuing delay, and a fuzzer
that shows receive() never raises on garbage."""

from __future__ import annotations

import heapq
import random
import struct
import unittest
from typing import List, Optional, Tuple

from sta import utpproto as U
from sta.ledbat import GAIN
from sta.utpcodec import HEADER, parse_packet


class FixedRandom(random.Random):
    """A Random whose randrange answers from a list first (connection ids, sequence numbers)."""

    def __new__(cls, *values: int) -> "FixedRandom":
        # random.Random.__new__ takes at most a seed on Python 3.10.
        return super().__new__(cls)  # type: ignore[call-arg]

    def __init__(self, *values: int) -> None:
        super().__init__(0)
        self.values = list(values)

    def randrange(self, *args, **kwargs):  # type: ignore[override]
        return self.values.pop(0) if self.values else super().randrange(*args, **kwargs)


class Channel:
    """One direction of a link: loss, duplication, a base delay, and random extra delay
    (which reorders), all from a seeded generator."""

    def __init__(self, rng: random.Random, loss: float = 0.0, duplicate: float = 0.0,
                 delay: float = 0.0, jitter: float = 0.0) -> None:
        self.rng, self.loss, self.duplicate = rng, loss, duplicate
        self.delay, self.jitter = delay, jitter
        self.queue: List[Tuple[float, int, bytes]] = []
        self.count = 0

    def put(self, datagram: bytes, now: float) -> None:
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            if self.rng.random() < self.loss:
                continue
            self.count += 1
            at = now + self.delay + self.rng.random() * self.jitter
            heapq.heappush(self.queue, (at, self.count, datagram))

    def due(self, now: float) -> List[bytes]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(heapq.heappop(self.queue)[2])
        return out

    def next_at(self) -> Optional[float]:
        return self.queue[0][0] if self.queue else None


class Pump:
    """Two sockets joined by two channels under one fake clock."""

    STEP = 0.001

    def __init__(self, seed: int = 1, a_rng: Optional[random.Random] = None,
                 b_rng: Optional[random.Random] = None, **link) -> None:
        self.rng = random.Random(seed)
        self.ab = Channel(self.rng, **link)
        self.ba = Channel(self.rng, **link)
        self.now = 100.0
        self.a = U.UtpSocket.connect(self.now, rng=a_rng or random.Random(seed + 1))
        self.b: Optional[U.UtpSocket] = None
        self.b_rng = b_rng or random.Random(seed + 2)
        self.to_b: List[bytes] = []  # what a sent, before b exists

    def exchange(self) -> bool:
        """One round: deliver what is due, collect what each side sends; True if anything
        moved."""
        moved = False
        for datagram in self.ab.due(self.now):
            moved = True
            if self.b is None:
                if U.packet_type(datagram) == U.ST_SYN:
                    self.b = U.UtpSocket.accept(datagram, self.now, rng=self.b_rng)
            else:
                self.b.receive(datagram, self.now)
        for datagram in self.ba.due(self.now):
            moved = True
            self.a.receive(datagram, self.now)
        for sock, channel in ((self.a, self.ab), (self.b, self.ba)):
            if sock is None:
                continue
            due = sock.next_timer()
            if due is not None and due <= self.now:
                sock.tick(self.now)
            for datagram in sock.datagrams(self.now):
                moved = True
                channel.put(datagram, self.now)
        return moved

    def advance(self, moved: bool) -> None:
        """Step the clock: a little after activity, else straight to the next event."""
        if moved:
            self.now += self.STEP
            return
        events = [t for t in (self.ab.next_at(), self.ba.next_at(), self.a.next_timer(),
                              self.b.next_timer() if self.b else None) if t is not None]
        self.now = max(self.now + self.STEP, min(events)) if events else self.now + 1.0

    def connect(self, limit: float = 10.0) -> None:
        end = self.now + limit
        while not (self.a.connected and self.b is not None and self.b.connected):
            if self.now > end or self.a.closed:
                raise AssertionError("no connection: %s %s" % (self.a.state, self.a.error))
            self.advance(self.exchange())

    def transfer(self, data: bytes, limit: float = 600.0, rounds: int = 200_000) -> bytes:
        """Send ``data`` from a to b, reading as it comes; returns what b read."""
        self.connect()
        assert self.b is not None
        got = bytearray()
        pos = 0
        end = self.now + limit
        for _ in range(rounds):
            if pos < len(data):
                pos += self.a.send(memoryview(data)[pos:pos + 65536])
            moved = self.exchange()
            got += self.b.read()
            if len(got) >= len(data) or self.now > end:
                break
            self.advance(moved)
        return bytes(got)

    def stream(self, seconds: float, read: bool = True, rounds: int = 100_000) -> int:
        """Keep a's send buffer full for ``seconds`` of fake time; returns the bytes b read."""
        assert self.b is not None
        chunk = bytes(65536)
        end = self.now + seconds
        got = 0
        for _ in range(rounds):
            if self.now >= end:
                break
            self.a.send(chunk)
            moved = self.exchange()
            if read:
                got += len(self.b.read())
            self.advance(moved)
        return got

    def run_until(self, done, limit: float, rounds: int = 100_000) -> None:
        """Exchange until ``done()`` or ``limit`` seconds of fake time have passed."""
        end = self.now + limit
        for _ in range(rounds):
            if done() or self.now > end:
                return
            self.advance(self.exchange())


def payload(size: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(4096)) * (size // 4096) + b"x" * (size % 4096)


def handshake(a_rng: random.Random, b_rng: random.Random) -> Tuple[U.UtpSocket, U.UtpSocket,
                                                                       bytes, bytes]:
    a = U.UtpSocket.connect(1.0, rng=a_rng)
    [syn] = a.datagrams(1.0)
    b = U.UtpSocket.accept(syn, 1.25, rng=b_rng)
    [state] = b.datagrams(1.25)
    a.receive(state, 1.5)
    return a, b, syn, state


def payloads_after_ack(sender: U.UtpSocket, receiver: U.UtpSocket,
                       datagrams: List[bytes]) -> List[bytes]:
    """Deliver ``datagrams`` to ``receiver``, its acks back; the payloads ``sender`` sends
    then."""
    for datagram in datagrams:
        receiver.receive(datagram, 2.1)
    for datagram in receiver.datagrams(2.1):
        sender.receive(datagram, 2.2)
    return [bytes(parse_packet(d).payload) for d in sender.datagrams(2.2)]


class HandshakeTests(unittest.TestCase):
    def test_dialler_receives_on_r_and_sends_on_r_plus_1_acceptor_the_reverse(self):
        a, b, syn, state = handshake(FixedRandom(1000, 500), FixedRandom(9000))
        self.assertEqual((a.recv_id, a.send_id), (1000, 1001))
        self.assertEqual((b.recv_id, b.send_id), (1001, 1000))
        self.assertEqual(U.packet_connection_id(syn), 1000)
        self.assertEqual(U.packet_connection_id(state), 1000)
        self.assertTrue(a.connected and b.connected)
        self.assertEqual((a.state, b.state), ("connected", "connected"))

    def test_connection_ids_wrap_at_16_bits(self):
        a, b, _, _ = handshake(FixedRandom(65535, 7), FixedRandom(8))
        self.assertEqual((a.recv_id, a.send_id, b.recv_id, b.send_id), (65535, 0, 0, 65535))
        self.assertTrue(a.connected)

    def test_syn_and_its_state_lay_out_the_fields_of_bep_29(self):
        a, b, syn, state = handshake(FixedRandom(0x1234, 0xBEEF), FixedRandom(0x4321))
        # type 4 (ST_SYN) in the high nibble, version 1 in the low, no extension.
        self.assertEqual(len(syn), 20)
        self.assertEqual(syn[0], 0x41)
        self.assertEqual(syn[1], 0)
        cid, ts, tsd, wnd, seq, ack = struct.unpack(">HIIIHH", syn[2:])
        self.assertEqual((cid, ts, tsd, wnd, seq), (0x1234, 1_000_000, 0, U.RECV_WINDOW, 0xBEEF))
        # The ST_STATE: type 2, the dialler's id, our clock, the delay we measured on the SYN
        # (0.25 s), acking the SYN's sequence number with the acceptor's own random one.
        self.assertEqual(len(state), 20)
        self.assertEqual(state[0], 0x21)
        self.assertEqual(state[1], 0)
        cid, ts, tsd, wnd, seq, ack = struct.unpack(">HIIIHH", state[2:])
        self.assertEqual((cid, ts, tsd, wnd, seq, ack),
                         (0x1234, 1_250_000, 250_000, U.RECV_WINDOW, 0x4321, 0xBEEF))

    def test_first_data_from_each_side_follows_the_handshake_numbers(self):
        a, b, _, _ = handshake(FixedRandom(10, 100), FixedRandom(200))
        a.send(b"hello")
        [data] = a.datagrams(2.0)
        head = HEADER.unpack_from(data)
        self.assertEqual((head[0] >> 4, head[2], head[6], head[7]), (U.ST_DATA, 11, 101, 199))
        b.receive(data, 2.1)
        self.assertEqual(b.read(), b"hello")
        b.send(b"world")
        [reply] = b.datagrams(2.2)
        head = HEADER.unpack_from(reply)
        self.assertEqual((head[0] >> 4, head[2], head[6], head[7]), (U.ST_DATA, 10, 200, 101))
        a.receive(reply, 2.3)
        self.assertEqual(a.read(), b"world")

    def test_acceptor_answers_a_repeated_syn_again(self):
        a = U.UtpSocket.connect(0.0, rng=FixedRandom(50, 60))
        [syn] = a.datagrams(0.0)
        b = U.UtpSocket.accept(syn, 0.0, rng=FixedRandom(70))
        b.datagrams(0.0)  # the ST_STATE is lost
        self.assertEqual(b.datagrams(0.5), [])
        b.receive(syn, 1.0)
        [state] = b.datagrams(1.0)
        a.receive(state, 1.0)
        self.assertTrue(a.connected)

    def test_accept_refuses_anything_but_a_syn(self):
        a, b, syn, state = handshake(random.Random(1), random.Random(2))
        with self.assertRaises(U.UtpError):
            U.UtpSocket.accept(state, 0.0)
        with self.assertRaises(U.UtpError):
            U.UtpSocket.accept(b"d1:ad2:id20:xxxxxxxxxxxxxxxxxxxxe1:q4:ping1:t2:aa1:y1:qe", 0.0)

    def test_dialler_ignores_an_ack_of_something_else(self):
        a = U.UtpSocket.connect(0.0, rng=FixedRandom(50, 60))
        a.datagrams(0.0)
        wrong = U.encode_packet(U.ST_STATE, 50, 0, 0, 1000, 5, 61)
        a.receive(wrong, 0.1)
        self.assertEqual(a.state, "syn_sent")


class StreamTests(unittest.TestCase):
    def check(self, size: int, **link) -> Pump:
        pump = Pump(**link)
        data = payload(size)
        got = pump.transfer(data)
        self.assertEqual(len(got), len(data))
        self.assertTrue(got == data, "stream corrupted")
        return pump

    def test_clean_link_delivers_the_stream_in_order(self):
        pump = self.check(2 << 20)
        self.assertEqual(pump.a.stats()["retransmits"], 0)

    def test_five_percent_loss_is_recovered(self):
        pump = self.check(1 << 20, loss=0.05, delay=0.01)
        self.assertGreater(pump.a.stats()["retransmits"], 0)

    def test_reordering_is_undone(self):
        self.check(1 << 20, delay=0.005, jitter=0.02)

    def test_duplicates_are_dropped(self):
        self.check(1 << 20, duplicate=0.1, delay=0.005)

    def test_loss_reordering_duplication_and_delay_together(self):
        for seed in (3, 4):
            with self.subTest(seed=seed):
                pump = Pump(seed=seed, loss=0.05, duplicate=0.05, delay=0.02, jitter=0.02)
                data = payload(512 << 10, seed)
                self.assertTrue(pump.transfer(data) == data)

    def test_sequence_numbers_wrap_past_65535(self):
        pump = Pump(a_rng=FixedRandom(4000, 65530), b_rng=FixedRandom(65500), loss=0.02)
        data = payload(300 * U.PAYLOAD_SIZE)  # 300 packets: both counters wrap
        self.assertTrue(pump.transfer(data) == data)

    def test_short_writes_wait_for_the_ack_and_go_as_one_packet(self):
        a, b, _, _ = handshake(random.Random(1), random.Random(2))
        a.send(b"m" * 100)
        [first] = a.datagrams(2.0)  # nothing in flight: a short packet goes at once
        for _ in range(10):
            a.send(b"n" * 100)
        self.assertEqual(a.datagrams(2.0), [])  # Nagle: short data waits for the ack
        b.receive(first, 2.1)
        for datagram in b.datagrams(2.1):
            a.receive(datagram, 2.2)
        [rest] = a.datagrams(2.2)
        self.assertEqual(len(rest), U.HEADER_SIZE + 1000)
        b.receive(rest, 2.3)
        self.assertEqual(b.read(), b"m" * 100 + b"n" * 1000)

    def test_end_packet_ends_a_packet_where_the_receiver_reads_the_bytes_before_alone(self):
        # The acceptor answers a BitTorrent handshake with its own (68 bytes) and its first
        # messages in one write. A receiver that reads a packet at a time (libtransmission)
        # must find the handshake's end at a packet's end, and what follows in later packets.
        a, b, _, state = handshake(random.Random(1), random.Random(2))
        b.send(b"h" * 68)
        b.end_packet()
        b.send(b"m" * 146)
        [first] = b.datagrams(2.0)
        self.assertEqual(bytes(parse_packet(first).payload), b"h" * 68)
        self.assertEqual(parse_packet(first).seq_nr, parse_packet(state).seq_nr)
        self.assertEqual(payloads_after_ack(b, a, [first]), [b"m" * 146])
        self.assertEqual(a.read(), b"h" * 68)

    def test_a_packet_cut_short_by_end_packet_leaves_without_waiting_for_acks(self):
        a, b, _, _ = handshake(random.Random(1), random.Random(2))
        a.send(b"k" * 96)
        [key] = a.datagrams(2.0)   # in flight, not acked
        a.send(b"h" * 68)
        a.end_packet()
        a.end_packet()             # a second mark at the same place is the same boundary
        a.send(b"m" * 10)
        [hs] = a.datagrams(2.0)    # the boundary's packet goes at once; the rest waits (Nagle)
        self.assertEqual(bytes(parse_packet(hs).payload), b"h" * 68)
        self.assertEqual(payloads_after_ack(a, b, [key, hs]), [b"m" * 10])

    def test_end_packet_splits_a_long_write_only_where_it_was_marked(self):
        a, b, _, _ = handshake(random.Random(1), random.Random(2))
        a.end_packet()             # nothing queued: no boundary
        a.send(b"x" * (U.PAYLOAD_SIZE + 100))
        a.end_packet()
        a.send(b"y" * 50)
        sizes = [len(parse_packet(d).payload) for d in a.datagrams(2.0)]
        self.assertEqual(sizes, [U.PAYLOAD_SIZE, 100])   # then "y" waits for the ack (Nagle)


class FlowControlTests(unittest.TestCase):
    def test_send_buffer_is_bounded(self):
        a = U.UtpSocket.connect(0.0, rng=random.Random(1))
        self.assertEqual(a.send(bytes(U.SEND_BUFFER - 10)), U.SEND_BUFFER - 10)
        self.assertEqual(a.send(b"x" * 100), 10)
        self.assertEqual(a.send(b"y"), 0)
        self.assertEqual(a.send_buffer_free(), 0)

    def test_window_closes_when_the_reader_stops_and_reopens_when_it_reads(self):
        pump = Pump(delay=0.01)
        pump.connect()
        assert pump.b is not None
        pump.stream(5.0, read=False)
        held = len(pump.b._inbuf)
        self.assertGreaterEqual(held, U.RECV_WINDOW - U.PAYLOAD_SIZE)
        self.assertLessEqual(held, U.RECV_WINDOW + U.PAYLOAD_SIZE)
        self.assertLess(pump.a.stats()["peer_window"], U.PAYLOAD_SIZE)
        self.assertEqual(pump.a.send_buffer_free(), 0)
        pump.stream(60.0, read=False)  # a long stall: probes, but no timeout
        self.assertTrue(pump.a.connected, pump.a.error)
        self.assertLessEqual(len(pump.b._inbuf), U.RECV_WINDOW + U.PAYLOAD_SIZE)
        first = len(pump.b.read())
        self.assertGreater(pump.stream(2.0), 4 * U.RECV_WINDOW)  # flowing again at once
        self.assertGreater(first, 0)

    def test_stalled_stream_keeps_its_bytes_in_order(self):
        pump = Pump(delay=0.01, loss=0.01)
        data = payload(3 << 20)
        pump.connect()
        assert pump.b is not None
        got = bytearray()
        pos = 0
        for step in range(400):
            pos += pump.a.send(memoryview(data)[pos:pos + 65536])
            moved = pump.exchange()
            if step % 100 > 60:  # the reader pauses now and then
                got += pump.b.read()
            pump.advance(moved)
        pump.run_until(lambda: False, 0.0)
        while len(got) < len(data) and pump.now < 1000:
            pos += pump.a.send(memoryview(data)[pos:pos + 65536])
            moved = pump.exchange()
            got += pump.b.read()
            pump.advance(moved)
        self.assertTrue(bytes(got) == data)


class CloseTests(unittest.TestCase):
    def test_fin_comes_after_all_data_and_both_sides_close_cleanly(self):
        pump = Pump(loss=0.05, delay=0.01, jitter=0.01)
        data = payload(200_000)
        pump.connect()
        assert pump.b is not None
        pump.a.send(data)
        pump.a.close()
        self.assertEqual(pump.a.state, "closing")
        self.assertEqual(pump.a.send(b"more"), 0)
        got = bytearray()
        b = pump.b

        def done() -> bool:
            got.extend(b.read())
            return pump.a.closed and b.closed
        pump.run_until(done, 60.0)
        self.assertTrue(bytes(got) == data)
        self.assertEqual((pump.a.state, pump.a.error, b.state, b.error),
                         ("closed", None, "closed", None))

    def test_fin_received_out_of_order_waits_for_the_data_before_it(self):
        a, b, _, _ = handshake(random.Random(1), random.Random(2))
        a.send(b"one")
        [d1] = a.datagrams(2.0)
        a.close()
        [fin] = a.datagrams(2.0)
        b.receive(fin, 2.1)
        self.assertFalse(b.closed)
        b.receive(d1, 2.2)
        self.assertTrue(b.closed)
        self.assertIsNone(b.error)
        self.assertEqual(b.read(), b"one")
        final = b.datagrams(2.2)  # the ack of the FIN
        self.assertEqual([U.packet_type(d) for d in final], [U.ST_STATE])
        a.receive(final[0], 2.3)
        self.assertTrue(a.closed)
        self.assertIsNone(a.error)

    def test_abort_resets_the_peer(self):
        a, b, _, _ = handshake(random.Random(1), random.Random(2))
        a.abort()
        self.assertTrue(a.closed)
        [reset] = a.datagrams(2.0)
        self.assertEqual(U.packet_type(reset), U.ST_RESET)
        self.assertEqual(U.packet_connection_id(reset), b.recv_id)
        self.assertEqual(a.datagrams(2.0), [])
        b.receive(reset, 2.1)
        self.assertEqual((b.state, b.error), ("closed", "reset by peer"))
        self.assertIsNone(b.next_timer())

    def test_reset_from_the_endpoint_for_a_stray_closes_the_dialler(self):
        a = U.UtpSocket.connect(0.0, rng=FixedRandom(300, 400))
        [syn] = a.datagrams(0.0)
        a.receive(U.reset_for(syn, 0.1), 0.1)
        self.assertEqual(a.error, "reset by peer")

    def test_reset_with_another_connection_id_is_ignored(self):
        a, b, _, _ = handshake(FixedRandom(300, 400), FixedRandom(500))
        a.receive(U.encode_packet(U.ST_RESET, 999, 0, 0, 0, 0, 0), 2.0)
        self.assertTrue(a.connected)


class TimeoutTests(unittest.TestCase):
    def test_unanswered_syn_gives_up_within_the_connect_timeout(self):
        a = U.UtpSocket.connect(10.0, rng=random.Random(1))
        now, syns = 10.0, []
        for _ in range(100):
            syns += [now for d in a.datagrams(now) if U.packet_type(d) == U.ST_SYN]
            due = a.next_timer()
            if due is None:
                break
            now = due
            a.tick(now)
        self.assertEqual((a.state, a.error), ("closed", "connect timed out"))
        self.assertEqual(syns, [10.0, 10.5, 11.5])  # backing off
        self.assertEqual(now - 10.0, U.CONNECT_TIMEOUT)

    def test_a_peer_that_vanishes_mid_transfer_times_out(self):
        pump = Pump(delay=0.01)
        pump.connect()
        pump.stream(1.0)
        pump.ab.loss = pump.ba.loss = 1.0
        start = pump.now
        pump.run_until(lambda: pump.a.closed, 600.0)
        self.assertEqual(pump.a.error, "timed out")
        # 0.5 + 1 + 2 + 4 + 8 + 16 s with the RTO doubling: well under a minute.
        self.assertLess(pump.now - start, 60.0)

    def test_idle_connection_sends_keepalives_and_a_silent_peer_times_out(self):
        a, b, _, _ = handshake(random.Random(1), random.Random(2))
        now, keepalives = 2.0, 0
        for _ in range(1000):
            keepalives += len(a.datagrams(now))
            due = a.next_timer()
            if due is None:
                break
            now = due
            a.tick(now)
        self.assertEqual(a.error, "timed out")
        self.assertAlmostEqual(now, 1.5 + U.IDLE_TIMEOUT)
        self.assertGreaterEqual(keepalives, int(U.IDLE_TIMEOUT // U.KEEPALIVE_INTERVAL))

    def test_keepalives_keep_a_quiet_connection_open(self):
        pump = Pump()
        pump.connect()
        pump.run_until(lambda: False, 3 * U.IDLE_TIMEOUT)
        self.assertTrue(pump.a.connected and pump.b is not None and pump.b.connected)


class LedbatTests(unittest.TestCase):
    def test_cwnd_grows_without_queuing_delay(self):
        pump = Pump(delay=0.02)
        pump.connect()
        start = pump.a.stats()["cwnd"]
        pump.stream(3.0)
        self.assertGreater(pump.a.stats()["cwnd"], 10 * start)

    def test_cwnd_shrinks_when_queuing_delay_exceeds_the_target(self):
        pump = Pump(delay=0.02)
        pump.connect()
        pump.stream(3.0)  # the base delay is learnt on the empty path
        grown = pump.a.stats()["cwnd"]
        pump.ab.delay += 0.2  # a queue of 200 ms builds on the way to b
        pump.stream(10.0)
        stats = pump.a.stats()
        self.assertAlmostEqual(stats["our_delay"], 0.2, delta=0.02)
        # LEDBAT takes off GAIN bytes per round trip at twice the target: ~40 round trips.
        self.assertLess(stats["cwnd"], grown - 20 * GAIN)
        self.assertTrue(pump.a.connected)

    def test_every_packet_echoes_the_delay_measured_on_the_last_one_received(self):
        a, b, _, _ = handshake(random.Random(1), random.Random(2))
        a.send(b"x")
        [data] = a.datagrams(3.0)
        b.receive(data, 3.04)
        [ack] = b.datagrams(3.05)
        self.assertEqual(parse_packet(ack).timestamp_diff, 40_000)


class FuzzTests(unittest.TestCase):
    def test_receive_never_raises_on_mutated_datagrams(self):
        rng = random.Random(99)
        pump = Pump(seed=5)
        pump.connect()
        assert pump.b is not None
        pump.a.send(payload(50_000))
        samples = pump.a.datagrams(pump.now) + pump.b.datagrams(pump.now)
        samples.append(U.encode_packet(U.ST_STATE, pump.b.send_id, 0, 0, 9, 1, 2,
                                       sack=b"\xff" * 8))
        for i in range(3000):
            datagram = bytearray(rng.choice(samples))
            for _ in range(rng.randint(1, 6)):
                if not datagram:
                    break
                where = rng.randrange(len(datagram))
                action = rng.random()
                if action < 0.6:
                    datagram[where] = rng.getrandbits(8)
                elif action < 0.8:
                    del datagram[where:]
                else:
                    datagram[where:where] = bytes(rng.getrandbits(8) for _ in range(3))
            target = pump.a if i % 2 else pump.b
            target.receive(bytes(datagram), pump.now + i * 0.001)
            target.datagrams(pump.now + i * 0.001)
            target.tick(pump.now + i * 0.001)
            U.is_utp_packet(bytes(datagram))


if __name__ == "__main__":
    unittest.main()
