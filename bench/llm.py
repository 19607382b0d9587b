"""Token streams that stop, and what streaming them costs (issue 13).

    .venv/bin/python -m bench.llm                          # both parts, full counts
    .venv/bin/python -m bench.llm --quick                  # small counts: a smoke run
    .venv/bin/python -m bench.llm --only cancel --cancels 200
    .venv/bin/python -m bench.llm --only stream --streams 1,100,1000 --seconds 2

The model server is andon.testing.fake_llm, run as a process of its own (its token log
read over `GET /log`); it stops generating when its client disconnects, as vLLM's and
llama.cpp's servers do. With `--pin`, servers run on CPU 0 (taskset) and the fake model
server and this client on CPU 1; without it (the default, better on a machine others
share: a pinned process cannot move off a busy core) the scheduler places them.

**Tokens after the cancel answer.** One server at a time, `--cancels` times: start a task
whose model call streams 200 tokens/s, cancel it once 5 to 24 tokens were generated,
and count the tokens the model server generated after the cancel's answer reached this
client (monotonic clock, the same in every process; a token counts if generated within
`--window` s after the answer). Three servings of the same call:
examples/llm_agent.py (andon.llm) and examples/openai_agent.py (the official client on
`ctx.http`) under `andon serve`, and the openai-client code under a2a-sdk 1.3
(bench/peers/a2a_sdk_llm_server.py). Two of a LangGraph node: examples/langgraph_agent.py
(andon.integrations.langgraph) under `andon serve`, and its assistant node under
LangGraph's own server (`langgraph dev`, bench/peers/langgraph_dev_server.py), started
and cancelled through LangGraph's API as its SDK does (a background run; `POST
.../cancel?wait=true`, whose run then reads `interrupted`), or through its A2A endpoint
(message/stream kept open, then tasks/cancel). And the agent frameworks,
each under `andon serve` and served the way its users serve it today: a pydantic-ai agent
(examples/pydantic_ai_agent.py; through FastA2A's `agent_to_a2a`,
bench/peers/fasta2a_pydantic_ai_server.py) and an OpenAI Agents SDK agent
(examples/openai_agents_agent.py; `Runner.run_streamed` in an a2a-sdk 1.3 executor,
bench/peers/a2a_sdk_agents_server.py). A server whose cancel answers only once the work
ended shows 0 tokens after its answer: the tokens generated after the cancel was sent
say what it let run.

**Streaming cost.** `andon serve examples/llm_agent.py:agent` (SQLite) with N concurrent
tasks, each streaming `--seconds` s of tokens at 200 tokens/s into its artifact. The
server's CPU time per token; events appended (= store commits: one commit each, without
group commit) per second; the pace the streams kept; and for up to 20 followers
(SendStreamingMessage), the delay from a token's generation to its artifact event at the
follower.

Prints markdown tables and saves JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from andon.client.sse import read_events
from bench import procs
from bench.dialects import A2A10, JSON, FastA2A
from bench.peers import launch
from bench.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DIALECT = A2A10()
SERVER_CPU, CLIENT_CPU = "0", 1
PIN = {"on": False}
RATE = 200.0
SERVINGS: dict[str, tuple[str, list[str]]] = {
    "andon.llm (andon)": ("andon", [f"{ROOT / 'examples' / 'llm_agent.py'}:agent"]),
    "openai client on ctx.http (andon)": (
        "andon",
        [f"{ROOT / 'examples' / 'openai_agent.py'}:agent"],
    ),
    "openai client (a2a-sdk 1.3)": ("a2a-sdk-llm", []),
    "LangGraph graph_agent (andon)": (
        "andon",
        [f"{ROOT / 'examples' / 'langgraph_agent.py'}:agent"],
    ),
    "LangGraph (langgraph dev 0.16)": ("langgraph-dev", []),
    "LangGraph A2A endpoint (langgraph dev 0.16)": ("langgraph-dev", ["a2a"]),
    "pydantic-ai pydantic_agent (andon)": (
        "andon",
        [f"{ROOT / 'examples' / 'pydantic_ai_agent.py'}:agent"],
    ),
    "pydantic-ai agent_to_a2a (fasta2a 2.1)": ("fasta2a-pydantic-ai", []),
    "Agents SDK openai_agent (andon)": (
        "andon",
        [f"{ROOT / 'examples' / 'openai_agents_agent.py'}:agent"],
    ),
    "Agents SDK run_streamed (a2a-sdk 1.3)": ("a2a-sdk-agents", []),
}
CANCELED = {"canceled", "interrupted"}
"""A task's (A2A) or a run's (LangGraph API: cancel's default action) state after a cancel."""
PEER_DIALECTS: dict[str, A2A10 | FastA2A] = {"fasta2a-pydantic-ai": FastA2A()}
"""The dialect of a peer that does not speak A2A 1.0."""


# --- the fake model server, as a process ----------------------------------------------


@dataclass
class FakeModel:
    proc: subprocess.Popen[bytes]
    url: str
    http: httpx.AsyncClient

    async def generations(self, start: int = 0) -> list[JSON]:
        reply = await self.http.get(f"{self.url}/log", params={"from": start})
        return list(reply.json()["generations"])

    async def find(self, marker: str, start: int, timeout: float = 20.0) -> tuple[int, JSON]:
        """The generation whose user text holds `marker`, once the server has it."""
        deadline = time.monotonic() + timeout
        while True:
            for i, generation in enumerate(await self.generations(start)):
                if marker in generation["user"]:
                    return start + i, generation
            if time.monotonic() > deadline:
                raise TimeoutError(f"no model call for {marker}")
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def fake_model(workdir: Path) -> AsyncIterator[FakeModel]:
    port = launch.free_port()
    log = (workdir / "fake-llm.log").open("wb")
    argv = [sys.executable, "-m", "andon.testing.fake_llm", "--port", str(port)]
    argv += ["--rate", str(RATE)]
    if PIN["on"]:
        argv = ["taskset", "-c", str(CLIENT_CPU), *argv]
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=60) as http:
        deadline = time.monotonic() + 20
        while True:
            try:
                await http.get(f"{url}/log")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the fake model server did not start") from None
                await asyncio.sleep(0.05)
        try:
            yield FakeModel(proc, url, http)
        finally:
            launch.stop(proc)
            log.close()


