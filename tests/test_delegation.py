"""Agents that call agents, with real processes: a parent `andon serve` running the
orchestrator example (examples/orchestrator.py), which delegates to child servers
running the demo agent with ANDON_DEMO_TRACE, or to the official a2a-sdk's server
(bench/peers/a2a_sdk_server.py). Whatever stops the parent stops its children, and the
parent says `canceled` only once they have.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import andon
from andon.client import Client, TaskNotCancelable
from andon.protocol.types import Task, TaskState
from tests.cluster import Cluster
from tests.helpers import USER, user_text, wait_state
from tests.helpers import eventually as eventually_async
from tests.test_client import AndonServer, eventually, free_port, steady

ROOT = Path(__file__).resolve().parent.parent
ORCHESTRATOR = str(ROOT / "examples" / "orchestrator.py") + ":agent"
SDK_SERVER = ROOT / "bench" / "peers" / "a2a_sdk_server.py"


def orchestrator(workdir: Path, *child_urls: str, args: tuple[str, ...] = ()) -> AndonServer:
    return AndonServer(workdir, ORCHESTRATOR, *args, env={"ANDON_CHILD_URLS": ",".join(child_urls)})


@pytest.fixture(scope="module")
def children(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AndonServer]]:
    with (
        AndonServer(tmp_path_factory.mktemp("child1")) as one,
        AndonServer(tmp_path_factory.mktemp("child2")) as two,
    ):
        yield [one, two]


@pytest.fixture(scope="module")
def parent(
    tmp_path_factory: pytest.TempPathFactory, children: list[AndonServer]
) -> Iterator[AndonServer]:
    with orchestrator(tmp_path_factory.mktemp("parent"), *(c.url for c in children)) as served:
        yield served


def recorded(server: AndonServer, task_id: str, count: int = 2) -> list[dict[str, Any]]:
    """The task's children once `count` are recorded (andon.children)."""
    return recorded_by(server.client, task_id, count)


def child_of(servers: list[AndonServer], entry: dict[str, Any]) -> AndonServer:
    return next(s for s in servers if s.url == entry["url"].rstrip("/"))


def lines_after(server: AndonServer, task_id: str, moment_ns: int) -> int:
    return sum(1 for line in server.trace(task_id) if int(line.split()[2]) > moment_ns)


def ended(server: AndonServer, task_id: str, timeout: float = 20) -> Task:
    def done() -> Task | None:
        task = server.client.get(task_id)
        return task if task.status.state.terminal else None

    return eventually(done, timeout, f"task {task_id} ended")  # type: ignore[no-any-return]


def reason(task: Task) -> str | None:
    return (task.metadata or {}).get("andon.reason")


# -- the cascade -----------------------------------------------------------------------


def test_cancelling_the_parent_stops_both_children_before_it_answers(
    parent: AndonServer, children: list[AndonServer]
) -> None:
    task = parent.client.send("sleep 30", blocking=False)
    kids = recorded(parent, task.id)
    for entry in kids:
        eventually(lambda e=entry: child_of(children, e).trace(e["id"]), 20, "child working")
    canceled = parent.client.cancel(task.id)
    answered_ns = time.monotonic_ns()
    assert canceled.status.state is TaskState.CANCELED
    assert reason(canceled) == "user"
    for entry in kids:
        child = child_of(children, entry)
        remote = child.client.get(entry["id"])
        assert remote.status.state is TaskState.CANCELED
        assert reason(remote) == "parent_canceled"
        assert (remote.metadata or {})["andon.parentTask"] == task.id
    # Not one step of either child after the parent's cancel answered.
    steady(lambda: [lines_after(child_of(children, e), e["id"], answered_ns) for e in kids], 0.6)
    assert [lines_after(child_of(children, e), e["id"], answered_ns) for e in kids] == [0, 0]


def test_a_cancel_right_after_the_call_still_cancels_every_child(
    parent: AndonServer, children: list[AndonServer]
) -> None:
    """Cancelled as soon as it runs, before any event of a child came back: whatever
    child got created is cancelled, none is left running."""
    for _ in range(4):
        task = parent.client.send("sleep 30", blocking=False)
        eventually(
            lambda t=task: parent.client.get(t.id).status.state is not TaskState.SUBMITTED, 10
        )
        try:
            stopped = parent.client.cancel(task.id)
        except TaskNotCancelable:
            pytest.fail("the parent ended before its cancel")
        assert stopped.status.state is TaskState.CANCELED, stopped.status
        for entry in (stopped.metadata or {}).get("andon.children") or []:
            remote = child_of(children, entry).client.get(entry["id"])
            assert remote.status.state is TaskState.CANCELED
            assert reason(remote) == "parent_canceled"
    # And nothing else was started on the children for those parents.
    for child in children:
        running = child.client.list(state="working").tasks
        assert running == []


