"""In-process dispatch: a FIFO of task ids, at most `max_concurrent` attempts at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from andon.dispatch.base import Dispatcher
from andon.protocol.types import Message
from andon.runtime.scope import CancelMode
from andon.runtime.supervisor import Supervisor

log = logging.getLogger("andon.dispatch")


class LocalDispatcher(Dispatcher):
    def __init__(self, supervisor: Supervisor, max_concurrent: int = 64) -> None:
        self.supervisor = supervisor
        self.max_concurrent = max_concurrent
        self._queue: deque[tuple[str, asyncio.Future[None] | None]] = deque()
        self._wakeup = asyncio.Event()
        self._runs: set[asyncio.Task[None]] = set()
        self._context_tail: dict[str, asyncio.Future[None]] = {}
        self._serial_done: dict[str, tuple[str, asyncio.Future[None]]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._feed(), name="andon-dispatch")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._runs:
            await asyncio.wait(list(self._runs))

    async def dispatch(self, task_id: str, context_id: str, *, serial: bool = False) -> None:
        after: asyncio.Future[None] | None = None
        if serial:
            after = self._context_tail.get(context_id)
            tail: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._context_tail[context_id] = tail
            self._queue.append((task_id, after))
            self._serial_done[task_id] = (context_id, tail)
        else:
            self._queue.append((task_id, None))
        self._wakeup.set()

    async def _feed(self) -> None:
        while True:
            while not self._queue or len(self._runs) >= self.max_concurrent:
                self._wakeup.clear()
                await self._wakeup.wait()
            task_id, after = self._queue.popleft()
            run = asyncio.create_task(self._run(task_id, after), name=f"andon-run-{task_id}")
            self._runs.add(run)
            self._idle.clear()
            run.add_done_callback(self._finished)

    async def _run(self, task_id: str, after: asyncio.Future[None] | None) -> None:
        try:
            if after is not None:
                await asyncio.shield(after)
            await self.supervisor.run(task_id)
        finally:
            serial = self._serial_done.pop(task_id, None)
            if serial is not None:
                context_id, tail = serial
                tail.set_result(None)
                if self._context_tail.get(context_id) is tail:
                    del self._context_tail[context_id]

    def _finished(self, run: asyncio.Task[None]) -> None:
        self._runs.discard(run)
        if not run.cancelled() and run.exception() is not None:
            log.error("attempt crashed", exc_info=run.exception())
        if not self._runs:
            self._idle.set()
        self._wakeup.set()

    async def cancel(self, task_id: str, epoch: int | None, reason: str, mode: CancelMode) -> None:
        self.supervisor.cancel(task_id, epoch, reason, mode)

    async def answer(self, task_id: str, epoch: int | None, message: Message) -> None:
        self.supervisor.answer(task_id, epoch, message)

    def running(self) -> list[str]:
        return self.supervisor.running

    async def wait_idle(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
