"""The push notification outbox: a task's webhook configs, and one queued delivery per
event per config.

Deliveries are queued by the database itself: a trigger on the event log inserts one
outbox row for every config of the task whenever a status, progress or artifact event
is appended, inside the transaction that appends it. So an event is committed with its
deliveries or not at all, whichever write path appended it, and a process killed after
the commit leaves the rows for any other (or its own next) process to deliver.

Each (task, config) pair is a queue delivered in sequence order: only its oldest
pending row may be claimed, so a receiver sees a task's events in order even while an
earlier one is being retried. A claim is a lease (owner, expiry) as tasks have: a row
whose claimer died becomes claimable again when the lease lapses.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

PUSHED_KINDS = ("status", "progress", "artifact")
"""The event kinds that are pushed (the user's own messages are not)."""


def due_rows(outbox: str, *, now: str, limit: str) -> str:
    """The claimable rows of the outbox table `outbox`, in either store's SQL (`now` and
    `limit` are its placeholders): pending, due, not leased (or the lease lapsed), and
    the oldest pending row of their queue; soonest due first, at most `limit`."""
    return f"""
SELECT o.task_id, o.config_id, o.seq FROM {outbox} o
WHERE o.state = 'pending' AND o.next_at <= {now}
    AND (o.lease_until IS NULL OR o.lease_until < {now})
    AND NOT EXISTS (
        SELECT 1 FROM {outbox} p
        WHERE p.task_id = o.task_id AND p.config_id = o.config_id
            AND p.state = 'pending' AND p.seq < o.seq)
ORDER BY o.next_at LIMIT {limit}
"""


@dataclass(frozen=True, slots=True)
class PushConfig:
    """A webhook of one task. `version` is the A2A version it was registered in, which
    its deliveries are written in."""

    task_id: str
    id: str
    url: str
    version: str
    token: str | None = None
    auth_scheme: str | None = None
    auth_credentials: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class PushDelivery:
    """A claimed outbox row: the event to send, to which config, for the how-many-th time."""

    config: PushConfig
    context_id: str
    seq: int
    kind: str
    data: dict[str, Any]
    final: bool
    event_at: float
    """When the event was committed (the queue's entry time)."""
    attempts: int
    """Attempts so far, this one included."""

    @property
    def key(self) -> str:
        """The idempotency key a receiver drops repeats by: the task and the event's
        sequence number."""
        return f"{self.config.task_id}:{self.seq}"


class PushStore(abc.ABC):
    """Push configs and the outbox, in the same database as the tasks."""

    @abc.abstractmethod
    async def put_config(self, config: PushConfig, *, backfill: bool = False) -> PushConfig:
        """Store (or replace, by task and id) a config. With `backfill`, the task's
        events already logged are queued for it too, in the same transaction (a config
        given with the message that creates the task hears of the task from its start)."""

    @abc.abstractmethod
    async def get_config(self, task_id: str, config_id: str) -> PushConfig | None: ...

    @abc.abstractmethod
    async def list_configs(self, task_id: str) -> list[PushConfig]:
        """The task's configs, oldest first."""

    @abc.abstractmethod
    async def delete_config(self, task_id: str, config_id: str) -> None:
        """Remove the config and whatever is still queued for it (none is sent after)."""

    @abc.abstractmethod
    async def claim(self, owner: str, *, limit: int, lease: float) -> list[PushDelivery]:
        """Lease up to `limit` due rows, each the oldest pending one of its queue, for
        `lease` seconds; each claim counts as an attempt."""

    @abc.abstractmethod
    async def delivered(self, owner: str, delivery: PushDelivery) -> None:
        """The receiver took it: the row leaves the outbox."""

    @abc.abstractmethod
    async def retry(self, owner: str, delivery: PushDelivery, at: float, error: str) -> None:
        """Not delivered: due again at `at` (Unix seconds), lease released."""

    @abc.abstractmethod
    async def failed(self, owner: str, delivery: PushDelivery, error: str) -> None:
        """Given up: the row stays, marked failed with the last error; its queue goes on."""

    @abc.abstractmethod
    async def depth(self) -> int:
        """Deliveries waiting (pending, leased or not)."""

    @abc.abstractmethod
    async def failures(self, task_id: str) -> list[tuple[str, int, str]]:
        """(config id, seq, last error) of the task's deliveries given up."""
