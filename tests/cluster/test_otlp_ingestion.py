"""POST /v1/traces with bad and awkward input, over real HTTP to a real sidecar: truncated
protobuf, wrong content type, a 20 MB body, spans without a release, a trace split over three
requests in reverse order, re-sends, a full staging area (503 + Retry-After, retried by the real
exporter), and a restart between accepting spans and finalising them."""

from __future__ import annotations

import gzip
import time
from collections.abc import Sequence
from typing import Any

import httpx
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.store import open_store

from .conftest import StartSidecar
from .kube import AGENT, ENV, apply, release, stored_events
from .otlp_clients import FAST_OTLP, agent_run, an_hour_ago_ns, resource, wait_for_runs
from .sidecar_client import as_user

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def captured(attributes: dict[str, Any], runs: int = 1, **run: Any) -> list[ReadableSpan]:
    """Spans of ``runs`` agent runs from the real SDK, in the order the exporter sends them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("support-agent")
    start = an_hour_ago_ns()
    for i in range(runs):
        agent_run(tracer, start_ns=start + i * 2_000_000_000, latency_ms=1000, **run)
    return list(memory.get_finished_spans())


def body(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def status_of(response: httpx.Response) -> Status:
    assert response.headers["content-type"] == "application/x-protobuf"
    return Status.FromString(response.content)


def test_bad_bodies_get_otlp_errors_and_partial_success_names_the_rejected(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar
) -> None:
    apply(control_plane, namespace, release("rel-a", AGENT, "openai", "p", "gpt-4.1-mini"))
    sidecar = start_sidecar(env=FAST_OTLP)
    good = body(captured(resource("rel-a", AGENT, ENV)))
    with as_user(control_plane, sidecar, "admin") as api:
        truncated = api.post("/v1/traces", content=good[: len(good) // 2], headers=PROTOBUF)
        assert truncated.status_code == 400
        assert status_of(truncated).code == 3  # INVALID_ARGUMENT
        assert "not a valid protobuf ExportTraceServiceRequest" in status_of(truncated).message

        wrong_type = api.post("/v1/traces", content=good, headers={"Content-Type": "text/plain"})
        assert wrong_type.status_code == 415
        assert "Unsupported Content-Type 'text/plain'" in status_of(wrong_type).message
        brotli = api.post("/v1/traces", content=good, headers={**PROTOBUF, "Content-Encoding": "br"})
        assert brotli.status_code == 415

        bad_json = api.post(
            "/v1/traces", content=b'{"resourceSpans": 7}', headers={"Content-Type": "application/json"}
        )
        assert bad_json.status_code == 400
        assert bad_json.headers["content-type"] == "application/json"
        assert bad_json.json() == {
            "code": 3,
            "message": "resourceSpans: expected an array, got 7.",
        }

        # 20 MB: over the raw limit (refused before it is read) and, gzipped, once decompressed.
        huge = b"\0" * (20 * 1024 * 1024)
        assert api.post("/v1/traces", content=huge, headers=PROTOBUF).status_code == 413
        bomb = api.post(
            "/v1/traces", content=gzip.compress(huge), headers={**PROTOBUF, "Content-Encoding": "gzip"}
        )
        assert bomb.status_code == 413
        assert "once decompressed" in status_of(bomb).message

        unauthenticated = httpx.post(f"{sidecar.url}/v1/traces", content=good, headers=PROTOBUF)
        assert unauthenticated.status_code == 401
        assert status_of(unauthenticated).code == 16

        # Spans without a release: accepted (the children are ancestry), the run rejected.
        orphaned = captured(resource(None, "no-such-agent", ENV))
        answer = api.post("/v1/traces", content=body(orphaned), headers=PROTOBUF)
        assert answer.status_code == 200
        partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
        assert partial.rejected_spans == 1
        assert partial.error_message.startswith("1 span rejected: 1 no release [no_release]")
        assert "no flightdeck.release.id and no service.version" in partial.error_message
        # Re-sent (its answer was lost): the same answer, nothing staged or counted twice.
        again = api.post("/v1/traces", content=body(orphaned), headers=PROTOBUF)
        assert again.content == answer.content

        as_json = api.post(
            "/v1/traces", content=b'{"resourceSpans": []}', headers={"Content-Type": "application/json"}
        )
        assert (as_json.status_code, as_json.json()) == (200, {})
        ok = api.post("/v1/traces", content=good, headers=PROTOBUF)
        assert (ok.status_code, ok.content) == (200, b"")

        status = wait_for_runs(api, 1)
        metrics = api.get("/metrics").text
    assert status["totals"]["spans_rejected"] == {"no_release": 1}
    assert status["totals"]["spans_duplicate"] == len(orphaned)
    assert status["totals"]["requests_refused"] == {"decode": 2, "media_type": 2, "too_large": 2}
    # The run span was rejected on arrival (the partial success) and its run when it was mapped.
    assert [(r["stage"], r["reason"]) for r in status["last_rejections"]] == [
        ("finalize", "no_release"),
        ("receive", "no_release"),
    ]
    assert status["totals"]["runs_rejected"] == {"no_release": 1}
    assert 'flightdeck_otlp_spans_total{outcome="rejected",reason="no_release"} 1.0' in metrics
    assert 'flightdeck_otlp_spans_total{outcome="accepted",reason=""} 8.0' in metrics
    assert 'flightdeck_otlp_runs_total{outcome="emitted",reason=""} 1.0' in metrics
    assert 'flightdeck_otlp_requests_refused_total{reason="too_large"} 2.0' in metrics


def test_a_trace_split_over_three_requests_in_reverse_order_is_one_run(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar
) -> None:
    apply(control_plane, namespace, release("rel-a", AGENT, "openai", "p", "gpt-4.1-mini"))
    # A settle time longer than the gaps between the requests: the trace must wait for all three.
    sidecar = start_sidecar(env={**FAST_OTLP, "FLIGHTDECK_OTLP_SETTLE_SECONDS": "2"})
    spans = captured(resource("rel-a", AGENT, ENV), chats=((100, 10), (200, 20), (300, 30)))
    root = [span for span in spans if span.parent is None]
    children = [span for span in spans if span.parent is not None]
    # Reverse order: the run span first, then the children in two parts, the last one re-sent.
    parts = [body(root), body(children[:2]), body(children[2:])]
    with as_user(control_plane, sidecar, "admin") as api:
        for part in [*parts, parts[-1]]:
            assert api.post("/v1/traces", content=part, headers=PROTOBUF).status_code == 200
            time.sleep(0.3)
        status = wait_for_runs(api, 1)
        time.sleep(1)  # nothing more comes of it
        assert api.get("/v1/otlp/status").json()["totals"]["runs_emitted"] == 1
    assert status["totals"]["spans_duplicate"] == 2
    with open_store(sidecar.store) as store:
        [event] = stored_events(store, "rel-a", *window())
    assert (event.usage.model.input_tokens, event.usage.model.output_tokens) == (600, 60)


def test_full_staging_answers_503_with_retry_after_and_the_exporter_retries(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar
) -> None:
    apply(control_plane, namespace, release("rel-a", AGENT, "openai", "p", "gpt-4.1-mini"))
    env = {
        **FAST_OTLP,
        "FLIGHTDECK_OTLP_MAX_STAGED_TRACES": "1",
        "FLIGHTDECK_OTLP_RETRY_AFTER_SECONDS": "1",
        "FLIGHTDECK_OTLP_SETTLE_SECONDS": "2",  # the first trace stays staged past the first retry
    }
    sidecar = start_sidecar(env=env)
    token = control_plane.identity("admin").token
    first, second = (captured(resource("rel-a", AGENT, ENV)) for _ in range(2))
    with as_user(control_plane, sidecar, "admin") as api:
        assert api.post("/v1/traces", content=body(first), headers=PROTOBUF).status_code == 200
        full = api.post("/v1/traces", content=body(second), headers=PROTOBUF)
        assert (full.status_code, full.headers["retry-after"]) == (503, "1")
        assert status_of(full).code == 14  # UNAVAILABLE
        # The real exporter waits Retry-After and sends again; by then the first trace is done.
        exporter = OTLPSpanExporter(
            endpoint=f"{sidecar.url}/v1/traces", headers={"Authorization": f"Bearer {token}"}
        )
        assert exporter.export(second) == SpanExportResult.SUCCESS
        exporter.shutdown()
        status = wait_for_runs(api, 2)
    assert status["totals"]["requests_refused"]["staging_full"] >= 2


def test_spans_accepted_before_a_crash_become_runs_after_the_restart_once(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar
) -> None:
    apply(control_plane, namespace, release("rel-a", AGENT, "openai", "p", "gpt-4.1-mini"))
    slow = {**FAST_OTLP, "FLIGHTDECK_OTLP_SETTLE_SECONDS": "4"}  # killed well before that
    crashing = start_sidecar(env=slow)
    spans = captured(resource("rel-a", AGENT, ENV), runs=3)
    with as_user(control_plane, crashing, "admin") as api:
        assert api.post("/v1/traces", content=body(spans), headers=PROTOBUF).status_code == 200
        assert api.get("/v1/otlp/status").json()["staged_traces"] == 3
    crashing.kill()  # SIGKILL: accepted, staged, not yet finalised

    restarted = start_sidecar(store=crashing.store, env=FAST_OTLP)
    with as_user(control_plane, restarted, "admin") as api:
        wait_for_runs(api, 3)
        # The exporter re-sends the same request (its answer was lost): late, not counted again.
        again = api.post("/v1/traces", content=body(spans), headers=PROTOBUF)
        assert again.status_code == 200
        status = api.get("/v1/otlp/status").json()
    assert status["totals"]["spans_late"] == len(spans)
    assert status["staged_traces"] == 0
    with open_store(restarted.store) as store:
        assert len(stored_events(store, "rel-a", *window())) == 3


def window() -> tuple[Any, Any]:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(days=1), now
