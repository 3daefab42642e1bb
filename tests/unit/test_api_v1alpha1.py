"""The typed API models: wire format, defaults, the CEL rules they mirror, and kopf's Mapping views."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import kopf
import pytest
from pydantic import ValidationError

from flightdeck_operator.api import v1alpha1 as api
from flightdeck_operator.api.conditions import Phase
from flightdeck_operator.engine.models import Confidence

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, 250000, tzinfo=dt.UTC)
CHECKSUM = "427369e78d4c46cea9cdcfcea667bef348eae372b48939b6dac64d254b601d57"


class ReadOnlyView(Mapping[str, Any]):
    """A Mapping that is not a dict, like kopf's Spec/Status views."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def request_spec(**overrides: Any) -> dict[str, Any]:
    return {"pointer": "support-bot-production", "release": "support-bot-1-5-0", "reason": "why", **overrides}


def test_model_validate_accepts_a_mapping() -> None:
    spec = api.PromotionRequestSpec.model_validate(ReadOnlyView(request_spec(dryRun=True)))
    assert spec.dry_run is True
    assert spec.release == "support-bot-1-5-0"


def test_model_validate_accepts_kopf_views() -> None:
    raw: Any = {  # kopf types bodies as TypedDicts; this one is a plain API object
        "apiVersion": api.API_VERSION,
        "kind": "PromotionRequest",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": request_spec(),
        "status": {"phase": "Pending", "observedGeneration": 1},
    }
    body = kopf.Body(raw)
    assert not isinstance(body.spec, dict)
    assert api.PromotionRequestSpec.model_validate(body.spec).pointer == "support-bot-production"
    assert api.PromotionRequestStatus.model_validate(body.status).phase is Phase.PENDING
    request = api.parse_resource(body)
    assert isinstance(request, api.PromotionRequest)
    assert request.metadata.uid == "u-1"


def test_promotion_request_defaults() -> None:
    spec = api.PromotionRequestSpec.model_validate(request_spec())
    assert spec.action is api.Action.PROMOTE
    assert spec.window == api.DEFAULT_WINDOW == "7d"
    assert spec.dry_run is False
    assert spec.to_wire() == {
        "pointer": "support-bot-production",
        "release": "support-bot-1-5-0",
        "action": "promote",
        "window": "7d",
        "reason": "why",
        "dryRun": False,
    }


def test_snake_case_names_validate_too() -> None:
    spec = api.PromotionRequestSpec(pointer="p", release="r", reason="why", dry_run=True)
    assert spec.to_wire()["dryRun"] is True


def test_rollback_may_omit_the_release() -> None:
    spec = api.PromotionRequestSpec.model_validate(request_spec(action="rollback", release=None))
    assert spec.release is None


def test_promote_needs_a_release() -> None:
    with pytest.raises(ValidationError, match=api.RELEASE_REQUIRED_MESSAGE):
        api.PromotionRequestSpec.model_validate(request_spec(release=None))


@pytest.mark.parametrize("reason", ["", "   ", "\t\n"])
def test_blank_reason_is_rejected(reason: str) -> None:
    with pytest.raises(ValidationError):
        api.PromotionRequestSpec.model_validate(request_spec(reason=reason))


@pytest.mark.parametrize("window", ["7d", "24h", "30m", "7D", " 7d ", "007d", "99999m", "1h"])
def test_valid_windows(window: str) -> None:
    assert api.is_valid_window(window)
    assert api.PromotionRequestSpec.model_validate(request_spec(window=window)).window == window


@pytest.mark.parametrize(
    "window",
    [
        "7w",
        "0h",
        "00d",
        "-7d",
        "+7d",
        "1_0d",
        "7 d",
        "7",
        "d",
        "1.5h",
        "abc",
        "100000d",
        "\t7d",
        "7d\n",
        "\uff17d",
    ],
)
def test_invalid_windows(window: str) -> None:
    assert not api.is_valid_window(window)
    with pytest.raises(ValidationError):
        api.PromotionRequestSpec.model_validate(request_spec(window=window))


def test_spec_rejects_unknown_fields_but_status_ignores_them() -> None:
    with pytest.raises(ValidationError):
        api.PromotionRequestSpec.model_validate(request_spec(approver="bob"))
    status = api.PromotionRequestStatus.model_validate({"phase": "Blocked", "kopf": {"progress": {}}})
    assert status.phase is Phase.BLOCKED


def test_models_are_frozen() -> None:
    spec = api.PromotionRequestSpec.model_validate(request_spec())
    with pytest.raises(ValidationError):
        spec.reason = "changed"  # type: ignore[misc]
    assert spec.model_copy(update={"reason": "changed"}).reason == "changed"


def test_pricing_aliases_and_unique_models() -> None:
    entry = {"model": "gpt-4o-mini", "inputUsdPer1kTokens": 0.00015, "outputUsdPer1kTokens": 0.0006}
    table = api.PricingTableSpec.model_validate(
        {"provider": "openai", "pricingVersion": "2026-05", "entries": [entry]}
    )
    assert table.to_wire()["entries"] == [entry]
    found = table.entry("gpt-4o-mini")
    assert found is not None
    assert found.input_usd_per_1k_tokens == 0.00015
    assert table.entry("gpt-4o") is None
    with pytest.raises(ValidationError, match="duplicate pricing entry"):
        api.PricingTableSpec.model_validate(
            {"provider": "openai", "pricingVersion": "v", "entries": [entry, entry]}
        )
    with pytest.raises(ValidationError):
        api.PricingEntry.model_validate({**entry, "outputUsdPer1kTokens": -1})


