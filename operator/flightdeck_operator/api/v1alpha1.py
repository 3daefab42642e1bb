"""Typed models of the ``flightdeck.dev/v1alpha1`` custom resources.

``crds/*.yaml`` is the source of truth the API server enforces; these pydantic models are the typed
view the operator and the sidecar use. ``tests/unit/test_crd_contract.py`` fails when the two
drift apart (property names by alias, required lists, enums, defaults and bounds).

Conventions:

* Python names are snake_case, the wire is camelCase (``alias_generator=to_camel``; both spellings
  validate). Three price fields carry explicit aliases because ``to_camel`` would spell
  ``Per1KTokens``.
* Specs are strict (``extra="forbid"``): the API server already prunes unknown fields, so an
  unknown field here means the CRD and the model disagree. Statuses are tolerant
  (``extra="ignore"``) so an older operator can read a newer status.
* Everything is frozen; build new values with ``model_copy(update=...)``.
* ``model_validate`` accepts any ``Mapping`` (kopf passes ``kopf.Spec``/``kopf.Status`` views).
* ``to_wire(model)`` gives the JSON-ready camelCase dict for a status patch or an API call.

This module must not import kopf or the Kubernetes client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from flightdeck_operator.api.conditions import ApprovalPhase, ConditionStatus, Phase
from flightdeck_operator.engine.models import Confidence, PromotionAction
from flightdeck_operator.engine.windows import (
    DURATION_PATTERN,
    WindowKind,
    WindowRule,
    check_schedule,
    check_time_zone,
    parse_duration,
)

GROUP: Final = "flightdeck.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "flightdeck.dev/v1alpha1"  # GROUP/VERSION, spelled out for Literal typing
# `kubectl get flightdeck` lists every kind.
CATEGORY: Final = "flightdeck"

# --- Patterns shared with crds/*.yaml (the contract test compares them character for character) ---
# RE2 (API server), Rust regex (pydantic) and Python re agree on these: ASCII classes only, no \s or \d.

# metadata.name of the kinds we reference (DNS-1123 subdomain, what `kubectl create` accepts).
DNS1123_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# The shape of a Kubernetes label value, so agent ids, environments and providers can be used as
# label values and selectors (`flightdeck.dev/agent-id=...`) without escaping.
IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# Model names, versions and tool names: printable ASCII without spaces (`gpt-4o-mini`,
# `anthropic.claude-3-5-sonnet-20241022-v2:0`, `accounts/fw/models/llama`, `1.4.0+build.7`).
TOKEN_PATTERN: Final = r"^[!-~]+$"
# Bundle checksum (reference 1.2): 64 lowercase hex characters, no `sha256:` prefix.
CHECKSUM_PATTERN: Final = r"^[0-9a-f]{64}$"
# Evidence window. The reference parser does `s.strip().lower()`, `int(s[:-1]) > 0` and a unit of
# d (days), h (hours) or m (minutes). We accept: optional surrounding spaces, a positive integer
# with at most 5 significant digits (leading zeros allowed), then d/h/m in either case.
# We reject reference quirks that come from Python's int(): a sign (`+7d`), digit separators
# (`1_0d`), inner spaces (`7 d`), tabs/newlines and non-ASCII digits. The 5-digit cap (99999d is
# ~273 years) keeps `until - window` inside Python's datetime range, where the reference crashes.
WINDOW_PATTERN: Final = r"^ *0*[1-9][0-9]{0,4}[dDhHmM] *$"
DEFAULT_WINDOW: Final = "7d"
# metav1.Condition, copied from k8s.io/apimachinery.
CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

# Messages of the CEL rules the models mirror (the contract test checks the CRDs use the same).
REASON_NOT_BLANK_MESSAGE: Final = "reason must not be blank"
OVERRIDE_REASON_NOT_BLANK_MESSAGE: Final = "override reason must not be blank"
RELEASE_REQUIRED_MESSAGE: Final = "release is required when action is promote"
WINDOW_MESSAGE: Final = (
    "window must be a positive whole number of days, hours or minutes, e.g. 7d, 24h or 30m"
)

DEFAULT_HISTORY_LIMIT: Final = 10
MAX_HISTORY_LIMIT: Final = 100

KubeName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=IDENTIFIER_PATTERN)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=TOKEN_PATTERN)]
VersionString = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=TOKEN_PATTERN)]
Checksum = Annotated[str, StringConstraints(min_length=64, max_length=64, pattern=CHECKSUM_PATTERN)]
# A prompt/tool reference: an OCI digest, a ConfigMap key or a URL. Bodies stay out of etcd.
ArtifactRef = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


def _check_window(value: str) -> str:
    # A CEL rule in the CRD (for its message), so a validator here rather than a schema pattern.
    if re.fullmatch(WINDOW_PATTERN, value) is None:
        raise ValueError(WINDOW_MESSAGE)
    return value


def is_valid_window(value: str) -> bool:
    """What the API server accepts for ``spec.window`` (the engine's parser accepts a superset)."""
    return re.fullmatch(WINDOW_PATTERN, value) is not None


Window = Annotated[str, StringConstraints(min_length=2, max_length=16), AfterValidator(_check_window)]
# A whole number of minutes, hours or days: promotion window lengths and evidence-wait timeouts.
Duration = Annotated[str, StringConstraints(min_length=2, max_length=6, pattern=DURATION_PATTERN)]


def _check_schedule(value: str) -> str:
    check_schedule(value)
    return value


def _check_time_zone(value: str) -> str:
    check_time_zone(value)
    return value


def _not_blank(message: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value.strip():
            raise ValueError(message)
        return value

    return AfterValidator(check)


CronSchedule = Annotated[
    str, StringConstraints(min_length=9, max_length=128), AfterValidator(_check_schedule)
]
TimeZoneName = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_check_time_zone)
]
Username = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# An AgentRelease name as recorded by the operator. No pattern on the status side: tolerant reads.
ReleaseId = Annotated[str, StringConstraints(min_length=1, max_length=253)]
Uid = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=1024)]
UsdRate = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
Seq = Annotated[int, Field(ge=1)]


