"""One test (at least) per invariant of the cancellation guarantee in DESIGN.md.

Each asserts on what can be seen from outside: stored states and events, the demo
agent's trace file, /proc. "Nothing happens after" is checked over an observation
window, since absence has no event to wait for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from andon import (
    Agent,
    CancelMode,
    Principal,
    RuntimeSettings,
    SyncTaskContext,
    TaskContext,
    TaskService,
    open_service,
)
from andon.node.parts import is_distributed
from andon.protocol.errors import TaskNotCancelable
from andon.protocol.types import TaskState
from andon.store.base import Event
from tests.conftest import FAST_RUNTIME, STORES, each_store
from tests.helpers import (
    USER,
    children_of,
    eventually,
    process_group_alive,
    trace_lines,
    user_text,
    wait_state,
    wait_trace,
)

OBSERVE = 0.35  # more than three demo steps: long enough to see work that did not stop


@asynccontextmanager
async def serving(
    agent: Agent, tmp_path: Path, store_url: str, **runtime: float
) -> AsyncIterator[TaskService]:
    settings = RuntimeSettings(workdir=tmp_path, **{**FAST_RUNTIME, **runtime})
    async with open_service(agent, store_url, runtime=settings) as svc:
        yield svc


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """Every test here runs in embedded mode (SQLite) and in distributed mode
    (PostgreSQL and its job queue, with a worker in this process that is signalled
    through the database, as a worker elsewhere would be)."""
    return each_store(request)


async def start(service: TaskService, text: str, **metadata: object) -> str:
    record = await service.submit(user_text(text, metadata=metadata or None), USER)
    return record.id


async def final_events(service: TaskService, task_id: str) -> list[Event]:
    return [e for e in await service.store.events(task_id) if e.final]


def assert_no_trace_after(trace: Path, task_id: str, after_ns: int) -> None:
    late = [line for line in trace_lines(trace, task_id) if line[1] > after_ns]
    assert late == [], f"work went on after the cancel returned: {late}"


# -- 1. Stops -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["sleep 30", "spin 30", "stream 1000"])
async def test_cancel_stops_the_agent_code(service: TaskService, trace: Path, command: str) -> None:
    task_id = await start(service, command)
    await wait_trace(trace, task_id, 2)

    task = await service.cancel(task_id, USER)
    returned = time.monotonic_ns()

    assert task.status.state is TaskState.CANCELED
    assert task.metadata is not None and task.metadata["andon.reason"] == "user"
    await asyncio.sleep(OBSERVE)
    assert_no_trace_after(trace, task_id, returned)


def shell_groups(command_fragment: str) -> set[int]:
    """Process groups of our live children whose command line contains the fragment."""
    groups = set()
    for pid in children_of(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        if command_fragment in cmdline:
            groups.add(int(stat[stat.rfind(b")") + 2 :].split()[2]))
    return groups


async def test_cancel_kills_the_whole_process_group(service: TaskService) -> None:
    marker = "sleep 301"
    task_id = await start(service, f"shell sh -c '{marker} & {marker}; wait'")
    await eventually(lambda: bool(shell_groups(marker)), message="shell started")
    (pgid,) = shell_groups(marker)
    await eventually(lambda: len(_group_members(pgid)) >= 3, message="both sleeps started")

    task = await service.cancel(task_id, USER)

    assert task.status.state is TaskState.CANCELED
    assert not process_group_alive(pgid), "a process of the task outlived its cancel"


def _group_members(pgid: int) -> list[int]:
    from andon.runtime.keeper import live_members

    return live_members(pgid)


async def test_command_ignoring_sigterm_is_killed_after_the_grace(service: TaskService) -> None:
    marker = "sleep 302"
    task_id = await start(service, f"shell trap '' TERM; {marker}")
    await eventually(lambda: bool(shell_groups(marker)), message="shell started")
    (pgid,) = shell_groups(marker)

    task = await service.cancel(task_id, USER)

    assert task.status.state is TaskState.CANCELED
    assert not process_group_alive(pgid)
    assert task.metadata is not None
    assert task.metadata["andon.stopMs"] >= FAST_RUNTIME["kill_grace"] * 1000


async def test_cancel_closes_requests_in_flight(tmp_path: Path, store_url: str) -> None:
    connected = asyncio.Event()
    closed = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # returns b"" once the client closes its socket
        closed.set()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    agent = Agent("http")

    @agent.skill("fetch")
    async def fetch(ctx: TaskContext) -> None:
        await ctx.http.get(f"http://127.0.0.1:{port}/slow")

    async with server, serving(agent, tmp_path, store_url) as svc:
        task_id = await start(svc, "go")
        await asyncio.wait_for(connected.wait(), 5)
        task = await svc.cancel(task_id, USER)
        assert task.status.state is TaskState.CANCELED
        await asyncio.wait_for(closed.wait(), 5)


def burn(seconds: float) -> int:
    """CPU work that never checks for cancellation (run in a child process)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


