"""The async andon client: A2A over httpx (JSON-RPC, or the HTTP+JSON binding), with
andon's extensions (cancel reason and wait, cancel many, retry, disconnect policy) and
streams that resume after a dropped connection.

Requests and results go through the protocol codecs (andon.protocol), so the client
speaks A2A 1.0 or 0.3 with the same canonical models the server uses.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import itertools
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
from pydantic_core import from_json, to_json

from andon.client.errors import (
    ProtocolError,
    RemoteError,
    ServerUnreachable,
    StreamLost,
    Unauthorized,
    remote_error,
)
from andon.client.sse import read_events
from andon.protocol import errors as a2a
from andon.protocol.codec import VERSION_HEADER, codec_for
from andon.protocol.params import (
    CancelManyParams,
    CancelTaskParams,
    ExtendedCardParams,
    GetTaskParams,
    ListTasksParams,
    ListTasksResult,
    Params,
    PushNotificationConfig,
    RetryParams,
    SendMessageConfiguration,
    SendMessageParams,
    SubscribeParams,
)
from andon.protocol.types import (
    STREAM_END,
    CancelReason,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatusUpdateEvent,
)
from andon.protocol.wire import STREAM_END_STATES, Method, StreamItem, Version

if TYPE_CHECKING:
    from andon.client.grpc_transport import GrpcTransport

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DISCONNECT_HEADER = "X-Andon-On-Disconnect"
DISCONNECT_POLICIES = ("continue", "cancel", "cancel-when-orphaned=SECONDS")

Binding = Literal["jsonrpc", "http+json", "grpc"]
BINDINGS: tuple[Binding, ...] = ("jsonrpc", "http+json")
"""The HTTP bindings (those discover() chooses from); `grpc` is chosen by name."""

# The HTTP+JSON binding's route of each method ({id}: the task), below `/v1` in A2A 0.3.
REST_ROUTES: dict[Method, tuple[str, str]] = {
    Method.SEND: ("POST", "/message:send"),
    Method.STREAM: ("POST", "/message:stream"),
    Method.GET: ("GET", "/tasks/{id}"),
    Method.LIST: ("GET", "/tasks"),
    Method.CANCEL: ("POST", "/tasks/{id}:cancel"),
    Method.SUBSCRIBE: ("POST", "/tasks/{id}:subscribe"),
    Method.CANCEL_MANY: ("POST", "/tasks:cancel"),
    Method.RETRY: ("POST", "/tasks/{id}:retry"),
    Method.EXTENDED_CARD: ("GET", "/extendedAgentCard"),
}
# Where 0.3's route is not 1.0's below `/v1`.
V03_REST_PATHS: dict[Method, str] = {Method.EXTENDED_CARD: "/card"}
_ERROR_REASONS = {cls.reason: cls.code for cls in a2a.A2AError.__subclasses__()}


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One item of a task stream and its sequence number (the SSE `id`, what
    `Last-Event-ID` resumes after)."""

    seq: int | None
    item: StreamItem

    @property
    def task_id(self) -> str | None:
        if isinstance(self.item, Task):
            return self.item.id
        return self.item.task_id

    @property
    def state(self) -> TaskState | None:
        """The task state this item reports (None for artifacts and messages)."""
        if isinstance(self.item, Task | TaskStatusUpdateEvent):
            return self.item.status.state
        return None

    @property
    def ends_stream(self) -> bool:
        """The server closes the stream after this item: the task ended, or it waits
        for input (a direct message reply also ends a stream)."""
        if isinstance(self.item, Message):
            return True
        if isinstance(self.item, TaskStatusUpdateEvent):
            return self.item.final or self.item.status.state in STREAM_END_STATES
        return False


@dataclass(frozen=True, slots=True)
class Retry:
    """A dropped stream about to be resumed: attempt `attempt` of `attempts`, in `pause`
    seconds, after `cause`."""

    attempt: int
    attempts: int
    cause: str
    pause: float


@dataclass(frozen=True, slots=True)
class CancelResult:
    """One task of `cancel_many`: the task as it then is, or why it was not cancelled."""

    id: str
    task: Task | None = None
    error: str | None = None


