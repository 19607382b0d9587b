"""Talking to a live `andon serve` over HTTP in each of its four A2A dialects: A2A 1.0
and 0.3, each over JSON-RPC and over HTTP+JSON. Requests go out with httpx, or on a raw
socket that a test can drop in the middle of a stream, as a client that dies would.

Method names, routes and shapes here are written from the A2A specifications (1.0, and
0.3.0 with its proto for HTTP+JSON), not taken from andon's codecs: the tests check
andon against the specifications, not against itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from andon.client.sse import ServerEvent, read_events

JSONRPC_METHODS: dict[str, dict[str, str]] = {
    "1.0": {
        "send": "SendMessage",
        "stream": "SendStreamingMessage",
        "get": "GetTask",
        "list": "ListTasks",
        "cancel": "CancelTask",
        "subscribe": "SubscribeToTask",
        "push_create": "CreateTaskPushNotificationConfig",
        "push_get": "GetTaskPushNotificationConfig",
        "push_list": "ListTaskPushNotificationConfigs",
        "push_delete": "DeleteTaskPushNotificationConfig",
        "extended_card": "GetExtendedAgentCard",
        "cancel_many": "andon/cancelMany",
    },
    "0.3": {
        "send": "message/send",
        "stream": "message/stream",
        "get": "tasks/get",
        "list": "tasks/list",
        "cancel": "tasks/cancel",
        "subscribe": "tasks/resubscribe",
        "push_create": "tasks/pushNotificationConfig/set",
        "push_get": "tasks/pushNotificationConfig/get",
        "push_list": "tasks/pushNotificationConfig/list",
        "push_delete": "tasks/pushNotificationConfig/delete",
        "extended_card": "agent/getAuthenticatedExtendedCard",
        "cancel_many": "andon/cancelMany",
    },
}

# HTTP+JSON routes, under "" in 1.0 and "/v1" in 0.3; {id} is the task, {config} a push config.
REST_ROUTES: dict[str, tuple[str, str]] = {
    "send": ("POST", "/message:send"),
    "stream": ("POST", "/message:stream"),
    "get": ("GET", "/tasks/{id}"),
    "list": ("GET", "/tasks"),
    "cancel": ("POST", "/tasks/{id}:cancel"),
    "subscribe": ("POST", "/tasks/{id}:subscribe"),
    "push_create": ("POST", "/tasks/{id}/pushNotificationConfigs"),
    "push_get": ("GET", "/tasks/{id}/pushNotificationConfigs/{config}"),
    "push_list": ("GET", "/tasks/{id}/pushNotificationConfigs"),
    "push_delete": ("DELETE", "/tasks/{id}/pushNotificationConfigs/{config}"),
    "cancel_many": ("POST", "/tasks:cancel"),
}
EXTENDED_CARD_ROUTES = {"1.0": "/extendedAgentCard", "0.3": "/v1/card"}
STREAMING = frozenset({"stream", "subscribe"})

# Each error's google.rpc.ErrorInfo reason and HTTP status on the HTTP+JSON binding, as
# the A2A TCK (branch 1.0-dev, docs/CONFORMANCE.md) checks them. The text of the
# specification's section 5.4 at tag v1.0.1 differs in three: 400 for -32002 and
# -32005, 500 for -32006. The JSON-RPC errors' reasons are andon's names.
ERRORS: dict[int, tuple[str, int]] = {
    -32700: ("JSON_PARSE", 400),
    -32600: ("INVALID_REQUEST", 400),
    -32601: ("METHOD_NOT_FOUND", 404),
    -32602: ("INVALID_PARAMS", 400),
    -32603: ("INTERNAL_ERROR", 500),
    -32001: ("TASK_NOT_FOUND", 404),
    -32002: ("TASK_NOT_CANCELABLE", 409),
    -32003: ("PUSH_NOTIFICATION_NOT_SUPPORTED", 400),
    -32004: ("UNSUPPORTED_OPERATION", 400),
    -32005: ("CONTENT_TYPE_NOT_SUPPORTED", 415),
    -32006: ("INVALID_AGENT_RESPONSE", 502),
    -32007: ("EXTENDED_AGENT_CARD_NOT_CONFIGURED", 400),
    -32008: ("EXTENSION_SUPPORT_REQUIRED", 400),
    -32009: ("VERSION_NOT_SUPPORTED", 400),
}
CODES = {reason: code for code, (reason, _) in ERRORS.items()}


def new_id() -> str:
    return uuid.uuid4().hex


def canonical_state(value: str) -> str:
    """`TASK_STATE_INPUT_REQUIRED`, `TASK_STATE_CANCELLED` (0.3 proto) or `input-required`
    (0.3 JSON): as 0.3 JSON names it."""
    name = value.removeprefix("TASK_STATE_").lower().replace("_", "-")
    return "canceled" if name == "cancelled" else name


async def _value(read: Callable[[], Any]) -> Any:
    got = read()
    return await got if inspect.isawaitable(got) else got


async def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll `check` (a function or a coroutine function) until it gives something true."""
    deadline = time.monotonic() + timeout
    while not await _value(check):
        assert time.monotonic() < deadline, f"{what}: not met within {timeout}s"
        await asyncio.sleep(0.02)


