"""pydantic-ai agents served by andon (`pip install 'andon[pydantic-ai]'`).

    from andon.integrations.pydantic_ai import pydantic_agent

    agent = pydantic_agent(Agent(model, tools=[run]))   # `andon serve module.py:agent`

Each task is one run of the pydantic-ai agent on the task's text, streamed: text deltas
go into the task's `response` artifact as they arrive, each tool call and its result
become progress events. What andon adds to the run:

- **The model's requests go over the task's own HTTP client** (`ctx.http`) when the model
  is pydantic-ai's OpenAI model (chat completions or responses): a cancel closes the
  connection, and the model server stops generating. Other models keep their own client.
- **Sync tools run on the task's threads**, not on anyio's worker pool: a cancel waits
  for them, and one that does not return by the hard deadline ends the task
  `failed / cancel_timeout` naming the tool and the line it is blocked on — never a
  `canceled` while it runs. (pydantic-ai shields such a thread from cancellation by
  default, so the run would not even notice the cancel.)
- **A cancel keeps the run's messages.** pydantic-ai records what a cancelled run
  completed (the model's answers, the tools' results, the cut answer); they are kept
  with the task in its `messages` artifact, and `andon/retry` continues the run from
  them: completed tool calls are not made again, the model is asked from the last
  completed step. The cut answer stays in the cancelled task's `response` artifact,
  marked `andon.partial`.
- **Usage** (`RunUsage`) goes into the task's `andon.usage`; the cut answer's tokens,
  which the model server never reported, are counted from the deltas received
  (`estimated`).
- A graceful cancel lets the step in progress finish (a model answer, a round of tools)
  and ends the run with pydantic-ai's own `RunContext.cancel()` as the next one opens (a
  model request then opened is closed at once).

Plain tools reach the task through `andon.current_task()` (`await
andon.current_task().run(command)` runs a command as a process of the task).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from typing import Any

from pydantic_ai import Agent as PydanticAgent
from pydantic_ai import RunContext
from pydantic_ai._run_context import get_current_run_context
from pydantic_ai.exceptions import RunCancelled
from pydantic_ai.messages import (
    AgentStreamEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.models import Model, infer_model
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.usage import RunUsage

from andon import llm
from andon.integrations import runs
from andon.runtime.agent import Agent
from andon.runtime.context import TaskContext
from andon.runtime.scope import TaskCancelled
from andon.runtime.threads import AttemptExecutor, thread_label

FRAMEWORK = "pydantic-ai"
_THREADS = AttemptExecutor(thread_name_prefix="pydantic-ai")
"""pydantic-ai's executor for sync tools: inside a task, each call runs on a thread of
the task's attempt."""


def pydantic_agent(
    agent: PydanticAgent[Any, Any],
    *,
    name: str | None = None,
    description: str = "",
    skill: str = "chat",
    deps: Callable[[TaskContext], Any] | None = None,
    **run_options: Any,
) -> Agent:
    """An andon agent of one skill that runs `agent` on each task's text.

    `deps(ctx)` makes the run's dependencies from the task's context; `run_options` go to
    `agent.run` as they are (`model_settings=`, `usage_limits=`, `instructions=`, ...).
    """
    served = Agent(name=name or agent.name or "pydantic-ai agent", description=description)

    @served.skill(skill, description=description)
    async def run(ctx: TaskContext) -> None:
        options = dict(run_options)
        if deps is not None:
            options["deps"] = deps(ctx)
        await _Run(agent, ctx).go(options)

    return served


