"""The cancel scope of one attempt: who asked to stop, how, and whether it may still act."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from typing import Any

from andon.protocol.types import CancelMode


class TaskCancelled(BaseException):
    """Raised inside an agent at a checkpoint once its task is being cancelled.

    A BaseException, like asyncio.CancelledError, so that `except Exception` in agent
    code does not swallow it.
    """


class CancelScope:
    """Cancel state shared by the attempt's coroutine, its threads and its tools.

    Thread-safe to read: threads call `raise_if_cancelled` at their checkpoints.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.mode: CancelMode | None = None
        self._requested: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._immediate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed = False
        self._lock = threading.Lock()

    def request(self, reason: str, mode: CancelMode) -> bool:
        """Record a cancel; the first request wins, a later immediate one escalates."""
        with self._lock:
            if self.mode is None:
                self.reason, self.mode = reason, mode
            elif mode is CancelMode.IMMEDIATE and self.mode is CancelMode.GRACEFUL:
                self.mode = mode
            else:
                return False
        if not self._requested.done():
            self._requested.set_result(None)
        if self.mode is CancelMode.IMMEDIATE and not self._immediate.done():
            self._immediate.set_result(None)
        return True

    def close(self) -> None:
        """The attempt is over: nothing done through the context is accepted any more."""
        self._closed = True

    @property
    def requested(self) -> bool:
        return self.mode is not None

    @property
    def closed(self) -> bool:
        return self._closed

    async def requested_or_done(self, work: asyncio.Future[Any]) -> None:
        """Return once a cancel is requested or `work` is done, whichever comes first:
        asyncio.wait for the two, without the two frames, set, shield and closures it
        holds while it waits (every running attempt waits so, all its life)."""
        if self._requested.done() or work.done():
            return
        woken = asyncio.get_running_loop().create_future()

        def wake(_: object) -> None:
            if not woken.done():
                woken.set_result(None)

        self._requested.add_done_callback(wake)
        work.add_done_callback(wake)
        try:
            await woken
        finally:
            self._requested.remove_done_callback(wake)
            work.remove_done_callback(wake)

    async def wait_requested(self) -> None:
        await asyncio.shield(self._requested)

    async def wait_immediate(self) -> None:
        await asyncio.shield(self._immediate)

    def raise_if_cancelled(self, *, step_boundary: bool) -> None:
        """At a step boundary any cancel stops the agent; inside a step only an immediate
        one does (a graceful cancel lets the current step finish)."""
        if self._closed or self.mode is CancelMode.IMMEDIATE or (step_boundary and self.mode):
            raise TaskCancelled(self.reason or "cancelled")


class Stopping:
    """`ctx.stopping`: true once a cancel was requested, and awaitable until then."""

    def __init__(self, scope: CancelScope) -> None:
        self._scope = scope

    def __bool__(self) -> bool:
        return self._scope.requested

    def __await__(self) -> Generator[Any, None, None]:
        return self._scope.wait_requested().__await__()
