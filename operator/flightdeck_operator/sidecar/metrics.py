"""Prometheus metrics of the sidecar, in a registry of its own (one per app, so tests can run
several apps in one process without clashing series)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flightdeck_operator.store import StoreError
from flightdeck_operator.store.notifications import SubscriptionState

log = logging.getLogger(__name__)

NAMESPACE: Final = "flightdeck_sidecar"
OTLP_NAMESPACE: Final = "flightdeck_otlp"  # the names docs/opentelemetry.md documents
# Promote round trips are dominated by the operator's decision (tens of ms to the timeout); ingest
# batches by validation and insert (a few ms per thousand events).
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED_ROUTE: Final = "<unmatched>"


class SidecarMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Time from request received to response sent, per route template.",
            ("method", "route"),
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests answered, per route template and status code.",
            ("method", "route", "status"),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.decisions = Counter(
            "decisions",
            "Promote/rollback/promote_request/promote_confirm answers seen by the sidecar, by outcome "
            "(passed, blocked, failed, conflict, pending, rejected, timeout, deleted).",
            ("action", "outcome"),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.events_received = Counter(
            "events_received",
            "Run events in accepted batches (valid, before deduplication).",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.events_ingested = Counter(
            "events_ingested",
            "Run events newly stored (duplicates of a known run_id are not counted).",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.batches_rejected = Counter(
            "event_batches_rejected",
            "POST /v1/events batches rejected whole, by reason (invalid, too_large).",
            ("reason",),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        # OTLP/HTTP traces (POST /v1/traces): the Python exporter never reads the answer body,
        # so these and GET /v1/otlp/status are how rejections are seen.
        self.otlp_spans = Counter(
            "spans",
            "Spans received on POST /v1/traces, by outcome (accepted: staged; rejected, with the "
            "reason; late: their trace was already finalised; duplicate: a re-sent request).",
            ("outcome", "reason"),
            namespace=OTLP_NAMESPACE,
            registry=self.registry,
        )
        self.otlp_runs = Counter(
            "runs",
            "Agent runs found in finalised traces, by outcome (emitted: a new run event; duplicate: "
            "its run_id was stored before; rejected, with the reason; mixed_model: emitted, with "
            "usage of more than one model).",
            ("outcome", "reason"),
            namespace=OTLP_NAMESPACE,
            registry=self.registry,
        )
        self.otlp_traces = Counter(
            "traces",
            "Staged traces looked at by the finaliser, by outcome (finalized, deferred: a parent "
            "still missing; no_runs: finalised without an agent run; failed: the mapper raised, finalised "
            "without run events and logged).",
            ("outcome",),
            namespace=OTLP_NAMESPACE,
            registry=self.registry,
        )
        self.otlp_orphan_inference_spans = Counter(
            "orphan_inference_spans",
            "Model-call spans under no agent run (not evidence).",
            namespace=OTLP_NAMESPACE,
            registry=self.registry,
        )
        self.otlp_late_spans = Counter(
            "late_spans",
            "Spans of traces already finalised (counted, never mapped again).",
            namespace=OTLP_NAMESPACE,
            registry=self.registry,
        )
        self.otlp_staged_traces = Gauge(
            "staged_traces",
            "Traces staged and not yet finalised (as of the finaliser's last round).",
            namespace=OTLP_NAMESPACE,
            registry=self.registry,
        )
        self.otlp_requests_refused = Counter(
            "requests_refused",
            "POST /v1/traces requests refused whole, by reason (decode, too_large, media_type, "
            "staging_full, store_unavailable).",
            ("reason",),
            namespace=OTLP_NAMESPACE,
            registry=self.registry,
        )

    def watch_notifications(self, states: Callable[[], Mapping[str, SubscriptionState]]) -> None:
        """Export the outbox's per-subscription counters (read from the store at each scrape)."""
        self.registry.register(NotificationCollector(states))


NOTIFICATIONS: Final = "flightdeck_notifications"


class NotificationCollector(Collector):
    """Delivery counters of the NotificationSubscriptions, as the operator keeps them in the store:
    they survive operator restarts, and any sidecar replica reports the same values."""

    def __init__(self, states: Callable[[], Mapping[str, SubscriptionState]]) -> None:
        self.states = states

    def collect(self) -> Iterator[Metric]:
        labels = ("namespace", "subscription")
        delivered = CounterMetricFamily(
            f"{NOTIFICATIONS}_delivered", "Deliveries answered with a 2xx.", labels=labels
        )
        failed = CounterMetricFamily(
            f"{NOTIFICATIONS}_failed_attempts",
            "Delivery attempts that failed (each is retried).",
            labels=labels,
        )
        expired = CounterMetricFamily(
            f"{NOTIFICATIONS}_expired",
            "Deliveries given up after the subscription's retryFor.",
            labels=labels,
        )
        backlog = GaugeMetricFamily(f"{NOTIFICATIONS}_backlog", "Deliveries still pending.", labels=labels)
        failing = GaugeMetricFamily(
            f"{NOTIFICATIONS}_consecutive_failures", "Failed attempts in a row.", labels=labels
        )
        try:
            states = self.states()
        except StoreError as error:
            log.warning("Notification counters unavailable: %s", error)
            states = {}
        for state in states.values():
            values = [state.namespace, state.name]
            delivered.add_metric(values, state.delivered_total)
            failed.add_metric(values, state.failed_attempts_total)
            expired.add_metric(values, state.expired_total)
            backlog.add_metric(values, state.backlog)
            failing.add_metric(values, state.consecutive_failures)
        yield from (delivered, failed, expired, backlog, failing)
