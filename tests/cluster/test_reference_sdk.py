"""FlightDeck's own SDK, unchanged, against the sidecar: ``flightdeck-ai`` is installed from PyPI into
a throwaway virtualenv (as ``benchmarks/http.py`` installs the reference server) and every method
of ``FlightdeckClient`` (and the async client's forensics) is called with real bearer tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import SidecarProcess

from .kube import AGENT, COST_BREACH, ENV, quickstart
from .sidecar_client import OUTCOME_KEYS
from .test_sidecar_approvals import grant, set_policy
from .test_sidecar_runs import RUNS_KEYS

SDK_PACKAGE = "flightdeck-ai"
CALLS = Path(__file__).with_name("sdk") / "calls.py"


@pytest.fixture(scope="session")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtualenv holding the SDK from PyPI (a failed install fails the test)."""
    venv = tmp_path_factory.mktemp("flightdeck-ai") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", SDK_PACKAGE],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, f"pip install {SDK_PACKAGE} failed:\n{install.stderr[-2000:]}"
    return venv / "bin" / "python"


def run_sdk(
    python: Path, phase: str, sidecar: SidecarProcess, cp: ControlPlane, tmp_path: Path
) -> dict[str, Any]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({user: cp.identity(user).token for user in ("admin", "alice", "bob")}))
    out = tmp_path / f"{phase}.json"
    done = subprocess.run(
        [str(python), str(CALLS), phase, sidecar.url, str(tokens), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results: dict[str, Any] = json.loads(out.read_text())
    return results


def test_every_sdk_method_works_against_the_sidecar(
    control_plane: ControlPlane, namespace: str, sidecar: SidecarProcess, sdk_python: Path, tmp_path: Path
) -> None:
    quickstart(control_plane, namespace)
    r = run_sdk(sdk_python, "direct", sidecar, control_plane, tmp_path)

    assert r["health"] == {
        "status": "ok",
        "mutation_auth": "bearer",
        "read_auth": "bearer",
        "auth_mode": "kubernetes",
    }
    assert r["get_workspace"]["promotion_requires_approval"] is False
    assert (r["ingest_run_events"], r["ingest_run_events_empty"], r["ingest_run_events_batch"]) == (1, 0, 5)
    assert r["ingest_run_events_batch_bad_chunk"] == {"error": "chunk_size must be > 0"}
    assert sorted(item["release_id"] for item in r["list_releases"]["releases"]) == [
        "support-base",
        "support-cand",
    ]
    assert r["post_diff"]["samples"]["baseline_runs"] == 1
    assert r["post_diff"]["samples"]["candidate_runs"] == 5

    assert list(r["post_promote"]) == OUTCOME_KEYS
    assert r["post_promote"]["promoted_pointer_changed"] is True
    blocked = r["post_promote_blocked"]
    assert (blocked["status"], blocked["detail"]["message"]) == (409, "Promotion blocked by policy.")
    assert blocked["detail"]["outcome"]["policy"]["reasons"] == [COST_BREACH]
    assert r["post_rollback"]["action"] == "rollback"
    assert r["post_rollback_blocked"]["detail"]["message"] == "Rollback blocked by policy."
    assert r["list_promoted"]["promoted"][0]["release_id"] == "support-base"
    assert [a["action"] for a in r["list_actions"]["actions"]] == [
        "rollback",
        "rollback",
        "promote",
        "promote",
    ]

    runs = r["list_runs"]
    assert list(runs) == RUNS_KEYS
    assert (runs["matched_total"], runs["returned"], runs["offset"], runs["truncated"]) == (5, 2, 1, True)
    assert r["list_runs_unknown"] == {"status": 400, "detail": "Unknown release: nope"}
    export = r["fetch_runs_export_ndjson"]
    assert export["headers"] == {
        "X-Flightdeck-Matched-Total": "5",
        "X-Flightdeck-Returned": "4",
        "X-Flightdeck-Offset": "0",
        "X-Flightdeck-Truncated": "true",
    }
    lines = export["bytes"].splitlines()
    assert [json.loads(line)["run_id"] for line in lines[1:3]] == [e["run_id"] for e in runs["events"]]
    assert all(line == json.dumps(json.loads(line), sort_keys=True) for line in lines)

    asynchronous = r["async"]
    assert asynchronous["health"]["status"] == "ok"
    assert asynchronous["get_workspace"] == r["get_workspace"]
    assert asynchronous["list_releases"] == r["list_releases"]
    assert asynchronous["list_promoted"] == r["list_promoted"]
    assert asynchronous["list_runs"]["matched_total"] == 2  # trace-1 of the five candidate events
    assert asynchronous["fetch_runs_export_ndjson"]["headers"]["X-Flightdeck-Returned"] == "3"
    assert (asynchronous["ingest_run_events"], asynchronous["ingest_run_events_batch"]) == (1, 3)
    assert asynchronous["post_diff"]["samples"]["candidate_runs"] == 5
    assert (
        asynchronous["post_promote"]["action"],
        asynchronous["post_promote"]["promoted_pointer_changed"],
    ) == (
        "promote",
        True,
    )
    assert asynchronous["post_rollback"]["action"] == "rollback"
    assert len(asynchronous["list_actions"]["actions"]) == 6
    assert asynchronous["list_promotion_requests"] == {"requests": []}  # none went through approval


def test_the_sdk_approval_workflow_against_the_sidecar(
    control_plane: ControlPlane, namespace: str, sidecar: SidecarProcess, sdk_python: Path, tmp_path: Path
) -> None:
    quickstart(control_plane, namespace, max_cost=10.0)
    direct = run_sdk(sdk_python, "direct", sidecar, control_plane, tmp_path)
    assert direct["post_promote"]["release_id"] == "support-base"
    set_policy(control_plane, namespace, approval={"minApprovals": 1})
    grant(control_plane, namespace, "alice", "bob")
    r = run_sdk(sdk_python, "approval", sidecar, control_plane, tmp_path)

    asked = r["post_promote_request"]
    assert (asked["status"], asked["release_id"], asked["agent_id"], asked["environment"]) == (
        "pending",
        "support-cand",
        AGENT,
        ENV,
    )
    assert [item["request_id"] for item in r["list_promotion_requests_pending"]["requests"]] == [
        asked["request_id"]
    ]
    assert r["post_promote_confirm_self"]["status"] == 403
    confirmed = r["post_promote_confirm"]
    assert list(confirmed) == OUTCOME_KEYS
    assert (confirmed["release_id"], confirmed["promoted_pointer_changed"]) == ("support-cand", True)
    [completed] = r["list_promotion_requests"]["requests"]
    assert (completed["request_id"], completed["status"], completed["completed_action_id"]) == (
        asked["request_id"],
        "completed",
        confirmed["action_id"],
    )
    asynchronous = r["async"]
    assert asynchronous["post_promote_request"]["status"] == "pending"
    assert asynchronous["post_promote_confirm"]["release_id"] == "support-base"
    assert asynchronous["post_promote_confirm"]["promoted_pointer_changed"] is True
