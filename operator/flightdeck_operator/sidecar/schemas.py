"""HTTP request and response models of the sidecar: the reference's snake_case JSON, typed.

Field names, nesting and defaults follow the reference HTTP API (flightdeck-behaviour 1.11) so
existing SDK users switch without code changes; additions are extra keys, never renamed ones.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from flightdeck_operator.engine.models import ActionOutcome, PolicyResult, RunEvent, RunEventData

# Reference bounds of the list endpoints.
DEFAULT_LIST_LIMIT: Final = 50
MAX_LIST_LIMIT: Final = 500
MAX_REASON_LENGTH: Final = 1024  # PromotionRequest spec.reason (CRD)
MAX_ACTOR_LENGTH: Final = 256  # PromotionRequest spec.actor (CRD)

# The reference prints these timestamps with isoformat() ("+00:00").
IsoDatetime = Annotated[dt.datetime, PlainSerializer(lambda v: v.isoformat(), return_type=str)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    # Unknown keys are ignored, as by the reference's pydantic models.
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- requests ---------------------------------------------------------------------------------------


class ActionRequest(_In):
    """``POST /v1/promote`` and ``POST /v1/rollback``."""

    release_id: str = Field(description="AgentRelease name in the sidecar's namespace.")
    environment: str = Field(description="Environment of the ReleasePointer to move.")
    window: str = Field(description="Evidence window, e.g. 7d, 24h or 30m.")
    reason: str = Field(min_length=1, max_length=MAX_REASON_LENGTH)
    actor: str = Field(default="http", max_length=MAX_ACTOR_LENGTH, description="Free text, recorded.")


class ConfirmRequest(_In):
    """``POST /v1/promote/confirm``."""

    request_id: str = Field(
        max_length=253, description="The PromotionRequest's name (promote-request's request_id)."
    )
    approval_reason: str = Field(min_length=1, max_length=MAX_REASON_LENGTH)
    actor: str = Field(
        default="http",
        max_length=MAX_ACTOR_LENGTH,
        description="Free text, kept as an annotation on the PromotionApproval (the ledger records the "
        "authenticated approver).",
    )


class DiffRequest(_In):
    """``POST /v1/diff``."""

    baseline_release_id: str
    candidate_release_id: str
    window: str
    tenant_id: str | None = None
    task_id: str | None = None
    environment: str | None = Field(default=None, description="Default: the sidecar's default environment.")


class IngestRequest(_In):
    """``POST /v1/events`` as documented. Items are validated one by one (reference messages, 400)."""

    events: list[RunEvent] = Field(min_length=1)


class IngestBatch(TypedDict):
    """``IngestRequest`` as plain data: the same input accepted, events as ``RunEventData``."""

    events: Annotated[list[RunEventData], Field(min_length=1)]


INGEST_BATCH: Final = TypeAdapter(IngestBatch)


class IngestShape(_In):
    """What the reference accepts before validating items: a non-empty list of objects."""

    events: list[dict[str, Any]] = Field(min_length=1)


# --- responses --------------------------------------------------------------------------------------


class HealthResponse(_Out):
    status: Literal["ok"] = "ok"
    mutation_auth: Literal["loopback", "bearer"]
    read_auth: Literal["open", "bearer"]
    auth_mode: Literal["kubernetes", "token", "none"]


class ProbeResponse(_Out):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class ReleaseItem(_Out):
    release_id: str
    agent_id: str
    version: str
    environment: str | None = Field(
        description="The release's flightdeck.dev/environment label or tags.environment, if any."
    )
    checksum: str
    created_at: IsoDatetime | None


class ReleasesResponse(_Out):
    releases: list[ReleaseItem]


class PromotedItem(_Out):
    agent_id: str
    environment: str
    release_id: str
    pointer: str = Field(description="The ReleasePointer's name.")


class PromotedResponse(_Out):
    promoted: list[PromotedItem]


class ActionItem(_Out):
    action_id: str
    action: Literal["promote", "rollback"]
    release_id: str | None
    agent_id: str | None
    environment: str | None
    baseline_release_id: str | None
    reason: str
    policy_passed: bool
    policy_reasons: list[str]
    created_at: IsoDatetime
    audit_seq: int = Field(description="The ledger seq (contiguous from 1 across every entry kind).")
    actor: str
    ledger_seq: int
    ledger_hash: str
    pointer: str | None = Field(description="The ReleasePointer the entry belongs to.")


class ActionsResponse(_Out):
    actions: list[ActionItem]


class IngestResponse(_Out):
    inserted: int


class BlockedDetail(_Out):
    message: Literal["Promotion blocked by policy.", "Rollback blocked by policy."]
    outcome: ActionOutcome


class BlockedResponse(_Out):
    """409: exactly the reference's body."""

    detail: BlockedDetail


