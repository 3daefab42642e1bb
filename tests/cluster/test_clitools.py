"""`release register|verify`, `pricing import` and `policy apply` against the real API server, with
the real operator recording each policy and pricing change (and its reason) in the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from flightdeck_operator.cli.main import main
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess
from flightdeck_operator.store import open_store
from tests.unit.test_bundle import GOLDEN_DIRECTORY_SHA256, write_golden_bundle
from tests.unit.test_reference import QUICKSTART_POLICY, QUICKSTART_PRICING

from .kube import get, wait_for

CHANGE_REASON = "flightdeck.dev/change-reason"


def cli(cp: ControlPlane, namespace: str, *args: str, user: str = "admin") -> Result:
    argv = [*args, "--namespace", namespace, "--kubeconfig", str(cp.kubeconfig(user))]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def changes(operator: OperatorProcess, kind: LedgerKind) -> list[LedgerEntry]:
    with open_store(operator.store) as store:
        return list(reversed(store.list_ledger(kind=kind, limit=100)))


def wait_for_changes(operator: OperatorProcess, kind: LedgerKind, count: int) -> list[LedgerEntry]:
    def recorded() -> list[LedgerEntry] | None:
        entries = changes(operator, kind)
        return entries if len(entries) == count else None

    return wait_for(recorded, what=f"{count} {kind.value} entries in the ledger")


def test_release_register_and_verify(
    control_plane: ControlPlane, crds: Path, namespace: str, tmp_path: Path
) -> None:
    bundle = write_golden_bundle(tmp_path / "golden_bundle")

    registered = cli(control_plane, namespace, "release", "register", str(bundle))
    assert (registered.exit_code, registered.stdout) == (
        0,
        f"Registered AgentRelease {namespace}/t-1\n  sha256={GOLDEN_DIRECTORY_SHA256}\n",
    )
    stored = get(control_plane, namespace, "agentrelease", "t-1")
    assert stored["spec"]["checksum"] == GOLDEN_DIRECTORY_SHA256
    assert stored["metadata"]["labels"] == {"flightdeck.dev/agent-id": "a"}
    shown = control_plane.kubectl(
        "get", "arel", "t-1", "-n", namespace, "--show-managed-fields", "-o", "yaml"
    )
    assert yaml.safe_load(shown.stdout)["metadata"]["managedFields"][0]["manager"] == "flightdeck-cli"

    again = cli(control_plane, namespace, "release", "register", str(bundle))
    assert again.exit_code == 0
    assert again.stdout.startswith(f"AgentRelease {namespace}/t-1 is already registered with this content\n")

    verified = cli(control_plane, namespace, "release", "verify", "t-1", "--path", str(bundle))
    assert (verified.exit_code, verified.stdout) == (
        0,
        f"OK: checksum matches for t-1\n  sha256={GOLDEN_DIRECTORY_SHA256}\n",
    )

    (bundle / "prompts" / "s.md").write_text("line1\nline2 changed\n")
    changed = cli(control_plane, namespace, "release", "register", str(bundle))
    assert changed.exit_code == 1
    assert changed.stderr == (
        f"Error: AgentRelease {namespace}/t-1 already exists with checksum {GOLDEN_DIRECTORY_SHA256} and "
        "releases are immutable; register this bundle under a new --name\n"
    )
    mismatch = cli(control_plane, namespace, "release", "verify", "t-1", "--path", str(bundle))
    assert mismatch.exit_code == 2
    assert mismatch.stderr.splitlines()[0] == "CHECKSUM MISMATCH for t-1"
    assert mismatch.stderr.splitlines()[1] == f"  stored:     {GOLDEN_DIRECTORY_SHA256}"
    assert mismatch.stderr.splitlines()[-1] == (
        "Disk content differs from registration (files, line endings, or hashing rules)."
    )

    renamed = cli(control_plane, namespace, "release", "register", str(bundle), "--name", "t-1-hotfix")
    assert renamed.exit_code == 0, renamed.stderr
    assert (
        get(control_plane, namespace, "agentrelease", "t-1-hotfix")["spec"]["checksum"]
        != GOLDEN_DIRECTORY_SHA256
    )

    unknown = cli(control_plane, namespace, "release", "verify", "nope", "--path", str(bundle))
    assert (unknown.exit_code, unknown.stderr) == (1, "Error: Unknown release: nope\n")


def test_pricing_import_is_immutable_unless_replaced_with_a_reason(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    pricing = tmp_path / "pricing.yaml"
    pricing.write_text(QUICKSTART_PRICING)

    imported = cli(control_plane, namespace, "pricing", "import", str(pricing))
    assert (imported.exit_code, imported.stdout) == (
        0,
        f"Imported openai/baseline-pricing as PricingTable {namespace}/openai-baseline-pricing\n",
    )
    # Each version of the table is one ledger entry (the operator records what it sees, so wait).
    wait_for_changes(operator, LedgerKind.PRICING_CHANGE, 1)
    again = cli(control_plane, namespace, "pricing", "import", str(pricing))
    assert (again.exit_code, again.stderr) == (
        1,
        "Error: Pricing table already exists for openai/baseline-pricing. Use --replace to override.\n",
    )
    # Another object name does not get around it: tables are keyed by (provider, pricing_version).
    renamed = cli(control_plane, namespace, "pricing", "import", str(pricing), "--name", "other")
    assert renamed.exit_code == 1
    no_reason = cli(control_plane, namespace, "pricing", "import", str(pricing), "--replace")
    assert (no_reason.exit_code, no_reason.stderr) == (
        1,
        "Error: --reason is required when using --replace for pricing imports.\n",
    )

    pricing.write_text(QUICKSTART_PRICING.replace("2.0", "2.5") + "    cached_input_usd_per_1k_tokens: 0.5\n")
    replaced = cli(
        control_plane,
        namespace,
        "pricing",
        "import",
        str(pricing),
        "--replace",
        "--reason",
        "vendor price change",
    )
    assert (replaced.exit_code, replaced.stdout) == (
        0,
        f"Replaced openai/baseline-pricing in PricingTable {namespace}/openai-baseline-pricing\n",
    )
    table = get(control_plane, namespace, "pricingtable", "openai-baseline-pricing")
    assert table["spec"]["entries"] == [
        {
            "model": "gpt-4.1-mini",
            "inputUsdPer1kTokens": 1.0,
            "outputUsdPer1kTokens": 2.5,
            "cachedInputUsdPer1kTokens": 0.5,
        }
    ]
    assert table["metadata"]["annotations"][CHANGE_REASON] == "vendor price change"
    unchanged = cli(
        control_plane, namespace, "pricing", "import", str(pricing), "--replace", "--reason", "again"
    )
    assert unchanged.stdout.startswith("Unchanged openai/baseline-pricing")

    # The operator recorded both versions; the replacement carries its reason and the CLI as actor.
    recorded = wait_for_changes(operator, LedgerKind.PRICING_CHANGE, 2)
    assert [(e.reason, e.actor) for e in recorded] == [
        ("", "flightdeck-cli"),
        ("vendor price change", "flightdeck-cli"),
    ]
    details: dict[str, Any] = dict(recorded[1].details or {})
    assert details["spec"]["entries"][0]["outputUsdPer1kTokens"] == 2.5  # type: ignore[index]


def test_policy_apply_creates_replaces_and_records_the_reason(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(QUICKSTART_POLICY)

    created = cli(control_plane, namespace, "policy", "apply", str(policy_file))
    assert (created.exit_code, created.stdout) == (
        0,
        f"Set policy quickstart-policy: PromotionPolicy {namespace}/quickstart-policy created\n",
    )
    wait_for_changes(operator, LedgerKind.POLICY_CHANGE, 1)
    same = cli(control_plane, namespace, "policy", "apply", str(policy_file))
    assert (
        same.stdout
        == f"Set policy quickstart-policy: PromotionPolicy {namespace}/quickstart-policy unchanged\n"
    )

    # Drop the latency limit and raise the cost limit: the whole spec is replaced.
    policy_file.write_text(
        QUICKSTART_POLICY.replace("max_latency_ms: 3000\n", "").replace(
            "max_cost_per_run_usd: 4.0", "max_cost_per_run_usd: 10"
        )
    )
    changed = cli(
        control_plane, namespace, "policy", "apply", str(policy_file), "--reason", "allow the bigger model"
    )
    assert changed.exit_code == 0, changed.stderr
    assert changed.stdout.endswith("configured\n")
    stored = get(control_plane, namespace, "promotionpolicy", "quickstart-policy")
    assert stored["spec"] == {
        "maxCostPerRunUsd": 10,
        "maxErrorRate": 0.05,
        "minCandidateRuns": 1,
        "minBaselineRuns": 1,
        "minLowRuns": 1,
        "requireHighDiffConfidence": False,
        "concurrencyPolicy": "Queue",  # the schema default
    }
    assert stored["metadata"]["annotations"][CHANGE_REASON] == "allow the bigger model"

    wait_for_changes(operator, LedgerKind.POLICY_CHANGE, 2)
    # A later change without --reason must not inherit the previous change's reason.
    policy_file.write_text(QUICKSTART_POLICY)
    cli(control_plane, namespace, "policy", "apply", str(policy_file))
    assert CHANGE_REASON not in (
        get(control_plane, namespace, "ppol", "quickstart-policy")["metadata"].get("annotations") or {}
    )

    recorded = wait_for_changes(operator, LedgerKind.POLICY_CHANGE, 3)
    assert [e.reason for e in recorded] == ["", "allow the bigger model", ""]
    assert [dict(e.details or {})["generation"] for e in recorded] == [1, 2, 3]


def test_cli_errors_from_the_api_server_are_one_line(
    control_plane: ControlPlane, crds: Path, namespace: str, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(QUICKSTART_POLICY)
    # bob has no RBAC on FlightDeck objects.
    denied = cli(control_plane, namespace, "policy", "apply", str(policy_file), user="bob")
    assert denied.exit_code == 1
    assert denied.stderr == (
        f'Error: promotionpolicies.flightdeck.dev "quickstart-policy" is forbidden: User "bob" cannot get '
        f'resource "promotionpolicies" in API group "flightdeck.dev" in the namespace "{namespace}"\n'
    )

    unreachable = tmp_path / "kubeconfig-unreachable"
    config = yaml.safe_load(control_plane.kubeconfig("admin").read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    unreachable.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(
        main,
        ["policy", "apply", str(policy_file), "-n", namespace, "--kubeconfig", str(unreachable)],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot reach the Kubernetes API server: ")
    assert result.stderr.count("\n") == 1
