"""Prometheus metrics of one andon instance, in a registry of its own (two servers in
one process, as in tests, never share counts).

Labels take a small, fixed set of values: states, cancel and failure reasons, event
kinds. A value outside the set (a reason some embedding code made up) is counted as
`other`, so no label can grow without bound; task ids are never labels.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from andon.protocol.types import CancelReason, FailReason, TaskState
from andon.store.base import Store

REASONS = frozenset({*CancelReason, *FailReason, "context_busy", "none"})
EVENT_KINDS = ("status", "message", "progress", "artifact")
ENDINGS = (
    *((TaskState.CANCELED, r) for r in CancelReason),
    *((TaskState.FAILED, r) for r in FailReason),
    (TaskState.COMPLETED, "none"),
    (TaskState.REJECTED, "context_busy"),
)
STOP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
PUSH_OUTCOMES = ("delivered", "retried", "failed")
PUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
UNFINISHED = {
    "queued": {TaskState.SUBMITTED},
    "running": {TaskState.WORKING, TaskState.CANCELING},
    "waiting_for_input": {TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED},
}


def reason_label(reason: str | None) -> str:
    reason = reason or "none"
    return reason if reason in REASONS else "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.created = Counter("andon_tasks_created", "Tasks created.", registry=r)
        self.ended = Counter(
            "andon_tasks_ended",
            "Tasks that reached a final state, by state and reason (failed/cancel_timeout: "
            "an attempt that would not stop; failed/worker_lost: its worker died).",
            ["state", "reason"],
            registry=r,
        )
        self.unfinished = {
            name: Gauge(
                f"andon_tasks_{name}", f"Tasks {name.replace('_', ' ')}, in the store.", registry=r
            )
            for name in UNFINISHED
        }
        self.cancel_requests = Counter(
            "andon_cancel_requests",
            "Cancels that took hold, by source (the cancel reason).",
            ["reason"],
            registry=r,
        )
        self.stop_seconds = Histogram(
            "andon_stop_seconds",
            "From a cancel reaching the attempt to all of its work stopped, by reason.",
            ["reason"],
            buckets=STOP_BUCKETS,
            registry=r,
        )
        self.cancel_call_seconds = Histogram(
            "andon_cancel_call_seconds",
            "How long cancel calls took to return, by reason (a user's call waits for the "
            "stop; a deadline's does not wait).",
            ["reason"],
            buckets=STOP_BUCKETS,
            registry=r,
        )
        self.killed_after_grace = Counter(
            "andon_processes_killed_after_grace",
            "Process groups that ignored SIGTERM and were SIGKILLed after the grace.",
            registry=r,
        )
        self.subscribers = Gauge(
            "andon_sse_subscribers", "Event streams open to clients.", registry=r
        )
        self.events = Counter(
            "andon_events_appended", "Events appended to task logs, by kind.", ["kind"], registry=r
        )
        self.store_commits = Counter(
            "andon_store_commits",
            "Transactions of task writes the store committed: one per event-loop turn that "
            "wrote (group commit), however many writes it held.",
            registry=r,
        )
        self.store_errors = Counter(
            "andon_store_errors", "Store operations that raised.", registry=r
        )
        self.dispatch_errors = Counter(
            "andon_dispatch_errors", "Failures to hand a task to a worker or signal it.", registry=r
        )
        self.push_deliveries = Counter(
            "andon_push_deliveries",
            "Push notification attempts, by outcome: delivered, retried (to be tried again), "
            "failed (given up: refused, or still failing when its retry time ran out).",
            ["outcome"],
            registry=r,
        )
        self.push_queue = Gauge(
            "andon_push_queue_depth",
            "Push notifications waiting to be delivered, in the store.",
            registry=r,
        )
        self.push_latency = Histogram(
            "andon_push_delivery_seconds",
            "From an event's commit to its receiver's 2xx answer.",
            buckets=PUSH_BUCKETS,
            registry=r,
        )
        # Every known series from zero, so that rates and alerts see it before it moves.
        for outcome in PUSH_OUTCOMES:
            self.push_deliveries.labels(outcome)
        for state, reason in ENDINGS:
            self.ended.labels(state.value, reason)
        for cancel_reason in CancelReason:
            self.cancel_requests.labels(cancel_reason.value)
            self.stop_seconds.labels(cancel_reason.value)
            self.cancel_call_seconds.labels(cancel_reason.value)
        # Counted at every event of every task: the labelled counters, looked up once.
        self.events_of = {kind: self.events.labels(kind) for kind in EVENT_KINDS}

    def count_subscribers(self, open_streams: Callable[[], int]) -> None:
        self.subscribers.set_function(open_streams)

    async def refresh(self, store: Store) -> None:
        """Read the unfinished-task gauges from the store (shared by every process in
        distributed mode, so these are the whole system's counts)."""
        for name, states in UNFINISHED.items():
            page = await store.list_tasks(states=states, page_size=1)
            self.unfinished[name].set(page.total_size)
        self.push_queue.set(await store.push.depth())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
