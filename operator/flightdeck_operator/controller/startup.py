"""kopf tuning, the login with a bounded connection pool, and cleanup: kopf's part of the life cycle.

One startup handler owns every kopf setting and puts the controller in ``memo``. The supervisor
(``controller/supervisor.py``) hands in the store, the gateway and the admission webhook's context,
which it owns across leadership; run without it (``kopf run -m ...``) the handler opens the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from flightdeck_operator.api.v1alpha1 import (
    GROUP,
)
from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller.handlers import sweep_pointers
from flightdeck_operator.controller.indexes import indexes_of, view_of
from flightdeck_operator.controller.loop import Controller
from flightdeck_operator.controller.notification_handlers import SUBSCRIPTIONS_INDEX
from flightdeck_operator.controller.notifier import Notifier
from flightdeck_operator.controller.records import ChangeRecorder
from flightdeck_operator.controller.retention import RetentionCollector, collect_garbage, defaults_of
from flightdeck_operator.controller.verification_loop import verify_pointers
from flightdeck_operator.controller.verifier import Verifier
from flightdeck_operator.engine.models import ConfidenceThresholds
from flightdeck_operator.kube.gateway import KubeGateway, load_api_client
from flightdeck_operator.store import Store, open_store

log = logging.getLogger(__name__)

# kopf watches our seven kinds plus CRDs and namespaces (cluster-wide discovery).
WATCHED_RESOURCES = 9
# Connections for everything that is not a watch stream: patches, Events, listings.
API_CONNECTIONS = 24
Index = Mapping[Any, Any]


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

    store: Store | None = memo.get("store")
    if store is None:  # `kopf run -m flightdeck_operator.controller.main`: no supervisor, no fence
        store = await asyncio.to_thread(
            open_store, config.store, sqlite_cache_kib=config.sqlite_cache_mib * 1024
        )
        memo["owns_store"] = True
    gateway: KubeGateway | None = memo.get("gateway")
    if gateway is None:
        gateway = KubeGateway(load_api_client())
        memo["gateway"] = gateway
        memo["owns_gateway"] = True
    memo["config"] = config
    memo["store"] = store
    memo["controller"] = Controller(
        store=store,
        gateway=gateway,
        thresholds=thresholds_of(config),
        dependency_grace=dt.timedelta(seconds=config.dependency_grace_seconds),
        recheck_seconds=config.recheck_seconds,
    )
    memo["recorder"] = ChangeRecorder(store=store, gateway=gateway)
    # Who the operator is to the API server: requestedBy of the requests it creates itself, and how
    # the ledger tells them from a person's (docs/verification.md).
    identity = await asyncio.to_thread(gateway.whoami)
    memo["controller"].identity = identity
    memo["verifier"] = Verifier(
        store=store,
        gateway=gateway,
        identity=identity,
        status_refresh=dt.timedelta(seconds=config.verification_status_refresh_seconds),
        create_delay_seconds=config.automation_create_delay_seconds,
        on_status_written=memo["controller"].pointers.forget_body,
    )
    memo["pointer_locks"] = defaultdict(asyncio.Lock)
    memo["retries"] = {}
    # The indexes are live objects already (empty until the first listing completes).
    memo["sweeper"] = asyncio.create_task(
        sweep_pointers(memo, indexes_of(kwargs), config.pointer_resync_seconds)
    )
    memo["verification_task"] = asyncio.create_task(verify_pointers(memo, indexes_of(kwargs), config))
    if config.notifications_enabled:
        # Notifications: the outbox's pump, apart from the decisions (docs/notifications.md).
        memo["notifier"] = Notifier(store=store, gateway=gateway, settings=config)
        memo["notifier_task"] = asyncio.create_task(memo["notifier"].run(kwargs[SUBSCRIPTIONS_INDEX]))
    if config.retention_enabled:
        metrics = memo.get("metrics")
        collector = RetentionCollector(
            store=store,
            gateway=gateway,
            defaults=defaults_of(config),
            deletes_per_second=config.gc_deletes_per_second,
            on_deleted=None if metrics is None else metrics.deleted,
        )
        indexes = indexes_of(kwargs)
        memo["retention"] = asyncio.create_task(
            collect_garbage(
                collector,
                indexes,
                lambda namespace: view_of(namespace, indexes),
                config.gc_interval_seconds,
                on_pass=None if metrics is None else metrics.retention_pass,
            )
        )
    admission = memo.get("admission")
    if admission is not None:
        # This replica leads now: its admission webhook reads kopf's indexes from here on.
        admission.attach(indexes_of(kwargs))
    log.info("FlightDeck operator configured (store: %s)", store.describe())


def thresholds_of(config: OperatorSettings) -> ConfidenceThresholds:
    return ConfidenceThresholds(
        min_candidate_runs=config.min_candidate_runs,
        min_baseline_runs=config.min_baseline_runs,
        min_low_runs=config.min_low_runs,
    )


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
    for task_name in ("sweeper", "retention", "verification_task", "notifier_task"):
        task = memo.get(task_name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # Scheduled re-examinations (waiting requests, retries) must not start on a closed store.
    for _due, task in list((memo.get("retries") or {}).values()):
        task.cancel()
    store = memo.get("store")
    if store is not None and memo.get("owns_store"):
        await asyncio.to_thread(store.close)
    gateway = memo.get("gateway")
    if gateway is not None and memo.get(
        "owns_gateway"
    ):  # its connection pool (an operator run in-process must not leak it)
        await asyncio.to_thread(gateway.api_client.close)
