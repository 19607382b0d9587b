"""A2A 0.3 on the wire (specification/json/a2a.json of v0.3.0).

Where it differs from the canonical models: every object carries a `kind`
("task", "message", "status-update", "artifact-update"; parts "text", "file", "data");
file content sits under `file` as {bytes | uri, mimeType, name}; data parts hold an
object; status updates carry `final`; send results and stream items are not framed;
the send configuration says `blocking` rather than `returnImmediately`; push
authentication lists `schemes`; `historyLength: 0` means no limit (as in the 0.3 SDK).
JSON-RPC methods are named `{category}/{action}`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from andon.protocol.errors import A2AError
from andon.protocol.params import PushNotificationConfig, SendMessageConfiguration
from andon.protocol.types import TaskState
from andon.protocol.wire import (
    ANDON_METHODS,
    Codec,
    Method,
    Version,
    WireError,
    at,
    items,
    obj,
    text,
    visible_state,
)

_STATES_IN: dict[Any, TaskState | None] = {
    **{s.value: s for s in TaskState if s is not TaskState.CANCELING},
    "unknown": None,
}
_STATE_NAMES: dict[str, str] = {s: s.value for s in TaskState if s is not TaskState.CANCELING}
_KINDS = ("task", "message", "status-update", "artifact-update")
# How the official SDK carries a data part whose value is not an object through 0.3.
_DATA_WRAPPED = "data_part_compat"


def _guess_part(part: dict[str, Any]) -> Any:
    # Some clients leave out `kind`; the content says what the part is.
    return next((key for key in ("text", "file", "data") if key in part), None)


def _guess_item(item: dict[str, Any]) -> Any:
    if "artifact" in item:
        return "artifact-update"
    if "status" in item:
        return "status-update" if "taskId" in item else "task"
    return "message" if "parts" in item else None


DEFAULT_PUSH_CONFIG = "default"
"""The id of a 0.3 push config set without one."""


class V03Codec(Codec):
    version = Version.V0_3
    kinds = True
    methods = {
        "message/send": Method.SEND,
        "message/stream": Method.STREAM,
        "tasks/get": Method.GET,
        "tasks/list": Method.LIST,
        "tasks/cancel": Method.CANCEL,
        "tasks/resubscribe": Method.SUBSCRIBE,
        "tasks/pushNotificationConfig/set": Method.PUSH_CREATE,
        "tasks/pushNotificationConfig/get": Method.PUSH_GET,
        "tasks/pushNotificationConfig/list": Method.PUSH_LIST,
        "tasks/pushNotificationConfig/delete": Method.PUSH_DELETE,
        "agent/getAuthenticatedExtendedCard": Method.EXTENDED_CARD,
        **ANDON_METHODS,
    }

    def role_in(self, value: Any, path: str) -> Any:
        return value  # the canonical names; the model checks them

    def role_out(self, role: str) -> str:
        return role

    def state_in(self, value: Any, path: str) -> TaskState | None:
        if not isinstance(value, str) or value not in _STATES_IN:
            raise WireError(path, "expected a task state such as working or input-required")
        return _STATES_IN[value]

    def state_out(self, state: str) -> str:
        return _STATE_NAMES[visible_state(state)]

    def part_in(self, raw: Any, path: str) -> dict[str, Any]:
        part = obj(raw, path)
        # `type` is the discriminator's name before 0.2; an unknown one is refused, not
        # guessed past.
        kind = part.get("kind") or part.get("type") or _guess_part(part)
        metadata = part.get("metadata")
        out: dict[str, Any]
        if kind == "text":
            out = {"text": text(part.get("text"), at(path, "text"))}
        elif kind == "file":
            out = _file_in(obj(part.get("file"), at(path, "file")), at(path, "file"))
        elif kind == "data":
            return data_part_in(obj(part.get("data"), at(path, "data")), metadata)
        else:
            raise WireError(at(path, "kind"), "expected text, file or data")
        if metadata is not None:
            out["metadata"] = metadata
        return out

    def part_out(self, part: dict[str, Any]) -> dict[str, Any]:
        kind, content, metadata = part_content_out(part, file_keys=("bytes", "uri"))
        out = {"kind": kind, kind: content}
        if metadata is not None:
            out["metadata"] = metadata
        return out

    def configuration_in(self, raw: dict[str, Any], path: str) -> dict[str, Any]:
        data = dict(raw)
        blocking = data.pop("blocking", None)
        if blocking is not None:
            if not isinstance(blocking, bool):
                raise WireError(at(path, "blocking"), "expected a boolean")
            data["returnImmediately"] = not blocking
        if "historyLength" in data:
            data["historyLength"] = self.history_in(data["historyLength"])
        push = data.get("pushNotificationConfig")
        if push is not None:
            data["pushNotificationConfig"] = push_config_in(
                push, at(path, "pushNotificationConfig")
            )
        return data

    def configuration_out(self, config: SendMessageConfiguration) -> dict[str, Any]:
        out = config.dump()
        out["blocking"] = not out.pop("returnImmediately")
        push = out.get("pushNotificationConfig")
        if push is not None:
            out["pushNotificationConfig"] = push_config_out(push)
        return out

    def history_in(self, value: Any) -> Any:
        return None if value == 0 and not isinstance(value, bool) else value

    def push_in(self, data: dict[str, Any]) -> tuple[Any, Any]:
        """0.3: `{taskId, pushNotificationConfig: {id, url, token, authentication}}`. A
        config without an id is the task's default one, `default`, which a get without
        `pushNotificationConfigId` (or naming `default`, as the 0.3 TCK does) finds."""
        config = push_config_in(data.get("pushNotificationConfig"), "pushNotificationConfig")
        if not config.get("id"):
            config["id"] = DEFAULT_PUSH_CONFIG
        return data.get("taskId"), config

    def push_ref_in(self, data: dict[str, Any], *, config: bool = True) -> tuple[Any, Any]:
        """0.3: `{id: <task>, pushNotificationConfigId}` (`default` when absent)."""
        config_id = data.get("pushNotificationConfigId", DEFAULT_PUSH_CONFIG)
        return data.get("id"), config_id if config else None

    def encode_push_config(self, task_id: str, config: PushNotificationConfig) -> Any:
        return {"taskId": task_id, "pushNotificationConfig": push_config_out(config.dump())}

    def encode_push_list(self, task_id: str, configs: Iterable[PushNotificationConfig]) -> Any:
        return [self.encode_push_config(task_id, c) for c in configs]

    def encode_push_deleted(self) -> Any:
        return None

    def wrap(self, kind: str, out: dict[str, Any]) -> dict[str, Any]:
        return out

    def unwrap(self, raw: Any) -> tuple[str, dict[str, Any]]:
        item = obj(raw, "")
        kind = item.get("kind") or _guess_item(item)
        if kind not in _KINDS:
            raise WireError("kind", "expected task, message, status-update or artifact-update")
        return kind, item

    def error_data(self, error: A2AError) -> Any:
        return error.data


def data_part_in(value: dict[str, Any], metadata: Any) -> dict[str, Any]:
    """A 0.3 data part: an object, or a value of another type wrapped as the SDK does."""
    content: Any = value
    if isinstance(metadata, dict) and metadata.get(_DATA_WRAPPED):
        content = value.get("value")
        metadata = {k: v for k, v in metadata.items() if k != _DATA_WRAPPED} or None
    out: dict[str, Any] = {"data": content}
    if metadata is not None:
        out["metadata"] = metadata
    return out


def part_content_out(
    part: dict[str, Any], *, file_keys: tuple[str, str]
) -> tuple[str, Any, dict[str, Any] | None]:
    """A part as 0.3 sees it: its kind, its content, its metadata. `file_keys` name a
    file's bytes and URI (the JSON-RPC and ProtoJSON forms name them differently)."""
    metadata = part.get("metadata")
    if "text" in part:
        return "text", part["text"], metadata
    if "raw" in part or "url" in part:
        file = {file_keys[0]: part["raw"]} if "raw" in part else {file_keys[1]: part["url"]}
        if "mediaType" in part:
            file["mimeType"] = part["mediaType"]
        if "filename" in part:
            file["name"] = part["filename"]
        return "file", file, metadata
    if isinstance(part.get("data"), dict):
        return "data", part["data"], metadata
    if "data" in part:
        return "data", {"value": part["data"]}, {**(metadata or {}), _DATA_WRAPPED: True}
    return "text", "", metadata  # a part with no content says nothing


