"""OpenTelemetry setup and trace-context propagation through NATS headers.

Exporting is off by default. ``IS_OTEL_EXPORTER=otlp`` sends spans to the
OTLP endpoint named by the standard ``OTEL_EXPORTER_OTLP_*`` variables;
``IS_OTEL_EXPORTER=file:/path`` appends one JSON span per line, which the
tests use to follow one run across processes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from threading import Lock

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from iscore.errors import IscoreError


class TelemetryConfigError(IscoreError):
    code = "invalid_setting"


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [_span_line(span) for span in spans]
        with self._lock, self._path.open("a", encoding="utf-8") as sink:
            sink.write("".join(lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _span_line(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    parent = span.parent
    record = {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x") if ctx else None,
        "span_id": format(ctx.span_id, "016x") if ctx else None,
        "parent_id": format(parent.span_id, "016x") if parent else None,
        "service": span.resource.attributes.get("service.name"),
        "attributes": dict(span.attributes or {}),
    }
    return json.dumps(record, default=str) + "\n"


def setup_telemetry(service: str, exporter: str) -> None:
    """Install the tracer provider for ``service`` with the chosen exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter.startswith("file:"):
        span_file = Path(exporter.removeprefix("file:"))
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(span_file)))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )
        except ImportError as err:
            raise TelemetryConfigError(
                "IS_OTEL_EXPORTER=otlp needs the OTLP exporter; install "
                "'integration-service[otlp]'.",
                field="IS_OTEL_EXPORTER",
            ) from err
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter:
        raise TelemetryConfigError(
            f"IS_OTEL_EXPORTER={exporter!r} is not known; use 'otlp', 'file:/path' or leave it "
            "empty.",
            field="IS_OTEL_EXPORTER",
        )
    trace.set_tracer_provider(provider)


def shutdown_telemetry() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def inject_context(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context into NATS message headers."""
    propagate.inject(headers)


def extract_context(headers: Mapping[str, str] | None) -> Context:
    """Read a trace context from NATS message headers (empty when absent)."""
    return propagate.extract(dict(headers or {}))


def current_context() -> Context:
    return context.get_current()
