"""Today's user-visible outputs for policies without ``statisticalGates``, rendered byte for byte.

The files in ``tests/golden/`` were written by this module from the code as it was *before*
statistical gates existed (issue 16): a policy without the block must keep producing exactly these
bytes (diff JSON and the CLI's renderings, HTTP bodies, reasons and their kinds, policy and decision
digests, ledger records and their hashes, request statuses). ``tests/unit/test_golden_unchanged.py``
compares the engine and projections, ``tests/store/test_golden_evidence.py`` the same diffs computed
from events stored on SQLite and PostgreSQL.

Regenerate only for an intended change (and say so in the commit)::

    .venv/bin/python -m tests.golden_outputs --write
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse

from flightdeck_operator.api.approvals import decision_digest
from flightdeck_operator.api.to_engine import engine_policy
from flightdeck_operator.api.v1alpha1 import ApprovalPolicy, PromotionPolicySpec
from flightdeck_operator.cli.commands import diff_text
from flightdeck_operator.controller.projection import (
    awaiting_evidence_status,
    decided_message,
    dry_run_status,
    ledger_record,
    request_status_from_entry,
)
from flightdeck_operator.engine.decide import Comparison, Decision, DecisionRequest, decide
from flightdeck_operator.engine.evidence import DiffSide, ModelAggregate, SideEvidence, compute_diff
from flightdeck_operator.engine.ledger import GENESIS_HASH, canonical_json, policy_digest, seal
from flightdeck_operator.engine.models import (
    DiffFilters,
    DiffResult,
    Policy,
    PricingEntry,
    PricingTable,
    PromotionAction,
    ReleaseRef,
)

GOLDEN_DIR = Path(__file__).parent / "golden"
NOW = dt.datetime(2026, 5, 5, 12, 17, 13, 123456, tzinfo=dt.UTC)
SINCE = NOW - dt.timedelta(days=7)
MODEL = "gpt-4.1-mini"

BASE = ReleaseRef(
    release_id="rel-base", agent_id="agent-support", provider="openai", pricing_version="v1", model=MODEL
)
CAND = ReleaseRef(
    release_id="rel-cand", agent_id="agent-support", provider="openai", pricing_version="v2", model=MODEL
)
TABLE_V1 = PricingTable(
    provider="openai",
    pricing_version="v1",
    entries=(PricingEntry(model=MODEL, input_usd_per_1k_tokens=0.4, output_usd_per_1k_tokens=1.6),),
)
TABLE_V2 = PricingTable(
    provider="openai",
    pricing_version="v2",
    entries=(
        PricingEntry(
            model=MODEL,
            input_usd_per_1k_tokens=0.5,
            output_usd_per_1k_tokens=1.5,
            cached_input_usd_per_1k_tokens=0.1,
        ),
    ),
)

# PromotionPolicy specs as the API server stores them (camelCase; defaults applied by the CRD).
POLICY_SPECS: dict[str, dict[str, Any]] = {
    "empty": {"requireHighDiffConfidence": True, "concurrencyPolicy": "Queue"},
    "limits": {
        "maxCostPerRunUsd": 1.25,
        "maxLatencyMs": 1500,
        "maxErrorRate": 0.03,
        "minCandidateRuns": 20,
        "minBaselineRuns": 20,
        "minLowRuns": 5,
        "requireHighDiffConfidence": True,
        "concurrencyPolicy": "Queue",
    },
    "lenient": {
        "maxCostPerRunUsd": 10.0,
        "maxErrorRate": 0.5,
        "minCandidateRuns": 0,
        "minBaselineRuns": 0,
        "minLowRuns": 0,
        "requireHighDiffConfidence": False,
        "concurrencyPolicy": "Forbid",
    },
    "gated": {
        "maxLatencyMs": 900,
        "requireHighDiffConfidence": True,
        "promotionWindows": [
            {
                "name": "weekend",
                "kind": "Deny",
                "schedule": "0 18 * * 5",
                "duration": "62h",
                "timeZone": "UTC",
            }
        ],
        "approval": {"minApprovals": 2, "approvers": {"users": ["dana"], "groups": ["sre"]}},
        "concurrencyPolicy": "Replace",
    },
}


def aggregate(
    runs: int, *, failures: int = 0, latency: tuple[int, int] | None = (1000, 1), tokens: tuple[int, int, int]
) -> ModelAggregate:
    """``runs`` runs of one model; ``latency`` is (mean ms, share of runs reporting it as 1/n)."""
    latency_count = 0 if latency is None else runs // latency[1]
    return ModelAggregate(
        agent_id=BASE.agent_id,
        model=MODEL,
        runs=runs,
        input_tokens=runs * tokens[0],
        output_tokens=runs * tokens[1],
        cached_input_tokens=runs * tokens[2],
        latency_ms_sum=0 if latency is None else latency_count * latency[0],
        latency_count=latency_count,
        failures=failures,
    )


# Evidence scenarios: (baseline aggregate, candidate aggregate); both sides over [SINCE, NOW).
SCENARIOS: dict[str, tuple[ModelAggregate | None, ModelAggregate | None]] = {
    "healthy": (
        aggregate(900, failures=9, latency=(1000, 1), tokens=(1000, 500, 0)),
        aggregate(700, failures=7, latency=(1100, 1), tokens=(1100, 450, 200)),
    ),
    "worse": (
        aggregate(40, failures=1, latency=(1000, 1), tokens=(1000, 500, 0)),
        aggregate(12, failures=3, latency=(2100, 2), tokens=(3000, 900, 0)),
    ),
    "no-candidate-latency": (
        aggregate(600, latency=(800, 1), tokens=(900, 400, 0)),
        aggregate(3, latency=None, tokens=(900, 400, 0)),
    ),
    "empty-candidate": (aggregate(5, tokens=(1000, 500, 0)), None),
}


def evidence(release: ReleaseRef, part: ModelAggregate | None) -> SideEvidence:
    return SideEvidence(release.release_id, "local", SINCE, NOW, () if part is None else (part,))


def policies() -> dict[str, Policy]:
    """Engine policies as the operator builds them from each spec."""
    return {
        name: engine_policy(name, PromotionPolicySpec.model_validate(spec))
        for name, spec in POLICY_SPECS.items()
    }


def render_diff(result: DiffResult) -> dict[str, str]:
    """The three ways a diff leaves the program: the HTTP body, the CLI's JSON and its text."""
    body = JSONResponse(result.model_dump(mode="json")).body
    return {
        "http": bytes(body).decode(),
        "cli-json": json.dumps(result.model_dump(mode="json"), sort_keys=True, indent=2),
        "cli-text": "\n".join(diff_text(result, BASE.release_id, CAND.release_id)),
    }


