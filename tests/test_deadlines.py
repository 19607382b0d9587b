"""Deadlines: the task timeout, the idle timeout and the input timeout each end the task
through the cancel path with their own reason, and the work really stops."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from andon import Agent, RuntimeSettings, ServiceSettings, TaskContext, TaskService, open_service
from andon.protocol.errors import InvalidParams
from andon.protocol.types import Task, TaskState
from andon.store.base import Event
from tests.conftest import FAST_RUNTIME
from tests.helpers import USER, children_of, trace_lines, user_text, wait_state, wait_trace

OBSERVE = 0.35  # more than three demo steps

idle_agent = Agent("idle")


@idle_agent.skill("idle")
async def goes_quiet(ctx: TaskContext) -> None:
    """Says one thing, then never makes progress again."""
    await ctx.progress("started")
    await asyncio.Event().wait()


@pytest.fixture
async def idle_service(
    tmp_path: Path, service_settings: ServiceSettings
) -> AsyncIterator[TaskService]:
    runtime = RuntimeSettings(workdir=tmp_path, **FAST_RUNTIME)
    async with open_service(
        idle_agent, str(tmp_path / "idle.sqlite"), runtime=runtime, settings=service_settings
    ) as svc:
        yield svc


async def start(service: TaskService, text: str, **metadata: Any) -> str:
    record = await service.submit(user_text(text, metadata=metadata or None), USER)
    return record.id


async def ended(service: TaskService, task_id: str, timeout: float = 5) -> Task:
    await service.wait(task_id, 0, timeout)
    task = await service.get(task_id, USER)
    assert task.status.state.terminal, f"still {task.status.state} after {timeout}s"
    return task


def reason(task: Task) -> str | None:
    return (task.metadata or {}).get("andon.reason")


def first_status(events: list[Event], state: str) -> Event:
    return next(e for e in events if e.kind == "status" and e.data["state"] == state)


async def assert_trace_stopped(trace: Path, task_id: str) -> None:
    over = time.monotonic_ns()
    await asyncio.sleep(OBSERVE)
    late = [line for line in trace_lines(trace, task_id) if line[1] > over]
    assert late == [], f"work went on after the task ended: {late}"


# -- task timeout -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["sleep 30", "spin 30", "stream 1000"])
async def test_timeout_cancels_and_the_work_stops(
    service: TaskService, trace: Path, command: str
) -> None:
    task_id = await start(service, command, **{"andon.timeout": 0.3})
    await wait_trace(trace, task_id, 1)

    task = await ended(service, task_id)

    assert task.status.state is TaskState.CANCELED
    assert reason(task) == "timeout"
    events = await service.store.events(task_id)
    took = events[-1].created_at - first_status(events, "working").created_at
    assert 0.3 <= took < 2.5
    assert events[-1].final and events[-1].data["reason"] == "timeout"
    await assert_trace_stopped(trace, task_id)


async def test_timeout_kills_a_running_command(service: TaskService) -> None:
    task_id = await start(service, "shell sleep 303", **{"andon.timeout": 0.3})
    task = await ended(service, task_id)
    assert task.status.state is TaskState.CANCELED and reason(task) == "timeout"
    assert children_of(os.getpid()) == []


async def test_timeout_also_runs_while_waiting_for_input(service: TaskService) -> None:
    task_id = await start(service, "ask anyone?", **{"andon.timeout": 0.3})
    task = await ended(service, task_id)
    assert task.status.state is TaskState.CANCELED and reason(task) == "timeout"


async def test_a_task_done_in_time_completes(service: TaskService) -> None:
    task_id = await start(service, "sleep 0.2", **{"andon.timeout": 5})
    task = await ended(service, task_id)
    assert task.status.state is TaskState.COMPLETED
    record = await service.store.get_task(task_id)
    assert record is not None and record.timeout == 5.0


# -- idle timeout -------------------------------------------------------------------------


async def test_idle_timeout_cancels_an_agent_that_stops_emitting(
    idle_service: TaskService,
) -> None:
    task_id = await start(idle_service, "go", **{"andon.idleTimeout": 0.3})

    task = await ended(idle_service, task_id)

    assert task.status.state is TaskState.CANCELED
    assert reason(task) == "idle_timeout"
    events = await idle_service.store.events(task_id)
    last_progress = [e for e in events if e.kind == "progress"][-1]
    assert 0.25 <= events[-1].created_at - last_progress.created_at < 2.5


async def test_progress_keeps_an_idle_timeout_away(service: TaskService) -> None:
    # a progress event every 0.1 s, for longer than the idle timeout
    task_id = await start(service, "sleep 0.6", **{"andon.idleTimeout": 0.3})
    task = await ended(service, task_id)
    assert task.status.state is TaskState.COMPLETED


async def test_waiting_for_input_is_not_idleness(service: TaskService) -> None:
    task_id = await start(service, "ask still there?", **{"andon.idleTimeout": 0.2})
    await wait_state(service, task_id, TaskState.INPUT_REQUIRED)
    await asyncio.sleep(OBSERVE)
    assert (await service.get(task_id, USER)).status.state is TaskState.INPUT_REQUIRED
    await service.answer(task_id, USER, user_text("yes"))
    task = await ended(service, task_id)
    assert task.status.state is TaskState.COMPLETED


# -- input timeout ------------------------------------------------------------------------


async def test_input_timeout_cancels_an_unanswered_question(service: TaskService) -> None:
    task_id = await start(service, "ask your name?", **{"andon.inputTimeout": 0.3})

    task = await ended(service, task_id)

    assert task.status.state is TaskState.CANCELED
    assert reason(task) == "input_timeout"
    events = await service.store.events(task_id)
    asked = first_status(events, "input-required")
    assert 0.3 <= events[-1].created_at - asked.created_at < 2.5


async def test_input_timeout_does_not_limit_work(service: TaskService) -> None:
    task_id = await start(service, "sleep 0.5", **{"andon.inputTimeout": 0.1})
    assert (await ended(service, task_id)).status.state is TaskState.COMPLETED


async def test_an_answer_in_time_beats_the_input_timeout(service: TaskService) -> None:
    task_id = await start(service, "ask quick?", **{"andon.inputTimeout": 5})
    await wait_state(service, task_id, TaskState.INPUT_REQUIRED)
    await service.answer(task_id, USER, user_text("here"))
    assert (await ended(service, task_id)).status.state is TaskState.COMPLETED


# -- defaults from the settings --------------------------------------------------------------


@pytest.mark.parametrize("service_settings", [ServiceSettings(timeout=0.3)])
async def test_default_timeout(service: TaskService, trace: Path) -> None:
    task_id = await start(service, "sleep 30")
    task = await ended(service, task_id)
    assert task.status.state is TaskState.CANCELED and reason(task) == "timeout"
    record = await service.store.get_task(task_id)
    assert record is not None and record.timeout == 0.3
    await assert_trace_stopped(trace, task_id)


@pytest.mark.parametrize("service_settings", [ServiceSettings(timeout=0.3)])
async def test_metadata_overrides_the_default_timeout(service: TaskService) -> None:
    task_id = await start(service, "sleep 0.6", **{"andon.timeout": 5})
    assert (await ended(service, task_id)).status.state is TaskState.COMPLETED


@pytest.mark.parametrize("service_settings", [ServiceSettings(idle_timeout=0.3)])
async def test_default_idle_timeout(idle_service: TaskService) -> None:
    task = await ended(idle_service, await start(idle_service, "go"))
    assert task.status.state is TaskState.CANCELED and reason(task) == "idle_timeout"


@pytest.mark.parametrize("service_settings", [ServiceSettings(input_timeout=0.3)])
async def test_default_input_timeout(service: TaskService) -> None:
    task = await ended(service, await start(service, "ask well?"))
    assert task.status.state is TaskState.CANCELED and reason(task) == "input_timeout"


async def test_no_deadline_by_default(service: TaskService) -> None:
    task_id = await start(service, "ask whenever?")
    await wait_state(service, task_id, TaskState.INPUT_REQUIRED)
    record = await service.store.get_task(task_id)
    assert record is not None
    assert (record.timeout, record.idle_timeout, record.input_timeout) == (None, None, None)
    await service.cancel(task_id, USER)


# -- invalid values -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["andon.timeout", "andon.idleTimeout", "andon.inputTimeout"])
@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        -0.5,
        "5",
        True,
        [1],
        {"s": 1},
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="inf"),
    ],
)
async def test_invalid_deadline_is_refused(service: TaskService, key: str, value: Any) -> None:
    with pytest.raises(InvalidParams):
        await start(service, "echo never", **{key: value})
    assert (await service.list(USER)).total_size == 0
