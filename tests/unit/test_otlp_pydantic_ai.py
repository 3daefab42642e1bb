"""A real instrumented agent framework, offline: Pydantic AI with its ``TestModel`` (no network, no
model weights) emits GenAI spans through the OpenTelemetry SDK; we encode them as the OTLP exporter
does and map them. Its agent span repeats the usage of its model calls (as ``gen_ai.aggregated_usage.*``
by default, as plain ``gen_ai.usage.*`` with ``use_aggregated_usage_attribute_names=False``): the
run event must count each token once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from pydantic_ai import Agent
from pydantic_ai.capabilities import Instrumentation
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RunUsage

from flightdeck_operator.otlp.decode import decode_json, decode_protobuf
from flightdeck_operator.otlp.mapping import MappingConfig, TraceMapping, map_trace
from flightdeck_operator.otlp.releases import KnownRelease, ReleaseCatalog
from tests.unit.otlp_payloads import (
    AGENT,
    ENVIRONMENT,
    RELEASE,
    VERSION,
    SpanCapture,
    to_otlp_json,
    to_protobuf,
)

CATALOG = ReleaseCatalog([KnownRelease(RELEASE, AGENT, VERSION, model="test")])


async def run_agent(*, aggregated_names: bool) -> tuple[RunUsage, Sequence[ReadableSpan]]:
    capture = SpanCapture()
    settings = InstrumentationSettings(
        tracer_provider=capture.provider, use_aggregated_usage_attribute_names=aggregated_names
    )
    # Instrumented per agent (a capability), so no global state leaks into other tests.
    agent = Agent(TestModel(), name="triage", capabilities=[Instrumentation(settings)])

    @agent.tool_plain
    def lookup(query: str) -> str:
        return f"parcel {query} is in the depot"

    # Awaited in the test's own event loop: run_sync would leave a loop of its own unclosed.
    result = await agent.run("Where is my parcel?")
    return result.usage, capture.spans


@pytest.mark.parametrize("aggregated_names", [True, False], ids=["aggregated_usage", "usage_on_agent_span"])
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_a_pydantic_ai_run_counts_each_token_once(aggregated_names: bool, encoding: str) -> None:
    usage, spans = await run_agent(aggregated_names=aggregated_names)
    [agent_span] = [span for span in spans if span.name == "invoke_agent triage"]
    chat_spans = [span for span in spans if (span.attributes or {}).get("gen_ai.operation.name") == "chat"]
    assert usage.requests == len(chat_spans) == 2
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0
    # The fixture really repeats the children's usage on the agent span (what must not be added).
    prefix = "gen_ai.aggregated_usage" if aggregated_names else "gen_ai.usage"
    agent_attributes = agent_span.attributes or {}
    assert agent_attributes[f"{prefix}.input_tokens"] == usage.input_tokens
    assert agent_attributes[f"{prefix}.output_tokens"] == usage.output_tokens

    decoded = (
        decode_protobuf(to_protobuf(spans)) if encoding == "protobuf" else decode_json(to_otlp_json(spans))
    )
    result = map_trace(decoded, MappingConfig(), CATALOG)

    assert isinstance(result, TraceMapping)
    assert result.rejections.rejected_spans == 0
    [event] = result.events
    model = event["usage"]["model"]
    assert (model["input_tokens"], model["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert (model["provider"], model["model"]) == ("test", "test")
    assert event["usage"]["tools"] == [{"tool_name": "lookup", "invocations": 1, "cost_units": 0}]
    assert (event["release_id"], event["agent_id"], event["environment"]) == (RELEASE, AGENT, ENVIRONMENT)
    assert event["metrics"]["success"] is True
    assert event["request"] is not None
    assert event["request"]["span_id"] == format(agent_span.context.span_id, "016x")
    assert event["request"]["session_id"] == agent_attributes["gen_ai.conversation.id"]
    assert event["labels"]["otel.usage_source"] == "inference"
    assert event["labels"]["otel.inference_spans"] == "2"
