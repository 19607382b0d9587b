"""`andon serve` over real HTTP on 127.0.0.1, in A2A 1.0 and 0.3, over JSON-RPC and
HTTP+JSON: every method, every error the server can produce (with the HTTP status of
the specification on HTTP+JSON), resuming a dropped stream with Last-Event-ID, the
three disconnect policies with a socket closed mid-stream, ownership between two
principals, and bad input that leaves nothing stored and the server up.

One server per module (the demo agent, with its trace file); tests poll with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import (
    DIALECTS,
    ERRORS,
    JSONRPC_METHODS,
    Dialect,
    Item,
    Peer,
    Reply,
    canonical_state,
    new_id,
    unchanged,
    until,
)
from tests.test_client import AndonServer

V1 = Dialect("1.0", "jsonrpc")
POLICY = "X-Andon-On-Disconnect"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    with AndonServer(tmp_path_factory.mktemp("http")) as served:
        yield served


@contextlib.asynccontextmanager
async def speaking(
    server: AndonServer, dialect: Dialect, token: str | None = None
) -> AsyncIterator[Peer]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield Peer(dialect, http, server.port, headers)


@pytest.fixture(params=DIALECTS, ids=str)
def dialect(request: pytest.FixtureRequest) -> Dialect:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def peer(dialect: Dialect, server: AndonServer) -> AsyncIterator[Peer]:
    async with speaking(server, dialect) as speaker:
        yield speaker


def assert_error(reply: Reply, code: int, status: int | None = None) -> None:
    """The error `code`: on HTTP+JSON with its reason and the specification's HTTP status,
    on JSON-RPC in a 200 response (unless refused at the HTTP level: `status`), in A2A
    1.0 with its google.rpc.ErrorInfo reason."""
    reason, rest_status = ERRORS[code]
    assert reply.code == code, reply.body
    error = reply.error
    assert error is not None
    if reply.rest:
        assert reply.status == (status or rest_status), reply.body
        assert error["code"] == reply.status and error["message"]
        assert error["details"][0]["reason"] == reason
    else:
        assert reply.status == (status or 200), reply.body
        assert error["message"]
        if isinstance(error.get("data"), list):  # A2A 1.0: google.rpc typed details
            assert error["data"][0]["reason"] == reason


async def stored_tasks(server: AndonServer) -> int:
    """How many tasks the server holds (as the local admin sees them)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        reply = await http.get("/tasks", params={"pageSize": 1}, headers={"A2A-Version": "1.0"})
        return int(reply.json()["totalSize"])


def reason_of(task: dict[str, Any]) -> str | None:
    return (task.get("metadata") or {}).get("andon.reason")


# -- every method, in each dialect ------------------------------------------------------


async def test_send_blocks_until_done_and_get_trims_history(peer: Peer) -> None:
    task = await peer.send("echo hello")
    assert canonical_state(task["status"]["state"]) == "completed"
    assert [Item(None, "artifact-update", {"artifact": a}).text for a in task["artifacts"]] == [
        "hello"
    ]
    full = await peer.get(task["id"])
    assert len(full["history"]) == 2  # the user's message, the agent's reply
    last = await peer.get(task["id"], historyLength=1)
    assert last["history"] == full["history"][-1:]

    quick = await peer.send("sleep 0.3", blocking=False)
    assert canonical_state(quick["status"]["state"]) in ("submitted", "working")
    await peer.wait_state(quick["id"], "completed")


async def test_list_filters_by_context_and_state_and_pages(peer: Peer) -> None:
    context = new_id()
    done = [(await peer.send(f"echo {n}", contextId=context))["id"] for n in range(3)]
    running = (await peer.send("sleep 30", blocking=False, contextId=context))["id"]
    await peer.wait_state(running, "working")
    try:
        working = await peer.result(
            "list", {"contextId": context, "status": peer.dialect.state_name("working")}
        )
        assert [t["id"] for t in working["tasks"]] == [running]
        completed = await peer.result(
            "list", {"contextId": context, "status": peer.dialect.state_name("completed")}
        )
        assert sorted(t["id"] for t in completed["tasks"]) == sorted(done)
        assert all("artifacts" not in t for t in completed["tasks"])
        with_artifacts = await peer.result(
            "list",
            {
                "contextId": context,
                "status": peer.dialect.state_name("completed"),
                "includeArtifacts": True,
            },
        )
        assert all(t["artifacts"] for t in with_artifacts["tasks"])

        first = await peer.result("list", {"contextId": context, "pageSize": 3})
        assert len(first["tasks"]) == 3 and first["totalSize"] == 4 and first["nextPageToken"]
        second = await peer.result(
            "list", {"contextId": context, "pageSize": 3, "pageToken": first["nextPageToken"]}
        )
        assert len(second["tasks"]) == 1 and second["nextPageToken"] == ""
        paged = [t["id"] for t in first["tasks"] + second["tasks"]]
        assert sorted(paged) == sorted([*done, running])
    finally:
        await peer.result("cancel", {"id": running})


