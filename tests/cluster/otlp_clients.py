"""Real OpenTelemetry clients for the OTLP tests: the Python SDK with its OTLP/HTTP exporter,
pointed at a real sidecar on loopback, and agent runs shaped by the GenAI conventions."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import httpx
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Tracer

from flightdeck_operator.localdev.processes import SidecarProcess

from .kube import wait_for

MS: Final = 1_000_000
# Short timings so a trace becomes run events within a second or two.
FAST_OTLP: Final = {
    "FLIGHTDECK_OTLP_SETTLE_SECONDS": "0.5",
    "FLIGHTDECK_OTLP_FINALIZE_INTERVAL_SECONDS": "0.2",
    "FLIGHTDECK_OTLP_RELEASE_REFRESH_SECONDS": "1",
}


def resource(release: str | None, agent: str, environment: str, **extra: Any) -> dict[str, Any]:
    """What each agent deployment sets (OTEL_RESOURCE_ATTRIBUTES, injected by the operator's user)."""
    attributes = {"service.name": agent, "deployment.environment.name": environment, **extra}
    if release is not None:
        attributes["flightdeck.release.id"] = release
    return attributes


@contextmanager
def exporting(
    sidecar: SidecarProcess,
    attributes: Mapping[str, Any],
    *,
    token: str | None = None,
    compression: Compression = Compression.Gzip,
) -> Iterator[TracerProvider]:
    """A tracer provider whose spans go to the sidecar's ``/v1/traces`` through the real
    BatchSpanProcessor + OTLPSpanExporter (protobuf). Without ``token`` the exporter reads its
    headers from ``OTEL_EXPORTER_OTLP_HEADERS``. Flushed and shut down on exit."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    exporter = OTLPSpanExporter(endpoint=f"{sidecar.url}/v1/traces", headers=headers, compression=compression)
    provider = TracerProvider(resource=Resource.create(dict(attributes)))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    try:
        yield provider
    finally:
        assert provider.force_flush(30_000)
        provider.shutdown()


def agent_run(
    tracer: Tracer,
    *,
    start_ns: int,
    latency_ms: int,
    chats: tuple[tuple[int, int], ...] = ((500, 250), (500, 250)),
    model: str = "gpt-4.1-mini",
    agent_attributes: Mapping[str, Any] | None = None,
) -> str:
    """``invoke_agent`` with one ``chat`` span per (input, output) and an ``execute_tool`` span,
    at fixed times; returns the trace id (hex)."""
    end_ns = start_ns + latency_ms * MS
    run = tracer.start_span(
        "invoke_agent support",
        kind=SpanKind.INTERNAL,
        start_time=start_ns,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support",
            **(agent_attributes or {}),
        },
    )
    context = _context(run)
    for i, (input_tokens, output_tokens) in enumerate(chats):
        at = start_ns + (10 + 100 * i) * MS
        chat = tracer.start_span(
            f"chat {model}",
            context=context,
            kind=SpanKind.CLIENT,
            start_time=at,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
            },
        )
        chat.end(end_time=at + 90 * MS)
    tool = tracer.start_span(
        "execute_tool lookup",
        context=context,
        start_time=start_ns + 300 * MS,
        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
    )
    tool.end(end_time=start_ns + 305 * MS)
    run.end(end_time=end_ns)
    return format(run.get_span_context().trace_id, "032x")


def _context(span: Any) -> Any:
    from opentelemetry import trace

    return trace.set_span_in_context(span)


def an_hour_ago_ns() -> int:
    return time.time_ns() - 3600 * 1_000_000_000


def wait_for_runs(api: httpx.Client, emitted: int, *, timeout: float = 60) -> dict[str, Any]:
    """Wait until the sidecar reports ``emitted`` run events from traces; returns its status."""

    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = api.get("/v1/otlp/status").json()
        return status if status["totals"]["runs_emitted"] >= emitted else None

    return wait_for(probe, timeout=timeout, what=f"{emitted} runs from traces")
