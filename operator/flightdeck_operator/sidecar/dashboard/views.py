"""What each dashboard page shows, read from the cluster and the store: plain values for templates.

Blocking (Kubernetes client, store); the routes run these in worker threads. Nothing here writes:
every write the dashboard offers goes through the HTTP API's routes and their RBAC checks.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from flightdeck_operator.api.conditions import TERMINAL_PHASES, ConditionType, find_condition
from flightdeck_operator.api.v1alpha1 import (
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    ReleasePointerSpec,
)
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.kube.gateway import Body
from flightdeck_operator.sidecar.ledger_health import LedgerHealth
from flightdeck_operator.sidecar.state import SidecarState

TERMINAL = frozenset(phase.value for phase in TERMINAL_PHASES)


@dataclass(frozen=True, slots=True)
class WaitingRequest:
    name: str
    phase: str
    release: str | None
    approved: int
    required: int
    digest: str | None


@dataclass(frozen=True, slots=True)
class VerificationCell:
    """The last check of a pointer's live release (``status.verification``), as the page shows it."""

    verdict: str
    release_id: str
    last_checked_at: str | None
    consecutive_failures: int
    failure_threshold: int
    verified_since: str | None
    reasons: tuple[str, ...]
    runs: int | None
    degraded: bool
    # A confirmed failure: what was done (Rollback, Alert), the request, why only an alert.
    action: str | None = None
    request: str | None = None
    held: str | None = None


@dataclass(frozen=True, slots=True)
class PipelineCell:
    """Where the release upstream of a following pointer stands (``status.pipeline``)."""

    upstream: str
    state: str
    message: str
    release_id: str | None
    soak_due: str | None
    request: str | None


@dataclass(frozen=True, slots=True)
class PointerRow:
    name: str
    agent_id: str
    environment: str
    release_id: str | None
    previous_release_id: str | None
    moved_at: dt.datetime | None
    moved_by: str | None
    ledger_seq: int | None
    policy: str | None
    window_open: bool | None
    window_message: str | None
    ready_status: str | None
    ready_reason: str | None
    ready_message: str | None
    waiting: tuple[WaitingRequest, ...]
    verification: VerificationCell | None = None
    pipeline: PipelineCell | None = None

    @property
    def healthy(self) -> bool:
        return self.ready_status == "True"


@dataclass(frozen=True, slots=True)
class Overview:
    namespace: str
    pointers: tuple[PointerRow, ...]  # the page shown
    matching: int  # pointers that match the filter
    total: int
    with_release: int
    waiting: int
    offset: int
    ledger: LedgerHealth
    generated_at: dt.datetime


def overview(
    state: SidecarState, health: LedgerHealth, now: dt.datetime, *, match: str, offset: int, limit: int
) -> Overview:
    """Every pointer with its live release, who moved it and when (the ledger), its policy, whether
    promotion is open, and the requests waiting on it; with the ledger's health. One page of
    pointers at a time: who moved each shown pointer is read by the ``ledgerSeq`` its status shows
    (primary-key lookups), so a page costs the same with 100 or 100,000 ledger entries."""
    bodies = state.gateway.list_objects(RELEASE_POINTER.plural, state.namespace, cached=True)
    requests = state.gateway.list_objects(PROMOTION_REQUEST.plural, state.namespace, cached=True)
    waiting = _waiting_by_pointer(requests)
    bodies.sort(key=lambda b: (_spec_of(b), b["metadata"]["name"]))
    needle = match.strip().lower()
    matching = [b for b in bodies if not needle or needle in _searchable(b)]
    shown = matching[offset : offset + limit]
    seqs = [s for s in ((b.get("status") or {}).get("ledgerSeq") for b in shown) if isinstance(s, int)]
    entries = state.store.ledger_entries_by_seq(seqs)
    rows = [
        _pointer_row(
            b,
            entries.get((b.get("status") or {}).get("ledgerSeq") or 0),
            waiting.get(b["metadata"]["name"], ()),
        )
        for b in shown
    ]
    return Overview(
        namespace=state.namespace,
        pointers=tuple(rows),
        matching=len(matching),
        total=len(bodies),
        with_release=sum(1 for b in bodies if (b.get("status") or {}).get("releaseId")),
        waiting=sum(len(w) for w in waiting.values()),
        offset=offset,
        ledger=health,
        generated_at=now,
    )


