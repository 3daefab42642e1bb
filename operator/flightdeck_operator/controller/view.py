"""What the controller decides from: a plain snapshot of one namespace, taken from kopf's indexes
on the event loop (indexes are not thread-safe) and handed to worker threads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
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
class PointerTarget:
    """A ReleasePointer among those of its (agentId, environment), as the ``pointers_by_target``
    index holds it: what telling the governing pointer from duplicates needs."""

    name: str
    created: str  # creationTimestamp (RFC 3339, sorts as text)
    agent_id: str
    environment: str
    policy: str | None  # spec.policyRef.name
    ready_reason: str | None  # the reason of the Ready condition its status shows


@dataclass(frozen=True)  # not slots: ``governing`` is cached on the instance
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

    @cached_property
    def governing(self) -> Mapping[tuple[str, str], str]:
        """The governing pointer of each (agentId, environment) (``api.pointer_rules``), computed
        once per snapshot: asking per pointer made a sweep of 5,000 pointers quadratic."""
        first: dict[tuple[str, str], tuple[str, str]] = {}
        for name, spec in self.pointers.items():
            key, candidate = (spec.agent_id, spec.environment), (self.pointer_created.get(name, ""), name)
            if key not in first or candidate < first[key]:
                first[key] = candidate
        return {key: name for key, (_, name) in first.items()}