@contextlib.asynccontextmanager
async def serving(
    peer: str, args: list[str], fake: FakeModel, workdir: Path, extra: tuple[str, ...] = ()
) -> AsyncIterator[tuple[subprocess.Popen[bytes], httpx.AsyncClient]]:
    port = launch.free_port()
    env = {
        "OPENAI_BASE_URL": f"{fake.url}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "ANDON_LLM_MODEL": "fake",
    }
    if peer == "andon":
        args = [*args, "--db", str(workdir / f"andon-{port}.db"), "--log-level", "warning", *extra]
    proc = await asyncio.to_thread(
        launch.start,
        peer,
        port,
        workdir / "trace",
        env=env,
        cpus=SERVER_CPU if PIN["on"] else None,
        args=args,
        log_path=workdir / f"{peer}-{port}.log",
    )
    # Idle connections are dropped before uvicorn's 5 s keep-alive would close them
    # under a request (a POST is not retried).
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits
        ) as http:
            yield proc, http
    finally:
        launch.stop(proc)


async def rpc(http: httpx.AsyncClient, request: JSON, dialect: A2A10 | FastA2A = DIALECT) -> JSON:
    reply = await http.post("/", json=request, headers=dialect.headers)
    return reply.json()  # type: ignore[no-any-return]


async def poll(check: Callable[[], Awaitable[bool]], timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


# --- part 1: tokens after the cancel answer --------------------------------------------


async def cancels(name: str, fake: FakeModel, workdir: Path, n: int, window: float) -> JSON:
    peer, args = SERVINGS[name]
    dialect = PEER_DIALECTS.get(peer, DIALECT)
    samples: list[JSON] = []
    begin, stop = (
        functools.partial(a2a_start, dialect=dialect),
        functools.partial(a2a_cancel, dialect=dialect),
    )
    if peer == "langgraph-dev":  # its own API, or with args ["a2a"] its A2A endpoint
        begin, stop = (
            (langgraph_a2a_start, langgraph_a2a_cancel)
            if args
            else (langgraph_start, langgraph_cancel)
        )
        args = []
    async with serving(peer, args, fake, workdir) as (_, http):
        start = len(await fake.generations())
        for i in range(n):
            marker = f"c{os.getpid()}-{len(name)}-{i}x"
            task_id = await begin(http, f"{marker} tokens=2000")
            index, generation = await fake.find(marker, start)
            start = index + 1
            want = 5 + i % 20

            async def generated(index: int = index, want: int = want) -> bool:
                [current] = await fake.generations(index)
                return len(current["tokens"]) >= want

            await poll(generated, 20, 0.002)
            asked, asked_ns = time.monotonic(), time.monotonic_ns()
            state = await stop(http, task_id)
            answered = time.monotonic_ns()
            call_ms = (time.monotonic() - asked) * 1000
            end = answered + int(window * 1e9)

            async def settled(index: int = index, end: int = end) -> bool:
                nonlocal generation
                [generation] = await fake.generations(index)
                return generation["ended"] is not None or time.monotonic_ns() > end

            await poll(settled, window + 5, 0.01)
            after = sum(1 for t in generation["tokens"] if answered < t <= end)
            after_asked = sum(1 for t in generation["tokens"] if asked_ns < t <= end)
            gone = generation["disconnected_ns"]
            samples.append(
                {
                    "after": after,
                    "after_asked": after_asked,
                    "state": state,
                    "ended": generation["ended"],
                    "call_ms": call_ms,
                    "disconnect_ms": (gone - answered) / 1e6 if gone else None,
                    "before": sum(1 for t in generation["tokens"] if t <= answered),
                }
            )
    return summarize_cancels(samples)


async def a2a_start(http: httpx.AsyncClient, text: str, dialect: A2A10 | FastA2A = DIALECT) -> str:
    reply = await rpc(http, dialect.send(text, "", wait=False), dialect)
    return str(dialect.task(reply)["id"])


async def a2a_cancel(
    http: httpx.AsyncClient, task_id: str, dialect: A2A10 | FastA2A = DIALECT
) -> str:
    """CancelTask (or the dialect's tasks/cancel); the state it answered with."""
    return str(dialect.state(dialect.task(await rpc(http, dialect.cancel(task_id), dialect))))


async def langgraph_start(http: httpx.AsyncClient, text: str) -> str:
    """A background run on a new thread, as LangGraph's SDK starts one; its path."""
    thread = (await http.post("/threads", json={})).json()["thread_id"]
    body = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": text}]}}
    run = (await http.post(f"/threads/{thread}/runs", json=body)).json()
    return f"/threads/{thread}/runs/{run['run_id']}"


async def langgraph_cancel(http: httpx.AsyncClient, run: str) -> str:
    """`client.runs.cancel(thread, run, wait=True)`; the run's status after it."""
    await http.post(f"{run}/cancel", params={"wait": "true"})
    return str((await http.get(run)).json()["status"])


LANGGRAPH_A2A_STREAMS: dict[str, asyncio.Task[None]] = {}
"""The open message/stream of each task sent to langgraph dev's A2A endpoint."""


async def langgraph_a2a_path(http: httpx.AsyncClient) -> str:
    """`/a2a/<assistant id>` of the graph `agent` (the endpoint wants the assistant's id)."""
    found = (await http.post("/assistants/search", json={"graph_id": "agent"})).json()
    return f"/a2a/{found[0]['assistant_id']}"


async def langgraph_a2a_start(http: httpx.AsyncClient, text: str) -> str:
    """message/stream (A2A 0.3, which the endpoint speaks) to the graph's assistant, kept open as a
    client that follows its answer would; the task's id, from its first event."""
    message = {"kind": "message", "messageId": os.urandom(8).hex(), "role": "user"}
    message["parts"] = [{"kind": "text", "text": text}]
    body = {"jsonrpc": "2.0", "id": 1, "method": "message/stream", "params": {"message": message}}
    known: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def follow() -> None:
        headers = {"Accept": "text/event-stream"}
        path = await langgraph_a2a_path(http)
        async with http.stream("POST", path, json=body, headers=headers) as reply:
            async for event in read_events(reply.aiter_lines()):
                result = json.loads(event.data).get("result", {})
                task_id = result.get("taskId") or result.get("id")
                if task_id and not known.done():
                    known.set_result(str(task_id))

    stream = asyncio.create_task(follow())
    task_id = await asyncio.wait_for(known, 60)
    LANGGRAPH_A2A_STREAMS[task_id] = stream
    return task_id


async def langgraph_a2a_cancel(http: httpx.AsyncClient, task_id: str) -> str:
    """tasks/cancel; the state it answered with (the stream is closed afterwards)."""
    request = {"jsonrpc": "2.0", "id": 2, "method": "tasks/cancel", "params": {"id": task_id}}
    answer = (await http.post(await langgraph_a2a_path(http), json=request)).json()
    stream = LANGGRAPH_A2A_STREAMS.pop(task_id)
    stream.cancel()
    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
        await stream
    return str(answer.get("result", {}).get("status", {}).get("state", answer.get("error")))


def summarize_cancels(samples: list[JSON]) -> JSON:
    after = [s["after"] for s in samples]
    seen = [s["disconnect_ms"] for s in samples if s["disconnect_ms"] is not None]
    return {
        "n": len(samples),
        "after_p50": statistics.median(after),
        "after_p99": percentile(after, 99),
        "after_max": max(after),
        "with_tokens_after": sum(1 for a in after if a),
        "after_asked_p50": statistics.median(s.get("after_asked", 0) for s in samples),
        "canceled": sum(1 for s in samples if s["state"] in CANCELED),
        "model_saw_disconnect": len(seen),
        "disconnect_vs_answer_ms_p50": statistics.median(seen) if seen else None,
        "cancel_call_ms_p50": statistics.median(s["call_ms"] for s in samples),
        "samples": samples,
    }


# --- part 2: streaming cost ------------------------------------------------------------


async def follow(http: httpx.AsyncClient, text: str, arrivals: list[int]) -> None:
    """SendStreamingMessage; for each token (a word) of the answer, the monotonic ns at
    which the artifact update that carried it arrived."""
    request = DIALECT.stream(text, "")
    async with http.stream("POST", "/", json=request, headers=DIALECT.headers) as response:
        async for event in read_events(response.aiter_lines()):
            result = json.loads(event.data).get("result", {})
            if "artifactUpdate" in result:
                parts = result["artifactUpdate"]["artifact"]["parts"]
                words = sum(len(p.get("text", "").split()) for p in parts)
                arrivals += [time.monotonic_ns()] * words


async def metric_total(http: httpx.AsyncClient, name: str) -> float | None:
    text = (await http.get("/metrics")).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    ]
    return sum(values) if values else None


