"""The promotion decision: a pure function of the pointer, the policy, the evidence and ``now``.

No I/O here. A handler gathers inputs (pointer and releases from indexes, evidence from the store),
calls ``decide`` and then records and projects the ``Decision``::

    request = DecisionRequest(action=..., agent_id=..., environment=..., target=release_ref, window="7d")
    comparison = None
    if needs_comparison(request, current_release_id):
        since, until = window_bounds(request.window, now)        # may raise InvalidWindowError
        baseline_evidence, candidate_evidence = store.diff_evidence(
            baseline_ref.release_id, request.target.release_id, request.environment, since, until
        )
        comparison = Comparison(
            baseline=baseline_ref,
            baseline_pricing=..., candidate_pricing=...,
            baseline_evidence=baseline_evidence,
            candidate_evidence=candidate_evidence,
        )
    decision = decide(request, current_release_id=current_release_id, comparison=comparison,
                      policy=policy, now=now)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from .evidence import DiffSide, SideEvidence
from .models import (
    ActionOutcome,
    ConfidenceThresholds,
    DiffFilters,
    DiffResult,
    EvidenceSummary,
    Policy,
    PolicyResult,
    PricingTable,
    PromotionAction,
    ReleaseRef,
    UtcDatetime,
    default_policy,
)
from .policy import ClassifiedReason, ReasonKind, evaluate_policy
from .statistical_policy import StatisticsEvidence, gated_diff
from .windows import WindowState

__all__ = [
    "FIRST_PROMOTION_REASON",
    "NOTHING_TO_ROLL_BACK",
    "ClassifiedReason",
    "Comparison",
    "Decision",
    "DecisionRequest",
    "Outcome",
    "ReasonKind",
    "SoakGate",
    "apply_promotion_window",
    "apply_soak",
    "blocked_message",
    "decide",
    "evaluate_policy",
    "needs_comparison",
]

FIRST_PROMOTION_REASON = "first promotion: no promoted baseline for agent/environment"
NOTHING_TO_ROLL_BACK = "No promoted release exists for this agent/environment; nothing to roll back to."


class Outcome(StrEnum):
    PASSED = "Passed"  # the pointer may move to the target
    BLOCKED = "Blocked"  # the policy said no; recorded, pointer unchanged
    NOTHING_TO_ROLL_BACK = "NothingToRollBack"  # rollback without a promoted release; nothing recorded


def blocked_message(action: PromotionAction) -> str:
    """The reference's 409 ``detail.message``."""
    return (
        "Promotion blocked by policy." if action is PromotionAction.PROMOTE else "Rollback blocked by policy."
    )


class DecisionRequest(BaseModel):
    """The attempt being decided (from a PromotionRequest or the HTTP API)."""

    model_config = ConfigDict(frozen=True)

    action: PromotionAction
    agent_id: str
    environment: str
    target: ReleaseRef
    window: str = "7d"


