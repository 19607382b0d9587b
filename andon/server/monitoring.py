"""What operators and their tools read: `/metrics` (Prometheus), `/healthz` (the process
answers), `/readyz` (its store and dispatch answer too); and a span for each request."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from andon.protocol.wire import Method
from andon.server.http import json_response
from andon.server.streams import Subscribers
from andon.service import TaskService
from andon.telemetry import tracing

log = logging.getLogger("andon.server")

OPERATION = "andon.operation"
"""Scope key: the A2A operation a request turned out to be (names its span)."""
UNTRACED = frozenset({"/metrics", "/healthz", "/readyz"})


def monitoring_routes(service: TaskService, subscribers: Subscribers) -> list[BaseRoute]:
    metrics = service.telemetry.metrics
    metrics.count_subscribers(lambda: subscribers.open_streams)

    async def exposition(request: Request) -> Response:
        try:
            await metrics.refresh(service.store)
        except Exception:  # the other metrics still tell what is wrong
            log.exception("could not read task counts for /metrics")
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await service.readiness()
        ready = all(v == "ok" for v in checks.values())
        containment = service.dispatcher.containment
        return json_response(
            {"status": "ok" if ready else "unavailable", **checks, "containment": containment},
            200 if ready else 503,
        )

    return [
        Route("/metrics", exposition, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def name_operation(request: Request, method: Method) -> None:
    request.scope[OPERATION] = f"a2a.{method.value}"


class RequestSpans:
    """A server span per HTTP request, child of the caller's `traceparent`; named after
    the A2A operation, or else the route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        names = (name.decode("latin-1") for name, _ in scope["headers"])
        if not tracing.recording() and not tracing.carries_context(names):
            # The span would be recorded nowhere and carry nothing to the tasks: the
            # request goes without it (and without wrapping each of its sends).
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with tracing.request_span(method, headers) as span:
            span.set_attributes({"http.request.method": method, "url.path": scope["path"]})

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    route: Any = scope.get("route")
                    if route is not None:
                        span.set_attribute("http.route", route.path)
                    name = scope.get(OPERATION) or (route and f"{method} {route.path}")
                    if name:
                        span.update_name(name)
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_with_status)
