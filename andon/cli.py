"""The `andon` command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from andon.client.commands import register as register_client_commands
from andon.server.app import ServerConfig
from andon.server.auth import TokenAuth, digest, new_token
from andon.server.streams import DisconnectPolicy

app = typer.Typer(
    help="andon: serve Python agents over A2A, where cancel means stop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Bearer tokens for `andon serve --auth tokens`.", no_args_is_help=True)
app.add_typer(token_app, name="token")
db_app = typer.Typer(help="The PostgreSQL database of distributed mode.", no_args_is_help=True)
app.add_typer(db_app, name="db")
err = Console(stderr=True)


@app.command()
def serve(
    agent: Annotated[
        str, typer.Argument(help="MODULE:AGENT to serve (default: the demo agent)")
    ] = "andon.agents.demo:agent",
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    db: Annotated[
        str, typer.Option(help="Store: a SQLite file path or sqlite:///path")
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
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    log_format: Annotated[str, typer.Option(help="text, or json (one object a line)")] = "text",
) -> None:
    """Serve an agent over A2A (JSON-RPC, HTTP+JSON, SSE) with the embedded store."""
    from andon.logs import configure as configure_logging
    from andon.runtime.supervisor import RuntimeSettings
    from andon.serve import ServeOptions, is_loopback, load_agent
    from andon.serve import serve as run
    from andon.service import ServiceSettings

    try:
        configure_logging(log_level, log_format)
        policy = DisconnectPolicy.parse(on_disconnect)
        token_auth = _token_auth(auth, tokens)
        served = load_agent(agent)
    except Exception as exc:  # a usage error: one line, no traceback
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if token_auth is None and not is_loopback(host):
        err.print(
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
                auth=token_auth,
                on_disconnect=policy,
            ),
            service=ServiceSettings(cancel_wait=cancel_wait),
            runtime=RuntimeSettings(),
            log_level=log_level,
        )
    )


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
) -> None:
    """Make a token: prints it once, and the line for the tokens file (its hash only)."""
    if role not in ("user", "admin"):
        err.print("[red]error:[/red] --role must be user or admin")
        raise typer.Exit(2)
    token = new_token()
    typer.echo(f"token: {token}")
    typer.echo(f"tokens file line: {name} {role} sha256:{digest(token)}")


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[str, typer.Option(help="The database: postgresql://user@host/name")],
) -> None:
    """Bring the database's schema up to this andon's: run once, before starting it."""
    import asyncio

    import psycopg

    from andon.store.pg_schema import redact, upgrade

    try:
        applied = asyncio.run(upgrade(db))
    except psycopg.Error as exc:
        err.print(f"[red]error:[/red] {redact(db)}: {exc}")
        raise typer.Exit(1) from None
    for name in applied:
        typer.echo(f"applied {name}")
    typer.echo("the schema is up to date")


register_client_commands(app)  # send, watch, tasks, cancel, retry


def main() -> None:
    app()
