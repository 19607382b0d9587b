"""Before a process starts serving: is its store usable, and is it the only process on
it? Answered in one line, before uvicorn or the job queue could turn the same failure
into a traceback (or, for a PostgreSQL database that does not exist, into one after
the pool's 30 s of retries)."""

from __future__ import annotations

import asyncio

from andon.store import open_store, redact
from andon.store.base import Store, StoreUnusable
from andon.store.sqlite import SQLiteStore

CONNECT_TIMEOUT = 5


def claim_store(url: str) -> None:
    """Check the store can be opened, and for a SQLite file take its lock for the rest
    of this process's life (the kernel drops it when the process ends). Raises
    StoreUnusable (or ValueError for a URL of no known kind) saying what to do."""
    store = open_store(url)
    if isinstance(store, SQLiteStore):
        store.hold_for_process()
        asyncio.run(_open_and_close(store))
    else:
        asyncio.run(_check_postgres(url))


async def _open_and_close(store: Store) -> None:
    await store.open()
    await store.close()


async def _check_postgres(url: str) -> None:
    import psycopg  # distributed mode only: an embedded process never loads it

    from andon.store import pg_schema

    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        said = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if "does not exist" in said:
            raise StoreUnusable(
                f"{redact(url)}: {said}; create it (createdb), then run "
                f"`andon db upgrade --db {redact(url)}`"
            ) from None
        raise StoreUnusable(f"cannot reach PostgreSQL at {redact(url)}: {said}") from None
    async with conn:
        await pg_schema.check(conn, url)
