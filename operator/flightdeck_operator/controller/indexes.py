"""kopf indexes: what the controller decides from, keyed by namespace (requests by namespace and
pointer). Indexes are complete before any resource handler runs; snapshots of one namespace are taken
on the event loop (indexes are not thread-safe) and handed to worker threads as plain values.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from flightdeck_operator.api.automation import AUTOMATION_LABEL, TRIGGER_ANNOTATION
from flightdeck_operator.api.conditions import (
    TERMINAL_PHASES,
    ApprovalPhase,
    ConditionType,
    Phase,
    find_condition,
)
from flightdeck_operator.api.retention import RETAIN_ANNOTATION, DecidedRequest
from flightdeck_operator.api.v1alpha1 import (
    AGENT_RELEASE_PLURAL,
    GROUP,
    PRICING_TABLE_PLURAL,
    PROMOTION_APPROVAL_PLURAL,
    PROMOTION_POLICY_PLURAL,
    PROMOTION_REQUEST_PLURAL,
    RELEASE_POINTER_PLURAL,
    VERSION,
    AgentReleaseSpec,
    PricingTableSpec,
    PromotionPolicySpec,
    ReleasePointerSpec,
)
from flightdeck_operator.controller.pending import PendingRequest
from flightdeck_operator.controller.view import ApprovalObject, NamespaceView, PointerTarget

Index = Mapping[Any, Any]
TERMINAL = frozenset(p.value for p in TERMINAL_PHASES)


def undecided(status: Mapping[str, Any], **_: Any) -> bool:
    return status.get("phase") not in TERMINAL


@dataclass(frozen=True, slots=True)
class IndexedPointer:
    """A ReleasePointer as the index holds it: what the sweep compares with the ledger and the
    namespace without a read (the release, seq, window and Ready reason its status shows)."""

    name: str
    spec: ReleasePointerSpec
    created: str  # creationTimestamp (RFC 3339, sorts as text)
    release_id: str | None
    ledger_seq: int | None
    window: dict[str, Any] | None
    ready_reason: str | None
    # What verification reads and writes without a GET: the status it shows and its version.
    resource_version: str | None = None
    conditions: tuple[dict[str, Any], ...] = ()
    verification: dict[str, Any] | None = None
    pipeline: dict[str, Any] | None = None


@kopf.index(GROUP, VERSION, RELEASE_POINTER_PLURAL)
async def pointers_by_namespace(
    namespace: str | None, name: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[Any, Any]:
    window = status.get("promotionWindow")
    ready = find_condition(status.get("conditions") or (), ConditionType.READY.value)
    return {
        namespace: IndexedPointer(
            name=name,
            spec=ReleasePointerSpec.model_validate(spec),
            created=str(meta.get("creationTimestamp")),
            release_id=status.get("releaseId"),
            ledger_seq=status.get("ledgerSeq"),
            window=None if window is None else dict(window),
            ready_reason=None if ready is None else str(ready.get("reason")),
            resource_version=meta.get("resourceVersion"),
            conditions=tuple(copy.deepcopy(dict(c)) for c in status.get("conditions") or ()),
            verification=_copied(status.get("verification")),
            pipeline=_copied(status.get("pipeline")),
        )
    }


@kopf.index(GROUP, VERSION, RELEASE_POINTER_PLURAL)
async def pointers_by_target(
    namespace: str | None, name: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[Any, Any]:
    """Pointers by (namespace, agentId, environment): a pointer's watch event finds its duplicates
    without scanning the namespace (5,000 pointers resumed at start were quadratic)."""
    ready = find_condition(status.get("conditions") or (), ConditionType.READY.value)
    # Parsed as pointers_by_namespace parses it: a spec that does not parse is in neither index,
    # so the two never disagree on which pointer governs.
    parsed = ReleasePointerSpec.model_validate(spec)
    key = (namespace or "", parsed.agent_id, parsed.environment)
    return {
        key: PointerTarget(
            name=name,
            created=str(meta.get("creationTimestamp")),
            agent_id=parsed.agent_id,
            environment=parsed.environment,
            policy=parsed.policy_ref.name if parsed.policy_ref is not None else None,
            ready_reason=None if ready is None else str(ready.get("reason")),
        )
    }


def _target_key(namespace: str, spec: Mapping[str, Any]) -> tuple[str, str, str]:
    return (namespace, str(spec.get("agentId") or ""), str(spec.get("environment") or ""))


def same_target(indexes: Mapping[str, Index], namespace: str, spec: Mapping[str, Any]) -> list[PointerTarget]:
    """The pointers of the (agentId, environment) in ``spec``, this one among them unless deleted."""
    return list(indexes["pointers_by_target"].get(_target_key(namespace, spec), ()))


def policy_names(indexes: Mapping[str, Index], namespace: str) -> frozenset[str]:
    return frozenset(name for name, _ in indexes["policies_by_namespace"].get(namespace, ()))


def _copied(value: Any) -> dict[str, Any] | None:
    return None if value is None else copy.deepcopy(dict(value))


@kopf.index(GROUP, VERSION, AGENT_RELEASE_PLURAL)
async def releases_by_namespace(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Any, Any]:
    return {namespace: (name, AgentReleaseSpec.model_validate(spec))}


@kopf.index(GROUP, VERSION, PROMOTION_POLICY_PLURAL)
async def policies_by_namespace(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Any, Any]:
    return {namespace: (name, PromotionPolicySpec.model_validate(spec))}


@kopf.index(GROUP, VERSION, PRICING_TABLE_PLURAL)
async def pricing_tables_by_namespace(
    namespace: str | None, name: str, meta: kopf.Meta, spec: kopf.Spec, **_: Any
) -> dict[Any, Any]:
    table = PricingTableSpec.model_validate(spec)
    return {namespace: IndexedPricingTable(name, str(meta.get("creationTimestamp")), table)}


@dataclass(frozen=True, slots=True)
class IndexedPricingTable:
    name: str
    created: str  # creationTimestamp: of two tables for one (provider, pricingVersion), the first prices
    table: PricingTableSpec

    @property
    def key(self) -> tuple[str, str]:
        return (self.table.provider, self.table.pricing_version)


def pricing_tables_in(index: Index, namespace: str | None) -> dict[tuple[str, str], IndexedPricingTable]:
    """The table that prices each (provider, pricingVersion): the first created, then by name."""
    chosen: dict[tuple[str, str], IndexedPricingTable] = {}
    for entry in sorted(index.get(namespace, ()), key=lambda e: (e.created, e.name)):
        chosen.setdefault(entry.key, entry)
    return chosen


@kopf.index(GROUP, VERSION, PROMOTION_REQUEST_PLURAL, when=undecided)
async def pending_requests_by_pointer(
    namespace: str | None,
    name: str,
    uid: str,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> dict[Any, Any]:
    """Undecided requests only: decided ones leave the index, so memory stays flat as they pile up."""
    return {
        (namespace, spec.get("pointer")): PendingRequest(
            name=name,
            uid=uid,
            created=str(meta.get("creationTimestamp")),
            generation=meta.get("generation"),
            spec=copy.deepcopy(dict(spec)),
            conditions=copy.deepcopy(list(status.get("conditions") or [])),
            shown={key: copy.deepcopy(status.get(key)) for key in SHOWN_KEYS if status.get(key) is not None},
            labels=_kept(meta.get("labels"), AUTOMATION_LABEL),
            annotations=_kept(meta.get("annotations"), TRIGGER_ANNOTATION),
        )
    }


def _kept(values: Mapping[str, Any] | None, *keys: str) -> dict[str, str]:
    """Only the keys the controller reads: an index entry stays small."""
    return {key: str(values[key]) for key in keys if values and key in values}


SHOWN_KEYS = ("phase", "message", "approval", "evidenceWait")

# Outcomes the ledger holds (Failed, Superseded and dry runs decided nothing and are not ledgered).
LEDGERED_PHASES = frozenset({Phase.PROMOTED.value, Phase.ROLLED_BACK.value, Phase.BLOCKED.value})


def ledgered_outcome(status: Mapping[str, Any], **_: Any) -> bool:
    return status.get("phase") in LEDGERED_PHASES and bool((status.get("decision") or {}).get("decidedAt"))


@kopf.index(GROUP, VERSION, PROMOTION_REQUEST_PLURAL, when=ledgered_outcome)
async def decided_requests_by_namespace(
    namespace: str | None,
    name: str,
    uid: str,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> dict[Any, Any]:
    """Decided requests, for retention: a few fields each, read without parsing (every failover
    indexes them all before deciding anything, so this must stay cheap)."""
    decided_at = dt.datetime.fromisoformat(str(status["decision"]["decidedAt"]).replace("Z", "+00:00"))
    ttl = spec.get("ttlSecondsAfterDecided")
    created = meta.get("creationTimestamp")
    return {
        namespace: DecidedRequest(
            namespace=namespace or "",
            name=name,
            uid=uid,
            pointer=str(spec.get("pointer") or ""),
            decided_at=decided_at,
            ttl_seconds=ttl if isinstance(ttl, int) else None,
            retain=(meta.get("annotations") or {}).get(RETAIN_ANNOTATION) == "true",
            created_at=dt.datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else None,
        )
    }


def may_still_count(status: Mapping[str, Any], **_: Any) -> bool:
    """Unjudged approvals (to judge) and accepted ones (to mark stale when the digest moves on);
    stale, rejected and blocked ones are final and leave the index."""
    return status.get("phase") in (None, "", ApprovalPhase.ACCEPTED.value)


@kopf.index(GROUP, VERSION, PROMOTION_APPROVAL_PLURAL, when=may_still_count)
async def approvals_by_namespace(
    namespace: str | None,
    name: str,
    uid: str,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> dict[Any, Any]:
    """Approvals are few (a handful per promotion that needs them): grouped per request on use."""
    return {
        namespace: ApprovalObject(
            name=name,
            uid=uid,
            created=str(meta.get("creationTimestamp")),
            generation=meta.get("generation"),
            spec=copy.deepcopy(dict(spec)),
            phase=status.get("phase"),
            conditions=copy.deepcopy(list(status.get("conditions") or [])),
        )
    }


def namespace_view(
    namespace: str,
    pointers_by_namespace: Index,
    releases_by_namespace: Index,
    policies_by_namespace: Index,
    pricing_tables_by_namespace: Index,
    approvals_by_namespace: Index | None = None,
) -> NamespaceView:
    """A plain-dict snapshot of one namespace, taken on the event loop (indexes are not thread-safe)."""
    approvals: dict[str, list[ApprovalObject]] = defaultdict(list)
    for approval in (approvals_by_namespace or {}).get(namespace, ()):
        approvals[str((approval.spec.get("request") or {}).get("name"))].append(approval)
    return NamespaceView(
        namespace=namespace,
        pointers={p.name: p.spec for p in pointers_by_namespace.get(namespace, ())},
        pointer_created={p.name: p.created for p in pointers_by_namespace.get(namespace, ())},
        releases=dict(releases_by_namespace.get(namespace, ())),
        policies=dict(policies_by_namespace.get(namespace, ())),
        pricing_tables={
            key: entry.table
            for key, entry in pricing_tables_in(pricing_tables_by_namespace, namespace).items()
        },
        approvals=dict(approvals),
    )


def view_of(namespace: str, indexes: Mapping[str, Index]) -> NamespaceView:
    return namespace_view(
        namespace,
        indexes["pointers_by_namespace"],
        indexes["releases_by_namespace"],
        indexes["policies_by_namespace"],
        indexes["pricing_tables_by_namespace"],
        indexes["approvals_by_namespace"],
    )


INDEX_NAMES = (
    "pointers_by_namespace",
    "pointers_by_target",
    "releases_by_namespace",
    "policies_by_namespace",
    "pricing_tables_by_namespace",
    "pending_requests_by_pointer",
    "approvals_by_namespace",
    "decided_requests_by_namespace",
)


def indexes_of(kwargs: Mapping[str, Any]) -> dict[str, Index]:
    """kopf passes each index as a keyword argument named after its indexer."""
    return {name: kwargs[name] for name in INDEX_NAMES}
