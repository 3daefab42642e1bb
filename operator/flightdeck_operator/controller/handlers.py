"""kopf handlers: thin adapters from watch events to the controller.

Each handler reads (indexes, never per-request list calls), then hands the blocking work to the
controller in a worker thread while holding the pointer's lock. Handlers return None: values
returned by kopf handlers land in ``status.<handler>``, which the strict schemas would prune.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from flightdeck_operator.api.v1alpha1 import (
    AGENT_RELEASE_PLURAL,
    GROUP,
    PRICING_TABLE_PLURAL,
    PROMOTION_APPROVAL_PLURAL,
    PROMOTION_POLICY_PLURAL,
    PROMOTION_REQUEST,
    PROMOTION_REQUEST_PLURAL,
    RELEASE_POINTER_PLURAL,
    VERSION,
)
from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller.errors import DependencyPending
from flightdeck_operator.controller.indexes import (
    TERMINAL,
    Index,
    indexes_of,
    policy_names,
    pricing_tables_in,
    same_target,
    undecided,
    view_of,
)
from flightdeck_operator.controller.loop import Controller
from flightdeck_operator.controller.pointer_health import PointerProblem, pointer_problem, problem_among
from flightdeck_operator.controller.projection import ready_reason_shows
from flightdeck_operator.engine.ledger import LedgerKind

log = logging.getLogger(__name__)


async def drain_pointer(
    namespace: str, pointer: str, memo: kopf.Memo, indexes: Mapping[str, Index]
) -> float | None:
    """Decide every undecided request for one pointer, oldest first, one pointer at a time.
    Returns the seconds until a waiting request (approval, evidence) wants another look."""
    controller: Controller = memo["controller"]
    async with memo["pointer_locks"][(namespace, pointer)]:
        pending = list(indexes["pending_requests_by_pointer"].get((namespace, pointer), ()))
        view = view_of(namespace, indexes)
        return await asyncio.to_thread(controller.drain, namespace, pointer, pending, view)


# -- PromotionRequest ------------------------------------------------------------------------------


# Raw watch events, not on.create/on.resume: kopf would write progress annotations on every
# request (one more API write per decision) and a finalizer would block deletion. The initial
# listing arrives as events too, so requests left undecided by a crash are picked up on start.
# Retries are ours: a waiting dependency or an unexpected error re-drains the pointer later, and the
# pointer timer sweeps whatever is still pending as a last resort.
RETRY_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


@kopf.on.event(GROUP, VERSION, PROMOTION_REQUEST_PLURAL, when=undecided)
async def request_event(
    type: str | None, namespace: str | None, uid: str, spec: kopf.Spec, memo: kopf.Memo, **kwargs: Any
) -> None:
    if type == "DELETED":
        memo["controller"].forget(uid)
        return
    if "controller" not in memo:
        return
    await drain_with_retry(namespace or "", str(spec.get("pointer")), memo, indexes_of(kwargs))


async def drain_with_retry(
    namespace: str, pointer: str, memo: kopf.Memo, indexes: Mapping[str, Index], attempt: int = 0
) -> None:
    try:
        recheck = await drain_pointer(namespace, pointer, memo, indexes)
        if recheck is None:
            return
        delay, attempt = recheck, -1  # a waiting request: look again, without backing off
    except DependencyPending as waiting:
        delay = float(waiting.delay or 1.0)
        log.info("Waiting for %s/%s: %s", namespace, pointer, waiting)
    except Exception:
        delay = RETRY_BACKOFF_SECONDS[min(attempt, len(RETRY_BACKOFF_SECONDS) - 1)]
        log.exception("Deciding requests of %s/%s failed; retrying in %.0fs", namespace, pointer, delay)
    retries: dict[tuple[str, str], tuple[float, asyncio.Task[None]]] = memo["retries"]
    due = asyncio.get_running_loop().time() + delay
    scheduled = retries.get((namespace, pointer))
    if scheduled is not None:
        if scheduled[0] <= due:
            return  # one retry per pointer is enough: a drain decides every pending request
        scheduled[1].cancel()  # a sooner look is wanted

    async def retry_later() -> None:
        await asyncio.sleep(delay)
        retries.pop((namespace, pointer), None)
        await drain_with_retry(namespace, pointer, memo, indexes, attempt + 1)

    retries[(namespace, pointer)] = (due, asyncio.create_task(retry_later()))


# -- PromotionApproval -----------------------------------------------------------------------------


def unjudged(status: Mapping[str, Any], **_: Any) -> bool:
    return not status.get("phase")


@kopf.on.event(GROUP, VERSION, PROMOTION_APPROVAL_PLURAL, when=unjudged)
async def approval_event(
    type: str | None, namespace: str | None, name: str, spec: kopf.Spec, memo: kopf.Memo, **kwargs: Any
) -> None:
    """A new approval: re-examine the request it approves (its pointer's queue judges it)."""
    if type == "DELETED" or "controller" not in memo:
        return
    indexes = indexes_of(kwargs)
    namespace = namespace or ""
    request_name = str((spec.get("request") or {}).get("name") or "")
    pointer = _pointer_of_pending(indexes, namespace, request_name)
    if pointer is None:
        body = await asyncio.to_thread(
            memo["controller"].gateway.find, PROMOTION_REQUEST.plural, namespace, request_name
        )
        phase = ((body or {}).get("status") or {}).get("phase")
        if body is not None and phase not in TERMINAL:
            pointer = str((body.get("spec") or {}).get("pointer") or "")  # the index has not caught up yet
    if pointer:
        await drain_with_retry(namespace, pointer, memo, indexes)
        return
    approval = next((a for a in indexes["approvals_by_namespace"].get(namespace, ()) if a.name == name), None)
    if approval is not None:
        await asyncio.to_thread(memo["controller"].approvals.judge_orphan, namespace, approval)


def _pointer_of_pending(indexes: Mapping[str, Index], namespace: str, request_name: str) -> str | None:
    for (ns, pointer), requests in list(indexes["pending_requests_by_pointer"].items()):
        if ns == namespace and any(r.name == request_name for r in requests):
            return str(pointer)
    return None


# -- ReleasePointer --------------------------------------------------------------------------------


REPAIRED = "Repaired from the audit ledger."


@kopf.on.event(GROUP, VERSION, RELEASE_POINTER_PLURAL)
async def watch_pointer(
    type: str | None,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """A pointer changed (our projection, a hand edit, a new duplicate) or was deleted: repair it
    at once if it left the ledger, show what keeps it from governing, ledger its retirement."""
    if "controller" not in memo:
        return
    namespace = namespace or ""
    indexes = indexes_of(kwargs)
    controller: Controller = memo["controller"]
    if type == "DELETED":
        uid = str(body.get("metadata", {}).get("uid") or "")
        deleted_by = await asyncio.to_thread(controller.store.pop_pointer_deletion, namespace, name, uid)
        async with memo["pointer_locks"][(namespace, name)]:
            await asyncio.to_thread(
                controller.pointers.retire,
                namespace,
                name,
                deleted=dict(body),
                deleted_by=deleted_by,
                found_by_sweep=False,
            )
    elif type not in ("MODIFIED", "ADDED"):
        return
    # Only this pointer's (agentId, environment) and the policy names are read: a scan of the
    # namespace per event made the start with 5,000 pointers quadratic.
    siblings = same_target(indexes, namespace, spec)
    policies = policy_names(indexes, namespace)
    if type != "DELETED":
        this = next((s for s in siblings if s.name == name), None)
        problem = None if this is None else problem_among(this, siblings, policies, namespace)
        if not await asyncio.to_thread(controller.pointers.shows, namespace, name, dict(status), problem):
            await _sync_pointer(namespace, name, memo, reason_if_drifted=REPAIRED, problem=problem)
    # A pointer of the same agent and environment may govern now, or stop to (a duplicate).
    for sibling in siblings:
        if sibling.name != name:
            sibling_problem = problem_among(sibling, siblings, policies, namespace)
            if not ready_reason_shows(sibling.ready_reason, sibling_problem):
                await _sync_pointer(
                    namespace, sibling.name, memo, reason_if_drifted=REPAIRED, problem=sibling_problem
                )


async def sweep_pointers(memo: kopf.Memo, indexes: Mapping[str, Index], interval: float) -> None:
    """Level-based safety net, one task for all pointers (not a kopf timer per pointer: 1,000
    timers cost 45 MB and a finalizer on every pointer). Each round decides requests a missed
    event left behind, repairs pointers whose status differs from the ledger or whose health is
    not shown, and ledgers the retirement of pointers deleted while the operator was away,
    comparing the index's copy of each status with the ledger heads read in one query."""
    await asyncio.sleep(random.uniform(interval / 2, interval))  # the first listing completes meanwhile
    while True:
        try:
            await _sweep_round(memo, indexes)
        except Exception:
            log.exception("Pointer sweep failed; next round in %.0fs", interval)
        await asyncio.to_thread(release_free_memory)
        await asyncio.sleep(interval)


async def _sweep_round(memo: kopf.Memo, indexes: Mapping[str, Index]) -> None:
    """One round; a function of its own so that the ledger heads it reads (a parsed entry per
    pointer: about 6 MB for 1,000 pointers) are freed before the sweep sleeps."""
    controller: Controller = memo["controller"]
    config: OperatorSettings = memo["config"]
    heads = await asyncio.to_thread(controller.store.pointer_heads)
    for namespace, entries in list(indexes["pointers_by_namespace"].items()):
        view = view_of(namespace, indexes)
        windows: dict[str | None, dict[str, Any] | None] = {}
        for indexed in list(entries):
            name = indexed.name
            if indexes["pending_requests_by_pointer"].get((namespace, name)):
                await drain_with_retry(namespace, name, memo, indexes)
            head = heads.get((namespace, name))
            expected = (head.release_id, head.seq) if head is not None else (None, None)
            problem = pointer_problem(view, name)
            shown = (indexed.release_id, indexed.ledger_seq)
            if shown != expected or not ready_reason_shows(indexed.ready_reason, problem):
                await _sync_pointer(namespace, name, memo, reason_if_drifted=REPAIRED, problem=problem)
            policy_name = indexed.spec.policy_ref.name if indexed.spec.policy_ref is not None else None
            if policy_name not in windows:  # pointers share policies: one computation each
                windows[policy_name] = controller.pointers.window_status(view.policies.get(policy_name or ""))
            window = windows[policy_name]
            if window != indexed.window:
                await asyncio.to_thread(controller.pointers.sync_window, namespace, name, window)
    await _retire_vanished(memo, indexes, heads, config.namespaces)


async def _retire_vanished(
    memo: kopf.Memo,
    indexes: Mapping[str, Index],
    heads: Mapping[tuple[str, str], Any],
    namespaces: Sequence[str],
) -> None:
    """Pointers the ledger holds a live history for, but that are gone (deleted while the operator
    was not running): confirmed with a read, then their retirement is ledgered."""
    controller: Controller = memo["controller"]
    for namespace, name in list(heads):
        if namespaces and namespace not in namespaces:
            continue  # another operator's namespace
        if any(p.name == name for p in indexes["pointers_by_namespace"].get(namespace, ())):
            continue
        async with memo["pointer_locks"][(namespace, name)]:
            found = await asyncio.to_thread(controller.gateway.find, RELEASE_POINTER_PLURAL, namespace, name)
            if found is None:
                await asyncio.to_thread(
                    controller.pointers.retire,
                    namespace,
                    name,
                    deleted=None,
                    deleted_by=None,
                    found_by_sweep=True,
                )


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc only).

    A burst of requests parses thousands of watch events at once; glibc keeps the freed memory
    for reuse, so the process stayed at its peak size long after the burst was decided.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


async def _sync_pointer(
    namespace: str,
    name: str,
    memo: kopf.Memo,
    *,
    reason_if_drifted: str,
    problem: PointerProblem | None,
) -> None:
    controller: Controller = memo["controller"]
    async with memo["pointer_locks"][(namespace, name)]:
        await asyncio.to_thread(
            controller.pointers.sync_pointer,
            namespace,
            name,
            reason_if_drifted=reason_if_drifted,
            problem=problem,
        )


# -- Policy, pricing and release bookkeeping ---------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, PROMOTION_POLICY_PLURAL)
@kopf.on.create(GROUP, VERSION, PROMOTION_POLICY_PLURAL)
@kopf.on.update(GROUP, VERSION, PROMOTION_POLICY_PLURAL)
async def record_policy(
    body: kopf.Body, name: str, namespace: str | None, memo: kopf.Memo, **kwargs: Any
) -> None:
    await asyncio.to_thread(memo["recorder"].record, LedgerKind.POLICY_CHANGE, dict(body))
    # Requests waiting for approval or evidence under this policy see the change now (approvals of
    # the old policy go stale), not at their next recheck; pointers waiting for it govern now.
    indexes = indexes_of(kwargs)
    view = view_of(namespace or "", indexes)
    for indexed in list(indexes["pointers_by_namespace"].get(namespace, ())):
        if indexed.spec.policy_ref is None or indexed.spec.policy_ref.name != name:
            continue
        if indexes["pending_requests_by_pointer"].get((namespace, indexed.name)):
            await drain_with_retry(namespace or "", indexed.name, memo, indexes)
        problem = pointer_problem(view, indexed.name)
        if not ready_reason_shows(indexed.ready_reason, problem):
            await _sync_pointer(
                namespace or "", indexed.name, memo, reason_if_drifted=REPAIRED, problem=problem
            )


@kopf.on.resume(GROUP, VERSION, PRICING_TABLE_PLURAL)
@kopf.on.create(GROUP, VERSION, PRICING_TABLE_PLURAL)
@kopf.on.update(GROUP, VERSION, PRICING_TABLE_PLURAL)
async def record_pricing_table(
    body: kopf.Body, name: str, namespace: str | None, spec: kopf.Spec, memo: kopf.Memo, **kwargs: Any
) -> None:
    indexes = indexes_of(kwargs)
    await _record_pricing_table(dict(body), memo, indexes)
    # Releases priced by (provider, pricingVersion) resolve now, not by polling.
    key = (spec.get("provider"), spec.get("pricingVersion"))
    await _resolve_releases(namespace or "", memo, indexes, key)


@kopf.on.event(GROUP, VERSION, PRICING_TABLE_PLURAL)
async def forget_pricing_table(
    type: str | None, namespace: str | None, spec: kopf.Spec, memo: kopf.Memo, **kwargs: Any
) -> None:
    """A deleted table: a duplicate of it may price now, and releases it priced wait again."""
    if type != "DELETED" or "recorder" not in memo:
        return
    indexes = indexes_of(kwargs)
    key = (spec.get("provider"), spec.get("pricingVersion"))
    for entry in list(indexes["pricing_tables_by_namespace"].get(namespace, ())):
        if entry.key == key:
            body = await asyncio.to_thread(
                memo["controller"].gateway.find, PRICING_TABLE_PLURAL, namespace or "", entry.name
            )
            if body is not None:
                await _record_pricing_table(body, memo, indexes)
    await _resolve_releases(namespace or "", memo, indexes, key)


async def _record_pricing_table(
    body: Mapping[str, Any], memo: kopf.Memo, indexes: Mapping[str, Index]
) -> None:
    metadata = body["metadata"]
    spec = body.get("spec") or {}
    key = (str(spec.get("provider")), str(spec.get("pricingVersion")))
    first = pricing_tables_in(indexes["pricing_tables_by_namespace"], metadata["namespace"]).get(key)
    duplicate_of = first.name if first is not None and first.name != metadata["name"] else None
    await asyncio.to_thread(
        memo["recorder"].record, LedgerKind.PRICING_CHANGE, body, duplicate_of=duplicate_of
    )


async def _resolve_releases(
    namespace: str, memo: kopf.Memo, indexes: Mapping[str, Index], key: tuple[Any, Any]
) -> None:
    tables = {
        k: entry.name
        for k, entry in pricing_tables_in(indexes["pricing_tables_by_namespace"], namespace).items()
    }
    for release_name, release in list(indexes["releases_by_namespace"].get(namespace, ())):
        reference = release.pricing_reference
        if (reference.provider, reference.pricing_version) != key:
            continue
        body = await asyncio.to_thread(
            memo["controller"].gateway.find, AGENT_RELEASE_PLURAL, namespace, release_name
        )
        if body is not None:
            await asyncio.to_thread(memo["recorder"].resolve_release, body, tables)


@kopf.on.resume(GROUP, VERSION, AGENT_RELEASE_PLURAL)
@kopf.on.create(GROUP, VERSION, AGENT_RELEASE_PLURAL)
async def resolve_release_pricing(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Ready once the release's pricingReference resolves to a PricingTable; a table created later
    resolves it then (``record_pricing_table``)."""
    index = kwargs["pricing_tables_by_namespace"]
    tables = {key: entry.name for key, entry in pricing_tables_in(index, namespace).items()}
    await asyncio.to_thread(memo["recorder"].resolve_release, dict(body), tables)
