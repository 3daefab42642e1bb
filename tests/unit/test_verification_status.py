"""What verification shows and records (pure): conditions from the run of checks, the status, the
ledger records of a confirmed failure and a soak, and the history behind cooldown and quarantine."""

from __future__ import annotations

import datetime as dt

from flightdeck_operator.api.conditions import ConditionType, Reason
from flightdeck_operator.controller.verification_status import (
    automatic_decision,
    automation_history,
    failure_record,
    restore_tracker,
    signature,
    soak_record,
    verification_conditions,
    verification_status,
)
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.engine.models import Rollup, format_time
from flightdeck_operator.engine.policy import ClassifiedReason, ReasonKind
from flightdeck_operator.engine.statistics import Verdict
from flightdeck_operator.engine.verification import (
    FailureResponse,
    LiveCheck,
    OnFailure,
    Tracker,
    VerificationRules,
    soak_progress,
)
from tests.factories import NOW
from tests.unit.test_ledger import record as ledger_record

RULES = VerificationRules(
    interval=dt.timedelta(minutes=1),
    window=dt.timedelta(hours=1),
    failure_threshold=3,
    min_runs=20,
    on_failure=OnFailure.ROLLBACK,
    cooldown=dt.timedelta(hours=1),
)
BREACH = "live error_rate 0.2100 exceeds max 0.0500"


def record(n: int, **overrides: object) -> LedgerEntry:
    """A stored ledger entry numbered ``n``."""
    fields = ledger_record(n, **overrides).model_dump()
    return LedgerEntry.model_validate({**fields, "seq": n, "prev_hash": "0" * 64, "hash": "0" * 64})


def check(verdict: Verdict, *reasons: str) -> LiveCheck:
    return LiveCheck(
        release_id="rel_b",
        checked_at=NOW,
        since=NOW - dt.timedelta(hours=1),
        until=NOW,
        verdict=verdict,
        reasons=tuple(ClassifiedReason(ReasonKind.POLICY_BREACH, r) for r in reasons),
        rollup=Rollup(runs=100, cost_per_run_usd=0.01, latency_ms_avg=900.0, error_rate=0.21),
    )


def tracker(verdict: Verdict, failures: int = 0, since: dt.datetime | None = None) -> Tracker:
    return Tracker("rel_b", 7, verdict, NOW, failures, since)


def types(update: object) -> dict[str, tuple[str, str]]:
    return {str(c.type): (str(c.status), str(c.reason)) for c in update.set}  # type: ignore[attr-defined]


def test_conditions_follow_the_run_of_checks() -> None:
    passing = verification_conditions(tracker(Verdict.PASS, since=NOW), RULES)
    assert types(passing) == {"Verified": ("True", "VerificationPassed")}
    assert passing.remove == (ConditionType.DEGRADED,)
    failing = verification_conditions(tracker(Verdict.FAIL, 2), RULES)
    assert types(failing) == {"Verified": ("False", "VerificationFailing")}
    confirmed = verification_conditions(tracker(Verdict.FAIL, 3), RULES)
    assert types(confirmed) == {
        "Verified": ("False", "VerificationFailed"),
        "Degraded": ("True", "VerificationFailed"),
    }
    inconclusive = verification_conditions(tracker(Verdict.INCONCLUSIVE), RULES)
    assert types(inconclusive) == {"Verified": ("Unknown", "VerificationInconclusive")}
    assert types(verification_conditions(None, RULES)) == {"Verified": ("Unknown", "AwaitingVerification")}
    error = verification_conditions(None, RULES, message="no pricing table")
    assert types(error) == {"Verified": ("Unknown", Reason.VERIFICATION_ERROR.value)}


def test_status_round_trips_into_the_tracker_after_a_restart() -> None:
    shown = verification_status(check(Verdict.FAIL, BREACH), tracker(Verdict.FAIL, 2), RULES, None)
    assert shown["consecutiveFailures"] == 2
    assert shown["reasons"] == [BREACH]
    assert shown["evidence"]["errorRate"] == 0.21
    head = record(7, release_id="rel_b")
    assert restore_tracker(shown, head) == tracker(Verdict.FAIL, 2)
    assert restore_tracker(shown, record(8, release_id="rel_b")) is None  # another move: start afresh
    assert restore_tracker(None, head) is None
    later = {**shown, "lastCheckedAt": "2030-01-01T00:00:00Z"}
    assert signature(later) == signature(shown)  # times alone do not make a write
    assert signature({**shown, "consecutiveFailures": 3}) != signature(shown)


def test_failure_record_names_the_action_and_the_request() -> None:
    head = record(7, release_id="rel_b", baseline_release_id="rel_a")
    entry = failure_record(
        "team-a",
        "support-prod",
        head,
        check(Verdict.FAIL, BREACH),
        tracker(Verdict.FAIL, 3),
        FailureResponse(OnFailure.ROLLBACK, target="rel_a"),
        request="support-prod-auto-rollback-7",
        now=NOW,
    )
    assert entry.kind is LedgerKind.VERIFICATION_FAILED
    assert entry.idempotency_key == "verification-failed:team-a/support-prod@7"
    assert entry.reason == f"rel_b failed verification 3 times in a row ({BREACH}); rolling back to rel_a"
    assert entry.details is not None
    assert (entry.details["action"], entry.details["target"], entry.details["request"]) == (
        "Rollback",
        "rel_a",
        "support-prod-auto-rollback-7",
    )
    assert entry.details["reasons"] == [BREACH]


def test_history_gives_the_last_automatic_rollback_and_manual_promotions() -> None:
    failed = record(
        3,
        kind=LedgerKind.VERIFICATION_FAILED,
        request_uid=None,
        release_id="rel_b",
        pointer_changed=False,
        details={"action": "Rollback"},
    )
    alerted = record(
        5,
        kind=LedgerKind.VERIFICATION_FAILED,
        request_uid=None,
        release_id="rel_a",
        pointer_changed=False,
        details={"action": "Alert"},
    )
    manual = record(6, release_id="rel_b")
    automatic = record(
        7, release_id="rel_c", details={"automation": {"kind": "pipeline-promotion", "trigger_seq": 4}}
    )
    rollbacks, promotions, last = automation_history([failed, alerted, manual, automatic])
    assert [(r.release_id, r.seq) for r in rollbacks] == [("rel_b", 3)]
    assert [(p.release_id, p.manual) for p in promotions] == [("rel_b", True), ("rel_c", False)]
    assert last == failed.created_at
    assert automatic_decision([manual, automatic], 4) == automatic
    assert automatic_decision([manual, automatic], 5) is None


def test_soak_record_is_keyed_by_follower_upstream_and_move() -> None:
    head = record(9, release_id="rel_b", pointer="canary")
    progress = soak_progress(tracker(Verdict.PASS, since=NOW - dt.timedelta(hours=2)), dt.timedelta(hours=1))
    assert progress.soaked
    entry = soak_record("team-a", "production", "canary", head, progress, "1h", NOW)
    assert entry.idempotency_key == "release-soaked:team-a/production<-canary@9"
    assert (entry.pointer, entry.release_id) == ("production", "rel_b")
    assert entry.details == {
        "upstream": "canary",
        "upstream_move_seq": 9,
        "verified_since": format_time(NOW - dt.timedelta(hours=2)),
        "soak_time": "1h",
    }
