"""Statements that survive a restart of the database: after one, every pooled
connection may be dead, so a statement is tried once on each before its error counts.

Which errors allow another try is the caller's to say: any lost connection for a
statement that may run twice (a read, an idempotent write), only those proving it never
ran (`NEVER_RAN`) for any other write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
Errors = type[Exception] | tuple[type[Exception], ...]

log = logging.getLogger(__name__)

NEVER_RAN: Errors = (errors.AdminShutdown, errors.CannotConnectNow)
"""The server sends AdminShutdown to every session it stops (a restart): a statement
sent on such a pooled connection was never run."""


async def retrying(
    pool: AsyncConnectionPool[Conn],
    op: Callable[[Conn], Awaitable[T]],
    retry_on: Errors = psycopg.OperationalError,
) -> T:
    """Run `op` on a pooled connection, again on another after an error of `retry_on`."""

    async def attempt() -> T:
        async with pool.connection() as conn:
            return await op(conn)

    return await tries(pool.max_size + 1, attempt, lambda exc: isinstance(exc, retry_on))


async def tries(
    count: int, op: Callable[[], Awaitable[T]], again: Callable[[Exception], bool]
) -> T:
    """Run `op` up to `count` times while it fails with errors `again` accepts."""
    for attempt in range(count):
        try:
            return await op()
        except Exception as exc:
            if attempt == count - 1 or not again(exc):
                raise
            log.info("retrying a statement after a lost connection: %s", exc)
            await asyncio.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
