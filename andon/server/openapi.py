"""The OpenAPI 3.1 document at `/openapi.json`, generated from the canonical models, and
a docs page that renders it with no network access.

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
    summary: str, *, body: str | None = None, result: str = "Task", sse: bool = False
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {}}
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if sse:
        operation["responses"]["200"] = {
            "description": "Server-Sent Events; `id:` is the event's sequence number",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
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
        copied = {key: _as_v03(value) for key, value in node.items()}
        if isinstance(copied.get("summary"), str):
            copied["summary"] = f"{copied['summary']} (A2A 0.3)"
        return copied
    if isinstance(node, list):
        return [_as_v03(value) for value in node]
    return node


V03_REPLACED = ("Task", "Message", "SendMessageParams", "TaskList")


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
            "post": {
                "summary": "A2A over JSON-RPC 2.0: 1.0 with the header A2A-Version: 1.0, else 0.3",
                "parameters": [
                    {"name": "A2A-Version", "in": "header", "schema": {"enum": ["1.0", "0.3"]}},
                    {
                        "name": "X-Andon-On-Disconnect",
                        "in": "header",
                        "description": "continue | cancel | cancel-when-orphaned=SECONDS",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("JsonRpcRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "A JSON-RPC response, or SSE for the streaming methods",
                        "content": {
                            "application/json": {
                                "schema": _ref("JsonRpcResponse"),
                                "examples": CANCEL_EXAMPLES,
                            },
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    }
                },
            }
        },
        "/message:send": {"post": _rest("Send a message", body="SendMessageParams")},
        "/message:stream": {
            "post": _rest("Send a message and stream", body="SendMessageParams", sse=True)
        },
        "/tasks": {
            "get": {
                **_rest("List tasks", result="TaskList"),
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": t}}
                    for n, t in (
                        ("contextId", "string"),
                        ("status", "string"),
                        ("pageSize", "integer"),
                        ("pageToken", "string"),
                        ("historyLength", "integer"),
                    )
                ],
            }
        },
        "/tasks/{id}": {"get": {**_rest("Get a task"), "parameters": _task_id()}},
        "/tasks/{id}:cancel": {
            "post": {**_rest("Cancel a task", body="CancelTaskParams"), "parameters": _task_id()}
        },
        "/tasks/{id}:subscribe": {
            "get": {**_rest("Subscribe to a task", sse=True), "parameters": _task_id()}
        },
        "/tasks/{id}:retry": {
            "post": {**_rest("Retry an ended task (andon)"), "parameters": _task_id()}
        },
        "/tasks:cancel": {
            "post": _rest(
                "Cancel many tasks by ids, context or states (andon)",
                body="CancelManyParams",
                result="JsonRpcResponse",
            )
        },
    }
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


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>andon API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#111}
code,pre{font:13px ui-monospace,monospace;background:#f3f3f3;border-radius:4px}
pre{padding:.75rem;overflow:auto}h2{border-bottom:1px solid #ddd}
.verb{display:inline-block;min-width:4rem;font-weight:bold;color:#064}
details{margin:.4rem 0}
</style></head>
<body><h1>andon API</h1>
<p>The machine-readable document is <a href="openapi.json">openapi.json</a>.</p>
<main id="doc">Loading…</main>
<script type="module">
const doc = await (await fetch("openapi.json")).json();
const main = document.getElementById("doc");
main.textContent = "";
const el = (tag, text) => {
  const e = document.createElement(tag);
  if (text) e.textContent = text;
  return e;
};
main.append(el("p", doc.info.description));
main.append(el("h2", "Routes"));
for (const [path, ops] of Object.entries(doc.paths)) {
  for (const [verb, op] of Object.entries(ops)) {
    const d = el("details"), s = el("summary");
    const v = el("span", verb.toUpperCase()); v.className = "verb";
    s.append(v, el("code", path), " — " + op.summary);
    d.append(s, el("pre", JSON.stringify(op, null, 2)));
    main.append(d);
  }
}
main.append(el("h2", "Schemas"));
for (const [name, schema] of Object.entries(doc.components.schemas)) {
  const d = el("details"), s = el("summary"); s.append(el("code", name));
  d.append(s, el("pre", JSON.stringify(schema, null, 2)));
  main.append(d);
}
</script></body></html>
"""