async def unchanged(read: Callable[[], Any], duration: float = 0.5) -> None:
    """`read` (a function or a coroutine function) gives the same value for `duration`
    seconds: something that should not happen did not."""
    first = await _value(read)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        now = await _value(read)
        assert now == first, f"changed from {first!r} to {now!r}"
        await asyncio.sleep(0.02)


@dataclass(frozen=True)
class WireRequest:
    verb: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]

    def raw(self, host: str, extra: Mapping[str, str] = {}) -> bytes:
        """The request as HTTP/1.1 bytes."""
        target = self.path
        if self.query:
            target += "?" + str(httpx.QueryParams(self.query))
        payload = b"" if self.body is None else json.dumps(self.body).encode()
        headers = {
            "Host": host,
            "Content-Type": "application/json",
            "Content-Length": str(len(payload)),
            **self.headers,
            **extra,
        }
        head = f"{self.verb} {target} HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return (head + "\r\n").encode() + payload


@dataclass(frozen=True)
class Item:
    """One event of a stream, whatever the dialect: its SSE id and what it carries."""

    seq: int | None
    kind: str  # task, message, status-update, artifact-update
    body: dict[str, Any]
    final: bool | None = None
    """The 0.3 `final` flag of a status update (1.0 has none)."""

    @property
    def state(self) -> str | None:
        status = self.body.get("status")
        return canonical_state(status["state"]) if status else None

    @property
    def text(self) -> str:
        """The text of an artifact update's parts."""
        artifact = self.body.get("artifact") or {}
        parts = artifact.get("parts") or artifact.get("content") or []
        return "".join(p.get("text", "") for p in parts)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: Any
    rest: bool

    @property
    def error(self) -> dict[str, Any] | None:
        if not isinstance(self.body, dict):
            return None
        error = self.body.get("error")
        return error if isinstance(error, dict) else None

    @property
    def code(self) -> int | None:
        """The JSON-RPC error code, or on HTTP+JSON the code of the error's reason."""
        error = self.error
        if error is None:
            return None
        if not self.rest:
            return int(error["code"])
        return CODES[error["details"][0]["reason"]]

    @property
    def result(self) -> Any:
        assert self.error is None, f"expected a result, got {self.body}"
        return self.body if self.rest else self.body["result"]


