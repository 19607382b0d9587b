"""The blocking face of the client: every AndonClient method, run on an event loop in a
thread of the client's own, so it works anywhere (scripts, tests, inside another loop)."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from andon.client.api import DEFAULT_URL, AndonClient, EventStream, StreamEvent

T = TypeVar("T")
P = ParamSpec("P")


def _blocking(
    method: Callable[Concatenate[AndonClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    """AndonClient's `method`, run to its end on the client's loop."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self.aio, *args, **kwargs))

    return call


def _iterating(
    method: Callable[Concatenate[AndonClient, P], EventStream],
) -> Callable[Concatenate[Client, P], Iterator[StreamEvent]]:
    """AndonClient's stream `method` as a plain iterator."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[StreamEvent]:
        return self._iterate(method(self.aio, *args, **kwargs))

    return call


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

    send = _blocking(AndonClient.send)
    get = _blocking(AndonClient.get)
    list = _blocking(AndonClient.list)
    cancel = _blocking(AndonClient.cancel)
    cancel_many = _blocking(AndonClient.cancel_many)
    answer = _blocking(AndonClient.answer)
    retry = _blocking(AndonClient.retry)
    wait = _blocking(AndonClient.wait)
    card = _blocking(AndonClient.card)
    extended_card = _blocking(AndonClient.extended_card)
    stream = _iterating(AndonClient.stream)
    subscribe = _iterating(AndonClient.subscribe)


async def _make(url: str, token: str | None, version: str, options: dict[str, Any]) -> AndonClient:
    # Made on the client's loop, which its connections belong to.
    return AndonClient(url, token, version, **options)
