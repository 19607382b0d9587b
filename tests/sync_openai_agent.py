"""A synchronous (`def`) agent streaming one completion with the official client's
blocking `OpenAI`, over the blocking `ctx.http` of sync handlers (tests/test_llm.py)."""

from __future__ import annotations

import os

from openai import OpenAI

import andon

agent = andon.Agent(name="sync openai agent", description="One streamed completion, blocking")


@agent.skill("chat", description="Answer")
def chat(ctx: andon.SyncTaskContext) -> None:
    client = OpenAI(http_client=ctx.http)  # OPENAI_BASE_URL, OPENAI_API_KEY
    stream = client.chat.completions.create(
        model=os.environ["ANDON_LLM_MODEL"],
        messages=[{"role": "user", "content": ctx.text}],
        stream=True,
    )
    with stream:
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    ctx.emit(choice.delta.content)
