"""`andon serve`: the embedded server process (API, runtime and store in one)."""

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

from andon import tracing
from andon.embedded import Embedded
from andon.runtime.agent import Agent
from andon.runtime.lifeline import Lifeline
from andon.runtime.supervisor import RuntimeSettings
from andon.server.app import ServerConfig, create_app
from andon.service import ServiceSettings

log = logging.getLogger("andon")

DEFAULT_AGENT = "andon.agents.demo:agent"


def load_agent(spec: str) -> Agent:
    """Import `module:attribute` (a path to a .py file also works as the module)."""
    module_name, _, attribute = spec.partition(":")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        sys.path.insert(0, str(path.parent))
        module_name = path.stem
    elif "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    agent = getattr(module, attribute or "agent", None)
    if not isinstance(agent, Agent):
        raise ValueError(f"{spec}: expected an andon.Agent, found {type(agent).__name__}")
    return agent


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


class _Server(uvicorn.Server):
    """Cancels (after the drain period) the tasks still running before uvicorn closes
    their streams, so every stream gets its final event."""

    embedded: Embedded
    drain: float

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.embedded.service.shutdown(self.drain)
        await super().shutdown(sockets)
        tracing.close()  # uvicorn ends by re-raising the signal: no atexit flush


def serve(options: ServeOptions) -> None:
    tracing.configure_from_env()
    # If this process is killed outright, the keeper ends the commands its tasks run.
    with Lifeline(options.runtime.kill_grace) as lifeline:
        embedded = Embedded(
            options.agent,
            options.db,
            runtime=options.runtime,
            settings=options.service,
            max_concurrent=options.max_concurrent,
            lifeline=lifeline,
        )
        app = create_app(
            embedded.service,
            options.agent,
            options.server,
            on_startup=embedded.start,
            on_shutdown=embedded.stop,
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
        server.embedded = embedded
        server.drain = options.drain
        asyncio.run(_run(server))


async def _run(server: Any) -> None:
    await server.serve()