def diffs() -> Iterator[tuple[str, DiffResult, tuple[str, ...]]]:
    for scenario, (base, cand) in SCENARIOS.items():
        for name, policy in policies().items():
            diff = compute_diff(
                window="7d",
                filters=DiffFilters(environment="local", tenant_id="tenant-a" if name == "gated" else None),
                baseline=DiffSide(BASE, TABLE_V1, evidence(BASE, base), other_pricing_versions=("v1", "v0")),
                candidate=DiffSide(CAND, TABLE_V2, evidence(CAND, cand)),
                policy=policy,
                evaluated_at=NOW,
            )
            kinds = tuple(f"{r.kind.value}: {r.text}" for r in diff.reasons)
            yield f"{scenario}.{name}", diff.result, kinds


def decisions() -> Iterator[tuple[str, Decision]]:
    for scenario, (base, cand) in SCENARIOS.items():
        comparison = Comparison(
            baseline=BASE,
            baseline_pricing=TABLE_V1,
            candidate_pricing=TABLE_V2,
            baseline_evidence=evidence(BASE, base),
            candidate_evidence=evidence(CAND, cand),
        )
        for name, policy in policies().items():
            for action in PromotionAction:
                request = DecisionRequest(
                    action=action, agent_id=BASE.agent_id, environment="local", target=CAND, window="7d"
                )
                yield (
                    f"{scenario}.{name}.{action.value}",
                    decide(
                        request,
                        current_release_id=BASE.release_id,
                        comparison=comparison,
                        policy=policy,
                        now=NOW,
                    ),
                )
    first = DecisionRequest(
        action=PromotionAction.PROMOTE, agent_id=BASE.agent_id, environment="local", target=CAND
    )
    yield "first-promotion", decide(first, current_release_id=None, comparison=None, policy=None, now=NOW)


