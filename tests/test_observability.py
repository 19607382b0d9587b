"""Observability seen from outside: /metrics before and after tasks are sent, cancelled
and timed out; the span tree of a cancelled task; the JSON log line of a cancel; the
health and readiness probes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families

import andon
from andon.agents.demo import agent as demo_agent
from andon.protocol.types import TaskState
from andon.server.app import ServerConfig, create_app
from andon.service import TaskService
from andon.store.base import NewTask
from andon.store.sqlite import SQLiteStore
from andon.telemetry.logs import TEXT_FORMAT, JSONFormatter, TextFormatter
from tests.conftest import FAST_RUNTIME
from tests.helpers import eventually
from tests.test_serve import HEADERS, send, start, state_of, wait_for

V1 = {"A2A-Version": "1.0"}
released = asyncio.Event()

agent = andon.Agent(name="observed", description="The demo agent, and one that will not stop")
agent.skill("demo")(demo_agent.skills[0].handler)


@agent.skill("stubborn")
async def stubborn(ctx: andon.TaskContext) -> None:
    while not released.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass  # the bug an operator must see: cancellation swallowed


class Server:
    def __init__(self, service: TaskService, http: httpx.AsyncClient) -> None:
        self.service = service
        self.http = http

    async def send(self, text: str, **metadata: Any) -> str:
        message = {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": os.urandom(6).hex()}
        body = {"message": {**message, "metadata": metadata}}
        body["configuration"] = {"returnImmediately": True}
        reply = await self.http.post("/message:send", json=body, headers=V1)
        return str(reply.json()["task"]["id"])

    async def state(self, task_id: str) -> str:
        task = (await self.http.get(f"/tasks/{task_id}", headers=V1)).json()
        return str(task["status"]["state"]).removeprefix("TASK_STATE_").lower()

    async def reaches(self, task_id: str, state: str) -> None:
        async def reached() -> bool:
            return await self.state(task_id) == state

        await eventually(reached, 20, message=f"task {task_id} {state}")

    async def cancel(self, task_id: str) -> dict[str, Any]:
        reply = await self.http.post(f"/tasks/{task_id}:cancel", json={}, headers=V1)
        return dict(reply.json())

    async def metrics(self) -> dict[str, float]:
        """Every sample, keyed `name{label="value",...}` with labels sorted."""
        text = (await self.http.get("/metrics")).text
        return {
            sample_key(s.name, s.labels): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def sample_key(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def m(name: str, **labels: str) -> str:
    return sample_key(name, labels)


def moved(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
async def server(tmp_path: Path, trace: Path) -> AsyncIterator[Server]:
    released.clear()
    runtime = andon.RuntimeSettings(workdir=tmp_path, **FAST_RUNTIME)
    async with andon.open_service(
        agent, str(tmp_path / "andon.sqlite"), runtime=runtime, max_concurrent=2
    ) as service:
        app = create_app(service, ServerConfig(public_url="http://testserver"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            try:
                yield Server(service, http)
            finally:
                released.set()


# -- metrics ---------------------------------------------------------------------------


async def test_metrics_move_as_tasks_are_sent_cancelled_and_timed_out(server: Server) -> None:
    before = await server.metrics()

    done = await server.send("echo hi")
    await server.reaches(done, "completed")
    cancelled = await server.send("sleep 30")
    await server.reaches(cancelled, "working")
    assert (await server.cancel(cancelled))["status"]["state"] == "TASK_STATE_CANCELED"
    timed_out = await server.send("sleep 30", **{"andon.timeout": 0.3})
    await server.reaches(timed_out, "canceled")

    after = await server.metrics()
    assert moved(before, after, m("andon_tasks_created_total")) == 3
    assert moved(before, after, m("andon_tasks_ended_total", state="completed", reason="none")) == 1
    assert moved(before, after, m("andon_tasks_ended_total", state="canceled", reason="user")) == 1
    assert (
        moved(before, after, m("andon_tasks_ended_total", state="canceled", reason="timeout")) == 1
    )
    for reason in ("user", "timeout"):
        assert moved(before, after, m("andon_cancel_requests_total", reason=reason)) == 1
        assert moved(before, after, m("andon_stop_seconds_count", reason=reason)) == 1
        assert moved(before, after, m("andon_stop_seconds_bucket", reason=reason, le="+Inf")) == 1
        assert moved(before, after, m("andon_stop_seconds_sum", reason=reason)) > 0
        assert moved(before, after, m("andon_cancel_call_seconds_count", reason=reason)) == 1
    # The user's call waited for the stop; the deadline's request did not wait at all.
    user_call = moved(before, after, m("andon_cancel_call_seconds_sum", reason="user"))
    assert user_call >= moved(before, after, m("andon_stop_seconds_sum", reason="user"))
    # submitted, working, then completed — or canceling and canceled — and one message each.
    assert moved(before, after, m("andon_events_appended_total", kind="status")) == 3 + 4 + 4
    assert moved(before, after, m("andon_events_appended_total", kind="message")) == 3
    assert moved(before, after, m("andon_events_appended_total", kind="progress")) > 0
    assert moved(before, after, m("andon_processes_killed_after_grace_total")) == 0
    # Group commit: writes share commits, and each commit is counted.
    commits = moved(before, after, m("andon_store_commits_total"))
    events = sum(
        moved(before, after, m("andon_events_appended_total", kind=kind))
        for kind in ("status", "message", "progress", "artifact")
    )
    assert 0 < commits < events
    assert after[m("andon_store_errors_total")] == 0
    assert after[m("andon_dispatch_errors_total")] == 0


async def test_metrics_count_kills_after_the_grace_and_cancel_timeouts(server: Server) -> None:
    before = await server.metrics()
    shell = await server.send("shell trap '' TERM; echo ready; sleep 30")
    await eventually(lambda: shell_ready(server, shell), 20, message="the command started")
    await server.cancel(shell)
    await server.reaches(shell, "canceled")
    stuck = await server.send("go", **{"andon.skill": "stubborn"})
    await server.reaches(stuck, "working")
    await server.cancel(stuck)
    await server.reaches(stuck, "failed")

    after = await server.metrics()
    assert moved(before, after, m("andon_processes_killed_after_grace_total")) == 1
    key = m("andon_tasks_ended_total", state="failed", reason="cancel_timeout")
    assert moved(before, after, key) == 1
    assert moved(before, after, m("andon_stop_seconds_count", reason="user")) == 2


async def shell_ready(server: Server, task_id: str) -> bool:
    task = (await server.http.get(f"/tasks/{task_id}", headers=V1)).json()
    return "ready" in json.dumps(task.get("artifacts", []))


async def test_gauges_show_queued_running_and_waiting_tasks(server: Server) -> None:
    asking = await server.send("ask which topic?")
    await server.reaches(asking, "input_required")
    running = await server.send("sleep 30")
    await server.reaches(running, "working")
    queued = await server.send("sleep 30")  # two at once at most: this one waits

    gauges = await server.metrics()
    assert gauges[m("andon_tasks_waiting_for_input")] == 1
    assert gauges[m("andon_tasks_running")] == 1
    assert gauges[m("andon_tasks_queued")] == 1
    assert await server.state(queued) == "submitted"

    for task_id in (asking, running, queued):
        await server.cancel(task_id)
    gauges = await server.metrics()
    assert gauges[m("andon_tasks_waiting_for_input")] == 0
    assert gauges[m("andon_tasks_running")] == 0
    assert gauges[m("andon_tasks_queued")] == 0


async def test_subscriber_gauge_follows_open_streams(server: Server) -> None:
    message = {"role": "ROLE_USER", "parts": [{"text": "sleep 30"}], "messageId": "m-stream"}
    stream = asyncio.create_task(
        server.http.post("/message:stream", json={"message": message}, headers=V1)
    )

    async def subscribers(count: int) -> bool:
        return (await server.metrics())[m("andon_sse_subscribers")] == count

    await eventually(lambda: subscribers(1), 20, message="one stream open")
    page = await server.service.list(andon.Principal("local", "admin"))
    await server.cancel(page.tasks[0].id)  # the final event ends the stream
    await stream
    await eventually(lambda: subscribers(0), 20, message="no stream open")


async def test_unknown_reasons_are_one_label_value(server: Server) -> None:
    task_id = await server.send("sleep 30")
    await server.reaches(task_id, "working")
    admin = andon.Principal("ops", "admin")
    await server.service.cancel(task_id, admin, reason=f"made-up-{task_id}")
    after = await server.metrics()
    assert after[m("andon_cancel_requests_total", reason="other")] == 1
    assert after[m("andon_tasks_ended_total", state="canceled", reason="other")] == 1
    assert not any(task_id in key for key in after)


async def test_a_restart_counts_tasks_it_failed_worker_lost(tmp_path: Path, trace: Path) -> None:
    path = str(tmp_path / "andon.sqlite")
    store = SQLiteStore(path)
    await store.open()
    await store.create_task(NewTask(id="lost", context_id="c", owner="alice"), {})
    await store.transition("lost", sources=[TaskState.SUBMITTED], target=TaskState.WORKING)
    await store.close()
    async with andon.open_service(agent, path) as service:
        app = create_app(service)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            metrics = Server(service, http)
            after = await metrics.metrics()
    key = m("andon_tasks_ended_total", state="failed", reason="worker_lost")
    assert after[key] == 1


# -- probes ----------------------------------------------------------------------------


async def test_health_and_readiness(server: Server) -> None:
    assert (await server.http.get("/healthz")).json() == {"status": "ok"}
    ready = await server.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "store": "ok",
        "dispatch": "ok",
        "containment": server.service.dispatcher.containment,
    }
    assert ready.json()["containment"] in ("cgroup", "subreaper")

    await server.service.shutdown()  # dispatch stops: no longer ready, still alive
    ready = await server.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["store"] == "ok"
    assert ready.json()["dispatch"] != "ok"
    await server.service.store.close()
    assert (await server.http.get("/readyz")).json()["store"] != "ok"
    assert (await server.http.get("/healthz")).status_code == 200


# -- traces ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (one per process), recording into memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def json_lines() -> Iterator[list[dict[str, Any]]]:
    """The task log's lines, as `--log-format json` writes them."""
    lines: list[dict[str, Any]] = []
    formatter = JSONFormatter()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(formatter.format(record)))

    logger, handler = logging.getLogger("andon.tasks"), Keep()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def attempt_span(spans: InMemorySpanExporter, task_id: str) -> ReadableSpan:
    def ended() -> list[ReadableSpan]:
        return [
            s
            for s in spans.get_finished_spans()
            if s.name == "andon.attempt" and (s.attributes or {}).get("andon.task_id") == task_id
        ]

    await eventually(ended, 20, message="the attempt's span ended")
    return ended()[0]


