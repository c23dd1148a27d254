"""saver.py: resume saves in a worker thread, one at a time, requests folded, waited for."""

from __future__ import annotations

import asyncio
import threading
import unittest
from typing import Any, Callable, List

from sta.saver import StateSaver

# Every wait of these tests: far longer than a save of the fakes takes.
DEADLINE = 10.0


class FakeSave:
    """A save that records its thread and, while ``hold`` is clear, waits for it."""

    def __init__(self) -> None:
        self.threads: List[int] = []
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.fail = False

    def __call__(self) -> None:
        self.threads.append(threading.get_ident())
        self.started.set()
        if not self.hold.wait(DEADLINE):
            raise AssertionError("the test never released the save")
        if self.fail:
            raise OSError(28, "No space left on device")


def run(body: Callable[[asyncio.AbstractEventLoop], Any]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(body(asyncio.get_running_loop()), DEADLINE)
    return asyncio.run(main())


class StateSaverTest(unittest.TestCase):
    def test_a_requested_save_runs_in_a_worker_thread_and_is_waited_for(self) -> None:
        save = FakeSave()
        save.hold.clear()

        async def body(loop: asyncio.AbstractEventLoop) -> None:
            saver = StateSaver(loop, save, "t")
            saver.request()
            self.assertTrue(saver.busy)
            save.hold.set()
            await saver.idle()
            self.assertFalse(saver.busy)

        run(body)
        self.assertEqual(len(save.threads), 1)
        self.assertNotEqual(save.threads[0], threading.get_ident())

    def test_requests_during_a_save_fold_into_one_more_save(self) -> None:
        save = FakeSave()
        save.hold.clear()

        async def body(loop: asyncio.AbstractEventLoop) -> None:
            saver = StateSaver(loop, save, "t")
            saver.request()
            await loop.run_in_executor(None, save.started.wait, DEADLINE)
            for _ in range(5):
                saver.request()
            save.hold.set()
            await saver.idle()

        run(body)
        self.assertEqual(len(save.threads), 2)

    def test_flush_saves_again_after_the_running_save(self) -> None:
        save = FakeSave()

        async def body(loop: asyncio.AbstractEventLoop) -> None:
            saver = StateSaver(loop, save, "t")
            await saver.flush()
            await saver.flush()

        run(body)
        self.assertEqual(len(save.threads), 2)

    def test_a_failed_save_is_logged_and_the_next_still_runs(self) -> None:
        save = FakeSave()
        save.fail = True

        async def body(loop: asyncio.AbstractEventLoop) -> None:
            saver = StateSaver(loop, save, "t.bin")
            with self.assertLogs("sta.saver", "WARNING") as logs:
                await saver.flush()
            self.assertIn("t.bin: could not save resume state", logs.output[0])
            save.fail = False
            await saver.flush()

        run(body)
        self.assertEqual(len(save.threads), 2)

    def test_save_now_runs_on_the_calling_thread(self) -> None:
        save = FakeSave()

        async def body(loop: asyncio.AbstractEventLoop) -> None:
            StateSaver(loop, save, "t").save_now()

        run(body)
        self.assertEqual(save.threads, [threading.get_ident()])

    def test_a_cancelled_wait_leaves_the_save_running_to_its_end(self) -> None:
        save = FakeSave()
        save.hold.clear()

        async def body(loop: asyncio.AbstractEventLoop) -> None:
            saver = StateSaver(loop, save, "t")
            saver.request()
            waiter = asyncio.ensure_future(saver.idle())
            await loop.run_in_executor(None, save.started.wait, DEADLINE)
            waiter.cancel()
            save.hold.set()
            await saver.idle()
            self.assertTrue(waiter.cancelled())

        run(body)
        self.assertEqual(len(save.threads), 1)


if __name__ == "__main__":
    unittest.main()
