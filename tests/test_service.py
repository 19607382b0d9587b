"""TaskService with the demo agent: outcomes, questions, access, listing, batch cancel,
retry, context policies and the concurrency limit — as a client sees them."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from andon import Agent, Principal, RuntimeSettings, TaskContext, TaskService, open_service
from andon.agents import trace as demo_trace
from andon.agents.demo import agent as demo_agent
from andon.protocol.errors import (
    InvalidParams,
    TaskNotFound,
    UnsupportedOperation,
)
from andon.protocol.params import PushNotificationConfig
from andon.protocol.types import Task, TaskState
from tests.conftest import FAST_RUNTIME, STORES, each_store
from tests.helpers import USER, eventually, trace_lines, user_text, wait_state, wait_trace

POLICY = "andon.contextPolicy"
MALLORY = Principal("mallory")
ROOT = Principal("root", "admin")
OBSERVE = 0.35  # more than three demo steps


async def start(
    service: TaskService,
    text: str,
    *,
    context_id: str | None = None,
    principal: Principal = USER,
    policy: str | None = None,
    **metadata: Any,
) -> str:
    if policy is not None:
        metadata[POLICY] = policy
    message = user_text(text, context_id=context_id, metadata=metadata or None)
    return (await service.submit(message, principal)).id


async def finished(service: TaskService, task_id: str, timeout: float = 10) -> Task:
    await service.wait(task_id, 0, timeout)
    task = await service.get(task_id, ROOT)
    assert task.status.state.terminal, f"task {task_id} still {task.status.state}"
    return task


def reason(task: Task) -> str | None:
    return (task.metadata or {}).get("andon.reason")


def status_text(task: Task) -> str:
    assert task.status.message is not None
    return task.status.message.text


@asynccontextmanager
async def serving(
    agent: Agent, tmp_path: Path, store_url: str, **options: Any
) -> AsyncIterator[TaskService]:
    runtime = RuntimeSettings(workdir=tmp_path, **FAST_RUNTIME)
    async with open_service(agent, store_url, runtime=runtime, **options) as svc:
        yield svc


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return each_store(request)


# -- outcomes ---------------------------------------------------------------------------


async def test_echo_completes_with_its_artifact(service: TaskService) -> None:
    task_id = await start(service, "echo hello there")
    task = await finished(service, task_id)
    assert task.status.state is TaskState.COMPLETED
    assert task.artifacts is not None and len(task.artifacts) == 1
    assert [p.text for p in task.artifacts[0].parts] == ["hello there"]
    assert status_text(task) == "hello there"
    assert reason(task) is None
    assert task.history is not None and task.history[0].text == "echo hello there"


async def test_a_wait_reads_the_task_again_only_when_it_reaches_a_state_that_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blocking wait over a task that streams progress and artifacts is handed those
    events by the store: it reads the task at its start and when it ends, not at every
    event (a crowd's cancels each waited through every progress event), nor when it
    starts working."""
    agent = Agent(name="chatty")

    @agent.skill("chat")
    async def chat(ctx: TaskContext) -> None:
        for step in range(40):
            await ctx.progress(f"step {step}")
            await ctx.emit(f"{step} ")
            await asyncio.sleep(0)

    async with serving(agent, tmp_path, str(tmp_path / "a.sqlite")) as service:
        reads: list[str] = []
        get_task = service.store.get_task

        async def counted(task_id: str) -> Any:
            reads.append(task_id)
            return await get_task(task_id)

        task_id = await start(service, "go")
        monkeypatch.setattr(service.store, "get_task", counted)
        record = await service.wait(task_id, 0, 10)
        assert record is not None and record.state is TaskState.COMPLETED
        # the wait's first read, then completed, and the attempt's own read-back after
        # its claim: not one per event (160), nor one for working
        assert len(reads) <= 3, reads


async def test_fail_ends_failed_with_the_message(service: TaskService) -> None:
    task_id = await start(service, "fail out of coffee")
    task = await finished(service, task_id)
    assert task.status.state is TaskState.FAILED
    assert reason(task) == "error"
    assert status_text(task) == "out of coffee"


