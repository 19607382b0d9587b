"""What only the PostgreSQL store has: events announced across processes (two store
instances stand for two processes), lost connections, and the schema's versions.
The store contract itself is tests/test_store_contract.py, run on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest
from typer.testing import CliRunner

from andon.cli import app
from andon.node.database import QUEUE_SCHEMA, upgrade
from andon.protocol.types import TaskState, new_id
from andon.store import open_store, pg_events, pg_schema
from andon.store.base import Event, NewTask, TaskRecord
from andon.store.postgres import PostgresStore
from tests.helpers import eventually, user_text

pytestmark = pytest.mark.postgres

S = TaskState


@asynccontextmanager
async def opened(url: str, **options: float) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url, **options)  # type: ignore[arg-type]
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def working_task(store: PostgresStore) -> tuple[str, int]:
    task_id = new_id()
    message = user_text("hi", task_id=task_id, context_id="c").dump()
    await store.create_task(NewTask(id=task_id, context_id="c", owner="alice"), message)
    claimed = await store.transition(task_id, sources=[S.SUBMITTED], target=S.WORKING, claim=True)
    assert claimed is not None
    return task_id, claimed.epoch


class Notifications:
    """Every notification the stores send, seen by a connection listening like one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def of(self, task_id: str) -> list[int]:
        return [seq for t, seq in self.seen if t == task_id]


@asynccontextmanager
async def recording(url: str) -> AsyncIterator[Notifications]:
    notes = Notifications()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"LISTEN {pg_events.CHANNEL}")

        async def collect() -> None:
            async for notify in conn.notifies():
                task_id, seq, _origin = notify.payload.rsplit(" ", 2)
                notes.seen.append((task_id, int(seq)))

        collector = asyncio.create_task(collect())
        try:
            yield notes
        finally:
            collector.cancel()
            with pytest.raises(asyncio.CancelledError):
                await collector


async def follow_all(store: PostgresStore, task_id: str) -> list[Event]:
    return [e async for e in store.follow(task_id)]


async def backends(url: str, application_name: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        )
        return [row[0] for row in await cursor.fetchall()]


async def terminate(url: str, application_name: str) -> int:
    """Cut every session of that name, as a database restart does."""
    pids = await backends(url, application_name)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for pid in pids:
            await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return len(pids)


# -- events across processes ------------------------------------------------------------


async def test_a_follower_in_another_process_sees_every_event(postgres_url: str) -> None:
    async with opened(postgres_url) as api, opened(postgres_url) as worker:
        task_id, epoch = await working_task(worker)
        follower = asyncio.create_task(follow_all(api, task_id))
        await eventually(lambda: api.notifier.listener_count(task_id) == 1, timeout=5)
        for i in range(50):
            assert await worker.append(task_id, epoch, "artifact", {"i": i}) is not None
        await worker.transition(task_id, sources=[S.WORKING], target=S.COMPLETED)

        seen = await asyncio.wait_for(follower, 10)
        assert seen == await worker.events(task_id)
        assert [e.seq for e in seen] == list(range(1, 55)) and seen[-1].final


async def test_a_burst_of_appends_shares_its_notifications(postgres_url: str) -> None:
    # A window longer than the test: the first append notifies at once, the others wait
    # for the next status change, which announces them all.
    async with recording(postgres_url) as notes, opened(postgres_url, notify_window=60) as worker:
        task_id, epoch = await working_task(worker)
        claimed_seq = 3
        await eventually(lambda: notes.of(task_id) == [claimed_seq], timeout=5)
        for i in range(100):
            await worker.append(task_id, epoch, "artifact", {"i": i})
        await worker.transition(task_id, sources=[S.WORKING], target=S.COMPLETED)
        await eventually(lambda: notes.of(task_id)[-1] == claimed_seq + 101, timeout=5)

    assert notes.of(task_id) == [claimed_seq, claimed_seq + 1, claimed_seq + 101]


async def test_appends_left_unannounced_are_announced_at_the_window_end(
    postgres_url: str,
) -> None:
    async with recording(postgres_url) as notes, opened(postgres_url, notify_window=0.05) as st:
        task_id, epoch = await working_task(st)
        last = None
        for i in range(20):
            last = await st.append(task_id, epoch, "progress", {"i": i})
        assert last is not None
        await eventually(lambda: last.seq in notes.of(task_id), timeout=5)
        assert len(notes.of(task_id)) <= 21


