"""The httpx side of the clients an attempt owns (runtime/http.py) and of
`task_http_client` (runtime/current.py).

Kept apart so that httpx, and the modules it imports whenever they are installed (its
command-line client pulls in rich and pygments), are loaded only when an agent first
makes a request: a server whose agents make none never holds them.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import certifi
import httpcore
import httpx

from andon.runtime.scope import CancelScope, TaskCancelled

if TYPE_CHECKING:
    from andon.runtime.context import TaskContext
    from andon.runtime.http import Sockets

TIMEOUT = httpx.Timeout(30.0)


class _Tracked(httpcore.NetworkStream):
    """A connection the attempt can shut down from another thread."""

    def __init__(self, stream: httpcore.NetworkStream, sockets: Sockets) -> None:
        self._stream = stream
        self._sockets = sockets
        sockets.add(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._sockets.discard(self)
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self._sockets.discard(self)
        return _Tracked(
            self._stream.start_tls(ssl_context, server_hostname, timeout), self._sockets
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)

    def shut_down(self) -> None:
        sock = self._stream.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not connected any more
                sock.shutdown(socket.SHUT_RDWR)


class _Backend(httpcore.SyncBackend):
    def __init__(self, sockets: Sockets) -> None:
        self._sockets = sockets

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Tracked(super().connect_tcp(*args, **kwargs), self._sockets)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Tracked(super().connect_unix_socket(*args, **kwargs), self._sockets)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every attempt's clients: loading the CA bundle takes tens of
    milliseconds, too long to pay on each task's first request."""
    return ssl.create_default_context(cafile=certifi.where())


class _AbortableTransport(httpx.HTTPTransport):
    def __init__(self, scope: CancelScope, sockets: Sockets) -> None:
        super().__init__(verify=_tls())
        self._scope = scope
        self._sockets = sockets
        # The pool httpx would build, with a network backend that keeps the sockets.
        self._pool = httpcore.ConnectionPool(
            ssl_context=_tls(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_Backend(sockets),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._scope.raise_if_cancelled(step_boundary=False)
        try:
            return super().handle_request(request)
        except httpx.TransportError:
            if self._sockets.aborted:
                raise TaskCancelled(self._scope.reason or "cancelled") from None
            raise


def async_client() -> httpx.AsyncClient:
    """An attempt's async client: cancelling the coroutine that awaits a request aborts it."""
    return httpx.AsyncClient(timeout=TIMEOUT, verify=_tls())


def blocking_client(scope: CancelScope, sockets: Sockets) -> httpx.Client:
    """An attempt's blocking client, whose connections `sockets.abort()` shuts down."""
    return httpx.Client(timeout=TIMEOUT, transport=_AbortableTransport(scope, sockets))


class TaskTransport(httpx.AsyncBaseTransport):
    """Sends each request over the running task's own client (`ctx.http`), so a cancel
    closes its connection; outside a task, over a pool of its own."""

    def __init__(self, current: Callable[[], TaskContext | None]) -> None:
        self._current = current
        self._outside = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx = self._current()
        if ctx is None:
            return await self._outside.handle_async_request(request)
        response = await ctx.http.send(request, stream=True)
        # The caller's client reads and closes the body; closing it closes the task
        # client's response (its connection goes back to the task's pool, or is dropped).
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=response.stream,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._outside.aclose()
