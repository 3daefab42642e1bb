"""Conditions: meta.SetStatusCondition semantics and the kstatus reading of every outcome."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from flightdeck_operator.api import conditions as c
from flightdeck_operator.api import v1alpha1 as api
from flightdeck_operator.api.conditions import ConditionStatus, ConditionType, DesiredCondition, Phase, Reason
from flightdeck_operator.engine.models import format_time

T0 = dt.datetime(2026, 11, 25, 12, 0, 0, 999999, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def kstatus(conditions: Sequence[Mapping[str, Any]], generation: int = 1, observed: int | None = 1) -> str:
    """kstatus' generic algorithm (cli-utils pkg/kstatus/status), as Flux and `kubectl wait` tools use it."""
    if observed is not None and observed != generation:
        return "InProgress"
    if c.is_true(conditions, "Reconciling"):
        return "InProgress"
    if c.is_true(conditions, "Stalled"):
        return "Failed"
    ready = c.find_condition(conditions, "Ready")
    if ready is not None:
        return "Current" if ready["status"] == "True" else "InProgress"
    return "Current"


def statuses(conditions: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {cond["type"]: cond["status"] for cond in conditions}


# --- set_condition ----------------------------------------------------------------------------------


def test_set_condition_appends_with_transition_time_in_seconds() -> None:
    new = DesiredCondition(ConditionType.READY, ConditionStatus.TRUE, Reason.PROMOTED, "done")
    assert c.set_condition([], new, T0, observed_generation=3) == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Promoted",
            "message": "done",
            "observedGeneration": 3,
            "lastTransitionTime": "2026-11-25T12:00:00Z",
        }
    ]


def test_same_status_keeps_transition_time_but_refreshes_the_rest() -> None:
    first = c.set_condition(
        [], DesiredCondition("Ready", ConditionStatus.FALSE, Reason.AWAITING_DECISION, "a"), T0, 1
    )
    second = c.set_condition(
        first, DesiredCondition("Ready", ConditionStatus.FALSE, Reason.POLICY_BLOCKED, "b"), T1, 2
    )
    assert second[0]["lastTransitionTime"] == "2026-11-25T12:00:00Z"
    assert (second[0]["reason"], second[0]["message"], second[0]["observedGeneration"]) == (
        "PolicyBlocked",
        "b",
        2,
    )


def test_status_change_moves_transition_time() -> None:
    first = c.set_condition([], DesiredCondition("Ready", ConditionStatus.UNKNOWN, "AwaitingDecision"), T0, 1)
    second = c.set_condition(first, DesiredCondition("Ready", ConditionStatus.TRUE, "Promoted"), T1, 1)
    assert second[0]["lastTransitionTime"] == "2026-11-25T12:05:00Z"


def test_set_condition_keeps_order_and_never_mutates_its_input() -> None:
    existing = [
        {
            "type": "Decided",
            "status": "False",
            "reason": "AwaitingDecision",
            "message": "",
            "lastTransitionTime": "x",
        },
        {
            "type": "Ready",
            "status": "Unknown",
            "reason": "AwaitingDecision",
            "message": "",
            "lastTransitionTime": "x",
        },
    ]
    snapshot = [dict(cond) for cond in existing]
    result = c.set_condition(existing, DesiredCondition("Ready", ConditionStatus.TRUE, "Promoted"), T0, None)
    assert existing == snapshot
    assert [cond["type"] for cond in result] == ["Decided", "Ready"]
    assert "observedGeneration" not in result[1]


def test_remove_condition() -> None:
    existing = [{"type": "Stalled", "status": "True"}, {"type": "Ready", "status": "False"}]
    assert c.remove_condition(existing, "Stalled") == [{"type": "Ready", "status": "False"}]
    assert c.remove_condition(None, "Stalled") == []


def test_format_time() -> None:
    offset = dt.timezone(dt.timedelta(hours=2))
    assert format_time(dt.datetime(2026, 1, 1, 14, 0, 1, 5, tzinfo=offset)) == "2026-01-01T12:00:01Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(dt.datetime(2026, 1, 1))  # noqa: DTZ001


# --- Outcome condition sets -------------------------------------------------------------------------


def test_pending_reads_in_progress_and_undecided() -> None:
    conds = c.pending().apply([], T0, 1)
    assert statuses(conds) == {"Reconciling": "True", "Decided": "False", "Ready": "Unknown"}
    assert kstatus(conds) == "InProgress"
    assert not c.is_true(conds, "Decided")  # kubectl wait --for=condition=Decided keeps waiting


def test_awaiting_approval_is_not_decided() -> None:
    conds = c.awaiting_approval("Needs an approver").apply([], T0, 1)
    assert c.find_condition(conds, "Reconciling") == {
        "type": "Reconciling",
        "status": "True",
        "reason": "AwaitingApproval",
        "message": "Needs an approver",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-11-25T12:00:00Z",
    }
    assert kstatus(conds) == "InProgress"


