"""Supervisor: runs each attempt of a task as its own asyncio task inside a cancel scope,
and ends it through one compare-and-set — completed, failed, or (once everything the
attempt started has stopped) canceled."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from andon.protocol.types import (
    CancelReason,
    FailReason,
    Message,
    Part,
    Role,
    TaskState,
)
from andon.runtime.agent import Agent
from andon.runtime.context import DIRECT_REPLY, SyncTaskContext, TaskContext, TaskFailed
from andon.runtime.current import bind_task
from andon.runtime.lifeline import Lifeline
from andon.runtime.scope import CancelMode, CancelScope, TaskCancelled, requested_mode
from andon.store.base import Store, TaskRecord
from andon.telemetry import tracing
from andon.telemetry.observe import NO_OBSERVER, Observer

log = logging.getLogger("andon.runtime")

RequestCancel = Callable[[str, str], Coroutine[Any, Any, None]]
OnClaimed = Callable[[TaskRecord], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class RuntimeSettings:
    kill_grace: float = 2.0
    """SIGTERM to SIGKILL, for every process group of a cancelled attempt."""
    graceful_period: float = 5.0
    """How long a graceful cancel lets the agent finish its current step."""
    hard_deadline: float = 10.0
    """From the immediate cancel: after this, whatever still runs is abandoned and the
    task ends failed / cancel_timeout."""
    cleanup_budget: float = 2.0
    """Time for the agent's on_cancel hooks, all together."""
    workdir: Path = field(default_factory=Path.cwd)


@dataclass
class StopReport:
    """What a cancelled attempt's teardown found, for the final event and metrics."""

    survivors: list[str]
    hook_failures: list[str]
    killed_after_grace: int
    stop_seconds: float


class Attempt:
    def __init__(self, record: TaskRecord, ctx: TaskContext, scope: CancelScope) -> None:
        self.record = record
        self.ctx = ctx
        self.scope = scope
        self.agent_task: asyncio.Task[Any] | None = None
        self.cancel_requested_at: float | None = None

    @property
    def task_id(self) -> str:
        return self.record.id

    @property
    def epoch(self) -> int:
        return self.record.epoch