async def test_unknown_command_fails(service: TaskService) -> None:
    task = await finished(service, await start(service, "dance now"))
    assert task.status.state is TaskState.FAILED
    assert "unknown command" in status_text(task)


async def test_submit_validates_the_message(service: TaskService) -> None:
    from andon.protocol.types import Message, Role

    with pytest.raises(InvalidParams):
        await service.submit(Message(role=Role.USER, parts=[]), USER)
    with pytest.raises(InvalidParams):
        await service.submit(user_text("echo x").model_copy(update={"role": Role.AGENT}), USER)


# -- andon.* metadata a client sends -----------------------------------------------------

SERVER_KEYS = {
    "andon.retryOf": "some-task",
    "andon.reason": "user",
    "andon.canceling": True,
    "andon.createdAt": "2020-01-01T00:00:00Z",
    "andon.stopMs": 0.1,
    "andon.survivors": [],
    "andon.cancelMode": "graceful",
    "andon.directReply": True,
}


@pytest.mark.parametrize("key", sorted(SERVER_KEYS))
@pytest.mark.parametrize("where", ["message", "request"])
async def test_a_key_only_andon_writes_is_refused_from_a_client(
    service: TaskService, key: str, where: str
) -> None:
    metadata = {key: SERVER_KEYS[key]}
    message = user_text("echo x", metadata=metadata if where == "message" else None)
    with pytest.raises(InvalidParams, match=re.escape(key)):
        await service.submit(message, USER, metadata=metadata if where == "request" else None)
    assert (await service.list(ROOT)).total_size == 0


WRONG_TYPES = [
    *(
        (key, value)
        for key in ("andon.contextPolicy", "andon.skill", "andon.onDisconnect")
        for value in (7, ["parallel"], {"a": 1}, True)
    ),
    *(("andon.timeout", value) for value in ("7", [7], True, {"s": 7})),
]


@pytest.mark.parametrize(("key", "value"), WRONG_TYPES)
async def test_a_client_option_of_the_wrong_type_is_invalid_params(
    service: TaskService, key: str, value: Any
) -> None:
    with pytest.raises(InvalidParams, match=re.escape(key)):
        await start(service, "echo x", **{key: value})
    assert (await service.list(ROOT)).total_size == 0


@pytest.mark.parametrize("key", ["andon.contextPolicy", "andon.skill", "andon.onDisconnect"])
async def test_a_null_option_is_not_given(service: TaskService, key: str) -> None:
    task_id = await start(service, "echo x", **{key: None})
    assert (await finished(service, task_id)).status.state is TaskState.COMPLETED


async def test_retry_of_cannot_reach_another_principals_artifacts(service: TaskService) -> None:
    secret = await start(service, "echo alice's secret")
    await finished(service, secret)
    with pytest.raises(InvalidParams, match=r"andon\.retryOf"):
        await start(service, "echo x", principal=MALLORY, **{"andon.retryOf": secret})
    with pytest.raises(TaskNotFound):  # the one way to set it checks ownership
        await service.retry(secret, MALLORY)
    assert (await service.list(MALLORY)).total_size == 0


async def test_a_client_trace_context_is_not_kept(service: TaskService) -> None:
    task_id = await start(service, "echo x", **{"andon.trace": {"traceparent": "forged"}})
    task = await finished(service, task_id)
    assert "andon.trace" not in (task.metadata or {})


# -- NUL characters ----------------------------------------------------------------------

NUL = "\x00"

NUL_METADATA = [
    {"note": f"a{NUL}b"},
    {f"key{NUL}": "x"},
    {"deep": [{"list": [1, f"{NUL}"]}]},
]


@pytest.mark.parametrize("metadata", NUL_METADATA)
@pytest.mark.parametrize("where", ["message", "request"])
async def test_a_nul_in_metadata_is_invalid_params_on_every_store(
    service: TaskService, metadata: dict[str, Any], where: str
) -> None:
    """PostgreSQL cannot hold a NUL in the task's metadata: both stores refuse it alike,
    in words, and store nothing."""
    message = user_text("echo x", metadata=metadata if where == "message" else None)
    with pytest.raises(InvalidParams, match="NUL"):
        await service.submit(message, USER, metadata=metadata if where == "request" else None)
    assert (await service.list(ROOT)).total_size == 0


