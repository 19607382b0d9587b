"""The embedded store: one SQLite file in WAL mode, driven by the stdlib driver.

Point operations (create, get, compare-and-set, append, reading a short log) run on the
event loop's own thread: each is a few statements of about 5-40 µs in WAL mode with
synchronous=NORMAL (no disk sync at commit), several times cheaper than a hop to a
worker thread (100-170 µs measured on this project's machines), and atomic for free
since nothing awaits inside. What can grow — listing, reading a long log, recovery
scans — runs on a reader thread with its own connection; so do WAL checkpoints, the one
step that syncs to disk, which the loop's connection never runs itself.

Group commit: writes share one transaction until a turn of the event loop goes by
without one, or the transaction is TURN_BUDGET (1 ms) old; a callback queued behind each
turn that wrote checks which (each write is a savepoint in it, so a write that fails
undoes only itself). A task that is created, runs and ends a turn apart from step to
step (an `echo`) so costs one commit, not four. Reads on the loop's connection see the
open transaction's writes at once; what leaves the process waits for the commit
(`committed`: a stream's events, every answer of the server; an answer asked for in a
turn that has not written yet commits at once), so a process that dies before it loses
the writes of those turns, which nobody outside was shown (README, "Durability").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from andon.protocol.types import ACTIVE_STATES, TaskState
from andon.store import lock
from andon.store.base import (
    CHILDREN,
    TASK_COLUMNS,
    Event,
    EventKind,
    NewTask,
    Store,
    StoreUnusable,
    TaskPage,
    TaskRecord,
    status_event_data,
    task_listing,
)
from andon.store.machine import check_transition
from andon.store.sqlite_push import PUSH_MIGRATION, PUSH_TRIGGER, SQLitePushStore

T = TypeVar("T")

ACTIVE: Final = tuple(s.value for s in ACTIVE_STATES)
"""The active states' values, made once: every append of every task passes them."""

log = logging.getLogger(__name__)

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
    PUSH_MIGRATION,
    # The log in order of arrival: every append goes to the end of the table, where
    # clustered by task it went to a page of its own task among all the others, a
    # crowd's appends touching (and committing) a page each. The events already logged
    # are copied in the old table's order, each task's together.
    """
    CREATE TABLE events_in_order (
        task_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        final INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        UNIQUE (task_id, seq)
    );
    INSERT INTO events_in_order (task_id, seq, kind, data, final, created_at)
        SELECT task_id, seq, kind, data, final, created_at FROM events ORDER BY task_id, seq;
    DROP TABLE events;
    ALTER TABLE events_in_order RENAME TO events;
    """
    + PUSH_TRIGGER,
]


def _check_path(path: str) -> None:
    """Refuse, in words, a path no SQLite store can live at (before SQLite says it less
    clearly, or quietly makes a temporary database of an empty name)."""
    if not path:
        raise StoreUnusable("--db is empty: give a file path (andon.db) or postgresql://...")
    if path.startswith("file:"):
        raise StoreUnusable(
            f"--db {path}: URIs are not read as such; give a plain file path or sqlite:///path"
        )
    where = Path(path)
    if where.is_dir():
        raise StoreUnusable(f"--db {path} is a directory: give a file path inside it")
    folder = where.parent
    if not folder.is_dir():
        raise StoreUnusable(f"--db {path}: the directory {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK) or (
        where.exists() and not os.access(where, os.W_OK)
    ):
        raise StoreUnusable(
            f"--db {path} is not writable by this user: andon writes to the file and beside "
            "it (-wal, -shm, .lock); fix its permissions or give another --db"
        )


def _unusable(path: str, exc: sqlite3.Error) -> str:
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in str(exc) or "malformed" in str(exc)
    ):
        return (
            f"--db {path} is not a SQLite database (or is damaged): give another --db, "
            "or move this file away to start with an empty store"
        )
    return f"--db {path} cannot be used: {exc}"


def db_path(db: sqlite3.Connection) -> str:
    row = db.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else "the store"


def _record(row: tuple[Any, ...]) -> TaskRecord:
    return TaskRecord(
        id=row[0],
        context_id=row[1],
        owner=row[2],
        state=TaskState(row[3]),
        epoch=row[4],
        reason=row[5],
        prior_state=TaskState(row[6]) if row[6] else None,
        stored_status=row[7],
        metadata=json.loads(row[8]),
        retry_of=row[9],
        timeout=row[10],
        idle_timeout=row[11],
        input_timeout=row[12],
        created_at=row[13],
        updated_at=row[14],
        last_seq=row[15],
    )


