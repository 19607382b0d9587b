"""Framework agents whose only tool is synchronous and never calls `andon.check()`:
what a cancel does to a thread it cannot interrupt. The tool holds its thread until the
file named by ANDON_TEST_RELEASE exists (60 s at most, so a test never leaves it behind
for long).

    andon serve tests/agents/stubborn_tools.py:pydantic_ai_agent    # pydantic-ai
    andon serve tests/agents/stubborn_tools.py:openai_agents_agent  # OpenAI Agents SDK
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from agents import Agent as SdkAgent
from agents import OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from andon.integrations.openai_agents import openai_agent
from andon.integrations.pydantic_ai import pydantic_agent

MODEL = os.environ.get("ANDON_LLM_MODEL", "fake")


def hold(command: str) -> str:
    """Hold the line, whatever happens, until released (says so in a file beside).

    Args:
        command: ignored
    """
    release = Path(os.environ["ANDON_TEST_RELEASE"])
    Path(f"{release}.held").touch()
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.005)  # the line a cancel_timeout names
    return "released"


pydantic_ai_agent = pydantic_agent(
    PydanticAgent(OpenAIChatModel(MODEL, provider=OpenAIProvider()), tools=[hold])
)

set_tracing_disabled(True)
openai_agents_agent = openai_agent(
    SdkAgent(
        name="stubborn",
        model=OpenAIChatCompletionsModel(model=MODEL, openai_client=AsyncOpenAI()),
        tools=[function_tool(hold)],
    )
)