def user_message(
    content: str | Message, *, context_id: str | None = None, task_id: str | None = None
) -> Message:
    """A user message of some text (or the message given), bound to a context or task."""
    message = (
        content
        if isinstance(content, Message)
        else Message(role=Role.USER, parts=[Part(text=content)])
    )
    update: dict[str, Any] = {}
    if context_id is not None:
        update["context_id"] = context_id
    if task_id is not None:
        update["task_id"] = task_id
    return message.model_copy(update=update) if update else message


def check_policy(policy: str) -> str:
    """A disconnect policy as the server takes it; ValueError otherwise."""
    value = policy.strip().lower()
    if value in ("continue", "cancel"):
        return value
    name, _, seconds = value.partition("=")
    if name == "cancel-when-orphaned":
        try:
            if float(seconds) >= 0:
                return value
        except ValueError:
            pass
    raise ValueError(f"{policy!r} is not a disconnect policy: use {', '.join(DISCONNECT_POLICIES)}")


def check_url(url: str) -> str:
    """The server URL, or ValueError saying how to write it."""
    if "://" not in url:
        raise ValueError(f"the URL {url!r} has no scheme: write http://{url}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"the URL {url!r} is not valid: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"the URL {url!r} must be http://HOST[:PORT] or https://HOST[:PORT]")
    return url


def no_http_answer(url: str, cause: str) -> str:
    return (
        f"{url} closed the connection without an HTTP answer ({cause}); is it the URL of "
        "a running andon server? Pass --url or set ANDON_URL."
    )


class _Dropped(Exception):
    """A stream's connection failed; it may be resumed. `answered`: whether the server
    had answered the request (with a stream) before it failed."""

    def __init__(self, cause: str, *, answered: bool = True) -> None:
        super().__init__(cause)
        self.answered = answered