class Supervisor:
    def __init__(
        self,
        store: Store,
        agent: Agent,
        settings: RuntimeSettings | None = None,
        request_cancel: RequestCancel | None = None,
        lifeline: Lifeline | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self.store = store
        self.agent = agent
        self.settings = settings or RuntimeSettings()
        self.lifeline = lifeline
        self._request_cancel = request_cancel
        self.observer = observer
        self._attempts: dict[str, Attempt] = {}
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._requests: set[asyncio.Task[None]] = set()

    def set_cancel_requester(self, request_cancel: RequestCancel) -> None:
        self._request_cancel = request_cancel

    @property
    def running(self) -> list[str]:
        return list(self._attempts)

    def attempt(self, task_id: str) -> Attempt | None:
        """The attempt of the task running here, if any."""
        return self._attempts.get(task_id)

    # -- signals from the dispatcher ---------------------------------------------------

    def cancel(self, task_id: str, epoch: int | None, reason: str, mode: CancelMode) -> bool:
        """Deliver a cancel to the running attempt; a signal for another epoch is stale
        and ignored. Returns whether it was taken."""
        attempt = self._attempts.get(task_id)
        if attempt is None or (epoch is not None and attempt.epoch != epoch):
            return False
        if attempt.cancel_requested_at is None:
            attempt.cancel_requested_at = time.monotonic()
        return attempt.scope.request(reason, mode)

    def answer(self, task_id: str, epoch: int | None, message: Message) -> bool:
        attempt = self._attempts.get(task_id)
        if attempt is None or (epoch is not None and attempt.epoch != epoch):
            return False
        return attempt.ctx.deliver_answer(message)

    # -- running an attempt -------------------------------------------------------------

    async def run(self, task_id: str, on_claimed: OnClaimed | None = None) -> None:
        """Claim the task and run one attempt to its end. A task that is no longer
        `submitted` (cancelled before it started) is never run.

        `on_claimed` runs between the claim and the registration of the attempt: a
        dispatcher records there where cancels for this epoch must be sent, so that a
        cancel either finds that record or is read back just below.
        """
        record = await self.store.transition(
            task_id, sources=[TaskState.SUBMITTED], target=TaskState.WORKING, claim=True
        )
        if record is None:
            return
        if on_claimed is not None:
            await on_claimed(record)
        with tracing.attempt_span(record.id, record.context_id, record.epoch, record.metadata):
            await self._run_attempt(record)

    async def _run_attempt(self, record: TaskRecord) -> None:
        task_id = record.id
        scope = CancelScope()
        events = await self.store.events(task_id)
        history = [Message.model_validate(e.data) for e in events if e.kind == "message"]
        ctx = TaskContext(
            task_id=task_id,
            context_id=record.context_id,
            epoch=record.epoch,
            message=history[-1],
            history=history,
            metadata=record.metadata,
            store=self.store,
            scope=scope,
            deadline=time.monotonic() + record.timeout if record.timeout else None,
            workdir=self.settings.workdir,
            retry_of=record.retry_of,
        )
        ctx.configure_teardown(self.settings.kill_grace, self.lifeline)
        attempt = Attempt(record, ctx, scope)
        self._attempts[task_id] = attempt
        try:
            # A cancel that set `canceling` between the claim and the registration above
            # found no attempt to signal: read it back, so it is never lost.
            current = await self.store.get_task(task_id)
            if current is not None and current.state is TaskState.CANCELING:
                mode = requested_mode(current.metadata)
                self.cancel(task_id, record.epoch, current.reason or "user", mode)
            await self._execute(attempt)
        finally:
            del self._attempts[task_id]
            scope.close()
            if ctx.processes_killed_after_grace:
                self.observer.processes_killed(record, ctx.processes_killed_after_grace)

    async def _execute(self, attempt: Attempt) -> None:
        agent_task = asyncio.create_task(
            self._call_agent(attempt), name=f"andon-agent-{attempt.task_id}"
        )
        attempt.agent_task = agent_task
        watchdog = self._start_watchdog(attempt)
        cancel_requested = asyncio.create_task(attempt.scope.wait_requested())
        try:
            await asyncio.wait({agent_task, cancel_requested}, return_when=asyncio.FIRST_COMPLETED)
            if not attempt.scope.requested and await self._finish(attempt):
                return
            await self._stop(attempt)
        finally:
            cancel_requested.cancel()
            if watchdog is not None:
                watchdog.cancel()

    async def _call_agent(self, attempt: Attempt) -> Any:
        handler = self.agent.route(attempt.ctx.metadata).handler
        bind_task(attempt.ctx)
        if inspect.iscoroutinefunction(handler):
            return await handler(attempt.ctx)
        return await attempt.ctx.to_thread(handler, SyncTaskContext(attempt.ctx))

    async def _finish(self, attempt: Attempt) -> bool:
        """End an attempt whose agent returned or raised on its own. False when a cancel
        won the compare-and-set first: the caller then stops the attempt as cancelled."""
        agent_task = attempt.agent_task
        assert agent_task is not None
        target, reason, text = TaskState.COMPLETED, None, None
        reply: Message | None = None
        if agent_task.cancelled():
            target, reason, text = TaskState.FAILED, FailReason.ERROR, "agent task was cancelled"
        elif (exc := agent_task.exception()) is not None:
            if isinstance(exc, TaskCancelled):
                # Its writes were refused: the task ended or moved on without it.
                await self._teardown_quietly(attempt)
                return await self._cancel_pending(attempt)
            if isinstance(exc, TaskFailed):
                text = str(exc) or "the agent failed the task"
            else:
                log.error("agent failed on task %s", attempt.task_id, exc_info=exc)
                text = crash_text(exc)
            target, reason = TaskState.FAILED, FailReason.ERROR
        else:
            result = agent_task.result()
            if isinstance(result, Message):
                reply = result  # TaskContext.reply: the answer to the request itself
            elif isinstance(result, str) and result:
                text = result
        message = (
            Message(role=Role.AGENT, parts=[Part(text=text)], task_id=attempt.task_id).dump()
            if text
            else None
        )
        if reply is not None:
            update = {"role": Role.AGENT, "task_id": attempt.task_id}
            message = reply.model_copy(update=update).dump()
        await self._teardown_quietly(attempt)
        ended = await self.store.transition(
            attempt.task_id,
            sources=[TaskState.WORKING],
            target=target,
            epoch=attempt.epoch,
            reason=reason,
            message=message,
            metadata={
                **attempt.ctx.final_metadata,
                **({DIRECT_REPLY: True} if reply is not None else {}),
            },
        )
        if ended is not None:
            return True
        log.info("task %s: %s result dropped, a cancel won the race", attempt.task_id, target)
        return await self._cancel_pending(attempt)

    async def _cancel_pending(self, attempt: Attempt) -> bool:
        """If the task is being cancelled, take the cancel locally (False: go stop it)."""
        current = await self.store.get_task(attempt.task_id)
        if current is None or current.state is not TaskState.CANCELING:
            return True
        mode = requested_mode(current.metadata)
        self.cancel(attempt.task_id, attempt.epoch, current.reason or "user", mode)
        return False

    async def _teardown_quietly(self, attempt: Attempt) -> None:
        """After a normal end: stop whatever the agent left behind (it does not change
        the outcome)."""
        ctx = attempt.ctx
        attempt.scope.close()
        ctx.abort_portal_calls()
        leftovers = await ctx.kill_processes()
        deadline = time.monotonic() + self.settings.hard_deadline
        leftovers += await ctx.stop_owned(
            CancelReason.PARENT_CANCELED, CancelMode.IMMEDIATE, deadline
        )
        await ctx.close_http()
        if leftovers:
            log.warning("task %s left processes that would not die: %s", attempt.task_id, leftovers)

    async def _stop(self, attempt: Attempt) -> None:
        """The cancel path: stop everything the attempt owns, within budgets, then write
        `canceled` — or `failed` / cancel_timeout naming what survived."""
        scope, ctx, settings = attempt.scope, attempt.ctx, self.settings
        agent_task = attempt.agent_task
        assert agent_task is not None
        started = attempt.cancel_requested_at or time.monotonic()
        requested_mode_ = scope.mode or CancelMode.IMMEDIATE
        tracing.event(
            "cancel requested",
            {"reason": scope.reason or CancelReason.USER, "mode": str(scope.mode)},
            time.time_ns() - int((time.monotonic() - started) * 1e9),
        )
        if scope.mode is CancelMode.GRACEFUL and not agent_task.done():
            escalated = asyncio.create_task(scope.wait_immediate())
            await asyncio.wait(
                {agent_task, escalated},
                timeout=settings.graceful_period,
                return_when=asyncio.FIRST_COMPLETED,
            )
            escalated.cancel()
            scope.request(scope.reason or CancelReason.USER, CancelMode.IMMEDIATE)
        hard_deadline = time.monotonic() + settings.hard_deadline
        agent_task.cancel()
        ctx.abort_portal_calls()
        killing = asyncio.create_task(ctx.kill_processes())
        children = asyncio.create_task(
            ctx.stop_owned(scope.reason or CancelReason.USER, requested_mode_, hard_deadline)
        )
        await asyncio.wait({agent_task}, timeout=settings.hard_deadline)
        tracing.event("agent stopped" if agent_task.done() else "agent ignored cancellation")
        survivors = await killing
        tracing.event("processes stopped", {"killed_after_grace": ctx.processes_killed_after_grace})
        survivors += await children
        tracing.event("remote children stopped")
        survivors += await ctx.wait_threads(hard_deadline - time.monotonic())
        tracing.event("threads stopped")
        if not agent_task.done():
            survivors.append("agent coroutine (it ignored cancellation)")
            self._abandon(agent_task)
        else:
            _consume(agent_task)
        hook_failures = await ctx.run_cancel_hooks(settings.cleanup_budget)
        tracing.event("on_cancel hooks run", {"failures": len(hook_failures)})
        await ctx.close_http()
        tracing.event("http closed")
        scope.close()
        report = StopReport(
            survivors, hook_failures, ctx.processes_killed_after_grace, time.monotonic() - started
        )
        metadata = {"andon.stopMs": round(report.stop_seconds * 1000, 3)}
        if survivors:
            text = "cancel timed out; still running: " + "; ".join(survivors)
            ended = await self.store.transition(
                attempt.task_id,
                sources=[TaskState.CANCELING],
                target=TaskState.FAILED,
                reason=FailReason.CANCEL_TIMEOUT,
                message=Message(role=Role.AGENT, parts=[Part(text=text)]).dump(),
                metadata={**ctx.final_metadata, **metadata, "andon.survivors": survivors},
            )
        else:
            text = f"canceled (reason: {scope.reason}); stopped in {metadata['andon.stopMs']} ms"
            ended = await self.store.transition(
                attempt.task_id,
                sources=[TaskState.CANCELING],
                target=TaskState.CANCELED,
                message=Message(role=Role.AGENT, parts=[Part(text=text)]).dump(),
                metadata={**ctx.final_metadata, **metadata},
            )
        if ended is None:
            log.warning("task %s was no longer canceling when its attempt stopped", attempt.task_id)
        else:
            self.observer.attempt_stopped(ended, scope.reason or CancelReason.USER, report)

    def _abandon(self, agent_task: asyncio.Task[Any]) -> None:
        """A coroutine that swallows CancelledError cannot be stopped from outside; keep a
        reference (so it is not garbage-collected mid-flight) and keep cancelling it."""
        self._abandoned.add(agent_task)
        agent_task.add_done_callback(self._abandoned.discard)
        agent_task.add_done_callback(_consume)

    # -- deadlines ----------------------------------------------------------------------

    def _start_watchdog(self, attempt: Attempt) -> asyncio.Task[None] | None:
        record = attempt.record
        if not (record.timeout or record.idle_timeout or record.input_timeout):
            return None
        return asyncio.create_task(self._watch(attempt), name=f"andon-watchdog-{record.id}")

    async def _watch(self, attempt: Attempt) -> None:
        """Fire the cancel path when the task deadline, the idle timeout or the input
        timeout passes. Re-checked at least every 0.25 s, since activity moves them."""
        record, ctx = attempt.record, attempt.ctx
        while True:
            due: list[tuple[float, str]] = []
            if ctx.deadline is not None:
                due.append((ctx.deadline, CancelReason.TIMEOUT))
            waiting = ctx.waiting_for_input_since
            if waiting is not None and record.input_timeout:
                due.append((waiting + record.input_timeout, CancelReason.INPUT_TIMEOUT))
            elif waiting is None and record.idle_timeout:
                due.append((ctx.last_activity + record.idle_timeout, CancelReason.IDLE_TIMEOUT))
            now = time.monotonic()
            if due:
                at, reason = min(due)
                if now >= at:
                    self._fire_cancel(attempt.task_id, reason)
                    return
                await asyncio.sleep(min(at - now, 0.25))
            else:
                await asyncio.sleep(0.25)

    def _fire_cancel(self, task_id: str, reason: str) -> None:
        if self._request_cancel is None:
            return
        # Its own task: the watchdog is cancelled when the attempt ends, and a cancel
        # half-way through its compare-and-set must not be cut off by that.
        request = asyncio.create_task(self._request_cancel(task_id, reason))
        self._requests.add(request)
        request.add_done_callback(self._requests.discard)
        request.add_done_callback(_consume)

    async def close(self) -> None:
        """Wait for cancel requests in flight (attempts are ended by the service)."""
        if self._requests:
            await asyncio.wait(list(self._requests), timeout=5)
        for task in list(self._abandoned):
            task.cancel()


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()


def crash_text(exc: BaseException) -> str:
    """A task's status when its agent raised an error of its own: what was raised, and
    where the traceback is (a bare `str(KeyError('x'))` says only `'x'`)."""
    detail = f": {exc}" if str(exc) else ""
    return f"the agent raised {type(exc).__name__}{detail} (the server's log has the traceback)"
