"""What the tests of LLM agents under `andon serve` share (test_llm, test_langgraph,
test_pydantic_ai_openai_agents): the agent's environment pointing at the fake model
server (andon.testing.fake_llm), an A2A 1.0 peer on the served agent, sending a task
and finding the model call it made, cancelling it, reading the answer back, and
finding the process a tool started. conftest.py's `fake` and `peer` fixtures use them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from andon.testing.fake_llm import WORDS, FakeModelServer, Generation
from tests.helpers import children_of
from tests.live_server import Dialect, Peer, until
from tests.test_client import AndonServer

V1 = Dialect("1.0", "jsonrpc")


def model_env(fake: FakeModelServer, **more: str) -> dict[str, str]:
    """The environment of an agent whose OpenAI-compatible model is `fake`."""
    return {
        "OPENAI_BASE_URL": fake.openai_url,
        "OPENAI_API_KEY": "sk-test",
        "ANDON_LLM_MODEL": "fake-model",
        **more,
    }


@asynccontextmanager
async def peer_of(server: AndonServer, timeout: float = 30) -> AsyncIterator[Peer]:
    """An A2A 1.0 JSON-RPC peer on `server`."""
    async with httpx.AsyncClient(base_url=server.url, timeout=timeout) as http:
        yield Peer(V1, http, server.port)


async def start(
    peer: Peer, fake: FakeModelServer, text: str, **fields: Any
) -> tuple[dict[str, Any], Generation]:
    """Send `text` without waiting; the task, and the model call it made."""
    before = len(fake.generations)
    task = await peer.send(text, blocking=False, **fields)
    await until(lambda: len(fake.generations) > before, what="the model server called")
    return task, fake.generations[before]


async def cancel(peer: Peer, task_id: str, **metadata: Any) -> tuple[dict[str, Any], int]:
    """CancelTask; the task it answered, and the monotonic ns at which the answer came."""
    params: dict[str, Any] = {"id": task_id, **({"metadata": metadata} if metadata else {})}
    task = await peer.result("cancel", params)
    return task, time.monotonic_ns()


def artifact(task: dict[str, Any], artifact_id: str) -> dict[str, Any]:
    [found] = [a for a in task.get("artifacts") or [] if a["artifactId"] == artifact_id]
    return found  # type: ignore[no-any-return]


def text_of(found: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in found["parts"])


def status_text(task: dict[str, Any]) -> str:
    message = task["status"].get("message") or {}
    return "".join(part.get("text", "") for part in message.get("parts") or [])


def words(start: int, count: int) -> str:
    """The fake model server's text from its `start`-th token, `count` tokens long."""
    return "".join(WORDS[i % len(WORDS)] + " " for i in range(start, start + count))


async def tool_process(server: AndonServer, command: str) -> int:
    """The pid of the child of `server` running `command` (a tool's), once there is one."""
    found: list[int] = []

    def running() -> bool:
        found[:] = [
            pid
            for pid in children_of(server.proc.pid)
            if command.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        ]
        return bool(found)

    await until(running, what=f"{command} running")
    return found[0]