class MessageDetail(_Out):
    message: str


class NotRecordedResponse(_Out):
    """409 of promote-request: the policy blocks it and nothing was recorded (no outcome)."""

    detail: MessageDetail


class RequestRefModel(_Out):
    namespace: str
    name: str


class PendingDetail(_Out):
    message: str
    request: RequestRefModel
    approval: RequestRefModel | None = Field(
        default=None, description="promote-confirm: the PromotionApproval created for the caller."
    )


class PendingResponse(_Out):
    """504 (no decision in time) and 410 (request deleted before its decision)."""

    detail: PendingDetail


class WorkspaceResponse(_Out):
    """``GET /v1/workspace``: the reference's ``WorkspacePublic``."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["WorkspacePublic"] = "WorkspacePublic"
    promotion_requires_approval: bool = Field(
        description="True when any PromotionPolicy in the namespace has spec.approval."
    )
    pricing_catalog_configured: bool = Field(description="Always false: there is no pricing catalog here.")
    server_version: str


class PromoteRequestResponse(_Out):
    """``POST /v1/promote/request`` (200): the request, awaiting approval."""

    request_id: str = Field(description="The PromotionRequest's name (prq-<12 hex>).")
    status: Literal["pending"] = "pending"
    release_id: str
    agent_id: str
    environment: str
    window: str
    baseline_release_id: str | None
    policy: PolicyResult = Field(description="The evaluation at request time.")
    created_at: IsoDatetime | None


class ApprovalRecordedResponse(_Out):
    """``POST /v1/promote/confirm`` (202): the approval counts; more are needed (minApprovals > 1)."""

    request_id: str
    status: Literal["pending"] = "pending"
    approval: str = Field(description="The PromotionApproval's name.")
    approved_by: list[str]
    required: int
    message: str


class PromotionRequestItem(_Out):
    """One item of ``GET /v1/promotion-requests`` (the reference's fields)."""

    request_id: str
    status: Literal["pending", "completed", "cancelled"]
    release_id: str | None
    agent_id: str | None
    environment: str | None
    window: str
    reason: str
    actor: str | None
    baseline_release_id: str | None
    policy: PolicyResult | None
    created_at: IsoDatetime | None
    resolved_at: IsoDatetime | None
    completed_action_id: str | None


class PromotionRequestsResponse(_Out):
    requests: list[PromotionRequestItem]


class ErrorResponse(_Out):
    """400, 401, 403, 413, 503: ``{"detail": "<message>"}`` as the reference's HTTPException."""

    detail: str


class PromotionRequestView(_Out):
    """``GET /v1/promotion-requests/{name}``: the request and, once decided, its outcome."""

    name: str
    namespace: str
    uid: str | None
    action: Literal["promote", "rollback"]
    release_id: str | None
    pointer: str
    window: str
    reason: str
    actor: str | None
    requested_by: str | None
    created_at: IsoDatetime | None
    phase: str | None
    decided: bool
    http_status: int | None = Field(
        description="What promote/rollback answered or would answer once decided."
    )
    message: str | None
    outcome: ActionOutcome | None
