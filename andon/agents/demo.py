"""The demo agent served by default: every feature of andon, one word at a time.

    echo <text>        reply with the text at once
    sleep <seconds>    async work in 0.1 s steps, a progress event each step
    spin <seconds>     a CPU-bound loop in a thread, calling ctx.check()
    shell <command>    run the command, streaming its output
    ask <question>     ask the question (input-required), then echo the answer
    stream <n>         n artifact chunks, one every 50 ms
    fail <text>        fail with that message

With ANDON_DEMO_TRACE naming a file, each step of sleep, spin and stream appends
`<task id> <step> <monotonic ns>` to it, so anyone can check that work stopped.
"""

from __future__ import annotations

import asyncio
import time

from andon.agents.trace import trace
from andon.runtime.agent import Agent
from andon.runtime.context import TaskContext, TaskFailed

STEP = 0.1
COMMANDS = ("echo", "sleep", "spin", "shell", "ask", "stream", "fail")

agent = Agent(
    name="andon demo",
    description="Shows what andon does: long work that stops the moment you cancel it.",
)


def _number(text: str, kind: type[float] | type[int], default: float) -> float:
    try:
        value = kind(text) if text else default
    except ValueError:
        raise TaskFailed(f"expected a number, got {text!r}") from None
    if value < 0:
        raise TaskFailed("expected a number >= 0")
    return value


@agent.skill(
    "demo",
    name="Demo commands",
    description="echo, sleep, spin, shell, ask, stream or fail, then an argument",
    tags=("demo", "cancellation"),
    examples=("echo hello", "sleep 30", "spin 10", "shell ls -l", "ask your name?", "stream 20"),
)
async def demo(ctx: TaskContext) -> str | None:
    command, _, rest = ctx.text.partition(" ")
    rest = rest.strip()
    if command == "echo":
        await ctx.emit(rest)
        return rest
    if command == "sleep":
        await sleep(ctx, _number(rest, float, 1.0))
        return "slept"
    if command == "spin":
        seconds = _number(rest, float, 1.0)
        steps = await ctx.to_thread(spin, ctx, seconds)
        return f"spun {steps} steps"
    if command == "shell":
        if not rest:
            raise TaskFailed("shell needs a command")
        result = await ctx.run(rest)
        if result.returncode != 0:
            raise TaskFailed(f"command exited with {result.returncode}")
        return None
    if command == "ask":
        answer = await ctx.ask(rest or "What should I echo?")
        await ctx.emit(answer)
        return answer
    if command == "stream":
        count = int(_number(rest, int, 10))
        for step in range(count):
            ctx.check()
            await asyncio.sleep(0.05)
            trace(ctx.task_id, step)
            await ctx.emit(f"chunk {step}\n", artifact="stream", last_chunk=step == count - 1)
        return None
    if command == "fail":
        raise TaskFailed(rest or "failed on request")
    raise TaskFailed(f"unknown command {command!r}; try one of: {', '.join(COMMANDS)}")


async def sleep(ctx: TaskContext, seconds: float) -> None:
    steps = round(seconds / STEP)
    for step in range(steps):
        ctx.check()  # a step boundary: a graceful cancel stops here
        await asyncio.sleep(STEP)
        trace(ctx.task_id, step)
        await ctx.progress(f"step {step + 1}/{steps}")


def spin(ctx: TaskContext, seconds: float) -> int:
    """Busy CPU work in a thread; `ctx.check()` is where a cancel reaches it."""
    end = time.monotonic() + seconds
    step = 0
    next_mark = time.monotonic() + STEP
    while time.monotonic() < end:
        ctx.check()
        sum(i * i for i in range(2000))
        if time.monotonic() >= next_mark:
            trace(ctx.task_id, step)
            step += 1
            next_mark += STEP
    return step
