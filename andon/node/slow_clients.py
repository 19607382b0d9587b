"""Slow clients get a deadline: uvicorn's own protocol bounds a connection only while
it is idle between requests, so a client that opens a socket and sends nothing, or
sends a request's headers a byte at a time (slowloris), holds it forever. Here a
request's headers must be complete within `header_timeout` seconds of the connection
opening or of the request's first byte; past that the client is answered 408 and the
connection closed. (Bodies have their own deadline in andon.server.http.read_body;
uvicorn's `limit_concurrency` caps connections, see andon.node.serve.)"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from andon.node.lean_http import LeanHttpToolsProtocol

_LATE = b"request headers did not arrive in time"
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_LATE) + _LATE
)


def with_header_timeout(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol (made lighter, see lean_http), closing connections
    whose headers are late."""

    class HeaderDeadline(LeanHttpToolsProtocol):
        header_timeout = seconds

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._headers_due: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # a keep-alive connection's next request: a deadline of its own

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._headers_due is None:
                self._headers_due = self.loop.call_later(self.header_timeout, self._late)

        def _disarm(self) -> None:
            if self._headers_due is not None:
                self._headers_due.cancel()
                self._headers_due = None

        def _late(self) -> None:
            self._headers_due = None
            if not self.transport.is_closing():
                self.transport.write(REQUEST_TIMEOUT)
                self.transport.close()

    return HeaderDeadline
