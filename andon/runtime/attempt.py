"""Attempt: one run of a task, and the owner of everything it started.

Like a Trio cancel scope, an attempt owns what runs in it — the agent's coroutine, its
cancel scope and deadline, its process groups and escaped descendants (its cell), its
threads, its HTTP clients, its cancel hooks, and whatever else registers with `own`
(remote child tasks) — and has one `stop()` that ends all of it, in order, within the
budgets of RuntimeSettings, and says what it stopped and what survived.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from andon.protocol.types import CancelMode, CancelReason, Message
from andon.runtime.containment import Cell
from andon.runtime.http import AttemptHttp
from andon.runtime.lifeline import Lifeline
from andon.runtime.processes import Processes
from andon.runtime.scope import CancelScope, Signal, first
from andon.runtime.threads import AttemptThreads, current_threads
from andon.store.base import TaskRecord
from andon.telemetry import tracing
from andon.telemetry.observe import StopReport

CancelHook = Callable[[], Any]


@dataclass(frozen=True)
class RuntimeSettings:
    kill_grace: float = 2.0
    """SIGTERM to SIGKILL, for every process of a cancelled attempt."""
    graceful_period: float = 5.0
    """How long a graceful cancel lets the agent finish its current step."""
    hard_deadline: float = 10.0
    """From the immediate cancel: after this, whatever still runs is abandoned and the
    task ends failed / cancel_timeout."""
    cleanup_budget: float = 2.0
    """Time for the agent's on_cancel hooks, all together."""
    workdir: Path = field(default_factory=Path.cwd)
    containment: str = "auto"
    """How the processes of an attempt are found: `cgroup`, `subreaper`, or `auto` (the
    environment's ANDON_CONTAINMENT, else the stronger one available); see
    andon.runtime.containment."""


class Owned(Protocol):
    """Something an attempt started that `stop()` must end too (a remote child task)."""

    def describe(self) -> str: ...

    async def stop(self, reason: str, mode: CancelMode, deadline: float) -> list[str]:
        """Stop it by `deadline` (time.monotonic()); describe what did not stop."""
        ...


