"""`andon worker`: a process of distributed mode that runs attempts and serves no API;
and the worker processes `andon serve --workers N` starts and looks after."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from andon.node.parts import Node, NodeOptions, tune_collector
from andon.runtime.lifeline import Lifeline
from andon.server.monitoring import monitoring_routes
from andon.server.streams import Subscribers
from andon.telemetry import tracing

log = logging.getLogger("andon")

RESTART_DELAY = 1.0


@dataclass(kw_only=True)
class WorkerOptions(NodeOptions):
    metrics: tuple[str, int] | None = None
    """Host and port to serve /metrics, /healthz and /readyz on (no API)."""


def work(options: WorkerOptions) -> None:
    """Run until SIGTERM or SIGINT: then take no more tasks, give running ones the drain
    period, and cancel what is left (reason `shutdown`)."""
    tracing.configure_from_env()
    try:
        with Lifeline(options.runtime.kill_grace) as lifeline:
            asyncio.run(_work(options, lifeline))
    finally:
        tracing.close()


async def _work(options: WorkerOptions, lifeline: Lifeline) -> None:
    node = options.node(lifeline)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await node.start()
    tune_collector()
    monitor = _Monitor(node, *options.metrics) if options.metrics else None
    monitoring = asyncio.create_task(monitor.serve()) if monitor else None
    log.info(
        "worker ready: up to %d tasks at once; task processes are contained by %s",
        options.max_concurrent,
        node.service.dispatcher.containment,
    )
    try:
        await stopping.wait()
        log.info("worker stopping: running tasks get %.1f s", options.drain)
    finally:
        await node.stop(options.drain)
        if monitor is not None and monitoring is not None:
            monitor.should_exit = True
            await monitoring


class _Monitor(uvicorn.Server):
    """/metrics, /healthz and /readyz of a worker. The worker's own handlers take
    SIGTERM and SIGINT (to drain), so this server leaves signals alone."""

    def __init__(self, node: Node, host: str, port: int) -> None:
        service = node.service
        app = Starlette(routes=monitoring_routes(service, Subscribers(service)))
        super().__init__(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WorkerProcesses:
    """`andon worker` processes started by `andon serve --workers N`: each one that
    exits before it is told to is started again."""

    def __init__(self, count: int, argv: Sequence[str], drain: float) -> None:
        self.count = count
        self.argv = [sys.executable, "-m", "andon", "worker", *argv]
        self.drain = drain
        self._procs: list[asyncio.subprocess.Process] = []
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._procs = [await self._spawn() for _ in range(self.count)]
        self._watch = asyncio.create_task(self._keep_up(), name="andon-worker-watch")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for proc in self._procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                await asyncio.wait_for(proc.wait(), self.drain + 30)
            except TimeoutError:
                log.error("worker %d did not stop in time: killing it", proc.pid)
                proc.kill()

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(*self.argv)

    async def _keep_up(self) -> None:
        while True:
            await asyncio.sleep(RESTART_DELAY)
            for i, proc in enumerate(self._procs):
                if proc.returncode is not None:
                    log.error("worker %d exited (%s): starting another", proc.pid, proc.returncode)
                    self._procs[i] = await self._spawn()
