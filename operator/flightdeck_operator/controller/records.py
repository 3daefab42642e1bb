"""Bookkeeping outside decisions: policy and pricing changes go to the ledger (the reference
audits neither consistently), and releases report whether their pricing table resolves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from flightdeck_operator.api.conditions import Reason, dependency_missing, ready
from flightdeck_operator.api.to_engine import engine_policy
from flightdeck_operator.api.v1alpha1 import (
    AGENT_RELEASE,
    PRICING_TABLE,
    PROMOTION_POLICY,
    AgentReleaseSpec,
    PromotionPolicySpec,
)
from flightdeck_operator.engine.ledger import (
    LedgerKind,
    LedgerRecord,
    canonical_json,
    change_key,
    policy_digest,
    sha256_hex,
)
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

CHANGE_REASON_ANNOTATION = "flightdeck.dev/change-reason"
PRICING_RETRY_SECONDS = 15.0


def last_manager(metadata: Mapping[str, Any]) -> str:
    """Who last wrote the object's spec, as far as the API server knows (the newest managedFields
    entry that owns spec fields). Status writes and kopf's annotation patches own no spec field,
    so they never pass for the author of a change."""
    entries = [e for e in metadata.get("managedFields") or () if e.get("manager")]
    spec_writers = [e for e in entries if not e.get("subresource") and "f:spec" in (e.get("fieldsV1") or {})]
    entries = spec_writers or entries
    if not entries:
        return "unknown"
    newest = max(entries, key=lambda e: str(e.get("time") or ""))
    return str(newest["manager"])


@dataclass
class ChangeRecorder:
    store: Store
    gateway: KubeGateway
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    def record(self, kind: LedgerKind, body: Mapping[str, Any]) -> None:
        """Append one ledger entry per (object UID, generation), then show it in the status."""
        metadata = body["metadata"]
        spec = dict(body.get("spec") or {})
        generation = int(metadata.get("generation") or 1)
        info = PROMOTION_POLICY if kind is LedgerKind.POLICY_CHANGE else PRICING_TABLE
        digest = None
        if kind is LedgerKind.POLICY_CHANGE:
            digest = policy_digest(engine_policy(metadata["name"], PromotionPolicySpec.model_validate(spec)))
        entry = self.store.append(
            LedgerRecord(
                kind=kind,
                idempotency_key=change_key(kind, metadata["uid"], generation),
                actor=last_manager(metadata),
                namespace=metadata["namespace"],
                reason=(metadata.get("annotations") or {}).get(CHANGE_REASON_ANNOTATION, ""),
                policy_digest=digest,
                details={"kind": info.kind, "name": metadata["name"], "generation": generation, "spec": spec},
                created_at=self.clock(),
            )
        )
        status = body.get("status") or {}
        if status.get("observedGeneration") == generation and status.get("ledgerSeq") == entry.seq:
            return
        update = ready(
            Reason.RECORDED, f"Generation {generation} recorded in the audit ledger as seq {entry.seq}"
        )
        self.gateway.patch_status(
            info.plural,
            metadata["namespace"],
            metadata["name"],
            {
                "observedGeneration": generation,
                "ledgerSeq": entry.seq,
                "specHash": sha256_hex(canonical_json(spec)),
                "conditions": update.apply(status.get("conditions"), self.clock(), generation),
            },
        )

    def resolve_release(self, body: Mapping[str, Any], tables: Mapping[tuple[str, str], str]) -> None:
        """Ready=True once the pricingReference names a PricingTable; retried until it does."""
        metadata = body["metadata"]
        spec = AgentReleaseSpec.model_validate(body.get("spec") or {})
        reference = spec.pricing_reference
        table = tables.get((reference.provider, reference.pricing_version))
        generation = metadata.get("generation")
        status = body.get("status") or {}
        if table is None:
            message = (
                f"No PricingTable for {reference.provider}/{reference.pricing_version} in namespace "
                f'"{metadata["namespace"]}"'
            )
            update = dependency_missing(Reason.PRICING_TABLE_MISSING, message)
            patch: dict[str, Any] = {"observedGeneration": generation, "pricingTable": None}
        else:
            message = f"Priced by PricingTable {table}"
            update = ready(Reason.PRICING_RESOLVED, message)
            patch = {"observedGeneration": generation, "pricingTable": table}
        patch["conditions"] = update.apply(status.get("conditions"), self.clock(), generation)
        self.gateway.patch_status(AGENT_RELEASE.plural, metadata["namespace"], metadata["name"], patch)
        if table is None:
            raise kopf.TemporaryError(message, delay=PRICING_RETRY_SECONDS)