async def test_cancel_stops_a_process_runner(tmp_path: Path, store_url: str) -> None:
    agent = Agent("cpu")

    @agent.skill("burn")
    async def run(ctx: TaskContext) -> None:
        await ctx.run_process(burn, 300.0)

    async with serving(agent, tmp_path, store_url) as svc:
        task_id = await start(svc, "go")
        await eventually(lambda: bool(children_of(os.getpid())), message="child started")
        (child,) = children_of(os.getpid())
        task = await svc.cancel(task_id, USER)
        assert task.status.state is TaskState.CANCELED
        assert not process_group_alive(child)


async def test_sync_agent_in_a_thread_stops(tmp_path: Path, trace: Path, store_url: str) -> None:
    agent = Agent("sync")

    @agent.skill("loop")
    def loop(ctx: SyncTaskContext) -> None:
        from andon.agents.demo import trace as write_trace

        step = 0
        while True:
            ctx.check()
            time.sleep(0.01)
            write_trace(ctx.task_id, step)
            step += 1

    async with serving(agent, tmp_path, store_url) as svc:
        task_id = await start(svc, "go")
        await wait_trace(trace, task_id, 3)
        task = await svc.cancel(task_id, USER)
        returned = time.monotonic_ns()
        assert task.status.state is TaskState.CANCELED
        await asyncio.sleep(OBSERVE)
        assert_no_trace_after(trace, task_id, returned)


async def agent_runs(running: asyncio.Event) -> None:
    """Until the agent's own code runs. `working` is stored at the claim, before the
    attempt starts the agent (in distributed mode it reads the store twice between): a
    cancel in that window stops an agent that never ran, honestly `canceled`, and a test
    of what the agent's code does with a cancel would test nothing."""
    await asyncio.wait_for(running.wait(), 10)


# -- 2 and 8. Honest state, bounded ------------------------------------------------------


async def test_agent_swallowing_cancellation_ends_failed_cancel_timeout(
    tmp_path: Path, store_url: str
) -> None:
    release, running = asyncio.Event(), asyncio.Event()
    agent = Agent("stubborn")

    @agent.skill("stubborn")
    async def stubborn(ctx: TaskContext) -> None:
        running.set()
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass  # the bug under test: cancellation swallowed

    async with serving(agent, tmp_path, store_url, hard_deadline=0.5) as svc:
        task_id = await start(svc, "go")
        await agent_runs(running)
        started = time.monotonic()
        task = await svc.cancel(task_id, USER)
        took = time.monotonic() - started
        release.set()

        assert task.status.state is TaskState.FAILED
        assert task.metadata is not None and task.metadata["andon.reason"] == "cancel_timeout"
        assert task.status.message is not None
        assert "agent coroutine" in task.status.message.parts[0].text
        assert 0.5 <= took < 5
        states = [e.data["state"] for e in await svc.store.events(task_id) if e.kind == "status"]
        assert "canceled" not in states


@pytest.mark.parametrize("mode", [CancelMode.IMMEDIATE, CancelMode.GRACEFUL])
async def test_an_agent_awaiting_its_cleanup_is_cancelled_once(
    tmp_path: Path, store_url: str, mode: CancelMode
) -> None:
    """The attempt cancels the agent's task once: a second cancel would cut short the
    cleanup it awaits in its `except CancelledError`, and the task would be answered
    `canceled` with that cleanup left undone."""
    running = asyncio.Event()
    cleaned: list[str] = []
    agent = Agent("tidy")

    @agent.skill("tidy")
    async def tidy(ctx: TaskContext) -> None:
        running.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # its own cleanup: closing a session, say
            cleaned.append("cleaned up")
            raise

    async with serving(agent, tmp_path, store_url, graceful_period=0.1) as svc:
        task_id = await start(svc, "go")
        await agent_runs(running)
        task = await svc.cancel(task_id, USER, mode=mode)

        assert task.status.state is TaskState.CANCELED
        assert cleaned == ["cleaned up"]


