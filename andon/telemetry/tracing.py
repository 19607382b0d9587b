"""Traces, through the OpenTelemetry API only: a span per request and per attempt, and
the trace context carried from the request that created a task into its attempt.

The context travels in the task's metadata (`andon.trace`), written when the task is
submitted and read when an attempt starts, so it reaches the attempt the same way
whichever process, on whichever machine, runs it. Without the OpenTelemetry SDK every
call here costs next to nothing and records nothing; `configure_from_env` installs the
SDK when it is present and the standard OTEL_* variables ask for an exporter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import propagate, trace

log = logging.getLogger("andon.tracing")

CARRIER_KEY = "andon.trace"
"""Task metadata key of the W3C trace context (traceparent, tracestate) of the request
that created the task."""

_tracer = trace.get_tracer("andon")  # a proxy: follows a provider installed later
_installed: list[Any] = []  # the SDK provider configure_from_env installed, to flush


def carrier() -> dict[str, str]:
    """The current trace context as headers (empty when there is none)."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def recording() -> bool:
    """Whether spans go anywhere: a tracer provider is installed (by `configure_from_env`
    or by the program that embeds andon, at any time)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def carries_context(header_names: Iterable[str]) -> bool:
    """Whether a request's headers (names in lower case, as ASGI gives them) hold trace
    context (traceparent, baggage, ...) that its tasks must carry on, recorded or not."""
    fields = {name.lower() for name in propagate.get_global_textmap().fields}
    return not fields.isdisjoint(header_names)


@contextmanager
def request_span(name: str, headers: Mapping[str, str]) -> Iterator[trace.Span]:
    """The span of one incoming request, a child of the caller's `traceparent`."""
    with _tracer.start_as_current_span(
        name, context=propagate.extract(headers), kind=trace.SpanKind.SERVER
    ) as span:
        yield span


def attempt_span(
    task_id: str, context_id: str, epoch: int, metadata: Mapping[str, Any]
) -> AbstractContextManager[trace.Span]:
    """The span of one attempt, a child of the request that created the task; nothing
    when it would be neither recorded nor carry a caller's context on."""
    parent = metadata.get(CARRIER_KEY)
    if not isinstance(parent, dict):
        if not recording():
            return nullcontext(trace.INVALID_SPAN)
        parent = None
    return _attempt_span(task_id, context_id, epoch, parent)


@contextmanager
def _attempt_span(
    task_id: str, context_id: str, epoch: int, parent: dict[str, str] | None
) -> Iterator[trace.Span]:
    context = propagate.extract(parent) if parent is not None else None
    attributes: Attributes = {
        "andon.task_id": task_id,
        "andon.context_id": context_id,
        "andon.epoch": epoch,
    }
    with _tracer.start_as_current_span(
        "andon.attempt", context=context, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


Attributes = Mapping[str, str | int | float]


def event(name: str, attributes: Attributes | None = None, timestamp: int | None = None) -> None:
    """An event on the current span (a request's or an attempt's)."""
    trace.get_current_span().add_event(name, attributes, timestamp)


def annotate(attributes: Attributes) -> None:
    trace.get_current_span().set_attributes(attributes)


def fail(description: str) -> None:
    """Mark the current span failed (an attempt whose task ended `failed`)."""
    trace.get_current_span().set_status(trace.Status(trace.StatusCode.ERROR, description))


def link(metadata: Mapping[str, Any]) -> None:
    """Link the current span to the trace of the request that created a task (a cancel
    request's span to the task it cancels)."""
    origin = metadata.get(CARRIER_KEY)
    if isinstance(origin, dict):
        linked = trace.get_current_span(propagate.extract(origin)).get_span_context()
        if linked.is_valid:
            trace.get_current_span().add_link(linked)


def trace_id() -> str | None:
    """The current trace id in hex, for log lines; None outside a recorded trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def configure_from_env() -> bool:
    """Install the OpenTelemetry SDK with the exporters OTEL_TRACES_EXPORTER names (or
    OTLP, when only an OTLP endpoint is given). Does nothing when the SDK is missing,
    OTEL_SDK_DISABLED is true, nothing is asked for, or the program already installed
    a tracer provider. Exporters read their own OTEL_EXPORTER_* settings."""
    names = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if not names and (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = "otlp"
    wanted = [n.strip() for n in names.split(",") if n.strip() and n.strip() != "none"]
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
    if (
        not wanted
        or disabled
        or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    ):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* asks for traces but opentelemetry-sdk is not installed")
        return False
    resource = Resource.create()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "andon"}))
    provider = TracerProvider(resource=resource)
    for name in wanted:
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            log.warning("no OpenTelemetry trace exporter named %r is installed", name)
            continue
        exporter = next(iter(found)).load()
        provider.add_span_processor(BatchSpanProcessor(exporter()))
    trace.set_tracer_provider(provider)
    _installed.append(provider)
    return True


def close() -> None:
    """Export the spans still buffered by the provider configure_from_env installed."""
    while _installed:
        _installed.pop().shutdown()
