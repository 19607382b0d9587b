"""pydantic-ai and OpenAI Agents SDK agents served by `andon serve`, talked to over A2A
1.0, their model on the fake model server that logs every token it generates
(andon.testing.fake_llm): a cancel stops the generation before it is answered, kills the
tool's process, waits for a sync tool or names it (`failed / cancel_timeout`), and a
retry continues the cancelled run from what it kept.

Each framework is served from its example (examples/pydantic_ai_agent.py,
examples/openai_agents_agent.py) and, for the sync tool, from
tests/agents/stubborn_tools.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from andon.testing.fake_llm import WORDS, FakeModelServer, Generation
from tests.helpers import children_of, process_group_alive
from tests.live_server import Dialect, Peer, canonical_state, unchanged, until
from tests.test_client import AndonServer

ROOT = Path(__file__).resolve().parent.parent
V1 = Dialect("1.0", "jsonrpc")
STARTUP = 90
"""Seconds for `andon serve` to import a framework (seconds of CPU for pydantic-ai alone,
more on a busy machine)."""
SERVED = {
    "pydantic-ai": ("examples/pydantic_ai_agent.py:agent", "pydantic_ai_agent"),
    "openai-agents": ("examples/openai_agents_agent.py:agent", "openai_agents_agent"),
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer(tokens=20, rate=200) as server:
        yield server


def environment(fake: FakeModelServer, **more: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake.openai_url,
        "OPENAI_API_KEY": "sk-test",
        "ANDON_LLM_MODEL": "fake-model",
        **more,
    }


@pytest.fixture(scope="module", params=list(SERVED))
def served(
    request: pytest.FixtureRequest,
    fake: FakeModelServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AndonServer]:
    example, _ = SERVED[request.param]
    workdir = tmp_path_factory.mktemp(request.param)
    with AndonServer(
        workdir, str(ROOT / example), env=environment(fake), ready_within=STARTUP
    ) as server:
        yield server


@pytest.fixture
async def peer(served: AndonServer) -> AsyncIterator[Peer]:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        yield Peer(V1, http, served.port)


async def start(peer: Peer, fake: FakeModelServer, text: str) -> tuple[str, Generation]:
    """Send `text` without waiting; the task's id and the model call it made."""
    before = len(fake.generations)
    task = await peer.send(text, blocking=False)
    await until(lambda: len(fake.generations) > before, what="the model server called")
    return task["id"], fake.generations[before]


async def cancel(peer: Peer, task_id: str) -> tuple[dict[str, Any], int]:
    """CancelTask; the task it answered, and the monotonic ns at which the answer came."""
    task = await peer.result("cancel", {"id": task_id})
    return task, time.monotonic_ns()


def artifact(task: dict[str, Any], artifact_id: str) -> dict[str, Any]:
    [found] = [a for a in task.get("artifacts") or [] if a["artifactId"] == artifact_id]
    return found  # type: ignore[no-any-return]


def text_of(found: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in found["parts"])


def words(start: int, count: int) -> str:
    return "".join(WORDS[i % len(WORDS)] + " " for i in range(start, start + count))


def status_text(task: dict[str, Any]) -> str:
    message = task["status"].get("message") or {}
    return "".join(part.get("text", "") for part in message.get("parts") or [])


