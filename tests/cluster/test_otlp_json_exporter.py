"""OpenTelemetry's OTLP/HTTP JSON exporter, a real client in its own virtualenv (its pins conflict
with the protobuf exporter's; ``make venv`` builds it), sends spans with the older GenAI attribute
names to a real sidecar; they become run events like the protobuf ones."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.store import open_store

from .conftest import REPO_ROOT, StartSidecar
from .kube import AGENT, ENV, apply, release, stored_events
from .otlp_clients import FAST_OTLP, wait_for_runs
from .sidecar_client import as_user

JSON_CLIENT_PYTHON = REPO_ROOT / ".venv-otlp-json" / "bin" / "python"
SEND_RUNS = Path(__file__).resolve().parents[1] / "otlp_json_client" / "send_runs.py"


def test_the_json_exporter_with_old_attribute_names(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar
) -> None:
    if not JSON_CLIENT_PYTHON.exists():
        pytest.fail(f"{JSON_CLIENT_PYTHON} is missing: run `make venv` (it builds the JSON exporter's venv)")
    apply(control_plane, namespace, release("legacy-v1", AGENT, "openai", "p", "gpt-4.1-mini"))
    sidecar = start_sidecar(env=FAST_OTLP)
    token = control_plane.identity("admin").token
    sent = subprocess.run(
        [
            str(JSON_CLIENT_PYTHON),
            str(SEND_RUNS),
            f"{sidecar.url}/v1/traces",
            token,
            "legacy-v1",
            AGENT,
            ENV,
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    with as_user(control_plane, sidecar, "admin") as api:
        status = wait_for_runs(api, 3)
    assert status["totals"]["spans_accepted"] == 6
    assert status["totals"]["spans_rejected"] == {}
    now = dt.datetime.now(dt.UTC)
    with open_store(sidecar.store) as store:
        events = stored_events(store, "legacy-v1", now - dt.timedelta(days=1), now)
    assert len(events) == 3
    for event in events:
        model = event.usage.model
        assert (model.provider, model.model) == ("openai", "gpt-4.1-mini")  # "OpenAI", lower-cased
        assert (model.input_tokens, model.output_tokens) == (700, 300)
        assert event.metrics.latency_ms == 800
