"""LLM agents served by `andon serve`, talked to over A2A 1.0, calling a fake model
server that logs every token it generates (andon.testing.fake_llm): a cancel stops the
generation before the cancel is answered, keeps the partial answer and the usage; the
tool's process dies with the task; model-server errors end the task `failed`, clearly.

Three servings of one conversation: examples/llm_agent.py over each dialect of andon.llm
(OpenAI chat-completions, Anthropic messages), and examples/openai_agent.py, the same
agent on the official `openai` client over `ctx.http`; and a synchronous handler on the
client's blocking `OpenAI` over the blocking `ctx.http` (tests/sync_openai_agent.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from andon.testing.fake_llm import FakeModelServer
from tests.helpers import process_group_alive
from tests.live_server import Peer, canonical_state, until
from tests.model_serving import (
    V1,
    artifact,
    cancel,
    model_env,
    peer_of,
    start,
    text_of,
    tool_process,
    words,
)
from tests.test_client import AndonServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STARTUP = 60.0
"""Seconds for `andon serve` to answer: importing `openai` takes most of 20 s when the
machine's two cores are busy with other suites."""
SERVINGS = {
    "llm-openai": ("llm_agent.py", {}),
    "llm-anthropic": ("llm_agent.py", {"ANDON_LLM_DIALECT": "anthropic"}),
    "openai-client": ("openai_agent.py", {}),
}


@pytest.fixture(scope="module", params=list(SERVINGS))
def served(
    request: pytest.FixtureRequest,
    fake: FakeModelServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AndonServer]:
    example, env = SERVINGS[request.param]
    workdir = tmp_path_factory.mktemp(request.param)
    with AndonServer(
        workdir,
        f"{EXAMPLES / example}:agent",
        env=model_env(fake, ANTHROPIC_BASE_URL=fake.url, **env),
        ready_within=STARTUP,
    ) as server:
        yield server


