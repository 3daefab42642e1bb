"""Continuous verification of the live release and automatic rollback, on a real API server with the
real operator process (admission webhook included).

From the quickstart: support-base then support-cand promoted on support-local, with good evidence an
hour old (outside the verification window of 10 minutes, inside the decisions' 7 days). Then new
evidence for the live release arrives, and the operator checks it every second
(``FLIGHTDECK_VERIFICATION_MIN_INTERVAL_SECONDS=1`` in the test timings). Waits are on observable
states (the ledger, statuses); nothing asserts on how long anything took.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flightdeck_operator.api.automation import AUTOMATION_LABEL
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess
from flightdeck_operator.store import open_store

from .conftest import TEST_TIMINGS
from .kube import (
    AGENT,
    ENV,
    apply,
    condition,
    get,
    ingest,
    policy,
    quickstart,
    request,
    run_events,
    wait_decided,
    wait_for,
)
from .test_gates import GATE

POINTER = "support-local"
VERIFY = {
    "interval": "1s",
    "window": "10m",
    "failureThreshold": 2,
    "minRuns": 5,
    "onFailure": "Rollback",
    "cooldown": "1h",
}
RECENT = dt.timedelta(minutes=1)
ERROR_BREACH = "live error_rate 1.0000 exceeds max 0.0500"


def start_with_cand_live(cp: ControlPlane, namespace: str, operator: OperatorProcess, **verify: Any) -> None:
    quickstart(cp, namespace, max_cost=10.0)
    apply(cp, namespace, policy("gate", **GATE, verification={**VERIFY, **verify}))
    ingest(operator.store, run_events("support-base", AGENT, ENV, 20))
    ingest(operator.store, run_events("support-cand", AGENT, ENV, 300))
    for name, release in (("base", "support-base"), ("cand", "support-cand")):
        apply(cp, namespace, request(name, POINTER, release))
        assert wait_decided(cp, namespace, name)["status"]["phase"] == "Promoted"


def automatic_requests(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    listed = cp.kubectl("get", "-n", namespace, "promotionrequests", "-l", AUTOMATION_LABEL, "-o", "json")
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


def ledger(store: str, kind: LedgerKind) -> list[LedgerEntry]:
    with open_store(store) as opened:
        return list(reversed(opened.list_ledger(kind=kind, limit=100)))


def verification(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    return dict((get(cp, namespace, "releasepointer", POINTER).get("status") or {}).get("verification") or {})


def wait_checks(cp: ControlPlane, namespace: str, count: int, *, release: str) -> dict[str, Any]:
    """Wait until ``count`` more checks of ``release`` have been shown (one per second)."""
    first = wait_for(
        lambda: (v := verification(cp, namespace)).get("releaseId") == release and v,
        what=f"a check of {release}",
    )
    start = dt.datetime.fromisoformat(first["lastCheckedAt"])

    def later() -> dict[str, Any] | None:
        shown = verification(cp, namespace)
        checked = shown.get("lastCheckedAt")
        if shown.get("releaseId") != release or checked is None:
            return None
        return shown if dt.datetime.fromisoformat(checked) >= start + dt.timedelta(seconds=count) else None

    return wait_for(later, what=f"{count} more checks of {release}")


def test_evidence_turning_bad_after_promotion_rolls_back_exactly_once_with_the_reasons(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_cand_live(control_plane, namespace, operator)
    shown = wait_checks(control_plane, namespace, 2, release="support-cand")
    assert shown["verdict"] == "Inconclusive"  # no runs in the window yet: never a failure
    ingest(operator.store, run_events("support-cand", AGENT, ENV, 10, failures=10, age=RECENT))

    (auto,) = wait_for(lambda: automatic_requests(control_plane, namespace), what="the automatic rollback")
    name = auto["metadata"]["name"]
    decided = wait_decided(control_plane, namespace, name)
    assert decided["status"]["phase"] == "RolledBack"
    spec = decided["spec"]
    assert (spec["action"], spec["release"], spec["expectedCurrentRelease"]) == (
        "rollback",
        "support-base",
        "support-cand",
    )
    assert ERROR_BREACH in spec["reason"]
    assert spec["requestedBy"]["username"] == "admin"  # the operator's own identity (its kubeconfig)

    (failed,) = ledger(operator.store, LedgerKind.VERIFICATION_FAILED)
    assert failed.release_id == "support-cand"
    assert failed.details is not None
    assert failed.details["action"] == "Rollback"
    assert failed.details["target"] == "support-base"
    assert failed.details["request"] == name
    assert failed.details["reasons"] == [ERROR_BREACH]
    assert failed.details["consecutive_failures"] == 2
    rollback = ledger(operator.store, LedgerKind.ROLLBACK)[-1]
    assert rollback.release_id == "support-base"
    assert rollback.pointer_changed
    assert rollback.details is not None
    assert rollback.details["automation"] == {"kind": "verification-rollback", "trigger_seq": failed.seq}
    assert ERROR_BREACH in rollback.reason

    # support-base is live and checked now (no runs in its window: Inconclusive); nothing more happens.
    after = wait_checks(control_plane, namespace, 3, release="support-base")
    assert after["verdict"] == "Inconclusive"
    assert after["ledgerSeq"] == rollback.seq
    pointer = get(control_plane, namespace, "releasepointer", POINTER)
    assert pointer["status"]["releaseId"] == "support-base"
    assert condition(pointer, "Verified")["status"] == "Unknown"
    assert "Degraded" not in {c["type"] for c in pointer["status"]["conditions"]}
    assert len(automatic_requests(control_plane, namespace)) == 1
    assert len(ledger(operator.store, LedgerKind.VERIFICATION_FAILED)) == 1
    events = control_plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={POINTER}", "-o", "json"
    )
    reasons = {e["reason"] for e in json.loads(events.stdout)["items"]}
    assert {"VerificationFailed", "AutomaticRollback", "RolledBack"} <= reasons


def test_a_flapping_release_is_not_rolled_back_twice_within_the_cooldown(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_cand_live(control_plane, namespace, operator)
    ingest(operator.store, run_events("support-cand", AGENT, ENV, 10, failures=10, age=RECENT))
    (auto,) = wait_for(lambda: automatic_requests(control_plane, namespace), what="the automatic rollback")
    assert wait_decided(control_plane, namespace, auto["metadata"]["name"])["status"]["phase"] == "RolledBack"

    # A person promotes it again (its 7-day evidence still passes: 10 failures in 310 runs); the same
    # bad runs are in the window, so it fails again at once: within the cooldown, only an alert.
    apply(control_plane, namespace, request("again", POINTER, "support-cand"))
    assert wait_decided(control_plane, namespace, "again")["status"]["phase"] == "Promoted"
    second = wait_for(
        lambda: (found := ledger(operator.store, LedgerKind.VERIFICATION_FAILED))[1:] and found[1],
        what="the second confirmed failure",
    )
    assert second.details is not None
    assert second.details["action"] == "Alert"
    assert str(second.details["held"]).startswith(
        "cooldown: the last automatic rollback on this pointer was at"
    )
    degraded = wait_for(
        lambda: (
            (p := get(control_plane, namespace, "releasepointer", POINTER))
            and (p["status"].get("verification") or {}).get("failure")
            and p
        ),
        what="the failure in status",
    )
    assert degraded["status"]["verification"]["failure"]["action"] == "Alert"
    assert condition(degraded, "Degraded")["status"] == "True"
    assert condition(degraded, "Verified")["reason"] == "VerificationFailed"
    wait_checks(control_plane, namespace, 3, release="support-cand")
    assert len(automatic_requests(control_plane, namespace)) == 1
    assert get(control_plane, namespace, "releasepointer", POINTER)["status"]["releaseId"] == "support-cand"


def test_inconclusive_evidence_causes_nothing(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_cand_live(control_plane, namespace, operator)
    # All failures, but fewer runs than minRuns: Inconclusive, which never counts as a failure.
    ingest(operator.store, run_events("support-cand", AGENT, ENV, 4, failures=4, age=RECENT))
    wait_for(
        lambda: verification(control_plane, namespace).get("evidence", {}).get("runs") == 4, what="4 runs"
    )
    shown = wait_checks(control_plane, namespace, 4, release="support-cand")
    assert shown["verdict"] == "Inconclusive"
    assert shown["consecutiveFailures"] == 0
    assert shown["reasons"] == ["4 runs of support-cand in the last 10m; verification needs at least 5"]
    pointer = get(control_plane, namespace, "releasepointer", POINTER)
    assert condition(pointer, "Verified")["reason"] == "VerificationInconclusive"
    assert automatic_requests(control_plane, namespace) == []
    assert ledger(operator.store, LedgerKind.VERIFICATION_FAILED) == []


def test_sigkill_between_deciding_and_creating_the_rollback_still_creates_exactly_one(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    # The operator pauses between the ledger entry and the create, so the kill lands in between.
    operator.stop()
    operator.extra_env = {**TEST_TIMINGS, "FLIGHTDECK_AUTOMATION_CREATE_DELAY_SECONDS": "600"}
    operator.start()
    start_with_cand_live(control_plane, namespace, operator)
    ingest(operator.store, run_events("support-cand", AGENT, ENV, 10, failures=10, age=RECENT))
    wait_for(lambda: ledger(operator.store, LedgerKind.VERIFICATION_FAILED), what="the decision to roll back")
    operator.kill()
    assert automatic_requests(control_plane, namespace) == []  # decided, not created

    operator.extra_env = dict(TEST_TIMINGS)
    operator.start()
    (auto,) = wait_for(lambda: automatic_requests(control_plane, namespace), what="the automatic rollback")
    assert wait_decided(control_plane, namespace, auto["metadata"]["name"])["status"]["phase"] == "RolledBack"
    wait_checks(control_plane, namespace, 3, release="support-base")
    assert len(automatic_requests(control_plane, namespace)) == 1
    (failed,) = ledger(operator.store, LedgerKind.VERIFICATION_FAILED)
    assert failed.details is not None
    assert failed.details["request"] == auto["metadata"]["name"]
    rollbacks = [
        e for e in ledger(operator.store, LedgerKind.ROLLBACK) if e.details and e.details.get("automation")
    ]
    assert len(rollbacks) == 1
