"""The PostgreSQL schema: numbered SQL files applied by `andon db upgrade`, checked at open.

Migrations are never applied by a serving process: with many processes on one
database, changing the schema is an operator's step, taken once, before starting new
code. A process finding the schema behind (or ahead of) its code refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from andon.store import redact
from andon.store.base import StoreUnusable

VERSIONS_TABLE = "andon_schema_versions"
UPGRADE_LOCK = 0x616E646F6E  # "andon": one upgrader at a time across processes


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    script: str


class SchemaMismatch(StoreUnusable):
    """The database's schema is not the one this code was written for."""


def migrations() -> list[Migration]:
    """The migrations shipped in andon/store/migrations/postgres, by version."""
    found = []
    for entry in resources.files("andon.store.migrations").joinpath("postgres").iterdir():
        if entry.name.endswith(".sql"):
            number, _, _ = entry.name.partition("_")
            found.append(Migration(int(number), entry.name.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[m.name for m in found]}")
    return found


async def current_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The last migration applied to the database; 0 when none ever was."""
    exists = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSIONS_TABLE,))
    row = await exists.fetchone()
    if row is None or not row[0]:
        return 0
    cursor = await conn.execute(
        sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(sql.Identifier(VERSIONS_TABLE))
    )
    version = await cursor.fetchone()
    return int(version[0]) if version else 0


async def check(conn: psycopg.AsyncConnection[Any], url: str) -> None:
    """Raise SchemaMismatch, saying what to do, unless the schema is the code's."""
    have, want = await current_version(conn), len(migrations())
    if have < want:
        raise SchemaMismatch(
            f"the database schema is at version {have}, this andon needs {want}: "
            f"run `andon db upgrade --db {redact(url)}`"
        )
    if have > want:
        raise SchemaMismatch(
            f"the database schema is at version {have}, newer than this andon knows ({want}): "
            "upgrade andon"
        )


async def migrate(conn: psycopg.AsyncConnection[object]) -> list[str]:
    """Apply the migrations the database lacks; return their names. Run it inside a
    transaction: the lock taken here is held until that transaction ends."""
    # Two upgraders at once: the second waits here, then finds nothing left to do.
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
    await conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(VERSIONS_TABLE))
    )
    have = await current_version(conn)
    applied = []
    for migration in migrations()[have:]:
        await conn.execute(migration.script.encode())
        await conn.execute(
            sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                sql.Identifier(VERSIONS_TABLE)
            ),
            (migration.version, migration.name),
        )
        applied.append(migration.name)
    return applied