def push_config_in(push: Any, where: str) -> dict[str, Any]:
    """A 0.3 push config: its authentication lists `schemes`, 1.0's names one `scheme`."""
    config = dict(obj(push, where))
    if config.get("authentication") is not None:
        auth = obj(config["authentication"], at(where, "authentication"))
        schemes = items(auth.get("schemes", []), at(where, "authentication.schemes"))
        config["authentication"] = {
            "scheme": schemes[0] if schemes else "",
            "credentials": auth.get("credentials"),
        }
    return config


def push_config_out(push: dict[str, Any]) -> dict[str, Any]:
    if "authentication" not in push:
        return push
    auth = push["authentication"]
    schemes: dict[str, Any] = {"schemes": [auth["scheme"]]}
    if "credentials" in auth:
        schemes["credentials"] = auth["credentials"]
    return {**push, "authentication": schemes}


def _file_in(file: dict[str, Any], path: str) -> dict[str, Any]:
    has_bytes, has_uri = file.get("bytes") is not None, file.get("uri") is not None
    if has_bytes == has_uri:
        raise WireError(path, "exactly one of bytes, uri is required")
    out = (
        {"raw": text(file["bytes"], at(path, "bytes"))}
        if has_bytes
        else {"url": text(file["uri"], at(path, "uri"))}
    )
    mime = file.get("mimeType", file.get("mime_type"))
    if mime is not None:
        out["mediaType"] = text(mime, at(path, "mimeType"))
    if file.get("name") is not None:
        out["filename"] = text(file["name"], at(path, "name"))
    return out
