"""andon.client against a real `andon serve` process (and its SSE parser and error
mapping on their own). The helpers here (a server process, a TCP proxy whose
connections a test can cut, polling with deadlines) serve tests/test_cli.py too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from andon.client import (
    AndonClient,
    Client,
    ServerUnreachable,
    StreamLost,
    TaskNotCancelable,
    TaskNotFound,
    Unauthorized,
    UnsupportedOperation,
    VersionNotSupported,
)
from andon.client.api import BINDINGS
from andon.client.discover import choose, discover
from andon.client.errors import ProtocolError, RemoteError, remote_error
from andon.client.sse import ServerEvent, read_events
from andon.protocol.types import Task, TaskArtifactUpdateEvent, TaskState, TaskStatusUpdateEvent
from andon.protocol.wire import Version

# -- helpers (also used by test_cli.py) ------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(check: Callable[[], Any], timeout: float = 10.0, message: str = "condition") -> Any:
    """Poll `check` until it returns something true; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message}: not met within {timeout}s")
        time.sleep(0.01)


def steady(read: Callable[[], Any], duration: float) -> None:
    """`read` gives the same value for `duration` seconds (something stopped)."""
    first = read()
    end = time.monotonic() + duration
    while time.monotonic() < end:
        assert read() == first, f"changed from {first!r} to {read()!r}"
        time.sleep(0.02)


class AndonServer:
    """`andon serve` on a free port of 127.0.0.1, with ANDON_DEMO_TRACE set, and a
    client for it."""

    def __init__(
        self,
        workdir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        token: str | None = None,
        version: str = "1.0",
        ready_within: float = 20,
    ) -> None:
        self.workdir = workdir
        self.ready_within = ready_within
        """Seconds to start answering (an agent that imports a framework takes longer)."""
        self.version = version
        self.args = args
        self.env = env or {}
        self.token = token
        self.trace_path = workdir / "trace.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AndonServer:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ANDON_")}
        environment.update({"ANDON_DEMO_TRACE": str(self.trace_path), **self.env})
        self.log = (self.workdir / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "andon", "serve"),
                *("--port", str(self.port), "--db", str(self.workdir / "serve.db")),
                *("--log-level", "warning", "--drain", "0", *self.args),
            ],
            cwd=self.workdir,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"andon serve exited: {self.logged()}")
            try:
                return httpx.get(f"{self.url}/.well-known/agent-card.json", timeout=1).is_success
            except httpx.TransportError:
                return False

        eventually(up, self.ready_within, "andon serve answering")
        self.client = Client(self.url, self.token, self.version)
        return self

    def logged(self) -> str:
        return (self.workdir / "serve.log").read_text(errors="replace")

    def trace(self, task_id: str) -> list[str]:
        if not self.trace_path.exists():
            return []
        return [
            line for line in self.trace_path.read_text().splitlines() if line.startswith(task_id)
        ]

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class Proxy:
    """A TCP proxy to a local port; `cut()` closes every connection it carries (both
    sides), as a network failure would, and it goes on accepting new ones."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self.accepted += 1
                self._open += [down, up]
            for source, target in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            cutting, self._open = self._open, []
        for sock in cutting:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()
        self._thread.join(2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    with AndonServer(tmp_path_factory.mktemp("client")) as served:
        yield served


@pytest.fixture(params=[(v, b) for b in BINDINGS for v in ("1.0", "0.3")], ids="-".join)
async def client(request: pytest.FixtureRequest, server: AndonServer) -> AsyncIterator[AndonClient]:
    version, binding = request.param
    async with AndonClient(server.url, version=version, binding=binding) as speaking:
        yield speaking


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    """`eventually` for async tests: the loop runs while it polls."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- SSE and errors, on their own ------------------------------------------------------


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_sse_events_keep_their_ids_skip_comments_and_drop_a_cut_event() -> None:
    lines = _lines(
        ": keep-alive",
        "",
        "id: 3",
        'data: {"a":',
        "data: 1}",
        "",
        "event: error",
        "data: x",
        "",
        "id: 9",
        "data: half",
    )
    events = [e async for e in read_events(lines)]
    assert events == [ServerEvent('{"a":\n1}', "message", "3"), ServerEvent("x", "error", None)]


def test_json_rpc_errors_become_the_exceptions_callers_catch() -> None:
    assert isinstance(remote_error({"code": -32001, "message": "gone"}), TaskNotFound)
    assert isinstance(remote_error({"code": -32002, "message": "ended"}), TaskNotCancelable)
    assert isinstance(remote_error({"code": -32009, "message": "2.0?"}), VersionNotSupported)
    other = remote_error({"code": -32099, "message": "odd", "data": [1]})
    assert type(other) is RemoteError and other.code == -32099 and other.data == [1]


async def test_an_unreachable_server_is_named_with_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AndonClient(url) as nowhere:
        with pytest.raises(ServerUnreachable, match=url) as raised:
            await nowhere.get("x")
        assert raised.value.cause == "connection refused"
        with pytest.raises(ServerUnreachable):
            async for _ in nowhere.stream("echo hi"):
                pass


