"""Regression tests for what the A2A TCK (github.com/a2aproject/a2a-tck, branches 1.0-dev
and 0.3.x) found, one or more per fix, over the ASGI app. docs/CONFORMANCE.md names
the TCK requirement each one is about."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import andon
from andon.server.app import ServerConfig, create_app
from tests.test_serve import free_port

V1 = {"A2A-Version": "1.0"}

agent = andon.Agent(name="conformance", description="Answers what the fixes need")


@agent.skill("answer")
async def answer(ctx: andon.TaskContext) -> Any:
    return f"got {ctx.text}"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with andon.open_service(agent, str(tmp_path / "andon.sqlite")) as service:
        app = create_app(service, ServerConfig(public_url="http://testserver"))
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


# -- the agent card: CARD-STRUCT-001, CARD-CACHE-002/003, the 0.3 HTTP+JSON interface --


async def test_card_lists_both_bindings_in_both_versions(client: httpx.AsyncClient) -> None:
    card = (await client.get("/.well-known/agent-card.json")).json()
    assert [(i["protocolBinding"], i["protocolVersion"]) for i in card["supportedInterfaces"]] == [
        ("JSONRPC", "1.0"),
        ("HTTP+JSON", "1.0"),
        ("JSONRPC", "0.3"),
        ("HTTP+JSON", "0.3"),
    ]
    # 0.3 readers find the HTTP+JSON interface too, and its /v1 routes answer.
    assert {"url": "http://testserver", "transport": "HTTP+JSON"} in card["additionalInterfaces"]
    message = {"messageId": "x", "role": "ROLE_USER", "content": [{"text": "hi"}]}
    sent = await client.post("/v1/message:send", json={"message": message})
    assert sent.status_code == 200
    assert sent.json()["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def test_card_is_cacheable(client: httpx.AsyncClient) -> None:
    first = await client.get("/.well-known/agent-card.json")
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["last-modified"].endswith("GMT")
    assert "max-age" in first.headers["cache-control"]
    again = await client.get("/.well-known/agent-card.json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    other = await client.get("/.well-known/agent-card.json", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200


async def test_card_of_one_version_on_request(client: httpx.AsyncClient) -> None:
    v1 = (await client.get("/.well-known/agent-card.json", headers=V1)).json()
    assert "url" not in v1 and "protocolVersion" not in v1 and v1["supportedInterfaces"]
    v03 = (await client.get("/.well-known/agent-card.json?A2A-Version=0.3")).json()
    assert v03["protocolVersion"] == "0.3.0" and "supportedInterfaces" not in v03


@pytest.fixture
async def v1_only(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    served = andon.Agent(name="one", skills=agent.skills, a2a_versions=("1.0",))
    async with andon.open_service(served, str(tmp_path / "andon.sqlite")) as service:
        app = create_app(service, ServerConfig(public_url="http://testserver"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_agent_served_in_1_0_only_has_a_strict_1_0_card(
    v1_only: httpx.AsyncClient,
) -> None:
    card = (await v1_only.get("/.well-known/agent-card.json")).json()
    assert {i["protocolVersion"] for i in card["supportedInterfaces"]} == {"1.0"}
    # Only fields of the 1.0 AgentCard message: a strict ProtoJSON reader accepts it.
    assert set(card) <= {
        "name", "description", "version", "supportedInterfaces", "capabilities",
        "defaultInputModes", "defaultOutputModes", "skills", "provider",
        "documentationUrl", "iconUrl", "securitySchemes", "securityRequirements",
        "signatures",
    }  # fmt: skip
    send = {"message": {"kind": "message", "role": "user", "parts": [], "messageId": "x"}}
    refused = (await v1_only.post("/", json=rpc("message/send", send))).json()
    assert refused["error"]["code"] == -32009
    rest = await v1_only.post("/v1/message:send", json=send)
    assert rest.status_code == 400
    assert rest.json()["error"]["details"][0]["reason"] == "VERSION_NOT_SUPPORTED"
    ok = await v1_only.post("/", json=rpc("SendMessage", {"message": v1_message("a")}), headers=V1)
    assert ok.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


def test_a2a_versions_are_checked() -> None:
    assert andon.Agent(name="a", a2a_versions="0.3").a2a_versions == ("0.3",)
    with pytest.raises(ValueError, match="a2a_versions"):
        andon.Agent(name="a", a2a_versions=("2.0",))
    with pytest.raises(ValueError, match="a2a_versions"):
        andon.Agent(name="a", a2a_versions=())


# -- A2A 0.3: a streaming method's error is an SSE event; an unknown part type refused --


async def test_0_3_streaming_error_is_an_sse_event(client: httpx.AsyncClient) -> None:
    response = await client.post("/", json=rpc("tasks/resubscribe", {"id": "nope"}, 7))
    assert response.headers["content-type"].startswith("text/event-stream")
    data = response.text.removeprefix("data: ").strip()
    assert httpx.Response(200, content=data).json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32001, "message": "task nope not found"},
    }
    # A2A 1.0 keeps the plain JSON-RPC error response.
    plain = await client.post("/", json=rpc("SubscribeToTask", {"id": "nope"}), headers=V1)
    assert plain.headers["content-type"] == "application/json"
    assert plain.json()["error"]["code"] == -32001


async def test_0_3_part_of_unknown_type_is_invalid_params(client: httpx.AsyncClient) -> None:
    part = {"type": "unsupported_type", "text": "This should be rejected"}
    message = {"kind": "message", "role": "user", "parts": [part], "messageId": "u"}
    body = (await client.post("/", json=rpc("message/send", {"message": message}))).json()
    assert body["error"]["code"] == -32602
    # A part without any discriminator is still read by its content.
    message["parts"] = [{"text": "plain"}]
    body = (await client.post("/", json=rpc("message/send", {"message": message}))).json()
    assert body["result"]["status"]["state"] == "completed"


# -- A2A 0.3 over HTTP+JSON is the ProtoJSON of the 0.3 proto (0.3 TCK, official SDK) ---

# What the official SDK's 0.3 REST client sends (MessageToDict of a2a.proto v0.3.0).
SDK_V03_REST_SEND = {
    "message": {
        "messageId": "m1",
        "contextId": "c1",
        "role": "ROLE_USER",
        "content": [
            {"text": "hi"},
            {
                "file": {
                    "fileWithUri": "https://example.com/a.txt",
                    "mimeType": "text/plain",
                    "name": "a.txt",
                }
            },
            {"file": {"fileWithBytes": "dGNr", "mimeType": "text/plain", "name": "b.txt"}},
            {"data": {"data": {"key": "value", "count": 42.0}}},
        ],
        "metadata": {"k": "v"},
    },
    "configuration": {
        "acceptedOutputModes": ["text/plain"],
        "pushNotification": {
            "url": "https://h/push",
            "token": "t",
            "authentication": {"schemes": ["Bearer"], "credentials": "x"},
        },
        "historyLength": 3,
        "blocking": True,
    },
}


def test_0_3_rest_reads_the_sdk_request() -> None:
    from andon.protocol.codec import codec_for
    from andon.protocol.wire import Version

    rest = codec_for(Version.V0_3, rest=True)
    send = rest.decode_send(SDK_V03_REST_SEND)
    assert [p.model_dump(exclude_none=True) for p in send.message.parts] == [
        {"text": "hi"},
        {"url": "https://example.com/a.txt", "media_type": "text/plain", "filename": "a.txt"},
        {"raw": "dGNr", "media_type": "text/plain", "filename": "b.txt"},
        {"data": {"key": "value", "count": 42.0}},
    ]
    config = send.configuration
    assert config is not None and config.blocking and config.history_length == 3
    push = config.push_notification_config
    assert push is not None and push.authentication is not None
    assert push.authentication.scheme == "Bearer"
    assert rest.encode_params(send)["configuration"] == SDK_V03_REST_SEND["configuration"]
    # proto3: a configuration without `blocking` says false; no configuration, the default.
    quiet = {**SDK_V03_REST_SEND, "configuration": {"acceptedOutputModes": ["text/plain"]}}
    assert not rest.decode_send(quiet).configuration.blocking  # type: ignore[union-attr]
    assert rest.decode_send({"message": SDK_V03_REST_SEND["message"]}).configuration is None
    # The proto field names are read too, as ProtoJSON readers do.
    snake = {"message_id": "m2", "role": "ROLE_USER", "content": [{"text": "x"}]}
    assert rest.decode_send({"message": snake}).message.message_id == "m2"


async def test_0_3_rest_speaks_protojson(client: httpx.AsyncClient) -> None:
    message = {"message_id": "m3", "role": "ROLE_USER", "content": [{"text": "hi"}]}
    sent = await client.post("/v1/message:send", json={"message": message})
    task = sent.json()["task"]
    assert "kind" not in task and task["status"]["state"] == "TASK_STATE_COMPLETED"
    reply = task["status"]["message"]
    assert reply["role"] == "ROLE_AGENT" and reply["content"] == [{"text": "got hi"}]
    assert task["history"][0]["content"] == [{"text": "hi"}]
    got = await client.get(f"/v1/tasks/{task['id']}", params={"historyLength": 1})
    assert got.json()["id"] == task["id"] and len(got.json()["history"]) == 1
    streamed = await client.post("/v1/message:stream", json={"message": message})
    events = [
        httpx.Response(200, content=line.removeprefix("data:")).json()
        for line in streamed.text.splitlines()
        if line.startswith("data:")
    ]
    assert "task" in events[0]
    last = events[-1]["statusUpdate"]
    assert last["final"] is True and last["status"]["state"] == "TASK_STATE_COMPLETED"


# -- the TCK agent (examples/tck_agent.py) plays its scenarios --------------------------


async def test_tck_agent_plays_its_scenarios(tmp_path: Path) -> None:
    from andon.node.serve import load_agent

    tck = load_agent(str(Path(__file__).parent.parent / "examples/tck_agent.py") + ":agent")
    async with andon.open_service(tck, str(tmp_path / "andon.sqlite")) as service:
        app = create_app(service, ServerConfig(public_url="http://testserver"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:

            async def send(message_id: str, **fields: Any) -> dict[str, Any]:
                message = {**v1_message("x", message_id), **fields}
                reply = await http.post(
                    "/", json=rpc("SendMessage", {"message": message}), headers=V1
                )
                result: dict[str, Any] = reply.json()["result"]
                return result

            done = (await send("tck-complete-task-1"))["task"]
            assert done["status"]["message"]["parts"] == [{"text": "Hello from TCK"}]
            data = (await send("tck-artifact-data-1"))["task"]
            assert data["artifacts"][0]["parts"][0]["data"] == {"key": "value", "count": 42}
            url = (await send("tck-artifact-file-url-1"))["task"]["artifacts"][0]["parts"][0]
            assert url == {
                "url": "https://example.com/output.txt",
                "mediaType": "text/plain",
                "filename": "output.txt",
            }
            assert (await send("tck-message-response-1"))["message"]["parts"] == [
                {"text": "Direct message response"}
            ]
            waiting = (await send("tck-input-required-1"))["task"]
            assert waiting["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
            again = await send("tck-input-required-2", taskId=waiting["id"])
            assert again["task"]["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
            ended = await send("tck-complete-task-2", taskId=waiting["id"])
            assert ended["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
            # The 0.3 TCK's messages: answered, and the task stays open for the next one.
            open_task = (await send("test-message-id-1"))["task"]
            assert open_task["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"


def test_a_stream_that_fails_midway_ends_with_the_error_in_its_bindings_form() -> None:
    """A failure after the first event is one last SSE event: a JSON-RPC error response
    with the request's id, or the HTTP+JSON error body; never a bare object."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from andon.protocol.errors import TaskNotFound
    from andon.protocol.jsonrpc import error_response, success_response
    from andon.server.app import rest_error
    from andon.server.http import sse_response
    from andon.server.operations import Update

    async def failing() -> AsyncIterator[Update]:
        yield Update(1, "status", "t1", "c1", {"state": "working"})
        raise TaskNotFound("task t1 not found")

    def endpoint(binding: str) -> Any:
        async def respond(request: Any) -> Any:
            if binding == "jsonrpc":
                return sse_response(
                    failing(),
                    lambda u: success_response(7, {"seq": u.seq}),
                    lambda e: error_response(7, {"code": e.code, "message": e.message}),
                    15,
                )
            return sse_response(
                failing(),
                lambda u: json.dumps({"seq": u.seq}).encode(),
                lambda e: json.dumps(rest_error(e.http_status, e.message, e.reason)).encode(),
                15,
            )

        return respond

    app = Starlette(routes=[Route(f"/{b}", endpoint(b)) for b in ("jsonrpc", "rest")])
    with TestClient(app) as client:
        rpc = [line for line in client.get("/jsonrpc").text.splitlines() if line.startswith("data")]
        rest = [line for line in client.get("/rest").text.splitlines() if line.startswith("data")]
    last = json.loads(rpc[-1].removeprefix("data: "))
    assert last == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32001, "message": "task t1 not found"},
    }
    body = json.loads(rest[-1].removeprefix("data: "))
    assert body["error"]["code"] == 404
    assert body["error"]["details"][0]["reason"] == "TASK_NOT_FOUND"


