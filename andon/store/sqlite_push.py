"""The push outbox of the SQLite store (see andon/store/push.py); its tables and trigger
are the store's second migration (PUSH_MIGRATION), and the third makes the trigger again
on the events table it rebuilds. Writes go through the store's turn transaction (group
commit) like every other write, each one atomic in its savepoint."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from andon.store.push import PushConfig, PushDelivery, PushStore, due_rows

if TYPE_CHECKING:
    from andon.store.sqlite import SQLiteStore

_PUSH_TABLES = """
CREATE TABLE push_configs (
    task_id TEXT NOT NULL,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    version TEXT NOT NULL,
    token TEXT,
    auth_scheme TEXT,
    auth_credentials TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (task_id, id)
) WITHOUT ROWID;
CREATE TABLE push_outbox (
    task_id TEXT NOT NULL,
    config_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (task_id, config_id, seq)
) WITHOUT ROWID;
CREATE INDEX push_outbox_due ON push_outbox (state, next_at);
"""

PUSH_TRIGGER = """
CREATE TRIGGER push_enqueue AFTER INSERT ON events
WHEN NEW.kind IN ('status', 'progress', 'artifact')
BEGIN
    INSERT INTO push_outbox (task_id, config_id, seq, next_at, created_at)
    SELECT NEW.task_id, id, NEW.seq, NEW.created_at, NEW.created_at
    FROM push_configs WHERE task_id = NEW.task_id;
END;
"""
"""Queues every streamed event for the task's webhooks: made by PUSH_MIGRATION, and again
by the migration that rebuilds the events table (a table's triggers go with it). Two
migrations that ran are built from it: never edit it, make a new migration."""

PUSH_MIGRATION = _PUSH_TABLES + PUSH_TRIGGER

CONFIG_COLUMNS = "task_id, id, url, version, token, auth_scheme, auth_credentials, created_at"

CLAIM = f"""
UPDATE push_outbox SET lease_owner = :owner, lease_until = :until, attempts = attempts + 1
WHERE (task_id, config_id, seq) IN ({due_rows("push_outbox", now=":now", limit=":limit")})
RETURNING task_id, config_id, seq, attempts
"""
CLAIMED = f"""
SELECT {", ".join("c." + c.strip() for c in CONFIG_COLUMNS.split(","))},
    t.context_id, e.kind, e.data, e.final, e.created_at
FROM push_configs c
JOIN tasks t ON t.id = c.task_id
JOIN events e ON e.task_id = c.task_id AND e.seq = :seq
WHERE c.task_id = :task_id AND c.id = :config_id
"""
KEY = "task_id = ? AND config_id = ? AND seq = ? AND lease_owner = ?"


def _config(row: tuple[Any, ...]) -> PushConfig:
    return PushConfig(*row)


class SQLitePushStore(PushStore):
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def put_config(self, config: PushConfig, *, backfill: bool = False) -> PushConfig:
        stored = replace(config, created_at=time.time())

        def put(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO push_configs ({CONFIG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (task_id, id) DO UPDATE SET url = excluded.url,"
                " version = excluded.version, token = excluded.token,"
                " auth_scheme = excluded.auth_scheme,"
                " auth_credentials = excluded.auth_credentials",
                (
                    stored.task_id,
                    stored.id,
                    stored.url,
                    stored.version,
                    stored.token,
                    stored.auth_scheme,
                    stored.auth_credentials,
                    stored.created_at,
                ),
            )
            if backfill:
                db.execute(
                    "INSERT OR IGNORE INTO push_outbox"
                    " (task_id, config_id, seq, next_at, created_at)"
                    " SELECT task_id, ?, seq, created_at, created_at FROM events"
                    " WHERE task_id = ? AND kind IN ('status', 'progress', 'artifact')",
                    (stored.id, stored.task_id),
                )

        await self._store._write(put)
        return stored

    async def get_config(self, task_id: str, config_id: str) -> PushConfig | None:
        row = await self._store._run(
            lambda db: db.execute(
                f"SELECT {CONFIG_COLUMNS} FROM push_configs WHERE task_id = ? AND id = ?",
                (task_id, config_id),
            ).fetchone()
        )
        return _config(row) if row else None

    async def list_configs(self, task_id: str) -> list[PushConfig]:
        rows = await self._store._run(
            lambda db: db.execute(
                f"SELECT {CONFIG_COLUMNS} FROM push_configs WHERE task_id = ?"
                " ORDER BY created_at, id",
                (task_id,),
            ).fetchall()
        )
        return [_config(r) for r in rows]

    async def delete_config(self, task_id: str, config_id: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            for table, column in (("push_configs", "id"), ("push_outbox", "config_id")):
                db.execute(
                    f"DELETE FROM {table} WHERE task_id = ? AND {column} = ?",
                    (task_id, config_id),
                )

        await self._store._write(delete)

    async def claim(self, owner: str, *, limit: int, lease: float) -> list[PushDelivery]:
        def claim(db: sqlite3.Connection) -> list[PushDelivery]:
            now = time.time()
            params = {"owner": owner, "until": now + lease, "now": now, "limit": limit}
            claimed = []
            for task_id, config_id, seq, attempts in db.execute(CLAIM, params).fetchall():
                row = db.execute(
                    CLAIMED, {"task_id": task_id, "config_id": config_id, "seq": seq}
                ).fetchone()
                if row is None:  # its event or config is gone: nothing to send
                    db.execute(
                        "DELETE FROM push_outbox WHERE task_id = ? AND config_id = ? AND seq = ?",
                        (task_id, config_id, seq),
                    )
                    continue
                config = _config(row[:8])
                context_id, kind, data, final, event_at = row[8:]
                claimed.append(
                    PushDelivery(
                        config,
                        context_id,
                        seq,
                        kind,
                        json.loads(data),
                        bool(final),
                        event_at,
                        attempts,
                    )
                )
            return claimed

        return await self._store._write(claim)

    def _key(self, owner: str, delivery: PushDelivery) -> tuple[Any, ...]:
        return (delivery.config.task_id, delivery.config.id, delivery.seq, owner)

    async def delivered(self, owner: str, delivery: PushDelivery) -> None:
        key = self._key(owner, delivery)
        await self._store._write(lambda db: db.execute(f"DELETE FROM push_outbox WHERE {KEY}", key))

    async def retry(self, owner: str, delivery: PushDelivery, at: float, error: str) -> None:
        params = (at, error, *self._key(owner, delivery))
        await self._store._write(
            lambda db: db.execute(
                "UPDATE push_outbox SET lease_owner = NULL, lease_until = NULL, next_at = ?,"
                f" last_error = ? WHERE {KEY}",
                params,
            )
        )

    async def failed(self, owner: str, delivery: PushDelivery, error: str) -> None:
        params = (error, *self._key(owner, delivery))
        await self._store._write(
            lambda db: db.execute(
                "UPDATE push_outbox SET state = 'failed', lease_owner = NULL,"
                f" lease_until = NULL, last_error = ? WHERE {KEY}",
                params,
            )
        )

    async def depth(self) -> int:
        row = await self._store._run(
            lambda db: db.execute(
                "SELECT count(*) FROM push_outbox WHERE state = 'pending'"
            ).fetchone()
        )
        return int(row[0])

    async def failures(self, task_id: str) -> list[tuple[str, int, str]]:
        rows = await self._store._run(
            lambda db: db.execute(
                "SELECT config_id, seq, last_error FROM push_outbox"
                " WHERE task_id = ? AND state = 'failed' ORDER BY config_id, seq",
                (task_id,),
            ).fetchall()
        )
        return [(r[0], r[1], r[2] or "") for r in rows]
