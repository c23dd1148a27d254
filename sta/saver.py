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
import threading
from concurrent.futures import Executor
from typing import Callable, Optional

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
        self._lock = threading.Lock()   # _active and _again, shared with the worker thread
        self._active = False            # a worker is saving, or about to
        self._again = False             # a request came while it saved: it saves once more
        self._future: Optional["asyncio.Future[None]"] = None

    @property
    def busy(self) -> bool:
        """A save is running or due."""
        with self._lock:
            return self._active

    def request(self) -> None:
        """Save soon in a worker thread; never blocks the loop."""
        with self._lock:
            if self._active:
                self._again = True  # the running save may have started before the latest change
                return
            self._active = True
        self._future = self._loop.run_in_executor(self._executor, self._save_rounds)

    def _save_rounds(self) -> None:
        """In the worker: save until no request came during the last save."""
        while True:
            self.save_now()
            with self._lock:
                if not self._again:
                    self._active = False  # before the future is done: a waiter never spins
                    return
                self._again = False

    async def idle(self) -> None:
        """Wait until no save is running or due."""
        while self.busy and self._future is not None:
            await asyncio.shield(self._future)

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
