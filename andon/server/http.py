"""HTTP plumbing shared by the bindings: bounded bodies, authentication, SSE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from andon.protocol.errors import (
    A2AError,
    ContentTypeNotSupported,
    InternalError,
    InvalidParams,
    InvalidRequest,
)
from andon.protocol.jsonrpc import parse_json
from andon.server.auth import LOCAL, TokenAuth
from andon.server.operations import Update
from andon.server.streams import DisconnectPolicy
from andon.service import Principal

log = logging.getLogger("andon.server")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DISCONNECT_HEADER = "x-andon-on-disconnect"


class HTTPProblem(Exception):
    """An error answered at the HTTP level (401, 413, 415) before any protocol parsing;
    `error` is the A2A error a body reports it as (JSON-RPC code, REST reason)."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        error: type[A2AError] = InvalidRequest,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.error = error


def dumps(value: Any) -> bytes:
    return to_json(value)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers, media_type="application/json")


def authenticate(request: Request, auth: TokenAuth | None) -> Principal:
    if auth is None:
        return LOCAL
    principal = auth.authenticate(request.headers.get("authorization"))
    if principal is None:
        given = "authorization" in request.headers
        raise HTTPProblem(
            401,
            "invalid bearer token" if given else "a bearer token is required",
            {
                "WWW-Authenticate": 'Bearer realm="andon"'
                + (', error="invalid_token"' if given else "")
            },
        )
    return principal


@dataclass(frozen=True)
class BodyLimits:
    size: int = 10 * 1024 * 1024
    """Bytes (413 past it)."""
    seconds: float = 30.0
    """Time the body may take to arrive (408 after)."""
    json_nodes: int = 20_000
    """JSON objects and arrays a body may hold (413 past it): parsing costs about 2 µs
    each on the event loop, so this keeps one request's parse near 40 ms."""


async def read_body(request: Request, limits: BodyLimits) -> bytes:
    """The request's body, refusing a wrong content type (415), a body over `limit`
    bytes or of over `json_nodes` JSON objects and arrays (413) as soon as it is past
    either, without reading the rest, or one that takes over `timeout` seconds to arrive
    (408: a client trickling its body holds a connection for nothing).

    The JSON nodes are counted chunk by chunk as the body arrives, before parsing
    (700,000 empty parts took 10 s of the event loop to parse): a count of the brackets,
    a fast scan of each chunk; brackets inside strings count too, so it errs on the
    safe side. Counted on the whole body at once, a 10 MB one held the loop for 18 ms;
    refused early, the rest of the body is skipped by the HTTP server, unparsed."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media not in ("application/json", "application/a2a+json", ""):
        raise HTTPProblem(
            415,
            f"Content-Type must be application/json, not {media!r}",
            error=ContentTypeNotSupported,
        )
    declared = request.headers.get("content-length")
    limit, timeout = limits.size, limits.seconds
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(413, f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = nodes = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPProblem(413, f"request body over {limit} bytes")
                nodes += chunk.count(b"{") + chunk.count(b"[")
                if nodes > limits.json_nodes:
                    raise HTTPProblem(
                        413,
                        f"request body holds over {limits.json_nodes} JSON objects and arrays "
                        "(--max-json-nodes)",
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPProblem(
            408, f"the request body did not arrive within {timeout:g} s", {"Connection": "close"}
        ) from None
    return b"".join(chunks)


async def read_json(request: Request, limits: BodyLimits) -> Any:
    body = await read_body(request, limits)
    if not body.strip():
        return None
    return parse_json(body)


def disconnect_policy(
    request: Request, metadata: dict[str, Any] | None, default: DisconnectPolicy
) -> DisconnectPolicy:
    """Per request: the header wins, then message metadata, then the server default."""
    chosen = request.headers.get(DISCONNECT_HEADER) or (metadata or {}).get("andon.onDisconnect")
    if chosen is None:
        return default
    if not isinstance(chosen, str):
        raise InvalidParams("andon.onDisconnect must be a string")
    return DisconnectPolicy.parse(chosen)


def sse_event(data: bytes) -> Response:
    """A stream of one event (a streaming method's error, before any other event)."""
    return Response(b"data: " + data + b"\n\n", media_type="text/event-stream", headers=SSE_HEADERS)


def sse_response(
    items: AsyncIterator[Update],
    encode: Callable[[Update], bytes],
    encode_error: Callable[[A2AError], bytes],
    keepalive: float,
) -> Response:
    """Stream items as Server-Sent Events with `id:` = sequence number. A failure after
    the stream has begun ends it with one last event: the error, in the binding's form
    (a JSON-RPC error response, or the HTTP+JSON error body)."""
    return EventStream(items, encode, encode_error, keepalive)


class EventStream(Response):
    """An SSE response in two tasks: one sends each item as it comes; the request's own
    task waits for the client to go away, sends a keep-alive comment when the stream
    has been quiet that long, and ends the response once the items are done. A client
    that goes away closes the items at once (which runs the stream's disconnect policy).

    Two tasks, not Starlette's three plus a queue between them: this runs for every
    event of every stream, and a crowd holds thousands of them open. The timer of the
    keep-alive is set once per quiet period, not once per event. Both tasks call `send`:
    each message must go out whole (uvicorn, httpx's ASGITransport and Starlette's
    TestClient write each at once), and only the request's task sends the last one."""

    media_type = "text/event-stream"

    def __init__(
        self,
        items: AsyncIterator[Update],
        encode: Callable[[Update], bytes],
        encode_error: Callable[[A2AError], bytes],
        keepalive: float,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self._items = items
        self._encode = encode
        self._encode_error = encode_error
        self._keepalive = keepalive
        self._sent_at = 0.0
        self._quiet: asyncio.Timeout | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        self._sent_at = loop.time()
        sender = asyncio.create_task(self._send_items(send))
        try:
            while not sender.done():
                try:
                    async with asyncio.timeout_at(self._sent_at + self._keepalive) as self._quiet:
                        message = await receive()
                except TimeoutError:  # quiet that long, or woken by the sender's end
                    if not sender.done() and loop.time() >= self._sent_at + self._keepalive:
                        await send(_body(b": keep-alive\n\n"))
                        self._sent_at = loop.time()
                    continue
                finally:
                    self._quiet = None
                if message["type"] == "http.disconnect":
                    break
            if sender.done():
                sender.result()  # a failure to send: the server's to log
                await send(_body(b"", more=False))
        finally:
            if not sender.done():
                sender.cancel()
                # Waited for, not awaited: a second cancel of this task must not cut
                # the items' closing (the disconnect policy) short in the sender.
                await asyncio.wait({sender})
                if not sender.cancelled() and (failure := sender.exception()) is not None:
                    log.error("stream failed while it was being closed", exc_info=failure)

    async def _send_items(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with contextlib.aclosing(self._items):  # type: ignore[type-var]
                async for item in self._items:
                    await send(_body(b"id: %d\ndata: %s\n\n" % (item.seq, self._encode(item))))
                    self._sent_at = loop.time()
                    del item  # not kept while the task is quiet (the first is the task)
        except Exception as exc:  # surfaced to the client as a stream error
            log.error("stream failed", exc_info=exc)
            error = exc if isinstance(exc, A2AError) else InternalError()
            await send(_body(b"data: " + self._encode_error(error) + b"\n\n"))
        finally:
            # The request's task waits in receive(), which a server need not end when
            # the response it waits beside is done: end its wait.
            if self._quiet is not None and not self._quiet.expired():
                self._quiet.reschedule(loop.time())


def _body(chunk: bytes, more: bool = True) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": more}
