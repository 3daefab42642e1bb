"""Names, patterns shared with crds/*.yaml, base models and the status pieces every kind shares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

from flightdeck_operator.api.conditions import ConditionStatus, Phase
from flightdeck_operator.engine.models import PromotionAction
from flightdeck_operator.engine.windows import (
    DURATION_PATTERN,
    check_schedule,
    check_time_zone,
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


def not_blank(message: str) -> AfterValidator:
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
NOTIFICATION_SUBSCRIPTION: Final = ResourceInfo(
    "NotificationSubscription", "notificationsubscriptions", "notificationsubscription", ("nsub",)
)

# Plain strings for kopf decorators: @kopf.on.create(GROUP, VERSION, PROMOTION_REQUEST_PLURAL).
AGENT_RELEASE_PLURAL: Final = AGENT_RELEASE.plural
PRICING_TABLE_PLURAL: Final = PRICING_TABLE.plural
PROMOTION_POLICY_PLURAL: Final = PROMOTION_POLICY.plural
RELEASE_POINTER_PLURAL: Final = RELEASE_POINTER.plural
PROMOTION_REQUEST_PLURAL: Final = PROMOTION_REQUEST.plural
PROMOTION_APPROVAL_PLURAL: Final = PROMOTION_APPROVAL.plural
NOTIFICATION_SUBSCRIPTION_PLURAL: Final = NOTIFICATION_SUBSCRIPTION.plural


def to_wire(model: BaseModel) -> dict[str, Any]:
    """camelCase, JSON-ready, ``None`` omitted: what the API server expects in a body or patch."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class ModelBase(BaseModel):
    def to_wire(self) -> dict[str, Any]:
        return to_wire(self)


class SpecBase(ModelBase):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True, extra="forbid"
    )


class StatusBase(ModelBase):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True, extra="ignore"
    )


# --- Shared status pieces ---------------------------------------------------------------------------


class Condition(StatusBase):
    """``metav1.Condition``. ``flightdeck_operator.api.conditions`` builds them."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    status: ConditionStatus
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    last_transition_time: AwareDatetime
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    message: Annotated[str, StringConstraints(max_length=32768)]


Conditions = Annotated[list[Condition], Field(max_length=32)]


class ObservedStatus(StatusBase):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    conditions: Conditions = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class LocalObjectReference(SpecBase):
    """A name in the referencing object's namespace."""

    name: KubeName


class UserIdentity(SpecBase):
    """Who created an object, as the API server authenticated them (stamped by the admission
    webhook; never taken from the user)."""

    username: Username
    uid: Annotated[str, StringConstraints(max_length=128)] | None = None
    groups: Annotated[list[Annotated[str, StringConstraints(max_length=256)]], Field(max_length=64)] = Field(
        default_factory=list
    )
    # The trusted delegate (the HTTP sidecar) that created the object on this user's behalf.
    via: Annotated[str, StringConstraints(max_length=256)] | None = None


class RequestRef(StatusBase):
    """The PromotionRequest that caused a pointer move (uid: exactly-once across re-creations)."""

    name: KubeName
    uid: Uid