@dataclass(frozen=True, slots=True)
class SoakGate:
    """A pipeline's soak rule for a promotion: whether the target release has soaked on the pointer
    this one follows (``upstream``), and what to say about it."""

    upstream: str
    soaked: bool
    message: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """Everything needed to diff the current release (baseline) against the target (candidate).

    Both evidence sides must cover the same ``[since, until)``; promote and rollback filter by
    environment only, as the reference does.
    """

    baseline: ReleaseRef
    baseline_pricing: PricingTable
    candidate_pricing: PricingTable
    baseline_evidence: SideEvidence
    candidate_evidence: SideEvidence
    baseline_other_pricing_versions: Sequence[str] = ()
    candidate_other_pricing_versions: Sequence[str] = ()
    # Needed only when the policy has statisticalGates: evidence with moments over the statistics
    # range (anchored at the request's creation) and the recent arrivals.
    statistics: StatisticsEvidence | None = None


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: PromotionAction
    outcome: Outcome
    agent_id: str
    environment: str
    target_release_id: str
    baseline_release_id: str | None
    first_promotion: bool
    # None only for NOTHING_TO_ROLL_BACK, where nothing was evaluated.
    policy_result: PolicyResult | None
    reasons: tuple[ClassifiedReason, ...]
    # Human text for a condition message or an HTTP error detail.
    message: str
    diff: DiffResult | None = None
    evidence: EvidenceSummary | None = None
    policy: Policy
    decided_at: UtcDatetime
    # Set by apply_promotion_window when the policy has windows and they were closed.
    window_closed: WindowState | None = None
    # The break-glass reason that let a promotion through closed windows or an unfinished soak.
    override_reason: str | None = None
    # Set by apply_soak when the target had not soaked upstream (blocked, or let through by an override).
    soak: SoakGate | None = None

    @property
    def blocked_by_window(self) -> bool:
        return self.outcome is Outcome.BLOCKED and any(
            r.kind is ReasonKind.WINDOW_CLOSED for r in self.reasons
        )

    @property
    def blocked_by_soak(self) -> bool:
        return self.outcome is Outcome.BLOCKED and any(r.kind is ReasonKind.NOT_SOAKED for r in self.reasons)

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED

    @property
    def awaiting_evidence_only(self) -> bool:
        """Blocked, and only for lack of runs: more evidence could turn this into a pass."""
        return self.outcome is Outcome.BLOCKED and all(
            r.kind is ReasonKind.INSUFFICIENT_EVIDENCE for r in self.reasons
        )

    def to_action_outcome(self, action_id: str, *, pointer_changed: bool | None = None) -> ActionOutcome:
        """The reference HTTP body. ``pointer_changed`` defaults to "passed" (False for a dry run)."""
        if self.policy_result is None:
            raise ValueError(f"a {self.outcome.value} decision has no action outcome")
        return ActionOutcome(
            action_id=action_id,
            action=self.action,
            release_id=self.target_release_id,
            agent_id=self.agent_id,
            environment=self.environment,
            baseline_release_id=self.baseline_release_id,
            promoted_pointer_changed=self.passed if pointer_changed is None else pointer_changed,
            policy=self.policy_result,
        )


def needs_comparison(request: DecisionRequest, current_release_id: str | None) -> bool:
    """Whether ``decide`` needs a ``Comparison``: only when a promoted release exists.

    A first promotion runs no diff (not even the window is parsed) and a rollback with nothing
    promoted has nothing to compare.
    """
    return current_release_id is not None


def decide(
    request: DecisionRequest,
    *,
    current_release_id: str | None,
    comparison: Comparison | None,
    policy: Policy | None,
    now: dt.datetime,
    thresholds: ConfidenceThresholds | None = None,
) -> Decision:
    """Decide one promote or rollback attempt.

    ``current_release_id`` is the pointer's release (None: nothing promoted yet). ``policy=None``
    means the implicit default policy. Raises ``EvidenceError`` subclasses (cross-agent, missing
    model price) with the reference's messages, and ``ValueError`` when the inputs disagree.
    """
    effective_policy = policy or default_policy()
    common = {
        "action": request.action,
        "agent_id": request.agent_id,
        "environment": request.environment,
        "target_release_id": request.target.release_id,
        "policy": effective_policy,
        "decided_at": now,
    }
    if current_release_id is None:
        if request.action is PromotionAction.ROLLBACK:
            return Decision(
                outcome=Outcome.NOTHING_TO_ROLL_BACK,
                baseline_release_id=None,
                first_promotion=False,
                policy_result=None,
                reasons=(ClassifiedReason(ReasonKind.PRECONDITION, NOTHING_TO_ROLL_BACK),),
                message=NOTHING_TO_ROLL_BACK,
                **common,
            )
        return Decision(
            outcome=Outcome.PASSED,
            baseline_release_id=None,
            first_promotion=True,
            policy_result=PolicyResult(passed=True, reasons=(FIRST_PROMOTION_REASON,), evaluated_at=now),
            reasons=(ClassifiedReason(ReasonKind.INFORMATIONAL, FIRST_PROMOTION_REASON),),
            message=FIRST_PROMOTION_REASON,
            **common,
        )

    if comparison is None:
        raise ValueError("a promoted release exists: decide() needs a Comparison (see needs_comparison)")
    _check_comparison(request, current_release_id, comparison)
    diff = gated_diff(
        window=request.window,
        filters=DiffFilters(environment=request.environment),
        baseline=DiffSide(
            release=comparison.baseline,
            table=comparison.baseline_pricing,
            evidence=comparison.baseline_evidence,
            other_pricing_versions=comparison.baseline_other_pricing_versions,
        ),
        candidate=DiffSide(
            release=request.target,
            table=comparison.candidate_pricing,
            evidence=comparison.candidate_evidence,
            other_pricing_versions=comparison.candidate_other_pricing_versions,
        ),
        policy=effective_policy,
        evaluated_at=now,
        thresholds=thresholds,
        for_promotion=True,
        statistics=comparison.statistics,
    )
    passed = diff.result.policy.passed
    return Decision(
        outcome=Outcome.PASSED if passed else Outcome.BLOCKED,
        baseline_release_id=current_release_id,
        first_promotion=False,
        policy_result=diff.result.policy,
        reasons=diff.reasons,
        message="Policy passed." if passed else blocked_message(request.action),
        diff=diff.result,
        evidence=diff.summary,
        **common,
    )


