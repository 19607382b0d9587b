"""Statements in groups, for PostgreSQL: those asked for in one turn of the event loop
go to the server together, in one transaction and one round trip (a pipeline). The
store's writes go this way (group commit), and so do its point reads and a worker's
releases of the jobs it has finished: a worker that takes a batch of jobs claims,
reads, runs and lets go of them in step, so each step is one round trip for them all.

One batch is in flight at a time per batcher; what is asked meanwhile waits for it and
goes in the next one, so the busier the process, the more statements share a round
trip and a commit (and, for state changes, one wait for the disk). A lone statement is
sent as before, alone and in autocommit: a pipelined transaction costs about twice a
plain statement's round trip.

Each caller gets its own statement's row once the batch has committed, so a write that
returned is committed, as without batching. When one statement is refused (by the
server, which rolls the whole batch back, or by the driver before anything is sent),
the batch is sent again one statement at a time, so that only the one at fault fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg

Conn = psycopg.AsyncConnection[Any]
Params = Mapping[str, Any] | Sequence[Any]
Run = Callable[[Callable[[Conn], Awaitable[Any]]], Awaitable[Any]]
"""Runs an operation on a pooled connection, trying again where that is safe."""

KEEP_DURABILITY: LiteralString = "SET LOCAL synchronous_commit TO DEFAULT"
"""Undoes, for a batch holding a write that must wait for the disk, the `synchronous_commit
= off` an append in it may have set for its transaction."""


@dataclass(slots=True)
class Statement:
    query: LiteralString
    params: Params
    durable: bool
    """Whether its commit must wait for the disk (every write but an append or a
    lease's release; never a read)."""
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher:
    """Statements go through `fetchone`; `committed` is called once for each
    transaction that commits, `failed` once for each statement that raises."""

    def __init__(
        self,
        run: Run,
        committed: Callable[[], None] = lambda: None,
        failed: Callable[[], None] = lambda: None,
    ) -> None:
        self._run = run
        self._committed = committed
        self._failed = failed
        self._queue: list[Statement] = []
        self._sender: asyncio.Task[None] | None = None

    async def fetchone(self, query: LiteralString, params: Params, *, durable: bool) -> Any:
        """Its statement's first row (or None), once committed."""
        statement = Statement(query, params, durable)
        self._queue.append(statement)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="andon-pg-batch")
        return await statement.done

    async def close(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send_all(self) -> None:
        # Started in the turn of the first statement, this runs in a later one: the rest of
        # that turn's statements are queued by then.
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                if len(batch) == 1:
                    await self._alone(batch[0])
                else:
                    await self._together(batch)
        finally:
            self._sender = None
            for statement in self._queue:  # cancelled while sending (its owner closes)
                statement.done.cancel()
            self._queue = []

    async def _alone(self, statement: Statement) -> None:
        async def op(conn: Conn) -> Any:
            return await (await conn.execute(statement.query, statement.params)).fetchone()

        try:
            row = await self._run(op)
        except Exception as exc:
            self._fail(statement, exc)
            return
        self._committed()
        _settle(statement, row)

    async def _together(self, batch: list[Statement]) -> None:
        sent = False

        async def op(conn: Conn) -> list[Any]:
            nonlocal sent
            sent = False
            async with conn.pipeline():
                async with conn.transaction():
                    # The driver refuses parameters it cannot send (a NUL in a text)
                    # here, before the commit is even queued.
                    cursors = [await conn.execute(w.query, w.params) for w in batch]
                    sent = True
                    if any(w.durable for w in batch):
                        await conn.execute(KEEP_DURABILITY)
                return [await cursor.fetchone() for cursor in cursors]

        try:
            rows = await self._run(op)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) or (exc.sqlstate is None and sent):
                for statement in batch:  # the connection failed: whether it committed is unknown
                    self._fail(statement, exc)
                return
            # One statement was refused, by the server (which rolled the batch back) or by
            # the driver before anything was sent: one by one now, so it fails alone.
            await asyncio.gather(*(self._alone(statement) for statement in batch))
            return
        except Exception as exc:
            for statement in batch:
                self._fail(statement, exc)
            return
        self._committed()
        for statement, row in zip(batch, rows, strict=True):
            _settle(statement, row)

    def _fail(self, statement: Statement, exc: Exception) -> None:
        self._failed()
        if not statement.done.done():
            statement.done.set_exception(exc)


def _settle(statement: Statement, row: Any) -> None:
    if not statement.done.done():
        statement.done.set_result(row)
