"""Push notification delivery latency: from an event's commit to its webhook receiving it.

    python -m bench.push [--tasks 200] [--postgres postgresql://...]

A webhook receiver (tests/webhook.py, a threaded HTTP server) runs in this process.
`echo` tasks are sent, a few at a time, each with a push config for the receiver; every
status event pushed carries its commit time (`status.timestamp`, the store's clock, in
milliseconds), and the receiver notes when the POST arrived: the difference is the
latency, on one machine and one clock. Embedded mode (`andon serve`, SQLite) and
distributed mode (two `andon serve --no-worker` and one `andon worker` on a scratch
PostgreSQL database, dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from andon.client import AndonClient
from bench.stats import row
from bench.store import scratch_database
from tests.cluster import Cluster, free_port
from tests.webhook import Hit, Receiver

ALLOW = ("--push-allow", "127.0.0.1")
AT_ONCE = 8


def latencies(hits: list[Hit]) -> list[float]:
    """Seconds from each pushed status's commit to its arrival."""
    found = []
    for hit in hits:
        update = hit.body.get("statusUpdate")
        if update is None:
            continue
        stamp = datetime.fromisoformat(update["status"]["timestamp"].replace("Z", "+00:00"))
        found.append(hit.at - stamp.timestamp())
    return found


async def push_run(urls: list[str], receiver: Receiver, tasks: int) -> list[float]:
    """Send `tasks` echo tasks with a webhook (AT_ONCE in flight, spread over `urls`);
    return the latencies of their pushed status events once all have arrived."""
    clients = [AndonClient(url) for url in urls]
    ids: list[str] = []
    try:

        async def one(i: int) -> None:
            task = await clients[i % len(clients)].send(f"echo {i}", push=receiver.url)
            ids.append(task.id)

        for start in range(0, tasks, AT_ONCE):
            await asyncio.gather(*(one(i) for i in range(start, min(tasks, start + AT_ONCE))))
        deadline = time.monotonic() + 60
        while not all(any(h.state == "completed" for h in receiver.accepted(t)) for t in ids):
            if time.monotonic() > deadline:
                raise RuntimeError("not every task's last event arrived within 60 s")
            await asyncio.sleep(0.05)
    finally:
        for client in clients:
            await client.aclose()
    return latencies([h for t in ids for h in receiver.accepted(t)])


async def embedded(workdir: Path, tasks: int) -> list[float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "andon", "serve", "--port", str(port), *ALLOW]
    command += ["--db", str(workdir / "push.db"), "--log-level", "warning"]
    proc = await asyncio.create_subprocess_exec(*command, cwd=workdir)
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    await http.get(url + "/.well-known/agent-card.json", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        with Receiver() as receiver:
            await push_run([url], receiver, 10)  # warm-up
            return await push_run([url], receiver, tasks)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def distributed(workdir: Path, tasks: int, server: str) -> list[float]:
    async with scratch_database(server) as db:
        with Cluster(db, workdir) as cluster:
            cluster.start(apis=2, workers=1, worker_args=ALLOW, api_args=("--no-worker", *ALLOW))
            with Receiver() as receiver:
                await push_run(cluster.api_urls, receiver, 10)
                return await push_run(cluster.api_urls, receiver, tasks)


async def main(tasks: int, server: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = await embedded(Path(tmp), tasks)
        shared = await distributed(Path(tmp), tasks, server)
    print(f"## Push delivery: event commit → webhook ({tasks} echo tasks, {AT_ONCE} at once)\n")
    print("| mode | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    print(row("embedded (SQLite, one process)", local))
    print(row("distributed (2 APIs + 1 worker, PostgreSQL)", shared))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.postgres))