async def test_stream_sends_the_task_then_each_event_once(peer: Peer) -> None:
    items = await peer.collect("stream", peer.dialect.send_params("stream 3"))
    assert items[0].kind == "task" and items[0].state == "submitted"
    assert [i.state for i in items if i.kind == "status-update"] == ["working", "completed"]
    assert [i.text for i in items if i.kind == "artifact-update"] == [
        f"chunk {n}\n" for n in range(3)
    ]
    assert items[-1].kind == "status-update" and items[-1].state == "completed"
    seqs = [i.seq for i in items]
    assert all(s is not None for s in seqs) and seqs == sorted(set(seqs))  # type: ignore[type-var]
    if peer.dialect.version == "0.3":
        assert [i.final for i in items if i.kind == "status-update"] == [False, True]


async def test_cancel_stops_the_work_then_is_not_cancelable(
    peer: Peer, server: AndonServer
) -> None:
    task = await peer.send("sleep 30", blocking=False)
    await until(lambda: server.trace(task["id"]), what="the work started")
    canceled = await peer.result("cancel", {"id": task["id"]})
    assert canonical_state(canceled["status"]["state"]) == "canceled"
    assert reason_of(canceled) == "user"
    await unchanged(lambda: len(server.trace(task["id"])))  # stopped: no further step
    assert_error(await peer.call("cancel", {"id": task["id"]}), -32002)


async def test_subscribe_follows_a_task_to_its_end(peer: Peer) -> None:
    task = await peer.send("stream 6", blocking=False)
    items = await peer.collect("subscribe", {"id": task["id"]})
    assert items[0].kind == "task" and items[0].body["id"] == task["id"]
    assert items[-1].state == "completed"
    assert [i.kind for i in items[1:]].count("task") == 0
    # An ended task has nothing left to follow; replaying its events is asked for by id.
    assert_error(await peer.call("subscribe", {"id": task["id"]}), -32004)
    replay = await peer.collect("subscribe", {"id": task["id"]}, {"Last-Event-ID": "0"})
    assert replay[0].kind == "status-update" and replay[-1].state == "completed"
    assert [i.text for i in replay if i.kind == "artifact-update"] == [
        f"chunk {n}\n" for n in range(6)
    ]


async def test_extended_card_is_not_configured(peer: Peer) -> None:
    assert_error(await peer.call("extended_card"), -32007)


async def test_cancel_many_by_context_and_by_ids(peer: Peer) -> None:
    context = new_id()
    tasks = [(await peer.send("sleep 30", blocking=False, contextId=context))["id"] for _ in "ab"]
    result = await peer.result("cancel_many", {"contextId": context})
    outcomes = {r["id"]: r for r in result["results"]}
    assert sorted(outcomes) == sorted(tasks)
    for outcome in outcomes.values():
        assert canonical_state(outcome["task"]["status"]["state"]) == "canceled"
        assert reason_of(outcome["task"]) == "operator"
    again = await peer.result("cancel_many", {"ids": [tasks[0], "no-such-task"]})
    errors = {r["id"]: r["error"] for r in again["results"]}
    assert "already canceled" in errors[tasks[0]] and "not found" in errors["no-such-task"]
    assert all("task" not in r for r in again["results"])


# -- errors, and bad input: each refused with its error, nothing stored, the server up --


@contextlib.asynccontextmanager
async def stores_nothing(server: AndonServer) -> AsyncIterator[None]:
    """The requests made inside store no task; the server still serves afterwards."""
    before = await stored_tasks(server)
    yield
    assert await stored_tasks(server) == before, "a refused request stored a task"
    async with speaking(server, V1) as peer:
        assert canonical_state((await peer.send("echo up"))["status"]["state"]) == "completed"


async def event_log(peer: Peer, task_id: str) -> list[int | None]:
    """The sequence numbers of a task's whole log."""
    replay = await peer.collect("subscribe", {"id": task_id}, {"Last-Event-ID": "0"})
    return [item.seq for item in replay]


