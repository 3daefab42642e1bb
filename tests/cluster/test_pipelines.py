"""Pipelines on a real API server with the real operator: production follows canary (same agent),
soakTime 3s, autoPromote. The canary's policy verifies every second (window 10m, minRuns 5); runs in
the canary environment are a minute old (inside the window), production's an hour old (evidence for
its decisions only). Bad ``spec.follows`` is refused by the admission webhook.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flightdeck_operator.api.automation import AUTOMATION_LABEL
from flightdeck_operator.engine.ledger import LedgerKind
from flightdeck_operator.localdev.controlplane import ControlPlane, KubectlError
from flightdeck_operator.localdev.processes import OperatorProcess

from .kube import (
    AGENT,
    apply,
    get,
    ingest,
    pointer,
    policy,
    quickstart,
    request,
    run_events,
    wait_decided,
    wait_for,
)
from .test_gates import GATE, freeze_started_a_minute_ago
from .test_verification import RECENT, ledger

CANARY_CHECKS = {
    "interval": "1s",
    "window": "10m",
    "failureThreshold": 2,
    "minRuns": 5,
    "onFailure": "Alert",
    "cooldown": "0s",
}


def production(*, auto_promote: bool = True, soak: str = "3s") -> dict[str, Any]:
    body = pointer("production", AGENT, "production", "prod-policy")
    body["spec"]["follows"] = {"pointer": "canary", "soakTime": soak, "autoPromote": auto_promote}
    return body


def pipeline(cp: ControlPlane, namespace: str, operator: OperatorProcess, **prod_policy: Any) -> None:
    quickstart(cp, namespace, max_cost=10.0)
    apply(
        cp,
        namespace,
        policy("canary-policy", **GATE, verification=CANARY_CHECKS),
        policy("prod-policy", **GATE, **prod_policy),
        pointer("canary", AGENT, "canary", "canary-policy"),
        production(),
    )
    ingest(operator.store, run_events("support-base", AGENT, "canary", 10, age=RECENT))
    for release in ("support-base", "support-cand"):
        ingest(operator.store, run_events(release, AGENT, "production", 20))
    ingest(operator.store, run_events("support-cand", AGENT, "canary", 20))  # for its canary decision


def automatic(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    listed = cp.kubectl("get", "-n", namespace, "promotionrequests", "-l", AUTOMATION_LABEL, "-o", "json")
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return sorted(items, key=lambda item: item["metadata"]["name"])


def shown_pipeline(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    return dict(
        (get(cp, namespace, "releasepointer", "production").get("status") or {}).get("pipeline") or {}
    )


def canary_checks_after(cp: ControlPlane, namespace: str, release: str, count: int) -> None:
    """Wait until the canary has shown ``count`` more checks of ``release``."""

    def checked() -> str | None:
        shown = (get(cp, namespace, "releasepointer", "canary").get("status") or {}).get("verification") or {}
        return shown.get("lastCheckedAt") if shown.get("releaseId") == release else None

    start = wait_for(checked, what=f"a check of {release} on canary")
    seen = {start}
    wait_for(lambda: seen.add(str(checked())) or len(seen) > count, what=f"{count} more canary checks")


def test_a_canary_that_soaks_is_promoted_to_production_exactly_once(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    pipeline(control_plane, namespace, operator)
    apply(control_plane, namespace, request("canary-base", "canary", "support-base"))
    assert wait_decided(control_plane, namespace, "canary-base")["status"]["phase"] == "Promoted"
    (first,) = wait_for(lambda: automatic(control_plane, namespace), what="the promotion of support-base")
    assert wait_decided(control_plane, namespace, first["metadata"]["name"])["status"]["phase"] == "Promoted"
    assert first["spec"]["release"] == "support-base"

    apply(control_plane, namespace, request("canary-cand", "canary", "support-cand"))
    assert wait_decided(control_plane, namespace, "canary-cand")["status"]["phase"] == "Promoted"
    ingest(operator.store, run_events("support-cand", AGENT, "canary", 10, age=RECENT))
    both = wait_for(
        lambda: (found := automatic(control_plane, namespace))[1:] and found, what="the second one"
    )
    second = next(r for r in both if r["spec"]["release"] == "support-cand")
    assert wait_decided(control_plane, namespace, second["metadata"]["name"])["status"]["phase"] == "Promoted"
    assert second["spec"]["expectedCurrentRelease"] == "support-base"

    up_to_date = wait_for(
        lambda: (p := shown_pipeline(control_plane, namespace)).get("state") == "UpToDate" and p,
        what="production up to date",
    )
    assert up_to_date["releaseId"] == "support-cand"
    canary_checks_after(control_plane, namespace, "support-cand", 3)
    assert len(automatic(control_plane, namespace)) == 2
    soaks = ledger(operator.store, LedgerKind.RELEASE_SOAKED)
    assert [(e.pointer, e.release_id) for e in soaks] == [
        ("production", "support-base"),
        ("production", "support-cand"),
    ]
    promotions = [e for e in ledger(operator.store, LedgerKind.PROMOTE) if e.pointer == "production"]
    assert [(e.release_id, (e.details or {}).get("automation")) for e in promotions] == [
        ("support-base", {"kind": "pipeline-promotion", "trigger_seq": soaks[0].seq}),
        ("support-cand", {"kind": "pipeline-promotion", "trigger_seq": soaks[1].seq}),
    ]


def test_a_canary_failing_verification_is_not_promoted_and_a_manual_promotion_is_blocked(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    pipeline(control_plane, namespace, operator)
    apply(control_plane, namespace, request("canary-base", "canary", "support-base"))
    assert wait_decided(control_plane, namespace, "canary-base")["status"]["phase"] == "Promoted"
    (first,) = wait_for(lambda: automatic(control_plane, namespace), what="the promotion of support-base")
    wait_decided(control_plane, namespace, first["metadata"]["name"])

    apply(control_plane, namespace, request("canary-cand", "canary", "support-cand"))
    assert wait_decided(control_plane, namespace, "canary-cand")["status"]["phase"] == "Promoted"
    ingest(operator.store, run_events("support-cand", AGENT, "canary", 10, failures=10, age=RECENT))
    canary_checks_after(control_plane, namespace, "support-cand", 4)
    shown = shown_pipeline(control_plane, namespace)
    assert (shown["state"], shown["releaseId"]) == ("Waiting", "support-cand")
    assert len(automatic(control_plane, namespace)) == 1
    assert [e.release_id for e in ledger(operator.store, LedgerKind.RELEASE_SOAKED)] == ["support-base"]

    apply(control_plane, namespace, request("by-hand", "production", "support-cand"))
    blocked = wait_decided(control_plane, namespace, "by-hand")["status"]
    assert blocked["phase"] == "Blocked"
    assert blocked["decision"]["policy"]["reasons"][0] == (
        'support-cand has not soaked on ReleasePointer "canary" (live and verified for 3s, spec.follows); '
        "promote it there first, or use a break-glass override"
    )
    stalled = next(c for c in blocked["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "NotSoaked"
    broken_glass = request(
        "glass", "production", "support-cand", override={"reason": "hotfix, canary is noisy"}
    )
    apply(control_plane, namespace, broken_glass)
    assert wait_decided(control_plane, namespace, "glass")["status"]["phase"] == "Promoted"


def test_a_closed_promotion_window_blocks_the_automatic_promotion_too(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    pipeline(control_plane, namespace, operator, promotionWindows=[freeze_started_a_minute_ago()])
    apply(control_plane, namespace, request("canary-base", "canary", "support-base"))
    assert wait_decided(control_plane, namespace, "canary-base")["status"]["phase"] == "Promoted"
    (auto,) = wait_for(lambda: automatic(control_plane, namespace), what="the automatic promotion")
    decided = wait_decided(control_plane, namespace, auto["metadata"]["name"])["status"]
    assert decided["phase"] == "Blocked"
    assert (
        next(c for c in decided["conditions"] if c["type"] == "Stalled")["reason"] == "PromotionWindowClosed"
    )
    held = wait_for(
        lambda: (p := shown_pipeline(control_plane, namespace)).get("state") == "Held" and p, what="Held"
    )
    assert held["message"].startswith(f"The automatic promotion {auto['metadata']['name']} was blocked")
    canary_checks_after(control_plane, namespace, "support-base", 3)
    assert len(automatic(control_plane, namespace)) == 1
    assert "releaseId" not in (get(control_plane, namespace, "releasepointer", "production")["status"] or {})


def test_bad_follows_are_refused_with_a_clear_message(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    apply(
        control_plane,
        namespace,
        pointer("canary", AGENT, "canary"),
        pointer("billing", "billing-bot", "canary"),
    )
    other_agent = pointer("production", AGENT, "production")
    other_agent["spec"]["follows"] = {"pointer": "billing", "soakTime": "1h"}
    with pytest.raises(KubectlError) as refused:
        apply(control_plane, namespace, other_agent)
    assert (
        'spec.follows: ReleasePointer "billing" governs agent "billing-bot", but "production" governs agent '
        f'"{AGENT}": a pointer can only follow a pointer of the same agent'
    ) in str(refused.value)

    apply(control_plane, namespace, production(soak="1h"))
    cycle = pointer("canary", AGENT, "canary")
    cycle["spec"]["follows"] = {"pointer": "production", "soakTime": "1h"}
    with pytest.raises(KubectlError) as refused:
        apply(control_plane, namespace, cycle)
    assert 'spec.follows: following "production" would make a cycle: canary -> production -> canary' in str(
        refused.value
    )
    negative = production()
    negative["spec"]["follows"]["soakTime"] = "-5m"
    with pytest.raises(KubectlError) as refused:
        apply(control_plane, namespace, negative)
    assert "soakTime must be zero or a positive whole number" in str(refused.value)