class AndonClient:
    """Talks to one andon (or any A2A) server.

    `version` is the A2A version spoken (`1.0`, or `0.3`), `binding` the transport
    (`jsonrpc`, or `http+json` with `url` the binding's base URL, or `grpc` with `url`
    `http://HOST:PORT` of the gRPC listener, A2A 1.0 only, needing the `grpc` extra;
    its streams are not resumed after a drop). A dropped stream is
    resumed with `Last-Event-ID`, up to `reconnect_attempts` times in a row, waiting
    `backoff` seconds, doubled each time up to `max_backoff`. `stream_idle` is how long a
    stream may stay silent (the server sends a keep-alive every 15 s) before it is taken
    as dropped.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        version: str = "1.0",
        *,
        binding: Binding = "jsonrpc",
        timeout: float = 30.0,
        reconnect_attempts: int = 6,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        stream_idle: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            self.version = Version(version)
        except ValueError:
            raise ValueError(f"A2A version must be 1.0 or 0.3, not {version!r}") from None
        if binding not in (*BINDINGS, "grpc"):
            raise ValueError(f"binding must be jsonrpc, http+json or grpc, not {binding!r}")
        if binding == "grpc" and self.version is not Version.V1_0:
            raise ValueError("the gRPC binding speaks A2A 1.0 only")
        self.url = check_url(url)
        self._grpc: GrpcTransport | None = None
        if binding == "grpc":
            from andon.client.grpc_transport import GrpcTransport

            parsed = httpx.URL(url)
            self._grpc = GrpcTransport(f"{parsed.host}:{parsed.port or 80}", token)
        self.token = token
        self.binding = binding
        self.rest = binding == "http+json"
        self.codec = codec_for(self.version, rest=self.rest)
        self.timeout = timeout
        self.reconnect_attempts = reconnect_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stream_idle = stream_idle
        headers = {VERSION_HEADER: self.version.value, "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )
        self._ids = itertools.count(1)

    async def __aenter__(self) -> AndonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._grpc is not None:
            await self._grpc.aclose()

    # -- the methods ---------------------------------------------------------------------

    async def send(
        self,
        message: str | Message,
        *,
        context_id: str | None = None,
        task_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        blocking: bool = True,
        history_length: int | None = None,
        push: str | PushNotificationConfig | None = None,
    ) -> Task:
        """Send a message (SendMessage). Blocking (the default), returns the task once it
        has ended or asks for input; else at once, as the server created it. With
        `task_id`, the message answers that task's question. `push` (a webhook URL, or a
        PushNotificationConfig with its token and authentication) has the server POST
        every event of the task to it."""
        params = SendMessageParams(
            message=user_message(message, context_id=context_id, task_id=task_id),
            configuration=SendMessageConfiguration(
                return_immediately=not blocking,
                history_length=history_length,
                push_notification_config=_push_config(push),
            ),
            metadata=metadata,
        )
        raw = await self._call(Method.SEND, params, read=None if blocking else self.timeout)
        result = self._decode(self.codec.decode_send_result, raw)
        if isinstance(result, Task):
            return result
        if result.task_id:  # the agent answered with a message: its task holds it too
            return await self.get(result.task_id)
        raise ProtocolError("the agent answered with a message that names no task")

    def stream(
        self,
        message: str | Message,
        *,
        context_id: str | None = None,
        task_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        on_disconnect: str | None = None,
        push: str | PushNotificationConfig | None = None,
    ) -> EventStream:
        """Send a message and follow its task (SendStreamingMessage). `on_disconnect` is
        what the server does with the task if this stream closes before its end:
        `continue`, `cancel` or `cancel-when-orphaned=SECONDS` (else the server's
        default). `push`: a webhook, as for `send`."""
        config = _push_config(push)
        params = SendMessageParams(
            message=user_message(message, context_id=context_id, task_id=task_id),
            configuration=SendMessageConfiguration(push_notification_config=config)
            if config
            else None,
            metadata=metadata,
        )
        return EventStream(self, Method.STREAM, params, None, None, on_disconnect)

    def subscribe(
        self,
        task_id: str,
        *,
        last_event_id: int | str | None = None,
        on_disconnect: str | None = None,
    ) -> EventStream:
        """Follow a task (SubscribeToTask): without `last_event_id`, the task as it is,
        then its events; with it, the events after that one (an ended task's too)."""
        last = int(last_event_id) if last_event_id is not None else None
        params = SubscribeParams(id=task_id, last_event_id=None if last is None else str(last))
        return EventStream(self, Method.SUBSCRIBE, params, task_id, last, on_disconnect)

    async def get(self, task_id: str, *, history_length: int | None = None) -> Task:
        raw = await self._call(Method.GET, GetTaskParams(id=task_id, history_length=history_length))
        return self._decode(self.codec.decode_task, raw)

    async def list(
        self,
        *,
        context_id: str | None = None,
        state: TaskState | str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
        history_length: int | None = None,
        include_artifacts: bool = False,
    ) -> ListTasksResult:
        """One page of tasks, newest first (ListTasks)."""
        params = ListTasksParams(
            context_id=context_id,
            status=TaskState(state) if state is not None else None,
            page_size=page_size,
            page_token=page_token,
            history_length=history_length,
            include_artifacts=include_artifacts,
        )
        raw = await self._call(Method.LIST, params)
        return self._decode(self.codec.decode_task_list, raw)

    async def iter_tasks(
        self,
        *,
        context_id: str | None = None,
        state: TaskState | str | None = None,
        limit: int | None = None,
        history_length: int | None = None,
    ) -> AsyncIterator[Task]:
        """Every task that matches (up to `limit`), page after page."""
        token: str | None = None
        count = 0
        while True:
            size = 100 if limit is None else max(1, min(100, limit - count))
            page = await self.list(
                context_id=context_id,
                state=state,
                page_size=size,
                page_token=token,
                history_length=history_length,
            )
            for task in page.tasks:
                yield task
                count += 1
                if limit is not None and count >= limit:
                    return
            if not page.next_page_token or not page.tasks:
                return
            token = page.next_page_token

    async def cancel(
        self,
        task_id: str,
        *,
        reason: CancelReason | str = CancelReason.USER,
        wait: float | None = None,
        mode: Literal["immediate", "graceful"] | None = None,
    ) -> Task:
        """Cancel a task (CancelTask). The server waits until the work has stopped (up to
        `wait` seconds, else its own default) and returns the task as it then is."""
        params = CancelTaskParams(id=task_id, reason=CancelReason(reason), wait=wait, mode=mode)
        read = None if wait is None else wait + self.timeout
        raw = await self._call(Method.CANCEL, params, read=read)
        return self._decode(self.codec.decode_task, raw)

    async def cancel_many(
        self,
        ids: Sequence[str] | None = None,
        *,
        context_id: str | None = None,
        states: Sequence[TaskState | str] | None = None,
        reason: CancelReason | str = CancelReason.OPERATOR,
        wait: float | None = None,
    ) -> builtins.list[CancelResult]:
        """Cancel tasks by id, or every unfinished one of a context and/or in some states
        (andon/cancelMany)."""
        params = CancelManyParams(
            ids=builtins.list(ids) if ids is not None else None,
            context_id=context_id,
            states=[TaskState(s) for s in states] if states is not None else None,
            reason=CancelReason(reason),
            wait=wait,
        )
        raw = await self._call(Method.CANCEL_MANY, params, read=None)
        if not isinstance(raw, dict) or not isinstance(raw.get("results"), builtins.list):
            raise ProtocolError("andon/cancelMany answered without a results list")
        results = []
        for entry in raw["results"]:
            if not isinstance(entry, dict):
                raise ProtocolError("andon/cancelMany answered a result that is not an object")
            task = entry.get("task")
            results.append(
                CancelResult(
                    id=str(entry.get("id")),
                    task=self._decode(self.codec.decode_task, task) if task is not None else None,
                    error=entry.get("error"),
                )
            )
        return results

    async def answer(self, task_id: str, answer: str | Message, *, blocking: bool = True) -> Task:
        """Answer a task waiting in input-required; the same task goes on."""
        return await self.send(answer, task_id=task_id, blocking=blocking)

    async def retry(self, task_id: str) -> Task:
        """Run an ended task again, as a new task in its context (andon/retry)."""
        raw = await self._call(Method.RETRY, RetryParams(id=task_id))
        return self._decode(self.codec.decode_task, raw)

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        until: frozenset[TaskState] = STREAM_END_STATES,
    ) -> Task:
        """Poll the task until its state is one of `until` (it ended or asks for input);
        TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.05
        while True:
            task = await self.get(task_id)
            if task.status.state in until:
                return task
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(f"task {task_id} is still {task.status.state.value}")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    async def card(self) -> dict[str, Any]:
        """The agent card (in the version this client speaks)."""
        url = httpx.URL(self.url).join("/.well-known/agent-card.json")
        response = await self._request("GET", str(url))
        if response.status_code != 200:
            raise ProtocolError(f"{url} answered HTTP {response.status_code}")
        card = self._json(response)
        if not isinstance(card, dict):
            raise ProtocolError(f"{url} is not an agent card")
        return card

    async def extended_card(self) -> dict[str, Any]:
        """The authenticated extended agent card (GetExtendedAgentCard), which may list
        skills the public card does not; RemoteError -32007 when the agent has none."""
        card = await self._call(Method.EXTENDED_CARD, ExtendedCardParams())
        if not isinstance(card, dict):
            raise ProtocolError(f"{self.url} answered an extended card that is not an object")
        return card

    # -- JSON-RPC ------------------------------------------------------------------------

    def _timeout(self, read: float | None) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0), read=read)

    def _body(self, method: Method, params: Params) -> bytes:
        return to_json(
            {
                "jsonrpc": "2.0",
                "id": next(self._ids),
                "method": self.codec.names[method],
                "params": self.codec.encode_params(params),
            }
        )

    async def _request(
        self, verb: str, url: str, body: bytes | None = None, read: float | None = None
    ) -> httpx.Response:
        timeout = self._timeout(read)
        try:
            return await self._http.request(verb, url, content=body, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServerUnreachable(self.url, _cause(exc)) from exc
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(self.url, "no answer in time") from exc
        except httpx.TransportError as exc:
            raise ProtocolError(no_http_answer(self.url, _cause(exc))) from exc

    async def _call(
        self, method: Method, params: Params, *, read: float | Literal["default"] | None = "default"
    ) -> Any:
        """A JSON-RPC call's `result`; its error as a RemoteError. `read`: how long the
        answer may take (None: as long as the server takes; its waits are bounded)."""
        wait = self.timeout if read == "default" else read
        if self._grpc is not None:
            return await self._grpc.call(method, self.codec.encode_params(params), wait)
        verb, url, body = self._route(method, params)
        response = await self._request(verb, url, body, wait)
        self._check_status(response)
        message = self._json(response)
        if self.rest:
            if response.status_code >= 400 or (isinstance(message, dict) and "error" in message):
                raise rest_error(message, response.status_code)
            return message
        if not isinstance(message, dict) or ("result" not in message and "error" not in message):
            raise ProtocolError(f"{self.url} did not answer a JSON-RPC response")
        if "error" in message:
            raise remote_error(message["error"])
        return message["result"]

    def _route(self, method: Method, params: Params) -> tuple[str, str, bytes | None]:
        """The HTTP verb, URL and body of a call in this client's binding."""
        if not self.rest:
            return "POST", self.url, self._body(method, params)
        verb, path = REST_ROUTES[method]
        wire = self.codec.encode_params(params)
        task_id = str(wire.pop("id", ""))
        if self.version is Version.V0_3:
            path = "/v1" + V03_REST_PATHS.get(method, path)
        url = self.url.rstrip("/") + path.format(id=task_id)
        if verb == "GET":
            query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in wire.items()}
            return verb, str(httpx.URL(url, params=query)), None
        return verb, url, to_json(wire)

    def _check_status(self, response: httpx.Response) -> None:
        if response.status_code == 401:
            message = "a bearer token is required"
            with contextlib.suppress(Exception):
                message = str(response.json()["error"]["message"])
            raise Unauthorized(self.url, message, token_given=bool(self.token))

    def _json(self, response: httpx.Response) -> Any:
        try:
            return from_json(response.content)
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise ProtocolError(
                f"{self.url} answered HTTP {response.status_code} ({kind}), not A2A JSON-RPC; "
                "is this the URL of an andon or A2A server?"
            ) from None

    def _decode(self, decode: Callable[[Any], T], raw: Any) -> T:
        try:
            return decode(raw)
        except a2a.A2AError as exc:
            raise ProtocolError(f"the server's answer is not valid A2A: {exc.message}") from None

    async def _open(
        self, method: Method, params: Params, headers: dict[str, str]
    ) -> AsyncIterator[StreamEvent]:
        """One connection of a stream. Before it is open, errors are raised as they are
        (ServerUnreachable, Unauthorized, RemoteError); once open, a failed connection is
        `_Dropped`."""
        if self._grpc is not None:
            from andon.client.grpc_transport import GrpcDropped

            try:
                async for item in self._grpc.stream(method, self.codec.encode_params(params)):
                    yield StreamEvent(None, self._decode(self.codec.decode_stream_item, item))
            except GrpcDropped as exc:
                raise _Dropped(str(exc)) from exc
            return
        timeout = self._timeout(self.stream_idle)
        verb, url, body = self._route(method, params)
        request = self._http.build_request(
            verb, url, content=body, headers=headers, timeout=timeout
        )
        try:
            response = await self._http.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServerUnreachable(self.url, _cause(exc)) from exc
        except httpx.TransportError as exc:
            raise _Dropped(_cause(exc), answered=False) from exc
        try:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                await response.aread()
                self._check_status(response)
                message = self._json(response)
                if isinstance(message, dict) and "error" in message:
                    if self.rest:
                        raise rest_error(message, response.status_code)
                    raise remote_error(message["error"])
                raise ProtocolError(f"{self.url} did not answer a stream")
            try:
                async for event in read_events(response.aiter_lines()):
                    yield self._stream_event(event.data, event.event, event.id)
            except httpx.TransportError as exc:
                raise _Dropped(_cause(exc)) from exc
        finally:
            await response.aclose()

    def _stream_event(self, data: str, kind: str, event_id: str | None) -> StreamEvent:
        try:
            message = from_json(data)
        except ValueError:
            raise ProtocolError(f"a stream event is not JSON: {data[:80]!r}") from None
        if not isinstance(message, dict):
            raise ProtocolError("a stream event is not a JSON object")
        if kind == "error":  # andon's way of failing a stream once it is open
            raise remote_error(message)
        if "error" in message:
            raise rest_error(message, 0) if self.rest else remote_error(message["error"])
        result = message if self.rest else message.get("result")
        item = self._decode(self.codec.decode_stream_item, result)
        seq = int(event_id) if event_id is not None and event_id.isdigit() else None
        return StreamEvent(seq, item)


