"""What the framework adapters share about a framework's run inside a task: keeping a cut
run's conversation for a retry, marking a cut answer, showing tools and outputs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from andon import llm
from andon.runtime.context import Content, TaskContext
from andon.runtime.scope import TaskCancelled

MESSAGES = "messages"
"""The artifact that keeps a cut run's conversation, for `andon/retry` to continue from."""
FRAMEWORK = "andon.framework"
"""Metadata of that artifact: the framework whose message format it holds."""
PREVIEW = 200
"""Characters of a tool's result shown in its progress event."""


@dataclass
class Cut:
    """The answer a model is streaming into the task's `response` artifact: what a cancel
    cuts, and marks `andon.partial`."""

    deltas: int = 0
    """Deltas received (the server reports the usage of an answer only at its end)."""
    unsaved: str = ""
    """Text received that `emit` refused (the cancel came first): it closes the artifact."""

    async def emit(self, ctx: TaskContext, text: str) -> None:
        self.deltas += 1
        self.unsaved = text
        await ctx.emit(text)
        self.unsaved = ""


async def keep(ctx: TaskContext, framework: str, messages: list[Any], cut: Cut) -> None:
    """At a cancel: mark the answer in progress cut (if any) and keep the run's
    conversation (JSON-able) with the task. Nothing is kept once the attempt is over
    (the cancel's hard deadline passed)."""
    with contextlib.suppress(TaskCancelled):
        if cut.deltas:
            marker = {llm.PARTIAL: True, llm.TOKENS: cut.deltas}
            await ctx.close_artifact("response", marker, cut.unsaved)
        await ctx.close_artifact(MESSAGES, {FRAMEWORK: framework}, {"messages": messages})


async def settle(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run a cancel's cleanup to its end, even through the attempt's own cancel of this
    coroutine, which may arrive meanwhile (when the task's scope said stop first): the
    attempt waits for it as long as its hard deadline allows, then names it."""
    work = asyncio.ensure_future(cleanup)
    while not work.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(work)
    work.result()


async def kept(ctx: TaskContext, framework: str) -> list[Any] | None:
    """The conversation the task this one retries kept when it was cut, if any."""
    for artifact in await ctx.retried_artifacts():
        if artifact.artifact_id == MESSAGES and (artifact.metadata or {}).get(FRAMEWORK) == (
            framework
        ):
            data = artifact.parts[-1].data if artifact.parts else None
            messages = data.get("messages") if isinstance(data, dict) else None
            if isinstance(messages, list):
                return messages
    return None


def output_content(output: Any) -> Content:
    """A run's final output as artifact content: text, or JSON data for structured output."""
    if isinstance(output, str):
        return output
    if isinstance(output, BaseModel):
        return {"output": output.model_dump(mode="json")}
    try:
        return {"output": json.loads(json.dumps(output))}
    except (TypeError, ValueError):
        return str(output)


def tool_called(name: str, arguments: str) -> str:
    """The progress line of a tool call."""
    return f"{name}({arguments})"


def tool_returned(name: str, result: str) -> str:
    """The progress line of a tool's result: its first line, shortened."""
    text = result.strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > PREVIEW:
        first = first[:PREVIEW] + "…"
    return f"{name} → {first}"
