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
from collections.abc import Mapping
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
from flightdeck_operator.controller.errors import DependencyPending
from flightdeck_operator.controller.indexes import TERMINAL, Index, indexes_of, undecided, view_of
from flightdeck_operator.controller.loop import Controller
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


@kopf.on.event(GROUP, VERSION, RELEASE_POINTER_PLURAL)
async def watch_pointer_status(
    type: str | None, namespace: str | None, name: str, status: kopf.Status, memo: kopf.Memo, **_: Any
) -> None:
    """A pointer changed (our projection or a hand edit): repair it at once if it left the ledger."""
    if type not in ("MODIFIED", "ADDED") or "controller" not in memo:
        return
    controller: Controller = memo["controller"]
    if await asyncio.to_thread(controller.pointers.shows_ledger_head, namespace or "", name, dict(status)):
        return  # our own projection coming back: nothing to check under the lock
    await _sync_pointer(namespace or "", name, memo, reason_if_drifted="Repaired from the audit ledger.")


async def sweep_pointers(memo: kopf.Memo, indexes: Mapping[str, Index], interval: float) -> None:
    """Level-based safety net, one task for all pointers (not a kopf timer per pointer: 1,000
    timers cost 45 MB and a finalizer on every pointer). Each round decides requests a missed
    event left behind and repairs pointers whose status differs from the ledger, comparing the
    index's copy of each status with the ledger heads read in one query."""
    controller: Controller = memo["controller"]
    await asyncio.sleep(random.uniform(interval / 2, interval))  # the first listing completes meanwhile
    while True:
        try:
            heads = await asyncio.to_thread(controller.store.pointer_heads)
            for namespace, entries in list(indexes["pointers_by_namespace"].items()):
                policies = dict(indexes["policies_by_namespace"].get(namespace, ()))
                windows: dict[str | None, dict[str, Any] | None] = {}
                for name, spec, shown in list(entries):
                    if indexes["pending_requests_by_pointer"].get((namespace, name)):
                        await drain_with_retry(namespace, name, memo, indexes)
                    head = heads.get((namespace, name))
                    expected = (head.release_id, head.seq) if head is not None else (None, None)
                    if shown[:2] != expected:
                        await _sync_pointer(
                            namespace, name, memo, reason_if_drifted="Repaired from the audit ledger."
                        )
                    policy_name = spec.policy_ref.name if spec.policy_ref is not None else None
                    if policy_name not in windows:  # pointers share policies: one computation each
                        windows[policy_name] = controller.pointers.window_status(
                            policies.get(policy_name or "")
                        )
                    window = windows[policy_name]
                    if window != shown[2]:
                        await asyncio.to_thread(controller.pointers.sync_window, namespace, name, window)
        except Exception:
            log.exception("Pointer sweep failed; next round in %.0fs", interval)
        await asyncio.to_thread(release_free_memory)
        await asyncio.sleep(interval)


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


async def _sync_pointer(namespace: str, name: str, memo: kopf.Memo, *, reason_if_drifted: str) -> None:
    controller: Controller = memo["controller"]
    async with memo["pointer_locks"][(namespace, name)]:
        await asyncio.to_thread(
            controller.pointers.sync_pointer, namespace, name, reason_if_drifted=reason_if_drifted
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
    # the old policy go stale), not at their next recheck.
    indexes = indexes_of(kwargs)
    for pointer, spec, _shown in list(indexes["pointers_by_namespace"].get(namespace, ())):
        uses_it = spec.policy_ref is not None and spec.policy_ref.name == name
        if uses_it and indexes["pending_requests_by_pointer"].get((namespace, pointer)):
            await drain_with_retry(namespace or "", pointer, memo, indexes)


@kopf.on.resume(GROUP, VERSION, PRICING_TABLE_PLURAL)
@kopf.on.create(GROUP, VERSION, PRICING_TABLE_PLURAL)
@kopf.on.update(GROUP, VERSION, PRICING_TABLE_PLURAL)
async def record_pricing_table(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await asyncio.to_thread(memo["recorder"].record, LedgerKind.PRICING_CHANGE, dict(body))


@kopf.on.resume(GROUP, VERSION, AGENT_RELEASE_PLURAL)
@kopf.on.create(GROUP, VERSION, AGENT_RELEASE_PLURAL)
async def resolve_release_pricing(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Ready once the release's pricingReference resolves to a PricingTable (retried until then)."""
    index = kwargs["pricing_tables_by_namespace"]
    tables = {key: name for key, name, _table in index.get(namespace, ())}
    await asyncio.to_thread(memo["recorder"].resolve_release, dict(body), tables)