# One definition each, shared with the engine: the wire values are the reference's.
Action = PromotionAction


class Outcome(StrEnum):
    """``status.decision.outcome``: the terminal phase the decision produced."""

    PROMOTED = Phase.PROMOTED.value
    ROLLED_BACK = Phase.ROLLED_BACK.value
    BLOCKED = Phase.BLOCKED.value
    FAILED = Phase.FAILED.value
    EVALUATED = Phase.EVALUATED.value


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """Names of one kind, as registered by its CRD."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def api_version(self) -> str:
        return API_VERSION


AGENT_RELEASE: Final = ResourceInfo("AgentRelease", "agentreleases", "agentrelease", ("arel",))
PRICING_TABLE: Final = ResourceInfo("PricingTable", "pricingtables", "pricingtable", ("ptable",))
PROMOTION_POLICY: Final = ResourceInfo("PromotionPolicy", "promotionpolicies", "promotionpolicy", ("ppol",))
RELEASE_POINTER: Final = ResourceInfo("ReleasePointer", "releasepointers", "releasepointer", ("rptr",))
PROMOTION_REQUEST: Final = ResourceInfo(
    "PromotionRequest", "promotionrequests", "promotionrequest", ("preq",)
)
PROMOTION_APPROVAL: Final = ResourceInfo(
    "PromotionApproval", "promotionapprovals", "promotionapproval", ("papr",)
)

# Plain strings for kopf decorators: @kopf.on.create(GROUP, VERSION, PROMOTION_REQUEST_PLURAL).
AGENT_RELEASE_PLURAL: Final = AGENT_RELEASE.plural
PRICING_TABLE_PLURAL: Final = PRICING_TABLE.plural
PROMOTION_POLICY_PLURAL: Final = PROMOTION_POLICY.plural
RELEASE_POINTER_PLURAL: Final = RELEASE_POINTER.plural
PROMOTION_REQUEST_PLURAL: Final = PROMOTION_REQUEST.plural
PROMOTION_APPROVAL_PLURAL: Final = PROMOTION_APPROVAL.plural


def to_wire(model: BaseModel) -> dict[str, Any]:
    """camelCase, JSON-ready, ``None`` omitted: what the API server expects in a body or patch."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Model(BaseModel):
    def to_wire(self) -> dict[str, Any]:
        return to_wire(self)


class _Spec(_Model):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True, extra="forbid"
    )


class _Status(_Model):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True, extra="ignore"
    )


# --- Shared status pieces ---------------------------------------------------------------------------


class Condition(_Status):
    """``metav1.Condition``. ``flightdeck_operator.api.conditions`` builds them."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    status: ConditionStatus
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    last_transition_time: AwareDatetime
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    message: Annotated[str, StringConstraints(max_length=32768)]


Conditions = Annotated[list[Condition], Field(max_length=32)]


class _ObservedStatus(_Status):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    conditions: Conditions = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class LocalObjectReference(_Spec):
    """A name in the referencing object's namespace."""

    name: KubeName


