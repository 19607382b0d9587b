"""What andon does with each fact the layers report (andon.telemetry.observe): count it in the
instance's Prometheus metrics, write its log line, mark it on the current span."""

from __future__ import annotations

import logging

from andon.protocol.stops import STOP_MS
from andon.protocol.types import TaskState
from andon.store.base import TaskRecord
from andon.telemetry import logs, tracing
from andon.telemetry.metrics import Metrics, reason_label
from andon.telemetry.observe import Observer, StopReport

log = logging.getLogger("andon.tasks")


class Telemetry(Observer):
    def __init__(self) -> None:
        self.metrics = Metrics()

    def task_created(self, record: TaskRecord) -> None:
        self.metrics.created.inc()
        self.metrics.events.labels("message").inc()
        self.metrics.events.labels("status").inc()
        tracing.annotate({"andon.task_id": record.id, "andon.context_id": record.context_id})
        self._state_line(record)

    def task_changed(self, record: TaskRecord) -> None:
        self.metrics.events.labels("status").inc()
        if record.state.terminal:
            self.metrics.ended.labels(record.state.value, reason_label(record.reason)).inc()
        if record.state is TaskState.FAILED:
            tracing.fail(record.reason or "failed")
        self._state_line(record)

    def _state_line(self, record: TaskRecord) -> None:
        """One line and one span event per state change. The stop time of a cancelled
        attempt, and the whole run time of a task that ended, ride along."""
        state, reason = record.state.value, record.reason
        tracing.event("state", {"state": state, "reason": reason} if reason else {"state": state})
        ended = record.state.terminal
        logs.fact(
            log,
            "task.state",
            logging.INFO,
            **_whose(record),
            state=state,
            prior=record.prior_state.value if record.prior_state else None,
            reason=reason,
            stop_ms=record.metadata.get(STOP_MS)
            if record.prior_state is TaskState.CANCELING
            else None,
            duration_ms=round((record.updated_at - record.created_at) * 1000, 3) if ended else None,
        )

    def event_appended(self, kind: str) -> None:
        counter = self.metrics.events_of.get(kind) or self.metrics.events.labels(kind)
        counter.inc()

    def store_committed(self) -> None:
        self.metrics.store_commits.inc()

    def store_failed(self) -> None:
        self.metrics.store_errors.inc()

    def dispatch_failed(self) -> None:
        self.metrics.dispatch_errors.inc()

    def cancel_requested(self, record: TaskRecord, principal: str, reason: str) -> None:
        self.metrics.cancel_requests.labels(reason_label(reason)).inc()
        tracing.event("cancel requested", {"reason": reason, "principal": principal})
        tracing.link(record.metadata)

    def cancel_answered(
        self, record: TaskRecord, principal: str, reason: str, outcome: str, seconds: float
    ) -> None:
        self.metrics.cancel_call_seconds.labels(reason_label(reason)).observe(seconds)
        logs.fact(
            log,
            "task.cancel",
            task=record.id,
            context=record.context_id,
            principal=principal,
            owner=record.owner,
            reason=reason,
            outcome=outcome,
            latency_ms=round(seconds * 1000, 3),
        )

    def attempt_stopped(self, record: TaskRecord, reason: str, report: StopReport) -> None:
        self.metrics.stop_seconds.labels(reason_label(reason)).observe(report.stop_seconds)
        if report.survivors:
            logs.fact(
                log,
                "task.survivors",
                logging.ERROR,
                **_whose(record),
                reason=reason,
                survivors="; ".join(report.survivors),
            )

    def processes_killed(self, record: TaskRecord, killed: list[str]) -> None:
        self.metrics.killed_after_grace.inc(len(killed))
        logs.fact(
            log,
            "task.killed",
            logging.WARNING,
            **_whose(record),
            killed="; ".join(killed),
        )


def _whose(record: TaskRecord) -> dict[str, str]:
    """What names a task in its log lines: its id, its context and the principal it is for."""
    return {"task": record.id, "context": record.context_id, "principal": record.owner}
