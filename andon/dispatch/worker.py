"""The worker side of distributed dispatch: take jobs from the queue, run their attempts
with the Supervisor, and carry the cancels and answers meant for them.

A job becomes an attempt in three steps: the worker takes the job (procrastinate marks
it `doing`) and the task's lease in one statement, claims the task (the store's
compare-and-set, epoch + 1) and records the epoch on the lease, then registers the
attempt and reads the task's state once more. A cancel that came before the claim finds the task
`submitted` and ends it there; one between the claim and the registration is read
back; one after it finds the epoch on the lease and aborts the job, which procrastinate
pushes to this worker by NOTIFY.

Signals are only wake-ups: the state they announce is in the database. So whatever
was missed while a connection was down is found again by re-reading it, right after
listening again and every `catch_up` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from procrastinate import exceptions as queue_errors
from procrastinate.manager import JobManager, get_channel_for_queues
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from andon.dispatch.base import set_within
from andon.dispatch.leases import Leases, Taken
from andon.protocol.types import ACTIVE_STATES, Message, TaskState
from andon.runtime.supervisor import Supervisor
from andon.store.base import Store
from andon.store.pg_events import Listener
from andon.store.pg_retry import Conn, tries

log = logging.getLogger("andon.dispatch")

PRUNE_AFTER = 4
"""Leases' lengths after which a silent worker is dropped from the queue's registry."""
ANSWERS = "andon_answers"
"""NOTIFY channel: `<task id> <epoch>` once the task's answer is stored."""
UNFINISHED = frozenset({TaskState.SUBMITTED, *ACTIVE_STATES})


T = TypeVar("T")
LetGo = Callable[[Taken], Awaitable[None]]


async def queue_call(pool: AsyncConnectionPool[Conn], op: Callable[[], Awaitable[T]]) -> T:
    """A procrastinate call, sent again after a lost connection (procrastinate's errors
    wrap psycopg's); every call made this way may run twice."""
    return await tries(
        pool.max_size + 1,
        op,
        lambda exc: (
            isinstance(exc, queue_errors.ConnectorException)
            and isinstance(exc.__cause__, psycopg.OperationalError)
        ),
    )


@dataclass(frozen=True)
class WorkerSettings:
    queue: str
    concurrency: int
    catch_up: float
    """Seconds between re-reads of the state of the attempts running here."""
    poll: float
    """Seconds between looks at the queue when no notification came."""


