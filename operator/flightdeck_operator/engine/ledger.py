"""The tamper-evident ledger format (pure): canonical JSON, the SHA-256 chain and its verification.

Each entry's hash covers the previous entry's hash and every field of the entry except ``prev_hash``
and ``hash`` themselves (``seq`` included, so moving a row breaks the chain)::

    hash = sha256_hex(prev_hash + canonical_json(entry))     # UTF-8 of an ASCII-only string
    prev_hash of seq 1 = GENESIS_HASH (64 zeros)

Canonical JSON is ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
allow_nan=False)``: the same settings as the reference's pricing checksum, and pure ASCII, so the
bytes hashed do not depend on how a tool encodes text. Datetimes are pydantic JSON (UTC, ``Z``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from .models import EvidenceSummary, Policy, PolicyResult, UtcDatetime

GENESIS_HASH = "0" * 64
_HASH_EXCLUDED = frozenset({"prev_hash", "hash"})
# Fields added after the first ledgers were written: hashed only when set, so the entries written
# before them keep the hash they were sealed with.
_HASHED_WHEN_SET = frozenset({"request_name", "spec_digest", "epoch", "pointer_seq"})


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def policy_digest(policy: Policy) -> str:
    """SHA-256 of the policy's canonical JSON: which policy (values, not name) produced a decision."""
    return sha256_hex(canonical_json(policy.model_dump(mode="json")))


