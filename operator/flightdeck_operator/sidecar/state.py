"""What every request handler reads: settings, store, gateway, auth, metrics (``app.state.sidecar``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from flightdeck_operator.config import SidecarSettings
from flightdeck_operator.engine.models import ConfidenceThresholds
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.sidecar.auth import Authenticator
from flightdeck_operator.sidecar.decisions import DecisionWatcher
from flightdeck_operator.sidecar.ledger_health import LedgerVerifier
from flightdeck_operator.sidecar.metrics import SidecarMetrics
from flightdeck_operator.sidecar.otlp_service import OtlpService
from flightdeck_operator.store import Store


@dataclass
class SidecarState:
    """Everything a request handler needs, on ``app.state.sidecar``."""

    settings: SidecarSettings
    store: Store
    gateway: KubeGateway
    auth: Authenticator
    metrics: SidecarMetrics = field(default_factory=SidecarMetrics)
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    # Limits promote/rollback waits (each holds a worker thread); set on first use.
    wait_limiter: anyio.CapacityLimiter | None = None
    decisions: DecisionWatcher = field(init=False)
    # The dashboard's view of the ledger's chain, verified piece by piece as it grows.
    ledger_verifier: LedgerVerifier = field(init=False)
    # Who the local dashboard acts as (its kubeconfig's user), once asked.
    local_user: str | None = None

    otlp: OtlpService = field(init=False)

    def __post_init__(self) -> None:
        self.decisions = DecisionWatcher(self.gateway, self.settings.namespace)
        self.otlp = OtlpService(self.settings, self.store, self.gateway, self.metrics, clock=self.clock)
        self.ledger_verifier = LedgerVerifier(self.store)
        namespace = self.settings.namespace
        self.metrics.watch_notifications(lambda: self.store.subscription_states(namespace))

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    @property
    def thresholds(self) -> ConfidenceThresholds:
        return ConfidenceThresholds(
            min_candidate_runs=self.settings.min_candidate_runs,
            min_baseline_runs=self.settings.min_baseline_runs,
            min_low_runs=self.settings.min_low_runs,
        )
