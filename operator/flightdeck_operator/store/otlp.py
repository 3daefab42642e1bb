"""OTLP span staging: request bodies kept until every trace they carry has become run events.

Spans of one trace arrive in any order and over several requests (children are exported before
their parents), so ``POST /v1/traces`` stages what it accepts and a finaliser turns each trace into
run events once it is due (docs/opentelemetry.md):

- ``otlp_batches``: each accepted body (decompressed) once, keyed by a hash of its bytes, so a
  re-sent body is recognised; ``pending_traces`` counts the traces in it not yet finalised.
- ``otlp_traces``: one row per staged trace: first and last arrival, whether its root span has
  arrived, how many spans were staged, and ``due_us``, when it should be looked at.
- ``otlp_trace_batches``: which bodies hold spans of which trace.
- ``otlp_finalized_traces``: traces already turned into run events; their late spans are counted
  and never staged again (a trace is mapped once).

Finalising a trace writes its run events, the finalised mark and the removal of its staging rows in
one transaction: a crash leaves either all of it or none (then it is finalised again after the
restart; run ids are idempotent), so nothing accepted is lost and nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flightdeck_operator.engine.models import RunEventData
from flightdeck_operator.store.base import StoreBase, Transaction
from flightdeck_operator.store.rows import data_row

_IN_CHUNK = 500  # bound parameters per "IN (...)" lookup


@dataclass(frozen=True, slots=True)
class TracePart:
    """The spans of one trace in one request."""

    spans: int
    root_seen: bool  # a span without a local parent (a true root, or one whose parent is remote)


@dataclass(frozen=True, slots=True)
class StagingRequest:
    batch_id: str  # a hash of content type and body: equal for a re-sent request
    received_us: int
    content_type: str
    body: bytes  # decompressed
    traces: Mapping[str, TracePart]
    settle_us: int
    max_wait_us: int
    max_spans_per_trace: int


@dataclass(frozen=True, slots=True)
class StagingOutcome:
    duplicate: bool  # the same body was staged before and is still staged: nothing new
    staged: frozenset[str] = frozenset()  # trace ids whose spans were staged now
    late: Mapping[str, int] = field(default_factory=dict)  # finalised traces: their spans, counted only
    over_limit: Mapping[str, int] = field(default_factory=dict)  # traces that would pass the span cap


@dataclass(frozen=True, slots=True)
class DueTrace:
    trace_id: str
    first_us: int
    due_us: int
    batch_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TraceResult:
    """What became of one due trace. ``due_us`` is the value read with it: if new spans arrived
    since (``due_us`` moved), the result is dropped and the trace is looked at again later."""

    trace_id: str
    due_us: int
    batch_ids: tuple[str, ...]
    events: tuple[RunEventData, ...] = ()
    defer_until_us: int | None = None  # not complete yet: look again then, write nothing


@dataclass(frozen=True, slots=True)
class FinalizeOutcome:
    finalized: tuple[str, ...]
    deferred: tuple[str, ...]
    changed: tuple[str, ...]  # new spans arrived meanwhile: left staged
    inserted: int  # run events newly stored (a re-finalised trace's events are duplicates)


@dataclass(frozen=True, slots=True)
class StagingStats:
    traces: int
    batches: int
    oldest_first_us: int | None


class OtlpQueries(StoreBase):
    """Staging and finalising OTLP traces."""

    def stage_otlp_batch(self, request: StagingRequest) -> StagingOutcome:
        """Stage one request's spans (all of them or none). Traces already finalised are only
        reported (``late``); traces that would pass ``max_spans_per_trace`` are left out."""
        trace_ids = list(request.traces)
        with self._transaction(write=True) as tx:
            self._lock_otlp_traces(tx)
            exists = tx.execute("SELECT 1 FROM otlp_batches WHERE batch_id = ?", [request.batch_id])
            if exists.fetchone() is not None:
                return StagingOutcome(duplicate=True)
            finalized = {row[0] for row in _select_in(tx, "trace_id", "otlp_finalized_traces", trace_ids)}
            known = {
                row[0]: (int(row[1]), bool(row[2]), int(row[3]))
                for row in _select_in(tx, "trace_id, first_us, root_seen, spans", "otlp_traces", trace_ids)
            }
            late: dict[str, int] = {}
            over: dict[str, int] = {}
            rows: list[tuple[Any, ...]] = []
            now = request.received_us
            for trace_id, part in request.traces.items():
                if trace_id in finalized:
                    late[trace_id] = part.spans
                    continue
                first, root, spans = known.get(trace_id, (now, False, 0))
                if spans + part.spans > request.max_spans_per_trace:
                    over[trace_id] = part.spans
                    continue
                root = root or part.root_seen
                final_at = first + request.max_wait_us
                due = min(now + request.settle_us, final_at) if root else final_at
                rows.append((trace_id, first, now, 1 if root else 0, part.spans, due))
            if not rows:
                return StagingOutcome(duplicate=False, late=late, over_limit=over)
            tx.execute(
                "INSERT INTO otlp_batches (batch_id, received_us, content_type, body, pending_traces) "
                "VALUES (?, ?, ?, ?, ?)",
                [request.batch_id, now, request.content_type, request.body, len(rows)],
            )
            tx.executemany(
                "INSERT INTO otlp_traces (trace_id, first_us, last_us, root_seen, spans, due_us) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (trace_id) DO UPDATE SET "
                "last_us = excluded.last_us, root_seen = excluded.root_seen, "
                "spans = otlp_traces.spans + excluded.spans, due_us = excluded.due_us",
                rows,
            )
            tx.executemany(
                "INSERT INTO otlp_trace_batches (trace_id, batch_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(row[0], request.batch_id) for row in rows],
            )
        return StagingOutcome(
            duplicate=False, staged=frozenset(row[0] for row in rows), late=late, over_limit=over
        )

    def due_otlp_traces(self, now_us: int, *, limit: int) -> list[DueTrace]:
        """Staged traces due at ``now_us``, the longest-waiting first, with the bodies holding them."""
        with self._transaction(write=False, snapshot=True) as tx:
            due = tx.execute(
                "SELECT trace_id, first_us, due_us FROM otlp_traces WHERE due_us <= ? "
                "ORDER BY due_us, trace_id LIMIT ?",
                [now_us, limit],
            ).fetchall()
            batches: dict[str, list[str]] = {}
            for trace_id, batch_id in _select_in(
                tx, "trace_id, batch_id", "otlp_trace_batches", [row[0] for row in due]
            ):
                batches.setdefault(trace_id, []).append(batch_id)
        return [
            DueTrace(row[0], int(row[1]), int(row[2]), tuple(sorted(batches.get(row[0], ())))) for row in due
        ]

    def otlp_batches(self, batch_ids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """Content type and body of staged bodies (those still staged)."""
        with self._transaction(write=False) as tx:
            return {
                row[0]: (str(row[1]), bytes(row[2]))
                for row in _select_in(tx, "batch_id, content_type, body", "otlp_batches", list(batch_ids))
            }

    def finalize_otlp_traces(self, results: Sequence[TraceResult], *, now_us: int) -> FinalizeOutcome:
        """Store the run events of finalised traces, mark them finalised and drop their staging
        rows, in one transaction; defer the ones not complete yet. A result whose trace changed
        since it was read (new spans) is left alone."""
        if not results:
            return FinalizeOutcome((), (), (), 0)
        with self._transaction(write=True) as tx:
            self._lock_otlp_traces(tx)
            current = {
                row[0]: int(row[1])
                for row in _select_in(tx, "trace_id, due_us", "otlp_traces", [r.trace_id for r in results])
            }
            done = [r for r in results if current.get(r.trace_id) == r.due_us and r.defer_until_us is None]
            deferred = [
                r for r in results if current.get(r.trace_id) == r.due_us and r.defer_until_us is not None
            ]
            changed = [r for r in results if current.get(r.trace_id) != r.due_us]
            inserted = 0
            rows = [data_row(event, now_us) for r in done for event in r.events]
            if rows:
                inserted = self._insert_rows(tx, rows)
            if done:
                ids = [(r.trace_id,) for r in done]
                tx.executemany(
                    "INSERT INTO otlp_finalized_traces (trace_id, finalized_us) VALUES (?, ?) "
                    "ON CONFLICT (trace_id) DO NOTHING",
                    [(r.trace_id, now_us) for r in done],
                )
                tx.executemany("DELETE FROM otlp_traces WHERE trace_id = ?", ids)
                tx.executemany("DELETE FROM otlp_trace_batches WHERE trace_id = ?", ids)
                released: dict[str, int] = {}
                for r in done:
                    for batch_id in r.batch_ids:
                        released[batch_id] = released.get(batch_id, 0) + 1
                tx.executemany(
                    "UPDATE otlp_batches SET pending_traces = pending_traces - ? WHERE batch_id = ?",
                    [(count, batch_id) for batch_id, count in released.items()],
                )
                tx.executemany(
                    "DELETE FROM otlp_batches WHERE batch_id = ? AND pending_traces <= 0",
                    [(batch_id,) for batch_id in released],
                )
            if deferred:
                tx.executemany(
                    "UPDATE otlp_traces SET due_us = ? WHERE trace_id = ?",
                    [(r.defer_until_us, r.trace_id) for r in deferred],
                )
        return FinalizeOutcome(
            finalized=tuple(r.trace_id for r in done),
            deferred=tuple(r.trace_id for r in deferred),
            changed=tuple(r.trace_id for r in changed),
            inserted=inserted,
        )

    def otlp_staging_stats(self) -> StagingStats:
        with self._transaction(write=False, snapshot=True) as tx:
            traces, oldest = tx.execute("SELECT COUNT(*), MIN(first_us) FROM otlp_traces").fetchone()
            batches = tx.execute("SELECT COUNT(*) FROM otlp_batches").fetchone()[0]
        return StagingStats(int(traces), int(batches), None if oldest is None else int(oldest))

    def forget_finalized_otlp_traces(self, before_us: int) -> int:
        """Drop finalised-trace marks older than ``before_us``; returns how many."""
        with self._transaction(write=True) as tx:
            cursor = tx.execute("DELETE FROM otlp_finalized_traces WHERE finalized_us < ?", [before_us])
            return int(cursor.rowcount)

    def _lock_otlp_traces(self, tx: Transaction) -> None:
        """Serialise staging and finalising (SQLite: the write lock already does)."""


def _select_in(tx: Transaction, columns: str, table: str, keys: Sequence[str]) -> Iterator[Any]:
    """``SELECT columns FROM table WHERE <first column> IN keys``, in chunks."""
    key = columns.split(",", 1)[0].strip()
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        placeholders = ",".join("?" * len(chunk))
        yield from tx.execute(
            f"SELECT {columns} FROM {table} WHERE {key} IN ({placeholders})", chunk
        ).fetchall()
