"""The first screen of `andon serve`: where the page is, what is served, a line to try,
where the tasks are kept, and what a stream closed early does to its task."""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

from andon.runtime.agent import Agent
from andon.server.streams import DisconnectPolicy
from andon.store import redact

DEMO_TRY = "sleep 30"

# uvicorn's own start and stop lines: the banner and andon's lines say it for people.
UVICORN_LIFECYCLE = (
    "Started server process",
    "Waiting for application startup",
    "Application startup complete",
    "Uvicorn running on",
    "Shutting down",
    "Waiting for application shutdown",
    "Application shutdown complete",
    "Finished server process",
)


@dataclass(frozen=True)
class Serving:
    """What one `andon serve` process serves, as its banner tells it."""

    agent: Agent
    url: str
    db: str
    distributed: bool
    on_disconnect: DisconnectPolicy
    auth: bool
    drain: float
    runs_tasks: str
    """Who runs the tasks: `this process`, `2 andon worker processes`, ..."""
    containment: str
    """How this process holds the processes of its tasks (andon.runtime.containment):
    `cgroup`, `subreaper`, or `none` when it runs no tasks."""


def try_line(serving: Serving) -> str:
    """An `andon send` command for this agent (the demo's: a long task to cancel)."""
    examples = [e for s in serving.agent.skills for e in s.examples]
    text = DEMO_TRY if DEMO_TRY in examples else (examples[0] if examples else "hello")
    url = "" if serving.url == "http://127.0.0.1:8000" else f" --url {serving.url}"
    return f"andon send{url} {shlex.quote(text)}"


def disconnect_words(policy: DisconnectPolicy) -> str:
    if policy.kind == "cancel":
        return "cancels its task (--on-disconnect cancel)"
    if policy.kind == "cancel-when-orphaned":
        return (
            f"leaves its task running; a task no stream has followed for "
            f"{policy.orphan_after:g} s is cancelled (--on-disconnect {policy})"
        )
    return (
        "leaves its task running (--on-disconnect continue, A2A's default; "
        "--on-disconnect cancel cancels it)"
    )


def contained(kind: str) -> str:
    if kind == "none":
        return ""
    return f"; their processes are held in a {kind} cell and die with them"


def banner(serving: Serving) -> str:
    agent = serving.agent
    skills = ", ".join(agent.skill_ids) or "none"
    noun = "skill" if len(agent.skills) == 1 else "skills"
    store = (
        f"{redact(serving.db)} (PostgreSQL)"
        if serving.distributed
        else f"{Path(serving.db).resolve()} (SQLite)"
    )
    auth = (
        "bearer tokens (--auth tokens)" if serving.auth else "none: whoever reaches it runs tasks"
    )
    lines = [
        f"■ andon · serving {agent.name!r} ({noun}: {skills})",
        f"  web page     {serving.url}/",
        f"  API docs     {serving.url}/docs",
        f"  try it       {try_line(serving)}   then Ctrl+C there: the task stops",
        f"  tasks kept   {store}",
        f"  tasks run    {serving.runs_tasks}{contained(serving.containment)}",
        f"  auth         {auth}",
        f"  a stream closed early {disconnect_words(serving.on_disconnect)}",
        f"  Ctrl+C here stops the server (running tasks get {serving.drain:g} s, then are "
        "cancelled)",
    ]
    return "\n".join(lines)


class QuietLifecycle(logging.Filter):
    """Drops uvicorn's start and stop lines (the banner replaces them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(UVICORN_LIFECYCLE))
