"""kopf handlers: thin adapters from watch events to the controller.

Each handler reads (indexes, never per-request list calls), then hands the blocking work to the
controller in a worker thread while holding the pointer's lock. Handlers return None: values
returned by kopf handlers land in ``status.<handler>``, which the strict schemas would prune.
"""

from __future__ import annotations

import asyncio
import copy
import ctypes
import datetime as dt
import logging
import random
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from flightdeck_operator.api.conditions import TERMINAL_PHASES, ApprovalPhase
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
    AgentReleaseSpec,
    PricingTableSpec,
    PromotionPolicySpec,
    ReleasePointerSpec,
)
from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller.admission_context import OperatorAdmissionContext
from flightdeck_operator.controller.errors import DependencyPending
from flightdeck_operator.controller.loop import Controller, PendingRequest
from flightdeck_operator.controller.records import ChangeRecorder
from flightdeck_operator.controller.resolve import ApprovalObject, NamespaceView
from flightdeck_operator.engine.ledger import LedgerKind
from flightdeck_operator.engine.models import ConfidenceThresholds
from flightdeck_operator.kube.gateway import KubeGateway, load_api_client
from flightdeck_operator.store import open_store
from flightdeck_operator.webhook.certs import CertificateError
from flightdeck_operator.webhook.handlers import AdmissionHandlers
from flightdeck_operator.webhook.server import server_from_settings

log = logging.getLogger(__name__)

TERMINAL = frozenset(p.value for p in TERMINAL_PHASES)
# kopf watches our six kinds plus CRDs and namespaces (cluster-wide discovery).
WATCHED_RESOURCES = 8
# Connections for everything that is not a watch stream: patches, Events, listings.
API_CONNECTIONS = 24
Index = Mapping[Any, Any]


def undecided(status: Mapping[str, Any], **_: Any) -> bool:
    return status.get("phase") not in TERMINAL


# -- startup ---------------------------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """All kopf tuning in one place, plus the store, the gateway and the controller in ``memo``."""
    config: OperatorSettings = memo.get("config") or OperatorSettings()
    # kopf's bookkeeping goes to annotations under our own prefix: the status schemas are strict.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Our own Events say what happened; kopf's per-handler "succeeded" Events would double the writes.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "flightdeck-operator"
    settings.execution.max_workers = config.max_workers
    # Reconnect watches regularly so a silently dropped connection cannot stall decisions.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30

    store = await asyncio.to_thread(open_store, config.store)
    gateway = KubeGateway(load_api_client())
    memo["config"] = config
    memo["store"] = store
    memo["controller"] = Controller(
        store=store,
        gateway=gateway,
        thresholds=ConfidenceThresholds(
            min_candidate_runs=config.min_candidate_runs,
            min_baseline_runs=config.min_baseline_runs,
            min_low_runs=config.min_low_runs,
        ),
        dependency_grace=dt.timedelta(seconds=config.dependency_grace_seconds),
        recheck_seconds=config.recheck_seconds,
    )
    memo["recorder"] = ChangeRecorder(store=store, gateway=gateway)
    memo["pointer_locks"] = defaultdict(asyncio.Lock)
    memo["retries"] = {}
    # The indexes are live objects already (empty until the first listing completes).
    memo["sweeper"] = asyncio.create_task(
        sweep_pointers(memo, _indexes(kwargs), config.pointer_resync_seconds)
    )
    if config.webhook_port is not None:
        # The admission webhook runs in this event loop and reads the same indexes.
        indexes = _indexes(kwargs)
        context = OperatorAdmissionContext(
            delegates=config.webhook_delegates,
            gateway=gateway,
            pending_requests=indexes["pending_requests_by_pointer"],
            view_of=lambda namespace: namespace_view(
                namespace,
                indexes["pointers_by_namespace"],
                indexes["releases_by_namespace"],
                indexes["policies_by_namespace"],
                indexes["pricing_tables_by_namespace"],
            ),
            predictor=memo["controller"].predict,
        )
        webhook = server_from_settings(config, AdmissionHandlers(context).routes(), gateway)
        try:
            await webhook.start()
        except (OSError, CertificateError) as error:
            # Without it every create in the watched namespaces fails (failurePolicy Fail): exit loudly.
            raise kopf.PermanentError(f"The admission webhook cannot start: {error}") from error
        memo["webhook"] = webhook
    log.info("FlightDeck operator configured (store: %s)", store.describe())


@kopf.on.login()
async def login(
    logger: kopf.Logger, settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any
) -> kopf.AiohttpSession | None:
    """kopf's own login, but with a bounded connection pool.

    kopf's default session has no connection limit: a burst of status patches and Events opened
    one TLS connection each (128 KiB of buffers apiece), and the pool kept them all: 1,200
    connections, 150 MB, after a burst of 1,000 requests. Watch streams hold a connection each, so
    the limit leaves room for one stream per watched resource and namespace.
    """
    info = kopf.login_via_client(logger=logger, settings=settings, **kwargs)
    if info is None:
        return None
    config: OperatorSettings = memo.get("config") or OperatorSettings()
    streams = WATCHED_RESOURCES * max(1, len(config.namespaces))
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=streams + API_CONNECTIONS, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        aiohttp_session=session,
    )


@kopf.on.cleanup()
async def close_store(memo: kopf.Memo, **_: Any) -> None:
    sweeper = memo.get("sweeper")
    if sweeper is not None:
        sweeper.cancel()
    # Scheduled re-examinations (waiting requests, retries) must not start on a closed store.
    for _due, task in list((memo.get("retries") or {}).values()):
        task.cancel()
    webhook = memo.get("webhook")
    if webhook is not None:
        await webhook.stop()
    store = memo.get("store")
    if store is not None:
        await asyncio.to_thread(store.close)


