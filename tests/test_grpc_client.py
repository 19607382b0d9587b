"""The Python client over the gRPC binding (`AndonClient(binding="grpc")`) against a
real `andon serve --grpc-port`: send, stream, subscribe, cancel with the work stopped,
errors by their ErrorInfo reason, a webhook registered over gRPC, and the gRPC agent
card interface."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from andon.client import AndonClient, ClientError, TaskNotCancelable, TaskNotFound
from andon.protocol.types import TaskState
from tests.live_server import unchanged, until
from tests.test_client import AndonServer, free_port
from tests.webhook import Receiver

GRPC_PORT = free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    args = ("--grpc-port", str(GRPC_PORT), "--push-allow", "127.0.0.1")
    with AndonServer(tmp_path_factory.mktemp("grpc"), *args) as served:
        yield served


@pytest.fixture
async def client(server: AndonServer) -> AsyncIterator[AndonClient]:
    async with AndonClient(f"http://127.0.0.1:{GRPC_PORT}", binding="grpc") as speaking:
        yield speaking


def test_the_card_lists_the_grpc_interface(server: AndonServer) -> None:
    card = httpx.get(server.url + "/.well-known/agent-card.json").json()
    grpc = [i for i in card["supportedInterfaces"] if i["protocolBinding"] == "GRPC"]
    assert grpc == [
        {"url": f"127.0.0.1:{GRPC_PORT}", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
    ]


async def test_send_stream_and_get(client: AndonClient) -> None:
    task = await client.send("echo over grpc")
    assert task.status.state is TaskState.COMPLETED
    events = [event async for event in client.stream("stream 3")]
    assert events[0].task_id and events[-1].state is TaskState.COMPLETED
    assert len(events) == 6  # the task, working, three chunks, completed
    got = await client.get(task.id)
    assert got.id == task.id and got.status.state is TaskState.COMPLETED


async def test_cancel_stops_the_work(client: AndonClient, server: AndonServer) -> None:
    task = await client.send("sleep 30", blocking=False)
    await until(lambda: server.trace(task.id))
    canceled = await client.cancel(task.id)
    assert canceled.status.state is TaskState.CANCELED
    await unchanged(lambda: len(server.trace(task.id)))
    with pytest.raises(TaskNotCancelable):
        await client.cancel(task.id)


async def test_subscribe_follows_to_the_end(client: AndonClient) -> None:
    task = await client.send("stream 5", blocking=False)
    events = [event async for event in client.subscribe(task.id)]
    assert events[-1].state is TaskState.COMPLETED


async def test_errors_by_reason(client: AndonClient) -> None:
    with pytest.raises(TaskNotFound):
        await client.get("no-such-task")
    with pytest.raises(ClientError):
        await client.retry("no-such-task")  # an andon extension: not on gRPC


async def test_a_webhook_registered_over_grpc(client: AndonClient) -> None:
    with Receiver() as receiver:
        task = await client.send("echo pushed", push=receiver.url)

        def done() -> bool:
            return any(h.state == "completed" for h in receiver.accepted(task.id))

        await until(done)
