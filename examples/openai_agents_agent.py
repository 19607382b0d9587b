"""An OpenAI Agents SDK agent served by andon (`pip install 'andon[openai-agents]'`): a chat
model that may run shell commands.

    OPENAI_BASE_URL=http://127.0.0.1:8900/v1 OPENAI_API_KEY=sk-... ANDON_LLM_MODEL=fake \\
        andon serve examples/openai_agents_agent.py:agent

The agent is written as the SDK's documentation writes one for a model server other than
OpenAI's: an `OpenAIChatCompletionsModel` on an `AsyncOpenAI` client (OPENAI_BASE_URL,
OPENAI_API_KEY), tracing off (its exporter would send traces to OpenAI), and a plain
function as its tool. `openai_agent` serves it through `Runner.run_streamed`: the answer
streams into the task's `response` artifact, each tool call is a progress event, the
model's requests go over the task's own HTTP client, and a cancel stops the SDK's
background run loop, not only the stream that reads it. The tool's command runs as a
process of the task (`andon.current_task().run`): a cancel kills it and everything it
started. `python -m andon.testing.fake_llm` is a model server to try it with.
"""

from __future__ import annotations

import os

from agents import Agent, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

import andon
from andon.integrations.openai_agents import openai_agent

OUTPUT_LIMIT = 20_000
"""Characters of a command's output given back to the model (its tail)."""

set_tracing_disabled(True)


@function_tool
async def run(command: str) -> str:
    """Run a shell command on the agent's machine and return its exit status and output.

    Args:
        command: the command, for `sh -c`
    """
    done = await andon.current_task().run(command)  # its process group belongs to the task
    return f"exit status {done.returncode}\n{done.output[-OUTPUT_LIMIT:]}"


assistant = Agent(
    name="openai-agents agent",
    instructions="Answer the user; run shell commands when that helps.",
    model=OpenAIChatCompletionsModel(
        model=os.environ.get("ANDON_LLM_MODEL", "gpt-4o-mini"), openai_client=AsyncOpenAI()
    ),
    tools=[run],
)

agent = openai_agent(
    assistant, description="Answers with a language model that can run shell commands"
)
