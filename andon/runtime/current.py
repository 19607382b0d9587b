"""The running task, for code that is not handed its context: a framework's tool, a
model client made at import time.

The supervisor binds a task's context for its handler; asyncio tasks and the attempt's
threads started from there inherit it (they copy the context variables), so a LangGraph
node, a pydantic-ai tool or an SDK's request made for the task finds it.
"""

from __future__ import annotations

import contextvars

import httpx

from andon.runtime.context import TaskContext

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


class _TaskTransport(httpx.AsyncBaseTransport):
    """Sends each request over the running task's own client (`ctx.http`), so a cancel
    closes its connection; outside a task, over a pool of its own."""

    def __init__(self) -> None:
        self._outside = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx = _current.get()
        if ctx is None:
            return await self._outside.handle_async_request(request)
        response = await ctx.http.send(request, stream=True)
        # The caller's client reads and closes the body; closing it closes the task
        # client's response (its connection goes back to the task's pool, or is dropped).
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=response.stream,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._outside.aclose()


def task_http_client(**options: object) -> httpx.AsyncClient:
    """An httpx.AsyncClient to hand an SDK that is made before any task runs (a model
    built at import time, as LangGraph's and other frameworks' examples do): each of its
    requests goes over the current task's client, which andon closes when the task ends
    or is cancelled — so the server sees the disconnect and stops. `options` are
    httpx.AsyncClient's (a timeout, headers)."""
    return httpx.AsyncClient(transport=_TaskTransport(), **options)  # type: ignore[arg-type]