async def test_a_store_closing_announces_what_is_pending(postgres_url: str) -> None:
    async with recording(postgres_url) as notes:
        async with opened(postgres_url, notify_window=60) as st:
            task_id, epoch = await working_task(st)
            await st.append(task_id, epoch, "progress", {})
            last = await st.append(task_id, epoch, "progress", {})
            assert last is not None
        await eventually(lambda: last.seq in notes.of(task_id), timeout=5)


async def test_foreign_notifications_on_the_channel_are_ignored(postgres_url: str) -> None:
    async with opened(postgres_url) as api, opened(postgres_url) as worker:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(f"NOTIFY {pg_events.CHANNEL}, 'nonsense'")
        task_id, _ = await working_task(worker)
        follower = asyncio.create_task(follow_all(api, task_id))
        await worker.transition(task_id, sources=[S.WORKING], target=S.FAILED)
        assert (await asyncio.wait_for(follower, 10))[-1].final


# -- lost connections ---------------------------------------------------------------------


async def test_a_lost_listening_connection_comes_back_and_followers_catch_up(
    postgres_url: str,
) -> None:
    async with opened(postgres_url) as api, opened(postgres_url) as worker:
        task_id, _ = await working_task(worker)
        follower = asyncio.create_task(follow_all(api, task_id))
        await eventually(lambda: api.notifier.listener_count(task_id) == 1, timeout=5)

        listener = f"andon-listener {api.origin}"
        assert await terminate(postgres_url, listener) == 1
        # Written while nobody in `api` listens: its notification goes nowhere.
        await worker.transition(task_id, sources=[S.WORKING], target=S.COMPLETED)

        seen = await asyncio.wait_for(follower, 10)
        assert seen[-1].final and seen == await worker.events(task_id)
        await eventually(lambda: backends(postgres_url, listener), timeout=10)

        # And it listens again: the next task's events reach `api` as before.
        second, _ = await working_task(worker)
        follower = asyncio.create_task(follow_all(api, second))
        await eventually(lambda: api.notifier.listener_count(second) == 1, timeout=5)
        await worker.transition(second, sources=[S.WORKING], target=S.COMPLETED)
        assert (await asyncio.wait_for(follower, 10))[-1].final


async def test_writes_asked_for_in_one_turn_share_one_commit(postgres_url: str) -> None:
    async with opened(postgres_url) as store:
        tasks = [await working_task(store) for _ in range(4)]
        appended = await asyncio.gather(
            *(store.append(t, epoch, "artifact", {"chunk": "a"}) for t, epoch in tasks)
        )
        assert all(event is not None for event in appended)
        ids = [t for t, _ in tasks]
        # The transaction that wrote each row is its xmin, read as another process.
        query = "SELECT xmin::text FROM andon_events WHERE task_id = %s AND seq = %s"
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            xmins = set()
            for event in appended:
                assert event is not None
                row = await (await conn.execute(query, (event.task_id, event.seq))).fetchone()
                assert row is not None
                xmins.add(row[0])
        assert len(xmins) == 1  # the four appends: one transaction

        # A write that fails in a batch fails alone; the others of its turn are stored.
        first, second = new_id(), new_id()
        results = await asyncio.gather(
            store.create_task(NewTask(id=first, context_id="c", owner="o"), {}),
            store.create_task(NewTask(id=ids[0], context_id="c", owner="o"), {}),
            store.create_task(NewTask(id=second, context_id="c", owner="o"), {}),
            return_exceptions=True,
        )
        assert isinstance(results[1], psycopg.errors.UniqueViolation)
        assert [r.id for r in (results[0], results[2])] == [first, second]  # type: ignore[union-attr]
        assert await store.get_task(first) is not None
        assert await store.get_task(second) is not None


