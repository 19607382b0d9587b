"""Distributed mode as real processes: API processes and workers on 127.0.0.1 sharing a
PostgreSQL database. A task is sent to one API process, runs on some worker, is
cancelled through another API process; workers are stopped, killed, and the database
itself is restarted under them. (Every invariant of tests/test_invariants.py also runs
in distributed mode there, with the worker in the test's own process.)"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from andon.client import AndonClient
from andon.client.api import StreamEvent
from andon.client.errors import TaskNotCancelable
from andon.dispatch.leases import Taken
from andon.dispatch.queue import QueueDispatcher
from andon.node.database import upgrade
from andon.protocol.types import Task, TaskState, TaskStatusUpdateEvent, new_id
from andon.runtime.keeper import live_members
from andon.store.base import Event, NewTask, TaskRecord
from andon.store.postgres import PostgresStore
from tests.cluster import Cluster, Relay, free_port
from tests.conftest import new_schema
from tests.helpers import (
    children_of,
    eventually,
    process_group_alive,
    trace_lines,
    user_text,
    wait_trace,
)

OBSERVE = 0.35  # more than three demo steps: long enough to see work that did not stop
S = TaskState


@pytest.fixture(scope="module")
def cluster(postgres_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two API processes and two workers, shared by the tests that stop none of them."""
    db = new_schema(postgres_database)
    asyncio.run(upgrade(db))
    with Cluster(db, tmp_path_factory.mktemp("cluster")) as running:
        running.start(apis=2, workers=2)
        yield running


@pytest.fixture
async def store(cluster: Cluster) -> AsyncIterator[PostgresStore]:
    """The cluster's store, read from the test's side."""
    opened = PostgresStore(cluster.db)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@asynccontextmanager
async def clients(cluster: Cluster) -> AsyncIterator[tuple[AndonClient, AndonClient]]:
    a, b = cluster.api_urls[:2]
    async with AndonClient(a) as on_a, AndonClient(b) as on_b:
        yield on_a, on_b


def finals(events: list[StreamEvent]) -> list[TaskStatusUpdateEvent]:
    return [e.item for e in events if isinstance(e.item, TaskStatusUpdateEvent) and e.item.final]


async def stored_finals(store: PostgresStore, task_id: str) -> list[Event]:
    return [e for e in await store.events(task_id) if e.final]


def command_group(cluster: Cluster, marker: str) -> int | None:
    """The process group of the worker's child whose command line has the marker."""
    for pid in cluster.children():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if marker in cmdline:
                return os.getpgid(pid)
        except (OSError, ProcessLookupError):
            continue
    return None


async def running_command(cluster: Cluster, marker: str) -> int:
    """Wait for the command (a shell and two `sleep`s) to run on a worker: its group."""
    found: list[int] = []

    def started() -> bool:
        pgid = command_group(cluster, marker)
        if pgid is not None and len(live_members(pgid)) >= 3:
            found.append(pgid)
        return bool(found)

    await eventually(started, 20, message=f"{marker} running on a worker")
    return found[0]


# -- a task on a worker, cancelled through another API process ---------------------------


async def test_cancel_sent_to_another_api_stops_the_work_on_its_worker(
    cluster: Cluster, store: PostgresStore
) -> None:
    async with clients(cluster) as (on_a, on_b):
        seen: list[StreamEvent] = []
        stream = on_a.stream("sleep 30")

        async def follow() -> None:
            async for event in stream:
                seen.append(event)

        following = asyncio.create_task(follow())
        await eventually(lambda: bool(seen), 20, message="the stream started")
        task_id = seen[0].task_id
        assert task_id is not None
        await wait_trace(cluster.trace, task_id, 2, timeout=20)

        task = await on_b.cancel(task_id)
        returned = time.monotonic_ns()

        assert task.status.state is S.CANCELED
        assert (task.metadata or {})["andon.reason"] == "user"
        await asyncio.wait_for(following, 20)
        await asyncio.sleep(OBSERVE)
        late = [line for line in trace_lines(cluster.trace, task_id) if line[1] > returned]
        assert late == [], f"work went on after the cancel returned: {late}"
        (final,) = finals(seen)
        assert seen[-1].item is final and final.status.state is S.CANCELED
        assert len(await stored_finals(store, task_id)) == 1


