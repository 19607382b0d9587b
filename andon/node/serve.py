"""`andon serve`: the API server process. Embedded mode: API, runtime and store in one
process. Distributed mode: one of many API processes, running attempts itself unless
told not to, or leaving them to `andon worker` processes (its own with `--workers N`)."""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import math
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from andon.dispatch.queue import QueueSettings
from andon.node.parts import Node
from andon.node.worker import WorkerProcesses
from andon.runtime.agent import Agent
from andon.runtime.lifeline import Lifeline
from andon.runtime.supervisor import RuntimeSettings
from andon.server.app import ServerConfig, create_app
from andon.service import ServiceSettings
from andon.telemetry import tracing

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


@dataclass
class ServeOptions:
    agent: Agent
    host: str
    port: int
    db: str
    drain: float
    max_concurrent: int
    server: ServerConfig
    service: ServiceSettings
    runtime: RuntimeSettings
    log_level: str = "info"
    worker: bool = True
    """Run attempts in this process too (distributed mode may leave them to workers)."""
    queue: QueueSettings | None = None
    worker_processes: WorkerProcesses | None = None
    """`andon worker` processes to start and stop with this one (`--workers N`)."""


class _Server(uvicorn.Server):
    """Cancels (after the drain period) the tasks still running before uvicorn closes
    their streams, so every stream gets its final event."""

    node: Node
    drain: float
    workers: WorkerProcesses | None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.node.service.shutdown(self.drain)
        if self.workers is not None:  # they drain, then cancel what they still run
            await self.workers.stop()
        await super().shutdown(sockets)
        tracing.close()  # uvicorn ends by re-raising the signal: no atexit flush


def serve(options: ServeOptions) -> None:
    tracing.configure_from_env()
    # If this process is killed outright, the keeper ends the commands its tasks run.
    with Lifeline(options.runtime.kill_grace) as lifeline:
        node = Node(
            options.agent,
            options.db,
            runtime=options.runtime,
            settings=options.service,
            max_concurrent=options.max_concurrent,
            worker=options.worker,
            queue=options.queue,
            lifeline=lifeline,
        )
        workers = options.worker_processes

        async def startup() -> None:
            await node.start()
            if workers is not None:
                await workers.start()

        app = create_app(
            node.service, options.agent, options.server, on_startup=startup, on_shutdown=node.stop
        )
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            log_level=options.log_level,
            timeout_graceful_shutdown=math.ceil(options.drain) + 5,
            access_log=False,
            log_config=None,  # uvicorn's lines go through andon's handler and format
            lifespan="on",
        )
        server = _Server(config)
        server.node = node
        server.drain = options.drain
        server.workers = workers
        asyncio.run(_run(server))


async def _run(server: Any) -> None:
    await server.serve()
