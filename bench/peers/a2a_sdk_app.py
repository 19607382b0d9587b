"""What the three a2a-sdk peers share (a2a_sdk_server.py, a2a_sdk_llm_server.py,
a2a_sdk_agents_server.py), built the way the SDK's documentation and samples build a
server: an AgentExecutor, the DefaultRequestHandler with an InMemoryTaskStore, the agent
card route and the JSON-RPC route (`/`, A2A 1.0 and, through the SDK's v0.3
compatibility, 0.3) on a Starlette app, served by uvicorn on 127.0.0.1 at `--port`.

Each script imports it from its own directory, so it runs in whichever peer venv runs
the script: it needs only a2a-sdk[http-server] and uvicorn.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from a2a.helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette

HOST = "127.0.0.1"
# The skill of the two peers that hand the task's text to a model.
CHAT_SKILL = AgentSkill(id="chat", name="Chat", description="Answer", tags=["llm"])


class Executor(AgentExecutor):
    """An executor whose cancel publishes the `canceled` status (`TaskUpdater.cancel`),
    as the SDK's AgentExecutor.cancel docstring asks, and nothing more: the SDK itself
    then cancels the asyncio task running `execute`."""

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


async def task_updater(context: RequestContext, event_queue: EventQueue) -> TaskUpdater:
    """The updater of the request's task; a new task is published first."""
    assert context.message is not None
    task = context.current_task
    if task is None:
        task = new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
    return TaskUpdater(event_queue, task.id, task.context_id)


class TextArtifact:
    """Text streamed into one artifact (its id is its name): the first chunk creates
    it, later ones are appended."""

    def __init__(self, updater: TaskUpdater, name: str) -> None:
        self._updater = updater
        self._name = name
        self._first = True

    async def add(self, text: str) -> None:
        await self._updater.add_artifact(
            [new_text_part(text)], artifact_id=self._name, name=self._name, append=not self._first
        )
        self._first = False


def serve(
    doc: str,
    executor: AgentExecutor,
    *,
    name: str,
    description: str,
    skill: AgentSkill,
    log_level: str | None = None,
) -> None:
    """Parse `--port` (default: PORT, else 8001; `doc` is the script's docstring, for
    --help) and serve `executor` there until stopped. `log_level` None keeps uvicorn's
    default (INFO with the access log)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8001")))
    port: int = parser.parse_args().port
    card = AgentCard(
        name=name,
        description=description,
        version="1.0.0",
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        capabilities=AgentCapabilities(streaming=True),
        supported_interfaces=[
            AgentInterface(
                protocol_binding="JSONRPC", protocol_version="1.0", url=f"http://{HOST}:{port}/"
            ),
        ],
        skills=[skill],
    )
    handler = DefaultRequestHandler(
        agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card
    )
    routes = create_agent_card_routes(card)
    routes += create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True)
    uvicorn.run(Starlette(routes=routes), host=HOST, port=port, log_level=log_level)
