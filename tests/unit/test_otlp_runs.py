"""Which spans are runs, and when a trace is ready: spans arrive in any order over several requests."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from flightdeck_operator.otlp.decode import decode_protobuf
from flightdeck_operator.otlp.mapping import MappingConfig, TraceMapping, TraceNotReady, map_trace
from flightdeck_operator.otlp.releases import KnownRelease, ReleaseCatalog
from flightdeck_operator.otlp.spans import SpanRecord
from tests.unit.otlp_payloads import (
    AGENT,
    RELEASE,
    VERSION,
    SpanCapture,
    agent_run,
    chat,
    records,
    to_protobuf,
)

CATALOG = ReleaseCatalog([KnownRelease(RELEASE, AGENT, VERSION, model="gpt-4o")])
CONFIG = MappingConfig()


def mapped(
    span_records: Sequence[SpanRecord], config: MappingConfig = CONFIG, *, final: bool = False
) -> TraceMapping:
    result = map_trace(span_records, config, CATALOG, final=final)
    assert isinstance(result, TraceMapping), result
    return result


def hex_span_id(span: trace.Span | ReadableSpan) -> str:
    context = span.get_span_context() if isinstance(span, trace.Span) else span.context
    assert context is not None
    return format(context.span_id, "016x")


def _request_trace(capture: SpanCapture) -> trace.Span:
    """``POST /triage`` (server) → ``invoke_agent support`` → chat, execute_tool, chat."""
    with capture.span(
        "POST /triage", {"http.request.method": "POST"}, start_ms=0, end_ms=1200, kind=SpanKind.SERVER
    ) as root:
        agent_run(capture, [chat(100, 10), chat(200, 20)], start_ms=50)
    return root


# --- which span is the run --------------------------------------------------------------------------


def test_the_outermost_agent_span_is_the_run_and_sub_agents_fold_into_it() -> None:
    capture = SpanCapture()
    with capture.span(
        "invoke_agent support", {"gen_ai.operation.name": "invoke_agent"}, start_ms=0, end_ms=3000
    ) as outer:
        agent_run(capture, [chat(10, 1)], name="invoke_agent refunds", start_ms=10)  # a handoff
        with capture.span("chat", chat(5, 5), start_ms=2000, end_ms=2100):
            pass
    [event] = mapped(records(capture.spans)).events
    assert event["request"]["span_id"] == hex_span_id(outer)
    assert event["usage"]["model"]["input_tokens"] == 15
    assert event["metrics"]["latency_ms"] == 3000


def test_sibling_agent_runs_under_a_request_are_separate_runs() -> None:
    capture = SpanCapture()
    with capture.span("POST /batch", start_ms=0, end_ms=5000, kind=SpanKind.SERVER):
        first = agent_run(capture, [chat(10, 1)], start_ms=100)
        second = agent_run(capture, [chat(20, 2)], start_ms=2000)
    events = mapped(records(capture.spans)).events
    assert [event["run_id"].rsplit(":", 1)[1] for event in events] == [
        hex_span_id(first),
        hex_span_id(second),
    ]
    assert [event["usage"]["model"]["input_tokens"] for event in events] == [10, 20]


def test_run_operations_are_configurable() -> None:
    capture = SpanCapture()
    with capture.span(
        "invoke_workflow triage", {"gen_ai.operation.name": "invoke_workflow"}, start_ms=0, end_ms=3000
    ):
        inner = agent_run(capture, [chat(10, 1)], start_ms=10)
    assert mapped(records(capture.spans)).events[0]["metrics"]["latency_ms"] == 3000
    only_agents = MappingConfig(run_operations=frozenset({"invoke_agent"}))
    [event] = mapped(records(capture.spans), only_agents).events
    assert event["request"]["span_id"] == hex_span_id(inner)


def test_an_explicit_run_marker_wins() -> None:
    capture = SpanCapture()
    with capture.span("handle ticket", {"flightdeck.run": True}, start_ms=0, end_ms=2000) as marked:
        agent_run(capture, [chat(10, 1)], start_ms=10)
    [event] = mapped(records(capture.spans)).events
    assert event["request"]["span_id"] == hex_span_id(marked)


def test_without_an_agent_span_the_root_is_the_run_unless_disabled() -> None:
    capture = SpanCapture()
    with (
        capture.span("POST /chat", start_ms=0, end_ms=700, kind=SpanKind.SERVER) as root,
        capture.span("chat gpt-4o-mini", chat(40, 4), start_ms=10, end_ms=600, kind=SpanKind.CLIENT),
    ):
        pass
    [event] = mapped(records(capture.spans)).events
    assert event["request"]["span_id"] == hex_span_id(root)
    assert (event["metrics"]["latency_ms"], event["usage"]["model"]["input_tokens"]) == (700, 40)

    no_fallback = mapped(records(capture.spans), MappingConfig(root_fallback=False))
    assert (no_fallback.events, no_fallback.orphan_inference_spans) == ((), 1)


def test_a_trace_without_genai_spans_has_no_run() -> None:
    capture = SpanCapture()
    with (
        capture.span("GET /health", start_ms=0, end_ms=1, kind=SpanKind.SERVER),
        capture.span("SELECT 1", start_ms=0, end_ms=1, kind=SpanKind.CLIENT),
    ):
        pass
    result = mapped(records(capture.spans))
    assert (result.events, result.rejections.rejected_spans, result.orphan_inference_spans) == ((), 0, 0)


def test_the_run_id_depends_only_on_the_trace_and_run_span() -> None:
    capture = SpanCapture()
    root = _request_trace(capture)
    spans = records(capture.spans)
    first = mapped(spans).events
    shuffled = list(spans)
    random.Random(7).shuffle(shuffled)
    assert mapped(shuffled).events == first
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert first[0]["run_id"].startswith(f"otel:{trace_id}:")


def test_spans_of_two_traces_are_refused() -> None:
    one, two = SpanCapture(), SpanCapture()
    agent_run(one, [chat(1, 1)])
    agent_run(two, [chat(1, 1)])
    with pytest.raises(ValueError, match="one trace"):
        map_trace(records(one.spans) + records(two.spans), CONFIG, CATALOG)


# --- arrival order ----------------------------------------------------------------------------------


def _three_payloads() -> tuple[list[bytes], list[ReadableSpan]]:
    """The request trace exported as three OTLP requests, in the exporter's order (spans as they end)."""
    capture = SpanCapture()
    _request_trace(capture)
    spans = list(capture.spans)  # chat, chat, execute_tool, invoke_agent, POST /triage
    batches = [spans[:2], spans[2:4], spans[4:]]
    return [to_protobuf(batch) for batch in batches], spans