class UserIdentity(_Spec):
    """Who created an object, as the API server authenticated them (stamped by the admission
    webhook; never taken from the user)."""

    username: Username
    uid: Annotated[str, StringConstraints(max_length=128)] | None = None
    groups: Annotated[list[Annotated[str, StringConstraints(max_length=256)]], Field(max_length=64)] = Field(
        default_factory=list
    )
    # The trusted delegate (the HTTP sidecar) that created the object on this user's behalf.
    via: Annotated[str, StringConstraints(max_length=256)] | None = None


class RequestRef(_Status):
    """The PromotionRequest that caused a pointer move (uid: exactly-once across re-creations)."""

    name: KubeName
    uid: Uid


# --- AgentRelease -----------------------------------------------------------------------------------


class RuntimeSpec(_Spec):
    provider: Identifier
    model: ModelName
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class PricingReference(_Spec):
    """Which PricingTable prices this release: matched on (provider, pricingVersion)."""

    provider: Identifier
    pricing_version: Identifier


class PromptRefs(_Spec):
    system_ref: ArtifactRef
    template_refs: Annotated[list[ArtifactRef], Field(max_length=64)] = Field(default_factory=list)


class ToolRefs(_Spec):
    manifest_ref: ArtifactRef | None = None
    tool_names: Annotated[list[ModelName], Field(max_length=128)] = Field(default_factory=list)


class AgentReleaseSpec(_Spec):
    """One immutable release of an agent (the reference ``release.yaml``)."""

    agent_id: Identifier
    version: VersionString
    description: Text | None = None
    runtime: RuntimeSpec
    pricing_reference: PricingReference
    checksum: Checksum
    tags: Annotated[dict[str, Annotated[str, StringConstraints(max_length=256)]], Field(max_length=64)] = (
        Field(default_factory=dict)
    )
    prompts: PromptRefs | None = None
    tools: ToolRefs | None = None


class AgentReleaseStatus(_ObservedStatus):
    # Name of the PricingTable that pricingReference resolved to (Ready=True, PricingResolved).
    pricing_table: KubeName | None = None


# --- PricingTable -----------------------------------------------------------------------------------


class PricingEntry(_Spec):
    """USD per 1,000 tokens for one model."""

    model: ModelName
    input_usd_per_1k_tokens: UsdRate = Field(alias="inputUsdPer1kTokens")
    output_usd_per_1k_tokens: UsdRate = Field(alias="outputUsdPer1kTokens")
    cached_input_usd_per_1k_tokens: UsdRate | None = Field(default=None, alias="cachedInputUsdPer1kTokens")


class PricingTableSpec(_Spec):
    provider: Identifier
    pricing_version: Identifier
    entries: Annotated[list[PricingEntry], Field(min_length=1, max_length=256)]

    @model_validator(mode="after")
    def _models_unique(self) -> Self:
        # Mirrors the CRD's list-map key: one entry per model.
        seen: set[str] = set()
        for entry in self.entries:
            if entry.model in seen:
                raise ValueError(f"duplicate pricing entry for model {entry.model!r}")
            seen.add(entry.model)
        return self

    def entry(self, model: str) -> PricingEntry | None:
        return next((e for e in self.entries if e.model == model), None)


class RecordedStatus(_ObservedStatus):
    """Status of the kinds whose every change is appended to the ledger."""

    # Ledger entry that recorded the current spec, and the SHA-256 of its canonical JSON.
    ledger_seq: Seq | None = None
    spec_hash: Checksum | None = None


class PricingTableStatus(RecordedStatus):
    pass


# --- PromotionPolicy --------------------------------------------------------------------------------


class PromotionWindow(_Spec):
    """A recurring Deny (freeze) or Allow (release) window: ``schedule`` starts it, ``duration`` ends it."""

    name: Identifier
    kind: WindowKind
    schedule: CronSchedule
    duration: Duration
    time_zone: TimeZoneName = "UTC"


class Approvers(_Spec):
    users: Annotated[list[Username], Field(max_length=64)] = Field(default_factory=list)
    groups: Annotated[list[Username], Field(max_length=64)] = Field(default_factory=list)