async def test_a_completed_conversation_streams_the_answer_and_records_usage(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    sent, call = await start(peer, fake, 'list files tool="echo hello" tokens=7')
    task = await peer.wait_state(sent["id"], "completed", "failed")
    assert canonical_state(task["status"]["state"]) == "completed", task["status"]
    assert text_of(artifact(task, "response")) == words(0, 7)
    assert text_of(artifact(task, "output")) == "hello\n"
    answer = fake.generations[fake.generations.index(call) + 1]
    await until(lambda: answer.ended is not None, what="the model call ended")
    assert call.ended == answer.ended == "complete"
    if "openai_agent" not in " ".join(served.args):
        usage = task["metadata"]["andon.usage"]
        assert usage["calls"] == 2
        assert usage["completionTokens"] == len(call.tokens) + len(answer.tokens)
        assert usage["promptTokens"] > 0 and usage["estimated"] is False


async def test_cancel_mid_stream_stops_generation_before_the_answer(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    sent, call = await start(peer, fake, "write on tokens=100000 rate=200")
    await until(lambda: len(call.tokens) >= 20, what="20 tokens generated")
    task, answered = await cancel(peer, sent["id"])
    assert canonical_state(task["status"]["state"]) == "canceled"
    # The server notices a disconnect on its own time: once it has, its log is complete.
    await until(lambda: call.ended is not None, what="the model call ended")
    assert call.ended == "disconnected"
    assert call.tokens_after(answered) == 0, "tokens generated after the cancel was answered"

    task = await peer.get(sent["id"])
    answer = artifact(task, "response")
    received = text_of(answer)
    assert received and words(0, len(received.split())) == received
    assert len(received.split()) <= len(call.tokens)
    if "openai_agent" not in " ".join(served.args):
        assert answer["metadata"]["andon.partial"] is True
        assert answer["metadata"]["andon.tokens"] == len(received.split())
        usage = task["metadata"]["andon.usage"]
        assert usage["completionTokens"] == len(received.split())
        assert usage["calls"] == 1


async def test_cancel_during_prefill_disconnects_before_any_token(
    peer: Peer, fake: FakeModelServer
) -> None:
    sent, call = await start(peer, fake, "think hard prefill=60 tokens=5")
    task, _ = await cancel(peer, sent["id"])
    assert canonical_state(task["status"]["state"]) == "canceled"
    await until(lambda: call.ended is not None, what="the server saw the disconnect")
    assert call.ended == "disconnected"
    assert call.tokens == [] and call.first_byte_ns is None


async def test_cancel_while_the_tool_runs_leaves_no_process(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    sent, _ = await start(peer, fake, 'wait tool="sleep 300"')
    sleeper = await tool_process(served, "sleep 300")
    task, _ = await cancel(peer, sent["id"])
    assert canonical_state(task["status"]["state"]) == "canceled"
    assert not process_group_alive(sleeper)


@pytest.mark.parametrize(
    ("words_", "expected"),
    [
        ("status=503", "answered HTTP 503"),
        ("tokens=50 cut=4", "cut the stream"),
        ("tokens=50 badjson=3", "not JSON"),
    ],
)
async def test_model_server_errors_fail_the_task_clearly(
    peer: Peer, fake: FakeModelServer, served: AndonServer, words_: str, expected: str
) -> None:
    sent, _ = await start(peer, fake, f"break {words_}")
    task = await peer.wait_state(sent["id"], "completed", "failed", "canceled")
    assert canonical_state(task["status"]["state"]) == "failed"
    message = "".join(p.get("text", "") for p in task["status"]["message"]["parts"])
    assert f"model server {fake.url}" in message, message
    if "openai_agent" not in " ".join(served.args):
        assert expected in message, message
    assert "Traceback" not in served.logged()


async def test_graceful_cancel_lets_the_completion_finish(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    sent, call = await start(peer, fake, "finish this tokens=60 rate=200")
    await until(lambda: len(call.tokens) >= 5, what="5 tokens generated")
    task, _ = await cancel(peer, sent["id"], **{"andon.mode": "graceful"})
    assert canonical_state(task["status"]["state"]) == "canceled"
    await until(lambda: call.ended is not None, what="the model call ended")
    assert call.ended == "complete" and len(call.tokens) == 60
    assert text_of(artifact(await peer.get(sent["id"]), "response")) == words(0, 60)


async def test_a_retry_continues_the_cut_answer(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    if "openai_agent" in " ".join(served.args):
        pytest.skip("the openai-client example does not continue answers (README recipe)")
    sent, call = await start(peer, fake, "write tokens=40 rate=100")
    await until(lambda: len(call.tokens) >= 8, what="8 tokens generated")
    await cancel(peer, sent["id"])
    cut = text_of(artifact(await peer.get(sent["id"]), "response"))
    before = len(fake.generations)
    body = {"jsonrpc": "2.0", "id": 1, "method": "andon/retry", "params": {"id": sent["id"]}}
    reply = (await peer.http.post("/", json=body, headers=V1.headers)).json()
    retry = await peer.wait_state(reply["result"]["id"], "completed", "failed")
    assert canonical_state(retry["status"]["state"]) == "completed", retry["status"]
    done = len(cut.split())
    assert text_of(artifact(retry, "response")) == words(0, done + 40)
    assert fake.generations[before].tokens and len(fake.generations[before].tokens) == 40


async def test_a_blocking_openai_client_on_ctx_http_stops_too(
    fake: FakeModelServer, tmp_path: Path
) -> None:
    agent = Path(__file__).with_name("sync_openai_agent.py")
    env = model_env(fake)
    with AndonServer(tmp_path, f"{agent}:agent", env=env, ready_within=STARTUP) as served:
        async with peer_of(served) as peer:
            sent, call = await start(peer, fake, "write on tokens=100000")
            await until(lambda: len(call.tokens) >= 20, what="20 tokens generated")
            task, answered = await cancel(peer, sent["id"])
            assert canonical_state(task["status"]["state"]) == "canceled"
            await until(lambda: call.ended is not None, what="the model call ended")
            assert call.ended == "disconnected"
            assert call.tokens_after(answered) == 0, "tokens generated after the cancel answer"
            received = text_of(artifact(await peer.get(sent["id"]), "response"))
            assert received and words(0, len(received.split())) == received
