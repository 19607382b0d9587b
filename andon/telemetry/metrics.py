"""Prometheus metrics of one andon instance, each instance with counts of its own (two
servers in one process, as in tests, never share counts).

The counts are plain numbers, kept here; prometheus-client is imported at the first
scrape and builds the exposition from them. That keeps it, and the HTTP server and
client modules it imports, out of a process nobody scrapes, and a count costs an
addition, not a lock.

Labels take a small, fixed set of values: states, cancel and failure reasons, event
kinds. A value outside the set (a reason some embedding code made up) is counted as
`other`, so no label can grow without bound; task ids are never labels.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from andon.protocol.types import CancelReason, FailReason, TaskState
from andon.store.base import Store

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

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


class Count:
    """One series of a counter."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Spread:
    """One series of a histogram: how many observations fell in each bucket, and their sum."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # a bound is `le`
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative, as the exposition has them, `le` written as prometheus-client does."""
        bounds = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]
        return list(zip(bounds, map(float, itertools.accumulate(self.counts)), strict=True))


S = TypeVar("S", Count, Spread)


class Family(Generic[S]):
    """A metric and its series, one per set of label values."""

    def __init__(
        self,
        name: str,
        documentation: str,
        new: Callable[[], S],
        labels: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = labels
        self.series: dict[tuple[str, ...], S] = {}
        self._new: Callable[[], S] = new

    def labels(self, *values: str) -> S:
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = self._new()
        return series


class Counter(Family[Count]):
    def __init__(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, documentation, Count, labels)

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)


class Histogram(Family[Spread]):
    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        labels: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, documentation, lambda: Spread(buckets), labels)

    def observe(self, value: float) -> None:
        self.labels().observe(value)


class Gauge:
    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.read: Callable[[], float] = lambda: 0.0

    def set(self, value: float) -> None:
        self.read = lambda: value

    def set_function(self, read: Callable[[], float]) -> None:
        self.read = read


class Metrics:
    def __init__(self) -> None:
        self.created = Counter("andon_tasks_created", "Tasks created.")
        self.ended = Counter(
            "andon_tasks_ended",
            "Tasks that reached a final state, by state and reason (failed/cancel_timeout: "
            "an attempt that would not stop; failed/worker_lost: its worker died).",
            ("state", "reason"),
        )
        self.unfinished = {
            name: Gauge(f"andon_tasks_{name}", f"Tasks {name.replace('_', ' ')}, in the store.")
            for name in UNFINISHED
        }
        self.cancel_requests = Counter(
            "andon_cancel_requests",
            "Cancels that took hold, by source (the cancel reason).",
            ("reason",),
        )
        self.stop_seconds = Histogram(
            "andon_stop_seconds",
            "From a cancel reaching the attempt to all of its work stopped, by reason.",
            STOP_BUCKETS,
            ("reason",),
        )
        self.cancel_call_seconds = Histogram(
            "andon_cancel_call_seconds",
            "How long cancel calls took to return, by reason (a user's call waits for the "
            "stop; a deadline's does not wait).",
            STOP_BUCKETS,
            ("reason",),
        )
        self.killed_after_grace = Counter(
            "andon_processes_killed_after_grace",
            "Process groups that ignored SIGTERM and were SIGKILLed after the grace.",
        )
        self.subscribers = Gauge("andon_sse_subscribers", "Event streams open to clients.")
        self.events = Counter(
            "andon_events_appended", "Events appended to task logs, by kind.", ("kind",)
        )
        self.store_commits = Counter(
            "andon_store_commits",
            "Transactions of task writes the store committed: one per event-loop turn that "
            "wrote (group commit), however many writes it held.",
        )
        self.store_errors = Counter("andon_store_errors", "Store operations that raised.")
        self.dispatch_errors = Counter(
            "andon_dispatch_errors", "Failures to hand a task to a worker or signal it."
        )
        self.push_deliveries = Counter(
            "andon_push_deliveries",
            "Push notification attempts, by outcome: delivered, retried (to be tried again), "
            "failed (given up: refused, or still failing when its retry time ran out).",
            ("outcome",),
        )
        self.push_queue = Gauge(
            "andon_push_queue_depth", "Push notifications waiting to be delivered, in the store."
        )
        self.push_latency = Histogram(
            "andon_push_delivery_seconds",
            "From an event's commit to its receiver's 2xx answer.",
            PUSH_BUCKETS,
        )
        # Every known series from zero, so that rates and alerts see it before it moves.
        self.created.labels()
        self.killed_after_grace.labels()
        self.store_commits.labels()
        self.store_errors.labels()
        self.dispatch_errors.labels()
        self.push_latency.labels()
        for outcome in PUSH_OUTCOMES:
            self.push_deliveries.labels(outcome)
        for state, reason in ENDINGS:
            self.ended.labels(state.value, reason)
        for cancel_reason in CancelReason:
            self.cancel_requests.labels(cancel_reason.value)
            self.stop_seconds.labels(cancel_reason.value)
            self.cancel_call_seconds.labels(cancel_reason.value)
        # Counted at every event of every task: the labelled series, looked up once.
        self.events_of = {kind: self.events.labels(kind) for kind in EVENT_KINDS}
        self._registry: Any = None

    def count_subscribers(self, open_streams: Callable[[], int]) -> None:
        self.subscribers.set_function(open_streams)

    async def refresh(self, store: Store) -> None:
        """Read the unfinished-task gauges from the store (shared by every process in
        distributed mode, so these are the whole system's counts)."""
        for name, states in UNFINISHED.items():
            page = await store.list_tasks(states=states, page_size=1)
            self.unfinished[name].set(page.total_size)
        self.push_queue.set(await store.push.depth())

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape gets, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self)
        return generate_latest(self._registry), CONTENT_TYPE_LATEST

    def collect(self) -> Iterator[Metric]:
        """The families as prometheus-client writes them (its collector interface)."""
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        for metric in self._families():
            if isinstance(metric, Counter):
                counter = CounterMetricFamily(
                    metric.name, metric.documentation, labels=metric.label_names
                )
                for values, count in metric.series.items():
                    counter.add_metric(values, count.value, created=count.created)
                yield counter
            elif isinstance(metric, Histogram):
                histogram = HistogramMetricFamily(
                    metric.name, metric.documentation, labels=metric.label_names
                )
                for values, spread in metric.series.items():
                    histogram.add_metric(values, spread.buckets(), spread.sum)
                    labels = dict(zip(metric.label_names, values, strict=True))
                    histogram.add_sample(f"{metric.name}_created", labels, spread.created)
                yield histogram
            elif isinstance(metric, Gauge):
                yield GaugeMetricFamily(metric.name, metric.documentation, metric.read())

    def _families(self) -> list[Counter | Histogram | Gauge]:
        return [
            self.created,
            self.ended,
            *self.unfinished.values(),
            self.cancel_requests,
            self.stop_seconds,
            self.cancel_call_seconds,
            self.killed_after_grace,
            self.subscribers,
            self.events,
            self.store_commits,
            self.store_errors,
            self.dispatch_errors,
            self.push_deliveries,
            self.push_queue,
            self.push_latency,
        ]