def test_a_trace_is_not_ready_until_its_run_span_and_root_arrive() -> None:
    payloads, spans = _three_payloads()
    received: list[SpanRecord] = []
    answers = []
    for payload in payloads:  # children first, as the SDK exports them
        received.extend(decode_protobuf(payload))
        answers.append(map_trace(received, CONFIG, CATALOG))
    first, second, third = answers
    agent_span, root_span = spans[3], spans[4]
    assert first == TraceNotReady(first.trace_id, frozenset({hex_span_id(agent_span)}))
    assert second == TraceNotReady(second.trace_id, frozenset({hex_span_id(root_span)}))
    assert isinstance(third, TraceMapping)
    assert third.events == mapped(records(spans)).events
    assert third.events[0]["usage"]["model"]["input_tokens"] == 300


def test_a_trace_split_over_three_requests_maps_the_same_in_any_order() -> None:
    payloads, spans = _three_payloads()
    whole = mapped(records(spans)).events
    for order in itertools.permutations(payloads):
        received = [span for payload in order for span in decode_protobuf(payload)]
        assert mapped(received).events == whole


def test_in_reverse_order_a_trace_looks_complete_early_so_the_caller_must_settle() -> None:
    # Delivered in reverse (root first), no parent is ever missing: the structure cannot tell that
    # more children will come. This is why the caller maps a trace only after its settle time.
    payloads, _ = _three_payloads()
    received = decode_protobuf(payloads[2]) + decode_protobuf(payloads[1])
    [early] = mapped(received).events
    assert early["usage"]["model"]["input_tokens"] == 0  # both chat spans are still on their way
    assert early["labels"]["otel.usage_source"] == "none"
    received += decode_protobuf(payloads[0])
    assert mapped(received).events[0]["usage"]["model"]["input_tokens"] == 300


def test_final_mapping_keeps_runs_whose_parent_never_came() -> None:
    capture = SpanCapture()
    _request_trace(capture)
    without_root = records(capture.spans)[:-1]  # the server span was lost
    assert isinstance(map_trace(without_root, CONFIG, CATALOG), TraceNotReady)
    result = mapped(without_root, final=True)
    assert [event["usage"]["model"]["input_tokens"] for event in result.events] == [300]
    assert result.detached_spans == 1


def test_final_mapping_does_not_split_a_lost_agent_span_into_many_runs() -> None:
    capture = SpanCapture()
    _request_trace(capture)
    spans = records(capture.spans)
    chats_only = [span for span in spans if span.name == "chat"] + [spans[-1]]  # agent span lost
    result = mapped(chats_only, final=True)
    assert (result.events, result.orphan_inference_spans) == ((), 2)


def test_final_mapping_falls_back_to_a_local_root_under_a_remote_parent() -> None:
    # A service called by another process: its server span's parent is remote and may never come.
    capture = SpanCapture()
    caller = SpanContext(
        0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B173, is_remote=True, trace_flags=TraceFlags(1)
    )
    with (
        capture.span(
            "POST /chat", start_ms=0, end_ms=300, kind=SpanKind.SERVER, parent=trace.NonRecordingSpan(caller)
        ),
        capture.span("chat", chat(7, 3), start_ms=1, end_ms=200, kind=SpanKind.CLIENT),
    ):
        pass
    spans = records(capture.spans)
    assert isinstance(map_trace(spans, CONFIG, CATALOG), TraceNotReady)  # the caller's span may come
    [event] = mapped(spans, final=True).events
    assert event["usage"]["model"]["input_tokens"] == 7