@dataclass(frozen=True)
class Dialect:
    version: str  # "1.0" or "0.3"
    binding: str  # "jsonrpc" or "rest"

    def __str__(self) -> str:
        return f"{self.version}-{self.binding}"

    @property
    def rest(self) -> bool:
        return self.binding == "rest"

    @property
    def headers(self) -> dict[str, str]:
        return {"A2A-Version": "1.0"} if self.version == "1.0" else {}

    def message(self, text: str, **fields: Any) -> dict[str, Any]:
        """A user message; `fields` (contextId, taskId, metadata) as they are named."""
        message: dict[str, Any] = {"messageId": new_id(), **fields}
        if self.version == "1.0":
            return {**message, "role": "ROLE_USER", "parts": [{"text": text}]}
        if self.rest:  # the 0.3 proto: parts are `content`
            return {**message, "role": "ROLE_USER", "content": [{"text": text}]}
        return {
            **message,
            "kind": "message",
            "role": "user",
            "parts": [{"kind": "text", "text": text}],
        }

    def send_params(self, text: str, *, blocking: bool = True, **fields: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"message": self.message(text, **fields)}
        if not blocking:
            key, value = (
                ("blocking", False) if self.version == "0.3" else ("returnImmediately", True)
            )
            params["configuration"] = {key: value}
        return params

    def state_name(self, state: str) -> str:
        """A state (`working`) as this dialect writes it in a request."""
        if self.version == "0.3" and not self.rest:
            return state
        return "TASK_STATE_" + state.upper().replace("-", "_")

    def request(self, op: str, params: Mapping[str, Any]) -> WireRequest:
        if not self.rest:
            body = {"jsonrpc": "2.0", "id": new_id(), "method": JSONRPC_METHODS[self.version][op]}
            return WireRequest("POST", "/", {}, {**body, "params": dict(params)}, self.headers)
        if op == "extended_card":
            return WireRequest("GET", EXTENDED_CARD_ROUTES[self.version], {}, None, self.headers)
        verb, route = REST_ROUTES[op]
        rest = dict(params)
        task_id = rest.pop("id", None) or rest.pop("taskId", "")
        path = ("/v1" if self.version == "0.3" else "") + route.format(
            id=task_id, config=rest.pop("config", "c1")
        )
        if verb == "GET":
            query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in rest.items()}
            return WireRequest(verb, path, query, None, self.headers)
        return WireRequest(verb, path, {}, rest if verb != "DELETE" else None, self.headers)

    def item(self, event: ServerEvent) -> Item:
        """A stream's SSE event as an Item."""
        data = json.loads(event.data)
        if not self.rest:
            assert "result" in data, f"expected a result event, got {data}"
            data = data["result"]
        seq = int(event.id) if event.id is not None else None
        if self.version == "0.3" and not self.rest:
            return Item(seq, data["kind"], data, data.get("final"))
        [(frame, body)] = data.items()
        kind = {"statusUpdate": "status-update", "artifactUpdate": "artifact-update"}.get(
            frame, frame
        )
        return Item(seq, kind, body, body.get("final"))

    def task(self, result: Any) -> dict[str, Any]:
        """The task a send result holds (1.0 and the 0.3 proto frame it, 0.3 JSON does not)."""
        if self.version == "0.3" and not self.rest:
            assert result["kind"] == "task", result
            return dict(result)
        return dict(result["task"])


DIALECTS = [Dialect(v, b) for v in ("1.0", "0.3") for b in ("jsonrpc", "rest")]


