"""andon side by side with the A2A SDK and Bindu, on one machine in one run (issue 8).

    make bench                                   # = .venv/bin/python -m bench.compare
    .venv/bin/python -m bench.compare --quick    # small counts, one round: a smoke run
    .venv/bin/python -m bench.compare --servers andon,a2a-sdk --rounds 3
    .venv/bin/python -m bench.compare --from-json bench/results/compare-….json  # re-render

Every server runs the same demo agent (bench/peers/README.md) pinned to one CPU with
`taskset`; this client runs pinned to another. Rounds alternate the servers (the order
rotates each round) so that drift of the machine hits all of them alike, and every
group of measurements starts its server afresh:

- round trips: `echo` send → completed result, over a raw keep-alive socket with
  prebuilt request bytes and with httpx; streaming `sleep 1`, time to the first and
  to the final event; the cancel call on a running `sleep`;
- work after cancel: `sleep`, `spin` and a `shell` loop, cancelled once running:
  trace lines written after the cancel answer, the shell's processes alive at the
  answer, the state once the work would have ended by itself;
- a stream dropped by its client (andon: the `cancel` disconnect policy; the peers
  have no such setting): does the task stop, how fast, lines after the drop;
- a crowd of concurrent streaming tasks (1,000): peak RSS of the server's process
  tree, and the time to cancel them all; the server's CPU time for the admissions and
  for the cancels, which other load on the machine disturbs less than their wall time;
- RSS after 5,000 `echo` tasks.

Each figure is the median over the rounds, with the lowest and highest round. The
result replaces the comparison section of docs/BENCHMARKS.md and is saved as JSON
under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import procs
from bench.dialects import (
    DIALECTS,
    JSON,
    TERMINAL,
    Dialect,
    RPCError,
    Template,
    encode,
    new_id,
)
from bench.peers import launch, setup_envs
from bench.rawhttp import AsyncConnection, Connection, HTTPError
from bench.report import render, write_section
from bench.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("andon", "a2a-sdk", "bindu")
KINDS = ("sleep", "spin", "shell")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    rounds: int = 5
    echo: int = 1000  # raw round trips per round (after the warm-up)
    echo_httpx: int = 300
    warmup: int = 100
    stream_samples: int = 5
    cancels: int = 30  # cancel calls per round
    work_seconds: float = 3.0  # length of each sleep/spin/shell task cancelled
    crowd: int = 1000  # concurrent streaming tasks
    crowd_deadline: float = 30.0  # seconds allowed for each step of the crowd
    crowd_settle: float = 2.0  # seconds the whole crowd streams before the cancels
    cancel_connections: int = 0  # connections the crowd's cancels go out on (0: one each)
    crowd_work: str = "sleep 120"  # each crowd task's text
    memory_tasks: int = 5000
    connections: int = 8  # concurrent connections of the memory run
    server_cpu: str = "0"
    client_cpu: int = 1


QUICK = Config(
    rounds=1,
    echo=100,
    echo_httpx=30,
    warmup=20,
    stream_samples=1,
    cancels=5,
    work_seconds=0.6,
    crowd=50,
    crowd_deadline=20.0,
    crowd_settle=0.5,
    memory_tasks=200,
)


# --- the servers ------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    dialect: Dialect
    workdir: Path
    trace: Path
    control: AsyncConnection | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def call(self, request: JSON) -> JSON:
        """One JSON-RPC call on the server's control connection (opened on first use)."""
        if self.control is None:
            self.control = await AsyncConnection.open(self.port)
        reply: JSON = json.loads(await self.control.exchange(encode(self.dialect, request)))
        return reply

    async def state(self, task_id: str) -> str:
        try:
            return self.dialect.state(self.dialect.task(await self.call(self.dialect.get(task_id))))
        except RPCError as exc:
            return f"error {exc}"

    async def start_task(self, text: str) -> str:
        """Send `text` without waiting for the task's end; its id."""
        reply = await self.call(self.dialect.send(text, new_id(), wait=False))
        return str(self.dialect.task(reply)["id"])