# -- 3. Exactly one ending ------------------------------------------------------------


async def test_cancel_racing_completion_ends_exactly_once(
    service: TaskService, store_url: str
) -> None:
    # A round costs a dozen database round trips in distributed mode: fewer of them there.
    rounds = 300 if is_distributed(store_url) else 1000
    outcomes: dict[str, int] = {}
    for i in range(rounds):
        task_id = await start(service, f"echo {i}")
        for _ in range(i % 7):
            await asyncio.sleep(0)
        try:
            task = await service.cancel(task_id, USER)
            state = task.status.state
        except TaskNotCancelable:
            state = TaskState.COMPLETED
        await service.wait(task_id, 0, 5)
        finals = await final_events(service, task_id)
        events = await service.store.events(task_id)
        assert len(finals) == 1, f"task {i}: {len(finals)} final events"
        assert events[-1].final, f"task {i}: the final event is not last"
        stored = await service.get(task_id, USER)
        assert stored.status.state.value == finals[0].data["state"]
        assert stored.status.state in (TaskState.COMPLETED, TaskState.CANCELED)
        if state is TaskState.CANCELED:
            assert stored.status.state is TaskState.CANCELED
        outcomes[stored.status.state.value] = outcomes.get(stored.status.state.value, 0) + 1
    assert sum(outcomes.values()) == rounds


async def test_second_cancel_is_refused_and_changes_nothing(service: TaskService) -> None:
    task_id = await start(service, "sleep 30")
    await wait_state(service, task_id, TaskState.WORKING)
    first = await service.cancel(task_id, USER)
    events_before = await service.store.events(task_id)

    with pytest.raises(TaskNotCancelable):
        await service.cancel(task_id, USER, reason="operator")

    assert await service.store.events(task_id) == events_before
    again = await service.get(task_id, USER)
    assert again == first


# -- 4. No lost cancel ----------------------------------------------------------------


async def test_cancel_before_start_means_it_never_runs(
    tmp_path: Path, trace: Path, store_url: str
) -> None:
    from andon.agents.demo import agent

    settings = RuntimeSettings(workdir=tmp_path, **FAST_RUNTIME)
    async with open_service(agent, store_url, runtime=settings, max_concurrent=1) as svc:
        busy = await start(svc, "sleep 30")
        await wait_trace(trace, busy, 1)
        queued = await start(svc, "sleep 0.5")

        task = await svc.cancel(queued, USER)
        assert task.status.state is TaskState.CANCELED

        await svc.cancel(busy, USER)
        await asyncio.sleep(OBSERVE)  # the slot is free: a lost cancel would run now
        assert trace_lines(trace, queued) == []
        states = [e.data["state"] for e in await svc.store.events(queued) if e.kind == "status"]
        assert states == ["submitted", "canceled"]


async def test_cancel_right_after_submit_always_wins(service: TaskService, trace: Path) -> None:
    # The cancel lands at every point of the start: queued, being claimed, just started.
    # A task cancelled before its attempt began never runs; one whose first step ran
    # before the cancel was asked does no step after it.
    asked: dict[str, int] = {}
    for i in range(200):
        task_id = await start(service, "sleep 5")
        for _ in range(i % 5):
            await asyncio.sleep(0)
        asked[task_id] = time.monotonic_ns()
        task = await service.cancel(task_id, USER)
        assert task.status.state is TaskState.CANCELED, f"attempt {i}"
    await asyncio.sleep(OBSERVE)
    for task_id, at in asked.items():
        late = [step for step, ns in trace_lines(trace, task_id) if ns >= at]
        assert late == [], f"task {task_id} worked after its cancel was asked: steps {late}"
    never_started = [t for t in asked if not trace_lines(trace, t)]
    assert never_started, "no cancel landed before the first step: the test missed its case"


# -- 5. No stale cancel ---------------------------------------------------------------


