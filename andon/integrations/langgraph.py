"""LangGraph graphs served by andon: `graph_agent(graph)` (`pip install 'andon[langgraph]'`).

    from andon.integrations.langgraph import graph_agent

    graph = builder.compile()              # any compiled graph (StateGraph, functional API)
    agent = graph_agent(graph)             # andon serve my_graph.py:agent

A task runs the graph with `astream` and says what it does:
- the messages its nodes stream (a chat model's tokens) go into the `response` artifact;
  node updates and the nodes' custom stream events (`get_stream_writer()`) become
  progress;
- an `interrupt(value)` puts the task in `input-required` with the value as the question;
  the answer resumes the graph with `Command(resume=answer)`;
- the task's context is the graph's thread (`thread_id` = the A2A context id) in the
  graph's checkpointer — the one it was compiled with, or else one in memory that this
  agent keeps — so a follow-up message in the context continues the conversation, and a
  retry of a cancelled or failed task (`andon retry`) resumes the thread from its last
  checkpoint instead of starting over;
- a cancel cancels the run: async nodes stop at their next await; sync nodes run on the
  task's own threads (LangGraph runs them in the loop's default executor, which andon
  owns), so the cancel waits for them, `andon.check()` inside one stops it there, and one
  that will not return by the hard deadline ends the task `failed` / `cancel_timeout`
  naming the node and the line it is blocked on, never a false `canceled`.

The graph's model calls stop with the task when its client goes over the task's HTTP
client: `ChatOpenAI(..., http_async_client=andon.task_http_client())` (and, on Python
3.11, `stream_chunk_timeout=None`: see docs/AGENTS.md).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph.types import Command, Interrupt

from andon.llm import PARTIAL
from andon.runtime.agent import Agent
from andon.runtime.context import TaskContext
from andon.runtime.scope import TaskCancelled
from andon.runtime.threads import thread_label

Inputs = Callable[[TaskContext], Any]
RESPONSE = "response"
"""The artifact the graph's streamed messages go into."""


def graph_agent(
    graph: Pregel[Any, Any, Any, Any],
    *,
    name: str | None = None,
    description: str = "",
    skill: str = "graph",
    skill_description: str = "",
    inputs: Inputs | None = None,
    config: RunnableConfig | None = None,
) -> Agent:
    """An andon Agent with one skill that runs `graph` for each task.

    `inputs(ctx)` makes the graph's input from the task (default: the message's text as
    a user message, `{"messages": [{"role": "user", "content": ctx.text}]}`, for graphs
    on `MessagesState`); `config` is the run's config (recursion limit, configurable
    keys), to which the thread id is added."""
    if not isinstance(graph.checkpointer, BaseCheckpointSaver):
        graph = graph.copy(update={"checkpointer": InMemorySaver()})
    agent = Agent(name=name or graph.name, description=description)
    runner = _Runner(graph, inputs or _user_message, config or {})
    agent.skill(skill, description=skill_description or description or f"Run {graph.name}")(
        runner.run
    )
    return agent


def _user_message(ctx: TaskContext) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": ctx.text}]}


class _Runner:
    def __init__(self, graph: Pregel[Any, Any, Any, Any], inputs: Inputs, config: RunnableConfig):
        self.graph = graph
        self.inputs = inputs
        self.config = config

    async def run(self, ctx: TaskContext) -> None:
        thread_label.set(_running_node)
        configurable = {**self.config.get("configurable", {}), "thread_id": ctx.context_id}
        config: RunnableConfig = {**self.config, "configurable": configurable}
        snapshot = await self.graph.aget_state(config)
        # A retry goes on from the thread's last checkpoint (what the cut run kept);
        # anything else is a new turn of the conversation.
        payload: Any = None if ctx.retry_of and snapshot.next else self.inputs(ctx)
        stream = _Stream(ctx)
        try:
            while True:
                async for chunk in self.graph.astream(
                    payload,
                    config,
                    stream_mode=["messages", "updates", "custom"],
                    subgraphs=True,
                    durability="sync",  # each step's checkpoint is kept before the next
                ):
                    await stream.event(*chunk)
                snapshot = await self.graph.aget_state(config)
                if not snapshot.interrupts:
                    break
                payload = Command(resume=await _answers(ctx, snapshot.interrupts))
        except BaseException:
            await stream.cut()
            raise
        if not stream.wrote:
            await _emit_result(ctx, snapshot.values)


def _running_node() -> str | None:
    """The LangGraph node a sync call is made for (LangGraph sets the node's config in
    the context it runs the node in)."""
    config = var_child_runnable_config.get() or {}
    node = (config.get("metadata") or {}).get("langgraph_node")
    return f"langgraph node {node!r}" if node else None


async def _answers(ctx: TaskContext, interrupts: tuple[Interrupt, ...]) -> dict[str, str]:
    """Ask each pending interrupt's question in turn; the answers by interrupt id."""
    return {pending.id: await ctx.ask(_question(pending.value)) for pending in interrupts}


def _question(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


class _Stream:
    """Turns the graph's stream into the task's artifact and progress."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.wrote = False
        self.message_id: str | None = None
        """The message whose text is streaming into the artifact, until its node ends."""

    async def event(self, namespace: Any, mode: Any, data: Any) -> None:
        """One `(namespace, mode, data)` of `astream(..., subgraphs=True)`."""
        if mode == "messages":
            message, _ = data
            await self.message(message)
        elif mode == "updates":
            self.message_id = None
            for node in data or {}:
                if not node.startswith("__"):  # __interrupt__: asked once the run pauses
                    await self.ctx.progress(_path(namespace, node))
        elif mode == "custom":
            await self.ctx.progress(data if isinstance(data, str) else _json(data))

    async def message(self, message: BaseMessage) -> None:
        if not isinstance(message, AIMessage):
            return  # the tools' results are the nodes' updates
        text = str(message.text)
        if not text:
            return
        if message.id != self.message_id and self.wrote:
            text = "\n\n" + text  # the next message of the conversation
        self.message_id = message.id
        await self.ctx.emit(text, artifact=RESPONSE)
        self.wrote = True

    async def cut(self) -> None:
        """The run ended midway (a cancel, an error): a message that was streaming stays
        in the artifact, marked partial."""
        if self.message_id is None:
            return
        with contextlib.suppress(TaskCancelled):  # the attempt is already over
            await self.ctx.close_artifact(RESPONSE, {PARTIAL: True})


def _path(namespace: tuple[str, ...], node: str) -> str:
    """`node`, or `subgraph/node` for a node of a subgraph."""
    parents = [part.split(":", 1)[0] for part in namespace]
    return "/".join([*parents, node])


async def _emit_result(ctx: TaskContext, values: Any) -> None:
    """A graph that streamed no message answers with its last message's text, or else
    with its final state as data."""
    messages = values.get("messages") if isinstance(values, Mapping) else None
    if messages and isinstance(messages[-1], AIMessage) and messages[-1].text:
        await ctx.emit(messages[-1].text, artifact=RESPONSE)
    elif values is not None:
        await ctx.emit({"state": json.loads(_json(values))}, artifact=RESPONSE)


def _json(value: Any) -> str:
    return json.dumps(value, default=str)
