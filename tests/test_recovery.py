"""Restart recovery: what a crashed process left in the store is settled when the next
one opens it — active tasks end failed / worker_lost, queued ones run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from andon import RuntimeSettings, TaskService, open_service
from andon.agents.demo import agent as demo_agent
from andon.protocol.types import TaskState, new_id
from andon.store.base import NewTask, Store, TaskRecord
from andon.store.sqlite import SQLiteStore
from tests.conftest import FAST_RUNTIME
from tests.helpers import USER, trace_lines, user_text, wait_trace

S = TaskState


@asynccontextmanager
async def crashed_store(path: Path) -> AsyncIterator[Store]:
    """A store written to as a process would, then left without any clean-up."""
    store = SQLiteStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def restarted(
    path: Path, tmp_path: Path, max_concurrent: int = 64
) -> AsyncIterator[TaskService]:
    runtime = RuntimeSettings(workdir=tmp_path, **FAST_RUNTIME)
    async with open_service(
        demo_agent, str(path), runtime=runtime, max_concurrent=max_concurrent
    ) as svc:
        yield svc


async def left_in(store: Store, state: TaskState, text: str = "sleep 30") -> TaskRecord:
    """A task of USER moved to `state` the way a worker would have moved it."""
    task_id, context_id = new_id(), new_id()
    record = await store.create_task(
        NewTask(id=task_id, context_id=context_id, owner=USER.name),
        user_text(text, task_id=task_id, context_id=context_id).dump(),
    )
    if state is S.SUBMITTED:
        return record
    claimed = await store.transition(task_id, sources=[S.SUBMITTED], target=S.WORKING, claim=True)
    assert claimed is not None
    moved: TaskRecord | None = claimed
    if state is S.CANCELING:
        moved = await store.transition(
            task_id, sources=[S.WORKING], target=S.CANCELING, reason="user"
        )
    elif state in (S.INPUT_REQUIRED, S.COMPLETED):
        moved = await store.transition(task_id, sources=[S.WORKING], target=state)
    assert moved is not None and moved.state is state
    return moved


async def test_active_tasks_of_a_crashed_process_end_worker_lost(
    tmp_path: Path, trace: Path
) -> None:
    path = tmp_path / "crash.sqlite"
    async with crashed_store(path) as store:
        working = await left_in(store, S.WORKING)
        canceling = await left_in(store, S.CANCELING)
        asking = await left_in(store, S.INPUT_REQUIRED, "ask anyone?")
        done = await left_in(store, S.COMPLETED, "echo done")
        done_events = await store.events(done.id)

    async with restarted(path, tmp_path) as svc:
        for lost in (working, canceling, asking):
            task = await svc.get(lost.id, USER)
            assert task.status.state is TaskState.FAILED, lost.state
            assert task.metadata is not None and task.metadata["andon.reason"] == "worker_lost"
            events = await svc.store.events(lost.id)
            finals = [e for e in events if e.final]
            assert finals == events[-1:]
            assert finals[0].data["state"] == "failed"
            assert finals[0].data["reason"] == "worker_lost"
            assert trace_lines(trace, lost.id) == []  # failed, not run again
        assert (await svc.get(done.id, USER)).status.state is TaskState.COMPLETED
        assert await svc.store.events(done.id) == done_events
        assert (await svc.list(USER, states=[TaskState.WORKING])).tasks == []


async def test_a_task_left_submitted_runs_on_start(tmp_path: Path, trace: Path) -> None:
    path = tmp_path / "queued.sqlite"
    async with crashed_store(path) as store:
        echo = await left_in(store, S.SUBMITTED, "echo still here")
        steps = await left_in(store, S.SUBMITTED, "sleep 0.2")

    async with restarted(path, tmp_path) as svc:
        await svc.wait(echo.id, 0, 5)
        await svc.wait(steps.id, 0, 5)
        task = await svc.get(echo.id, USER)
        assert task.status.state is TaskState.COMPLETED
        assert task.artifacts is not None
        assert task.artifacts[0].parts[0].text == "still here"
        assert (await svc.get(steps.id, USER)).status.state is TaskState.COMPLETED
        assert len(trace_lines(trace, steps.id)) == 2
        record = await svc.store.get_task(echo.id)
        assert record is not None and record.epoch == 1


async def test_recovery_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "twice.sqlite"
    async with crashed_store(path) as store:
        lost = await left_in(store, S.WORKING)
        queued = await left_in(store, S.SUBMITTED, "echo once")

    async with restarted(path, tmp_path) as svc:
        await svc.wait(queued.id, 0, 5)
        events = {t: await svc.store.events(t) for t in (lost.id, queued.id)}

    async with restarted(path, tmp_path) as svc:
        for task_id, before in events.items():
            assert await svc.store.events(task_id) == before
        assert (await svc.get(queued.id, USER)).status.state is TaskState.COMPLETED
        assert (await svc.get(lost.id, USER)).status.state is TaskState.FAILED


async def test_a_clean_shutdown_leaves_nothing_to_recover(tmp_path: Path, trace: Path) -> None:
    path = tmp_path / "clean.sqlite"
    async with restarted(path, tmp_path) as svc:
        record = await svc.submit(user_text("sleep 30"), USER)
        await wait_trace(trace, record.id, 1)
        # leaving: what still runs is cancelled with reason `shutdown`
    async with restarted(path, tmp_path) as svc:
        task = await svc.get(record.id, USER)
        assert task.status.state is TaskState.CANCELED
        assert task.metadata is not None and task.metadata["andon.reason"] == "shutdown"


async def test_shutdown_leaves_queued_tasks_for_the_next_start(tmp_path: Path, trace: Path) -> None:
    path = tmp_path / "queue.sqlite"
    async with restarted(path, tmp_path, max_concurrent=1) as svc:
        running = await svc.submit(user_text("sleep 30"), USER)
        await wait_trace(trace, running.id, 1)
        queued = await svc.submit(user_text("sleep 0.3"), USER)
        assert (await svc.get(queued.id, USER)).status.state is TaskState.SUBMITTED
        # leaving: the running task is cancelled; the queued one must not start now

    async with crashed_store(path) as store:  # read it as it was left
        left = await store.get_task(queued.id)
        assert left is not None and left.state is S.SUBMITTED, left
        assert trace_lines(trace, queued.id) == []
        stopped = await store.get_task(running.id)
        assert stopped is not None and stopped.state is S.CANCELED
        assert stopped.reason == "shutdown"

    async with restarted(path, tmp_path) as svc:
        await svc.wait(queued.id, 0, 5)
        assert (await svc.get(queued.id, USER)).status.state is TaskState.COMPLETED