async def test_stale_cancel_never_touches_a_newer_attempt(
    service: TaskService, trace: Path
) -> None:
    task_id = await start(service, "sleep 30")
    await wait_trace(trace, task_id, 1)
    record = await service.store.get_task(task_id)
    assert record is not None and record.epoch == 1

    for epoch in (record.epoch - 1, record.epoch + 1):
        stale = dataclasses.replace(record, state=TaskState.CANCELING, epoch=epoch)
        await service.dispatcher.cancel(stale)

    seen = len(trace_lines(trace, task_id))
    await wait_trace(trace, task_id, seen + 2)  # it keeps working
    assert (await service.get(task_id, USER)).status.state is TaskState.WORKING
    # and a write from an older attempt is refused by the store itself
    assert await service.store.append(task_id, record.epoch - 1, "artifact", {}) is None
    await service.cancel(task_id, USER)


async def test_retry_is_not_touched_by_the_old_tasks_cancel(
    service: TaskService, trace: Path
) -> None:
    old = await start(service, "sleep 30")
    await wait_trace(trace, old, 1)
    await service.cancel(old, USER)
    retry = await service.retry(old, USER)
    await wait_trace(trace, retry.id, 1)
    with pytest.raises(TaskNotCancelable):
        await service.cancel(old, USER)
    seen = len(trace_lines(trace, retry.id))
    await wait_trace(trace, retry.id, seen + 2)
    assert (await service.get(retry.id, USER)).status.state is TaskState.WORKING
    await service.cancel(retry.id, USER)


# -- 6. One final event ---------------------------------------------------------------