class QueueWorker:
    def __init__(
        self,
        url: str,
        store: Store,
        supervisor: Supervisor,
        jobs: JobManager,
        leases: Leases,
        settings: WorkerSettings,
        on_failure: Callable[[], None],
    ) -> None:
        self.store = store
        self._on_failure = on_failure
        self.supervisor = supervisor
        self.jobs = jobs
        self.leases = leases
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._held: dict[int, str] = {}
        """Job id -> task id of every job this worker holds the lease of."""
        self._waiting: set[asyncio.Task[None]] = set()
        """Jobs taken whose attempt has not started: put back on a pause."""
        self._runs: set[asyncio.Task[None]] = set()
        self._signals: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker_id: int | None = None
        self._fetching: asyncio.Task[None] | None = None
        self._keeping: asyncio.Task[None] | None = None
        channels = [*get_channel_for_queues([settings.queue]), ANSWERS]
        self._listener = Listener(
            url, self._on_notify, self._on_reconnect, "andon-worker", channels
        )

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        # Forget long-dead workers, as procrastinate's own worker does when it starts.
        await self.jobs.prune_stalled_workers(PRUNE_AFTER * self.leases.duration)
        self._worker_id = await self.jobs.register_worker()
        await self._listener.start()  # listening before the first look: no job is missed
        self._fetching = asyncio.create_task(self._fetch_loop(), name="andon-worker-fetch")
        self._keeping = asyncio.create_task(self._keep_loop(), name="andon-worker-keep")

    async def pause(self) -> None:
        """Take no more jobs; give back those taken but not started."""
        await _cancel(self._fetching)
        self._fetching = None
        for waiting in list(self._waiting):
            await _cancel(waiting)

    async def stop(self, timeout: float) -> None:
        await self.pause()
        if self._runs:
            _, stuck = await asyncio.wait(list(self._runs), timeout=timeout)
            if stuck:
                log.error("%d attempt(s) still running at stop", len(stuck))
        await _cancel(self._keeping)
        await self._listener.stop()
        for signal in list(self._signals):
            await _cancel(signal)
        if self._worker_id is not None:
            with contextlib.suppress(queue_errors.ConnectorException):
                await self.jobs.unregister_worker(self._worker_id)

    def running(self) -> list[str]:
        return self.supervisor.running

    def ping(self) -> None:
        if self._fetching is None or self._fetching.done():
            raise RuntimeError("this worker takes no jobs")

    async def wait_idle(self, timeout: float) -> bool:
        return await set_within(self._idle, timeout)

    # -- taking jobs -------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        while True:
            for job in await self._next_jobs():  # each holds a slot
                handle = asyncio.create_task(self._handle(job), name=f"andon-job-{job.job_id}")
                self._runs.add(handle)
                self._waiting.add(handle)
                self._idle.clear()
                handle.add_done_callback(self._done)

    async def _next_jobs(self) -> list[Taken]:
        """As many jobs as there are free slots, one slot taken for each; waits for one.

        One look takes them all, so a worker woken by a burst of jobs makes one round
        trip, not one a job (and one more that finds the queue empty)."""
        delay = 0.05
        while True:
            await self._slots.acquire()
            free = 1
            while not self._slots.locked():  # no wait: the other free slots, at once
                await self._slots.acquire()
                free += 1
            self._wake.clear()
            jobs: list[Taken] = []
            try:
                assert self._worker_id is not None
                jobs = await self.leases.take(self.settings.queue, self._worker_id, free)
                delay = 0.05
            except psycopg.Error as exc:
                log.warning("taking a job failed (%s); trying again in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.poll)
                if isinstance(exc, errors.ForeignKeyViolation):
                    # Away so long that another worker pruned this one: register again.
                    self._worker_id = await self.jobs.register_worker()
                continue
            finally:
                for _ in range(free - len(jobs)):  # slots held while looking, not waiting
                    self._slots.release()
            if jobs:
                return jobs
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll):
                    await self._wake.wait()

    def _done(self, handle: asyncio.Task[None]) -> None:
        self._runs.discard(handle)
        self._waiting.discard(handle)
        if not handle.cancelled() and handle.exception() is not None:
            self._on_failure()
            log.error("job handling crashed", exc_info=handle.exception())
        if not self._runs:
            self._idle.set()

    async def _handle(self, job: Taken) -> None:
        """Run the job's attempt. Holds one slot on entry, gives it back at the end."""
        task_id = job.task_id
        holding_slot = True
        # Until the attempt starts, a job let go of goes back to the queue for another.
        let_go: LetGo | None = self._requeue
        try:
            if not job.leased:
                let_go = self._drop  # another worker holds the task: this is a duplicate
                return
            self._held[job.job_id] = task_id
            if job.serial:
                # Waiting for the context takes no slot.
                self._slots.release()
                holding_slot = False
                await self._wait_for_context(task_id)
                await self._slots.acquire()
                holding_slot = True
            self._waiting.discard(asyncio.current_task())
            let_go = self._done_with
            try:
                await self.supervisor.run(task_id)
            except Exception:
                # The task may be claimed and never ended (the database failed us): keep
                # its lease, unrenewed, so that it lapses and a reaper ends the task.
                let_go = None
                raise
        finally:
            if holding_slot:
                self._slots.release()
            self._held.pop(job.job_id, None)
            if let_go is not None:
                try:
                    await asyncio.shield(let_go(job))
                except Exception as exc:  # the lease lapses and a reaper tidies up
                    log.warning(
                        "could not let go of job %d (task %s): %s", job.job_id, task_id, exc
                    )

    async def _requeue(self, job: Taken) -> None:
        await self.leases.requeue(job.task_id, job.job_id)

    async def _done_with(self, job: Taken) -> None:
        await self.leases.release(job.task_id, job.job_id)

    async def _drop(self, job: Taken) -> None:
        await self.leases.drop(job.job_id)

    async def _wait_for_context(self, task_id: str) -> None:
        """Wait until every earlier unfinished task of the task's conversation (its
        owner's context) has ended."""
        while True:
            record = await self.store.get_task(task_id)
            if record is None or record.state is not TaskState.SUBMITTED:
                return  # cancelled while waiting: the claim below refuses it
            page = await self.store.list_tasks(
                owner=record.owner,
                context_id=record.context_id,
                states=UNFINISHED,
                page_size=1000,
            )
            mark = (record.created_at, record.id)
            earlier = [t.id for t in page.tasks if (t.created_at, t.id) < mark]
            if not earlier:
                return
            with contextlib.ExitStack() as stack:
                wakes = [stack.enter_context(self.store.notifier.listen(t)) for t in earlier]
                wakes.append(stack.enter_context(self.store.notifier.listen(task_id)))
                waits = [asyncio.ensure_future(w.wait()) for w in wakes]
                try:
                    await asyncio.wait(
                        waits, timeout=self.settings.catch_up, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for wait in waits:
                        wait.cancel()

    # -- signals ------------------------------------------------------------------------

    def _on_notify(self, channel: str, payload: str) -> None:
        try:
            self._take_notification(channel, payload)
        except (ValueError, KeyError, TypeError) as exc:  # the listener must live on
            log.warning("ignored a malformed notification on %s: %r (%s)", channel, payload, exc)

    def _take_notification(self, channel: str, payload: str) -> None:
        if channel == ANSWERS:
            task_id, _, epoch = payload.partition(" ")
            self._spawn(self._deliver_answer(task_id, int(epoch)))
            return
        notification = json.loads(payload)
        if notification["type"] == "job_inserted":
            self._wake.set()
        elif notification["type"] == "abort_job_requested":
            held = self._held.get(int(notification["job_id"]))
            if held is not None:
                self._spawn(self._deliver_cancel(held))

    def _on_reconnect(self) -> None:
        self._wake.set()
        self._spawn(self._catch_up())

    def _spawn(self, signal: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(signal)
        self._signals.add(task)
        task.add_done_callback(self._signal_done)

    def _signal_done(self, task: asyncio.Task[None]) -> None:
        self._signals.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._on_failure()
            log.warning("delivering a signal failed: %s", task.exception())

    async def _deliver_cancel(self, task_id: str) -> None:
        await self.supervisor.reconcile(task_id)

    async def _deliver_answer(self, task_id: str, epoch: int) -> None:
        attempt = self.supervisor.attempt(task_id)
        if attempt is None or attempt.epoch != epoch:
            return
        asked = attempt.question_seq
        if asked is None:
            return
        for event in await self.store.events(task_id, asked, with_progress=False):
            if event.kind == "message":
                self.supervisor.answer(task_id, epoch, Message.model_validate(event.data))
                return

    # -- heartbeats and catching up -------------------------------------------------------

    async def _keep_loop(self) -> None:
        """Renew the leases, catch up, and stop every attempt whose lease may have lapsed.

        A worker that cannot renew (cut off from the database, or too slow) is about to be
        reaped: the reaper fails its tasks `worker_lost`. So it stops their work itself
        when the leases run out by its own clock, which cannot be later than the
        database's: the renewal that counts is timed from when it was sent."""
        loop = asyncio.get_running_loop()
        renew_every = self.leases.duration / 3
        renewed_at = loop.time()
        while True:
            lapse = renewed_at + self.leases.duration
            pause, until_lapse = min(self.settings.catch_up, renew_every), lapse - loop.time()
            await asyncio.sleep(min(pause, until_lapse) if until_lapse > 0 else pause)
            try:  # past the lapse, the pool's own timeouts bound a renewal
                async with asyncio.timeout_at(lapse if loop.time() < lapse else None):
                    if loop.time() - renewed_at >= renew_every:
                        sent = loop.time()
                        await self._renew()
                        renewed_at = sent
                    await self._catch_up()
            except Exception as exc:  # the database may be away: the next round retries
                log.warning("renewing leases failed: %s", exc or type(exc).__name__)
            if loop.time() >= renewed_at + self.leases.duration:
                lost = [t for t in set(self._held.values()) if self.supervisor.lose(t)]
                if lost:
                    log.error(
                        "could not renew the leases for %g s: stopped %d attempt(s) here",
                        self.leases.duration,
                        len(lost),
                    )

    async def _renew(self) -> None:
        held = set(self._held.values())
        kept = await self.leases.renew(held)
        assert self._worker_id is not None
        await self.jobs.update_heartbeat(self._worker_id)
        still_held = set(self._held.values())  # attempts may have ended meanwhile
        for task_id in (held - kept) & still_held:
            log.error("lost the lease of task %s: stopping its attempt", task_id)
            self.supervisor.lose(task_id)

    async def _catch_up(self) -> None:
        """Re-read the state of every attempt running here and act on what changed."""
        for task_id in self.supervisor.running:
            attempt = self.supervisor.attempt(task_id)
            if attempt is None:
                continue
            # Ended (by this attempt just now, or by a reaper) or canceling: it stops.
            record = await self.supervisor.reconcile(task_id)
            if (
                record is not None
                and record.state is TaskState.WORKING
                and attempt.question_seq is not None
            ):
                await self._deliver_answer(task_id, record.epoch)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
