"""Run forensics and JSON metrics over real HTTP: GET /v1/runs (the reference's keys, filters,
paging and errors), GET /v1/runs/export (NDJSON, the X-Flightdeck-* headers, beyond the reference's
500 lines), GET /v1/metrics (the reference's shape from counters), and the CLI's runs list/export."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import SidecarProcess
from flightdeck_operator.store import LATEST_SCHEMA_VERSION

from .kube import AGENT, ENV, apply, quickstart, run_events, wait_for
from .sidecar_client import action_body, as_user, http, role, role_binding

RUNS_KEYS = [
    "release_id",
    "since",
    "until",
    "filters",
    "offset",
    "limit",
    "matched_total",
    "returned",
    "truncated",
    "events",
]


def forensic_events() -> list[dict[str, Any]]:
    """12 candidate events a minute apart (newest: run-00), over two tenants and two traces."""
    now = dt.datetime.now(dt.UTC)
    events = []
    for i, event in enumerate(run_events("support-cand", AGENT, ENV, 12)):
        event["run_id"] = f"run-{i:02d}"
        event["timestamp"] = (now - dt.timedelta(minutes=i + 1)).isoformat()
        event["tenant_id"] = f"tenant-{i % 2}"
        event["request"] = {"trace_id": f" trace-{i % 3}"[1:], "session_id": "s1"}
        event["labels"] = {"ü": "→"}
        events.append(event)
    return events


def ids(body: dict[str, Any]) -> list[str]:
    return [event["run_id"] for event in body["events"]]


def test_runs_pages_filters_and_the_reference_shape(
    control_plane: ControlPlane, namespace: str, sidecar: SidecarProcess
) -> None:
    quickstart(control_plane, namespace)
    events = forensic_events()
    with as_user(control_plane, sidecar, "admin") as api:
        assert api.post("/v1/events", json={"events": events}).json() == {"inserted": 12}
        base = {"release_id": "support-cand", "window": "1h"}
        page = api.get("/v1/runs", params={**base, "limit": 5})
        assert page.status_code == 200
        body = page.json()
        assert list(body) == RUNS_KEYS
        assert (
            body["matched_total"],
            body["returned"],
            body["truncated"],
            body["offset"],
            body["limit"],
        ) == (
            12,
            5,
            True,
            0,
            5,
        )
        assert ids(body) == ["run-00", "run-01", "run-02", "run-03", "run-04"]
        assert body["filters"] == {
            "environment": ENV,
            "tenant_id": None,
            "task_id": None,
            "trace_id": None,
            "session_id": None,
            "span_id": None,
        }
        since, until = (dt.datetime.fromisoformat(body[k]) for k in ("since", "until"))
        assert body["until"].endswith("+00:00")
        assert until - since == dt.timedelta(hours=1)
        # Each event as the reference's model_dump(mode="json"): defaults filled in.
        first = body["events"][0]
        assert first["api_version"] == "v1"
        assert first["type"] == "run_end"
        assert first["workspace_id"] == "ws_local"
        assert first["labels"] == {"ü": "→"}
        assert first["metrics"] == {"latency_ms": 1000, "success": True, "error_type": None}
        assert first["request"] == {"session_id": "s1", "trace_id": "trace-0", "span_id": None}

        last = api.get("/v1/runs", params={**base, "offset": 10, "limit": 5}).json()
        assert (ids(last), last["truncated"]) == (["run-10", "run-11"], False)
        tenant = api.get("/v1/runs", params={**base, "tenant_id": "tenant-1", "task_id": "support"}).json()
        assert ids(tenant) == ["run-01", "run-03", "run-05", "run-07", "run-09", "run-11"]
        traced = api.get("/v1/runs", params={**base, "trace_id": "  trace-2 "}).json()
        assert (ids(traced), traced["filters"]["trace_id"]) == (
            ["run-02", "run-05", "run-08", "run-11"],
            "trace-2",
        )
        unfiltered = api.get("/v1/runs", params={**base, "trace_id": "   ", "span_id": ""}).json()
        assert (unfiltered["matched_total"], unfiltered["filters"]["trace_id"]) == (12, None)
        narrow = api.get("/v1/runs", params={"release_id": "support-cand", "window": "5m"}).json()
        assert ids(narrow) == ["run-00", "run-01", "run-02", "run-03"]
        other_env = api.get("/v1/runs", params={**base, "environment": "production"}).json()
        assert (other_env["matched_total"], other_env["events"]) == (0, [])
        empty_release = api.get("/v1/runs", params={"release_id": "support-base", "window": "7d"}).json()
        assert (empty_release["matched_total"], empty_release["truncated"]) == (0, False)


def test_runs_bad_inputs(control_plane: ControlPlane, namespace: str, sidecar: SidecarProcess) -> None:
    quickstart(control_plane, namespace)
    base = {"release_id": "support-cand", "window": "7d"}
    with as_user(control_plane, sidecar, "admin") as api:
        for path in ("/v1/runs", "/v1/runs/export"):
            for params, field in (
                ({"limit": 0}, "limit"),
                ({"offset": -1}, "offset"),
                ({"offset": 500_001}, "offset"),
            ):
                answer = api.get(path, params={**base, **params})
                assert answer.status_code == 422, (path, params)
                assert answer.json()["detail"][0]["loc"] == ["query", field]
            unknown = api.get(path, params={**base, "release_id": "nope"})
            assert (unknown.status_code, unknown.json()) == (400, {"detail": "Unknown release: nope"})
            for window, message in (
                ("abc", "Invalid window: abc"),
                (" 7W", "Invalid window unit: 7w"),
                ("0h", "Invalid window: 0h"),
            ):
                bad = api.get(path, params={**base, "window": window})
                assert (bad.status_code, bad.json()) == (400, {"detail": message}), window
            missing = api.get(path, params={"window": "7d"})
            assert (missing.status_code, missing.json()["detail"][0]["loc"]) == (422, ["query", "release_id"])
        assert api.get("/v1/runs", params={**base, "limit": 501}).status_code == 422
        assert api.get("/v1/runs/export", params={**base, "limit": 1_000_001}).status_code == 422
    with http(sidecar) as anonymous:
        refused = anonymous.get("/v1/runs", params=base)
        assert (refused.status_code, refused.json()) == (
            401,
            {"detail": "Missing or invalid API token for read route."},
        )
    with as_user(control_plane, sidecar, "bob") as bob:
        assert bob.get("/v1/runs", params=base).status_code == 403
        assert bob.get("/v1/metrics").status_code == 403


def test_export_streams_ndjson_with_the_reference_headers(
    control_plane: ControlPlane, namespace: str, sidecar: SidecarProcess
) -> None:
    quickstart(control_plane, namespace)
    many = run_events("support-cand", AGENT, ENV, 650, age=dt.timedelta(minutes=30))
    with as_user(control_plane, sidecar, "admin") as api:
        assert api.post("/v1/events", json={"events": forensic_events() + many}).json() == {"inserted": 662}
        base = {"release_id": "support-cand", "window": "1h"}
        small = api.get("/v1/runs/export", params={**base, "tenant_id": "tenant-0", "limit": 2, "offset": 1})
        assert small.status_code == 200
        assert small.headers["content-type"] == "application/x-ndjson"
        assert {k: v for k, v in small.headers.items() if k.startswith("x-flightdeck-")} == {
            "x-flightdeck-matched-total": "6",
            "x-flightdeck-returned": "2",
            "x-flightdeck-offset": "1",
            "x-flightdeck-truncated": "true",
        }
        lines = small.text.splitlines(keepends=True)
        assert [json.loads(line)["run_id"] for line in lines] == ["run-02", "run-04"]
        for line in lines:  # the reference's json.dumps(event, sort_keys=True): default separators, ASCII
            assert line == json.dumps(json.loads(line), sort_keys=True) + "\n"
        assert '"labels": {"\\u00fc": "\\u2192"}' in lines[0]

        # Beyond the reference's 500 lines: one streamed answer, counted in the headers.
        everything = api.get("/v1/runs/export", params={**base, "limit": 1000})
        assert (
            everything.headers["x-flightdeck-returned"]
            == everything.headers["x-flightdeck-matched-total"]
            == "662"
        )
        assert everything.headers["x-flightdeck-truncated"] == "false"
        assert len(everything.text.splitlines()) == 662
        listed = api.get("/v1/runs", params={**base, "limit": 500}).json()
        exported = [json.loads(line) for line in everything.text.splitlines()[:500]]
        assert exported == listed["events"]
        past_the_end = api.get("/v1/runs/export", params={**base, "offset": 700})
        assert (past_the_end.text, past_the_end.headers["x-flightdeck-returned"]) == ("", "0")


def test_json_metrics_have_the_reference_shape(
    control_plane: ControlPlane, namespace: str, sidecar: SidecarProcess
) -> None:
    quickstart(control_plane, namespace)
    with as_user(control_plane, sidecar, "admin") as api:
        empty = api.get("/v1/metrics").json()
        assert list(empty) == ["counters", "schema_version", "generated_at"]
        assert empty["schema_version"] == LATEST_SCHEMA_VERSION
        assert dt.datetime.fromisoformat(empty["generated_at"]).tzinfo is not None
        assert empty["counters"] == {
            "releases_total": 2,
            "pricing_tables_total": 2,
            "run_events_total": 0,
            "promoted_pointers_total": 0,
            "actions_total": 0,
            "actions_by_action": {},
        }
        api.post("/v1/events", json={"events": forensic_events()})
        assert api.post("/v1/promote", json=action_body("support-base")).status_code == 200
        assert api.post("/v1/promote", json=action_body("support-cand")).status_code == 409
        assert api.post("/v1/rollback", json=action_body("support-base")).status_code == 200

        def counted() -> dict[str, Any] | None:
            counters: dict[str, Any] = api.get("/v1/metrics").json()["counters"]
            return counters if counters["promoted_pointers_total"] == 1 else None

        assert wait_for(counted, what="the pointer's status in the watch cache") == {
            "releases_total": 2,
            "pricing_tables_total": 2,
            "run_events_total": 12,
            "promoted_pointers_total": 1,
            "actions_total": 3,
            "actions_by_action": {"promote": 2, "rollback": 1},
        }
    # A reader of the namespace (list promotionrequests) may read them.
    apply(
        control_plane,
        namespace,
        role("reader", ("list", "promotionrequests")),
        role_binding("bob-reads", "reader", user="bob"),
    )
    with as_user(control_plane, sidecar, "bob") as bob:
        assert wait_for(lambda: bob.get("/v1/metrics").status_code == 200, what="RBAC for bob")


def cli(cp: ControlPlane, namespace: str, store: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig("admin")), "FLIGHTDECK_STORE": store}
    return subprocess.run(
        [sys.executable, "-m", "flightdeck_operator.cli.main", "runs", *args, "-n", namespace],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_runs_list_and_export(
    control_plane: ControlPlane, namespace: str, sidecar: SidecarProcess, tmp_path: Path
) -> None:
    quickstart(control_plane, namespace)
    with as_user(control_plane, sidecar, "admin") as api:
        api.post("/v1/events", json={"events": forensic_events()})
    store = sidecar.store
    listed = cli(control_plane, namespace, store, "list", "support-cand", "--window", "1h", "--limit", "2")
    assert listed.returncode == 0, listed.stderr
    head, *lines = listed.stdout.splitlines()
    assert head == "release=support-cand matched_total=12 returned=2 truncated=True"
    assert [json.loads(line)["run_id"] for line in lines] == ["run-00", "run-01"]
    as_json = cli(
        control_plane,
        namespace,
        store,
        "list",
        "support-cand",
        "--window",
        "1h",
        "--output",
        "json",
        "--trace-id",
        "trace-1",
    )
    payload = json.loads(as_json.stdout)
    assert (payload["matched_total"], payload["filters"]["trace_id"]) == (4, "trace-1")
    assert as_json.stdout == json.dumps(payload, indent=2, sort_keys=True) + "\n"

    target = tmp_path / "runs.jsonl"
    exported = cli(
        control_plane,
        namespace,
        store,
        "export",
        "support-cand",
        "--window",
        "1h",
        "--limit",
        "5",
        "--offset",
        "2",
        "-o",
        str(target),
    )
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr == "WARNING: exported 5 of 12 matching events (offset=2, --limit 5).\n"
    assert [json.loads(line)["run_id"] for line in target.read_text().splitlines()] == [
        f"run-{i:02d}" for i in range(2, 7)
    ]
    whole = cli(control_plane, namespace, store, "export", "support-cand", "--window", "1h")
    assert (whole.stderr, len(whole.stdout.splitlines())) == ("", 12)

    unknown = cli(control_plane, namespace, store, "list", "nope", "--window", "1h")
    assert (unknown.returncode, unknown.stderr) == (1, "Error: Unknown release: nope\n")
    bad_window = cli(control_plane, namespace, store, "export", "support-cand", "--window", "7w")
    assert (bad_window.returncode, bad_window.stderr) == (1, "Error: Invalid window unit: 7w\n")
    too_many = cli(
        control_plane, namespace, store, "list", "support-cand", "--window", "1h", "--limit", "501"
    )
    assert too_many.returncode == 2