class ApprovalPolicy(_Spec):
    min_approvals: Annotated[int, Field(ge=1, le=10)] = 1
    # None or empty: anyone RBAC lets create promotionapprovals in the namespace.
    approvers: Approvers | None = None


class ConcurrencyPolicy(StrEnum):
    QUEUE = "Queue"
    FORBID = "Forbid"
    REPLACE = "Replace"


class PromotionPolicySpec(_Spec):
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


class ReleasePointerSpec(_Spec):
    """Which release is live for (agentId, environment). agentId and environment are immutable."""

    agent_id: Identifier
    environment: Identifier
    # Absent: the reference default policy (everything unset, requireHighDiffConfidence true).
    policy_ref: LocalObjectReference | None = None
    history_limit: Annotated[int, Field(ge=1, le=MAX_HISTORY_LIMIT)] = DEFAULT_HISTORY_LIMIT


class PointerHistoryEntry(_Status):
    """One pointer move (passing decisions only), newest first in ``status.history``."""

    release_id: ReleaseId
    previous_release_id: ReleaseId | None = None
    action: Action
    ledger_seq: Seq
    updated_at: AwareDatetime
    request: RequestRef | None = None


class PromotionWindowStatus(_Status):
    """Whether the policy's windows allow a promotion now, and when that changes."""

    open: bool
    message: Text
    active_windows: Annotated[
        list[Annotated[str, StringConstraints(max_length=63)]], Field(max_length=32)
    ] = Field(default_factory=list)
    next_change: AwareDatetime | None = None


class ReleasePointerStatus(_ObservedStatus):
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


# --- PromotionRequest -------------------------------------------------------------------------------


class Override(_Spec):
    """Break-glass: decide even while promotion windows are closed (RBAC verb ``override``)."""

    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024), _not_blank(OVERRIDE_REASON_NOT_BLANK_MESSAGE)
    ]


class WaitForEvidence(_Spec):
    timeout: Duration


class PromotionRequestSpec(_Spec):
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

    @model_validator(mode="after")
    def _mirror_cel_rules(self) -> Self:
        # Same rules as the CRD's x-kubernetes-validations, with the same messages.
        if not self.reason.strip():
            raise ValueError(REASON_NOT_BLANK_MESSAGE)
        if self.action is Action.PROMOTE and self.release is None:
            raise ValueError(RELEASE_REQUIRED_MESSAGE)
        return self


class RunSummary(_Status):
    """One side's rollup over the window (reference ``Rollup``)."""

    runs: Count
    cost_per_run_usd: Annotated[float, Field(ge=0)]
    latency_ms_avg: Annotated[float, Field(ge=0)] | None = None
    error_rate: Annotated[float, Field(ge=0, le=1)]


class Evidence(_Status):
    window: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    since: AwareDatetime
    until: AwareDatetime
    baseline: RunSummary
    candidate: RunSummary
    confidence: Confidence
    confidence_reason: Text | None = None


class PolicyResult(_Status):
    """Reference ``PolicyResult``: reasons in the reference's fixed order and exact wording."""

    passed: bool
    reasons: Annotated[list[Text], Field(max_length=32)] = Field(default_factory=list)
    evaluated_at: AwareDatetime


class DecisionWindow(_Status):
    open: bool
    message: Text
    next_open: AwareDatetime | None = None


class AppliedOverride(_Status):
    reason: Text
    by: Annotated[str, StringConstraints(max_length=256)] | None = None


class ApprovalRef(_Status):
    name: Annotated[str, StringConstraints(max_length=253)]
    approver: Annotated[str, StringConstraints(max_length=256)]


class Decision(_Status):
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


class ApprovalStatus(_Status):
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


class EvidenceWait(_Status):
    deadline: AwareDatetime
    missing_baseline_runs: Count | None = None
    missing_candidate_runs: Count | None = None
    last_evaluated_at: AwareDatetime | None = None


class PromotionRequestStatus(_ObservedStatus):
    phase: Phase | None = None
    decision: Decision | None = None
    approval: ApprovalStatus | None = None
    evidence_wait: EvidenceWait | None = None
    message: Annotated[str, StringConstraints(max_length=4096)] | None = None


# --- PromotionApproval ------------------------------------------------------------------------------


class ApprovalRequestRef(_Spec):
    name: KubeName
    uid: Uid


class PromotionApprovalSpec(_Spec):
    """One approver's approval of one request's decision (bound to its UID and decision digest)."""

    request: ApprovalRequestRef
    decision_digest: Checksum
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024), _not_blank(REASON_NOT_BLANK_MESSAGE)
    ]
    # Stamped by the admission webhook from the API server's authentication.
    approver: UserIdentity | None = None


