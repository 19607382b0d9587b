"""The Starlette application: JSON-RPC at `POST /`, the web page at `GET /`, the
HTTP+JSON binding (A2A 1.0 at the root, 0.3 under `/v1`), the agent card, and the
operator endpoints."""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from andon.protocol.card import AgentCard, build_card, card_document, render_card
from andon.protocol.codec import codec_for, negotiate
from andon.protocol.errors import (
    A2AError,
    ExtendedAgentCardNotConfigured,
    InternalError,
    InvalidParams,
    InvalidRequest,
    VersionNotSupported,
)
from andon.protocol.jsonrpc import (
    RejectedRequest,
    error_response,
    parse_request,
    success_response,
)
from andon.protocol.types import Task
from andon.protocol.wire import Codec, Method, Version
from andon.server.auth import TokenAuth
from andon.server.docs import docs_routes
from andon.server.http import (
    BodyLimits,
    HTTPProblem,
    authenticate,
    disconnect_policy,
    dumps,
    json_response,
    read_body,
    read_json,
    sse_event,
    sse_response,
)
from andon.server.monitoring import RequestSpans, monitoring_routes, name_operation
from andon.server.openapi import build_openapi
from andon.server.operations import Operations, Update
from andon.server.page import ui_routes
from andon.server.streams import DisconnectPolicy, Subscribers
from andon.service import Principal, TaskService

log = logging.getLogger("andon.server")

EXTENSIONS = (
    "https://andon.dev/ext/cancel/v1",
    "https://andon.dev/ext/cancel-many/v1",
    "https://andon.dev/ext/retry/v1",
    "https://andon.dev/ext/disconnect-policy/v1",
)


@dataclass
class ServerConfig:
    public_url: str = "http://127.0.0.1:8000"
    auth: TokenAuth | None = None
    on_disconnect: DisconnectPolicy = field(default_factory=lambda: DisconnectPolicy("continue"))
    body: BodyLimits = field(default_factory=BodyLimits)
    keepalive: float = 15.0
    send_wait: float = 300.0
    """How long a blocking SendMessage waits for the task to end or ask for input."""
    grpc_url: str | None = None
    """Where the gRPC binding listens (`host:port`), if it is served: the card lists it."""