class _Run:
    """One task's run of the agent: streams its events into the task, keeps its
    messages if it is cut."""

    def __init__(self, agent: PydanticAgent[Any, Any], ctx: TaskContext) -> None:
        self.agent = agent
        self.ctx = ctx
        self.streamed = False
        self.cut = runs.Cut()
        """The model response in progress (its usage is not known yet)."""

    async def go(self, options: dict[str, Any]) -> None:
        ctx = self.ctx
        history = await _kept_messages(ctx)
        model = _on_task_client(options.pop("model", None) or self.agent.model, ctx)
        thread_label.set(_running_tool)
        try:
            with PydanticAgent.using_thread_executor(_THREADS):
                result = await self.agent.run(
                    None if history else ctx.text,
                    message_history=history or None,
                    model=model,
                    event_stream_handler=self._events,
                    **options,
                )
        except RunCancelled as stopped:  # our graceful stop, or a TaskCancelled seen inside
            await runs.settle(self._keep(stopped))
            raise TaskCancelled(ctx.cancel_reason or "cancelled") from None
        except asyncio.CancelledError as exc:  # the attempt's cancel
            state = RunCancelled.from_cancellation(exc)
            if state is not None:
                await runs.settle(self._keep(state))
            raise
        _add_usage(ctx, result.usage, 0)
        if not self.streamed:
            await ctx.emit(runs.output_content(result.output))

    async def _events(self, run: RunContext[Any], events: AsyncIterable[AgentStreamEvent]) -> None:
        """pydantic-ai's event stream handler, called once per model request and once per
        round of tool calls."""
        if self.ctx.stopping:  # a graceful cancel: stop here, between two steps
            run.cancel()
        self.cut = runs.Cut()
        try:
            async for event in events:
                await self._take(event)
        except TaskCancelled:
            # The task is being cancelled: end the run the way pydantic-ai records it.
            run.cancel()
            await asyncio.sleep(0)
        self.cut = runs.Cut()  # the response ended whole: its usage is reported

    async def _take(self, event: AgentStreamEvent) -> None:
        ctx = self.ctx
        text = ""
        if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
            text = event.part.content
        elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
            text = event.delta.content_delta
        elif isinstance(event, FunctionToolCallEvent):
            part = event.part
            await ctx.progress(runs.tool_called(part.tool_name, part.args_as_json_str()))
        elif isinstance(event, FunctionToolResultEvent):
            result = event.part.model_response_str()
            await ctx.progress(runs.tool_returned(event.part.tool_name, result))
        if text:
            self.streamed = True
            await self.cut.emit(ctx, text)

    async def _keep(self, stopped: RunCancelled) -> None:
        """Keep what the cut run completed with the task, for `andon/retry`."""
        _add_usage(self.ctx, stopped.usage, self.cut.deltas)
        messages = ModelMessagesTypeAdapter.dump_python(stopped.all_messages(), mode="json")
        await runs.keep(self.ctx, FRAMEWORK, messages, self.cut)


async def _kept_messages(ctx: TaskContext) -> list[ModelMessage]:
    """The messages a cut run of the task this one retries kept, less a last answer the
    cut left unfinished (the model is asked again from the step before it)."""
    messages = ModelMessagesTypeAdapter.validate_python(await runs.kept(ctx, FRAMEWORK) or [])
    while (
        messages and isinstance(messages[-1], ModelResponse) and messages[-1].state == "interrupted"
    ):
        messages.pop()
    return messages


def _running_tool() -> str | None:
    """The pydantic-ai tool a sync call is made for (pydantic-ai sets the run context,
    with the tool's name, around each tool call)."""
    run = get_current_run_context()
    return f"pydantic-ai tool {run.tool_name!r}" if run is not None and run.tool_name else None


def _on_task_client(model: Model | str | None, ctx: TaskContext) -> Model | str | None:
    """The run's model with its requests on the task's HTTP client, for pydantic-ai's
    OpenAI models; any other model as it is."""
    if isinstance(model, str):
        model = infer_model(model)
    if type(model) not in (OpenAIChatModel, OpenAIResponsesModel):
        return model
    assert isinstance(model, OpenAIChatModel | OpenAIResponsesModel)
    # openai types `http_client` as an httpx2 client; it takes an httpx one as well.
    client = model.client.with_options(http_client=ctx.http)  # type: ignore[arg-type]
    return type(model)(
        model.model_name,
        provider=OpenAIProvider(openai_client=client),
        profile=model.profile,
        settings=model.settings,
    )


def _add_usage(ctx: TaskContext, usage: RunUsage, unreported: int) -> None:
    llm.add_usage(
        ctx,
        llm.Usage(usage.input_tokens, usage.output_tokens + unreported, estimated=unreported > 0),
        calls=usage.requests,
    )
