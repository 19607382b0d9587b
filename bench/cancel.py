"""In-process cancel latency and echo throughput of the embedded runtime.

    python bench/cancel.py [--n 500]

For `sleep`, `spin` and `shell` tasks, and for a synchronous handler blocked in a
request through its blocking `ctx.http` (to a local server that never answers): the
time from the `TaskService.cancel` call to its return with the task `canceled` (the work
has stopped by then), p50 and p99. Then tasks per second for `echo`, submitted 64 at a
time until all have completed.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
from pathlib import Path

from andon import Agent, Principal, RuntimeSettings, SyncTaskContext, TaskService, open_service
from andon.agents.demo import agent
from andon.protocol.types import Role, TaskState, text_message
from bench.stats import row

USER = Principal("bench")
KINDS = {"sleep": "sleep 300", "spin": "spin 300", "shell": "shell sleep 300"}


async def wait_working(service: TaskService, task_id: str) -> None:
    await service.wait(task_id, 0, 10, until={TaskState.WORKING})


async def started(service: TaskService, text: str) -> str:
    record = await service.submit(text_message(Role.USER, text), USER)
    await wait_working(service, record.id)
    # Give the agent a moment to reach its work (thread started, process spawned).
    await asyncio.sleep(0.005)
    return record.id


async def cancel_latencies(service: TaskService, text: str, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        task_id = await started(service, text)
        t0 = time.perf_counter()
        task = await service.cancel(task_id, USER)
        latencies.append(time.perf_counter() - t0)
        assert task.status.state is TaskState.CANCELED, task.status
    return latencies


class Silent:
    """A server that reads requests and never answers; counts the requests it got."""

    def __init__(self) -> None:
        self.requests = 0
        self.arrived = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(4096):
            self.requests += chunk.count(b"HTTP/1.1\r\n")
            self.arrived.set()
        writer.close()


blocked = Agent(name="blocked")


@blocked.skill("fetch")
def fetch(ctx: SyncTaskContext) -> str:
    return ctx.http.get(ctx.text).text


async def sync_http_latencies(workdir: Path, n: int) -> list[float]:
    """Cancels of a handler blocked in its request: each is sent once the request has
    reached the server."""
    silent = Silent()
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    settings = RuntimeSettings(workdir=workdir)
    latencies = []
    async with server, open_service(blocked, f"{workdir}/sync.sqlite", runtime=settings) as svc:
        for i in range(n):
            record = await svc.submit(text_message(Role.USER, url), USER)
            while silent.requests <= i:
                silent.arrived.clear()
                await silent.arrived.wait()
            t0 = time.perf_counter()
            task = await svc.cancel(record.id, USER)
            latencies.append(time.perf_counter() - t0)
            assert task.status.state is TaskState.CANCELED, task.status
    return latencies


async def echo_rate(service: TaskService, total: int, concurrency: int = 64) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            record = await service.submit(text_message(Role.USER, f"echo {i}"), USER)
            await service.wait(record.id, 0, 30)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    return total / (time.perf_counter() - t0)


async def main(n: int, echo_total: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = RuntimeSettings(workdir=Path(tmp))
        async with open_service(agent, f"{tmp}/bench.sqlite", runtime=settings) as service:
            print(f"# cancel latency, in process ({platform.python_version()}, n={n} each)\n")
            print("| task | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
            for kind, text in KINDS.items():
                print(row(kind, await cancel_latencies(service, text, n)), flush=True)
            sync_http = await sync_http_latencies(Path(tmp), n)
            print(row("sync ctx.http", sync_http), flush=True)
            rate = await echo_rate(service, echo_total)
            print(f"\necho: {rate:.0f} tasks/s ({echo_total} tasks, 64 in flight, SQLite WAL)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--echo", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.echo))