def server_args(name: str, workdir: Path, cfg: Config) -> list[str]:
    if name == "andon":
        # Every admitted task runs at once, as on a2a-sdk (andon's default is 64 and
        # queues the rest): the crowd measures that many running tasks on both.
        running = max(cfg.crowd, 1000)
        # The crowd holds a stream and a cancel connection per task at once: past
        # --max-connections (1,000 by default) andon would refuse them with 503.
        connections = str(2 * running + 100)
        return [
            *("--db", str(workdir / "andon.db"), "--max-concurrent", str(running)),
            *("--max-connections", connections),
        ]
    return []


@contextlib.asynccontextmanager
async def running(name: str, tmp: Path, cfg: Config, pin: bool) -> AsyncIterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))
    trace = workdir / "trace"
    port = launch.free_port()
    proc = await asyncio.to_thread(
        launch.start,
        name,
        port,
        trace,
        cpus=cfg.server_cpu if pin else None,
        args=server_args(name, workdir, cfg),
        log_path=workdir / "server.log",
    )
    server = Server(name, port, proc, DIALECTS[name], workdir, trace)
    try:
        yield server
    finally:
        if server.control is not None:
            server.control.close()
        launch.stop(proc)  # blocking on purpose: it must run even when cancelled


# --- what the work left behind ----------------------------------------------------


def trace_times(path: Path, task_id: str) -> list[int]:
    """Monotonic ns of each trace line the task's work wrote."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    prefix = task_id + " "
    return [int(line.split()[2]) for line in text.splitlines() if line.startswith(prefix)]


def line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@dataclass
class Work:
    """One cancellable task: its text, and where its work leaves marks."""

    kind: str
    seconds: float
    server: Server
    marks: Path  # the shell loop's own output; sleep and spin write the trace

    @property
    def text(self) -> str:
        if self.kind == "shell":
            steps = round(self.seconds / 0.1)
            return f"shell for i in $(seq {steps}); do echo tick >> {self.marks}; sleep 0.1; done"
        return f"{self.kind} {self.seconds:g}"

    def times(self, task_id: str) -> list[int]:
        return trace_times(self.server.trace, task_id)

    def lines(self, task_id: str) -> int:
        return line_count(self.marks) if self.kind == "shell" else len(self.times(task_id))

    def lines_after(self, task_id: str, since_ns: int, lines_then: int) -> int:
        if self.kind == "shell":  # `sh` writes no timestamps: count lines since then
            return line_count(self.marks) - lines_then
        return sum(1 for t in self.times(task_id) if t > since_ns)

    def survivors(self) -> list[int]:
        return procs.matching(str(self.marks)) if self.kind == "shell" else []

    async def started(self, task_id: str, deadline: float) -> None:
        """Wait until the work has written its first mark (Bindu may still be busy
        with the previous task: it runs one at a time)."""
        end = time.monotonic() + deadline
        while not self.lines(task_id):
            if time.monotonic() > end:
                raise TimeoutError(f"{self.server.name}: {self.kind} never started")
            await asyncio.sleep(0.005)


def new_work(server: Server, kind: str, seconds: float) -> Work:
    return Work(kind, seconds, server, server.workdir / f"marks-{new_id()}")


# --- round trips ------------------------------------------------------------------


def echo_templates(dialect: Dialect) -> tuple[Template, Template]:
    """The echo request, and the poll of its task (for servers that answer at once)."""
    task_id = new_id()
    send = Template(dialect, dialect.send("echo hi", task_id, wait=True), task_id)
    return send, Template(dialect, dialect.get(task_id), task_id)


def echo_raw(server: Server, n: int) -> tuple[list[float], float]:
    """`n` echo tasks one at a time on one keep-alive connection: latencies, wall time."""
    dialect = server.dialect
    send, poll = echo_templates(dialect)
    marker = dialect.completed_marker
    latencies = []
    with Connection(server.port) as conn:
        begin = time.perf_counter()
        for _ in range(n):
            request, task_id = send.fresh()
            t0 = time.perf_counter()
            body = conn.exchange(request)
            while marker not in body:
                if dialect.send_waits:
                    raise AssertionError(f"{server.name}: echo did not complete: {body[:300]!r}")
                body = conn.exchange(poll.fresh(task_id)[0])
            latencies.append(time.perf_counter() - t0)
        wall = time.perf_counter() - begin
    return latencies, wall


async def echo_httpx(server: Server, n: int) -> tuple[list[float], float]:
    dialect = server.dialect
    latencies = []
    url = f"http://127.0.0.1:{server.port}/"
    async with httpx.AsyncClient(headers=dialect.headers, timeout=30) as client:
        begin = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            reply = await client.post(url, json=dialect.send("echo hi", new_id(), wait=True))
            task = dialect.task(reply.json())
            while dialect.state(task) != "completed":
                if dialect.send_waits:
                    raise AssertionError(f"{server.name}: echo did not complete: {task}")
                reply = await client.post(url, json=dialect.get(task["id"]))
                task = dialect.task(reply.json())
            latencies.append(time.perf_counter() - t0)
        wall = time.perf_counter() - begin
    return latencies, wall


async def stream_timing(server: Server, text: str) -> tuple[float, float]:
    """Seconds from sending a streaming request to its first event and to the event
    carrying the task's final state."""
    conn = await AsyncConnection.open(server.port)
    try:
        request = encode(server.dialect, server.dialect.stream(text, new_id()))
        t0 = time.perf_counter()
        first = None
        async for data in conn.events(request):
            now = time.perf_counter()
            first = first if first is not None else now - t0
            _, state = server.dialect.event(json.loads(data))
            if state in TERMINAL:
                return first, now - t0
        raise AssertionError(f"{server.name}: the stream ended without a final state")
    finally:
        conn.close()


