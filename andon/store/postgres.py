"""The distributed store: PostgreSQL through psycopg 3 and a pool of async connections.

Every operation is one statement on a pooled connection: the compare-and-set, its
status event and its notification are written by a single UPDATE ... INSERT ...
statement (data-modifying CTEs). Writes asked for in the same turn of the event loop
share one transaction and one round trip (group commit, andon/store/pg_batch.py); a
write returns once committed. Point reads asked for in one turn share a round trip
too. Statements are prepared on first use on each connection.
Row locks on the task give each task's log its order: a write to a task waits for the
previous one to commit, so sequence numbers have neither gaps nor duplicates across any
number of processes.

Appends commit without waiting for the disk (synchronous_commit off, for their own
transaction, or a batch of appends only): a crash of the database may lose the last
fraction of a second of chunks, never a state change, since each transition waits for
the disk and with it for every append logged before it. Commits of the other writes
wait for the disk, as the server is configured to (an operator may trade that away for
the whole connection with `?options=-csynchronous_commit%3Doff` in the URL).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Final, LiteralString, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from andon.protocol.types import ACTIVE_STATES, TaskState
from andon.store import pg_batch, pg_events, pg_retry, pg_schema
from andon.store.base import (
    CHILDREN,
    TASK_COLUMNS,
    Event,
    EventKind,
    NewTask,
    Store,
    TaskPage,
    TaskRecord,
    status_event_data,
    task_listing,
)
from andon.store.machine import check_transition
from andon.store.pg_push import PostgresPushStore

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

log = logging.getLogger(__name__)

ACTIVE: Final = "(" + ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATES)) + ")"
NOTIFY: Final = f"pg_notify('{pg_events.CHANNEL}', id || ' ' || last_seq || ' ' || %(origin)s)"

CREATE: Final = f"""
WITH created AS (
    INSERT INTO andon_tasks (id, context_id, owner, state, metadata, retry_of, timeout,
        idle_timeout, input_timeout, created_at, updated_at, last_seq)
    VALUES (%(id)s, %(context_id)s, %(owner)s, 'submitted', %(metadata)s::jsonb, %(retry_of)s,
        %(timeout)s, %(idle_timeout)s, %(input_timeout)s, %(now)s, %(now)s, 2)
    RETURNING {TASK_COLUMNS}
), logged AS (
    INSERT INTO andon_events (task_id, seq, kind, data, final, created_at)
    VALUES (%(id)s, 1, 'message', %(message)s::json, false, %(now)s),
        (%(id)s, 2, 'status', %(status)s::json, false, %(now)s)
)
SELECT * FROM created
"""

# The UPDATE is the compare-and-set; its SET reads the row's old values, so the old state
# becomes prior_state. The status event's data is serialized by the caller, without the
# parts only the row knows (the reason kept from before, the prior state), which are
# spliced in before its closing brace: json keeps the text, and the key order, as given.
TRANSITION: Final = f"""
WITH moved AS (
    UPDATE andon_tasks SET state = %(target)s, prior_state = state,
        epoch = epoch + %(claim)s::int, reason = coalesce(%(reason)s, reason),
        status_message = %(message)s::json, metadata = metadata || %(metadata)s::jsonb,
        updated_at = %(now)s, last_seq = last_seq + 1
    WHERE id = %(id)s AND state = ANY(%(sources)s::text[])
        AND (%(epoch)s::int IS NULL OR epoch = %(epoch)s::int)
    RETURNING {TASK_COLUMNS}
), logged AS (
    INSERT INTO andon_events (task_id, seq, kind, data, final, created_at)
    SELECT id, last_seq, 'status', (left(%(data)s, -1)
        || CASE WHEN state = 'canceling'
            THEN ', "priorState": ' || to_json(prior_state)::text ELSE '' END
        || CASE WHEN reason IS NOT NULL THEN ', "reason": ' || to_json(reason)::text ELSE '' END
        || '}}')::json, %(final)s, %(now)s
    FROM moved
)
SELECT {TASK_COLUMNS}, {NOTIFY} FROM moved
"""

APPEND_TEMPLATE: Final = f"""
WITH moved AS (
    UPDATE andon_tasks SET last_seq = last_seq + 1, updated_at = %(now)s
    WHERE id = %(id)s AND epoch = %(epoch)s AND state IN {ACTIVE}
    RETURNING id, last_seq
), logged AS (
    INSERT INTO andon_events (task_id, seq, kind, data, final, created_at)
    SELECT id, last_seq, %(kind)s, %(data)s::json, false, %(now)s FROM moved
)
SELECT last_seq{{notify}} FROM moved,
    (SELECT set_config('synchronous_commit', 'off', true)) AS without_waiting_for_the_disk
"""
APPEND: Final = APPEND_TEMPLATE.format(notify="")
APPEND_NOTIFY: Final = APPEND_TEMPLATE.format(notify=f", {NOTIFY}")

RECORD_CHILD: Final = f"""
UPDATE andon_tasks SET metadata = jsonb_set(metadata, '{{{CHILDREN}}}',
    coalesce(metadata -> '{CHILDREN}', '[]'::jsonb) || jsonb_build_array(%(child)s::jsonb))
