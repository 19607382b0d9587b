"""A LangGraph graph for tests/test_langgraph.py whose sync nodes run until cancelled:
`steady` calls `andon.check()` at each step, `stubborn` ignores checks and returns only
once a file named `release` exists in the working directory. Each step appends
`<node> <step> <monotonic ns>` to the file ANDON_DEMO_TRACE names."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TypedDict

from langgraph.graph import START, StateGraph

import andon
from andon.integrations.langgraph import graph_agent


class State(TypedDict):
    text: str


def trace(node: str, step: int) -> None:
    with open(os.environ["ANDON_DEMO_TRACE"], "a") as out:
        out.write(f"{node} {step} {time.monotonic_ns()}\n")


def steady(state: State) -> State:
    for step in range(30_000):
        andon.check()
        trace("steady", step)
        time.sleep(0.01)
    return state


def stubborn(state: State) -> State:
    step = 0
    while not Path("release").exists():
        trace("stubborn", step)
        step += 1
        time.sleep(0.01)  # the line a cancel_timeout names
    return state


builder = StateGraph(State)
builder.add_node("steady", steady)
builder.add_node("stubborn", stubborn)
builder.add_conditional_edges(START, lambda state: state["text"], ["steady", "stubborn"])
agent = graph_agent(builder.compile(name="sync nodes"), inputs=lambda ctx: {"text": ctx.text})
