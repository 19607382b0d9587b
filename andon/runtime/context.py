"""TaskContext: everything an agent sees of its task, and everything it starts through it
(processes, threads, HTTP requests, files) is owned by the attempt and stopped with it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import os
import pickle
import shlex
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import httpx

from andon.protocol.types import Artifact, Message, Part, Role, TaskState
from andon.runtime.lifeline import Lifeline
from andon.runtime.processes import ProcessGroups
from andon.runtime.scope import CancelMode, CancelScope, Stopping, TaskCancelled
from andon.store.base import EventKind, Store, fold_artifacts

if TYPE_CHECKING:
    from andon.client.api import Binding
    from andon.protocol.types import Task
    from andon.runtime.delegation import RemoteCall

P = ParamSpec("P")
T = TypeVar("T")

Content = str | bytes | dict[str, Any] | Part | Sequence[Part]
FileData = str | bytes | Iterable[str | bytes] | AsyncIterable[str | bytes]
CancelHook = Callable[[], Any]
_YIELD_EVERY = 0.001
DIRECT_REPLY = "andon.directReply"
"""Task metadata: the agent answered with a message (`TaskContext.reply`)."""


class Owned(Protocol):
    """Something the attempt stops in its teardown (a remote child task)."""

    def describe(self) -> str: ...

    async def stop(self, reason: str, mode: CancelMode, deadline: float) -> list[str]:
        """Stop it by `deadline` (time.monotonic()); descriptions of what did not stop."""
        ...


class TaskFailed(Exception):
    """Raise from an agent to end its task `failed` with this message."""


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
        import base64

        return [Part(raw=base64.b64encode(content).decode(), media_type="application/octet-stream")]
    if isinstance(content, dict):
        return [Part(data=content, media_type="application/json")]
    return list(content)


class TaskContext:
    """What an agent receives. Async methods are for coroutines; `check()` and
    `to_thread` bridge to threads; `SyncTaskContext` wraps this for synchronous agents."""

    def __init__(
        self,
        *,
        task_id: str,
        context_id: str,
        epoch: int,
        message: Message,
        history: list[Message],
        metadata: dict[str, Any],
        store: Store,
        scope: CancelScope,
        deadline: float | None,
        workdir: Path,
        retry_of: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.context_id = context_id
        self.epoch = epoch
        self.message = message
        self.history = history
        self.metadata = metadata
        self.deadline = deadline
        self.retry_of = retry_of
        """The task this one retries (`andon/retry`), if any."""
        self.workdir = workdir
        self.stopping = Stopping(scope)
        self.last_activity = time.monotonic()
        self.waiting_for_input_since: float | None = None
        self.question_seq: int | None = None
        """While waiting for an answer: the sequence number of the question's event."""
        self._store = store
        self._scope = scope
        self._loop = asyncio.get_running_loop()
        self._processes = ProcessGroups()
        self._threads: dict[asyncio.Future[None], str] = {}
        self._portal_calls: set[concurrent.futures.Future[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        self._hooks: list[CancelHook] = []
        self._owned: list[Owned] = []
        self._started_artifacts: set[str] = set()
        self.final_metadata: dict[str, Any] = {}
        """Keys merged into the task's metadata when this attempt ends, however it ends
        (completed, failed or canceled): `andon.llm` keeps `andon.usage` here."""
        self._answer: asyncio.Future[Message] | None = None
        self._last_yield = 0.0

    # -- what the agent reads -------------------------------------------------------

    @property
    def text(self) -> str:
        """The text of the incoming message, stripped."""
        return self.message.text.strip()

    @property
    def cancel_reason(self) -> str | None:
        return self._scope.reason

    async def retried_artifacts(self) -> list[Artifact]:
        """The artifacts (partial ones included) of the task this one retries."""
        if self.retry_of is None:
            return []
        return fold_artifacts(await self._store.events(self.retry_of))

    def time_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    # -- checkpoints ----------------------------------------------------------------

    def check(self) -> None:
        """A step boundary: raises TaskCancelled once the task is being cancelled.

        Call it from CPU-bound loops and threads; it is cheap and thread-safe. At most
        once a millisecond it also lets go of the GIL for a moment: a thread that holds
        it would otherwise keep the event loop (and the cancel on its way to this very
        thread) waiting up to the 5 ms switch interval at every step.
        """
        self._scope.raise_if_cancelled(step_boundary=True)
        now = time.monotonic()
        if now - self._last_yield >= _YIELD_EVERY:
            self._last_yield = now
            time.sleep(0)

    def _ensure_active(self) -> None:
        self._scope.raise_if_cancelled(step_boundary=False)

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

    async def close_artifact(self, artifact: str, metadata: dict[str, Any], text: str = "") -> None:
        """End an artifact with a last chunk (`text`, possibly empty) that carries
        `metadata` (merged into the artifact's). Unlike `emit`, allowed while the task is
        being cancelled (not once the attempt is over): a step cut short says there what
        it left unfinished, as `andon.llm` marks a cut answer `andon.partial`."""
        if self._scope.closed:
            raise TaskCancelled("the attempt is over")
        append = artifact in self._started_artifacts
        self._started_artifacts.add(artifact)
        body = Artifact(artifact_id=artifact, parts=[Part(text=text)], metadata=metadata)
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
        message = Message(role=Role.AGENT, parts=[Part(text=text)], task_id=self.task_id)
        await self._append(
            "progress", {"state": TaskState.WORKING.value, "message": message.dump()}
        )

    async def _append(self, kind: EventKind, data: dict[str, Any]) -> None:
        self.last_activity = time.monotonic()
        if await self._store.append(self.task_id, self.epoch, kind, data) is None:
            # The task ended or moved to another attempt under us: this attempt is over.
            raise TaskCancelled("task is no longer running this attempt")

    # -- questions ------------------------------------------------------------------

    async def ask(self, question: str) -> str:
        """Ask the user; the task waits in input-required until the answer arrives."""
        return (await self.ask_message(question)).text

    async def ask_message(self, question: str) -> Message:
        self._ensure_active()
        # Ready before the state is visible: an answer may arrive right after the commit.
        self._answer = self._loop.create_future()
        message = Message(role=Role.AGENT, parts=[Part(text=question)], task_id=self.task_id)
        moved = await self._store.transition(
            self.task_id,
            sources=[TaskState.WORKING],
            target=TaskState.INPUT_REQUIRED,
            epoch=self.epoch,
            message=message.dump(),
        )
        if moved is None:
            self._answer = None
            raise TaskCancelled("task is no longer running")
        self.waiting_for_input_since = time.monotonic()
        self.question_seq = moved.last_seq
        try:
            answer = await self._answer
        finally:
            self._answer = None
            self.waiting_for_input_since = None
            self.question_seq = None
        self.last_activity = time.monotonic()
        self.history.append(answer)
        return answer

    def deliver_answer(self, message: Message) -> bool:
        if self._answer is None or self._answer.done():
            return False
        self._answer.set_result(message)
        return True

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

        A string runs through `sh -c`. The whole group is killed when the task is
        cancelled, or when this call is interrupted.
        """
        self._ensure_active()
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        label = command if isinstance(command, str) else shlex.join(argv)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd or self.workdir,
            env=env,
        )
        self._processes.add(proc.pid, f"process group {proc.pid} ({label})")
        output: list[str] = []
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace")
                output.append(line)
                self.last_activity = time.monotonic()
                if stream:
                    await self.emit(line, artifact=artifact, name="output")
            returncode = await proc.wait()
        except BaseException:
            await asyncio.shield(self._processes.kill_all(self._kill_grace))
            raise
        self._processes.discard(proc.pid)
        result = CommandResult(returncode, "".join(output))
        if check and returncode != 0:
            raise CommandFailed(label, result)
        return result

    @property
    def http(self) -> httpx.AsyncClient:
        """An HTTP client whose requests are aborted and connections closed with the task."""
        self._ensure_active()
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0), verify=_tls_context())
        return self._http

    async def to_thread(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking code in a thread of its own; it must call `ctx.check()` now and
        then, which raises once the task is cancelled. The cancel waits for the thread."""
        self._ensure_active()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        finished: asyncio.Future[None] = self._loop.create_future()

        def body() -> None:
            try:
                if result.set_running_or_notify_cancel():
                    try:
                        result.set_result(fn(*args, **kwargs))
                    except BaseException as exc:
                        result.set_exception(exc)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may be gone at exit
                    self._loop.call_soon_threadsafe(_resolve, finished)

        name = getattr(fn, "__name__", "thread")
        self._threads[finished] = name
        finished.add_done_callback(lambda f: self._threads.pop(f, None))
        threading.Thread(target=body, name=f"andon-{self.task_id[:8]}-{name}", daemon=True).start()
        return await asyncio.wrap_future(result)

    async def run_process(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run a picklable, importable function in a child process (its own process
        group), for CPU-bound or uncooperative code: a cancel always stops it."""
        self._ensure_active()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "andon.runtime.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        label = f"process group {proc.pid} ({getattr(fn, '__qualname__', fn)!s})"
        self._processes.add(proc.pid, label)
        try:
            out, _ = await proc.communicate(pickle.dumps((fn, args)))
        except BaseException:
            await asyncio.shield(self._processes.kill_all(self._kill_grace))
            raise
        self._processes.discard(proc.pid)
        ok, value = pickle.loads(out)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

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
        """The attempt stops `resource` in its teardown."""
        self._owned.append(resource)

    async def stop_owned(self, reason: str, mode: CancelMode, deadline: float) -> list[str]:
        owned, self._owned = self._owned, []
        if not owned:
            return []
        survivors = await asyncio.gather(*(r.stop(reason, mode, deadline) for r in owned))
        return [name for found in survivors for name in found]

    def on_cancel(self, hook: CancelHook) -> CancelHook:
        """Register a cleanup (sync or async) run when the task is cancelled, within the
        cleanup budget. Usable as a decorator."""
        self._hooks.append(hook)
        return hook

    # -- teardown (called by the Supervisor) ----------------------------------------

    _kill_grace = 2.0

    def configure_teardown(self, kill_grace: float, lifeline: Lifeline | None = None) -> None:
        self._kill_grace = kill_grace
        self._processes.lifeline = lifeline

    async def kill_processes(self) -> list[str]:
        return await self._processes.kill_all(self._kill_grace)

    @property
    def processes_killed_after_grace(self) -> int:
        return self._processes.killed_after_grace

    def abort_portal_calls(self) -> None:
        for call in list(self._portal_calls):
            call.cancel()

    async def wait_threads(self, timeout: float) -> list[str]:
        """Wait for the attempt's threads to return; name those still running."""
        if self._threads:
            await asyncio.wait(list(self._threads), timeout=max(0.0, timeout))
        return [f"thread {name}" for name in self._threads.values()]

    async def run_cancel_hooks(self, budget: float) -> list[str]:
        failures: list[str] = []
        hooks, self._hooks = self._hooks, []
        deadline = time.monotonic() + budget
        for hook in hooks:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    outcome = hook()
                    if inspect.isawaitable(outcome):
                        await outcome
            except Exception as exc:  # a broken hook must not stop the others
                failures.append(f"on_cancel hook {getattr(hook, '__name__', hook)!s}: {exc!r}")
            except TimeoutError:
                failures.append(f"on_cancel hook {getattr(hook, '__name__', hook)!s} timed out")
        return failures

    async def close_http(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def call_from_thread(self, coro: Awaitable[T]) -> T:
        """Run one of the context's coroutines from an agent thread, owned by the attempt."""
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self._loop)
        self._portal_calls.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise TaskCancelled(self._scope.reason or "cancelled") from None
        finally:
            self._portal_calls.discard(future)


class SyncTaskContext:
    """The same context for a synchronous agent, which runs in a thread."""

    def __init__(self, ctx: TaskContext) -> None:
        self.async_context = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self.async_context, name)

    def emit(self, content: Content, **options: Any) -> None:
        self.async_context.call_from_thread(self.async_context.emit(content, **options))

    def progress(self, text: str) -> None:
        self.async_context.call_from_thread(self.async_context.progress(text))

    def ask(self, question: str) -> str:
        return self.async_context.call_from_thread(self.async_context.ask(question))

    def run(self, command: str | Sequence[str], **options: Any) -> CommandResult:
        return self.async_context.call_from_thread(self.async_context.run(command, **options))

    def write_file(self, path: str | Path, data: str | bytes | Iterable[str | bytes]) -> Path:
        return self.async_context.call_from_thread(self.async_context.write_file(path, data))

    def call_agent(self, url: str, message: str | Message, **options: Any) -> Task:
        """Delegate to another A2A agent and wait for its task to complete (see
        `TaskContext.call_agent`)."""
        call = self.async_context.call_agent(url, message, **options)
        return self.async_context.call_from_thread(call.result())


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every attempt's HTTP client: building one loads the CA bundle,
    30 to 50 ms of CPU, which a client of its own per task would pay each time."""
    return httpx.create_ssl_context()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _to_bytes(chunk: str | bytes) -> bytes:
    return chunk.encode() if isinstance(chunk, str) else chunk
