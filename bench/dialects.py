"""The JSON-RPC requests each server understands, and how to read its answers.

andon and a2a-sdk speak A2A 1.0 (header `A2A-Version: 1.0`); Bindu speaks its own
variant of 0.3: UUID request ids, a client-chosen task id, `taskId` parameters,
snake_case answers, bare event objects on streams, and a `message/send` that always
answers at once with the task `submitted` (bench/peers/README.md lists every quirk).
States are normalised to the 0.3 spelling: `working`, `completed`, `canceled`, …
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from bench.rawhttp import build_request

JSON = dict[str, Any]
TERMINAL = frozenset({"completed", "failed", "canceled", "rejected"})


def new_id() -> str:
    return str(uuid.uuid4())


class RPCError(Exception):
    """The server answered a JSON-RPC error."""


def rpc(method: str, params: JSON) -> JSON:
    return {"jsonrpc": "2.0", "id": new_id(), "method": method, "params": params}


def result(reply: JSON) -> Any:
    if "error" in reply:
        raise RPCError(f"{reply['error'].get('code')}: {reply['error'].get('message')}")
    return reply["result"]


class A2A10:
    """A2A 1.0 JSON-RPC: `SendMessage`, `SendStreamingMessage`, `GetTask`, `CancelTask`."""

    headers = {"Content-Type": "application/json", "A2A-Version": "1.0"}
    send_waits = True  # a blocking SendMessage answers with the finished task
    completed_marker = b'"TASK_STATE_COMPLETED"'

    def send(self, text: str, task_id: str, *, wait: bool) -> JSON:
        """`task_id` is ignored: the server names its tasks."""
        params: JSON = {"message": self._message(text)}
        if not wait:
            params["configuration"] = {"returnImmediately": True}
        return rpc("SendMessage", params)

    def stream(self, text: str, task_id: str) -> JSON:
        return rpc("SendStreamingMessage", {"message": self._message(text)})

    def get(self, task_id: str) -> JSON:
        return rpc("GetTask", {"id": task_id})

    def cancel(self, task_id: str) -> JSON:
        return rpc("CancelTask", {"id": task_id})

    def task(self, reply: JSON) -> JSON:
        """The task of a send, get or cancel answer."""
        value = result(reply)
        return value.get("task", value)  # type: ignore[no-any-return]

    def state(self, task: JSON) -> str:
        return str(task["status"]["state"]).removeprefix("TASK_STATE_").lower()

    def event(self, data: JSON) -> tuple[str | None, str | None]:
        """(task id, state) an event of a stream carries, when it carries them."""
        value = result(data)
        if "task" in value:
            return value["task"]["id"], self.state(value["task"])
        if "statusUpdate" in value:
            update = value["statusUpdate"]
            return update["taskId"], self.state(update)
        return None, None

    @staticmethod
    def _message(text: str) -> JSON:
        return {"messageId": new_id(), "role": "ROLE_USER", "parts": [{"text": text}]}


class FastA2A:
    """FastA2A's JSON-RPC (A2A 0.3 methods, camelCase): `message/send` answers at once
    with the task `submitted` (`{"task": ...}`); `tasks/get`, `tasks/cancel` take `id`."""

    headers = {"Content-Type": "application/json"}

    def send(self, text: str, task_id: str, *, wait: bool) -> JSON:
        message = {"role": "user", "kind": "message", "messageId": new_id()}
        return rpc(
            "message/send", {"message": {**message, "parts": [{"kind": "text", "text": text}]}}
        )

    def get(self, task_id: str) -> JSON:
        return rpc("tasks/get", {"id": task_id})

    def cancel(self, task_id: str) -> JSON:
        return rpc("tasks/cancel", {"id": task_id})

    def task(self, reply: JSON) -> JSON:
        value = result(reply)
        return value.get("task", value)  # type: ignore[no-any-return]

    def state(self, task: JSON) -> str:
        return str(task["status"]["state"])


class Bindu:
    """Bindu's JSON-RPC: `message/send`, `message/stream`, `tasks/get`, `tasks/cancel`."""

    headers = {"Content-Type": "application/json"}
    send_waits = False  # message/send answers `submitted`; the result is polled
    completed_marker = b'"state":"completed"'

    def send(self, text: str, task_id: str, *, wait: bool) -> JSON:
        return rpc("message/send", self._params(text, task_id))

    def stream(self, text: str, task_id: str) -> JSON:
        return rpc("message/stream", self._params(text, task_id))

    def get(self, task_id: str) -> JSON:
        return rpc("tasks/get", {"taskId": task_id})

    def cancel(self, task_id: str) -> JSON:
        return rpc("tasks/cancel", {"taskId": task_id})

    def task(self, reply: JSON) -> JSON:
        return result(reply)  # type: ignore[no-any-return]

    def state(self, task: JSON) -> str:
        return str(task["status"]["state"])

    def event(self, data: JSON) -> tuple[str | None, str | None]:
        task_id = data.get("task_id") or data.get("id")
        state = data["status"]["state"] if "status" in data else None
        return task_id, state

    @staticmethod
    def _params(text: str, task_id: str) -> JSON:
        return {
            "configuration": {"acceptedOutputModes": ["text/plain"]},
            "message": {
                "role": "user",
                "kind": "message",
                "messageId": new_id(),
                "contextId": new_id(),
                "taskId": task_id,
                "parts": [{"kind": "text", "text": text}],
            },
        }


Dialect = A2A10 | Bindu

DIALECTS: dict[str, Dialect] = {"andon": A2A10(), "a2a-sdk": A2A10(), "bindu": Bindu()}


def encode(dialect: Dialect, request: JSON, extra: dict[str, str] | None = None) -> bytes:
    return build_request("/", json.dumps(request).encode(), {**dialect.headers, **(extra or {})})


class Template:
    """Request bytes built once; `fresh()` swaps in new UUIDs of the same length, so
    each request is distinct (Bindu refuses a reused task id) at the cost of a few
    byte replacements."""

    def __init__(self, dialect: Dialect, request: JSON, task_id: str = "") -> None:
        self.data = encode(dialect, request)
        text = json.dumps(request)
        self.slots = [s for s in _uuids(request) if s != task_id]
        self.task_id = task_id if task_id and task_id in text else ""

    def fresh(self, task_id: str | None = None) -> tuple[bytes, str]:
        """New request bytes, and the task id they name (new or given), if any."""
        data = self.data
        for slot in self.slots:
            data = data.replace(slot.encode(), new_id().encode())
        named = ""
        if self.task_id:
            named = task_id or new_id()
            data = data.replace(self.task_id.encode(), named.encode())
        return data, named


def _uuids(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in _uuids(v)]
    if isinstance(value, list):
        return [u for v in value for u in _uuids(v)]
    if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
        return [value]
    return []