SUCCESS = [
    (Reason.PROMOTED, Phase.PROMOTED),
    (Reason.ROLLED_BACK, Phase.ROLLED_BACK),
    (Reason.EVALUATED, Phase.EVALUATED),
]
FAILURES = sorted(c.DECIDED_REASONS - {r for r, _ in SUCCESS})


@pytest.mark.parametrize(("reason", "phase"), SUCCESS)
def test_success_reads_current(reason: Reason, phase: Phase) -> None:
    got_phase, update = c.decided(reason, "ok")
    conds = update.apply(c.pending().apply([], T0, 1), T1, 1)
    assert got_phase is phase
    assert statuses(conds) == {"Decided": "True", "Ready": "True"}
    assert kstatus(conds) == "Current"


@pytest.mark.parametrize("reason", FAILURES)
def test_blocked_or_failed_reads_failed_to_flux(reason: Reason) -> None:
    phase, update = c.decided(reason, "no")
    conds = update.apply(c.pending().apply([], T0, 1), T1, 1)
    expected = {
        Reason.POLICY_BLOCKED: Phase.BLOCKED,
        Reason.PROMOTION_WINDOW_CLOSED: Phase.BLOCKED,
        Reason.NOT_SOAKED: Phase.BLOCKED,
        Reason.SUPERSEDED: Phase.SUPERSEDED,
    }
    assert phase is expected.get(reason, Phase.FAILED)
    assert statuses(conds) == {"Decided": "True", "Ready": "False", "Stalled": "True"}
    assert {cond["reason"] for cond in conds} == {reason.value}
    assert kstatus(conds) == "Failed"
    # Decided moved from False to True, Ready from Unknown to False: both transitions are stamped.
    assert {cond["lastTransitionTime"] for cond in conds} == {"2026-11-25T12:05:00Z"}


def test_every_terminal_reason_sets_decided_so_kubectl_wait_returns() -> None:
    for reason in c.DECIDED_REASONS:
        _, update = c.decided(reason, "m")
        assert c.is_true(update.apply([], T0, 1), "Decided"), reason
        assert c.phase_for(reason) in c.TERMINAL_PHASES


def test_dry_runs_land_in_evaluated() -> None:
    phase, update = c.decided(Reason.PROMOTED, "would promote", dry_run=True)
    conds = update.apply([], T0, 1)
    assert phase is Phase.EVALUATED
    assert {cond["reason"] for cond in conds} == {"Evaluated"}
    assert kstatus(conds) == "Current"
    phase, update = c.decided(Reason.POLICY_BLOCKED, "would be blocked", dry_run=True)
    assert phase is Phase.EVALUATED
    assert kstatus(update.apply([], T0, 1)) == "Failed"


def test_non_terminal_reasons_have_no_phase() -> None:
    with pytest.raises(ValueError, match="not a terminal"):
        c.phase_for(Reason.AWAITING_DECISION)


def test_other_kinds() -> None:
    assert kstatus(c.ready(Reason.IN_SYNC, "live").apply([], T0, 1)) == "Current"
    waiting = c.dependency_missing(Reason.PRICING_TABLE_MISSING, "no table openai/2026-05").apply([], T0, 1)
    assert statuses(waiting) == {"Ready": "False", "Reconciling": "True"}
    assert kstatus(waiting) == "InProgress"
    stuck = c.stalled(Reason.DUPLICATE_POINTER, "dup").apply(waiting, T1, 1)
    assert statuses(stuck) == {"Ready": "False", "Stalled": "True"}
    assert kstatus(stuck) == "Failed"
    assert kstatus(c.ready(Reason.POINTER_REPAIRED, "fixed").apply(stuck, T1, 1)) == "Current"


def test_stale_observed_generation_reads_in_progress() -> None:
    _, update = c.decided(Reason.PROMOTED, "ok")
    assert kstatus(update.apply([], T0, 1), generation=2, observed=1) == "InProgress"


def test_names_follow_the_api_conventions() -> None:
    for reason in Reason:
        assert re.fullmatch(api.CONDITION_REASON_PATTERN, reason.value), reason
        assert reason.value[0].isupper(), reason
    for type_ in ConditionType:
        assert re.fullmatch(api.CONDITION_TYPE_PATTERN, type_.value), type_
    assert len({r.value for r in Reason}) == len(Reason)


def test_built_conditions_validate_as_metav1_conditions() -> None:
    _, update = c.decided(Reason.AGENT_MISMATCH, "release agent billing-bot is not the pointer's support-bot")
    for cond in update.apply(c.pending().apply([], T0, 4), T1, 4):
        api.Condition.model_validate(cond)