async def test_unknown_task_is_task_not_found_on_every_task_method(
    peer: Peer, server: AndonServer
) -> None:
    answer = peer.dialect.send_params("echo x", taskId="no-such-task")
    async with stores_nothing(server):
        for op in ("get", "cancel", "subscribe"):
            assert_error(await peer.call(op, {"id": "no-such-task"}), -32001)
        assert_error(
            await peer.call("subscribe", {"id": "no-such-task"}, {"Last-Event-ID": "0"}), -32001
        )
        assert_error(await peer.call("send", answer), -32001)
        assert_error(await peer.call("stream", answer), -32001)


async def test_message_to_an_ended_task_is_unsupported_and_appends_nothing(
    peer: Peer, server: AndonServer
) -> None:
    task = await peer.send("echo x")
    log = await event_log(peer, task["id"])
    async with stores_nothing(server):
        more = peer.dialect.send_params("more", taskId=task["id"])
        assert_error(await peer.call("send", more), -32004)
        assert_error(await peer.call("stream", more), -32004)
    assert await event_log(peer, task["id"]) == log


async def test_wrong_types_are_invalid_params(peer: Peer, server: AndonServer) -> None:
    task = await peer.send("echo x")
    message = peer.dialect.message("echo x")
    for key in ("parts", "content"):
        if key in message:
            message[key] = "not a list"
    async with stores_nothing(server):
        assert_error(await peer.call("send", {"message": message}), -32602)
        assert_error(await peer.call("stream", {"message": message}), -32602)
        assert_error(await peer.call("send", {"message": {"messageId": 7}}), -32602)
        assert_error(await peer.call("send", {"message": "echo x"}), -32602)
        assert_error(await peer.call("list", {"pageSize": 0}), -32602)
        assert_error(await peer.call("list", {"pageToken": "bm90IGEgdG9rZW4="}), -32602)
        assert_error(await peer.call("get", {"id": task["id"], "historyLength": -1}), -32602)
        assert_error(await peer.call("cancel_many", {}), -32602)
        assert_error(
            await peer.call("subscribe", {"id": task["id"]}, {"Last-Event-ID": "seven"}), -32602
        )


async def test_andon_keys_a_client_may_not_set_are_invalid_params(
    peer: Peer, server: AndonServer
) -> None:
    """`andon.retryOf` (a link to another task's artifacts) is andon's to write, and a
    non-string one was an internal error; so are a cancel's mode and a stop's figures."""
    other = await peer.send("echo x")
    async with stores_nothing(server):
        for metadata in (
            {"andon.retryOf": other["id"]},
            {"andon.retryOf": 5},
            {"andon.cancelMode": "bogus"},
            {"andon.stopMs": 0.1},
            {"andon.contextPolicy": ["reject"]},
        ):
            params = peer.dialect.send_params("echo x", metadata=metadata)
            assert_error(await peer.call("send", params), -32602)
            assert_error(await peer.call("stream", params), -32602)


async def test_a_nul_in_an_id_or_metadata_is_a_clear_error(peer: Peer, server: AndonServer) -> None:
    """What PostgreSQL cannot store is refused in words by either store (it was an
    internal error there), and a task id holding one is simply not found."""
    task = await peer.send("echo x")
    async with stores_nothing(server):
        for fields in ({"contextId": "c\x00"}, {"metadata": {"note": "a\x00b"}}):
            params = peer.dialect.send_params("echo x", **fields)
            assert_error(await peer.call("send", params), -32602)
            assert_error(await peer.call("stream", params), -32602)
        nul = "%00" if peer.dialect.rest else "\x00"  # a NUL in a URL's path is escaped
        for op in ("get", "cancel", "subscribe"):
            assert_error(await peer.call(op, {"id": task["id"] + nul}), -32001)


async def test_a_last_event_id_that_names_no_event_is_invalid_params(peer: Peer) -> None:
    task = await peer.send("echo x")
    for value in ("-1", str(2**63), "1e3"):
        reply = await peer.call("subscribe", {"id": task["id"]}, {"Last-Event-ID": value})
        assert_error(reply, -32602)
    # The largest event number there can be is a number, but nothing comes after it in
    # an ended task: answered as a subscribe without an id, not with an empty stream.
    last = {"Last-Event-ID": str(2**63 - 1)}
    assert_error(await peer.call("subscribe", {"id": task["id"]}, last), -32004)


