"""The store contract (andon/store/base.py), run against every backend.

Every test here talks to the store only through the `Store` interface, so a second
backend runs the same suite unchanged: add one entry to `BACKENDS` (a factory that
gives stores on one fresh, empty storage per test, and reads its schema version).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from andon.protocol.types import TaskState, new_id
from andon.store import pg_schema
from andon.store import sqlite as sqlite_store
from andon.store.base import (
    CHILDREN,
    HANDOVER_LIMIT,
    Event,
    NewTask,
    Notifier,
    Store,
    TaskRecord,
)
from andon.store.machine import LEGAL_TRANSITIONS, IllegalTransition
from andon.store.postgres import PostgresStore
from andon.store.sqlite import MIGRATIONS, SQLiteStore, split_statements
from andon.telemetry.observe import Observer
from tests.helpers import eventually, user_text

S = TaskState
TERMINAL = [S.COMPLETED, S.FAILED, S.CANCELED, S.REJECTED]


@dataclass(frozen=True)
class Backend:
    """How to reach one backend's storage for one test."""

    make: Callable[[], Store]
    """A new, unopened store on this test's storage (call twice: the same data)."""
    schema_version: Callable[[], Awaitable[tuple[int, int]]]
    """(version recorded in the storage, number of migrations the code knows)."""


def sqlite_backend(request: pytest.FixtureRequest) -> Backend:
    path = request.getfixturevalue("tmp_path") / "s.sqlite"

    async def schema_version() -> tuple[int, int]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return db.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS)

    return Backend(make=lambda: SQLiteStore(path), schema_version=schema_version)


def postgres_backend(request: pytest.FixtureRequest) -> Backend:
    url: str = request.getfixturevalue("postgres_url")  # a fresh schema, upgraded

    async def schema_version() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            return await pg_schema.current_version(conn), len(pg_schema.migrations())

    return Backend(make=lambda: PostgresStore(url), schema_version=schema_version)


