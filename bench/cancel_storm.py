"""A storm of cancels: `--tasks` CancelTask at once from one client, and whose time
each answer waits for.

    python -m bench.cancel_storm [--tasks 200] [--rounds 3]

`andon serve` (SQLite, pinned to CPU 0, `--max-concurrent 64`: 64 tasks run, the rest
wait queued) is given `--tasks` `sleep 30` tasks; then one client, pinned to CPU 1,
sends a CancelTask for each over as many keep-alive connections, all at once, and
waits for every answer (each must be `canceled`). Each round does it twice: with a bare
client (bench.rawhttp: prebuilt bytes, no parsing beyond HTTP framing) and with httpx
(one AsyncClient whose pool holds the whole storm). Prints for each the answers' p50 /
p99 / max, the storm's wall time, and the CPU time the server (its process tree) and
the client spent on it, per cancel (medians over the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.http import HEADERS, message, rpc
from bench.peers.launch import free_port, start, stop
from bench.procs import cpu_seconds
from bench.rawhttp import AsyncConnection, build_request
from bench.stats import percentile

RUNNING = 64


def rpc_body(method: str, params: dict[str, object]) -> bytes:
    return json.dumps(rpc(method, params)).encode()


async def sleep_tasks(port: int, count: int) -> list[str]:
    """Submit `count` long sleeps; returns their ids once the first 64 run."""
    connection = await AsyncConnection.open(port)
    try:
        ids = []
        for _ in range(count):
            params = {**message("sleep 30"), "configuration": {"returnImmediately": True}}
            reply = await connection.exchange(
                build_request("/", rpc_body("SendMessage", params), HEADERS)
            )
            ids.append(json.loads(reply)["result"]["task"]["id"])
        listing = build_request(
            "/", rpc_body("ListTasks", {"pageSize": 1, "status": "TASK_STATE_WORKING"}), HEADERS
        )
        deadline = time.monotonic() + 30
        while json.loads(await connection.exchange(listing))["result"]["totalSize"] < min(
            count, RUNNING
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the sleep tasks did not start")
            await asyncio.sleep(0.05)
        return ids
    finally:
        connection.close()


Cancel = Callable[[str], Awaitable[bytes]]


async def storm(ids: list[str], cancel: Cancel, server_pid: int) -> dict[str, float]:
    answered: list[float] = []

    async def one(task_id: str) -> None:
        began = time.perf_counter()
        reply = json.loads(await cancel(task_id))
        answered.append(time.perf_counter() - began)
        state = reply["result"]["status"]["state"]
        assert state == "TASK_STATE_CANCELED", reply

    server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(one(task_id) for task_id in ids))
    wall = time.perf_counter() - began
    ms = [a * 1000 for a in answered]
    return {
        "p50": statistics.median(ms),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "wall": wall * 1000,
        "server": (cpu_seconds(server_pid) - server_cpu) * 1000 / len(ids),
        "client": (time.process_time() - client_cpu) * 1000 / len(ids),
    }


async def bare_storm(port: int, ids: list[str], server_pid: int) -> dict[str, float]:
    connections = [await AsyncConnection.open(port) for _ in ids]
    free = list(connections)

    async def cancel(task_id: str) -> bytes:
        connection = free.pop()
        return await connection.exchange(
            build_request("/", rpc_body("CancelTask", {"id": task_id}), HEADERS)
        )

    try:
        return await storm(ids, cancel, server_pid)
    finally:
        for connection in connections:
            connection.close()


async def httpx_storm(port: int, ids: list[str], server_pid: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=len(ids), max_keepalive_connections=len(ids))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits, timeout=60) as http:
        await asyncio.gather(*(http.get("/healthz") for _ in ids))  # open the connections

        async def cancel(task_id: str) -> bytes:
            reply = await http.post("/", content=rpc_body("CancelTask", {"id": task_id}))
            return reply.content

        return await storm(ids, cancel, server_pid)


async def run(tasks: int, rounds: int) -> None:
    port = free_port()
    results: dict[str, list[dict[str, float]]] = {"bare client": [], "httpx": []}
    with tempfile.TemporaryDirectory() as folder:
        server = start(
            "andon",
            port,
            os.path.join(folder, "trace"),
            cpus="0",
            args=["--db", os.path.join(folder, "bench.db"), "--max-concurrent", str(RUNNING)],
        )
        try:
            for _ in range(rounds):
                for client, measure in (("bare client", bare_storm), ("httpx", httpx_storm)):
                    ids = await sleep_tasks(port, tasks)
                    await asyncio.sleep(0.5)  # past the start-up of the running ones
                    results[client].append(await measure(port, ids, server.pid))
        finally:
            stop(server)
    print(
        f"{tasks} CancelTask at once ({RUNNING} of the tasks running, the rest queued), "
        f"median of {rounds} rounds\n"
    )
    print(
        "| client | answer p50 ms | p99 ms | max ms | storm wall ms | server CPU ms / cancel "
        "| client CPU ms / cancel |\n|---|---|---|---|---|---|---|"
    )
    for client, runs in results.items():
        m = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"| {client} | {m['p50']:.1f} | {m['p99']:.1f} | {m['max']:.1f} | {m['wall']:.1f} "
            f"| {m['server']:.2f} | {m['client']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    asyncio.run(run(args.tasks, args.rounds))


if __name__ == "__main__":
    main()