async def test_a_nul_in_a_context_id_is_invalid_params_on_every_store(
    service: TaskService,
) -> None:
    with pytest.raises(InvalidParams, match="contextId"):
        await start(service, "echo x", context_id=f"ctx{NUL}")
    with pytest.raises(InvalidParams, match="contextId"):
        await service.list(USER, context_id=f"ctx{NUL}")
    with pytest.raises(InvalidParams, match="contextId"):
        await service.cancel_many(USER, context_id=f"ctx{NUL}")
    assert (await service.list(ROOT)).total_size == 0


async def test_a_task_id_with_a_nul_is_not_found_on_every_store(service: TaskService) -> None:
    task_id = f"{await start(service, 'echo x')}{NUL}"
    with pytest.raises(TaskNotFound):
        await service.get(task_id, USER)
    with pytest.raises(TaskNotFound):
        await service.cancel(task_id, USER)
    with pytest.raises(TaskNotFound):
        await service.retry(task_id, USER)
    with pytest.raises(TaskNotFound):
        await service.subscribe(task_id, USER)
    with pytest.raises(TaskNotFound):
        await service.submit(user_text("more", task_id=task_id), USER)
    outcomes = await service.cancel_many(USER, ids=[task_id])
    assert [o.error for o in outcomes] == [f"task {task_id} not found"]


async def test_a_push_config_with_a_nul_is_refused_or_not_found_on_every_store(
    service: TaskService,
) -> None:
    task_id = await start(service, "echo x")
    config = PushNotificationConfig(url="https://a.example/hook", token=f"t{NUL}")
    with pytest.raises(InvalidParams, match="NUL"):
        await service.set_push_config(task_id, USER, config, "1.0")
    with pytest.raises(InvalidParams, match="NUL"):
        await service.submit(user_text("echo x"), USER, push=config)
    with pytest.raises(TaskNotFound):
        await service.get_push_config(task_id, USER, f"c{NUL}")
    await service.delete_push_config(task_id, USER, f"c{NUL}")  # idempotent: nothing there
    assert await service.list_push_configs(task_id, USER) == []
    assert (await service.list(ROOT)).total_size == 1


async def test_a_nul_in_message_text_is_stored_and_given_back_on_every_store(
    service: TaskService,
) -> None:
    """A message's own content is kept as JSON text by both stores, which holds a NUL."""
    task_id = await start(service, f"echo a{NUL}b")
    task = await finished(service, task_id)
    assert task.status.state is TaskState.COMPLETED
    assert status_text(task) == f"a{NUL}b"


# -- questions --------------------------------------------------------------------------


async def test_ask_then_answer(service: TaskService) -> None:
    task_id = await start(service, "ask your name?")
    await wait_state(service, task_id, TaskState.INPUT_REQUIRED)
    waiting = await service.get(task_id, USER)
    assert status_text(waiting) == "your name?"

    answered = await service.answer(task_id, USER, user_text("Ada"))
    assert answered.id == task_id

    task = await finished(service, task_id)
    assert task.id == task_id
    assert task.status.state is TaskState.COMPLETED
    assert task.artifacts is not None and task.artifacts[0].parts[0].text == "Ada"
    assert task.history is not None
    assert [m.text for m in task.history][:3] == ["ask your name?", "your name?", "Ada"]


async def test_answer_through_submit_with_the_task_id(service: TaskService) -> None:
    task_id = await start(service, "ask colour?")
    await wait_state(service, task_id, TaskState.INPUT_REQUIRED)
    record = await service.submit(user_text("blue", task_id=task_id), USER)
    assert record.id == task_id
    task = await finished(service, task_id)
    assert task.status.state is TaskState.COMPLETED
    assert task.artifacts is not None and task.artifacts[0].parts[0].text == "blue"
    listed = await service.list(USER)
    assert [t.id for t in listed.tasks] == [task_id]  # no second task was made