BACKENDS = [
    pytest.param(sqlite_backend, id="sqlite"),
    pytest.param(postgres_backend, id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    factory: Callable[[pytest.FixtureRequest], Backend] = request.param
    return factory(request)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = backend.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


# -- helpers ----------------------------------------------------------------------------


async def create(
    store: Store,
    *,
    owner: str = "alice",
    context_id: str | None = None,
    text: str = "hello",
    **fields: Any,
) -> TaskRecord:
    task_id = new_id()
    context_id = context_id or new_id()
    message = user_text(text, task_id=task_id, context_id=context_id).dump()
    return await store.create_task(
        NewTask(id=task_id, context_id=context_id, owner=owner, **fields), message
    )


async def claim(store: Store, task_id: str) -> TaskRecord:
    record = await store.transition(task_id, sources=[S.SUBMITTED], target=S.WORKING, claim=True)
    assert record is not None
    return record


async def move(store: Store, task_id: str, source: TaskState, target: TaskState) -> TaskRecord:
    record = await store.transition(task_id, sources=[source], target=target)
    assert record is not None, f"{source} -> {target} lost"
    return record


# The way to reach each state from a new task, one legal step at a time.
PATHS: dict[TaskState, list[TaskState]] = {
    S.SUBMITTED: [],
    S.WORKING: [S.WORKING],
    S.INPUT_REQUIRED: [S.WORKING, S.INPUT_REQUIRED],
    S.AUTH_REQUIRED: [S.WORKING, S.AUTH_REQUIRED],
    S.CANCELING: [S.WORKING, S.CANCELING],
    S.COMPLETED: [S.WORKING, S.COMPLETED],
    S.FAILED: [S.WORKING, S.FAILED],
    S.CANCELED: [S.WORKING, S.CANCELING, S.CANCELED],
    S.REJECTED: [S.REJECTED],
}


async def in_state(store: Store, state: TaskState, **fields: Any) -> TaskRecord:
    record = await create(store, **fields)
    current = S.SUBMITTED
    for target in PATHS[state]:
        if current is S.SUBMITTED and target is S.WORKING:
            record = await claim(store, record.id)
        else:
            record = await move(store, record.id, current, target)
        current = target
    assert record.state is state
    return record


def statuses(events: list[Event]) -> list[str]:
    return [e.data["state"] for e in events if e.kind == "status"]


# -- create / get ---------------------------------------------------------------------


async def test_create_task_is_submitted_with_message_and_status_events(store: Store) -> None:
    task_id, context_id = new_id(), new_id()
    message = user_text("hello", task_id=task_id, context_id=context_id).dump()
    record = await store.create_task(
        NewTask(
            id=task_id,
            context_id=context_id,
            owner="alice",
            metadata={"k": "v"},
            retry_of="older",
            timeout=1.5,
            idle_timeout=2.5,
            input_timeout=3.5,
        ),
        message,
    )

    assert record.id == task_id and record.context_id == context_id and record.owner == "alice"
    assert record.state is S.SUBMITTED and record.visible_state is S.SUBMITTED
    assert record.epoch == 0
    assert record.reason is None and record.status_message is None
    assert record.metadata == {"k": "v"} and record.retry_of == "older"
    assert (record.timeout, record.idle_timeout, record.input_timeout) == (1.5, 2.5, 3.5)
    assert record.last_seq == 2
    assert record.created_at <= record.updated_at

    events = await store.events(task_id)
    assert [(e.seq, e.kind, e.final) for e in events] == [
        (1, "message", False),
        (2, "status", False),
    ]
    assert events[0].data == message
    assert events[1].data["state"] == "submitted"
    assert events[1].data["metadata"] == {"k": "v"}  # what the task was created with
    assert all(e.task_id == task_id for e in events)
    assert await store.get_task(task_id) == record


async def test_get_unknown_task_is_none(store: Store) -> None:
    assert await store.get_task(new_id()) is None
    assert await store.events(new_id()) == []


# -- list -------------------------------------------------------------------------------


async def test_list_filters_by_owner_context_and_states(store: Store) -> None:
    ctx1, ctx2 = new_id(), new_id()
    a1 = await in_state(store, S.SUBMITTED, owner="alice", context_id=ctx1)
    a2 = await in_state(store, S.WORKING, owner="alice", context_id=ctx1)
    a3 = await in_state(store, S.COMPLETED, owner="alice", context_id=ctx2)
    b1 = await in_state(store, S.WORKING, owner="bob", context_id=ctx1)

    def ids(page_tasks: list[TaskRecord]) -> list[str]:
        return [t.id for t in page_tasks]

    everyone = await store.list_tasks()
    assert ids(everyone.tasks) == [b1.id, a3.id, a2.id, a1.id]  # newest first
    assert everyone.total_size == 4 and everyone.next_page_token == ""

    alice = await store.list_tasks(owner="alice")
    assert ids(alice.tasks) == [a3.id, a2.id, a1.id] and alice.total_size == 3

    in_ctx1 = await store.list_tasks(context_id=ctx1)
    assert ids(in_ctx1.tasks) == [b1.id, a2.id, a1.id]

    working = await store.list_tasks(states=[S.WORKING])
    assert ids(working.tasks) == [b1.id, a2.id] and working.total_size == 2

    some = await store.list_tasks(owner="alice", context_id=ctx1, states=[S.WORKING, S.SUBMITTED])
    assert ids(some.tasks) == [a2.id, a1.id] and some.total_size == 2

    nobody = await store.list_tasks(owner="carol")
    assert nobody.tasks == [] and nobody.total_size == 0 and nobody.next_page_token == ""

    # the records listed are the records stored
    assert everyone.tasks[0] == await store.get_task(b1.id)


async def test_list_pagination_walks_every_task_once(store: Store) -> None:
    created = [await create(store, owner="pager") for _ in range(23)]
    newest_first = [r.id for r in reversed(created)]

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await store.list_tasks(owner="pager", page_size=5, page_token=token)
        pages += 1
        assert page.total_size == (23 if pages <= 2 else 24)  # the whole match, not the page
        assert len(page.tasks) <= 5
        seen.extend(t.id for t in page.tasks)
        if pages == 2:
            # a task created while paging must not shift the pages being walked
            await create(store, owner="pager")
        if not page.next_page_token:
            break
        token = page.next_page_token
        assert pages < 10, "pagination never ended"

    assert pages == 5
    assert seen == newest_first
    assert len(set(seen)) == len(seen)


async def test_list_exact_page_has_no_dangling_token(store: Store) -> None:
    for _ in range(4):
        await create(store, owner="exact")
    first = await store.list_tasks(owner="exact", page_size=2)
    assert first.next_page_token
    second = await store.list_tasks(owner="exact", page_size=2, page_token=first.next_page_token)
    assert len(second.tasks) == 2 and second.next_page_token == ""


@pytest.mark.parametrize("token", ["garbage!", "abc", "bm90IGEgdG9rZW4="])
async def test_list_with_a_bad_page_token_raises_value_error(store: Store, token: str) -> None:
    await create(store)
    with pytest.raises(ValueError):
        await store.list_tasks(page_token=token)


# -- transition: compare-and-set -----------------------------------------------------------


async def test_transition_wins_once(store: Store) -> None:
    record = await create(store)
    first = await store.transition(record.id, sources=[S.SUBMITTED], target=S.WORKING, claim=True)
    second = await store.transition(record.id, sources=[S.SUBMITTED], target=S.WORKING, claim=True)
    assert first is not None and first.state is S.WORKING
    assert second is None
    stored = await store.get_task(record.id)
    assert stored == first and stored.epoch == 1


async def test_transition_loses_when_the_source_differs(store: Store) -> None:
    record = await in_state(store, S.WORKING)
    events_before = await store.events(record.id)
    lost = await store.transition(record.id, sources=[S.SUBMITTED], target=S.CANCELED)
    assert lost is None
    assert await store.get_task(record.id) == record
    assert await store.events(record.id) == events_before


async def test_transition_of_unknown_task_is_none(store: Store) -> None:
    assert await store.transition(new_id(), sources=[S.SUBMITTED], target=S.WORKING) is None


async def test_transition_loses_on_a_wrong_epoch(store: Store) -> None:
    record = await in_state(store, S.WORKING)
    assert record.epoch == 1
    for stale in (0, 2):
        lost = await store.transition(
            record.id, sources=[S.WORKING], target=S.COMPLETED, epoch=stale
        )
        assert lost is None
    won = await store.transition(
        record.id, sources=[S.WORKING], target=S.COMPLETED, epoch=record.epoch
    )
    assert won is not None and won.state is S.COMPLETED and won.epoch == 1


async def test_claim_bumps_the_epoch_and_other_transitions_keep_it(store: Store) -> None:
    record = await create(store)
    assert record.epoch == 0
    claimed = await claim(store, record.id)
    assert claimed.epoch == 1
    asked = await move(store, record.id, S.WORKING, S.INPUT_REQUIRED)
    back = await move(store, record.id, S.INPUT_REQUIRED, S.WORKING)
    done = await move(store, record.id, S.WORKING, S.COMPLETED)
    assert asked.epoch == back.epoch == done.epoch == 1


async def test_reason_is_kept_unless_overridden(store: Store) -> None:
    record = await in_state(store, S.WORKING)
    canceling = await store.transition(
        record.id, sources=[S.WORKING], target=S.CANCELING, reason="user"
    )
    assert canceling is not None and canceling.reason == "user"
    canceled = await move(store, record.id, S.CANCELING, S.CANCELED)
    assert canceled.reason == "user"
    final = (await store.events(record.id))[-1]
    assert final.data["state"] == "canceled" and final.data["reason"] == "user"

    third = await in_state(store, S.WORKING)
    await store.transition(third.id, sources=[S.WORKING], target=S.CANCELING, reason="timeout")
    failed = await store.transition(
        third.id, sources=[S.CANCELING], target=S.FAILED, reason="cancel_timeout"
    )
    assert failed is not None and failed.reason == "cancel_timeout"
    assert (await store.events(third.id))[-1].data["reason"] == "cancel_timeout"


async def test_metadata_is_merged(store: Store) -> None:
    record = await create(store, metadata={"a": 1, "b": {"x": 1}})
    claimed = await store.transition(
        record.id, sources=[S.SUBMITTED], target=S.WORKING, claim=True, metadata={"c": 3}
    )
    assert claimed is not None and claimed.metadata == {"a": 1, "b": {"x": 1}, "c": 3}
    done = await store.transition(
        record.id, sources=[S.WORKING], target=S.COMPLETED, metadata={"a": 2}
    )
    assert done is not None and done.metadata == {"a": 2, "b": {"x": 1}, "c": 3}
    assert (await store.get_task(record.id)) == done
    # The status event of a transition carries the metadata it added, and only that.
    log = await store.events(record.id)
    assert log[-1].data["metadata"] == {"a": 2}
    assert log[-2].data["metadata"] == {"c": 3}


async def test_metadata_merge_replaces_top_level_keys_only(store: Store) -> None:
    record = await create(store, metadata={"a": 1, "b": {"x": 1}})
    claimed = await store.transition(
        record.id,
        sources=[S.SUBMITTED],
        target=S.WORKING,
        claim=True,
        metadata={"a": None, "b": {"y": 2}},
    )
    assert claimed is not None and claimed.metadata == {"a": None, "b": {"y": 2}}


async def test_status_message_belongs_to_its_status(store: Store) -> None:
    record = await in_state(store, S.WORKING)
    question = {"role": "agent", "parts": [{"text": "name?"}], "messageId": "q1"}
    asked = await store.transition(
        record.id, sources=[S.WORKING], target=S.INPUT_REQUIRED, message=question
    )
    assert asked is not None and asked.status_message == question
    assert (await store.events(record.id))[-1].data["message"] == question
    resumed = await move(store, record.id, S.INPUT_REQUIRED, S.WORKING)
    assert resumed.status_message is None
    assert "message" not in (await store.events(record.id))[-1].data


ILLEGAL = [
    (S.SUBMITTED, S.COMPLETED),
    (S.SUBMITTED, S.INPUT_REQUIRED),
    (S.SUBMITTED, S.CANCELING),
    (S.WORKING, S.SUBMITTED),
    (S.WORKING, S.CANCELED),
    (S.INPUT_REQUIRED, S.COMPLETED),
    (S.CANCELING, S.WORKING),
    (S.CANCELING, S.COMPLETED),
] + [(terminal, target) for terminal in TERMINAL for target in S]


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=lambda s: str(s))
async def test_illegal_transitions_raise(
    store: Store, source: TaskState, target: TaskState
) -> None:
    assert target not in LEGAL_TRANSITIONS[source]
    record = await in_state(store, source)
    events_before = await store.events(record.id)
    with pytest.raises(IllegalTransition):
        await store.transition(record.id, sources=[source], target=target)
    assert await store.get_task(record.id) == record
    assert await store.events(record.id) == events_before


@pytest.mark.parametrize("terminal", TERMINAL, ids=str)
async def test_a_terminal_task_never_changes(store: Store, terminal: TaskState) -> None:
    record = await in_state(store, terminal)
    events_before = await store.events(record.id)
    for source in LEGAL_TRANSITIONS:
        for target in LEGAL_TRANSITIONS[source]:
            moved = await store.transition(
                record.id, sources=[source], target=target, claim=True, reason="late"
            )
            assert moved is None
    assert await store.get_task(record.id) == record
    assert await store.events(record.id) == events_before


async def test_status_event_appended_with_the_transition(store: Store) -> None:
    record = await create(store)
    path = [S.WORKING, S.INPUT_REQUIRED, S.WORKING, S.CANCELING, S.CANCELED]
    current = S.SUBMITTED
    for target in path:
        moved = await store.transition(
            record.id, sources=[current], target=target, claim=current is S.SUBMITTED
        )
        assert moved is not None
        events = await store.events(record.id)
        last = events[-1]
        assert last.seq == moved.last_seq == len(events)
        assert last.kind == "status" and last.data["state"] == target.value
        assert last.final is target.terminal
        current = target
    events = await store.events(record.id)
    assert [e.final for e in events] == [False] * (len(events) - 1) + [True]
    assert statuses(events) == ["submitted", *(s.value for s in path)]


@pytest.mark.parametrize("prior", [S.WORKING, S.INPUT_REQUIRED, S.AUTH_REQUIRED], ids=str)
async def test_canceling_records_the_prior_state(store: Store, prior: TaskState) -> None:
    record = await in_state(store, prior)
    canceling = await store.transition(
        record.id, sources=[prior], target=S.CANCELING, reason="user"
    )
    assert canceling is not None
    assert canceling.state is S.CANCELING
    assert canceling.prior_state is prior
    assert canceling.visible_state is prior
    event = (await store.events(record.id))[-1]
    assert event.data["state"] == "canceling"
    assert event.data["priorState"] == prior.value
    assert event.data["reason"] == "user"
    assert not event.final


# -- append -----------------------------------------------------------------------------


async def test_append_gives_the_next_seq(store: Store) -> None:
    record = await in_state(store, S.WORKING)
    event = await store.append(record.id, record.epoch, "progress", {"n": 1})
    assert event is not None
    assert (event.task_id, event.seq, event.kind, event.data, event.final) == (
        record.id,
        record.last_seq + 1,
        "progress",
        {"n": 1},
        False,
    )
    assert (await store.events(record.id))[-1] == event
    stored = await store.get_task(record.id)
    assert stored is not None and stored.last_seq == event.seq and stored.state is S.WORKING


@pytest.mark.parametrize("state", [S.INPUT_REQUIRED, S.CANCELING], ids=str)
async def test_append_accepted_while_the_task_is_active(store: Store, state: TaskState) -> None:
    record = await in_state(store, state)
    assert await store.append(record.id, record.epoch, "message", {"x": 1}) is not None


@pytest.mark.parametrize("terminal", TERMINAL, ids=str)
async def test_append_refused_for_an_ended_task(store: Store, terminal: TaskState) -> None:
    record = await in_state(store, terminal)
    events_before = await store.events(record.id)
    assert await store.append(record.id, record.epoch, "artifact", {"late": True}) is None
    assert await store.events(record.id) == events_before
    assert await store.get_task(record.id) == record


async def test_append_refused_for_a_wrong_epoch(store: Store) -> None:
    record = await in_state(store, S.WORKING)
    for stale in (record.epoch - 1, record.epoch + 1):
        assert await store.append(record.id, stale, "progress", {}) is None
    assert await store.get_task(record.id) == record


async def test_append_to_unknown_task_is_none(store: Store) -> None:
    assert await store.append(new_id(), 1, "progress", {}) is None


async def test_children_are_recorded_while_the_attempt_runs(store: Store) -> None:
    task = await in_state(store, S.WORKING)
    children = [{"id": f"child-{n}", "url": "http://agent.example"} for n in range(6)]
    recorded = await asyncio.gather(
        *(store.record_child(task.id, task.epoch, child) for child in children)
    )
    assert recorded == [True] * 6
    stored = await store.get_task(task.id)
    assert stored is not None
    assert sorted(c["id"] for c in stored.metadata[CHILDREN]) == [c["id"] for c in children]
    assert stored.last_seq == task.last_seq  # metadata only: no event


async def test_a_child_is_refused_for_an_ended_task_or_another_attempt(store: Store) -> None:
    task = await in_state(store, S.WORKING)
    assert not await store.record_child(task.id, task.epoch + 1, {"id": "stale"})
    await store.transition(task.id, sources=[S.WORKING], target=S.COMPLETED)
    assert not await store.record_child(task.id, task.epoch, {"id": "late"})
    assert not await store.record_child("no-such-task", 1, {"id": "nowhere"})
    stored = await store.get_task(task.id)
    assert stored is not None and CHILDREN not in stored.metadata


async def test_seq_has_no_gaps_under_concurrent_writes(store: Store) -> None:
    record = await in_state(store, S.WORKING)

    async def toggle(i: int) -> TaskRecord | None:
        if i % 2:
            return await store.transition(
                record.id, sources=[S.WORKING], target=S.INPUT_REQUIRED, epoch=record.epoch
            )
        return await store.transition(
            record.id, sources=[S.INPUT_REQUIRED], target=S.WORKING, epoch=record.epoch
        )

    writes: list[Awaitable[Any]] = []
    for i in range(200):
        if i % 4 == 0:
            writes.append(toggle(i // 4))
        else:
            writes.append(store.append(record.id, record.epoch, "progress", {"i": i}))
    outcomes = await asyncio.gather(*writes)
    succeeded = sum(o is not None for o in outcomes)
    assert succeeded >= 150  # every append is accepted in working and input-required

    events = await store.events(record.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(events) == record.last_seq + succeeded
    stored = await store.get_task(record.id)
    assert stored is not None and stored.last_seq == len(events)
    appended = sorted(o.seq for o in outcomes if isinstance(o, Event))
    assert len(set(appended)) == len(appended)


async def test_events_after_seq(store: Store) -> None:
    record = await in_state(store, S.WORKING)
    for i in range(5):
        await store.append(record.id, record.epoch, "progress", {"i": i})
    everything = await store.events(record.id)
    assert len(everything) == 8
    assert await store.events(record.id, 0) == everything
    assert await store.events(record.id, 5) == everything[5:]
    assert await store.events(record.id, 8) == []
    assert await store.events(record.id, 100) == []


async def test_events_without_progress_are_the_rest_in_order(store: Store) -> None:
    record = await in_state(store, S.WORKING)
    for i in range(3):
        await store.append(record.id, record.epoch, "progress", {"i": i})
        await store.append(record.id, record.epoch, "artifact", {"chunk": i})
    await move(store, record.id, S.WORKING, S.COMPLETED)
    everything = await store.events(record.id)
    rest = await store.events(record.id, with_progress=False)
    assert rest == [event for event in everything if event.kind != "progress"]
    assert [event.kind for event in rest[-4:]] == ["artifact"] * 3 + ["status"]
    assert await store.events(record.id, rest[-2].seq, with_progress=False) == rest[-1:]


async def test_task_and_messages_reads_the_record_and_its_conversation(store: Store) -> None:
    record = await in_state(store, S.WORKING)
    await store.append(record.id, record.epoch, "progress", {"i": 0})
    answer = user_text("an answer", task_id=record.id, context_id=record.context_id).dump()
    await store.append(record.id, record.epoch, "message", answer)
    await store.append(record.id, record.epoch, "artifact", {"chunk": 0})
    canceling = await move(store, record.id, S.WORKING, S.CANCELING)

    current, messages = await store.task_and_messages(record.id)
    assert current == canceling == await store.get_task(record.id)
    events = await store.events(record.id)
    assert messages == [e.data for e in events if e.kind == "message"]
    assert len(messages) == 2 and messages[-1] == answer
    assert await store.task_and_messages(new_id()) == (None, [])


# -- follow -----------------------------------------------------------------------------


async def test_follow_yields_old_then_new_events_and_stops_after_the_final(store: Store) -> None:
    record = await create(store)
    seen: list[Event] = []

    async def collect(after: int = 0) -> list[Event]:
        out = []
        async for event in store.follow(record.id, after):
            out.append(event)
            if after == 0:
                seen.append(event)
        return out

    follower = asyncio.create_task(collect())
    late_joiner = asyncio.create_task(collect(after=2))
    await eventually(lambda: len(seen) == 2, timeout=5, message="existing events replayed")

    claimed = await claim(store, record.id)
    await store.append(record.id, claimed.epoch, "progress", {"step": 1})
    await store.append(record.id, claimed.epoch, "artifact", {"chunk": 1})
    await move(store, record.id, S.WORKING, S.COMPLETED)

    got = await asyncio.wait_for(follower, 5)
    assert [e.seq for e in got] == [1, 2, 3, 4, 5, 6]
    assert [e.final for e in got] == [False] * 5 + [True]
    assert got == await store.events(record.id)
    assert [e.seq for e in await asyncio.wait_for(late_joiner, 5)] == [3, 4, 5, 6]
    assert store.notifier.listener_count(record.id) == 0


def test_a_wake_hands_over_appended_events_only_when_none_is_missing() -> None:
    """A follower takes the events a store handed to the notifier instead of reading
    the log, unless one is unknown (published without them) or missing (a gap)."""
    notifier = Notifier()

    def event(seq: int) -> Event:
        return Event("t", seq, "progress", {"step": seq}, False, 0.0)

    with notifier.listen("t") as wake:
        notifier.publish("t", [event(3), event(4)])
        assert [e.seq for e in wake.take(2) or []] == [3, 4]
        assert not wake.is_set() and wake.take(4) == []  # nothing new: known and empty
        notifier.publish("t", [event(5)])
        notifier.publish("t")  # a change the store did not describe
        notifier.publish("t", [event(7)])
        assert wake.take(4) is None  # read the log
        notifier.publish("t", [event(9)])
        assert wake.take(7) is None  # 8 is missing
        notifier.publish("t", [event(7), event(8)])
        assert [e.seq for e in wake.take(7) or []] == [8]  # 7 was delivered already
        for seq in range(9, 9 + HANDOVER_LIMIT + 1):  # a follower that fell far behind
            notifier.publish("t", [event(seq)])
        assert wake.take(8) is None  # reads the log: nothing held in memory for it
        assert wake.appended == []


def test_an_event_given_as_stored_text_reads_as_its_data() -> None:
    """A store may hand an event over as the JSON text it stored (smaller while it
    waits for its followers): it reads, compares and prints as the decoded data, and
    is decoded once, so every follower shares one copy."""
    text = '{"state": "working", "message": {"parts": [{"text": "step 1"}]}}'
    held = Event("t", 1, "status", text, False, 1.0)
    given = Event(
        "t",
        1,
        "status",
        {"state": "working", "message": {"parts": [{"text": "step 1"}]}},
        False,
        1.0,
    )
    assert held == given and repr(held) == repr(given)
    assert held.data is held.data
    assert held != Event("t", 1, "status", '{"state": "completed"}', False, 1.0)


async def test_a_follower_sees_each_event_as_stored(store: Store) -> None:
    """What a follower is handed is what a later read gives: the data as stored (JSON),
    not the writer's own objects (a key that is not a string, a tuple)."""
    record = await in_state(store, S.WORKING)

    async def first_new() -> Event:
        async for event in store.follow(record.id, record.last_seq):
            return event
        raise AssertionError("no event")

    follower = asyncio.create_task(first_new())
    await eventually(lambda: store.notifier.listener_count(record.id) == 1, timeout=5)
    await store.append(record.id, record.epoch, "progress", {"n": {1: (2, 3)}})
    got = await asyncio.wait_for(follower, 5)
    assert got.data == {"n": {"1": [2, 3]}}
    assert [got] == await store.events(record.id, record.last_seq)


async def test_follow_of_an_ended_task(store: Store) -> None:
    record = await in_state(store, S.CANCELED)

    async def drain(after: int) -> list[Event]:
        return [e async for e in store.follow(record.id, after)]

    replay = await asyncio.wait_for(drain(0), 2)
    assert replay == await store.events(record.id) and replay[-1].final
    assert await asyncio.wait_for(drain(record.last_seq), 2) == []
    assert await asyncio.wait_for(drain(record.last_seq - 1), 2) == replay[-1:]


async def test_follow_of_an_unknown_task_returns(store: Store) -> None:
    async def drain() -> list[Event]:
        return [e async for e in store.follow(new_id())]

    assert await asyncio.wait_for(drain(), 2) == []


async def test_a_cancelled_follower_leaves_no_listener(store: Store) -> None:
    record = await in_state(store, S.WORKING)

    async def drain() -> None:
        async for _ in store.follow(record.id):
            pass

    follower = asyncio.create_task(drain())
    await eventually(lambda: store.notifier.listener_count(record.id) == 1, timeout=5)
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    assert store.notifier.listener_count(record.id) == 0


# -- recovery helpers -----------------------------------------------------------------------


async def test_fail_unfinished_fails_active_tasks_only(store: Store) -> None:
    by_state = {state: await in_state(store, state) for state in S}
    events_before = {s: await store.events(r.id) for s, r in by_state.items()}

    failed = await store.fail_unfinished("worker_lost")

    active = {S.WORKING, S.INPUT_REQUIRED, S.AUTH_REQUIRED, S.CANCELING}
    assert sorted(failed) == sorted(by_state[s].id for s in active)
    for state, before in by_state.items():
        after = await store.get_task(before.id)
        assert after is not None
        events = await store.events(before.id)
        if state in active:
            assert after.state is S.FAILED and after.reason == "worker_lost"
            assert events[:-1] == events_before[state]
            assert events[-1].final and events[-1].data["state"] == "failed"
            assert events[-1].data["reason"] == "worker_lost"
        else:
            assert after == before, f"{state} task was touched"
            assert events == events_before[state]
    assert await store.fail_unfinished("worker_lost") == []


async def test_submitted_ids_oldest_first(store: Store) -> None:
    records = [await create(store) for _ in range(5)]
    await claim(store, records[1].id)
    await move(store, records[3].id, S.SUBMITTED, S.CANCELED)
    assert await store.submitted_ids() == [records[0].id, records[2].id, records[4].id]


# -- races ------------------------------------------------------------------------------


ENDINGS = {
    S.WORKING: [S.COMPLETED, S.FAILED, S.REJECTED],
    S.SUBMITTED: [S.CANCELED, S.FAILED, S.REJECTED],
    S.CANCELING: [S.CANCELED, S.FAILED],
}


@pytest.mark.parametrize("source", list(ENDINGS), ids=str)
async def test_concurrent_endings_exactly_one_wins(store: Store, source: TaskState) -> None:
    record = await in_state(store, source)
    targets = [ENDINGS[source][i % len(ENDINGS[source])] for i in range(50)]

    outcomes = await asyncio.gather(
        *(
            store.transition(record.id, sources=[source], target=t, reason=f"r{i}")
            for i, t in enumerate(targets)
        )
    )

    winners = [(i, o) for i, o in enumerate(outcomes) if o is not None]
    assert len(winners) == 1
    index, winner = winners[0]
    assert winner.state is targets[index] and winner.reason == f"r{index}"
    events = await store.events(record.id)
    finals = [e for e in events if e.final]
    assert len(finals) == 1 and events[-1] == finals[0]
    assert finals[0].data["state"] == targets[index].value
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert await store.get_task(record.id) == winner


# -- schema -----------------------------------------------------------------------------


async def test_reopening_keeps_data_and_schema_version(backend: Backend) -> None:
    first = backend.make()
    await first.open()
    try:
        record = await in_state(first, S.WORKING, metadata={"keep": True})
        await first.append(record.id, record.epoch, "artifact", {"chunk": "a"})
        stored = await first.get_task(record.id)
        events = await first.events(record.id)
    finally:
        await first.close()

    for _ in range(2):
        again = backend.make()
        await again.open()
        try:
            assert await again.get_task(record.id) == stored
            assert await again.events(record.id) == events
            version, migrations = await backend.schema_version()
            assert version == migrations
        finally:
            await again.close()


# -- group commit ----------------------------------------------------------------------------


async def test_what_committed_waited_for_is_read_by_another_store(
    store: Store, backend: Backend
) -> None:
    """Writes may be committed together after they returned; once `committed()` has
    returned, another store on the same storage (another process) reads all of them."""
    record = await in_state(store, S.WORKING)
    await store.append(record.id, record.epoch, "artifact", {"chunk": "a"})
    await move(store, record.id, S.WORKING, S.COMPLETED)
    await store.committed()
    other = backend.make()
    await other.open()
    try:
        assert await other.get_task(record.id) == await store.get_task(record.id)
        assert await other.events(record.id) == await store.events(record.id)
    finally:
        await other.close()


# -- what the store reports ----------------------------------------------------------------


class Recorder(Observer):
    def __init__(self) -> None:
        self.facts: list[tuple[str, ...]] = []
        self.commits = 0

    def store_committed(self) -> None:
        self.commits += 1

    def task_created(self, record: TaskRecord) -> None:
        self.facts.append(("created", record.state))

    def task_changed(self, record: TaskRecord) -> None:
        self.facts.append(("changed", record.state))

    def event_appended(self, kind: str) -> None:
        self.facts.append(("appended", kind))

    def store_failed(self) -> None:
        self.facts.append(("failed",))


async def test_every_commit_and_failure_is_reported_once(store: Store) -> None:
    seen = Recorder()
    store.observer = seen
    record = await create(store)
    working = await claim(store, record.id)
    await store.append(record.id, working.epoch, "progress", {"n": 1})
    assert await store.transition(record.id, sources=[S.SUBMITTED], target=S.CANCELED) is None
    assert await store.append(record.id, working.epoch + 1, "progress", {}) is None
    await move(store, record.id, S.WORKING, S.CANCELING)
    assert await store.fail_unfinished("worker_lost") == [record.id]
    with pytest.raises(Exception):  # noqa: B017 (each backend raises its driver's error)
        await store.create_task(NewTask(id=record.id, context_id="c", owner="bob"), {})
    assert seen.facts == [
        ("created", S.SUBMITTED),
        ("changed", S.WORKING),
        ("appended", "progress"),
        ("changed", S.CANCELING),
        ("changed", S.FAILED),
        ("failed",),
    ]


async def test_the_writes_of_one_loop_turn_are_one_reported_commit(store: Store) -> None:
    seen = Recorder()
    store.observer = seen
    record = await create(store)
    working = await claim(store, record.id)
    await store.committed()
    assert seen.commits >= 1
    before = seen.commits
    appends = [store.append(record.id, working.epoch, "progress", {"n": n}) for n in range(20)]
    assert all(await asyncio.gather(*appends))
    await store.committed()
    assert seen.commits == before + 1
    await move(store, record.id, S.WORKING, S.COMPLETED)
    await store.committed()
    assert seen.commits == before + 2


# -- SQLite only ----------------------------------------------------------------------------


def committed_rows(path: Path, task_id: str) -> tuple[int, int]:
    """(task rows, event rows) of the task, as another process reads the file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        tasks = db.execute("SELECT count(*) FROM tasks WHERE id = ?", (task_id,)).fetchone()
        events = db.execute("SELECT count(*) FROM events WHERE task_id = ?", (task_id,))
        return tasks[0], events.fetchone()[0]


async def test_sqlite_writes_of_one_loop_turn_share_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "group.sqlite"
    store = SQLiteStore(path)
    await store.open()
    try:
        # No await below yields to the loop: all of it is one turn.
        record = await create(store)
        working = await claim(store, record.id)
        await store.append(record.id, working.epoch, "artifact", {"chunk": "a"})
        with pytest.raises(sqlite3.IntegrityError):  # a failed write undoes only itself
            await store.create_task(NewTask(id=record.id, context_id="c", owner="bob"), {})
        await move(store, record.id, S.WORKING, S.COMPLETED)
        assert len(await store.events(record.id)) == 5  # the loop's connection sees them
        assert committed_rows(path, record.id) == (0, 0)  # another process does not, yet
        await store.committed()
        assert committed_rows(path, record.id) == (1, 5)
        # A read on the reader thread waits for the commit of the writes before it.
        later = await create(store)
        page = await store.list_tasks()
        assert [t.id for t in page.tasks] == [later.id, record.id]
    finally:
        await store.close()


async def test_sqlite_writes_turn_after_turn_share_one_commit_ended_by_a_quiet_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's steps a turn apart (created, claimed, its output, its end) share one
    transaction; the first turn that writes nothing commits it."""
    monkeypatch.setattr(sqlite_store, "TURN_BUDGET", 60.0)  # a slow machine's turns too
    path = tmp_path / "quiet.sqlite"
    store = SQLiteStore(path)
    seen = Recorder()
    store.observer = seen
    await store.open()
    try:
        record = await create(store)
        await asyncio.sleep(0)
        working = await claim(store, record.id)
        await asyncio.sleep(0)
        await store.append(record.id, working.epoch, "artifact", {"chunk": "a"})
        await asyncio.sleep(0)
        await move(store, record.id, S.WORKING, S.COMPLETED)
        await asyncio.sleep(0)
        assert committed_rows(path, record.id) == (0, 0)  # written every turn: still open
        turns = 0
        while committed_rows(path, record.id) == (0, 0) and turns < 10:
            await asyncio.sleep(0)  # turns that write nothing
            turns += 1
        assert committed_rows(path, record.id) == (1, 5)
        assert turns <= 2
        assert seen.commits == 1
    finally:
        await store.close()


async def test_sqlite_an_answer_waiting_after_a_finished_step_commits_it_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes of an earlier turn, with none since: whoever waits for them to be committed
    (an answer about to leave) commits them in its own turn, not one or two later."""
    monkeypatch.setattr(sqlite_store, "TURN_BUDGET", 60.0)
    path = tmp_path / "answer.sqlite"
    store = SQLiteStore(path)
    await store.open()
    try:
        record = await create(store)
        await asyncio.sleep(0)  # the next turn: nothing written in it yet
        turned: list[bool] = []
        asyncio.get_running_loop().call_soon(turned.append, True)
        await store.committed()
        assert committed_rows(path, record.id) == (1, 2)
        assert turned == []  # committed without waiting for a turn of the loop
        # Written in this very turn: the wait is for the quiet-turn check.
        working = await claim(store, record.id)
        await store.committed()
        assert turned == [True]
        assert committed_rows(path, record.id) == (1, 3)
        assert working.state is S.WORKING
    finally:
        await store.close()


async def test_sqlite_a_waiter_for_the_commit_that_goes_away_leaves_the_others_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Followers of one turn's writes each wait for its commit: one cancelled (a stream
    whose client left) neither commits early nor keeps the others from their answer."""
    monkeypatch.setattr(sqlite_store, "TURN_BUDGET", 60.0)
    path = tmp_path / "waiters.sqlite"
    store = SQLiteStore(path)
    await store.open()
    try:
        record = await in_state(store, S.WORKING)
        await store.committed()

        async def append_then_wait() -> None:
            await store.append(record.id, record.epoch, "progress", {})
            await store.committed()

        waiters = [asyncio.create_task(append_then_wait()) for _ in range(3)]
        await asyncio.sleep(0)  # all three wrote in one turn, and wait for its commit
        assert not any(waiter.done() for waiter in waiters)
        waiters[1].cancel()
        await asyncio.sleep(0)
        assert waiters[1].cancelled()
        assert not waiters[0].done() and not waiters[2].done()
        assert committed_rows(path, record.id)[1] == record.last_seq
        await asyncio.wait_for(asyncio.gather(waiters[0], waiters[2]), 10)
        assert committed_rows(path, record.id)[1] == record.last_seq + 3
    finally:
        await store.close()


async def test_sqlite_writes_every_turn_are_committed_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop that writes in every turn does not keep its writes from other processes
    longer than TURN_BUDGET."""
    monkeypatch.setattr(sqlite_store, "TURN_BUDGET", 0.02)
    path = tmp_path / "busy.sqlite"
    store = SQLiteStore(path)
    await store.open()
    try:
        record = await in_state(store, S.WORKING)
        await store.committed()
        committed_then = committed_rows(path, record.id)[1]
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while committed_rows(path, record.id)[1] == committed_then and loop.time() < end:
            await store.append(record.id, record.epoch, "progress", {})
            await asyncio.sleep(0)
        assert committed_rows(path, record.id)[1] > committed_then  # while still writing
        assert loop.time() < end
    finally:
        await store.close()


async def test_sqlite_two_stores_on_one_file_in_one_process_both_write(tmp_path: Path) -> None:
    """The second store's write does not wait, on the loop's thread, for a lock the
    first store's open turn holds (which could then never commit)."""
    path = tmp_path / "two.sqlite"
    first, second = SQLiteStore(path), SQLiteStore(path)
    await first.open()
    await second.open()
    try:
        one = await create(first)  # one turn: both stores write in it
        two = await create(second)
        await claim(first, one.id)
        await first.committed()
        await second.committed()
        assert committed_rows(path, one.id) == (1, 3)
        assert committed_rows(path, two.id) == (1, 2)
    finally:
        await first.close()
        await second.close()


KILLED_WRITER = """
import asyncio, sys
from andon.store.base import NewTask
from andon.store.sqlite import SQLiteStore

async def main() -> None:
    store = SQLiteStore(sys.argv[1])
    await store.open()
    for n in range(20):
        await store.create_task(NewTask(id=f"t{n}", context_id="c", owner="o"), {"n": n})
        await asyncio.sleep(0)
    await store.committed()
    print("committed", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_sqlite_a_killed_process_keeps_every_write_it_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_WRITER, str(path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert writer.stdout is not None
        line = await asyncio.wait_for(writer.stdout.readline(), 30)
        assert line == b"committed\n"
    finally:
        writer.kill()  # SIGKILL: no clean-up, no close
        await writer.wait()
    for n in range(20):
        assert committed_rows(path, f"t{n}") == (1, 2)


async def test_sqlite_open_while_another_opener_migrates(tmp_path: Path) -> None:
    """Two processes opening a fresh file at once: the one that waits for the write lock
    must see the other's migrations, not apply them again."""
    path = tmp_path / "race.sqlite"
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode=WAL")
        other.execute("BEGIN IMMEDIATE")  # the other opener holds the write lock
        store = SQLiteStore(path)
        opening = asyncio.create_task(store.open())
        await asyncio.sleep(0.3)  # let it read the schema version and wait for the lock
        for number, script in enumerate(MIGRATIONS, start=1):
            for statement in split_statements(script):
                other.execute(statement)
            other.execute(f"PRAGMA user_version={number}")
        other.execute("COMMIT")
        try:
            await asyncio.wait_for(opening, 5)
            assert await store.get_task("x") is None
        finally:
            await store.close()
    finally:
        other.close()


async def test_sqlite_a_file_of_an_earlier_schema_keeps_its_log_through_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration that puts the events table in order of arrival copies every event,
    and makes again the trigger that queues events for webhooks."""
    from andon.store import sqlite as sqlite_module
    from andon.store.push import PushConfig

    path = tmp_path / "old.sqlite"
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", MIGRATIONS[:2])  # before it
    old = SQLiteStore(path)
    await old.open()
    tasks = [await create(old, text=f"task {n}") for n in range(3)]
    for task in tasks:
        working = await claim(old, task.id)
        await old.append(task.id, working.epoch, "artifact", {"artifact": {"n": task.id}})
    await old.push.put_config(PushConfig(tasks[0].id, "hook", "https://hooks.example/a", "1.0"))
    logs = {task.id: await old.events(task.id) for task in tasks}
    await old.close()
    monkeypatch.undo()

    store = SQLiteStore(path)
    await store.open()
    try:
        assert {task.id: await store.events(task.id) for task in tasks} == logs
        before = await store.push.depth()
        await move(store, tasks[0].id, S.WORKING, S.COMPLETED)
        assert await store.push.depth() == before + 1  # the trigger is there again
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        (table,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()
        assert "WITHOUT ROWID" not in table
