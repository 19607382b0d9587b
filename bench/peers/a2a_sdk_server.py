"""The demo agent on the official A2A Python SDK (a2a-sdk 1.3), for the benchmark.

    bench/.venvs/a2a-sdk/bin/python bench/peers/a2a_sdk_server.py --port 8001

Built the way the SDK's documentation and samples build a server: an AgentExecutor,
the DefaultRequestHandler with an InMemoryTaskStore, the agent card route and the
JSON-RPC route on a Starlette app, served by uvicorn on 127.0.0.1. The JSON-RPC
endpoint is `/`; it speaks A2A 1.0 (`SendMessage`, `SendStreamingMessage`, `GetTask`,
`CancelTask`, with the header `A2A-Version: 1.0`) and, through the SDK's v0.3
compatibility, A2A 0.3 (`message/send`, `message/stream`, `tasks/get`,
`tasks/cancel`, no version header).

The executor does what a typical author does with this SDK and nothing more: it
publishes through a TaskUpdater, runs blocking work with `asyncio.to_thread`, runs
commands with an asyncio subprocess, and on cancel publishes the `canceled` status
(`TaskUpdater.cancel`) as the SDK's AgentExecutor.cancel docstring asks; the SDK
itself then cancels the asyncio task running `execute`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn
from a2a.helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Message, TaskState
from demo_work import COMMANDS, STEP, parse, seconds, spin, steps, trace
from starlette.applications import Starlette

HOST = "127.0.0.1"


def _says(updater: TaskUpdater, text: str) -> Message:
    return updater.new_agent_message([new_text_part(text)])


class DemoAgentExecutor(AgentExecutor):
    """echo, sleep, spin and shell, as in `andon.agents.demo`."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
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
                    trace(task.id, step)
                    await updater.update_status(
                        TaskState.TASK_STATE_WORKING,
                        message=_says(updater, f"step {step + 1}/{total}"),
                    )
                await updater.complete(_says(updater, "slept"))
            elif command == "spin":
                await updater.start_work()
                done = await asyncio.to_thread(spin, task.id, seconds(rest))
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
        first = True
        while line := await proc.stdout.readline():
            await updater.add_artifact(
                [new_text_part(line.decode(errors="replace"))],
                artifact_id="output",
                name="output",
                append=not first,
            )
            first = False
        code = await proc.wait()
        if code == 0:
            await updater.complete()
        else:
            await updater.failed(_says(updater, f"command exited with {code}"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel()


def agent_card(port: int) -> AgentCard:
    return AgentCard(
        name="a2a-sdk demo",
        description="The andon demo agent (echo, sleep, spin, shell) on a2a-sdk.",
        version="1.0.0",
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        capabilities=AgentCapabilities(streaming=True),
        supported_interfaces=[
            AgentInterface(
                protocol_binding="JSONRPC", protocol_version="1.0", url=f"http://{HOST}:{port}/"
            ),
        ],
        skills=[
            AgentSkill(
                id="demo",
                name="Demo commands",
                description="echo, sleep, spin or shell, then an argument",
                tags=["demo", "cancellation"],
                examples=["echo hello", "sleep 30", "spin 10", "shell ls -l"],
            )
        ],
    )


def build_app(port: int) -> Starlette:
    card = agent_card(port)
    handler = DefaultRequestHandler(
        agent_executor=DemoAgentExecutor(),
        task_store=InMemoryTaskStore(),
        agent_card=card,
    )
    routes = create_agent_card_routes(card)
    routes += create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True)
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8001")))
    args = parser.parse_args()
    uvicorn.run(build_app(args.port), host=HOST, port=args.port)


if __name__ == "__main__":
    main()
