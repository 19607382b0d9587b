"""The PostgreSQL database of distributed mode, as `andon db upgrade` sets it up:
andon's own tables (numbered migrations, andon/store/pg_schema.py) and procrastinate's
job queue (andon/dispatch/queue.py), in one transaction."""

from __future__ import annotations

import psycopg

from andon.dispatch.queue import upgrade_queue_schema
from andon.store import pg_schema

QUEUE_SCHEMA = "procrastinate job queue"


async def upgrade(url: str) -> list[str]:
    """Bring the database up to this andon's schema; return what was applied."""
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        applied = await pg_schema.migrate(conn)
        if await upgrade_queue_schema(conn):
            applied.append(QUEUE_SCHEMA)
        return applied
