"""OTLP payloads made the way a real exporter makes them, for the OTLP unit tests.

Spans come from the OpenTelemetry Python SDK (a real tracer, captured in memory); bodies are
encoded by the OTLP exporter's own encoder (``encode_spans``), to protobuf as the proto-http
exporter sends it, and to OTLP/JSON as the spec writes it: json_format's output (int64 as strings,
camelCase) with enums as integers and the ids turned from base64 (proto3 JSON) into hex (OTLP/JSON).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from flightdeck_operator.otlp.decode import decode_protobuf
from flightdeck_operator.otlp.spans import SpanRecord

RELEASE = "support-v2"
AGENT = "support"
VERSION = "2.0.0"
ENVIRONMENT = "production"
DEFAULT_RESOURCE: Mapping[str, AttributeValue] = {
    "service.name": AGENT,
    "service.version": VERSION,
    "flightdeck.release.id": RELEASE,
    "deployment.environment.name": ENVIRONMENT,
}
T0 = 1_780_000_000_000_000_000  # 2026-05-28T20:26:40Z, in nanoseconds
MS = 1_000_000


class SpanCapture:
    """A tracer of the real SDK whose finished spans are kept in memory, in export order."""

    def __init__(self, resource: Mapping[str, AttributeValue] = DEFAULT_RESOURCE) -> None:
        self.exporter = InMemorySpanExporter()
        # Resource.create adds the SDK's own attributes (telemetry.sdk.*), as a real service has.
        self.provider = TracerProvider(resource=Resource.create(dict(resource)))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("flightdeck.tests", "1.0")

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    @contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        *,
        start_ms: int,
        end_ms: int,
        kind: SpanKind = SpanKind.INTERNAL,
        parent: Span | None = None,
    ) -> Iterator[Span]:
        """A span at fixed times (ms after T0), a child of the current span or of ``parent``."""
        context = trace.set_span_in_context(parent) if parent is not None else None
        with self.tracer.start_as_current_span(
            name,
            context=context,
            kind=kind,
            attributes=dict(attributes or {}),
            start_time=T0 + start_ms * MS,
            end_on_exit=False,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span
        span.end(end_time=T0 + end_ms * MS)

    def fail(self, span: Span, error: Exception, *, at_ms: int) -> None:
        """What instrumentations do on an error: an ``exception`` event and status ERROR."""
        span.record_exception(error, timestamp=T0 + at_ms * MS)
        span.set_status(Status(StatusCode.ERROR, str(error)))


def to_protobuf(spans: Sequence[ReadableSpan]) -> bytes:
    """The body of the OTLP/HTTP protobuf exporter (before compression)."""
    return encode_spans(spans).SerializeToString()


def to_otlp_json_document(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    document = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _ids_to_hex(span)
                for link in span.get("links", []):
                    _ids_to_hex(link)
    return document


def to_otlp_json(spans: Sequence[ReadableSpan]) -> bytes:
    """The body of an OTLP/HTTP JSON exporter: hex ids, integer enums, int64 as strings."""
    return json.dumps(to_otlp_json_document(spans)).encode()


def _ids_to_hex(item: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if key in item:
            item[key] = base64.b64decode(item[key]).hex()


def records(spans: Sequence[ReadableSpan]) -> list[SpanRecord]:
    """Spans as the sidecar sees them: encoded by the exporter, decoded by us."""
    return decode_protobuf(to_protobuf(spans))


# --- a typical agent run ----------------------------------------------------------------------------

CHAT_NEW = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
}


def chat(input_tokens: int, output_tokens: int, **extra: AttributeValue) -> dict[str, AttributeValue]:
    """Attributes of a chat span in the current conventions."""
    return {
        **CHAT_NEW,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        **extra,
    }


def agent_run(
    capture: SpanCapture,
    chats: Sequence[Mapping[str, AttributeValue]],
    *,
    agent: Mapping[str, AttributeValue] | None = None,
    name: str = "invoke_agent support",
    start_ms: int = 0,
    parent: Span | None = None,
    tool: str | None = "lookup",
) -> Span:
    """``invoke_agent support`` lasting 1000 ms: one chat span per attribute set (100 ms apart),
    then an ``execute_tool`` span; returns the agent span (ended)."""
    agent_attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support",
        **(agent or {}),
    }
    with capture.span(
        name, agent_attributes, start_ms=start_ms, end_ms=start_ms + 1000, parent=parent
    ) as run:
        for i, attributes in enumerate(chats):
            at = start_ms + 10 + 100 * i
            with capture.span("chat", attributes, start_ms=at, end_ms=at + 90, kind=SpanKind.CLIENT):
                pass
        if tool is not None:
            at = start_ms + 10 + 100 * len(chats)
            with capture.span(
                f"execute_tool {tool}",
                {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool},
                start_ms=at,
                end_ms=at + 5,
            ):
                pass
    return run