async def wait_state(server: Server, task_id: str, states: set[str], deadline: float) -> str:
    end = time.monotonic() + deadline
    while (state := await server.state(task_id)) not in states:
        if time.monotonic() > end:
            raise TimeoutError(f"{server.name}: task {task_id} still {state}")
        await asyncio.sleep(0.005)
    return state


async def cancel_latency(server: Server, seconds: float) -> float:
    """Seconds the cancel call of a running `sleep` takes to answer."""
    task_id = await server.start_task(f"sleep {seconds:g}")
    await wait_state(server, task_id, {"working"}, 30 + seconds)
    await asyncio.sleep(0.02)  # into its first step
    t0 = time.perf_counter()
    reply = await server.call(server.dialect.cancel(task_id))
    elapsed = time.perf_counter() - t0
    server.dialect.task(reply)  # raises on a JSON-RPC error
    return elapsed


async def round_trips(server: Server, cfg: Config) -> JSON:
    out: JSON = {}
    echo_raw(server, cfg.warmup)
    cpu = procs.cpu_seconds(server.pid)
    raw, wall = echo_raw(server, cfg.echo)
    cpu = procs.cpu_seconds(server.pid) - cpu
    out |= latency_figures("echo_raw", raw) | {"echo_raw.rps": len(raw) / wall}
    # What the server spent, whatever else ran on its CPU: robust to a busy machine.
    out["echo_raw.cpu_ms"] = cpu / len(raw) * 1000
    via, wall = await echo_httpx(server, cfg.echo_httpx)
    out |= latency_figures("echo_httpx", via) | {"echo_httpx.rps": len(via) / wall}
    timings = [await stream_timing(server, "sleep 1") for _ in range(cfg.stream_samples)]
    out["stream.first_ms"] = statistics.median(t[0] for t in timings) * 1000
    out["stream.final_ms"] = statistics.median(t[1] for t in timings) * 1000
    cancels = [await cancel_latency(server, 1.0) for _ in range(cfg.cancels)]
    out |= latency_figures("cancel", cancels)
    out["cancel.samples_ms"] = [c * 1000 for c in cancels]
    return out


def latency_figures(name: str, seconds: list[float]) -> JSON:
    ms = [s * 1000 for s in seconds]
    return {f"{name}.p50": statistics.median(ms), f"{name}.p99": percentile(ms, 99)}