class PromotionApprovalStatus(_ObservedStatus):
    phase: ApprovalPhase | None = None
    message: Annotated[str, StringConstraints(max_length=4096)] | None = None
    ledger_seq: Seq | None = None


# --- Whole objects ----------------------------------------------------------------------------------


class ObjectMeta(_Status):
    """The parts of ``metav1.ObjectMeta`` the operator reads; the rest is ignored."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: AwareDatetime | None = None
    deletion_timestamp: AwareDatetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class _Resource(_Status):
    INFO: ClassVar[ResourceInfo]
    KIND: ClassVar[str]
    PLURAL: ClassVar[str]

    api_version: Literal["flightdeck.dev/v1alpha1"] = API_VERSION
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)


class AgentRelease(_Resource):
    INFO: ClassVar[ResourceInfo] = AGENT_RELEASE
    KIND: ClassVar[str] = AGENT_RELEASE.kind
    PLURAL: ClassVar[str] = AGENT_RELEASE.plural

    kind: Literal["AgentRelease"] = "AgentRelease"
    spec: AgentReleaseSpec
    status: AgentReleaseStatus | None = None


class PricingTable(_Resource):
    INFO: ClassVar[ResourceInfo] = PRICING_TABLE
    KIND: ClassVar[str] = PRICING_TABLE.kind
    PLURAL: ClassVar[str] = PRICING_TABLE.plural

    kind: Literal["PricingTable"] = "PricingTable"
    spec: PricingTableSpec
    status: PricingTableStatus | None = None


class PromotionPolicy(_Resource):
    INFO: ClassVar[ResourceInfo] = PROMOTION_POLICY
    KIND: ClassVar[str] = PROMOTION_POLICY.kind
    PLURAL: ClassVar[str] = PROMOTION_POLICY.plural

    kind: Literal["PromotionPolicy"] = "PromotionPolicy"
    spec: PromotionPolicySpec
    status: PromotionPolicyStatus | None = None


class ReleasePointer(_Resource):
    INFO: ClassVar[ResourceInfo] = RELEASE_POINTER
    KIND: ClassVar[str] = RELEASE_POINTER.kind
    PLURAL: ClassVar[str] = RELEASE_POINTER.plural

    kind: Literal["ReleasePointer"] = "ReleasePointer"
    spec: ReleasePointerSpec
    status: ReleasePointerStatus | None = None


class PromotionRequest(_Resource):
    INFO: ClassVar[ResourceInfo] = PROMOTION_REQUEST
    KIND: ClassVar[str] = PROMOTION_REQUEST.kind
    PLURAL: ClassVar[str] = PROMOTION_REQUEST.plural

    kind: Literal["PromotionRequest"] = "PromotionRequest"
    spec: PromotionRequestSpec
    status: PromotionRequestStatus | None = None


class PromotionApproval(_Resource):
    INFO: ClassVar[ResourceInfo] = PROMOTION_APPROVAL
    KIND: ClassVar[str] = PROMOTION_APPROVAL.kind
    PLURAL: ClassVar[str] = PROMOTION_APPROVAL.plural

    kind: Literal["PromotionApproval"] = "PromotionApproval"
    spec: PromotionApprovalSpec
    status: PromotionApprovalStatus | None = None


Resource = (
    AgentRelease | PricingTable | PromotionPolicy | ReleasePointer | PromotionRequest | PromotionApproval
)
RESOURCES: Final[tuple[type[Resource], ...]] = (
    AgentRelease,
    PricingTable,
    PromotionPolicy,
    ReleasePointer,
    PromotionRequest,
    PromotionApproval,
)
RESOURCES_BY_KIND: Final[dict[str, type[Resource]]] = {model.KIND: model for model in RESOURCES}


def parse_resource(body: Mapping[str, Any]) -> Resource:
    """Validate a whole object (a dict from YAML, the API or kopf's ``body``) by its ``kind``."""
    kind = body.get("kind")
    if body.get("apiVersion") != API_VERSION or not isinstance(kind, str) or kind not in RESOURCES_BY_KIND:
        raise ValueError(
            f"not a {API_VERSION} FlightDeck object: apiVersion={body.get('apiVersion')!r} kind={kind!r}"
        )
    return RESOURCES_BY_KIND[kind].model_validate(body)
