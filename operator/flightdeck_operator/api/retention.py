"""Retention of decided PromotionRequests (pure): which ones to delete now, and why.

The ledger is the history, so a decided request object is only a view of one ledger entry; kept
forever, they fill etcd and the operator's memory. The rules, in the order they apply:

1. Never: a request annotated ``flightdeck.dev/retain: "true"``, or decided less than the minimum
   age ago (the cap included: a burst is never deleted before anyone could look at it).
2. TTL: a request is due ``ttlSecondsAfterDecided`` after its decision (a replayed copy: after its
   re-creation, so a GitOps tool re-creates it at most once per TTL): the request's own value,
   else its pointer's policy's ``requestRetention``, else the operator's default. The newest
   ``retainPerPointer`` requests of each pointer (policy, else default) outlive their TTL.
3. Cap: while more decided requests are resident than the global cap, the oldest go first,
   protected or not (the cap bounds memory, so it wins).

The caller deletes only requests whose decision the ledger holds with its replay keys, so that a
deleted request re-created by a GitOps tool is replayed, never decided again.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from flightdeck_operator.api.v1alpha1 import RequestRetention

RETAIN_ANNOTATION = "flightdeck.dev/retain"


class PruneReason(StrEnum):
    TTL = "ttl"
    CAP = "cap"


@dataclass(frozen=True, slots=True)
class RetentionDefaults:
    ttl_seconds: int = 86_400
    retain_per_pointer: int = 3
    retain_max: int = 2_000
    min_age_seconds: int = 600


@dataclass(frozen=True, slots=True)
class DecidedRequest:
    """A decided PromotionRequest as the retention pass sees it (from the operator's index)."""

    namespace: str
    name: str
    uid: str
    pointer: str
    decided_at: dt.datetime
    ttl_seconds: int | None = None  # spec.ttlSecondsAfterDecided
    retain: bool = False  # annotated flightdeck.dev/retain: "true"
    created_at: dt.datetime | None = None  # metadata.creationTimestamp

    @property
    def shown_since(self) -> dt.datetime:
        """Since when this object has shown its decision: the decision, or a later re-creation (a
        replayed copy shows the original decision time; timing it from there would delete it again
        at once, and a GitOps tool would re-create it at every sync)."""
        if self.created_at is None or self.created_at <= self.decided_at:
            return self.decided_at
        return self.created_at


@dataclass(frozen=True, slots=True)
class Prune:
    request: DecidedRequest
    reason: PruneReason


def plan_retention(
    decided: Sequence[DecidedRequest],
    policies: Mapping[tuple[str, str], RequestRetention | None],
    defaults: RetentionDefaults,
    now: dt.datetime,
) -> list[Prune]:
    """The requests to delete now, oldest decision first. ``policies``: the retention of each
    (namespace, pointer)'s policy (missing or None: the defaults)."""
    protected: set[str] = set()
    by_pointer: dict[tuple[str, str], list[DecidedRequest]] = defaultdict(list)
    for request in decided:
        by_pointer[(request.namespace, request.pointer)].append(request)
    for key, requests in by_pointer.items():
        keep = _retain_per_pointer(policies.get(key), defaults)
        newest = sorted(requests, key=lambda r: (r.decided_at, r.name), reverse=True)[:keep]
        protected.update(r.uid for r in newest)

    def deletable(request: DecidedRequest) -> bool:
        age = (now - request.shown_since).total_seconds()
        return not request.retain and age >= defaults.min_age_seconds

    oldest_first = sorted(decided, key=lambda r: (r.decided_at, r.name))
    prunes: dict[str, Prune] = {}
    for request in oldest_first:
        ttl = _ttl(request, policies.get((request.namespace, request.pointer)), defaults)
        expired = (now - request.shown_since).total_seconds() >= ttl
        if expired and request.uid not in protected and deletable(request):
            prunes[request.uid] = Prune(request, PruneReason.TTL)
    resident = len(decided) - len(prunes)
    for request in oldest_first:
        if resident <= defaults.retain_max:
            break
        if request.uid not in prunes and deletable(request):
            prunes[request.uid] = Prune(request, PruneReason.CAP)
            resident -= 1
    return sorted(prunes.values(), key=lambda p: (p.request.decided_at, p.request.name))


def _ttl(request: DecidedRequest, policy: RequestRetention | None, defaults: RetentionDefaults) -> int:
    if request.ttl_seconds is not None:
        return request.ttl_seconds
    if policy is not None and policy.ttl_seconds_after_decided is not None:
        return policy.ttl_seconds_after_decided
    return defaults.ttl_seconds


def _retain_per_pointer(policy: RequestRetention | None, defaults: RetentionDefaults) -> int:
    if policy is not None and policy.retain_per_pointer is not None:
        return policy.retain_per_pointer
    return defaults.retain_per_pointer
