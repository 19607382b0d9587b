"""The OpenAPI document and its docs page, served without network access."""

from __future__ import annotations

from starlette.testclient import TestClient

from andon.server.app import create_app
from andon.service import TaskService


def test_openapi_document_covers_jsonrpc_and_every_rest_route(service: TaskService) -> None:
    with TestClient(create_app(service)) as client:
        doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    for path in (
        "/",
        "/message:send",
        "/message:stream",
        "/tasks",
        "/tasks/{id}",
        "/tasks/{id}:cancel",
        "/tasks/{id}:subscribe",
        "/tasks:cancel",
        "/v1/tasks/{id}",
    ):
        assert path in doc["paths"], path
    examples = doc["paths"]["/"]["post"]["responses"]["200"]["content"]["application/json"][
        "examples"
    ]
    assert examples["canceled"]["value"]["result"]["status"]["state"] == "TASK_STATE_CANCELED"
    assert examples["notCancelable"]["value"]["error"]["code"] == -32002
    assert examples["notFound"]["value"]["error"]["code"] == -32001
    schemas = doc["components"]["schemas"]
    assert "TASK_STATE_INPUT_REQUIRED" in schemas["TaskState"]["enum"]
    assert "canceling" not in str(schemas["TaskState"]["enum"])
    # The 0.3 routes speak 0.3 ProtoJSON: none of their bodies claims a 1.0 shape.
    v03_send = doc["paths"]["/v1/message:send"]["post"]
    assert sorted(_refs(v03_send)) == [
        "#/components/schemas/RestError",
        "#/components/schemas/V03ProtoJson",
        "#/components/schemas/V03ProtoJson",
    ]
    assert "TASK_STATE_CANCELLED" in schemas["V03ProtoJson"]["description"]
    refs = {r for r in _refs(doc)}
    assert refs <= {f"#/components/schemas/{name}" for name in schemas}, "dangling $ref"


def test_docs_page_loads_nothing_from_the_network(service: TaskService) -> None:
    with TestClient(create_app(service)) as client:
        page = client.get("/docs")
    assert page.status_code == 200 and "openapi.json" in page.text
    assert "http://" not in page.text and "https://" not in page.text


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []
