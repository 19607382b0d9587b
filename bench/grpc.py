"""echo over gRPC beside JSON-RPC, in one run against one `andon serve --grpc-port`:

    python -m bench.grpc [--echo 500] [--concurrency 16]

A blocking SendMessage of `echo <n>` (the answer is the completed task), once over
JSON-RPC (bench/rawhttp.py, one keep-alive connection per worker) and once over gRPC
(grpc.aio, one channel), first one at a time (latency), then `--concurrency` at once (throughput).
The rounds alternate between the two bindings so that the machine's load falls on both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx

from andon.grpc_binding.messages import from_json, message_class
from bench.rawhttp import AsyncConnection, build_request
from bench.stats import row, summary_ms
from tests.cluster import free_port

Echo = Callable[[int, int], Awaitable[None]]
"""One echo task: its number, and the worker's slot (its own connection)."""
ROUNDS = 3


def message(n: int) -> dict[str, object]:
    return {
        "messageId": f"m{n}-{time.monotonic_ns()}",
        "role": "ROLE_USER",
        "parts": [{"text": f"echo {n}"}],
    }


async def jsonrpc_echo(port: int, slots: int) -> Echo:
    """Over bench/rawhttp.py's keep-alive connections, one per slot (httpx would cost
    the client more than the server's route)."""
    connections = [await AsyncConnection.open(port) for _ in range(slots)]
    headers = {"Content-Type": "application/json", "A2A-Version": "1.0"}

    async def echo(n: int, slot: int) -> None:
        body = {
            "jsonrpc": "2.0",
            "id": n,
            "method": "SendMessage",
            "params": {"message": message(n)},
        }
        answer = await connections[slot].exchange(
            build_request("/", json.dumps(body).encode(), headers, port=port)
        )
        reply = json.loads(answer)
        assert reply["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", reply

    return echo


async def grpc_echo(channel: grpc.aio.Channel) -> Echo:
    request = message_class("lf.a2a.v1.SendMessageRequest")
    response = message_class("lf.a2a.v1.SendMessageResponse")
    call = channel.unary_unary(
        "/lf.a2a.v1.A2AService/SendMessage",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )

    async def echo(n: int, slot: int) -> None:
        answer = await call(from_json({"message": message(n)}, "lf.a2a.v1.SendMessageRequest"))
        assert answer.task.status.state == 3, answer  # type: ignore[attr-defined]

    return echo


async def latencies(echo: Echo, n: int) -> list[float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        await echo(i, 0)
        times.append(time.perf_counter() - started)
    return times


async def rate(echo: Echo, n: int, concurrency: int) -> float:
    counter = iter(range(n))

    async def worker(slot: int) -> None:
        for i in counter:
            await echo(i, slot)

    started = time.perf_counter()
    await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
    return n / (time.perf_counter() - started)


async def main(n: int, concurrency: int) -> None:
    port, grpc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "andon", "serve", "--port", str(port)),
            *("--grpc-port", str(grpc_port)),
            *("--db", str(Path(tmp) / "echo.db"), "--log-level", "warning"),
            *("--max-concurrent", "1000"),
            cwd=tmp,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                while True:
                    try:
                        await http.get("/.well-known/agent-card.json")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                    echoes = {
                        "JSON-RPC": await jsonrpc_echo(port, concurrency),
                        "gRPC": await grpc_echo(channel),
                    }
                    for echo in echoes.values():
                        await latencies(echo, 20)  # warm-up: connections, first requests
                    times: dict[str, list[float]] = {name: [] for name in echoes}
                    rates: dict[str, list[float]] = {name: [] for name in echoes}
                    for _ in range(ROUNDS):
                        for name, echo in echoes.items():
                            times[name] += await latencies(echo, n // ROUNDS)
                            rates[name].append(await rate(echo, n // ROUNDS, concurrency))
        finally:
            server.terminate()
            await server.wait()
    print(f"## echo over JSON-RPC and gRPC ({n} tasks each, {ROUNDS} alternating rounds)\n")
    print("| binding | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    for name, values in times.items():
        print(row(f"{name}, one at a time", values))
    print(f"\n| binding | tasks/s at {concurrency} at once (median of rounds) |\n|---|---|")
    medians = {name: sorted(r)[len(r) // 2] for name, r in rates.items()}
    for name, value in medians.items():
        print(f"| {name} | {value:.0f} |")
    ratio = summary_ms(times["gRPC"])["p50"] / summary_ms(times["JSON-RPC"])["p50"]
    print(
        f"\ngRPC / JSON-RPC: p50 latency x {ratio:.2f}, throughput x "
        f"{medians['gRPC'] / medians['JSON-RPC']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--echo", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.echo, args.concurrency))
