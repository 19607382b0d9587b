"""Streams of task events for every transport, and the disconnect policy.

A stream reads the task's durable log from a sequence number, so a slow client only
falls behind in the log (it never holds events in memory or slows the task) and a
reconnecting client resumes from its last event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from andon.protocol.errors import InvalidParams
from andon.protocol.types import CancelReason, TaskState
from andon.service import Event, TaskRecord, TaskService

log = logging.getLogger("andon.server")

STREAM_END_STATES = frozenset(
    {*(s.value for s in TaskState if s.terminal), "input-required", "auth-required"}
)


@dataclass(frozen=True)
class DisconnectPolicy:
    """What a stream closed by its client before the final event does to the task."""

    kind: str  # "continue" | "cancel" | "cancel-when-orphaned"
    orphan_after: float = 0.0

    @classmethod
    def parse(cls, text: str) -> DisconnectPolicy:
        value = text.strip().lower()
        if value in ("continue", "cancel"):
            return cls(value)
        name, _, seconds = value.partition("=")
        if name == "cancel-when-orphaned":
            try:
                after = float(seconds)
            except ValueError:
                after = -1.0
            if after >= 0:
                return cls(name, after)
        raise InvalidParams(
            f"invalid disconnect policy {text!r}: use continue, cancel or "
            "cancel-when-orphaned=SECONDS"
        )

    def __str__(self) -> str:
        if self.kind == "cancel-when-orphaned":
            return f"{self.kind}={self.orphan_after:g}"
        return self.kind


class Subscribers:
    """Streams attached to each task in this process, and the orphan timers."""

    def __init__(self, service: TaskService) -> None:
        self.service = service
        self._counts: dict[str, int] = {}
        self._orphan_timers: dict[str, asyncio.TimerHandle] = {}
        self._cancels: set[asyncio.Task[None]] = set()

    @property
    def open_streams(self) -> int:
        return sum(self._counts.values())

    def attach(self, task_id: str) -> None:
        self._counts[task_id] = self._counts.get(task_id, 0) + 1
        timer = self._orphan_timers.pop(task_id, None)
        if timer is not None:
            timer.cancel()

    def detach(self, task_id: str, policy: DisconnectPolicy, *, before_final: bool) -> None:
        left = self._counts.get(task_id, 1) - 1
        if left > 0:
            self._counts[task_id] = left
        else:
            self._counts.pop(task_id, None)
        if not before_final:
            return
        if policy.kind == "cancel":
            self._cancel(task_id, CancelReason.CLIENT_DISCONNECT)
        elif policy.kind == "cancel-when-orphaned" and left <= 0:
            loop = asyncio.get_running_loop()
            self._orphan_timers[task_id] = loop.call_later(
                policy.orphan_after, self._orphaned, task_id
            )

    def _orphaned(self, task_id: str) -> None:
        self._orphan_timers.pop(task_id, None)
        if not self._counts.get(task_id):
            self._cancel(task_id, CancelReason.ORPHANED)

    def _cancel(self, task_id: str, reason: str) -> None:
        # The stream's own coroutine is being torn down: the cancel runs as its own task.
        request = asyncio.create_task(self.service.request_cancel(task_id, reason))
        self._cancels.add(request)
        request.add_done_callback(self._cancels.discard)

    async def close(self) -> None:
        for timer in self._orphan_timers.values():
            timer.cancel()
        self._orphan_timers.clear()
        if self._cancels:
            await asyncio.wait(list(self._cancels), timeout=5)


async def follow_task(
    service: TaskService,
    subscribers: Subscribers,
    record: TaskRecord,
    after_seq: int,
    policy: DisconnectPolicy,
) -> AsyncGenerator[Event, None]:
    """The events after `after_seq` of the task whose record its caller was given (and
    so may see), ending after the final event or an interrupted state. If the consumer
    stops early (the client went away), the disconnect policy decides what happens to
    the task."""
    task_id = record.id
    events = service.follow(record, after_seq)
    subscribers.attach(task_id)
    ended = False
    try:
        async for event in events:
            if event.kind == "message":
                continue  # history only: the user's own messages are not streamed back
            # A replayed question that was answered since does not end a resumed stream.
            ended = event.final or (
                event.kind == "status"
                and event.data["state"] in STREAM_END_STATES
                and event.seq >= record.last_seq
            )
            yield event
            if ended:
                return
        ended = True  # the server ended the stream (it is stopping), not the client
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()
        subscribers.detach(task_id, policy, before_final=not ended)
