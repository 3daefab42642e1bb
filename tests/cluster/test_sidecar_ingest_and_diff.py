"""POST /v1/events (reference validation and messages, dedup by run_id, all or nothing, limits),
POST /v1/diff (the reference diff from the store and the cluster's objects), and the CLI commands
that share their code paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess
from flightdeck_operator.store import open_store

from .conftest import StartSidecar
from .kube import AGENT, COST_BREACH, ENV, apply, quickstart, release, run_events
from .sidecar_client import as_user, quickstart_events


def stored(store: str, release_id: str) -> int:
    with open_store(store) as opened:
        return opened.count_events(release_id=release_id)


def test_ingestion_dedups_and_rejects_whole_batches(
    control_plane: ControlPlane, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    store = str(tmp_path / "events.db")
    sidecar = start_sidecar("--max-body-bytes", "65536", "--max-events-per-batch", "50", store=store)
    event = run_events("rel-a", AGENT, ENV, 1)[0]
    with as_user(control_plane, sidecar, "admin") as api:
        assert api.post("/v1/events", json={"events": [event]}).json() == {"inserted": 1}
        assert api.post("/v1/events", json={"events": [event]}).json() == {"inserted": 0}
        assert stored(store, "rel-a") == 1

        upper = api.post("/v1/events", json={"events": [{**event, "api_version": "V1"}]})
        assert (upper.status_code, upper.json()) == (
            400,
            {"detail": "Unsupported api_version for POST /v1/events: 'V1' (only 'v1' is accepted)."},
        )
        for bad in ("v2", "", None):
            answer = api.post("/v1/events", json={"events": [{**event, "api_version": bad}]})
            assert answer.json()["detail"] == (
                f"Unsupported api_version for POST /v1/events: {bad!r} (only 'v1' is accepted)."
            )
        without = {key: value for key, value in event.items() if key != "api_version"}
        fresh = {**without, "run_id": "run-no-version"}
        assert api.post("/v1/events", json={"events": [fresh]}).json() == {"inserted": 1}

        empty = api.post("/v1/events", json={"events": []})
        assert empty.status_code == 422
        assert empty.json()["detail"][0]["type"] == "too_short"
        assert empty.json()["detail"][0]["loc"] == ["body", "events"]

        good, bad = run_events("rel-b", AGENT, ENV, 2)
        bad["usage"]["model"]["input_tokens"] = -1
        rejected = api.post("/v1/events", json={"events": [good, bad]})
        assert rejected.status_code == 400
        assert rejected.json()["detail"].startswith("Invalid RunEvent: 1 validation error for RunEvent\n")
        assert "usage.model.input_tokens" in rejected.json()["detail"]
        assert stored(store, "rel-b") == 0  # all or nothing

        not_json = api.post(
            "/v1/events", content=b'{"events": [', headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code == 422
        assert not_json.json()["detail"][0]["type"] == "json_invalid"
        assert api.post("/v1/events", json={"events": "x"}).status_code == 422
        assert api.post("/v1/events", json=[event]).status_code == 422

        # Limits: events per batch and body size.
        many = api.post("/v1/events", json={"events": run_events("rel-c", AGENT, ENV, 51)})
        assert (many.status_code, many.json()) == (
            413,
            {"detail": "Too many events in one batch: 51 (at most 50 per request); split the batch."},
        )
        huge = api.post("/v1/events", json={"events": [{**event, "labels": {"pad": "x" * 70_000}}]})
        assert (huge.status_code, huge.json()) == (
            413,
            {"detail": "Request body too large: at most 65536 bytes are accepted."},
        )

        def chunks() -> Any:
            yield b'{"events": ['
            for _ in range(100):
                yield b" " * 1000

        streamed = api.post("/v1/events", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        assert stored(store, "rel-c") == 0

        metrics = api.get("/metrics").text
    assert "flightdeck_sidecar_events_ingested_total 2.0" in metrics
    assert "flightdeck_sidecar_events_received_total 3.0" in metrics
    assert 'flightdeck_sidecar_event_batches_rejected_total{reason="too_large"} 1.0' in metrics
    requests = [
        line for line in metrics.splitlines() if line.startswith("flightdeck_sidecar_http_requests_total")
    ]
    assert (
        'flightdeck_sidecar_http_requests_total{method="POST",route="/v1/events",status="413"} 3.0'
        in requests
    ), requests


def test_diff_matches_the_reference_quickstart(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    quickstart(control_plane, namespace)
    body = {"baseline_release_id": "support-base", "candidate_release_id": "support-cand", "window": "7d"}
    with as_user(control_plane, sidecar, "admin") as api:
        api.post("/v1/events", json={"events": quickstart_events()})
        answer = api.post("/v1/diff", json=body)
        assert answer.status_code == 200, answer.text
        diff = answer.json()
        assert list(diff) == [
            "window",
            "since",
            "until",
            "filters",
            "pricing",
            "samples",
            "metrics",
            "policy",
        ]
        assert diff["window"] == "7d"
        assert diff["since"].endswith("+00:00")
        assert diff["until"].endswith("+00:00")
        assert diff["filters"] == {"environment": ENV, "tenant_id": None, "task_id": None}
        assert diff["metrics"] == {
            "baseline_cost_per_run_usd": 2.0,
            "candidate_cost_per_run_usd": 5.0,
            "delta_cost_per_run_usd": 3.0,
            "delta_cost_per_run_pct": 1.5,
            "baseline_latency_ms_avg": 1000.0,
            "candidate_latency_ms_avg": 1200.0,
            "delta_latency_ms_avg": 200.0,
            "baseline_error_rate": 0.0,
            "candidate_error_rate": 0.0,
            "delta_error_rate": 0.0,
        }
        assert diff["samples"] == {
            "baseline_runs": 1,
            "candidate_runs": 1,
            "confidence": "HIGH",
            "confidence_reason": None,
        }
        assert diff["pricing"]["pricing_or_model_changed"] is True
        assert diff["pricing"]["prices"]["baseline_input_usd_per_1k_tokens"] == 1.0
        assert diff["pricing"]["prices"]["candidate_input_usd_per_1k_tokens"] == 3.0
        assert diff["pricing"]["prices"]["candidate_cached_input_usd_per_1k_tokens"] is None
        # The pointer's policy (max cost 4.0) judges the diff.
        assert diff["policy"]["passed"] is False
        assert diff["policy"]["reasons"] == [COST_BREACH]
        assert diff["policy"]["evaluated_at"].endswith("Z")

        # Another environment has no pointer: the default policy, which requires HIGH confidence.
        other = api.post("/v1/diff", json={**body, "environment": "staging"}).json()
        assert other["samples"]["baseline_runs"] == 0
        assert other["policy"]["reasons"] == [
            "diff confidence is LOW (candidate sample < 500 runs; baseline sample < 500 runs; "
            "LOW floor is 50 runs); promotion requires HIGH"
        ]

        apply(
            control_plane, namespace, release("other-agent", "agent-two", "openai", "nowhere", "gpt-4.1-mini")
        )
        apply(
            control_plane,
            namespace,
            release("no-pricing", AGENT, "openai", "missing-baseline", "gpt-4.1-mini"),
        )
        for changed, message in (
            ({"window": "7w"}, "Invalid window unit: 7w"),
            ({"window": "-7d"}, "Invalid window: -7d"),
            ({"baseline_release_id": "nope"}, "Unknown baseline release: nope"),
            ({"candidate_release_id": "nope"}, "Unknown candidate release: nope"),
            (
                {"candidate_release_id": "other-agent"},
                "Cross-agent diff is not allowed. Baseline agent_id=agent-support, candidate agent_id=agent-two.",
            ),
            (
                {"baseline_release_id": "no-pricing"},
                "Missing pricing table for baseline openai/missing-baseline. Run `flightdeck pricing import ...`.",
            ),
        ):
            failed = api.post("/v1/diff", json={**body, **changed})
            assert (failed.status_code, failed.json()) == (400, {"detail": message}), changed


def cli(cp: ControlPlane, namespace: str, store: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig("admin")), "FLIGHTDECK_STORE": store, "USER": "dana"}
    namespaced = () if args[0] == "ingest" else ("-n", namespace)
    return subprocess.run(
        [sys.executable, "-m", "flightdeck_operator.cli.main", *args, *namespaced],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_promote_rollback_ingest_and_diff(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    quickstart(control_plane, namespace)
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in quickstart_events()) + "\n\n")
    assert (
        cli(control_plane, namespace, operator.store, "ingest", str(events)).stdout == "Inserted 2 events\n"
    )
    assert (
        cli(control_plane, namespace, operator.store, "ingest", str(events)).stdout == "Inserted 0 events\n"
    )
    array = tmp_path / "events.json"
    array.write_text(json.dumps([{**quickstart_events()[0], "api_version": "v2"}]))
    bad = cli(control_plane, namespace, operator.store, "ingest", str(array))
    assert (bad.returncode, bad.stderr) == (
        1,
        "Error: Unsupported api_version for POST /v1/events: 'v2' (only 'v1' is accepted).\n",
    )

    flags = ("--env", ENV, "--window", "7d", "--reason", "cli")
    first = cli(control_plane, namespace, operator.store, "promote", "support-base", *flags)
    assert first.returncode == 0, first.stderr
    assert first.stdout == (
        f"Promoted support-base for {AGENT}/{ENV}\n"
        "Policy: PASS\n"
        "- first promotion: no promoted baseline for agent/environment\n"
    )
    blocked = cli(control_plane, namespace, operator.store, "promote", "support-cand", *flags)
    assert blocked.returncode == 1
    assert blocked.stdout == f"Policy: FAIL\n- {COST_BREACH}\n"
    assert blocked.stderr == "Error: Promotion blocked by policy\n"
    back = cli(control_plane, namespace, operator.store, "rollback", "support-base", *flags)
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith(f"Rolled back to support-base for {AGENT}/{ENV}\nPolicy: PASS\n")
    with open_store(operator.store) as store:
        entries = store.list_ledger(kinds=None, limit=10)
    assert [e.actor for e in entries if e.kind.value in ("promote", "rollback")] == ["dana", "dana", "dana"]

    text = cli(
        control_plane, namespace, operator.store, "diff", "support-base", "support-cand", "--window", "7d"
    )
    assert text.returncode == 0, text.stderr
    assert "Cost per run (USD): 2.000000 -> 5.000000 (delta +3.000000, +150.0%)" in text.stdout
    assert "Per-1k token prices: input 1.000000 -> 3.000000, output 2.000000 -> 4.000000" in text.stdout
    assert text.stdout.endswith(f"Policy: FAIL\n- {COST_BREACH}\n")
    as_json = cli(
        control_plane,
        namespace,
        operator.store,
        "diff",
        "support-base",
        "support-cand",
        "--window",
        "7d",
        "--output",
        "json",
        "--fail-on-policy",
    )
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["metrics"]["delta_cost_per_run_pct"] == 1.5
    unknown = cli(control_plane, namespace, operator.store, "diff", "x", "support-cand", "--window", "7d")
    assert (unknown.returncode, unknown.stderr) == (1, "Error: Unknown baseline release: x\n")
