"""TaskService: the one entry for submit / get / list / cancel / subscribe / answer /
retry. Every transport (JSON-RPC, HTTP+JSON, the web UI, the CLI through them) and
every cancel source (users, deadlines, disconnects, operators, shutdown) calls it."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from andon.dispatch.base import Dispatcher
from andon.options import RETRY_OF, client_options, holds_nul, refuse_nul
from andon.protocol.errors import (
    InvalidParams,
    PushNotificationNotSupported,
    TaskNotCancelable,
    TaskNotFound,
    UnsupportedOperation,
)
from andon.protocol.params import PushNotificationConfig
from andon.protocol.types import (
    ACTIVE_STATES,
    STREAM_END,
    CancelMode,
    CancelReason,
    FailReason,
    Message,
    Role,
    Task,
    TaskState,
    TaskStatus,
    agent_text,
    new_id,
)
from andon.push import configs
from andon.push.policy import RefusedURL
from andon.push.sender import PushSender, PushSettings
from andon.runtime.agent import SKILL_KEY, Agent, UnknownSkill
from andon.runtime.orphans import Orphans
from andon.store.base import Event as Event  # what transports stream
from andon.store.base import NewTask, Store, fold_artifacts, status_event_data
from andon.store.base import TaskRecord as TaskRecord  # what submit returns to transports
from andon.store.push import PushConfig
from andon.telemetry import tracing
from andon.telemetry.hub import Telemetry

log = logging.getLogger("andon.service")

LOST_IN_RESTART = (
    "the andon process running this task stopped (killed or crashed) before the task "
    "ended, and its work stopped with it; `andon retry` runs the task again"
)

INTERRUPTED_STATES = frozenset({TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED})
UNFINISHED_STATES = frozenset({TaskState.SUBMITTED, *ACTIVE_STATES})


class ContextPolicy(StrEnum):
    """What a new task does while another task of its context is still running."""

    PARALLEL = "parallel"
    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Literal["user", "admin"] = "user"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


SYSTEM = Principal("andon", "admin")


@dataclass(frozen=True)
class ServiceSettings:
    cancel_wait: float = 10.0
    """How long a cancel call waits for the task to stop before returning it as it is."""
    context_policy: ContextPolicy = ContextPolicy.PARALLEL
    timeout: float | None = None
    idle_timeout: float | None = None
    input_timeout: float | None = None
    push: PushSettings | None = field(default_factory=PushSettings)
    """Push notifications (None: not offered): the URL policy, retries, timeouts."""
    max_parts: int = 100
    """Parts a message may have: each costs its task's every read (GetTask, streams)."""

    def check_parts(self, count: int) -> None:
        if count > self.max_parts:
            raise InvalidParams(
                f"a message may have at most {self.max_parts} parts, not {count} (max_parts)"
            )


@dataclass(frozen=True)
class TaskList:
    tasks: list[Task]
    next_page_token: str
    total_size: int
    page_size: int