class LedgerKind(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    POLICY_CHANGE = "policy_change"
    PRICING_CHANGE = "pricing_change"
    # A PromotionApproval as judged once by the operator (accepted, stale, rejected or blocked).
    APPROVAL = "approval"
    # A ReleasePointer with history was deleted: its history ends here; a pointer re-created with
    # the same name starts a fresh one.
    POINTER_RETIRED = "pointer-retired"
    # A request now awaits approval of one decision (digest): recorded once per request and digest,
    # so that approvers can be told (the notification event approval.requested).
    APPROVAL_REQUESTED = "approval-requested"
    # A request that could not be evaluated (unknown release, nothing to roll back, ...) and ended
    # Failed: not a decision (no pointer moved, no policy ran), recorded so that it can be notified.
    REQUEST_FAILED = "request-failed"
    # A failure of a live release confirmed by its checks (failureThreshold failing in a row): recorded
    # once per live release (pointer move), with what the operator does about it. Written before the
    # automatic rollback request exists, so a restart finishes that instead of deciding again.
    VERIFICATION_FAILED = "verification-failed"
    # A release soaked on the pointer another one follows: recorded once per follower and upstream
    # move; a promotion of it on the follower may then go ahead (and is created, with autoPromote).
    RELEASE_SOAKED = "release-soaked"


def action_id_for(request_uid: str) -> str:
    """The reference-shaped ``act_<12 hex>`` id, derived from the request UID so that a replayed
    decision (after a crash) carries the same id."""
    return "act_" + request_uid.replace("-", "")[:12]


def request_key(request_uid: str) -> str:
    """Idempotency key of a promote/rollback: the PromotionRequest's UID (one entry per request)."""
    return f"request:{request_uid}"


def retirement_key(namespace: str, pointer: str, last_move_seq: int) -> str:
    """Idempotency key of a pointer's retirement: one per pointer incarnation (named by its last
    move), whether the operator saw the delete or its sweep found the pointer gone later."""
    return f"pointer-retired:{namespace}/{pointer}:{last_move_seq}"


def approval_requested_key(request_uid: str, digest: str) -> str:
    """One ``approval-requested`` entry per request and decision digest."""
    return f"approval-requested:{request_uid}@{digest}"


def request_failed_key(request_uid: str) -> str:
    """One ``request-failed`` entry per request (a failed request is never evaluated again)."""
    return f"request-failed:{request_uid}"


def verification_failed_key(namespace: str, pointer: str, move_seq: int) -> str:
    """One confirmed failure per live release: the pointer and the ledger move that made it live."""
    return f"verification-failed:{namespace}/{pointer}@{move_seq}"


def release_soaked_key(namespace: str, follower: str, upstream: str, upstream_move_seq: int) -> str:
    """One soak per follower and upstream move (the release live upstream since that move)."""
    return f"release-soaked:{namespace}/{follower}<-{upstream}@{upstream_move_seq}"


def change_key(kind: LedgerKind, object_uid: str, generation: int) -> str:
    """Idempotency key of a policy or pricing change: one entry per object UID and spec generation."""
    return f"{kind.value}:{object_uid}@{generation}"


class LedgerRecord(BaseModel):
    """An entry before the store numbers and chains it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: LedgerKind
    # Unique: appending the same key twice returns the first entry and writes nothing.
    idempotency_key: str = Field(min_length=1)
    # The PromotionRequest UID; None for policy/pricing changes, which use the object's uid+generation key.
    request_uid: str | None = None
    actor: str
    namespace: str
    pointer: str | None = None
    agent_id: str | None = None
    environment: str | None = None
    release_id: str | None = None
    baseline_release_id: str | None = None
    # True when this entry moved the pointer (a passing, non-dry-run promote or rollback).
    pointer_changed: bool = False
    reason: str = ""
    policy_result: PolicyResult | None = None
    evidence: EvidenceSummary | None = None
    policy_digest: str | None = None
    # Kind-specific payload, e.g. the new policy spec or pricing table of a change.
    details: dict[str, JsonValue] | None = None
    created_at: UtcDatetime
    # A promote or rollback: the request's name and the digest of its authored spec, so that a
    # request re-created with the same name and spec (GitOps, after retention deleted it) is
    # replayed from this entry instead of being decided again.
    request_name: str | None = None
    spec_digest: str | None = None


class LedgerEntry(LedgerRecord):
    seq: int = Field(ge=1)
    prev_hash: str
    hash: str
    # The writer's leader epoch (the Lease's transitions when it was elected; None: no election).
    epoch: int | None = None
    # The pointer's own sequence, on entries that moved or retired it (1, 2, ... per pointer):
    # unique per (namespace, pointer), so two conflicting moves of one pointer cannot both commit.
    pointer_seq: int | None = None

    def hashed_payload(self) -> dict[str, Any]:
        payload = self.model_dump(mode="json", exclude=set(_HASH_EXCLUDED))
        for name in _HASHED_WHEN_SET:
            if payload.get(name) is None:
                payload.pop(name, None)
        return payload

    def computed_hash(self) -> str:
        return sha256_hex(self.prev_hash + canonical_json(self.hashed_payload()))

    def record(self) -> LedgerRecord:
        return LedgerRecord.model_validate(
            self.model_dump(exclude={"seq", "prev_hash", "hash", "epoch", "pointer_seq"})
        )


def seal(
    record: LedgerRecord,
    *,
    seq: int,
    prev_hash: str,
    epoch: int | None = None,
    pointer_seq: int | None = None,
) -> LedgerEntry:
    """Number ``record`` and chain it after ``prev_hash``."""
    unsealed = LedgerEntry.model_validate(
        {
            **dict(record),
            "seq": seq,
            "prev_hash": prev_hash,
            "hash": "",
            "epoch": epoch,
            "pointer_seq": pointer_seq,
        }
    )
    return unsealed.model_copy(update={"hash": unsealed.computed_hash()})


def moves_pointer(record: LedgerRecord) -> bool:
    """Whether the entry is an event of its pointer's life (a move or its retirement): those take
    the pointer's next ``pointer_seq``."""
    if record.pointer is None:
        return False
    if record.kind is LedgerKind.POINTER_RETIRED:
        return True
    return record.pointer_changed and record.kind in (LedgerKind.PROMOTE, LedgerKind.ROLLBACK)


@dataclass(frozen=True, slots=True)
class ChainVerification:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head_hash: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"hash chain intact, contiguous 1..{self.entries} ({self.entries} entries)"
        return f"first bad seq {self.first_bad_seq}: {self.problem}"


def verify(entries: Sequence[LedgerEntry]) -> ChainVerification:
    """Check contiguity (seq 1..N in order) and the hash chain; name the first bad ``seq``.

    An edited row fails its own hash; a deleted row leaves a seq gap; an inserted or reordered row
    breaks seq order or the next row's ``prev_hash``. Rewriting the whole chain from some row to the
    end is not detectable from the rows alone; compare the head hash with one recorded elsewhere.
    """
    return verify_after(entries, seq=0, prev_hash=GENESIS_HASH)


def verify_after(entries: Sequence[LedgerEntry], *, seq: int, prev_hash: str) -> ChainVerification:
    """``verify`` for the entries that follow an already verified ``seq`` whose hash is ``prev_hash``
    (a chain checked piece by piece as it grows). ``entries`` counts the new entries only."""
    for position, entry in enumerate(entries, start=seq + 1):
        if entry.seq != position:
            bad_seq = min(entry.seq, position)
            problem = (
                f"seq {position} is missing (found seq {entry.seq} after seq {position - 1})"
                if entry.seq > position
                else f"seq {entry.seq} is duplicated or out of order (expected seq {position})"
            )
            return ChainVerification(False, len(entries), bad_seq, problem)
        if entry.prev_hash != prev_hash:
            expected = "the genesis hash" if entry.seq == 1 else f"the hash of seq {entry.seq - 1}"
            return ChainVerification(
                False,
                len(entries),
                entry.seq,
                f"seq {entry.seq}: prev_hash does not match {expected} "
                "(a row before it was edited, removed, inserted or reordered)",
            )
        if entry.computed_hash() != entry.hash:
            return ChainVerification(
                False, len(entries), entry.seq, f"seq {entry.seq}: hash does not match its content (edited)"
            )
        prev_hash = entry.hash
    return ChainVerification(True, len(entries), head_hash=prev_hash if entries or seq else None)
