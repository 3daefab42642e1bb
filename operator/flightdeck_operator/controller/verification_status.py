"""Pure builders for verification and pipelines: the ledger records of a confirmed failure and of a
soak, what a pointer's status shows (``status.verification``, ``status.pipeline``, the ``Verified``
and ``Degraded`` conditions), and the history that cooldown and quarantine are computed from."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pydantic import JsonValue

from flightdeck_operator.api.conditions import (
    ConditionStatus,
    ConditionType,
    ConditionUpdate,
    DesiredCondition,
    Reason,
)
from flightdeck_operator.api.v1alpha1 import (
    PipelineState,
    PipelineStatus,
    RunSummary,
    VerificationFailure,
    VerificationStatus,
)
from flightdeck_operator.api.v1alpha1.common import to_wire
from flightdeck_operator.controller.statistics_status import statistics_outcome
from flightdeck_operator.engine.ledger import (
    LedgerEntry,
    LedgerKind,
    LedgerRecord,
    release_soaked_key,
    verification_failed_key,
)
from flightdeck_operator.engine.models import format_time
from flightdeck_operator.engine.statistics import Verdict
from flightdeck_operator.engine.verification import (
    AutomaticRollback,
    FailureResponse,
    LiveCheck,
    OnFailure,
    Promotion,
    SoakProgress,
    Tracker,
    VerificationRules,
)

OPERATOR_ACTOR: Final = "flightdeck-operator"
Status = dict[str, Any]


# --- ledger records -----------------------------------------------------------------------------------


def failure_record(
    namespace: str,
    pointer: str,
    head: LedgerEntry,
    check: LiveCheck,
    tracker: Tracker,
    response: FailureResponse,
    *,
    request: str | None,
    now: dt.datetime,
) -> LedgerRecord:
    """``verification-failed``: the live release (made live by ``head``) failed ``tracker``'s run of
    checks; ``response`` says what the operator does, ``request`` names its rollback request."""
    details: dict[str, JsonValue] = {
        "action": response.action.value,
        "target": response.target,
        "request": request,
        "held": response.held,
        "cooldown_until": None if response.cooldown_until is None else format_time(response.cooldown_until),
        "consecutive_failures": tracker.consecutive_failures,
        "move_seq": head.seq,
        "reasons": list(check.reason_texts),
        "evidence": {
            "since": format_time(check.since),
            "until": format_time(check.until),
            "runs": check.rollup.runs,
            "cost_per_run_usd": check.rollup.cost_per_run_usd,
            "latency_ms_avg": check.rollup.latency_ms_avg,
            "error_rate": check.rollup.error_rate,
        },
    }
    what = (
        f"rolling back to {response.target}"
        if response.action is OnFailure.ROLLBACK
        else ("alert only: " + response.held if response.held else "alert only")
    )
    return LedgerRecord(
        kind=LedgerKind.VERIFICATION_FAILED,
        idempotency_key=verification_failed_key(namespace, pointer, head.seq),
        actor=OPERATOR_ACTOR,
        namespace=namespace,
        pointer=pointer,
        agent_id=head.agent_id,
        environment=head.environment,
        release_id=head.release_id,
        baseline_release_id=response.target,
        reason=(
            f"{head.release_id} failed verification {tracker.consecutive_failures} times in a row "
            f"({'; '.join(check.reason_texts)}); {what}"
        ),
        details=details,
        created_at=now,
    )


def soak_record(
    namespace: str,
    follower: str,
    upstream: str,
    upstream_head: LedgerEntry,
    progress: SoakProgress,
    soak_time: str,
    now: dt.datetime,
) -> LedgerRecord:
    """``release-soaked``: the release live on ``upstream`` has been verified for ``soak_time``."""
    assert progress.verified_since is not None
    return LedgerRecord(
        kind=LedgerKind.RELEASE_SOAKED,
        idempotency_key=release_soaked_key(namespace, follower, upstream, upstream_head.seq),
        actor=OPERATOR_ACTOR,
        namespace=namespace,
        pointer=follower,
        agent_id=upstream_head.agent_id,
        environment=upstream_head.environment,
        release_id=upstream_head.release_id,
        reason=(
            f"{upstream_head.release_id} has been live and verified on {upstream} since "
            f"{format_time(progress.verified_since)} (soakTime {soak_time})"
        ),
        details={
            "upstream": upstream,
            "upstream_move_seq": upstream_head.seq,
            "verified_since": format_time(progress.verified_since),
            "soak_time": soak_time,
        },
        created_at=now,
    )


def automation_history(
    entries: Iterable[LedgerEntry],
) -> tuple[list[AutomaticRollback], list[Promotion], dt.datetime | None]:
    """From ``Store.automation_entries``: the automatic rollbacks, the passing promotions (manual
    unless the operator created them), and when the last automatic rollback was decided."""
    rollbacks: list[AutomaticRollback] = []
    promotions: list[Promotion] = []
    for entry in entries:
        details = entry.details or {}
        if entry.kind is LedgerKind.VERIFICATION_FAILED:
            if details.get("action") == OnFailure.ROLLBACK.value:
                rollbacks.append(AutomaticRollback(entry.release_id or "", entry.seq, entry.created_at))
        elif entry.kind is LedgerKind.PROMOTE and entry.pointer_changed:
            promotions.append(Promotion(entry.release_id or "", entry.seq, details.get("automation") is None))
    last = max((r.at for r in rollbacks), default=None)
    return rollbacks, promotions, last


def automatic_decision(entries: Iterable[LedgerEntry], trigger_seq: int) -> LedgerEntry | None:
    """The decision of the request the operator created for ledger entry ``trigger_seq``."""
    for entry in entries:
        automation = (entry.details or {}).get("automation")
        if isinstance(automation, Mapping) and automation.get("trigger_seq") == trigger_seq:
            return entry
    return None


# --- status.verification and the conditions ------------------------------------------------------------


def restore_tracker(shown: Mapping[str, Any] | None, head: LedgerEntry | None) -> Tracker | None:
    """The run of checks as the pointer's status last showed it (after a restart), when it is about
    the release live now; None otherwise."""
    if not shown or head is None:
        return None
    try:
        status = VerificationStatus.model_validate(shown)
    except ValueError:
        return None
    if (status.release_id, status.ledger_seq) != (head.release_id, head.seq):
        return None
    return Tracker(
        release_id=status.release_id,
        move_seq=status.ledger_seq,
        verdict=status.verdict,
        checked_at=status.last_checked_at,
        consecutive_failures=status.consecutive_failures,
        verified_since=status.verified_since,
    )


def verification_status(
    check: LiveCheck, tracker: Tracker, rules: VerificationRules, failure: LedgerEntry | None
) -> Status:
    shown_failure = None
    if failure is not None:
        details = failure.details or {}
        shown_failure = VerificationFailure(
            ledger_seq=failure.seq,
            confirmed_at=failure.created_at,
            action=OnFailure(str(details.get("action"))),
            request=details.get("request") if isinstance(details.get("request"), str) else None,
            held=details.get("held") if isinstance(details.get("held"), str) else None,
        )
    rollup = check.rollup
    return to_wire(
        VerificationStatus(
            release_id=check.release_id,
            ledger_seq=tracker.move_seq,
            verdict=check.verdict,
            last_checked_at=check.checked_at,
            since=check.since,
            until=check.until,
            consecutive_failures=tracker.consecutive_failures,
            failure_threshold=rules.failure_threshold,
            verified_since=tracker.verified_since,
            reasons=[r[:1024] for r in check.reason_texts[:32]],
            evidence=RunSummary(
                runs=rollup.runs,
                cost_per_run_usd=rollup.cost_per_run_usd,
                latency_ms_avg=rollup.latency_ms_avg,
                error_rate=min(1.0, rollup.error_rate),
            ),
            statistics=None if check.statistics is None else statistics_outcome(check.statistics),
            failure=shown_failure,
        )
    )


# What a status says, without the times and numbers that change at every check: written when this
# changes (and at least every verification_status_refresh_seconds otherwise).
_SIGNATURE_KEYS: Final = (
    "releaseId",
    "ledgerSeq",
    "verdict",
    "consecutiveFailures",
    "verifiedSince",
    "failure",
)


def signature(status: Mapping[str, Any] | None) -> tuple[Any, ...]:
    if not status:
        return ()
    return (*(repr(status.get(k)) for k in _SIGNATURE_KEYS), tuple(status.get("reasons") or ()))


def verification_conditions(
    tracker: Tracker | None, rules: VerificationRules | None, *, message: str | None = None
) -> ConditionUpdate:
    """``Verified`` (and ``Degraded`` once a failure is confirmed) from the run of checks; ``message``
    overrides the text (no live release, an error)."""
    verified = ConditionType.VERIFIED
    if tracker is None or tracker.verdict is None or rules is None:
        reason = Reason.AWAITING_VERIFICATION if message is None else Reason.VERIFICATION_ERROR
        text = message or "No release is live or it has not been checked yet"
        return ConditionUpdate(
            set=(DesiredCondition(verified, ConditionStatus.UNKNOWN, reason, text),),
            remove=(ConditionType.DEGRADED,),
        )
    failures = tracker.consecutive_failures
    if tracker.verdict is Verdict.PASS:
        since = format_time(tracker.verified_since) if tracker.verified_since else "now"
        return ConditionUpdate(
            set=(
                DesiredCondition(
                    verified,
                    ConditionStatus.TRUE,
                    Reason.VERIFICATION_PASSED,
                    f"{tracker.release_id} passes its checks (verified since {since})",
                ),
            ),
            remove=(ConditionType.DEGRADED,),
        )
    if tracker.verdict is Verdict.INCONCLUSIVE:
        return ConditionUpdate(
            set=(
                DesiredCondition(
                    verified,
                    ConditionStatus.UNKNOWN,
                    Reason.VERIFICATION_INCONCLUSIVE,
                    message or f"The last check of {tracker.release_id} could not tell (never a failure)",
                ),
            ),
            remove=(ConditionType.DEGRADED,),
        )
    text = (
        message
        or f"{tracker.release_id} failed {failures} check(s) in a row (threshold {rules.failure_threshold})"
    )
    if tracker.confirmed(rules):
        return ConditionUpdate(
            set=(
                DesiredCondition(verified, ConditionStatus.FALSE, Reason.VERIFICATION_FAILED, text),
                DesiredCondition(
                    ConditionType.DEGRADED, ConditionStatus.TRUE, Reason.VERIFICATION_FAILED, text
                ),
            )
        )
    return ConditionUpdate(
        set=(DesiredCondition(verified, ConditionStatus.FALSE, Reason.VERIFICATION_FAILING, text),),
        remove=(ConditionType.DEGRADED,),
    )


def without_verification() -> ConditionUpdate:
    """The pointer's policy no longer verifies: its conditions go."""
    return ConditionUpdate(set=(), remove=(ConditionType.VERIFIED, ConditionType.DEGRADED))


def check_message(check: LiveCheck) -> str:
    reasons = "; ".join(check.reason_texts)
    return f"{check.verdict.value}: {reasons}" if reasons else check.verdict.value


# --- status.pipeline ----------------------------------------------------------------------------------


def pipeline_status(
    upstream: str,
    state: PipelineState,
    message: str,
    *,
    release_id: str | None = None,
    progress: SoakProgress | None = None,
    soaked: LedgerEntry | None = None,
    request: str | None = None,
) -> Status:
    due = None
    if soaked is not None:
        due = soaked.created_at
    elif progress is not None:
        due = progress.due
    return to_wire(
        PipelineStatus(
            upstream=upstream,
            state=state,
            message=message[:1024],
            release_id=release_id,
            verified_since=None if progress is None else progress.verified_since,
            soak_due=due,
            ledger_seq=None if soaked is None else soaked.seq,
            request=request,
        )
    )


def pointer_conditions(conditions: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    return [dict(c) for c in conditions or ()]
