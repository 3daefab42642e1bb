"""The operator's health port: liveness, the decider's readiness, and Prometheus metrics.

- ``/healthz``: the process is alive (its election loop has run recently). Every replica.
- ``/readyz``: this replica is **the decider**: it holds the Lease and kopf has started (indexes
  filled, handlers running). A standby answers 503; the pod's readiness probe uses the webhook's
  health instead, so that every replica serves the webhook and a rolling update can complete.
- ``/metrics``: leadership, Lease transitions seen, fenced ledger writes.
"""

from __future__ import annotations

import time
import tracemalloc
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from flightdeck_operator.api.retention import PruneReason
from flightdeck_operator.kube.leases import LeaseRecord

if TYPE_CHECKING:
    from flightdeck_operator.controller.retention import PassResult


@dataclass
class OperatorMetrics:
    """The operator's own metrics, in a registry of their own (not the process-global one)."""

    identity: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.leader = Gauge(
            "flightdeck_leader",
            "1 while this replica holds the Lease and decides, else 0.",
            ["identity"],
            registry=self.registry,
        )
        self.leader.labels(self.identity).set(0)
        self.epoch = Gauge(
            "flightdeck_leader_epoch",
            "The Lease's transitions when this replica was elected: the epoch its ledger writes carry.",
            registry=self.registry,
        )
        self.transitions = Counter(
            "flightdeck_lease_transitions",
            "Changes of the Lease's holder this replica has seen (its own acquisitions included).",
            registry=self.registry,
        )
        self.fenced_writes = Counter(
            "flightdeck_fenced_writes",
            "Ledger appends refused because another replica claimed a newer epoch.",
            registry=self.registry,
        )
        self.gc_deleted = Counter(
            "flightdeck_gc_deleted",
            "Decided PromotionRequests deleted by retention, by reason (ttl, cap).",
            ["reason"],
            registry=self.registry,
        )
        self.resident = Gauge(
            "flightdeck_requests_resident",
            "Decided PromotionRequests in the watched namespaces when the last retention pass started.",
            registry=self.registry,
        )
        self._holder: str | None = None

    def deleted(self, reason: PruneReason) -> None:
        self.gc_deleted.labels(reason.value).inc()

    def retention_pass(self, result: PassResult) -> None:
        self.resident.set(result.resident)

    def observed(self, record: LeaseRecord) -> None:
        if self._holder is not None and record.holder_identity and record.holder_identity != self._holder:
            self.transitions.inc()
        if record.holder_identity:
            self._holder = record.holder_identity

    def elected(self, epoch: int) -> None:
        self.leader.labels(self.identity).set(1)
        self.epoch.set(epoch)
        if self._holder != self.identity:
            self.transitions.inc()
            self._holder = self.identity

    def deposed(self) -> None:
        self.leader.labels(self.identity).set(0)


@dataclass
class HealthState:
    """What the probes read: filled in by the supervisor as the replica's role changes."""

    heartbeat: Callable[[], float]  # monotonic time of the election loop's last round
    stale_after: float  # seconds without a round before /healthz fails
    leader: bool = False
    kopf_ready: bool = False
    role: str = "starting"


class HealthServer:
    """aiohttp on the address of ``endpoint`` (e.g. ``http://0.0.0.0:8080/healthz``)."""

    def __init__(self, endpoint: str, state: HealthState, metrics: OperatorMetrics) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        self.host = parts.hostname or "0.0.0.0"
        self.port = parts.port or 8080
        self.liveness_path = parts.path or "/healthz"
        self.state = state
        self.metrics = metrics
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self.liveness_path, self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/debug/tracemalloc", self._tracemalloc)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _summary(self) -> dict[str, object]:
        return {"role": self.state.role, "leader": self.state.leader, "kopfReady": self.state.kopf_ready}

    async def _healthz(self, _request: web.Request) -> web.Response:
        alive = time.monotonic() - self.state.heartbeat() < self.state.stale_after
        return web.json_response({"alive": alive, **self._summary()}, status=200 if alive else 503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready = self.state.leader and self.state.kopf_ready
        return web.json_response({"ready": ready, **self._summary()}, status=200 if ready else 503)

    async def _tracemalloc(self, request: web.Request) -> web.Response:
        """Where the live Python heap is, by source line (only when the process was started with
        PYTHONTRACEMALLOC=<frames>: tracing costs memory and time, so it is never on by default)."""
        if not tracemalloc.is_tracing():
            raise web.HTTPNotFound(
                text="start the operator with PYTHONTRACEMALLOC=<frames> to trace allocations"
            )
        limit = int(request.query.get("limit", "40"))
        group = "traceback" if request.query.get("by") == "traceback" else "lineno"
        stats = tracemalloc.take_snapshot().statistics(group)
        total = sum(stat.size for stat in stats)
        lines = [f"live heap {total / 2**20:.1f} MiB in {sum(s.count for s in stats)} blocks"]
        for stat in stats[:limit]:
            lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:8d} blocks")
            lines.extend(
                f"    {line}" for line in stat.traceback.format(limit=6 if group == "traceback" else 1)
            )
        return web.Response(text="\n".join(lines) + "\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
