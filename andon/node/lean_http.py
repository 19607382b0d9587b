"""uvicorn's httptools protocol, 2.3 KiB lighter for every open connection.

Each connection holds three asyncio structures that are nearly always empty: the queue
of pipelined requests, the flow control's "writable" event and the request's "message"
event. Each is (or holds) a `collections.deque`, whose first block takes 64 slots:
about 770 bytes, 2.3 KiB a connection. A crowd of a thousand streams, each cancelled on
a connection of its own, is 2,000 connections, 4.6 MiB.

Here the queue is a list and the events are `Flag`s, which allocate only for a waiter.
They replace uvicorn's own as each is made (the protocol's, on connection, and the
request's, once its headers are read), with the behaviour uvicorn uses of them:
`appendleft`/`pop` (first in, first out) and `set`/`clear`/`is_set`/`wait`.
tests/test_lean_http.py drives each path that uses them, and fails if a connection
still holds a deque or an asyncio.Event (a renamed attribute in a new uvicorn).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class Flag:
    """asyncio.Event's set/clear/wait, without a deque: waiters are few and rare (one
    reader of a request's body, the writers of a paused response)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._set = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class Pipeline(list[Any]):
    """The pipelined requests, as uvicorn queues them: `appendleft`, then `pop`."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class LeanHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol with a Pipeline and two Flags in place of its deques."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = Pipeline()  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow._is_writable_event = _lean(self.flow._is_writable_event)  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.cycle is not None:  # a new request's (an earlier one's is a Flag already)
            self.cycle.message_event = _lean(self.cycle.message_event)  # type: ignore[assignment]


def _lean(event: asyncio.Event | Flag) -> Flag:
    """A Flag in place of an asyncio.Event just made (no waiter yet)."""
    return Flag(event.is_set()) if isinstance(event, asyncio.Event) else event