def test_a_remote_question_is_asked_of_the_parents_user_and_answered_back(
    parent: AndonServer, children: list[AndonServer]
) -> None:
    task = parent.client.send("ask your name? | echo hello", metadata={"andon.timeout": 60})
    assert task.status.state is TaskState.INPUT_REQUIRED
    assert task.status.message is not None and task.status.message.text == "your name?"
    done = parent.client.answer(task.id, "Ada")
    assert done.status.state is TaskState.COMPLETED
    artifacts = done.artifacts or []
    assert sorted("".join(p.text or "" for p in a.parts) for a in artifacts) == ["Ada", "hello"]
    assert {a.name for a in artifacts} == {"andon demo: response"}  # after the remote agent
    for entry in (done.metadata or {})["andon.children"]:
        remote = child_of(children, entry).client.get(entry["id"])
        assert (remote.metadata or {})["andon.parentTask"] == task.id
        assert 0 < (remote.metadata or {})["andon.timeout"] <= 60  # the parent's time left


def test_a_remote_failure_fails_the_parent_with_the_remote_message(
    parent: AndonServer,
) -> None:
    task = parent.client.send("fail out of coffee | echo fine")
    assert task.status.state is TaskState.FAILED
    assert task.status.message is not None
    assert "ended failed" in task.status.message.text
    assert task.status.message.text.endswith("out of coffee")


def test_killing_the_parents_server_cancels_the_children(
    tmp_path: Path, children: list[AndonServer]
) -> None:
    with orchestrator(tmp_path, *(c.url for c in children)) as doomed:
        task = doomed.client.send("sleep 30", blocking=False)
        kids = recorded(doomed, task.id)
        for entry in kids:
            eventually(lambda e=entry: child_of(children, e).trace(e["id"]), 20, "child working")
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(10)
        for entry in kids:
            remote = ended(child_of(children, entry), entry["id"], timeout=10)
            assert remote.status.state is TaskState.CANCELED
            assert reason(remote) == "client_disconnect"  # the stream's cancel policy


def test_a_child_that_cannot_be_reached_makes_the_parent_fail_naming_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with (
        AndonServer(tmp_path_factory.mktemp("frozen")) as frozen,
        AndonServer(tmp_path_factory.mktemp("healthy")) as healthy,
        orchestrator(tmp_path_factory.mktemp("p"), frozen.url, healthy.url) as parent,
    ):
        task = parent.client.send("sleep 60", blocking=False)
        kids = recorded(parent, task.id)
        lost = next(e for e in kids if e["url"].rstrip("/") == frozen.url)
        eventually(lambda: frozen.trace(lost["id"]), 20, "child working")
        frozen.proc.send_signal(signal.SIGSTOP)  # it answers nothing, the cancel neither
        try:
            parent.client.cancel(task.id, wait=1)
            failed = ended(parent, task.id, timeout=30)
        finally:
            frozen.proc.send_signal(signal.SIGCONT)
        assert failed.status.state is TaskState.FAILED
        assert reason(failed) == "cancel_timeout"
        survivors = (failed.metadata or {})["andon.survivors"]
        assert survivors == [f"remote task {lost['id']} at {frozen.url}"]
        other = next(e for e in kids if e is not lost)
        assert reason(healthy.client.get(other["id"])) == "parent_canceled"


def test_three_levels_deep_a_cancel_of_the_top_stops_the_whole_tree(tmp_path: Path) -> None:
    with (
        AndonServer(_dir(tmp_path, "leaf")) as leaf,
        orchestrator(_dir(tmp_path, "middle"), leaf.url) as middle,
        orchestrator(_dir(tmp_path, "top"), middle.url) as top,
    ):
        task = top.client.send("sleep 30", blocking=False)
        mids = recorded(top, task.id)
        leaves = [e for m in mids for e in recorded(middle, m["id"])]
        assert len(leaves) == 4
        for entry in leaves:
            eventually(lambda e=entry: leaf.trace(e["id"]), 20, "leaf working")
        canceled = top.client.cancel(task.id)
        answered_ns = time.monotonic_ns()
        assert canceled.status.state is TaskState.CANCELED
        for server, entries in ((middle, mids), (leaf, leaves)):
            for entry in entries:
                remote = server.client.get(entry["id"])
                assert remote.status.state is TaskState.CANCELED
                assert reason(remote) == "parent_canceled"
        assert sum(lines_after(leaf, e["id"], answered_ns) for e in leaves) == 0


