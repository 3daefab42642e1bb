"""OTLP traces in, run events out: the receiving half of ``POST /v1/traces`` and the finaliser.

Receiving (in the request, on a worker thread): decompress and decode the body, screen the spans
(bad ids, run spans whose release or environment cannot be resolved: the partial success), and
stage the rest in the store. The answer is sent only once the spans are committed, so an accepted
span survives a crash or restart.

Finalising (a background thread, every ``otlp_finalize_interval_seconds``): traces that are due
(their root arrived and nothing new came for the settle time, or the maximum wait passed) are
mapped to run events and stored with their staging rows removed, in one transaction
(``Store.finalize_otlp_traces``). Decoded spans of recent requests are kept in memory so a trace
is usually not decoded twice; after a restart, or for spans another replica received, they are
decoded again from the stored bodies.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from flightdeck_operator.config import SidecarSettings
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.otlp.decode import OtlpPayloadError, decode_traces, decompress, media_type
from flightdeck_operator.otlp.mapping import MappingConfig, TraceNotReady, screen_spans
from flightdeck_operator.otlp.rejections import Rejection, RejectionReason, RejectionSummary
from flightdeck_operator.otlp.spans import SpanRecord, ids_are_valid
from flightdeck_operator.otlp.staging import Settled, batch_id, group_by_trace, is_local_root, settle
from flightdeck_operator.sidecar.metrics import SidecarMetrics
from flightdeck_operator.sidecar.otlp_status import OtlpStatus, OtlpStatusResponse
from flightdeck_operator.sidecar.release_catalog import ReleaseCatalogCache
from flightdeck_operator.store import Store
from flightdeck_operator.store.otlp import DueTrace, StagingRequest, TracePart, TraceResult

log = logging.getLogger(__name__)

TRACES_PER_ROUND: Final = 2000  # due traces mapped and stored per finaliser transaction
MAX_CACHED_SPANS: Final = 100_000  # decoded spans kept for the finaliser (beyond: decoded again)
FORGET_EVERY_S: Final = 60.0
# Rejections a fresher list of AgentReleases might turn into runs (a release created just now).
_CATALOG_MISSES: Final = frozenset(
    {RejectionReason.UNKNOWN_RELEASE, RejectionReason.UNKNOWN_AGENT, RejectionReason.UNKNOWN_VERSION}
)


class StagingFull(Exception):
    """More traces are staged than ``otlp_max_staged_traces``: 503 with Retry-After."""


class StoreUnavailable(Exception):
    """The store did not take the spans (busy, down): 503 with Retry-After; nothing was staged."""


@dataclass(frozen=True, slots=True)
class Received:
    rejections: RejectionSummary  # for the partial success
    accepted: int  # spans staged now
    late: int  # spans of traces already finalised
    duplicate: int  # spans of a request staged before (a re-send)


def mapping_config(settings: SidecarSettings) -> MappingConfig:
    return MappingConfig(
        run_operations=frozenset(name.strip().lower() for name in settings.otlp_run_operations),
        root_fallback=settings.otlp_root_fallback,
        release_attribute=settings.otlp_release_attribute,
        version_fallback=settings.otlp_version_fallback,
        default_environment=settings.otlp_default_environment,
    )


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


class OtlpService:
    def __init__(
        self,
        settings: SidecarSettings,
        store: Store,
        gateway: KubeGateway,
        metrics: SidecarMetrics,
        *,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.config = mapping_config(settings)
        self.catalogs = ReleaseCatalogCache(
            gateway, settings.namespace, max_age_seconds=settings.otlp_release_refresh_seconds
        )
        self.status = OtlpStatus(clock())
        self._settle_us = _micros(settings.otlp_settle_seconds)
        self._max_wait_us = _micros(settings.otlp_max_trace_wait_seconds)
        self._staged = 0  # estimate: the finaliser's last count plus what was staged since
        self._cache: dict[str, dict[str, list[SpanRecord]]] = {}  # batch id -> trace id -> spans
        self._cached_spans = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flightdeck-otlp-finalizer", daemon=True)

    def _now_us(self) -> int:
        return (self.clock() - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)

    # --- receiving ----------------------------------------------------------------------------------

    def receive(self, raw: bytes, content_type: str | None, content_encoding: str | None) -> Received:
        """Decode, screen and stage one request. Raises ``OtlpPayloadError`` (400/413/415),
        ``StagingFull`` or ``StoreUnavailable`` (503)."""
        body = decompress(raw, content_encoding, max_bytes=self.settings.otlp_max_body_bytes)
        spans = decode_traces(body, content_type)
        screening = screen_spans(spans, self.config, self.catalogs.get())
        if any(reason in _CATALOG_MISSES for reason in screening.rejections.counts):
            screening = screen_spans(spans, self.config, self.catalogs.refresh_if_stale())
        traces = group_by_trace(screening.stageable)
        rejections = screening.rejections
        received = Received(rejections, 0, 0, 0)
        if traces:
            received = self._stage(media_type(content_type), body, traces, rejections)
        self._count_received(received)
        return received

    def _stage(
        self, kind: str, body: bytes, traces: dict[str, list[SpanRecord]], rejections: RejectionSummary
    ) -> Received:
        if self._staged + len(traces) > self.settings.otlp_max_staged_traces:
            raise StagingFull(
                f"{self._staged} traces are waiting to be finalised (at most "
                f"{self.settings.otlp_max_staged_traces}); retry later."
            )
        request = StagingRequest(
            batch_id=batch_id(kind, body),
            received_us=self._now_us(),
            content_type=kind,
            body=body,
            traces={
                trace_id: TracePart(len(spans), any(is_local_root(span) for span in spans))
                for trace_id, spans in traces.items()
            },
            settle_us=self._settle_us,
            max_wait_us=self._max_wait_us,
            max_spans_per_trace=self.settings.otlp_max_spans_per_trace,
        )
        try:
            outcome = self.store.stage_otlp_batch(request)
        except Exception as error:  # nothing was committed: the client may retry
            log.warning("Could not stage OTLP spans: %s", error)
            raise StoreUnavailable(f"The store did not take the spans ({error}); retry later.") from None
        if outcome.duplicate:
            return Received(rejections, 0, 0, sum(len(spans) for spans in traces.values()))
        with self._lock:
            self._staged += len(outcome.staged)
            self._remember(request.batch_id, {trace_id: traces[trace_id] for trace_id in outcome.staged})
        if outcome.over_limit:
            cap = self.settings.otlp_max_spans_per_trace
            over = [
                Rejection(
                    RejectionReason.TOO_MANY_SPANS,
                    trace_id,
                    span.span_id,
                    f"trace has more than {cap} spans (otlp_max_spans_per_trace)",
                )
                for trace_id in outcome.over_limit
                for span in traces[trace_id]
            ]
            rejections = rejections.merged(RejectionSummary.of(over))
        accepted = sum(len(traces[trace_id]) for trace_id in outcome.staged)
        return Received(rejections, accepted, sum(outcome.late.values()), 0)

    def _count_received(self, received: Received) -> None:
        spans = self.metrics.otlp_spans
        for outcome, count in (
            ("accepted", received.accepted),
            ("late", received.late),
            ("duplicate", received.duplicate),
        ):
            if count:
                spans.labels(outcome, "").inc(count)
                self.status.add(f"spans_{outcome}", count)
        if received.late:
            self.metrics.otlp_late_spans.inc(received.late)
        if received.duplicate:
            return  # a re-send: its rejections were counted the first time (and answered again)
        for reason, count in received.rejections.counts.items():
            spans.labels("rejected", reason.value).inc(count)
        if received.rejections.counts:
            self.status.rejected("receive", received.rejections, self.clock())

    def refused(self, reason: str) -> None:
        self.metrics.otlp_requests_refused.labels(reason).inc()
        self.status.refused(reason)

    # --- the decoded-span cache ---------------------------------------------------------------------

    def _remember(self, batch: str, traces: dict[str, list[SpanRecord]]) -> None:
        count = sum(len(spans) for spans in traces.values())
        if traces and self._cached_spans + count <= MAX_CACHED_SPANS:
            self._cache.setdefault(batch, {}).update(traces)
            self._cached_spans += count

    def _forget(self, trace_id: str, batch_ids: Iterable[str]) -> None:
        for batch in batch_ids:
            traces = self._cache.get(batch)
            if traces is None:
                continue
            spans = traces.pop(trace_id, None)
            if spans is not None:
                self._cached_spans -= len(spans)
            if not traces:
                del self._cache[batch]

    def _spans_of(self, due: Sequence[DueTrace]) -> dict[str, list[SpanRecord]]:
        """Every staged span of the due traces: from memory, else decoded from the stored bodies."""
        found: dict[str, list[SpanRecord]] = {trace.trace_id: [] for trace in due}
        missing: set[str] = set()
        with self._lock:
            for trace in due:
                for batch in trace.batch_ids:
                    cached = self._cache.get(batch)
                    if cached is None or trace.trace_id not in cached:
                        missing.add(batch)
                    else:
                        found[trace.trace_id].extend(cached[trace.trace_id])
        if missing:
            # Only spans staged from that body: a trace left out of it (late, over the span cap)
            # does not list it; spans with bad ids were never staged.
            wanted = {(trace.trace_id, batch) for trace in due for batch in trace.batch_ids}
            for batch, (content_type, body) in self.store.otlp_batches(missing).items():
                try:
                    decoded = decode_traces(body, content_type)
                except OtlpPayloadError as error:  # it decoded when it was accepted: log, go on
                    log.error(
                        "Staged OTLP body %s no longer decodes (%s); its spans are skipped", batch, error
                    )
                    continue
                valid = (span for span in decoded if ids_are_valid(span))
                for trace_id, spans in group_by_trace(valid).items():
                    if (trace_id, batch) in wanted:
                        found[trace_id].extend(spans)
        return found

    # --- finalising ---------------------------------------------------------------------------------

    def finalize_due(self) -> int:
        """One round: map and store up to ``TRACES_PER_ROUND`` due traces; returns how many were due."""
        now_us = self._now_us()
        due = self.store.due_otlp_traces(now_us, limit=TRACES_PER_ROUND)
        if not due:
            return 0
        spans = self._spans_of(due)
        catalog = self.catalogs.get()
        results: list[TraceResult] = []
        settled: dict[str, Settled] = {}
        for trace in due:
            final_at = trace.first_us + self._max_wait_us
            try:
                outcome = settle(spans[trace.trace_id], self.config, catalog, final=now_us >= final_at)
            except Exception:  # a trace the mapper cannot handle must not stop every other one
                log.exception(
                    "Could not map OTLP trace %s; it is finalised without run events", trace.trace_id
                )
                self.metrics.otlp_traces.labels("failed").inc()
                results.append(TraceResult(trace.trace_id, trace.due_us, trace.batch_ids))
                continue
            if isinstance(outcome, TraceNotReady):
                results.append(
                    TraceResult(trace.trace_id, trace.due_us, trace.batch_ids, defer_until_us=final_at)
                )
                continue
            settled[trace.trace_id] = outcome
            results.append(TraceResult(trace.trace_id, trace.due_us, trace.batch_ids, outcome.mapping.events))
        stored = self.store.finalize_otlp_traces(results, now_us=now_us)
        with self._lock:
            for trace in due:
                if trace.trace_id in stored.finalized:
                    self._forget(trace.trace_id, trace.batch_ids)
            self._staged = max(self._staged - len(stored.finalized), 0)
        self._count_finalized([settled[t] for t in stored.finalized if t in settled], stored.inserted)
        self.metrics.otlp_traces.labels("deferred").inc(len(stored.deferred))
        return len(due)

    def _count_finalized(self, settled: Sequence[Settled], inserted: int) -> None:
        events = sum(len(s.mapping.events) for s in settled)
        runs = self.metrics.otlp_runs
        runs.labels("emitted", "").inc(inserted)
        runs.labels("duplicate", "").inc(events - inserted)
        self.status.add("runs_emitted", inserted)
        self.status.add("runs_duplicate", events - inserted)
        mixed = sum(1 for s in settled for event in s.mapping.events if "otel.models" in event["labels"])
        if mixed:
            runs.labels("mixed_model", "").inc(mixed)
        orphans = sum(s.mapping.orphan_inference_spans for s in settled)
        if orphans:
            self.metrics.otlp_orphan_inference_spans.inc(orphans)
            self.status.add("orphan_inference_spans", orphans)
        now = self.clock()
        for s in settled:
            for reason, count in s.mapping.rejections.counts.items():
                runs.labels("rejected", reason.value).inc(count)
            if s.mapping.rejections.counts:
                self.status.rejected("finalize", s.mapping.rejections, now)
        traces = self.metrics.otlp_traces
        traces.labels("finalized").inc(len(settled))
        traces.labels("no_runs").inc(sum(1 for s in settled if not s.mapping.events))

    # --- the background thread ----------------------------------------------------------------------

    def start(self) -> None:
        if self.settings.otlp_enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        forgotten_at = 0.0
        while not self._stopping.is_set():
            try:
                while self.finalize_due() >= TRACES_PER_ROUND and not self._stopping.is_set():
                    pass  # a backlog: keep going without waiting
                stats = self.store.otlp_staging_stats()
                with self._lock:
                    self._staged = stats.traces
                self.metrics.otlp_staged_traces.set(stats.traces)
                if time.monotonic() - forgotten_at > FORGET_EVERY_S:
                    forgotten_at = time.monotonic()
                    memory = _micros(self.settings.otlp_late_span_memory_seconds)
                    self.store.forget_finalized_otlp_traces(self._now_us() - memory)
            except Exception:  # the store or the API away: try again next round
                log.exception("OTLP finaliser round failed")
            self._stopping.wait(self.settings.otlp_finalize_interval_seconds)

    def status_report(self) -> OtlpStatusResponse:
        stats = self.store.otlp_staging_stats()
        now_us = self._now_us()
        return OtlpStatusResponse(
            enabled=self.settings.otlp_enabled,
            staged_traces=stats.traces,
            staged_batches=stats.batches,
            oldest_staged_age_s=None
            if stats.oldest_first_us is None
            else round(max(now_us - stats.oldest_first_us, 0) / 1e6, 3),
            settle_seconds=self.settings.otlp_settle_seconds,
            max_trace_wait_seconds=self.settings.otlp_max_trace_wait_seconds,
            max_staged_traces=self.settings.otlp_max_staged_traces,
            since=self.status.started,
            totals=self.status.totals(),
            last_rejections=self.status.recent(),
        )
