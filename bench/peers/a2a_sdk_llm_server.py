"""examples/openai_agent.py's model call, served by the official A2A SDK (a2a-sdk 1.3),
for bench/llm.py: how many tokens does the model server generate after the cancel?

    bench/.venvs/a2a-sdk/bin/python bench/peers/a2a_sdk_llm_server.py --port 8001

The executor streams one chat completion with the `openai` client and appends each
delta to the task's `response` artifact, the way the SDK's samples publish through a
TaskUpdater. The client is the SDK's usual module-level `AsyncOpenAI()` (a2a-sdk gives
an executor no HTTP client of the task's), reading OPENAI_BASE_URL, OPENAI_API_KEY and
ANDON_LLM_MODEL like the andon example. On cancel the executor publishes `canceled`
(`TaskUpdater.cancel`, as AgentExecutor.cancel's docstring asks) and the SDK cancels the
asyncio task running `execute`; the stream's `async with` closes its response on the
way out.
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
from openai import AsyncOpenAI
from starlette.applications import Starlette

HOST = "127.0.0.1"
client = AsyncOpenAI()


class LLMExecutor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        stream = await client.chat.completions.create(
            model=os.environ["ANDON_LLM_MODEL"],
            messages=[{"role": "user", "content": context.get_user_input()}],
            stream=True,
        )
        first = True
        async with stream:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        await updater.add_artifact(
                            [new_text_part(choice.delta.content)],
                            artifact_id="response",
                            name="response",
                            append=not first,
                        )
                        first = False
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def build_app(port: int) -> Starlette:
    card = AgentCard(
        name="a2a-sdk llm",
        description="One streamed chat completion per task, with the openai client.",
        version="1.0.0",
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        capabilities=AgentCapabilities(streaming=True),
        supported_interfaces=[
            AgentInterface(
                protocol_binding="JSONRPC", protocol_version="1.0", url=f"http://{HOST}:{port}/"
            ),
        ],
        skills=[AgentSkill(id="chat", name="Chat", description="Answer", tags=["llm"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=LLMExecutor(), task_store=InMemoryTaskStore(), agent_card=card
    )
    routes = create_agent_card_routes(card)
    routes += create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True)
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8001")))
    args = parser.parse_args()
    uvicorn.run(build_app(args.port), host=HOST, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
