"""Supervisor: runs each attempt of a task, and ends it through one compare-and-set —
completed, failed, or (once everything the attempt started has stopped) canceled.

Every cancel reaches a running attempt the same way, `reconcile`: it reads the task's
stored record (the one carrier of a cancel's reason and mode) and makes the attempt
agree with it. The service's cancel call, the dispatchers' signals, the deadlines and a
worker catching up after a lost connection all end there.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

from andon.protocol.stops import KILL_GRACE, KILLED, STOP_MS, SURVIVORS, describe_stop
from andon.protocol.types import (
    ACTIVE_STATES,
    DIRECT_REPLY,
    CancelMode,
    CancelReason,
    FailReason,
    Message,
    Role,
    TaskState,
    agent_text,
)
from andon.runtime import deadlines
from andon.runtime.agent import Agent
from andon.runtime.attempt import Attempt, RuntimeSettings, cancel_abandoned
from andon.runtime.blocking import SyncTaskContext
from andon.runtime.containment import detect
from andon.runtime.context import TaskContext, TaskFailed
from andon.runtime.current import bind_task
from andon.runtime.lifeline import Lifeline
from andon.runtime.scope import TaskCancelled, first
from andon.runtime.threads import install_executor
from andon.store.base import Store, TaskRecord
from andon.telemetry import tracing
from andon.telemetry.observe import NO_OBSERVER, Observer

log = logging.getLogger("andon.runtime")


class Supervisor:
    def __init__(
        self,
        store: Store,
        agent: Agent,
        settings: RuntimeSettings | None = None,
        lifeline: Lifeline | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self.store = store
        self.agent = agent
        self.settings = settings or RuntimeSettings()
        self.lifeline = lifeline
        self.observer = observer
        self.containment = detect(self.settings.containment)
        self._attempts: dict[str, Attempt] = {}
        self._expiring: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> list[str]:
        return list(self._attempts)

    def attempt(self, task_id: str) -> Attempt | None:
        """The attempt of the task running here, if any."""
        return self._attempts.get(task_id)

    # -- the one way a cancel reaches an attempt -----------------------------------------

    async def reconcile(self, task_id: str, record: TaskRecord | None = None) -> TaskRecord | None:
        """Make the attempt running here agree with the task's stored record (read now,
        unless the caller holds the one it just wrote): `canceling` stops it with the
        stored reason and mode; a task that ended, or moved to another attempt, stops it
        at once. A record given for another epoch is a signal meant for another attempt,
        and is ignored. Returns the record it went by."""
        attempt = self._attempts.get(task_id)
        if attempt is None:
            return record
        if record is not None and record.epoch != attempt.epoch:
            return record
        if record is None:
            record = await self.store.get_task(task_id)
        _agree(attempt, record)
        return record

    def lose(self, task_id: str) -> bool:
        """This process lost the task (its lease lapsed, or is about to): the attempt
        stops at once, whatever the store says, and without asking it (it may be out of
        reach: that is often why the lease lapsed). False if it was already stopping so."""
        attempt = self._attempts.get(task_id)
        return attempt is not None and attempt.request_stop(
            FailReason.WORKER_LOST, CancelMode.IMMEDIATE
        )

    def answer(self, task_id: str, epoch: int | None, message: Message) -> bool:
        attempt = self._attempts.get(task_id)
        if attempt is None or (epoch is not None and attempt.epoch != epoch):
            return False
        return attempt.deliver_answer(message)

    # -- running an attempt -------------------------------------------------------------

    async def run(self, task_id: str) -> None:
        """Claim the task and run one attempt to its end. A task that is no longer
        `submitted` (cancelled before it started) is never run."""
        record = await self.store.transition(
            task_id, sources=[TaskState.SUBMITTED], target=TaskState.WORKING, claim=True
        )
        if record is None:
            return
        with tracing.attempt_span(record.id, record.context_id, record.epoch, record.metadata):
            await self._run_attempt(record)

    async def _run_attempt(self, record: TaskRecord) -> None:
        install_executor(asyncio.get_running_loop())
        cell = self.containment.cell(f"{record.id}.{record.epoch}")
        attempt = Attempt(record, self.settings, cell, self.lifeline)
        self._attempts[record.id] = attempt
        try:
            await self._execute(attempt, await self._context(attempt))
        finally:
            del self._attempts[record.id]
            attempt.scope.close()

    async def _context(self, attempt: Attempt) -> TaskContext:
        """The agent's context, from the task read back once its attempt is registered:
        a cancel that set `canceling` between the claim and the registration found no
        attempt to signal, and the record read now holds it, so it is never lost. The
        same read brings the conversation. (What it reads is not kept for the attempt's
        whole run: with 10,000 tasks running, that was 12 MiB more and slower
        collections.)"""
        current, messages = await self.store.task_and_messages(attempt.task_id)
        _agree(attempt, current)
        history = [Message.model_validate(data) for data in messages]
        return TaskContext(attempt, store=self.store, message=history[-1], history=history)

    async def _execute(self, attempt: Attempt, ctx: TaskContext) -> None:
        attempt.start(self._call_agent(attempt, ctx))
        if attempt.scope.requested:
            attempt.cancel_agent()  # cancelled while it was being claimed: its code never runs
        watchdog = None
        if deadlines.has_deadlines(attempt):
            expire = lambda reason: self._expire(attempt, reason)  # noqa: E731
            watchdog = asyncio.create_task(deadlines.watch(attempt, expire))
        try:
            await first(attempt.scope.asked, attempt.agent_ended)
            if not attempt.scope.requested and await self._finish(attempt):
                return
            await self._stop(attempt)
        finally:
            if watchdog is not None:
                watchdog.cancel()

    async def _call_agent(self, attempt: Attempt, ctx: TaskContext) -> Any:
        try:
            handler = self.agent.route(ctx.metadata).handler
            bind_task(ctx)
            if inspect.iscoroutinefunction(handler):
                return await handler(ctx)
            return await asyncio.to_thread(handler, SyncTaskContext(ctx))
        finally:
            # From inside the agent's task, so the supervisor wakes in the next turn (the
            # task's done callbacks would wake it a turn later).
            attempt.agent_ended.set()

    async def _finish(self, attempt: Attempt) -> bool:
        """End an attempt whose agent returned or raised on its own. False when a cancel
        won the compare-and-set first: the caller then stops the attempt as cancelled."""
        agent = attempt.agent_task
        assert agent is not None
        target, reason, text = TaskState.COMPLETED, None, None
        reply: Message | None = None
        if agent.cancelled():
            target, reason, text = TaskState.FAILED, FailReason.ERROR, "agent task was cancelled"
        elif (exc := agent.exception()) is not None:
            if isinstance(exc, TaskCancelled):
                # Its writes were refused: the task ended or moved on without it.
                await self._release(attempt)
                return await self._cancel_pending(attempt)
            if isinstance(exc, TaskFailed):
                text = str(exc) or "the agent failed the task"
            else:
                log.error("agent failed on task %s", attempt.task_id, exc_info=exc)
                text = crash_text(exc)
            target, reason = TaskState.FAILED, FailReason.ERROR
        else:
            result = agent.result()
            if isinstance(result, Message):
                reply = result  # TaskContext.reply: the answer to the request itself
            elif isinstance(result, str) and result:
                text = result
        message = agent_text(text) if text else None
        if reply is not None:
            update = {"role": Role.AGENT, "task_id": attempt.task_id}
            message = reply.model_copy(update=update).dump()
        await self._release(attempt)
        ended = await self.store.transition(
            attempt.task_id,
            sources=[TaskState.WORKING],
            target=target,
            epoch=attempt.epoch,
            reason=reason,
            message=message,
            metadata={
                **attempt.final_metadata,
                **({DIRECT_REPLY: True} if reply is not None else {}),
            },
        )
        if ended is not None:
            return True
        log.info("task %s: %s result dropped, a cancel won the race", attempt.task_id, target)
        return await self._cancel_pending(attempt)

    async def _cancel_pending(self, attempt: Attempt) -> bool:
        """If the task is being cancelled, take the cancel here (False: go stop it)."""
        record = await self.reconcile(attempt.task_id)
        return record is None or record.state is not TaskState.CANCELING

    async def _release(self, attempt: Attempt) -> None:
        """After a normal end: stop whatever the agent left behind."""
        leftovers = await attempt.release()
        if attempt.processes.killed:
            self.observer.processes_killed(attempt.record, attempt.processes.killed)
        if leftovers:
            log.warning("task %s left work that would not stop: %s", attempt.task_id, leftovers)

    async def _stop(self, attempt: Attempt) -> None:
        """The cancel path: the attempt stops everything it owns; then the task becomes
        `canceled` — or `failed` / cancel_timeout naming what survived."""
        report = await attempt.stop()
        metadata: dict[str, Any] = {
            **attempt.final_metadata,
            STOP_MS: round(report.stop_seconds * 1000, 3),
        }
        if report.killed:
            metadata |= {KILLED: report.killed, KILL_GRACE: self.settings.kill_grace}
            self.observer.processes_killed(attempt.record, report.killed)
        reason = attempt.scope.reason or CancelReason.USER
        if report.survivors:
            text = "cancel timed out; still running: " + "; ".join(report.survivors)
            ended = await self.store.transition(
                attempt.task_id,
                sources=[TaskState.CANCELING],
                target=TaskState.FAILED,
                reason=FailReason.CANCEL_TIMEOUT,
                message=agent_text(text),
                metadata={**metadata, SURVIVORS: report.survivors},
            )
        else:
            text = f"canceled (reason: {reason}); {describe_stop(metadata)}"
            ended = await self.store.transition(
                attempt.task_id,
                sources=[TaskState.CANCELING],
                target=TaskState.CANCELED,
                message=agent_text(text),
                metadata=metadata,
            )
        if ended is None:
            log.warning("task %s was no longer canceling when its attempt stopped", attempt.task_id)
        else:
            self.observer.attempt_stopped(ended, reason, report)

    # -- deadlines ----------------------------------------------------------------------

    async def _expire(self, attempt: Attempt, reason: str) -> None:
        """A deadline passed: store the cancel, then reconcile like any other. Its own
        task, so that ending the attempt (which cancels the watchdog) cannot cut the
        compare-and-set off half-way."""
        expiring = asyncio.create_task(self._cancel_expired(attempt, reason))
        self._expiring.add(expiring)
        expiring.add_done_callback(self._expiring.discard)
        await asyncio.shield(expiring)

    async def _cancel_expired(self, attempt: Attempt, reason: str) -> None:
        started = time.monotonic()
        moved = await self.store.begin_cancel(
            attempt.task_id, ACTIVE_STATES - {TaskState.CANCELING}, reason, CancelMode.IMMEDIATE
        )
        if moved is None or moved.epoch != attempt.epoch:
            return  # it ended, or another cancel came first: that one stops it
        self.observer.cancel_requested(moved, "andon", reason)
        await self.reconcile(attempt.task_id, moved)
        self.observer.cancel_answered(
            moved, "andon", reason, "canceling", time.monotonic() - started
        )

    async def close(self) -> None:
        """Wait for deadline cancels in flight (attempts are ended by the service)."""
        if self._expiring:
            await asyncio.wait(list(self._expiring), timeout=5)
        cancel_abandoned()


def crash_text(exc: BaseException) -> str:
    """A task's status when its agent raised an error of its own: what was raised, and
    where the traceback is (a bare `str(KeyError('x'))` says only `'x'`)."""
    detail = f": {exc}" if str(exc) else ""
    return f"the agent raised {type(exc).__name__}{detail} (the server's log has the traceback)"


def _agree(attempt: Attempt, record: TaskRecord | None) -> None:
    """Stop the attempt if the task's record says so: `canceling` with the stored reason
    and mode; ended, moved to another attempt or gone, at once."""
    if record is None or record.epoch != attempt.epoch or record.state.terminal:
        attempt.request_stop(FailReason.WORKER_LOST, CancelMode.IMMEDIATE)
    elif record.state is TaskState.CANCELING:
        attempt.request_stop(record.reason or CancelReason.USER, record.cancel_mode)
