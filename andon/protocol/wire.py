"""What both A2A codecs share: the version and method names, error reporting, and the
walk over tasks and messages. Each version only supplies the few transforms where its
wire shape differs (see v1.py and v03.py), so the server has one path for both.

Decoding takes parsed JSON and returns canonical models; it reshapes the dicts where the
version differs from the canonical (1.0-like) form and then validates once with pydantic.
Encoding dumps a model once and reshapes the result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from andon.protocol.errors import (
    A2AError,
    InvalidAgentResponse,
    InvalidParams,
    MethodNotFound,
    VersionNotSupported,
)
from andon.protocol.params import (
    CancelManyParams,
    CancelTaskParams,
    GetTaskParams,
    ListPushConfigsParams,
    ListTasksParams,
    ListTasksResult,
    Params,
    PushConfigParams,
    PushConfigRef,
    PushNotificationConfig,
    RetryParams,
    SendMessageConfiguration,
    SendMessageParams,
    SubscribeParams,
)
from andon.protocol.types import (
    Message,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    utc_now,
)

M = TypeVar("M", bound=BaseModel)
StreamItem = Task | Message | TaskStatusUpdateEvent | TaskArtifactUpdateEvent

# Where a stream ends in A2A 1.0, which has no `final` flag: a terminal or interrupted state.
STREAM_END_STATES = frozenset(
    {
        TaskState.COMPLETED,
        TaskState.FAILED,
        TaskState.CANCELED,
        TaskState.REJECTED,
        TaskState.INPUT_REQUIRED,
        TaskState.AUTH_REQUIRED,
    }
)


class Version(StrEnum):
    V1_0 = "1.0"
    V0_3 = "0.3"


class Method(StrEnum):
    """A method as andon knows it, whatever its name in the request's A2A version."""

    SEND = "send"
    STREAM = "stream"
    GET = "get"
    LIST = "list"
    CANCEL = "cancel"
    SUBSCRIBE = "subscribe"
    PUSH_CREATE = "push_create"
    PUSH_GET = "push_get"
    PUSH_LIST = "push_list"
    PUSH_DELETE = "push_delete"
    EXTENDED_CARD = "extended_card"
    CANCEL_MANY = "cancel_many"
    RETRY = "retry"

    @property
    def streaming(self) -> bool:
        return self in (Method.STREAM, Method.SUBSCRIBE)


# andon's own methods, the same name in both versions (the `{namespace}/{action}` form
# A2A 0.3 asks extension methods to take).
ANDON_METHODS = {"andon/cancelMany": Method.CANCEL_MANY, "andon/retry": Method.RETRY}


class CancelOutcome(Protocol):
    """One task of a cancel-many call (TaskService's CancelOutcome has this shape)."""

    @property
    def task_id(self) -> str: ...
    @property
    def task(self) -> Task | None: ...
    @property
    def error(self) -> str | None: ...


