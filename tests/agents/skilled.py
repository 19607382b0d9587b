"""An agent of three skills, each saying which one served the task: `andon serve
tests/agents/skilled.py` serves it (tests of how a task chooses its skill)."""

from __future__ import annotations

import asyncio

import andon

agent = andon.Agent(name="skilled", description="Three skills that say who served the task")


@agent.skill("greet", name="Greeting", description="Says hello", examples=("Ada",))
async def greet(ctx: andon.TaskContext) -> None:
    await ctx.emit(f"greet: hello {ctx.text}")


@agent.skill(
    "shout", name="Shouting", description="Repeats the text in capitals", examples=("quiet please",)
)
async def shout(ctx: andon.TaskContext) -> None:
    await ctx.emit(f"shout: {ctx.text.upper()}")


@agent.skill("wait", description="Waits until cancelled, a progress event a second")
async def wait(ctx: andon.TaskContext) -> None:
    while True:
        await ctx.progress("waiting")
        await asyncio.sleep(1)


@agent.skill("crash", description="Raises KeyError('missing'), as a buggy agent would")
async def crash(ctx: andon.TaskContext) -> None:
    raise KeyError("missing")
