"""The blocking face of the client: every AndonClient method, run on an event loop in a
thread of the client's own, so it works anywhere (scripts, tests, inside another loop)."""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, Literal, TypeVar

from andon.client.api import DEFAULT_URL, AndonClient, CancelResult, EventStream, StreamEvent
from andon.protocol.params import ListTasksResult
from andon.protocol.types import CancelReason, Message, Task, TaskState
from andon.protocol.wire import STREAM_END_STATES

T = TypeVar("T")


class Client:
    """`Client(url, token, version)`: the same methods as AndonClient, blocking; streams
    are plain iterators. Close it (or use it in a `with` block) to stop its thread."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        version: str = "1.0",
        **options: Any,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="andon-client", daemon=True
        )
        self._thread.start()
        try:
            self.aio = self._run(_make(url, token, version, options))
            """The async client underneath (use it only from this client's own loop)."""
        except BaseException:
            self._stop()
            raise

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("the client is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop the call too
            raise

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.aio.aclose())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return self.aio.url

    def send(
        self,
        message: str | Message,
        *,
        context_id: str | None = None,
        task_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        blocking: bool = True,
        history_length: int | None = None,
    ) -> Task:
        return self._run(
            self.aio.send(
                message,
                context_id=context_id,
                task_id=task_id,
                metadata=metadata,
                blocking=blocking,
                history_length=history_length,
            )
        )

    def stream(
        self,
        message: str | Message,
        *,
        context_id: str | None = None,
        task_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        on_disconnect: str | None = None,
    ) -> Iterator[StreamEvent]:
        return self._iterate(
            self.aio.stream(
                message,
                context_id=context_id,
                task_id=task_id,
                metadata=metadata,
                on_disconnect=on_disconnect,
            )
        )

    def subscribe(
        self,
        task_id: str,
        *,
        last_event_id: int | str | None = None,
        on_disconnect: str | None = None,
    ) -> Iterator[StreamEvent]:
        return self._iterate(
            self.aio.subscribe(task_id, last_event_id=last_event_id, on_disconnect=on_disconnect)
        )

    def _iterate(self, events: EventStream) -> Iterator[StreamEvent]:
        async def step() -> StreamEvent | None:
            try:
                return await events.__anext__()
            except StopAsyncIteration:
                return None

        try:
            while (event := self._run(step())) is not None:
                yield event
        finally:
            if not self._loop.is_closed():
                self._run(events.aclose())

    def get(self, task_id: str, *, history_length: int | None = None) -> Task:
        return self._run(self.aio.get(task_id, history_length=history_length))

    def list(
        self,
        *,
        context_id: str | None = None,
        state: TaskState | str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
        history_length: int | None = None,
        include_artifacts: bool = False,
    ) -> ListTasksResult:
        return self._run(
            self.aio.list(
                context_id=context_id,
                state=state,
                page_size=page_size,
                page_token=page_token,
                history_length=history_length,
                include_artifacts=include_artifacts,
            )
        )

    def cancel(
        self,
        task_id: str,
        *,
        reason: CancelReason | str = CancelReason.USER,
        wait: float | None = None,
        mode: Literal["immediate", "graceful"] | None = None,
    ) -> Task:
        return self._run(self.aio.cancel(task_id, reason=reason, wait=wait, mode=mode))

    def cancel_many(
        self,
        ids: Sequence[str] | None = None,
        *,
        context_id: str | None = None,
        states: Sequence[TaskState | str] | None = None,
        reason: CancelReason | str = CancelReason.OPERATOR,
        wait: float | None = None,
    ) -> builtins.list[CancelResult]:
        return self._run(
            self.aio.cancel_many(
                ids, context_id=context_id, states=states, reason=reason, wait=wait
            )
        )

    def answer(self, task_id: str, answer: str | Message, *, blocking: bool = True) -> Task:
        return self._run(self.aio.answer(task_id, answer, blocking=blocking))

    def retry(self, task_id: str) -> Task:
        return self._run(self.aio.retry(task_id))

    def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        until: frozenset[TaskState] = STREAM_END_STATES,
    ) -> Task:
        return self._run(self.aio.wait(task_id, timeout=timeout, until=until))

    def card(self) -> dict[str, Any]:
        return self._run(self.aio.card())


async def _make(url: str, token: str | None, version: str, options: dict[str, Any]) -> AndonClient:
    # Made on the client's loop, which its connections belong to.
    return AndonClient(url, token, version, **options)
