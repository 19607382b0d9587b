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
from collections.abc import Iterator
from pathlib import Path

import pytest

from andon.testing.fake_llm import FakeModelServer
from tests.helpers import process_group_alive
from tests.live_server import Peer, canonical_state, unchanged, until
from tests.model_serving import (
    V1,
    artifact,
    cancel,
    model_env,
    peer_of,
    start,
    status_text,
    text_of,
    tool_process,
    words,
)
from tests.test_client import AndonServer

ROOT = Path(__file__).resolve().parent.parent
STARTUP = 90
"""Seconds for `andon serve` to import a framework (seconds of CPU for pydantic-ai alone,
more on a busy machine)."""
SERVED = {
    "pydantic-ai": ("examples/pydantic_ai_agent.py:agent", "pydantic_ai_agent"),
    "openai-agents": ("examples/openai_agents_agent.py:agent", "openai_agents_agent"),
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
        workdir, str(ROOT / example), env=model_env(fake), ready_within=STARTUP
    ) as server:
        yield server


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
    sent, call = await start(peer, fake, "write on tokens=100000 rate=200")
    await until(lambda: len(call.tokens) >= 20, what="20 tokens generated")
    task, answered = await cancel(peer, sent["id"])
    assert canonical_state(task["status"]["state"]) == "canceled"
    # The server notices a disconnect on its own time: once it has, its log is complete.
    await until(lambda: call.ended is not None, what="the model call ended")
    assert call.ended == "disconnected"
    assert call.tokens_after(answered) == 0, "tokens generated after the cancel was answered"
    await unchanged(lambda: len(call.tokens), 0.3)

    task = await peer.get(sent["id"])
    response = artifact(task, "response")
    received = text_of(response)
    assert received and words(0, len(received.split())) == received
    assert response["metadata"]["andon.partial"] is True


async def test_cancel_while_the_tool_sleeps_leaves_no_process(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    sent, _ = await start(peer, fake, 'wait tool="sleep 300"')
    sleeper = await tool_process(served, "sleep 300")
    task, _ = await cancel(peer, sent["id"])
    assert canonical_state(task["status"]["state"]) == "canceled"
    assert not process_group_alive(sleeper)


async def test_a_retry_continues_from_what_the_cancelled_run_kept(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    marker = served.workdir / f"ran-{time.monotonic_ns()}"
    sent, call = await start(peer, fake, f'note tool="echo ran >> {marker}" tokens=40 rate=100')
    await until(lambda: len(fake.generations) > fake.generations.index(call) + 1, what="answer")
    answer = fake.generations[fake.generations.index(call) + 1]
    await until(lambda: len(answer.tokens) >= 8, what="8 tokens of the answer")
    task, _ = await cancel(peer, sent["id"])
    assert canonical_state(task["status"]["state"]) == "canceled"
    assert marker.read_text() == "ran\n"

    before = len(fake.generations)
    body = {"jsonrpc": "2.0", "id": 1, "method": "andon/retry", "params": {"id": sent["id"]}}
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
    env = model_env(fake, ANDON_TEST_RELEASE=str(release))
    target = f"{ROOT / 'tests' / 'agents' / 'stubborn_tools.py'}:{SERVED[framework][1]}"
    try:
        with AndonServer(tmp_path, target, env=env, ready_within=STARTUP) as server:
            async with peer_of(server) as peer:
                sent, _ = await start(peer, fake, 'hold tool="forever"')
                held = Path(f"{release}.held")
                await until(held.exists, what="the tool's thread running")
                task, _ = await cancel(peer, sent["id"])
                states = [canonical_state(task["status"]["state"])]
                deadline = time.monotonic() + 40
                while states[-1] not in ("failed", "canceled", "completed"):
                    assert time.monotonic() < deadline, states
                    states.append(await peer.state(sent["id"]))
                assert "canceled" not in states and states[-1] == "failed", states
                task = await peer.get(sent["id"])
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
