"""An orchestrator: it splits its message into two sub-requests and delegates them to
other A2A agents, streaming both children's output as it comes.

    andon serve --port 8001 --db child1.db &          # two children (the demo agent)
    andon serve --port 8002 --db child2.db &
    ANDON_CHILD_URLS=http://127.0.0.1:8001,http://127.0.0.1:8002 \\
        andon serve examples/orchestrator.py:agent
    andon send "sleep 5 | stream 10"                   # Ctrl+C stops all three tasks

`first | second` sends `first` to the first child URL and `second` to the second; a
message without `|` goes whole to both. With one URL, both sub-requests go to it. The
children's artifacts appear in this task under the children's agent names (mirrored by
`ctx.call_agent`), their progress as this task's progress. Cancelling this task cancels
both children (reason `parent_canceled`), and it reads `canceled` only once they are.
"""

from __future__ import annotations

import asyncio
import os

import andon

agent = andon.Agent(
    name="orchestrator",
    description="Splits a request in two and delegates both halves to other agents.",
    version="1.0.0",
)


def child_urls() -> list[str]:
    return [u.strip() for u in os.environ.get("ANDON_CHILD_URLS", "").split(",") if u.strip()]


def split(text: str) -> tuple[str, str]:
    first, bar, second = text.partition("|")
    return (first.strip(), second.strip()) if bar else (text, text)


@agent.skill("delegate", description="Split the request in two and delegate both halves")
async def delegate(ctx: andon.TaskContext) -> str:
    urls = child_urls()
    if not urls:
        raise andon.TaskFailed("no child agents: set ANDON_CHILD_URLS (comma-separated URLs)")

    async def follow(number: int, url: str, request: str) -> None:
        async for event in ctx.call_agent(url, request):
            message = getattr(getattr(event.item, "status", None), "message", None)
            if message is not None and message.text:
                await ctx.progress(f"child {number}: {message.text}")

    try:
        async with asyncio.TaskGroup() as group:
            for number, request in enumerate(split(ctx.text)):
                group.create_task(follow(number + 1, urls[number % len(urls)], request))
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None  # a child's failure, with its message
    return "both sub-requests completed"