async def test_answer_to_a_task_not_waiting_is_refused(service: TaskService) -> None:
    working = await start(service, "sleep 30")
    await wait_state(service, working, TaskState.WORKING)
    with pytest.raises(UnsupportedOperation):
        await service.answer(working, USER, user_text("hi"))
    with pytest.raises(UnsupportedOperation):
        await service.submit(user_text("hi", task_id=working), USER)

    done = await start(service, "echo x")
    await finished(service, done)
    before = await service.store.events(done)
    with pytest.raises(UnsupportedOperation):
        await service.answer(done, USER, user_text("hi"))
    assert await service.store.events(done) == before
    assert (await service.get(working, USER)).status.state is TaskState.WORKING
    await service.cancel(working, USER)


# -- access -----------------------------------------------------------------------------


async def test_another_principals_task_is_not_found(service: TaskService) -> None:
    task_id = await start(service, "sleep 30")
    await wait_state(service, task_id, TaskState.WORKING)
    missing = "0" * 32

    for call in (
        lambda tid: service.get(tid, MALLORY),
        lambda tid: service.cancel(tid, MALLORY),
        lambda tid: service.answer(tid, MALLORY, user_text("x")),
        lambda tid: service.retry(tid, MALLORY),
        lambda tid: service.subscribe(tid, MALLORY),
    ):
        with pytest.raises(TaskNotFound) as foreign:
            await call(task_id)
        with pytest.raises(TaskNotFound) as unknown:
            await call(missing)
        # the same answer as for a task that does not exist: nothing leaks
        assert foreign.value.message.replace(task_id, missing) == unknown.value.message

    assert (await service.list(MALLORY)).tasks == []
    assert (await service.list(MALLORY)).total_size == 0
    outcomes = await service.cancel_many(MALLORY, ids=[task_id])
    assert outcomes[0].task is None and outcomes[0].error is not None
    assert await service.cancel_many(MALLORY, states=[TaskState.WORKING]) == []
    assert (await service.get(task_id, USER)).status.state is TaskState.WORKING

    # an admin sees and cancels everyone's tasks
    assert (await service.get(task_id, ROOT)).id == task_id
    assert [t.id for t in (await service.list(ROOT)).tasks] == [task_id]
    task = await service.cancel(task_id, ROOT)
    assert task.status.state is TaskState.CANCELED
    assert (await service.get(task_id, USER)).status.state is TaskState.CANCELED


# -- listing ----------------------------------------------------------------------------


async def test_list_filters_and_pages(service: TaskService) -> None:
    ctx = "ctx-list"
    done = [await start(service, f"echo {i}", context_id=ctx) for i in range(5)]
    for task_id in done:
        await finished(service, task_id)
    running = await start(service, "sleep 30", context_id="ctx-other")
    await wait_state(service, running, TaskState.WORKING)
    await start(service, "echo not mine", principal=MALLORY)

    everything = await service.list(USER)
    assert [t.id for t in everything.tasks] == [running, *reversed(done)]
    assert everything.total_size == 6
    assert all(t.artifacts is None and t.history is None for t in everything.tasks)

    in_ctx = await service.list(USER, context_id=ctx)
    assert {t.id for t in in_ctx.tasks} == set(done)
    working = await service.list(USER, states=[TaskState.WORKING])
    assert [t.id for t in working.tasks] == [running]
    completed = await service.list(USER, states=[TaskState.COMPLETED], include_artifacts=True)
    assert completed.total_size == 5
    assert all(t.artifacts for t in completed.tasks)

    seen: list[str] = []
    token = None
    for _ in range(10):
        page = await service.list(USER, context_id=ctx, page_size=2, page_token=token)
        assert page.total_size == 5 and page.page_size == 2
        seen.extend(t.id for t in page.tasks)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(done))

    for size in (0, 101):
        with pytest.raises(InvalidParams):
            await service.list(USER, page_size=size)
    with pytest.raises(InvalidParams):
        await service.list(USER, page_token="not a token")
    await service.cancel(running, USER)


