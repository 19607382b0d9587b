"""The graph `langgraph dev` serves for bench/llm.py: examples/langgraph_agent.py's
assistant node as LangGraph's users write it (ChatOpenAI with its defaults, streaming),
without andon. No tool: the benchmark's model calls answer in text."""

import os

from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph

model = ChatOpenAI(model=os.environ.get("ANDON_LLM_MODEL", "fake"), streaming=True)


async def assistant(state: MessagesState) -> dict[str, object]:
    return {"messages": [await model.ainvoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("assistant", assistant)
builder.add_edge(START, "assistant")
graph = builder.compile(name="langgraph agent")
