"""The dispatcher contract: hand attempts to workers, carry cancel and answer signals."""

from __future__ import annotations

import abc
import asyncio

from andon.protocol.types import Message
from andon.store.base import TaskRecord
from andon.telemetry.observe import NO_OBSERVER, Observer


class Dispatcher(abc.ABC):
    observer: Observer = NO_OBSERVER
    """Told of dispatch failures (`dispatch_failed`)."""
    containment: str = "none"
    """How the attempts run here contain their processes (`cgroup`, `subreaper`), or
    `none` when this process runs no attempts."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def pause(self) -> None:
        """Start no further attempts here (queued tasks stay `submitted`)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop taking new attempts (running ones are ended by the service first)."""

    @abc.abstractmethod
    async def dispatch(self, task_id: str, conversation: str, *, serial: bool = False) -> None:
        """Queue the task to start. `serial`: start only after the earlier tasks of its
        `conversation` (its owner's context, see `service.conversation`) have ended
        (the `enqueue` context policy)."""

    @abc.abstractmethod
    async def cancel(self, record: TaskRecord) -> None:
        """The task's record now says `canceling`: wake the attempt of its epoch, wherever
        it runs, which stops as the stored record says (any other attempt ignores it)."""

    @abc.abstractmethod
    async def answer(self, task_id: str, epoch: int | None, message: Message) -> None:
        """Deliver the user's answer to the attempt waiting in input-required."""

    @abc.abstractmethod
    def running(self) -> list[str]:
        """Task ids with an attempt running in this process."""

    @abc.abstractmethod
    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no attempt runs here; False if some still run after `timeout`."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise unless tasks can be handed to workers now (a readiness probe)."""


async def set_within(event: asyncio.Event, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `event`; whether it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
