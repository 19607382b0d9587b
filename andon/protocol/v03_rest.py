"""A2A 0.3 over HTTP+JSON: the ProtoJSON form of the 0.3 proto (`a2a.proto` of v0.3.0),
which the official SDK's 0.3 REST binding and the 0.3 TCK speak at `/v1/...`.

Where it differs from 0.3 over JSON-RPC (v03.py): no `kind`; enums are their proto names
(`ROLE_USER`, `TASK_STATE_INPUT_REQUIRED`, and `TASK_STATE_CANCELLED` with two Ls); a
message's parts are its `content`; a file part is `{"file": {fileWithUri | fileWithBytes,
mimeType, name}}` and a data part `{"data": {"data": <object>}}`; the send
configuration's push config is `pushNotification`; send results and stream items are
framed as {"task"}, {"message"}, {"statusUpdate"}, {"artifactUpdate"}; status updates
keep `final`. As a ProtoJSON parser does, reading accepts each field's proto name
(`message_id`) beside its JSON name and ignores unknown fields.

One proto3 rule matters: a send configuration without `blocking` means `blocking: false`
(ProtoJSON writers leave false out), so a request that sends a configuration is
blocking only when it says so; one that sends no configuration gets andon's default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from andon.protocol.errors import A2AError
from andon.protocol.params import (
    PushNotificationConfig,
    SendMessageConfiguration,
    SendMessageParams,
)
from andon.protocol.types import TaskState
from andon.protocol.v03 import (
    V03Codec,
    data_part_in,
    part_content_out,
    push_config_in,
    push_config_out,
)
from andon.protocol.v1 import ProtoEnumCodec, frame, proto_states, unframe
from andon.protocol.wire import (
    Version,
    WireError,
    at,
    obj,
    text,
)


def _state_name(state: TaskState) -> str:
    return "TASK_STATE_CANCELLED" if state is TaskState.CANCELED else f"TASK_STATE_{state.name}"


# How the official SDK carries a data part whose value is not an object (as in v03.py).
_DATA_WRAPPED = "data_part_compat"


def _get(data: dict[str, Any], json_name: str, proto_name: str) -> Any:
    return data.get(json_name, data.get(proto_name))


class V03RestCodec(ProtoEnumCodec):
    version = Version.V0_3
    state_names, states_in = proto_states(_state_name)
    states_in = {**states_in, "TASK_STATE_CANCELED": TaskState.CANCELED}  # 1.0's spelling
    kinds = True  # for the `final` flag of status updates; `tag` adds no `kind`
    methods = V03Codec.methods

    def decode_send(self, params: Any) -> SendMessageParams:
        if isinstance(params, dict):
            if "message" not in params and "request" in params:
                params = {**params, "message": params["request"]}  # the proto field name
            if params.get("configuration") is not None:
                config = params["configuration"]
                if isinstance(config, dict) and "blocking" not in config:
                    params = {**params, "configuration": {**config, "blocking": False}}
        return super().decode_send(params)

    # -- messages: `content` on the wire, `parts` in the model ------------------------

    def message_in(self, raw: Any, path: str) -> dict[str, Any]:
        data = dict(obj(raw, path))
        if "parts" not in data:
            data["parts"] = data.pop("content", None)
        return super().message_in(data, path)

    def message_out(self, data: dict[str, Any]) -> dict[str, Any]:
        out = super().message_out(data)
        out["content"] = out.pop("parts")
        return out

    def tag(self, out: dict[str, Any], kind: str) -> dict[str, Any]:
        return out

    # -- the rest of the 0.3 proto ----------------------------------------------------

    def part_in(self, raw: Any, path: str) -> dict[str, Any]:
        part = obj(raw, path)
        contents = [key for key in ("text", "file", "data") if part.get(key) is not None]
        if len(contents) != 1:
            raise WireError(path, "exactly one of text, file, data is required")
        out: dict[str, Any]
        metadata = part.get("metadata")
        if contents[0] == "text":
            out = {"text": text(part["text"], at(path, "text"))}
        elif contents[0] == "file":
            out = _file_in(obj(part["file"], at(path, "file")), at(path, "file"))
        else:
            where = at(path, "data")
            value = obj(obj(part["data"], where).get("data", {}), at(where, "data"))
            return data_part_in(value, metadata)
        if metadata is not None:
            out["metadata"] = metadata
        return out

    def part_out(self, part: dict[str, Any]) -> dict[str, Any]:
        kind, content, metadata = part_content_out(part, file_keys=("fileWithBytes", "fileWithUri"))
        out = {kind: {"data": content} if kind == "data" else content}
        if metadata is not None:
            out["metadata"] = metadata
        return out

    def configuration_in(self, raw: dict[str, Any], path: str) -> dict[str, Any]:
        data = {k: v for k, v in raw.items() if k not in ("pushNotification", "push_notification")}
        blocking = data.pop("blocking", False)
        if not isinstance(blocking, bool):
            raise WireError(at(path, "blocking"), "expected a boolean")
        data["returnImmediately"] = not blocking
        history = _get(data, "historyLength", "history_length")
        data.pop("history_length", None)
        if history is not None:
            data["historyLength"] = None if history == 0 else history  # proto3: 0 is unset
        push = _get(raw, "pushNotification", "push_notification")
        if push is not None:
            data["pushNotificationConfig"] = push_config_in(push, at(path, "pushNotification"))
        return data

    def configuration_out(self, config: SendMessageConfiguration) -> dict[str, Any]:
        out = config.dump()
        out["blocking"] = not out.pop("returnImmediately")
        push = out.pop("pushNotificationConfig", None)
        if push is not None:
            out["pushNotification"] = push_config_out(push)
        return out

    def history_in(self, value: Any) -> Any:
        return None if value == 0 and not isinstance(value, bool) else value

    def push_in(self, data: dict[str, Any]) -> tuple[Any, Any]:
        """The 0.3 proto's CreateTaskPushNotificationConfigRequest: `{parent, configId,
        config: {name, pushNotificationConfig}}`; the task comes from the path."""
        config = obj(data.get("config"), "config")
        push = dict(
            obj(
                _get(config, "pushNotificationConfig", "push_notification_config"),
                "config.pushNotificationConfig",
            )
        )
        config_id = _get(data, "configId", "config_id")
        if config_id and not push.get("id"):
            push["id"] = config_id
        return data.get("taskId"), push_config_in(push, "config.pushNotificationConfig")

    def push_ref_in(self, data: dict[str, Any], *, config: bool = True) -> tuple[Any, Any]:
        return data.get("taskId"), data.get("id") if config else None

    def encode_push_config(self, task_id: str, config: PushNotificationConfig) -> Any:
        return {
            "name": f"tasks/{task_id}/pushNotificationConfigs/{config.id}",
            "pushNotificationConfig": push_config_out(config.dump()),
        }

    def encode_push_list(self, task_id: str, configs: Iterable[PushNotificationConfig]) -> Any:
        return {
            "configs": [self.encode_push_config(task_id, c) for c in configs],
            "nextPageToken": "",
        }

    def encode_push_deleted(self) -> Any:
        return {}

    def wrap(self, kind: str, out: dict[str, Any]) -> dict[str, Any]:
        return frame(kind, out)

    def unwrap(self, raw: Any) -> tuple[str, dict[str, Any]]:
        return unframe(raw)

    def error_data(self, error: A2AError) -> Any:
        return error.data


def _file_in(file: dict[str, Any], path: str) -> dict[str, Any]:
    # A oneof: some writers also send the other member empty, which says nothing.
    uri = _get(file, "fileWithUri", "file_with_uri")
    raw = _get(file, "fileWithBytes", "file_with_bytes")
    if bool(uri) == bool(raw):
        raise WireError(path, "exactly one of fileWithUri, fileWithBytes is required")
    out = (
        {"url": text(uri, at(path, "fileWithUri"))}
        if uri
        else {"raw": text(raw, at(path, "fileWithBytes"))}
    )
    mime = _get(file, "mimeType", "mime_type")
    if mime:
        out["mediaType"] = text(mime, at(path, "mimeType"))
    if file.get("name"):
        out["filename"] = text(file["name"], at(path, "name"))
    return out