@dataclass
class CancelOutcome:
    task_id: str
    task: Task | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TaskService:
    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        agent: Agent,
        settings: ServiceSettings | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.agent = agent
        """The agent served: its card and A2A versions, and its skills (a task asking
        for another is refused when it is submitted, not failed later)."""
        self.dispatcher = dispatcher
        self.settings = settings or ServiceSettings()
        self.telemetry = telemetry or Telemetry()
        self.skills = agent.skill_ids
        self.push: PushSender | None = None
        """Delivers push notifications; None: this service offers none."""
        self.orphans = Orphans()
        """Cancels the children of tasks this process failed worker_lost."""
        self._accepting = False

    # -- life cycle ------------------------------------------------------------------

    async def start(self, *, recover: bool = True) -> None:
        """Start dispatching. With `recover` (one process owning the store), tasks a
        crashed process left running are failed `worker_lost`, and tasks still
        `submitted` are dispatched again."""
        if recover:
            lost = await self.store.fail_unfinished(
                FailReason.WORKER_LOST, agent_text(LOST_IN_RESTART)
            )
            if lost:
                log.warning("failed %d task(s) left running by a previous process", len(lost))
            for task_id in lost:
                if (record := await self.store.get_task(task_id)) is not None:
                    self.orphans.adopt(record)
        await self.dispatcher.start()
        self._accepting = True
        if recover:
            for task_id in await self.store.submitted_ids():
                record = await self.store.get_task(task_id)
                if record is not None:
                    await self.dispatcher.dispatch(task_id, conversation(record))

    async def shutdown(self, drain: float = 0.0) -> None:
        """Stop taking tasks, let running ones finish for `drain` seconds, then cancel
        what is left with reason `shutdown`. Queued tasks stay `submitted`; their
        streams end with a notice saying so (`follow_task`)."""
        self._accepting = False
        await self.dispatcher.pause()
        if drain > 0:
            await self.dispatcher.wait_idle(drain)
        running = self.dispatcher.running()
        if running:
            await asyncio.gather(*(self._cancel_quietly(t, CancelReason.SHUTDOWN) for t in running))
        await self.dispatcher.stop()
        await self.orphans.close()
        # Streams and waiting requests of tasks left queued (or, in an API process,
        # running on workers) end now, each saying so, instead of being cut.
        self.store.notifier.close()

    async def readiness(self, timeout: float = 2.0) -> dict[str, str]:
        """For the store and for dispatch: `ok`, or why not (the readiness probe)."""
        found: dict[str, str] = {}
        for name, ping in (("store", self.store.ping), ("dispatch", self.dispatcher.ping)):
            try:
                async with asyncio.timeout(timeout):
                    await ping()
                found[name] = "ok"
            except Exception as exc:
                found[name] = f"{type(exc).__name__}: {exc}".rstrip(": ")
        return found

    async def committed(self) -> None:
        """Return once what this service has written so far is committed: a transport
        awaits it before it shows a result outside the process (see Store.committed)."""
        await self.store.committed()

    # -- submit ------------------------------------------------------------------------

    async def submit(
        self,
        message: Message,
        principal: Principal,
        *,
        metadata: dict[str, Any] | None = None,
        push: PushNotificationConfig | None = None,
        version: str = "1.0",
    ) -> TaskRecord:
        """Start a task for the message — or, when the message names a task waiting for
        input, answer it. Returns the task as stored. `push` registers a webhook for the
        task (its events from the first, in the A2A `version`), checked before anything
        is stored."""
        self._check_accepting()
        if not message.parts:
            raise InvalidParams("message.parts must not be empty")
        if not message.message_id:
            raise InvalidParams("message.messageId must not be empty")
        self.settings.check_parts(len(message.parts))
        if message.role is not Role.USER:
            raise InvalidParams("message.role must be user")
        refuse_nul("contextId", message.context_id)
        if push is not None:
            await self._check_push(push)
        if message.task_id:
            if push is not None:
                await self.set_push_config(message.task_id, principal, push, version)
            return await self.answer(message.task_id, principal, message)
        options = client_options(message.metadata, metadata)
        self._check_skill(options.get(SKILL_KEY))
        return await self._start(message, principal, options, push, version)

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise UnsupportedOperation("the server is shutting down")

    async def _start(
        self,
        message: Message,
        principal: Principal,
        options: dict[str, Any],
        push: PushNotificationConfig | None = None,
        version: str = "1.0",
    ) -> TaskRecord:
        """Store and dispatch a new task with checked options (the client's, or those a
        retry copies), under the request's trace context, with its webhook if any."""
        self._check_accepting()
        if trace_context := tracing.carrier():
            options[tracing.CARRIER_KEY] = trace_context
        policy = _option(
            options, "andon.contextPolicy", ContextPolicy, self.settings.context_policy
        )
        named_context = message.context_id
        context_id = named_context or new_id()
        task_id = new_id()
        message = message.model_copy(update={"task_id": task_id, "context_id": context_id})
        record = await self.store.create_task(
            NewTask(
                id=task_id,
                context_id=context_id,
                owner=principal.name,
                metadata=options,
                retry_of=options.get(RETRY_OF),
                timeout=_seconds(options, "andon.timeout", self.settings.timeout),
                idle_timeout=_seconds(options, "andon.idleTimeout", self.settings.idle_timeout),
                input_timeout=_seconds(options, "andon.inputTimeout", self.settings.input_timeout),
            ),
            message.dump(),
        )
        if push is not None:
            await self._store_push(configs.to_stored(task_id, push, version), backfill=True)
        if policy is ContextPolicy.PARALLEL or named_context is None:
            await self.dispatcher.dispatch(task_id, conversation(record))
            return record
        others = [t for t in await self._unfinished_in(record) if t.id != task_id]
        if policy is ContextPolicy.REJECT and others:
            rejected = await self.store.transition(
                task_id,
                sources=[TaskState.SUBMITTED],
                target=TaskState.REJECTED,
                reason="context_busy",
                message=agent_text(f"context {context_id} already has a running task"),
            )
            return rejected or record
        if policy is ContextPolicy.INTERRUPT and others:
            await asyncio.gather(
                *(self._cancel_quietly(t.id, CancelReason.SUPERSEDED) for t in others)
            )
        await self.dispatcher.dispatch(
            task_id, conversation(record), serial=policy is ContextPolicy.ENQUEUE
        )
        return record

    def _check_skill(self, wanted: object) -> None:
        if wanted is None or not self.skills:
            return
        if not isinstance(wanted, str) or wanted not in self.skills:
            raise InvalidParams(str(UnknownSkill(wanted, self.skills)))

    async def _unfinished_in(self, record: TaskRecord) -> list[TaskRecord]:
        """The unfinished tasks of the record's conversation: its owner's, in its context."""
        page = await self.store.list_tasks(
            owner=record.owner,
            context_id=record.context_id,
            states=UNFINISHED_STATES,
            page_size=1000,
        )
        return page.tasks

    async def answer(self, task_id: str, principal: Principal, message: Message) -> TaskRecord:
        """The user's reply to a task in input-required: the same attempt goes on."""
        record = await self._owned(task_id, principal)
        if record.state.terminal:
            raise UnsupportedOperation(
                f"task {task_id} has ended ({record.state}); start a new one"
            )
        if record.state is not TaskState.INPUT_REQUIRED:
            raise UnsupportedOperation(f"task {task_id} is not waiting for input")
        message = message.model_copy(update={"task_id": task_id, "context_id": record.context_id})
        await self.store.append(task_id, record.epoch, "message", message.dump())
        moved = await self.store.transition(
            task_id,
            sources=[TaskState.INPUT_REQUIRED],
            target=TaskState.WORKING,
            epoch=record.epoch,
        )
        if moved is None:
            raise UnsupportedOperation(f"task {task_id} is no longer waiting for input")
        await self.dispatcher.answer(task_id, record.epoch, message)
        return moved

    async def retry(self, task_id: str, principal: Principal) -> TaskRecord:
        """A new task in the same context, with the same first message, that references
        the old one (its agent can read the old task's partial artifacts)."""
        old = await self._owned(task_id, principal)
        if not old.state.terminal:
            raise UnsupportedOperation(f"task {task_id} has not ended; cancel it first")
        events = await self.store.events(task_id, with_progress=False)
        first = next(e for e in events if e.kind == "message")
        # The options the task was created with, not what its run added (its stop time).
        created = next(e for e in events if e.kind == "status").data.get("metadata") or {}
        original = Message.model_validate(first.data)
        message = original.model_copy(
            update={
                "message_id": new_id(),
                "task_id": None,
                "context_id": old.context_id,
                "reference_task_ids": [task_id],
            }
        )
        # The old request's trace context gives way to this request's (see _start).
        options = {**created, RETRY_OF: task_id}
        options.pop(tracing.CARRIER_KEY, None)
        return await self._start(message, Principal(old.owner, principal.role), options)

    # -- read --------------------------------------------------------------------------

    async def get(
        self, task_id: str, principal: Principal, history_length: int | None = None
    ) -> Task:
        task, _ = await self.snapshot(task_id, principal, history_length)
        return task

    async def snapshot(
        self, task_id: str, principal: Principal, history_length: int | None = None
    ) -> tuple[Task, TaskRecord]:
        """The task, and the record it shows: a stream that goes on after the record's
        `last_seq` neither misses nor repeats anything."""
        record = await self._owned(task_id, principal)
        return await self.view(record, history_length), record

    async def view(self, record: TaskRecord, history_length: int | None = None) -> Task:
        events = await self.store.events(record.id, with_progress=False)
        return task_view(record, events, history_length)

    async def list(
        self,
        principal: Principal,
        *,
        context_id: str | None = None,
        states: Collection[TaskState] | None = None,
        page_size: int = 50,
        page_token: str | None = None,
        history_length: int | None = 0,
        include_artifacts: bool = False,
    ) -> TaskList:
        if not 1 <= page_size <= 100:
            raise InvalidParams("pageSize must be between 1 and 100")
        refuse_nul("contextId", context_id)
        if states is not None and TaskState.WORKING in states:
            states = {*states, TaskState.CANCELING}  # a canceling task still shows working
        try:
            page = await self.store.list_tasks(
                owner=None if principal.is_admin else principal.name,
                context_id=context_id,
                states=states,
                page_size=page_size,
                page_token=page_token or None,
            )
        except ValueError as exc:
            raise InvalidParams(str(exc)) from None
        # Without history or artifacts, a task is its record alone: no log to read (the
        # web page lists tasks every few seconds).
        read_log = history_length != 0 or include_artifacts
        tasks = []
        for record in page.tasks:
            events = await self.store.events(record.id, with_progress=False) if read_log else []
            view = task_view(record, events, history_length)
            if not include_artifacts:
                view.artifacts = None
            tasks.append(view)
        return TaskList(tasks, page.next_page_token, page.total_size, page_size)

    async def subscribe(
        self, task_id: str, principal: Principal, after_seq: int = 0
    ) -> tuple[TaskRecord, AsyncIterator[Event]]:
        """Check access now (so a transport can answer an error before it starts a
        stream), then follow the task's log from `after_seq` to its final event."""
        record = await self._owned(task_id, principal)
        return record, self.follow(record, after_seq)

    async def follow(self, record: TaskRecord, after_seq: int) -> AsyncGenerator[Event, None]:
        """The log of the task of `record` from `after_seq` to its final event. No access
        check: the caller holds a record that `submit`, `snapshot` or `subscribe` gave."""
        task_id = record.id
        async for event in self.store.follow(task_id, after_seq):
            after_seq = event.seq
            yield present(event)
            if event.final:
                return
        if self.store.notifier.closed:
            yield await self._stopping_notice(task_id, after_seq)

    async def _stopping_notice(self, task_id: str, last_seq: int) -> Event:
        """The last event of a stream this process ends as it stops: the task's state as
        it is, and how to follow it on. Not stored: it is news about this connection, not
        the task; it carries the id of the last event sent, to resume after."""
        record = await self.store.get_task(task_id)
        state = record.visible_state if record is not None else TaskState.SUBMITTED
        text = (
            f"andon is stopping: this stream ends, the task does not (it is {state.value}). "
            f"Follow it again with SubscribeToTask and Last-Event-ID {last_seq}, here once "
            "andon is back, or through another API process"
        )
        now = time.time()
        data = status_event_data(
            state,
            agent_text(text),
            None,
            now,
            metadata={STREAM_END: "server-stopping"},
        )
        return Event(task_id, last_seq, "status", data, False, now)

    async def wait(
        self,
        task_id: str,
        after_seq: int,
        timeout: float | None,
        until: Collection[TaskState] = frozenset(),
    ) -> TaskRecord | None:
        """Wait, up to `timeout`, until the task has changed since event `after_seq` and
        has ended or is in a state of `until`; returns it then (None after the timeout,
        or at once when the service has stopped). Reads the task once, then again only
        when the store hands over a change to a state the wait ends in: progress,
        artifacts and other states are skipped unread (any change it does not describe
        is read)."""
        with self.store.notifier.listen(task_id) as wake, contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while True:
                    wake.clear()
                    record = await self.store.get_task(task_id)
                    if record is None:
                        return None
                    if record.last_seq > after_seq and (
                        record.state.terminal or record.state in until
                    ):
                        return record
                    if self.store.notifier.closed:
                        return None
                    seen = record.last_seq
                    while True:
                        await wake.wait()
                        appended = wake.take(seen)
                        if appended is None or any(
                            e.kind == "status" and _ends_wait(e.data.get("state"), until)
                            for e in appended
                        ):
                            break
                        seen = appended[-1].seq if appended else seen
        return None

    # -- cancel ------------------------------------------------------------------------

    async def cancel(
        self,
        task_id: str,
        principal: Principal,
        *,
        reason: str = CancelReason.USER,
        wait: float | None = None,
        mode: CancelMode = CancelMode.IMMEDIATE,
    ) -> Task:
        """Cancel a task: a queued one never starts; a running one is stopped, and the
        call waits (up to `wait`, default the configured cancel wait) until it has
        stopped. Returns the task as it then is."""
        started = time.monotonic()
        record = await self._take_cancel(await self._owned(task_id, principal), reason, mode)
        self.telemetry.cancel_requested(record, principal.name, reason)
        if record.state is TaskState.CANCELED:
            task = await self.view(record)
        else:
            wait = self.settings.cancel_wait if wait is None else wait
            stopped = await self.wait(task_id, record.last_seq, wait) if wait > 0 else None
            task = await (self.view(stopped) if stopped else self.get(task_id, SYSTEM))
        outcome = "canceling" if (task.metadata or {}).get("andon.canceling") else None
        outcome = outcome or task.status.state.value
        elapsed = time.monotonic() - started
        self.telemetry.cancel_answered(record, principal.name, reason, outcome, elapsed)
        return task

    async def _take_cancel(self, record: TaskRecord, reason: str, mode: CancelMode) -> TaskRecord:
        """Move the task to `canceled` (it had not started) or `canceling` (signalling
        its attempt), by compare-and-set against whatever moves it meanwhile."""
        task_id = record.id
        while True:
            if record.state.terminal:
                raise TaskNotCancelable(f"task {task_id} is already {record.state.value}")
            if record.state is TaskState.CANCELING:
                return record
            if record.state is TaskState.SUBMITTED:
                done = await self.store.transition(
                    task_id,
                    sources=[TaskState.SUBMITTED],
                    target=TaskState.CANCELED,
                    reason=reason,
                    message=agent_text(f"canceled before it started (reason: {reason})"),
                )
                if done is not None:
                    return done
            else:
                moved = await self.store.begin_cancel(task_id, [record.state], reason, mode)
                if moved is not None:
                    await self.dispatcher.cancel(moved)
                    return moved
            latest = await self.store.get_task(task_id)
            if latest is None:
                raise TaskNotFound(f"task {task_id} not found")
            record = latest

    async def _cancel_quietly(self, task_id: str, reason: str, wait: float | None = None) -> None:
        with contextlib.suppress(TaskNotCancelable, TaskNotFound):
            await self.cancel(task_id, SYSTEM, reason=reason, wait=wait)

    async def request_cancel(self, task_id: str, reason: str) -> None:
        """For the disconnect policies: start the cancel, do not wait for it."""
        await self._cancel_quietly(task_id, reason, wait=0)

    async def cancel_many(
        self,
        principal: Principal,
        *,
        ids: Sequence[str] | None = None,
        context_id: str | None = None,
        states: Collection[TaskState] | None = None,
        reason: str = CancelReason.OPERATOR,
        wait: float | None = None,
    ) -> builtins.list[CancelOutcome]:
        """Cancel by ids, or every unfinished task of a context and/or in given states.
        Users reach only their own tasks; admins reach everyone's."""
        if ids is None and context_id is None and states is None:
            raise InvalidParams("give ids, contextId or states")
        refuse_nul("contextId", context_id)
        if ids is None:
            wanted = set(states or UNFINISHED_STATES) & UNFINISHED_STATES
            if TaskState.WORKING in wanted:
                wanted.add(TaskState.CANCELING)
            page = await self.store.list_tasks(
                owner=None if principal.is_admin else principal.name,
                context_id=context_id,
                states=wanted,
                page_size=10_000,
            )
            ids = [t.id for t in page.tasks]

        async def one(task_id: str) -> CancelOutcome:
            try:
                task = await self.cancel(task_id, principal, reason=reason, wait=wait)
            except (TaskNotFound, TaskNotCancelable) as exc:
                return CancelOutcome(task_id, error=exc.message)
            return CancelOutcome(task_id, task=task)

        return list(await asyncio.gather(*(one(t) for t in ids)))

    # -- access ------------------------------------------------------------------------

    # -- push notifications ------------------------------------------------------------

    async def set_push_config(
        self, task_id: str, principal: Principal, config: PushNotificationConfig, version: str
    ) -> PushNotificationConfig:
        """Register (or replace, by id) a webhook for the task's events from now on."""
        await self._check_push(config)
        await self._owned(task_id, principal)
        stored = await self._store_push(configs.to_stored(task_id, config, version))
        return configs.to_wire(stored)

    async def get_push_config(
        self, task_id: str, principal: Principal, config_id: str
    ) -> PushNotificationConfig:
        self._pusher()
        await self._owned(task_id, principal)
        found = (
            None if holds_nul(config_id) else await self.store.push.get_config(task_id, config_id)
        )
        if found is None:
            raise TaskNotFound(f"task {task_id} has no push notification config {config_id!r}")
        return configs.to_wire(found)

    async def list_push_configs(
        self, task_id: str, principal: Principal
    ) -> builtins.list[PushNotificationConfig]:
        self._pusher()
        await self._owned(task_id, principal)
        return [configs.to_wire(c) for c in await self.store.push.list_configs(task_id)]

    async def delete_push_config(self, task_id: str, principal: Principal, config_id: str) -> None:
        """Idempotent: deleting a config that is not there succeeds."""
        self._pusher()
        await self._owned(task_id, principal)
        if not holds_nul(config_id):  # no config has such an id
            await self.store.push.delete_config(task_id, config_id)

    def _pusher(self) -> PushSender:
        if self.push is None:
            raise PushNotificationNotSupported()
        return self.push

    async def _check_push(self, config: PushNotificationConfig) -> None:
        refuse_nul("a push notification config", config.model_dump())
        try:
            await self._pusher().settings.policy.check(config.url)
        except RefusedURL as exc:
            raise InvalidParams(f"push notification URL refused: {exc}") from None

    async def _store_push(self, config: PushConfig, *, backfill: bool = False) -> PushConfig:
        stored = await self.store.push.put_config(config, backfill=backfill)
        self._pusher().kick()
        return stored

    async def _owned(self, task_id: str, principal: Principal) -> TaskRecord:
        """The task, if this principal may see it; another's task is 'not found', so
        that its existence does not leak."""
        # An id holding a NUL is no task's (andon's ids are hex), and PostgreSQL could
        # not even be asked about it.
        known = task_id and not holds_nul(task_id)
        record = await self.store.get_task(task_id) if known else None
        if record is None or (record.owner != principal.name and not principal.is_admin):
            raise TaskNotFound(f"task {task_id} not found")
        return record


