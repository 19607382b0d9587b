"""TaskContext: what an agent sees of its task. A facade over the task's Attempt: what
the agent starts through it (processes, threads, HTTP requests, files) is owned by the
attempt and stopped with it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import pickle
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from andon.protocol.types import Artifact, Message, Part, Role, Task, TaskState, agent_text
from andon.runtime.attempt import Attempt, CancelHook, Owned
from andon.runtime.scope import Stopping, TaskCancelled
from andon.store.base import EventKind, Store, fold_artifacts

if TYPE_CHECKING:
    import httpx

    from andon.client.api import Binding
    from andon.runtime.delegation import RemoteCall

P = ParamSpec("P")
T = TypeVar("T")

Content = str | bytes | dict[str, Any] | Part | Sequence[Part]
FileData = str | bytes | Iterable[str | bytes] | AsyncIterable[str | bytes]
_YIELD_EVERY = 0.001


class TaskFailed(Exception):
    """Raise from an agent to end its task `failed` with this message."""


class RemoteTaskFailed(TaskFailed):
    """The remote task ended without completing (failed, canceled or rejected); the
    message is the remote agent's. Uncaught, it fails the calling task with it."""

    def __init__(self, message: str, task: Task, url: str) -> None:
        super().__init__(message)
        self.task = task
        self.url = url


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    output: str


class CommandFailed(Exception):
    def __init__(self, command: str, result: CommandResult) -> None:
        super().__init__(f"{command!r} exited with {result.returncode}")
        self.result = result


def to_parts(content: Content) -> list[Part]:
    if isinstance(content, Part):
        return [content]
    if isinstance(content, str):
        return [Part(text=content)]
    if isinstance(content, bytes):
        return [Part(raw=base64.b64encode(content).decode(), media_type="application/octet-stream")]
    if isinstance(content, dict):
        return [Part(data=content, media_type="application/json")]
    return list(content)


