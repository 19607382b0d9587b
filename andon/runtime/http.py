"""HTTP clients that belong to an attempt: their requests stop when it is cancelled.

The async client's requests are awaited by the agent's coroutine, so cancelling the
coroutine aborts them; closing the client then closes its connections. The blocking
client serves synchronous handlers and threads, which a cancel cannot interrupt: its
transport keeps every socket it opened, and `abort` shuts them down, so a thread
blocked in a request returns at once (as TaskCancelled) and the server sees the
connection close.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
from typing import Any

import certifi
import httpcore
import httpx

from andon.runtime.scope import CancelScope, TaskCancelled

TIMEOUT = httpx.Timeout(30.0)


class _Tracked(httpcore.NetworkStream):
    """A connection the attempt can shut down from another thread."""

    def __init__(self, stream: httpcore.NetworkStream, sockets: _Sockets) -> None:
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


class _Sockets:
    def __init__(self) -> None:
        self._open: set[_Tracked] = set()
        self._lock = threading.Lock()
        self.aborted = False

    def add(self, stream: _Tracked) -> None:
        with self._lock:
            self._open.add(stream)
        if self.aborted:  # opened while the abort ran: it must not outlive it
            stream.shut_down()

    def discard(self, stream: _Tracked) -> None:
        with self._lock:
            self._open.discard(stream)

    def abort(self) -> None:
        self.aborted = True
        with self._lock:
            streams = list(self._open)
        for stream in streams:
            stream.shut_down()


class _Backend(httpcore.SyncBackend):
    def __init__(self, sockets: _Sockets) -> None:
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
    def __init__(self, scope: CancelScope, sockets: _Sockets) -> None:
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


class AttemptHttp:
    """The attempt's two clients, made on first use."""

    def __init__(self, scope: CancelScope) -> None:
        self._scope = scope
        self._async: httpx.AsyncClient | None = None
        self._blocking: httpx.Client | None = None
        self._sockets = _Sockets()

    def async_client(self) -> httpx.AsyncClient:
        if self._async is None:
            self._async = httpx.AsyncClient(timeout=TIMEOUT, verify=_tls())
        return self._async

    def blocking_client(self) -> httpx.Client:
        if self._blocking is None:
            transport = _AbortableTransport(self._scope, self._sockets)
            self._blocking = httpx.Client(timeout=TIMEOUT, transport=transport)
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