class EventStream:
    """The events of one task stream, as an async iterator (also an async context
    manager that closes it). A dropped connection is resumed with SubscribeToTask and
    `Last-Event-ID`; no event is yielded twice. `task_id` and `last_event_id` tell
    where the stream is."""

    def __init__(
        self,
        client: AndonClient,
        method: Method,
        params: Params,
        task_id: str | None,
        last_event_id: int | None,
        on_disconnect: str | None,
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.last_event_id = last_event_id
        self.reconnects = 0
        """How many times this stream was resumed after a drop."""
        self.on_retry: Callable[[Retry], None] | None = None
        """Told at once when the stream dropped and is about to be resumed (before the
        back-off), so that a person sees it at the moment it happens."""
        self._headers = {}
        if on_disconnect is not None:
            self._headers[DISCONNECT_HEADER] = check_policy(on_disconnect)
        self._events = self._run(method, params)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self, method: Method, params: Params) -> AsyncGenerator[StreamEvent, None]:
        client = self.client
        headers = dict(self._headers)
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        failures = 0
        opened = False
        last: StreamEvent | None = None
        while True:
            try:
                async for event in client._open(method, params, headers):
                    opened = True
                    failures = 0
                    if event.seq is not None:
                        # A snapshot's id is the event it is current to, as good to resume.
                        self.last_event_id = event.seq
                    self.task_id = event.task_id or self.task_id
                    last = event
                    yield event
                    if event.ends_stream and not _interrupted(event):
                        return
                # A question ends a stream only when the server closes it there: a replay
                # goes on past questions answered since.
                if last is not None and (
                    last.ends_stream
                    or (isinstance(last.item, Task) and last.item.status.state in STREAM_END_STATES)
                ):
                    return
                cause = _stopping_notice(last) or (
                    "the server closed the stream before the task's last event"
                )
            except _Dropped as exc:
                if self.task_id is None and not exc.answered:
                    raise ProtocolError(no_http_answer(client.url, str(exc))) from None
                cause = str(exc)
            except ServerUnreachable as exc:
                if not opened and failures == 0:
                    raise  # the first connection: nothing to resume
                cause = exc.cause or str(exc)
            if self.task_id is None:
                raise StreamLost(
                    f"the stream closed before it named its task ({cause})", None, None
                )
            failures += 1
            if failures > client.reconnect_attempts:
                raise StreamLost(
                    f"lost the stream of task {self.task_id} and could not resume it after "
                    f"{client.reconnect_attempts} attempts: {cause}",
                    self.task_id,
                    self.last_event_id,
                )
            pause = min(client.max_backoff, client.backoff * 2 ** (failures - 1))
            if self.on_retry is not None:
                self.on_retry(Retry(failures, client.reconnect_attempts, cause, pause))
            await asyncio.sleep(pause)
            self.reconnects += 1
            method = Method.SUBSCRIBE
            params = SubscribeParams(id=self.task_id)
            headers = dict(self._headers)
            if self.last_event_id is not None:
                headers["Last-Event-ID"] = str(self.last_event_id)


