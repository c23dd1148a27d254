"""The mainline DHT (BEP 5) as a peer source for a node's torrents.

The session owns one DHT node (dht.py) on the UDP port with the peer port's number, and this
scheduler: each torrent it is given gets a `get_peers` lookup soon after it starts, and again
every DHT_REANNOUNCE seconds (sooner while it has no peer at all: after DHT_FIRST_RETRY
seconds, doubling up to DHT_RETRY); the peers found go
to the torrent through its one peer-source call, and each lookup is followed by an announce of
our peer port. Private torrents (BEP 27) are never given to it: their peers come from their
trackers only. The time comes from the caller's tick; lookups run as background tasks, a few at
a time.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

log = logging.getLogger(__name__)

# A torrent's lookup and announce are repeated this often: libtorrent's dht_announce_interval
# is 15 minutes, and announced peers expire from the nodes after 30.
DHT_REANNOUNCE = 15 * 60.0
# ... and while the torrent has no peer (a magnet link with nothing but its info hash has no
# other way to find one), after this many seconds, doubling each time up to DHT_RETRY: two
# nodes that start together may each look up before the other's announce is stored.
DHT_FIRST_RETRY = 10.0
DHT_RETRY = 60.0
# The first lookup waits this long at most (a random share of it), so that torrents added
# together do not all look up in the same second.
DHT_FIRST_DELAY = 2.0
# Lookups running at once, for all torrents: each keeps up to three queries in flight.
MAX_PARALLEL_LOOKUPS = 2

Address = Tuple[str, int]


class DhtDiscovery:
    """``node`` has ``get_peers(info_hash)`` and ``announce(info_hash, port)`` (dht.DhtNode);
    ``torrent_for(info_hash)`` gives the torrent (or stand-in) now holding that info hash;
    ``spawn`` runs a coroutine in the background; ``port()`` is our peer port."""

    def __init__(self, node: Any, torrent_for: Callable[[bytes], Optional[Any]],
                 spawn: Callable[[Awaitable[Any]], Any], port: Callable[[], int],
                 rng: Optional[random.Random] = None) -> None:
        self.node = node
        self._torrent_for = torrent_for
        self._spawn = spawn
        self._port = port
        self._rng = rng or random.Random()
        self._due: Dict[bytes, float] = {}
        self._running: Set[bytes] = set()
        self._retries: Dict[bytes, int] = {}  # lookups in a row that found no peer

    def add(self, info_hash: bytes, now: float) -> None:
        self._due[info_hash] = now + self._rng.uniform(0.0, DHT_FIRST_DELAY)

    def remove(self, info_hash: bytes) -> None:
        self._due.pop(info_hash, None)
        self._retries.pop(info_hash, None)

    def status(self) -> Dict[str, int]:
        """For the node's statistics: nodes known, torrents looked up."""
        return {"dht_nodes": self.node.node_count(), "dht_torrents": len(self._due)}

    def tick(self, now: float) -> None:
        """Start the lookups that are due, a few at a time."""
        for info_hash, due in sorted(self._due.items(), key=lambda item: item[1]):
            if len(self._running) >= MAX_PARALLEL_LOOKUPS or due > now:
                break
            if info_hash in self._running:
                continue
            self._running.add(info_hash)
            self._due[info_hash] = now + DHT_REANNOUNCE
            self._spawn(self._lookup(info_hash, now))

    async def _lookup(self, info_hash: bytes, now: float) -> None:
        try:
            peers: List[Address] = await self.node.get_peers(info_hash)
            torrent = self._torrent_for(info_hash)
            if torrent is None or info_hash not in self._due:
                return
            if peers:
                log.info("%s: the DHT gave %d peers", torrent.name, len(peers))
                torrent.add_peers(peers, "dht")
            elif not torrent.peers:
                retries = self._retries.get(info_hash, 0)
                self._retries[info_hash] = retries + 1
                self._due[info_hash] = now + min(DHT_RETRY, DHT_FIRST_RETRY * 2 ** retries)
            if peers or torrent.peers:
                self._retries.pop(info_hash, None)
            await self.node.announce(info_hash, self._port())
        except Exception as exc:  # a failed lookup is retried at the next due time
            log.debug("DHT lookup failed: %r", exc)
        finally:
            self._running.discard(info_hash)

    async def close(self) -> None:
        """Stop the DHT node (it saves its id and nodes)."""
        await self.node.stop()


async def start_dht(bootstrap: List[Address], state_dir: str, host: str, port: int,
                    torrent_for: Callable[[bytes], Optional[Any]],
                    spawn: Callable[[Awaitable[Any]], Any],
                    endpoint: Any = None) -> Optional[DhtDiscovery]:
    """A DHT node on UDP ``port`` (the peer port's number) and its scheduler; None, with one
    warning, when the port cannot be had (another STA on this machine, `sta dht`).
    ``endpoint``: the UDP socket the node shares with uTP (utp.UtpEndpoint: it sends through
    ``endpoint.send`` and the endpoint hands it every bencoded datagram); None: its own."""
    from .dht import STATE_FILE, DhtError, DhtNode  # loaded only by nodes that use a DHT
    node = DhtNode(bootstrap=bootstrap, state_path=os.path.join(state_dir, STATE_FILE))
    try:
        await node.start(host, port, sender=endpoint)
        if endpoint is not None:
            endpoint.dht = node.datagram_received
            node.address = (host, port)
    except (OSError, DhtError) as exc:
        log.warning("no DHT: cannot use UDP port %d (%s); peers come from trackers and "
                    "--peer only", port, exc)
        return None
    log.info("DHT node on UDP port %d, %d nodes known", port, node.node_count())
    return DhtDiscovery(node, torrent_for, spawn, lambda: port)
