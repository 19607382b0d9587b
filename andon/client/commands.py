"""The `andon` commands that talk to a server: send, watch, tasks list / get, cancel,
retry. `register(app)` adds them to the `andon` command.

Exit codes: 0 the task completed (or the command did its job), 1 the task failed (or
something could not be cancelled), 2 usage or connection error, 3 the task needs input
(with --no-input, or without a terminal to ask in), 124 its deadline cancelled it
(`--timeout`), 130 the task was canceled, 143 the command got SIGTERM.

Task ids may be shortened to a unique prefix of at least 4 characters.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from andon.client.api import DEFAULT_URL, AndonClient, CancelResult, check_policy
from andon.client.errors import (
    ClientError,
    MethodNotFound,
    ProtocolError,
    RemoteError,
    ServerUnreachable,
    StreamLost,
    TaskNotCancelable,
    TaskNotFound,
    Unauthorized,
    VersionNotSupported,
)
from andon.client.render import (
    STATE_STYLES,
    HumanView,
    JsonView,
    View,
    artifact_text,
    elapsed,
    json_line,
)
from andon.client.session import EXIT_INTERRUPTED, Conversation, Questions
from andon.protocol.params import PushNotificationConfig
from andon.protocol.stops import describe_stop
from andon.protocol.types import Role, Task, TaskState

EXIT_USAGE = 2
UNFINISHED = (
    TaskState.SUBMITTED,
    TaskState.WORKING,
    TaskState.INPUT_REQUIRED,
    TaskState.AUTH_REQUIRED,
)
STATE_NAMES = [s.value for s in TaskState if s is not TaskState.CANCELING]

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)

# -- options every command shares ------------------------------------------------------

Url = Annotated[str, typer.Option("--url", envvar="ANDON_URL", help="Server URL (or $ANDON_URL)")]
Token = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="ANDON_TOKEN", help="Bearer token (or $ANDON_TOKEN)", show_default=False
    ),
]
A2AVersion = Annotated[
    str,
    typer.Option("--a2a-version", envvar="ANDON_A2A_VERSION", help="A2A version: 1.0 or 0.3"),
]
Json = Annotated[bool, typer.Option("--json", help="One JSON object a line, for scripts")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors")]
Stream = Annotated[
    bool, typer.Option("--stream/--no-stream", help="Stream events (or poll the task)")
]
OnDisconnect = Annotated[
    str,
    typer.Option(
        help="What the server does with the task if this command's stream closes early "
        "(Ctrl+C twice, killed, network lost): cancel, continue, cancel-when-orphaned=S"
    ),
]
NoInput = Annotated[
    bool, typer.Option("--no-input", help="Never ask: exit 3 when the task needs input")
]


def run(
    command: Callable[[AndonClient], Awaitable[int]],
    *,
    url: str,
    token: str | None,
    version: str,
    debug: bool,
) -> NoReturn:
    """Run an async command with a client; errors become one line and exit code 2."""

    async def main() -> int:
        async with AndonClient(url, token, version) as client:
            return await command(client)

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except (ClientError, ValueError) as exc:
        if debug:
            traceback.print_exc()
        err.print(Text.assemble(("error: ", "bold red"), describe(exc, url, version)))
        code = EXIT_USAGE
    raise typer.Exit(code)


def describe(exc: BaseException, url: str, version: str) -> str:
    """One line a person can act on."""
    other = "0.3" if version.startswith("1") else "1.0"
    if isinstance(exc, ServerUnreachable):
        return (
            f"cannot reach the andon server at {exc.url} ({exc.cause}); is `andon serve` "
            "running there? Pass --url or set ANDON_URL."
        )
    if isinstance(exc, Unauthorized):
        if exc.token_given:
            return f"{exc.url} refused the token ({exc.message}); check --token or ANDON_TOKEN."
        return (
            f"{exc.url} needs a bearer token: pass --token TOKEN or set ANDON_TOKEN "
            "(the server's admin makes one with `andon token new NAME`)."
        )
    if isinstance(exc, TaskNotFound):
        return f"unknown task: {exc.message} (`andon tasks list` shows yours)."
    if isinstance(exc, VersionNotSupported):
        return f"version mismatch: {exc.message}. Try --a2a-version {other}."
    if isinstance(exc, MethodNotFound):
        return (
            f"the server does not know this method ({exc.message}); is {url} an andon "
            f"server, speaking A2A {version}? Try --a2a-version {other}."
        )
    if isinstance(exc, StreamLost):
        hint = f"; follow the task with `andon watch {exc.task_id}`" if exc.task_id else ""
        return f"{exc}{hint}."
    if isinstance(exc, RemoteError):
        return f"{exc.message} (error {exc.code})"
    if isinstance(exc, ProtocolError):
        return str(exc)
    return str(exc) or type(exc).__name__


MIN_PREFIX = 4
FULL_ID = 32


async def resolve(client: AndonClient, given: str) -> str:
    """A task id, or the task whose id a unique prefix of at least 4 characters begins
    (as git takes commit ids): ValueError if several do, TaskNotFound if none."""
    if len(given) >= FULL_ID:
        return given
    try:
        return (await client.get(given, history_length=0)).id
    except TaskNotFound:
        if len(given) < MIN_PREFIX:
            raise
        matches = [
            t.id async for t in client.iter_tasks(history_length=0) if t.id.startswith(given)
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise
        shown = ", ".join(matches[:3]) + (", …" if len(matches) > 3 else "")
        raise ValueError(
            f"{given} is the start of {len(matches)} task ids ({shown}): give more of it"
        ) from None


def _policy(value: str) -> str:
    try:
        return check_policy(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--on-disconnect") from None


def _state(value: str, option: str = "--state") -> TaskState:
    if value not in STATE_NAMES:
        raise typer.BadParameter(
            f"{value!r} is not a task state: use one of {', '.join(STATE_NAMES)}",
            param_hint=option,
        )
    return TaskState(value)


@contextlib.contextmanager
def _conversation(
    client: AndonClient,
    json: bool,
    *,
    questions: Questions,
    on_disconnect: str,
    timed: bool = True,
    cancel_on_interrupt: bool = True,
) -> Iterator[Conversation]:
    """A conversation shown in the terminal (or as JSON lines), its view closed after."""
    view: View = JsonView() if json else HumanView(timed=timed)
    try:
        yield Conversation(
            client,
            view,
            questions=questions,
            on_disconnect=on_disconnect,
            cancel_on_interrupt=cancel_on_interrupt,
        )
    finally:
        view.close()


# -- send, watch, retry ----------------------------------------------------------------


def send(
    text: Annotated[str, typer.Argument(help="The message (demo agent: `sleep 30`, `ask ...`)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    context: Annotated[
        str | None, typer.Option(help="Context id: continue a conversation", show_default=False)
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="Answer this task (waiting in input-required)", show_default=False),
    ] = None,
    skill: Annotated[
        str | None,
        typer.Option(
            help="The agent's skill that serves the task (default: its first; "
            "the agent card lists them)",
            show_default=False,
        ),
    ] = None,
    stream: Stream = True,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds the task may run; then the server cancels it (reason timeout, "
            "exit code 124)",
            show_default=False,
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="Start the task, print its id and exit; it runs on (andon watch ID)"
        ),
    ] = False,
    push: Annotated[
        str | None,
        typer.Option(
            help="A webhook URL the server POSTs every event of the task to",
            show_default=False,
        ),
    ] = None,
    push_token: Annotated[
        str | None,
        typer.Option(
            help="With --push: sent as X-A2A-Notification-Token on each POST",
            show_default=False,
        ),
    ] = None,
    on_disconnect: OnDisconnect = "cancel",
    json: Json = False,
    no_input: NoInput = False,
    a2a_version: A2AVersion = "1.0",
    debug: Debug = False,
) -> None:
    """Send a message to the agent and follow its task live.

    Ctrl+C cancels the task (reason user) and shows when it has stopped.
    Pressed again, it exits at once: the server still cancels the task (--on-disconnect cancel).
    When the agent asks a question, answer it here: the same task goes on.
    Exit code: 0 completed, 1 failed, 2 usage or connection error, 3 needs input,
    124 its --timeout ran out, 130 canceled, 143 this command got SIGTERM.
    """
    policy = _policy(on_disconnect)
    if timeout is not None and timeout <= 0:
        raise typer.BadParameter("must be a positive number of seconds", param_hint="--timeout")
    options: dict[str, Any] = {}
    if timeout is not None:
        options["andon.timeout"] = timeout
    if skill is not None:
        options["andon.skill"] = skill
    metadata = options or None
    if push_token is not None and push is None:
        raise typer.BadParameter("needs --push", param_hint="--push-token")
    webhook = PushNotificationConfig(url=push, token=push_token) if push else None

    async def command(client: AndonClient) -> int:
        answering = await resolve(client, task) if task is not None else None
        if detach:
            started = await client.send(
                text,
                context_id=context,
                task_id=answering,
                metadata=metadata,
                blocking=False,
                push=webhook,
            )
            print(json_line(started.dump()) if json else started.id, flush=True)
            if not json:
                err.print(
                    f"follow it: andon watch {started.id} · cancel it: andon cancel {started.id}",
                    style="dim",
                )
            return 0
        questions: Questions = "stop" if no_input else "ask"
        with _conversation(client, json, questions=questions, on_disconnect=policy) as talk:
            if stream:
                return await talk.follow(
                    lambda: client.stream(
                        text,
                        context_id=context,
                        task_id=answering,
                        metadata=metadata,
                        on_disconnect=policy,
                        push=webhook,
                    )
                )
            first = await client.send(
                text,
                context_id=context,
                task_id=answering,
                metadata=metadata,
                blocking=False,
                push=webhook,
            )
            return await talk.poll(first)

    run(command, url=url, token=token, version=a2a_version, debug=debug)


def watch(
    task_id: Annotated[str, typer.Argument(help="The task to follow (id, or a unique prefix)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    json: Json = False,
    a2a_version: A2AVersion = "1.0",
    debug: Debug = False,
) -> None:
    """Follow a task from its first event to its end.

    A dropped connection is resumed where it stopped: every event is shown once.
    Ctrl+C stops watching; the task goes on.
    """

    async def command(client: AndonClient) -> int:
        watched = await resolve(client, task_id)
        with _conversation(
            client,
            json,
            questions="wait",
            on_disconnect="continue",
            timed=False,
            cancel_on_interrupt=False,
        ) as talk:
            return await talk.follow(
                lambda: client.subscribe(watched, last_event_id=0, on_disconnect="continue")
            )

    run(command, url=url, token=token, version=a2a_version, debug=debug)


def retry(
    task_id: Annotated[
        str, typer.Argument(help="An ended task to run again (id, or a unique prefix)")
    ],
    url: Url = DEFAULT_URL,
    token: Token = None,
    stream: Stream = True,
    on_disconnect: OnDisconnect = "cancel",
    json: Json = False,
    no_input: NoInput = False,
    a2a_version: A2AVersion = "1.0",
    debug: Debug = False,
) -> None:
    """Run an ended task again (a new task in its context) and follow it like send."""
    policy = _policy(on_disconnect)

    async def command(client: AndonClient) -> int:
        again = await client.retry(await resolve(client, task_id))
        questions: Questions = "stop" if no_input else "ask"
        with _conversation(client, json, questions=questions, on_disconnect=policy) as talk:
            talk.view.note(f"retrying {task_id} as task {again.id}")
            if stream:
                return await talk.follow(
                    lambda: client.subscribe(again.id, last_event_id=0, on_disconnect=policy)
                )
            return await talk.poll(again)

    run(command, url=url, token=token, version=a2a_version, debug=debug)


# -- tasks list / get ------------------------------------------------------------------

tasks_app = typer.Typer(help="List and inspect tasks.", no_args_is_help=True)


@tasks_app.command("list")
def tasks_list(
    state: Annotated[
        str | None, typer.Option(help=f"Only tasks in this state ({', '.join(STATE_NAMES)})")
    ] = None,
    context: Annotated[str | None, typer.Option(help="Only tasks of this context")] = None,
    limit: Annotated[int, typer.Option(help="At most this many tasks, newest first")] = 50,
    url: Url = DEFAULT_URL,
    token: Token = None,
    json: Json = False,
    a2a_version: A2AVersion = "1.0",
    debug: Debug = False,
) -> None:
    """List tasks, newest first.

    In a terminal, a table; piped, one task a line, tab-separated (id, state, updated,
    context, request, status); with --json, one JSON object a line.
    """
    wanted = _state(state) if state is not None else None
    if limit < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--limit")

    async def command(client: AndonClient) -> int:
        tasks = client.iter_tasks(
            context_id=context, state=wanted, limit=limit, history_length=None if json else 20
        )
        if json:
            async for task in tasks:
                print(json_line(task.dump()), flush=True)
            return 0
        if not out.is_terminal:  # for pipes: tab-separated, one task a line
            async for task in tasks:
                status = task.status.message.text if task.status.message else ""
                fields = [
                    task.id,
                    task.status.state.value,
                    task.status.timestamp,
                    task.context_id,
                    _request(task),
                    status,
                ]
                print("\t".join(" ".join(f.split()) for f in fields), flush=True)
            return 0
        rows = [
            (
                task.id,
                _state_text(task),
                _ago(task.status.timestamp),
                _short(task.context_id, 9),
                _request(task),
                task.status.message.text if task.status.message else "",
            )
            async for task in tasks
        ]
        count = len(rows)
        # Ids, states, times whole; the context shortened (`tasks get` shows it whole);
        # the request and status cut to the width that is left.
        fixed = [max([len(str(r[i])) for r in rows] + [len(h)]) for i, h in enumerate(_HEADS[:4])]
        left = max(20, out.width - sum(fixed) - 3 * len(_HEADS))  # padding, dividers
        request = min(max([len(r[4]) for r in rows] + [7]), max(10, left // 2))
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for head, width in zip(_HEADS[:4], fixed, strict=True):
            table.add_column(head, no_wrap=True, width=width)
        table.add_column(_HEADS[4], no_wrap=True, overflow="ellipsis", max_width=request)
        table.add_column(_HEADS[5], no_wrap=True, overflow="ellipsis", max_width=left - request)
        for row in rows:
            table.add_row(*row)
        if count:
            out.print(table)
        else:
            err.print("no tasks", style="dim")
        return 0

    run(command, url=url, token=token, version=a2a_version, debug=debug)


@tasks_app.command("get")
def tasks_get(
    task_id: Annotated[
        str, typer.Argument(help="The task (id, or a unique prefix of 4+ characters)")
    ],
    url: Url = DEFAULT_URL,
    token: Token = None,
    json: Json = False,
    a2a_version: A2AVersion = "1.0",
    debug: Debug = False,
) -> None:
    """Show a task: its state, why it ended, its request, its parent and children
    (delegated tasks), and its artifacts."""

    async def command(client: AndonClient) -> int:
        task = await client.get(await resolve(client, task_id))
        if json:
            print(json_line(task.dump()), flush=True)
            return 0
        metadata = task.metadata or {}
        rows: list[tuple[str, Text | str]] = [
            ("task", Text(task.id, "bold")),
            ("context", task.context_id),
            ("state", _state_text(task)),
            ("updated", f"{task.status.timestamp} ({_ago(task.status.timestamp)})"),
        ]
        if _request(task):
            rows.append(("request", _request(task)))
        if task.status.message is not None:
            rows.append(("status", task.status.message.text))
        if (stop := describe_stop(metadata)) is not None:
            rows.append(("stop", stop))
        if metadata.get("andon.survivors"):
            rows.append(("survivors", "; ".join(map(str, metadata["andon.survivors"]))))
        if metadata.get("andon.retryOf"):
            rows.append(("retry of", str(metadata["andon.retryOf"])))
        if metadata.get("andon.parentTask"):
            rows.append(("parent", str(metadata["andon.parentTask"])))
        for child in metadata.get("andon.children") or []:
            if isinstance(child, dict):
                where = f"{child.get('id')} at {child.get('url')}"
                rows.append(("child", f"{where} ({child.get('agent')})"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        for name, value in rows:
            grid.add_row(name, value)
        out.print(grid)
        for artifact in task.artifacts or []:
            out.print(Text(f"── {artifact.name or artifact.artifact_id} ──", "dim"))
            text = artifact_text(artifact)
            out.print(text, markup=False, emoji=False, soft_wrap=True, end="")
            if not text.endswith("\n"):
                out.print()
        return 0

    run(command, url=url, token=token, version=a2a_version, debug=debug)


def _state_text(task: Task) -> Text:
    state = task.status.state
    text = Text(state.value, STATE_STYLES.get(state, ""))
    metadata = task.metadata or {}
    if metadata.get("andon.canceling"):
        text.append(" (canceling)", "magenta")
    reason = metadata.get("andon.reason")
    if reason and state.terminal and reason != "error":
        text.append(f" ({reason})", "dim")
    return text


_HEADS = ("ID", "STATE", "UPDATED", "CONTEXT", "REQUEST", "STATUS")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _request(task: Task) -> str:
    first = next((m for m in task.history or [] if m.role is Role.USER), None)
    return first.text if first is not None else ""


def _ago(timestamp: str) -> str:
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    seconds = max(0.0, (datetime.now(UTC) - then).total_seconds())
    if seconds < 60:
        return f"{elapsed(seconds)} ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return then.strftime("%Y-%m-%d %H:%M")


# -- cancel ----------------------------------------------------------------------------


def cancel(
    task_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Tasks to cancel (ids, or unique prefixes)", show_default=False),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(help="Cancel every unfinished task of this context", show_default=False),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            help="Cancel every task in this state (repeatable: working, submitted, "
            "input-required, auth-required)",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    wait: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for each task to stop", show_default=False),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    json: Json = False,
    a2a_version: A2AVersion = "1.0",
    debug: Debug = False,
) -> None:
    """Cancel tasks by id, or every unfinished task of a context or in some states.

    By id, the reason is user; by --context / --state it is operator, after a confirmation
    (unless --yes).
    Each line says how fast the task stopped.
    """
    states = [_state(s) for s in state or []]
    for s in states:
        if s not in UNFINISHED:
            raise typer.BadParameter(f"{s.value} tasks have ended already", param_hint="--state")
    if task_ids and (context is not None or states):
        raise typer.BadParameter("give task ids, or --context / --state, not both")
    if not task_ids and context is None and not states:
        raise typer.BadParameter("give task ids, --context or --state")
    if task_ids:
        ids = list(task_ids)

        async def by_id(client: AndonClient) -> int:
            return _report_cancels(await _cancel_each(client, ids, wait), json)

        run(by_id, url=url, token=token, version=a2a_version, debug=debug)

    selected: list[Task] = []
    if not yes:

        async def select(client: AndonClient) -> int:
            wanted = set(states or UNFINISHED)
            async for task in client.iter_tasks(
                context_id=context,
                state=states[0] if len(states) == 1 else None,
                history_length=20,
            ):
                if task.status.state in wanted:
                    selected.append(task)
            return 0

        _run_phase(select, url, token, a2a_version, debug)
        where = _selection(context, states)
        if not selected:
            err.print(f"no unfinished task {where}", style="dim")
            raise typer.Exit(0)
        if not typer.get_text_stream("stdin").isatty():
            err.print(
                Text.assemble(
                    ("error: ", "bold red"),
                    f"{len(selected)} tasks {where} would be canceled; confirm with --yes.",
                )
            )
            raise typer.Exit(EXIT_USAGE)
        for task in selected[:10]:
            err.print(Text.assemble("  ", task.id, " ", _state_text(task), " ", _request(task)))
        if len(selected) > 10:
            err.print(f"  … and {len(selected) - 10} more", style="dim")
        if not typer.confirm(f"Cancel {len(selected)} tasks {where}?", err=True):
            raise typer.Exit(1)

    async def by_selector(client: AndonClient) -> int:
        if yes:
            results = await client.cancel_many(context_id=context, states=states or None, wait=wait)
        else:
            results = await client.cancel_many([t.id for t in selected], wait=wait)
        return _report_cancels(results, json)

    run(by_selector, url=url, token=token, version=a2a_version, debug=debug)


def _run_phase(
    phase: Callable[[AndonClient], Awaitable[int]],
    url: str,
    token: str | None,
    version: str,
    debug: bool,
) -> None:
    """`run`, going on after success (a step of a command that has more to do)."""
    try:
        run(phase, url=url, token=token, version=version, debug=debug)
    except typer.Exit as done:
        if done.exit_code != 0:
            raise


def _selection(context: str | None, states: list[TaskState]) -> str:
    parts = []
    if states:
        parts.append("in state " + " or ".join(s.value for s in states))
    if context is not None:
        parts.append(f"of context {context}")
    return " ".join(parts)


async def _cancel_each(
    client: AndonClient, ids: list[str], wait: float | None
) -> list[CancelResult]:
    async def one(given: str) -> CancelResult:
        try:
            task_id = await resolve(client, given)
        except TaskNotFound as exc:
            return CancelResult(given, error=exc.message)
        except ValueError as exc:
            return CancelResult(given, error=str(exc))
        try:
            return CancelResult(task_id, task=await client.cancel(task_id, wait=wait))
        except (TaskNotFound, TaskNotCancelable) as exc:
            return CancelResult(task_id, error=exc.message)

    return list(await asyncio.gather(*(one(i) for i in ids)))


def _report_cancels(results: list[CancelResult], json: bool) -> int:
    failed = 0
    for result in results:
        task = result.task
        if json:
            line: dict[str, Any] = {
                "id": result.id,
                "state": task.status.state.value if task else None,
            }
            if task is not None:
                line["task"] = task.dump()
            if result.error is not None:
                line["error"] = result.error
            print(json_line(line), flush=True)
        if task is None or not task.status.state.terminal:
            failed += task is None
            if not json:
                why = result.error or "still stopping (the server's wait ran out)"
                err.print(Text.assemble((f"✗ {result.id}", "red"), f": {why}"))
            continue
        if json:
            continue
        metadata = task.metadata or {}
        line_text = Text.assemble(("■ ", "magenta"), result.id, " ", _state_text(task))
        if (stop := describe_stop(metadata)) is not None:
            line_text.append(f" · {stop}", "dim")
        elif task.status.message is not None:
            line_text.append(f" · {task.status.message.text}", "dim")
        out.print(line_text)
    if not results and not json:
        err.print("nothing to cancel", style="dim")
    return 1 if failed else 0


def register(app: typer.Typer) -> None:
    """Add the client commands to the `andon` command."""
    app.command()(send)
    app.command()(watch)
    app.command()(cancel)
    app.command()(retry)
    app.add_typer(tasks_app, name="tasks")
