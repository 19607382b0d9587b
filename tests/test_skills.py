"""How a task chooses the skill that serves it: `andon.skill` in the message's metadata
or in the request's (the request's wins), the same as `andon.timeout`; a skill the agent
lacks is InvalidParams naming its skills, and nothing is stored. In the service, through
the Python client and through `andon send --skill` against a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from andon import RuntimeSettings, TaskService, open_service
from andon.client import InvalidParams as ClientInvalidParams
from andon.node.serve import load_agent
from andon.protocol.errors import InvalidParams
from andon.protocol.types import TaskState
from tests.conftest import FAST_RUNTIME
from tests.helpers import USER, user_text
from tests.test_cli import run
from tests.test_client import AndonServer

SKILLED = Path(__file__).resolve().parent / "agents" / "skilled.py"


@pytest.fixture
async def skilled(tmp_path: Path, store_url: str) -> AsyncIterator[TaskService]:
    runtime = RuntimeSettings(workdir=tmp_path, **FAST_RUNTIME)
    async with open_service(load_agent(str(SKILLED)), store_url, runtime=runtime) as service:
        yield service


async def said(service: TaskService, task_id: str) -> str:
    await service.wait(task_id, 0, 10)
    task = await service.get(task_id, USER)
    assert task.status.state is TaskState.COMPLETED, task.status
    (artifact,) = task.artifacts or []
    return "".join(p.text or "" for p in artifact.parts)


async def test_the_skill_comes_from_the_message_or_the_request_metadata(
    skilled: TaskService,
) -> None:
    first = await skilled.submit(user_text("Ada"), USER)
    assert await said(skilled, first.id) == "greet: hello Ada"
    in_message = await skilled.submit(user_text("hi", metadata={"andon.skill": "shout"}), USER)
    assert await said(skilled, in_message.id) == "shout: HI"
    in_request = await skilled.submit(user_text("hi"), USER, metadata={"andon.skill": "shout"})
    assert await said(skilled, in_request.id) == "shout: HI"
    both = await skilled.submit(
        user_text("Bo", metadata={"andon.skill": "shout"}), USER, metadata={"andon.skill": "greet"}
    )
    assert await said(skilled, both.id) == "greet: hello Bo"
    task = await skilled.get(in_request.id, USER)
    assert (task.metadata or {})["andon.skill"] == "shout"


async def test_a_timeout_in_either_metadata_cancels_the_task(skilled: TaskService) -> None:
    for message_metadata, request_metadata in (
        ({"andon.skill": "wait", "andon.timeout": 0.2}, None),
        (None, {"andon.skill": "wait", "andon.timeout": 0.2}),
    ):
        record = await skilled.submit(
            user_text("x", metadata=message_metadata), USER, metadata=request_metadata
        )
        await skilled.wait(record.id, 0, 10)
        task = await skilled.get(record.id, USER)
        assert task.status.state is TaskState.CANCELED
        assert (task.metadata or {})["andon.reason"] == "timeout"


@pytest.mark.parametrize("wanted", ["nope", "", 7, ["shout"]])
async def test_an_unknown_skill_is_invalid_params_naming_the_skills(
    skilled: TaskService, wanted: object
) -> None:
    for message_metadata, request_metadata in (
        ({"andon.skill": wanted}, None),
        (None, {"andon.skill": wanted}),
    ):
        with pytest.raises(InvalidParams) as refused:
            await skilled.submit(
                user_text("x", metadata=message_metadata), USER, metadata=request_metadata
            )
        if isinstance(wanted, str):
            assert f"unknown skill {wanted!r}" in refused.value.message
            assert "greet, shout, wait, crash" in refused.value.message
        else:
            assert refused.value.message == "andon.skill must be a string"
    assert (await skilled.list(USER)).tasks == []


# -- against a real server -------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    with AndonServer(tmp_path_factory.mktemp("skills"), str(SKILLED)) as served:
        yield served


def test_the_python_client_chooses_the_skill_in_the_request_metadata(
    server: AndonServer,
) -> None:
    task = server.client.send("hi", metadata={"andon.skill": "shout"})
    assert task.status.state is TaskState.COMPLETED
    assert [p.text for a in task.artifacts or [] for p in a.parts] == ["shout: HI"]
    with pytest.raises(ClientInvalidParams, match="greet, shout, wait, crash"):
        server.client.send("hi", metadata={"andon.skill": "nope"})


def test_andon_send_skill(server: AndonServer) -> None:
    chosen = run("send", "--url", server.url, "--skill", "shout", "hi there")
    assert (chosen.returncode, chosen.stdout) == (0, "shout: HI THERE")
    default = run("send", "--url", server.url, "Ada")
    assert (default.returncode, default.stdout) == (0, "greet: hello Ada")
    unknown = run("send", "--url", server.url, "--skill", "nope", "hi")
    assert unknown.returncode == 2
    assert (
        "unknown skill 'nope'" in unknown.stderr and "greet, shout, wait, crash" in unknown.stderr
    )
    assert unknown.stderr.count("\n") == 1