class TaskContext:
    """What an async agent receives; `SyncTaskContext` offers the same, blocking."""

    def __init__(
        self,
        attempt: Attempt,
        *,
        store: Store,
        message: Message,
        history: list[Message],
    ) -> None:
        record = attempt.record
        self.task_id = record.id
        self.context_id = record.context_id
        self.epoch = record.epoch
        self.message = message
        self.history = history
        self.metadata = record.metadata
        self.retry_of = record.retry_of
        """The task this one retries (`andon/retry`), if any."""
        self.workdir = attempt.settings.workdir
        self.stopping = Stopping(attempt.scope)
        self._attempt = attempt
        self._store = store
        self._started_artifacts: set[str] = set()
        self._last_yield = 0.0
        self._loop_thread = threading.get_ident()
        """The event loop's thread (the context is made on it), which never yields here."""

    # -- what the agent reads -------------------------------------------------------

    @property
    def text(self) -> str:
        """The text of the incoming message, stripped."""
        return self.message.text.strip()

    @property
    def cancel_reason(self) -> str | None:
        return self._attempt.scope.reason

    @property
    def final_metadata(self) -> dict[str, Any]:
        """Keys merged into the task's metadata when this attempt ends, however it ends
        (completed, failed or canceled): `andon.llm` keeps `andon.usage` here."""
        return self._attempt.final_metadata

    @property
    def deadline(self) -> float | None:
        """The task's deadline (time.monotonic()), when it has a timeout."""
        return self._attempt.deadline

    def time_left(self) -> float | None:
        deadline = self._attempt.deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    async def retried_artifacts(self) -> list[Artifact]:
        """The artifacts (partial ones included) of the task this one retries."""
        if self.retry_of is None:
            return []
        return fold_artifacts(await self._store.events(self.retry_of, with_progress=False))

    # -- checkpoints ----------------------------------------------------------------

    def check(self) -> None:
        """A step boundary: raises TaskCancelled once the task is being cancelled.

        Call it from CPU-bound loops and threads; it is cheap and thread-safe. In a
        thread, at most once a millisecond, it also lets go of the GIL for a moment: a
        thread that holds it would otherwise keep the event loop (and the cancel on its
        way to this very thread) waiting up to the 5 ms switch interval at every step.
        Never on the loop's own thread: there the moment is a stall of the loop (a
        `time.sleep(0)` lasts some 80 µs, the kernel's timer slack), and the loop lets
        go of the GIL anyway each time it waits for I/O.
        """
        self._attempt.scope.raise_if_cancelled(step_boundary=True)
        now = time.monotonic()
        if now - self._last_yield >= _YIELD_EVERY and threading.get_ident() != self._loop_thread:
            self._last_yield = now
            time.sleep(0)

    def _ensure_active(self) -> None:
        self._attempt.scope.raise_if_cancelled(step_boundary=False)

    # -- output ---------------------------------------------------------------------

    async def emit(
        self,
        content: Content,
        *,
        artifact: str = "response",
        name: str | None = None,
        last_chunk: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Append content to an artifact (created on first use), streamed and persisted."""
        self._ensure_active()
        append = artifact in self._started_artifacts
        self._started_artifacts.add(artifact)
        body = Artifact(artifact_id=artifact, name=name, parts=to_parts(content), metadata=metadata)
        await self._append(
            "artifact", {"artifact": body.dump(), "append": append, "lastChunk": last_chunk}
        )

    async def close_artifact(
        self, artifact: str, metadata: dict[str, Any], content: Content = ""
    ) -> None:
        """End an artifact with a last chunk (`content`, possibly empty text) that carries
        `metadata` (merged into the artifact's). Unlike `emit`, allowed while the task is
        being cancelled (not once the attempt is over): a step cut short says there what
        it left unfinished, as `andon.llm` marks a cut answer `andon.partial`, or keeps
        what a retry needs, as the framework adapters keep a run's messages."""
        if self._attempt.scope.closed:
            raise TaskCancelled("the attempt is over")
        append = artifact in self._started_artifacts
        self._started_artifacts.add(artifact)
        body = Artifact(artifact_id=artifact, parts=to_parts(content), metadata=metadata)
        await self._append(
            "artifact", {"artifact": body.dump(), "append": append, "lastChunk": True}
        )

    def reply(self, content: Content, *, metadata: dict[str, Any] | None = None) -> Message:
        """A direct answer: `return ctx.reply(...)` from a handler to answer the request
        with this message rather than with a task (A2A's Message result).

        The task still exists and ends `completed` with this message as its status
        message, so GetTask, history and streams all show it; a blocking SendMessage
        returns the message itself.
        """
        return Message(
            role=Role.AGENT,
            parts=to_parts(content),
            context_id=self.context_id,
            task_id=self.task_id,
            metadata=metadata,
        )

    async def progress(self, text: str) -> None:
        """A status update that keeps the task working (shown to watchers, not an artifact)."""
        self._ensure_active()
        message = agent_text(text, self.task_id)
        await self._append("progress", {"state": TaskState.WORKING.value, "message": message})

    async def _append(self, kind: EventKind, data: dict[str, Any]) -> None:
        self._attempt.last_activity = time.monotonic()
        if await self._store.append(self.task_id, self.epoch, kind, data) is None:
            # The task ended or moved to another attempt under us: this attempt is over.
            raise TaskCancelled("task is no longer running this attempt")

    # -- questions ------------------------------------------------------------------

    async def ask(self, question: str) -> str:
        """Ask the user; the task waits in input-required until the answer arrives."""
        return (await self.ask_message(question)).text

    async def ask_message(self, question: str) -> Message:
        self._ensure_active()
        attempt = self._attempt
        # Ready before the state is visible: an answer may arrive right after the commit.
        answer = attempt.expect_answer()
        moved = await self._store.transition(
            self.task_id,
            sources=[TaskState.WORKING],
            target=TaskState.INPUT_REQUIRED,
            epoch=self.epoch,
            message=agent_text(question, self.task_id),
        )
        if moved is None:
            raise TaskCancelled("task is no longer running")
        attempt.waiting_for_input_since = time.monotonic()
        attempt.question_seq = moved.last_seq
        try:
            reply = await answer
        finally:
            attempt.waiting_for_input_since = None
            attempt.question_seq = None
        attempt.last_activity = time.monotonic()
        self.history.append(reply)
        return reply

    # -- tools ----------------------------------------------------------------------

    async def run(
        self,
        command: str | Sequence[str],
        *,
        stream: bool = True,
        check: bool = False,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        artifact: str = "output",
    ) -> CommandResult:
        """Run a command in its own process group; its output is streamed as an artifact.

        A string runs through `sh -c`. The command and everything it starts (even what
        leaves its process group) are stopped when the task is cancelled; the group is
        stopped when this call is interrupted.
        """
        self._ensure_active()
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        label = command if isinstance(command, str) else shlex.join(argv)
        processes = self._attempt.processes
        proc = await processes.spawn(argv, label, cwd=cwd or self.workdir, env=env)
        output: list[str] = []

        async def read() -> int:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace")
                output.append(line)
                self._attempt.last_activity = time.monotonic()
                if stream:
                    await self.emit(line, artifact=artifact, name="output")
            return await proc.wait()

        returncode: int = await processes.supervised(proc, read())
        result = CommandResult(returncode, "".join(output))
        if check and returncode != 0:
            raise CommandFailed(label, result)
        return result

    async def run_process(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run a picklable, importable function in a child process (its own process
        group), for CPU-bound or uncooperative code: a cancel always stops it."""
        self._ensure_active()
        label = str(getattr(fn, "__qualname__", fn))
        processes = self._attempt.processes
        proc = await processes.spawn(
            [sys.executable, "-m", "andon.runtime.child"],
            label,
            cwd=self.workdir,
            env=None,
            stdin=asyncio.subprocess.PIPE,
            stderr=None,
        )
        out, _ = await processes.supervised(proc, proc.communicate(pickle.dumps((fn, args))))
        ok, value = pickle.loads(out)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    @property
    def http(self) -> httpx.AsyncClient:
        """An HTTP client whose requests are aborted and connections closed with the task."""
        self._ensure_active()
        return self._attempt.http.async_client()

    async def to_thread(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking code in a thread of the attempt; it should call `ctx.check()` (or
        `andon.check()`) now and then, which raises once the task is cancelled. The
        cancel waits for the thread. `asyncio.to_thread` inside an attempt does the same."""
        self._ensure_active()
        return await asyncio.wrap_future(self._attempt.threads.submit(fn, *args, **kwargs))

    async def write_file(self, path: str | Path, data: FileData) -> Path:
        """Write a file atomically: it appears whole, or (if cancelled) not at all."""
        self._ensure_active()
        target = (self.workdir / path).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                if isinstance(data, str | bytes):
                    fh.write(_to_bytes(data))
                elif isinstance(data, AsyncIterable):
                    async for chunk in data:
                        self._ensure_active()
                        fh.write(_to_bytes(chunk))
                else:
                    for chunk in data:
                        self._ensure_active()
                        fh.write(_to_bytes(chunk))
                fh.flush()
                os.fsync(fh.fileno())
            self._ensure_active()
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return target

    def call_agent(
        self,
        url: str,
        message: str | Message,
        *,
        token: str | None = None,
        mirror: bool = True,
        version: str | None = None,
        binding: Binding | None = None,
    ) -> RemoteCall:
        """Delegate to another A2A agent: `async for event in ctx.call_agent(...)` for
        the remote task's events, or `await ctx.call_agent(...)` for the remote task
        once completed (RemoteTaskFailed, with the remote message, if it did not).

        The version and binding come from the agent's card (1.0 and JSON-RPC first,
        unless asked); `token` is sent as a bearer token. The remote artifacts are
        mirrored into this task, named after the remote agent, unless `mirror=False`.
        A question of the remote task is asked of this task's user (`ask`). The remote
        task is stopped with this task: cancelled, lost, or ended without waiting."""
        from andon.runtime.delegation import RemoteCall

        return RemoteCall(
            self, url, message, token=token, mirror=mirror, version=version, binding=binding
        )

    def own(self, resource: Owned) -> None:
        """The attempt stops `resource` with the rest of its work (a remote child task)."""
        self._attempt.own(resource)

    def on_cancel(self, hook: CancelHook) -> CancelHook:
        """Register a cleanup (sync or async) run when the task is cancelled, within the
        cleanup budget. Usable as a decorator."""
        self._attempt.hooks.append(hook)
        return hook


def _to_bytes(chunk: str | bytes) -> bytes:
    return chunk.encode() if isinstance(chunk, str) else chunk