class A2AServer:
    """Routes requests of every binding and version to the one set of Operations."""

    def __init__(self, service: TaskService, config: ServerConfig) -> None:
        self.service = service
        self.agent = service.agent
        self.config = config
        self.subscribers = Subscribers(service)
        self.operations = Operations(service, self.subscribers, config.send_wait)
        self._openapi: dict[str, Any] | None = None
        self._cards: dict[Version | None, tuple[bytes, str]] = {}
        self._extended: AgentCard | None = None
        self._card_time = formatdate(time.time(), usegmt=True)

    # -- JSON-RPC ----------------------------------------------------------------------

    async def jsonrpc(self, request: Request) -> Response:
        request_id: Any = None
        codec = codec_for(Version.V0_3)
        try:
            principal = authenticate(request, self.config.auth)
            body = await read_body(request, self.config.body)
            parsed = parse_request(body)
            request_id = parsed.id
            self._check_parts(parsed.params)
            codec = self._codec(request.headers.get("a2a-version"))
            method = codec.method(parsed.method)
            name_operation(request, method)
            if method.streaming:
                try:
                    updates = await self._open_stream(
                        method, codec, parsed.params, principal, request
                    )
                except A2AError as error:
                    if codec.version is not Version.V0_3:
                        raise
                    # A2A 0.3 answers a streaming method with an SSE stream of JSON-RPC
                    # responses, an error included (0.3 clients read nothing else).
                    return sse_event(error_response(request_id, codec.encode_error(error)))
                return sse_response(
                    updates,
                    lambda update: success_response(request_id, encode_update(codec, update)),
                    lambda error: error_response(request_id, codec.encode_error(error)),
                    self.config.keepalive,
                )
            result = await self._call(method, codec, parsed.params, principal)
            return Response(success_response(request_id, result), media_type="application/json")
        except RejectedRequest as rejected:
            error_body = error_response(rejected.request_id, codec.encode_error(rejected.error))
            return Response(error_body, media_type="application/json")
        except HTTPProblem as problem:
            # Refused before the body was read: answer in the version the header names.
            codec = _codec_or_default(request.headers.get("a2a-version"))
            error_body = error_response(
                request_id, codec.encode_error(problem.error(problem.message))
            )
            return Response(error_body, problem.status, problem.headers, "application/json")
        except A2AError as error:
            error_body = error_response(request_id, codec.encode_error(error))
            return Response(error_body, media_type="application/json")
        except Exception:
            log.exception("JSON-RPC request failed")
            error_body = error_response(request_id, codec.encode_error(InternalError()))
            return Response(error_body, media_type="application/json")

    def _codec(
        self, header: str | None, default: Version | None = None, *, rest: bool = False
    ) -> Codec:
        """The codec of the version a request names (else the route's), if the agent is
        served in it; `rest` for the HTTP+JSON binding."""
        version = default if default is not None and not header else negotiate(header)
        if version not in self.agent.a2a_versions:
            served = ", ".join(self.agent.a2a_versions)
            raise VersionNotSupported(
                f"this agent is served in A2A {served}, not {version}",
                data={"requested": version.value, "supported": served},
            )
        return codec_for(version, rest=rest)

    async def _call(self, method: Method, codec: Codec, params: Any, principal: Principal) -> Any:
        result = await self._method(method, codec, params, principal)
        # Nothing leaves the process before the writes it shows are committed.
        await self.operations.service.committed()
        return result

    async def _method(self, method: Method, codec: Codec, params: Any, principal: Principal) -> Any:
        ops = self.operations
        if method is Method.EXTENDED_CARD:
            return self._extended_card(codec.version)
        if method is Method.SEND:
            sent = await ops.send(codec.decode_send(params), principal, codec.version.value)
            return codec.encode_send_result(sent)
        if method is Method.PUSH_CREATE:
            create = codec.decode_push_create(params)
            stored = await ops.set_push_config(create, principal, codec.version.value)
            return codec.encode_push_config(create.task_id, stored)
        if method is Method.PUSH_GET:
            ref = codec.decode_push_ref(params)
            return codec.encode_push_config(ref.task_id, await ops.get_push_config(ref, principal))
        if method is Method.PUSH_LIST:
            listing = codec.decode_push_list(params)
            found = await ops.list_push_configs(listing, principal)
            return codec.encode_push_list(listing.task_id, found)
        if method is Method.PUSH_DELETE:
            await ops.delete_push_config(codec.decode_push_ref(params), principal)
            return codec.encode_push_deleted()
        if method is Method.GET:
            return codec.encode_task(await ops.get(codec.decode_get(params), principal))
        if method is Method.LIST:
            page = await ops.list(codec.decode_list(params), principal)
            return codec.encode_task_list(
                page.tasks, page.next_page_token, page.page_size, page.total_size
            )
        if method is Method.CANCEL:
            return codec.encode_task(await ops.cancel(codec.decode_cancel(params), principal))
        if method is Method.CANCEL_MANY:
            outcomes = await ops.cancel_many(codec.decode_cancel_many(params), principal)
            return codec.encode_cancel_many(outcomes)
        if method is Method.RETRY:
            return codec.encode_task(await ops.retry(codec.decode_retry(params), principal))
        raise InternalError(f"method {method} has no handler")

    async def _open_stream(
        self,
        method: Method,
        codec: Codec,
        params: Any,
        principal: Principal,
        request: Request,
    ) -> AsyncIterator[Update]:
        if method is Method.STREAM:
            send = codec.decode_send(params)
            metadata = {**(send.message.metadata or {}), **(send.metadata or {})}
            policy = disconnect_policy(request, metadata, self.config.on_disconnect)
            return await self.operations.stream(send, principal, policy, codec.version.value)
        subscribe = codec.decode_subscribe(params)
        policy = disconnect_policy(request, subscribe.metadata, self.config.on_disconnect)
        return await self.operations.subscribe(
            subscribe, principal, request.headers.get("last-event-id"), policy
        )

    # -- HTTP+JSON ----------------------------------------------------------------------

    def rest(self, method: Method, version: Version) -> Callable[[Request], Awaitable[Response]]:
        """An HTTP+JSON route: path and query give the params, plus the JSON body."""

        async def endpoint(request: Request) -> Response:
            name_operation(request, method)
            try:
                principal = authenticate(request, self.config.auth)
                codec = self._codec(request.headers.get("a2a-version"), version, rest=True)
                params = await self._rest_params(request)
                if method.streaming:
                    updates = await self._open_stream(method, codec, params, principal, request)
                    return sse_response(
                        updates,
                        lambda update: dumps(encode_update(codec, update)),
                        lambda error: dumps(
                            rest_error(error.http_status, error.message, error.reason)
                        ),
                        self.config.keepalive,
                    )
                return json_response(await self._call(method, codec, params, principal))
            except HTTPProblem as problem:
                body = rest_error(problem.status, problem.message, problem.error.reason)
                return json_response(body, problem.status, problem.headers)
            except A2AError as error:
                body = rest_error(error.http_status, error.message, error.reason)
                return json_response(body, error.http_status)
            except Exception:
                log.exception("HTTP+JSON request failed")
                return json_response(rest_error(500, "Internal error", "INTERNAL_ERROR"), 500)

        return endpoint

    async def _rest_params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: _query_value(k, v) for k, v in request.query_params.items()}
        if request.method in ("POST", "PUT", "PATCH"):
            body = await read_json(request, self.config.body)
            if body is not None and not isinstance(body, dict):
                raise InvalidRequest("the request body must be a JSON object")
            params.update(body or {})
        # The path names the resource, whatever the body says.
        params.update(request.path_params)
        self._check_parts(params)
        return params

    def _check_parts(self, params: Any) -> None:
        """Refuse a message over the parts limit before decoding it (some 25 µs a part,
        on the event loop)."""
        message = params.get("message") if isinstance(params, dict) else None
        if isinstance(message, dict):
            for key in ("parts", "content"):  # `content` in A2A 0.3's HTTP+JSON
                if isinstance(message.get(key), list):
                    self.service.settings.check_parts(len(message[key]))

    # -- agent card ---------------------------------------------------------------------

    async def card(self, request: Request) -> Response:
        """The agent card. Asked without an A2A version (header or query parameter): the
        cards of the versions the agent is served in, as one document (the 1.0 card with
        the 0.3 fields beside it, so clients of either version read it); asked for one
        version: that version's card exactly. Cacheable (ETag, Last-Modified, 304)."""
        asked = request.headers.get("a2a-version") or request.query_params.get("A2A-Version")
        try:
            version = negotiate(asked) if asked else None
        except VersionNotSupported:
            version = None  # discovery should not fail: the default document
        if version not in self.agent.a2a_versions:
            version = None
        if version not in self._cards:
            card = self._build_card(extended=False)
            body = dumps(card_document(card) if version is None else render_card(card, version))
            self._cards[version] = body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        body, etag = self._cards[version]
        headers = {
            "Cache-Control": "public, max-age=300",
            "ETag": etag,
            "Last-Modified": self._card_time,
            "Vary": "A2A-Version",
        }
        matches = [
            t.strip().removeprefix("W/")
            for t in request.headers.get("if-none-match", "").split(",")
        ]
        if etag in matches or "*" in matches:
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type="application/json")

    def _extended_card(self, version: Version) -> dict[str, Any]:
        """GetExtendedAgentCard: the card with the skills kept for authenticated
        principals. The caller was authenticated before any method ran (with `--auth
        none` everyone is the local admin), so reaching here is being authenticated."""
        if not self.agent.has_extended_card:
            raise ExtendedAgentCardNotConfigured(
                f"agent {self.agent.name!r} declares no skill for authenticated principals"
            )
        if self._extended is None:
            self._extended = self._build_card(extended=True)
        return render_card(self._extended, version)

    def _build_card(self, *, extended: bool) -> AgentCard:
        """The public card, or (`extended`) the one that also lists the extended skills."""
        skills = [
            {
                "id": skill.id,
                "name": skill.name,
                "description": skill.description or skill.name,
                "tags": list(skill.tags),
                "examples": list(skill.examples) or None,
            }
            for skill in self.agent.skills
            if extended or not skill.extended
        ]
        return build_card(
            name=self.agent.name,
            description=self.agent.description or self.agent.name,
            version=self.agent.version,
            base_url=self.config.public_url,
            skills=skills,
            security=self.config.auth is not None,
            extensions=EXTENSIONS,
            extended_card=self.agent.has_extended_card,
            push_notifications=self.service.push is not None,
            grpc_url=self.config.grpc_url,
            versions=[Version(v) for v in self.agent.a2a_versions],
        )

    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            self._openapi = build_openapi(
                f"{self.agent.name} (andon)", self.agent.version, self.config.public_url
            )
        return json_response(self._openapi)

    async def close(self) -> None:
        await self.subscribers.close()