LONG_LOG = 256
"""Reading more events than this goes to the reader thread."""
CHECKPOINT_EVERY = 1.0
TURN_BUDGET = 0.001
"""Seconds a transaction stays open while every turn of the loop writes to it."""

_writing: dict[str, SQLiteStore] = {}
"""File -> the store of this process whose turn transaction holds its write lock. A
second store on the same file (tests, an embedding program) commits that one first:
waiting for the lock on the loop's thread would keep the holder from ever committing."""


class SQLiteStore(Store):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        self._file = os.path.realpath(path)
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="andon-sqlite")
        self._checkpoints: asyncio.Task[None] | None = None
        self.push = SQLitePushStore(self)
        self._turn: list[asyncio.Future[None]] | None = None
        """Set while a transaction is open: a future for each caller of `committed`
        waiting for it, each resolved by its commit. One apiece rather than one shared
        future each shields: a stream that goes away cancels only its own, and each of a
        crowd's thousand followers waiting for a turn costs a future, not a shield's outer
        future, two done-callbacks and two context copies."""
        self._writes = 0
        """Writes made by this store: the commit callback compares it turn by turn."""
        self._writes_seen = 0
        self._began = 0.0

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A write, on the loop's thread, in the open transaction (see the module's
        docstring). The caller gets its result at once; the commit follows."""
        db = self._db
        if db is None:
            raise RuntimeError("store is not open")
        if self._turn is None:
            holder = _writing.get(self._file)
            if holder is not None and holder is not self:
                holder._commit()
            db.execute("BEGIN IMMEDIATE")
            _writing[self._file] = self
            loop = asyncio.get_running_loop()
            turn: list[asyncio.Future[None]] = []
            self._turn = turn
            self._writes_seen, self._began = self._writes, loop.time()
            loop.call_soon(self._commit_when_quiet, turn)
        self._writes += 1
        db.execute("SAVEPOINT write")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK TO write")
            db.execute("RELEASE write")
            self.observer.store_failed()
            raise
        db.execute("RELEASE write")
        return result

    def _commit_when_quiet(self, turn: list[asyncio.Future[None]]) -> None:
        """Commit after the first turn of the loop that wrote nothing, or once the
        transaction is TURN_BUDGET old: the steps of a short task follow each other a
        turn apart (created, claimed, its output, its end) and share one commit."""
        if turn is not self._turn:
            return  # committed already (closing, or another store on the file)
        loop = asyncio.get_running_loop()
        if self._writes != self._writes_seen and loop.time() - self._began < TURN_BUDGET:
            self._writes_seen = self._writes
            loop.call_soon(self._commit_when_quiet, turn)
            return
        self._commit()

    def _commit(self) -> None:
        """End the open transaction."""
        turn, self._turn = self._turn, None
        if _writing.get(self._file) is self:
            del _writing[self._file]
        if turn is None:
            return
        db = self._db
        try:
            if db is not None:
                db.execute("COMMIT")
                self.observer.store_committed()
        except sqlite3.Error:
            # This turn's writes are lost, as in a crash: nothing outside was shown them.
            log.exception("could not commit this turn's writes")
            self.observer.store_failed()
            if db is not None and db.in_transaction:
                db.execute("ROLLBACK")
        finally:
            for waiter in turn:  # whatever happened, nobody waits for it forever
                if not waiter.done():
                    waiter.set_result(None)

    async def committed(self) -> None:
        """Return once every write made so far is committed. With no write since the
        last quiet-turn check, the writes are a finished step's: the waiting answer
        commits them now rather than a turn or two later."""
        turn = self._turn
        if turn is None:
            return
        if self._writes == self._writes_seen:
            self._commit()
            return
        waiter = asyncio.get_running_loop().create_future()
        turn.append(waiter)
        await waiter

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A point read, on the loop's thread: it sees this turn's writes, committed or
        not (what leaves the process waits for `committed`)."""
        if self._db is None:
            raise RuntimeError("store is not open")
        try:
            return fn(self._db)
        except Exception:
            self.observer.store_failed()
            raise

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read that may be long, on the reader thread: its own connection sees only
        what is committed, so it waits for this turn's commit first."""
        await self.committed()
        reader = self._reader
        if reader is None:
            raise RuntimeError("store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, reader)
        except Exception:
            self.observer.store_failed()
            raise

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")  # first: switching to WAL may wait for a lock
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def hold_for_process(self) -> None:
        """Take the file's lock for the rest of this process's life (see
        andon.store.lock): `andon serve` does before anything else."""
        _check_path(self.path)
        lock.acquire(self.path)

    async def open(self) -> None:
        """Take the file (one process at a time, see andon.store.lock), create or
        upgrade its tables. A file that cannot be a store raises StoreUnusable."""
        _check_path(self.path)
        lock.acquire(self.path)
        try:
            loop = asyncio.get_running_loop()
            self._reader = await loop.run_in_executor(self._thread, self._connect)
            await self._read(self._migrate)
        except sqlite3.Error as exc:
            await self._close_connections()
            lock.release(self.path)
            raise StoreUnusable(_unusable(self.path, exc)) from None
        except BaseException:
            await self._close_connections()
            lock.release(self.path)
            raise
        self._db = self._connect()
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # the reader thread checkpoints
        self._checkpoints = asyncio.create_task(self._checkpoint_regularly())

    async def _checkpoint_regularly(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            await self._read(lambda db: db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        # The version is read inside the write transaction: two processes opening a new
        # file at once must not both apply the same migration.
        with _transaction(db):
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreUnusable(
                    f"{db_path(db)} has schema version {version}, newer than this andon "
                    f"knows ({len(MIGRATIONS)}): upgrade andon, or give another --db"
                )
            if 0 < version < len(MIGRATIONS):  # a file of an earlier andon: may take a while
                log.info("upgrading %s from schema %d to %d", db_path(db), version, len(MIGRATIONS))
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in split_statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        if self._db is not None:
            self._commit()
            self._db.close()
            self._db = None
        if self._reader is not None:
            await self._read(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
            await self._close_connections()
            lock.release(self.path)
        self._thread.shutdown(wait=True)

    async def _close_connections(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, reader.close)

    async def create_task(self, task: NewTask, message: dict[str, Any]) -> TaskRecord:
        def create(db: sqlite3.Connection) -> tuple[TaskRecord, list[Event]]:
            now = time.time()
            row = db.execute(
                "INSERT INTO tasks (id, context_id, owner, state, metadata, retry_of, timeout,"
                " idle_timeout, input_timeout, created_at, updated_at, last_seq)"
                " VALUES (?, ?, ?, 'submitted', ?, ?, ?, ?, ?, ?, ?, 2)"
                f" RETURNING {TASK_COLUMNS}",
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
            ).fetchone()
            status = status_event_data(TaskState.SUBMITTED, None, None, now, metadata=task.metadata)
            db.executemany(
                "INSERT INTO events (task_id, seq, kind, data, final, created_at)"
                " VALUES (?, ?, ?, ?, 0, ?)",
                [
                    (task.id, 1, "message", message_text := json.dumps(message), now),
                    (task.id, 2, "status", status_text := json.dumps(status), now),
                ],
            )
            events = [
                Event(task.id, 1, "message", message_text, False, now),
                Event(task.id, 2, "status", status_text, False, now),
            ]
            return _record(row), events

        record, events = await self._write(create)
        self.notifier.publish(task.id, events)
        self.observer.task_created(record)
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
        listing = task_listing(
            table="tasks",
            columns=TASK_COLUMNS,
            mark="?",
            state_in="state IN (SELECT value FROM json_each(?))",
            state_values=json.dumps,
            owner=owner,
            context_id=context_id,
            states=states,
            page_size=page_size,
            page_token=page_token,
        )

        def query(db: sqlite3.Connection) -> TaskPage:
            rows = db.execute(listing.page_sql, listing.page_params).fetchall()
            total = db.execute(listing.count_sql, listing.count_params).fetchone()[0]
            return listing.page([_record(r) for r in rows], total)

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
        states = [s.value for s in source_set]
        # One UPDATE is the compare-and-set: SET reads the row's old values, so the old
        # state becomes prior_state, and RETURNING gives the new record.
        # Metadata keys given replace the stored ones, top level only (as PostgreSQL's ||).
        merge = "metadata"
        if metadata:
            merge = f"json_set(metadata{', ?, json(?)' * len(metadata)})"
        sql = (
            "UPDATE tasks SET state = ?, prior_state = state, epoch = epoch + ?,"
            " reason = COALESCE(?, reason), status_message = ?,"
            f" metadata = {merge}, updated_at = ?, last_seq = last_seq + 1"
            f" WHERE id = ? AND state IN ({', '.join('?' * len(states))})"
            + (" AND epoch = ?" if epoch is not None else "")
            + f" RETURNING {TASK_COLUMNS}"
        )
        message_json = json.dumps(message) if message is not None else None
        merge_params: list[Any] = []
        for key, value in (metadata or {}).items():
            if '"' in key:  # a JSON path cannot quote it; only andon's own keys come here
                raise ValueError(f"metadata key {key!r} holds a double quote")
            merge_params += [f'$."{key}"', json.dumps(value)]

        def cas(db: sqlite3.Connection) -> tuple[TaskRecord, Event] | None:
            now = time.time()
            params: list[Any] = [target.value, int(claim), reason, message_json, *merge_params]
            params += [now, task_id, *states]
            if epoch is not None:
                params.append(epoch)
            row = db.execute(sql, params).fetchone()
            if row is None:
                return None
            record = _record(row)
            data = status_event_data(
                target, message, record.reason, now, record.prior_state, metadata
            )
            db.execute(
                "INSERT INTO events (task_id, seq, kind, data, final, created_at)"
                " VALUES (?, ?, 'status', ?, ?, ?)",
                (task_id, record.last_seq, text := json.dumps(data), int(target.terminal), now),
            )
            return record, Event(task_id, record.last_seq, "status", text, target.terminal, now)

        changed = await self._write(cas)
        if changed is None:
            return None
        record, event = changed
        self.notifier.publish(task_id, (event,))
        self.observer.task_changed(record)
        return record

    async def append(
        self, task_id: str, epoch: int, kind: EventKind, data: dict[str, Any]
    ) -> Event | None:
        payload = json.dumps(data)

        def insert(db: sqlite3.Connection) -> Event | None:
            now = time.time()
            row = db.execute(
                "UPDATE tasks SET last_seq = last_seq + 1, updated_at = ?"
                " WHERE id = ? AND epoch = ? AND state IN (?, ?, ?, ?) RETURNING last_seq",
                (now, task_id, epoch, *ACTIVE),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "INSERT INTO events (task_id, seq, kind, data, final, created_at)"
                " VALUES (?, ?, ?, ?, 0, ?)",
                (task_id, row[0], kind, payload, now),
            )
            return Event(task_id, row[0], kind, payload, False, now)  # as stored

        event = await self._write(insert)
        if event is not None:
            self.notifier.publish(task_id, (event,))
            self.observer.event_appended(kind)
        return event

    async def record_child(self, task_id: str, epoch: int, child: dict[str, Any]) -> bool:
        def add(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "UPDATE tasks SET metadata = json_set(metadata, ?1, json_insert("
                " coalesce(json_extract(metadata, ?1), '[]'), '$[#]', json(?2)))"
                " WHERE id = ?3 AND epoch = ?4 AND state IN (?5, ?6, ?7, ?8) RETURNING id",
                (f'$."{CHILDREN}"', json.dumps(child), task_id, epoch, *ACTIVE),
            ).fetchone()
            return row is not None

        recorded = await self._write(add)
        await self.committed()  # the child must outlive a crash of this process
        return recorded

    async def events(
        self, task_id: str, after_seq: int = 0, *, with_progress: bool = True
    ) -> list[Event]:
        def read(db: sqlite3.Connection, limit: int = -1) -> list[Event]:
            rows = db.execute(
                "SELECT seq, kind, data, final, created_at FROM events"
                " WHERE task_id = ? AND seq > ? AND (? OR kind != 'progress')"
                " ORDER BY seq LIMIT ?",
                (task_id, after_seq, with_progress, limit),
            ).fetchall()
            return [Event(task_id, r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

        # A short log is read on the loop; past LONG_LOG events, the reader thread reads it.
        events = await self._run(lambda db: read(db, LONG_LOG + 1))
        if len(events) <= LONG_LOG:
            return events
        return await self._read(read)

    async def fail_unfinished(
        self, reason: str, message: dict[str, Any] | None = None
    ) -> list[str]:
        rows = await self._read(
            lambda db: db.execute(
                f"SELECT id, state FROM tasks WHERE state IN ({', '.join('?' * len(ACTIVE))})",
                ACTIVE,
            ).fetchall()
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
        rows = await self._read(
            lambda db: db.execute(
                "SELECT id FROM tasks WHERE state = 'submitted' ORDER BY created_at"
            ).fetchall()
        )
        return [r[0] for r in rows]


def split_statements(script: str) -> list[str]:
    """The statements of a script, split where SQLite says one is complete (a trigger's
    body holds semicolons of its own)."""
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    return statements


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
