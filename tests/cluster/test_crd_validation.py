"""The API server itself rejects bad objects (OpenAPI schema + CEL), before the operator sees them,
and accepts every example in examples/ exactly as a user applies it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flightdeck_operator.localdev.controlplane import ControlPlane

from .conftest import REPO_ROOT

INVALID = sorted((Path(__file__).parent / "fixtures" / "invalid").glob("*.yaml"))


def directives(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        for key in ("expect", "operation"):
            prefix = f"# {key}:"
            if line.startswith(prefix):
                found[key] = line[len(prefix) :].strip()
    return found


@pytest.mark.parametrize("fixture", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_object_is_rejected_with_its_message(
    control_plane: ControlPlane, crds: Path, namespace: str, fixture: Path
) -> None:
    expected = directives(fixture)
    assert "expect" in expected, f"{fixture.name} has no '# expect:' line"
    documents = [d for d in yaml.safe_load_all(fixture.read_text()) if d]
    if expected.get("operation", "").startswith("update"):
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(documents[0]))
        rejected = documents[1]
    else:
        rejected = documents[0]
    result = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(rejected), check=False
    )
    assert result.returncode != 0, f"{fixture.name} was accepted:\n{result.stdout}"
    assert "is invalid" in result.stderr
    assert expected["expect"] in result.stderr


def test_examples_apply_cleanly(control_plane: ControlPlane, crds: Path, namespace: str) -> None:
    applied = control_plane.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples")).stdout
    kinds = [line.split("/")[0] for line in applied.splitlines()]
    assert sorted(set(kinds)) == sorted(
        {
            "agentrelease.flightdeck.dev",
            "pricingtable.flightdeck.dev",
            "promotionpolicy.flightdeck.dev",
            "releasepointer.flightdeck.dev",
            "promotionrequest.flightdeck.dev",
        }
    )
    server_side = control_plane.kubectl(
        "apply", "-n", namespace, "--server-side", "--dry-run=server", "-f", str(REPO_ROOT / "examples")
    )
    assert server_side.returncode == 0


def test_notification_examples_apply_cleanly(control_plane: ControlPlane, crds: Path, namespace: str) -> None:
    applied = control_plane.kubectl(
        "apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "notifications")
    ).stdout.splitlines()
    assert applied == [
        "secret/chatops-hook-key created",
        "notificationsubscription.flightdeck.dev/chatops created",
        "notificationsubscription.flightdeck.dev/approvers created",
    ]


def test_pipeline_examples_apply_cleanly(control_plane: ControlPlane, crds: Path, namespace: str) -> None:
    examples = REPO_ROOT / "examples"
    applied = control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        str(examples / "00-pricing-tables.yaml"),
        "-f",
        str(examples / "10-releases.yaml"),
        "-f",
        str(examples / "pipelines"),
    ).stdout.splitlines()
    assert applied[-5:] == [
        "promotionpolicy.flightdeck.dev/support-bot-canary-verified created",
        "promotionpolicy.flightdeck.dev/support-bot-production-verified created",
        "releasepointer.flightdeck.dev/support-bot-canary created",
        "releasepointer.flightdeck.dev/support-bot-production created",
        "promotionrequest.flightdeck.dev/support-bot-canary-1-5-0 created",
    ]
