"""Replay instead of re-decide (pure): what identifies a request across deletion and re-creation.

Retention deletes decided PromotionRequests (the ledger keeps the record). A GitOps tool that
re-applies the same manifest, or a client retrying with the same Idempotency-Key, re-creates the
request: a new UID, but the same name and the same authored spec. Such a request is answered from
the ledger entry of the first one, never evaluated again (docs/operations.md, "Retention").
"""

from __future__ import annotations

from flightdeck_operator.api.v1alpha1 import PromotionRequestSpec
from flightdeck_operator.engine.ledger import LedgerEntry, canonical_json, sha256_hex
from flightdeck_operator.engine.models import format_time

# Not part of what is asked: the identity the admission webhook stamps (whoever re-applies the
# manifest) and how long the request object is kept.
_NOT_ASKED = frozenset({"requested_by", "ttl_seconds_after_decided"})


def request_spec_digest(spec: PromotionRequestSpec) -> str:
    """SHA-256 of the authored spec: defaults left out (so a field the API server filled in with
    its default digests as if absent), stamped identity and retention left out."""
    authored = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude=set(_NOT_ASKED))
    return sha256_hex(canonical_json(authored))


def replay_message(entry: LedgerEntry, decided: str) -> str:
    """``decided``: what the entry decided, as a decision's own message says it."""
    return (
        f"Replayed from the ledger: this name and spec were decided at {format_time(entry.created_at)} "
        f"as ledger seq {entry.seq} (request uid {entry.request_uid}): {decided}. Not decided again; "
        "create a request with a new name to ask again"
    )