async def test_cancel_sent_to_another_api_kills_the_command_on_its_worker(
    cluster: Cluster,
) -> None:
    marker = "sleep 304"
    async with clients(cluster) as (on_a, on_b):
        sent = await on_a.send(f"shell sh -c '{marker} & {marker}; wait'", blocking=False)
        pgid = await running_command(cluster, marker)

        task = await on_b.cancel(sent.id)

        assert task.status.state is S.CANCELED
        assert not process_group_alive(pgid), "a process of the task outlived its cancel"


async def test_an_answer_sent_to_another_api_reaches_the_waiting_worker(
    cluster: Cluster,
) -> None:
    async with clients(cluster) as (on_a, on_b):
        asked = await on_a.send("ask your name?")
        assert asked.status.state is S.INPUT_REQUIRED
        done = await on_b.answer(asked.id, "Ada")
        assert done.status.state is S.COMPLETED
        assert done.artifacts is not None and done.artifacts[0].parts[0].text == "Ada"


async def test_cancel_racing_completion_across_processes_ends_once(
    cluster: Cluster, store: PostgresStore
) -> None:
    outcomes: dict[TaskState, int] = {}
    async with clients(cluster) as (on_a, on_b):
        for i in range(150):
            sent = await on_a.send(f"echo {i}", blocking=False)
            await asyncio.sleep(0.001 * (i % 5))
            try:
                said = (await on_b.cancel(sent.id)).status.state
            except TaskNotCancelable:
                said = S.COMPLETED
            ended = await on_a.wait(sent.id, timeout=20)
            events = await store.events(sent.id)
            assert [e.final for e in events].count(True) == 1, f"round {i}"
            assert events[-1].final and events[-1].data["state"] == ended.status.state.value
            assert ended.status.state in (S.COMPLETED, S.CANCELED)
            if said is S.CANCELED:
                assert ended.status.state is S.CANCELED
            outcomes[ended.status.state] = outcomes.get(ended.status.state, 0) + 1
    assert sum(outcomes.values()) == 150


# -- no worker, dead workers, a restarted database ------------------------------------------


async def test_a_task_cancelled_while_no_worker_runs_never_runs(
    postgres_url: str, tmp_path: Path
) -> None:
    with Cluster(postgres_url, tmp_path) as cluster:
        url = cluster.api()
        cluster.worker()
        cluster.stop_workers()
        async with AndonClient(url) as client:
            sent = await client.send("sleep 0.5", blocking=False)
            task = await client.cancel(sent.id)
            assert task.status.state is S.CANCELED

            cluster.start(workers=2)
            await eventually(lambda: queued_jobs(postgres_url) == 0, 20, message="job taken")
            await asyncio.sleep(OBSERVE)

            assert trace_lines(cluster.trace, sent.id) == []
            again = await client.get(sent.id, history_length=0)
            assert again.status.state is S.CANCELED
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            states = [e.data["state"] for e in await store.events(sent.id) if e.kind == "status"]
        finally:
            await store.close()
        assert states == ["submitted", "canceled"]


def queued_jobs(db: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()
        return int(row[0]) if row else 0


async def test_a_killed_worker_fails_its_task_worker_lost_once(
    postgres_url: str, tmp_path: Path
) -> None:
    lease = 2.0
    marker = "sleep 305"
    with Cluster(postgres_url, tmp_path, lease=lease) as cluster:
        url = cluster.api()
        worker = cluster.worker()
        async with AndonClient(url) as client:
            sent = await client.send(f"shell sh -c '{marker} & {marker}; wait'", blocking=False)
            pgid = await running_command(cluster, marker)

            os.kill(worker, signal.SIGKILL)

            lost = await client.wait(sent.id, timeout=lease + 20)
            assert lost.status.state is S.FAILED
            assert (lost.metadata or {})["andon.reason"] == "worker_lost"
            await eventually(lambda: not process_group_alive(pgid), 10, message="group gone")
            await asyncio.sleep(lease)  # more rounds of reaping change nothing
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            statuses = [e for e in await store.events(sent.id) if e.kind == "status"]
        finally:
            await store.close()
        assert [e.data["state"] for e in statuses] == ["submitted", "working", "failed"]
        assert [e.final for e in statuses].count(True) == 1


class PrivatePostgres:
    """A PostgreSQL server of the test's own, so restarting it disturbs nobody else."""

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="andon-pg-"))
        os.chown(self.dir, *_postgres_ids())
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """Stop it (if it ever started) and remove its files."""
        if (self.dir / "data" / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir)

    def _pg_ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        data, log = str(self.dir / "data"), str(self.dir / "log")
        self._run("pg_ctl", action, "-D", data, "-w", "-s", "-l", log, "-o", options, *args)

    def _run(self, program: str, *args: str) -> None:
        cmd = [str(self.BIN / program), *args]
        if os.getuid() == 0:  # PostgreSQL refuses to run as root
            cmd = ["su", "postgres", "-c", shlex.join(cmd)]
        subprocess.run(cmd, check=True, timeout=120, stdout=subprocess.DEVNULL)


