"""Does a flood of big requests stall the server? Over real HTTP against `andon serve`:

    python -m bench.big_requests [--seconds 20] [--senders 2]

While `--senders` clients post big requests back to back — a message of 700,000
empty parts (9.8 MB, refused by the JSON node limit), a message of 101 parts
(refused by the parts limit) and one of 100 parts (accepted, the largest allowed)
in turn — one client measures `GET /healthz` and another `CancelTask` of running
`sleep` tasks, one at a time. Prints p50 / p99 / max of each, and the same with no
big requests as the baseline. The server is pinned to CPU 0, the clients to CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import tempfile
import time

import httpx

from bench.peers.launch import free_port, start, stop
from bench.stats import row

HEADERS = {"content-type": "application/json", "A2A-Version": "1.0"}


def send_body(parts: int, text: str = "") -> bytes:
    message = {
        "messageId": os.urandom(8).hex(),
        "role": "ROLE_USER",
        "parts": [{"text": text}] * parts,
    }
    params = {"message": message, "configuration": {"returnImmediately": True}}
    return json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": params}
    ).encode()


async def flood(url: str, until: float) -> int:
    """Big requests back to back until `until`; returns how many were sent."""
    bodies = [send_body(700_000), send_body(101, "x"), send_body(100, "echo")]
    sent = 0
    async with httpx.AsyncClient(timeout=60) as http:
        while time.monotonic() < until:
            await http.post(url, content=bodies[sent % len(bodies)], headers=HEADERS)
            sent += 1
    return sent


async def probe_health(url: str, until: float) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(timeout=60) as http:
        while time.monotonic() < until:
            t0 = time.perf_counter()
            assert (await http.get(f"{url}/healthz")).status_code == 200
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)
    return latencies


async def probe_cancel(url: str, until: float) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(timeout=60) as http:
        while time.monotonic() < until:
            reply = await http.post(url, content=send_body(1, "sleep 30"), headers=HEADERS)
            task_id = reply.json()["result"]["task"]["id"]
            cancel = {"jsonrpc": "2.0", "id": 2, "method": "CancelTask", "params": {"id": task_id}}
            t0 = time.perf_counter()
            answer = await http.post(url, json=cancel, headers=HEADERS)
            latencies.append(time.perf_counter() - t0)
            assert answer.json()["result"]["status"]["state"] == "TASK_STATE_CANCELED", answer.text
    return latencies


def flood_process(url: str, until: float, sent: multiprocessing.SimpleQueue[int]) -> None:
    sent.put(asyncio.run(flood(url, until)))


async def measure(url: str, seconds: float, senders: int) -> tuple[list[float], list[float], int]:
    """The probes in this process, each sender in a process of its own: a client's
    loop busy writing 10 MB must not delay the probes' own measurements."""
    until = time.monotonic() + seconds
    spawn = multiprocessing.get_context("spawn")  # not a fork of a running event loop
    sent: multiprocessing.SimpleQueue[int] = spawn.SimpleQueue()
    floods = [spawn.Process(target=flood_process, args=(url, until, sent)) for _ in range(senders)]
    for process in floods:
        process.start()
    health, cancels = await asyncio.gather(probe_health(url, until), probe_cancel(url, until))
    for process in floods:
        await asyncio.to_thread(process.join)
    return health, cancels, sum(sent.get() for _ in floods)


async def run(seconds: float, senders: int) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        server = start(
            "andon",
            port,
            os.path.join(folder, "trace"),
            cpus="0",
            args=["--db", os.path.join(folder, "bench.db")],
        )
        try:
            url = f"http://127.0.0.1:{port}"
            print("| probe | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
            health, cancels, _ = await measure(url, seconds, 0)
            print(row("/healthz, no big requests", health))
            print(row("CancelTask, no big requests", cancels))
            health, cancels, sent = await measure(url, seconds, senders)
            print(row(f"/healthz, {senders} senders of big requests", health))
            print(row(f"CancelTask, {senders} senders of big requests", cancels))
            print(f"\nbig requests sent: {sent} in {seconds:g} s")
        finally:
            stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--senders", type=int, default=2)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    asyncio.run(run(args.seconds, args.senders))


if __name__ == "__main__":
    main()