async def test_a_snapshot_shows_exactly_the_events_up_to_its_sequence_number(
    service: TaskService,
) -> None:
    task_id = await start(service, "stream 5")
    early = await service.store.get_task(task_id)
    assert early is not None
    task = await finished(service, task_id)
    assert task.artifacts is not None  # the log now holds the chunks ...
    # ... but the task as of the early record has none of them: a stream resuming after
    # its `last_seq` shows each chunk once.
    then = await service.view(early)
    assert then.artifacts is None and then.status.state is TaskState.SUBMITTED
    now, record = await service.snapshot(task_id, USER)
    assert now == task and record.last_seq == (await service.store.events(task_id))[-1].seq


async def test_a_task_says_when_it_was_created(service: TaskService) -> None:
    task = await finished(service, await start(service, "echo hi"))
    metadata = task.metadata or {}
    assert metadata["andon.createdAt"] <= task.status.timestamp


async def test_a_canceling_task_lists_as_working(tmp_path: Path, store_url: str) -> None:
    release = asyncio.Event()
    agent = Agent("slow-cleanup")

    @agent.skill("hold")
    async def hold(ctx: TaskContext) -> None:
        @ctx.on_cancel
        async def cleanup() -> None:
            await release.wait()

        await asyncio.Event().wait()

    async with serving(agent, tmp_path, store_url) as svc:
        task_id = await start(svc, "go")
        await wait_state(svc, task_id, TaskState.WORKING)
        task = await svc.cancel(task_id, USER, wait=0)
        assert task.status.state is TaskState.WORKING
        assert task.metadata is not None and task.metadata.get("andon.canceling") is True

        listed = await svc.list(USER, states=[TaskState.WORKING])
        assert [t.id for t in listed.tasks] == [task_id]
        again = await svc.cancel(task_id, USER, wait=0)  # no error: it is on its way
        assert again.metadata is not None and again.metadata.get("andon.canceling") is True
        release.set()
        ended = await finished(svc, task_id)
        assert ended.status.state is TaskState.CANCELED


# -- cancel many --------------------------------------------------------------------------


async def test_cancel_many_by_ids(service: TaskService, trace: Path) -> None:
    chosen = [await start(service, "sleep 30") for _ in range(3)]
    spared = await start(service, "sleep 30")
    done = await start(service, "echo x")
    for task_id in [*chosen, spared]:
        await wait_trace(trace, task_id, 1)
    await finished(service, done)

    outcomes = await service.cancel_many(USER, ids=[*chosen, done, "f" * 32])

    by_id = {o.task_id: o for o in outcomes}
    for task_id in chosen:
        task = by_id[task_id].task
        assert task is not None and task.status.state is TaskState.CANCELED
        assert reason(task) == "operator"
        final = (await service.store.events(task_id))[-1]
        assert final.final and final.data["reason"] == "operator"
    assert by_id[done].task is None and by_id[done].error is not None
    assert by_id["f" * 32].task is None and by_id["f" * 32].error is not None
    assert (await service.get(spared, USER)).status.state is TaskState.WORKING
    assert (await service.get(done, USER)).status.state is TaskState.COMPLETED
    await service.cancel(spared, USER)


async def test_cancel_many_by_context(service: TaskService) -> None:
    ctx = "ctx-batch"
    inside = [
        await start(service, "sleep 30", context_id=ctx),
        await start(service, "ask anything?", context_id=ctx),
        await start(service, "spin 30", context_id=ctx),
    ]
    outside = await start(service, "sleep 30", context_id="ctx-elsewhere")
    await wait_state(service, inside[1], TaskState.INPUT_REQUIRED)
    await wait_state(service, outside, TaskState.WORKING)

    outcomes = await service.cancel_many(USER, context_id=ctx, reason="maintenance")

    assert sorted(o.task_id for o in outcomes) == sorted(inside)
    for task_id in inside:
        task = await service.get(task_id, USER)
        assert task.status.state is TaskState.CANCELED and reason(task) == "maintenance"
    assert (await service.get(outside, USER)).status.state is TaskState.WORKING
    await service.cancel(outside, USER)