def _postgres_ids() -> tuple[int, int]:
    import pwd

    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def test_a_cancel_still_works_after_the_database_restarted(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    await upgrade(private_postgres.url)
    marker = "sleep 306"
    with Cluster(private_postgres.url, tmp_path) as cluster:
        cluster.start(apis=2, workers=1)
        async with clients(cluster) as (on_a, on_b):
            sent = await on_a.send(f"shell sh -c '{marker} & {marker}; wait'", blocking=False)
            pgid = await running_command(cluster, marker)

            private_postgres.restart()

            task = await on_b.cancel(sent.id)
            assert task.status.state is S.CANCELED
            assert not process_group_alive(pgid)
            seen: Task = await on_a.get(sent.id)
            assert seen.status.state is S.CANCELED


async def test_a_worker_serves_its_metrics_and_readiness(postgres_url: str, tmp_path: Path) -> None:
    port = free_port()
    with Cluster(postgres_url, tmp_path) as cluster:
        url = cluster.api()
        cluster.worker("--metrics-port", str(port))
        async with AndonClient(url) as client, httpx.AsyncClient() as http:
            done = await client.send("echo counted")
            assert done.status.state is S.COMPLETED
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        assert ready.status_code == 200, ready.text
        ended = [line for line in metrics.splitlines() if line.startswith("andon_tasks_ended")]
        assert any('state="completed"' in line and line.endswith(" 1.0") for line in ended), ended


async def test_a_worker_back_after_its_lease_lapsed_writes_nothing_and_stops(
    postgres_url: str, tmp_path: Path
) -> None:
    lease = 2.0
    with Cluster(postgres_url, tmp_path, lease=lease) as cluster:
        url = cluster.api()
        worker = cluster.worker()
        async with AndonClient(url) as client:
            sent = await client.send("sleep 60", blocking=False)
            await wait_trace(cluster.trace, sent.id, 2, timeout=20)

            os.kill(worker, signal.SIGSTOP)  # alive, but silent: its lease lapses
            try:
                lost = await client.wait(sent.id, timeout=lease + 20)
            finally:
                os.kill(worker, signal.SIGCONT)
            resumed = time.monotonic_ns()
            assert lost.status.state is S.FAILED
            assert (lost.metadata or {})["andon.reason"] == "worker_lost"

            # Back, it finds its task ended without it and stops the work (the step it
            # was frozen in may finish: nothing could reach it while it was stopped).
            def stopped() -> bool:
                last = max(line[1] for line in trace_lines(cluster.trace, sent.id))
                return time.monotonic_ns() - max(last, resumed) > 1e9

            await eventually(stopped, 20, message="the work stopped")
            seen = len(trace_lines(cluster.trace, sent.id))
            await asyncio.sleep(OBSERVE)
            assert len(trace_lines(cluster.trace, sent.id)) == seen
            again = await client.get(sent.id, history_length=0)
            assert again.status == lost.status
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            events = await store.events(sent.id)
        finally:
            await store.close()
        assert events[-1].final and events[-1].data["state"] == "failed"
        assert [e.final for e in events].count(True) == 1


async def test_a_worker_cut_off_from_the_database_stops_its_work_when_its_lease_lapses(
    postgres_url: str, tmp_path: Path
) -> None:
    lease = 2.0
    relay = Relay(postgres_url)
    relay.join()
    with Cluster(postgres_url, tmp_path, lease=lease) as cluster:
        url = cluster.api()
        # The worker reaches the database only through the relay; the API process (and
        # its reaper) directly.
        with Cluster(relay.url, tmp_path, lease=lease) as cut_off:
            cut_off.worker()
            async with AndonClient(url) as client:
                marker = "sleep 307"
                sent = await client.send(f"shell sh -c '{marker} & {marker}; wait'", blocking=False)
                pgid = await running_command(cut_off, marker)

                relay.cut()  # the worker can neither renew nor hear anything
                await eventually(
                    lambda: not process_group_alive(pgid),
                    lease + 10,
                    message="the command stopped by its worker, cut off as it is",
                )
                lost = await client.wait(sent.id, timeout=lease + 20)
                assert lost.status.state is S.FAILED
                assert (lost.metadata or {})["andon.reason"] == "worker_lost"

                relay.join()  # back: the worker writes no second ending
                await asyncio.sleep(lease)
                again = await client.get(sent.id, history_length=0)
                assert again.status == lost.status
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            assert len(await stored_finals(store, sent.id)) == 1
        finally:
            await store.close()


async def test_a_task_its_api_process_never_queued_is_queued_by_a_reaper(
    postgres_url: str, tmp_path: Path
) -> None:
    with Cluster(postgres_url, tmp_path, lease=1.0) as cluster:
        cluster.start(apis=1, workers=1)
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            # What an API process leaves when it dies between storing and queueing.
            task_id, context_id = new_id(), new_id()
            await store.create_task(
                NewTask(id=task_id, context_id=context_id, owner="alice"),
                user_text("echo found", task_id=task_id, context_id=context_id).dump(),
            )

            async def completed() -> bool:
                record = await store.get_task(task_id)
                return record is not None and record.state is S.COMPLETED

            await eventually(completed, 30, message="the orphan ran")
        finally:
            await store.close()


async def test_serve_with_workers_runs_tasks_in_the_workers_it_starts(
    postgres_url: str, tmp_path: Path
) -> None:
    with Cluster(postgres_url, tmp_path) as cluster:
        url = cluster.serve("--workers", "2", "--drain", "1")
        (serve,) = cluster.apis
        await eventually(lambda: cluster.registered_workers() == 2, 30, message="2 workers")
        workers = [pid for pid in children_of(serve.pid) if b"worker" in cmdline(pid)]
        assert len(workers) == 2
        async with AndonClient(url) as client:
            done = await client.send("echo from a worker")
            assert done.status.state is S.COMPLETED

        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        assert [pid for pid in workers if cmdline(pid)] == [], "a worker outlived serve"


def cmdline(pid: int) -> bytes:
    """The command line of a live process (empty once it is gone, or a zombie)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def test_sigterm_drains_a_worker_then_cancels_what_is_left(
    postgres_url: str, tmp_path: Path
) -> None:
    with Cluster(postgres_url, tmp_path) as cluster:
        url = cluster.api()
        worker = cluster.worker("--drain", "1")
        async with AndonClient(url) as client:
            short = await client.send("sleep 0.5", blocking=False)
            long = await client.send("sleep 30", blocking=False)
            await wait_trace(cluster.trace, long.id, 1, timeout=20)
            await wait_trace(cluster.trace, short.id, 1, timeout=20)

            os.kill(worker, signal.SIGTERM)

            assert cluster.workers[0].wait(60) == 0
            finished = await client.get(short.id, history_length=0)
            cancelled = await client.get(long.id, history_length=0)
            assert finished.status.state is S.COMPLETED
            assert cancelled.status.state is S.CANCELED
            assert (cancelled.metadata or {})["andon.reason"] == "shutdown"


async def test_a_worker_takes_jobs_and_their_leases_in_one_transaction(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    queue = QueueDispatcher(postgres_url, store)
    await queue.start()
    try:
        await queue.dispatch("task-1", "")
        worker_id = await queue.app.job_manager.register_worker()
        [taken] = await queue.leases.take(queue.settings.queue, worker_id, 4)
        assert taken.task_id == "task-1" and taken.leased
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            cursor = await conn.execute(
                "SELECT j.status, j.xmin::text = l.xmin::text FROM procrastinate_jobs j"
                " JOIN andon_leases l ON l.job_id = j.id WHERE l.task_id = 'task-1'"
            )
            assert await cursor.fetchone() == ("doing", True)
        # A second job of a task whose lease is held: taken without it (a duplicate).
        await queue.leases.requeue("elsewhere", taken.job_id)  # not this worker's lease
        [again] = await queue.leases.take(queue.settings.queue, worker_id, 4)
        assert again.job_id == taken.job_id and not again.leased
        assert await queue.leases.take(queue.settings.queue, worker_id, 4) == []
        # One look takes as many jobs as asked for, each once.
        for task_id in ("task-2", "task-3", "task-4"):
            await queue.dispatch(task_id, "")
        two = await queue.leases.take(queue.settings.queue, worker_id, 2)
        one = await queue.leases.take(queue.settings.queue, worker_id, 2)
        assert [t.task_id for t in two + one] == ["task-2", "task-3", "task-4"]
        assert all(t.leased for t in two + one)
    finally:
        await queue.stop()


@asynccontextmanager
async def a_taken_job(
    postgres_url: str,
) -> AsyncIterator[tuple[PostgresStore, QueueDispatcher, TaskRecord, Taken]]:
    """A store and a queue on the database, and a new task whose job a worker (the test
    itself) has taken with the task's lease."""
    store = PostgresStore(postgres_url)
    await store.open()
    queue = QueueDispatcher(postgres_url, store)
    await queue.start()
    try:
        task = await store.create_task(
            NewTask(id=new_id(), context_id=new_id(), owner="alice"),
            user_text("work", task_id="t", context_id="c").dump(),
        )
        await queue.dispatch(task.id, "")
        worker_id = await queue.app.job_manager.register_worker()
        [taken] = await queue.leases.take(queue.settings.queue, worker_id, 1)
        assert taken.task_id == task.id and taken.leased
        yield store, queue, task, taken
    finally:
        await queue.stop()
        await store.close()


async def test_a_lease_names_the_epoch_of_its_claim_and_a_cancel_finds_its_job(
    postgres_url: str,
) -> None:
    # The worker writes nothing between its claim and the attempt: the lease taken with
    # the job already names the epoch the claim gives, so a cancel of the running
    # attempt aborts the job at once.
    async with a_taken_job(postgres_url) as (store, queue, task, _):
        claimed = await store.transition(
            task.id, sources=[S.SUBMITTED], target=S.WORKING, claim=True
        )
        assert claimed is not None and claimed.epoch == task.epoch + 1
        canceling = await store.transition(task.id, sources=[S.WORKING], target=S.CANCELING)
        assert canceling is not None
        await queue.cancel(canceling)
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            cursor = await conn.execute(
                "SELECT l.epoch, j.abort_requested FROM andon_leases l"
                " JOIN procrastinate_jobs j ON j.id = l.job_id WHERE l.task_id = %s",
                (task.id,),
            )
            assert await cursor.fetchone() == (claimed.epoch, True)


async def test_a_release_lost_after_the_completion_is_tidied_by_a_reaper(
    postgres_url: str,
) -> None:
    # Letting go of a finished task's job does not wait for the disk: should a crash of
    # the database lose it, the lease lapses with the job still `doing`, and a reaper
    # finishes the job without touching the task's one ending.
    async with a_taken_job(postgres_url) as (store, queue, task, taken):
        claimed = await store.transition(
            task.id, sources=[S.SUBMITTED], target=S.WORKING, claim=True
        )
        assert claimed is not None
        done = await store.transition(
            task.id, sources=[S.WORKING], target=S.COMPLETED, epoch=claimed.epoch
        )
        assert done is not None
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(
                "UPDATE andon_leases SET expires_at = now() - interval '1 second'"
                " WHERE task_id = %s",
                (task.id,),
            )
            assert await queue.reaper.sweep() == []
            leases = await conn.execute("SELECT 1 FROM andon_leases WHERE task_id = %s", (task.id,))
            assert await leases.fetchone() is None
            jobs = await conn.execute(
                "SELECT status FROM procrastinate_jobs WHERE id = %s", (taken.job_id,)
            )
            assert await jobs.fetchone() is None
        record = await store.get_task(task.id)
        assert record is not None and record.state is S.COMPLETED
        assert len(await stored_finals(store, task.id)) == 1


async def test_the_tasks_queued_in_one_turn_go_in_one_statement(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    queue = QueueDispatcher(postgres_url, store)
    await queue.start()
    try:
        await asyncio.gather(*(queue.dispatch(f"task-{i}", "") for i in range(3)))
        # One task queued already: the others of its turn are queued all the same.
        await asyncio.gather(*(queue.dispatch(f"task-{i}", "") for i in range(2, 5)))
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            cursor = await conn.execute(
                "SELECT queueing_lock, xmin::text FROM procrastinate_jobs ORDER BY id"
            )
            rows = await cursor.fetchall()
        assert [lock for lock, _ in rows] == [f"task-{i}" for i in range(5)]
        assert len({xmin for _, xmin in rows[:3]}) == 1
    finally:
        await queue.stop()
