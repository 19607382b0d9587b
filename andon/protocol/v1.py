"""A2A 1.0 on the wire: the ProtoJSON form of `lf.a2a.v1` (specification/a2a.proto).

Where it differs from the canonical models: enums are their proto names
(`TASK_STATE_INPUT_REQUIRED`, `ROLE_USER`; ProtoJSON parsers also take their numbers);
the send configuration calls its push config `taskPushNotificationConfig`; results and
stream items are framed as one of {"task"}, {"message"}, {"statusUpdate"},
{"artifactUpdate"}; there is no `kind` and no `final` (a stream ends at a terminal or
interrupted state); error `data` is a list of google.rpc typed details.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from andon.protocol.errors import A2AError
from andon.protocol.params import SendMessageConfiguration
from andon.protocol.types import Role, TaskState
from andon.protocol.wire import ANDON_METHODS, Codec, Method, Version, WireError, obj, visible_state

# In the order of their proto numbers, 1 to 8 (0 is TASK_STATE_UNSPECIFIED).
PROTO_STATES = (
    TaskState.SUBMITTED,
    TaskState.WORKING,
    TaskState.COMPLETED,
    TaskState.FAILED,
    TaskState.CANCELED,
    TaskState.INPUT_REQUIRED,
    TaskState.REJECTED,
    TaskState.AUTH_REQUIRED,
)
_ROLE_NAMES: dict[str, str] = {Role.USER: "ROLE_USER", Role.AGENT: "ROLE_AGENT"}
_ROLES_IN = {"ROLE_USER": Role.USER, "ROLE_AGENT": Role.AGENT, 1: Role.USER, 2: Role.AGENT}


def proto_states(
    name: Callable[[TaskState], str],
) -> tuple[dict[str, str], dict[Any, TaskState | None]]:
    """A proto's task-state names, and how to read them back (by name or by number)."""
    names: dict[str, str] = {state: name(state) for state in PROTO_STATES}
    reading: dict[Any, TaskState | None] = {
        "TASK_STATE_UNSPECIFIED": None,
        0: None,
        **{name(state): state for state in PROTO_STATES},
        **{number: state for number, state in enumerate(PROTO_STATES, start=1)},
    }
    return names, reading


_CONTENT = ("text", "raw", "url", "data")
_FRAMES = {
    "task": "task",
    "message": "message",
    "status-update": "statusUpdate",
    "artifact-update": "artifactUpdate",
}
_KINDS = {frame: kind for kind, frame in _FRAMES.items()}

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ERROR_DOMAIN = "a2a-protocol.org"


def _enum_key(value: Any) -> Any:
    # bool is an int, but True is no enum number.
    return None if isinstance(value, bool) or not isinstance(value, str | int) else value


class ProtoEnumCodec(Codec):
    """A codec whose roles and task states are proto enum names (`ROLE_USER`,
    `TASK_STATE_WORKING`), read by name or by number."""

    state_names: ClassVar[dict[str, str]]
    states_in: ClassVar[dict[Any, TaskState | None]]
    state_names, states_in = proto_states(lambda state: f"TASK_STATE_{state.name}")

    def role_in(self, value: Any, path: str) -> Any:
        role = _ROLES_IN.get(_enum_key(value))
        if role is None:
            raise WireError(path, "expected ROLE_USER or ROLE_AGENT")
        return role

    def role_out(self, role: str) -> str:
        return _ROLE_NAMES[role]  # str-valued enum members look up by their value

    def state_in(self, value: Any, path: str) -> TaskState | None:
        key = _enum_key(value)
        if key not in self.states_in:
            raise WireError(path, "expected a TASK_STATE_* name")
        return self.states_in[key]

    def state_out(self, state: str) -> str:
        return self.state_names[visible_state(state)]


class V1Codec(ProtoEnumCodec):
    version = Version.V1_0
    kinds = False
    methods = {
        "SendMessage": Method.SEND,
        "SendStreamingMessage": Method.STREAM,
        "GetTask": Method.GET,
        "ListTasks": Method.LIST,
        "CancelTask": Method.CANCEL,
        "SubscribeToTask": Method.SUBSCRIBE,
        "CreateTaskPushNotificationConfig": Method.PUSH_CREATE,
        "GetTaskPushNotificationConfig": Method.PUSH_GET,
        "ListTaskPushNotificationConfigs": Method.PUSH_LIST,
        "DeleteTaskPushNotificationConfig": Method.PUSH_DELETE,
        "GetExtendedAgentCard": Method.EXTENDED_CARD,
        **ANDON_METHODS,
    }

    def part_in(self, raw: Any, path: str) -> dict[str, Any]:
        part = obj(raw, path)
        if sum(part.get(key) is not None for key in _CONTENT) != 1:
            raise WireError(path, "exactly one of text, raw, url, data is required")
        return part

    def part_out(self, part: dict[str, Any]) -> dict[str, Any]:
        return part

    def configuration_in(self, raw: dict[str, Any], path: str) -> dict[str, Any]:
        if "taskPushNotificationConfig" not in raw:
            return raw
        data = dict(raw)
        data["pushNotificationConfig"] = data.pop("taskPushNotificationConfig")
        return data

    def configuration_out(self, config: SendMessageConfiguration) -> dict[str, Any]:
        out = config.dump()
        push = out.pop("pushNotificationConfig", None)
        if push is not None:
            out["taskPushNotificationConfig"] = push
        return out

    def wrap(self, kind: str, out: dict[str, Any]) -> dict[str, Any]:
        return frame(kind, out)

    def unwrap(self, raw: Any) -> tuple[str, dict[str, Any]]:
        return unframe(raw)

    def error_data(self, error: A2AError) -> list[dict[str, Any]]:
        """google.rpc.ErrorInfo (reason, domain, the scalar data as metadata strings), and
        google.rpc.BadRequest when the error lists field problems."""
        data = error.data if isinstance(error.data, dict) else {}
        metadata = {
            key: _as_text(value)
            for key, value in data.items()
            if isinstance(value, str | int | float | bool)
        }
        details: list[dict[str, Any]] = [
            {
                "@type": ERROR_INFO,
                "reason": error.reason,
                "domain": ERROR_DOMAIN,
                "metadata": metadata,
            }
        ]
        problems = data.get("errors")
        if isinstance(problems, list) and problems:
            violations = [
                {"field": p.get("field", ""), "description": p.get("message", "")}
                for p in problems
                if isinstance(p, dict)
            ]
            details.append({"@type": BAD_REQUEST, "fieldViolations": violations})
        return details


def frame(kind: str, out: dict[str, Any]) -> dict[str, Any]:
    """A send result or stream item in its oneof frame (also 0.3's ProtoJSON form)."""
    return {_FRAMES[kind]: out}


def unframe(raw: Any) -> tuple[str, dict[str, Any]]:
    framed = obj(raw, "")
    present = [key for key in _KINDS if key in framed]
    if len(present) != 1:
        raise WireError("", "expected exactly one of task, message, statusUpdate, artifactUpdate")
    return _KINDS[present[0]], obj(framed[present[0]], present[0])


def _as_text(value: str | int | float | bool) -> str:
    # ErrorInfo.metadata is map<string, string>; JSON spelling for booleans.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
