"""Regression tests for what the A2A TCK (github.com/a2aproject/a2a-tck, branches 1.0-dev
and 0.3.x) found, one or more per fix, over the ASGI app. docs/CONFORMANCE.md names
the TCK requirement each one is about."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import andon
from andon.server.app import ServerConfig, create_app

V1 = {"A2A-Version": "1.0"}

agent = andon.Agent(name="conformance", description="Answers what the fixes need")


@agent.skill("answer")
async def answer(ctx: andon.TaskContext) -> Any:
    return f"got {ctx.text}"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with andon.open_service(agent, str(tmp_path / "andon.sqlite")) as service:
        app = create_app(service, agent, ServerConfig(public_url="http://testserver"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def rpc(method: str, params: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def v1_message(text: str, message_id: str = "m-1") -> dict[str, Any]:
    return {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": message_id}


# -- JSONRPC-SSE-002: a request body that is not JSON is ContentTypeNotSupported ---------


async def test_jsonrpc_wrong_content_type_is_content_type_not_supported(
    client: httpx.AsyncClient,
) -> None:
    body = str(rpc("SendMessage", {"message": v1_message("hi")})).encode()
    response = await client.post("/", content=body, headers={**V1, "Content-Type": "text/plain"})
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == -32005
    assert error["data"][0]["reason"] == "CONTENT_TYPE_NOT_SUPPORTED"


async def test_rest_wrong_content_type_names_its_reason(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/message:send", content=b"hi", headers={**V1, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["error"]["details"][0]["reason"] == "CONTENT_TYPE_NOT_SUPPORTED"


# -- DM-MSG-001: an agent may answer with a message instead of a task ------------------


@agent.skill("reply")
async def reply(ctx: andon.TaskContext) -> Any:
    return ctx.reply(f"direct {ctx.text}", metadata={"k": "v"})


def to_reply(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "metadata": {"andon.skill": "reply"}}


async def test_direct_reply_is_the_send_result_in_1_0(client: httpx.AsyncClient) -> None:
    params = {"message": to_reply(v1_message("hi"))}
    body = (await client.post("/", json=rpc("SendMessage", params), headers=V1)).json()
    message = body["result"]["message"]
    assert message["role"] == "ROLE_AGENT"
    assert message["parts"] == [{"text": "direct hi"}]
    assert message["metadata"] == {"k": "v"}
    # The task behind it exists, completed, with the reply as its status message.
    got = await client.post("/", json=rpc("GetTask", {"id": message["taskId"]}), headers=V1)
    task = got.json()["result"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["status"]["message"]["messageId"] == message["messageId"]
    assert task["metadata"]["andon.directReply"] is True

    rest = await client.post("/message:send", json=params, headers=V1)
    assert rest.status_code == 200
    assert rest.json()["message"]["parts"] == [{"text": "direct hi"}]


async def test_direct_reply_is_the_send_result_in_0_3(client: httpx.AsyncClient) -> None:
    message = {
        "kind": "message",
        "role": "user",
        "parts": [{"kind": "text", "text": "hi"}],
        "messageId": "m-03",
        "metadata": {"andon.skill": "reply"},
    }
    body = (await client.post("/", json=rpc("message/send", {"message": message}))).json()
    result = body["result"]
    assert result["kind"] == "message" and result["role"] == "agent"
    assert result["parts"] == [{"kind": "text", "text": "direct hi"}]


async def test_direct_reply_streams_as_the_completed_status(client: httpx.AsyncClient) -> None:
    params = {"message": to_reply(v1_message("hi"))}
    response = await client.post("/", json=rpc("SendStreamingMessage", params), headers=V1)
    events = [line for line in response.text.splitlines() if line.startswith("data:")]
    last = httpx.Response(200, content=events[-1].removeprefix("data:")).json()
    status = last["result"]["statusUpdate"]["status"]
    assert status["state"] == "TASK_STATE_COMPLETED"
    assert status["message"]["parts"] == [{"text": "direct hi"}]


async def test_returning_immediately_still_gives_the_task(client: httpx.AsyncClient) -> None:
    params = {
        "message": to_reply(v1_message("hi")),
        "configuration": {"returnImmediately": True},
    }
    body = (await client.post("/", json=rpc("SendMessage", params), headers=V1)).json()
    assert "task" in body["result"]
