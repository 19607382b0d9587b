"""The facts andon reports about its work: one interface, called by the layer that owns
each fact, at the one place it learns it.

The store reports every committed state change and appended event (so nothing that
changes a task goes unseen, whoever changed it); the service every cancel request and
how long its call took; the supervisor how each cancelled attempt stopped; the
dispatcher its failures. What becomes of a fact — a metric, a log line, a span event —
is decided above, in andon.telemetry. This default does nothing, so a layer used on its
own (in a test, say) needs no telemetry at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from andon.store.base import TaskRecord


@dataclass(frozen=True)
class StopReport:
    """What a cancelled attempt's teardown found: told to the task's record, metrics and
    logs alike."""

    stop_seconds: float
    killed: list[str]
    """Processes that outlived the grace and were SIGKILLed, each with its command."""
    survivors: list[str]
    """What was still running at the hard deadline (the task then ends cancel_timeout)."""
    hook_failures: list[str]


class Observer:
    def task_created(self, record: TaskRecord) -> None:
        """A task was stored, `submitted`, with its first message and status events."""

    def task_changed(self, record: TaskRecord) -> None:
        """A compare-and-set moved the task to `record.state` and appended its status."""

    def event_appended(self, kind: str) -> None:
        """An attempt appended a progress, artifact or message event."""

    def store_committed(self) -> None:
        """The store committed a transaction of task writes: group commit makes it one
        per event-loop turn that wrote, however many writes the turn held."""

    def store_failed(self) -> None:
        """A store operation raised."""

    def dispatch_failed(self) -> None:
        """Handing a task to a worker, or signalling one, failed."""

    def cancel_requested(self, record: TaskRecord, principal: str, reason: str) -> None:
        """A cancel took hold: `record` is the task now `canceled` (it had not started)
        or `canceling`. `principal` asked; `reason` is the cancel's source."""

    def cancel_answered(
        self, record: TaskRecord, principal: str, reason: str, outcome: str, seconds: float
    ) -> None:
        """A cancel call returned after `seconds`, the task then in state `outcome`
        (`canceling` if it had not stopped within the call's wait)."""

    def attempt_stopped(self, record: TaskRecord, reason: str, report: StopReport) -> None:
        """A cancelled attempt was torn down and the task ended as `record` says."""

    def processes_killed(self, record: TaskRecord, killed: list[str]) -> None:
        """Processes of an attempt ignored SIGTERM and were SIGKILLed after the grace."""


NO_OBSERVER = Observer()
