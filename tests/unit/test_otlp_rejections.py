"""Spans that cannot become evidence: release resolution, environment, bad ids, and the counts by
reason that make the OTLP partial-success answer (receive time) and the finalization outcome."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import pytest
from opentelemetry.util.types import AttributeValue

from flightdeck_operator.otlp.decode import decode_json
from flightdeck_operator.otlp.mapping import MappingConfig, TraceMapping, map_trace, screen_spans
from flightdeck_operator.otlp.rejections import (
    MAX_ERROR_MESSAGE_LENGTH,
    Rejection,
    RejectionReason,
    RejectionSummary,
)
from flightdeck_operator.otlp.releases import KnownRelease, ReleaseCatalog
from flightdeck_operator.otlp.spans import SpanRecord
from tests.unit.otlp_payloads import (
    AGENT,
    ENVIRONMENT,
    RELEASE,
    VERSION,
    SpanCapture,
    agent_run,
    chat,
    records,
    to_otlp_json_document,
)

CATALOG = ReleaseCatalog(
    [
        KnownRelease(RELEASE, AGENT, VERSION),
        KnownRelease("support-v1", AGENT, "1.0.0"),
        KnownRelease("billing-v1", "billing", "1.0.0"),
    ]
)
CONFIG = MappingConfig()
ENV = {"deployment.environment.name": ENVIRONMENT}


def run_spans(
    resource: Mapping[str, AttributeValue], agent: Mapping[str, AttributeValue] | None = None
) -> list[SpanRecord]:
    capture = SpanCapture(resource)
    agent_run(capture, [chat(10, 1)], agent=agent)
    return records(capture.spans)


def outcome(spans: list[SpanRecord], config: MappingConfig = CONFIG) -> TraceMapping:
    result = map_trace(spans, config, CATALOG)
    assert isinstance(result, TraceMapping)
    return result


def release_of(spans: list[SpanRecord], config: MappingConfig = CONFIG) -> str:
    result = outcome(spans, config)
    assert result.rejections.rejected_spans == 0, result.rejections.error_message()
    [event] = result.events
    return event["release_id"]


def only_rejection(spans: list[SpanRecord], config: MappingConfig = CONFIG) -> tuple[str, str]:
    """The single rejection of both the receive-time screening and the trace mapping."""
    screened = screen_spans(spans, config, CATALOG)
    mapped = outcome(spans, config)
    assert mapped.events == ()
    assert dict(screened.rejections.counts) == dict(mapped.rejections.counts)
    [reason] = mapped.rejections.counts
    return reason.value, mapped.rejections.error_message()


# --- release --------------------------------------------------------------------------------------


def test_the_release_attribute_on_the_resource_or_the_span() -> None:
    assert release_of(run_spans({"flightdeck.release.id": RELEASE, **ENV})) == RELEASE
    assert release_of(run_spans(ENV, agent={"flightdeck.release.id": "support-v1"})) == "support-v1"
    custom = MappingConfig(release_attribute="app.release")
    assert release_of(run_spans({"app.release": "billing-v1", **ENV}), custom) == "billing-v1"


def test_service_version_falls_back_to_the_agents_release_of_that_version() -> None:
    assert release_of(run_spans({"service.name": AGENT, "service.version": "1.0.0", **ENV})) == "support-v1"
    # flightdeck.agent.id names the agent when the service is called something else
    resource = {
        "service.name": "billing-worker",
        "flightdeck.agent.id": "billing",
        "service.version": "1.0.0",
        **ENV,
    }
    assert release_of(run_spans(resource)) == "billing-v1"


def test_spans_without_a_release_are_rejected_with_a_reason() -> None:
    spans = run_spans({"service.name": AGENT, **ENV})
    reason, message = only_rejection(spans)
    assert reason == "no_release"
    assert message == (
        f"1 span rejected: 1 no release [no_release] (e.g. trace {spans[0].trace_id}: span "
        "'invoke_agent support': no flightdeck.release.id and no service.version)"
    )
    no_fallback = MappingConfig(version_fallback=False)
    reason, message = only_rejection(run_spans({"service.version": VERSION, **ENV}), no_fallback)
    assert (reason, message.endswith("no flightdeck.release.id)")) == ("no_release", True)


@pytest.mark.parametrize(
    ("resource", "reason", "detail"),
    [
        (
            {"flightdeck.release.id": "support-v9"},
            "unknown_release",
            "flightdeck.release.id 'support-v9' names no AgentRelease",
        ),
        (
            {"service.name": "triage", "service.version": "1.0.0"},
            "unknown_agent",
            "agent 'triage' (flightdeck.agent.id, else service.name) has no AgentRelease",
        ),
        (
            {"service.name": AGENT, "service.version": "9.9"},
            "unknown_version",
            "service.version '9.9' matches no AgentRelease of agent 'support'",
        ),
        (
            {"flightdeck.release.id": RELEASE, "flightdeck.agent.id": "billing"},
            "agent_mismatch",
            "flightdeck.agent.id 'billing' but release 'support-v2' is of agent 'support'",
        ),
    ],
)
def test_unresolvable_releases_are_rejected(
    resource: dict[str, AttributeValue], reason: str, detail: str
) -> None:
    got, message = only_rejection(run_spans({**resource, **ENV}))
    assert got == reason
    assert detail in message


def test_the_environment_falls_back_to_the_default_or_rejects() -> None:
    spans = run_spans({"flightdeck.release.id": RELEASE})
    reason, message = only_rejection(spans)
    assert reason == "no_environment"
    assert "no deployment.environment.name (or deployment.environment) and no default environment" in message
    [event] = outcome(spans, MappingConfig(default_environment="dev")).events
    assert event["environment"] == "dev"


# --- bad ids ----------------------------------------------------------------------------------------


def test_spans_with_bad_ids_are_rejected_alone() -> None:
    capture = SpanCapture()
    agent_run(capture, [chat(10, 1), chat(20, 2)])
    document = to_otlp_json_document(capture.spans)
    first_chat, _second_chat, tool, _agent = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    first_chat["spanId"] = "0" * 16  # the invalid (all-zero) id
    tool["traceId"] = "n2aVwh5y4bS5Ws9Z5qWf2g=="  # base64, as a proto3 JSON encoder would write it
    spans = decode_json(json.dumps(document))

    screened = screen_spans(spans, CONFIG, CATALOG)
    assert dict(screened.rejections.counts) == {RejectionReason.INVALID_ID: 2}
    assert [span.name for span in screened.stageable] == ["chat", "invoke_agent support"]
    assert "span id '0000000000000000' is not 16 hex digits" in screened.rejections.error_message()

    result = outcome(spans)
    assert dict(result.rejections.counts) == {RejectionReason.INVALID_ID: 2}
    [event] = result.events
    assert event["usage"]["model"]["input_tokens"] == 20  # the valid chat span still counts


@pytest.mark.parametrize(
    ("parent", "problem"),
    [("xyz", "parent span id 'xyz' is not 16 hex digits"), ("self", "the span is its own parent")],
)
def test_a_bad_parent_id_is_a_bad_id(parent: str, problem: str) -> None:
    capture = SpanCapture()
    agent_run(capture, [chat(10, 1)], tool=None)
    document = to_otlp_json_document(capture.spans)
    chat_span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    chat_span["parentSpanId"] = chat_span["spanId"] if parent == "self" else parent
    screened = screen_spans(decode_json(json.dumps(document)), CONFIG, CATALOG)
    assert screened.rejections.rejected_spans == 1
    assert problem in screened.rejections.error_message()


# --- one request, several traces --------------------------------------------------------------------


def test_screening_a_request_counts_rejections_by_reason() -> None:
    good = run_spans({"flightdeck.release.id": RELEASE, **ENV})
    unreleased = run_spans({"service.name": AGENT, **ENV})
    other_unreleased = run_spans({"service.name": AGENT, **ENV})
    broken = dataclasses.replace(good[0], trace_id="", span_id="zz")
    screened = screen_spans([*good, *unreleased, *other_unreleased, broken], CONFIG, CATALOG)

    assert screened.rejections.rejected_spans == 3
    assert dict(screened.rejections.counts) == {RejectionReason.NO_RELEASE: 2, RejectionReason.INVALID_ID: 1}
    # Rejected run spans stay stageable: their children need the ancestry to be recognised as such.
    assert len(screened.stageable) == 3 * len(good)
    message = screened.rejections.error_message()
    assert message.startswith("3 spans rejected: 2 no release [no_release] (e.g. trace ")
    assert (
        "; 1 invalid trace or span id [invalid_id] (e.g. trace -: trace id '' is not 32 hex digits" in message
    )


def test_the_error_message_is_bounded_and_summaries_merge() -> None:
    long_detail = "x" * 2000
    summary = RejectionSummary.of(
        [Rejection(RejectionReason.UNKNOWN_RELEASE, "a" * 32, "b" * 16, long_detail)]
    )
    assert len(summary.error_message()) == MAX_ERROR_MESSAGE_LENGTH
    assert summary.error_message().endswith("...")
    assert RejectionSummary().error_message() == ""
    assert RejectionSummary().rejected_spans == 0
    other = RejectionSummary.of([Rejection(RejectionReason.INVALID_ID, "", "", "bad")] * 2)
    merged = summary.merged(other)
    assert dict(merged.counts) == {RejectionReason.UNKNOWN_RELEASE: 1, RejectionReason.INVALID_ID: 2}
    assert merged.rejected_spans == 3
    assert merged.examples[RejectionReason.INVALID_ID].detail == "bad"
