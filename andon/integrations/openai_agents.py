"""OpenAI Agents SDK agents served by andon (`pip install 'andon[openai-agents]'`).

    from andon.integrations.openai_agents import openai_agent

    agent = openai_agent(Agent(name="assistant", tools=[run]))   # `andon serve module.py:agent`

Each task is one `Runner.run_streamed` of the agent on the task's text: streamed text goes
into the task's `response` artifact, each tool call and its output become progress
events. What andon adds to the run:

- **A cancel stops the run, not only its consumer.** The SDK runs the agent loop in a
  background asyncio task; a consumer of `stream_events()` that is cancelled in the
  middle of an event leaves that loop running — the model keeps streaming, tools keep
  running. Here a cancel calls the run's own `cancel()` and awaits the background loop
  before the task may end: `canceled` means the loop has ended.
- **The model's requests go over the task's own HTTP client** (`ctx.http`), so a cancel
  closes the connection and the model server stops generating: the starting agent's
  model, when it is the SDK's OpenAI chat-completions or responses model, runs for the
  task on a copy of its client with that HTTP client; an agent without a model object
  (a model name, or the default) gets the SDK's default provider over a copy of the
  default client with it. Agents handed off to keep their own models.
- **Sync tools** (`function_tool` on a plain `def`) run through `asyncio.to_thread`,
  which inside a task runs on the task's threads: a cancel waits for them, and one that
  does not return by the hard deadline ends the task `failed / cancel_timeout` naming it.
- **A cancel keeps the run's conversation** (`to_input_list()`: the input and every item
  completed before the cancel — tool calls and their outputs) with the task, in its
  `messages` artifact; `andon/retry` runs the agent on it, so finished tool calls are not
  made again. The cut answer stays in the cancelled task's `response` artifact, marked
  `andon.partial`.
- **Usage** (the run context's `Usage`) goes into the task's `andon.usage` (streamed
  chat completions are asked for it: `include_usage`, unless the agent sets it); a cut
  answer's tokens, never reported, are counted from the deltas received (`estimated`).
- A graceful cancel is the SDK's `cancel(mode="after_turn")`: the turn in progress
  finishes, the next one does not start.

Plain tools reach the task through `andon.current_task()` (`await
andon.current_task().run(command)` runs a command as a process of the task).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator
from typing import Any, cast

from agents import Agent as SdkAgent
from agents import ModelSettings, RunConfig, Runner, RunResultStreaming
from agents.items import ToolCallItem, ToolCallOutputItem
from agents.models import _openai_shared
from agents.models.multi_provider import MultiProvider
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel
from agents.stream_events import RawResponsesStreamEvent, RunItemStreamEvent, StreamEvent
from openai import AsyncOpenAI
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from andon import llm
from andon.integrations import runs
from andon.runtime.agent import Agent
from andon.runtime.context import TaskContext
from andon.runtime.scope import TaskCancelled

FRAMEWORK = "openai-agents"


def openai_agent(
    agent: SdkAgent[Any],
    *,
    name: str | None = None,
    description: str = "",
    skill: str = "chat",
    run_config: RunConfig | None = None,
    **run_options: Any,
) -> Agent:
    """An andon agent of one skill that runs `agent` on each task's text.

    `run_config` and `run_options` (`max_turns=`, `context=`, `hooks=`, ...) go to
    `Runner.run_streamed` as they are; a `run_config` with a model provider of its own
    (not the SDK's default `MultiProvider`) keeps it, and its clients.
    """
    served = Agent(name=name or agent.name, description=description)

    @served.skill(skill, description=description)
    async def run(ctx: TaskContext) -> None:
        await _Run(ctx).go(agent, run_config, run_options)

    return served


class _Run:
    """One task's streamed run: its events into the task, its background loop awaited."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.streamed = False
        self.cut = runs.Cut()
        """The model response in progress (its usage is not known yet)."""
        self.tools: dict[str, str] = {}
        """The name of each tool call in progress, by its call id."""

    async def go(
        self, agent: SdkAgent[Any], config: RunConfig | None, options: dict[str, Any]
    ) -> None:
        ctx = self.ctx
        start, config = _on_task_client(agent, config, ctx)
        config = _with_usage(start, config)
        conversation = await runs.kept(ctx, FRAMEWORK)
        result = Runner.run_streamed(start, conversation or ctx.text, run_config=config, **options)
        # An async generator: closed below once the run has stopped.
        events = cast(AsyncGenerator[StreamEvent, None], result.stream_events())
        stopping = asyncio.ensure_future(self._after_turn(result))
        try:
            async for event in events:
                await self._take(event)
        except BaseException:
            await runs.settle(self._stop(result))
            raise
        finally:
            stopping.cancel()
            await events.aclose()
        if ctx.stopping:  # a graceful cancel ended the run after its turn
            await runs.settle(self._stop(result))
            raise TaskCancelled(ctx.cancel_reason or "cancelled")
        self._add_usage(result, 0)
        if not self.streamed and result.final_output is not None:
            await ctx.emit(runs.output_content(result.final_output))

    async def _after_turn(self, result: RunResultStreaming) -> None:
        await self.ctx.stopping
        result.cancel(mode="after_turn")

    async def _stop(self, result: RunResultStreaming) -> None:
        """Cancel the run and wait for its background loop to end (it runs the model
        call and the tools); then keep what it completed."""
        result.cancel()
        loop = result.run_loop_task
        if loop is not None and not loop.done():
            await asyncio.wait({loop})
        self._add_usage(result, self.cut.deltas)
        await runs.keep(self.ctx, FRAMEWORK, result.to_input_list(), self.cut)

    async def _take(self, event: StreamEvent) -> None:
        ctx = self.ctx
        if isinstance(event, RawResponsesStreamEvent):
            if isinstance(event.data, ResponseTextDeltaEvent) and event.data.delta:
                self.streamed = True
                await self.cut.emit(ctx, event.data.delta)
            elif isinstance(event.data, ResponseCompletedEvent):
                self.cut = runs.Cut()  # the response ended whole: its usage is reported
        elif isinstance(event, RunItemStreamEvent):
            item = event.item
            if isinstance(item, ToolCallItem):
                call = item.raw_item
                name = str(_field(call, "name") or "tool")
                self.tools[str(_field(call, "call_id"))] = name
                await ctx.progress(runs.tool_called(name, str(_field(call, "arguments") or "")))
            elif isinstance(item, ToolCallOutputItem):
                name = self.tools.pop(str(_field(item.raw_item, "call_id")), "tool")
                await ctx.progress(runs.tool_returned(name, str(item.output)))

    def _add_usage(self, result: RunResultStreaming, unreported: int) -> None:
        usage = result.context_wrapper.usage
        llm.add_usage(
            self.ctx,
            llm.Usage(
                usage.input_tokens, usage.output_tokens + unreported, estimated=unreported > 0
            ),
            calls=usage.requests,
        )


def _field(item: Any, name: str) -> Any:
    """A field of a raw item, which the SDK gives as a model or as a dict."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _on_task_client(
    agent: SdkAgent[Any], config: RunConfig | None, ctx: TaskContext
) -> tuple[SdkAgent[Any], RunConfig]:
    """The starting agent and run config with the model's requests on the task's HTTP
    client, where the SDK's OpenAI models allow it."""
    model = agent.model
    if isinstance(model, OpenAIChatCompletionsModel | OpenAIResponsesModel):
        # openai types `http_client` as an httpx2 client; it takes an httpx one as well.
        client = model._client.with_options(http_client=ctx.http)  # type: ignore[arg-type]
        return agent.clone(model=type(model)(model=model.model, openai_client=client)), (
            config or RunConfig()
        )
    if (model is None or isinstance(model, str)) and (
        config is None or type(config.model_provider) is MultiProvider
    ):
        # The SDK's default provider, over a copy of its default client.
        default = _openai_shared.get_default_openai_client() or AsyncOpenAI()
        client = default.with_options(http_client=ctx.http)  # type: ignore[arg-type]
        provider = MultiProvider(openai_client=client)
        return agent, dataclasses.replace(config or RunConfig(), model_provider=provider)
    return agent, config or RunConfig()


def _with_usage(agent: SdkAgent[Any], config: RunConfig) -> RunConfig:
    """Ask chat-completions servers for the usage of streamed answers (the SDK asks only
    OpenAI's own), unless the agent or the run config says otherwise."""
    settings = config.model_settings or ModelSettings()
    if agent.model_settings.include_usage is not None or settings.include_usage is not None:
        return config
    return dataclasses.replace(
        config, model_settings=dataclasses.replace(settings, include_usage=True)
    )
