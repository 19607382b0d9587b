"""A LangGraph agent served by andon (`pip install 'andon[langgraph]'`): a chat model that
may run shell commands, each one approved by the user first.

    OPENAI_BASE_URL=http://127.0.0.1:8900/v1 OPENAI_API_KEY=sk-... ANDON_LLM_MODEL=fake \\
        andon serve examples/langgraph_agent.py:agent

The graph is LangGraph's usual tool loop: an `assistant` node calls the model, a
`ToolNode` runs the tools it asked for, back to the assistant until it answers in text.
The one tool, `run(command)`, first asks the user with `interrupt()` (the task waits in
`input-required`; the answer resumes the graph), then runs the command as a process of
the task, which a cancel kills with everything it started. The model's tokens stream
into the task's `response` artifact; its HTTP requests go over the task's own client
(`andon.task_http_client()`), so a cancel closes the connection and the model server
stops generating. `python -m andon.testing.fake_llm` is a model server to try it with.
"""

from __future__ import annotations

import os

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import interrupt

import andon
from andon.integrations.langgraph import graph_agent

OUTPUT_LIMIT = 20_000
"""Characters of a command's output given back to the model (its tail)."""


@tool
async def run(command: str) -> str:
    """Run a shell command on the agent's machine and return its exit status and output."""
    answer = interrupt(f"Run `{command}`? (yes/no)")
    if str(answer).strip().lower() not in {"y", "yes"}:
        return f"The user did not approve running `{command}`."
    done = await andon.current_task().run(command)  # its process group belongs to the task
    return f"exit status {done.returncode}\n{done.output[-OUTPUT_LIMIT:]}"


model = ChatOpenAI(  # OPENAI_BASE_URL, OPENAI_API_KEY
    model=os.environ.get("ANDON_LLM_MODEL", "gpt-4o-mini"),
    http_async_client=andon.task_http_client(),
    # langchain-openai bounds each chunk's wait with asyncio.wait_for, which on Python
    # 3.11 can swallow a cancel that arrives with a chunk (CPython gh-86296): the task's
    # HTTP client has a read timeout of its own.
    stream_chunk_timeout=None,
).bind_tools([run])


async def assistant(state: MessagesState) -> dict[str, object]:
    return {"messages": [await model.ainvoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("assistant", assistant)
builder.add_node("tools", ToolNode([run]))
builder.add_edge(START, "assistant")
builder.add_conditional_edges("assistant", tools_condition)
builder.add_edge("tools", "assistant")
graph = builder.compile(name="langgraph agent")

agent = graph_agent(
    graph, description="Answers with a language model that can run commands, once approved"
)