def _check_comparison(request: DecisionRequest, current_release_id: str, comparison: Comparison) -> None:
    if comparison.baseline.release_id != current_release_id:
        raise ValueError(
            f"comparison baseline {comparison.baseline.release_id} is not the current release {current_release_id}"
        )
    if comparison.baseline_evidence.release_id != current_release_id:
        raise ValueError("baseline evidence is for another release")
    if comparison.candidate_evidence.release_id != request.target.release_id:
        raise ValueError("candidate evidence is for another release")
    for side in (comparison.baseline_evidence, comparison.candidate_evidence):
        if side.environment != request.environment:
            raise ValueError(f"evidence is for environment {side.environment!r}, not {request.environment!r}")


def apply_promotion_window(
    decision: Decision, state: WindowState | None, *, override_reason: str | None
) -> Decision:
    """Gate a promotion on the policy's promotion windows (rollbacks are never frozen).

    A closed window blocks the promotion whatever the evidence says; the window's message comes
    first among the reasons, followed by the policy's own (so a caller sees everything at once).
    A break-glass ``override_reason`` lets it through, and is recorded on the decision either way.
    """
    if decision.action is not PromotionAction.PROMOTE or decision.policy_result is None:
        return decision
    if state is None or state.open:
        return decision
    if override_reason is not None:
        return decision.model_copy(update={"window_closed": state, "override_reason": override_reason})
    return _blocked_first(
        decision, ClassifiedReason(ReasonKind.WINDOW_CLOSED, state.message), window_closed=state
    )


def apply_soak(decision: Decision, gate: SoakGate | None, *, override_reason: str | None) -> Decision:
    """Gate a promotion on a pipeline's soak: a release that has not soaked on the pointer this one
    follows is blocked (rollbacks never are), its soak message first among the reasons, the policy's
    and the window's after it. A break-glass ``override_reason`` lets it through, recorded either way."""
    if decision.action is not PromotionAction.PROMOTE or decision.policy_result is None:
        return decision
    if gate is None or gate.soaked:
        return decision
    if override_reason is not None:
        return decision.model_copy(update={"soak": gate, "override_reason": override_reason})
    return _blocked_first(decision, ClassifiedReason(ReasonKind.NOT_SOAKED, gate.message), soak=gate)


def _blocked_first(decision: Decision, reason: ClassifiedReason, **recorded: object) -> Decision:
    """``decision`` blocked by ``reason``, which comes first among the reasons (the policy's own
    follow, informational ones dropped), with what blocked it ``recorded`` on the decision."""
    assert decision.policy_result is not None
    others = tuple(r for r in decision.reasons if r.kind is not ReasonKind.INFORMATIONAL)
    result = PolicyResult(
        passed=False,
        reasons=(reason.text, *decision.policy_result.reasons),
        evaluated_at=decision.policy_result.evaluated_at,
    )
    return decision.model_copy(
        update={
            "outcome": Outcome.BLOCKED,
            "policy_result": result,
            "reasons": (reason, *others),
            "message": blocked_message(decision.action),
            **recorded,
        }
    )
