"""The official A2A Python SDK's client (PyPI a2a-sdk, a dev dependency) against a real
`andon serve`: it sends, streams, cancels and resubscribes, in A2A 1.0 and in 0.3
(the SDK's own v0.3 compatibility transports), over JSON-RPC and over HTTP+JSON, and in
1.0 over gRPC (`andon serve --grpc-port`).

The SDK picks its transport from the agent card; each test hands it a card that keeps
only the interface under test, as an agent served in that one version and binding
would publish, and records the requests it makes to check that it spoke that dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError
from a2a.helpers import get_artifact_text, new_text_message
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskState,
)
from a2a.utils.errors import A2AError, MethodNotFoundError
from google.protobuf import struct_pb2

from tests.live_server import unchanged, until
from tests.test_client import AndonServer, free_port

INTERFACES = [
    ("1.0", "JSONRPC"),
    ("1.0", "HTTP+JSON"),
    ("1.0", "GRPC"),
    ("0.3", "JSONRPC"),
    ("0.3", "HTTP+JSON"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    with AndonServer(tmp_path_factory.mktemp("sdk"), "--grpc-port", str(free_port())) as served:
        yield served


@pytest.fixture(scope="module")
def full_card(server: AndonServer) -> AgentCard:
    """The card as the SDK resolves it from /.well-known/agent-card.json."""

    async def resolve() -> AgentCard:
        async with httpx.AsyncClient() as http:
            return await A2ACardResolver(http, server.url).get_agent_card()

    return asyncio.run(resolve())


@dataclass
class Sdk:
    """SDK clients of one interface of the card, and the requests they made."""

    card: AgentCard
    version: str
    binding: str
    requests: list[httpx.Request] = field(default_factory=list)
    _open: list[Client] = field(default_factory=list)

    def client(self, *, streaming: bool = True) -> Client:
        http = httpx.AsyncClient(timeout=30, event_hooks={"request": [self._record]})
        config = ClientConfig(
            streaming=streaming,
            supported_protocol_bindings=[self.binding],
            httpx_client=http,
            grpc_channel_factory=grpc.aio.insecure_channel,
        )
        client = ClientFactory(config).create(self.card)
        self._open.append(client)
        return client

    async def _record(self, request: httpx.Request) -> None:
        self.requests.append(request)

    async def close(self) -> None:
        for client in self._open:
            await client.close()

    def check_dialect(self) -> None:
        """Every request was of this interface's version and binding (over gRPC: none
        went over HTTP)."""
        if self.binding == "GRPC":
            assert self.requests == []
            return
        assert self.requests
        for request in self.requests:
            assert request.headers["A2A-Version"] == self.version
            path = request.url.path
            if self.binding == "JSONRPC":
                assert path == "/"
                method = json.loads(request.content)["method"]
                assert ("/" in method) is (self.version == "0.3"), method
            else:
                assert path.startswith("/v1/") is (self.version == "0.3"), path


@pytest.fixture(params=INTERFACES, ids=lambda i: f"{i[0]}-{i[1]}")
async def sdk(request: pytest.FixtureRequest, full_card: AgentCard) -> AsyncIterator[Sdk]:
    version, binding = request.param
    card = AgentCard()
    card.CopyFrom(full_card)
    kept = [
        i
        for i in full_card.supported_interfaces
        if (i.protocol_version, i.protocol_binding) == (version, binding)
    ]
    assert len(kept) == 1
    del card.supported_interfaces[:]
    card.supported_interfaces.extend(kept)
    speaking = Sdk(card, version, binding)
    try:
        yield speaking
        speaking.check_dialect()
    finally:
        await speaking.close()


def request(text: str, *, immediately: bool = False, **metadata: Any) -> SendMessageRequest:
    message = new_text_message(text, role=Role.ROLE_USER)
    if metadata:
        message.metadata.CopyFrom(_struct(metadata))
    return SendMessageRequest(
        message=message, configuration=SendMessageConfiguration(return_immediately=immediately)
    )


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


async def send(client: Client, text: str, **options: Any) -> StreamResponse:
    """A non-streaming client's one answer."""
    answers = [answer async for answer in client.send_message(request(text, **options))]
    assert len(answers) == 1
    return answers[0]


def kinds(responses: list[StreamResponse]) -> list[str]:
    return [str(r.WhichOneof("payload")) for r in responses]


async def test_the_sdk_sends_and_gets(sdk: Sdk) -> None:
    client = sdk.client(streaming=False)
    task = (await send(client, "echo hello")).task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [get_artifact_text(a) for a in task.artifacts] == ["hello"]
    got = await client.get_task(GetTaskRequest(id=task.id, history_length=1))
    assert got.id == task.id and got.status.state == TaskState.TASK_STATE_COMPLETED
    assert len(got.history) == 1 and got.history[0].role == Role.ROLE_AGENT


