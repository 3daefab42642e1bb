"""OTLP span staging in the store (SQLite and PostgreSQL): re-sent requests, late spans, the span
cap, when traces are due, and finalising (events, marks and clean-up in one transaction)."""

from __future__ import annotations

from typing import Any

from flightdeck_operator.engine.models import RUN_EVENT_DATA, RunEventData
from flightdeck_operator.store import Store
from flightdeck_operator.store.otlp import StagingRequest, TracePart, TraceResult
from tests.factories import event_dict

from .conftest import Backend

SECOND = 1_000_000
T0 = 1_780_000_000 * SECOND
SETTLE = 10 * SECOND
MAX_WAIT = 300 * SECOND


def staging(batch: str, at: int, traces: dict[str, TracePart], **overrides: Any) -> StagingRequest:
    fields: dict[str, Any] = {
        "batch_id": batch,
        "received_us": at,
        "content_type": "application/x-protobuf",
        "body": batch.encode() * 10,
        "traces": traces,
        "settle_us": SETTLE,
        "max_wait_us": MAX_WAIT,
        "max_spans_per_trace": 100,
    }
    return StagingRequest(**{**fields, **overrides})


def run_event(trace: str) -> RunEventData:
    return RUN_EVENT_DATA.validate_python(event_dict(run_id=f"otel:{trace}:0000000000000001"))


def test_a_trace_is_due_after_its_root_settles_or_the_maximum_wait(store: Store) -> None:
    store.stage_otlp_batch(
        staging("b1", T0, {"t-child-first": TracePart(3, False), "t-no-root": TracePart(1, False)})
    )
    assert store.due_otlp_traces(T0 + SETTLE, limit=10) == []  # no root yet: only the maximum wait
    # The root arrives 5 s later, in another request: due 10 s after that.
    store.stage_otlp_batch(staging("b2", T0 + 5 * SECOND, {"t-child-first": TracePart(1, True)}))
    assert store.due_otlp_traces(T0 + 15 * SECOND - 1, limit=10) == []
    (due,) = store.due_otlp_traces(T0 + 15 * SECOND, limit=10)
    assert (due.trace_id, due.first_us, due.batch_ids) == ("t-child-first", T0, ("b1", "b2"))
    # The trace without a root is due at the maximum wait, counted from its first span.
    assert [d.trace_id for d in store.due_otlp_traces(T0 + MAX_WAIT, limit=10)] == [
        "t-child-first",
        "t-no-root",
    ]
    stats = store.otlp_staging_stats()
    assert (stats.traces, stats.batches, stats.oldest_first_us) == (2, 2, T0)


def test_a_re_sent_request_is_staged_once(store: Store) -> None:
    first = store.stage_otlp_batch(staging("same", T0, {"t1": TracePart(4, True)}))
    assert (first.duplicate, first.staged) == (False, frozenset({"t1"}))
    again = store.stage_otlp_batch(staging("same", T0 + SECOND, {"t1": TracePart(4, True)}))
    assert again.duplicate
    (due,) = store.due_otlp_traces(T0 + SETTLE, limit=10)  # the re-send did not move the settle time
    assert due.batch_ids == ("same",)


