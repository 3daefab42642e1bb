"""Evidence that arrives only as OpenTelemetry traces: real exporters (the Python SDK's OTLP/HTTP
exporter, a Pydantic AI agent) send to a real sidecar on loopback, and a real operator decides a
promotion on the real API server from the run events the traces became."""

from __future__ import annotations

import datetime as dt

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from pydantic_ai import Agent
from pydantic_ai.capabilities import Instrumentation
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.test import TestModel

from flightdeck_operator.engine.models import RunEvent
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess
from flightdeck_operator.store import open_store

from .conftest import StartSidecar
from .kube import AGENT, COST_BREACH, ENV, FIRST_PROMOTION, apply, quickstart, release, stored_events
from .otlp_clients import FAST_OTLP, agent_run, an_hour_ago_ns, exporting, resource, wait_for_runs
from .sidecar_client import action_body, as_user


def test_a_promotion_is_decided_on_evidence_that_arrived_only_as_traces(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    start_sidecar: StartSidecar,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quickstart(control_plane, namespace)
    sidecar = start_sidecar(store=operator.store, env=FAST_OTLP)
    token = control_plane.identity("admin").token
    start = an_hour_ago_ns()
    # The baseline's service sends with an explicit header, uncompressed; the candidate's takes its
    # token from OTEL_EXPORTER_OTLP_HEADERS (URL-encoded, as the SDK reads it) and gzips.
    with exporting(
        sidecar, resource("support-base", AGENT, ENV), token=token, compression=Compression.NoCompression
    ) as provider:
        tracer = provider.get_tracer("support-agent")
        for i in range(3):
            agent_run(tracer, start_ns=start + i * 2000 * 1_000_000, latency_ms=1000)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{token}")
    with exporting(sidecar, resource("support-cand", AGENT, ENV)) as provider:
        tracer = provider.get_tracer("support-agent")
        for i in range(3):
            agent_run(tracer, start_ns=start + i * 2000 * 1_000_000, latency_ms=1200)

    with as_user(control_plane, sidecar, "admin") as api:
        status = wait_for_runs(api, 6)
        assert status["totals"]["spans_accepted"] == 6 * 4
        assert status["totals"]["spans_rejected"] == {}
        with open_store(operator.store) as store:
            assert store.count_events() == 6  # no evidence but the traces'

        body = {"baseline_release_id": "support-base", "candidate_release_id": "support-cand", "window": "7d"}
        diff = api.post("/v1/diff", json=body).json()
        assert diff["samples"]["baseline_runs"] == diff["samples"]["candidate_runs"] == 3
        assert diff["metrics"]["baseline_cost_per_run_usd"] == 2.0  # 1000 in + 500 out at 1/2 per 1k
        assert diff["metrics"]["candidate_cost_per_run_usd"] == 5.0  # at 3/4 per 1k
        assert diff["metrics"]["baseline_latency_ms_avg"] == 1000.0  # the run spans' durations
        assert diff["metrics"]["candidate_latency_ms_avg"] == 1200.0
        assert diff["policy"]["reasons"] == [COST_BREACH]

        first = api.post("/v1/promote", json=action_body("support-base"))
        assert first.status_code == 200, first.text
        assert first.json()["policy"]["reasons"] == [FIRST_PROMOTION]
        blocked = api.post("/v1/promote", json=action_body("support-cand"))
        assert blocked.status_code == 409, blocked.text
        assert blocked.json()["detail"]["outcome"]["policy"]["reasons"] == [COST_BREACH]
    [one, *_] = stored_runs(operator.store, "support-cand")
    assert one.run_id.startswith("otel:")
    assert one.usage.model.model_dump() == {
        "provider": "openai",
        "model": "gpt-4.1-mini",
        "input_tokens": 1000,
        "output_tokens": 500,
        "cached_input_tokens": 0,
    }
    assert [tool.tool_name for tool in one.usage.tools] == ["lookup"]
    assert one.labels["otel.usage_source"] == "inference"
    assert one.request is not None
    assert one.run_id == f"otel:{one.request.trace_id}:{one.request.span_id}"


async def test_a_pydantic_ai_agent_counts_each_token_once(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar
) -> None:
    """Pydantic AI's agent span repeats its model calls' usage: the run event counts it once."""
    apply(control_plane, namespace, release("triage-v1", "triage", "test", "test-pricing", "test"))
    sidecar = start_sidecar(env=FAST_OTLP)
    token = control_plane.identity("admin").token
    with exporting(sidecar, resource("triage-v1", "triage", ENV), token=token) as provider:
        settings = InstrumentationSettings(tracer_provider=provider)
        agent = Agent(TestModel(), name="triage", capabilities=[Instrumentation(settings)])

        @agent.tool_plain
        def lookup(query: str) -> str:
            return f"parcel {query} is in the depot"

        result = await agent.run("Where is my parcel?")
    usage = result.usage
    with as_user(control_plane, sidecar, "admin") as api:
        wait_for_runs(api, 1)
    [event] = stored_runs(sidecar.store, "triage-v1")
    model = event.usage.model
    assert usage.requests == 2
    assert (model.input_tokens, model.output_tokens) == (usage.input_tokens, usage.output_tokens)
    assert (model.provider, model.model) == ("test", "test")
    assert event.agent_id == "triage"
    assert [(tool.tool_name, tool.invocations) for tool in event.usage.tools] == [("lookup", 1)]
    assert event.labels["otel.inference_spans"] == "2"


def stored_runs(store: str, release_id: str) -> tuple[RunEvent, ...]:
    now = dt.datetime.now(dt.UTC)
    with open_store(store) as opened:
        return stored_events(opened, release_id, now - dt.timedelta(days=7), now)
