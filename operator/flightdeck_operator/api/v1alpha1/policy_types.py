"""PromotionPolicy and ReleasePointer: the gate, and which release is live where."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import (
    AwareDatetime,
    Field,
    StringConstraints,
    model_validator,
)

from flightdeck_operator.api.v1alpha1.common import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    Action,
    Count,
    CronSchedule,
    Duration,
    Identifier,
    LocalObjectReference,
    ObservedStatus,
    ReleaseId,
    RequestRef,
    Seq,
    SpecBase,
    StatusBase,
    Text,
    TimeZoneName,
    Username,
)
from flightdeck_operator.api.v1alpha1.release_types import RecordedStatus
from flightdeck_operator.api.v1alpha1.statistics_types import StatisticalGatesSpec
from flightdeck_operator.api.v1alpha1.verification_types import (
    FollowsSpec,
    PipelineStatus,
    VerificationSpec,
    VerificationStatus,
)
from flightdeck_operator.engine.windows import (
    WindowKind,
    WindowRule,
    parse_duration,
)

# --- PromotionPolicy --------------------------------------------------------------------------------


class PromotionWindow(SpecBase):
    """A recurring Deny (freeze) or Allow (release) window: ``schedule`` starts it, ``duration`` ends it."""

    name: Identifier
    kind: WindowKind
    schedule: CronSchedule
    duration: Duration
    time_zone: TimeZoneName = "UTC"


class Approvers(SpecBase):
    users: Annotated[list[Username], Field(max_length=64)] = Field(default_factory=list)
    groups: Annotated[list[Username], Field(max_length=64)] = Field(default_factory=list)


class ApprovalPolicy(SpecBase):
    min_approvals: Annotated[int, Field(ge=1, le=10)] = 1
    # None or empty: anyone RBAC lets create promotionapprovals in the namespace.
    approvers: Approvers | None = None


class RequestRetention(SpecBase):
    """How long decided PromotionRequests of this policy's pointers stay (the ledger keeps them)."""

    # Seconds after the decision; None inherits the operator's default.
    ttl_seconds_after_decided: Count | None = None
    # The newest N decided requests of each pointer outlive their TTL; None inherits the default.
    retain_per_pointer: Annotated[int, Field(ge=0, le=1000)] | None = None


class ConcurrencyPolicy(StrEnum):
    QUEUE = "Queue"
    FORBID = "Forbid"
    REPLACE = "Replace"


class PromotionPolicySpec(SpecBase):
    """The gate, with the reference semantics (flightdeck-behaviour 1.7).

    ``max_*``: ``None`` disables the check; comparisons are strict ``>``.
    ``min_*``: ``None`` inherits the operator default (500/500/50); ``0`` means no minimum.
    Optional fields are therefore never defaulted, in the CRD or here.
    """

    max_cost_per_run_usd: Annotated[float, Field(ge=0)] | None = None
    max_latency_ms: Annotated[int, Field(ge=0)] | None = None
    max_error_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    min_candidate_runs: Count | None = None
    min_baseline_runs: Count | None = None
    min_low_runs: Count | None = None
    require_high_diff_confidence: bool = True
    promotion_windows: Annotated[list[PromotionWindow], Field(max_length=32)] | None = None
    approval: ApprovalPolicy | None = None
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.QUEUE
    request_retention: RequestRetention | None = None
    # Opt-in gates with confidence bounds (docs/statistical-gates.md); absent: as before.
    statistical_gates: StatisticalGatesSpec | None = None
    # Opt-in: keep checking the live release after its promotion (docs/verification.md).
    verification: VerificationSpec | None = None

    @model_validator(mode="after")
    def _window_names_unique(self) -> Self:
        # Mirrors the CRD's list-map key: one window per name.
        names = [w.name for w in self.promotion_windows or ()]
        if len(names) != len(set(names)):
            raise ValueError("promotion window names must be unique")
        return self

    def window_rules(self) -> tuple[WindowRule, ...]:
        return tuple(
            WindowRule(
                name=w.name,
                kind=w.kind,
                schedule=w.schedule,
                duration=parse_duration(w.duration),
                time_zone=w.time_zone,
            )
            for w in self.promotion_windows or ()
        )


class PromotionPolicyStatus(RecordedStatus):
    pass


# --- ReleasePointer ---------------------------------------------------------------------------------


class ReleasePointerSpec(SpecBase):
    """Which release is live for (agentId, environment). agentId and environment are immutable."""

    agent_id: Identifier
    environment: Identifier
    # Absent: the reference default policy (everything unset, requireHighDiffConfidence true).
    policy_ref: LocalObjectReference | None = None
    history_limit: Annotated[int, Field(ge=1, le=MAX_HISTORY_LIMIT)] = DEFAULT_HISTORY_LIMIT
    # A pipeline: take the releases that soaked on another pointer of the agent (docs/verification.md).
    follows: FollowsSpec | None = None


class PointerHistoryEntry(StatusBase):
    """One pointer move (passing decisions only), newest first in ``status.history``."""

    release_id: ReleaseId
    previous_release_id: ReleaseId | None = None
    action: Action
    ledger_seq: Seq
    updated_at: AwareDatetime
    request: RequestRef | None = None


class PromotionWindowStatus(StatusBase):
    """Whether the policy's windows allow a promotion now, and when that changes."""

    open: bool
    message: Text
    active_windows: Annotated[
        list[Annotated[str, StringConstraints(max_length=63)]], Field(max_length=32)
    ] = Field(default_factory=list)
    next_change: AwareDatetime | None = None


class Predecessor(StatusBase):
    """A pointer of the same name that was retired (deleted) before this one was created: this
    pointer's history starts after that retirement in the ledger."""

    retired_ledger_seq: Seq
    retired_at: AwareDatetime
    retired_by: Username
    # The release that was live when it was retired.
    release_id: ReleaseId | None = None


class ReleasePointerStatus(ObservedStatus):
    """Projection of the ledger: ``release_id`` equals the release of the last passing entry."""

    release_id: ReleaseId | None = None
    previous_release_id: ReleaseId | None = None
    updated_at: AwareDatetime | None = None
    last_request: RequestRef | None = None
    ledger_seq: Seq | None = None
    history: Annotated[list[PointerHistoryEntry], Field(max_length=MAX_HISTORY_LIMIT)] = Field(
        default_factory=list
    )
    promotion_window: PromotionWindowStatus | None = None
    predecessor: Predecessor | None = None
    # Its policy's verification: the last check of the live release.
    verification: VerificationStatus | None = None
    # spec.follows: where the release upstream stands.
    pipeline: PipelineStatus | None = None