def render_decision(decision: Decision) -> dict[str, Any]:
    gate = ApprovalPolicy.model_validate(POLICY_SPECS["gated"]["approval"])
    record = ledger_record(
        decision,
        request_uid="0b7c6a52-1d5e-4c2b-9d1a-4c1f3e5a7b90",
        request_name="promote-1-5-0",
        namespace="agents",
        pointer="support-production",
        actor="alice",
        reason="canary looks good",
    )
    entry = seal(record, seq=7, prev_hash=GENESIS_HASH)
    outcome = decision.to_action_outcome("act_0b7c6a521d5e").model_dump(mode="json")
    rendered: dict[str, Any] = {
        "outcome": decision.outcome.value,
        "reasons": [f"{r.kind.value}: {r.text}" for r in decision.reasons],
        "awaiting_evidence_only": decision.awaiting_evidence_only,
        "http_200_body": bytes(JSONResponse(outcome).body).decode(),
        "http_409_body": bytes(
            JSONResponse({"detail": {"message": decision.message, "outcome": outcome}}).body
        ).decode(),
        "decision_digest": decision_digest(decision),
        "decision_digest_with_gate": decision_digest(decision, gate),
        "ledger_payload": canonical_json(entry.hashed_payload()),
        "ledger_hash": entry.hash,
        "decided_message": decided_message(entry),
        "request_status": canonical_json(
            request_status_from_entry(entry, generation=1, conditions=None, now=NOW)
        ),
    }
    if decision.diff is not None:
        rendered["dry_run_status"] = canonical_json(
            dry_run_status(decision, action_id="act_0b7c6a521d5e", generation=1, conditions=None, now=NOW)
        )
        rendered["awaiting_evidence_status"] = canonical_json(
            awaiting_evidence_status(
                decision,
                deadline=NOW + dt.timedelta(hours=6),
                missing_baseline_runs=3,
                missing_candidate_runs=120,
                generation=1,
                conditions=None,
                now=NOW,
            )
        )
    return rendered


def render_all() -> dict[str, str]:
    """Every golden file's name and exact text."""
    files: dict[str, str] = {}
    digests = {name: policy_digest(policy) for name, policy in policies().items()}
    digests["default"] = policy_digest(Policy())
    files["policy-digests.json"] = json.dumps(digests, indent=2, sort_keys=True) + "\n"
    for name, result, kinds in diffs():
        rendered = render_diff(result)
        for form, text in rendered.items():
            files[f"diff.{name}.{form}.txt"] = text + "\n"
        files[f"diff.{name}.reasons.txt"] = "".join(f"{line}\n" for line in kinds)
    for name, decision in decisions():
        files[f"decision.{name}.json"] = (
            json.dumps(render_decision(decision), indent=2, sort_keys=True) + "\n"
        )
    return files


def store_scenario_events() -> list[dict[str, Any]]:
    """Raw run events for the store tier's golden diff: both releases, both ragged window edges,
    whole hours, several models, tenants, a failure and runs without latency."""
    events: list[dict[str, Any]] = []
    hours = (0.5, 1, 2.25, 30, 24 * 6 + 23.9, 24 * 7 - 0.05, 24 * 7 + 1)  # the last one is outside
    for release, scale in ((BASE, 1.0), (CAND, 1.3)):
        for index, hours_ago in enumerate(hours):
            for copy in range(3):
                number = len(events)
                events.append(
                    {
                        "timestamp": (NOW - dt.timedelta(hours=hours_ago, seconds=copy)).isoformat(),
                        "agent_id": release.agent_id,
                        "release_id": release.release_id,
                        "run_id": f"golden-{number:04d}",
                        "tenant_id": "tenant-a" if copy else "tenant-b",
                        "task_id": "task-a",
                        "environment": "local",
                        "metrics": {
                            "latency_ms": None
                            if copy == 2 and index % 2
                            else int((900 + 37 * index) * scale),
                            "success": not (copy == 1 and index == 3),
                        },
                        "usage": {
                            "model": {
                                "provider": "openai",
                                "model": MODEL,
                                "input_tokens": int((800 + 11 * number) * scale),
                                "output_tokens": 300 + 7 * number,
                                "cached_input_tokens": 50 * copy,
                            }
                        },
                    }
                )
    return events


def store_diff(diff_evidence: Callable[..., tuple[SideEvidence, SideEvidence]]) -> dict[str, str]:
    """The golden store diffs, from ``Store.diff_evidence`` over the scenario's events."""
    files: dict[str, str] = {}
    for tenant in (None, "tenant-a"):
        baseline, candidate = diff_evidence(
            BASE.release_id, CAND.release_id, "local", SINCE, NOW, tenant_id=tenant
        )
        for name, policy in policies().items():
            result = compute_diff(
                window="7d",
                filters=DiffFilters(environment="local", tenant_id=tenant),
                baseline=DiffSide(BASE, TABLE_V1, baseline),
                candidate=DiffSide(CAND, TABLE_V2, candidate),
                policy=policy,
                evaluated_at=NOW,
            ).result
            files[f"store-diff.{tenant or 'all'}.{name}.http.txt"] = render_diff(result)["http"] + "\n"
    return files


def main() -> None:
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m tests.golden_outputs --write")
    import tempfile

    from flightdeck_operator.store import open_store

    files = render_all()
    with tempfile.TemporaryDirectory() as workdir, open_store(Path(workdir) / "golden.db") as store:
        store.ingest(store_scenario_events())
        files.update(store_diff(store.diff_evidence))
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, text in files.items():
        (GOLDEN_DIR / name).write_text(text)
    print(f"wrote {len(files)} files to {GOLDEN_DIR}")


if __name__ == "__main__":
    main()
