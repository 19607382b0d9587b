"""The authenticated extended agent card, over real HTTP: an agent with a skill
registered `extended=True` declares the extended card in its public card (which does not
list that skill) and answers GetExtendedAgentCard (1.0 JSON-RPC and HTTP+JSON, 0.3
`agent/getAuthenticatedExtendedCard` and `/v1/card`) with every skill, only to a request
with a valid token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from andon.client import Client
from tests.test_client import AndonServer

AGENT = """
import andon

agent = andon.Agent(name="two faces", description="public and extended skills")


@agent.skill("hello", description="for everyone")
async def hello(ctx: andon.TaskContext) -> str:
    return "hello"


@agent.skill("audit", description="for authenticated principals", extended=True)
async def audit(ctx: andon.TaskContext) -> str:
    return "audited"
"""
TOKEN = "extended-s3cret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    workdir = tmp_path_factory.mktemp("extended")
    (workdir / "two_faces.py").write_text(AGENT)
    with AndonServer(
        workdir,
        "two_faces.py:agent",
        "--auth",
        "tokens",
        env={"ANDON_TOKENS": f"alice user {TOKEN}"},
        token=TOKEN,
    ) as served:
        yield served


def ask(server: AndonServer, version: str, rest: bool, token: str | None) -> httpx.Response:
    headers = {"A2A-Version": version}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if rest:
        path = "/extendedAgentCard" if version == "1.0" else "/v1/card"
        return httpx.get(server.url + path, headers=headers, timeout=10)
    method = "GetExtendedAgentCard" if version == "1.0" else "agent/getAuthenticatedExtendedCard"
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}
    return httpx.post(server.url + "/", json=body, headers=headers, timeout=10)


def skill_ids(card: dict[str, Any]) -> list[str]:
    return [skill["id"] for skill in card["skills"]]


def test_public_card_declares_the_extended_card_but_not_its_skills(server: AndonServer) -> None:
    card = httpx.get(server.url + "/.well-known/agent-card.json", timeout=10).json()
    assert card["capabilities"]["extendedAgentCard"] is True
    assert card["supportsAuthenticatedExtendedCard"] is True  # the 0.3 field beside it
    assert skill_ids(card) == ["hello"]


@pytest.mark.parametrize("rest", [False, True], ids=["jsonrpc", "http_json"])
@pytest.mark.parametrize("version", ["1.0", "0.3"])
def test_extended_card_lists_every_skill_to_a_valid_token(
    server: AndonServer, version: str, rest: bool
) -> None:
    reply = ask(server, version, rest, TOKEN)
    assert reply.status_code == 200, reply.text
    card = reply.json() if rest else reply.json()["result"]
    assert skill_ids(card) == ["hello", "audit"]
    assert card["name"] == "two faces"
    if version == "1.0":
        assert card["capabilities"]["extendedAgentCard"] is True
        assert "url" not in card  # that version's card exactly
    else:
        assert card["supportsAuthenticatedExtendedCard"] is True
        assert card["protocolVersion"].startswith("0.3")


@pytest.mark.parametrize("token", [None, "wrong"], ids=["no token", "wrong token"])
@pytest.mark.parametrize("rest", [False, True], ids=["jsonrpc", "http_json"])
@pytest.mark.parametrize("version", ["1.0", "0.3"])
def test_extended_card_is_refused_without_a_valid_token(
    server: AndonServer, version: str, rest: bool, token: str | None
) -> None:
    reply = ask(server, version, rest, token)
    assert reply.status_code == 401, reply.text
    assert "audit" not in reply.text
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_extended_skill_serves_tasks(server: AndonServer) -> None:
    """The extended skill is a skill like any other for the authenticated caller."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": "m1",
                "role": "ROLE_USER",
                "parts": [{"text": "go"}],
                "metadata": {"andon.skill": "audit"},
            }
        },
    }
    reply = httpx.post(
        server.url + "/",
        json=body,
        headers={"A2A-Version": "1.0", "Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    task = reply.json()["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["status"]["message"]["parts"][0]["text"] == "audited"


@pytest.mark.parametrize("binding", ["jsonrpc", "http+json"])
@pytest.mark.parametrize("version", ["1.0", "0.3"])
def test_python_client_reads_the_extended_card(
    server: AndonServer, version: str, binding: str
) -> None:
    with Client(server.url, TOKEN, version, binding=binding) as client:
        assert skill_ids(client.extended_card()) == ["hello", "audit"]
