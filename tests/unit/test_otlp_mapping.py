"""Mapping GenAI spans of one trace to run events: the run span, tokens without double counting
across every generation of attribute names, cached tokens, errors, models, tools, labels.

Spans are made by the real OpenTelemetry SDK and go through the exporter's encoder and our decoder."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from flightdeck_operator.engine.models import RUN_EVENT_DATA, RunEventData, validate_events
from flightdeck_operator.otlp.mapping import MappingConfig, TraceMapping, map_trace
from flightdeck_operator.otlp.releases import KnownRelease, ReleaseCatalog
from flightdeck_operator.otlp.spans import SpanRecord
from flightdeck_operator.sidecar.schemas import INGEST_BATCH
from tests.unit.otlp_payloads import (
    AGENT,
    ENVIRONMENT,
    RELEASE,
    VERSION,
    SpanCapture,
    agent_run,
    chat,
    records,
)

CATALOG = ReleaseCatalog([KnownRelease(RELEASE, AGENT, VERSION, model="gpt-4o", provider="openai")])
CONFIG = MappingConfig()


def mapped(span_records: Sequence[SpanRecord], config: MappingConfig = CONFIG) -> TraceMapping:
    result = map_trace(span_records, config, CATALOG)
    assert isinstance(result, TraceMapping), result
    return result


def only_event(spans: Sequence[ReadableSpan], config: MappingConfig = CONFIG) -> RunEventData:
    result = mapped(records(spans), config)
    assert result.rejections.rejected_spans == 0, result.rejections.error_message()
    [event] = result.events
    return event


def tokens(event: RunEventData) -> tuple[int, int, int]:
    model = event["usage"]["model"]
    return model["input_tokens"], model.get("cached_input_tokens", 0), model["output_tokens"]


def test_an_agent_run_becomes_one_run_event_in_the_ingest_shape() -> None:
    capture = SpanCapture()
    run = agent_run(capture, [chat(120, 30), chat(180, 40)], agent={"gen_ai.conversation.id": "conv-1"})
    trace_id, span_id = (
        format(run.get_span_context().trace_id, "032x"),
        format(run.get_span_context().span_id, "016x"),
    )

    event = only_event(capture.spans)

    assert event == {
        "api_version": "v1",
        "type": "run_end",
        "timestamp": dt.datetime(2026, 5, 28, 20, 26, 41, tzinfo=dt.UTC),  # the run span's end
        "workspace_id": "ws_local",
        "agent_id": AGENT,
        "release_id": RELEASE,
        "run_id": f"otel:{trace_id}:{span_id}",
        "tenant_id": "default",
        "task_id": "default",
        "environment": ENVIRONMENT,
        "request": {"session_id": "conv-1", "trace_id": trace_id, "span_id": span_id},
        "metrics": {"latency_ms": 1000, "success": True, "error_type": None},
        "usage": {
            "model": {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "input_tokens": 300,
                "output_tokens": 70,
                "cached_input_tokens": 0,
            },
            "tools": [{"tool_name": "lookup", "invocations": 1, "cost_units": 0}],
        },
        "labels": {
            "otel.service_name": AGENT,
            "gen_ai.agent.name": "support",
            "otel.inference_spans": "2",
            "otel.child_errors": "0",
            "otel.usage_source": "inference",
        },
    }
    # Exactly what POST /v1/events accepts: its fast path and the reference model read it back equal.
    body = b'{"events": [' + RUN_EVENT_DATA.dump_json(event) + b"]}"
    assert INGEST_BATCH.validate_json(body)["events"] == [event]
    [model] = validate_events(json.loads(body)["events"])
    assert model.model_dump() == event


# Each generation of the conventions, and the OpenInference / OpenLLMetry names, for the same run:
# two model calls of 1000 input tokens (800 from the cache) and 100 output tokens each.
GENERATIONS: Mapping[str, tuple[dict[str, AttributeValue], dict[str, AttributeValue]]] = {
    "current (genai repo)": (
        {"gen_ai.operation.name": "invoke_agent"},
        chat(1000, 100, **{"gen_ai.usage.cache_read.input_tokens": 800}),
    ),
    "v1.37-v1.41 (provider.name, cache_creation)": (
        {"gen_ai.operation.name": "invoke_agent"},
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.cache_read.input_tokens": 800,
            "gen_ai.usage.output_tokens": 100,
        },
    ),
    "v1.26-v1.36 (gen_ai.system)": (
        {"gen_ai.operation.name": "invoke_agent"},
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.cache_read_input_tokens": 800,
            "gen_ai.usage.output_tokens": 100,
        },
    ),
    "before v1.26 (prompt_tokens, no operation name)": (
        {"traceloop.span.kind": "workflow"},  # OpenLLMetry's run marker
        {
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.prompt_tokens": 1000,
            "gen_ai.usage.cache_read_input_tokens": 800,
            "gen_ai.usage.completion_tokens": 100,
        },
    ),
    "OpenInference": (
        {"openinference.span.kind": "AGENT"},
        {
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 1000,
            "llm.token_count.prompt_details.cache_read": 800,
            "llm.token_count.completion": 100,
        },
    ),
}


@pytest.mark.parametrize("generation", GENERATIONS)
def test_every_generation_of_attribute_names_gives_the_same_usage(generation: str) -> None:
    agent_attributes, chat_attributes = GENERATIONS[generation]
    capture = SpanCapture()
    agent_run(capture, [chat_attributes, chat_attributes], agent=agent_attributes)
    event = only_event(capture.spans)
    assert tokens(event) == (400, 1600, 200)  # input excludes the cache reads, which are kept apart
    assert (event["usage"]["model"]["provider"], event["usage"]["model"]["model"]) == (
        "openai",
        "gpt-4o-mini",
    )


def test_old_and_new_names_on_one_span_are_read_once() -> None:
    capture = SpanCapture()
    both = chat(
        100,
        10,
        **{
            "gen_ai.system": "openai",
            "gen_ai.usage.prompt_tokens": 100,
            "gen_ai.usage.completion_tokens": 10,
        },
    )
    agent_run(capture, [both])
    assert tokens(only_event(capture.spans)) == (100, 0, 10)


@pytest.mark.parametrize(
    ("system", "provider"),
    [
        ("az.ai.openai", "azure.ai.openai"),
        ("vertex_ai", "gcp.vertex_ai"),
        ("Anthropic", "anthropic"),
        ("xai", "x_ai"),
    ],
)
def test_legacy_provider_names_are_normalized(system: str, provider: str) -> None:
    capture = SpanCapture()
    agent_run(capture, [{**chat(1, 1), "gen_ai.provider.name": system}])
    assert only_event(capture.spans)["usage"]["model"]["provider"] == provider


# --- no double counting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "repeated",
    [
        {"gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 70},  # the spec's recommendation
        {
            "gen_ai.aggregated_usage.input_tokens": 300,
            "gen_ai.aggregated_usage.output_tokens": 70,
        },  # Pydantic AI
        {"llm.token_count.prompt": 300, "llm.token_count.completion": 70, "gen_ai.usage.total_tokens": 370},
    ],
)
def test_an_agent_span_repeating_its_childrens_usage_is_not_counted(
    repeated: dict[str, AttributeValue],
) -> None:
    capture = SpanCapture()
    agent_run(capture, [chat(120, 30), chat(180, 40)], agent=repeated)
    event = only_event(capture.spans)
    assert tokens(event) == (300, 0, 70)
    assert event["labels"]["otel.usage_source"] == "inference"


@pytest.mark.parametrize(
    "agent_usage",
    [
        {
            "gen_ai.usage.input_tokens": 500,
            "gen_ai.usage.cache_read.input_tokens": 100,
            "gen_ai.usage.output_tokens": 50,
        },
        {
            "gen_ai.aggregated_usage.input_tokens": 500,
            "gen_ai.aggregated_usage.cache_read.input_tokens": 100,
            "gen_ai.aggregated_usage.output_tokens": 50,
        },
    ],
)
def test_agent_level_usage_counts_only_when_there_is_no_inference_span(
    agent_usage: dict[str, AttributeValue],
) -> None:
    capture = SpanCapture()
    agent_run(capture, [], agent={**agent_usage, "gen_ai.request.model": "gpt-4o-mini"})
    event = only_event(capture.spans)
    assert tokens(event) == (400, 100, 50)
    assert event["usage"]["model"]["model"] == "gpt-4o-mini"
    assert event["labels"]["otel.usage_source"] == "agent_span"


def test_a_run_without_usage_has_zero_tokens_and_the_releases_model() -> None:
    capture = SpanCapture()
    agent_run(capture, [])
    event = only_event(capture.spans)
    assert tokens(event) == (0, 0, 0)
    assert (event["usage"]["model"]["provider"], event["usage"]["model"]["model"]) == ("openai", "gpt-4o")
    assert event["labels"]["otel.usage_source"] == "none"


def test_a_model_call_wrapping_another_is_counted_once() -> None:
    capture = SpanCapture()
    # e.g. a framework's LLM span around the SDK-instrumented call, both with usage
    framework = {
        "openinference.span.kind": "LLM",
        "llm.token_count.prompt": 50,
        "llm.token_count.completion": 5,
    }
    with (
        capture.span(
            "invoke_agent support", {"gen_ai.operation.name": "invoke_agent"}, start_ms=0, end_ms=100
        ),
        capture.span("ChatOpenAI", framework, start_ms=1, end_ms=90),
        capture.span("chat gpt-4o-mini", chat(50, 5), start_ms=2, end_ms=80),
    ):
        pass
    assert tokens(only_event(capture.spans)) == (50, 0, 5)


def test_re_sent_spans_are_counted_once() -> None:
    capture = SpanCapture()
    agent_run(capture, [chat(10, 1)])
    decoded = records(capture.spans)
    [event] = mapped(decoded + decoded).events
    assert tokens(event) == (10, 0, 1)


def test_cache_writes_stay_in_input_and_are_labelled() -> None:
    capture = SpanCapture()
    anthropic = chat(
        1200,
        80,
        **{
            "gen_ai.provider.name": "anthropic",
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 150,
        },
    )
    agent_run(capture, [anthropic])
    event = only_event(capture.spans)
    assert tokens(event) == (200, 1000, 80)
    assert event["labels"]["otel.cache_write_input_tokens"] == "150"


# --- models -----------------------------------------------------------------------------------------


def test_mixed_models_name_the_heaviest_and_label_all() -> None:
    capture = SpanCapture()
    small = chat(100, 10, **{"gen_ai.request.model": "gpt-4o-mini"})
    large = chat(900, 90, **{"gen_ai.request.model": "gpt-4o"})
    no_model = {
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 1,
    }
    agent_run(capture, [small, large, no_model])
    event = only_event(capture.spans)
    assert event["usage"]["model"]["model"] == "gpt-4o"
    assert tokens(event) == (1005, 0, 101)  # one event carries the whole run
    assert event["labels"]["otel.models"] == "openai/gpt-4o,openai/gpt-4o-mini"
    assert event["labels"]["otel.unpriced_spans"] == "1"
    assert event["labels"]["otel.inference_spans"] == "3"


def test_a_response_model_loses_its_snapshot_date() -> None:
    capture = SpanCapture()
    dated = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 1,
    }
    agent_run(capture, [dated])
    assert only_event(capture.spans)["usage"]["model"]["model"] == "gpt-4o-mini"


# --- outcome ----------------------------------------------------------------------------------------


def test_an_error_status_fails_the_run_with_the_exception_type() -> None:
    capture = SpanCapture()
    with capture.span(
        "invoke_agent support", {"gen_ai.operation.name": "invoke_agent"}, start_ms=0, end_ms=50
    ) as failing:
        capture.fail(failing, ValueError("first"), at_ms=10)
        capture.fail(failing, TimeoutError("model too slow"), at_ms=40)
    metrics = only_event(capture.spans)["metrics"]
    assert metrics == {"latency_ms": 50, "success": False, "error_type": "TimeoutError"}  # the last exception


@pytest.mark.parametrize(
    ("status_error", "attributes", "expected"),
    [
        (False, {"error.type": "rate_limited"}, (False, "rate_limited")),  # error.type alone fails the run
        (True, {"error.type": "rate_limited"}, (False, "rate_limited")),
        (True, {}, (False, "_OTHER")),  # ERROR without a type: the conventions' fallback
        (False, {}, (True, None)),
    ],
)
def test_success_comes_from_status_and_error_type(
    status_error: bool, attributes: dict[str, AttributeValue], expected: tuple[bool, str | None]
) -> None:
    capture = SpanCapture()
    with capture.span(
        "invoke_agent support", {"gen_ai.operation.name": "invoke_agent", **attributes}, start_ms=0, end_ms=5
    ) as run:
        if status_error:
            run.set_status(Status(StatusCode.ERROR))
    metrics = only_event(capture.spans)["metrics"]
    assert (metrics["success"], metrics["error_type"]) == expected


def test_a_child_error_the_agent_recovered_from_does_not_fail_the_run() -> None:
    capture = SpanCapture()
    with capture.span(
        "invoke_agent support", {"gen_ai.operation.name": "invoke_agent"}, start_ms=0, end_ms=500
    ):
        with capture.span("chat", chat(10, 0), start_ms=1, end_ms=100, kind=SpanKind.CLIENT) as flaky:
            capture.fail(flaky, ConnectionError("reset"), at_ms=99)
        with capture.span("chat", chat(10, 2), start_ms=110, end_ms=200, kind=SpanKind.CLIENT):
            pass
    event = only_event(capture.spans)
    assert event["metrics"]["success"] is True
    assert event["labels"]["otel.child_errors"] == "1"
    assert tokens(event) == (20, 0, 2)


def test_tenant_task_and_environment_from_attributes() -> None:
    capture = SpanCapture(
        {"flightdeck.release.id": RELEASE, "deployment.environment": "staging"}
    )  # the old key
    agent_run(capture, [chat(1, 1)], agent={"flightdeck.tenant.id": "acme", "flightdeck.task.id": "refunds"})
    event = only_event(capture.spans)
    assert (event["tenant_id"], event["task_id"], event["environment"]) == ("acme", "refunds", "staging")


def test_invalid_times_and_out_of_bounds_events_are_rejected() -> None:
    capture = SpanCapture()
    agent_run(capture, [chat(1, 1)], tool=None)
    chat_span, run = records(capture.spans)
    backwards = dataclasses.replace(run, end_ns=run.start_ns - 1)
    result = mapped([chat_span, backwards])
    assert result.events == ()
    assert dict(result.rejections.counts) == {"invalid_times": 1}
    too_long = dataclasses.replace(run, end_ns=run.start_ns + 200 * 86_400 * 10**9)  # 200 days
    result = mapped([chat_span, too_long])
    assert dict(result.rejections.counts) == {"invalid_event": 1}
    assert "metrics.latency_ms" in result.rejections.error_message()