async def test_cancel_many_by_state(service: TaskService) -> None:
    asking = [await start(service, f"ask question {i}?") for i in range(2)]
    sleeping = [await start(service, "sleep 30") for _ in range(2)]
    for task_id in asking:
        await wait_state(service, task_id, TaskState.INPUT_REQUIRED)
    for task_id in sleeping:
        await wait_state(service, task_id, TaskState.WORKING)

    outcomes = await service.cancel_many(USER, states=[TaskState.INPUT_REQUIRED])

    assert sorted(o.task_id for o in outcomes) == sorted(asking)
    for task_id in asking:
        task = await service.get(task_id, USER)
        assert task.status.state is TaskState.CANCELED and reason(task) == "operator"
    for task_id in sleeping:
        assert (await service.get(task_id, USER)).status.state is TaskState.WORKING

    rest = await service.cancel_many(USER, states=[TaskState.WORKING])
    assert sorted(o.task_id for o in rest) == sorted(sleeping)
    assert all(o.task is not None and o.task.status.state is TaskState.CANCELED for o in rest)

    with pytest.raises(InvalidParams):
        await service.cancel_many(USER)


# -- retry ------------------------------------------------------------------------------


async def test_retry_of_a_cancelled_stream(service: TaskService, trace: Path) -> None:
    old_id = await start(service, "stream 40", context_id="ctx-retry", **{"andon.idleTimeout": 60})
    await wait_trace(trace, old_id, 3)
    cancelled = await service.cancel(old_id, USER)
    assert cancelled.status.state is TaskState.CANCELED
    assert cancelled.artifacts is not None
    partial = [p.text for p in cancelled.artifacts[0].parts]
    assert 3 <= len(partial) < 40

    retry = await service.retry(old_id, USER)

    assert retry.id != old_id
    assert retry.context_id == "ctx-retry"
    assert retry.metadata["andon.retryOf"] == old_id
    assert retry.retry_of == old_id
    # It keeps the options the old task was started with, not what its run recorded.
    assert retry.metadata["andon.idleTimeout"] == 60
    assert not {"andon.stopMs", "andon.cancelMode"} & set(retry.metadata)
    first = (await service.store.events(retry.id))[0]
    assert first.kind == "message" and first.data["referenceTaskIds"] == [old_id]
    new_task = await service.get(retry.id, USER)
    assert new_task.metadata is not None and new_task.metadata["andon.retryOf"] == old_id
    assert new_task.history is not None and new_task.history[0].text == "stream 40"
    await wait_trace(trace, retry.id, 1)  # the retry runs

    # the old task's partial artifacts stay readable
    old = await service.get(old_id, USER)
    assert old.status.state is TaskState.CANCELED
    assert old.artifacts is not None and [p.text for p in old.artifacts[0].parts] == partial
    await service.cancel(retry.id, USER)


async def test_retry_of_an_unfinished_task_is_refused(service: TaskService) -> None:
    task_id = await start(service, "sleep 30")
    await wait_state(service, task_id, TaskState.WORKING)
    with pytest.raises(UnsupportedOperation):
        await service.retry(task_id, USER)
    assert (await service.list(USER)).total_size == 1
    await service.cancel(task_id, USER)


# -- context policies -----------------------------------------------------------------------


async def test_enqueue_starts_after_the_earlier_task_ended(
    service: TaskService, trace: Path
) -> None:
    ctx = "ctx-enqueue"
    first = await start(service, "sleep 0.3", context_id=ctx, policy="enqueue")
    second = await start(service, "sleep 0.3", context_id=ctx, policy="enqueue")
    assert (await finished(service, first)).status.state is TaskState.COMPLETED
    assert (await finished(service, second)).status.state is TaskState.COMPLETED

    first_steps, second_steps = trace_lines(trace, first), trace_lines(trace, second)
    assert len(first_steps) == 3 and len(second_steps) == 3
    assert max(ns for _, ns in first_steps) < min(ns for _, ns in second_steps)
    first_end = (await service.store.events(first))[-1]
    second_start = next(
        e for e in await service.store.events(second) if e.data.get("state") == "working"
    )
    assert first_end.final and second_start.created_at >= first_end.created_at