WHERE id = %(id)s AND epoch = %(epoch)s AND state IN {ACTIVE}
RETURNING id
"""
GET: Final = f"SELECT {TASK_COLUMNS} FROM andon_tasks WHERE id = %s"
GET_WITH_MESSAGES: Final = f"""
SELECT {TASK_COLUMNS}, (
    SELECT coalesce(json_agg(e.data ORDER BY e.seq), '[]'::json) FROM andon_events e
    WHERE e.task_id = andon_tasks.id AND e.kind = 'message'
) FROM andon_tasks WHERE id = %s
"""
EVENTS: Final = (
    "SELECT seq, kind, data, final, created_at FROM andon_events"
    " WHERE task_id = %s AND seq > %s AND (%s OR kind <> 'progress') ORDER BY seq"
)
ANNOUNCE: Final = f"SELECT pg_notify('{pg_events.CHANNEL}', p) FROM unnest(%s::text[]) AS p"

NOTIFY_WINDOW = 0.05
"""Seconds within which a task's appends after the first share one notification."""


def _record(row: tuple[Any, ...]) -> TaskRecord:
    # Columns come in TaskRecord's field order (TASK_COLUMNS); only the states need work.
    fields = list(row)
    fields[3] = TaskState(row[3])
    fields[6] = TaskState(row[6]) if row[6] else None
    return TaskRecord(*fields[:16])


