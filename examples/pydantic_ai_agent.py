"""A pydantic-ai agent served by andon (`pip install 'andon[pydantic-ai]'`): a chat model
that may run shell commands.

    OPENAI_BASE_URL=http://127.0.0.1:8900/v1 OPENAI_API_KEY=sk-... ANDON_LLM_MODEL=fake \\
        andon serve examples/pydantic_ai_agent.py:agent

The agent is written as pydantic-ai's documentation writes one: a model, instructions,
and a plain function as its tool. `pydantic_agent` serves it: the answer streams into the
task's `response` artifact, each tool call is a progress event, the model's requests go
over the task's own HTTP client (a cancel closes the connection and the model server
stops generating), and a cancelled run keeps its messages so `andon retry` continues
it. The tool's command runs as a process of the task (`andon.current_task().run`): a
cancel kills it and everything it started. `python -m andon.testing.fake_llm` is a model
server to try it with.
"""

from __future__ import annotations

import os

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import andon
from andon.integrations.pydantic_ai import pydantic_agent

OUTPUT_LIMIT = 20_000
"""Characters of a command's output given back to the model (its tail)."""


async def run(command: str) -> str:
    """Run a shell command on the agent's machine and return its exit status and output.

    Args:
        command: the command, for `sh -c`
    """
    done = await andon.current_task().run(command)  # its process group belongs to the task
    return f"exit status {done.returncode}\n{done.output[-OUTPUT_LIMIT:]}"


model = OpenAIChatModel(  # an OpenAI-compatible chat-completions server
    os.environ.get("ANDON_LLM_MODEL", "gpt-4o-mini"),
    provider=OpenAIProvider(
        base_url=os.environ.get("OPENAI_BASE_URL"), api_key=os.environ.get("OPENAI_API_KEY")
    ),
)
assistant = Agent(
    model,
    instructions="Answer the user; run shell commands when that helps.",
    tools=[run],
    name="pydantic-ai agent",
)

agent = pydantic_agent(
    assistant, description="Answers with a language model that can run shell commands"
)
