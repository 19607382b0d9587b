"""Threads that belong to an attempt.

Blocking code started inside an attempt — `ctx.to_thread`, a synchronous handler, and
what frameworks start through `asyncio.to_thread` or `loop.run_in_executor(None, ...)` —
runs on a thread recorded by that attempt: a cancel waits for it, and one that will not
return by the hard deadline is named (its function, and the file and line where it is
blocked) instead of being forgotten. The loop's default executor routes each call by
the context variable `current_threads`, which is set for the attempt's coroutine and,
through the copied context, inside each of its threads (so `andon.check()` works there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from andon.runtime.scope import CancelScope

T = TypeVar("T")

current_threads: contextvars.ContextVar[AttemptThreads | None] = contextvars.ContextVar(
    "andon_attempt_threads", default=None
)
thread_label: contextvars.ContextVar[Callable[[], str | None] | None] = contextvars.ContextVar(
    "andon_thread_label", default=None
)
"""Set by a framework integration: names, from the submitting context, what a thread
runs (`langgraph node 'fetch'`) where the function would only name the framework's
wrapper; None falls back to the function's name."""


class AttemptThreads:
    """The threads one attempt started, each with what it runs."""

    def __init__(self, scope: CancelScope, name: str) -> None:
        self.scope = scope
        self.name = name
        self._running: dict[threading.Thread, str] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._ended: asyncio.Event | None = None
        """Set as each thread returns; made with the first thread (most attempts have none)."""

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Run `fn` on a new thread of the attempt, in a copy of the caller's context."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        context = contextvars.copy_context()
        context.run(current_threads.set, self)
        namer = thread_label.get()
        label = (namer() if namer else None) or getattr(fn, "__qualname__", None) or repr(fn)

        def body() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(context.run(fn, *args, **kwargs))
                    except BaseException as exc:
                        future.set_exception(exc)
            finally:
                with self._lock:
                    del self._running[thread]
                with contextlib.suppress(RuntimeError):  # the loop may be gone at exit
                    self._loop.call_soon_threadsafe(ended.set)

        thread = threading.Thread(target=body, name=f"andon-{self.name}-{label}", daemon=True)
        with self._lock:
            self._running[thread] = label
            if self._ended is None:
                self._ended = asyncio.Event()
        ended = self._ended
        thread.start()
        return future

    async def wait(self, timeout: float) -> list[str]:
        """Wait for every thread to return; describe those still running after `timeout`."""
        ended = self._ended
        if ended is None:
            return []  # no thread was ever started
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                while True:
                    ended.clear()
                    if not self._running:
                        break
                    await ended.wait()
        with self._lock:
            running = list(self._running.items())
        frames = sys._current_frames()
        return [_describe(label, frames.get(t.ident or -1)) for t, label in running]


def _describe(label: str, frame: Any) -> str:
    """`thread <function> at <file>:<line> in <function>`: what the thread was started
    with, and where it is blocked right now (a framework starts its tools through a
    wrapper, `Context.run` for one: the function it is blocked in names the tool)."""
    if frame is None:
        return f"thread {label}"
    code = frame.f_code
    return f"thread {label} at {code.co_filename}:{frame.f_lineno} in {code.co_name}"


class AttemptExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's default executor: a call made inside an attempt runs on a thread
    of that attempt; any other call on the usual shared pool."""

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        threads = current_threads.get()
        if threads is None:
            return super().submit(fn, *args, **kwargs)
        return threads.submit(fn, *args, **kwargs)


_installed: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def install_executor(loop: asyncio.AbstractEventLoop) -> None:
    """Make the attempt executor the loop's default (once per loop)."""
    if loop not in _installed:
        loop.set_default_executor(AttemptExecutor(thread_name_prefix="asyncio"))
        _installed.add(loop)


def check() -> None:
    """A checkpoint for any code running for an attempt, in any of its threads or its
    coroutine: raises TaskCancelled once the task is being cancelled; does nothing
    outside an attempt. Library code can call it without a context in hand."""
    threads = current_threads.get()
    if threads is not None:
        threads.scope.raise_if_cancelled(step_boundary=True)
