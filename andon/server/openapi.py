"""The OpenAPI 3.1 document at `/openapi.json`, generated from the canonical models, with
request examples for the routes a person tries first (send, stream, cancel, cancel
many); `/docs` renders it (andon/server/docs.py).

Schemas describe the A2A 1.0 wire form: the canonical models' JSON Schema with their
enums renamed the way the 1.0 codec writes them (TASK_STATE_*, ROLE_*). The 0.3 routes
under /v1 name their bodies `V03ProtoJson`, described in words: the 0.3 ProtoJSON shapes
are the 0.3 proto's, not these models'.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from andon.protocol.params import (
    CancelManyParams,
    CancelTaskParams,
    GetTaskParams,
    ListTasksParams,
    RetryParams,
    SendMessageParams,
    SubscribeParams,
)
from andon.protocol.types import Message, Role, Task, TaskState

WIRE_STATES = [f"TASK_STATE_{s.name}" for s in TaskState if s is not TaskState.CANCELING]
WIRE_ROLES = [f"ROLE_{r.name}" for r in Role]
MODELS: list[Any] = [
    Task,
    Message,
    SendMessageParams,
    GetTaskParams,
    ListTasksParams,
    CancelTaskParams,
    SubscribeParams,
    CancelManyParams,
    RetryParams,
]
JSONRPC_METHODS = {
    "SendMessage": "SendMessageParams",
    "SendStreamingMessage": "SendMessageParams",
    "GetTask": "GetTaskParams",
    "ListTasks": "ListTasksParams",
    "CancelTask": "CancelTaskParams",
    "SubscribeToTask": "SubscribeParams",
    "andon/cancelMany": "CancelManyParams",
    "andon/retry": "RetryParams",
}


def _user_message(text: str) -> dict[str, Any]:
    return {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": text}]}


def _example(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


SEND_EXAMPLES = {
    "echo": _example(
        "Send a message and wait for the task to end", {"message": _user_message("echo hello")}
    ),
    "background": _example(
        "Start a task of 5 s and return at once (then cancel it)",
        {"message": _user_message("sleep 5"), "configuration": {"returnImmediately": True}},
    ),
    "skill": _example(
        "Choose the agent's skill (metadata andon.skill) and a deadline (andon.timeout)",
        {"message": _user_message("echo hello"), "metadata": {"andon.timeout": 60}},
    ),
}
STREAM_EXAMPLES = {
    "stream": _example(
        "Stream a task's events (five chunks, one every 50 ms)",
        {"message": _user_message("stream 5")},
    ),
}
CANCEL_BODY_EXAMPLES = {
    "user": _example("Cancel, and wait until the work has stopped", {}),
    "graceful": _example(
        "Let the agent finish its current step first, waiting up to 5 s",
        {"metadata": {"andon.mode": "graceful", "andon.wait": 5}},
    ),
}
CANCEL_MANY_EXAMPLES = {
    "context": _example(
        "Every unfinished task of a conversation",
        {"contextId": "CONTEXT_ID", "reason": "operator"},
    ),
    "working": _example(
        "Every working task", {"states": ["TASK_STATE_WORKING"], "reason": "operator"}
    ),
}
JSONRPC_EXAMPLES = {
    "send": _example(
        "SendMessage (with the header A2A-Version: 1.0)",
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendMessage",
            "params": {
                "message": _user_message("sleep 30"),
                "configuration": {"returnImmediately": True},
            },
        },
    ),
    "stream": _example(
        "SendStreamingMessage: Server-Sent Events",
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "SendStreamingMessage",
            "params": {"message": _user_message("stream 5")},
        },
    ),
    "cancel": _example(
        "CancelTask: returns once the work has stopped",
        {"jsonrpc": "2.0", "id": 3, "method": "CancelTask", "params": {"id": "TASK_ID"}},
    ),
    "cancelMany": _example(
        "andon/cancelMany: every unfinished task of a context",
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "andon/cancelMany",
            "params": {"contextId": "CONTEXT_ID", "reason": "operator"},
        },
    ),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _wire_enums(schemas: dict[str, Any]) -> None:
    state = schemas.get("TaskState")
    if state is not None:
        state["enum"] = WIRE_STATES
    role = schemas.get("Role")
    if role is not None:
        role["enum"] = WIRE_ROLES


def _rpc_error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 3, "error": {"code": code, "message": message}}


CANCEL_EXAMPLES = {
    "canceled": {
        "summary": "The task stopped and is canceled",
        "value": {
            "jsonrpc": "2.0",
            "id": 3,
            "result": {
                "id": "3f1c…",
                "contextId": "9a0b…",
                "status": {"state": "TASK_STATE_CANCELED", "timestamp": "2026-11-23T10:00:00Z"},
                "metadata": {"andon.reason": "user", "andon.stopMs": 1.2},
            },
        },
    },
    "notCancelable": {
        "summary": "TaskNotCancelable: the task has already ended",
        "value": _rpc_error(-32002, "task 3f1c… is already completed"),
    },
    "notFound": {
        "summary": "TaskNotFound: unknown, or another principal's task",
        "value": _rpc_error(-32001, "task 3f1c… not found"),
    },
}


def _rest(
    summary: str,
    *,
    body: str | None = None,
    result: str = "Task",
    sse: bool = False,
    examples: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {}}
    if body is not None:
        content: dict[str, Any] = {"schema": _ref(body)}
        if examples:
            content["examples"] = examples
        operation["requestBody"] = {"required": True, "content": {"application/json": content}}
    if sse:
        operation["responses"]["200"] = {
            "description": "Server-Sent Events; `id:` is the event's sequence number",
            "content": {"text/event-stream": {"schema": _ref("StreamItem")}},
        }
    else:
        operation["responses"]["200"] = {
            "description": "OK",
            "content": {"application/json": {"schema": _ref(result)}},
        }
    operation["responses"]["default"] = {
        "description": "An error: google.rpc.Status with an ErrorInfo naming the A2A error",
        "content": {"application/json": {"schema": _ref("RestError")}},
    }
    return operation


V03_SHAPES = (
    "A2A 0.3 over HTTP+JSON: the ProtoJSON form of the 0.3 proto. It differs from the 1.0 "
    "shapes of the root routes: a message's parts are its `content`; enums are proto names "
    "(`ROLE_USER`, `TASK_STATE_CANCELLED`); a file part is `{file: {fileWithUri | "
    "fileWithBytes, mimeType, name}}` and a data part `{data: {data: {...}}}`; stream items "
    "are framed as {task}, {message}, {statusUpdate}, {artifactUpdate} and status updates "
    "keep `final`."
)


def _as_v03(node: Any) -> Any:
    """A root route's operation for the 0.3 binding under /v1: the same route, with its
    bodies described as 0.3 ProtoJSON instead of the 1.0 models."""
    if isinstance(node, dict):
        if node.get("$ref") in {f"#/components/schemas/{name}" for name in V03_REPLACED}:
            return _ref("V03ProtoJson")
        # The examples are 1.0 bodies: the 0.3 shapes differ (see V03_SHAPES).
        copied = {key: _as_v03(value) for key, value in node.items() if key != "examples"}
        if isinstance(copied.get("summary"), str):
            copied["summary"] = f"{copied['summary']} (A2A 0.3)"
        return copied
    if isinstance(node, list):
        return [_as_v03(value) for value in node]
    return node


V03_REPLACED = ("Task", "Message", "SendMessageParams", "SendMessageResult", "TaskList")


def _as_the_server_checks(schemas: dict[str, Any]) -> None:
    """What the server checks beyond the models' types, said in the document too: a
    message has a non-empty id and at least one part, a cancel of many names what
    to cancel, booleans are JSON booleans; and the shapes of results the models do
    not cover (a send's task or message, a stream's items, a cancel of many)."""
    message = schemas["Message"]
    message["required"] = sorted({*message.get("required", []), "messageId", "role", "parts"})
    message["properties"]["messageId"] = {"type": "string", "minLength": 1}
    message["properties"]["parts"]["minItems"] = 1
    schemas["CancelManyParams"]["anyOf"] = [
        {"required": [key], "properties": {key: {"not": {"type": "null"}}}}
        for key in ("ids", "contextId", "states")
    ]
    schemas["SendMessageResult"] = {
        "oneOf": [
            {"type": "object", "required": ["task"], "properties": {"task": _ref("Task")}},
            {"type": "object", "required": ["message"], "properties": {"message": _ref("Message")}},
        ]
    }
    schemas["StreamItem"] = {
        "type": "object",
        "description": "An SSE event: `id` its sequence number, `data` one JSON object "
        "holding one of task, message, statusUpdate, artifactUpdate",
        "required": ["data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "data": {"type": "string", "contentMediaType": "application/json"},
        },
    }
    schemas["Part"]["oneOf"] = [
        {"required": [key], "properties": {key: {"not": {"type": "null"}}}}
        for key in ("text", "raw", "url", "data")
    ]
    schemas["CancelManyResult"] = {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": {"type": "string"},
                        "task": _ref("Task"),
                        "error": {"type": "string"},
                    },
                },
            }
        },
    }


def _task_id() -> list[dict[str, Any]]:
    return [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def build_openapi(title: str, version: str, server_url: str) -> dict[str, Any]:
    _, top = models_json_schema(
        [(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = top.get("$defs", {})
    _wire_enums(schemas)
    schemas["JsonRpcRequest"] = {
        "type": "object",
        "required": ["jsonrpc", "method"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer", "null"]},
            "method": {"enum": list(JSONRPC_METHODS)},
            "params": {"oneOf": [_ref(name) for name in sorted(set(JSONRPC_METHODS.values()))]},
        },
    }
    schemas["JsonRpcResponse"] = {
        "type": "object",
        "required": ["jsonrpc", "id"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer", "null"]},
            "result": {},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "data": {},
                },
            },
        },
    }
    schemas["RestError"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer"},
                    "status": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object"}},
                },
            }
        },
    }
    schemas["TaskList"] = {
        "type": "object",
        "properties": {
            "tasks": {"type": "array", "items": _ref("Task")},
            "nextPageToken": {"type": "string"},
            "pageSize": {"type": "integer"},
            "totalSize": {"type": "integer"},
        },
    }
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "summary": "The web page: talk to the agent, watch and cancel its tasks",
                "responses": {
                    "200": {
                        "description": "HTML",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            },
            "post": {
                "summary": "A2A over JSON-RPC 2.0: 1.0 with the header A2A-Version: 1.0, else 0.3",
                "parameters": [
                    {
                        "name": "A2A-Version",
                        "in": "header",
                        "description": "1.0 or 0.3; another is VersionNotSupported",
                        "schema": {"type": "string"},
                        "example": "1.0",
                    },
                    {
                        "name": "X-Andon-On-Disconnect",
                        "in": "header",
                        "description": "continue | cancel | cancel-when-orphaned=SECONDS",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("JsonRpcRequest"),
                            "examples": JSONRPC_EXAMPLES,
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "A JSON-RPC response, or SSE for the streaming methods",
                        "content": {
                            "application/json": {
                                "schema": _ref("JsonRpcResponse"),
                                "examples": CANCEL_EXAMPLES,
                            },
                            "text/event-stream": {"schema": _ref("JsonRpcResponse")},
                        },
                    }
                },
            },
        },
        "/message:send": {
            "post": _rest(
                "Send a message",
                body="SendMessageParams",
                result="SendMessageResult",
                examples=SEND_EXAMPLES,
            )
        },
        "/message:stream": {
            "post": _rest(
                "Send a message and stream",
                body="SendMessageParams",
                sse=True,
                examples=STREAM_EXAMPLES,
            )
        },
        "/tasks": {
            "get": {
                **_rest("List tasks", result="TaskList"),
                "parameters": [
                    {"name": n, "in": "query", "schema": schema}
                    for n, schema in (
                        ("contextId", {"type": "string"}),
                        ("status", {"type": "string", "enum": WIRE_STATES}),
                        ("pageSize", {"type": "integer", "minimum": 1, "maximum": 100}),
                        ("pageToken", {"type": "string"}),
                        ("historyLength", {"type": "integer", "minimum": 0}),
                    )
                ],
            }
        },
        "/tasks/{id}": {"get": {**_rest("Get a task"), "parameters": _task_id()}},
        "/tasks/{id}:cancel": {
            "post": {
                **_rest("Cancel a task", body="CancelTaskParams", examples=CANCEL_BODY_EXAMPLES),
                "parameters": _task_id(),
            }
        },
        # The 1.0 binding subscribes with GET; POST is served too, for clients of drafts.
        "/tasks/{id}:subscribe": {
            method: {**_rest("Subscribe to a task", sse=True), "parameters": _task_id()}
            for method in ("get", "post")
        },
        "/tasks/{id}:retry": {
            "post": {**_rest("Retry an ended task (andon)"), "parameters": _task_id()}
        },
        "/tasks:cancel": {
            "post": _rest(
                "Cancel many tasks by ids, context or states (andon)",
                body="CancelManyParams",
                result="CancelManyResult",
                examples=CANCEL_MANY_EXAMPLES,
            )
        },
    }
    _as_the_server_checks(schemas)
    schemas["V03ProtoJson"] = {
        "type": "object",
        "description": V03_SHAPES,
        "externalDocs": {
            "url": "https://github.com/a2aproject/A2A/blob/v0.3.0/specification/grpc/a2a.proto"
        },
    }
    for path in list(paths):
        if path != "/":
            paths[f"/v1{path}"] = _as_v03(paths[path])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "A2A over JSON-RPC and HTTP+JSON, served by andon.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