# -- against andon serve, in A2A 1.0 and 0.3 -------------------------------------------


async def test_send_get_list_answer_and_retry(client: AndonClient, server: AndonServer) -> None:
    context = f"ctx-{client.version}-{client.binding}"
    done = await client.send("echo hello", context_id=context)
    assert done.status.state is TaskState.COMPLETED
    assert (await client.get(done.id)).status.message.text == "hello"  # type: ignore[union-attr]
    listed = await client.list(context_id=context)
    assert [t.id for t in listed.tasks] == [done.id]

    asking = await client.send("ask your name?")
    assert asking.status.state is TaskState.INPUT_REQUIRED
    answered = await client.answer(asking.id, "Ada")
    assert answered.status.state is TaskState.COMPLETED
    assert answered.status.message.text == "Ada"  # type: ignore[union-attr]

    again = await client.retry(done.id)
    assert again.id != done.id and again.context_id == done.context_id
    ended = await client.wait(again.id, timeout=10)
    assert ended.status.state is TaskState.COMPLETED
    assert (ended.metadata or {}).get("andon.retryOf") == done.id

    with pytest.raises(TaskNotFound):
        await client.get("no-such-task")
    with pytest.raises(UnsupportedOperation):
        await client.answer(done.id, "too late")


async def test_stream_yields_typed_events_with_their_sequence_ids(client: AndonClient) -> None:
    events = [e async for e in client.stream("stream 3")]
    assert isinstance(events[0].item, Task)
    chunks = [e.item for e in events if isinstance(e.item, TaskArtifactUpdateEvent)]
    assert [c.artifact.parts[0].text for c in chunks] == ["chunk 0\n", "chunk 1\n", "chunk 2\n"]
    last = events[-1].item
    assert isinstance(last, TaskStatusUpdateEvent) and last.status.state is TaskState.COMPLETED
    seqs = [e.seq for e in events]
    assert all(isinstance(s, int) for s in seqs) and seqs == sorted(set(seqs))  # type: ignore[type-var]
    # Replayed from an event id: the events after it, the same ones.
    replay = [e async for e in client.subscribe(events[0].item.id, last_event_id=seqs[1])]
    assert [e.seq for e in replay] == seqs[2:]
    assert [e.item for e in replay] == [e.item for e in events[2:]]


async def test_a_replay_goes_past_a_question_answered_since(client: AndonClient) -> None:
    asking = await client.send("ask your name?")
    assert asking.status.state is TaskState.INPUT_REQUIRED
    # Before the answer, a resumed stream ends at the question it waits on.
    waiting = [e async for e in client.subscribe(asking.id, last_event_id=0)]
    assert waiting[-1].state is TaskState.INPUT_REQUIRED
    await client.answer(asking.id, "Ada")
    replay = [e async for e in client.subscribe(asking.id, last_event_id=0)]
    states = [e.state for e in replay if isinstance(e.item, TaskStatusUpdateEvent)]
    assert TaskState.INPUT_REQUIRED in states
    assert states[-1] is TaskState.COMPLETED


async def test_the_final_event_of_a_cancel_tells_how_long_the_stop_took(
    client: AndonClient, server: AndonServer
) -> None:
    stream = client.stream("sleep 30")
    canceled = None
    async for event in stream:
        if event.state is TaskState.WORKING and canceled is None:
            assert stream.task_id is not None
            canceled = await client.cancel(stream.task_id)
    last = event.item
    assert isinstance(last, TaskStatusUpdateEvent) and last.status.state is TaskState.CANCELED
    assert (last.metadata or {})["andon.reason"] == "user"
    assert (last.metadata or {})["andon.stopMs"] >= 0


async def test_cancel_waits_until_stopped_and_cancel_many_reports_each(
    client: AndonClient, server: AndonServer
) -> None:
    task = await client.send("sleep 30", blocking=False)
    await until(lambda: server.trace(task.id))
    stopped = await client.cancel(task.id)
    assert stopped.status.state is TaskState.CANCELED
    assert (stopped.metadata or {})["andon.reason"] == "user"
    with pytest.raises(TaskNotCancelable):
        await client.cancel(task.id)

    context = f"many-{client.version}-{os.urandom(3).hex()}"
    running = [await client.send("sleep 30", context_id=context, blocking=False) for _ in range(2)]
    for t in running:
        await client.wait(t.id, timeout=10, until=frozenset({TaskState.WORKING}))
    results = await client.cancel_many(context_id=context, states=["working"])
    assert sorted(r.id for r in results) == sorted(t.id for t in running)
    for result in results:
        assert result.task is not None and result.task.status.state is TaskState.CANCELED
        assert (result.task.metadata or {})["andon.reason"] == "operator"
    mixed = await client.cancel_many([task.id, "no-such-task"])
    assert all(r.task is None and r.error for r in mixed)