def _dir(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir()
    return path


# -- a child on the official a2a-sdk ---------------------------------------------------


class SdkServer:
    """The demo agent on the official A2A SDK (bench/peers/a2a_sdk_server.py)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.trace_path = workdir / "trace.log"
        self.log = (workdir / "sdk.log").open("wb")
        environment = {**os.environ, "ANDON_DEMO_TRACE": str(self.trace_path)}
        self.proc = subprocess.Popen(
            [sys.executable, str(SDK_SERVER), "--port", str(self.port)],
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            assert self.proc.poll() is None, "the a2a-sdk server exited"
            try:
                return httpx.get(f"{self.url}/.well-known/agent-card.json", timeout=1).is_success
            except httpx.TransportError:
                return False

        eventually(up, 30, "a2a-sdk server answering")
        self.client = Client(self.url)

    def trace(self, task_id: str) -> list[str]:
        if not self.trace_path.exists():
            return []
        return [
            line for line in self.trace_path.read_text().splitlines() if line.startswith(task_id)
        ]

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def sdk_child(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkServer]:
    served = SdkServer(tmp_path_factory.mktemp("sdk"))
    try:
        yield served
    finally:
        served.close()


def test_a_child_served_by_the_official_sdk_receives_cancel_task(
    tmp_path: Path, sdk_child: SdkServer
) -> None:
    with orchestrator(tmp_path, sdk_child.url) as parent:
        task = parent.client.send("sleep 30", blocking=False)
        kids = recorded(parent, task.id)
        for entry in kids:
            eventually(lambda e=entry: sdk_child.trace(e["id"]), 20, "sdk child working")
        canceled = parent.client.cancel(task.id)
        answered_ns = time.monotonic_ns()
        assert canceled.status.state is TaskState.CANCELED
        for entry in kids:
            assert sdk_child.client.get(entry["id"]).status.state is TaskState.CANCELED
            later = [ln for ln in sdk_child.trace(entry["id"]) if int(ln.split()[2]) > answered_ns]
            assert later == []


def test_the_restarted_parent_cancels_the_children_of_a_task_it_lost(
    tmp_path: Path, sdk_child: SdkServer
) -> None:
    """The SDK's server does not cancel on a dropped stream: the process that fails the
    lost parent (`worker_lost`, here the parent's server starting again) sends the
    CancelTask to the children recorded on it."""
    with orchestrator(tmp_path, sdk_child.url) as doomed:
        task = doomed.client.send("sleep 60", blocking=False)
        kids = recorded(doomed, task.id)
        for entry in kids:
            eventually(lambda e=entry: sdk_child.trace(e["id"]), 20, "sdk child working")
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(10)
        for entry in kids:  # still working: nothing told it
            assert sdk_child.client.get(entry["id"]).status.state is TaskState.WORKING
    with orchestrator(tmp_path, sdk_child.url) as again:
        lost = again.client.get(task.id)
        assert lost.status.state is TaskState.FAILED and reason(lost) == "worker_lost"
        for entry in kids:
            eventually(
                lambda e=entry: sdk_child.client.get(e["id"]).status.state is TaskState.CANCELED,
                20,
                "the lost parent's child canceled",
            )


# -- distributed: the parent runs on an `andon worker` ---------------------------------


def test_on_a_worker_a_cancel_sent_to_the_api_stops_the_children(
    postgres_url: str, tmp_path: Path, children: list[AndonServer]
) -> None:
    with Cluster(postgres_url, tmp_path) as cluster:
        cluster.env["ANDON_CHILD_URLS"] = ",".join(c.url for c in children)
        cluster.start(apis=1, api_args=("--no-worker", ORCHESTRATOR))
        cluster.worker(ORCHESTRATOR)
        with Client(cluster.api_urls[-1]) as api:
            task = api.send("sleep 30", blocking=False)
            kids = recorded_by(api, task.id)
            for entry in kids:
                eventually(lambda e=entry: child_of(children, e).trace(e["id"]), 20, "working")
            canceled = api.cancel(task.id)
            answered_ns = time.monotonic_ns()
        assert canceled.status.state is TaskState.CANCELED
        for entry in kids:
            child = child_of(children, entry)
            assert reason(child.client.get(entry["id"])) == "parent_canceled"
            assert lines_after(child, entry["id"], answered_ns) == 0


def test_when_a_worker_dies_the_reaper_cancels_its_tasks_children(
    postgres_url: str, tmp_path: Path, sdk_child: SdkServer
) -> None:
    """The a2a-sdk child ignores the dropped stream: the reaper that fails the parent
    `worker_lost` sends it CancelTask."""
    lease = 2.0
    with Cluster(postgres_url, tmp_path, lease=lease) as cluster:
        cluster.env["ANDON_CHILD_URLS"] = sdk_child.url
        cluster.start(apis=1, api_args=("--no-worker", ORCHESTRATOR))
        worker = cluster.worker(ORCHESTRATOR)
        with Client(cluster.api_urls[-1]) as api:
            task = api.send("sleep 60", blocking=False)
            kids = recorded_by(api, task.id)
            for entry in kids:
                eventually(lambda e=entry: sdk_child.trace(e["id"]), 20, "sdk child working")
            os.kill(worker, signal.SIGKILL)
            lost = eventually(
                lambda: (t := api.get(task.id)).status.state.terminal and t, lease + 20
            )
        assert lost.status.state is TaskState.FAILED and reason(lost) == "worker_lost"
        for entry in kids:
            eventually(
                lambda e=entry: sdk_child.client.get(e["id"]).status.state is TaskState.CANCELED,
                20,
                "the lost parent's child canceled",
            )


def recorded_by(client: Client, task_id: str, count: int = 2) -> list[dict[str, Any]]:
    """The task's children once `count` are recorded (andon.children)."""

    def found() -> list[dict[str, Any]]:
        kids = (client.get(task_id).metadata or {}).get("andon.children") or []
        return kids if len(kids) >= count else []

    return eventually(found, 20, f"{count} children recorded on {task_id}")  # type: ignore[no-any-return]


# -- the blocking form, from a synchronous agent ---------------------------------------

caller = andon.Agent(name="sync caller")


@caller.skill("call")
def call_child(ctx: andon.SyncTaskContext) -> str:
    task = ctx.call_agent(ctx.metadata["child"], ctx.text, mirror=False)
    return "".join(p.text or "" for a in task.artifacts or [] for p in a.parts)


async def test_a_synchronous_agent_calls_an_agent_and_gets_its_result(
    tmp_path: Path, children: list[AndonServer]
) -> None:
    async with andon.open_service(caller, str(tmp_path / "sync.db")) as service:
        record = await service.submit(
            user_text("echo from a thread"), USER, metadata={"child": children[0].url}
        )
        await wait_state(service, record.id, TaskState.COMPLETED, timeout=20)
        task = await service.get(record.id, USER)
    assert task.status.message is not None and task.status.message.text == "from a thread"
    assert task.artifacts is None  # mirror=False
    [entry] = (task.metadata or {})["andon.children"]
    assert children[0].client.get(entry["id"]).status.state is TaskState.COMPLETED


def test_tasks_get_names_a_tasks_children_and_its_parent(
    parent: AndonServer, children: list[AndonServer]
) -> None:
    task = parent.client.send("echo left | echo right")
    assert task.status.state is TaskState.COMPLETED
    kids = (task.metadata or {})["andon.children"]

    def tasks_get(url: str, task_id: str) -> str:
        command = [sys.executable, "-m", "andon", "tasks", "get", task_id, "--url", url]
        shown = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
        return " ".join(shown.stdout.split())  # as one line, whatever the terminal width

    shown = tasks_get(parent.url, task.id)
    for entry in kids:
        assert f"child {entry['id']} at {entry['url']} (andon demo)" in shown
    first = kids[0]
    assert f"parent {task.id}" in tasks_get(first["url"], first["id"])


# -- every dialect, and a graceful cancel ----------------------------------------------

relay = andon.Agent(name="relay")


@relay.skill("relay")
async def relay_to_child(ctx: andon.TaskContext) -> str:
    options = ctx.metadata["dialect"]
    task = await ctx.call_agent(ctx.metadata["child"], ctx.text, **options)
    return "".join(p.text or "" for a in task.artifacts or [] for p in a.parts)


@pytest.mark.parametrize(
    "dialect",
    [{"version": v, "binding": b} for v in ("1.0", "0.3") for b in ("jsonrpc", "http+json")],
    ids=lambda d: f"{d['version']}-{d['binding']}",
)
async def test_delegation_speaks_each_version_and_binding_the_card_offers(
    tmp_path: Path, children: list[AndonServer], dialect: dict[str, str]
) -> None:
    child = children[0]
    metadata = {"child": child.url, "dialect": dialect}
    async with andon.open_service(relay, str(tmp_path / "relay.db")) as service:
        done = await service.submit(user_text("stream 3"), USER, metadata=metadata)
        await wait_state(service, done.id, TaskState.COMPLETED, timeout=20)
        task = await service.get(done.id, USER)
        assert task.status.message is not None
        assert task.status.message.text == "chunk 0\nchunk 1\nchunk 2\n"

        running = await service.submit(user_text("sleep 30"), USER, metadata=metadata)
        kids: list[dict[str, Any]] = []

        async def recorded_here() -> bool:
            nonlocal kids
            kids = ((await service.get(running.id, USER)).metadata or {}).get(
                "andon.children"
            ) or []
            return bool(kids) and bool(child.trace(kids[0]["id"]))

        await eventually_async(recorded_here)
        assert (kids[0]["version"], kids[0]["binding"]) == (dialect["version"], dialect["binding"])
        canceled = await service.cancel(running.id, USER)
    assert canceled.status.state is TaskState.CANCELED
    remote = child.client.get(kids[0]["id"])
    assert remote.status.state is TaskState.CANCELED and reason(remote) == "parent_canceled"


def test_a_graceful_cancel_of_the_parent_is_graceful_for_its_children(
    parent: AndonServer, children: list[AndonServer]
) -> None:
    task = parent.client.send("sleep 30", blocking=False)
    kids = recorded(parent, task.id)
    for entry in kids:
        eventually(lambda e=entry: child_of(children, e).trace(e["id"]), 20, "child working")
    canceled = parent.client.cancel(task.id, mode="graceful")
    assert canceled.status.state is TaskState.CANCELED
    for entry in kids:
        remote = child_of(children, entry).client.get(entry["id"])
        assert remote.status.state is TaskState.CANCELED
        assert reason(remote) == "parent_canceled"
        assert (remote.metadata or {})["andon.cancelMode"] == "graceful"


late = andon.Agent(name="late delegator")


@late.skill("late")
async def delegate_once_stopping(ctx: andon.TaskContext) -> str:
    await ctx.stopping  # a graceful cancel lets this step finish: it delegates still
    await ctx.call_agent(ctx.metadata["child"], "sleep 30")
    return "the child ended"


async def test_a_child_called_during_a_graceful_cancel_is_stopped_with_its_parent(
    tmp_path: Path, children: list[AndonServer]
) -> None:
    child = children[0]
    runtime = andon.RuntimeSettings(workdir=tmp_path, graceful_period=1.0, hard_deadline=5.0)
    async with andon.open_service(late, str(tmp_path / "late.db"), runtime=runtime) as service:
        record = await service.submit(user_text("go"), USER, metadata={"child": child.url})
        await wait_state(service, record.id, TaskState.WORKING, timeout=20)
        canceled = await service.cancel(record.id, USER, mode=andon.CancelMode.GRACEFUL)
        [entry] = (canceled.metadata or {})["andon.children"]
    assert canceled.status.state is TaskState.CANCELED
    remote = ended(child, entry["id"])
    assert remote.status.state is TaskState.CANCELED and reason(remote) == "parent_canceled"


async def test_a_child_behind_tokens_is_called_and_cancelled_with_the_token_given(
    tmp_path: Path,
) -> None:
    tokens = {"ANDON_TOKENS": "orchestrator user child-s3cret"}
    with AndonServer(
        _dir(tmp_path, "guarded"), "--auth", "tokens", env=tokens, token="child-s3cret"
    ) as guarded:
        with_token = {"child": guarded.url, "dialect": {"token": "child-s3cret"}}
        without = {"child": guarded.url, "dialect": {}}
        async with andon.open_service(relay, str(tmp_path / "relay.db")) as service:
            refused = await service.submit(user_text("echo hi"), USER, metadata=without)
            await wait_state(service, refused.id, TaskState.FAILED, timeout=20)
            failed = await service.get(refused.id, USER)
            assert failed.status.message is not None
            assert "bearer token" in failed.status.message.text

            running = await service.submit(user_text("sleep 30"), USER, metadata=with_token)
            kids: list[dict[str, Any]] = []

            async def working() -> bool:
                nonlocal kids
                task = await service.get(running.id, USER)
                kids = (task.metadata or {}).get("andon.children") or []
                return bool(kids) and bool(guarded.trace(kids[0]["id"]))

            await eventually_async(working)
            canceled = await service.cancel(running.id, USER)
        assert canceled.status.state is TaskState.CANCELED
        remote = guarded.client.get(kids[0]["id"])
        assert remote.status.state is TaskState.CANCELED and reason(remote) == "parent_canceled"
