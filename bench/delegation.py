"""Cancel of a task that delegated to other agents: from the parent's cancel call to its
answer, with 1, 2 and 8 remote children, all of them real `andon serve` processes.

    .venv/bin/python -m bench.delegation [--n 50] [--children 1,2,8] [--servers 2]

The parent is `andon serve` running this module's agent, which sends `sleep 300` to N
children (`ctx.call_agent`), spread over `--servers` child servers (the demo agent).
Each round starts a parent, waits until every child is working, then times
CancelTask on the parent over HTTP (JSON-RPC, A2A 1.0): the answer comes once every
child has confirmed its own cancel (reason parent_canceled), so the figure holds N
CancelTask round trips, run side by side, and the children's own stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import andon
from andon.client import AndonClient
from andon.protocol.types import TaskState
from bench.stats import row

ROOT = Path(__file__).resolve().parent.parent

agent = andon.Agent(name="fan-out", description="Delegates `N TEXT` to N child agents.")


@agent.skill("fan-out", description="Send TEXT to N children (ANDON_CHILD_URLS, in turn)")
async def fan_out(ctx: andon.TaskContext) -> None:
    count, _, text = ctx.text.partition(" ")
    urls = [u for u in os.environ["ANDON_CHILD_URLS"].split(",") if u]

    async def follow(url: str) -> None:
        async for _ in ctx.call_agent(url, text, mirror=False):
            pass

    async with asyncio.TaskGroup() as group:
        for n in range(int(count)):
            group.create_task(follow(urls[n % len(urls)]))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(
    workdir: Path, name: str, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "andon", "serve", *args, "--port", str(port)]
    command += ["--db", str(workdir / f"{name}.db"), "--log-level", "warning"]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,  # `bench.delegation:agent` is imported from here
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/.well-known/agent-card.json", timeout=1).is_success:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"andon serve ({name}) did not start")
        time.sleep(0.05)


async def one_round(parent: AndonClient, count: int) -> float:
    task = await parent.send(f"{count} sleep 300", blocking=False)
    kids: list[dict[str, str]] = []
    while len(kids) < count:
        await asyncio.sleep(0.01)
        kids = ((await parent.get(task.id)).metadata or {}).get("andon.children") or []
    for kid in kids:  # every child working (its first step under way)
        async with AndonClient(kid["url"]) as child:
            await child.wait(kid["id"], timeout=30, until=frozenset({TaskState.WORKING}))
    started = time.perf_counter()
    canceled = await parent.cancel(task.id)
    elapsed = time.perf_counter() - started
    assert canceled.status.state is TaskState.CANCELED, canceled.status
    return elapsed


async def measure(parent_url: str, counts: list[int], n: int) -> None:
    async with AndonClient(parent_url) as parent:
        await one_round(parent, 1)  # warm up: connections, imports
        for count in counts:
            times = [await one_round(parent, count) for _ in range(n)]
            print(row(f"{count} child{'ren' if count > 1 else ''}", times), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="cancels per number of children")
    parser.add_argument("--children", default="1,2,8", help="numbers of children")
    parser.add_argument("--servers", type=int, default=2, help="child servers")
    args = parser.parse_args()
    counts = [int(c) for c in args.children.split(",")]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        try:
            urls = []
            for number in range(args.servers):
                proc, url = serve(workdir, f"child{number}")
                procs.append(proc)
                urls.append(url)
            spec = "bench.delegation:agent"
            proc, parent_url = serve(
                workdir, "parent", spec, env={"ANDON_CHILD_URLS": ",".join(urls)}
            )
            procs.append(proc)
            print(
                f"# parent cancel → answer, by number of remote children "
                f"({platform.python_version()}, {args.servers} child servers, n={args.n})\n"
            )
            print("| children | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
            asyncio.run(measure(parent_url, counts, args.n))
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                proc.wait(30)


if __name__ == "__main__":
    main()