async def test_resuming_an_ended_task_after_its_final_event_is_unsupported(peer: Peer) -> None:
    task = await peer.send("echo x")
    log = await event_log(peer, task["id"])
    final = log[-1]
    assert final is not None
    # From before the final event: replayed up to it.
    replay = await peer.collect("subscribe", {"id": task["id"]}, {"Last-Event-ID": str(final - 1)})
    assert [item.seq for item in replay] == [final]
    for after in (final, final + 1, final + 1000):
        reply = await peer.call("subscribe", {"id": task["id"]}, {"Last-Event-ID": str(after)})
        assert_error(reply, -32004)


@pytest.mark.parametrize("policy", [5, ["cancel"], "cancel-when-orphaned=soon", "stop"])
async def test_a_disconnect_policy_that_is_not_one_is_invalid_params(
    peer: Peer, server: AndonServer, policy: Any
) -> None:
    async with stores_nothing(server):
        params = peer.dialect.send_params("echo x", metadata={"andon.onDisconnect": policy})
        assert_error(await peer.call("stream", params), -32602)
        if isinstance(policy, str):
            plain = peer.dialect.send_params("echo x")
            assert_error(await peer.call("stream", plain, {POLICY: policy}), -32602)


async def test_an_a2a_version_not_spoken_is_version_not_supported(
    peer: Peer, server: AndonServer
) -> None:
    async with stores_nothing(server):
        for op in ("get", "send"):
            params = {"id": "x"} if op == "get" else peer.dialect.send_params("echo x")
            assert_error(await peer.call(op, params, {"A2A-Version": "9.9"}), -32009)


async def post_bytes(peer: Peer, content: bytes, content_type: str) -> Reply:
    """SendMessage's route in this dialect, with a body of these bytes."""
    request = peer.dialect.request("send", {})
    response = await peer.http.post(
        request.path, content=content, headers={**request.headers, "Content-Type": content_type}
    )
    return Reply(response.status_code, response.headers, response.json(), peer.dialect.rest)


async def test_a_body_that_is_not_json_is_a_parse_error(peer: Peer, server: AndonServer) -> None:
    async with stores_nothing(server):
        # NaN and Infinity are not JSON, though Python's json module reads them.
        for body in (b'{"message": {', b"", b"\xff\xfe", b'{"message": NaN}', b"[Infinity]"):
            reply = await post_bytes(peer, body, "application/json")
            if peer.dialect.rest and not body:
                assert_error(reply, -32602)  # no body: no message
                continue
            assert_error(reply, -32700)
            if not peer.dialect.rest:
                assert reply.body["id"] is None  # the id could not be read


async def test_a_body_of_another_content_type_is_refused_with_415(
    peer: Peer, server: AndonServer
) -> None:
    async with stores_nothing(server):
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            reply = await post_bytes(peer, b"echo x", content_type)
            assert_error(reply, -32005, status=415)


@pytest.mark.parametrize("version", ["1.0", "0.3"])
async def test_json_rpc_envelope_errors(server: AndonServer, version: str) -> None:
    async with speaking(server, Dialect(version, "jsonrpc")) as peer, stores_nothing(server):

        async def post(body: Any) -> Reply:
            response = await peer.http.post("/", json=body, headers=peer.dialect.headers)
            return Reply(response.status_code, response.headers, response.json(), rest=False)

        unknown = await post({"jsonrpc": "2.0", "id": 3, "method": "tasks/frobnicate"})
        assert_error(unknown, -32601)
        assert unknown.body["id"] == 3
        wrong_version = await post({"jsonrpc": "1.0", "id": "a", "method": "GetTask"})
        assert_error(wrong_version, -32600)
        assert wrong_version.body["id"] == "a"
        send = JSONRPC_METHODS[version]["send"]
        assert_error(await post([{"jsonrpc": "2.0", "id": 1, "method": send}]), -32600)
        assert_error(await post({"jsonrpc": "2.0", "id": {"x": 1}, "method": send}), -32600)
        assert_error(await post({"jsonrpc": "2.0", "id": 1, "method": send, "params": "x"}), -32600)
        assert_error(await post({"jsonrpc": "2.0", "id": 1, "method": send, "params": [1]}), -32602)
        assert_error(await post({"jsonrpc": "2.0", "id": 1, "method": send}), -32602)


BODY_LIMIT = 10 * 1024 * 1024
"""`andon serve`'s default limit on a request body."""


