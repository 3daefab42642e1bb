"""Policy evaluation (pure): the reference's reasons, in its order and wording, each one classified.

Shared by the diff (which reports a policy verdict) and by ``decide``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from .models import Confidence, ConfidenceThresholds, Policy, PolicyResult, Rollup


class ReasonKind(StrEnum):
    """Why a reason is there, so that callers can tell "wait for more runs" from "blocked"."""

    POLICY_BREACH = "PolicyBreach"  # a limit on cost, latency or error rate was exceeded
    INSUFFICIENT_EVIDENCE = "InsufficientEvidence"  # confidence below HIGH; more runs may lift it
    INFORMATIONAL = "Informational"  # recorded but not blocking (the first-promotion note)
    PRECONDITION = "Precondition"  # the action cannot be evaluated at all (nothing to roll back to)
    WINDOW_CLOSED = "PromotionWindowClosed"  # a freeze: the policy's promotion windows are closed
    # A pipeline: the release has not soaked on the pointer this one follows (spec.follows).
    NOT_SOAKED = "NotSoaked"


@dataclass(frozen=True, slots=True)
class ClassifiedReason:
    kind: ReasonKind
    text: str


@dataclass(frozen=True, slots=True)
class PolicyEvaluation:
    result: PolicyResult
    reasons: tuple[ClassifiedReason, ...]


def resolve_thresholds(policy: Policy, defaults: ConfidenceThresholds) -> ConfidenceThresholds:
    """A policy ``min_*`` overrides the workspace default when it is not None (an explicit 0 counts)."""

    def pick(value: int | None, default: int) -> int:
        return default if value is None else value

    return ConfidenceThresholds(
        min_candidate_runs=pick(policy.min_candidate_runs, defaults.min_candidate_runs),
        min_baseline_runs=pick(policy.min_baseline_runs, defaults.min_baseline_runs),
        min_low_runs=pick(policy.min_low_runs, defaults.min_low_runs),
    )


def confidence_label(
    baseline_runs: int, candidate_runs: int, thresholds: ConfidenceThresholds
) -> tuple[Confidence, str | None]:
    """The reference's label and reason: HIGH needs both minimums; LOW if either side is under the floor."""
    if baseline_runs >= thresholds.min_baseline_runs and candidate_runs >= thresholds.min_candidate_runs:
        return Confidence.HIGH, None
    below_floor = baseline_runs < thresholds.min_low_runs or candidate_runs < thresholds.min_low_runs
    label = Confidence.LOW if below_floor else Confidence.MEDIUM
    parts: list[str] = []
    if candidate_runs < thresholds.min_candidate_runs:
        parts.append(f"candidate sample < {thresholds.min_candidate_runs} runs")
    if baseline_runs < thresholds.min_baseline_runs:
        parts.append(f"baseline sample < {thresholds.min_baseline_runs} runs")
    if below_floor:
        parts.append(f"LOW floor is {thresholds.min_low_runs} runs")
    return label, "; ".join(parts) or "insufficient sample size"


def limit_breaches(policy: Policy, measured: Rollup, *, subject: str = "candidate") -> list[str]:
    """The policy's limits (cost, latency, error rate) that ``measured`` exceeds, in the reference's
    order and wording; strict ``>``, latency skipped without latency data. ``subject`` names whose
    numbers they are (``live`` when a live release is verified)."""
    breaches: list[str] = []
    max_cost = policy.max_cost_per_run_usd
    if max_cost is not None and measured.cost_per_run_usd > max_cost:
        breaches.append(
            f"{subject} cost_per_run_usd {measured.cost_per_run_usd:.6f} exceeds max {max_cost:.6f}"
        )
    max_latency = policy.max_latency_ms
    latency = measured.latency_ms_avg
    if max_latency is not None and latency is not None and latency > max_latency:
        breaches.append(f"{subject} latency_ms_avg {latency:.2f} exceeds max {max_latency}")
    max_error_rate = policy.max_error_rate
    if max_error_rate is not None and measured.error_rate > max_error_rate:
        breaches.append(f"{subject} error_rate {measured.error_rate:.4f} exceeds max {max_error_rate:.4f}")
    return breaches


def evaluate_policy(
    policy: Policy,
    candidate: Rollup,
    confidence: Confidence,
    confidence_reason: str | None,
    evaluated_at: dt.datetime,
) -> PolicyEvaluation:
    """Every check runs; reasons accumulate in a fixed order; comparisons are strict ``>``.

    Only the candidate's absolute values are checked. Latency is skipped when the candidate has no
    latency data.
    """
    reasons = [ClassifiedReason(ReasonKind.POLICY_BREACH, text) for text in limit_breaches(policy, candidate)]
    if policy.require_high_diff_confidence and confidence is not Confidence.HIGH:
        detail = f" ({confidence_reason})" if confidence_reason else ""
        reasons.append(
            ClassifiedReason(
                ReasonKind.INSUFFICIENT_EVIDENCE,
                f"diff confidence is {confidence.value}{detail}; promotion requires HIGH",
            )
        )
    result = PolicyResult(
        passed=not reasons, reasons=tuple(r.text for r in reasons), evaluated_at=evaluated_at
    )
    return PolicyEvaluation(result=result, reasons=tuple(reasons))
