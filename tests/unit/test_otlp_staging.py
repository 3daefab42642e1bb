"""What staging needs of spans (pure): request identity, roots for the settle rule, grouping, and
when a due trace is mapped (a remote parent is not waited for; a local one is, until the end)."""

from __future__ import annotations

import dataclasses

from flightdeck_operator.otlp.mapping import MappingConfig, TraceNotReady
from flightdeck_operator.otlp.releases import KnownRelease, ReleaseCatalog
from flightdeck_operator.otlp.staging import Settled, batch_id, group_by_trace, is_local_root, settle
from tests.unit.otlp_payloads import AGENT, RELEASE, VERSION, SpanCapture, agent_run, chat, records

CATALOG = ReleaseCatalog([KnownRelease(RELEASE, AGENT, VERSION, model="gpt-4o-mini")])
CONFIG = MappingConfig()


def test_a_request_is_known_by_its_bytes_and_content_type() -> None:
    assert batch_id("application/x-protobuf", b"abc") == batch_id("application/x-protobuf", b"abc")
    assert batch_id("application/x-protobuf", b"abc") != batch_id("application/json", b"abc")
    assert batch_id("application/x-protobuf", b"abc") != batch_id("application/x-protobuf", b"abd")


def test_spans_are_grouped_by_trace_in_arrival_order() -> None:
    capture = SpanCapture()
    agent_run(capture, [chat(10, 1)], start_ms=0)
    agent_run(capture, [chat(20, 2)], start_ms=2000)
    spans = records(capture.spans)
    traces = group_by_trace(spans)
    assert len(traces) == 2
    assert [span for group in traces.values() for span in group] == sorted(
        spans, key=lambda span: list(traces).index(span.trace_id)
    )
    roots = [span for span in spans if is_local_root(span)]
    assert [span.name for span in roots] == ["invoke_agent support", "invoke_agent support"]


def test_a_missing_local_parent_is_waited_for_a_remote_one_is_not() -> None:
    capture = SpanCapture()
    agent_run(capture, [chat(100, 10), chat(200, 20)], start_ms=0)
    spans = records(capture.spans)
    run = next(span for span in spans if span.parent_span_id is None)
    children = [span for span in spans if span is not run]

    assert isinstance(settle(children, CONFIG, CATALOG, final=False), TraceNotReady)
    lost = settle(children, CONFIG, CATALOG, final=True)  # the maximum wait: mapped as it is
    assert isinstance(lost, Settled)
    assert lost.mapping.events == ()  # the agent span never came: its chat spans are no run
    assert lost.mapping.orphan_inference_spans == 2

    # The run span's parent lives in another process (an HTTP server span upstream): no waiting.
    remote = dataclasses.replace(run, parent_span_id="00f067aa0ba902b7", parent_is_remote=True)
    assert is_local_root(remote)
    settled = settle([*children, remote], CONFIG, CATALOG, final=False)
    assert isinstance(settled, Settled)
    assert settled.final
    [event] = settled.mapping.events
    assert event["usage"]["model"]["input_tokens"] == 300
