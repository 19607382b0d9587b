"""examples/llm_agent.py written with the official `openai` client (`pip install
'andon[openai]'`): the same loop, the same tool, served the same way.

    OPENAI_BASE_URL=http://127.0.0.1:8900/v1 OPENAI_API_KEY=sk-... ANDON_LLM_MODEL=fake \\
        andon serve examples/openai_agent.py:agent

The one line that matters is `AsyncOpenAI(http_client=ctx.http)`: the client's requests
then go over the task's own HTTP client, which andon closes when the task is cancelled,
before the task says `canceled`, so the model server sees the disconnect and stops
generating. (openai's stream also closes its own response when cancelled; the task's
client makes sure of it for whatever else the call left open.)
Errors of the model server become a clear `failed` through `andon.TaskFailed`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import openai
from openai import AsyncOpenAI

import andon

agent = andon.Agent(
    name="openai agent", description="Answers with a language model that can run commands"
)

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "run",
            "description": "Run a shell command on the agent's machine and return its output.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
        },
    }
]


@agent.skill("chat", description="Answer, running shell commands when that helps")
async def chat(ctx: andon.TaskContext) -> None:
    client = AsyncOpenAI(http_client=ctx.http)  # OPENAI_BASE_URL, OPENAI_API_KEY
    messages: list[Any] = [{"role": "user", "content": ctx.text}]
    while True:
        try:
            text, calls = await complete(ctx, client, messages)
        except (openai.APIError, json.JSONDecodeError) as exc:  # a line that is not JSON
            raise andon.TaskFailed(f"model server {client.base_url}: {exc}") from None
        messages.append(
            {
                "role": "assistant",
                "content": text or None,
                **({"tool_calls": calls} if calls else {}),
            }
        )
        if not calls:
            return
        for call in calls:
            command = json.loads(call["function"]["arguments"]).get("command", "")
            done = await ctx.run(command)
            output = f"exit status {done.returncode}\n{done.output[-20_000:]}"
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": output})


async def complete(
    ctx: andon.TaskContext, client: AsyncOpenAI, messages: list[Any]
) -> tuple[str, list[dict[str, Any]]]:
    """One streamed completion: its text (streamed into the `response` artifact as it
    comes) and its tool calls, assembled."""
    stream = await client.chat.completions.create(
        model=os.environ["ANDON_LLM_MODEL"], messages=messages, tools=TOOLS, stream=True
    )
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    async with stream:
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    text.append(choice.delta.content)
                    await ctx.emit(choice.delta.content)
                for piece in choice.delta.tool_calls or []:
                    call = calls.setdefault(
                        piece.index,
                        {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                    )
                    call["id"] = piece.id or call["id"]
                    if piece.function is not None:
                        call["function"]["name"] = piece.function.name or call["function"]["name"]
                        call["function"]["arguments"] += piece.function.arguments or ""
    return "".join(text), [calls[i] for i in sorted(calls)]