async def test_enqueue_waits_for_a_running_task_started_without_the_policy(
    service: TaskService, trace: Path
) -> None:
    ctx = "ctx-enqueue-mixed"
    first = await start(service, "sleep 0.3", context_id=ctx)
    await wait_state(service, first, TaskState.WORKING)
    second = await start(service, "sleep 0.3", context_id=ctx, policy="enqueue")
    await finished(service, first)
    await finished(service, second)
    first_steps, second_steps = trace_lines(trace, first), trace_lines(trace, second)
    assert max(ns for _, ns in first_steps) < min(ns for _, ns in second_steps)


async def test_interrupt_cancels_the_older_task_as_superseded(
    service: TaskService, trace: Path
) -> None:
    ctx = "ctx-interrupt"
    older = await start(service, "sleep 30", context_id=ctx)
    await wait_trace(trace, older, 1)
    newer = await start(service, "sleep 0.3", context_id=ctx, policy="interrupt")

    old_task = await finished(service, older)
    assert old_task.status.state is TaskState.CANCELED
    assert reason(old_task) == "superseded"
    new_task = await finished(service, newer)
    assert new_task.status.state is TaskState.COMPLETED
    old_steps, new_steps = trace_lines(trace, older), trace_lines(trace, newer)
    assert max(ns for _, ns in old_steps) < min(ns for _, ns in new_steps)


async def test_a_context_policy_reaches_only_its_own_principals_tasks(
    service: TaskService, trace: Path
) -> None:
    ctx = "ctx-shared-name"
    users = await start(service, "sleep 30", context_id=ctx)
    await wait_trace(trace, users, 1)
    # Another principal naming the same context id neither interrupts, nor is rejected
    # by, nor waits behind the first one's task.
    for policy in ("interrupt", "reject", "enqueue"):
        theirs = await start(service, "echo mine", context_id=ctx, principal=MALLORY, policy=policy)
        assert (await finished(service, theirs)).status.state is TaskState.COMPLETED
    assert (await service.get(users, USER)).status.state is TaskState.WORKING
    await service.cancel(users, USER)


async def test_interrupt_with_nothing_running_just_runs(service: TaskService) -> None:
    task_id = await start(service, "echo alone", context_id="ctx-quiet", policy="interrupt")
    assert (await finished(service, task_id)).status.state is TaskState.COMPLETED


async def test_reject_refuses_a_second_task(service: TaskService, trace: Path) -> None:
    ctx = "ctx-reject"
    older = await start(service, "sleep 30", context_id=ctx)
    await wait_trace(trace, older, 1)
    newer = await start(service, "sleep 0.3", context_id=ctx, policy="reject")

    rejected = await finished(service, newer)
    assert rejected.status.state is TaskState.REJECTED
    seen = len(trace_lines(trace, older))
    await wait_trace(trace, older, seen + 2)  # the older one goes on
    assert trace_lines(trace, newer) == []
    assert (await service.get(older, USER)).status.state is TaskState.WORKING
    await service.cancel(older, USER)

    # once the context is free, the same policy lets a task in
    again = await start(service, "echo now", context_id=ctx, policy="reject")
    assert (await finished(service, again)).status.state is TaskState.COMPLETED


async def test_parallel_is_the_default(service: TaskService, trace: Path) -> None:
    ctx = "ctx-parallel"
    first = await start(service, "sleep 30", context_id=ctx)
    second = await start(service, "sleep 30", context_id=ctx)
    await wait_trace(trace, first, 2)
    await wait_trace(trace, second, 2)
    assert (await service.get(first, USER)).status.state is TaskState.WORKING
    assert (await service.get(second, USER)).status.state is TaskState.WORKING
    await service.cancel_many(USER, context_id=ctx)


async def test_an_unknown_policy_is_invalid(service: TaskService) -> None:
    with pytest.raises(InvalidParams):
        await start(service, "echo x", context_id="ctx", policy="shove")
    assert (await service.list(USER)).total_size == 0


# -- concurrency limit --------------------------------------------------------------------


