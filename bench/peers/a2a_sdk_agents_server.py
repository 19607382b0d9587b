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

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from a2a.server.agent_execution import RequestContext
from a2a.server.events import EventQueue
from a2a_sdk_app import CHAT_SKILL, Executor, TextArtifact, serve, task_updater
from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent

set_tracing_disabled(True)
assistant = Agent(
    name="openai-agents agent",
    instructions="Answer the user.",
    model=OpenAIChatCompletionsModel(
        model=os.environ.get("ANDON_LLM_MODEL", "gpt-4o-mini"), openai_client=AsyncOpenAI()
    ),
)


class AgentsExecutor(Executor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = await task_updater(context, event_queue)
        await updater.start_work()
        result = Runner.run_streamed(assistant, context.get_user_input())
        response = TextArtifact(updater, "response")
        async for event in result.stream_events():
            if event.type == "raw_response_event" and isinstance(
                event.data, ResponseTextDeltaEvent
            ):
                await response.add(event.data.delta)
        await updater.complete()


def main() -> None:
    serve(
        __doc__,
        AgentsExecutor(),
        name="a2a-sdk openai-agents",
        description="An OpenAI Agents SDK agent, streamed with Runner.run_streamed.",
        skill=CHAT_SKILL,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