# --- work after cancel ------------------------------------------------------------


async def cancel_running(server: Server, kind: str, seconds: float) -> JSON:
    """Cancel a running task of `kind`; what its work did after the answer."""
    work = new_work(server, kind, seconds)
    task_id = await server.start_task(work.text)
    await work.started(task_id, 30 + 2 * seconds)
    await asyncio.sleep(0.2)
    t0 = time.perf_counter()
    reply = await server.call(server.dialect.cancel(task_id))
    cancel_ms = (time.perf_counter() - t0) * 1000
    answered_ns = time.monotonic_ns()
    lines_then = work.lines(task_id)
    survivors = work.survivors()
    answered = server.dialect.state(server.dialect.task(reply))
    # Long enough for the work to have ended by itself had it not stopped.
    await asyncio.sleep(seconds + 0.5)
    out = {
        "cancel_ms": cancel_ms,
        "answer": answered,
        "lines_after": work.lines_after(task_id, answered_ns, lines_then),
        "state_after": await server.state(task_id),
    }
    if kind == "shell":
        out["survivors"] = len(survivors)
    procs.kill(work.survivors())
    return out


async def drop_stream(server: Server, kind: str, seconds: float) -> JSON:
    """Open a stream of a `kind` task, close the socket once the work runs."""
    work = new_work(server, kind, seconds)
    # andon's best setting: the stream's disconnect policy `cancel`; the peers
    # have no setting for it (bench/peers/README.md).
    extra = {"X-Andon-On-Disconnect": "cancel"} if server.name == "andon" else None
    conn = await AsyncConnection.open(server.port)
    request = server.dialect.stream(work.text, new_id())
    events = conn.events(encode(server.dialect, request, extra))
    task_id, _ = server.dialect.event(json.loads(await anext(events)))
    assert task_id, "the first event names no task"
    await work.started(task_id, 30 + 2 * seconds)
    await asyncio.sleep(0.2)
    await events.aclose()
    conn.close()
    closed_ns = time.monotonic_ns()
    lines_then = work.lines(task_id)
    t0 = time.perf_counter()
    stop_ms = None
    survivors = None
    while (elapsed := time.perf_counter() - t0) < seconds + 0.5:
        state = await server.state(task_id)
        if state in TERMINAL:
            if state == "canceled":
                stop_ms = elapsed * 1000
            break
        if survivors is None and elapsed > 0.5:
            survivors = len(work.survivors())
        await asyncio.sleep(0.01)
    if survivors is None:
        survivors = len(work.survivors())
    await asyncio.sleep(max(0.0, seconds + 0.5 - (time.perf_counter() - t0)))
    out = {
        "stop_ms": stop_ms,
        "lines_after": work.lines_after(task_id, closed_ns, lines_then),
        "state_after": await server.state(task_id),
    }
    if kind == "shell":
        out["survivors"] = survivors
    procs.kill(work.survivors())
    return out


async def after_cancel(server: Server, cfg: Config) -> JSON:
    out: JSON = {}
    for kind in KINDS:
        sample = await cancel_running(server, kind, cfg.work_seconds)
        out |= {f"kill.{kind}.{key}": value for key, value in sample.items()}
    for kind in KINDS:
        sample = await drop_stream(server, kind, cfg.work_seconds)
        out |= {f"drop.{kind}.{key}": value for key, value in sample.items()}
    return out


async def latency_group(server: Server, cfg: Config) -> JSON:
    return await round_trips(server, cfg) | await after_cancel(server, cfg)


# --- a crowd of streams, and memory -----------------------------------------------


@dataclass
class Crowd:
    admitted: dict[int, str] = dataclasses.field(default_factory=dict)  # stream → task id
    ended: set[int] = dataclasses.field(default_factory=set)
    all_admitted: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    events: int = 0  # received by all streams


