"""LEDBAT congestion control (RFC 6817, as BEP 29 and libtorrent apply it) and the RTT
estimator of BEP 29, for uTP (``sta.utpproto``). Pure arithmetic: the caller passes the time.

The congestion window grows by at most GAIN bytes per round trip, scaled by how far the
queuing delay is under TARGET_DELAY, and shrinks in proportion when the delay is over it, so a
uTP transfer yields to TCP and to interactive traffic sharing the bottleneck. The queuing delay
is the one-way delay the peer measured for our packets (its timestamp difference) minus the
least such delay seen in the last few minutes (the base delay: the path with empty queues).
Like libtorrent it starts in slow start (cwnd grows by the bytes acked, doubling per round
trip) and leaves it at the first sign of queuing delay, on loss or past ssthresh.
"""

from __future__ import annotations

from typing import List, Optional

__all__ = ["Ledbat", "TARGET_DELAY", "GAIN", "LOSS_FACTOR", "MIN_RTO", "INITIAL_RTO",
           "BASE_DELAY_BUCKETS", "BASE_DELAY_STEP"]

TS_MASK = 0xFFFFFFFF
HALF_TS = 0x80000000
# RFC 6817 and BEP 29: target queuing delay 100 ms (in the header's microseconds).
TARGET_DELAY = 100_000
# Most bytes cwnd grows by per round trip with no queuing delay (libtorrent's gain_factor).
GAIN = 3000.0
# cwnd is multiplied by this on loss (BEP 29 since 2012: 0.5, as TCP).
LOSS_FACTOR = 0.5
# RFC 6817's INIT_CWND: two full packets.
INITIAL_PACKETS = 2
# The base delay is the least one-way delay over this many one-minute buckets: ~2 minutes
# follows clock drift and route changes (RFC 6817 keeps 10; libtorrent longer still).
BASE_DELAY_BUCKETS = 2
BASE_DELAY_STEP = 60.0
# BEP 29: rto = max(rtt + 4 * rtt_var, 500 ms); 1 s before the first sample (as TCP's RFC 6298).
MIN_RTO = 0.5
INITIAL_RTO = 1.0


def wrap_less(a: int, b: int) -> bool:
    """a < b for 32-bit timestamps that wrap."""
    return a != b and ((b - a) & TS_MASK) < HALF_TS


class Ledbat:
    """One connection's congestion window (bytes), delay estimate and retransmission timeout."""

    def __init__(self, mss: int, max_cwnd: int, now: float) -> None:
        self.mss = mss
        self.max_cwnd = float(max_cwnd)
        self.cwnd = float(INITIAL_PACKETS * mss)
        self.ssthresh = 0.0  # 0: none yet
        self.slow_start = True
        self.our_delay = 0  # the last queuing delay, microseconds
        self.rtt: Optional[float] = None
        self.rtt_var = 0.0
        self.rto = INITIAL_RTO
        self._history: List[int] = []
        self._step_at = now

    def rtt_sample(self, sample: float) -> None:
        """BEP 29: rtt and rtt_var smoothed as TCP's (1/8, 1/4)."""
        if self.rtt is None:
            self.rtt, self.rtt_var = sample, sample / 2
        else:
            self.rtt_var += (abs(self.rtt - sample) - self.rtt_var) / 4
            self.rtt += (sample - self.rtt) / 8
        self.rto = max(MIN_RTO, self.rtt + 4 * self.rtt_var)

    def on_ack(self, acked: int, in_flight: int, delay_sample: int, now: float) -> None:
        """``acked`` bytes newly acked out of ``in_flight`` (before the ack), with the peer's
        timestamp difference. cwnd grows only while it, not the application, limits the rate
        (as libtorrent); queuing delay over the target shrinks it in any case (RFC 6817)."""
        delay = (delay_sample - self._base_delay(delay_sample, now)) & TS_MASK
        if delay >= HALF_TS:
            delay = 0
        self.our_delay = delay
        if delay >= TARGET_DELAY and self.slow_start:
            self.ssthresh = self.cwnd / 2
            self.slow_start = False
        gain = GAIN * acked / max(in_flight, acked) * (TARGET_DELAY - delay) / TARGET_DELAY
        if gain > 0 and in_flight + self.mss <= self.cwnd:
            return  # the application, not cwnd, limits the rate: no reason to grow
        if self.slow_start:
            if self.ssthresh and self.cwnd + acked > self.ssthresh:
                self.slow_start = False
            else:
                gain = max(float(acked), gain)
        self.cwnd = min(max(self.cwnd + gain, float(self.mss)), self.max_cwnd)

    def on_loss(self) -> None:
        """A packet was lost (fast retransmit): halve cwnd, leave slow start."""
        self.cwnd = max(self.cwnd * LOSS_FACTOR, float(self.mss))
        self.ssthresh = self.cwnd
        self.slow_start = False

    def on_timeout(self) -> None:
        """Nothing acked for an RTO: one packet, then slow start up to ssthresh (libtorrent)."""
        self.cwnd = float(self.mss)
        self.slow_start = True

    def _base_delay(self, sample: int, now: float) -> int:
        hist = self._history
        if not hist or now >= self._step_at:
            hist.append(sample)
            del hist[:-BASE_DELAY_BUCKETS]
            self._step_at = now + BASE_DELAY_STEP
        elif wrap_less(sample, hist[-1]):
            hist[-1] = sample
        base = hist[0]
        for value in hist:
            if wrap_less(value, base):
                base = value
        return base
