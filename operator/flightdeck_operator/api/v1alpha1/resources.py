"""Whole objects (metadata, spec, status) of every kind, and ``parse_resource``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal

from pydantic import (
    AwareDatetime,
    Field,
)

from flightdeck_operator.api.v1alpha1.common import (
    AGENT_RELEASE,
    API_VERSION,
    NOTIFICATION_SUBSCRIPTION,
    PRICING_TABLE,
    PROMOTION_APPROVAL,
    PROMOTION_POLICY,
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    ResourceInfo,
    StatusBase,
)
from flightdeck_operator.api.v1alpha1.notification_types import (
    NotificationSubscriptionSpec,
    NotificationSubscriptionStatus,
)
from flightdeck_operator.api.v1alpha1.policy_types import (
    PromotionPolicySpec,
    PromotionPolicyStatus,
    ReleasePointerSpec,
    ReleasePointerStatus,
)
from flightdeck_operator.api.v1alpha1.release_types import (
    AgentReleaseSpec,
    AgentReleaseStatus,
    PricingTableSpec,
    PricingTableStatus,
)
from flightdeck_operator.api.v1alpha1.request_types import (
    PromotionApprovalSpec,
    PromotionApprovalStatus,
    PromotionRequestSpec,
    PromotionRequestStatus,
)

# --- Whole objects ----------------------------------------------------------------------------------


class ObjectMeta(StatusBase):
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


class _Resource(StatusBase):
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


class NotificationSubscription(_Resource):
    INFO: ClassVar[ResourceInfo] = NOTIFICATION_SUBSCRIPTION
    KIND: ClassVar[str] = NOTIFICATION_SUBSCRIPTION.kind
    PLURAL: ClassVar[str] = NOTIFICATION_SUBSCRIPTION.plural

    kind: Literal["NotificationSubscription"] = "NotificationSubscription"
    spec: NotificationSubscriptionSpec
    status: NotificationSubscriptionStatus | None = None


Resource = (
    AgentRelease
    | PricingTable
    | PromotionPolicy
    | ReleasePointer
    | PromotionRequest
    | PromotionApproval
    | NotificationSubscription
)
RESOURCES: Final[tuple[type[Resource], ...]] = (
    AgentRelease,
    PricingTable,
    PromotionPolicy,
    ReleasePointer,
    PromotionRequest,
    PromotionApproval,
    NotificationSubscription,
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