async def crowd_member(server: Server, index: int, crowd: Crowd, size: int, text: str) -> None:
    conn = await AsyncConnection.open(server.port)
    try:
        request = encode(server.dialect, server.dialect.stream(text, new_id()))
        async for data in conn.events(request):
            crowd.events += 1
            task_id, state = server.dialect.event(json.loads(data))
            if index not in crowd.admitted and task_id:
                crowd.admitted[index] = task_id
                if len(crowd.admitted) == size:
                    crowd.all_admitted.set()
            if state in TERMINAL:
                break
        crowd.ended.add(index)
    except (HTTPError, OSError, ValueError, asyncio.IncompleteReadError):
        pass  # refused or cut off: it simply was not admitted, or ended early
    finally:
        conn.close()


async def cancel_all(
    server: Server,
    task_ids: list[str],
    connections: int,
    answered: dict[str, int],
    refused: list[str],
) -> None:
    """Cancel every task over `connections` keep-alive connections; `answered` gets
    the monotonic ns at which each cancel was answered, `refused` the tasks whose cancel
    got an HTTP error (their work after it is not work after a cancel answer)."""
    queue = list(task_ids)

    async def worker() -> None:
        conn = await AsyncConnection.open(server.port)
        try:
            while queue:
                task_id = queue.pop()
                try:
                    await conn.exchange(encode(server.dialect, server.dialect.cancel(task_id)))
                except HTTPError:
                    refused.append(task_id)
                    continue
                answered[task_id] = time.monotonic_ns()
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def within(deadline: float, aw: Awaitable[Any]) -> bool:
    try:
        await asyncio.wait_for(aw, deadline)
        return True
    except TimeoutError:
        return False


async def until(deadline: float, condition: Callable[[], bool]) -> bool:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.05)
    return True


def trace_index(path: Path) -> dict[str, list[int]]:
    """Every task's trace times, from one read of the file."""
    index: dict[str, list[int]] = {}
    with contextlib.suppress(FileNotFoundError), path.open() as lines:
        for line in lines:
            task_id, _, ns = line.split()
            index.setdefault(task_id, []).append(int(ns))
    return index


async def crowd_group(server: Server, cfg: Config) -> JSON:
    """`cfg.crowd` concurrent streams of `cfg.crowd_work` tasks (by default long `sleep`
    tasks, a progress event every 0.1 s each); peak RSS, events delivered, then cancel
    them all."""
    size = cfg.crowd
    before = procs.tree_rss(server.pid)
    crowd = Crowd()
    with procs.PeakSampler(server.pid) as sampler:
        cpu0, t0 = procs.cpu_seconds(server.pid), time.perf_counter()
        members = [
            asyncio.create_task(crowd_member(server, i, crowd, size, cfg.crowd_work))
            for i in range(size)
        ]
        await within(cfg.crowd_deadline, crowd.all_admitted.wait())
        admit_s = time.perf_counter() - t0
        admit_cpu_s = procs.cpu_seconds(server.pid) - cpu0
        events_then = crowd.events
        await asyncio.sleep(cfg.crowd_settle)  # every admitted task streaming progress
        events_per_s = (crowd.events - events_then) / cfg.crowd_settle
        task_ids = list(crowd.admitted.values())
        cpu0, t0 = procs.cpu_seconds(server.pid), time.perf_counter()
        answered: dict[str, int] = {}
        refused: list[str] = []
        # Every task's client cancels at the same moment, each on its own connection
        # (or, past the file descriptors a machine gives, a few tasks per connection).
        connections = min(len(task_ids), cfg.cancel_connections or len(task_ids))
        done = await within(
            cfg.crowd_deadline, cancel_all(server, task_ids, connections, answered, refused)
        )
        cancel_s = time.perf_counter() - t0 if done else None
        cancel_cpu_s = procs.cpu_seconds(server.pid) - cpu0 if done else None
        # Streams end with their tasks: worth waiting for only once all are cancelled.
        ended = done and await until(
            cfg.crowd_deadline, lambda: crowd.ended >= crowd.admitted.keys()
        )
        ended_s = time.perf_counter() - t0 if ended else None
        await asyncio.sleep(1.0)
    for member in members:
        member.cancel()
    await asyncio.gather(*members, return_exceptions=True)
    traces = trace_index(server.trace)
    lines_after = sum(
        1 for task_id, at in answered.items() for t in traces.get(task_id, ()) if t > at
    )
    return {
        "crowd.admitted": len(task_ids),
        "crowd.admit_s": admit_s,
        "crowd.admit_cpu_s": admit_cpu_s,
        "crowd.events_per_s": events_per_s,
        "crowd.rss_before_mib": before / MIB,
        "crowd.peak_mib": sampler.peak / MIB,
        "crowd.cancel_all_s": cancel_s,
        "crowd.cancel_cpu_s": cancel_cpu_s,
        "crowd.cancels_answered": len(answered),
        "crowd.cancels_refused": len(refused),
        "crowd.cancels_per_s": len(answered) / (cancel_s or cfg.crowd_deadline),
        "crowd.streams_ended_s": ended_s,
        "crowd.lines_after": lines_after,
    }


