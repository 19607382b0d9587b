"""The running task, for code that is not handed its context: a framework's tool, a
model client made at import time.

The supervisor binds a task's context for its handler; asyncio tasks and the attempt's
threads started from there inherit it (they copy the context variables), so a LangGraph
node, a pydantic-ai tool or an SDK's request made for the task finds it.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

from andon.runtime.context import TaskContext

if TYPE_CHECKING:
    import httpx

_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "andon_current_task", default=None
)


def bind_task(ctx: TaskContext) -> None:
    """Make `ctx` the current task for the code that runs from here on (the handler)."""
    _current.set(ctx)


def current_task() -> TaskContext:
    """The context of the task this code runs for: its `run`, `emit`, `http`, ... are
    owned by the task's attempt. LookupError outside a task."""
    ctx = _current.get()
    if ctx is None:
        raise LookupError("not running for an andon task (current_task() is for agent code)")
    return ctx


def task_http_client(**options: object) -> httpx.AsyncClient:
    """An httpx.AsyncClient to hand an SDK that is made before any task runs (a model
    built at import time, as LangGraph's and other frameworks' examples do): each of its
    requests goes over the current task's client, which andon closes when the task ends
    or is cancelled — so the server sees the disconnect and stops. `options` are
    httpx.AsyncClient's (a timeout, headers)."""
    import httpx

    from andon.runtime.transports import TaskTransport

    transport = TaskTransport(_current.get)
    return httpx.AsyncClient(transport=transport, **options)  # type: ignore[arg-type]
