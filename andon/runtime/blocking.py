"""SyncTaskContext: the task context of a synchronous (`def`) handler, which runs in a
thread of its attempt. Everything TaskContext offers, blocking; nothing async leaks
through, so a handler never holds a coroutine it cannot await."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from andon.protocol.types import Artifact, Message, Task
from andon.runtime.context import CommandResult, Content, TaskContext
from andon.runtime.scope import TaskCancelled

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

_READS = (
    "task_id",
    "context_id",
    "epoch",
    "message",
    "history",
    "metadata",
    "retry_of",
    "workdir",
    "text",
    "cancel_reason",
    "deadline",
    "time_left",
    "check",
    "reply",
    "on_cancel",
)


class SyncTaskContext:
    """Blocking methods over the async context: each call runs on the event loop and is
    aborted with the attempt; `http` is a blocking httpx.Client whose requests are cut
    off (sockets closed) when the task is cancelled."""

    def __init__(self, ctx: TaskContext) -> None:
        self._ctx = ctx
        self._attempt = ctx._attempt
        self._loop = asyncio.get_running_loop()

    def __getattr__(self, name: str) -> Any:
        if name in _READS:
            return getattr(self._ctx, name)
        hint = ""
        if hasattr(TaskContext, name):
            hint = f" (TaskContext.{name} is for async handlers; write the handler as `async def`)"
        raise AttributeError(f"SyncTaskContext has no attribute {name!r}{hint}")

    @property
    def stopping(self) -> bool:
        """True once a cancel was requested (a graceful one lets the current step finish)."""
        return bool(self._ctx.stopping)

    @property
    def http(self) -> httpx.Client:
        """A blocking HTTP client owned by the attempt."""
        self._ctx._ensure_active()
        return self._attempt.http.blocking_client()

    def emit(self, content: Content, **options: Any) -> None:
        self._call(self._ctx.emit(content, **options))

    def progress(self, text: str) -> None:
        self._call(self._ctx.progress(text))

    def ask(self, question: str) -> str:
        return self._call(self._ctx.ask(question))

    def ask_message(self, question: str) -> Message:
        return self._call(self._ctx.ask_message(question))

    def run(self, command: str | Sequence[str], **options: Any) -> CommandResult:
        return self._call(self._ctx.run(command, **options))

    def run_process(self, fn: Any, /, *args: Any) -> Any:
        return self._call(self._ctx.run_process(fn, *args))

    def write_file(self, path: str | Path, data: str | bytes | Iterable[str | bytes]) -> Path:
        return self._call(self._ctx.write_file(path, data))

    def retried_artifacts(self) -> list[Artifact]:
        return self._call(self._ctx.retried_artifacts())

    def call_agent(self, url: str, message: str | Message, **options: Any) -> Task:
        """Delegate to another A2A agent and wait for its task to complete (see
        `TaskContext.call_agent`)."""
        return self._call(self._ctx.call_agent(url, message, **options).result())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of the context's coroutines on the loop, owned by the attempt."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        calls = self._attempt.portal_calls
        calls.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise TaskCancelled(self._attempt.scope.reason or "cancelled") from None
        finally:
            calls.discard(future)
