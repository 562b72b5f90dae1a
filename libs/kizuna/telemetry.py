"""OpenTelemetry set-up and W3C trace-context propagation over event metadata and NATS headers.

nats-py has no official instrumentation, so the ``traceparent`` travels by hand: the HTTP
request's context is stored in each event's metadata at append time, the relay publishes with
it as the parent and puts its own ``traceparent`` into the NATS headers, and consumers start
their span from those headers — one trace from the request to every consumer.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

_configured = False


class JsonLinesSpanExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (handy for tests and for grepping)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            lines.append(json.dumps({
                "name": span.name,
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
                "service": span.resource.attributes.get("service.name"),
                "attributes": {key: str(value) for key, value in (span.attributes or {}).items()},
            }))
        with self._lock, open(self.path, "a") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


def configure_tracing(service_name: str, exporter: str, endpoint: str = "", file: str = "") -> None:
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"kizuna-{service_name}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    elif exporter == "jsonl":
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(file)))
    trace.set_tracer_provider(provider)
    _configured = True


@functools.cache
def tracer() -> trace.Tracer:
    """One tracer per process (``get_tracer`` builds a new one per call; before a provider is configured
    this is OpenTelemetry's proxy, which follows the provider once it is set)."""
    return trace.get_tracer("kizuna")


def current_trace_headers() -> dict[str, str]:
    """The current context as W3C headers (``traceparent``, maybe ``tracestate``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, Any] | None) -> otel_context.Context:
    return propagate.extract({k: str(v) for k, v in (carrier or {}).items()})


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