async def echo_many(server: Server, total: int, connections: int) -> float:
    """`total` echo tasks over `connections` raw connections; wall seconds."""
    dialect = server.dialect
    send, poll = echo_templates(dialect)
    left = total

    async def worker() -> None:
        nonlocal left
        conn = await AsyncConnection.open(server.port)
        try:
            while left > 0:
                left -= 1
                request, task_id = send.fresh()
                body = await conn.exchange(request)
                while dialect.completed_marker not in body:
                    body = await conn.exchange(poll.fresh(task_id)[0])
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - t0


async def memory_group(server: Server, cfg: Config) -> JSON:
    await echo_many(server, 50, 1)  # warm-up: imports and caches of the first requests
    await asyncio.sleep(0.5)
    before = procs.tree_rss(server.pid)
    wall = await echo_many(server, cfg.memory_tasks, cfg.connections)
    await asyncio.sleep(1.0)
    after = procs.tree_rss(server.pid)
    return {
        "memory.before_mib": before / MIB,
        "memory.after_mib": after / MIB,
        "memory.kib_per_task": (after - before) / 1024 / cfg.memory_tasks,
        "memory.tasks_per_s": cfg.memory_tasks / wall,
    }


GROUPS: tuple[Callable[[Server, Config], Awaitable[JSON]], ...] = (
    latency_group,
    crowd_group,
    memory_group,
)


# --- the run ----------------------------------------------------------------------


def rotated(names: tuple[str, ...], shift: int) -> list[str]:
    shift %= len(names)
    return [*names[shift:], *names[:shift]]


async def run(
    servers: tuple[str, ...],
    cfg: Config,
    pin: bool,
    groups: tuple[Callable[[Server, Config], Awaitable[JSON]], ...] = GROUPS,
) -> dict[str, list[JSON]]:
    """Per server, one dict of figures per round."""
    results: dict[str, list[JSON]] = {name: [] for name in servers}
    with tempfile.TemporaryDirectory(prefix="andon-compare-") as tmp:
        for round_no in range(cfg.rounds):
            for name in rotated(servers, round_no):
                figures: JSON = {}
                for group in groups:
                    log(f"round {round_no + 1}/{cfg.rounds}: {name} {group.__name__}")
                    async with running(name, Path(tmp), cfg, pin) as server:
                        figures |= await group(server, cfg)
                results[name].append(figures)
    return results


def log(text: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[compare {stamp}] {text}", file=sys.stderr, flush=True)


def python_of(name: str) -> str:
    python = sys.executable if name == "andon" else str(setup_envs.ENVS[name].python)
    code = (
        "import platform, importlib.metadata as m; "
        f"print(platform.python_version(), m.version({PACKAGES[name]!r}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


PACKAGES = {"andon": "andon", "a2a-sdk": "a2a-sdk", "bindu": "bindu"}


def machine(servers: tuple[str, ...], pin: bool, cfg: Config) -> JSON:
    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024 / 1024),
        "kernel": platform.release(),
        "versions": {name: python_of(name) for name in servers},
        "pinning": (
            f"server on CPU {cfg.server_cpu} (taskset -c {cfg.server_cpu}), "
            f"client on CPU {cfg.client_cpu} (sched_setaffinity)"
            if pin
            else "none (fewer than 2 CPUs)"
        ),
        "load_before": os.getloadavg(),
    }