async def test_every_subscriber_gets_one_final_event_last(service: TaskService) -> None:
    task_id = await start(service, "stream 1000")

    async def collect() -> list[Event]:
        _, events = await service.subscribe(task_id, USER)
        return [e async for e in events]

    subscribers = [asyncio.create_task(collect()) for _ in range(5)]
    await wait_state(service, task_id, TaskState.WORKING)
    await service.cancel(task_id, USER)
    late = await collect()  # a subscriber that comes after the end replays it
    for seen in [*(await asyncio.gather(*subscribers)), late]:
        finals = [e for e in seen if e.final]
        assert len(finals) == 1 and seen[-1] is finals[0]
        assert finals[0].data["state"] == "canceled"
        seqs = [e.seq for e in seen]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_resume_from_a_sequence_number_replays_only_what_was_missed(
    service: TaskService,
) -> None:
    task_id = await start(service, "stream 5")
    await service.wait(task_id, 0, 10)
    _, everything = await service.subscribe(task_id, USER)
    all_events = [e async for e in everything]
    middle = all_events[len(all_events) // 2].seq
    _, rest = await service.subscribe(task_id, USER, after_seq=middle)
    assert [e.seq for e in [e async for e in rest]] == [e.seq for e in all_events if e.seq > middle]


# -- 7. A normal end is not a cancel ----------------------------------------------------


async def test_cancel_after_completion_changes_nothing(service: TaskService) -> None:
    task_id = await start(service, "echo done")
    await service.wait(task_id, 0, 10)
    before = await service.get(task_id, USER)
    with pytest.raises(TaskNotCancelable):
        await service.cancel(task_id, Principal("alice"), reason="client_disconnect")
    assert await service.get(task_id, USER) == before
    assert before.status.state is TaskState.COMPLETED


# -- graceful mode, atomic files, partial results, hooks ----------------------------------


async def test_graceful_cancel_finishes_the_step_and_starts_no_other(
    tmp_path: Path, store_url: str
) -> None:
    steps_started: list[int] = []
    steps_finished: list[int] = []
    in_step = asyncio.Event()
    agent = Agent("steps")

    @agent.skill("steps")
    async def steps(ctx: TaskContext) -> None:
        for step in range(100):
            ctx.check()
            steps_started.append(step)
            in_step.set()
            await asyncio.sleep(0.2)
            steps_finished.append(step)
            await ctx.progress(f"step {step} done")

    async with serving(agent, tmp_path, store_url) as svc:
        task_id = await start(svc, "go")
        await asyncio.wait_for(in_step.wait(), 5)
        task = await svc.cancel(task_id, USER, mode=CancelMode.GRACEFUL)
        assert task.status.state is TaskState.CANCELED
        assert steps_started == [0] and steps_finished == [0]


async def test_graceful_cancel_escalates_after_the_grace_period(
    tmp_path: Path, store_url: str
) -> None:
    agent = Agent("slow-step")
    finished = []
    running = asyncio.Event()

    @agent.skill("slow")
    async def slow(ctx: TaskContext) -> None:
        running.set()
        await asyncio.sleep(30)  # one long step, never checks
        finished.append(True)

    async with serving(agent, tmp_path, store_url, graceful_period=0.3) as svc:
        task_id = await start(svc, "go")
        await agent_runs(running)
        started = time.monotonic()
        task = await svc.cancel(task_id, USER, mode=CancelMode.GRACEFUL)
        assert task.status.state is TaskState.CANCELED
        assert 0.3 <= time.monotonic() - started < 3
        assert finished == []


async def test_cancelled_write_file_leaves_no_file(tmp_path: Path, store_url: str) -> None:
    agent = Agent("writer")
    writing = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            writing.set()
            yield b"x" * 1024
            await asyncio.sleep(0.01)

    @agent.skill("write")
    async def write(ctx: TaskContext) -> None:
        await ctx.write_file("out/report.txt", chunks())

    async with serving(agent, tmp_path, store_url) as svc:
        task_id = await start(svc, "go")
        await asyncio.wait_for(writing.wait(), 5)
        task = await svc.cancel(task_id, USER)
        assert task.status.state is TaskState.CANCELED
    out = tmp_path / "out"
    assert list(out.iterdir()) == [], "a cancelled write left a file behind"


async def test_completed_write_file_is_whole(tmp_path: Path, store_url: str) -> None:
    agent = Agent("writer")

    @agent.skill("write")
    async def write(ctx: TaskContext) -> None:
        await ctx.write_file("report.txt", ["a", "b", "c"])

    async with serving(agent, tmp_path, store_url) as svc:
        task_id = await start(svc, "go")
        await svc.wait(task_id, 0, 5)
        assert (await svc.get(task_id, USER)).status.state is TaskState.COMPLETED
    assert (tmp_path / "report.txt").read_text() == "abc"
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


async def test_partial_artifacts_are_kept_on_the_cancelled_task(
    service: TaskService, trace: Path
) -> None:
    task_id = await start(service, "stream 1000")
    await wait_trace(trace, task_id, 3)
    task = await service.cancel(task_id, USER)
    assert task.status.state is TaskState.CANCELED
    assert task.artifacts is not None
    chunks = [p.text for p in task.artifacts[0].parts]
    assert len(chunks) >= 3
    assert chunks[:3] == ["chunk 0\n", "chunk 1\n", "chunk 2\n"]


async def test_on_cancel_hooks_run_and_a_hanging_hook_is_cut_off(
    tmp_path: Path, store_url: str
) -> None:
    agent = Agent("hooks")
    ran: list[str] = []
    running = asyncio.Event()

    @agent.skill("hooks")
    async def hooks(ctx: TaskContext) -> None:
        ctx.on_cancel(lambda: ran.append("sync"))

        @ctx.on_cancel
        async def slow_cleanup() -> None:
            ran.append("async")
            await asyncio.sleep(30)

        running.set()
        await asyncio.sleep(30)

    async with serving(agent, tmp_path, store_url, cleanup_budget=0.2) as svc:
        task_id = await start(svc, "go")
        await agent_runs(running)
        started = time.monotonic()
        task = await svc.cancel(task_id, USER)
        assert task.status.state is TaskState.CANCELED
        assert ran == ["sync", "async"]
        assert time.monotonic() - started < 2


async def test_cancel_while_waiting_for_input(service: TaskService) -> None:
    task_id = await start(service, "ask your name?")
    await wait_state(service, task_id, TaskState.INPUT_REQUIRED)
    task = await service.cancel(task_id, USER)
    assert task.status.state is TaskState.CANCELED


async def test_a_retry_reads_the_partial_artifacts_of_the_task_it_retries(
    tmp_path: Path,
    store_url: str,
) -> None:
    agent = Agent("resumable")
    seen: list[list[str]] = []
    emitted = asyncio.Event()

    @agent.skill("work")
    async def work(ctx: TaskContext) -> None:
        seen.append([p.text or "" for a in await ctx.retried_artifacts() for p in a.parts])
        await ctx.emit("part one\n", artifact="report")
        emitted.set()
        if ctx.retry_of is None:
            await asyncio.sleep(30)  # the first attempt is cancelled here

    async with serving(agent, tmp_path, store_url) as svc:
        first = await start(svc, "go")
        await asyncio.wait_for(emitted.wait(), 5)
        await svc.cancel(first, USER)
        retry = await svc.retry(first, USER)
        await svc.wait(retry.id, 0, 5)
        assert (await svc.get(retry.id, USER)).status.state is TaskState.COMPLETED
    assert seen == [[], ["part one\n"]]
