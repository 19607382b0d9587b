"""examples/openai_agents_agent.py's agent served by the official A2A SDK (a2a-sdk 1.3),
for bench/llm.py: how many tokens does the model server generate after the cancel?

    bench/.venvs/a2a-sdk-agents/bin/python bench/peers/a2a_sdk_agents_server.py --port 8001

The executor runs the agent with `Runner.run_streamed` and appends each text delta to the
task's `response` artifact through a TaskUpdater, as the SDK's samples publish. The
agent is the example's: an `OpenAIChatCompletionsModel` on the usual module-level
`AsyncOpenAI()` (OPENAI_BASE_URL, OPENAI_API_KEY; ANDON_LLM_MODEL names the model),
tracing off. On cancel the executor publishes `canceled` (`TaskUpdater.cancel`, as
AgentExecutor.cancel's docstring asks) and the SDK cancels the asyncio task running
`execute` — the consumer of `stream_events()`, not the Agents SDK's own background loop.
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
from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent
from starlette.applications import Starlette

HOST = "127.0.0.1"
set_tracing_disabled(True)
assistant = Agent(
    name="openai-agents agent",
    instructions="Answer the user.",
    model=OpenAIChatCompletionsModel(
        model=os.environ.get("ANDON_LLM_MODEL", "gpt-4o-mini"), openai_client=AsyncOpenAI()
    ),
)


class AgentsExecutor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        result = Runner.run_streamed(assistant, context.get_user_input())
        first = True
        async for event in result.stream_events():
            if event.type == "raw_response_event" and isinstance(
                event.data, ResponseTextDeltaEvent
            ):
                await updater.add_artifact(
                    [new_text_part(event.data.delta)],
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
        name="a2a-sdk openai-agents",
        description="An OpenAI Agents SDK agent, streamed with Runner.run_streamed.",
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
        agent_executor=AgentsExecutor(), task_store=InMemoryTaskStore(), agent_card=card
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
