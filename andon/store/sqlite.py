"""The embedded store: one SQLite file in WAL mode.

Every operation is one transaction run as one function on a single dedicated thread,
so a compare-and-set is atomic without any lock on the event loop, and each call costs
one thread hop (the stdlib driver is used directly for that reason: a per-statement
async driver would cost a hop per statement).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from andon.protocol.types import ACTIVE_STATES, TaskState
from andon.store.base import (
    Event,
    EventKind,
    NewTask,
    Store,
    TaskPage,
    TaskRecord,
    status_event_data,
)
from andon.store.machine import check_transition

T = TypeVar("T")

MIGRATIONS: list[str] = [
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        context_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        state TEXT NOT NULL,
        prior_state TEXT,
        epoch INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        status_message TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        retry_of TEXT,
        timeout REAL,
        idle_timeout REAL,
        input_timeout REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX tasks_by_owner ON tasks (owner, created_at);
    CREATE INDEX tasks_by_context ON tasks (context_id, created_at);
    CREATE INDEX tasks_by_state ON tasks (state);
    CREATE TABLE events (
        task_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        final INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        PRIMARY KEY (task_id, seq)
    ) WITHOUT ROWID;
    """,
]

TASK_COLUMNS = (
    "id, context_id, owner, state, epoch, reason, prior_state, status_message, metadata, "
    "retry_of, timeout, idle_timeout, input_timeout, created_at, updated_at, last_seq"
)


