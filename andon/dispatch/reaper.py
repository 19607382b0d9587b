"""The reaper: ends the attempts of workers that stopped renewing their leases, and
queues what a dead process left unqueued.

The tasks it fails have their remote children (`ctx.call_agent`) cancelled too. Every
process of a distributed andon runs one; leases are locked while they are
reaped, so two reapers never handle the same one, and the store's compare-and-set
(at the attempt's epoch) makes `failed` / worker_lost the task's one ending even if
the lost worker comes back and tries to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable

from procrastinate import exceptions as queue_errors
from procrastinate.jobs import Status
from procrastinate.manager import JobManager

from andon.dispatch.leases import Lapsed, Leases
from andon.protocol.types import ACTIVE_STATES, FailReason, TaskState, agent_text
from andon.runtime.orphans import Orphans
from andon.store.base import Store

log = logging.getLogger("andon.dispatch")

LOST_TEXT = (
    "the worker running this task was lost (it stopped renewing its lease: killed, "
    "crashed or cut off from the database); `andon retry` runs the task again"
)


class Reaper:
    def __init__(
        self,
        store: Store,
        leases: Leases,
        jobs: JobManager,
        queue: str,
        dispatch: Callable[[str], Awaitable[None]],
        orphans: Orphans,
    ) -> None:
        self.store = store
        self.orphans = orphans
        """Cancels the remote children of the tasks this reaper fails."""
        self.leases = leases
        self.jobs = jobs
        self.queue = queue
        self._dispatch = dispatch

    async def run(self, interval: float) -> None:
        while True:
            # Jittered, so reapers in many processes do not all sweep at once.
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))
            try:
                await self.sweep()
            except Exception as exc:  # the database may be away: try again next round
                log.warning("reaping lapsed leases failed: %s", exc)

    async def sweep(self) -> list[str]:
        """Reap what has lapsed now; returns the ids of the tasks failed worker_lost."""
        failed = []
        async with self.leases.lapsed() as (lapsed, forget):
            for lease in lapsed:
                # Deleted first: a worker taking the task again waits for this commit.
                await forget(lease.task_id)
                if await self._end(lease):
                    failed.append(lease.task_id)
        # A job taken by a worker that died before it wrote its lease.
        for job in await self.jobs.get_stalled_jobs(
            queue=self.queue, seconds_since_heartbeat=self.leases.duration
        ):
            task_id = str(job.task_kwargs.get("task_id"))
            if job.id is not None and await self.leases.holder(task_id) is None:
                await self._release_job(job.id, task_id)
        # A task stored by an API process that died before it queued it. (Queueing twice
        # is harmless, so a late look, a lease's length after its creation, suffices.)
        for task_id in await self.leases.unqueued(time.time() - self.leases.duration):
            log.warning("task %s was never queued: queueing it", task_id)
            await self._dispatch(task_id)
        return failed

    async def _end(self, lease: Lapsed) -> bool:
        record = await self.store.get_task(lease.task_id)
        if record is None or record.state not in ACTIVE_STATES:
            await self._release_job(lease.job_id, lease.task_id)
            return False
        if lease.epoch is not None and lease.epoch != record.epoch:
            await self._finish(lease.job_id)  # a stale lease: never touch another attempt
            return False
        ended = await self.store.transition(
            lease.task_id,
            sources=ACTIVE_STATES,
            target=TaskState.FAILED,
            epoch=record.epoch,
            reason=FailReason.WORKER_LOST,
            message=agent_text(LOST_TEXT),
        )
        await self._finish(lease.job_id)
        if ended is not None:
            log.warning("task %s failed: its worker was lost", lease.task_id)
            self.orphans.adopt(ended)
        return ended is not None

    async def _release_job(self, job_id: int, task_id: str) -> None:
        """The job of a task no worker holds: queued again if the task never started,
        else done with."""
        record = await self.store.get_task(task_id)
        if record is not None and record.state is TaskState.SUBMITTED:
            try:
                now = datetime.datetime.now(datetime.UTC)
                await self.jobs.retry_job_by_id_async(job_id, retry_at=now)
            except queue_errors.ConnectorException as exc:
                log.info("job %d of task %s could not be queued again: %s", job_id, task_id, exc)
            return
        await self._finish(job_id)

    async def _finish(self, job_id: int) -> None:
        # It may have been finished meanwhile by its worker.
        with contextlib.suppress(queue_errors.ConnectorException):
            await self.jobs.finish_job_by_id_async(job_id, status=Status.FAILED, delete_job=True)