async def test_a_statement_the_driver_refuses_fails_alone_in_its_turn(postgres_url: str) -> None:
    # Text a client sent can hold a NUL, which PostgreSQL cannot store: psycopg refuses
    # it before sending. The reads and writes asked for beside it, in the same turn
    # (other clients' requests), are answered all the same.
    async with opened(postgres_url) as store:
        task_id, _ = await working_task(store)
        reads = await asyncio.gather(
            store.get_task(task_id),
            store.get_task("a\x00b"),
            store.get_task(new_id()),
            store.task_and_messages(task_id),
            return_exceptions=True,
        )
        assert isinstance(reads[0], TaskRecord) and reads[0].id == task_id
        assert isinstance(reads[1], psycopg.DataError)
        assert reads[2] is None
        assert isinstance(reads[3], tuple) and reads[3][0] == reads[0]
        assert [m["parts"] for m in reads[3][1]] == [[{"text": "hi"}]]

        fine = new_id()
        writes = await asyncio.gather(
            store.create_task(NewTask(id=new_id(), context_id="a\x00b", owner="o"), {}),
            store.create_task(NewTask(id=fine, context_id="c", owner="o"), {}),
            return_exceptions=True,
        )
        assert isinstance(writes[0], psycopg.DataError)
        assert isinstance(writes[1], TaskRecord) and writes[1].id == fine
        assert await store.get_task(fine) is not None


async def test_statements_survive_pooled_connections_closed_by_the_server(
    postgres_url: str,
) -> None:
    async with opened(postgres_url, min_connections=3, max_connections=3) as store:
        task_id, epoch = await working_task(store)
        # Hold three connections at once so the pool has opened all of them.
        await asyncio.gather(*(store.append(task_id, epoch, "progress", {}) for _ in range(6)))
        assert await terminate(postgres_url, f"andon {store.origin}") >= 1

        # A write on a closed session was never run: it is run again on a new one.
        event = await store.append(task_id, epoch, "progress", {"after": True})
        assert event is not None and event.seq == 10
        done = await store.transition(task_id, sources=[S.WORKING], target=S.COMPLETED)
        assert done is not None and done.last_seq == 11
        assert [e.seq for e in await store.events(task_id)] == list(range(1, 12))


# -- schema -------------------------------------------------------------------------------


async def test_open_refuses_a_schema_behind_and_says_what_to_run(
    postgres_empty_url: str,
) -> None:
    with pytest.raises(pg_schema.SchemaMismatch, match="run `andon db upgrade --db "):
        await PostgresStore(postgres_empty_url).open()
    assert await upgrade(postgres_empty_url) == [
        *(m.name for m in pg_schema.migrations()),
        QUEUE_SCHEMA,
    ]
    async with opened(postgres_empty_url) as store:
        assert await store.get_task("none") is None


async def test_open_refuses_a_schema_ahead(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(f"INSERT INTO {pg_schema.VERSIONS_TABLE} VALUES (999, 'future')")
    with pytest.raises(pg_schema.SchemaMismatch, match="newer than this andon"):
        await PostgresStore(postgres_url).open()


async def test_concurrent_upgrades_apply_each_migration_once(postgres_empty_url: str) -> None:
    results = await asyncio.gather(*(upgrade(postgres_empty_url) for _ in range(3)))
    names = [m.name for m in pg_schema.migrations()]
    assert sorted(results) == [[], [], [*names, QUEUE_SCHEMA]]
    async with await psycopg.AsyncConnection.connect(postgres_empty_url) as conn:
        assert await pg_schema.current_version(conn) == len(names)


def test_andon_db_upgrade(postgres_empty_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["db", "upgrade", "--db", postgres_empty_url])
    assert first.exit_code == 0, first.output
    assert "applied 0001_tasks_and_events" in first.output
    again = runner.invoke(app, ["db", "upgrade", "--db", postgres_empty_url])
    assert again.exit_code == 0 and "applied" not in again.output
    assert "up to date" in again.output


def test_andon_db_upgrade_of_an_unreachable_database_fails_without_the_password() -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:5432/andon_no_such_database"
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", url])
    assert result.exit_code == 1
    assert "hunter2" not in result.output and "andon_no_such_database" in result.output


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_store_picks_postgres_for_its_urls(scheme: str) -> None:
    assert isinstance(open_store(f"{scheme}://u@h/db"), PostgresStore)