def test_finalising_stores_events_and_clears_staging_in_one_go(backend: Backend) -> None:
    store = backend.store
    store.stage_otlp_batch(staging("b1", T0, {"t1": TracePart(2, False), "t2": TracePart(2, True)}))
    store.stage_otlp_batch(staging("b2", T0 + SECOND, {"t1": TracePart(2, True)}))
    due = {d.trace_id: d for d in store.due_otlp_traces(T0 + 11 * SECOND, limit=10)}
    assert set(due) == {"t1", "t2"}
    results = [TraceResult(t, d.due_us, d.batch_ids, (run_event(t),)) for t, d in due.items()]
    outcome = store.finalize_otlp_traces(results, now_us=T0 + 11 * SECOND)
    assert (sorted(outcome.finalized), outcome.inserted) == (["t1", "t2"], 2)
    assert store.count_events() == 2
    assert backend.raw("SELECT COUNT(*) FROM otlp_traces") == [(0,)]
    assert backend.raw("SELECT COUNT(*) FROM otlp_trace_batches") == [(0,)]
    assert backend.raw("SELECT COUNT(*) FROM otlp_batches") == [(0,)]  # both bodies fully used
    assert store.otlp_staging_stats().traces == 0

    # Spans of a finalised trace are late: counted, not staged (the trace is mapped once).
    late = store.stage_otlp_batch(staging("b3", T0 + 20 * SECOND, {"t1": TracePart(1, False)}))
    assert (late.staged, dict(late.late)) == (frozenset(), {"t1": 1})
    assert backend.raw("SELECT COUNT(*) FROM otlp_batches") == [(0,)]
    # Finalising the same trace again (a crash after the commit) counts nothing twice.
    store.stage_otlp_batch(staging("b4", T0, {"t3": TracePart(1, True)}))
    (t3,) = store.due_otlp_traces(T0 + SETTLE, limit=10)
    again = [TraceResult("t3", t3.due_us, t3.batch_ids, (run_event("t1"), run_event("t3")))]
    assert store.finalize_otlp_traces(again, now_us=T0 + SETTLE).inserted == 1
    assert store.count_events() == 3
    assert store.forget_finalized_otlp_traces(T0 + 30 * SECOND) == 3


def test_a_body_stays_until_all_its_traces_are_finalised(backend: Backend) -> None:
    store = backend.store
    store.stage_otlp_batch(staging("b1", T0, {"early": TracePart(1, True), "later": TracePart(1, False)}))
    (early,) = store.due_otlp_traces(T0 + SETTLE, limit=10)
    store.finalize_otlp_traces([TraceResult("early", early.due_us, early.batch_ids)], now_us=T0 + SETTLE)
    assert store.otlp_batches(["b1"]) == {"b1": ("application/x-protobuf", b"b1" * 10)}
    (later,) = store.due_otlp_traces(T0 + MAX_WAIT, limit=10)
    store.finalize_otlp_traces([TraceResult("later", later.due_us, later.batch_ids)], now_us=T0 + MAX_WAIT)
    assert store.otlp_batches(["b1"]) == {}


def test_new_spans_since_reading_keep_a_trace_staged(store: Store) -> None:
    store.stage_otlp_batch(staging("b1", T0, {"t1": TracePart(1, True)}))
    (due,) = store.due_otlp_traces(T0 + SETTLE, limit=10)
    store.stage_otlp_batch(staging("b2", T0 + SETTLE, {"t1": TracePart(1, False)}))  # meanwhile
    outcome = store.finalize_otlp_traces(
        [TraceResult("t1", due.due_us, due.batch_ids, (run_event("t1"),))], now_us=T0 + SETTLE
    )
    assert (outcome.finalized, outcome.changed, outcome.inserted) == ((), ("t1",), 0)
    assert store.count_events() == 0
    (due,) = store.due_otlp_traces(T0 + 2 * SETTLE, limit=10)
    assert due.batch_ids == ("b1", "b2")


def test_a_trace_not_ready_is_deferred_and_the_span_cap_holds(store: Store) -> None:
    store.stage_otlp_batch(staging("b1", T0, {"t1": TracePart(60, True)}))
    (due,) = store.due_otlp_traces(T0 + SETTLE, limit=10)
    deferred = store.finalize_otlp_traces(
        [TraceResult("t1", due.due_us, due.batch_ids, defer_until_us=T0 + MAX_WAIT)], now_us=T0 + SETTLE
    )
    assert deferred.deferred == ("t1",)
    assert store.due_otlp_traces(T0 + MAX_WAIT - 1, limit=10) == []
    assert [d.trace_id for d in store.due_otlp_traces(T0 + MAX_WAIT, limit=10)] == ["t1"]
    over = store.stage_otlp_batch(
        staging("b2", T0 + SECOND, {"t1": TracePart(41, False), "t2": TracePart(1, True)})
    )
    assert (dict(over.over_limit), over.staged) == ({"t1": 41}, frozenset({"t2"}))