def test_policy_keeps_none_apart_from_zero() -> None:
    policy = api.PromotionPolicySpec.model_validate({"minCandidateRuns": 0, "maxCostPerRunUsd": 4})
    assert policy.min_candidate_runs == 0
    assert policy.min_baseline_runs is None
    assert policy.require_high_diff_confidence is True
    # Unset thresholds stay unset on the wire: None means "inherit", not 0.
    assert policy.to_wire() == {
        "maxCostPerRunUsd": 4.0,
        "minCandidateRuns": 0,
        "requireHighDiffConfidence": True,
        "concurrencyPolicy": "Queue",
    }
    with pytest.raises(ValidationError):
        api.PromotionPolicySpec.model_validate({"maxErrorRate": 1.01})


def test_release_spec_round_trip() -> None:
    wire = {
        "agentId": "support-bot",
        "version": "1.4.0",
        "runtime": {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "temperature": 0.2,
            "maxOutputTokens": 1024,
        },
        "pricingReference": {"provider": "openai", "pricingVersion": "2026-05"},
        "checksum": CHECKSUM,
        "tags": {"team": "support"},
        "prompts": {"systemRef": "configmap://p/system.md", "templateRefs": []},
        "tools": {"toolNames": ["search_kb"]},
    }
    spec = api.AgentReleaseSpec.model_validate(wire)
    assert spec.to_wire() == wire
    with pytest.raises(ValidationError):
        api.AgentReleaseSpec.model_validate({**wire, "checksum": "sha256:" + CHECKSUM[:57]})


def test_pointer_defaults() -> None:
    spec = api.ReleasePointerSpec.model_validate({"agentId": "support-bot", "environment": "production"})
    assert spec.history_limit == api.DEFAULT_HISTORY_LIMIT
    assert spec.policy_ref is None


def full_request_status() -> api.PromotionRequestStatus:
    side = api.RunSummary(runs=812, cost_per_run_usd=0.0123, latency_ms_avg=None, error_rate=0.01)
    return api.PromotionRequestStatus(
        phase=Phase.BLOCKED,
        observed_generation=1,
        conditions=[
            api.Condition(
                type="Ready",
                status="False",
                reason="PolicyBlocked",
                message="Promotion blocked by policy.",
                last_transition_time=NOW,
                observed_generation=1,
            )
        ],
        decision=api.Decision(
            action_id="act_4382ae5d0b9a",
            outcome=api.Outcome.BLOCKED,
            decided_at=NOW,
            ledger_seq=7,
            ledger_hash="a" * 64,
            release_id="support-bot-1-5-0",
            pointer_before="support-bot-1-4-0",
            pointer_after="support-bot-1-4-0",
            pointer_changed=False,
            policy=api.PolicyResult(
                passed=False,
                reasons=["candidate cost_per_run_usd 5.000000 exceeds max 4.000000"],
                evaluated_at=NOW,
            ),
            evidence=api.Evidence(
                window="7d",
                since=NOW - dt.timedelta(days=7),
                until=NOW,
                baseline=side,
                candidate=side,
                confidence=Confidence.HIGH,
            ),
        ),
        message="Promotion blocked by policy.",
    )


def test_status_round_trips_through_the_wire() -> None:
    status = full_request_status()
    wire = status.to_wire()
    assert wire["decision"]["decidedAt"] == "2026-11-25T12:00:00.250000Z"
    assert "latencyMsAvg" not in wire["decision"]["evidence"]["baseline"]
    assert "confidenceReason" not in wire["decision"]["evidence"]
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-11-25T12:00:00.250000Z"
    assert api.PromotionRequestStatus.model_validate(wire) == status


def test_times_must_be_timezone_aware() -> None:
    with pytest.raises(ValidationError):
        api.PolicyResult(passed=True, evaluated_at=dt.datetime(2026, 1, 1))  # noqa: DTZ001


def test_outcomes_are_terminal_phases() -> None:
    assert {o.value for o in api.Outcome} <= {p.value for p in Phase}
    assert {o.value for o in api.Outcome} == {p.value for p in Phase} - {
        "Pending",
        "AwaitingApproval",
        "AwaitingEvidence",
        "Superseded",
    }


def test_parse_resource_rejects_foreign_objects() -> None:
    with pytest.raises(ValueError, match=r"not a flightdeck\.dev/v1alpha1"):
        api.parse_resource({"apiVersion": "v1", "kind": "ConfigMap"})
    with pytest.raises(ValueError, match=r"not a flightdeck\.dev/v1alpha1"):
        api.parse_resource({"apiVersion": api.API_VERSION, "kind": "Canary"})


def test_resource_info() -> None:
    assert api.PROMOTION_REQUEST.crd_name == "promotionrequests.flightdeck.dev"
    assert api.PromotionRequest.PLURAL == api.PROMOTION_REQUEST_PLURAL == "promotionrequests"
    assert api.RESOURCES_BY_KIND["ReleasePointer"] is api.ReleasePointer
    assert api.PricingTable.INFO.short_names == ("ptable",)
