"""The demo's OpenTelemetry evidence: agent runs as OTLP/HTTP protobuf requests, shaped as an agent
instrumented with the GenAI conventions exports them (``invoke_agent`` with a ``chat`` span and an
``execute_tool`` span; the resource names the release and the environment).

Built with the OTLP message classes (a runtime dependency), so ``flightdeck-operator dev`` needs no
OpenTelemetry SDK; the bytes are what the SDK's OTLP/HTTP exporter sends.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

SPANS_PER_REQUEST: Final = 512  # the SDK's BatchSpanProcessor default
_MS: Final = 1_000_000


def _attributes(values: Mapping[str, str | int]) -> list[KeyValue]:
    return [
        KeyValue(
            key=key,
            value=AnyValue(string_value=value) if isinstance(value, str) else AnyValue(int_value=value),
        )
        for key, value in values.items()
    ]


def _span(
    trace_id: bytes, name: str, start: int, ms: int, attributes: Mapping[str, str | int], **fields: object
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=os.urandom(8),
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + ms * _MS,
        attributes=_attributes(attributes),
        **fields,  # type: ignore[arg-type]
    )


def agent_run_spans(model: str, provider: str, start: int, latency_ms: int, *, failed: bool) -> list[Span]:
    """One run: the children first and the run span last, as the SDK exports them."""
    trace_id = os.urandom(16)
    run = _span(
        trace_id,
        "invoke_agent support-bot",
        start,
        latency_ms,
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support-bot"}
        | ({"error.type": "TimeoutError"} if failed else {}),
        kind=Span.SPAN_KIND_INTERNAL,
        status=Status(code=Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_UNSET),
    )
    chat = _span(
        trace_id,
        f"chat {model}",
        start + 20 * _MS,
        latency_ms - 100,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 400,
        },
        parent_span_id=run.span_id,
        kind=Span.SPAN_KIND_CLIENT,
    )
    tool = _span(
        trace_id,
        "execute_tool search_kb",
        start + (latency_ms - 60) * _MS,
        20,
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_kb"},
        parent_span_id=run.span_id,
    )
    return [chat, tool, run]


def trace_requests(
    release: str, model: str, provider: str, count: int, failures: int, *, environment: str
) -> list[bytes]:
    """``count`` runs of ``release`` over the last day (the first ``failures`` failed), as request bodies."""
    now = dt.datetime.now(dt.UTC)
    spans: list[Span] = []
    for i in range(count):
        start = int((now - dt.timedelta(minutes=5 + i)).timestamp() * 1e9)
        spans.extend(agent_run_spans(model, provider, start, 900 + (i % 7) * 40, failed=i < failures))
    resource = _attributes(
        {
            "service.name": "support-bot",
            "flightdeck.release.id": release,
            "deployment.environment.name": environment,
        }
    )
    bodies = []
    for at in range(0, len(spans), SPANS_PER_REQUEST):
        request = ExportTraceServiceRequest()
        resource_spans: ResourceSpans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(resource)
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "support-bot"
        scope_spans.spans.extend(spans[at : at + SPANS_PER_REQUEST])
        bodies.append(request.SerializeToString())
    return bodies
