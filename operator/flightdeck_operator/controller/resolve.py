"""Resolve a PromotionRequest against what the operator knows: pure, no I/O.

Input is a snapshot of the operator's indexes for one namespace plus the ledger's last pointer move;
output is either a :class:`Plan` (everything ``decide`` needs, minus the evidence) or a
:class:`Failure` (a terminal reason with a message a human can act on). Checks run in the
reference's order: target release, current pointer, nothing to roll back, baseline, pricing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from flightdeck_operator.api.conditions import Reason
from flightdeck_operator.api.to_engine import engine_policy, engine_pricing, release_ref
from flightdeck_operator.api.v1alpha1 import (
    Action,
    PromotionPolicySpec,
    PromotionRequestSpec,
    ReleasePointerSpec,
)
from flightdeck_operator.controller.pointer_health import duplicate_message, governing_pointer
from flightdeck_operator.controller.view import NamespaceView
from flightdeck_operator.engine.decide import NOTHING_TO_ROLL_BACK, DecisionRequest
from flightdeck_operator.engine.evidence import InvalidWindowError, normalize_window
from flightdeck_operator.engine.ledger import LedgerEntry
from flightdeck_operator.engine.models import Policy, PricingTable, PromotionAction, ReleaseRef


@dataclass(frozen=True, slots=True)
class Failure:
    """The request cannot be evaluated. ``dependency`` marks a missing object that may still arrive
    (retried for a grace period); anything else is terminal at once."""

    reason: Reason
    message: str
    dependency: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    request: DecisionRequest
    pointer: ReleasePointerSpec
    current_release_id: str | None
    policy: Policy | None
    # The policy object's gates beyond the reference: windows, approval, concurrency.
    policy_spec: PromotionPolicySpec | None = None
    baseline: ReleaseRef | None = None
    baseline_pricing: PricingTable | None = None
    candidate_pricing: PricingTable | None = None
    # The pointer's ledger sequence this plan was read at: its append must still find it (the fence
    # against a decision computed from a head that moved meanwhile).
    pointer_seq: int = 0


def parse_request_spec(raw: Mapping[str, object]) -> PromotionRequestSpec | Failure:
    try:
        return PromotionRequestSpec.model_validate(raw)
    except ValidationError as error:
        return Failure(Reason.INVALID_SPEC, f"Invalid PromotionRequest spec: {_first_error(error)}")


def resolve(
    spec: PromotionRequestSpec,
    view: NamespaceView,
    last_move: LedgerEntry | None,
) -> Plan | Failure:
    """Resolve ``spec`` into a :class:`Plan`, or say why it cannot be evaluated.

    ``last_move`` is the ledger's last entry that moved this pointer: the ledger, not the pointer's
    status, is the truth about what is live (the status is only its projection).
    """
    pointer = view.pointers.get(spec.pointer)
    if pointer is None:
        return Failure(
            Reason.POINTER_NOT_FOUND,
            f'ReleasePointer "{spec.pointer}" not found in namespace "{view.namespace}"',
            dependency=True,
        )
    governing = governing_pointer(view, pointer.agent_id, pointer.environment)
    if governing != spec.pointer:
        return Failure(
            Reason.DUPLICATE_POINTER,
            duplicate_message(spec.pointer, str(governing), pointer.agent_id, pointer.environment),
        )
    policy: Policy | None = None
    policy_spec: PromotionPolicySpec | None = None
    if pointer.policy_ref is not None:
        policy_spec = view.policies.get(pointer.policy_ref.name)
        if policy_spec is None:
            return Failure(
                Reason.POLICY_NOT_FOUND,
                f'PromotionPolicy "{pointer.policy_ref.name}" (policyRef of ReleasePointer "{spec.pointer}") '
                f'not found in namespace "{view.namespace}"',
                dependency=True,
            )
        policy = engine_policy(pointer.policy_ref.name, policy_spec)

    current = last_move.release_id if last_move is not None else None
    expected = spec.expected_current_release
    if expected is not None and expected != current:
        live = f"release {current!r}" if current is not None else "no release"
        return Failure(
            Reason.POINTER_MOVED,
            f'ReleasePointer "{spec.pointer}" has {live} live, not the expected {expected!r} '
            "(spec.expectedCurrentRelease); nothing was decided",
        )
    action = PromotionAction(spec.action.value)
    target_name = spec.release
    if spec.action is Action.ROLLBACK and current is None:
        return Failure(Reason.NOTHING_TO_ROLL_BACK, NOTHING_TO_ROLL_BACK)
    if target_name is None:  # rollback to the release before the current one
        previous = last_move.baseline_release_id if last_move is not None else None
        if previous is None:
            return Failure(
                Reason.NOTHING_TO_ROLL_BACK,
                f'ReleasePointer "{spec.pointer}" has no previous release to roll back to; '
                "name the target in spec.release",
            )
        target_name = previous

    target_spec = view.releases.get(target_name)
    if target_spec is None:
        return Failure(Reason.RELEASE_NOT_FOUND, f"Unknown release: {target_name}", dependency=True)
    if target_spec.agent_id != pointer.agent_id:
        return Failure(
            Reason.AGENT_MISMATCH,
            f'AgentRelease "{target_name}" belongs to agent "{target_spec.agent_id}", but ReleasePointer '
            f'"{spec.pointer}" governs agent "{pointer.agent_id}"',
        )
    request = DecisionRequest(
        action=action,
        agent_id=pointer.agent_id,
        environment=pointer.environment,
        target=release_ref(target_name, target_spec),
        window=_canonical_window(spec.window),
    )
    if current is None:  # first promotion: the reference checks nothing else
        return Plan(
            request=request, pointer=pointer, current_release_id=None, policy=policy, policy_spec=policy_spec
        )

    baseline_spec = view.releases.get(current)
    if baseline_spec is None:
        return Failure(Reason.BASELINE_NOT_FOUND, f"Promoted baseline release is missing: {current}")
    baseline = release_ref(current, baseline_spec)
    baseline_table = view.pricing_tables.get((baseline.provider, baseline.pricing_version))
    if baseline_table is None:
        return Failure(
            Reason.PRICING_TABLE_MISSING,
            f"Missing pricing table for promoted baseline {baseline.pricing_key}. "
            "Run `flightdeck pricing import ...`.",
            dependency=True,
        )
    target = request.target
    target_table = view.pricing_tables.get((target.provider, target.pricing_version))
    if target_table is None:
        role = "rollback target" if action is PromotionAction.ROLLBACK else "candidate"
        return Failure(
            Reason.PRICING_TABLE_MISSING,
            f"Missing pricing table for {role} {target.pricing_key}. Run `flightdeck pricing import ...`.",
            dependency=True,
        )
    return Plan(
        request=request,
        pointer=pointer,
        current_release_id=current,
        policy=policy,
        policy_spec=policy_spec,
        baseline=baseline,
        baseline_pricing=engine_pricing(baseline_table),
        candidate_pricing=engine_pricing(target_table),
    )


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {first['msg']}" if location else str(first["msg"])


def _canonical_window(window: str) -> str:
    """The decision records the window as it was understood (``7d``), not as it was typed; an
    invalid one is kept as typed and fails the request with the reference's message later."""
    try:
        return normalize_window(window)
    except InvalidWindowError:
        return window
