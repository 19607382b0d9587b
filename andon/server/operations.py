"""The A2A operations, independent of binding and version: both JSON-RPC and HTTP+JSON,
in 1.0 and 0.3, decode into the canonical params, call these, and encode what they
return. Each one is a thin call into TaskService."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from andon.protocol.errors import InvalidParams, UnsupportedOperation
from andon.protocol.params import (
    CancelManyParams,
    CancelTaskParams,
    GetTaskParams,
    ListPushConfigsParams,
    ListTasksParams,
    PushConfigParams,
    PushConfigRef,
    PushNotificationConfig,
    RetryParams,
    SendMessageParams,
    SubscribeParams,
)
from andon.protocol.types import DIRECT_REPLY, CancelMode, Message, Task, TaskState
from andon.server.streams import DisconnectPolicy, Subscribers, follow_task
from andon.service import CancelOutcome, Principal, TaskList, TaskRecord, TaskService

WAIT_UNTIL = frozenset(
    {*(s for s in TaskState if s.terminal), TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED}
)


MAX_SEQ = 2**63 - 1
"""The largest event number: the stores keep them as 64-bit integers."""


def _event_number(text: str) -> int:
    """A Last-Event-ID as the number of the event to resume after (0: from the start)."""
    if text.isascii() and text.isdigit() and int(text) <= MAX_SEQ:
        return int(text)
    raise InvalidParams(f"Last-Event-ID must be an event number (0 to {MAX_SEQ}), got {text!r}")


@dataclass(frozen=True, slots=True)
class Update:
    """One item of a task stream: its sequence number (the SSE id) and what it carries:
    the whole Task (the first item) or an event of the task's log."""

    seq: int
    kind: str
    """`task`, or the kind of the log event: `status`, `progress`, `artifact`."""
    task_id: str
    context_id: str
    payload: Task | dict[str, Any]
    final: bool = False


class Operations:
    def __init__(self, service: TaskService, subscribers: Subscribers, send_wait: float) -> None:
        self.service = service
        self.subscribers = subscribers
        self.send_wait = send_wait

    async def send(
        self, params: SendMessageParams, principal: Principal, version: str = "1.0"
    ) -> Task | Message:
        """SendMessage: by default waits until the task ends or needs input. A task its
        agent answered with `ctx.reply` is answered with that message."""
        record = await self._submit(params, principal, version)
        config = params.configuration
        history = config.history_length if config else None
        stopped = None
        if config is None or config.blocking:
            wait = self.send_wait
            stopped = await self.service.wait(record.id, record.last_seq - 1, wait, WAIT_UNTIL)
        if stopped is not None:  # as the wait read it: the sender's own task, as it is now
            task = await self.service.view(stopped, history)
        else:
            task = await self.service.get(record.id, principal, history)
        metadata = task.metadata or {}
        if task.status.state is TaskState.COMPLETED and metadata.get(DIRECT_REPLY):
            return task.status.message or task
        return task

    async def stream(
        self,
        params: SendMessageParams,
        principal: Principal,
        policy: DisconnectPolicy,
        version: str = "1.0",
    ) -> AsyncIterator[Update]:
        """SendStreamingMessage: the Task first, then its events. The log is read from
        the task's first event, so nothing the agent does is missed."""
        record = await self._submit(params, principal, version)
        view = await self.service.view(record)
        return self._stream(view, record, record.last_seq, policy, first=True)

    async def _submit(
        self, params: SendMessageParams, principal: Principal, version: str
    ) -> TaskRecord:
        config = params.configuration
        return await self.service.submit(
            params.message,
            principal,
            metadata=params.metadata,
            push=config.push_notification_config if config else None,
            version=version,
        )

    async def subscribe(
        self,
        params: SubscribeParams,
        principal: Principal,
        last_event_id: str | None,
        policy: DisconnectPolicy,
    ) -> AsyncIterator[Update]:
        """SubscribeToTask / tasks/resubscribe. With a last event id, replays what came
        after it (an ended task included, up to its final event); without, starts with
        the task as it is, and an ended task is UnsupportedOperation."""
        resume = last_event_id or params.last_event_id
        task, record = await self.service.snapshot(params.id, principal)
        after = _event_number(resume) if resume is not None else None
        # Resuming an ended task after its last event would replay nothing: an empty
        # stream that looks like success. It is answered as a subscribe without an id.
        if after is not None and not (task.status.state.terminal and after >= record.last_seq):
            return self._stream(task, record, after, policy, first=False)
        if task.status.state.terminal:
            raise UnsupportedOperation(
                f"task {params.id} has ended ({task.status.state.value}); use GetTask"
            )
        return self._stream(task, record, record.last_seq, policy, first=True)

    async def _stream(
        self,
        task: Task,
        record: TaskRecord,
        after_seq: int,
        policy: DisconnectPolicy,
        *,
        first: bool,
    ) -> AsyncIterator[Update]:
        """`task` first (if `first`), then its events after `after_seq`. `record` is the
        task as read when access was checked: its `last_seq` tells a replayed question
        from a live one."""
        task_id, context_id = task.id, task.context_id
        events = follow_task(self.service, self.subscribers, record, after_seq, policy)
        if first:
            await self.service.committed()  # the task shown was stored (the events wait too)
            yield Update(after_seq, "task", task_id, context_id, task)
        del task  # not kept for the stream's whole life: a crowd holds thousands open
        async with contextlib.aclosing(events):
            async for event in events:
                yield Update(event.seq, event.kind, task_id, context_id, event.data, event.final)

    async def get(self, params: GetTaskParams, principal: Principal) -> Task:
        return await self.service.get(params.id, principal, params.history_length)

    async def list(self, params: ListTasksParams, principal: Principal) -> TaskList:
        return await self.service.list(
            principal,
            context_id=params.context_id,
            states={params.status} if params.status else None,
            page_size=params.page_size,
            page_token=params.page_token,
            history_length=params.history_length if params.history_length is not None else 0,
            include_artifacts=params.include_artifacts,
        )

    async def cancel(self, params: CancelTaskParams, principal: Principal) -> Task:
        return await self.service.cancel(
            params.id,
            principal,
            reason=params.reason or "user",
            wait=params.wait,
            mode=CancelMode(params.mode or "immediate"),
        )

    async def cancel_many(
        self, params: CancelManyParams, principal: Principal
    ) -> builtins.list[CancelOutcome]:
        return await self.service.cancel_many(
            principal,
            ids=params.ids,
            context_id=params.context_id,
            states=set(params.states) if params.states is not None else None,
            reason=params.reason,
            wait=params.wait,
        )

    async def set_push_config(
        self, params: PushConfigParams, principal: Principal, version: str
    ) -> PushNotificationConfig:
        return await self.service.set_push_config(params.task_id, principal, params.config, version)

    async def get_push_config(
        self, params: PushConfigRef, principal: Principal
    ) -> PushNotificationConfig:
        return await self.service.get_push_config(params.task_id, principal, params.id)

    async def list_push_configs(
        self, params: ListPushConfigsParams, principal: Principal
    ) -> builtins.list[PushNotificationConfig]:
        return await self.service.list_push_configs(params.task_id, principal)

    async def delete_push_config(self, params: PushConfigRef, principal: Principal) -> None:
        await self.service.delete_push_config(params.task_id, principal, params.id)

    async def retry(self, params: RetryParams, principal: Principal) -> Task:
        record = await self.service.retry(params.id, principal)
        return await self.service.view(record)