async def streams(fake: FakeModel, workdir: Path, count: int, seconds: float) -> JSON:
    tokens = int(RATE * seconds)
    followers = min(count, 20)
    extra = ("--max-concurrent", str(count + 10))
    peer, args = SERVINGS["andon.llm (andon)"]
    async with serving(peer, args, fake, workdir, extra) as (proc, http):
        await follow(http, "warm-up tokens=5", [])  # first-task costs stay out of the figures
        start = len(await fake.generations())
        commits_metric = "andon_store_commits_total"
        events_metric = "andon_events_appended_total"
        commits0 = await metric_total(http, commits_metric)
        events0 = await metric_total(http, events_metric) or 0.0
        cpu0, t0 = procs.cpu_seconds(proc.pid), time.monotonic()
        arrivals: dict[str, list[int]] = {}
        followed: list[asyncio.Task[None]] = []
        gate = asyncio.Semaphore(50)

        async def launch_one(i: int) -> None:
            marker = f"s{count}-{i}x"
            text = f"{marker} tokens={tokens}"
            if i < followers:
                arrivals[marker] = []
                followed.append(asyncio.create_task(follow(http, text, arrivals[marker])))
                return
            async with gate:
                DIALECT.task(await rpc(http, DIALECT.send(text, "", wait=False)))

        await asyncio.gather(*(launch_one(i) for i in range(count)))
        await asyncio.gather(*followed)

        async def all_ended() -> bool:
            # Light calls (a GetTask each would fold every task's log).
            for state in ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING"):
                listing = {"status": state, "pageSize": 1}
                request = {**DIALECT.get(""), "method": "ListTasks", "params": listing}
                if int((await rpc(http, request))["result"]["totalSize"]):
                    return False
            return True

        await poll(all_ended, 600, 0.2)
        elapsed = time.monotonic() - t0
        cpu = procs.cpu_seconds(proc.pid) - cpu0
        commits1 = await metric_total(http, commits_metric)
        events = (await metric_total(http, events_metric) or 0.0) - events0
        generations = await fake.generations(start)
    generated = sum(len(g["tokens"]) for g in generations)
    paces = [
        (len(g["tokens"]) - 1) / ((g["tokens"][-1] - g["tokens"][0]) / 1e9)
        for g in generations
        if len(g["tokens"]) > 1
    ]
    latencies: list[float] = []
    by_marker = {g["user"].split()[0]: g for g in generations}
    for marker, seen in arrivals.items():
        made = by_marker[marker]["tokens"]
        latencies += [(a - t) / 1e6 for a, t in zip(seen, made, strict=False)]
    commits = commits1 - commits0 if commits1 is not None and commits0 is not None else None
    return {
        "streams": count,
        "tokens_per_stream": tokens,
        "tokens": generated,
        "seconds": elapsed,
        "failed_or_short": sum(1 for g in generations if g["ended"] != "complete"),
        "tokens_per_s": generated / elapsed,
        "pace_p50": statistics.median(paces) if paces else None,
        "pace_min": min(paces) if paces else None,
        "cpu_s": cpu,
        "cpu_us_per_token": cpu / generated * 1e6 if generated else None,
        "events_per_s": events / elapsed,
        "commits_per_s": commits / elapsed if commits is not None else None,
        "follower_ms_p50": statistics.median(latencies) if latencies else None,
        "follower_ms_p99": percentile(latencies, 99) if latencies else None,
        "follower_ms_max": max(latencies) if latencies else None,
    }


