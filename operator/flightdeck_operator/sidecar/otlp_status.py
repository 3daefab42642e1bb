"""What ``GET /v1/otlp/status`` shows: totals since the sidecar started and the latest rejections.

OpenTelemetry's Python exporter never reads the answer body, so a partial success is invisible to
the people running the agent; this route and the ``flightdeck_otlp_*`` metrics are where they look.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from flightdeck_operator.otlp.rejections import RejectionSummary

MAX_RECENT_REJECTIONS: Final = 50

Stage = Literal["receive", "finalize"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class RecentRejection(_Out):
    time: dt.datetime
    stage: Stage = Field(description="receive: in the request's partial success; finalize: when mapped.")
    reason: str
    trace_id: str
    span_id: str
    message: str


class OtlpTotals(_Out):
    spans_accepted: int
    spans_rejected: dict[str, int] = Field(description="By reason.")
    spans_late: int
    spans_duplicate: int
    runs_emitted: int
    runs_duplicate: int
    runs_rejected: dict[str, int] = Field(description="By reason.")
    orphan_inference_spans: int
    requests_refused: dict[str, int] = Field(description="Whole requests refused, by reason.")


class OtlpStatusResponse(_Out):
    enabled: bool
    staged_traces: int
    staged_batches: int
    oldest_staged_age_s: float | None
    settle_seconds: float
    max_trace_wait_seconds: float
    max_staged_traces: int
    since: dt.datetime = Field(description="When these totals started (the sidecar's start).")
    totals: OtlpTotals
    last_rejections: list[RecentRejection] = Field(description="Newest first.")


class OtlpStatus:
    """Thread-safe totals and a ring of the latest rejections."""

    def __init__(self, started: dt.datetime) -> None:
        self.started = started
        self._lock = threading.Lock()
        self._recent: collections.deque[RecentRejection] = collections.deque(maxlen=MAX_RECENT_REJECTIONS)
        self._counts: collections.Counter[str] = collections.Counter()
        self._spans_rejected: collections.Counter[str] = collections.Counter()
        self._runs_rejected: collections.Counter[str] = collections.Counter()
        self._refused: collections.Counter[str] = collections.Counter()

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._counts[name] += count

    def refused(self, reason: str) -> None:
        with self._lock:
            self._refused[reason] += 1

    def rejected(self, stage: Stage, summary: RejectionSummary, now: dt.datetime) -> None:
        """Count ``summary`` by reason; its example of each reason joins the latest rejections."""
        with self._lock:
            counter = self._spans_rejected if stage == "receive" else self._runs_rejected
            for reason, count in summary.counts.items():
                counter[reason.value] += count
            for rejection in summary.examples.values():
                self._recent.append(
                    RecentRejection(
                        time=now,
                        stage=stage,
                        reason=rejection.reason.value,
                        trace_id=rejection.trace_id[:64],
                        span_id=rejection.span_id[:64],
                        message=rejection.detail[:512],
                    )
                )

    def totals(self) -> OtlpTotals:
        with self._lock:
            return OtlpTotals(
                spans_accepted=self._counts["spans_accepted"],
                spans_rejected=dict(self._spans_rejected),
                spans_late=self._counts["spans_late"],
                spans_duplicate=self._counts["spans_duplicate"],
                runs_emitted=self._counts["runs_emitted"],
                runs_duplicate=self._counts["runs_duplicate"],
                runs_rejected=dict(self._runs_rejected),
                orphan_inference_spans=self._counts["orphan_inference_spans"],
                requests_refused=dict(self._refused),
            )

    def recent(self) -> list[RecentRejection]:
        with self._lock:
            return list(reversed(self._recent))