async def test_span_tree_of_a_cancelled_task(
    server: Server, spans: InMemorySpanExporter, json_lines: list[dict[str, Any]]
) -> None:
    caller = {**V1, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    message = {"role": "ROLE_USER", "parts": [{"text": "sleep 30"}], "messageId": "m-trace"}
    body = {"message": message, "configuration": {"returnImmediately": True}}
    reply = await server.http.post("/message:send", json=body, headers=caller)
    task_id = reply.json()["task"]["id"]
    await server.reaches(task_id, "working")
    await server.http.post(f"/tasks/{task_id}:cancel", json={}, headers=V1)
    await attempt_span(spans, task_id)
    ours = [s for s in spans.get_finished_spans() if _about(s, task_id)]
    by_name = {s.name: s for s in ours}
    send_span, cancel_span, attempt = (
        by_name["a2a.send"],
        by_name["a2a.cancel"],
        by_name["andon.attempt"],
    )

    # The caller's trace goes on through the request into the attempt.
    assert send_span.context is not None and attempt.context is not None
    assert format(send_span.context.trace_id, "032x") == CALLER_TRACE
    assert send_span.parent is not None and format(send_span.parent.span_id, "016x") == CALLER_SPAN
    assert attempt.context.trace_id == send_span.context.trace_id
    assert attempt.parent is not None and attempt.parent.span_id == send_span.context.span_id

    # The cancel request: its own trace, linked to the task's, where the cancel took hold.
    assert cancel_span.parent is None
    assert [link.context.span_id for link in cancel_span.links] == [send_span.context.span_id]
    assert [e.name for e in cancel_span.events] == ["state", "cancel requested"]
    assert dict(cancel_span.events[1].attributes or {})["reason"] == "user"
    assert dict(cancel_span.events[0].attributes or {})["state"] == "canceling"

    # The attempt: the cancel, each teardown step, then the final state, in order.
    assert [e.name for e in attempt.events] == [
        "cancel requested",
        "agent stopped",
        "processes stopped",
        "threads stopped",
        "on_cancel hooks run",
        "http closed",
        "state",
    ]
    assert dict(attempt.events[-1].attributes or {}) == {"state": "canceled", "reason": "user"}
    times = [e.timestamp for e in attempt.events]
    assert times == sorted(times)
    assert attempt.end_time is not None and attempt.end_time >= times[-1]
    created = dict(send_span.events[0].attributes or {})
    assert (send_span.events[0].name, created["state"]) == ("state", "submitted")
    assert attempt.status.status_code is StatusCode.UNSET  # a cancel is no error

    # Log lines name the trace they were written in.
    traces = {(line["event"], line.get("state")): line.get("trace_id") for line in json_lines}
    assert traces[("task.state", "canceled")] == CALLER_TRACE
    assert traces[("task.state", "submitted")] == CALLER_TRACE
    assert traces[("task.cancel", None)] == format(cancel_span.context.trace_id, "032x")


async def test_a_json_rpc_request_has_its_span_named_after_its_method(
    server: Server, spans: InMemorySpanExporter
) -> None:
    message = {"role": "ROLE_USER", "parts": [{"text": "echo spans"}], "messageId": "m-rpc"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}
    reply = await server.http.post("/", json=body, headers=V1)
    task_id = reply.json()["result"]["task"]["id"]

    def sent() -> list[ReadableSpan]:
        return [
            s for s in spans.get_finished_spans() if s.name == "a2a.send" and _about(s, task_id)
        ]

    await eventually(sent, 20, message="the request's span ended")
    attributes = dict(sent()[0].attributes or {})
    assert attributes["http.route"] == "/" and attributes["http.response.status_code"] == 200


async def test_without_a_tracer_provider_only_a_callers_context_is_carried(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded nowhere, a request's span is skipped, unless the request brings trace
    context: that still goes on into its task, and from there to the task's own calls."""
    from andon.telemetry import tracing

    monkeypatch.setattr(tracing, "recording", lambda: False)
    message = {"role": "ROLE_USER", "parts": [{"text": "echo hi"}]}
    traced = {**V1, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    carried: dict[str, Any] = {}
    for name, headers in (("traced", traced), ("plain", V1)):
        body = {"message": {**message, "messageId": f"m-{name}"}}
        reply = await server.http.post("/message:send", json=body, headers=headers)
        record = await server.service.store.get_task(reply.json()["task"]["id"])
        assert record is not None and record.state is TaskState.COMPLETED
        carried[name] = record.metadata.get(tracing.CARRIER_KEY)
    assert carried["plain"] is None
    assert carried["traced"] is not None and CALLER_TRACE in carried["traced"]["traceparent"]


async def test_an_attempt_that_would_not_stop_is_a_failed_span(
    server: Server, spans: InMemorySpanExporter
) -> None:
    task_id = await server.send("go", **{"andon.skill": "stubborn"})
    await server.reaches(task_id, "working")
    await server.cancel(task_id)
    attempt = await attempt_span(spans, task_id)
    assert attempt.status.status_code is StatusCode.ERROR
    assert attempt.status.description == "cancel_timeout"
    assert [e.name for e in attempt.events][:2] == [
        "cancel requested",
        "agent ignored cancellation",
    ]


def _about(span: ReadableSpan, task_id: str) -> bool:
    """Spans of this task: the attempt, the request that created it, the cancel."""
    attributes = span.attributes or {}
    return attributes.get("andon.task_id") == task_id or task_id in str(
        attributes.get("url.path", "")
    )


# -- logs ------------------------------------------------------------------------------


def test_the_text_format_writes_each_line_its_own_time() -> None:
    """The text formatter writes the date and time once a second: each line still reads
    exactly as logging's own formatter would write it, across seconds."""
    ours, logging_own = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    for created in (1796667694.0, 1796667694.5, 1796667694.999, 1796667695.001, 1796667694.2):
        record = logging.makeLogRecord({"name": "andon.tasks", "msg": "task.state x=1"})
        record.created, record.msecs = created, (created % 1) * 1000
        record.levelname = "INFO"
        assert ours.format(record) == logging_own.format(record)


def test_a_cancel_writes_one_json_line(tmp_path: Path) -> None:
    proc, url = start(tmp_path, "--log-format", "json", "--log-level", "info")
    try:
        task_id = send(url, "sleep 30")
        wait_for(lambda: state_of(url, task_id) == "TASK_STATE_WORKING")
        body = {"jsonrpc": "2.0", "id": 3, "method": "CancelTask", "params": {"id": task_id}}
        httpx.post(url, json=body, headers=HEADERS, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.decode().splitlines()]  # every line is JSON
    cancels = [line for line in lines if line.get("event") == "task.cancel"]
    assert len(cancels) == 1
    cancel = cancels[0]
    assert cancel["task"] == task_id
    assert cancel["principal"] == cancel["owner"] == "local"
    assert (cancel["reason"], cancel["outcome"]) == ("user", "canceled")
    assert isinstance(cancel["context"], str) and cancel["context"]
    assert isinstance(cancel["latency_ms"], float) and cancel["latency_ms"] > 0
    assert (cancel["level"], cancel["logger"]) == ("info", "andon.tasks")
    assert cancel["message"].startswith(f"task.cancel task={task_id} ")
    states = [line for line in lines if line.get("event") == "task.state"]
    ours = [line["state"] for line in states if line["task"] == task_id]
    assert ours == ["submitted", "working", "canceling", "canceled"]
    canceled = next(s for s in states if s["task"] == task_id and s["state"] == "canceled")
    assert canceled["stop_ms"] >= 0 and canceled["duration_ms"] > 0


def test_otel_variables_install_an_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "andon-under-test")
    proc, url = start(tmp_path)
    try:
        task_id = send(url, "echo hi")
        wait_for(lambda: state_of(url, task_id) == "TASK_STATE_COMPLETED")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    exported = capfd.readouterr().out  # the console exporter's JSON, flushed at shutdown
    assert '"name": "a2a.send"' in exported
    assert '"name": "andon.attempt"' in exported
    assert f'"andon.task_id": "{task_id}"' in exported
    assert '"service.name": "andon-under-test"' in exported
