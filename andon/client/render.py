"""How the command line shows a task: live for people (rich), one JSON object a line
for scripts.

For people, what the agent writes goes to stdout as it arrives and everything else
(the status line, questions, the closing line) to the terminal beside it; when stdout
is not a terminal, only the agent's text goes there and the rest to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from andon.client.api import Retry, StreamEvent
from andon.protocol.stops import describe_stop
from andon.protocol.types import (
    Artifact,
    Message,
    Part,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)

STATE_STYLES = {
    TaskState.SUBMITTED: "dim",
    TaskState.WORKING: "cyan",
    TaskState.INPUT_REQUIRED: "yellow",
    TaskState.AUTH_REQUIRED: "yellow",
    TaskState.CANCELING: "magenta",
    TaskState.COMPLETED: "green",
    TaskState.FAILED: "red",
    TaskState.CANCELED: "magenta",
    TaskState.REJECTED: "red",
}


@dataclass(frozen=True, slots=True)
class Ending:
    """Where a task stands when the command stops following it."""

    task_id: str
    state: TaskState
    message: str | None = None
    reason: str | None = None
    stop: str | None = None
    """How the task's work stopped, once a cancel ended it, in words: `stopped in 2.0 s:
    1 process killed after the 2 s grace` (andon.protocol.stops)."""

    @classmethod
    def of(cls, event: StreamEvent) -> Ending | None:
        item = event.item
        if isinstance(item, Task | TaskStatusUpdateEvent):
            metadata = item.metadata or {}
            status = item.status
            return cls(
                item.id if isinstance(item, Task) else item.task_id,
                status.state,
                status.message.text if status.message is not None else None,
                metadata.get("andon.reason"),
                describe_stop(metadata),
            )
        if isinstance(item, Message):  # a direct reply: the task completed with it
            return cls(item.task_id or "", TaskState.COMPLETED, item.text)
        return None


def part_text(part: Part) -> str:
    """A part as the terminal shows it."""
    if part.text is not None:
        return part.text
    if part.data is not None:
        return json.dumps(part.data, indent=2, ensure_ascii=False) + "\n"
    name = part.filename or "file"
    kind = f"{part.media_type}, " if part.media_type else ""
    if part.url is not None:
        return f"[{name}: {kind}{part.url}]\n"
    size = len(part.raw or "") * 3 // 4
    return f"[{name}: {kind}about {size} bytes]\n"


def artifact_text(artifact: Artifact) -> str:
    return "".join(part_text(p) for p in artifact.parts)


def elapsed(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def event_json(event: StreamEvent) -> dict[str, Any]:
    """A stream item as one flat JSON object: `seq`, `kind`, then its canonical fields."""
    item = event.item
    kind = "task" if isinstance(item, Task) else "message" if isinstance(item, Message) else None
    body = item.dump()
    head: dict[str, Any] = {"seq": event.seq, "kind": kind or body.pop("kind")}
    return {**head, **body}


class View(Protocol):
    """What a conversation with a task shows."""

    def header(self, task_id: str, context_id: str | None) -> None: ...
    def show(self, event: StreamEvent) -> None: ...
    def progress(self, task: Task) -> None: ...
    def canceling(self, note: str) -> None: ...
    def reconnecting(self, retry: Retry) -> None: ...
    def note(self, text: str) -> None: ...
    def question(self, text: str, prompt: bool) -> None: ...
    def answered(self) -> None: ...
    def finish(self, ending: Ending, cancel_seconds: float | None) -> None: ...
    def close(self) -> None: ...


class HumanView:
    """Live rendering: the agent's text as it arrives, a status line under it (state,
    elapsed time, the latest progress message) and a closing line."""

    def __init__(
        self,
        *,
        timed: bool = True,
        stdout: Console | None = None,
        stderr: Console | None = None,
    ) -> None:
        """`timed`: the closing line says how long the task took since the command
        started (not for a task that was followed half-way)."""
        self.timed = timed
        self.out = stdout or Console(highlight=False)
        if self.out.is_terminal:
            self.ui = self.out
        else:
            self.ui = stderr or Console(stderr=True, highlight=False, soft_wrap=True)
        self.shared = self.ui is self.out
        self.started = time.monotonic()
        self.state: TaskState | None = None
        self.detail = ""
        self.canceling_since: float | None = None
        self._anchor = True
        """The first status seen sets when the task started (untimed views)."""
        self.retry: Retry | None = None
        """The stream dropped and is being resumed (until an event arrives)."""
        self.task_id: str | None = None
        self._pending = ""
        """The line being written, while it has no newline (shown above the status)."""
        self._ended_line = True
        self._shown: dict[str, str] = {}
        self._artifact: str | None = None
        self._response_text = ""
        self._spinner = Spinner("dots", style="cyan")
        self._live: Live | None = None
        self._resume()

    # -- the live region ---------------------------------------------------------------

    def _resume(self) -> None:
        if self._live is None and self.ui.is_terminal:
            self._live = Live(
                get_renderable=self._region,
                console=self.ui,
                refresh_per_second=10,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def _pause(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._flush_pending()

    def _region(self) -> RenderableType:
        status = Text()
        if self.retry is not None:
            status.append(f"reconnecting ({self.retry.attempt}/{self.retry.attempts})…", "yellow")
            status.append(f" · {self.retry.cause}", "dim")
        elif self.canceling_since is not None:
            status.append("canceling…", "magenta")
            status.append(f" {elapsed(time.monotonic() - self.canceling_since)}", "dim")
        else:
            state = self.state or TaskState.SUBMITTED
            status.append(state.value, STATE_STYLES.get(state, ""))
            status.append(f" · {elapsed(time.monotonic() - self.started)}", "dim")
            if self.detail:
                status.append(f" · {self.detail}", "dim")
        self._spinner.update(text=status)
        if self._pending and self.shared:
            return Group(Text(self._pending), self._spinner)
        return self._spinner

    # -- text --------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        if not text:
            return
        self._ended_line = text.endswith("\n")
        if self._live is not None and self.shared:
            lines = (self._pending + text).split("\n")
            for line in lines[:-1]:
                self.out.print(line, markup=False, emoji=False, soft_wrap=True)
            self._pending = lines[-1]
        else:
            self.out.file.write(text)
            self.out.file.flush()

    def _flush_pending(self) -> None:
        if self._pending:
            self.out.print(self._pending, markup=False, emoji=False, soft_wrap=True)
            self._pending = ""
        elif not self._ended_line and self.shared:
            self.out.file.write("\n")
            self.out.file.flush()
        self._ended_line = True

    def _line(self, text: Text | str) -> None:
        """A line of the command's own (not the agent's output)."""
        if self.shared:
            self._flush_pending()
        self.ui.print(text, soft_wrap=True)

    def _artifact_update(self, artifact: Artifact, append: bool) -> None:
        name = artifact.artifact_id
        if name != self._artifact:
            if self._artifact is not None or name != "response":
                if self.shared:
                    self._line(Text(f"── {artifact.name or name} ──", "dim"))
                elif not self._ended_line:
                    self._write("\n")
            self._artifact = name
        if not append:
            self._shown[name] = ""
        text = artifact_text(artifact)
        self._shown[name] = self._shown.get(name, "") + text
        if name == "response":
            self._response_text = self._shown[name]
        self._write(text)

    # -- the View ----------------------------------------------------------------------

    def header(self, task_id: str, context_id: str | None) -> None:
        self.task_id = task_id
        line = Text.assemble(("task ", "dim"), (task_id, "bold"))
        if context_id:
            line.append(f" · context {context_id}", "dim")
        self._line(line)

    def show(self, event: StreamEvent) -> None:
        if self.retry is not None:
            self.retry = None
            self._line(Text("reconnected; the task's events go on where they stopped", "dim"))
        self._show(event)
        if self._live is not None:
            # Now, not at the next tick: lines printed meanwhile redraw the region as
            # it was last rendered.
            self._live.refresh()

    def _show(self, event: StreamEvent) -> None:
        item = event.item
        if not self.timed and self._anchor and isinstance(item, Task | TaskStatusUpdateEvent):
            self._count_from(item.status.timestamp)
        if isinstance(item, Task):
            self._status(item.status.state, item.status.message, item.metadata)
            for artifact in item.artifacts or []:
                full = artifact_text(artifact)
                before = self._shown.get(artifact.artifact_id, "")
                if full != before:
                    fresh = full[len(before) :] if full.startswith(before) else full
                    chunk = artifact.model_copy(update={"parts": [Part(text=fresh)]})
                    self._artifact_update(chunk, append=full.startswith(before))
        elif isinstance(item, TaskStatusUpdateEvent):
            self._status(item.status.state, item.status.message, item.metadata)
        elif isinstance(item, TaskArtifactUpdateEvent):
            self._artifact_update(item.artifact, item.append)
        elif isinstance(item, Message):
            self._write(item.text)

    def _status(
        self, state: TaskState, message: Message | None, metadata: dict[str, Any] | None
    ) -> None:
        self.state = state
        if (metadata or {}).get("andon.canceling") and self.canceling_since is None:
            self.detail = "canceling…"
        elif state is TaskState.WORKING and message is not None:
            self.detail = message.text

    def _count_from(self, timestamp: str | None) -> None:
        """Following a task from its first event (watching one that began before the
        command): the status line counts from that event's time, the task's start."""
        self._anchor = False
        try:
            then = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
        except ValueError:
            return
        if then.tzinfo is not None:
            age = max(0.0, (datetime.now(UTC) - then).total_seconds())
            self.started = time.monotonic() - age

    def progress(self, task: Task) -> None:
        self._status(task.status.state, task.status.message, task.metadata)

    def canceling(self, note: str) -> None:
        self.canceling_since = time.monotonic()
        self._line(Text.assemble(("canceling…", "bold magenta"), (f" {note}", "dim")))

    def note(self, text: str) -> None:
        self._line(Text(text, "dim"))

    def reconnecting(self, retry: Retry) -> None:
        if self.retry is None:
            watch = f" (`andon watch {self.task_id}` follows it)" if self.task_id else ""
            self._line(
                Text(
                    f"lost the connection to the server ({retry.cause}); reconnecting. "
                    f"The task lives on the server: if the server is down, start it again{watch}.",
                    "yellow",
                )
            )
        self.retry = retry
        if self._live is not None:
            self._live.refresh()

    def question(self, text: str, prompt: bool) -> None:
        self._pause()
        self.ui.print(Text.assemble(("? ", "bold yellow"), (text, "bold")), soft_wrap=True)
        if prompt:
            self.ui.print(Text("> ", "bold yellow"), end="")
            self.ui.file.flush()

    def answered(self) -> None:
        self._resume()

    def finish(self, ending: Ending, cancel_seconds: float | None) -> None:
        self._pause()
        took = elapsed(time.monotonic() - self.started) if self.timed else ""
        after, within = (f" after {took}", f" in {took}") if took else ("", "")
        message = (ending.message or "").strip()
        if ending.state is TaskState.COMPLETED:
            line = Text.assemble(("✓ completed", "bold green"), within)
            if message and message != self._response_text.strip():
                line.append(f" · {message}", "dim")
        elif ending.state is TaskState.CANCELED:
            if cancel_seconds is not None:
                line = Text.assemble(
                    ("■ canceled", "bold magenta"), f" in {cancel_seconds * 1000:.0f} ms"
                )
            else:
                line = Text.assemble(("■ canceled", "bold magenta"), after)
            if ending.reason:
                line.append(f" (reason: {ending.reason})", "dim")
            if ending.stop is not None:
                line.append(f" · its work {ending.stop}", "dim")
            elif "before it started" in message:
                line.append(" · before it started", "dim")
            if message and not message.startswith("canceled"):
                line.append(f" · {message}", "dim")
        elif ending.state in (TaskState.FAILED, TaskState.REJECTED):
            line = Text.assemble((f"✗ {ending.state.value}", "bold red"), after)
            if ending.reason and ending.reason != "error":
                line.append(f" ({ending.reason})", "red")
            if message:
                line.append(f": {message}")
        else:  # waits for input: the question is on the line above
            line = Text.assemble(("? needs input", "bold yellow"), after)
        self._line(line)

    def close(self) -> None:
        self._pause()


class JsonView:
    """One JSON object a line on stdout, each stream item as it comes; notes and
    questions on stderr."""

    def __init__(self) -> None:
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def _print(self, value: Any) -> None:
        sys.stdout.write(json_line(value) + "\n")
        sys.stdout.flush()

    def header(self, task_id: str, context_id: str | None) -> None:
        pass

    def show(self, event: StreamEvent) -> None:
        self._print(event_json(event))

    def progress(self, task: Task) -> None:
        pass

    def canceling(self, note: str) -> None:
        self.err.print(f"canceling… {note}", markup=False)

    def note(self, text: str) -> None:
        self.err.print(text, markup=False)

    def reconnecting(self, retry: Retry) -> None:
        self.err.print(
            f"reconnecting ({retry.attempt}/{retry.attempts}): {retry.cause}", markup=False
        )

    def question(self, text: str, prompt: bool) -> None:
        self.err.print(f"? {text}", markup=False)
        if prompt:
            self.err.print("> ", end="", markup=False)
            self.err.file.flush()

    def answered(self) -> None:
        pass

    def finish(self, ending: Ending, cancel_seconds: float | None) -> None:
        pass

    def close(self) -> None:
        pass
