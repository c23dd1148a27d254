"""Per-address limits of the tracker: which addresses count as one, and token buckets.

Every limit a client's address is held to (new torrents, uploads, connections, peers) is kept
per *address group*: an IPv4 address, or the /64 an IPv6 address is in (one host or one LAN
holds a whole /64 and picks addresses in it at will, so counting single IPv6 addresses would
limit nothing). A ``RateLimit`` is a token bucket per group: a burst at once, then a steady rate;
it takes its clock from the caller, so tests move time by hand.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Callable, Tuple

__all__ = ["address_group", "RateLimit", "MAX_TRACKED_ADDRESSES", "DEFAULT_INTERVAL"]

# BEP 3 leaves the announce interval to the tracker. opentracker and public trackers hand out
# 30 minutes; this tracker is made for labs, whose dashboard should show each peer's progress
# as of a minute ago rather than half an hour, and whose dead peers should leave answers within
# minutes. libtorrent and Transmission honour the interval (and "min interval"), so the load is
# what it says: 10,000 peers at 60 s are about 170 announces a second, under 2% of what
# bench_tracker.py measures on one core: the load every peer puts on the tracker. A big public deployment passes --interval 1800.
DEFAULT_INTERVAL = 60

# Address groups a RateLimit remembers; past this the least recently seen is forgotten (and
# starts again with a full burst). 100,000 groups cost about 15 MiB; an attacker with more
# addresses than that is held by the limits on all addresses together, not by these.
MAX_TRACKED_ADDRESSES = 100_000

# The prefix that counts as one IPv6 address: a /64 is the smallest network an IPv6 LAN gets.
IPV6_GROUP_PREFIX = 64


def address_group(ip: str) -> str:
    """The key per-address limits are kept under: ``ip`` itself for IPv4, its /64 for IPv6."""
    if ":" not in ip:
        return ip
    try:
        network = ipaddress.IPv6Network((ip, IPV6_GROUP_PREFIX), strict=False)
    except ValueError:
        return ip
    return f"{network.network_address}/{IPV6_GROUP_PREFIX}"


class RateLimit:
    """A token bucket per key: ``burst`` actions at once, then ``per_minute`` refilled.

    Not thread-safe: the caller holds its own lock (the store's) around ``allow``.
    """

    def __init__(self, burst: int, per_minute: float, clock: Callable[[], float],
                 max_keys: int = MAX_TRACKED_ADDRESSES) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("a rate limit needs a burst of at least 1 and a positive rate")
        self.burst = burst
        self.per_second = per_minute / 60.0
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: "OrderedDict[str, Tuple[float, float]]" = OrderedDict()

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False (and nothing taken) when its bucket is empty."""
        now = self.clock()
        tokens, stamp = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - stamp) * self.per_second)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def wait_seconds(self, key: str) -> float:
        """How long until ``key`` has a token again (0 when it has one now)."""
        now = self.clock()
        tokens, stamp = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - stamp) * self.per_second)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.per_second
