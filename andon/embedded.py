"""Wire the embedded default: one process, a SQLite (or any) store, local dispatch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from andon.dispatch.local import LocalDispatcher
from andon.runtime.agent import Agent
from andon.runtime.supervisor import RuntimeSettings, Supervisor
from andon.service import ServiceSettings, TaskService
from andon.store import open_store


@asynccontextmanager
async def open_service(
    agent: Agent,
    store_url: str,
    *,
    runtime: RuntimeSettings | None = None,
    settings: ServiceSettings | None = None,
    max_concurrent: int = 64,
    drain: float = 0.0,
) -> AsyncIterator[TaskService]:
    """A running TaskService; on exit, running tasks are cancelled (reason `shutdown`)
    after `drain` seconds and the store is closed."""
    store = open_store(store_url)
    await store.open()
    supervisor = Supervisor(store, agent, runtime)
    service = TaskService(store, LocalDispatcher(supervisor, max_concurrent), settings)
    supervisor.set_cancel_requester(service.request_cancel)
    try:
        await service.start()
        yield service
    finally:
        await service.shutdown(drain)
        await supervisor.close()
        await store.close()
