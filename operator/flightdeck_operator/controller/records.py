"""Bookkeeping outside decisions: policy and pricing changes go to the ledger (the reference
audits neither consistently), and releases report whether their pricing table resolves."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flightdeck_operator.api.conditions import (
    ConditionType,
    Reason,
    dependency_missing,
    find_condition,
    ready,
    stalled,
)
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
from flightdeck_operator.kube.errors import NotFound
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

log = logging.getLogger(__name__)

CHANGE_REASON_ANNOTATION = "flightdeck.dev/change-reason"


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

    def record(self, kind: LedgerKind, body: Mapping[str, Any], *, duplicate_of: str | None = None) -> None:
        """Append one ledger entry per (object UID, generation), then show it in the status.
        ``duplicate_of``: an older PricingTable with the same (provider, pricingVersion) prices
        instead of this one (recorded all the same, shown ``Stalled`` with ``DuplicatePricingTable``)."""
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
        if duplicate_of is None:
            update = ready(
                Reason.RECORDED, f"Generation {generation} recorded in the audit ledger as seq {entry.seq}"
            )
        else:
            update = stalled(
                Reason.DUPLICATE_PRICING_TABLE,
                f'PricingTable "{duplicate_of}" (created first) has the same provider and pricingVersion '
                "and prices them; this one is ignored. Delete one of the two",
            )
        shown = find_condition(status.get("conditions") or (), ConditionType.READY.value)
        if (
            status.get("observedGeneration") == generation
            and status.get("ledgerSeq") == entry.seq
            and shown is not None
            and shown.get("reason") == str(update.set[0].reason)
        ):
            return
        patch = {
            "observedGeneration": generation,
            "ledgerSeq": entry.seq,
            "specHash": sha256_hex(canonical_json(spec)),
            "conditions": update.apply(status.get("conditions"), self.clock(), generation),
        }
        if self._patch_status(info.plural, metadata, patch) and duplicate_of is not None:
            self.gateway.post_event(
                body,
                kind=info.kind,
                event_type="Warning",
                reason=Reason.DUPLICATE_PRICING_TABLE.value,
                message=update.set[0].message,
            )

    def resolve_release(self, body: Mapping[str, Any], tables: Mapping[tuple[str, str], str]) -> None:
        """Ready=True once the pricingReference names a PricingTable. Until then Ready=False with
        ``PricingTableMissing``: said once (an INFO log line and a warning Event when it starts), and
        resolved again when a PricingTable arrives (``tables`` changes), not by retrying."""
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
        shown = find_condition(status.get("conditions") or (), ConditionType.READY.value)
        if (
            shown is not None
            and (shown.get("reason"), shown.get("message")) == (str(update.set[0].reason), message)
            and status.get("observedGeneration") == generation
        ):
            return  # says so already: no write, no Event, no log line
        patch["conditions"] = update.apply(status.get("conditions"), self.clock(), generation)
        if not self._patch_status(AGENT_RELEASE.plural, metadata, patch) or table is not None:
            return
        log.info(
            "AgentRelease %s/%s waits for its PricingTable: %s",
            metadata["namespace"],
            metadata["name"],
            message,
        )
        self.gateway.post_event(
            body,
            kind=AGENT_RELEASE.kind,
            event_type="Warning",
            reason=Reason.PRICING_TABLE_MISSING.value,
            message=f"{message}; the release is resolved again when one is created",
        )

    def _patch_status(self, plural: str, metadata: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
        """Patch the status; False when the object is gone meanwhile (deleted right after it was
        created or changed: expected, and the ledger keeps what was recorded)."""
        try:
            self.gateway.patch_status(plural, metadata["namespace"], metadata["name"], patch)
        except NotFound:
            log.info(
                "%s/%s was deleted before its status was written", metadata["namespace"], metadata["name"]
            )
            return False
        return True
