"""Over real HTTP against `andon serve` (embedded default, SQLite):

    python -m bench.http [--n 2000] [--cancels 300]

- `SendMessage` round trip for `echo` (blocking, task durably stored), one request at a
  time on a keep-alive connection, measured two ways: with httpx (what users feel)
  and with a raw socket sending prebuilt request bytes (what the server costs);
- the time from sending `CancelTask` to its response with `canceled`, for `sleep`,
  `spin` and `shell` tasks.

The server runs in its own process, pinned to CPU 0; the client to CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx

from bench.peers.launch import free_port, start, stop
from bench.rawhttp import Connection, build_request
from bench.stats import row, summary_ms

HEADERS = {"content-type": "application/json", "A2A-Version": "1.0"}


def rpc(method: str, params: dict[str, object], request_id: int = 1) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def message(text: str) -> dict[str, object]:
    return {
        "message": {
            "messageId": os.urandom(8).hex(),
            "role": "ROLE_USER",
            "parts": [{"text": text}],
        }
    }


def raw_round_trips(port: int, n: int) -> list[float]:
    body = json.dumps(rpc("SendMessage", message("echo hi"))).encode()
    request = build_request("/", body, HEADERS)
    latencies = []
    with Connection(port) as conn:
        for _ in range(n):
            t0 = time.perf_counter()
            reply = conn.exchange(request)
            latencies.append(time.perf_counter() - t0)
            assert b"TASK_STATE_COMPLETED" in reply, reply[:200]
    return latencies


async def httpx_round_trips(url: str, n: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(headers=HEADERS) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            reply = await client.post(url, json=rpc("SendMessage", message("echo hi")))
            latencies.append(time.perf_counter() - t0)
            assert "TASK_STATE_COMPLETED" in reply.text
    return latencies


async def cancel_latencies(url: str, text: str, n: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(headers=HEADERS, timeout=30) as client:
        for _ in range(n):
            params = {**message(text), "configuration": {"returnImmediately": True}}
            task = (await client.post(url, json=rpc("SendMessage", params))).json()["result"][
                "task"
            ]
            while task["status"]["state"] == "TASK_STATE_SUBMITTED":
                task = (await client.post(url, json=rpc("GetTask", {"id": task["id"]}))).json()[
                    "result"
                ]
            await asyncio.sleep(0.005)  # let the work begin (thread started, process spawned)
            t0 = time.perf_counter()
            reply = (await client.post(url, json=rpc("CancelTask", {"id": task["id"]}))).json()
            latencies.append(time.perf_counter() - t0)
            assert reply["result"]["status"]["state"] == "TASK_STATE_CANCELED", reply
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--cancels", type=int, default=300)
    args = parser.parse_args()
    if Path("/usr/bin/taskset").exists():
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        options = ["--db", f"{workdir}/bench.db", "--log-level", "warning"]
        server = start("andon", port, f"{workdir}/trace", cpus="0", args=options)
        url = f"http://127.0.0.1:{port}/"
        try:
            raw_round_trips(port, 200)  # warm-up
            raw = raw_round_trips(port, args.n)
            via_httpx = asyncio.run(httpx_round_trips(url, args.n))
            print("# over HTTP, `andon serve` (server on CPU 0, client on CPU 1)\n")
            print("| measurement | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
            print(row("SendMessage echo, raw socket", raw))
            print(row("SendMessage echo, httpx", via_httpx))
            for kind, text in (
                ("sleep", "sleep 300"),
                ("spin", "spin 300"),
                ("shell", "shell sleep 300"),
            ):
                print(
                    row(
                        f"CancelTask → canceled, {kind}",
                        asyncio.run(cancel_latencies(url, text, args.cancels)),
                    ),
                    flush=True,
                )
            rps = 1000 / summary_ms(raw)["p50"]
            print(f"\necho, one connection, raw socket: {rps:.0f} requests/s at the median")
        finally:
            stop(server)


if __name__ == "__main__":
    main()
