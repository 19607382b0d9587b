"""Wire the embedded default: one process, a SQLite store, local dispatch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from andon.dispatch.local import LocalDispatcher
from andon.runtime.agent import Agent
from andon.runtime.lifeline import Lifeline
from andon.runtime.supervisor import RuntimeSettings, Supervisor
from andon.service import ServiceSettings, TaskService
from andon.store import open_store
from andon.telemetry import Telemetry


class Embedded:
    """The parts of one embedded andon, started and stopped in order."""

    def __init__(
        self,
        agent: Agent,
        store_url: str,
        *,
        runtime: RuntimeSettings | None = None,
        settings: ServiceSettings | None = None,
        max_concurrent: int = 64,
        lifeline: Lifeline | None = None,
    ) -> None:
        telemetry = Telemetry()
        self.store = open_store(store_url)
        self.store.observer = telemetry
        self.supervisor = Supervisor(
            self.store, agent, runtime, lifeline=lifeline, observer=telemetry
        )
        dispatcher = LocalDispatcher(self.supervisor, max_concurrent)
        dispatcher.observer = telemetry
        self.service = TaskService(self.store, dispatcher, settings, telemetry)
        self.supervisor.set_cancel_requester(self.service.request_cancel)

    async def start(self) -> None:
        await self.store.open()
        await self.service.start()

    async def stop(self, drain: float = 0.0) -> None:
        """Running tasks get `drain` seconds, then are cancelled (reason `shutdown`)."""
        try:
            await self.service.shutdown(drain)
            await self.supervisor.close()
        finally:
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
) -> AsyncIterator[TaskService]:
    """A running TaskService for tests and embedding in other programs."""
    embedded = Embedded(
        agent, store_url, runtime=runtime, settings=settings, max_concurrent=max_concurrent
    )
    await embedded.start()
    try:
        yield embedded.service
    finally:
        await embedded.stop(drain)
