"""What an `echo` request costs `andon serve` (SQLite), and where that time goes:

    python -m bench.profile [--n 3000] [--rounds 3] [--against OTHER_PYTHON]

For each interpreter (this one, and `--against` another environment's, to compare two
versions of andon in one run, round by round): the server's idle RSS, then its CPU time
(user + system, read from /proc) per blocking `SendMessage echo` sent one at a time over
a raw keep-alive socket, and the round trip's median. CPU time is what other load on the
machine disturbs least. Then one more server of this interpreter runs under cProfile for
`--n` requests: the profile is summed by layer (uvicorn, Starlette, pydantic, andon's
own modules, SQLite, asyncio, ...), with the SQL statements, commits and event-loop
turns per request and the costliest functions. The profiler slows everything about 2x;
its shares, not its times, are the point.

The server is pinned to CPU 0 (taskset), the client to CPU 1.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.peers.launch import free_port, start, stop
from bench.procs import cpu_seconds, tree_rss
from bench.rawhttp import Connection, build_request

HEADERS = {"content-type": "application/json", "A2A-Version": "1.0"}
WARMUP = 200

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("uvicorn + httptools", ("/uvicorn/", "httptools")),
    ("starlette", ("/starlette/",)),
    ("pydantic", ("/pydantic/", "pydantic_core")),
    ("andon.protocol (models, codecs)", ("/andon/protocol/",)),
    ("andon.server", ("/andon/server/",)),
    ("andon.service", ("/andon/service.py",)),
    ("andon.runtime + dispatch", ("/andon/runtime/", "/andon/dispatch/", "/andon/agents/")),
    ("andon.store + sqlite3", ("/andon/store/", "sqlite3")),
    (
        "telemetry + logging",
        ("/andon/telemetry/", "/logging/", "prometheus_client", "opentelemetry"),
    ),
    ("json", ("/json/", "_json")),
    ("asyncio + sockets", ("/asyncio/", "selectors", "socket", "epoll", "select.")),
]


def request_bytes() -> bytes:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {
            "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "echo hi"}]}
        },
    }
    return build_request("/", json.dumps(body).encode(), HEADERS)


def round_trips(port: int, n: int) -> list[float]:
    request = request_bytes()
    latencies = []
    with Connection(port) as conn:
        for _ in range(n):
            t0 = time.perf_counter()
            reply = conn.exchange(request)
            latencies.append(time.perf_counter() - t0)
            assert b"TASK_STATE_COMPLETED" in reply, reply[:200]
    return latencies


def measure(python: str, n: int, workdir: str) -> dict[str, float]:
    """One fresh server of `python`: idle RSS, CPU ms per request, round trip p50 ms."""
    port = free_port()
    db = tempfile.mktemp(suffix=".db", dir=workdir)
    proc = start(
        "andon",
        port,
        f"{workdir}/trace",
        cpus="0",
        python=python,
        args=["--db", db, "--log-level", "warning"],
    )
    try:
        time.sleep(0.5)  # let start-up settle before reading the idle footprint
        idle = tree_rss(proc.pid) / 2**20
        round_trips(port, WARMUP)
        cpu0 = cpu_seconds(proc.pid)
        latencies = round_trips(port, n)
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        stop(proc)
    return {
        "rss_idle_mib": idle,
        "cpu_ms": cpu / n * 1000,
        "p50_ms": statistics.median(latencies) * 1000,
    }


PROFILED = """
import cProfile, runpy, signal, sys
profile, out = cProfile.Profile(), sys.argv[1]
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
signal.signal(signal.SIGUSR2, lambda *_: (profile.disable(), profile.dump_stats(out)))
sys.argv = ["andon", *sys.argv[4:]]
runpy.run_module("andon", run_name="__main__")
"""
"""andon serve with a profiler that SIGUSR1 starts and SIGUSR2 stops and writes out."""


def profiled(n: int, workdir: str) -> pstats.Stats:
    port = free_port()
    out = Path(workdir) / "server.prof"
    proc = start(
        "andon",
        port,
        f"{workdir}/trace",
        cpus="0",
        python_args=["-c", PROFILED, str(out)],
        args=["--db", f"{workdir}/profiled.db", "--log-level", "warning"],
    )
    try:
        round_trips(port, WARMUP)
        os.kill(proc.pid, signal.SIGUSR1)
        round_trips(port, n)
        os.kill(proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # written in one go, but let it finish
    finally:
        stop(proc)
    return pstats.Stats(str(out))


def layer_of(filename: str, name: str) -> str:
    where = filename if filename != "~" else name
    for layer, needles in LAYERS:
        if any(needle in where for needle in needles):
            return layer
    return "other"


def report(stats: pstats.Stats, n: int, top: int) -> None:
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values())
    layers: dict[str, float] = {}
    statements = commits = turns = 0
    for (filename, _line, name), (_cc, calls, tottime, _ct, _callers) in table.items():
        layer = layer_of(filename, name)
        layers[layer] = layers.get(layer, 0.0) + tottime
        if filename.endswith("asyncio/base_events.py") and name == "_run_once":
            turns += calls  # each turn of the event loop costs a poll and its callbacks
        if "sqlite3.Connection" in name and name.split("'")[1] in ("execute", "executemany"):
            statements += calls
        if filename.endswith("andon/store/sqlite.py") and name in ("_commit", "__exit__"):
            commits += calls  # group commit's, or (before it) each write's own
    runs = n
    print(f"\nProfile of {runs} echo requests (cProfile; shares of the profiled time)")
    per = (
        f"{statements / runs:.1f} SQL statements, {commits / runs:.2f} commits, "
        f"{turns / runs:.1f} loop turns"
    )
    print(f"per request: {per}")
    print("| layer | share | µs per request (profiled) |\n|---|---|---|")
    for layer, seconds in sorted(layers.items(), key=lambda item: -item[1]):
        print(f"| {layer} | {seconds / total:.0%} | {seconds / runs * 1e6:.0f} |")
    print(f"\nCostliest {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", help="another environment's python, to compare with")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    if Path("/usr/bin/taskset").exists():
        os.sched_setaffinity(0, {1})
    pythons = {"this": sys.executable}
    if args.against:
        pythons["against"] = args.against
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="andon-profile-") as workdir:
        figures: dict[str, list[dict[str, float]]] = {name: [] for name in pythons}
        for _ in range(args.rounds):
            for name, python in pythons.items():
                figures[name].append(measure(python, args.n, workdir))
        print("| andon | server RSS idle (MiB) | server CPU per echo (ms) | echo p50 (ms) |")
        print("|---|---|---|---|")
        for name, rounds in figures.items():
            cells = [
                statistics.median(r[key] for r in rounds)
                for key in ("rss_idle_mib", "cpu_ms", "p50_ms")
            ]
            label = f"{name} ({pythons[name]})"
            print(f"| {label} | {cells[0]:.1f} | {cells[1]:.3f} | {cells[2]:.3f} |")
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if not args.no_profile:
            report(profiled(args.n, workdir), args.n, args.top)


if __name__ == "__main__":
    main()
