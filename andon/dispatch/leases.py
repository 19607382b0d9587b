"""Leases: one worker's right to run one task, kept alive by that worker's heartbeats.

A row of `andon_leases` says: worker W runs (or is about to run) task T, dispatched as
the procrastinate job J, at epoch E (the one its claim gives: only the lease's holder
claims the task, so it is known when the job is taken); unless W renews it, the lease
runs out at X (the database's clock, so machines' clocks never disagree about it). The
primary key makes the right exclusive: a worker claims a task only after inserting its
lease. The lease also names the job of the attempt, which a cancel aborts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Final, LiteralString

import psycopg
from psycopg_pool import AsyncConnectionPool

from andon.store.pg_batch import Batcher
from andon.store.pg_retry import NEVER_RAN, Conn, Errors, retrying

Forget = Callable[[str], Awaitable[None]]

# Up to `count` jobs (one call of procrastinate's function per row of the series: each
# sees the jobs the earlier ones took), each with its task's lease; a conflict means
# another worker holds the task (the job is a duplicate). The lease names the epoch the
# claim will give, so that a cancel of the attempt finds its job from the claim on. A
# task this statement's snapshot does not hold yet (procrastinate's function sees jobs
# committed since) was created after it began, so it has never been claimed: epoch 0.
TAKE: Final = """
WITH fetched AS (
    SELECT procrastinate_fetch_job_v2(%(queues)s::varchar[], %(worker_id)s) AS job
    FROM generate_series(1, %(count)s)
), taken AS (
    SELECT (job).id, (job).args FROM fetched WHERE (job).id IS NOT NULL
), leased AS (
    INSERT INTO andon_leases (task_id, job_id, worker, expires_at, epoch)
    SELECT args ->> 'task_id', id, %(worker)s, now() + make_interval(secs => %(duration)s),
        coalesce((SELECT t.epoch FROM andon_tasks t WHERE t.id = args ->> 'task_id'), 0) + 1
    FROM taken
    ON CONFLICT (task_id) DO NOTHING
    RETURNING job_id
)
SELECT id, args, id IN (SELECT job_id FROM leased) FROM taken ORDER BY id
"""
# Letting go: the lease (if this worker holds it) and the job, in one transaction, so a
# worker taking a requeued job never finds the lease still there. A release does not
# wait for the disk: the task's ending, which did wait, was committed before it, and a
# release a crash of the database loses leaves a lease that lapses, whose job a reaper
# then finishes.
RELEASE: Final = """
WITH released AS (
    DELETE FROM andon_leases WHERE task_id = %(task_id)s AND worker = %(worker)s
)
SELECT procrastinate_finish_job_v1(%(job_id)s, 'succeeded', true),
    set_config('synchronous_commit', 'off', true) AS without_waiting_for_the_disk
"""
REQUEUE: Final = """
WITH released AS (
    DELETE FROM andon_leases WHERE task_id = %(task_id)s AND worker = %(worker)s
)
SELECT procrastinate_retry_job_v2(%(job_id)s, now(), NULL, NULL, NULL)
"""
DROP: Final = "SELECT procrastinate_finish_job_v1(%(job_id)s, 'succeeded', true)"
RENEW: Final = """
UPDATE andon_leases SET expires_at = now() + make_interval(secs => %s)
WHERE worker = %s AND task_id = ANY(%s)
RETURNING task_id
"""
ABORT: Final = """
SELECT procrastinate_cancel_job_v1(job_id, true, false)
FROM andon_leases WHERE task_id = %s AND epoch = %s
"""
HOLDER: Final = "SELECT worker FROM andon_leases WHERE task_id = %s"
EXPIRED: Final = """
SELECT task_id, job_id, epoch FROM andon_leases WHERE expires_at < now()
ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED
"""
FORGET: Final = "DELETE FROM andon_leases WHERE task_id = %s"
UNQUEUED: Final = """
SELECT t.id FROM andon_tasks t
WHERE t.state = 'submitted' AND t.created_at < %s
    AND NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs j WHERE j.queueing_lock = t.id AND j.status = 'todo'
    )
    AND NOT EXISTS (SELECT 1 FROM andon_leases l WHERE l.task_id = t.id)
ORDER BY t.created_at LIMIT %s
"""


@dataclass(frozen=True, slots=True)
class Taken:
    """A job this worker took from the queue."""

    job_id: int
    task_id: str
    serial: bool
    leased: bool
    """Whether the task's lease came with it (False: another worker holds the task)."""


