"""The demo agent on the official A2A Python SDK (a2a-sdk 1.3), for the benchmark.

    bench/.venvs/a2a-sdk/bin/python bench/peers/a2a_sdk_server.py --port 8001

Built the way the SDK's documentation and samples build a server (a2a_sdk_app.py,
shared with the other a2a-sdk peers). The JSON-RPC endpoint is `/`; it speaks A2A 1.0
(`SendMessage`, `SendStreamingMessage`, `GetTask`, `CancelTask`, with the header
`A2A-Version: 1.0`) and, through the SDK's v0.3 compatibility, A2A 0.3 (`message/send`,
`message/stream`, `tasks/get`, `tasks/cancel`, no version header).

The executor does what a typical author does with this SDK and nothing more: it
publishes through a TaskUpdater, runs blocking work with `asyncio.to_thread`, runs
commands with an asyncio subprocess, and on cancel publishes the `canceled` status
(`TaskUpdater.cancel`) as the SDK's AgentExecutor.cancel docstring asks; the SDK
itself then cancels the asyncio task running `execute`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from a2a.helpers import new_text_part
from a2a.server.agent_execution import RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import AgentSkill, Message, TaskState
from a2a_sdk_app import Executor, TextArtifact, serve, task_updater
from demo_work import COMMANDS, STEP, parse, seconds, spin, steps, trace


def _says(updater: TaskUpdater, text: str) -> Message:
    return updater.new_agent_message([new_text_part(text)])


class DemoAgentExecutor(Executor):
    """echo, sleep, spin and shell, as in `andon.agents.demo`."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = await task_updater(context, event_queue)
        command, rest = parse(context.get_user_input())
        try:
            if command == "echo":
                await updater.add_artifact([new_text_part(rest)], name="echo")
                await updater.complete()
            elif command == "sleep":
                await updater.start_work()
                total = steps(seconds(rest))
                for step in range(total):
                    await asyncio.sleep(STEP)
                    trace(updater.task_id, step)
                    await updater.update_status(
                        TaskState.TASK_STATE_WORKING,
                        message=_says(updater, f"step {step + 1}/{total}"),
                    )
                await updater.complete(_says(updater, "slept"))
            elif command == "spin":
                await updater.start_work()
                done = await asyncio.to_thread(spin, updater.task_id, seconds(rest))
                await updater.complete(_says(updater, f"spun {done} steps"))
            elif command == "shell":
                await updater.start_work()
                await self._shell(updater, rest)
            else:
                known = ", ".join(COMMANDS)
                await updater.failed(
                    _says(updater, f"unknown command {command!r}; try one of: {known}")
                )
        except ValueError as exc:
            await updater.failed(_says(updater, str(exc)))

    async def _shell(self, updater: TaskUpdater, command: str) -> None:
        if not command:
            await updater.failed(_says(updater, "shell needs a command"))
            return
        proc = await asyncio.create_subprocess_shell(
            command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert proc.stdout is not None
        output = TextArtifact(updater, "output")
        while line := await proc.stdout.readline():
            await output.add(line.decode(errors="replace"))
        code = await proc.wait()
        if code == 0:
            await updater.complete()
        else:
            await updater.failed(_says(updater, f"command exited with {code}"))


def main() -> None:
    serve(
        __doc__,
        DemoAgentExecutor(),
        name="a2a-sdk demo",
        description="The andon demo agent (echo, sleep, spin, shell) on a2a-sdk.",
        skill=AgentSkill(
            id="demo",
            name="Demo commands",
            description="echo, sleep, spin or shell, then an argument",
            tags=["demo", "cancellation"],
            examples=["echo hello", "sleep 30", "spin 10", "shell ls -l"],
        ),
    )


if __name__ == "__main__":
    main()
