"""The operator process: the admission webhook on every replica, kopf only on the elected one.

Order of life, for each replica:

1. Open the store, start the health port and the admission webhook (no leadership needed: a
   standby answers admission calls from the API server's watch cache).
2. Campaign for the Lease (``kube/leader_election.py``) until elected or told to stop.
3. Claim the ledger's fence with the Lease's transitions as the epoch (``store/fence.py``); if the
   fence already holds an equal or newer epoch (the Lease was re-created), raise the Lease's
   transitions above it first.
4. Run kopf (``kopf.operator``) while renewing the Lease from a thread of its own. Losing the Lease, or a ledger append
   refused by the fence, ends the process at once (``os._exit``): nothing may run after it, as
   controller-runtime does. SIGTERM stops kopf, then releases the Lease so a standby takes over
   within one retry period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import uuid
from typing import Any, cast

import kopf

from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller.admission_context import OperatorAdmissionContext
from flightdeck_operator.controller.assessment import Assessor
from flightdeck_operator.controller.health import HealthServer, HealthState, OperatorMetrics
from flightdeck_operator.controller.startup import thresholds_of
from flightdeck_operator.kube.gateway import KubeGateway, default_namespace, load_api_client
from flightdeck_operator.kube.leader_election import (
    BackgroundRenewal,
    ElectionTimings,
    LeaderElector,
    LeadershipLost,
)
from flightdeck_operator.kube.leases import LeaseClient
from flightdeck_operator.store import Fenced, Store, WriterFence, open_store
from flightdeck_operator.webhook.certs import CertificateError
from flightdeck_operator.webhook.handlers import AdmissionHandlers
from flightdeck_operator.webhook.server import WebhookServer, server_from_settings

log = logging.getLogger(__name__)

# Exit codes that say why a replica stopped deciding (the pod restarts and campaigns again).
EXIT_LEADERSHIP_LOST = 70
EXIT_FENCED = 71
# Longest SIGTERM-to-release wait for kopf's handlers to finish (the chart's grace period is 45 s).
KOPF_STOP_TIMEOUT_S = 30.0


def leader_identity(config: OperatorSettings) -> str:
    """``<pod or host name>_<random>``: unique per process, so a second process under the same pod
    name (a StatefulSet pod force-deleted while still running) cannot pass for the leader."""
    return f"{config.leader_identity or socket.gethostname()}_{uuid.uuid4().hex[:12]}"


def lease_namespace(config: OperatorSettings) -> str:
    if config.lease_namespace:
        return config.lease_namespace
    return config.namespaces[0] if config.namespaces else default_namespace()


def exit_now(code: int, message: str) -> None:
    """Stop at once: no cleanup handler, no further ledger or API write from this process."""
    log.critical(message)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(code)


class Supervisor:
    def __init__(self, config: OperatorSettings, health_endpoint: str | None) -> None:
        self.config = config
        self.health_endpoint = health_endpoint
        self.identity = leader_identity(config)
        self.metrics = OperatorMetrics(self.identity)
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        store = await asyncio.to_thread(
            open_store, self.config.store, sqlite_cache_kib=self.config.sqlite_cache_mib * 1024
        )
        gateway = KubeGateway(load_api_client())
        elector = self._elector(gateway) if self.config.leader_election else None
        state = HealthState(
            heartbeat=(lambda: elector.heartbeat) if elector is not None else loop.time,
            stale_after=self.config.lease_duration_seconds + 20.0,
        )
        health = HealthServer(self.health_endpoint, state, self.metrics) if self.health_endpoint else None
        admission = OperatorAdmissionContext(
            delegates=self.config.webhook_delegates,
            gateway=gateway,
            store=store,
            predictor=Assessor(store, thresholds_of(self.config), clock=_now).predict,
        )
        webhook: WebhookServer | None = None
        try:
            if health is not None:
                await health.start()
            webhook = await self._start_webhook(admission, gateway)
            state.role = "candidate"
            if elector is not None and not await self._elected(elector, store):
                return 0  # stopped while a standby
            state.leader, state.role = True, "leader"
            return await self._lead(elector, store, gateway, admission, state)
        finally:
            if webhook is not None:
                await webhook.stop()
            if health is not None:
                await health.stop()
            await asyncio.to_thread(store.close)

    def _elector(self, gateway: KubeGateway) -> LeaderElector:
        timings = ElectionTimings(
            lease_duration=self.config.lease_duration_seconds,
            renew_deadline=self.config.renew_deadline_seconds,
            retry_period=self.config.retry_period_seconds,
        )
        leases = LeaseClient(gateway.api_client, lease_namespace(self.config), self.config.lease_name)
        return LeaderElector(leases, self.identity, timings, on_observed=self.metrics.observed)

    async def _start_webhook(
        self, admission: OperatorAdmissionContext, gateway: KubeGateway
    ) -> WebhookServer | None:
        if self.config.webhook_port is None:
            return None
        webhook = server_from_settings(self.config, AdmissionHandlers(admission).routes(), gateway)
        try:
            await webhook.start()
        except (OSError, CertificateError) as error:
            # Without it every create in the watched namespaces fails (failurePolicy Fail).
            raise SystemExit(f"The admission webhook cannot start: {error}") from error
        return webhook

    async def _elected(self, elector: LeaderElector, store: Store) -> bool:
        """Campaign until elected (True) or stopped (False), then claim the fence."""
        log.info(
            "Campaigning for Lease %s/%s as %s",
            elector.leases.namespace,
            elector.leases.name,
            self.identity,
        )
        campaign = asyncio.create_task(elector.acquire())
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({campaign, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not campaign.done():
            campaign.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await campaign
            return False
        stop.cancel()
        record = campaign.result()
        fence_name = f"{elector.leases.namespace}/{elector.leases.name}"
        epoch = record.lease_transitions
        try:
            await asyncio.to_thread(store.claim_fence, self._fence(fence_name, epoch))
        except Fenced as newer:
            # The Lease counts from 0 again (deleted and re-created): move it past the fence.
            log.warning("%s; raising the Lease's transitions to %d", newer, newer.stored_epoch + 1)
            try:
                record = await elector.raise_transitions(newer.stored_epoch + 1)
            except LeadershipLost as lost:
                exit_now(EXIT_LEADERSHIP_LOST, f"Leadership lost before the fence was claimed: {lost}")
            epoch = record.lease_transitions
            await asyncio.to_thread(store.claim_fence, self._fence(fence_name, epoch))
        self.metrics.elected(epoch)
        log.info("Elected: claimed the ledger fence %s at epoch %d", fence_name, epoch)
        return True

    def _fence(self, name: str, epoch: int) -> WriterFence:
        return WriterFence(name, epoch, self.identity, refused=self._refused)

    def _lost(self, lost: LeadershipLost) -> None:
        """Called in the renewal's own thread: stop without waiting for the (maybe busy) event loop."""
        self.metrics.deposed()
        exit_now(EXIT_LEADERSHIP_LOST, f"Leadership lost: {lost}; exiting")

    def _refused(self, refused: Fenced) -> None:
        """Called in whichever thread's append the fence refused: this replica no longer leads."""
        self.metrics.fenced_writes.inc()
        self.metrics.deposed()
        exit_now(EXIT_FENCED, f"Fenced: {refused}; exiting")

    async def _lead(
        self,
        elector: LeaderElector | None,
        store: Store,
        gateway: KubeGateway,
        admission: OperatorAdmissionContext,
        state: HealthState,
    ) -> int:
        kopf_ready, kopf_stop = asyncio.Event(), asyncio.Event()
        memo = kopf.Memo(
            config=self.config, store=store, gateway=gateway, admission=admission, metrics=self.metrics
        )
        operator = asyncio.create_task(
            kopf.operator(
                # Our identity, not kopf's guess: that asks the password database for the user, and
                # the image's numeric user (runAsUser) has no entry there.
                identity=cast(Any, self.identity),
                standalone=True,
                clusterwide=not self.config.namespaces,
                namespaces=self.config.namespaces,
                memo=memo,
                ready_flag=kopf_ready,
                stop_flag=kopf_stop,
            ),
            name="kopf",
        )
        watched: set[asyncio.Task[Any]] = {operator, asyncio.create_task(self.stopping.wait())}
        watched.add(asyncio.create_task(_set_when(kopf_ready, state)))
        renewal = BackgroundRenewal(elector, self._lost) if elector is not None else None
        if renewal is not None:
            renewal.start()
        while True:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if operator in done or self.stopping.is_set():
                break
            watched -= done
        # Graceful stop (SIGTERM reached kopf, or ours): kopf first, then hand the Lease over.
        kopf_stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(operator), KOPF_STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("kopf did not stop within %.0fs", KOPF_STOP_TIMEOUT_S)
        state.leader, state.kopf_ready = False, False
        self.metrics.deposed()
        if renewal is not None:
            await asyncio.to_thread(renewal.stop)
        if elector is not None:
            await elector.release()
        failed = operator.done() and not operator.cancelled() and operator.exception() is not None
        if failed:
            log.error("kopf ended with an error", exc_info=operator.exception())
        return 1 if failed else 0


async def _set_when(ready: asyncio.Event, state: HealthState) -> None:
    await ready.wait()
    state.kopf_ready = True
    await asyncio.Event().wait()  # stays pending: only the other tasks end the leadership


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def supervise(config: OperatorSettings, *, health_endpoint: str | None) -> int:
    kopf.configure(verbose=False, log_format=kopf.LogFormat.FULL)
    return asyncio.run(Supervisor(config, health_endpoint).run())
