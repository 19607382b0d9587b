"""A hypothesis state machine over the task lifecycle: submit (sleep, spin, shell,
echo, ask, fail), cancel, answer, retry and restart (the service stopped and opened
again on the same SQLite file) in random orders, with the DESIGN invariants checked
after every step:

- exactly one ending: a task has at most one final event, last in its log, and one
  once it has ended; an ended task never changes again;
- honest state: a `canceled` task says why (`andon.reason`);
- stops: no step of a task's work is traced after its cancel answered `canceled`;
- no lost cancel: a task cancelled while `submitted` never ran a step.

`python -m bench.lifecycle` is the longer run (more examples, longer sequences).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from andon import RuntimeSettings, TaskService, open_service
from andon.agents.demo import agent
from andon.protocol.errors import TaskNotCancelable, UnsupportedOperation
from andon.protocol.types import TaskState
from tests.conftest import FAST_RUNTIME
from tests.helpers import USER, trace_lines, user_text

WORK = ["sleep 5", "spin 5", "shell sleep 5", "echo hi", "ask who?", "fail no", "stream 30"]


class Lifecycle(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.path = Path(self.folder.name)
        self.trace = self.path / "trace.log"
        self.traced_before = os.environ.get("ANDON_DEMO_TRACE")
        os.environ["ANDON_DEMO_TRACE"] = str(self.trace)
        self.loop = asyncio.new_event_loop()
        self.opened: AbstractAsyncContextManager[TaskService] | None = None
        self.service: TaskService | None = None
        self.ended: dict[str, TaskState] = {}
        self.stopped_at: dict[str, int] = {}  # task -> monotonic ns its cancel answered
        self.never_ran: set[str] = set()

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    @initialize()
    def open(self) -> None:
        self.opened = open_service(
            agent,
            str(self.path / "andon.db"),
            runtime=RuntimeSettings(workdir=self.path, **FAST_RUNTIME),
        )
        self.service = self.run(self.opened.__aenter__())

    def teardown(self) -> None:
        if self.opened is not None:
            self.run(self.opened.__aexit__(None, None, None))
        self.loop.close()
        self.folder.cleanup()
        if self.traced_before is None:
            os.environ.pop("ANDON_DEMO_TRACE", None)
        else:
            os.environ["ANDON_DEMO_TRACE"] = self.traced_before

    @property
    def svc(self) -> TaskService:
        assert self.service is not None
        return self.service

    # -- rules --------------------------------------------------------------------------

    @rule(target=tasks, work=st.sampled_from(WORK))
    def submit(self, work: str) -> str:
        return str(self.run(self.svc.submit(user_text(work), USER)).id)

    @rule(task_id=tasks, pause=st.sampled_from([0.0, 0.05, 0.3]))
    def cancel(self, task_id: str, pause: float) -> None:
        self.run(asyncio.sleep(pause))
        before = self.run(self.svc.store.get_task(task_id))
        try:
            task = self.run(self.svc.cancel(task_id, USER))
        except TaskNotCancelable:
            return
        if task.status.state is TaskState.CANCELED:
            self.stopped_at[task_id] = time.monotonic_ns()
            if before is not None and before.state is TaskState.SUBMITTED:
                self.never_ran.add(task_id)

    @rule(task_id=tasks)
    def answer(self, task_id: str) -> None:
        try:
            self.run(self.svc.submit(user_text("Ada", task_id=task_id), USER))
        except UnsupportedOperation:
            pass  # not waiting for input: refused, as it should be

    @rule(target=tasks, task_id=consumes(tasks))
    def retry(self, task_id: str) -> str:
        try:
            return str(self.run(self.svc.retry(task_id, USER)).id)
        except UnsupportedOperation:
            return task_id  # not ended yet: refused; the task stays in play

    @rule()
    def restart(self) -> None:
        assert self.opened is not None
        self.run(self.opened.__aexit__(None, None, None))
        self.opened = None
        self.open()

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def exactly_one_ending(self) -> None:
        if self.service is None:
            return
        for record in self.run(self.svc.store.list_tasks(page_size=1000)).tasks:
            events = self.run(self.svc.store.events(record.id))
            finals = [e.seq for e in events if e.final]
            assert len(finals) <= 1, (record.id, finals)
            if finals:
                assert finals[0] == events[-1].seq, (record.id, "events after the final one")
            if record.state.terminal:
                assert len(finals) == 1, (record.id, record.state, "ended without a final event")
                first = self.ended.setdefault(record.id, record.state)
                assert first is record.state, (record.id, first, record.state)
                if record.state is TaskState.CANCELED:
                    assert record.reason, (record.id, "canceled without a reason")

    @invariant()
    def work_stopped(self) -> None:
        for task_id, answered in self.stopped_at.items():
            steps = trace_lines(self.trace, task_id)
            assert all(ns <= answered for _, ns in steps), (task_id, "a step after the cancel")
            if task_id in self.never_ran:
                assert steps == [], (task_id, "a task cancelled before it started ran")


def explore(examples: int, steps: int) -> None:
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_the_task_lifecycle_keeps_the_invariants() -> None:
    explore(examples=6, steps=10)