async def test_the_answer_streams_and_the_tool_call_is_progress(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    before = len(fake.generations)
    params = V1.send_params('list files tool="echo hello" tokens=7')
    async with peer.stream("stream", params) as items:
        seen = [item async for item in items]
    progress = [status_text(item.body) for item in seen if item.state == "working"]
    [called] = [said for said in progress if said.startswith("run(")]
    assert "echo hello" in called, progress
    [returned] = [said for said in progress if said.startswith("run →")]
    assert returned == "run → exit status 0", progress
    task = await peer.wait_state(seen[0].body["id"], "completed", "failed")
    assert canonical_state(task["status"]["state"]) == "completed", task["status"]
    assert text_of(artifact(task, "response")) == words(0, 7)
    assert text_of(artifact(task, "output")) == "hello\n"  # the command's, as it ran
    call, answer = fake.generations[before : before + 2]
    assert call.ended == answer.ended == "complete"
    usage = task["metadata"]["andon.usage"]
    assert usage["calls"] == 2
    assert usage["completionTokens"] == len(call.tokens) + len(answer.tokens)


async def test_cancel_mid_stream_stops_generation_before_the_answer(
    peer: Peer, fake: FakeModelServer
) -> None:
    task_id, call = await start(peer, fake, "write on tokens=100000 rate=200")
    await until(lambda: len(call.tokens) >= 20, what="20 tokens generated")
    task, answered = await cancel(peer, task_id)
    assert canonical_state(task["status"]["state"]) == "canceled"
    assert call.tokens_after(answered) == 0, "tokens generated after the cancel was answered"
    assert call.ended == "disconnected"
    await unchanged(lambda: len(call.tokens), 0.3)

    task = await peer.get(task_id)
    response = artifact(task, "response")
    received = text_of(response)
    assert received and words(0, len(received.split())) == received
    assert response["metadata"]["andon.partial"] is True


async def test_cancel_while_the_tool_sleeps_leaves_no_process(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    task_id, _ = await start(peer, fake, 'wait tool="sleep 300"')
    sleeper: list[int] = []

    def find_sleep() -> bool:
        sleeper[:] = [
            pid
            for pid in children_of(served.proc.pid)
            if b"sleep 300" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        ]
        return bool(sleeper)

    await until(find_sleep, what="sleep 300 running")
    task, _ = await cancel(peer, task_id)
    assert canonical_state(task["status"]["state"]) == "canceled"
    assert not process_group_alive(sleeper[0])


async def test_a_retry_continues_from_what_the_cancelled_run_kept(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    marker = served.workdir / f"ran-{time.monotonic_ns()}"
    task_id, call = await start(peer, fake, f'note tool="echo ran >> {marker}" tokens=40 rate=100')
    await until(lambda: len(fake.generations) > fake.generations.index(call) + 1, what="answer")
    answer = fake.generations[fake.generations.index(call) + 1]
    await until(lambda: len(answer.tokens) >= 8, what="8 tokens of the answer")
    task, _ = await cancel(peer, task_id)
    assert canonical_state(task["status"]["state"]) == "canceled"
    assert marker.read_text() == "ran\n"

    before = len(fake.generations)
    body = {"jsonrpc": "2.0", "id": 1, "method": "andon/retry", "params": {"id": task_id}}
    reply = (await peer.http.post("/", json=body, headers=V1.headers)).json()
    retry = await peer.wait_state(reply["result"]["id"], "completed", "failed")
    assert canonical_state(retry["status"]["state"]) == "completed", retry["status"]
    # The tool's result was kept: the retry asked the model for the answer at once (a
    # text reply: the fake server answers a conversation holding a tool result in text),
    # and never ran the command again.
    [again] = fake.generations[before:]
    assert len(again.tokens) == 40 and again.ended == "complete"
    assert text_of(artifact(retry, "response")).endswith(words(0, 40))
    assert marker.read_text() == "ran\n"


async def test_a_sync_tool_that_ignores_checks_fails_the_cancel_naming_it(
    fake: FakeModelServer, served: AndonServer, tmp_path: Path
) -> None:
    framework = next(name for name, (example, _) in SERVED.items() if example in served.args[0])
    release = tmp_path / "release"
    env = environment(fake, ANDON_TEST_RELEASE=str(release))
    target = f"{ROOT / 'tests' / 'agents' / 'stubborn_tools.py'}:{SERVED[framework][1]}"
    try:
        with AndonServer(tmp_path, target, env=env, ready_within=STARTUP) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                peer = Peer(V1, http, server.port)
                task_id, _ = await start(peer, fake, 'hold tool="forever"')
                held = Path(f"{release}.held")
                await until(held.exists, what="the tool's thread running")
                task, _ = await cancel(peer, task_id)
                states = [canonical_state(task["status"]["state"])]
                deadline = time.monotonic() + 40
                while states[-1] not in ("failed", "canceled", "completed"):
                    assert time.monotonic() < deadline, states
                    states.append(await peer.state(task_id))
                assert "canceled" not in states and states[-1] == "failed", states
                task = await peer.get(task_id)
                assert task["metadata"]["andon.reason"] == "cancel_timeout"
                survivors = " ".join(task["metadata"]["andon.survivors"])
                assert "hold" in survivors and "stubborn_tools.py:" in survivors, survivors
    finally:
        release.touch()


def test_import_andon_pulls_in_no_framework() -> None:
    frameworks = {"pydantic_ai", "agents", "openai", "langgraph", "langchain_core"}
    code = "import json, sys, andon; print(json.dumps([m.split('.')[0] for m in sys.modules]))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert frameworks.isdisjoint(json.loads(loaded)), loaded