async def test_the_sdk_streams(sdk: Sdk) -> None:
    client = sdk.client()
    responses = [r async for r in client.send_message(request("stream 3"))]
    assert kinds(responses) == ["task", "status_update", *["artifact_update"] * 3, "status_update"]
    assert responses[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    assert responses[1].status_update.status.state == TaskState.TASK_STATE_WORKING
    chunks = [get_artifact_text(r.artifact_update.artifact) for r in responses[2:5]]
    assert chunks == [f"chunk {n}\n" for n in range(3)]
    assert responses[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_the_sdk_cancels_and_the_work_stops(sdk: Sdk, server: AndonServer) -> None:
    client = sdk.client(streaming=False)
    task = (await send(client, "sleep 30", immediately=True)).task
    await until(lambda: server.trace(task.id))
    canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert canceled.metadata["andon.reason"] == "user"
    await unchanged(lambda: len(server.trace(task.id)))  # no step after the cancel
    # The SDK's 0.3 HTTP+JSON client reads an error's class only from a `type` field of
    # its own making, not from the status and reason the binding sends: it sees a 409.
    expected = A2AClientError if sdk.version == "0.3" and sdk.binding == "HTTP+JSON" else None
    with pytest.raises(expected or TaskNotCancelableError):
        await client.cancel_task(CancelTaskRequest(id=task.id))


async def test_the_sdk_resubscribes_and_sees_the_task_end(sdk: Sdk) -> None:
    client = sdk.client()
    task = (await send(sdk.client(streaming=False), "stream 10", immediately=True)).task
    responses = [r async for r in client.subscribe(SubscribeToTaskRequest(id=task.id))]
    assert kinds(responses)[0] == "task" and responses[0].task.id == task.id
    assert responses[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    # What the first item held and what came after it make every chunk once.
    held = [get_artifact_text(a, "") for a in responses[0].task.artifacts]
    after = [
        get_artifact_text(r.artifact_update.artifact, "")
        for r in responses[1:]
        if r.HasField("artifact_update")
    ]
    assert "".join(held + after) == "".join(f"chunk {n}\n" for n in range(10))


async def test_a_subscriber_sees_the_cancel_of_another_client(sdk: Sdk) -> None:
    client = sdk.client()
    task = (await send(sdk.client(streaming=False), "sleep 30", immediately=True)).task
    states: list[int] = []

    async def follow() -> None:
        async for response in client.subscribe(SubscribeToTaskRequest(id=task.id)):
            if response.HasField("status_update"):
                states.append(response.status_update.status.state)

    following = asyncio.create_task(follow())
    await until(lambda: states)  # subscribed, and the task is at work
    await sdk.client(streaming=False).cancel_task(CancelTaskRequest(id=task.id))
    await asyncio.wait_for(following, 15)
    assert states[-1] == TaskState.TASK_STATE_CANCELED


async def test_an_sdk_stream_dropped_under_the_cancel_policy_cancels_its_task(
    sdk: Sdk, server: AndonServer
) -> None:
    client = sdk.client()
    responses = client.send_message(request("sleep 30", **{"andon.onDisconnect": "cancel"}))
    task_id = (await anext(responses)).task.id
    await until(lambda: server.trace(task_id))
    await responses.aclose()  # the SDK closes its HTTP stream
    if sdk.binding == "GRPC":
        # Its gRPC transport leaves the call open when the iterator is closed; closing
        # the client (its channel) ends the call.
        await client.close()
    checker = sdk.client(streaming=False)

    async def task() -> Task:
        return await checker.get_task(GetTaskRequest(id=task_id))

    await until(lambda: _state_is(task, TaskState.TASK_STATE_CANCELED), what="canceled")
    assert (await task()).metadata["andon.reason"] == "client_disconnect"


async def _state_is(task: Callable[[], Awaitable[Task]], state: int) -> bool:
    return (await task()).status.state == state


async def test_the_sdk_reads_task_not_found(sdk: Sdk) -> None:
    client = sdk.client(streaming=False)
    # The SDK's 0.3 HTTP+JSON client names every 404 MethodNotFoundError (see above).
    expected = MethodNotFoundError if sdk.version == "0.3" and sdk.binding == "HTTP+JSON" else None
    with pytest.raises(expected or TaskNotFoundError):
        await client.get_task(GetTaskRequest(id="no-such-task"))
    with contextlib.suppress(A2AError):  # either way it is an A2A error, not a crash
        await client.cancel_task(CancelTaskRequest(id="no-such-task"))
