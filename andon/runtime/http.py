"""HTTP clients that belong to an attempt: their requests stop when it is cancelled.

The async client's requests are awaited by the agent's coroutine, so cancelling the
coroutine aborts them; closing the client then closes its connections. The blocking
client serves synchronous handlers and threads, which a cancel cannot interrupt: its
transport keeps every socket it opened, and `abort` shuts them down, so a thread
blocked in a request returns at once (as TaskCancelled) and the server sees the
connection close.

The clients themselves (runtime/transports.py) are made, and httpx imported, at the
attempt's first request.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from andon.runtime.scope import CancelScope

if TYPE_CHECKING:
    import httpx


class Connection(Protocol):
    def shut_down(self) -> None: ...


class Sockets:
    """The open connections of an attempt's blocking client."""

    def __init__(self) -> None:
        self._open: set[Connection] = set()
        self._lock = threading.Lock()
        self.aborted = False

    def add(self, connection: Connection) -> None:
        with self._lock:
            self._open.add(connection)
        if self.aborted:  # opened while the abort ran: it must not outlive it
            connection.shut_down()

    def discard(self, connection: Connection) -> None:
        with self._lock:
            self._open.discard(connection)

    def abort(self) -> None:
        self.aborted = True
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            connection.shut_down()


class AttemptHttp:
    """The attempt's two clients, made on first use."""

    def __init__(self, scope: CancelScope) -> None:
        self._scope = scope
        self._async: httpx.AsyncClient | None = None
        self._blocking: httpx.Client | None = None
        self._sockets = Sockets()

    def async_client(self) -> httpx.AsyncClient:
        if self._async is None:
            from andon.runtime import transports

            self._async = transports.async_client()
        return self._async

    def blocking_client(self) -> httpx.Client:
        if self._blocking is None:
            from andon.runtime import transports

            self._blocking = transports.blocking_client(self._scope, self._sockets)
        return self._blocking

    def abort(self) -> None:
        """Shut down every connection of the blocking client (from any thread)."""
        self._sockets.abort()

    async def close(self) -> None:
        self.abort()
        if self._blocking is not None:
            self._blocking.close()
            self._blocking = None
        if self._async is not None:
            await self._async.aclose()
            self._async = None