class WireError(ValueError):
    """A malformed field found while reshaping; the public entry points turn it into the
    A2A error that fits (InvalidParams for requests, InvalidAgentResponse for results)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(path, "expected an object")
    return value


def items(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise WireError(path, "expected an array")
    return value


def text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise WireError(path, "expected a string")
    return value


def iso(at_seconds: float) -> str:
    """A unix time as A2A writes timestamps: RFC 3339, UTC, milliseconds, `Z`."""
    stamp = datetime.fromtimestamp(at_seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _field(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else at(path, part)
    return path


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": _field(e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _failure(error: type[A2AError], problems: list[dict[str, str]]) -> A2AError:
    first = problems[0]
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more)"
    return error(message, data={"errors": problems})


def decode(model: type[M], build: Callable[[], Any], error: type[A2AError]) -> M:
    """Reshape with `build`, then validate once; any fault becomes one short `error`."""
    try:
        return model.model_validate(build())
    except WireError as exc:
        raise _failure(error, [{"field": exc.field, "message": exc.message}]) from None
    except ValidationError as exc:
        raise _failure(error, _problems(exc)) from None


def visible_state(state: str, prior: Any = None) -> str:
    """`canceling` is internal: the wire shows the state the task had (working if unknown)."""
    if state != TaskState.CANCELING:
        return state
    return prior if isinstance(prior, str) and prior != TaskState.CANCELING else TaskState.WORKING


class Codec(ABC):
    """One A2A version's wire form of the canonical models. Stateless; one per version."""

    version: ClassVar[Version]
    methods: ClassVar[Mapping[str, Method]]
    """Wire method name → Method, andon's own methods included."""
    kinds: ClassVar[bool]
    """Whether objects carry a `kind` discriminator and status updates a `final` flag."""

    def __init__(self, foreign: Mapping[str, Version] | None = None) -> None:
        self.names: Mapping[Method, str] = {m: name for name, m in self.methods.items()}
        """Method → wire method name (for clients)."""
        self._foreign = dict(foreign or {})

    def method(self, name: str) -> Method:
        """The Method a request names: MethodNotFound, or VersionNotSupported when the
        name belongs to the other A2A version (a client that forgot the header)."""
        found = self.methods.get(name)
        if found is not None:
            return found
        other = self._foreign.get(name)
        if other is not None:
            raise VersionNotSupported(
                f"{name} is an A2A {other} method but the request is A2A {self.version}; "
                f"send the header A2A-Version: {other}"
            )
        raise MethodNotFound(f"method {name!r} not found")

    # -- requests: wire params → canonical params ---------------------------------------

    def decode_send(self, params: Any) -> SendMessageParams:
        """Params of SendMessage / SendStreamingMessage (message/send, message/stream)."""

        def build() -> dict[str, Any]:
            data = dict(obj(params, "params"))
            if "message" in data:
                data["message"] = self.message_in(data["message"], "message")
            if data.get("configuration") is not None:
                data["configuration"] = self.configuration_in(
                    obj(data["configuration"], "configuration"), "configuration"
                )
            return data

        return decode(SendMessageParams, build, InvalidParams)

    def decode_get(self, params: Any) -> GetTaskParams:
        def build() -> dict[str, Any]:
            data = dict(obj(params, "params"))
            if "historyLength" in data:
                data["historyLength"] = self.history_in(data["historyLength"])
            return data

        return decode(GetTaskParams, build, InvalidParams)

    def decode_list(self, params: Any) -> ListTasksParams:
        def build() -> dict[str, Any]:
            data = dict(obj(params or {}, "params"))
            for key in ("status", "state"):
                if data.get(key) is not None:
                    data[key] = self.state_in(data[key], key)
            return data

        return decode(ListTasksParams, build, InvalidParams)

    def decode_cancel(self, params: Any) -> CancelTaskParams:
        return decode(CancelTaskParams, lambda: obj(params, "params"), InvalidParams)

    def decode_subscribe(self, params: Any) -> SubscribeParams:
        return decode(SubscribeParams, lambda: obj(params, "params"), InvalidParams)

    def decode_cancel_many(self, params: Any) -> CancelManyParams:
        def build() -> dict[str, Any]:
            data = dict(obj(params, "params"))
            if data.get("states") is not None:
                states = items(data["states"], "states")
                data["states"] = [self.state_in(s, f"states[{i}]") for i, s in enumerate(states)]
            return data

        return decode(CancelManyParams, build, InvalidParams)

    def decode_retry(self, params: Any) -> RetryParams:
        return decode(RetryParams, lambda: obj(params, "params"), InvalidParams)

    def decode_push_create(self, params: Any) -> PushConfigParams:
        def build() -> dict[str, Any]:
            task_id, config = self.push_in(dict(obj(params, "params")))
            return {"taskId": task_id, "config": config}

        return decode(PushConfigParams, build, InvalidParams)

    def decode_push_ref(self, params: Any) -> PushConfigRef:
        def build() -> dict[str, Any]:
            task_id, config_id = self.push_ref_in(dict(obj(params, "params")))
            return {"taskId": task_id, "id": config_id}

        return decode(PushConfigRef, build, InvalidParams)

    def decode_push_list(self, params: Any) -> ListPushConfigsParams:
        def build() -> dict[str, Any]:
            task_id, _ = self.push_ref_in(dict(obj(params, "params")), config=False)
            return {"taskId": task_id}

        return decode(ListPushConfigsParams, build, InvalidParams)

    # -- requests: canonical params → wire params (for clients) -------------------------

    def encode_params(self, params: Params) -> dict[str, Any]:
        if isinstance(params, SendMessageParams):
            out: dict[str, Any] = {"message": self.encode_message(params.message)}
            if params.configuration is not None:
                out["configuration"] = self.configuration_out(params.configuration)
            if params.metadata is not None:
                out["metadata"] = params.metadata
            return out
        if isinstance(params, CancelTaskParams):
            out = {"id": params.id}
            metadata = params.wire_metadata()
            return out if metadata is None else {**out, "metadata": metadata}
        out = params.dump()
        if isinstance(params, ListTasksParams) and params.status is not None:
            out["status"] = self.state_out(params.status)
        if isinstance(params, CancelManyParams) and params.states is not None:
            out["states"] = [self.state_out(s) for s in params.states]
        return out

    # -- results: canonical → wire ------------------------------------------------------

    def encode_task(self, task: Task) -> dict[str, Any]:
        return self.task_out(task.dump())

    def encode_message(self, message: Message) -> dict[str, Any]:
        return self.message_out(message.dump())

    def encode_send_result(self, result: Task | Message) -> dict[str, Any]:
        """The result of SendMessage: a task, or the agent's direct reply."""
        if isinstance(result, Task):
            return self.wrap("task", self.encode_task(result))
        return self.wrap("message", self.encode_message(result))

    def encode_stream_item(self, item: StreamItem) -> dict[str, Any]:
        """One `result` of a stream (SendStreamingMessage, SubscribeToTask)."""
        if isinstance(item, TaskStatusUpdateEvent):
            return self.status_update_out(item.dump())
        if isinstance(item, TaskArtifactUpdateEvent):
            return self.artifact_update_out(item.dump())
        return self.encode_send_result(item)

    def encode_event(
        self, task_id: str, context_id: str, kind: str, data: Mapping[str, Any], final: bool
    ) -> dict[str, Any] | None:
        """One event of the store's log as a stream `result`; None for kinds that are not
        streamed (`message`: the user's own messages, history only)."""
        if kind in ("status", "progress"):
            raw_state = data["state"]
            status: dict[str, Any] = {
                "state": visible_state(raw_state, data.get("priorState")),
                "timestamp": _stamp(data.get("timestamp")),
            }
            if data.get("message") is not None:
                status["message"] = data["message"]
            # What the transition added to the task's metadata (a cancel's stop time).
            metadata: dict[str, Any] = dict(data.get("metadata") or {})
            if data.get("reason"):
                metadata["andon.reason"] = data["reason"]
            if raw_state == TaskState.CANCELING or data.get("canceling"):
                metadata["andon.canceling"] = True
            event = {"taskId": task_id, "contextId": context_id, "status": status, "final": final}
            if metadata:
                event["metadata"] = metadata
            return self.status_update_out(event)
        if kind == "artifact":
            return self.artifact_update_out(
                {
                    "taskId": task_id,
                    "contextId": context_id,
                    "artifact": data["artifact"],
                    "append": bool(data.get("append")),
                    "lastChunk": bool(data.get("lastChunk")),
                }
            )
        if kind == "message":
            return None
        raise ValueError(f"unknown event kind {kind!r}")

    def encode_task_list(
        self, tasks: Iterable[Task], next_page_token: str, page_size: int, total_size: int
    ) -> dict[str, Any]:
        """The result of ListTasks (`nextPageToken` is always present, "" on the last page)."""
        return {
            "tasks": [self.encode_task(t) for t in tasks],
            "nextPageToken": next_page_token,
            "pageSize": page_size,
            "totalSize": total_size,
        }

    def encode_cancel_many(self, outcomes: Iterable[CancelOutcome]) -> dict[str, Any]:
        """The result of andon/cancelMany: per task, the task as it then is or an error."""
        results: list[dict[str, Any]] = []
        for o in outcomes:
            entry: dict[str, Any] = {"id": o.task_id}
            if o.task is not None:
                entry["task"] = self.encode_task(o.task)
            if o.error is not None:
                entry["error"] = o.error
            results.append(entry)
        return {"results": results}

    def encode_push_config(self, task_id: str, config: PushNotificationConfig) -> Any:
        """A stored push config (the result of create and get)."""
        return {"taskId": task_id, **config.dump()}

    def encode_push_list(self, task_id: str, configs: Iterable[PushNotificationConfig]) -> Any:
        return {
            "configs": [self.encode_push_config(task_id, c) for c in configs],
            "nextPageToken": "",
        }

    def encode_push_deleted(self) -> Any:
        """The result of a delete (google.protobuf.Empty in 1.0)."""
        return {}

    def encode_error(self, error: A2AError) -> dict[str, Any]:
        """The JSON-RPC `error` object."""
        out: dict[str, Any] = {"code": error.code, "message": error.message}
        data = self.error_data(error)
        if data is not None:
            out["data"] = data
        return out

    # -- results: wire → canonical (for clients) ----------------------------------------

    def decode_task(self, raw: Any) -> Task:
        return decode(Task, lambda: self.task_in(obj(raw, ""), ""), InvalidAgentResponse)

    def decode_message(self, raw: Any) -> Message:
        return decode(Message, lambda: self.message_in(raw, ""), InvalidAgentResponse)

    def decode_send_result(self, raw: Any) -> Task | Message:
        item = self.decode_stream_item(raw)
        if not isinstance(item, Task | Message):
            raise InvalidAgentResponse("expected a task or a message")
        return item

    def decode_stream_item(self, raw: Any) -> StreamItem:
        try:
            kind, body = self.unwrap(raw)
        except WireError as exc:
            raise InvalidAgentResponse(str(exc)) from None
        if kind == "task":
            return self.decode_task(body)
        if kind == "message":
            return self.decode_message(body)
        if kind == "status-update":
            return decode(
                TaskStatusUpdateEvent, lambda: self.status_update_in(body), InvalidAgentResponse
            )
        return decode(
            TaskArtifactUpdateEvent,
            lambda: {**body, "artifact": self.artifact_in(body.get("artifact"), "artifact")},
            InvalidAgentResponse,
        )

    def decode_task_list(self, raw: Any) -> ListTasksResult:
        def build() -> dict[str, Any]:
            data = dict(obj(raw, ""))
            tasks = items(data.get("tasks", []), "tasks")
            data["tasks"] = [
                self.task_in(obj(t, f"tasks[{i}]"), f"tasks[{i}]") for i, t in enumerate(tasks)
            ]
            return data

        return decode(ListTasksResult, build, InvalidAgentResponse)

    # -- the walk over tasks, messages and artifacts, shared by both versions -----------

    def message_in(self, raw: Any, path: str) -> dict[str, Any]:
        data = dict(obj(raw, path))
        if not isinstance(data.get("messageId", data.get("message_id")), str):
            raise WireError(at(path, "messageId"), "a string is required")
        if "role" in data:
            data["role"] = self.role_in(data["role"], at(path, "role"))
        parts = items(data.get("parts"), at(path, "parts"))
        if not parts:
            raise WireError(at(path, "parts"), "at least one part is required")
        data["parts"] = [self.part_in(p, f"{at(path, 'parts')}[{i}]") for i, p in enumerate(parts)]
        return data

    def message_out(self, data: dict[str, Any]) -> dict[str, Any]:
        out = {**data, "role": self.role_out(data["role"])}
        out["parts"] = [self.part_out(p) for p in data["parts"]]
        return self.tag(out, "message")

    def artifact_in(self, raw: Any, path: str) -> dict[str, Any]:
        data = dict(obj(raw, path))
        parts = items(data.get("parts"), at(path, "parts"))
        data["parts"] = [self.part_in(p, f"{at(path, 'parts')}[{i}]") for i, p in enumerate(parts)]
        return data

    def artifact_out(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "parts": [self.part_out(p) for p in data["parts"]]}

    def status_in(self, raw: Any, path: str) -> dict[str, Any]:
        data = dict(obj(raw, path))
        state = self.state_in(data.get("state"), at(path, "state"))
        if state is None:
            raise WireError(at(path, "state"), "a task state is required")
        data["state"] = state
        if data.get("message") is not None:
            data["message"] = self.message_in(data["message"], at(path, "message"))
        return data

    def status_out(self, data: dict[str, Any]) -> dict[str, Any]:
        out = {**data, "state": self.state_out(visible_state(data["state"]))}
        if "message" in data:
            out["message"] = self.message_out(data["message"])
        return out

    def task_in(self, data: dict[str, Any], path: str) -> dict[str, Any]:
        data = dict(data)
        data["status"] = self.status_in(data.get("status"), at(path, "status"))
        if data.get("history") is not None:
            where = at(path, "history")
            history = items(data["history"], where)
            data["history"] = [self.message_in(m, f"{where}[{i}]") for i, m in enumerate(history)]
        if data.get("artifacts") is not None:
            where = at(path, "artifacts")
            artifacts = items(data["artifacts"], where)
            data["artifacts"] = [
                self.artifact_in(a, f"{where}[{i}]") for i, a in enumerate(artifacts)
            ]
        return data

    def task_out(self, data: dict[str, Any]) -> dict[str, Any]:
        out = {**data, "status": self.status_out(data["status"])}
        if "history" in data:
            out["history"] = [self.message_out(m) for m in data["history"]]
        if "artifacts" in data:
            out["artifacts"] = [self.artifact_out(a) for a in data["artifacts"]]
        return self.tag(out, "task")

    def status_update_in(self, body: dict[str, Any]) -> dict[str, Any]:
        data = {**body, "status": self.status_in(body.get("status"), "status")}
        if "final" not in data:
            data["final"] = data["status"]["state"] in STREAM_END_STATES
        return data

    def status_update_out(self, event: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "taskId": event["taskId"],
            "contextId": event["contextId"],
            "status": self.status_out(event["status"]),
        }
        if event.get("metadata") is not None:
            out["metadata"] = event["metadata"]
        if self.kinds:
            out["final"] = event["final"]
        return self.wrap("status-update", self.tag(out, "status-update"))

    def artifact_update_out(self, event: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "taskId": event["taskId"],
            "contextId": event["contextId"],
            "artifact": self.artifact_out(event["artifact"]),
            "append": event["append"],
            "lastChunk": event["lastChunk"],
        }
        if event.get("metadata") is not None:
            out["metadata"] = event["metadata"]
        return self.wrap("artifact-update", self.tag(out, "artifact-update"))

    # -- what each version says its own way ---------------------------------------------

    @abstractmethod
    def role_in(self, value: Any, path: str) -> Any: ...

    @abstractmethod
    def role_out(self, role: str) -> str: ...

    @abstractmethod
    def state_in(self, value: Any, path: str) -> TaskState | None:
        """A wire state; None for the version's "unspecified"; internal states refused."""

    @abstractmethod
    def state_out(self, state: str) -> str: ...

    @abstractmethod
    def part_in(self, raw: Any, path: str) -> dict[str, Any]: ...

    @abstractmethod
    def part_out(self, part: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def configuration_in(self, raw: dict[str, Any], path: str) -> dict[str, Any]: ...

    @abstractmethod
    def configuration_out(self, config: SendMessageConfiguration) -> dict[str, Any]: ...

    @abstractmethod
    def wrap(self, kind: str, out: dict[str, Any]) -> dict[str, Any]:
        """A send result or stream item as the version frames it."""

    @abstractmethod
    def unwrap(self, raw: Any) -> tuple[str, dict[str, Any]]:
        """The kind and body of a send result or stream item."""

    @abstractmethod
    def error_data(self, error: A2AError) -> Any: ...

    def history_in(self, value: Any) -> Any:
        return value

    def push_in(self, data: dict[str, Any]) -> tuple[Any, Any]:
        """(task id, canonical config) of a create request. 1.0 sends the config flat,
        beside `taskId` (ProtoJSON readers accept the proto name `task_id` too)."""
        task_id = data.pop("taskId", data.pop("task_id", None))
        data.pop("tenant", None)
        return task_id, data

    def push_ref_in(self, data: dict[str, Any], *, config: bool = True) -> tuple[Any, Any]:
        """(task id, config id) of a get / delete (`config`) or list request."""
        return data.get("taskId", data.get("task_id")), data.get("id") if config else None

    def tag(self, out: dict[str, Any], kind: str) -> dict[str, Any]:
        if self.kinds:
            out["kind"] = kind
        return out


def _stamp(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return iso(value)
    return value if isinstance(value, str) else utc_now()