@dataclass(frozen=True, slots=True)
class Lapsed:
    """A lease that ran out: its worker stopped renewing it."""

    task_id: str
    job_id: int
    epoch: int | None


class Leases:
    def __init__(self, pool: AsyncConnectionPool[Conn], worker: str, duration: float) -> None:
        self.pool = pool
        self.worker = worker
        self.duration = duration
        # The releases of the tasks that end in one turn go in one round trip.
        self._releases = Batcher(lambda op: retrying(pool, op))

    async def close(self) -> None:
        """Once the releases asked for are sent."""
        await self._releases.close()

    async def take(self, queue: str, worker_id: int, count: int) -> list[Taken]:
        """Up to `count` jobs of the queue, with their tasks' leases, in one statement.

        Sent again only if it surely did not run. (After a lost reply, the jobs taken are
        `doing` and their leases never renewed: a reaper puts them back once they lapse.)"""
        params = {
            "queues": [queue],
            "worker_id": worker_id,
            "count": count,
            "worker": self.worker,
            "duration": self.duration,
        }

        async def op(conn: Conn) -> list[Taken]:
            rows = await (await conn.execute(TAKE, params)).fetchall()
            return [
                Taken(job_id, str(args["task_id"]), bool(args.get("serial")), leased)
                for job_id, args, leased in rows
            ]

        return await retrying(self.pool, op, NEVER_RAN)

    async def release(self, task_id: str, job_id: int) -> None:
        """Done with the task: the lease and the job go."""
        params = {"task_id": task_id, "job_id": job_id, "worker": self.worker}
        await self._releases.fetchone(RELEASE, params, durable=False)

    async def requeue(self, task_id: str, job_id: int) -> None:
        """The task was never started here: the lease goes, the job back to the queue."""
        await self._execute(REQUEUE, {"task_id": task_id, "job_id": job_id, "worker": self.worker})

    async def drop(self, job_id: int) -> None:
        """A duplicate job of a task another worker holds: it goes, the lease stays."""
        await self._execute(DROP, {"job_id": job_id})

    async def renew(self, task_ids: Collection[str]) -> set[str]:
        """Extend this worker's leases on these tasks; returns those it still holds."""
        if not task_ids:
            return set()

        async def op(conn: Conn) -> set[str]:
            cursor = await conn.execute(RENEW, (self.duration, self.worker, list(task_ids)))
            return {row[0] for row in await cursor.fetchall()}

        return await retrying(self.pool, op)

    async def abort(self, task_id: str, epoch: int) -> None:
        """Abort the job of the attempt `epoch` of the task (procrastinate tells its worker
        by NOTIFY). A worker told before it has registered the attempt reads the task's
        state once it has. Aborting twice is aborting once."""
        await self._execute(ABORT, (task_id, epoch))

    async def holder(self, task_id: str) -> str | None:
        row = await fetchone(self.pool, HOLDER, (task_id,))
        return str(row[0]) if row else None

    async def _execute(self, query: LiteralString, params: Any) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(query, params)

        await retrying(self.pool, op)

    async def unqueued(self, created_before: float, limit: int = 100) -> list[str]:
        """Tasks still `submitted` that no job waits for and no worker holds: their API
        process died between storing them and queueing them."""

        async def op(conn: Conn) -> list[str]:
            rows = await (await conn.execute(UNQUEUED, (created_before, limit))).fetchall()
            return [row[0] for row in rows]

        return await retrying(self.pool, op)

    @contextlib.asynccontextmanager
    async def lapsed(self, limit: int = 100) -> AsyncIterator[tuple[list[Lapsed], Forget]]:
        """Leases that ran out, locked until the block ends (a second reaper skips
        them); `forget` deletes one, for good once the block ends without error."""
        async with self.pool.connection() as conn, conn.transaction():
            rows = await (await conn.execute(EXPIRED, (limit,))).fetchall()

            async def forget(task_id: str) -> None:
                await conn.execute(FORGET, (task_id,))

            yield [Lapsed(*row) for row in rows], forget


async def fetchone(
    pool: AsyncConnectionPool[Conn],
    query: LiteralString,
    params: Any,
    retry_on: Errors = psycopg.OperationalError,
) -> Any:
    async def op(conn: Conn) -> Any:
        return await (await conn.execute(query, params)).fetchone()

    return await retrying(pool, op, retry_on)
