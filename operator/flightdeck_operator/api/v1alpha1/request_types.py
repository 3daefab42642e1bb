"""PromotionRequest and PromotionApproval: one attempt to move a pointer, and a sign-off on it."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import (
    AwareDatetime,
    Field,
    StringConstraints,
    model_validator,
)

from flightdeck_operator.api.conditions import ApprovalPhase, Phase
from flightdeck_operator.api.v1alpha1.common import (
    DEFAULT_WINDOW,
    OVERRIDE_REASON_NOT_BLANK_MESSAGE,
    REASON_NOT_BLANK_MESSAGE,
    RELEASE_REQUIRED_MESSAGE,
    Action,
    Checksum,
    Count,
    Duration,
    Identifier,
    KubeName,
    ObservedStatus,
    Outcome,
    ReleaseId,
    Seq,
    SpecBase,
    StatusBase,
    Text,
    Uid,
    UserIdentity,
    Window,
    not_blank,
)
from flightdeck_operator.api.v1alpha1.statistics_types import MAX_GATES, GateWait, StatisticsOutcome
from flightdeck_operator.engine.models import Confidence

# --- PromotionRequest -------------------------------------------------------------------------------


class Override(SpecBase):
    """Break-glass: decide even while promotion windows are closed (RBAC verb ``override``)."""

    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024), not_blank(OVERRIDE_REASON_NOT_BLANK_MESSAGE)
    ]


class WaitForEvidence(SpecBase):
    timeout: Duration


class PromotionRequestSpec(SpecBase):
    """One promote or rollback attempt; immutable once created."""

    pointer: KubeName
    # Target AgentRelease. Required for promote; for rollback it defaults to the pointer's
    # previousReleaseId.
    release: KubeName | None = None
    action: Action = Action.PROMOTE
    window: Window = DEFAULT_WINDOW
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    # Informational only: RBAC and the audit log say who really created the object.
    actor: Annotated[str, StringConstraints(max_length=256)] | None = None
    dry_run: bool = False
    # Compare-and-swap guard: decide only while this release is live, else fail with PointerMoved.
    expected_current_release: KubeName | None = None
    override: Override | None = None
    wait_for_evidence: WaitForEvidence | None = None
    # Stamped by the admission webhook from the API server's authentication.
    requested_by: UserIdentity | None = None
    # Retention: seconds after the decision before the operator deletes the request; None
    # inherits the policy's, then the operator's default; 0 deletes it once the minimum age allows.
    ttl_seconds_after_decided: Count | None = None

    @model_validator(mode="after")
    def _mirror_cel_rules(self) -> Self:
        # Same rules as the CRD's x-kubernetes-validations, with the same messages.
        if not self.reason.strip():
            raise ValueError(REASON_NOT_BLANK_MESSAGE)
        if self.action is Action.PROMOTE and self.release is None:
            raise ValueError(RELEASE_REQUIRED_MESSAGE)
        return self


class RunSummary(StatusBase):
    """One side's rollup over the window (reference ``Rollup``)."""

    runs: Count
    cost_per_run_usd: Annotated[float, Field(ge=0)]
    latency_ms_avg: Annotated[float, Field(ge=0)] | None = None
    error_rate: Annotated[float, Field(ge=0, le=1)]


class Evidence(StatusBase):
    window: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    since: AwareDatetime
    until: AwareDatetime
    baseline: RunSummary
    candidate: RunSummary
    confidence: Confidence
    confidence_reason: Text | None = None
    # Only under a policy with statisticalGates.
    statistics: StatisticsOutcome | None = None


class PolicyResult(StatusBase):
    """Reference ``PolicyResult``: reasons in the reference's fixed order and exact wording."""

    passed: bool
    reasons: Annotated[list[Text], Field(max_length=32)] = Field(default_factory=list)
    evaluated_at: AwareDatetime


class DecisionWindow(StatusBase):
    open: bool
    message: Text
    next_open: AwareDatetime | None = None


class AppliedOverride(StatusBase):
    reason: Text
    by: Annotated[str, StringConstraints(max_length=256)] | None = None


class ApprovalRef(StatusBase):
    name: Annotated[str, StringConstraints(max_length=253)]
    approver: Annotated[str, StringConstraints(max_length=256)]


class Decision(StatusBase):
    """What was decided, once, for this request UID (mirrors the ledger entry)."""

    action_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    outcome: Outcome
    decided_at: AwareDatetime
    ledger_seq: Seq | None = None
    ledger_hash: Checksum | None = None
    release_id: ReleaseId | None = None
    agent_id: Identifier | None = None
    environment: Identifier | None = None
    pointer_before: ReleaseId | None = None
    pointer_after: ReleaseId | None = None
    # Reference `promoted_pointer_changed`: true when the pointer was written (even to itself).
    pointer_changed: bool | None = None
    policy: PolicyResult | None = None
    # Absent on a first promotion: the reference runs no diff then.
    evidence: Evidence | None = None
    promotion_window: DecisionWindow | None = None
    override: AppliedOverride | None = None
    approvals: Annotated[list[ApprovalRef], Field(max_length=64)] | None = None


class ApprovalStatus(StatusBase):
    """While approval is required: the decision to approve and who has approved it."""

    decision_digest: Checksum
    required: Annotated[int, Field(ge=1)]
    approved_by: Annotated[list[Annotated[str, StringConstraints(max_length=256)]], Field(max_length=64)] = (
        Field(default_factory=list)
    )
    stale: Annotated[list[Annotated[str, StringConstraints(max_length=253)]], Field(max_length=64)] = Field(
        default_factory=list
    )
    passed: bool | None = None


class EvidenceWait(StatusBase):
    deadline: AwareDatetime
    missing_baseline_runs: Count | None = None
    missing_candidate_runs: Count | None = None
    last_evaluated_at: AwareDatetime | None = None
    # Statistical gates only: when the slowest gate is expected to have its runs (absent when no
    # runs arrive), and every gate not passing yet.
    eta: AwareDatetime | None = None
    gates: Annotated[list[GateWait], Field(max_length=MAX_GATES)] | None = None


class PromotionRequestStatus(ObservedStatus):
    phase: Phase | None = None
    decision: Decision | None = None
    approval: ApprovalStatus | None = None
    evidence_wait: EvidenceWait | None = None
    message: Annotated[str, StringConstraints(max_length=4096)] | None = None


# --- PromotionApproval ------------------------------------------------------------------------------


class ApprovalRequestRef(SpecBase):
    name: KubeName
    uid: Uid


class PromotionApprovalSpec(SpecBase):
    """One approver's approval of one request's decision (bound to its UID and decision digest)."""

    request: ApprovalRequestRef
    decision_digest: Checksum
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024), not_blank(REASON_NOT_BLANK_MESSAGE)
    ]
    # Stamped by the admission webhook from the API server's authentication.
    approver: UserIdentity | None = None


class PromotionApprovalStatus(ObservedStatus):
    phase: ApprovalPhase | None = None
    message: Annotated[str, StringConstraints(max_length=4096)] | None = None
    ledger_seq: Seq | None = None
