"""The attempt owns all of its work: processes that escaped their group, threads started
by frameworks, blocking HTTP requests of synchronous handlers — and says how it stopped.

Each test fails when its mechanism is removed: containment (cgroup and subreaper, each
run), the attempt executor, the abortable blocking client, the module-level check, the
deadline path, the record of what was SIGKILLed, the signals that answer a cancel two
loop turns after its request.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import andon
from andon import Agent, RuntimeSettings, SyncTaskContext, TaskContext, TaskService, open_service
from andon.protocol.types import TaskState
from andon.runtime import containment as cells
from andon.runtime.containment import detect, set_subreaper
from andon.runtime.keeper import running
from andon.runtime.scope import Signal, first
from tests.conftest import FAST_RUNTIME, STORES, each_store
from tests.helpers import USER, eventually, user_text, wait_state

KINDS = ["subreaper", "cgroup"]

DAEMON = """
import os, sys, time
if os.fork():
    sys.exit(0)
os.setsid()
if os.fork():
    sys.exit(0)
for fd in range(3):
    os.close(fd)
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(300)
"""


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    return each_store(request)


@pytest.fixture(params=KINDS)
def containment(request: pytest.FixtureRequest) -> Iterator[str]:
    kind: str = request.param
    if kind == "cgroup" and detect("auto").kind != "cgroup":
        pytest.skip("no writable cgroup v2 on this machine")  # CI's machine has one
    yield kind
    if kind == "subreaper":
        # The subreaper kind made this test process the parent of every orphan; later
        # tests count this process's children, so orphans go back to init.
        set_subreaper(False)


@asynccontextmanager
async def serving(
    agent: Agent, tmp_path: Path, store_url: str, containment: str = "auto", **runtime: float
) -> AsyncIterator[TaskService]:
    settings = RuntimeSettings(
        workdir=tmp_path, containment=containment, **{**FAST_RUNTIME, **runtime}
    )
    async with open_service(agent, store_url, runtime=settings) as svc:
        yield svc


async def start(service: TaskService, text: str, **metadata: object) -> str:
    return (await service.submit(user_text(text, metadata=metadata or None), USER)).id


async def pid_in(path: Path) -> int:
    await eventually(lambda: path.exists() and path.read_text().strip() != "", message="pid file")
    return int(path.read_text())


# -- escaped processes ------------------------------------------------------------------


async def test_setsid_and_double_fork_die_with_the_cancel(
    tmp_path: Path, store_url: str, containment: str
) -> None:
    from andon.agents.demo import agent

    (tmp_path / "daemon.py").write_text(DAEMON)
    command = (
        f"setsid sh -c 'echo $$ > {tmp_path}/setsid.pid; exec sleep 300' & "
        f"{sys.executable} {tmp_path}/daemon.py {tmp_path}/daemon.pid; sleep 300"
    )
    async with serving(agent, tmp_path, store_url, containment) as service:
        task_id = await start(service, f"shell {command}")
        escaped = [await pid_in(tmp_path / "setsid.pid"), await pid_in(tmp_path / "daemon.pid")]
        assert all(map(running, escaped))
        assert all(os.getsid(pid) != os.getsid(0) for pid in escaped)  # really escaped

        task = await service.cancel(task_id, USER)

        assert task.status.state is TaskState.CANCELED
        assert [pid for pid in escaped if running(pid)] == []


async def test_what_a_completed_task_left_running_is_stopped(
    tmp_path: Path, containment: str
) -> None:
    from andon.agents.demo import agent

    # its output elsewhere, or the command's own output would never end
    # and the command ends only once the escaped process runs
    command = (
        f"setsid sh -c 'echo $$ > {tmp_path}/left.pid; exec sleep 300' >/dev/null 2>&1 & "
        f"while [ ! -s {tmp_path}/left.pid ]; do sleep 0.01; done; echo started"
    )
    async with serving(agent, tmp_path, str(tmp_path / "a.sqlite"), containment) as service:
        task_id = await start(service, f"shell {command}")
        await wait_state(service, task_id, TaskState.COMPLETED)
        left = await pid_in(tmp_path / "left.pid")
        await eventually(lambda: not running(left), message="left-behind process stopped")


async def test_a_background_member_keeps_its_group_tracked(tmp_path: Path) -> None:
    """`cmd >/dev/null 2>&1 &`: the shell leading the group exits at once and the task
    completes, while a member of its group lives on; the group must stay tracked until
    that member is gone (it used to be dropped with its leader)."""
    from andon.agents.demo import agent

    pid_file = tmp_path / "member.pid"
    command = (
        f"sh -c 'echo $$ > {pid_file}; exec sleep 300' >/dev/null 2>&1 & "
        f"while [ ! -s {pid_file} ]; do sleep 0.01; done; echo started"
    )
    async with serving(agent, tmp_path, str(tmp_path / "a.sqlite")) as service:
        task_id = await start(service, f"shell {command}")
        member = await pid_in(pid_file)
        await wait_state(service, task_id, TaskState.COMPLETED)
        await eventually(lambda: not running(member), message="the group's member stopped")


# -- threads ----------------------------------------------------------------------------


async def test_a_thread_that_ignores_checks_is_named_in_cancel_timeout(tmp_path: Path) -> None:
    release = threading.Event()

    def stubborn() -> None:
        while not release.is_set():
            time.sleep(0.005)  # the line a cancel_timeout must name

    blocked_at = f"{__file__}:{stubborn.__code__.co_firstlineno + 2}"
    agent = Agent(name="framework")

    @agent.skill("work")
    async def work(ctx: TaskContext) -> None:
        await asyncio.to_thread(stubborn)  # as a framework runs a sync node

    try:
        async with serving(agent, tmp_path, str(tmp_path / "a.sqlite")) as service:
            task_id = await start(service, "go")
            await wait_state(service, task_id, TaskState.WORKING)
            await eventually(lambda: any("stubborn" in t.name for t in threading.enumerate()))
            task = await service.cancel(task_id, USER)
            assert task.status.state is TaskState.FAILED
            assert task.metadata is not None and task.metadata["andon.reason"] == "cancel_timeout"
            (survivor,) = task.metadata["andon.survivors"]
            assert "stubborn" in survivor and blocked_at in survivor
    finally:
        release.set()


async def test_module_check_stops_a_library_thread(tmp_path: Path) -> None:
    steps: list[float] = []

    def library_loop() -> None:  # library code: no ctx in hand
        while True:
            andon.check()
            steps.append(time.monotonic())
            time.sleep(0.005)

    agent = Agent(name="library")

    @agent.skill("work")
    async def work(ctx: TaskContext) -> None:
        await asyncio.get_running_loop().run_in_executor(None, library_loop)

    async with serving(agent, tmp_path, str(tmp_path / "a.sqlite")) as service:
        task_id = await start(service, "go")
        await eventually(lambda: len(steps) > 3, message="the library thread runs")
        task = await service.cancel(task_id, USER)
        answered = time.monotonic()
        assert task.status.state is TaskState.CANCELED
        await asyncio.sleep(0.05)  # an observation window: absence has no event
        assert [step for step in steps if step > answered] == []


def test_module_check_outside_an_attempt_does_nothing() -> None:
    andon.check()


async def test_check_lets_go_of_the_gil_in_threads_and_never_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check in a thread sleeps a moment (once a millisecond) so the loop gets the GIL;
    on the loop's own thread that moment would stall every task and stream there (about
    80 µs a sleep: 1,000 sleeping tasks stepping ten times a second lost most of the
    loop to it)."""
    sleepers: list[tuple[int, str]] = []
    real_sleep = time.sleep

    def recording_sleep(seconds: float) -> None:
        sleepers.append((threading.get_ident(), threading.current_thread().name))
        real_sleep(seconds)

    loop_thread = threading.get_ident()
    agent = Agent(name="checks")

    def spin(ctx: SyncTaskContext) -> None:
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            ctx.check()

    @agent.skill("async")
    async def on_the_loop(ctx: TaskContext) -> None:
        for _ in range(20):
            end = time.monotonic() + 0.002
            while time.monotonic() < end:
                ctx.check()
            await asyncio.sleep(0)
        await asyncio.to_thread(spin, SyncTaskContext(ctx))

    monkeypatch.setattr(time, "sleep", recording_sleep)
    async with serving(agent, tmp_path, str(tmp_path / "a.sqlite")) as service:
        task_id = await start(service, "go")
        await wait_state(service, task_id, TaskState.COMPLETED)
    assert loop_thread not in [ident for ident, _ in sleepers]
    assert any("spin" in name for _, name in sleepers), sleepers  # the attempt's thread


