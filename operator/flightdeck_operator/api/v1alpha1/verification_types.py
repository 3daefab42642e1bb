"""Verification of the live release (PromotionPolicy ``spec.verification``), pipelines
(ReleasePointer ``spec.follows``) and what pointers show of both in status.

The CRD's CEL rules carry the messages below; the models mirror them word for word (the contract
test checks), so ``kubectl apply`` and the operator reject bad durations the same way.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

from flightdeck_operator.api.v1alpha1.common import (
    Count,
    KubeName,
    ReleaseId,
    Seq,
    SpecBase,
    StatusBase,
    Text,
)
from flightdeck_operator.api.v1alpha1.request_types import RunSummary
from flightdeck_operator.api.v1alpha1.statistics_types import StatisticsOutcome
from flightdeck_operator.engine.statistics import Verdict
from flightdeck_operator.engine.verification import (
    SPAN_OR_ZERO_PATTERN,
    SPAN_PATTERN,
    OnFailure,
    VerificationRules,
    parse_span,
)

# Messages of the CEL rules (crds/promotionpolicies..., crds/releasepointers...).
INTERVAL_MESSAGE: Final = (
    "interval must be a positive whole number of seconds, minutes, hours or days, e.g. 60s or 5m"
)
VERIFICATION_WINDOW_MESSAGE: Final = (
    "window must be a positive whole number of seconds, minutes, hours or days, e.g. 15m or 1h"
)
COOLDOWN_MESSAGE: Final = (
    "cooldown must be zero or a positive whole number of seconds, minutes, hours or days, e.g. 1h"
)
SOAK_TIME_MESSAGE: Final = (
    "soakTime must be zero or a positive whole number of seconds, minutes, hours or days, "
    "e.g. 30m (never negative)"
)
DEFAULT_INTERVAL: Final = "1m"
DEFAULT_VERIFICATION_WINDOW: Final = "1h"
DEFAULT_FAILURE_THRESHOLD: Final = 3
DEFAULT_VERIFICATION_MIN_RUNS: Final = 20
DEFAULT_COOLDOWN: Final = "1h"
MAX_FAILURE_THRESHOLD: Final = 100
MAX_REASONS: Final = 32


def _span(pattern: str, message: str) -> AfterValidator:
    # A CEL rule in the CRD (for its message), so a validator here rather than a schema pattern.
    def check(value: str) -> str:
        if re.fullmatch(pattern, value) is None:
            raise ValueError(message)
        return value

    return AfterValidator(check)


_SpanText = Annotated[str, StringConstraints(min_length=2, max_length=6)]
Interval = Annotated[_SpanText, _span(SPAN_PATTERN, INTERVAL_MESSAGE)]
VerificationWindow = Annotated[_SpanText, _span(SPAN_PATTERN, VERIFICATION_WINDOW_MESSAGE)]
Cooldown = Annotated[_SpanText, _span(SPAN_OR_ZERO_PATTERN, COOLDOWN_MESSAGE)]
SoakTime = Annotated[_SpanText, _span(SPAN_OR_ZERO_PATTERN, SOAK_TIME_MESSAGE)]


class VerificationSpec(SpecBase):
    """Keep checking the live release after its promotion (docs/verification.md)."""

    # How often the live release is checked (the operator may enforce a floor).
    interval: Interval = DEFAULT_INTERVAL
    # The rolling window of evidence each check reads: the last this-long of runs.
    window: VerificationWindow = DEFAULT_VERIFICATION_WINDOW
    # Fail checks in a row that confirm a failure.
    failure_threshold: Annotated[int, Field(ge=1, le=MAX_FAILURE_THRESHOLD)] = DEFAULT_FAILURE_THRESHOLD
    # Fewer runs than this in the window: the check is Inconclusive (never a failure).
    min_runs: Count = DEFAULT_VERIFICATION_MIN_RUNS
    # Rollback: a PromotionRequest rolling back to the previous release; Alert: report only.
    on_failure: OnFailure = OnFailure.ALERT
    # After an automatic rollback on a pointer, no other automatic rollback there for this long.
    cooldown: Cooldown = DEFAULT_COOLDOWN

    def rules(self) -> VerificationRules:
        return VerificationRules(
            interval=parse_span(self.interval),
            window=parse_span(self.window),
            failure_threshold=self.failure_threshold,
            min_runs=self.min_runs,
            on_failure=self.on_failure,
            cooldown=parse_span(self.cooldown),
        )


class FollowsSpec(SpecBase):
    """A pipeline: this pointer takes the releases that soaked on another pointer of the agent."""

    # The upstream ReleasePointer (same namespace, same agent; no cycles).
    pointer: KubeName
    # How long a release must have been live and verified upstream, without a break.
    soak_time: SoakTime
    # Promote a release that soaked upstream on its own (decided by this pointer's policy); false:
    # only manual promotions, which must still name a release that soaked.
    auto_promote: bool = False


# --- status ------------------------------------------------------------------------------------


class VerificationFailure(StatusBase):
    """A failure confirmed for the live release, and what the operator did about it (once)."""

    # The ledger's verification-failed entry.
    ledger_seq: Seq
    confirmed_at: AwareDatetime
    action: OnFailure
    # The automatic rollback request (action Rollback).
    request: KubeName | None = None
    # Why a policy asking for a rollback only alerted (cooldown, quarantine, nothing to roll back to).
    held: Text | None = None


class VerificationStatus(StatusBase):
    """The last check of the live release (written when what it says changes, and at least every
    few minutes; ``lastCheckedAt`` is when these numbers were measured)."""

    release_id: ReleaseId
    # The ledger move that made it live: the checks count from there.
    ledger_seq: Seq
    verdict: Verdict
    last_checked_at: AwareDatetime
    since: AwareDatetime
    until: AwareDatetime
    consecutive_failures: Count
    failure_threshold: Annotated[int, Field(ge=1, le=MAX_FAILURE_THRESHOLD)]
    # The first check of the current unbroken run of passes: soak counts from here.
    verified_since: AwareDatetime | None = None
    reasons: Annotated[list[Text], Field(max_length=MAX_REASONS)] = Field(default_factory=list)
    evidence: RunSummary
    statistics: StatisticsOutcome | None = None
    failure: VerificationFailure | None = None


class PipelineState(StrEnum):
    """Where the pipeline of a following pointer stands (``status.pipeline.state``)."""

    WAITING = "Waiting"  # upstream has no live release that can soak (none, or not verified)
    SOAKING = "Soaking"  # upstream's release is verified; it soaks until soakDue
    SOAKED = "Soaked"  # it soaked; promote it (autoPromote off) or the operator will
    PROMOTING = "Promoting"  # the operator's request for it is being decided
    UP_TO_DATE = "UpToDate"  # this pointer has upstream's soaked release live
    HELD = "Held"  # it soaked, but is not promoted on its own (a block, a quarantine, a newer move)
    INVALID = "Invalid"  # spec.follows cannot work (another agent, a cycle, no verification upstream)


class PipelineStatus(StatusBase):
    upstream: KubeName
    state: PipelineState
    message: Text
    # The upstream release this is about.
    release_id: ReleaseId | None = None
    verified_since: AwareDatetime | None = None
    # When it soaks if every check keeps passing (Soaking), or when it soaked.
    soak_due: AwareDatetime | None = None
    # The ledger's release-soaked entry.
    ledger_seq: Seq | None = None
    # The operator's promotion request for it.
    request: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None


__all__ = [
    "COOLDOWN_MESSAGE",
    "INTERVAL_MESSAGE",
    "SOAK_TIME_MESSAGE",
    "VERIFICATION_WINDOW_MESSAGE",
    "FollowsSpec",
    "PipelineState",
    "PipelineStatus",
    "VerificationFailure",
    "VerificationSpec",
    "VerificationStatus",
]
