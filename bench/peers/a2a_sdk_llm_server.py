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

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from a2a.server.agent_execution import RequestContext
from a2a.server.events import EventQueue
from a2a_sdk_app import CHAT_SKILL, Executor, TextArtifact, serve, task_updater
from openai import AsyncOpenAI

client = AsyncOpenAI()


class LLMExecutor(Executor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = await task_updater(context, event_queue)
        await updater.start_work()
        stream = await client.chat.completions.create(
            model=os.environ["ANDON_LLM_MODEL"],
            messages=[{"role": "user", "content": context.get_user_input()}],
            stream=True,
        )
        response = TextArtifact(updater, "response")
        async with stream:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        await response.add(choice.delta.content)
        await updater.complete()


def main() -> None:
    serve(
        __doc__,
        LLMExecutor(),
        name="a2a-sdk llm",
        description="One streamed chat completion per task, with the openai client.",
        skill=CHAT_SKILL,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
