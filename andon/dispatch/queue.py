"""Distributed dispatch: each attempt of a task is a procrastinate job in PostgreSQL.

Any process defers jobs and sends signals; a process with a Supervisor also works
them (andon/dispatch/worker.py); every process reaps the leases of lost workers
(andon/dispatch/reaper.py). Signals never short-cut through memory, even when the
attempt runs in this very process: there is one path, and it is the one tested.

- cancel: the service has already moved the task to `canceling` (compare-and-set,
  with the reason and mode); the job of that attempt (found on its lease) is aborted,
  which procrastinate announces by NOTIFY to the worker holding it. Durable without
  any listener: the task keeps its state, the job its abort request.
- answer: the service has stored the answer and moved the task back to `working`;
  a NOTIFY on `andon_answers` tells the worker to read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Final

from procrastinate import App, PsycopgConnector
from procrastinate.schema import SchemaManager
from psycopg_pool import AsyncConnectionPool

from andon.dispatch.base import Dispatcher
from andon.dispatch.deferrals import Deferrals
from andon.dispatch.leases import Leases
from andon.dispatch.reaper import Reaper
from andon.dispatch.worker import ANSWERS, QueueWorker, WorkerSettings, queue_call
from andon.protocol.types import Message
from andon.runtime.orphans import Orphans
from andon.runtime.supervisor import Supervisor
from andon.store.base import Store, TaskRecord
from andon.store.pg_retry import Conn, retrying

log = logging.getLogger("andon.dispatch")

JOB: Final = "andon.attempt"
NOTIFY_ANSWER: Final = f"SELECT pg_notify('{ANSWERS}', %s)"
QUEUE_TABLE: Final = "procrastinate_jobs"


class QueueSchemaMissing(RuntimeError):
    """The database lacks procrastinate's schema: `andon db upgrade` was not run."""


async def upgrade_queue_schema(conn: Conn) -> bool:
    """Install procrastinate's schema if the database has none; True if it did.

    (Moving an existing one to a newer procrastinate is procrastinate's own migrations'
    job: see docs/DEPLOY.md.)"""
    if await _has_queue(conn):
        return False
    await conn.execute(SchemaManager.get_schema())
    return True


async def _has_queue(conn: Conn) -> bool:
    row = await (
        await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (QUEUE_TABLE,))
    ).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class QueueSettings:
    queue: str = "andon"
    lease: float = 30.0
    """Seconds a worker's lease on a task lasts unless renewed (every third of it)."""
    catch_up: float = 1.0
    """Seconds between re-reads, on a worker, of its attempts' states (missed signals)."""
    poll: float = 5.0
    """Seconds between looks at the queue when no notification came."""
    pool_size: int = 4


class QueueDispatcher(Dispatcher):
    def __init__(
        self,
        url: str,
        store: Store,
        supervisor: Supervisor | None = None,
        *,
        concurrency: int = 64,
        settings: QueueSettings | None = None,
    ) -> None:
        """With a supervisor, this process is also a worker running up to
        `concurrency` attempts at once; without one it only dispatches and signals."""
        self.settings = settings or QueueSettings()
        if supervisor is not None:
            self.containment = supervisor.containment.kind
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=self.settings.pool_size,
            kwargs={"autocommit": True},
            open=False,
            name="andon-queue",
        )
        self.app = App(connector=PsycopgConnector())
        self.deferrals = Deferrals(self.app.job_manager, lambda op: queue_call(self.pool, op))
        name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leases = Leases(self.pool, name, self.settings.lease)
        self.reaper = Reaper(
            store,
            self.leases,
            self.app.job_manager,
            self.settings.queue,
            # Recovered tasks lose the enqueue policy's order, as in embedded mode.
            lambda task_id: self.dispatch(task_id, ""),
            Orphans(),
        )
        self.worker = (
            QueueWorker(
                url,
                store,
                supervisor,
                self.app.job_manager,
                self.leases,
                WorkerSettings(
                    self.settings.queue, concurrency, self.settings.catch_up, self.settings.poll
                ),
                on_failure=lambda: self.observer.dispatch_failed(),
            )
            if supervisor is not None
            else None
        )
        self._reaping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.pool.open(wait=True)
        async with self.pool.connection() as conn:
            if not await _has_queue(conn):
                await self.pool.close()
                raise QueueSchemaMissing("the database has no job queue: run `andon db upgrade`")
        await self.app.open_async(self.pool)
        if self.worker is not None:
            await self.worker.start()
        self._reaping = asyncio.create_task(
            self.reaper.run(self.settings.lease / 3), name="andon-reaper"
        )

    async def pause(self) -> None:
        if self.worker is not None:
            await self.worker.pause()

    async def stop(self, timeout: float = 30.0) -> None:
        if self.worker is not None:
            await self.worker.stop(timeout)
        await self.leases.close()
        if self._reaping is not None:
            self._reaping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaping
        await self.reaper.orphans.close()
        await self.deferrals.close()
        await self.app.close_async()
        await self.pool.close()

    async def dispatch(self, task_id: str, conversation: str, *, serial: bool = False) -> None:
        # The worker reads the task's conversation (owner and context) from the store.
        # The queueing lock makes dispatching a task twice harmless (one waiting job), so
        # this is sent again after any lost connection.
        job = self.app.configure_task(JOB, queue=self.settings.queue, queueing_lock=task_id)
        await self.deferrals.defer(job.make_new_job(task_id=task_id, serial=serial))

    async def cancel(self, record: TaskRecord) -> None:
        # The worker reads the reason and mode from the task, where the service put them.
        await self.leases.abort(record.id, record.epoch)

    async def answer(self, task_id: str, epoch: int | None, message: Message) -> None:
        payload = f"{task_id} {epoch}"

        async def notify(conn: Conn) -> None:
            await conn.execute(NOTIFY_ANSWER, (payload,))

        await retrying(self.pool, notify)  # a second wake-up reads the same answer

    def running(self) -> list[str]:
        return self.worker.running() if self.worker is not None else []

    async def ping(self) -> None:
        async def probe(conn: Conn) -> None:
            await conn.execute("SELECT 1")

        await retrying(self.pool, probe)
        if self.worker is not None:
            self.worker.ping()

    async def wait_idle(self, timeout: float) -> bool:
        return await self.worker.wait_idle(timeout) if self.worker is not None else True