async def test_an_unknown_route_or_method_answers_the_http_json_error_body(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/tasks/t1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"
    wrong = await client.delete("/message:send")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["details"][0]["reason"] == "METHOD_NOT_ALLOWED"
    assert "POST" in wrong.headers["allow"]


@contextlib.asynccontextmanager
async def uvicorn_serving(app: Any) -> AsyncIterator[str]:
    """`app` under uvicorn on a free port of 127.0.0.1, in this process; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@pytest.mark.parametrize("keepalive", [0.2, 60.0])
async def test_a_quiet_stream_keeps_alive_and_ends_with_its_task(
    tmp_path: Path, keepalive: float
) -> None:
    """While the task is quiet the stream sends a keep-alive comment every `keepalive`
    seconds; once the task is done the stream ends at once, however long that is."""
    release = asyncio.Event()
    quiet = andon.Agent(name="quiet")

    @quiet.skill("wait")
    async def wait(ctx: andon.TaskContext) -> str:
        await release.wait()
        return "released"

    # Released after two keep-alives, or (when they are a minute apart) at the first event.
    wanted = 2 if keepalive < 1 else 0
    lines: list[str] = []
    message = {"role": "ROLE_USER", "parts": [{"text": "go"}], "messageId": "m-quiet"}
    async with andon.open_service(quiet, str(tmp_path / "andon.sqlite")) as service:
        config = ServerConfig(public_url="http://testserver", keepalive=keepalive)
        async with (
            uvicorn_serving(create_app(service, config)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            http.stream("POST", "/message:stream", json={"message": message}, headers=V1) as reply,
        ):
            async for line in reply.aiter_lines():
                lines.append(line)
                started = any(seen.startswith("data") for seen in lines)
                if started and not release.is_set() and lines.count(": keep-alive") >= wanted:
                    released = time.monotonic()
                    release.set()
            ended = time.monotonic()
    events = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data")]
    assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert lines.count(": keep-alive") >= wanted
    assert ended - released < 5, "the stream outlived its task"


async def test_json_rpc_answers_the_same_mounted_below_a_path(tmp_path: Path) -> None:
    """POST / takes a shortcut past Starlette's router; mounted below a path, the app
    answers JSON-RPC through the router, the same."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    async with andon.open_service(agent, str(tmp_path / "andon.sqlite")) as service:
        app = create_app(service, ServerConfig(public_url="http://testserver"))
        outer = Starlette(routes=[Mount("/a2a", app=app)])
        replies = []
        for served, path in ((app, "/"), (outer, "/a2a/")):
            transport = httpx.ASGITransport(app=served)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                sent = rpc("SendMessage", {"message": v1_message("hi", f"m-{path}")})
                reply = (await http.post(path, json=sent, headers=V1)).json()
                missing = await http.post(path, json=rpc("GetTask", {"id": "no"}), headers=V1)
                replies.append((reply["result"]["task"]["status"]["state"], missing.json()))
    assert replies[0] == replies[1]
    assert replies[0][0] == "TASK_STATE_COMPLETED"
    assert replies[0][1]["error"]["code"] == -32001
