"""Send agent runs through OpenTelemetry's OTLP/HTTP **JSON** exporter (a real client, run in its
own virtualenv, see requirements.txt) to a sidecar. The spans use the older GenAI attribute names
(``gen_ai.system``, ``gen_ai.usage.prompt_tokens``/``completion_tokens``), as instrumentations that
predate semantic conventions 1.37 still emit them.

    python send_runs.py ENDPOINT TOKEN RELEASE AGENT ENVIRONMENT RUNS
"""

from __future__ import annotations

import sys
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

MS = 1_000_000


def main() -> None:
    endpoint, token, release, agent, environment, runs = sys.argv[1:7]
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": agent,
                "flightdeck.release.id": release,
                "deployment.environment": environment,  # the name before semantic conventions 1.27
            }
        )
    )
    exporter = OTLPSpanExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {token}"})
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("legacy-agent", "0.9")
    start = time.time_ns() - 3600 * 1_000_000_000
    for i in range(int(runs)):
        at = start + i * 2000 * MS
        run = tracer.start_span(
            "invoke_agent", start_time=at, attributes={"gen_ai.operation.name": "invoke_agent"}
        )
        context = trace.set_span_in_context(run)
        chat = tracer.start_span(
            "chat gpt-4.1-mini",
            context=context,
            kind=SpanKind.CLIENT,
            start_time=at + 10 * MS,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "OpenAI",
                "gen_ai.request.model": "gpt-4.1-mini",
                "gen_ai.usage.prompt_tokens": 700,
                "gen_ai.usage.completion_tokens": 300,
            },
        )
        chat.end(end_time=at + 500 * MS)
        run.end(end_time=at + 800 * MS)
    if not provider.force_flush(30_000):
        sys.exit("force_flush timed out")
    provider.shutdown()


if __name__ == "__main__":
    main()
