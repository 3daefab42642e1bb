"""Reference files (release.yaml, pricing YAML, policy YAML) into custom resources, and the CLI's
offline paths (``--dry-run``, validation errors) through click's runner."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from flightdeck_operator.api.v1alpha1 import PricingTable, PromotionPolicy, parse_resource
from flightdeck_operator.cli.main import main
from flightdeck_operator.cli.reference_files import (
    PolicyFile,
    PricingFile,
    ReferenceFileError,
    ReleaseArtifact,
    agent_release,
    kube_name,
    parse,
    policy_object,
    pricing_table_object,
)

from .test_bundle import GOLDEN_DIRECTORY_SHA256, QUICKSTART_BASELINE_SHA256, write_quickstart_baseline

# The reference quickstart files (examples/quickstart/*.yaml), as users keep them.
QUICKSTART_PRICING = (
    "provider: openai\n"
    "pricing_version: baseline-pricing\n"
    "entries:\n"
    "  - model: gpt-4.1-mini\n"
    "    input_usd_per_1k_tokens: 1.0\n"
    "    output_usd_per_1k_tokens: 2.0\n"
)
QUICKSTART_POLICY = (
    "policy_id: quickstart-policy\n"
    "max_cost_per_run_usd: 4.0\n"
    "max_latency_ms: 3000\n"
    "max_error_rate: 0.05\n"
    "min_candidate_runs: 1\n"
    "min_baseline_runs: 1\n"
    "min_low_runs: 1\n"
    "require_high_diff_confidence: false\n"
)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- object builders ----------------------------------------------------------------------------------


def test_release_artifact_becomes_an_agent_release(tmp_path: Path) -> None:
    bundle = write_quickstart_baseline(tmp_path / "baseline-release")
    artifact = parse(ReleaseArtifact, yaml.safe_load((bundle / "release.yaml").read_text()), "release.yaml")
    body = agent_release(artifact, QUICKSTART_BASELINE_SHA256, namespace="prod")
    assert body == {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "AgentRelease",
        "metadata": {
            "name": "support-agent-baseline",
            "namespace": "prod",
            "labels": {"flightdeck.dev/agent-id": "agent_support"},
        },
        "spec": {
            "agentId": "agent_support",
            "version": "baseline",
            "description": "Baseline support agent release.",
            "runtime": {
                "provider": "openai",
                "model": "gpt-4.1-mini",
                "temperature": 0.2,
                "maxOutputTokens": 800,
            },
            "pricingReference": {"provider": "openai", "pricingVersion": "baseline-pricing"},
            "checksum": QUICKSTART_BASELINE_SHA256,
            "tags": {"env": "local", "example": "quickstart"},
            "prompts": {"systemRef": "prompts/system.md", "templateRefs": []},
        },
    }
    parse_resource(body)  # the operator's own model accepts it


def test_release_artifact_drops_fields_the_crd_has_no_place_for() -> None:
    # The reference ignores unknown keys; routing and safety have no AgentRelease field.
    document = yaml.safe_load(
        "metadata: {name: bot, version: '2.0', created_by: ci}\n"
        "spec:\n"
        "  agent: {agent_id: bot, entrypoint: main.py}\n"
        "  runtime: {provider: anthropic, model: claude-3-5-haiku-20241022}\n"
        "  prompts: {system_ref: prompts/system.md, template_refs: [a.md]}\n"
        "  tools: {manifest_ref: tools.yaml, tool_names: [search]}\n"
        "  routing: {strategy: single_model}\n"
        "  safety: {retry_policy: {max_retries: 2}}\n"
        "  pricing_reference: {provider: anthropic, pricing_version: 2026-05-01}\n"
    )
    body = agent_release(parse(ReleaseArtifact, document, "release.yaml"), "0" * 64, name="bot-two")
    assert body["metadata"] == {"name": "bot-two", "labels": {"flightdeck.dev/agent-id": "bot"}}
    assert body["spec"]["tools"] == {"manifestRef": "tools.yaml", "toolNames": ["search"]}
    # An unquoted YAML date is the text the user wrote, not a date object.
    assert body["spec"]["pricingReference"] == {"provider": "anthropic", "pricingVersion": "2026-05-01"}
    assert set(body["spec"]) == {
        "agentId",
        "version",
        "runtime",
        "pricingReference",
        "checksum",
        "prompts",
        "tools",
        "tags",  # the model's empty default
    }


def test_pricing_file_becomes_a_pricing_table() -> None:
    table = parse(PricingFile, yaml.safe_load(QUICKSTART_PRICING), "pricing.yaml")
    body = pricing_table_object(table, namespace="prod")
    assert body == {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "PricingTable",
        "metadata": {"name": "openai-baseline-pricing", "namespace": "prod"},
        "spec": {
            "provider": "openai",
            "pricingVersion": "baseline-pricing",
            "entries": [{"model": "gpt-4.1-mini", "inputUsdPer1kTokens": 1.0, "outputUsdPer1kTokens": 2.0}],
        },
    }
    assert isinstance(parse_resource(body), PricingTable)
    assert table.key == "openai/baseline-pricing"


def test_cached_rate_is_kept() -> None:
    document = yaml.safe_load(QUICKSTART_PRICING + "    cached_input_usd_per_1k_tokens: 0.5\n")
    spec = pricing_table_object(parse(PricingFile, document, "p.yaml"))["spec"]
    assert spec["entries"][0]["cachedInputUsdPer1kTokens"] == 0.5


def test_policy_file_becomes_a_promotion_policy() -> None:
    body = policy_object(parse(PolicyFile, yaml.safe_load(QUICKSTART_POLICY), "policy.yaml"))
    assert body == {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "PromotionPolicy",
        "metadata": {"name": "quickstart-policy"},
        "spec": {
            "maxCostPerRunUsd": 4.0,
            "maxLatencyMs": 3000,
            "maxErrorRate": 0.05,
            "minCandidateRuns": 1,
            "minBaselineRuns": 1,
            "minLowRuns": 1,
            "requireHighDiffConfidence": False,
            "concurrencyPolicy": "Queue",
        },
    }
    assert isinstance(parse_resource(body), PromotionPolicy)


def test_policy_keeps_none_and_zero_apart() -> None:
    # None: omitted (inherit the operator default / check disabled). 0: "no minimum", kept.
    document = {"policy_id": "lenient", "min_candidate_runs": 0, "min_baseline_runs": None}
    spec = policy_object(parse(PolicyFile, document, "p.yaml"))["spec"]
    assert spec == {"minCandidateRuns": 0, "requireHighDiffConfidence": True, "concurrencyPolicy": "Queue"}


def test_empty_policy_is_the_reference_default() -> None:
    body = policy_object(parse(PolicyFile, {}, "p.yaml"))
    assert body["metadata"]["name"] == "default"
    assert body["spec"] == {"requireHighDiffConfidence": True, "concurrencyPolicy": "Queue"}


@pytest.mark.parametrize(
    ("parts", "name"),
    [
        (("support-bot", "1.4.0"), "support-bot-1-4-0"),
        (("Support Agent", "Baseline"), "support-agent-baseline"),
        (("openai", "2026-05"), "openai-2026-05"),
        (("__x__", "v1__"), "x-v1"),
        (("a" * 300,), "a" * 253),
    ],
)
def test_kube_name(parts: tuple[str, ...], name: str) -> None:
    assert kube_name(*parts) == name


def test_kube_name_refuses_nothing_usable() -> None:
    with pytest.raises(ReferenceFileError, match="pass --name"):
        kube_name("___")


@pytest.mark.parametrize(
    ("model", "document", "message"),
    [
        (PolicyFile, {"max_cost": 1.0}, "p.yaml: max_cost: unknown field"),
        (
            PolicyFile,
            {"max_error_rate": 1.5},
            "p.yaml: max_error_rate: Input should be less than or equal to 1",
        ),
        (
            PricingFile,
            {"provider": "openai", "pricing_version": "v", "entries": [{"model": "m"}]},
            "p.yaml: entries.0.input_usd_per_1k_tokens: Field required (and 1 more)",
        ),
        (
            ReleaseArtifact,
            {"metadata": {"name": "x", "version": 1.1}, "spec": {}},
            "p.yaml: metadata.version: Input should be a valid string (quote numbers and dates in YAML",
        ),
        (PolicyFile, ["not", "a", "mapping"], "p.yaml: expected a YAML mapping, got list"),
    ],
)
def test_invalid_files_give_one_clear_line(model: Any, document: Any, message: str) -> None:
    with pytest.raises(ReferenceFileError) as raised:
        parse(model, document, "p.yaml")
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_values_the_crd_rejects_are_caught_before_the_api_server() -> None:
    # Spaces are not allowed in a model name (CRD token pattern): the same model rejects it here.
    document = yaml.safe_load(QUICKSTART_PRICING.replace("gpt-4.1-mini", "gpt 4"))
    with pytest.raises(ReferenceFileError, match=r"^not a valid PricingTable spec: entries\.0\.model"):
        pricing_table_object(parse(PricingFile, document, "p.yaml"))


# -- the CLI, offline -----------------------------------------------------------------------------------


def test_register_dry_run_prints_the_agent_release(tmp_path: Path) -> None:
    bundle = write_quickstart_baseline(tmp_path / "baseline-release")
    result = invoke("release", "register", str(bundle), "--dry-run", "--name", "support-base")
    assert result.exit_code == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["metadata"]["name"] == "support-base"
    assert printed["spec"]["checksum"] == QUICKSTART_BASELINE_SHA256


def test_release_checksum_prints_the_reference_value(tmp_path: Path) -> None:
    from .test_bundle import write_golden_bundle

    bundle = write_golden_bundle(tmp_path / "golden_bundle")
    result = invoke("release", "checksum", str(bundle))
    assert (result.exit_code, result.stdout) == (0, GOLDEN_DIRECTORY_SHA256 + "\n")


def test_pricing_import_dry_run(tmp_path: Path) -> None:
    result = invoke("pricing", "import", str(write(tmp_path / "p.yaml", QUICKSTART_PRICING)), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(result.stdout)["spec"]["pricingVersion"] == "baseline-pricing"


def test_policy_apply_dry_run(tmp_path: Path) -> None:
    result = invoke("policy", "apply", str(write(tmp_path / "policy.yaml", QUICKSTART_POLICY)), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(result.stdout)["spec"]["maxCostPerRunUsd"] == 4.0


@pytest.mark.parametrize(
    ("args", "files", "error"),
    [
        (
            ["pricing", "import", "{p}", "--replace"],
            {"p": QUICKSTART_PRICING},
            "Error: --reason is required when using --replace for pricing imports.",
        ),
        (
            ["pricing", "import", "{p}", "--replace", "--reason", "   "],
            {"p": QUICKSTART_PRICING},
            "Error: --reason is required when using --replace for pricing imports.",
        ),
        (["release", "register", "{missing}"], {}, "Error: Release artifact not found: {missing}"),
        (["release", "register", "{dir}"], {}, "Error: Release artifact not found: {dir}/release.yaml"),
        (["release", "checksum", "{missing}"], {}, "Error: Release artifact not found: {missing}"),
        (["policy", "apply", "{missing}", "--dry-run"], {}, "Error: File not found: {missing}"),
        (
            ["policy", "apply", "{p}", "--dry-run"],
            {"p": "policy_id: x\nmax_cost: [1, 2\n"},
            "Error: {p}: expected ',' or ']', but got '<stream end>' (line 3)",
        ),
        (
            ["policy", "apply", "{p}", "--dry-run"],
            {"p": "max_latency_ms: -5\n"},
            "Error: {p}: max_latency_ms: Input should be greater than or equal to 0",
        ),
    ],
)
def test_cli_errors_are_one_line_and_exit_1(
    tmp_path: Path, args: list[str], files: dict[str, str], error: str
) -> None:
    paths = {"missing": str(tmp_path / "missing"), "dir": str(tmp_path)}
    for key, text in files.items():
        paths[key] = str(write(tmp_path / f"{key}.yaml", text))
    result = invoke(*[arg.format(**paths) for arg in args])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == error.format(**paths) + "\n"


def test_yaml_dates_in_pricing_versions_are_text() -> None:
    table = parse(
        PricingFile, yaml.safe_load(QUICKSTART_PRICING.replace("baseline-pricing", "2026-05-01")), "p"
    )
    assert table.pricing_version == dt.date(2026, 5, 1).isoformat()