async def test_closing_a_stream_under_the_cancel_policy_cancels_its_task(
    client: AndonClient, server: AndonServer
) -> None:
    stream = client.stream("sleep 30", on_disconnect="cancel")
    async for event in stream:
        if event.state is TaskState.WORKING:
            break
    await stream.aclose()
    assert stream.task_id is not None
    task = await client.wait(stream.task_id, timeout=10)
    assert task.status.state is TaskState.CANCELED
    assert (task.metadata or {})["andon.reason"] == "client_disconnect"


async def test_a_cut_stream_resumes_with_last_event_id_and_no_event_twice(
    server: AndonServer,
) -> None:
    proxy = Proxy(server.port)
    try:
        async with AndonClient(proxy.url, backoff=0.05) as through:
            stream = through.stream("stream 40", on_disconnect="continue")
            seen = []
            async for event in stream:
                seen.append(event)
                chunks = sum(isinstance(e.item, TaskArtifactUpdateEvent) for e in seen)
                if chunks in (5, 15):
                    proxy.cut()
            assert stream.reconnects == 2
            assert proxy.accepted == 3
        texts = [
            e.item.artifact.parts[0].text
            for e in seen
            if isinstance(e.item, TaskArtifactUpdateEvent)
        ]
        assert texts == [f"chunk {i}\n" for i in range(40)]
        seqs = [e.seq for e in seen]
        assert seqs == sorted(set(seqs))  # type: ignore[type-var]
        assert seen[-1].state is TaskState.COMPLETED
    finally:
        proxy.close()


async def test_a_stream_that_cannot_be_resumed_gives_up_after_its_attempts(
    server: AndonServer,
) -> None:
    proxy = Proxy(server.port)
    async with AndonClient(proxy.url, reconnect_attempts=2, backoff=0.01) as through:
        stream = through.stream("sleep 5", on_disconnect="continue")
        with pytest.raises(StreamLost, match="after 2 attempts") as lost:
            async for event in stream:
                if event.state is TaskState.WORKING:
                    proxy.close()  # cut, and nobody listens any more
        assert lost.value.task_id == stream.task_id and lost.value.last_event_id is not None
    server.client.cancel(stream.task_id or "")


def test_the_sync_client_streams_and_answers(server: AndonServer) -> None:
    with Client(server.url) as sync:
        events = list(sync.stream("ask who?"))
        assert events[-1].state is TaskState.INPUT_REQUIRED
        task_id = events[-1].task_id
        assert task_id is not None
        assert sync.answer(task_id, "me").status.state is TaskState.COMPLETED
        with pytest.raises(TaskNotFound):
            sync.get("no-such-task")


async def test_a_token_server_wants_a_token(tmp_path: Path) -> None:
    with AndonServer(
        tmp_path,
        "--auth",
        "tokens",
        env={"ANDON_TOKENS": "alice user s3cret-token"},
        token="s3cret-token",
    ) as served:
        async with AndonClient(served.url) as anonymous:
            with pytest.raises(Unauthorized) as raised:
                await anonymous.list()
            assert not raised.value.token_given
        async with AndonClient(served.url, token="wrong") as wrong:
            with pytest.raises(Unauthorized) as raised:
                await wrong.list()
            assert raised.value.token_given
        async with AndonClient(served.url, token="s3cret-token") as alice:
            assert (await alice.send("echo hi")).status.state is TaskState.COMPLETED


async def test_discover_reads_the_card_and_chooses_1_0_and_json_rpc_first(
    server: AndonServer,
) -> None:
    found = await discover(server.url)
    assert (found.version, found.binding, found.url.rstrip("/")) == (
        Version.V1_0,
        "jsonrpc",
        server.url,
    )
    rest_03 = await discover(server.url, version="0.3", binding="http+json")
    assert (rest_03.version, rest_03.binding) == (Version.V0_3, "http+json")
    async with rest_03.client() as speaking:
        assert (await speaking.send("echo via the card")).status.state is TaskState.COMPLETED


def test_choose_reads_a_0_3_card_and_refuses_a_card_with_nothing_it_speaks() -> None:
    legacy = {
        "name": "old",
        "protocolVersion": "0.3.0",
        "url": "http://old.example/rpc",
        "preferredTransport": "GRPC",
        "additionalInterfaces": [
            {"url": "http://old.example/rpc", "transport": "GRPC"},
            {"url": "http://old.example/rest", "transport": "HTTP+JSON"},
        ],
    }
    chosen = choose(legacy)
    assert (chosen.url, chosen.version, chosen.binding, chosen.agent) == (
        "http://old.example/rest",
        Version.V0_3,
        "http+json",
        "old",
    )
    grpc_only = {
        "name": "g",
        "supportedInterfaces": [
            {"url": "http://g", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
        ],
    }
    with pytest.raises(ProtocolError, match="lists no interface"):
        choose(grpc_only)
