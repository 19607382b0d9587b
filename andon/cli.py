"""The `andon` command."""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import typer.core
import typer.main

from andon.server.app import ServerConfig
from andon.server.auth import TokenAuth, check_name, digest, new_token
from andon.server.streams import DisconnectPolicy

if TYPE_CHECKING:
    from rich.console import Console
    from typer._click import Command, Context

    from andon.push.sender import PushSettings


class AndonCommands(typer.core.TyperGroup):
    """The `andon` command, whose client commands (send, watch, tasks, cancel, retry:
    andon/client/commands.py) are loaded when one of them is named or the commands are
    listed. `andon serve` and `andon worker` then never import the client, its HTTP
    library or its terminal renderer: memory a serving process would hold for nothing."""

    def _with_client_commands(self) -> None:
        if "send" in self.commands:
            return
        from andon.client.commands import register

        client = typer.Typer()
        register(client)
        merged = {**self.commands, **typer.main.get_group(client).commands}
        # As typer lists them: commands first, then groups, each in the order made.
        ordered = sorted(merged.items(), key=lambda c: isinstance(c[1], typer.core.TyperGroup))
        self.commands = dict(ordered)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands:
            self._with_client_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: Context) -> list[str]:
        self._with_client_commands()
        return super().list_commands(ctx)


app = typer.Typer(
    cls=AndonCommands,
    help="andon: serve Python agents over A2A, where cancel means stop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Bearer tokens for `andon serve --auth tokens`.", no_args_is_help=True)
