"""In-process dispatch: a FIFO of task ids, at most `max_concurrent` attempts at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from andon.dispatch.base import Dispatcher, set_within
from andon.protocol.types import Message
from andon.runtime.supervisor import Supervisor
from andon.store.base import TaskRecord

log = logging.getLogger("andon.dispatch")


class LocalDispatcher(Dispatcher):
    def __init__(self, supervisor: Supervisor, max_concurrent: int = 64) -> None:
        self.supervisor = supervisor
        self.containment = supervisor.containment.kind
        self.max_concurrent = max_concurrent
        self._queue: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self._runs: set[asyncio.Task[None]] = set()
        self._parked: set[asyncio.Task[None]] = set()
        self._ended: dict[str, asyncio.Future[None]] = {}
        """Every dispatched task until its attempt is over, for `serial` successors."""
        self._conversations: dict[str, list[str]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._paused = False
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._feed(), name="andon-dispatch")

    async def pause(self) -> None:
        self._paused = True
        for task in [*self._parked, *([self._loop_task] if self._loop_task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop_task = None

    async def stop(self, timeout: float = 30.0) -> None:
        await self.pause()
        if self._runs:
            _, stuck = await asyncio.wait(list(self._runs), timeout=timeout)
            if stuck:
                log.error("%d attempt(s) still running at stop", len(stuck))

    async def dispatch(self, task_id: str, conversation: str, *, serial: bool = False) -> None:
        earlier = [self._ended[t] for t in self._conversations.get(conversation, ())]
        ended = asyncio.get_running_loop().create_future()
        self._ended[task_id] = ended
        self._conversations.setdefault(conversation, []).append(task_id)
        ended.add_done_callback(lambda _: self._forget(task_id, conversation))
        if serial and earlier:
            # Parked outside the queue: a task waiting for its conversation holds no slot.
            parked = asyncio.create_task(self._after(earlier, task_id))
            self._parked.add(parked)
            parked.add_done_callback(self._parked.discard)
        else:
            self._enqueue(task_id)

    async def _after(self, earlier: list[asyncio.Future[None]], task_id: str) -> None:
        await asyncio.wait(earlier)
        self._enqueue(task_id)

    def _enqueue(self, task_id: str) -> None:
        feeding = self._loop_task is not None and not self._paused
        if feeding and not self._queue and len(self._runs) < self.max_concurrent:
            self._start_run(task_id)  # a free slot and nobody ahead: no trip through _feed
            return
        self._queue.append(task_id)
        self._wakeup.set()

    def _forget(self, task_id: str, conversation: str) -> None:
        self._ended.pop(task_id, None)
        siblings = self._conversations.get(conversation)
        if siblings is not None:
            siblings.remove(task_id)
            if not siblings:
                del self._conversations[conversation]

    async def _feed(self) -> None:
        while True:
            while not self._queue or len(self._runs) >= self.max_concurrent:
                self._wakeup.clear()
                await self._wakeup.wait()
            self._start_run(self._queue.popleft())

    def _start_run(self, task_id: str) -> None:
        run = asyncio.create_task(self._run(task_id), name=f"andon-run-{task_id}")
        self._runs.add(run)
        self._idle.clear()
        run.add_done_callback(self._finished)

    async def _run(self, task_id: str) -> None:
        try:
            if not self._paused:  # a run created just before the pause never starts
                await self.supervisor.run(task_id)
        finally:
            ended = self._ended.get(task_id)
            if ended is not None and not ended.done():
                ended.set_result(None)

    def _finished(self, run: asyncio.Task[None]) -> None:
        self._runs.discard(run)
        if not run.cancelled() and run.exception() is not None:
            self.observer.dispatch_failed()
            log.error("attempt crashed", exc_info=run.exception())
        if not self._runs:
            self._idle.set()
        self._wakeup.set()

    async def cancel(self, record: TaskRecord) -> None:
        await self.supervisor.reconcile(record.id, record)

    async def answer(self, task_id: str, epoch: int | None, message: Message) -> None:
        self.supervisor.answer(task_id, epoch, message)

    def running(self) -> list[str]:
        return self.supervisor.running

    async def ping(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            raise RuntimeError("local dispatch is not running")

    async def wait_idle(self, timeout: float) -> bool:
        return await set_within(self._idle, timeout)
