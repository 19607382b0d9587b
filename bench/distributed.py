"""Distributed mode as processes on this machine, sharing a PostgreSQL database made for
the run (and dropped after it):

    python -m bench.distributed [--cancels 300] [--echo 2000] [--postgres postgresql://...]

- cross-process cancel latency: a `sleep` task sent to API process A runs on worker C;
  the time from sending `CancelTask` to API process B until B answers `canceled` (by
  then C has stopped the work and stored the final event);
- of that, the push: from procrastinate's abort of a running job until a connection
  LISTENing as a worker's does has heard it;
- echo throughput through the queue with 1, 2 and 4 workers: tasks submitted as fast
  as an API node in this process can (no HTTP), from the first submit until the last
  task has completed;
- beside it, procrastinate's own ceiling here: as many of its workers (bench/noop_jobs.py,
  same concurrency) running a job that does nothing, the jobs deferred as fast as this
  process can, from the first defer until the last job has succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from procrastinate.manager import get_channel_for_queues
from psycopg import sql

from andon.agents.demo import agent
from andon.client import AndonClient
from andon.dispatch.queue import QueueDispatcher
from andon.node.parts import Node
from andon.protocol.types import Role, TaskState, text_message
from andon.service import Principal
from andon.store.postgres import PostgresStore
from bench import noop_jobs
from bench.stats import row
from bench.store import scratch_database
from tests.cluster import Cluster

ME = Principal("bench")


async def cancel_latency(db: str, workdir: Path, n: int) -> list[float]:
    with Cluster(db, workdir) as cluster:
        cluster.start(apis=2, workers=1)
        a, b = cluster.api_urls
        times = []
        async with AndonClient(a) as on_a, AndonClient(b) as on_b:
            for i in range(n + 10):
                sent = await on_a.send("sleep 30", blocking=False)
                await on_a.wait(sent.id, timeout=30, until=frozenset({TaskState.WORKING}))
                await asyncio.sleep(0.05)  # a few steps in: the work is under way
                started = time.perf_counter()
                task = await on_b.cancel(sent.id)
                took = time.perf_counter() - started
                assert task.status.state is TaskState.CANCELED, task.status
                if i >= 10:  # the first ones warm connections and prepared statements
                    times.append(took)
        return times


async def abort_heard(db: str, n: int) -> list[float]:
    """From procrastinate's abort of a running job until a LISTENing connection (as a
    worker's) has its notification: the push a cancel rides on."""
    queue = QueueDispatcher(db, PostgresStore(db))
    await queue.start()
    jobs = queue.app.job_manager
    heard: asyncio.Queue[float] = asyncio.Queue()
    listener = await psycopg.AsyncConnection.connect(db, autocommit=True)
    times = []
    try:
        for channel in get_channel_for_queues([queue.settings.queue]):
            await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

        async def listen() -> None:
            async for notify in listener.notifies():
                if "abort_job_requested" in notify.payload:
                    heard.put_nowait(time.perf_counter())

        listening = asyncio.create_task(listen())
        worker_id = await jobs.register_worker()
        for i in range(n):
            await queue.dispatch(f"abort-{i}", "bench")
            job = await jobs.fetch_job([queue.settings.queue], worker_id)
            assert job is not None and job.id is not None
            started = time.perf_counter()
            await jobs.cancel_job_by_id_async(job.id, abort=True)
            times.append(await asyncio.wait_for(heard.get(), 10) - started)
        listening.cancel()
    finally:
        await listener.close()
        await queue.stop()
    return times


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def echo_throughput(db: str, workdir: Path, workers: int, n: int) -> tuple[float, float]:
    """Tasks per second, and the workers' CPU milliseconds per task."""
    with Cluster(db, workdir) as cluster:
        cluster.start(workers=workers)
        pids = [proc.pid for proc in cluster.workers]
        node = Node(agent, db, worker=False)
        await node.start()
        try:
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            started = time.perf_counter()
            records = await asyncio.gather(
                *(node.service.submit(text_message(Role.USER, f"echo {i}"), ME) for i in range(n))
            )
            for record in records:
                await node.service.wait(record.id, 0, 120)
            took = time.perf_counter() - started
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            last = await node.store.get_task(records[-1].id)
            assert last is not None and last.state is TaskState.COMPLETED, last
        finally:
            await node.stop()
    return n / took, cpu / n * 1000


WORKER_CONCURRENCY = 16
"""What tests/cluster.py gives each `andon worker`; the no-op workers get the same."""


async def reaches(conn: psycopg.AsyncConnection[Any], count: LiteralString, target: int) -> None:
    """Poll a count until it reaches `target`."""
    while True:
        row = await (await conn.execute(count)).fetchone()
        if row is not None and row[0] >= target:
            return
        await asyncio.sleep(0.01)


async def noop_throughput(db: str, workers: int, n: int) -> tuple[float, float]:
    """procrastinate alone: jobs per second, and its workers' CPU milliseconds per job."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.noop_jobs", db, str(WORKER_CONCURRENCY)
        )
        for _ in range(workers)
    ]
    try:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await reaches(conn, "SELECT count(*) FROM procrastinate_workers", workers)
            cpu_before = sum(cpu_seconds(p.pid) for p in procs)
            started = time.perf_counter()
            await noop_jobs.defer(db, n)
            done = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
            await reaches(conn, done, n)
            took = time.perf_counter() - started
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
    finally:
        for proc in procs:
            proc.terminate()
        await asyncio.gather(*(proc.wait() for proc in procs))
    return n / took, cpu / n * 1000


async def main(cancels: int, echo: int, server: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database(server) as db:
            times = await cancel_latency(db, Path(tmp), cancels)
        print("## Cross-process cancel: CancelTask to API B, task on worker C\n")
        print("| measurement | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
        print(row("CancelTask → `canceled`, sleep", times))
        async with scratch_database(server) as db:
            print(row("job abort → its NOTIFY heard", await abort_heard(db, cancels)))
        print("\n## echo through the queue, and procrastinate's own ceiling\n")
        print(
            "| workers | tasks | andon echo tasks/s | worker CPU ms/task"
            " | procrastinate no-op jobs/s | its worker CPU ms/job | andon / ceiling |"
        )
        print("|---|---|---|---|---|---|---|")
        for workers in (1, 2, 4):
            async with scratch_database(server) as db:
                rate, cpu_ms = await echo_throughput(db, Path(tmp), workers, echo)
            async with scratch_database(server) as db:
                ceiling, noop_cpu_ms = await noop_throughput(db, workers, echo)
            print(
                f"| {workers} | {echo} | {rate:,.0f} | {cpu_ms:.2f} | {ceiling:,.0f}"
                f" | {noop_cpu_ms:.2f} | {rate / ceiling:.2f} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cancels", type=int, default=300)
    parser.add_argument("--echo", type=int, default=2000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    asyncio.run(main(args.cancels, args.echo, args.postgres))