@dataclass
class Peer:
    """One dialect's client of a live server."""

    dialect: Dialect
    http: httpx.AsyncClient
    port: int
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request (a token, a disconnect policy)."""

    async def call(
        self, op: str, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] = {}
    ) -> Reply:
        """One request; a streaming method's first event stands for its reply (0.3 JSON-RPC
        answers a streaming method's error as a stream of one error)."""
        request = self.dialect.request(op, params or {})
        response = await self.http.request(
            request.verb,
            request.path,
            params=request.query or None,
            json=request.body,
            headers={**request.headers, **self.headers, **headers},
        )
        body: Any = None
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            events = [e async for e in read_events(_lines(response.text))]
            body = json.loads(events[0].data)
        elif response.content:
            body = response.json()
        return Reply(response.status_code, response.headers, body, self.dialect.rest)

    async def result(self, op: str, params: Mapping[str, Any] | None = None) -> Any:
        reply = await self.call(op, params)
        assert reply.status == 200, reply.body
        return reply.result

    async def send(self, text: str, *, blocking: bool = True, **fields: Any) -> dict[str, Any]:
        """SendMessage: the task it answers with."""
        result = await self.result(
            "send", self.dialect.send_params(text, blocking=blocking, **fields)
        )
        return self.dialect.task(result)

    async def get(self, task_id: str, **params: Any) -> dict[str, Any]:
        return dict(await self.result("get", {"id": task_id, **params}))

    async def state(self, task_id: str) -> str:
        return canonical_state((await self.get(task_id))["status"]["state"])

    async def wait_state(self, task_id: str, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        """The task, once it is in one of `states`."""
        deadline = time.monotonic() + timeout
        while True:
            task = await self.get(task_id)
            if canonical_state(task["status"]["state"]) in states:
                return task
            assert time.monotonic() < deadline, f"{task_id} is {task['status']['state']}"
            await asyncio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def stream(
        self, op: str, params: Mapping[str, Any], headers: Mapping[str, str] = {}
    ) -> AsyncIterator[AsyncIterator[Item]]:
        """A streaming request over httpx: its items, as they come."""
        request = self.dialect.request(op, params)
        async with self.http.stream(
            request.verb,
            request.path,
            params=request.query or None,
            json=request.body,
            headers={**request.headers, **self.headers, **headers},
        ) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")

            async def items() -> AsyncIterator[Item]:
                async for event in read_events(response.aiter_lines()):
                    yield self.dialect.item(event)

            yield items()

    async def collect(
        self, op: str, params: Mapping[str, Any], headers: Mapping[str, str] = {}
    ) -> list[Item]:
        """Every item of a stream, to its end."""
        async with self.stream(op, params, headers) as items:
            return [item async for item in items]

    async def open_raw(
        self, op: str, params: Mapping[str, Any], headers: Mapping[str, str] = {}
    ) -> RawStream:
        request = self.dialect.request(op, params)
        return await RawStream.open(self.port, request, {**self.headers, **headers}, self.dialect)


async def _lines(text: str) -> AsyncIterator[str]:
    for line in text.splitlines():
        yield line


class RawStream:
    """A streaming request on a TCP connection of its own, read event by event. `drop()`
    closes the socket mid-stream, as a client that dies does; nothing is sent first."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialect: Dialect
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.dialect = dialect
        self.seen: list[Item] = []
        self._events = read_events(self._body_lines())

    @classmethod
    async def open(
        cls, port: int, request: WireRequest, headers: Mapping[str, str], dialect: Dialect
    ) -> RawStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request.raw(f"127.0.0.1:{port}", headers))
        await writer.drain()
        stream = cls(reader, writer, dialect)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        assert status_line.split()[1] == "200", head
        fields = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        assert fields["content-type"].startswith("text/event-stream"), head
        assert fields.get("transfer-encoding") == "chunked", head
        return stream

    async def _body_lines(self) -> AsyncIterator[str]:
        """The chunked body, line by line."""
        pending = b""
        while True:
            size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            pending += (await self.reader.readexactly(size + 2))[:-2]
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode()

    async def next(self, timeout: float = 15.0) -> Item:
        event = await asyncio.wait_for(anext(self._events), timeout)
        item = self.dialect.item(event)
        self.seen.append(item)
        return item

    async def until(self, done: Callable[[Item], bool], timeout: float = 15.0) -> Item:
        """Read until an item satisfies `done`; that item."""
        while True:
            item = await self.next(timeout)
            if done(item):
                return item

    async def rest(self, timeout: float = 15.0) -> list[Item]:
        """Every item to the stream's end."""
        items = []
        with contextlib.suppress(StopAsyncIteration):
            while True:
                items.append(await self.next(timeout))
        return items

    async def drop(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