# --- the report --------------------------------------------------------------------------


def render(record: JSON) -> str:
    lines = [
        f"Recorded {record['when']} with `{record['command']}` ({record['machine']}; load "
        f"average {record['load_before']:.1f} before, {record['load_after']:.1f} after).",
        "",
    ]
    if record.get("cancels"):
        lines += [
            "| serving | cancels | tokens after the cancel answer p50 / p99 / max | "
            "cancels with any | tokens after the cancel was sent (p50) | `canceled` | "
            "model saw the disconnect | disconnect - answer, ms (p50) | cancel call, ms (p50) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, s in record["cancels"].items():
            gap = s["disconnect_vs_answer_ms_p50"]
            lines.append(
                f"| {name} | {s['n']} | {s['after_p50']:g} / {s['after_p99']:g} / "
                f"{s['after_max']:g} | {s['with_tokens_after']} | "
                f"{s.get('after_asked_p50', 0):g} | {s['canceled']} | "
                f"{s['model_saw_disconnect']} | {'—' if gap is None else f'{gap:.2f}'} | "
                f"{s['cancel_call_ms_p50']:.2f} |"
            )
        lines.append("")
    if record.get("streams"):
        lines += [
            "| streams x 200 tokens/s | tokens | wall s | tokens/s (asked) | pace p50 / min "
            "(tokens/s) | server CPU µs/token | events (commits)/s | follower ms p50 / "
            "p99 / max |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in record["streams"]:
            commits = s["commits_per_s"]
            events = f"{s['events_per_s']:.0f}"
            if commits is not None:
                events += f" ({commits:.0f})"
            lines.append(
                f"| {s['streams']} | {s['tokens']} | {s['seconds']:.1f} | "
                f"{s['tokens_per_s']:.0f} ({s['streams'] * RATE:.0f}) | "
                f"{s['pace_p50']:.0f} / {s['pace_min']:.0f} | {s['cpu_us_per_token']:.0f} | "
                f"{events} | {s['follower_ms_p50']:.1f} / {s['follower_ms_p99']:.1f} / "
                f"{s['follower_ms_max']:.1f} |"
            )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("cancel", "stream"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cancels", type=int, default=200)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--streams", default="1,100,1000")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--servings", default=",".join(SERVINGS))
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, the rest on 1")
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs")
    parser.add_argument("--json", type=Path, help="save the figures here (default: bench/results/)")
    opts = parser.parse_args()
    PIN["on"] = opts.pin
    if opts.quick:
        opts.cancels, opts.seconds = 10, 1.0
        opts.streams = "1,20" if opts.streams == parser.get_default("streams") else opts.streams
    if opts.pin:
        os.sched_setaffinity(0, {CLIENT_CPU})
    record: JSON = {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.llm " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "load_before": os.getloadavg()[0],
    }
    with contextlib.ExitStack() as stack:
        if opts.keep:
            workdir = Path(tempfile.mkdtemp(prefix="bench-llm-"))
            print("servers' logs and databases stay in", workdir)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-llm-")))
        async with fake_model(workdir) as fake:
            if opts.only in (None, "cancel"):
                record["cancels"] = {}
                for name in opts.servings.split(","):
                    record["cancels"][name] = await cancels(
                        name, fake, workdir, opts.cancels, opts.window
                    )
                    print(
                        name, {k: v for k, v in record["cancels"][name].items() if k != "samples"}
                    )
        if opts.only in (None, "stream"):
            record["streams"] = []
            for count in [int(c) for c in opts.streams.split(",")]:
                async with fake_model(workdir) as fake:  # a fresh log for each size
                    result = await streams(fake, workdir, count, opts.seconds)
                record["streams"].append(result)
                print(result)
    record["load_after"] = os.getloadavg()[0]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    path = opts.json or RESULTS / f"llm-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(render(record))


if __name__ == "__main__":
    asyncio.run(main())