class Attempt:
    def __init__(
        self,
        record: TaskRecord,
        settings: RuntimeSettings,
        cell: Cell,
        lifeline: Lifeline | None = None,
    ) -> None:
        self.record = record
        self.settings = settings
        self.scope = CancelScope(on_immediate=self.cancel_agent)
        self.deadline = time.monotonic() + record.timeout if record.timeout else None
        self.processes = Processes(cell, settings.kill_grace, lifeline)
        self.threads = AttemptThreads(self.scope, record.id[:8])
        self.http = AttemptHttp(self.scope)
        self.hooks: list[CancelHook] = []
        self.owned: list[Owned] = []
        self.portal_calls: set[concurrent.futures.Future[Any]] = set()
        """Calls of a synchronous agent's thread into the loop (see SyncTaskContext)."""
        self.agent_task: asyncio.Task[Any] | None = None
        self.agent_ended = Signal()
        """Set as the agent's coroutine ends (its task is done by the next turn)."""
        self._agent_cancelled = False
        self.stop_requested_at: float | None = None
        self.last_activity = time.monotonic()
        self.waiting_for_input_since: float | None = None
        self.question_seq: int | None = None
        """While waiting for an answer: the sequence number of the question's event."""
        self.final_metadata: dict[str, Any] = {}
        """Keys merged into the task's metadata when this attempt ends, however it ends
        (completed, failed or canceled): `andon.llm` keeps `andon.usage` here."""
        self._answer: asyncio.Future[Message] | None = None

    @property
    def task_id(self) -> str:
        return self.record.id

    @property
    def epoch(self) -> int:
        return self.record.epoch

    def own(self, resource: Owned) -> None:
        """`stop()` (and the end of the attempt) will stop `resource` too."""
        self.owned.append(resource)

    def start(self, agent: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run the agent's coroutine; what it starts in threads belongs to the attempt."""
        context = contextvars.copy_context()
        context.run(current_threads.set, self.threads)
        self.agent_task = asyncio.create_task(
            agent, name=f"andon-agent-{self.task_id}", context=context
        )
        # The supervisor's coroutine sets it from inside, a turn sooner; this is for a
        # task cancelled before its first step (and any other coroutine).
        self.agent_task.add_done_callback(lambda _: self.agent_ended.set())
        return self.agent_task

    def cancel_agent(self) -> None:
        """Cancel the agent's task, once: a second cancel would cut short the cleanup
        it may be awaiting in its `except CancelledError`."""
        if self.agent_task is not None and not self._agent_cancelled:
            self._agent_cancelled = True
            self.agent_task.cancel()

    def request_stop(self, reason: str, mode: CancelMode) -> bool:
        """Ask the attempt to stop; `stop()` then carries it out (the supervisor runs it
        as soon as the request is seen). The first request wins, an immediate one
        escalates a graceful one."""
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
        return self.scope.request(reason, mode)

    # -- questions ----------------------------------------------------------------------

    def expect_answer(self) -> asyncio.Future[Message]:
        self._answer = asyncio.get_running_loop().create_future()
        return self._answer

    def deliver_answer(self, message: Message) -> bool:
        if self._answer is None or self._answer.done():
            return False
        self._answer.set_result(message)
        return True

    # -- the end ------------------------------------------------------------------------

    async def stop(self) -> StopReport:
        """The cancel: an immediate one cancelled the coroutine as it was requested (the
        scope calls `cancel_agent`); a graceful one lets the agent finish its step within
        the graceful period, then becomes immediate. Then blocking requests are aborted,
        processes and owned resources stopped, the coroutine and threads waited for,
        hooks run, clients closed — all by the hard deadline. Survivors are named, never
        hidden."""
        scope, settings, agent = self.scope, self.settings, self.agent_task
        assert agent is not None
        started = self.stop_requested_at or time.monotonic()
        reason = scope.reason or CancelReason.USER
        tracing.event(
            "cancel requested",
            {"reason": reason, "mode": str(scope.mode)},
            time.time_ns() - int((time.monotonic() - started) * 1e9),
        )
        hard_deadline = time.monotonic() + settings.graceful_period + settings.hard_deadline
        # Most attempts own nothing and start no process: no task to stop nothing.
        owned = None
        if self.owned:
            mode = scope.mode or CancelMode.IMMEDIATE
            owned = asyncio.ensure_future(self._stop_owned(reason, mode, hard_deadline))
        if scope.mode is CancelMode.GRACEFUL and not agent.done():
            await first(self.agent_ended, scope.immediate, timeout=settings.graceful_period)
            scope.request(reason, CancelMode.IMMEDIATE)
        hard_deadline = time.monotonic() + settings.hard_deadline
        self.cancel_agent()  # a no-op: an immediate request or the escalation above did it
        self._abort_blocking_calls()
        processes = None
        if self.processes.started:
            processes = asyncio.ensure_future(self.processes.stop())
        await first(self.agent_ended, timeout=settings.hard_deadline)
        tracing.event("agent stopped" if agent.done() else "agent ignored cancellation")
        survivors = await processes if processes is not None else []
        tracing.event("processes stopped", {"killed_after_grace": len(self.processes.killed)})
        delegated = owned is not None
        if owned is not None:
            survivors += await owned
        if self.owned:  # owned during a graceful period, after the others were told to stop
            survivors += await self._stop_owned(reason, CancelMode.IMMEDIATE, hard_deadline)
            delegated = True
        if delegated:
            tracing.event("remote children stopped")
        survivors += await self.threads.wait(hard_deadline - time.monotonic())
        tracing.event("threads stopped")
        if agent.done():
            _consume(agent)
        else:
            survivors.append("agent coroutine (it ignored cancellation)")
            self._abandon(agent)
        hook_failures = await self._run_hooks(settings.cleanup_budget)
        tracing.event("on_cancel hooks run", {"failures": len(hook_failures)})
        await self.http.close()
        tracing.event("http closed")
        scope.close()
        return StopReport(
            time.monotonic() - started, list(self.processes.killed), survivors, hook_failures
        )

    async def release(self) -> list[str]:
        """After the agent ended on its own: stop whatever it left behind (this does not
        change the task's outcome); describe what would not stop."""
        self.scope.close()
        self._abort_blocking_calls()
        survivors = await self.processes.stop()
        survivors += await self._stop_owned(
            CancelReason.PARENT_CANCELED,
            CancelMode.IMMEDIATE,
            time.monotonic() + self.settings.hard_deadline,
        )
        await self.http.close()
        return survivors

    def _abort_blocking_calls(self) -> None:
        for call in list(self.portal_calls):
            call.cancel()
        self.http.abort()

    async def _stop_owned(self, reason: str, mode: CancelMode, deadline: float) -> list[str]:
        owned, self.owned = self.owned, []
        if not owned:
            return []
        outcomes = await asyncio.gather(
            *(resource.stop(reason, mode, deadline) for resource in owned),
            return_exceptions=True,
        )
        survivors: list[str] = []
        for resource, outcome in zip(owned, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                survivors.append(f"{resource.describe()} ({outcome!r})")
            else:
                survivors += outcome
        return survivors

    async def _run_hooks(self, budget: float) -> list[str]:
        failures: list[str] = []
        hooks, self.hooks = self.hooks, []
        deadline = time.monotonic() + budget
        for hook in hooks:
            name = getattr(hook, "__name__", hook)
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    outcome = hook()
                    if inspect.isawaitable(outcome):
                        await outcome
            except TimeoutError:
                failures.append(f"on_cancel hook {name!s} timed out")
            except Exception as exc:  # a broken hook must not stop the others
                failures.append(f"on_cancel hook {name!s}: {exc!r}")
        return failures

    def _abandon(self, agent: asyncio.Task[Any]) -> None:
        """A coroutine that swallows CancelledError cannot be stopped from outside: keep
        a reference (so it is not collected mid-flight) until it ends by itself."""
        _ABANDONED.add(agent)
        agent.add_done_callback(_ABANDONED.discard)
        agent.add_done_callback(_consume)


_ABANDONED: set[asyncio.Task[Any]] = set()


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()


def cancel_abandoned() -> None:
    """At shutdown: cancel once more every coroutine that ignored its cancel."""
    for task in list(_ABANDONED):
        task.cancel()
