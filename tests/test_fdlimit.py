"""Tests for sta.fdlimit: the open-file limit is raised towards what the node needs, never
lowered, and a limit that stays too low is reported in one line. A fake resource module stands
in for the process's real limits."""

from __future__ import annotations

import unittest

from sta import fdlimit
from sta.connlimits import MAX_CONNECTIONS


class FakeResource:
    RLIMIT_NOFILE = 7
    RLIM_INFINITY = -1

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which: int):
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits) -> None:
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = tuple(limits)


class RaiseTests(unittest.TestCase):
    def test_the_need_covers_every_connection(self):
        self.assertGreater(fdlimit.files_needed(), MAX_CONNECTIONS)

    def test_a_low_soft_limit_is_raised_to_the_need_under_the_hard_limit(self):
        res = FakeResource(1024, 1 << 20)
        limit, warning = fdlimit.raise_open_file_limit(4000, resource=res)
        self.assertEqual((limit, warning), (4000, None))
        self.assertEqual(res.limits, (4000, 1 << 20))

    def test_an_unlimited_hard_limit_allows_the_need(self):
        res = FakeResource(256, FakeResource.RLIM_INFINITY)
        self.assertEqual(fdlimit.raise_open_file_limit(3000, resource=res), (3000, None))

    def test_a_high_soft_limit_is_never_lowered(self):
        res = FakeResource(65536, 1 << 20)
        self.assertEqual(fdlimit.raise_open_file_limit(3000, resource=res), (65536, None))
        self.assertEqual(res.limits, (65536, 1 << 20))

    def test_a_hard_limit_below_the_need_is_reached_and_reported(self):
        res = FakeResource(256, 1024)
        limit, warning = fdlimit.raise_open_file_limit(3000, resource=res)
        self.assertEqual(limit, 1024)
        self.assertIn("ulimit -n 3000", warning)
        self.assertNotIn("\n", warning)

    def test_a_refused_raise_keeps_the_old_limit_and_reports_it(self):
        res = FakeResource(1024, 1 << 20, refuse=True)
        limit, warning = fdlimit.raise_open_file_limit(3000, resource=res)
        self.assertEqual(limit, 1024)
        self.assertIn("open-file limit is 1024", warning)

    def test_the_real_limit_afterwards_is_at_least_what_it_was(self):
        try:
            import resource
        except ImportError:  # Windows: nothing to raise, and nothing reported
            self.assertEqual(fdlimit.raise_open_file_limit(10), (None, None))
            return
        before = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, before)
        limit, _ = fdlimit.raise_open_file_limit()
        self.assertEqual(limit, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.assertGreaterEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[0], before[0])


if __name__ == "__main__":
    unittest.main()