def rest_error(body: Any, status: int) -> RemoteError:
    """The exception for an HTTP+JSON error body (google.rpc.Status): its ErrorInfo's
    reason names the A2A error."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return RemoteError(f"HTTP {status}: {str(body)[:200]}")
    code: int | None = None
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("reason") in _ERROR_REASONS:
            code = _ERROR_REASONS[detail["reason"]]
    return remote_error({"code": code, "message": error.get("message") or f"HTTP {status}"})


def _push_config(push: str | PushNotificationConfig | None) -> PushNotificationConfig | None:
    return PushNotificationConfig(url=push) if isinstance(push, str) else push


def _stopping_notice(event: StreamEvent | None) -> str | None:
    """What a stopping server said as it ended the stream, if that was its last event."""
    item = event.item if event is not None else None
    if not isinstance(item, TaskStatusUpdateEvent) or not (item.metadata or {}).get(STREAM_END):
        return None
    message = item.status.message
    return " ".join(p.text for p in message.parts if p.text) if message else STREAM_END


def _interrupted(event: StreamEvent) -> bool:
    state = event.state
    return state is not None and not state.terminal


def _cause(exc: BaseException) -> str:
    """What went wrong, in words: the system's reason when there is one."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno:
            # asyncio words a refused connection "Connect call failed (address)".
            words = os.strerror(seen.errno) if seen.errno > 0 else seen.strerror
            return str(words or seen).lower()
        seen = seen.__cause__ or seen.__context__
    return (str(exc) or type(exc).__name__).rstrip(".")