app.add_typer(token_app, name="token")
db_app = typer.Typer(help="The PostgreSQL database of distributed mode.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@functools.cache
def err() -> Console:
    """Where errors and warnings go (rich is imported when there is one to print)."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


# The options `serve` and `worker` share (the worker processes `serve --workers` starts
# are given the same values).
LogLevel = Annotated[str, typer.Option(help="debug, info, warning, error")]
LogFormat = Annotated[str, typer.Option(help="text, or json (one object a line)")]
PushAllow = Annotated[
    list[str] | None,
    typer.Option(
        help="Webhook hosts or CIDRs allowed although not public (repeatable or "
        "comma-separated); their URLs may be plain http"
    ),
]
PushRetryFor = Annotated[
    float, typer.Option(help="Seconds after an event that its webhook delivery is retried")
]
NoPush = Annotated[
    bool, typer.Option("--no-push", help="Offer no push notifications (and deliver none)")
]


@app.command()
def serve(
    agent: Annotated[
        str, typer.Argument(help="MODULE:AGENT to serve (default: the demo agent)")
    ] = "andon.agents.demo:agent",
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    db: Annotated[
        str,
        typer.Option(help="Store: a SQLite file (embedded mode) or postgresql://... (distributed)"),
    ] = "andon.db",
    on_disconnect: Annotated[
        str,
        typer.Option(
            help="What a stream closed early does: continue, cancel, cancel-when-orphaned=S"
        ),
    ] = "continue",
    cancel_wait: Annotated[
        float, typer.Option(help="Seconds a cancel call waits for the task to stop")
    ] = 10.0,
    max_concurrent: Annotated[int, typer.Option(help="Tasks running at once")] = 64,
    drain: Annotated[
        float, typer.Option(help="On shutdown, seconds running tasks get before cancel")
    ] = 5.0,
    auth: Annotated[str, typer.Option(help="none, or tokens (see --tokens)")] = "none",
    tokens: Annotated[
        Path | None,
        typer.Option(help="Tokens file (lines: NAME user|admin TOKEN); else $ANDON_TOKENS"),
    ] = None,
    public_url: Annotated[
        str | None, typer.Option(help="URL clients reach this server at (agent card)")
    ] = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
    workers: Annotated[
        int,
        typer.Option(help="Distributed: start N `andon worker` processes to run the tasks"),
    ] = 0,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Distributed: run no tasks here, serve the API only")
    ] = False,
    lease: Annotated[
        float, typer.Option(help="Distributed: seconds a lost worker's tasks wait to be failed")
    ] = 30.0,
    push_allow: PushAllow = None,
    push_retry_for: PushRetryFor = 900.0,
    no_push: NoPush = False,
    header_timeout: Annotated[
        float, typer.Option(help="Seconds a request's headers may take to arrive (then 408)")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request's body may take to arrive (then 408)")
    ] = 30.0,
    max_connections: Annotated[
        int, typer.Option(help="Connections open at once, streams included (then 503)")
    ] = 1000,
    max_parts: Annotated[int, typer.Option(help="Parts a message may have")] = 100,
    max_json_nodes: Annotated[
        int, typer.Option(help="JSON objects and arrays a request body may hold (then 413)")
    ] = 20_000,
    grpc_port: Annotated[
        int | None,
        typer.Option(help="Also serve A2A 1.0 over gRPC on this port (pip install 'andon[grpc]')"),
    ] = None,
) -> None:
    """Serve an agent over A2A (JSON-RPC, HTTP+JSON, SSE).

    With a SQLite file, everything runs in this process. With --db postgresql://...,
    this is one of any number of API processes sharing the database, running tasks
    itself unless --workers or --no-worker leave them to `andon worker` processes.
    """
    from andon.node.parts import is_distributed
    from andon.node.preflight import claim_store
    from andon.node.serve import ServeOptions, is_loopback, load_agent
    from andon.node.serve import serve as run
    from andon.runtime.attempt import RuntimeSettings
    from andon.server.http import BodyLimits
    from andon.service import ServiceSettings
    from andon.telemetry.logs import configure as configure_logging

    try:
        configure_logging(log_level, log_format)
        _in_range("--port", port, 0, 65535)
        _in_range("--max-concurrent", max_concurrent, 1)
        _in_range("--workers", workers, 0)
        _in_range("--cancel-wait", cancel_wait, 0)
        _in_range("--drain", drain, 0)
        _in_range("--lease", lease, 0, above=True)
        _in_range("--push-retry-for", push_retry_for, 0)
        _in_range("--header-timeout", header_timeout, 0, above=True)
        _in_range("--body-timeout", body_timeout, 0, above=True)
        _in_range("--max-connections", max_connections, 1)
        _in_range("--max-parts", max_parts, 1)
        _in_range("--max-json-nodes", max_json_nodes, 1)
        policy = DisconnectPolicy.parse(on_disconnect)
        token_auth = _token_auth(auth, tokens)
        for warning in token_auth.warnings if token_auth else []:
            err().print(f"[yellow]warning:[/yellow] {warning}")
        served = load_agent(agent)
        if (workers or no_worker) and not is_distributed(db):
            raise ValueError("--workers and --no-worker need a postgresql:// database (--db)")
        if workers and no_worker:
            raise ValueError("--workers and --no-worker exclude each other")
        if grpc_port is not None and importlib.util.find_spec("grpc") is None:
            raise ValueError("--grpc-port needs grpcio: pip install 'andon[grpc]'")
        claim_store(db)
    except Exception as exc:  # a usage error: one line, no traceback
        err().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    worker_argv = [
        agent,
        *("--db", db, "--concurrency", str(max_concurrent), "--drain", str(drain)),
        *("--lease", str(lease), "--log-level", log_level, "--log-format", log_format),
        *("--push-retry-for", str(push_retry_for), *(["--no-push"] if no_push else [])),
        *(arg for entry in push_allow or () for arg in ("--push-allow", entry)),
    ]
    queue = worker_processes = None
    if is_distributed(db):  # procrastinate and psycopg: loaded in distributed mode only
        from andon.dispatch.queue import QueueSettings
        from andon.node.worker import WorkerProcesses

        queue = QueueSettings(lease=lease)
        worker_processes = WorkerProcesses(workers, worker_argv, drain) if workers else None
    if token_auth is None and not is_loopback(host):
        err().print(
            f"[bold red]WARNING: serving on {host} without authentication: anyone who can "
            "reach this address can run and cancel tasks. Use --auth tokens.[/bold red]"
        )
    run(
        ServeOptions(
            agent=served,
            host=host,
            port=port,
            db=db,
            drain=drain,
            max_concurrent=max_concurrent,
            server=ServerConfig(
                public_url=public_url or f"http://{host}:{port}",
                grpc_url=f"{host}:{grpc_port}" if grpc_port is not None else None,
                auth=token_auth,
                on_disconnect=policy,
                body=BodyLimits(seconds=body_timeout, json_nodes=max_json_nodes),
            ),
            service=ServiceSettings(
                cancel_wait=cancel_wait,
                push=_push_settings(push_allow, push_retry_for, no_push),
                max_parts=max_parts,
            ),
            runtime=RuntimeSettings(),
            log_level=log_level,
            log_format=log_format,
            worker=not (workers or no_worker),
            queue=queue,
            worker_processes=worker_processes,
            header_timeout=header_timeout,
            max_connections=max_connections,
            grpc_port=grpc_port,
        )
    )


@app.command()
def worker(
    agent: Annotated[
        str, typer.Argument(help="MODULE:AGENT to run (default: the demo agent)")
    ] = "andon.agents.demo:agent",
    db: Annotated[str, typer.Option(help="The shared database: postgresql://...")] = "",
    concurrency: Annotated[int, typer.Option(help="Tasks running at once")] = 64,
    drain: Annotated[
        float, typer.Option(help="On SIGTERM, seconds running tasks get before cancel")
    ] = 30.0,
    lease: Annotated[
        float, typer.Option(help="Seconds this worker's tasks outlive it if it is lost")
    ] = 30.0,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve /metrics, /healthz and /readyz on this port")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port")] = "127.0.0.1",
    push_allow: PushAllow = None,
    push_retry_for: PushRetryFor = 900.0,
    no_push: NoPush = False,
) -> None:
    """Run tasks of a distributed andon: take them from the database's queue, run them,
    stop them when they are cancelled. Serves no API (see `andon serve --no-worker`)."""
    from andon.dispatch.queue import QueueSettings
    from andon.node.parts import is_distributed
    from andon.node.preflight import claim_store
    from andon.node.serve import load_agent
    from andon.node.worker import WorkerOptions, work
    from andon.runtime.attempt import RuntimeSettings
    from andon.service import ServiceSettings
    from andon.telemetry.logs import configure as configure_logging

    try:
        configure_logging(log_level, log_format)
        _in_range("--concurrency", concurrency, 1)
        _in_range("--drain", drain, 0)
        _in_range("--lease", lease, 0, above=True)
        if metrics_port is not None:
            _in_range("--metrics-port", metrics_port, 0, 65535)
        if not is_distributed(db):
            raise ValueError("--db must name the shared PostgreSQL database: postgresql://...")
        served = load_agent(agent)
        claim_store(db)
    except Exception as exc:  # a usage error: one line, no traceback
        err().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    work(
        WorkerOptions(
            agent=served,
            db=db,
            max_concurrent=concurrency,
            drain=drain,
            queue=QueueSettings(lease=lease),
            service=ServiceSettings(push=_push_settings(push_allow, push_retry_for, no_push)),
            runtime=RuntimeSettings(),
            metrics=(metrics_host, metrics_port) if metrics_port is not None else None,
        )
    )


def _push_settings(allow: list[str] | None, retry_for: float, off: bool) -> PushSettings | None:
    from andon.push.policy import PushPolicy
    from andon.push.sender import PushSettings

    if off:
        return None
    return PushSettings(policy=PushPolicy.allowing(allow or ()), retry_for=retry_for)


def _in_range(
    option: str, value: float, low: float, high: float = math.inf, *, above: bool = False
) -> None:
    """A number option within its bounds, and finite: NaN, which every comparison
    refuses, and infinity (`--drain inf`) included."""
    if math.isfinite(value) and (low < value if above else low <= value) and value <= high:
        return
    if high < math.inf:
        wanted = f"from {low:g} to {high:g}"
    else:
        finite = "" if isinstance(value, int) else ", and finite"
        wanted = f"{'more than' if above else 'at least'} {low:g}{finite}"
    raise ValueError(f"{option} must be {wanted}, not {value:g}")


def _token_auth(mode: str, tokens: Path | None) -> TokenAuth | None:
    if mode == "none":
        return None
    if mode != "tokens":
        raise ValueError(f"--auth must be none or tokens, not {mode!r}")
    if tokens is not None:
        return TokenAuth.from_file(tokens)
    if os.environ.get("ANDON_TOKENS"):
        return TokenAuth.parse(os.environ["ANDON_TOKENS"])
    raise ValueError("--auth tokens needs --tokens FILE or the ANDON_TOKENS variable")


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Argument(help="Principal the token stands for")],
    role: Annotated[str, typer.Option(help="user or admin")] = "user",
    days: Annotated[
        float | None, typer.Option(help="The token expires after this many days")
    ] = None,
) -> None:
    """Make a token: prints it once, and the line for the tokens file (its hash only)."""
    try:
        check_name(name)
        if role not in ("user", "admin"):
            raise ValueError("--role must be user or admin")
        if days is not None:
            _in_range("--days", days, 0, above=True)
    except ValueError as exc:
        err().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    token = new_token()
    until = ""
    if days is not None:
        expiry = datetime.now(UTC) + timedelta(days=days)
        until = f" until={expiry.isoformat(timespec='seconds')}"
    typer.echo(f"token: {token}")
    typer.echo(f"tokens file line: {name} {role} sha256:{digest(token)}{until}")


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[str, typer.Option(help="The database: postgresql://user@host/name")],
) -> None:
    """Bring the database's schema up to this andon's: run once, before starting it."""
    import asyncio

    import psycopg

    from andon.node.database import upgrade
    from andon.store import redact

    try:
        applied = asyncio.run(upgrade(db))
    except psycopg.Error as exc:
        err().print(f"[red]error:[/red] {redact(db)}: {exc}")
        raise typer.Exit(1) from None
    for name in applied:
        typer.echo(f"applied {name}")
    typer.echo("the schema is up to date")


@app.command()
def init(
    name: Annotated[
        str, typer.Argument(help="The agent's name: NAME.py and test_NAME.py are written")
    ] = "my_agent",
) -> None:
    """Write a starter agent (a tool run through ctx.run, streamed writing) and the test
    of its cancel, in the current folder."""
    from andon.starter import starter_files

    try:
        files = starter_files(name, Path.cwd())
    except ValueError as exc:
        err().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for path, text in files.items():
        path.write_text(text)
    typer.echo(f"wrote {name}.py (the agent) and test_{name}.py (the test of its cancel)")
    steps = {
        f"andon serve {name}.py": "serve it: the page is at http://127.0.0.1:8000/",
        'andon send "cancellation"': "talk to it; Ctrl+C stops the task and its work",
        f"pytest test_{name}.py": "run its test",
    }
    width = max(map(len, steps))
    for command, what in steps.items():
        typer.echo(f"  {command.ljust(width)}   {what}")


def main() -> None:
    app()