class PostgresStore(Store):
    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        notify_window: float = NOTIFY_WINDOW,
    ) -> None:
        super().__init__()
        self.url = url
        self.origin = secrets.token_hex(4)
        """Names this store's notifications (its listener skips them) and sessions."""
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=min_connections,
            max_size=max_connections,
            # The origin in the names tells this store's sessions apart in pg_stat_activity.
            kwargs={
                "autocommit": True,
                "prepare_threshold": 0,
                "application_name": f"andon {self.origin}",
            },
            open=False,
            name="andon-store",
        )
        self._listener = pg_events.Listener(
            url, self._on_notify, self._on_reconnect, f"andon-listener {self.origin}"
        )
        self._batcher = pg_events.NotifyBatcher(notify_window, self._announce)
        self._writes = pg_batch.Batcher(
            lambda op: pg_retry.retrying(self._pool, op, pg_retry.NEVER_RAN),
            lambda: self.observer.store_committed(),
            lambda: self.observer.store_failed(),
        )
        # Point reads asked for in one turn go in one round trip too (a worker reads
        # every task it claims in a batch of jobs right after claiming them).
        self._reads = pg_batch.Batcher(
            lambda op: pg_retry.retrying(self._pool, op, psycopg.OperationalError),
            failed=lambda: self.observer.store_failed(),
        )
        self._checks: set[asyncio.Task[None]] = set()
        self.push = PostgresPushStore(self)

    async def open(self) -> None:
        await self._pool.open(wait=True)
        try:
            async with self._pool.connection() as conn:
                await pg_schema.check(conn, self.url)
            await self._listener.start()
        except BaseException:
            await self._pool.close()
            raise

    async def close(self) -> None:
        await self._listener.stop()
        try:
            await self._batcher.close()
            await self._writes.close()
            await self._reads.close()
        finally:
            for check in list(self._checks):
                check.cancel()
            await self._pool.close()

    # -- notifications ------------------------------------------------------------------

    def _on_notify(self, _channel: str, text: str) -> None:
        parsed = pg_events.parse(text)
        if parsed is not None and parsed[1] != self.origin:  # ours woke followers at commit
            self.notifier.publish(parsed[0])

    def _on_reconnect(self) -> None:
        self.notifier.publish_all()
        # The database may have restarted: drop the pooled connections it closed now,
        # rather than one failed statement at a time.
        check = asyncio.create_task(self._pool.check())
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _announce(self, pending: dict[str, int]) -> None:
        payloads = [pg_events.payload(t, seq, self.origin) for t, seq in pending.items()]
        await self._write(lambda conn: conn.execute(ANNOUNCE, (payloads,)))

    # -- running statements ---------------------------------------------------------------

    async def _read(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        """A read: safe to run again on another connection after any connection error."""
        return await self._retrying(op, psycopg.OperationalError)

    async def _write(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        """A write: run again only after errors that prove it never committed."""
        return await self._retrying(op, pg_retry.NEVER_RAN)

    async def _retrying(self, op: Callable[[Conn], Awaitable[T]], retry_on: pg_retry.Errors) -> T:
        try:
            return await pg_retry.retrying(self._pool, op, retry_on)
        except Exception:
            self.observer.store_failed()
            raise

    async def _fetchone(self, query: LiteralString, params: Any) -> Any:
        return await self._reads.fetchone(query, params, durable=False)

    async def _fetchall(self, query: LiteralString, params: Any) -> list[Any]:
        async def run(conn: Conn) -> list[Any]:
            return await (await conn.execute(query, params)).fetchall()

        return await self._read(run)

    # -- the contract -----------------------------------------------------------------------

    async def create_task(self, task: NewTask, message: dict[str, Any]) -> TaskRecord:
        now = time.time()
        row = await self._writes.fetchone(
            CREATE,
            {
                "id": task.id,
                "context_id": task.context_id,
                "owner": task.owner,
                "metadata": json.dumps(task.metadata),
                "retry_of": task.retry_of,
                "timeout": task.timeout,
                "idle_timeout": task.idle_timeout,
                "input_timeout": task.input_timeout,
                "now": now,
                "message": json.dumps(message),
                "status": json.dumps(
                    status_event_data(TaskState.SUBMITTED, None, None, now, metadata=task.metadata)
                ),
            },
            durable=True,
        )
        self.notifier.publish(task.id)
        record = _record(row)
        self.observer.task_created(record)
        return record

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self._fetchone(GET, (task_id,))
        return _record(row) if row else None

    async def task_and_messages(self, task_id: str) -> tuple[TaskRecord | None, list[Any]]:
        row = await self._fetchone(GET_WITH_MESSAGES, (task_id,))
        return (_record(row[:-1]), row[-1]) if row else (None, [])

    async def list_tasks(
        self,
        *,
        owner: str | None = None,
        context_id: str | None = None,
        states: Collection[TaskState] | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> TaskPage:
        listing = task_listing(
            table="andon_tasks",
            columns=TASK_COLUMNS,
            mark="%s",
            state_in="state = ANY(%s::text[])",
            state_values=list,
            owner=owner,
            context_id=context_id,
            states=states,
            page_size=page_size,
            page_token=page_token,
        )

        async def query(conn: Conn) -> TaskPage:
            rows = await (await conn.execute(listing.page_sql, listing.page_params)).fetchall()
            total = await (await conn.execute(listing.count_sql, listing.count_params)).fetchone()
            return listing.page([_record(r) for r in rows], total[0] if total else 0)

        return await self._read(query)

    async def transition(
        self,
        task_id: str,
        *,
        sources: Collection[TaskState],
        target: TaskState,
        epoch: int | None = None,
        claim: bool = False,
        reason: str | None = None,
        message: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> TaskRecord | None:
        source_set = frozenset(sources)
        check_transition(source_set, target)
        now = time.time()
        data = status_event_data(target, message, None, now, metadata=metadata)
        data.pop("priorState", None)  # both come from the row (see TRANSITION)
        row = await self._writes.fetchone(
            TRANSITION,
            {
                "id": task_id,
                "target": target.value,
                "sources": [s.value for s in source_set],
                "epoch": epoch,
                "claim": claim,
                "reason": reason,
                "message": json.dumps(message) if message is not None else None,
                "metadata": json.dumps(metadata or {}),
                "now": now,
                "data": json.dumps(data),
                "final": target.terminal,
                "origin": self.origin,
            },
            durable=True,
        )
        if row is None:
            return None
        self._batcher.announced(task_id)
        self.notifier.publish(task_id)
        record = _record(row)
        self.observer.task_changed(record)
        return record

    async def append(
        self, task_id: str, epoch: int, kind: EventKind, data: dict[str, Any]
    ) -> Event | None:
        now = time.time()
        notify = self._batcher.notify_now(task_id)
        row = await self._writes.fetchone(
            APPEND_NOTIFY if notify else APPEND,
            {
                "id": task_id,
                "epoch": epoch,
                "kind": kind,
                "data": json.dumps(data),
                "now": now,
                "origin": self.origin,
            },
            durable=False,
        )
        if row is None:
            return None
        if not notify:
            self._batcher.deferred(task_id, row[0])
        self.notifier.publish(task_id)
        self.observer.event_appended(kind)
        return Event(task_id, row[0], kind, data, False, now)

    async def record_child(self, task_id: str, epoch: int, child: dict[str, Any]) -> bool:
        row = await self._writes.fetchone(
            RECORD_CHILD,
            {"id": task_id, "epoch": epoch, "child": json.dumps(child)},
            durable=True,
        )
        return row is not None

    async def events(
        self, task_id: str, after_seq: int = 0, *, with_progress: bool = True
    ) -> list[Event]:
        rows = await self._fetchall(EVENTS, (task_id, after_seq, with_progress))
        return [Event(task_id, *row) for row in rows]

    async def fail_unfinished(
        self, reason: str, message: dict[str, Any] | None = None
    ) -> list[str]:
        rows = await self._fetchall(
            f"SELECT id, state FROM andon_tasks WHERE state IN {ACTIVE}", ()
        )
        failed = []
        for task_id, state in rows:
            done = await self.transition(
                task_id,
                sources=[TaskState(state)],
                target=TaskState.FAILED,
                reason=reason,
                message=message,
            )
            if done is not None:
                failed.append(task_id)
        return failed

    async def submitted_ids(self) -> list[str]:
        rows = await self._fetchall(
            "SELECT id FROM andon_tasks WHERE state = 'submitted' ORDER BY created_at, id", ()
        )
        return [r[0] for r in rows]