def encode_page_token(created_at: float, task_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{task_id}".encode()).decode()


def decode_page_token(token: str) -> tuple[float, str]:
    """Raises ValueError on a token this store did not make."""
    try:
        created, _, task_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return float(created), task_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid page token") from exc


def _record(row: tuple[Any, ...]) -> TaskRecord:
    return TaskRecord(
        id=row[0],
        context_id=row[1],
        owner=row[2],
        state=TaskState(row[3]),
        epoch=row[4],
        reason=row[5],
        prior_state=TaskState(row[6]) if row[6] else None,
        status_message=json.loads(row[7]) if row[7] else None,
        metadata=json.loads(row[8]),
        retry_of=row[9],
        timeout=row[10],
        idle_timeout=row[11],
        input_timeout=row[12],
        created_at=row[13],
        updated_at=row[14],
        last_seq=row[15],
    )


class SQLiteStore(Store):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="andon-sqlite")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, db)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA foreign_keys=ON")
            return db

        self._db = await asyncio.get_running_loop().run_in_executor(self._thread, connect)
        await self._run(self._migrate)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number}; COMMIT;")

    async def close(self) -> None:
        if self._db is not None:
            await self._run(lambda db: db.close())
            self._db = None
        self._thread.shutdown(wait=True)

    async def create_task(self, task: NewTask, message: dict[str, Any]) -> TaskRecord:
        def create(db: sqlite3.Connection) -> TaskRecord:
            now = time.time()
            with _transaction(db):
                db.execute(
                    "INSERT INTO tasks (id, context_id, owner, state, metadata, retry_of, timeout,"
                    " idle_timeout, input_timeout, created_at, updated_at, last_seq)"
                    " VALUES (?, ?, ?, 'submitted', ?, ?, ?, ?, ?, ?, ?, 2)",
                    (
                        task.id,
                        task.context_id,
                        task.owner,
                        json.dumps(task.metadata),
                        task.retry_of,
                        task.timeout,
                        task.idle_timeout,
                        task.input_timeout,
                        now,
                        now,
                    ),
                )
                status = status_event_data(TaskState.SUBMITTED, None, None, now)
                db.executemany(
                    "INSERT INTO events (task_id, seq, kind, data, final, created_at)"
                    " VALUES (?, ?, ?, ?, 0, ?)",
                    [
                        (task.id, 1, "message", json.dumps(message), now),
                        (task.id, 2, "status", json.dumps(status), now),
                    ],
                )
                return _fetch(db, task.id)

        record = await self._run(create)
        self.notifier.publish(task.id)
        return record

    async def get_task(self, task_id: str) -> TaskRecord | None:
        def get(db: sqlite3.Connection) -> TaskRecord | None:
            row = db.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
            return _record(row) if row else None

        return await self._run(get)

    async def list_tasks(
        self,
        *,
        owner: str | None = None,
        context_id: str | None = None,
        states: Collection[TaskState] | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> TaskPage:
        where: list[str] = []
        params: list[Any] = []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if context_id is not None:
            where.append("context_id = ?")
            params.append(context_id)
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(s.value for s in states)
        count_sql = "SELECT count(*) FROM tasks" + (
            f" WHERE {' AND '.join(where)}" if where else ""
        )
        count_params = list(params)
        if page_token:
            created, task_id = decode_page_token(page_token)
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params.extend([created, created, task_id])
        sql = f"SELECT {TASK_COLUMNS} FROM tasks"
        if where:
            sql += f" WHERE {' AND '.join(where)}"
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(page_size + 1)

        def query(db: sqlite3.Connection) -> TaskPage:
            rows = db.execute(sql, params).fetchall()
            total = db.execute(count_sql, count_params).fetchone()[0]
            records = [_record(r) for r in rows[:page_size]]
            token = ""
            if len(rows) > page_size and records:
                token = encode_page_token(records[-1].created_at, records[-1].id)
            return TaskPage(records, token, total)

        return await self._run(query)

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

        def cas(db: sqlite3.Connection) -> TaskRecord | None:
            now = time.time()
            with _transaction(db):
                row = db.execute(
                    "SELECT state, epoch, last_seq, reason, metadata FROM tasks WHERE id = ?",
                    (task_id,),
                ).fetchone()
                if row is None:
                    return None
                state, current_epoch, last_seq, old_reason, old_metadata = row
                if TaskState(state) not in source_set:
                    return None
                if epoch is not None and current_epoch != epoch:
                    return None
                new_epoch = current_epoch + 1 if claim else current_epoch
                new_reason = reason if reason is not None else old_reason
                merged = json.loads(old_metadata)
                if metadata:
                    merged.update(metadata)
                seq = last_seq + 1
                db.execute(
                    "UPDATE tasks SET state = ?, prior_state = ?, epoch = ?, reason = ?,"
                    " status_message = ?, metadata = ?, updated_at = ?, last_seq = ? WHERE id = ?",
                    (
                        target.value,
                        state,
                        new_epoch,
                        new_reason,
                        json.dumps(message) if message is not None else None,
                        json.dumps(merged),
                        now,
                        seq,
                        task_id,
                    ),
                )
                data = status_event_data(target, message, new_reason, now, state)
                db.execute(
                    "INSERT INTO events (task_id, seq, kind, data, final, created_at)"
                    " VALUES (?, ?, 'status', ?, ?, ?)",
                    (task_id, seq, json.dumps(data), int(target.terminal), now),
                )
                return _fetch(db, task_id)

        record = await self._run(cas)
        if record is not None:
            self.notifier.publish(task_id)
        return record

    async def append(
        self, task_id: str, epoch: int, kind: EventKind, data: dict[str, Any]
    ) -> Event | None:
        payload = json.dumps(data)
        active = tuple(s.value for s in ACTIVE_STATES)

        def insert(db: sqlite3.Connection) -> Event | None:
            now = time.time()
            with _transaction(db):
                row = db.execute(
                    "UPDATE tasks SET last_seq = last_seq + 1, updated_at = ?"
                    " WHERE id = ? AND epoch = ? AND state IN (?, ?, ?, ?) RETURNING last_seq",
                    (now, task_id, epoch, *active),
                ).fetchone()
                if row is None:
                    return None
                db.execute(
                    "INSERT INTO events (task_id, seq, kind, data, final, created_at)"
                    " VALUES (?, ?, ?, ?, 0, ?)",
                    (task_id, row[0], kind, payload, now),
                )
                return Event(task_id, row[0], kind, data, False, now)

        event = await self._run(insert)
        if event is not None:
            self.notifier.publish(task_id)
        return event

    async def events(self, task_id: str, after_seq: int = 0) -> list[Event]:
        def read(db: sqlite3.Connection) -> list[Event]:
            rows = db.execute(
                "SELECT seq, kind, data, final, created_at FROM events"
                " WHERE task_id = ? AND seq > ? ORDER BY seq",
                (task_id, after_seq),
            ).fetchall()
            return [Event(task_id, r[0], r[1], json.loads(r[2]), bool(r[3]), r[4]) for r in rows]

        return await self._run(read)

    async def fail_unfinished(self, reason: str) -> list[str]:
        active = [s.value for s in ACTIVE_STATES]
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT id, state FROM tasks WHERE state IN ({', '.join('?' * len(active))})",
                active,
            ).fetchall()
        )
        failed = []
        for task_id, state in rows:
            done = await self.transition(
                task_id, sources=[TaskState(state)], target=TaskState.FAILED, reason=reason
            )
            if done is not None:
                failed.append(task_id)
        return failed

    async def submitted_ids(self) -> list[str]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT id FROM tasks WHERE state = 'submitted' ORDER BY created_at"
            ).fetchall()
        )
        return [r[0] for r in rows]


def _fetch(db: sqlite3.Connection, task_id: str) -> TaskRecord:
    return _record(
        db.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
    )


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