async def _no_route(request: Request, exc: Exception) -> Response:
    """An unknown route or method answers the HTTP+JSON error body, not plain text."""
    status = getattr(exc, "status_code", 404)
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        headers = {"Allow": ", ".join(_allowed(request))}
        return json_response(rest_error(405, message, "METHOD_NOT_ALLOWED"), 405, headers)
    message = f"no route {request.url.path}"
    return json_response(rest_error(404, message, "NOT_FOUND"), 404)


def _allowed(request: Request) -> list[str]:
    """Every method served at this path by the routes of the path template Starlette
    matched first (its own `Allow` names only that one route's methods, and `/` is two
    routes: the web page, GET, and JSON-RPC, POST)."""
    matching = [
        route
        for route in request.app.router.routes
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE
    ]
    if not matching:
        return []
    template = matching[0].path
    return sorted({m for route in matching if route.path == template for m in route.methods or ()})


def rest_error(status: int, message: str, reason: str) -> dict[str, Any]:
    """The HTTP+JSON binding's error body (google.rpc.Status with an ErrorInfo)."""
    return {
        "error": {
            "code": status,
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            "message": message,
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": "a2a-protocol.org",
                }
            ],
        }
    }


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    500: "INTERNAL",
    502: "INTERNAL",
}


def routes(server: A2AServer) -> list[BaseRoute]:
    table: list[BaseRoute] = [
        Route("/", server.jsonrpc, methods=["POST"]),
        *ui_routes(),
        Route("/.well-known/agent-card.json", server.card, methods=["GET"]),
        Route("/.well-known/agent.json", server.card, methods=["GET"]),
        Route("/openapi.json", server.openapi, methods=["GET"]),
        *docs_routes(),
    ]
    verbs: list[tuple[str, Method, list[str]]] = [
        ("/message:send", Method.SEND, ["POST"]),
        ("/message:stream", Method.STREAM, ["POST"]),
        ("/tasks:cancel", Method.CANCEL_MANY, ["POST"]),
        # Colon verbs before the plain task route, which would also match them.
        ("/tasks/{id}:cancel", Method.CANCEL, ["POST"]),
        ("/tasks/{id}:subscribe", Method.SUBSCRIBE, ["GET", "POST"]),
        ("/tasks/{id}:retry", Method.RETRY, ["POST"]),
        ("/tasks/{taskId}/pushNotificationConfigs", Method.PUSH_CREATE, ["POST"]),
        ("/tasks/{taskId}/pushNotificationConfigs", Method.PUSH_LIST, ["GET"]),
        ("/tasks/{taskId}/pushNotificationConfigs/{id}", Method.PUSH_GET, ["GET"]),
        ("/tasks/{taskId}/pushNotificationConfigs/{id}", Method.PUSH_DELETE, ["DELETE"]),
        ("/tasks/{id}", Method.GET, ["GET"]),
        ("/tasks", Method.LIST, ["GET"]),
    ]
    for prefix, version in (("", Version.V1_0), ("/v1", Version.V0_3)):
        for path, method, http_methods in verbs:
            table.append(Route(prefix + path, server.rest(method, version), methods=http_methods))
    table += [
        Route("/extendedAgentCard", server.rest(Method.EXTENDED_CARD, Version.V1_0)),
        Route("/v1/card", server.rest(Method.EXTENDED_CARD, Version.V0_3)),
    ]
    return table