# -- synchronous handlers -----------------------------------------------------------------


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An HTTP server that reads a request and never answers; the event is set when the
    client closes the connection."""
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        closed.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/slow", closed


async def test_sync_handler_blocked_in_ctx_http_is_cancelled(tmp_path: Path) -> None:
    agent = Agent(name="sync")
    entered = threading.Event()

    @agent.skill("fetch")
    def fetch(ctx: SyncTaskContext) -> str:
        client = ctx.http
        entered.set()
        return client.get(ctx.text).text

    async with (
        silent_server() as (url, closed),
        serving(agent, tmp_path, str(tmp_path / "a.sqlite")) as service,
    ):
        task_id = await start(service, url)
        await eventually(entered.is_set, message="the handler sent its request")
        await asyncio.sleep(0.05)  # let the request reach the server
        task = await service.cancel(task_id, USER)
        assert task.status.state is TaskState.CANCELED  # not failed / cancel_timeout
        await asyncio.wait_for(closed.wait(), 5)  # the server saw the connection close


async def test_sync_context_offers_blocking_tools_only(tmp_path: Path) -> None:
    agent = Agent(name="sync")
    seen: dict[str, object] = {}

    @agent.skill("tools")
    def tools(ctx: SyncTaskContext) -> str:
        ctx.emit("partial ")
        ctx.progress("half way")
        seen["run"] = ctx.run(["echo", "hi"], stream=False).output
        seen["file"] = ctx.write_file("out.txt", "whole").read_text()
        ctx.check()
        seen["stopping"] = ctx.stopping
        try:
            ctx.to_thread  # noqa: B018
        except AttributeError as exc:
            seen["error"] = str(exc)
        return "done"

    async with serving(agent, tmp_path, str(tmp_path / "a.sqlite")) as service:
        task_id = await start(service, "go")
        await wait_state(service, task_id, TaskState.COMPLETED)
    assert seen["run"] == "hi\n" and seen["file"] == "whole" and seen["stopping"] is False
    assert "async def" in str(seen["error"])


# -- deadlines ----------------------------------------------------------------------------


async def test_a_deadline_in_the_first_millisecond_still_cancels(
    tmp_path: Path, store_url: str
) -> None:
    from andon.agents.demo import agent

    async with serving(agent, tmp_path, store_url) as service:
        task_id = await start(service, "sleep 30", **{"andon.timeout": 0.001})
        await wait_state(service, task_id, TaskState.CANCELED)
        task = await service.get(task_id, USER)
        assert task.metadata is not None and task.metadata["andon.reason"] == "timeout"


# -- the stop is told ---------------------------------------------------------------------


async def test_sigkill_after_the_grace_is_recorded_and_told(tmp_path: Path, store_url: str) -> None:
    from andon.agents.demo import agent

    async with serving(agent, tmp_path, store_url, kill_grace=0.3) as service:
        task_id = await start(service, "shell trap '' TERM; echo armed; sleep 300")
        # the trap is set once the output says so
        await eventually(lambda: _output(service, task_id), message="trap armed")
        task = await service.cancel(task_id, USER)

    assert task.status.state is TaskState.CANCELED
    metadata = task.metadata or {}
    (killed,) = metadata["andon.killed"]
    assert "trap '' TERM" in killed
    assert metadata["andon.killGrace"] == 0.3
    assert task.status.message is not None
    assert "1 process killed after the 0.3 s grace" in task.status.message.text


async def _output(service: TaskService, task_id: str) -> bool:
    task = await service.get(task_id, USER)
    return any("armed" in part.text for a in task.artifacts or [] for part in a.parts if part.text)


def test_stale_cgroups_another_starting_process_removes_first_are_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers started together after one was killed each clear its cgroups at start;
    one that finds them gone after it saw them must start all the same (it crashed)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / f"andon-{gone.pid}"
    (stale / "task.1").mkdir(parents=True)
    seen = Path.exists

    def removed_by_the_other_process_right_after(path: Path) -> bool:
        answer = seen(path)
        if path == Path(f"/proc/{gone.pid}"):
            shutil.rmtree(stale)
        return answer

    monkeypatch.setattr(Path, "exists", removed_by_the_other_process_right_after)
    cells._remove_stale(tmp_path)
    assert not stale.exists()


# -- the attempt's signals ----------------------------------------------------------------


async def test_first_wakes_on_any_of_its_signals_and_on_its_timeout() -> None:
    asked, ended = Signal(), Signal()
    waiting = asyncio.create_task(first(asked, ended))
    await asyncio.sleep(0)
    assert not waiting.done()
    ended.set()
    await asyncio.wait_for(waiting, 1)

    await asyncio.wait_for(first(asked, ended), 1)  # set already: at once
    started = time.monotonic()
    await first(Signal(), timeout=0.05)
    assert time.monotonic() - started >= 0.05


async def test_first_wakes_its_waiter_in_the_next_turn() -> None:
    """What a cancel's answer counts on: the waiter's own future is set by `set`, not by
    a done callback a turn later."""
    signal = Signal()
    woken: list[int] = []

    async def wait() -> None:
        await first(signal)
        woken.append(turn)

    waiting = asyncio.create_task(wait())
    await asyncio.sleep(0)
    turn = 0
    signal.set()
    for turn in range(1, 4):  # noqa: B007 - read by wait() as it wakes
        await asyncio.sleep(0)
    await waiting
    assert woken == [1]


async def test_a_cancelled_wait_leaves_its_signal_usable() -> None:
    signal = Signal()
    gone = asyncio.create_task(first(signal, timeout=30))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    waiting = asyncio.create_task(first(signal))
    await asyncio.sleep(0)
    signal.set()
    await asyncio.wait_for(waiting, 1)


async def test_a_running_task_is_cancelled_within_two_loop_turns(tmp_path: Path) -> None:
    """Embedded mode: the request cancels the agent's task, which unwinds in the next
    turn, where its supervisor stores `canceled`; the answer follows in the turn after.
    Under a crowd each turn is a pass over every busy task, so turns are latency."""
    from andon.agents.demo import agent

    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    async with serving(agent, tmp_path, str(tmp_path / "a.sqlite")) as service:
        task_id = await start(service, "sleep 30")

        async def stepped() -> bool:  # its first progress stored: it is in its next sleep
            return any(e.kind == "progress" for e in await service.store.events(task_id))

        await eventually(stepped, message="the agent's first step")
        counter = asyncio.create_task(count_turns())
        await asyncio.sleep(0)
        before = turns
        task = await service.cancel(task_id, USER)
        taken = turns - before
        counter.cancel()

    assert task.status.state is TaskState.CANCELED
    assert taken <= 2