def _spec_of(body: Body) -> tuple[str, str]:
    spec = body.get("spec") or {}
    return (str(spec.get("agentId")), str(spec.get("environment")))


def _searchable(body: Body) -> str:
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    parts = (body["metadata"]["name"], spec.get("agentId"), spec.get("environment"), status.get("releaseId"))
    return " ".join(str(part) for part in parts if part).lower()


def _pointer_row(body: Body, head: LedgerEntry | None, waiting: Iterable[WaitingRequest]) -> PointerRow:
    spec_raw = body.get("spec") or {}
    try:
        spec = ReleasePointerSpec.model_validate(spec_raw)
        agent_id, environment = spec.agent_id, spec.environment
        policy = spec.policy_ref.name if spec.policy_ref is not None else None
    except ValidationError:
        agent_id, environment, policy = str(spec_raw.get("agentId")), str(spec_raw.get("environment")), None
    status = body.get("status") or {}
    window = status.get("promotionWindow") or {}
    ready = find_condition(status.get("conditions") or (), ConditionType.READY.value) or {}
    return PointerRow(
        name=body["metadata"]["name"],
        agent_id=agent_id,
        environment=environment,
        release_id=status.get("releaseId"),
        previous_release_id=status.get("previousReleaseId"),
        moved_at=head.created_at if head is not None else None,
        moved_by=head.actor if head is not None else None,
        ledger_seq=status.get("ledgerSeq"),
        policy=policy,
        window_open=window.get("open") if window else None,
        window_message=window.get("message") if window else None,
        ready_status=ready.get("status"),
        ready_reason=ready.get("reason"),
        ready_message=ready.get("message"),
        waiting=tuple(waiting),
        verification=_verification_cell(status),
        pipeline=_pipeline_cell(status.get("pipeline")),
    )


def _verification_cell(status: Mapping[str, Any]) -> VerificationCell | None:
    shown = status.get("verification")
    if not isinstance(shown, Mapping) or not shown.get("verdict"):
        return None
    failure = shown.get("failure") or {}
    evidence = shown.get("evidence") or {}
    degraded = find_condition(status.get("conditions") or (), ConditionType.DEGRADED.value) or {}
    return VerificationCell(
        verdict=str(shown.get("verdict")),
        release_id=str(shown.get("releaseId")),
        last_checked_at=shown.get("lastCheckedAt"),
        consecutive_failures=int(shown.get("consecutiveFailures") or 0),
        failure_threshold=int(shown.get("failureThreshold") or 0),
        verified_since=shown.get("verifiedSince"),
        reasons=tuple(str(r) for r in shown.get("reasons") or ()),
        runs=evidence.get("runs"),
        degraded=degraded.get("status") == "True",
        action=failure.get("action"),
        request=failure.get("request"),
        held=failure.get("held"),
    )


def _pipeline_cell(shown: Any) -> PipelineCell | None:
    if not isinstance(shown, Mapping) or not shown.get("state"):
        return None
    return PipelineCell(
        upstream=str(shown.get("upstream")),
        state=str(shown.get("state")),
        message=str(shown.get("message") or ""),
        release_id=shown.get("releaseId"),
        soak_due=shown.get("soakDue"),
        request=shown.get("request"),
    )


def _waiting_by_pointer(requests: Iterable[Body]) -> dict[str, list[WaitingRequest]]:
    waiting: dict[str, list[WaitingRequest]] = defaultdict(list)
    for body in requests:
        status = body.get("status") or {}
        phase = status.get("phase") or "Pending"
        if phase in TERMINAL:
            continue
        spec = body.get("spec") or {}
        approval = status.get("approval") or {}
        waiting[str(spec.get("pointer"))].append(
            WaitingRequest(
                name=body["metadata"]["name"],
                phase=phase,
                release=spec.get("release"),
                approved=len(approval.get("approvedBy") or ()),
                required=int(approval.get("required") or 0),
                digest=approval.get("decisionDigest"),
            )
        )
    return waiting


# --- requests and approvals -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestRow:
    name: str
    pointer: str
    action: str
    release: str | None
    phase: str
    reason: str
    requested_by: str | None
    created_at: str | None
    message: str | None
    policy_reasons: tuple[str, ...]
    evidence: Mapping[str, Any] | None
    approval: Mapping[str, Any] | None
    # Who approved a decided request (the decision's record), or the approvals counted so far.
    approved_by: tuple[str, ...]
    ledger_seq: int | None

    @property
    def awaits_approval(self) -> bool:
        return self.phase == "AwaitingApproval"

    @property
    def decided(self) -> bool:
        return self.phase in TERMINAL


