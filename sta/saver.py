"""Saving a torrent's resume state off the event loop.

A save fsyncs the data files written since the last one and replaces the resume file atomically
(``storage.FileStorage.save``, ``resume.write_atomically``): a few to tens of milliseconds of
blocking calls. On the loop they would stall every other torrent's transfers, and ten torrents
that complete close together would stall them ten times, so ``StateSaver`` runs each save in a
worker thread. Requests made while a save runs fold into one more save after it (nothing is
lost: that save records everything verified up to its start), and ``idle`` lets the owner wait
for the last save before it closes the files. Crash safety is the storage's: each save itself
fsyncs the data before it records it, and saves of one storage never overlap.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any, Callable, Optional

__all__ = ["StateSaver"]

log = logging.getLogger(__name__)


class StateSaver:
    """Runs ``save`` in ``executor`` (None: the loop's default), one at a time, on request."""

    def __init__(self, loop: asyncio.AbstractEventLoop, save: Callable[[], None], name: str,
                 executor: Optional[Executor] = None) -> None:
        self._loop = loop
        self._save = save
        self._name = name
        self._executor = executor
        self._running: Optional["asyncio.Future[Any]"] = None
        self._again = False

    @property
    def busy(self) -> bool:
        """A save is running or due."""
        return self._running is not None

    def request(self) -> None:
        """Save soon in a worker thread; never blocks the loop."""
        if self._running is not None:
            self._again = True  # the running save may have started before the latest change
            return
        self._running = self._loop.run_in_executor(self._executor, self.save_now)
        self._running.add_done_callback(self._finished)

    def _finished(self, _future: "asyncio.Future[Any]") -> None:
        self._running = None
        if self._again:
            self._again = False
            self.request()

    async def idle(self) -> None:
        """Wait until no save is running or due."""
        while self._running is not None:
            await asyncio.shield(self._running)

    async def flush(self) -> None:
        """Save once more (in a worker thread) and wait for it and any save before it."""
        self.request()
        await self.idle()

    def save_now(self) -> None:
        """Save in the calling thread; a failure is logged, not raised (the data stays verified
        and is checked again on the next start)."""
        try:
            self._save()
        except Exception as exc:
            log.warning("%s: could not save resume state: %s", self._name, exc)
