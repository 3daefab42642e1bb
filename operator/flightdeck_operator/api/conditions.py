"""Condition types, reasons and phases of the FlightDeck resources, in one place.

Conditions follow the Kubernetes API conventions (``metav1.Condition``: ``type``, ``status``,
``reason``, ``message``, ``lastTransitionTime``, ``observedGeneration``) and the kstatus contract
that ``kubectl wait``, Flux and Argo CD read:

* ``Reconciling=True``  -> kstatus *InProgress* (work under way, e.g. a request not yet decided);
* ``Stalled=True``      -> kstatus *Failed* (terminal: a blocked or failed request);
* ``Ready=True``        -> kstatus *Current*; ``Ready=False/Unknown`` alone -> *InProgress*;
* ``Decided=True``      -> our own terminal marker on a PromotionRequest: it is set on *every*
  decision (promoted, rolled back, blocked, failed, dry-run evaluated), so
  ``kubectl wait --for=condition=Decided preq/NAME`` returns whatever the outcome.

kstatus reads ``Stalled`` before ``Ready``, so a blocked request (``Ready=False``, ``Stalled=True``)
reads as *Failed* to Flux instead of "in progress forever". kstatus also compares
``status.observedGeneration`` with ``metadata.generation``: the operator stamps both the top-level
``observedGeneration`` and each condition's.

Everything here is pure: no kopf, no Kubernetes client, time passed in explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from flightdeck_operator.engine.models import format_time

__all__ = [
    "DECIDED_REASONS",
    "TERMINAL_PHASES",
    "ApprovalPhase",
    "ConditionStatus",
    "ConditionType",
    "ConditionUpdate",
    "DesiredCondition",
    "Phase",
    "Reason",
    "apply_conditions",
    "awaiting_approval",
    "decided",
    "dependency_missing",
    "find_condition",
    "is_true",
    "pending",
    "phase_for",
    "ready",
    "remove_condition",
    "set_condition",
    "stalled",
]


class ConditionType(StrEnum):
    """Condition types. Adjective or past tense, per the API conventions."""

    # Every kind. PromotionRequest: True once promoted / rolled back / dry run passed; False once
    # blocked or failed; Unknown while undecided. Other kinds: True when the object is usable
    # (pricing resolved, recorded in the ledger, pointer in sync with the ledger).
    READY = "Ready"
    # PromotionRequest only: True once the request reached a terminal outcome (never acted on again).
    DECIDED = "Decided"
    # kstatus "abnormal-true": True while the operator is still working or waiting for a dependency.
    RECONCILING = "Reconciling"
    # kstatus "abnormal-true": True when the object cannot progress without a change by a human.
    STALLED = "Stalled"
    # ReleasePointer under a policy with verification: True while the live release passes its
    # checks, False while they fail, Unknown while they cannot tell (or nothing was checked yet).
    VERIFIED = "Verified"
    # ReleasePointer, "abnormal-true": True once a failure of the live release is confirmed
    # (failureThreshold failing checks in a row); removed when another release is live.
    DEGRADED = "Degraded"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """CamelCase condition reasons, one word each (they show in ``kubectl get`` columns)."""

    # --- PromotionRequest, while undecided (Reconciling=True, Decided=False, Ready=Unknown) ---
    # First visit: the request is queued behind older requests for the same pointer.
    AWAITING_DECISION = "AwaitingDecision"
    # The policy passed but approvals (PromotionApproval objects) are required before the pointer moves.
    AWAITING_APPROVAL = "AwaitingApproval"
    # spec.waitForEvidence: only sample-size confidence fails; re-evaluated as runs arrive.
    AWAITING_EVIDENCE = "AwaitingEvidence"
    # The ledger/evidence store cannot be reached; the operator retries (transient, not terminal).
    STORE_UNAVAILABLE = "StoreUnavailable"

    # --- PromotionRequest, terminal success (Decided=True, Ready=True) ---
    # A promote passed the policy (or was a first promotion) and the pointer moved.
    PROMOTED = "Promoted"
    # A rollback passed the policy and the pointer moved back.
    ROLLED_BACK = "RolledBack"
    # A dry run (spec.dryRun) passed the policy; recorded, pointer untouched.
    EVALUATED = "Evaluated"

    # --- PromotionRequest, terminal failure (Decided=True, Ready=False, Stalled=True) ---
    # The policy did not pass; the decision (with its reasons) is still written to the ledger.
    # Also used for a dry run that would have been blocked (phase Evaluated).
    POLICY_BLOCKED = "PolicyBlocked"
    # spec.pointer names no ReleasePointer in the request's namespace.
    POINTER_NOT_FOUND = "PointerNotFound"
    # The target AgentRelease (spec.release, or the rollback default) does not exist.
    RELEASE_NOT_FOUND = "ReleaseNotFound"
    # The pointer's current (baseline) release no longer exists, so no diff can be computed.
    BASELINE_NOT_FOUND = "BaselineNotFound"
    # The target release's agentId differs from the pointer's agentId.
    AGENT_MISMATCH = "AgentMismatch"
    # A release's pricingReference names no PricingTable (also AgentRelease: Ready=False).
    PRICING_TABLE_MISSING = "PricingTableMissing"
    # A run event's model has no entry in its release's pricing table (cost cannot be computed).
    PRICING_ENTRY_MISSING = "PricingEntryMissing"
    # The pointer's policyRef names no PromotionPolicy (also ReleasePointer: Ready=False).
    POLICY_NOT_FOUND = "PolicyNotFound"
    # spec.expectedCurrentRelease differs from the pointer's live release (compare-and-swap guard).
    POINTER_MOVED = "PointerMoved"
    # A rollback without spec.release on a pointer that has no previous release.
    NOTHING_TO_ROLL_BACK = "NothingToRollBack"
    # The policy's promotion windows are closed (a freeze) and the request has no spec.override.
    # Ledgered like a policy block.
    PROMOTION_WINDOW_CLOSED = "PromotionWindowClosed"
    # concurrencyPolicy Forbid: an older request for the same pointer is still undecided.
    CONCURRENCY_FORBIDDEN = "ConcurrencyForbidden"
    # concurrencyPolicy Replace: a newer request for the same pointer took this one's place.
    SUPERSEDED = "Superseded"
    # The pointer follows another (spec.follows) and the target release has not soaked there, and the
    # request has no spec.override. Ledgered like a policy block.
    NOT_SOAKED = "NotSoaked"
    # spec.window was rejected by the engine's parser (the CRD rule should make this unreachable).
    INVALID_WINDOW = "InvalidWindow"
    # Any kind: the spec failed model validation (schema drift or a CRD installed without rules).
    INVALID_SPEC = "InvalidSpec"

    # --- PromotionRequest, terminal, either way (Decided=True; Ready as the recorded outcome) ---
    # Re-created with the name and spec of a request decided before (GitOps re-applying what
    # retention deleted, a retried Idempotency-Key): the recorded outcome is shown, not decided again.
    REPLAYED = "Replayed"

    # --- ReleasePointer ---
    # status equals the ledger's last passing entry (or nothing was promoted yet).
    IN_SYNC = "InSync"
    # status had drifted from the ledger (e.g. hand-edited) and was rewritten; a warning Event too.
    POINTER_REPAIRED = "PointerRepaired"
    # Another ReleasePointer in the namespace already governs the same (agentId, environment), and
    # was created first; also the terminal reason of a request on such a duplicate (nothing ledgered).
    DUPLICATE_POINTER = "DuplicatePointer"
    # Event reason: a pointer with history was deleted and its retirement ledgered.
    POINTER_RETIRED = "PointerRetired"

    # --- ReleasePointer verification (Verified, Degraded) and pipelines (Events) ---
    # Verified=True: the last check of the live release passed.
    VERIFICATION_PASSED = "VerificationPassed"
    # Verified=False: the last check failed, fewer than failureThreshold in a row so far.
    VERIFICATION_FAILING = "VerificationFailing"
    # Verified=False, Degraded=True: failureThreshold failing checks in a row; also the warning Event.
    VERIFICATION_FAILED = "VerificationFailed"
    # Verified=Unknown: too few runs in the window, or a statistical gate cannot tell yet.
    VERIFICATION_INCONCLUSIVE = "VerificationInconclusive"
    # Verified=Unknown: no release is live yet, or it has not been checked since it went live.
    AWAITING_VERIFICATION = "AwaitingVerification"
    # Verified=Unknown: the check could not run (its pricing table misses a model, the store failed).
    VERIFICATION_ERROR = "VerificationError"
    # Event: the operator created a PromotionRequest rolling back a release that failed verification.
    AUTOMATIC_ROLLBACK = "AutomaticRollback"
    # Event: a confirmed failure was only reported (cooldown, quarantine, nothing to roll back to).
    AUTOMATION_HELD = "AutomationHeld"
    # Event: a release soaked on the pointer this one follows (ledgered as release-soaked).
    RELEASE_SOAKED = "ReleaseSoaked"
    # Event: the operator created a PromotionRequest promoting a release that soaked upstream.
    AUTOMATIC_PROMOTION = "AutomaticPromotion"

    # --- PromotionApproval (Ready=True only when Accepted) ---
    # Counts toward the request's quorum while the decision digest it names is current.
    APPROVAL_ACCEPTED = "ApprovalAccepted"
    # It names a decision digest that is no longer the request's (policy or evidence verdict changed).
    APPROVAL_STALE = "ApprovalStale"
    # The approver created the request; someone else must approve.
    SELF_APPROVAL = "SelfApproval"
    # The approver is not among the policy's approvers (users or groups).
    NOT_AN_APPROVER = "NotAnApprover"
    # spec.request names no undecided request with that UID (deleted, re-created or already decided).
    REQUEST_MISMATCH = "RequestMismatch"
    # spec.approver is missing: the object was created without the operator's admission webhook.
    IDENTITY_UNVERIFIED = "IdentityUnverified"
    # The request's policy does not require approval (or the request is a rollback or dry run).
    APPROVAL_NOT_REQUIRED = "ApprovalNotRequired"

    # --- AgentRelease ---
    # The release's pricingReference resolves to a PricingTable in the namespace.
    PRICING_RESOLVED = "PricingResolved"

    # --- PricingTable / PromotionPolicy ---
    # The current spec (generation) is recorded in the ledger.
    RECORDED = "Recorded"
    # Another PricingTable in the namespace has the same (provider, pricingVersion).
    DUPLICATE_PRICING_TABLE = "DuplicatePricingTable"

    # --- NotificationSubscription ---
    # Ready=True: the signing Secret resolves and the receiver took the last delivery (or none was due).
    DELIVERING = "Delivering"
    # Ready=False, Reconciling=True: the last attempt failed (non-2xx, timeout, refused); retried
    # with backoff until retryFor passes, nothing is dropped before.
    DELIVERY_FAILING = "DeliveryFailing"
    # Ready=False, Reconciling=True: spec.secretRef names no Secret, or one without that key (it may
    # be applied next); deliveries wait for it.
    SECRET_NOT_FOUND = "SecretNotFound"
    # Ready=True: spec.suspend; deliveries are planned (nothing is lost) but not sent until resumed.
    SUSPENDED = "Suspended"


class Phase(StrEnum):
    """PromotionRequest ``status.phase``: for humans and printer columns; conditions are the API."""

    PENDING = "Pending"
    AWAITING_APPROVAL = "AwaitingApproval"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    BLOCKED = "Blocked"
    FAILED = "Failed"
    # A dry run was decided (passed or not): recorded, the pointer never moves.
    EVALUATED = "Evaluated"
    # spec.waitForEvidence: undecided until enough runs arrive or the timeout passes.
    AWAITING_EVIDENCE = "AwaitingEvidence"
    # concurrencyPolicy Replace: a newer request for the pointer replaced this undecided one.
    SUPERSEDED = "Superseded"


class ApprovalPhase(StrEnum):
    """PromotionApproval ``status.phase``: the outcome of processing it (once)."""

    ACCEPTED = "Accepted"
    STALE = "Stale"
    REJECTED = "Rejected"
    BLOCKED = "Blocked"


TERMINAL_PHASES: frozenset[Phase] = frozenset(
    {Phase.PROMOTED, Phase.ROLLED_BACK, Phase.BLOCKED, Phase.FAILED, Phase.EVALUATED, Phase.SUPERSEDED}
)

# Terminal reason -> (phase, Ready?). Every reason a decision can carry is listed once.
_DECIDED: dict[Reason, tuple[Phase, bool]] = {
    Reason.PROMOTED: (Phase.PROMOTED, True),
    Reason.ROLLED_BACK: (Phase.ROLLED_BACK, True),
    Reason.EVALUATED: (Phase.EVALUATED, True),
    Reason.POLICY_BLOCKED: (Phase.BLOCKED, False),
    Reason.POINTER_NOT_FOUND: (Phase.FAILED, False),
    Reason.RELEASE_NOT_FOUND: (Phase.FAILED, False),
    Reason.BASELINE_NOT_FOUND: (Phase.FAILED, False),
    Reason.AGENT_MISMATCH: (Phase.FAILED, False),
    Reason.PRICING_TABLE_MISSING: (Phase.FAILED, False),
    Reason.PRICING_ENTRY_MISSING: (Phase.FAILED, False),
    Reason.POLICY_NOT_FOUND: (Phase.FAILED, False),
    Reason.POINTER_MOVED: (Phase.FAILED, False),
    Reason.NOTHING_TO_ROLL_BACK: (Phase.FAILED, False),
    Reason.PROMOTION_WINDOW_CLOSED: (Phase.BLOCKED, False),
    Reason.CONCURRENCY_FORBIDDEN: (Phase.FAILED, False),
    Reason.SUPERSEDED: (Phase.SUPERSEDED, False),
    Reason.NOT_SOAKED: (Phase.BLOCKED, False),
    Reason.INVALID_WINDOW: (Phase.FAILED, False),
    Reason.INVALID_SPEC: (Phase.FAILED, False),
    Reason.DUPLICATE_POINTER: (Phase.FAILED, False),
}
DECIDED_REASONS: frozenset[Reason] = frozenset(_DECIDED)


@dataclass(frozen=True, slots=True)
class DesiredCondition:
    """What a condition should say; ``set_condition`` adds the times and generation."""

    type: ConditionType | str
    status: ConditionStatus
    reason: Reason | str
    message: str = ""


def find_condition(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == type_:
            return condition
    return None


def is_true(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.get("status") == ConditionStatus.TRUE


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    new: DesiredCondition,
    now: datetime,
    observed_generation: int | None,
) -> list[dict[str, Any]]:
    """Return a copy of ``conditions`` with ``new`` set, as ``meta.SetStatusCondition`` does.

    ``lastTransitionTime`` moves only when the status changes; reason, message and
    ``observedGeneration`` are always refreshed. Order is kept; a new type is appended. The input
    is never mutated (kopf hands us read-only views).
    """
    result = [dict(c) for c in conditions or ()]
    wanted: dict[str, Any] = {
        "type": str(new.type),
        "status": str(new.status),
        "reason": str(new.reason),
        "message": new.message,
    }
    if observed_generation is not None:
        wanted["observedGeneration"] = observed_generation
    for index, existing in enumerate(result):
        if existing.get("type") != wanted["type"]:
            continue
        unchanged = existing.get("status") == wanted["status"] and existing.get("lastTransitionTime")
        wanted["lastTransitionTime"] = existing["lastTransitionTime"] if unchanged else format_time(now)
        result[index] = wanted
        return result
    wanted["lastTransitionTime"] = format_time(now)
    result.append(wanted)
    return result


def remove_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> list[dict[str, Any]]:
    """Return a copy without the condition of ``type_`` (``meta.RemoveStatusCondition``)."""
    return [dict(c) for c in conditions or () if c.get("type") != type_]


@dataclass(frozen=True, slots=True)
class ConditionUpdate:
    """A full, kstatus-consistent condition set: conditions to set and types to drop."""

    set: tuple[DesiredCondition, ...]
    remove: tuple[ConditionType, ...] = field(default=())

    def apply(
        self,
        conditions: Sequence[Mapping[str, Any]] | None,
        now: datetime,
        observed_generation: int | None,
    ) -> list[dict[str, Any]]:
        return apply_conditions(conditions, self, now, observed_generation)


def apply_conditions(
    conditions: Sequence[Mapping[str, Any]] | None,
    update: ConditionUpdate,
    now: datetime,
    observed_generation: int | None,
) -> list[dict[str, Any]]:
    result = [dict(c) for c in conditions or ()]
    for type_ in update.remove:
        result = remove_condition(result, type_)
    for desired in update.set:
        result = set_condition(result, desired, now, observed_generation)
    return result


def _cond(type_: ConditionType, status: ConditionStatus, reason: Reason, message: str) -> DesiredCondition:
    return DesiredCondition(type=type_, status=status, reason=reason, message=message)


# --- PromotionRequest ---------------------------------------------------------------------------


def pending(
    message: str = "Waiting for the operator to decide", reason: Reason = Reason.AWAITING_DECISION
) -> ConditionUpdate:
    """Undecided: kstatus InProgress; ``kubectl wait --for=condition=Decided`` keeps waiting."""
    return ConditionUpdate(
        set=(
            _cond(ConditionType.RECONCILING, ConditionStatus.TRUE, reason, message),
            _cond(ConditionType.DECIDED, ConditionStatus.FALSE, reason, message),
            _cond(ConditionType.READY, ConditionStatus.UNKNOWN, reason, message),
        ),
        remove=(ConditionType.STALLED,),
    )


def awaiting_approval(message: str) -> ConditionUpdate:
    """Policy passed, approval outstanding: still InProgress, not decided."""
    return pending(message, Reason.AWAITING_APPROVAL)


def phase_for(reason: Reason) -> Phase:
    """The phase a terminal reason puts a request in (dry runs: see ``decided``)."""
    try:
        return _DECIDED[reason][0]
    except KeyError:
        raise ValueError(f"{reason!s} is not a terminal PromotionRequest reason") from None


def decided(reason: Reason, message: str, *, dry_run: bool = False) -> tuple[Phase, ConditionUpdate]:
    """Terminal condition set and phase for a decision with ``reason``.

    Success (Promoted, RolledBack, Evaluated): ``Decided=True``, ``Ready=True``.
    Anything else: ``Decided=True``, ``Ready=False``, ``Stalled=True`` (kstatus Failed).
    ``Reconciling`` is removed in both cases. A dry run always lands in phase ``Evaluated``.
    """
    phase = phase_for(reason)
    succeeded = _DECIDED[reason][1]
    if dry_run and reason in {Reason.PROMOTED, Reason.ROLLED_BACK}:
        reason, phase = Reason.EVALUATED, Phase.EVALUATED
    elif dry_run and reason is Reason.POLICY_BLOCKED:
        phase = Phase.EVALUATED
    conds = [
        _cond(ConditionType.DECIDED, ConditionStatus.TRUE, reason, message),
        _cond(
            ConditionType.READY, ConditionStatus.TRUE if succeeded else ConditionStatus.FALSE, reason, message
        ),
    ]
    if succeeded:
        return phase, ConditionUpdate(
            set=tuple(conds), remove=(ConditionType.RECONCILING, ConditionType.STALLED)
        )
    conds.append(_cond(ConditionType.STALLED, ConditionStatus.TRUE, reason, message))
    return phase, ConditionUpdate(set=tuple(conds), remove=(ConditionType.RECONCILING,))


def replayed(outcome: Reason, message: str) -> tuple[Phase, ConditionUpdate]:
    """Terminal conditions of a replayed request: the phase and Ready of the recorded ``outcome``,
    with reason ``Replayed`` (nothing was evaluated or moved for this request)."""
    phase, update = decided(outcome, message)
    return phase, ConditionUpdate(
        set=tuple(replace(condition, reason=Reason.REPLAYED) for condition in update.set),
        remove=update.remove,
    )


# --- AgentRelease, PricingTable, PromotionPolicy, ReleasePointer ------------------------------------


def ready(reason: Reason, message: str) -> ConditionUpdate:
    """Usable: ``Ready=True`` (kstatus Current); the abnormal-true conditions are dropped."""
    return ConditionUpdate(
        set=(_cond(ConditionType.READY, ConditionStatus.TRUE, reason, message),),
        remove=(ConditionType.RECONCILING, ConditionType.STALLED),
    )


def dependency_missing(reason: Reason, message: str) -> ConditionUpdate:
    """Waiting for another object (e.g. a PricingTable not created yet): kstatus InProgress.

    Not Stalled: GitOps tools apply objects in any order, and the dependency may arrive next.
    """
    return ConditionUpdate(
        set=(
            _cond(ConditionType.READY, ConditionStatus.FALSE, reason, message),
            _cond(ConditionType.RECONCILING, ConditionStatus.TRUE, reason, message),
        ),
        remove=(ConditionType.STALLED,),
    )


def stalled(reason: Reason, message: str) -> ConditionUpdate:
    """Cannot progress without a human change (invalid spec, duplicate): kstatus Failed."""
    return ConditionUpdate(
        set=(
            _cond(ConditionType.READY, ConditionStatus.FALSE, reason, message),
            _cond(ConditionType.STALLED, ConditionStatus.TRUE, reason, message),
        ),
        remove=(ConditionType.RECONCILING,),
    )
