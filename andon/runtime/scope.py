"""The cancel scope of one attempt: who asked to stop, how, and whether it may still act."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator
from typing import Any

from andon.protocol.types import CancelMode


class TaskCancelled(BaseException):
    """Raised inside an agent at a checkpoint once its task is being cancelled.

    A BaseException, like asyncio.CancelledError, so that `except Exception` in agent
    code does not swallow it.
    """


class Signal:
    """Something that happens once (a cancel asked for, the agent's end), which the
    coroutines waiting for it see in the loop's next turn.

    A future wakes its awaiters through callbacks that run a turn later, so waiting for
    the first of two futures (asyncio.wait, or a callback that sets a third) takes two
    turns; when a crowd of tasks runs, every turn is a pass over all of them, and a
    cancel's answer waits for each of its turns. `first` gives each wait a future of
    its own, which `set` completes directly.
    """

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] = []

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def is_set(self) -> bool:
        return self._set


async def first(*signals: Signal, timeout: float | None = None) -> None:
    """Return once any of `signals` is set, or after `timeout` seconds."""
    if any(signal.is_set() for signal in signals):
        return
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    timer = None if timeout is None else loop.call_later(timeout, _wake, woken)
    for signal in signals:
        signal._waiters.append(woken)
    try:
        await woken
    finally:
        if timer is not None:
            timer.cancel()
        for signal in signals:
            if woken in signal._waiters:
                signal._waiters.remove(woken)


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


class CancelScope:
    """Cancel state shared by the attempt's coroutine, its threads and its tools.

    Thread-safe to read: threads call `raise_if_cancelled` at their checkpoints.
    """

    def __init__(self, on_immediate: Callable[[], None] = lambda: None) -> None:
        self._on_immediate = on_immediate
        """Stops the scope's coroutine (the attempt cancels its agent's task)."""
        self.reason: str | None = None
        self.mode: CancelMode | None = None
        self.asked = Signal()
        """Set by the first cancel request."""
        self.immediate = Signal()
        """Set once the cancel is (or has become) immediate."""
        self._closed = False
        self._lock = threading.Lock()

    def request(self, reason: str, mode: CancelMode) -> bool:
        """Record a cancel; the first request wins, a later immediate one escalates.
        On the loop's thread only (it cancels a task and completes futures): threads
        read the scope, they never request."""
        with self._lock:
            if self.mode is None:
                self.reason, self.mode = reason, mode
            elif mode is CancelMode.IMMEDIATE and self.mode is CancelMode.GRACEFUL:
                self.mode = mode
            else:
                return False
        if self.mode is CancelMode.IMMEDIATE:
            # The coroutine first: waiting on a plain future (a sleep, a read), it
            # unwinds in the next turn, before its owner (woken by the signals) looks.
            self._on_immediate()
            self.immediate.set()
        self.asked.set()
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
        return first(self._scope.asked).__await__()