async def raw_exchange(port: int, head: bytes, body: list[bytes]) -> tuple[int, bytes]:
    """Send a request's head and body pieces on a socket of its own; the response's
    status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        for piece in body:
            writer.write(piece)
            await writer.drain()
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status_line, *lines = response.decode("latin-1").split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(fields.get("content-length", "0"))
        return int(status_line.split()[1]), await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# The limit is the binding's, whatever the version: one of each, in either version.
@pytest.mark.parametrize(
    "dialect", [Dialect("1.0", "jsonrpc"), Dialect("0.3", "rest")], ids=str, indirect=True
)
async def test_a_body_over_the_size_limit_is_refused_with_413(
    peer: Peer, server: AndonServer
) -> None:
    request = peer.dialect.request("send", peer.dialect.send_params("echo big"))
    host = f"127.0.0.1:{server.port}"
    async with stores_nothing(server):
        # Declared too long: refused before the body is read.
        declared = request.raw(host, {"Content-Length": str(BODY_LIMIT + 1)})
        head = declared[: declared.index(b"\r\n\r\n") + 4]
        status, body = await raw_exchange(server.port, head, [b"{"])
        assert_error(
            Reply(status, httpx.Headers(), json.loads(body), peer.dialect.rest), -32600, 413
        )
        # Sent in chunks with no length: refused once the limit is passed.
        chunked = head.replace(
            f"Content-Length: {BODY_LIMIT + 1}".encode(), b"Transfer-Encoding: chunked"
        )
        piece = b" " * (1024 * 1024)
        pieces = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 10 + [b"1\r\n \r\n"]
        status, body = await raw_exchange(server.port, chunked, pieces)
        assert_error(
            Reply(status, httpx.Headers(), json.loads(body), peer.dialect.rest), -32600, 413
        )
    # A body just within the limit is read (JSON may be padded with white space).
    padded = request.body and json.dumps(request.body).encode()
    assert padded is not None
    within = padded + b" " * (BODY_LIMIT - len(padded))
    response = await peer.http.post(
        request.path,
        content=within,
        headers={**request.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200 and "error" not in response.json()


async def test_a_message_over_the_parts_limit_is_invalid_params(
    peer: Peer, server: AndonServer
) -> None:
    params = peer.dialect.send_params("echo x")
    key = "content" if "content" in params["message"] else "parts"
    params["message"][key] = params["message"][key] * 101
    async with stores_nothing(server):
        for op in ("send", "stream"):
            reply = await peer.call(op, params)
            assert_error(reply, -32602)
            assert "at most 100 parts" in json.dumps(reply.body)
    params["message"][key] = params["message"][key][:100]
    within = await peer.call("send", params)
    assert within.status == 200 and "error" not in within.body


@pytest.mark.parametrize(
    "dialect", [Dialect("1.0", "jsonrpc"), Dialect("0.3", "rest")], ids=str, indirect=True
)
async def test_a_body_of_too_many_json_objects_is_refused_before_it_is_parsed(
    peer: Peer, server: AndonServer
) -> None:
    """700,000 empty parts in 9.8 MB (within the size limit) took 10 s of the event loop."""
    params = peer.dialect.send_params("echo x")
    key = "content" if "content" in params["message"] else "parts"
    params["message"][key] = [{"text": ""}] * 700_000
    request = peer.dialect.request("send", params)
    async with stores_nothing(server):
        response = await peer.http.post(
            request.path,
            content=json.dumps(request.body).encode(),
            headers={**request.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert "over 20000 JSON objects and arrays" in response.text


async def test_a_body_of_too_many_json_objects_is_refused_before_the_rest_arrives(
    server: AndonServer,
) -> None:
    """The count goes as the body arrives: 21,000 brackets of a 9 MB body are enough to
    answer, and the server keeps the connection (it skips what follows, unparsed)."""
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"A2A-Version: 1.0\r\nContent-Length: 9000000\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        async with stores_nothing(server):
            writer.write(head + b"[" * 21_000)  # and not a byte more, for now
            status = await asyncio.wait_for(reader.readline(), 10)
            assert status.startswith(b"HTTP/1.1 413 ")
            answer = await asyncio.wait_for(reader.readuntil(b"(--max-json-nodes)"), 10)
            assert b"over 20000 JSON objects and arrays" in answer
            writer.write(b" " * (9_000_000 - 21_000))  # the rest, then the next request
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"HTTP/1.1 200 "), 10)
    finally:
        writer.close()


async def test_a_request_that_is_not_http_leaves_the_server_up(server: AndonServer) -> None:
    async with stores_nothing(server):
        status, _ = await raw_exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n", [])
        assert status == 400


# -- resuming a dropped stream ---------------------------------------------------------


async def test_a_dropped_stream_resumes_after_its_last_event_id(peer: Peer) -> None:
    params = peer.dialect.send_params("stream 10")
    raw = await peer.open_raw("stream", params, {POLICY: "continue"})
    task = await raw.next()
    await raw.until(lambda item: item.text == "chunk 2\n")
    await raw.drop()
    before = raw.seen[1:]
    resumed = await peer.collect(
        "subscribe", {"id": task.body["id"]}, {"Last-Event-ID": str(before[-1].seq)}
    )
    events = before + resumed
    seqs = [item.seq for item in events]
    assert seqs == sorted(set(seqs)), "an event seen twice or out of order"
    assert [i.text for i in events if i.kind == "artifact-update"] == [
        f"chunk {n}\n" for n in range(10)
    ]
    assert [i.state for i in events if i.state in ("completed", "canceled")] == ["completed"]
    assert events[-1].state == "completed"
    # Nothing was missed: the whole log after the task's first item is what was seen.
    replay = await peer.collect(
        "subscribe", {"id": task.body["id"]}, {"Last-Event-ID": str(task.seq)}
    )
    assert [i.seq for i in replay] == seqs


# -- the disconnect policy -------------------------------------------------------------


async def drop_while_working(
    peer: Peer, server: AndonServer, text: str, policy: str | None, *, via: str = "header"
) -> tuple[str, float]:
    """Stream `text` under `policy` (a header, or message metadata), wait until its work
    has begun, then drop the connection. The task id and when it was dropped."""
    headers = {POLICY: policy} if policy is not None and via == "header" else {}
    fields: dict[str, Any] = {}
    if policy is not None and via == "metadata":
        fields["metadata"] = {"andon.onDisconnect": policy}
    raw = await peer.open_raw("stream", peer.dialect.send_params(text, **fields), headers)
    task_id = (await raw.next()).body["id"]
    await raw.until(lambda item: item.state == "working")
    await until(lambda: server.trace(task_id), what="the work started")
    await raw.drop()
    return task_id, time.monotonic()


@pytest.mark.parametrize("via", ["header", "metadata"])
async def test_under_cancel_a_dropped_stream_cancels_its_task_and_the_work_stops(
    peer: Peer, server: AndonServer, via: str
) -> None:
    task_id, _ = await drop_while_working(peer, server, "sleep 30", "cancel", via=via)
    task = await peer.wait_state(task_id, "canceled")
    assert reason_of(task) == "client_disconnect"
    await unchanged(lambda: len(server.trace(task_id)))


async def test_the_header_wins_over_the_metadata(server: AndonServer) -> None:
    async with speaking(server, V1) as peer:
        params = V1.send_params("sleep 0.5", metadata={"andon.onDisconnect": "cancel"})
        raw = await peer.open_raw("stream", params, {POLICY: "continue"})
        task_id = (await raw.next()).body["id"]
        await raw.until(lambda item: item.state == "working")
        await raw.drop()
        task = await peer.wait_state(task_id, "completed", "canceled")
        assert canonical_state(task["status"]["state"]) == "completed"


async def dropped_task_completes(peer: Peer, server: AndonServer, policy: str | None) -> None:
    task_id, _ = await drop_while_working(peer, server, "sleep 0.6", policy)
    task = await peer.wait_state(task_id, "completed", "canceled")
    assert canonical_state(task["status"]["state"]) == "completed"
    assert reason_of(task) is None


async def test_under_continue_a_dropped_stream_leaves_its_task_running(
    peer: Peer, server: AndonServer
) -> None:
    await dropped_task_completes(peer, server, "continue")


async def test_the_server_default_policy_is_continue(server: AndonServer) -> None:
    async with speaking(server, V1) as peer:
        await dropped_task_completes(peer, server, None)


async def test_under_cancel_closing_after_the_stream_ended_changes_nothing(peer: Peer) -> None:
    # A stream ends at an interrupted state too: the task waits for its answer.
    asking = peer.dialect.send_params("ask your name?")
    raw = await peer.open_raw("stream", asking, {POLICY: "cancel"})
    items = await raw.rest()
    assert items[-1].state == "input-required"
    await raw.drop()
    task_id = items[0].body["id"]

    async def log() -> list[int | None]:
        replay = await peer.collect("subscribe", {"id": task_id}, {"Last-Event-ID": "0"})
        return [i.seq for i in replay]

    await unchanged(log)
    assert await peer.state(task_id) == "input-required"
    answered = await peer.send("Ada", taskId=task_id)
    assert canonical_state(answered["status"]["state"]) == "completed"

    raw = await peer.open_raw("stream", peer.dialect.send_params("echo hi"), {POLICY: "cancel"})
    items = await raw.rest()
    await raw.drop()
    assert items[-1].state == "completed"
    task = await peer.get(items[0].body["id"])
    assert canonical_state(task["status"]["state"]) == "completed" and reason_of(task) is None


async def test_cancel_when_orphaned_cancels_once_no_stream_is_left_for_its_grace(
    server: AndonServer,
) -> None:
    async with speaking(server, V1) as peer:
        task_id, dropped = await drop_while_working(
            peer, server, "sleep 30", "cancel-when-orphaned=1"
        )
        task = await peer.wait_state(task_id, "canceled")
        assert time.monotonic() - dropped >= 1.0  # not before its grace period
        assert reason_of(task) == "orphaned"
        await unchanged(lambda: len(server.trace(task_id)))


async def test_cancel_when_orphaned_waits_for_the_last_stream(server: AndonServer) -> None:
    async with speaking(server, V1) as peer:
        params = V1.send_params("sleep 1.5")
        first = await peer.open_raw("stream", params, {POLICY: "cancel-when-orphaned=0.1"})
        task_id = (await first.next()).body["id"]
        # A second stream, attached (it has an event of the task) before the first drops.
        second = await peer.open_raw("subscribe", {"id": task_id}, {POLICY: "continue"})
        await second.until(lambda item: item.kind == "status-update")
        await first.drop()
        assert (await second.rest())[-1].state == "completed"
        await second.drop()


async def test_a_stream_attached_within_the_grace_keeps_the_task(server: AndonServer) -> None:
    async with speaking(server, V1) as peer:
        orphaned = {POLICY: "cancel-when-orphaned=2"}
        task_id, dropped = await drop_while_working(peer, server, "sleep 30", orphaned[POLICY])
        again = await peer.open_raw("subscribe", {"id": task_id}, orphaned)
        await again.until(lambda item: item.kind == "status-update")
        # Past the first stream's grace, with the second one attached: still working.
        await asyncio.sleep(max(0.0, dropped + 3 - time.monotonic()))
        assert await peer.state(task_id) == "working"
        await again.drop()
        task = await peer.wait_state(task_id, "canceled")
        assert reason_of(task) == "orphaned"


# -- ownership between principals (--auth tokens) --------------------------------------

BOB, ROOT = "bob-s3cret", "root-s3cret"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AndonServer, str]]:
    """`andon serve --auth tokens` with alice (a token from `andon token new`, kept in
    the file as its digest only), bob (a user) and root (an admin); and alice's token."""
    workdir = tmp_path_factory.mktemp("secured")
    made = subprocess.run(
        [str(Path(sys.executable).with_name("andon")), "token", "new", "alice"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    alice = made.split("token: ")[1].split()[0]
    line = made.split("tokens file line: ")[1].strip()
    assert alice not in line and line.startswith("alice user sha256:")
    tokens = workdir / "tokens"
    tokens.write_text(f"{line}\nbob user {BOB}\nroot admin {ROOT}\n")
    with AndonServer(workdir, "--auth", "tokens", "--tokens", str(tokens)) as served:
        yield served, alice


async def test_a_request_without_a_good_token_is_401_and_stores_nothing(
    secured: tuple[AndonServer, str], dialect: Dialect
) -> None:
    server, _ = secured
    async with speaking(server, dialect, ROOT) as root:
        before = (await root.result("list", {"pageSize": 1}))["totalSize"]
    for authorization, invalid in ((None, False), ("Bearer nope", True), (f"Basic {BOB}", True)):
        async with speaking(server, dialect) as anonymous:
            if authorization:
                anonymous.headers["Authorization"] = authorization
            for op, params in (
                ("send", dialect.send_params("echo x")),
                ("stream", dialect.send_params("echo x")),
                ("get", {"id": "x"}),
                ("list", {}),
            ):
                reply = await anonymous.call(op, params)
                assert reply.status == 401, reply.body
                challenge = reply.headers["WWW-Authenticate"]
                assert challenge.startswith("Bearer ")
                assert ('error="invalid_token"' in challenge) is invalid
            # Discovery stays open: the card says which scheme to use.
            card = (await anonymous.http.get("/.well-known/agent-card.json")).json()
            assert card["securitySchemes"]
    async with speaking(server, dialect, ROOT) as root:
        assert (await root.result("list", {"pageSize": 1}))["totalSize"] == before


async def test_another_principals_task_is_not_found_on_every_method(
    secured: tuple[AndonServer, str], dialect: Dialect
) -> None:
    server, alice_token = secured
    async with (
        speaking(server, dialect, alice_token) as alice,
        speaking(server, dialect, BOB) as bob,
    ):
        running = await alice.send("sleep 30", blocking=False)
        asking = await alice.send("ask who?")
        assert canonical_state(asking["status"]["state"]) == "input-required"
        asked = await event_log(alice, asking["id"])
        bobs = (await bob.result("list", {}))["totalSize"]
        for task in (running, asking):
            for op in ("get", "cancel", "subscribe"):
                assert_error(await bob.call(op, {"id": task["id"]}), -32001)
            replay = await bob.call("subscribe", {"id": task["id"]}, {"Last-Event-ID": "0"})
            assert_error(replay, -32001)
            answer = dialect.send_params("bob here", taskId=task["id"])
            assert_error(await bob.call("send", answer), -32001)
            assert_error(await bob.call("stream", answer), -32001)
            many = await bob.result("cancel_many", {"ids": [task["id"]]})
            assert many["results"] == [{"id": task["id"], "error": f"task {task['id']} not found"}]
            by_context = await bob.result("cancel_many", {"contextId": task["contextId"]})
            assert by_context["results"] == []
            listed = await bob.result("list", {"contextId": task["contextId"]})
            assert listed["tasks"] == [] and listed["totalSize"] == 0
        # Untouched, and still alice's.
        assert await alice.state(running["id"]) == "working"
        assert await alice.state(asking["id"]) == "input-required"
        assert await event_log(alice, asking["id"]) == asked  # bob's answer went nowhere
        assert (await bob.result("list", {}))["totalSize"] == bobs  # and stored nothing
        mine = await alice.result("cancel_many", {"ids": [running["id"], asking["id"]]})
        assert all("task" in r for r in mine["results"])


async def test_an_admin_may_cancel_anyones_task(secured: tuple[AndonServer, str]) -> None:
    server, alice_token = secured
    async with (
        speaking(server, V1, alice_token) as alice,
        speaking(server, V1, BOB) as bob,
        speaking(server, V1, ROOT) as root,
    ):
        context = new_id()
        alices = (await alice.send("sleep 30", blocking=False, contextId=context))["id"]
        bobs = (await bob.send("sleep 30", blocking=False, contextId=context))["id"]
        for task_id in (alices, bobs):
            await root.wait_state(task_id, "working")
        # A user's cancel by context reaches only that user's tasks.
        own = await bob.result("cancel_many", {"contextId": context})
        assert [r["id"] for r in own["results"]] == [bobs]
        assert await alice.state(alices) == "working"
        listed = await root.result("list", {"contextId": context})
        assert sorted(t["id"] for t in listed["tasks"]) == sorted([alices, bobs])
        canceled = await root.result("cancel", {"id": alices})
        assert canonical_state(canceled["status"]["state"]) == "canceled"
        assert reason_of(canceled) == "user"
        again = await alice.send("sleep 30", blocking=False, contextId=context)
        await alice.wait_state(again["id"], "working")
        swept = await root.result("cancel_many", {"states": ["TASK_STATE_WORKING"]})
        assert again["id"] in {r["id"] for r in swept["results"]}
        assert reason_of(await alice.get(again["id"])) == "operator"


async def test_a_405_allows_exactly_the_methods_served_at_its_path(server: AndonServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path, allowed in (
            ("/", "GET, HEAD, POST"),  # the web page and JSON-RPC: two routes, one path
            ("/tasks/x:subscribe", "GET, HEAD, POST"),
            ("/tasks/x:cancel", "POST"),  # not /tasks/{id}'s GET, though its pattern matches
            ("/v1/tasks/x:retry", "POST"),
        ):
            response = await http.request("OPTIONS", path)
            assert (response.status_code, response.headers["allow"]) == (405, allowed), path
