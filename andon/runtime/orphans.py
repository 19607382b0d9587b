"""The remote children of a task that its own process can no longer stop: the task was
failed `worker_lost` (by a restarted embedded server, or a distributed reaper), and its
recorded children are cancelled from here.

The client (andon.client, and httpx under it) is imported when there is a child to
cancel, not when the server starts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from andon.protocol.types import CancelReason
from andon.protocol.wire import Version
from andon.store.base import CHILDREN, TaskRecord

log = logging.getLogger("andon.runtime")


async def cancel_recorded_children(record: TaskRecord, budget: float = 10.0) -> list[str]:
    """CancelTask (reason `parent_canceled`) to every child recorded on a task that its
    own process can no longer stop (it was failed `worker_lost`). Returns the children
    that did not confirm. No token is stored: a child behind authentication answers
    Unauthorized here, and only its own disconnect policy stops it."""
    from andon.client.api import AndonClient
    from andon.client.errors import ClientError, TaskNotCancelable, TaskNotFound

    entries = record.metadata.get(CHILDREN) or []

    async def one(entry: dict[str, Any]) -> str | None:
        where = f"remote task {entry.get('id')} at {entry.get('url')}"
        try:
            client = AndonClient(
                str(entry["endpoint"]),
                version=str(entry.get("version") or Version.V1_0.value),
                binding=entry.get("binding") or "jsonrpc",
                timeout=budget,
            )
        except (KeyError, ValueError) as exc:
            return f"{where} (unreadable record: {exc})"
        try:
            async with asyncio.timeout(budget):
                await client.cancel(
                    str(entry["id"]), reason=CancelReason.PARENT_CANCELED, wait=budget
                )
        except (TaskNotCancelable, TaskNotFound):
            return None
        except (ClientError, TimeoutError) as exc:
            log.warning("task %s: could not cancel its %s: %s", record.id, where, exc)
            return where
        finally:
            await client.aclose()
        return None

    results = await asyncio.gather(*(one(e) for e in entries if isinstance(e, dict)))
    return [r for r in results if r is not None]


class Orphans:
    """Cancels, in the background, the children of tasks failed `worker_lost` (by the
    process that failed them: a restarted embedded server, a distributed reaper)."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[list[str]]] = set()

    def adopt(self, record: TaskRecord) -> None:
        """Start cancelling the children recorded on `record`, a task just failed."""
        if not record.metadata.get(CHILDREN):
            return
        cancelling = asyncio.create_task(cancel_recorded_children(record))
        self._running.add(cancelling)
        cancelling.add_done_callback(self._running.discard)

    async def close(self, timeout: float = 5.0) -> None:
        if self._running:
            await asyncio.wait(list(self._running), timeout=timeout)