async def test_max_concurrent_queues_and_a_queued_cancel_never_runs(
    tmp_path: Path, trace: Path, store_url: str
) -> None:
    async with serving(demo_agent, tmp_path, store_url, max_concurrent=1) as svc:
        running = await start(svc, "sleep 30")
        await wait_trace(trace, running, 1)
        queued = await start(svc, "sleep 0.3")
        seen = len(trace_lines(trace, running))
        await wait_trace(trace, running, seen + 2)
        assert (await svc.get(queued, USER)).status.state is TaskState.SUBMITTED

        cancelled = await svc.cancel(queued, USER)
        assert cancelled.status.state is TaskState.CANCELED

        seen = len(trace_lines(trace, running))
        await wait_trace(trace, running, seen + 2)  # the first one goes on
        assert (await svc.get(running, USER)).status.state is TaskState.WORKING

        # the slot frees: the next queued task runs, the cancelled one never does
        after = await start(svc, "echo next")
        await svc.cancel(running, USER)
        assert (await finished(svc, after)).status.state is TaskState.COMPLETED
        await asyncio.sleep(OBSERVE)
        assert trace_lines(trace, queued) == []
        statuses = [e.data["state"] for e in await svc.store.events(queued) if e.kind == "status"]
        assert statuses == ["submitted", "canceled"]


async def test_tasks_over_the_limit_start_in_order(
    tmp_path: Path, trace: Path, store_url: str
) -> None:
    async with serving(demo_agent, tmp_path, store_url, max_concurrent=2) as svc:
        ids = [await start(svc, "sleep 0.2") for _ in range(5)]
        for task_id in ids:
            assert (await finished(svc, task_id)).status.state is TaskState.COMPLETED
        spans = []
        for task_id in ids:
            events = await svc.store.events(task_id)
            began = next(e.created_at for e in events if e.data.get("state") == "working")
            spans.append((began, events[-1].created_at))
        # First in, first started: tasks that start together (one freed slot each) may
        # stamp their start in either order, so a task's start rank may differ from its
        # submit rank by less than the number of slots, never more.
        by_start = sorted(range(len(ids)), key=lambda i: spans[i][0])
        assert all(abs(rank - i) < 2 for rank, i in enumerate(by_start)), by_start
        for began, _ in spans:
            at_once = sum(1 for b, e in spans if b <= began < e)
            assert at_once <= 2, f"{at_once} tasks ran at once"
        await eventually(lambda: svc.dispatcher.running() == [], timeout=5)


async def test_a_task_waiting_for_its_context_takes_no_slot(
    tmp_path: Path, trace: Path, store_url: str
) -> None:
    async with serving(demo_agent, tmp_path, store_url, max_concurrent=2) as svc:
        ctx = "ctx-serial"
        busy = await start(svc, "sleep 30", context_id=ctx, policy="enqueue")
        await wait_trace(trace, busy, 1)
        waiting = await start(svc, "sleep 0.3", context_id=ctx, policy="enqueue")
        other = await start(svc, "echo free slot", context_id="ctx-free")
        try:
            await svc.wait(other, 0, 1)
            assert (await svc.get(other, USER)).status.state is TaskState.COMPLETED
            assert (await svc.get(waiting, USER)).status.state is TaskState.SUBMITTED
        finally:
            await svc.cancel_many(USER, ids=[busy, waiting])


def test_the_demo_trace_follows_its_file_when_the_path_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo agent keeps its trace file open between lines; a new path (each test
    has its own) gets the next lines, and the old file none; so does a file removed."""
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    monkeypatch.setenv("ANDON_DEMO_TRACE", str(first))
    demo_trace.trace("a", 0)
    demo_trace.trace("a", 1)
    monkeypatch.setenv("ANDON_DEMO_TRACE", str(second))
    demo_trace.trace("b", 0)
    assert [line.split()[:2] for line in first.read_text().splitlines()] == [
        ["a", "0"],
        ["a", "1"],
    ]
    assert [line.split()[:2] for line in second.read_text().splitlines()] == [["b", "0"]]
    second.unlink()  # looked for once a second: the lines come back within one
    deadline = time.monotonic() + 5
    while not second.exists() and time.monotonic() < deadline:
        demo_trace.trace("c", 0)
        time.sleep(0.05)
    assert [line.split()[:2] for line in second.read_text().splitlines()] == [["c", "0"]]
