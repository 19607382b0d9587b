"""Group commit for PostgreSQL: the writes asked for in one turn of the event loop go
to the server together, in one transaction and one round trip (a pipeline).

One batch is in flight at a time per store; what is asked meanwhile waits for it and
goes in the next one, so the busier the process, the more writes share a commit (and,
for state changes, one wait for the disk). A lone write is sent as before, alone and in
autocommit: a pipelined transaction costs about twice a plain statement's round trip.

Each caller gets its own statement's row once the batch has committed, so a write that
returned is committed, as without batching. When one statement fails, the server rolls
the whole batch back; the writes are then sent again one by one, so that only the one
at fault fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg

Conn = psycopg.AsyncConnection[Any]
Run = Callable[[Callable[[Conn], Awaitable[Any]]], Awaitable[Any]]
"""Runs an operation on a pooled connection, trying again where that is safe."""

KEEP_DURABILITY: LiteralString = "SET LOCAL synchronous_commit TO DEFAULT"
"""Undoes, for a batch holding a write that must wait for the disk, the `synchronous_commit
= off` an append in it may have set for its transaction."""


@dataclass(slots=True)
class Write:
    query: LiteralString
    params: dict[str, Any]
    durable: bool
    """Whether its commit must wait for the disk (every write but an append)."""
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    """The store's writes go through `fetchone`; `committed` is called once for each
    transaction that commits, `failed` once for each write that raises."""

    def __init__(self, run: Run, committed: Callable[[], None], failed: Callable[[], None]) -> None:
        self._run = run
        self._committed = committed
        self._failed = failed
        self._queue: list[Write] = []
        self._sender: asyncio.Task[None] | None = None
        self.batches = 0
        """Batches sent, and writes in them: for benchmarks."""
        self.writes = 0

    async def fetchone(self, query: LiteralString, params: dict[str, Any], *, durable: bool) -> Any:
        """Its statement's first row (or None), once committed."""
        write = Write(query, params, durable)
        self._queue.append(write)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="andon-pg-group-commit")
        return await write.done

    async def close(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send_all(self) -> None:
        # Started in the turn of the first write, this runs in a later one: the rest of
        # that turn's writes are queued by then.
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                self.batches += 1
                self.writes += len(batch)
                if len(batch) == 1:
                    await self._alone(batch[0])
                else:
                    await self._together(batch)
        finally:
            self._sender = None
            for write in self._queue:  # cancelled while sending (the store closes)
                write.done.cancel()
            self._queue = []

    async def _alone(self, write: Write) -> None:
        async def op(conn: Conn) -> Any:
            return await (await conn.execute(write.query, write.params)).fetchone()

        try:
            row = await self._run(op)
        except Exception as exc:
            self._fail(write, exc)
            return
        self._committed()
        _settle(write, row)

    async def _together(self, batch: list[Write]) -> None:
        async def op(conn: Conn) -> list[Any]:
            async with conn.pipeline():
                async with conn.transaction():
                    cursors = [await conn.execute(w.query, w.params) for w in batch]
                    if any(w.durable for w in batch):
                        await conn.execute(KEEP_DURABILITY)
                return [await cursor.fetchone() for cursor in cursors]

        try:
            rows = await self._run(op)
        except psycopg.Error as exc:
            if exc.sqlstate is None or isinstance(exc, psycopg.OperationalError):
                for write in batch:  # the connection failed: whether it committed is unknown
                    self._fail(write, exc)
                return
            # A statement failed and the server rolled the batch back: one by one now.
            await asyncio.gather(*(self._alone(write) for write in batch))
            return
        except Exception as exc:
            for write in batch:
                self._fail(write, exc)
            return
        self._committed()
        for write, row in zip(batch, rows, strict=True):
            _settle(write, row)

    def _fail(self, write: Write, exc: Exception) -> None:
        self._failed()
        if not write.done.done():
            write.done.set_exception(exc)


def _settle(write: Write, row: Any) -> None:
    if not write.done.done():
        write.done.set_result(row)
