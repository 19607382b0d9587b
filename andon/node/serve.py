"""`andon serve`: the API server process. Embedded mode: API, runtime and store in one
process. Distributed mode: one of many API processes, running attempts itself unless
told not to, or leaving them to `andon worker` processes (its own with `--workers N`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import logging
import math
import signal
import socket
import sys
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from andon.node.banner import QuietLifecycle, Serving, banner
from andon.node.parts import Node, NodeOptions, tune_collector
from andon.node.slow_clients import with_header_timeout
from andon.runtime.agent import Agent
from andon.runtime.lifeline import Lifeline
from andon.server.app import ServerConfig, create_app
from andon.server.auth import TokenAuth
from andon.telemetry import tracing
from andon.telemetry.logs import fact

if TYPE_CHECKING:  # procrastinate and psycopg: loaded only in distributed mode
    from andon.node.worker import WorkerProcesses

log = logging.getLogger("andon")

DEFAULT_AGENT = "andon.agents.demo:agent"


def load_agent(spec: str) -> Agent:
    """Import `module:attribute` (a path to a .py file also works as the module;
    the attribute is `agent` when not given). ValueError says what is wrong in words."""
    module_name, _, attribute = spec.partition(":")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        if not path.is_file():
            raise ValueError(f"{spec}: there is no file {path}")
        sys.path.insert(0, str(path.parent))
        module_name = path.stem
    elif "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists but imports something missing: show that
        raise ValueError(
            f"{spec}: no module named {module_name!r} here ({Path.cwd()}); give MODULE:AGENT "
            "from this folder, or the path of a .py file"
        ) from None
    name = attribute or "agent"
    agent = getattr(module, name, None)
    if isinstance(agent, Agent):
        return agent
    agents = [key for key, value in vars(module).items() if isinstance(value, Agent)]
    found = f"its agents: {', '.join(agents)}" if agents else "it defines no andon.Agent"
    if agent is None:
        raise ValueError(f"{spec}: {module_name} has no attribute {name!r} ({found})")
    raise ValueError(
        f"{spec}: {module_name}.{name} is not an andon.Agent but {type(agent).__name__} ({found})"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


@dataclass(kw_only=True)
class ServeOptions(NodeOptions):
    host: str
    port: int
    server: ServerConfig
    log_level: str = "info"
    log_format: str = "text"
    worker: bool = True
    """Run attempts in this process too (distributed mode may leave them to workers)."""
    worker_processes: WorkerProcesses | None = None
    """`andon worker` processes to start and stop with this one (`--workers N`)."""
    header_timeout: float = 10.0
    """Seconds a request's headers may take to arrive (andon.node.slow_clients)."""
    max_connections: int = 1000
    """Connections open at once (event streams included); requests past it get 503."""
    grpc_port: int | None = None
    """Serve the A2A gRPC binding on this port too (needs the `grpc` extra)."""


class _Server(uvicorn.Server):
    """Cancels (after the drain period) the tasks still running before uvicorn closes
    their streams, so every stream gets its final event. Says what it serves once it
    listens (the banner), and ends a Ctrl+C'd run with exit code 0."""

    node: Node
    drain: float
    workers: WorkerProcesses | None
    serving: Serving
    text_logs: bool
    tokens: TokenAuth | None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        tune_collector()
        if self.tokens is not None:  # `kill -HUP` reads the tokens file again
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.tokens.reload)
        if self.text_logs:
            print(banner(self.serving), file=sys.stderr, flush=True)
        else:
            fact(
                log,
                "andon.serving",
                url=self.serving.url,
                agent=self.serving.agent.name,
                skills=",".join(self.serving.agent.skill_ids),
                on_disconnect=str(self.serving.on_disconnect),
                containment=self.serving.containment,
            )

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            # A Ctrl+C asked for this stop and got it: a success, not a death by SIGINT
            # (which `make run` would report as an error). SIGTERM is re-raised as before.
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGINT]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.text_logs:
            running = len(self.node.service.dispatcher.running())
            what = f"{running} running task(s) get {self.drain:g} s" if running else "no task runs"
            print(f"■ andon stopping: {what}", file=sys.stderr, flush=True)
        await self.node.service.shutdown(self.drain)
        if self.workers is not None:  # they drain, then cancel what they still run
            await self.workers.stop()
        await super().shutdown(sockets)
        tracing.close()  # uvicorn ends by re-raising the signal: no atexit flush


def serve(options: ServeOptions) -> None:
    tracing.configure_from_env()
    # If this process is killed outright, the keeper ends the commands its tasks run.
    with Lifeline(options.runtime.kill_grace) as lifeline:
        node = options.node(lifeline, worker=options.worker)
        workers = options.worker_processes

        grpc_servers: list[Any] = []

        async def startup() -> None:
            await node.start()
            if workers is not None:
                await workers.start()
            if options.grpc_port is not None:
                from andon.grpc_binding.service import start_grpc

                grpc_servers.append(
                    await start_grpc(app.state.server, options.host, options.grpc_port)
                )

        async def shutdown() -> None:
            for running in grpc_servers:
                await running.stop(grace=1.0)
            await node.stop()

        app = create_app(node.service, options.server, on_startup=startup, on_shutdown=shutdown)
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            log_level=options.log_level,
            timeout_graceful_shutdown=math.ceil(options.drain) + 5,
            access_log=False,
            log_config=None,  # uvicorn's lines go through andon's handler and format
            lifespan="on",
            http=with_header_timeout(options.header_timeout),
            ws="none",  # A2A has no WebSocket binding: nothing is imported to speak it
            # andon never reads a client's address or scheme, which X-Forwarded-* would
            # rewrite: no middleware looks for them in every request.
            proxy_headers=False,
            limit_concurrency=options.max_connections,
        )
        server = _Server(config)
        server.node = node
        server.drain = options.drain
        server.workers = workers
        server.text_logs = options.log_format == "text"
        server.tokens = options.server.auth
        server.serving = Serving(
            agent=options.agent,
            url=options.server.public_url.rstrip("/"),
            db=options.db,
            distributed=node.distributed,
            on_disconnect=options.server.on_disconnect,
            auth=options.server.auth is not None,
            drain=options.drain,
            runs_tasks=_who_runs_tasks(options),
            containment=node.service.dispatcher.containment,
        )
        if server.text_logs:
            logging.getLogger("uvicorn.error").addFilter(QuietLifecycle())
        asyncio.run(_run(server))


def _who_runs_tasks(options: ServeOptions) -> str:
    if options.worker_processes is not None:
        return f"{options.worker_processes.count} andon worker processes started beside this one"
    if not options.worker:
        return "andon worker processes sharing the database (--no-worker: none here)"
    return f"this process, up to {options.max_concurrent} at once"


async def _run(server: Any) -> None:
    await server.serve()
