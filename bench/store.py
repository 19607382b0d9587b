"""Store operations, one at a time, on SQLite and on PostgreSQL; and how soon a second
PostgreSQL store instance (another process, for the store) hears of an event.

    python -m bench.store [--n 1000] [--postgres postgresql://postgres@127.0.0.1:5432]

The PostgreSQL figures are taken on a database made for the run and dropped after it.
"Heard" is the time from the call that writes an event on instance A until a follower
on instance B has read it: commit, NOTIFY, LISTEN, and B's read of the log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg

from andon.node.database import upgrade
from andon.protocol.types import TaskState, new_id
from andon.store import open_store
from andon.store.base import NewTask, Store
from bench.stats import row

S = TaskState
OPERATIONS = ["create", "get", "claim", "append", "events", "complete"]


async def timed(times: list[float], call: Awaitable[Any]) -> Any:
    t0 = time.perf_counter()
    result = await call
    times.append(time.perf_counter() - t0)
    return result


async def operations(store: Store, n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = defaultdict(list)
    for i in range(n):
        task_id = new_id()
        await timed(times["create"], store.create_task(NewTask(task_id, "c", "bench"), {"i": i}))
        await timed(times["get"], store.get_task(task_id))
        claimed = await timed(
            times["claim"],
            store.transition(task_id, sources=[S.SUBMITTED], target=S.WORKING, claim=True),
        )
        await timed(times["append"], store.append(task_id, claimed.epoch, "progress", {"i": i}))
        await timed(times["events"], store.events(task_id))
        await timed(
            times["complete"], store.transition(task_id, sources=[S.WORKING], target=S.COMPLETED)
        )
    return times


async def heard(writer: Store, reader: Store, n: int) -> dict[str, list[float]]:
    """Per task: its first append, then its completion, each until B's follower has it."""
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(n):
        task_id = new_id()
        await writer.create_task(NewTask(task_id, "c", "bench"), {})
        claimed = await writer.transition(
            task_id, sources=[S.SUBMITTED], target=S.WORKING, claim=True
        )
        assert claimed is not None
        arrivals: asyncio.Queue[float] = asyncio.Queue()
        follower = asyncio.create_task(arrive(reader, task_id, claimed.last_seq, arrivals))
        # Write once the follower has read the log and waits: the notification wakes it.
        while reader.notifier.listener_count(task_id) == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        for name, write in (
            ("append heard", writer.append(task_id, claimed.epoch, "artifact", {})),
            ("complete heard", writer.transition(task_id, sources=[S.WORKING], target=S.COMPLETED)),
        ):
            t0 = time.perf_counter()
            await write
            times[name].append(await arrivals.get() - t0)
        await follower
    return times


async def arrive(store: Store, task_id: str, after: int, arrivals: asyncio.Queue[float]) -> None:
    async for _event in store.follow(task_id, after):
        arrivals.put_nowait(time.perf_counter())


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def scratch_database(server: str) -> AsyncIterator[str]:
    name = f"andon_bench_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(f"{server}/postgres", autocommit=True) as c:
        await c.execute(f"CREATE DATABASE {name}")
    try:
        url = f"{server}/{name}"
        await upgrade(url)
        yield url
    finally:
        async with await psycopg.AsyncConnection.connect(
            f"{server}/postgres", autocommit=True
        ) as c:
            await c.execute(f"DROP DATABASE {name} WITH (FORCE)")


def table(title: str, times: dict[str, list[float]], order: list[str]) -> None:
    print(f"\n{title}\n\n| operation | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    for name in order:
        print(row(name, times[name]))


async def main(n: int, server: str) -> None:
    runs: list[tuple[str, Callable[[], contextlib.AbstractAsyncContextManager[str]]]] = []
    with tempfile.TemporaryDirectory() as tmp:

        @contextlib.asynccontextmanager
        async def sqlite_file() -> AsyncIterator[str]:
            yield f"{tmp}/bench.sqlite"

        runs = [("SQLite", sqlite_file), ("PostgreSQL", lambda: scratch_database(server))]
        for name, storage in runs:
            async with storage() as url, opened(url) as store:
                await operations(store, min(n, 50))  # warm: prepared statements, pool
                table(f"## {name}: one operation at a time", await operations(store, n), OPERATIONS)
                if name == "PostgreSQL":
                    async with opened(url) as other:
                        times = await heard(store, other, n)
                    table("## PostgreSQL: heard by another instance", times, list(times))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.postgres))