# -- indexes ---------------------------------------------------------------------------------------
# Keyed by namespace (a decision needs one namespace at a time); requests by (namespace, pointer).


@kopf.index(GROUP, VERSION, RELEASE_POINTER_PLURAL)
async def pointers_by_namespace(
    namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[Any, Any]:
    """(name, spec, (releaseId, ledgerSeq, promotionWindow)): the status part lets the sweep spot
    drift and window changes without reads."""
    window = status.get("promotionWindow")
    shown = (status.get("releaseId"), status.get("ledgerSeq"), None if window is None else dict(window))
    return {namespace: (name, ReleasePointerSpec.model_validate(spec), shown)}


@kopf.index(GROUP, VERSION, AGENT_RELEASE_PLURAL)
async def releases_by_namespace(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Any, Any]:
    return {namespace: (name, AgentReleaseSpec.model_validate(spec))}


@kopf.index(GROUP, VERSION, PROMOTION_POLICY_PLURAL)
async def policies_by_namespace(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Any, Any]:
    return {namespace: (name, PromotionPolicySpec.model_validate(spec))}


@kopf.index(GROUP, VERSION, PRICING_TABLE_PLURAL)
async def pricing_tables_by_namespace(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Any, Any]:
    table = PricingTableSpec.model_validate(spec)
    return {namespace: ((table.provider, table.pricing_version), name, table)}


@kopf.index(GROUP, VERSION, PROMOTION_REQUEST_PLURAL, when=undecided)
async def pending_requests_by_pointer(
    namespace: str | None,
    name: str,
    uid: str,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> dict[Any, Any]:
    """Undecided requests only: decided ones leave the index, so memory stays flat as they pile up."""
    return {
        (namespace, spec.get("pointer")): PendingRequest(
            name=name,
            uid=uid,
            created=str(meta.get("creationTimestamp")),
            generation=meta.get("generation"),
            spec=copy.deepcopy(dict(spec)),
            conditions=copy.deepcopy(list(status.get("conditions") or [])),
            shown={key: copy.deepcopy(status.get(key)) for key in SHOWN_KEYS if status.get(key) is not None},
        )
    }


SHOWN_KEYS = ("phase", "message", "approval", "evidenceWait")


def may_still_count(status: Mapping[str, Any], **_: Any) -> bool:
    """Unjudged approvals (to judge) and accepted ones (to mark stale when the digest moves on);
    stale, rejected and blocked ones are final and leave the index."""
    return status.get("phase") in (None, "", ApprovalPhase.ACCEPTED.value)


@kopf.index(GROUP, VERSION, PROMOTION_APPROVAL_PLURAL, when=may_still_count)
async def approvals_by_namespace(
    namespace: str | None,
    name: str,
    uid: str,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> dict[Any, Any]:
    """Approvals are few (a handful per promotion that needs them): grouped per request on use."""
    return {
        namespace: ApprovalObject(
            name=name,
            uid=uid,
            created=str(meta.get("creationTimestamp")),
            generation=meta.get("generation"),
            spec=copy.deepcopy(dict(spec)),
            phase=status.get("phase"),
            conditions=copy.deepcopy(list(status.get("conditions") or [])),
        )
    }


def namespace_view(
    namespace: str,
    pointers_by_namespace: Index,
    releases_by_namespace: Index,
    policies_by_namespace: Index,
    pricing_tables_by_namespace: Index,
    approvals_by_namespace: Index | None = None,
) -> NamespaceView:
    """A plain-dict snapshot of one namespace, taken on the event loop (indexes are not thread-safe)."""
    approvals: dict[str, list[ApprovalObject]] = defaultdict(list)
    for approval in (approvals_by_namespace or {}).get(namespace, ()):
        approvals[str((approval.spec.get("request") or {}).get("name"))].append(approval)
    return NamespaceView(
        namespace=namespace,
        pointers={name: spec for name, spec, _shown in pointers_by_namespace.get(namespace, ())},
        releases=dict(releases_by_namespace.get(namespace, ())),
        policies=dict(policies_by_namespace.get(namespace, ())),
        pricing_tables={key: table for key, _name, table in pricing_tables_by_namespace.get(namespace, ())},
        approvals=dict(approvals),
    )


def view_of(namespace: str, indexes: Mapping[str, Index]) -> NamespaceView:
    return namespace_view(
        namespace,
        indexes["pointers_by_namespace"],
        indexes["releases_by_namespace"],
        indexes["policies_by_namespace"],
        indexes["pricing_tables_by_namespace"],
        indexes["approvals_by_namespace"],
    )


INDEX_NAMES = (
    "pointers_by_namespace",
    "releases_by_namespace",
    "policies_by_namespace",
    "pricing_tables_by_namespace",
    "pending_requests_by_pointer",
    "approvals_by_namespace",
)


def _indexes(kwargs: Mapping[str, Any]) -> dict[str, Index]:
    """kopf passes each index as a keyword argument named after its indexer."""
    return {name: kwargs[name] for name in INDEX_NAMES}


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
    await drain_with_retry(namespace or "", str(spec.get("pointer")), memo, _indexes(kwargs))


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
    indexes = _indexes(kwargs)
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
        await asyncio.to_thread(memo["controller"].judge_orphan_approval, namespace, approval)


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
    if await asyncio.to_thread(controller.shows_ledger_head, namespace or "", name, dict(status)):
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
                        windows[policy_name] = controller.window_status(policies.get(policy_name or ""))
                    window = windows[policy_name]
                    if window != shown[2]:
                        await asyncio.to_thread(controller.sync_window, namespace, name, window)
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
        await asyncio.to_thread(controller.sync_pointer, namespace, name, reason_if_drifted=reason_if_drifted)


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
    indexes = _indexes(kwargs)
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
