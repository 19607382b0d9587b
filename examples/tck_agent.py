"""An andon agent that plays the scenarios of the A2A TCK (github.com/a2aproject/a2a-tck).

    andon serve examples/tck_agent.py:agent

The 1.0 TCK (branch 1.0-dev) says what the agent must do through the prefix of each
message's `messageId` (its `scenarios/*.feature`); a `tck-` prefix it names no scenario
for completes the task at once, as its reference agent does. The 0.3 TCK (branch 0.3.x)
names no scenarios: it expects every task to stay open after a message, so that it can
continue and cancel it; any other message is answered here and its task then waits in
input-required for the next one. `scripts/run-tck.sh` serves this agent and runs either
TCK against it. It uses andon's agent API (Agent, TaskContext) and protocol types only.
"""

from __future__ import annotations

import asyncio
import base64
import os

import andon
from andon.protocol.types import Message, Part

# The TCK's "streaming timeout" is 2 s; the resubscribe scenario outlives two of them.
STREAMING_TIMEOUT = 2.0

agent = andon.Agent(
    name="andon TCK agent",
    description="Plays the A2A TCK scenarios, chosen by the messageId prefix.",
    version="1.0.0",
    # Both A2A versions by default; run-tck.sh serves the agent in 1.0 only for the 1.0
    # TCK, whose card check allows no 0.3 field (docs/CONFORMANCE.md).
    a2a_versions=tuple(os.environ.get("ANDON_TCK_A2A_VERSIONS", "1.0,0.3").split(",")),
)


@agent.skill(
    "tck",
    name="TCK conformance",
    description="Handles A2A TCK conformance test messages",
    tags=("tck",),
)
async def tck(ctx: andon.TaskContext) -> str | Message | None:
    return await play(ctx, ctx.message)


async def tck_extended(ctx: andon.TaskContext) -> str | Message | None:
    return await play(ctx, ctx.message)


# The two TCKs disagree on an extended card asked for without credentials: the 1.0 one
# sends none and expects the card (CARD-EXT-001), the 0.3 one expects an error. Served
# with `--auth none`, andon answers everyone as the local admin, so the card is declared
# only for the 1.0 run (run-tck.sh sets ANDON_TCK_EXTENDED_CARD=1 there).
if os.environ.get("ANDON_TCK_EXTENDED_CARD") == "1":
    agent.skill(
        "tck-extended",
        name="TCK extended skill",
        description="Listed in the authenticated extended agent card only",
        tags=("tck",),
        extended=True,
    )(tck_extended)


async def play(ctx: andon.TaskContext, message: Message) -> str | Message | None:
    """Act out the scenario `message` names. The return value ends the task: a text for
    its final status, or a direct reply (a Message) that answers the request itself."""
    scenario = message.message_id
    # Longest prefixes first: `tck-artifact-file-url` also starts `tck-artifact-file`.
    if scenario.startswith("tck-complete-task"):
        return "Hello from TCK"
    if scenario.startswith("tck-artifact-text"):
        await ctx.emit("Generated text content")
        return None
    if scenario.startswith("tck-artifact-file-url"):
        await ctx.emit(
            Part(
                url="https://example.com/output.txt", media_type="text/plain", filename="output.txt"
            )
        )
        return None
    if scenario.startswith("tck-artifact-file"):
        await ctx.emit(file_part())
        return None
    if scenario.startswith("tck-artifact-data"):
        await ctx.emit({"key": "value", "count": 42})
        return None
    if scenario.startswith("tck-message-response"):
        return ctx.reply("Direct message response")
    if scenario.startswith("tck-input-required"):
        # Stays in input-required for as long as the answers ask for it; any other
        # answer is played as its own scenario, in this same task.
        answer = await ctx.ask_message("Input required by the TCK scenario")
        return await play(ctx, answer)
    if scenario.startswith("tck-reject-task"):
        raise andon.TaskFailed("rejected")
    # Streaming scenarios: andon streams `working` itself when the agent starts.
    if scenario.startswith("tck-stream-001"):
        await ctx.emit("Stream hello from TCK")
        return None
    if scenario.startswith("tck-stream-002"):
        return None
    if scenario.startswith("tck-stream-003"):
        await ctx.emit("Stream task lifecycle")
        return None
    if scenario.startswith("tck-stream-ordering-001"):
        await ctx.emit("Ordered output")
        return None
    if scenario.startswith("tck-stream-artifact-text"):
        await ctx.emit("Streamed text content")
        return None
    if scenario.startswith("tck-stream-artifact-file"):
        await ctx.emit(file_part())
        return None
    if scenario.startswith("tck-stream-artifact-chunked"):
        await ctx.emit("chunk-1 ")
        await ctx.emit("chunk-2", last_chunk=True)
        return None
    if scenario.startswith("test-resubscribe-message-id"):
        await asyncio.sleep(2 * STREAMING_TIMEOUT)
        return None
    if scenario.startswith("tck-"):
        return f"Unhandled messageId prefix: {scenario}"
    return await converse(ctx, message)


async def converse(ctx: andon.TaskContext, message: Message) -> str | Message | None:
    """The A2A 0.3 TCK names no scenarios: it expects a task to stay open after each
    message (so that it can be continued with its taskId, and cancelled), as its
    reference agents' tasks do. Here each message is answered, and the task then waits
    in input-required for the next one."""
    while True:
        message = await ctx.ask_message(f"You said: {message.text!r}. What next?")
        if message.message_id.startswith("tck-"):
            return await play(ctx, message)


def file_part() -> Part:
    return Part(
        raw=base64.b64encode(b"tck").decode(), media_type="text/plain", filename="output.txt"
    )
