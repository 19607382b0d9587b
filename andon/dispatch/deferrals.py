"""Queueing jobs in groups: the jobs asked for in one turn of the event loop go to the
queue in one statement (procrastinate's batch defer), as the store's writes do
(andon/store/pg_batch.py).

One group is in flight at a time; what is asked meanwhile goes in the next one, so the
busier the API process, the fewer round trips a task's job costs. A job whose task is
already queued (its queueing lock taken) makes procrastinate refuse the whole group: the
group is then sent again one job at a time, and that job alone is skipped, as a lone
deferral of it would be.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from procrastinate import exceptions as queue_errors
from procrastinate.jobs import Job
from procrastinate.manager import JobManager

Call = Callable[[Callable[[], Awaitable[object]]], Awaitable[object]]
"""Runs a procrastinate call, again after a lost connection (`worker.queue_call`)."""


class Deferrals:
    def __init__(self, jobs: JobManager, call: Call) -> None:
        self._jobs = jobs
        self._call = call
        self._queue: list[tuple[Job, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def defer(self, job: Job) -> None:
        """Queue the job; returns once it is queued (or its task already was)."""
        done = asyncio.get_running_loop().create_future()
        self._queue.append((job, done))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="andon-deferrals")
        await done

    async def close(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send_all(self) -> None:
        # Started in the turn of the first deferral, this runs in a later one: the rest of
        # that turn's deferrals are queued by then.
        try:
            while self._queue:
                group, self._queue = self._queue, []
                if len(group) > 1 and await self._together(group):
                    continue
                await asyncio.gather(*(self._alone(job, done) for job, done in group))
        finally:
            self._sender = None
            for _, done in self._queue:  # cancelled while sending (the dispatcher stops)
                done.cancel()
            self._queue = []

    async def _together(self, group: list[tuple[Job, asyncio.Future[None]]]) -> bool:
        """Send the group in one statement; False if one of its tasks was queued already."""
        jobs = [job for job, _ in group]
        try:
            await self._call(lambda: self._jobs.batch_defer_jobs_async(jobs))
        except queue_errors.AlreadyEnqueued:
            return False
        except Exception as exc:
            for _, done in group:
                _settle(done, exc)
            return True
        for _, done in group:
            _settle(done, None)
        return True

    async def _alone(self, job: Job, done: asyncio.Future[None]) -> None:
        try:
            with contextlib.suppress(queue_errors.AlreadyEnqueued):
                await self._call(lambda: self._jobs.defer_job_async(job))
        except Exception as exc:
            _settle(done, exc)
            return
        _settle(done, None)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
