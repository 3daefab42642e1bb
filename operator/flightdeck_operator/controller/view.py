"""What the controller decides from: a plain snapshot of one namespace, taken from kopf's indexes
on the event loop (indexes are not thread-safe) and handed to worker threads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flightdeck_operator.api.v1alpha1 import (
    AgentReleaseSpec,
    PricingTableSpec,
    PromotionPolicySpec,
    ReleasePointerSpec,
)


@dataclass(frozen=True, slots=True)
class ApprovalObject:
    """A PromotionApproval as the index holds it (spec unparsed: judging it reports bad specs)."""

    name: str
    uid: str
    created: str
    generation: int | None
    spec: Mapping[str, Any]
    phase: str | None = None
    conditions: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class NamespaceView:
    """What the indexes hold for one namespace, keyed by object name (pricing: provider/version;
    approvals: the name of the request they approve)."""

    namespace: str
    pointers: Mapping[str, ReleasePointerSpec]
    releases: Mapping[str, AgentReleaseSpec]
    policies: Mapping[str, PromotionPolicySpec]
    pricing_tables: Mapping[tuple[str, str], PricingTableSpec]
    approvals: Mapping[str, Sequence[ApprovalObject]] = field(default_factory=dict)
    # creationTimestamp of each pointer (RFC 3339, sorts as text): which of two duplicates came first.
    pointer_created: Mapping[str, str] = field(default_factory=dict)
