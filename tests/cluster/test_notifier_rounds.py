"""The notifier's rounds driven by hand with an injected clock (the real store, the real API server,
a receiver that is down): backoff is stored and honoured, a delivery older than ``retryFor`` is
given up and counted instead of sent, and the status says so. Hours pass in the clock, not in the test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from flightdeck_operator.api.v1alpha1 import NOTIFICATION_SUBSCRIPTION
from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller.notification_status import indexed_subscription
from flightdeck_operator.controller.notifier import Notifier
from flightdeck_operator.kube.gateway import KubeGateway, load_api_client
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import free_port
from flightdeck_operator.store import open_store
from flightdeck_operator.store.notifications import EXPIRED
from tests.unit.test_ledger import record

from .kube import apply, get
from .test_notifications import secret, subscription


async def test_backoff_is_honoured_and_old_deliveries_expire(
    control_plane: ControlPlane, crds: Path, namespace: str, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    apply(
        control_plane,
        namespace,
        secret("hooks-key", "k"),
        subscription("hooks", url, ["promote.succeeded"], retryFor="1h"),
    )
    body = get(control_plane, namespace, "notificationsubscription", "hooks")
    created = dt.datetime.fromisoformat(body["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    now = [created + dt.timedelta(seconds=5)]
    settings = OperatorSettings(notification_retry_base_seconds=60, notification_max_backoff_seconds=600)
    gateway = KubeGateway(load_api_client(str(control_plane.kubeconfig("admin"))))
    with open_store(tmp_path / "fd.db") as store:
        store.append(record(1, namespace=namespace, created_at=created + dt.timedelta(seconds=1)))
        notifier = Notifier(store=store, gateway=gateway, settings=settings, clock=lambda: now[0])
        notifier.open()
        try:

            async def round_at(at: dt.datetime) -> None:
                now[0] = at
                fresh = get(control_plane, namespace, "notificationsubscription", "hooks")
                meta, spec = fresh["metadata"], fresh["spec"]
                indexed = indexed_subscription(
                    namespace, "hooks", meta["uid"], meta, spec, fresh.get("status") or {}
                )
                await notifier.round([indexed])
                await notifier.wait_senders()

            await round_at(now[0])  # planned and tried once: the receiver is down
            [state] = store.subscription_states(namespace).values()
            assert (state.backlog, state.failed_attempts_total, state.consecutive_failures) == (1, 1, 1)
            assert state.next_attempt_at is not None
            assert (
                48 <= (state.next_attempt_at - now[0]).total_seconds() <= 60
            )  # base 60 s, jitter up to a fifth

            await round_at(now[0] + dt.timedelta(seconds=30))  # still backing off: no attempt
            assert store.subscription_states(namespace)[state.uid].failed_attempts_total == 1

            await round_at(now[0] + dt.timedelta(seconds=40))  # due again: a second failure, a longer delay
            again = store.subscription_states(namespace)[state.uid]
            assert (again.failed_attempts_total, again.consecutive_failures) == (2, 2)
            assert again.next_attempt_at is not None
            assert 96 <= (again.next_attempt_at - now[0]).total_seconds() <= 120

            await round_at(created + dt.timedelta(hours=1, minutes=1))  # past retryFor: given up, not sent
            expired = store.subscription_states(namespace)[state.uid]
            assert (expired.backlog, expired.expired_total, expired.failed_attempts_total) == (0, 1, 2)
            assert [s for _, _, _, s, _ in store.delivery_states(state.uid)] == [EXPIRED]

            await round_at(now[0] + dt.timedelta(seconds=1))  # the status follows the store
            shown = get(control_plane, namespace, NOTIFICATION_SUBSCRIPTION.plural, "hooks")["status"]
            assert (shown["expired"], shown["backlog"], shown["failedAttempts"]) == (1, 0, 2)
        finally:
            await notifier.close()
            gateway.api_client.close()
