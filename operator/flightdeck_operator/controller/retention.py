"""Retention: the leader deletes decided PromotionRequests that are due (``api/retention.py``).

One task, beside the pointer sweep. Each pass plans from the index of decided requests (no LIST),
and deletes as the Job TTL controller does: a fresh read, the rules checked again on it (and that
a re-created copy would be replayed: its decision is ledgered with its name and spec digest), then
a delete preconditioned on its UID and resourceVersion (a request changed or re-created meanwhile
is left alone). Deletes are rate-limited; one Event per policy (or per pointer
without one) summarises each pass.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from flightdeck_operator.api.replay import request_spec_digest
from flightdeck_operator.api.retention import (
    RETAIN_ANNOTATION,
    DecidedRequest,
    Prune,
    PruneReason,
    RetentionDefaults,
    plan_retention,
)
from flightdeck_operator.api.v1alpha1 import (
    PROMOTION_POLICY,
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    RequestRetention,
)
from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller.indexes import LEDGERED_PHASES, Index
from flightdeck_operator.controller.resolve import Failure, parse_request_spec
from flightdeck_operator.controller.view import NamespaceView
from flightdeck_operator.kube.errors import Conflict, GatewayError, NotFound
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

log = logging.getLogger(__name__)

PRUNED_REASON = "Pruned"
DELETES_IN_FLIGHT = 4


def defaults_of(config: OperatorSettings) -> RetentionDefaults:
    return RetentionDefaults(
        ttl_seconds=config.request_ttl_seconds,
        retain_per_pointer=config.retain_per_pointer,
        retain_max=config.retain_max,
        min_age_seconds=config.min_decided_age_seconds,
    )


@dataclass
class PassResult:
    resident: int = 0  # decided requests in the index when the pass started
    deleted: Counter[str] = field(default_factory=Counter)  # by PruneReason
    skipped: int = 0  # changed, re-created or gone since the plan


@dataclass
class RetentionCollector:
    store: Store
    gateway: KubeGateway
    defaults: RetentionDefaults
    deletes_per_second: float
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    on_deleted: Callable[[PruneReason], None] | None = None
    # Requests found not replayable (decided before the replay keys existed): never deletable, so
    # they are left out of later plans instead of being read again on every pass.
    unreplayable: set[str] = field(default_factory=set)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            DELETES_IN_FLIGHT, thread_name_prefix="flightdeck-retention"
        )
    )

    def plan(self, decided: list[DecidedRequest], views: Mapping[str, NamespaceView]) -> list[Prune]:
        """What is due now (pure, on plain values; replayability is checked on the fresh read)."""
        policies: dict[tuple[str, str], RequestRetention | None] = {}
        for namespace, view in views.items():
            for pointer, spec in view.pointers.items():
                policy = view.policies.get(spec.policy_ref.name) if spec.policy_ref is not None else None
                policies[(namespace, pointer)] = policy.request_retention if policy is not None else None
        self.unreplayable &= {request.uid for request in decided}  # forget the deleted ones
        candidates = [request for request in decided if request.uid not in self.unreplayable]
        return plan_retention(candidates, policies, self.defaults, self.clock())

    def delete(self, prune: Prune) -> bool:
        """Blocking: a fresh read, the rules again, then a preconditioned delete."""
        request = prune.request
        try:
            body = self.gateway.get(PROMOTION_REQUEST.plural, request.namespace, request.name)
        except NotFound:
            return False
        metadata = body["metadata"]
        status = body.get("status") or {}
        if (
            metadata.get("uid") != request.uid
            or status.get("phase") not in LEDGERED_PHASES
            or (metadata.get("annotations") or {}).get(RETAIN_ANNOTATION) == "true"
            or metadata.get("deletionTimestamp")
        ):
            return False
        if not self._replayable(request.namespace, request.name, body.get("spec") or {}):
            self.unreplayable.add(request.uid)
            return False
        try:
            self.gateway.delete(
                PROMOTION_REQUEST.plural,
                request.namespace,
                request.name,
                uid=request.uid,
                resource_version=metadata.get("resourceVersion"),
            )
        except (NotFound, Conflict):
            return False
        if self.on_deleted is not None:
            self.on_deleted(prune.reason)
        return True

    def _replayable(self, namespace: str, name: str, spec: Mapping[str, Any]) -> bool:
        """Whether a copy re-created with this name and spec would be replayed, not decided: its
        decision is in the ledger with the replay keys (decisions before them are never deleted)."""
        parsed = parse_request_spec(dict(spec))
        if isinstance(parsed, Failure):
            return False
        # A decision from before its pointer's retirement counts too: a copy re-created then is
        # decided afresh for the new pointer, which is what re-creating the pointer means.
        digest = request_spec_digest(parsed)
        return self.store.replay_entry(namespace, name, digest, across_retirement=True) is not None

    def summarise(self, namespace: str, view: NamespaceView, deleted: list[Prune]) -> None:
        """One Event per policy (on the policy), or per pointer without one (on the pointer)."""
        groups: dict[tuple[str, str], list[Prune]] = defaultdict(list)
        for prune in deleted:
            spec = view.pointers.get(prune.request.pointer)
            if spec is not None and spec.policy_ref is not None and spec.policy_ref.name in view.policies:
                groups[(PROMOTION_POLICY.kind, spec.policy_ref.name)].append(prune)
            else:
                groups[(RELEASE_POINTER.kind, prune.request.pointer)].append(prune)
        for (kind, name), prunes in groups.items():
            reasons = Counter(p.reason.value for p in prunes)
            pointers = len({p.request.pointer for p in prunes})
            scope = (
                f"of {pointers} pointer(s) under this policy"
                if kind == PROMOTION_POLICY.kind
                else "of this pointer"
            )
            message = (
                f"Deleted {len(prunes)} decided PromotionRequest(s) {scope} "
                f"({', '.join(f'{reason} {count}' for reason, count in sorted(reasons.items()))}); "
                "their decisions stay in the ledger, and re-creating one replays it"
            )
            involved = {"metadata": {"name": name, "namespace": namespace}}
            try:
                self.gateway.post_event(
                    involved, kind=kind, event_type="Normal", reason=PRUNED_REASON, message=message
                )
            except GatewayError as error:
                log.warning(
                    "Could not record the retention Event on %s %s/%s: %s", kind, namespace, name, error
                )


async def collect_garbage(
    collector: RetentionCollector,
    indexes: Mapping[str, Index],
    views: Callable[[str], NamespaceView],
    interval: float,
    on_pass: Callable[[PassResult], None] | None = None,
) -> None:
    """Forever: every ``interval`` seconds, one retention pass (one task, in the leader only)."""
    await asyncio.sleep(random.uniform(interval / 2, interval))  # the first listing completes meanwhile
    while True:
        try:
            result = await retention_pass(collector, indexes, views)
            if on_pass is not None:
                on_pass(result)
            if result.deleted:
                log.info(
                    "Retention deleted %d decided request(s) (%s); %d resident",
                    sum(result.deleted.values()),
                    dict(result.deleted),
                    result.resident - sum(result.deleted.values()),
                )
        except Exception:
            log.exception("Retention pass failed; next one in %.0fs", interval)
        await asyncio.sleep(interval)


async def retention_pass(
    collector: RetentionCollector, indexes: Mapping[str, Index], views: Callable[[str], NamespaceView]
) -> PassResult:
    index: Mapping[Any, Any] = indexes["decided_requests_by_namespace"]
    namespaces = list(index.keys())
    decided = [request for namespace in namespaces for request in list(index.get(namespace, ()))]
    snapshot = {namespace: views(namespace) for namespace in namespaces}  # on the event loop
    result = PassResult(resident=len(decided))
    prunes = collector.plan(decided, snapshot)
    done: dict[str, list[Prune]] = defaultdict(list)
    loop = asyncio.get_running_loop()
    # A delete is two API round trips: paced at the rate, several in flight (one at a time, the
    # rate was the round trip's, below the decisions' under load), on threads of retention's own.
    in_flight = asyncio.Semaphore(DELETES_IN_FLIGHT)

    async def delete(prune: Prune) -> None:
        try:
            deleted = await loop.run_in_executor(collector.executor, collector.delete, prune)
        finally:
            in_flight.release()
        if deleted:
            result.deleted[prune.reason.value] += 1
            done[prune.request.namespace].append(prune)
        else:
            result.skipped += 1

    tasks = []
    pause = 1.0 / collector.deletes_per_second
    for prune in prunes:
        await in_flight.acquire()
        tasks.append(asyncio.create_task(delete(prune)))
        await asyncio.sleep(pause)
    await asyncio.gather(*tasks)
    for namespace, deleted_ones in done.items():
        await loop.run_in_executor(
            collector.executor, collector.summarise, namespace, snapshot[namespace], deleted_ones
        )
    return result
