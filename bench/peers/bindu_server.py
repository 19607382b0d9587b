"""The demo agent on Bindu (PyPI `bindu`, Python 3.12), for the benchmark.

    bench/.venvs/bindu/bin/python bench/peers/bindu_server.py --port 8002

The smallest way Bindu's documentation gives to serve an agent function: one
handler `(messages) -> result` handed to `bindufy(config, handler)`, which builds
the Bindu Starlette app (in-memory storage, in-memory scheduler, one worker) and
runs it with uvicorn. The config turns off everything that would reach out of this
machine: no auth (Hydra), no mTLS, no x402 payments, no tunnel (`expose: False`),
no telemetry export, no push webhooks; storage and scheduler are the in-memory
ones. The DID keys Bindu insists on generating, and its log file, are written under
`bench/.venvs/bindu-state/` (git-ignored), which is also its working directory.

Endpoint: JSON-RPC on `POST /`, A2A 0.3 style (`message/send`, `message/stream`,
`tasks/get`, `tasks/cancel`; camelCase or snake_case fields, `kind` tags); the
client must supply `messageId`, `contextId` and `taskId` (UUIDs). Agent card at
`/.well-known/agent.json`.

Bindu hands the handler only the message history, so the task id for the trace
lines is read from the last message (`task_id`, which Bindu fills in). The handler
is an async generator, Bindu's streaming form: each `sleep` step yields a progress
line (Bindu keeps only the last yield as the result; its `message/stream` reports
state changes and final artifacts by polling storage, not the yields). `spin` uses
`asyncio.to_thread` and `shell` an asyncio subprocess, as a typical author would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
STATE_DIR = HERE.parent / ".venvs" / "bindu-state"

# Importing Bindu reads a `.env` from the working directory and opens a log file in
# `logs/` under it: give it a directory of its own (git-ignored) before the import.
STATE_DIR.mkdir(parents=True, exist_ok=True)
os.chdir(STATE_DIR)
sys.path.insert(0, str(HERE))

from bindu.penguin.bindufy import bindufy  # noqa: E402
from demo_work import COMMANDS, STEP, parse, seconds, spin, steps, trace  # noqa: E402


def _user_text(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """The text and task id of the last user message."""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = "".join(
                part.get("text", "")
                for part in message.get("parts", [])
                if part.get("kind") == "text"
            )
            return text, str(message.get("task_id", ""))
    return "", ""


async def handler(messages: list[dict[str, Any]]) -> AsyncIterator[str]:
    """echo, sleep, spin and shell, as in `andon.agents.demo`."""
    text, task_id = _user_text(messages)
    command, rest = parse(text)
    if command == "echo":
        yield rest
    elif command == "sleep":
        total = steps(seconds(rest))
        for step in range(total):
            await asyncio.sleep(STEP)
            trace(task_id, step)
            yield f"step {step + 1}/{total}"
        yield "slept"
    elif command == "spin":
        done = await asyncio.to_thread(spin, task_id, seconds(rest))
        yield f"spun {done} steps"
    elif command == "shell":
        if not rest:
            raise ValueError("shell needs a command")
        proc = await asyncio.create_subprocess_shell(
            rest, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert proc.stdout is not None
        output = []
        while line := await proc.stdout.readline():
            output.append(line.decode(errors="replace"))
        code = await proc.wait()
        if code != 0:
            raise RuntimeError(f"command exited with {code}")
        yield "".join(output)
    else:
        raise ValueError(f"unknown command {command!r}; try one of: {', '.join(COMMANDS)}")


def config(port: int) -> dict[str, Any]:
    return {
        "author": "bench@andon.invalid",
        "name": "bindu-demo",
        "description": "The andon demo agent (echo, sleep, spin, shell) on Bindu.",
        "version": "1.0.0",
        "deployment": {"url": f"http://{HOST}:{port}", "expose": False},
        "capabilities": {"streaming": True},
        "storage": {"type": "memory"},
        "scheduler": {"type": "memory"},
        "telemetry": False,
        # The structured-response system prompt is for LLM handlers; ours reads
        # only the last user message, so leave the history as the client sent it.
        "enable_system_message": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8002")))
    args = parser.parse_args()
    bindufy(config(args.port), handler, key_dir=STATE_DIR)


if __name__ == "__main__":
    main()