def requests(state: SidecarState, limit: int) -> tuple[RequestRow, ...]:
    """Waiting requests first (oldest first: the next to be decided), then decided ones, newest first."""
    rows = [
        _request_row(body) for body in state.gateway.list_objects(PROMOTION_REQUEST.plural, state.namespace)
    ]
    waiting = sorted((r for r in rows if not r.decided), key=lambda r: (r.created_at or "", r.name))
    decided = sorted((r for r in rows if r.decided), key=lambda r: (r.created_at or "", r.name), reverse=True)
    return tuple(waiting + decided[: max(0, limit - len(waiting))])


def _request_row(body: Body) -> RequestRow:
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    decision = status.get("decision") or {}
    requested_by = (spec.get("requestedBy") or {}).get("username") or spec.get("actor")
    approval = status.get("approval") or {}
    decided_approvals = [a.get("approver") for a in decision.get("approvals") or ()]
    approved_by = decided_approvals or list(approval.get("approvedBy") or ())
    return RequestRow(
        name=body["metadata"]["name"],
        pointer=str(spec.get("pointer")),
        action=str(spec.get("action") or "promote"),
        release=spec.get("release"),
        phase=str(status.get("phase") or "Pending"),
        reason=str(spec.get("reason") or ""),
        requested_by=requested_by,
        created_at=body["metadata"].get("creationTimestamp"),
        message=status.get("message"),
        policy_reasons=tuple((decision.get("policy") or {}).get("reasons") or ()),
        evidence=decision.get("evidence"),
        approval=status.get("approval"),
        approved_by=tuple(str(name) for name in approved_by if name),
        ledger_seq=decision.get("ledgerSeq"),
    )


# --- the ledger -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerRow:
    seq: int
    kind: str
    created_at: dt.datetime
    actor: str
    pointer: str | None
    release_id: str | None
    baseline_release_id: str | None
    reason: str
    # What a non-decision entry is about: the object a policy or pricing change recorded, or an
    # approval's verdict.
    subject: str | None
    passed: bool | None
    policy_reasons: tuple[str, ...]
    evidence: Mapping[str, Any] | None
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class LedgerPage:
    rows: tuple[LedgerRow, ...]
    pointers: tuple[str, ...]
    kinds: tuple[str, ...] = field(default=tuple(kind.value for kind in LedgerKind))


def ledger(state: SidecarState, *, pointer: str | None, kind: str | None, limit: int) -> LedgerPage:
    ledger_kind = LedgerKind(kind) if kind in {k.value for k in LedgerKind} else None
    entries = state.store.list_ledger(
        namespace=state.namespace, pointer=pointer or None, kind=ledger_kind, limit=limit
    )
    pointers = sorted(
        {name for (namespace, name) in state.store.pointer_heads() if namespace == state.namespace}
    )
    return LedgerPage(rows=tuple(_ledger_row(entry) for entry in entries), pointers=tuple(pointers))


def _ledger_row(entry: LedgerEntry) -> LedgerRow:
    policy = entry.policy_result
    return LedgerRow(
        seq=entry.seq,
        kind=entry.kind.value,
        created_at=entry.created_at,
        actor=entry.actor,
        pointer=entry.pointer,
        release_id=entry.release_id,
        baseline_release_id=entry.baseline_release_id,
        reason=entry.reason,
        subject=_subject(entry),
        passed=None if policy is None else policy.passed,
        policy_reasons=tuple(policy.reasons) if policy is not None else (),
        evidence=entry.evidence.model_dump(mode="json") if entry.evidence is not None else None,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def _subject(entry: LedgerEntry) -> str | None:
    details = entry.details or {}
    if entry.kind in (LedgerKind.POLICY_CHANGE, LedgerKind.PRICING_CHANGE):
        return f"{details.get('kind')} {details.get('name')} (generation {details.get('generation')})"
    if entry.kind is LedgerKind.APPROVAL:
        return f"approval {details.get('outcome')}: {details.get('message') or ''}".strip()
    return None


def environments(state: SidecarState) -> tuple[str, ...]:
    """The environments pointers govern in the namespace (what the promote form offers)."""
    found = {
        str((body.get("spec") or {}).get("environment"))
        for body in state.gateway.list_objects(RELEASE_POINTER.plural, state.namespace, cached=True)
    }
    return tuple(sorted(found))
