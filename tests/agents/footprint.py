"""An agent that tells what its serving process has imported: `modules` answers the
names in sys.modules; `fetch URL` first GETs the URL with the task's own
client (`ctx.http`) and answers its status code. Tests of what `andon serve` loads."""

from __future__ import annotations

import sys

import andon

agent = andon.Agent(name="footprint", description="Says which modules its server has loaded")


@agent.skill("footprint")
async def handle(ctx: andon.TaskContext) -> None:
    command, _, url = ctx.text.partition(" ")
    if command == "fetch":
        response = await ctx.http.get(url)
        await ctx.emit(str(response.status_code))
        return
    await ctx.emit(" ".join(sorted(sys.modules)))