_STATES = frozenset(state.value for state in TaskState)


def _ends_wait(state: object, until: Collection[TaskState]) -> bool:
    """Whether a task that moved to this (stored) state may end a `wait` for `until`:
    anything that is not a state it knows is read to find out."""
    if not isinstance(state, str) or state not in _STATES:
        return True
    moved = TaskState(state)
    return moved.terminal or moved in until


def _option(
    options: dict[str, Any], key: str, kind: type[ContextPolicy], default: ContextPolicy
) -> ContextPolicy:
    value = options.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(p.value for p in kind)
        raise InvalidParams(f"{key} must be one of {choices}") from None


def _seconds(options: dict[str, Any], key: str, default: float | None) -> float | None:
    value = options.get(key, default)
    if value is None:
        return None
    # `not 0 < value < inf` also refuses NaN, for which every comparison is false.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise InvalidParams(f"{key} must be a positive number of seconds")
    return float(value)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def present(event: Event) -> Event:
    """An event as shown outside: `canceling` reads as the state the task had."""
    if event.kind == "status" and event.data.get("state") == TaskState.CANCELING.value:
        data = {**event.data, "state": event.data.get("priorState", "working"), "canceling": True}
        return Event(event.task_id, event.seq, event.kind, data, event.final, event.created_at)
    return event