def encode_update(codec: Codec, update: Update) -> Any:
    if isinstance(update.payload, Task):
        return codec.encode_send_result(update.payload)
    return codec.encode_event(
        update.task_id, update.context_id, update.kind, update.payload, update.final
    )


_INTEGER_QUERY = frozenset({"pageSize", "historyLength"})
_BOOLEAN_QUERY = frozenset({"includeArtifacts"})


def _codec_or_default(header: str | None) -> Codec:
    """The codec a header names, or 0.3 for a version andon does not speak."""
    try:
        return codec_for(negotiate(header))
    except VersionNotSupported:
        return codec_for(Version.V0_3)


def _query_value(key: str, value: str) -> Any:
    """Query strings are text; the params they carry are typed."""
    if key in _INTEGER_QUERY:
        try:
            return int(value)
        except ValueError:
            raise InvalidParams(f"{key} must be an integer") from None
    if key in _BOOLEAN_QUERY:
        return value.lower() in ("1", "true", "yes")
    return value


class JsonRpcShortcut:
    """POST / (JSON-RPC: most of A2A's traffic, every stream of a crowd) goes straight to
    its endpoint, past Starlette's exception middleware and router: they match nothing
    this route needs (its endpoint answers every error itself) and wrap each request in
    seven more coroutines, and each event a stream sends in two more. Anything else, and
    the app mounted below a path, takes the router as usual; an error the endpoint does
    not answer still reaches Starlette's server-error middleware (a 500)."""

    def __init__(self, app: ASGIApp, route: Route) -> None:
        # The route's endpoint is called as is: it must stay a coroutine function,
        # with no middleware of the route's own (they would be passed by).
        if not inspect.iscoroutinefunction(route.endpoint):
            raise TypeError(f"{route.path} must be served by a coroutine function")
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.route
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != route.path:
            await self.app(scope, receive, send)
            return
        scope["route"], scope["endpoint"] = route, route.endpoint  # as the router would
        response = await route.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


def create_app(
    service: TaskService,
    config: ServerConfig | None = None,
    *,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> Starlette:
    server = A2AServer(service, config or ServerConfig())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        try:
            yield
        finally:
            await server.close()
            if on_shutdown is not None:
                await on_shutdown()

    table = routes(server)
    jsonrpc = next(r for r in table if isinstance(r, Route) and r.endpoint == server.jsonrpc)
    app = Starlette(
        routes=table + monitoring_routes(service, server.subscribers),
        middleware=[Middleware(RequestSpans), Middleware(JsonRpcShortcut, route=jsonrpc)],
        lifespan=lifespan,
        exception_handlers={404: _no_route, 405: _no_route},
    )
    app.state.server = server
    return app
