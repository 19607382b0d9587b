"""LangGraph graphs served by `andon serve` (andon.integrations.langgraph), talked to over
A2A 1.0: examples/langgraph_agent.py against the fake model server that logs every token
it generates, and a test graph whose sync nodes cooperate or not.

A cancel stops the model's generation before it is answered and kills the tool's
process; `interrupt()` is a question the answer resumes, and a cancel while it waits
never resumes the graph; the context is the graph's thread (a follow-up continues it, a
retry resumes from the last checkpoint); a sync node is waited for, and one that ignores
checks ends the task failed / cancel_timeout naming it, never canceled while it runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "langgraph_agent.py"


@pytest.fixture(scope="module")
def served(
    fake: FakeModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AndonServer]:
    workdir = tmp_path_factory.mktemp("langgraph")
    with AndonServer(workdir, f"{EXAMPLE}:agent", env=model_env(fake), ready_within=90) as server:
        yield server


async def answer(peer: Peer, task: dict[str, Any], text: str) -> None:
    await peer.send(text, blocking=False, taskId=task["id"], contextId=task["contextId"])


async def test_the_answer_streams_into_the_response(peer: Peer, fake: FakeModelServer) -> None:
    task, call = await start(peer, fake, "hello tokens=7")
    done = await peer.wait_state(task["id"], "completed", "failed")
    assert canonical_state(done["status"]["state"]) == "completed", done["status"]
    assert text_of(artifact(done, "response")) == words(0, 7)
    assert call.ended == "complete"


async def test_cancel_mid_stream_stops_generation_before_the_answer(
    peer: Peer, fake: FakeModelServer
) -> None:
    task, call = await start(peer, fake, "write on tokens=100000 rate=200")
    await until(lambda: len(call.tokens) >= 20, what="20 tokens generated")
    canceled, answered = await cancel(peer, task["id"])
    assert canonical_state(canceled["status"]["state"]) == "canceled"
    # The server notices a disconnect on its own time: once it has, its log is complete.
    await until(lambda: call.ended is not None, what="the model call ended")
    assert call.ended == "disconnected"
    assert call.tokens_after(answered) == 0, "tokens generated after the cancel was answered"
    await unchanged(lambda: len(call.tokens), 0.3)

    response = artifact(await peer.get(task["id"]), "response")
    received = text_of(response)
    assert received and words(0, len(received.split())) == received
    assert response["metadata"]["andon.partial"] is True


async def test_interrupt_asks_and_the_answer_resumes_the_graph(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    task, _ = await start(peer, fake, 'note it tool="echo approved >> approved.txt" tokens=4')
    waiting = await peer.wait_state(task["id"], "input-required", "failed")
    assert canonical_state(waiting["status"]["state"]) == "input-required", waiting["status"]
    assert status_text(waiting) == "Run `echo approved >> approved.txt`? (yes/no)"

    await answer(peer, task, "yes")
    done = await peer.wait_state(task["id"], "completed", "failed")
    assert canonical_state(done["status"]["state"]) == "completed", done["status"]
    assert (served.workdir / "approved.txt").read_text() == "approved\n"
    assert text_of(artifact(done, "response")) == words(0, 4)


async def test_cancel_while_the_interrupt_waits_never_resumes_the_graph(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    task, _ = await start(peer, fake, 'then tool="echo ran >> never.txt"')
    await peer.wait_state(task["id"], "input-required")
    calls = len(fake.generations)
    canceled, _ = await cancel(peer, task["id"])
    assert canonical_state(canceled["status"]["state"]) == "canceled"

    reply = await peer.call(
        "send", V1.send_params("yes", taskId=task["id"], contextId=task["contextId"])
    )
    assert reply.error is not None, "an answer to a canceled task must be refused"
    await unchanged(lambda: len(fake.generations), 0.5)
    assert len(fake.generations) == calls
    assert not (served.workdir / "never.txt").exists()


async def test_cancel_during_the_tool_leaves_no_process(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    task, _ = await start(peer, fake, 'wait tool="sleep 300"')
    await peer.wait_state(task["id"], "input-required")
    await answer(peer, task, "yes")
    sleeper = await tool_process(served, "sleep 300")
    canceled, _ = await cancel(peer, task["id"])
    assert canonical_state(canceled["status"]["state"]) == "canceled"
    assert not process_group_alive(sleeper)


async def test_a_follow_up_message_continues_the_thread(peer: Peer, fake: FakeModelServer) -> None:
    first, call = await start(peer, fake, "first tokens=3")
    await peer.wait_state(first["id"], "completed")
    assert call.messages == 1

    second, call = await start(peer, fake, "second tokens=3", contextId=first["contextId"])
    done = await peer.wait_state(second["id"], "completed")
    assert call.messages == 3, "the model saw the thread: question, answer, question"
    assert text_of(artifact(done, "response")) == words(0, 3)


async def test_a_retry_resumes_from_the_last_checkpoint(
    peer: Peer, fake: FakeModelServer, served: AndonServer
) -> None:
    task, _ = await start(peer, fake, 'count tool="echo ran >> runs.txt" tokens=300 rate=150')
    await peer.wait_state(task["id"], "input-required")
    before = len(fake.generations)
    await answer(peer, task, "yes")
    await until(lambda: len(fake.generations) > before, what="the answer after the tool")
    cut = fake.generations[before]
    await until(lambda: len(cut.tokens) >= 10, what="10 tokens of the answer")
    await cancel(peer, task["id"])
    assert (served.workdir / "runs.txt").read_text() == "ran\n"

    calls = len(fake.generations)
    body = {"jsonrpc": "2.0", "id": 1, "method": "andon/retry", "params": {"id": task["id"]}}
    reply = (await peer.http.post("/", json=body, headers=V1.headers)).json()
    retry = await peer.wait_state(reply["result"]["id"], "completed", "failed", "input-required")
    assert canonical_state(retry["status"]["state"]) == "completed", retry["status"]
    # From the checkpoint after the tool: neither the first model call, nor the question,
    # nor the command again; only the answer that was cut.
    assert len(fake.generations) == calls + 1
    assert fake.generations[calls].messages == 3
    assert (served.workdir / "runs.txt").read_text() == "ran\n"
    assert text_of(artifact(retry, "response")) == words(0, 300)


def test_import_andon_leaves_the_framework_out() -> None:
    code = "import sys, andon; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "langgraph" not in loaded and "langchain_core" not in loaded, loaded


# -- sync nodes -------------------------------------------------------------------------

GRAPHS = Path(__file__).resolve().parent / "agents" / "langgraph_graphs.py"
STUBBORN_LINE = next(
    n for n, line in enumerate(GRAPHS.read_text().splitlines(), 1) if "cancel_timeout" in line
)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    workdir = tmp_path_factory.mktemp("langgraph-sync")
    with AndonServer(workdir, f"{GRAPHS}:agent", ready_within=90) as server:
        yield server


@pytest.fixture
async def graph_peer(graphs: AndonServer) -> AsyncIterator[Peer]:
    async with peer_of(graphs, timeout=60) as peer:
        yield peer


def steps(server: AndonServer, node: str) -> list[int]:
    """The monotonic ns of each step the node traced."""
    if not server.trace_path.exists():
        return []
    lines = server.trace_path.read_text().splitlines()
    return [int(line.split()[2]) for line in lines if line.startswith(f"{node} ")]


async def test_a_sync_node_that_checks_is_waited_for_then_canceled(
    graph_peer: Peer, graphs: AndonServer
) -> None:
    task = await graph_peer.send("steady", blocking=False)
    await until(lambda: len(steps(graphs, "steady")) >= 5, what="the sync node running")
    canceled, answered = await cancel(graph_peer, task["id"])
    assert canonical_state(canceled["status"]["state"]) == "canceled"
    assert max(steps(graphs, "steady")) < answered, "a step after the cancel was answered"
    await unchanged(lambda: len(steps(graphs, "steady")), 0.3)


async def test_a_sync_node_that_ignores_checks_ends_cancel_timeout_naming_it(
    graph_peer: Peer, graphs: AndonServer
) -> None:
    task = await graph_peer.send("stubborn", blocking=False)
    await until(lambda: len(steps(graphs, "stubborn")) >= 5, what="the sync node running")
    try:
        asked = time.monotonic_ns()
        await graph_peer.call("cancel", {"id": task["id"]})
        ended = await graph_peer.wait_state(task["id"], "failed", "canceled", timeout=30)
        assert canonical_state(ended["status"]["state"]) == "failed", ended["status"]
        assert ended["metadata"]["andon.reason"] == "cancel_timeout"
        assert max(steps(graphs, "stubborn")) > asked, "the node ran on while the task waited"
        (survivor,) = ended["metadata"]["andon.survivors"]
        assert "langgraph node 'stubborn'" in survivor, survivor
        assert f"{GRAPHS}:{STUBBORN_LINE}" in survivor, survivor
    finally:
        (graphs.workdir / "release").touch()
    await until(
        lambda: max(steps(graphs, "stubborn")) < time.monotonic_ns() - 200e6,
        what="the node returned once released",
    )
