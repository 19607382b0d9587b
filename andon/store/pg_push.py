"""The push outbox of the PostgreSQL store (see andon/store/push.py); its tables and
trigger are migration 0003_push.

Any number of processes claim from one outbox: the due rows are locked with SKIP LOCKED,
so two claimers never take the same row, and a queue's later rows wait while its oldest
is leased. Storing a config locks its task's row, as every append does, so a backfill
and the trigger never both miss (or both queue) an event appended meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from andon.store.push import PushConfig, PushDelivery, PushStore, due_rows

if TYPE_CHECKING:
    from andon.store.postgres import Conn, PostgresStore

CONFIG_COLUMNS: Final = (
    "task_id, id, url, version, token, auth_scheme, auth_credentials, created_at"
)
PUT: Final = f"""
INSERT INTO andon_push_configs ({CONFIG_COLUMNS})
VALUES (%(task_id)s, %(id)s, %(url)s, %(version)s, %(token)s, %(auth_scheme)s,
    %(auth_credentials)s, %(created_at)s)
ON CONFLICT (task_id, id) DO UPDATE SET url = excluded.url, version = excluded.version,
    token = excluded.token, auth_scheme = excluded.auth_scheme,
    auth_credentials = excluded.auth_credentials
"""
BACKFILL: Final = """
INSERT INTO andon_push_outbox (task_id, config_id, seq, next_at, created_at)
SELECT task_id, %(id)s, seq, created_at, created_at FROM andon_events
WHERE task_id = %(task_id)s AND kind IN ('status', 'progress', 'artifact')
ON CONFLICT DO NOTHING
"""
CLAIM: Final = f"""
WITH due AS ({due_rows("andon_push_outbox", now="%(now)s", limit="%(limit)s")}
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE andon_push_outbox o
    SET lease_owner = %(owner)s, lease_until = %(until)s, attempts = o.attempts + 1
    FROM due
    WHERE o.task_id = due.task_id AND o.config_id = due.config_id AND o.seq = due.seq
    RETURNING o.task_id, o.config_id, o.seq, o.attempts
)
SELECT c.task_id, c.id, c.url, c.version, c.token, c.auth_scheme, c.auth_credentials,
    c.created_at, t.context_id, claimed.seq, e.kind, e.data, e.final, e.created_at,
    claimed.attempts
FROM claimed
JOIN andon_push_configs c ON c.task_id = claimed.task_id AND c.id = claimed.config_id
JOIN andon_tasks t ON t.id = claimed.task_id
JOIN andon_events e ON e.task_id = claimed.task_id AND e.seq = claimed.seq
ORDER BY claimed.task_id, claimed.seq
"""
KEY: Final = (
    "task_id = %(task_id)s AND config_id = %(config_id)s AND seq = %(seq)s"
    " AND lease_owner = %(owner)s"
)


class PostgresPushStore(PushStore):
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def put_config(self, config: PushConfig, *, backfill: bool = False) -> PushConfig:
        stored = replace(config, created_at=time.time())
        params = {
            "task_id": stored.task_id,
            "id": stored.id,
            "url": stored.url,
            "version": stored.version,
            "token": stored.token,
            "auth_scheme": stored.auth_scheme,
            "auth_credentials": stored.auth_credentials,
            "created_at": stored.created_at,
        }

        async def put(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM andon_tasks WHERE id = %s FOR UPDATE", (stored.task_id,)
                )
                await conn.execute(PUT, params)
                if backfill:
                    await conn.execute(BACKFILL, params)

        await self._store._write(put)
        return stored

    async def get_config(self, task_id: str, config_id: str) -> PushConfig | None:
        row = await self._store._fetchone(
            f"SELECT {CONFIG_COLUMNS} FROM andon_push_configs WHERE task_id = %s AND id = %s",
            (task_id, config_id),
        )
        return PushConfig(*row) if row else None

    async def list_configs(self, task_id: str) -> list[PushConfig]:
        rows = await self._store._fetchall(
            f"SELECT {CONFIG_COLUMNS} FROM andon_push_configs WHERE task_id = %s"
            " ORDER BY created_at, id",
            (task_id,),
        )
        return [PushConfig(*row) for row in rows]

    async def delete_config(self, task_id: str, config_id: str) -> None:
        async def delete(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute(
                    "DELETE FROM andon_push_configs WHERE task_id = %s AND id = %s",
                    (task_id, config_id),
                )
                await conn.execute(
                    "DELETE FROM andon_push_outbox WHERE task_id = %s AND config_id = %s",
                    (task_id, config_id),
                )

        await self._store._write(delete)

    async def claim(self, owner: str, *, limit: int, lease: float) -> list[PushDelivery]:
        now = time.time()
        params = {"owner": owner, "until": now + lease, "now": now, "limit": limit}

        async def claim(conn: Conn) -> list[Any]:
            return await (await conn.execute(CLAIM, params)).fetchall()

        rows = await self._store._write(claim)
        return [PushDelivery(PushConfig(*row[:8]), *row[8:]) for row in rows]

    def _key(self, owner: str, delivery: PushDelivery) -> dict[str, Any]:
        return {
            "task_id": delivery.config.task_id,
            "config_id": delivery.config.id,
            "seq": delivery.seq,
            "owner": owner,
        }

    async def _execute(self, query: Any, params: dict[str, Any]) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(query, params)

        await self._store._write(run)

    async def delivered(self, owner: str, delivery: PushDelivery) -> None:
        await self._execute(
            f"DELETE FROM andon_push_outbox WHERE {KEY}", self._key(owner, delivery)
        )

    async def retry(self, owner: str, delivery: PushDelivery, at: float, error: str) -> None:
        await self._execute(
            "UPDATE andon_push_outbox SET lease_owner = NULL, lease_until = NULL,"
            f" next_at = %(at)s, last_error = %(error)s WHERE {KEY}",
            {**self._key(owner, delivery), "at": at, "error": error},
        )

    async def failed(self, owner: str, delivery: PushDelivery, error: str) -> None:
        await self._execute(
            "UPDATE andon_push_outbox SET state = 'failed', lease_owner = NULL,"
            f" lease_until = NULL, last_error = %(error)s WHERE {KEY}",
            {**self._key(owner, delivery), "error": error},
        )

    async def depth(self) -> int:
        row = await self._store._fetchone(
            "SELECT count(*) FROM andon_push_outbox WHERE state = 'pending'", ()
        )
        return int(row[0])

    async def failures(self, task_id: str) -> list[tuple[str, int, str]]:
        rows = await self._store._fetchall(
            "SELECT config_id, seq, coalesce(last_error, '') FROM andon_push_outbox"
            " WHERE task_id = %s AND state = 'failed' ORDER BY config_id, seq",
            (task_id,),
        )
        return [(r[0], r[1], r[2]) for r in rows]
