"""The benchmark's runs as OpenTelemetry traces: 4 spans per run (``invoke_agent`` with two
``chat`` spans and an ``execute_tool``), in 512-span requests encoded by the OTLP/HTTP exporter's
own encoder, protobuf, uncompressed: what ``BatchSpanProcessor`` + ``OTLPSpanExporter`` send with
their defaults. The same runs as ``http.event_bodies``: the same release, tokens (1000 in, 500 out),
latencies and failures."""

from __future__ import annotations

import datetime as dt
import random
from typing import Final

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

SPANS_PER_REQUEST: Final = 512  # BatchSpanProcessor's default max_export_batch_size
MS: Final = 1_000_000
SCOPE: Final = InstrumentationScope("benchmark.agent", "1.0")


def trace_bodies(count: int, tag: str, *, agent: str, environment: str) -> list[bytes]:
    """``count`` runs of release ``ingest-{tag}`` as OTLP/HTTP protobuf request bodies."""
    resource = Resource.create(
        {
            "service.name": agent,
            "service.version": "1.0.0",
            "flightdeck.release.id": f"ingest-{tag}",
            "deployment.environment.name": environment,
        }
    )
    rng = random.Random(tag)
    start = int((dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)).timestamp() * 1e9)
    spans: list[ReadableSpan] = []
    for i in range(count):
        spans.extend(_run(rng, resource, start + i * MS, latency_ms=900 + i % 200, failed=i % 50 == 0))
    return [
        encode_spans(spans[at : at + SPANS_PER_REQUEST]).SerializeToString()
        for at in range(0, len(spans), SPANS_PER_REQUEST)
    ]


def _run(
    rng: random.Random, resource: Resource, start: int, *, latency_ms: int, failed: bool
) -> list[ReadableSpan]:
    trace_id = rng.getrandbits(128) | 1
    run = SpanContext(trace_id, rng.getrandbits(64) | 1, is_remote=False, trace_flags=TraceFlags(1))

    def child(name: str, kind: SpanKind, at_ms: int, ms: int, attributes: dict[str, object]) -> ReadableSpan:
        context = SpanContext(trace_id, rng.getrandbits(64) | 1, is_remote=False, trace_flags=TraceFlags(1))
        return ReadableSpan(
            name,
            context=context,
            parent=run,
            resource=resource,
            attributes=attributes,  # type: ignore[arg-type]
            kind=kind,
            start_time=start + at_ms * MS,
            end_time=start + (at_ms + ms) * MS,
            instrumentation_scope=SCOPE,
        )

    chat = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4.1-mini",
        "gen_ai.usage.input_tokens": 500,
        "gen_ai.usage.output_tokens": 250,
    }
    run_attributes: dict[str, object] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support",
    }
    status = Status(StatusCode.UNSET)
    if failed:
        run_attributes["error.type"] = "TimeoutError"
        status = Status(StatusCode.ERROR, "timed out")
    # In the order the SDK exports them: each span when it ends, the run span last.
    return [
        child("chat gpt-4.1-mini", SpanKind.CLIENT, 10, 200, chat),
        child("chat gpt-4.1-mini", SpanKind.CLIENT, 300, 200, chat),
        child(
            "execute_tool lookup",
            SpanKind.INTERNAL,
            600,
            5,
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
        ),
        ReadableSpan(
            "invoke_agent support",
            context=run,
            parent=None,
            resource=resource,
            attributes=run_attributes,  # type: ignore[arg-type]
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=start,
            end_time=start + latency_ms * MS,
            instrumentation_scope=SCOPE,
        ),
    ]