def conversation(record: TaskRecord) -> str:
    """The key a context policy orders and interrupts by: a context id is the client's
    word, so one principal naming another's context must not reach that one's tasks."""
    return f"{record.owner}\x00{record.context_id}"


def task_view(record: TaskRecord, events: list[Event], history_length: int | None = None) -> Task:
    """Fold the log into the A2A Task: history from messages, artifacts from chunks.
    Events the record does not count yet (appended after it was read) are left out, so
    the task is the one of its `last_seq`."""
    events = [event for event in events if event.seq <= record.last_seq]
    history: list[Message] = []
    for event in events:
        if event.kind == "message":
            history.append(Message.model_validate(event.data))
        elif event.kind == "status" and "message" in event.data:
            history.append(Message.model_validate(event.data["message"]))
    if history_length is not None:
        history = history[-history_length:] if history_length > 0 else []
    metadata = {**record.metadata, "andon.createdAt": _iso(record.created_at)}
    if record.reason:
        metadata["andon.reason"] = record.reason
    if record.state is TaskState.CANCELING:
        metadata["andon.canceling"] = True
    if record.retry_of:
        metadata[RETRY_OF] = record.retry_of
    status_data = record.status_message  # decoded from the stored text once
    status_message = Message.model_validate(status_data) if status_data else None
    return Task(
        id=record.id,
        context_id=record.context_id,
        status=TaskStatus(
            state=record.visible_state, message=status_message, timestamp=_iso(record.updated_at)
        ),
        artifacts=fold_artifacts(events) or None,
        history=history or None,
        metadata=metadata,
    )
