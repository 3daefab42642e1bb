"""Resolve and decide a request without writing anything (store reads only): the shared core of a
decision and of the admission webhook's dry-run prediction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from flightdeck_operator.api.conditions import Reason
from flightdeck_operator.api.v1alpha1 import ApprovalPolicy, PromotionRequestSpec
from flightdeck_operator.controller.resolve import Failure, Plan, parse_request_spec, resolve
from flightdeck_operator.controller.view import NamespaceView
from flightdeck_operator.engine.decide import (
    Comparison,
    Decision,
    Outcome,
    SoakGate,
    apply_promotion_window,
    apply_soak,
    decide,
)
from flightdeck_operator.engine.evidence import (
    EvidenceError,
    InvalidWindowError,
    PricingModelMissingError,
    window_bounds,
)
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.engine.models import ConfidenceThresholds, PromotionAction
from flightdeck_operator.engine.windows import window_state
from flightdeck_operator.store import Store


@dataclass
class Assessor:
    store: Store
    thresholds: ConfidenceThresholds
    clock: Callable[[], dt.datetime]

    @staticmethod
    def approval_policy(plan: Plan, spec: PromotionRequestSpec) -> ApprovalPolicy | None:
        """Approval gates promotions only (the reference never gates a rollback)."""
        if plan.policy_spec is None or plan.request.action is not PromotionAction.PROMOTE or spec.dry_run:
            return None
        return plan.policy_spec.approval

    def assess(
        self,
        namespace: str,
        spec: PromotionRequestSpec,
        view: NamespaceView,
        *,
        created: dt.datetime | None = None,
    ) -> tuple[Plan, Decision] | Failure:
        """Resolve and decide ``spec`` without writing anything (store reads only): the shared core
        of a decision and of the admission webhook's dry-run prediction. ``created``: the request's
        creation, where statistical gates anchor its evidence (None: not created yet, now)."""
        now = self.clock()
        last_move, pointer_seq = self.store.pointer_head(namespace, spec.pointer)
        plan = resolve(spec, view, last_move)
        if isinstance(plan, Failure):
            return plan
        plan = replace(plan, pointer_seq=pointer_seq)
        try:
            decision = self.decide(plan, now, created=created)
        except InvalidWindowError as error:
            return Failure(Reason.INVALID_WINDOW, str(error))
        except PricingModelMissingError as error:
            return Failure(Reason.PRICING_ENTRY_MISSING, str(error))
        except EvidenceError as error:  # cross-agent evidence
            return Failure(Reason.AGENT_MISMATCH, str(error))
        if decision.outcome is Outcome.NOTHING_TO_ROLL_BACK:
            return Failure(Reason.NOTHING_TO_ROLL_BACK, decision.message)
        windows = plan.policy_spec.window_rules() if plan.policy_spec is not None else ()
        state = window_state(windows, now) if windows else None
        override = spec.override.reason if spec.override is not None else None
        decision = apply_promotion_window(decision, state, override_reason=override)
        return plan, apply_soak(
            decision, self.soak_gate(namespace, spec.pointer, plan), override_reason=override
        )

    def soak_gate(self, namespace: str, pointer: str, plan: Plan) -> SoakGate | None:
        """A pointer that follows another (``spec.follows``) promotes only releases that soaked
        there: the ledger's ``release-soaked`` entry for this pointer and release says so."""
        follows = plan.pointer.follows
        if follows is None or plan.request.action is not PromotionAction.PROMOTE:
            return None
        target = plan.request.target.release_id
        soaked = self.store.soak_entry(namespace, pointer, target)
        if soaked is not None and self._soak_stands(namespace, follows.pointer, soaked):
            return SoakGate(upstream=follows.pointer, soaked=True, message="")
        return SoakGate(
            upstream=follows.pointer,
            soaked=False,
            message=(
                f'{target} has not soaked on ReleasePointer "{follows.pointer}" (live and verified for '
                f"{follows.soak_time}, spec.follows); promote it there first, or use a break-glass override"
            ),
        )

    def _soak_stands(self, namespace: str, upstream: str, soaked: LedgerEntry) -> bool:
        """A soak counts while it is of the pointer followed now and the release has not failed
        verification there since (a release rolled back upstream has not soaked any more)."""
        if (soaked.details or {}).get("upstream") != upstream:
            return False
        return not any(
            entry.kind is LedgerKind.VERIFICATION_FAILED
            and entry.release_id == soaked.release_id
            and entry.seq > soaked.seq
            for entry in self.store.automation_entries(namespace, upstream)
        )

    def decide(self, plan: Plan, now: dt.datetime, *, created: dt.datetime | None = None) -> Decision:
        comparison = None
        if plan.current_release_id is not None:
            assert plan.baseline
            assert plan.baseline_pricing
            assert plan.candidate_pricing
            since, until = window_bounds(plan.request.window, now)
            releases = (plan.current_release_id, plan.request.target.release_id, plan.request.environment)
            gates = plan.policy.statistical_gates if plan.policy is not None else None
            statistics = None
            if gates is None:
                baseline_evidence, candidate_evidence = self.store.diff_evidence(*releases, since, until)
            else:
                # Anchored at the request's creation: while it waits, evidence only accumulates, which
                # is what keeps the confidence sequences valid however often it is looked at.
                anchor = min(created or now, now)
                baseline_evidence, candidate_evidence, statistics = self.store.statistics_evidence(
                    *releases,
                    since,
                    until,
                    statistics_since=window_bounds(plan.request.window, anchor)[0],
                    rate_since=now - gates.rate_window_duration,
                )
            comparison = Comparison(
                baseline=plan.baseline,
                baseline_pricing=plan.baseline_pricing,
                candidate_pricing=plan.candidate_pricing,
                baseline_evidence=baseline_evidence,
                candidate_evidence=candidate_evidence,
                statistics=statistics,
            )
        return decide(
            plan.request,
            current_release_id=plan.current_release_id,
            comparison=comparison,
            policy=plan.policy,
            now=now,
            thresholds=self.thresholds,
        )

    def predict(self, namespace: str, raw_spec: Mapping[str, Any], view: NamespaceView) -> str:
        """One line saying what the operator would decide for this spec now (nothing is written)."""
        spec = parse_request_spec(raw_spec)
        if isinstance(spec, Failure):
            return f"FlightDeck prediction: Failed ({spec.reason.value}): {spec.message}"
        assessed = self.assess(namespace, spec, view)
        if isinstance(assessed, Failure):
            return f"FlightDeck prediction: Failed ({assessed.reason.value}): {assessed.message}"
        plan, decision = assessed
        target = f"{decision.action.value} of {decision.target_release_id} on {spec.pointer}"
        reasons = "; ".join(decision.policy_result.reasons) if decision.policy_result else ""
        if not decision.passed:
            reason = (
                Reason.PROMOTION_WINDOW_CLOSED
                if decision.blocked_by_window
                else Reason.NOT_SOAKED
                if decision.blocked_by_soak
                else Reason.POLICY_BLOCKED
            )
            if decision.awaiting_evidence_only and spec.wait_for_evidence is not None:
                return f"FlightDeck prediction: {target} would await evidence (up to {spec.wait_for_evidence.timeout}): {reasons}"
            return f"FlightDeck prediction: {target} would be Blocked ({reason.value}): {reasons}"
        gate = self.approval_policy(plan, spec)
        if gate is not None:
            return f"FlightDeck prediction: {target} passes the policy and would await {gate.min_approvals} approval(s)"
        outcome = (
            "Evaluated (dry run)"
            if spec.dry_run
            else ("Promoted" if decision.action is PromotionAction.PROMOTE else "RolledBack")
        )
        suffix = f" with break-glass override: {decision.override_reason}" if decision.override_reason else ""
        return f"FlightDeck prediction: {target} would be {outcome}{suffix}" + (
            f" ({reasons})" if reasons else ""
        )
