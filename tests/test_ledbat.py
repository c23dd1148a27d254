"""LEDBAT's window arithmetic with plain numbers: growth under the target delay, shrinking
over it, slow start and its end, loss and timeout, the base delay, and BEP 29's RTO."""

from __future__ import annotations

import unittest

from sta.ledbat import GAIN, MIN_RTO, TARGET_DELAY, Ledbat

MSS = 1000


def saturated(cc: Ledbat) -> int:
    """Bytes in flight that fill the window (so cwnd may change)."""
    return int(cc.cwnd)


class LedbatTests(unittest.TestCase):
    def test_slow_start_grows_by_the_bytes_acked(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        cc.cwnd = before = 20.0 * MSS  # large enough that the linear gain is the smaller
        cc.on_ack(MSS, saturated(cc), 5000, 0.0)
        self.assertEqual(cc.cwnd, before + MSS)
        self.assertTrue(cc.slow_start)

    def test_queuing_delay_over_target_ends_slow_start_and_shrinks_cwnd(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        cc.cwnd = 50.0 * MSS
        cc.on_ack(MSS, saturated(cc), 10_000, 0.0)  # the base delay: 10 ms
        before = cc.cwnd
        cc.on_ack(MSS, saturated(cc), 10_000 + 2 * TARGET_DELAY, 1.0)
        self.assertFalse(cc.slow_start)
        self.assertLess(cc.cwnd, before)
        self.assertEqual(cc.our_delay, 2 * TARGET_DELAY)

    def test_growth_past_slow_start_is_at_most_gain_per_window(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        cc.slow_start = False
        cc.cwnd = 20.0 * MSS
        for _ in range(20):  # one window's worth of acks, no queuing delay
            cc.on_ack(MSS, saturated(cc), 0, 0.0)
        self.assertLessEqual(cc.cwnd, 20 * MSS + GAIN)
        self.assertGreater(cc.cwnd, 20 * MSS + GAIN * 0.9)

    def test_cwnd_does_not_grow_when_the_application_limits_the_rate(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        before = cc.cwnd
        cc.on_ack(100, 100, 0, 0.0)
        self.assertEqual(cc.cwnd, before)

    def test_queuing_delay_shrinks_cwnd_even_when_the_application_limits_the_rate(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        cc.cwnd = 50.0 * MSS
        cc.on_ack(100, 100, 0, 0.0)
        cc.on_ack(100, 100, 2 * TARGET_DELAY, 1.0)
        self.assertLess(cc.cwnd, 50.0 * MSS)

    def test_cwnd_never_falls_below_one_packet(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        cc.on_ack(MSS, saturated(cc), 0, 0.0)
        for i in range(100):
            cc.on_ack(MSS, saturated(cc), 10 * TARGET_DELAY, float(i))
        self.assertEqual(cc.cwnd, MSS)

    def test_loss_halves_and_timeout_resets_to_one_packet(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        cc.cwnd = 40.0 * MSS
        cc.on_loss()
        self.assertEqual((cc.cwnd, cc.ssthresh, cc.slow_start), (20.0 * MSS, 20.0 * MSS, False))
        cc.on_timeout()
        self.assertEqual((cc.cwnd, cc.slow_start), (MSS, True))

    def test_slow_start_stops_at_ssthresh(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        cc.ssthresh = 2.5 * MSS
        cc.on_ack(MSS, saturated(cc), 0, 0.0)
        self.assertFalse(cc.slow_start)

    def test_base_delay_is_the_least_sample_and_wraps(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        cc.on_ack(1, 1, 0xFFFFFF00, 0.0)
        cc.on_ack(1, 1, 0x00000100, 1.0)  # 512 us later, past the wrap
        self.assertEqual(cc.our_delay, 0x200)
        cc.on_ack(1, 1, 0xFFFFFE00, 2.0)  # a new least
        self.assertEqual(cc.our_delay, 0)

    def test_base_delay_forgets_old_minima(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        cc.on_ack(1, 1, 1000, 0.0)
        for minute in range(1, 4):  # the path got slower for good
            cc.on_ack(1, 1, 50_000, minute * 60.0)
        self.assertEqual(cc.our_delay, 0)

    def test_rto_follows_bep_29_with_a_500_ms_floor(self):
        cc = Ledbat(MSS, 1 << 20, 0.0)
        self.assertEqual(cc.rto, 1.0)
        cc.rtt_sample(0.01)
        self.assertEqual(cc.rto, MIN_RTO)
        cc.rtt_sample(1.0)
        self.assertGreater(cc.rto, cc.rtt + 3 * cc.rtt_var)
        self.assertAlmostEqual(cc.rto, cc.rtt + 4 * cc.rtt_var)


if __name__ == "__main__":
    unittest.main()
