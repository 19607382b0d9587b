"""Wire one andon process: the store for a URL, a Supervisor when the process runs
attempts, a dispatcher, and the TaskService on top, started and stopped in order.

- A SQLite file: embedded mode. One process owns the store and runs every task
  (local dispatch).
- `postgresql://...`: distributed mode. One of any number of API and worker processes
  sharing the database; attempts go through its job queue (andon/dispatch/queue.py),
  and a process with `worker=False` only serves the API.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from andon.dispatch.base import Dispatcher
from andon.push.sender import PushSender
from andon.runtime.agent import Agent
from andon.runtime.attempt import RuntimeSettings
from andon.runtime.lifeline import Lifeline
from andon.runtime.supervisor import Supervisor
from andon.service import ServiceSettings, TaskService
from andon.store import open_store
from andon.telemetry.hub import Telemetry

if TYPE_CHECKING:
    from andon.dispatch.queue import QueueSettings


def is_distributed(store_url: str) -> bool:
    return store_url.startswith(("postgresql://", "postgres://"))


YOUNG_COLLECTION_EVERY = 2_000
"""Container objects allocated (net) between two collections of the youngest generation,
at least: CPython 3.13's default (3.11's is 700)."""
HEAP_PER_YOUNG_OBJECT = 250
"""The young threshold is at least the heap's memory blocks in use over this: past 500,000
blocks (about what a 1,000-stream crowd uses) it rises above 2,000, to some 13,000 with
the 3.4 million blocks of 10,000 streams."""
OLDEST_COLLECTION_EVERY = 100
"""Middle-generation collections between two looks at the oldest (CPython's default: 10)."""
RETUNE_EVERY = 1.0
"""Seconds between two looks at the heap's size."""


def tune_collector() -> None:
    """For an andon process once it has started (`andon serve`, `andon worker`), not for
    an application that embeds the service: that one keeps its collector as it set it.

    What the process has built so far (modules, the app, the protocol's schemas: some
    50,000 objects) lives as long as it does: it is frozen out of later collections,
    which scanned it all again at each full collection (about 12 ms a time here).

    A crowd of tasks is some 350 tracked objects each, all alive. Young collections
    run every 2,000 allocations rather than 700: 1,000 streams admitted at once made
    563 young, 51 middle and 4 full collections (0.24 s, a fifth of the server's CPU
    while admitting), now 182, 16 and 1 (0.14 s). Full collections are considered ten
    times less often: with 10,000 streams each one scans some 3.5 million objects, and
    admitting them took 16.8 s with CPython's default there, 13.8 s with this.

    A fixed 10,000 made each young collection of a small server long enough to show in
    echo's p99, so the young threshold follows the heap instead (`_follow_heap`)."""
    gc.collect()
    gc.freeze()
    _follow_heap(asyncio.get_running_loop())


def _follow_heap(loop: asyncio.AbstractEventLoop) -> None:
    """Under a crowd, most of what a young collection finds alive is what each stream
    waits on (a future, a timer, the suspended generators that will pass its next
    event on): alive for now, dead a turn or two later. Collected every 2,000
    allocations, that is scanned young, scanned again in the middle generation, and
    counts towards the next full collection, 1 s long with 10,000 streams. With the
    threshold in proportion to the heap, more of it is dead before it is looked at:
    cancelling 10,000 streams spent 1.8 s rather than 3.7-4.4 s in the collector.
    (Reading the heap's size costs some 30 µs idle, 0.6 ms with a 10,000-stream heap.)"""
    young = max(YOUNG_COLLECTION_EVERY, sys.getallocatedblocks() // HEAP_PER_YOUNG_OBJECT)
    gc.set_threshold(young, 10, OLDEST_COLLECTION_EVERY)
    loop.call_later(RETUNE_EVERY, _follow_heap, loop)


@dataclass(kw_only=True)
class NodeOptions:
    """What an `andon serve` and an `andon worker` process wire their Node from."""

    agent: Agent
    db: str
    max_concurrent: int
    drain: float
    """Seconds running tasks get on shutdown before they are cancelled."""
    service: ServiceSettings
    runtime: RuntimeSettings
    queue: QueueSettings | None = None
    """Distributed mode's job queue (None: its defaults)."""

    def node(self, lifeline: Lifeline, *, worker: bool = True) -> Node:
        return Node(
            self.agent,
            self.db,
            runtime=self.runtime,
            settings=self.service,
            max_concurrent=self.max_concurrent,
            worker=worker,
            queue=self.queue,
            lifeline=lifeline,
        )


class Node:
    """The parts of one andon process."""

    def __init__(
        self,
        agent: Agent,
        store_url: str,
        *,
        runtime: RuntimeSettings | None = None,
        settings: ServiceSettings | None = None,
        max_concurrent: int = 64,
        worker: bool = True,
        queue: QueueSettings | None = None,
        lifeline: Lifeline | None = None,
    ) -> None:
        self.distributed = is_distributed(store_url)
        telemetry = Telemetry()
        self.store = open_store(store_url)
        self.store.observer = telemetry
        self.supervisor = (
            Supervisor(self.store, agent, runtime, lifeline=lifeline, observer=telemetry)
            if worker
            else None
        )
        dispatcher: Dispatcher
        if self.distributed:
            from andon.dispatch.queue import QueueDispatcher

            dispatcher = QueueDispatcher(
                store_url, self.store, self.supervisor, concurrency=max_concurrent, settings=queue
            )
        elif self.supervisor is not None:
            from andon.dispatch.local import LocalDispatcher

            dispatcher = LocalDispatcher(self.supervisor, max_concurrent)
        else:
            raise ValueError("embedded mode runs its tasks itself: it cannot go without a worker")
        dispatcher.observer = telemetry
        self.service = TaskService(self.store, dispatcher, agent, settings, telemetry)
        push = self.service.settings.push
        if push is not None:
            # Every process delivers the shared outbox, whoever queued what.
            self.service.push = PushSender(self.store, telemetry.metrics, push)

    async def start(self) -> None:
        await self.store.open()
        try:
            # Only embedded mode's one process may end what a dead process left running;
            # in distributed mode other workers run those (a lost one's lease lapses).
            await self.service.start(recover=not self.distributed)
            if self.service.push is not None:
                await self.service.push.start()
        except BaseException:
            await self.store.close()
            raise

    async def stop(self, drain: float = 0.0) -> None:
        """Running tasks get `drain` seconds, then are cancelled (reason `shutdown`)."""
        try:
            await self.service.shutdown(drain)
            if self.supervisor is not None:
                await self.supervisor.close()
        finally:
            if self.service.push is not None:
                await self.service.push.stop()
            await self.store.close()


@asynccontextmanager
async def open_service(
    agent: Agent,
    store_url: str,
    *,
    runtime: RuntimeSettings | None = None,
    settings: ServiceSettings | None = None,
    max_concurrent: int = 64,
    drain: float = 0.0,
    queue: QueueSettings | None = None,
) -> AsyncIterator[TaskService]:
    """A running TaskService (and, in distributed mode, a worker in this process) for
    tests and for embedding andon in other programs."""
    node = Node(
        agent,
        store_url,
        runtime=runtime,
        settings=settings,
        max_concurrent=max_concurrent,
        queue=queue,
    )
    await node.start()
    try:
        yield node.service
    finally:
        await node.stop(drain)
