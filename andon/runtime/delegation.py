"""Delegation: a task hands part of its work to another A2A agent (`ctx.call_agent`),
and that remote task is stopped whenever the calling task stops.

The remote task is one of the things an attempt owns (as its process groups are):

- it is created with a non-blocking send, and its id is stored on the parent's record
  (`andon.children`) before anything else is awaited, so whoever ends the parent later
  (a cancel, or the process that finds its worker lost: runtime/orphans.py) can reach
  it;
- its events are read by a stream this module owns, opened with the disconnect policy
  `cancel`: an andon child is cancelled by its own server when the parent's process
  dies and the connection closes;
- when the parent's attempt stops, `RemoteChild.stop` sends CancelTask (reason
  `parent_canceled`, the parent's mode) and waits for the remote task to end, within the
  parent's hard deadline; a child that does not confirm is named as a survivor, and the
  parent ends `failed` / cancel_timeout rather than `canceled`.

The agent's coroutine only reads a queue: cancelling it leaves the stream open, so the
child hears `parent_canceled` from CancelTask, not a dropped connection.

Only `andon.client` is used to talk to the remote agent; it imports nothing above the
protocol, so the layers still point one way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any

from andon.client.api import AndonClient, Binding, EventStream, StreamEvent, user_message
from andon.client.discover import Interface, discover
from andon.client.errors import ClientError, RemoteError, TaskNotCancelable, TaskNotFound
from andon.protocol.types import (
    Artifact,
    CancelMode,
    CancelReason,
    Message,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from andon.runtime.context import RemoteTaskFailed
from andon.runtime.scope import TaskCancelled

if TYPE_CHECKING:
    from andon.runtime.context import TaskContext

log = logging.getLogger("andon.runtime")

PARENT_TASK = "andon.parentTask"
"""Metadata of a delegated request: the id of the task that delegated it."""
QUESTIONS = frozenset({TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED})
ABANDON_BUDGET = 10.0
"""Seconds a remote task left behind by its caller (not by a cancel) gets to confirm."""

_question_locks: weakref.WeakKeyDictionary[TaskContext, asyncio.Lock] = weakref.WeakKeyDictionary()


class RemoteChild:
    """One task delegated to a remote agent, owned by the calling attempt."""

    def __init__(
        self,
        ctx: TaskContext,
        url: str,
        *,
        token: str | None,
        version: str | None,
        binding: Binding | None,
        mirror: bool,
    ) -> None:
        self.ctx = ctx
        self.url = url
        self.token = token
        self.version = version
        self.binding = binding
        self.mirror = mirror
        self.interface: Interface | None = None
        self.task: Task | None = None
        """The remote task as last seen."""
        self._client: AndonClient | None = None
        self._creating: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._stream: EventStream | None = None
        self._mirrored: dict[str, int] = {}
        """Remote artifact id -> how many of its parts the parent holds."""
        self._stopped: asyncio.Future[list[str]] | None = None
        """The one stop of this child (the caller's and the attempt's ask the same)."""

    @property
    def task_id(self) -> str | None:
        return self.task.id if self.task is not None else None

    @property
    def state(self) -> TaskState | None:
        return self.task.status.state if self.task is not None else None

    @property
    def ended(self) -> bool:
        return self.task is not None and self.task.status.state.terminal

    def describe(self) -> str:
        if self.task is None:
            return f"remote task (being created) at {self.url}"
        return f"remote task {self.task.id} at {self.url}"

    # -- starting --------------------------------------------------------------------

    async def start(self, message: Message) -> None:
        """Create the remote task, record it on the parent, open its stream. Runs as a
        task of its own: a cancel of the caller meanwhile does not lose the child, whose
        creation `stop` waits for."""
        self._creating = asyncio.create_task(self._create(message))
        await asyncio.shield(self._creating)

    async def _create(self, message: Message) -> None:
        ctx = self.ctx
        self.interface = await discover(
            self.url, token=self.token, version=self.version, binding=self.binding
        )
        self._client = self.interface.client(self.token)
        metadata = {**(message.metadata or {}), PARENT_TASK: ctx.task_id}
        left = ctx.time_left()
        if left is not None:
            metadata["andon.timeout"] = max(left, 0.001)
        created = await self._client.send(
            message.model_copy(update={"metadata": metadata}), blocking=False
        )
        self.task = created
        entry = {
            "id": created.id,
            "url": self.url,
            "agent": self.interface.agent,
            "endpoint": self.interface.url,
            "version": self.interface.version.value,
            "binding": self.interface.binding,
            "contextId": created.context_id,
        }
        if not await ctx._store.record_child(ctx.task_id, ctx.epoch, entry):
            # The parent ended (or moved to another attempt) meanwhile: nobody will stop
            # this child later, so stop it now.
            await self._cancel(time.monotonic() + ABANDON_BUDGET)
            raise TaskCancelled("task is no longer running this attempt")
        self._open()

    def _open(self) -> None:
        """Follow the remote task (again): its events go to the queue."""
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._client is not None and self.task is not None
        if self.ended:
            await self._deliver(StreamEvent(None, self.task))
            self._events.put_nowait(None)
            return
        self._stream = self._client.subscribe(self.task.id, on_disconnect="cancel")
        seen = False
        try:
            async for event in self._stream:
                seen = True
                await self._deliver(event)
        except RemoteError as exc:
            if seen:
                self._events.put_nowait(exc)
                return
            # Refused at once: A2A servers refuse to follow a task that has ended.
            try:
                await self.refresh()
            except Exception as again:
                self._events.put_nowait(again)
                return
            if not self.ended:
                self._events.put_nowait(exc)
                return
            await self._deliver(StreamEvent(None, self.task))
            self._events.put_nowait(None)
        except Exception as exc:
            self._events.put_nowait(exc)
        else:
            self._events.put_nowait(None)

    async def _deliver(self, event: StreamEvent) -> None:
        await self._seen(event)
        self._events.put_nowait(event)

    async def _seen(self, event: StreamEvent) -> None:
        """Keep the remote task's view, and mirror new artifact parts into the parent."""
        item = event.item
        fresh: list[tuple[Artifact, int]] = []
        if isinstance(item, Task):
            self.task = item
            for artifact in item.artifacts or ():
                fresh.append((artifact, self._mirrored.get(artifact.artifact_id, 0)))
        elif isinstance(item, TaskStatusUpdateEvent) and self.task is not None:
            self.task.status = item.status
        elif isinstance(item, TaskArtifactUpdateEvent) and self.task is not None:
            chunk = item.artifact
            held = {a.artifact_id: a for a in self.task.artifacts or ()}
            known = held.get(chunk.artifact_id)
            if item.append and known is not None:
                known.parts.extend(chunk.parts)
            else:
                held[chunk.artifact_id] = chunk.model_copy(deep=True)
            self.task.artifacts = list(held.values())
            fresh.append((chunk, 0 if not item.append else -1))
        if self.mirror:
            for artifact, skip in fresh:
                await self._mirror(artifact, skip)

    async def _mirror(self, artifact: Artifact, skip: int) -> None:
        """Append the artifact's parts (after the first `skip`; -1: all, a chunk) to the
        parent's artifact named after the remote agent."""
        parts = artifact.parts if skip < 0 else artifact.parts[skip:]
        key = artifact.artifact_id
        self._mirrored[key] = (0 if skip == 0 else self._mirrored.get(key, 0)) + len(parts)
        if not parts:
            return
        agent = self.interface.agent if self.interface is not None else self.url
        try:
            await self.ctx.emit(
                parts,
                artifact=f"{self.task_id}.{key}",
                name=f"{agent}: {artifact.name or key}",
                metadata={"andon.remoteTask": self.task_id, "andon.remoteAgent": self.url},
            )
        except TaskCancelled:
            self.mirror = False  # the parent is stopping: its record takes no more

    # -- following -------------------------------------------------------------------

    async def next(self) -> StreamEvent | None:
        """The next event of the remote task; None when its stream ended (the task ended
        or asks a question)."""
        got = await self._events.get()
        if isinstance(got, BaseException):
            raise got
        return got

    async def answer(self, text: str, *, follow: bool = True) -> None:
        """Send the parent's user's answer to the remote task's question, and (`follow`)
        follow it again."""
        assert self._client is not None and self.task is not None
        self.task = await self._client.answer(self.task.id, text, blocking=False)
        if follow:
            self._open()

    async def refresh(self) -> None:
        """Read the remote task (its stream closed without saying how it stands)."""
        assert self._client is not None and self.task is not None
        self.task = await self._client.get(self.task.id)

    # -- stopping (the attempt's side) -----------------------------------------------

    async def stop(self, reason: str, mode: CancelMode, deadline: float) -> list[str]:
        """Stop the remote task by `deadline`: CancelTask with reason `parent_canceled`
        and the parent's `mode`, then wait for it to end. Returns what did not stop."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop(mode, deadline))
        return await asyncio.shield(self._stopped)

    async def _stop(self, mode: CancelMode, deadline: float) -> list[str]:
        try:
            if self._creating is not None and not self._creating.done():
                await asyncio.wait({self._creating}, timeout=max(0.0, deadline - time.monotonic()))
                if not self._creating.done():
                    self._creating.cancel()
                    return [self.describe()]
            if self.task is None or self.ended:
                return []  # never created (its creation failed), or already over
            if await self._cancel(deadline, mode):
                return []
            return [self.describe()]
        finally:
            await self.close()

    async def _cancel(self, deadline: float, mode: CancelMode = CancelMode.IMMEDIATE) -> bool:
        """CancelTask, then wait for the remote task to end; whether it did by `deadline`."""
        assert self._client is not None and self.task is not None
        task_id = self.task.id
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                left = max(0.0, deadline - time.monotonic())
                task = await self._client.cancel(
                    task_id, reason=CancelReason.PARENT_CANCELED, wait=left, mode=mode.value
                )
                while not task.status.state.terminal:  # a server that answers before it stops
                    await asyncio.sleep(0.05)
                    task = await self._client.get(task_id)
        except TaskNotCancelable:
            return True  # it had ended already
        except TaskNotFound:
            log.warning("%s is unknown to its server: taken as stopped", self.describe())
            return True
        except (ClientError, TimeoutError, RuntimeError) as exc:
            log.warning("%s did not confirm its cancel: %s", self.describe(), exc)
            return False
        self.task.status = task.status
        return True

    async def abandon(self) -> None:
        """The caller left the remote task behind while its own task goes on: stop it."""
        if self.task is not None and not self.ended:
            await self.stop(CancelReason.PARENT_CANCELED, CancelMode.IMMEDIATE, _abandon_by())
        else:
            await self.close()

    async def close_stream(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await self._stream.aclose()

    async def close(self) -> None:
        await self.close_stream()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()


def _abandon_by() -> float:
    return time.monotonic() + ABANDON_BUDGET


class RemoteCall:
    """`ctx.call_agent(...)`: iterate it for the remote task's events as they come, or
    await it for the remote task once it has completed."""

    def __init__(self, ctx: TaskContext, url: str, message: str | Message, **options: Any) -> None:
        self.ctx = ctx
        self.message = user_message(message)
        self.child = RemoteChild(ctx, url, **options)

    def __aiter__(self) -> AsyncGenerator[StreamEvent, None]:
        return self._follow()

    def __await__(self) -> Generator[Any, None, Task]:
        return self.result().__await__()

    async def result(self) -> Task:
        """Follow the remote task to its end; the completed task (with its artifacts)."""
        async for _ in self._follow():
            pass
        assert self.child.task is not None
        return self.child.task

    async def _follow(self) -> AsyncGenerator[StreamEvent, None]:
        ctx, child = self.ctx, self.child
        ctx._ensure_active()
        own(ctx, child)
        await child.start(self.message)
        settled = False
        try:
            while True:
                event = await child.next()
                if event is not None:
                    yield event
                    if isinstance(event.item, Task) and event.state in QUESTIONS:
                        # Found waiting when followed: the stream stays open for what
                        # comes after the answer.
                        await child.answer(await _ask(ctx, child), follow=False)
                    continue
                if child.state in QUESTIONS:  # the stream ended at the question
                    await child.answer(await _ask(ctx, child))
                    continue
                if not child.ended:
                    await child.refresh()
                    if not child.ended:
                        child._open()  # the stream closed early: follow it again
                        continue
                break
            settled = True
        finally:
            if not settled and not ctx.stopping:
                # Left early by the caller (not by a cancel of its task, whose teardown
                # stops the child with the rest): the remote work is not wanted any more.
                await asyncio.shield(child.abandon())
        await child.close_stream()
        task = child.task
        assert task is not None
        if task.status.state is not TaskState.COMPLETED:
            raise RemoteTaskFailed(_failure(task, child), task, child.url)


async def _ask(ctx: TaskContext, child: RemoteChild) -> str:
    """Ask the parent's own user the remote task's question (one question at a time)."""
    lock = _question_locks.setdefault(ctx, asyncio.Lock())
    status = child.task.status if child.task is not None else None
    question = (status.message.text if status and status.message else "") or (
        f"{child.describe()} asks for input"
    )
    async with lock:
        return await ctx.ask(question)


def _failure(task: Task, child: RemoteChild) -> str:
    said = task.status.message.text if task.status.message else ""
    reason = (task.metadata or {}).get("andon.reason")
    what = f"{child.describe()} ended {task.status.state.value}"
    if reason:
        what += f" ({reason})"
    return f"{what}: {said}" if said else what


def own(ctx: TaskContext, child: RemoteChild) -> None:
    """Hand the child to the attempt, which stops it with everything else it owns."""
    ctx.own(child)