def raise_fd_limit() -> None:
    """A thousand streams need a thousand sockets here and in the server (inherited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 65536))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@contextlib.contextmanager
def pinned(cfg: Config) -> Iterator[bool]:
    if (os.cpu_count() or 1) < 2:
        yield False
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cfg.client_cpu})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--rounds", type=int, help="override the rounds")
    parser.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--json", help="raw figures (default bench/results/compare-*.json)")
    parser.add_argument("--note", default="", help="a line about the machine's load")
    parser.add_argument("--from-json", help="measure nothing: write the section from a record")
    parser.add_argument("--crowd", type=int, help="streams in the crowd (default 1,000)")
    parser.add_argument(
        "--cancel-connections",
        type=int,
        help="connections of the crowd's cancels (default: one each)",
    )
    parser.add_argument(
        "--crowd-work",
        help="the crowd's task (default `sleep 120`); andon's `ask what?` waits for an"
        " answer, its stream ended at input-required: what is left is the cancels' own cost",
    )
    parser.add_argument(
        "--only",
        choices=[g.__name__ for g in GROUPS],
        help="one group of measurements; prints its figures, leaves the document alone",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        section = render(json.loads(Path(args.from_json).read_text()))
        write_section(Path(args.out), section)
        print(section)
        return
    cfg = QUICK if args.quick else Config()
    if args.rounds:
        cfg = dataclasses.replace(cfg, rounds=args.rounds)
    if args.crowd:
        # A bigger crowd takes longer to gather and to cancel: the deadline grows with it.
        deadline = max(cfg.crowd_deadline, args.crowd / 1000 * 6)
        cfg = dataclasses.replace(cfg, crowd=args.crowd, crowd_deadline=deadline)
    if args.cancel_connections:
        cfg = dataclasses.replace(cfg, cancel_connections=args.cancel_connections)
    if args.crowd_work:
        cfg = dataclasses.replace(cfg, crowd_work=args.crowd_work)
    servers = tuple(s.strip() for s in args.servers.split(",") if s.strip())
    unknown = set(servers) - set(SERVERS)
    if unknown or not servers:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    raise_fd_limit()
    # SIGTERM unwinds like Ctrl+C, so that every server started is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    for name in servers:
        if name != "andon":
            setup_envs.ensure(name)
    started = datetime.datetime.now(datetime.UTC)
    with pinned(cfg) as pin:
        info = machine(servers, pin, cfg)
        t0 = time.perf_counter()
        groups = tuple(g for g in GROUPS if args.only in (None, g.__name__))
        results = asyncio.run(run(servers, cfg, pin, groups))
    info |= {
        "load_after": os.getloadavg(),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": (time.perf_counter() - t0) / 60,
        "note": args.note,
        "command": _command(sys.argv[1:] if argv is None else argv),
        "config": dataclasses.asdict(cfg),
    }
    record = {"machine": info, "results": results}
    json_path = Path(
        args.json or ROOT / "bench" / "results" / f"compare-{started:%Y%m%dT%H%M}.json"
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=1))
    if args.only:
        print(json.dumps(results, indent=1))
        log(f"wrote {json_path}")
        return
    section = render(record)
    write_section(Path(args.out), section)
    print(section)
    log(f"wrote {args.out} and {json_path}")


def _command(args: list[str]) -> str:
    """The command line as documented: without --note (the note is shown on its own)."""
    args = [a for i, a in enumerate(args) if a != "--note" and (i == 0 or args[i - 1] != "--note")]
    args = [a for a in args if not a.startswith("--note=")]
    if not args:
        return "make bench   # = .venv/bin/python -m bench.compare"
    return " ".join([".venv/bin/python -m bench.compare", *args])


if __name__ == "__main__":
    main()
