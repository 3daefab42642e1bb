"""Rows to and from the schema's columns, and small SQL builders the queries share."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from operator import mul
from typing import Any

from flightdeck_operator.engine import ledger
from flightdeck_operator.engine.event_codec import FastEvent, encode_event
from flightdeck_operator.engine.evidence import ModelAggregate
from flightdeck_operator.engine.ledger import LedgerEntry
from flightdeck_operator.engine.models import (
    RUN_EVENT_DATA,
    RunEvent,
    RunEventData,
    from_utc_micros,
    utc_micros,
)
from flightdeck_operator.engine.statistics.latency_bins import bin_of_integer
from flightdeck_operator.store.schema import BUCKET_US, LEDGER_COLUMNS

_dump_event = RunEvent.__pydantic_serializer__.to_json  # model_dump_json without the wrapper's overhead


def event_row(event: RunEvent, received_us: int) -> tuple[Any, ...]:
    usage = event.usage.model
    metrics = event.metrics
    request = event.request
    return (
        event.run_id,
        event.release_id,
        event.agent_id,
        event.environment,
        event.tenant_id,
        event.task_id,
        utc_micros(event.timestamp),
        usage.provider,
        usage.model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        metrics.latency_ms,
        1 if metrics.success else 0,
        received_us,
        _dump_event(event).decode(),
        *((None, None, None) if request is None else (request.trace_id, request.session_id, request.span_id)),
    )


_dump_event_data = RUN_EVENT_DATA.serializer.to_json  # the same bytes as _dump_event


def data_row(event: RunEventData, received_us: int) -> tuple[Any, ...]:
    """``_event_row`` of plain data (``RunEventData`` has every default filled in)."""
    usage = event["usage"]["model"]
    metrics = event["metrics"]
    request = event.get("request")
    return (
        event["run_id"],
        event["release_id"],
        event["agent_id"],
        event["environment"],
        event["tenant_id"],
        event["task_id"],
        utc_micros(event["timestamp"]),
        usage["provider"],
        usage["model"],
        usage["input_tokens"],
        usage["output_tokens"],
        usage["cached_input_tokens"],
        metrics["latency_ms"],
        1 if metrics["success"] else 0,
        received_us,
        _dump_event_data(event).decode(),
        *(
            (None, None, None)
            if request is None
            else (request.get("trace_id"), request.get("session_id"), request.get("span_id"))
        ),
    )


def bucket_deltas(rows: Iterable[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Sum ``event_row`` rows into bucket upserts and latency-bin upserts (the same arithmetic as
    the PostgreSQL trigger). Rows are grouped by bucket first, then each column is summed by
    builtins (``sum``, ``map(mul, ...)``, ``Counter``): products are exact integers, sent as doubles.
    This costs less per event than the per-row accumulation it replaced, moments included."""
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        ts_us = row[6]
        # (release, environment, hour floor as in SQL, agent, model, tenant, task)
        key = (row[1], row[3], ts_us - ts_us % BUCKET_US, row[2], row[8], row[4], row[5])
        group = groups.get(key)
        if group is None:
            groups[key] = [row]
        else:
            group.append(row)
    buckets: list[tuple[Any, ...]] = []
    bins: list[tuple[Any, ...]] = []
    for key, group in groups.items():
        tin = [r[9] for r in group]
        tout = [r[10] for r in group]
        tcached = [r[11] for r in group]
        latencies = [r[12] for r in group if r[12] is not None]
        runs = len(group)
        cached = any(tcached)
        buckets.append(
            (
                *key,
                runs,
                sum(tin),
                sum(tout),
                sum(tcached),
                sum(latencies),
                len(latencies),
                runs - sum(r[13] for r in group),
                float(sum(map(mul, latencies, latencies))),
                float(sum(map(mul, tin, tin))),
                float(sum(map(mul, tout, tout))),
                float(sum(map(mul, tcached, tcached))) if cached else 0.0,
                float(sum(map(mul, tin, tout))),
                float(sum(map(mul, tin, tcached))) if cached else 0.0,
                float(sum(map(mul, tout, tcached))) if cached else 0.0,
            )
        )
        per_bin: dict[int, int] = {}
        for latency, count in Counter(latencies).items():
            index = bin_of_integer(latency)
            per_bin[index] = per_bin.get(index, 0) + count
        bins.extend((*key, index, count) for index, count in per_bin.items())
    return buckets, bins


def aggregate_from_row(row: Sequence[Any]) -> ModelAggregate:
    return ModelAggregate(
        agent_id=str(row[0]),
        model=str(row[1]),
        runs=int(row[2]),
        input_tokens=int(row[3]),
        output_tokens=int(row[4]),
        cached_input_tokens=int(row[5]),
        latency_ms_sum=int(row[6]),
        latency_count=int(row[7]),
        failures=int(row[8]),
    )


def where_clause(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    present = {column: value for column, value in filters.items() if value is not None}
    if not present:
        return "", []
    return " WHERE " + " AND ".join(f"{column} = ?" for column in present), list(present.values())


def _json_or_none(value: Any) -> str | None:
    return None if value is None else ledger.canonical_json(value)


def row_from_entry(entry: LedgerEntry) -> tuple[Any, ...]:
    data = entry.model_dump(mode="json")
    return (
        entry.seq,
        entry.idempotency_key,
        entry.request_uid,
        entry.kind.value,
        entry.actor,
        entry.namespace,
        entry.pointer,
        entry.agent_id,
        entry.environment,
        entry.release_id,
        entry.baseline_release_id,
        1 if entry.pointer_changed else 0,
        entry.reason,
        _json_or_none(data["policy_result"]),
        _json_or_none(data["evidence"]),
        entry.policy_digest,
        _json_or_none(data["details"]),
        utc_micros(entry.created_at),
        entry.prev_hash,
        entry.hash,
        entry.request_name,
        entry.spec_digest,
        entry.epoch,
        entry.pointer_seq,
    )


def entry_from_row(row: Sequence[Any]) -> LedgerEntry:
    values = dict(zip(LEDGER_COLUMNS, row, strict=True))
    pointer_changed = values.pop("pointer_changed")
    if pointer_changed not in (0, 1):
        raise ValueError(f"pointer_changed must be 0 or 1, not {pointer_changed!r}")
    values["pointer_changed"] = bool(pointer_changed)
    for column in ("policy_result", "evidence", "details"):
        text = values.pop(f"{column}_json")
        values[column] = None if text is None else json.loads(text)
    values["created_at"] = from_utc_micros(int(values.pop("created_at_us")))
    return LedgerEntry.model_validate(values)


def placeholder_entry(seq: int) -> LedgerEntry:
    """A stand-in so ``ledger.verify`` reports a seq gap in front of an unreadable row."""
    return LedgerEntry(
        kind=ledger.LedgerKind.PROMOTE,
        idempotency_key="unreadable",
        actor="",
        namespace="",
        created_at=dt.datetime.now(dt.UTC),
        seq=seq,
        prev_hash="",
        hash="",
    )


def fast_row(event: FastEvent, received_us: int) -> tuple[Any, ...]:
    """``data_row`` of an event read by the fast reader (``engine.event_codec``): the same row."""
    usage = event.usage.model
    metrics = event.metrics
    request = event.request
    return (
        event.run_id,
        event.release_id,
        event.agent_id,
        event.environment,
        event.tenant_id,
        event.task_id,
        utc_micros(event.timestamp),
        usage.provider,
        usage.model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        metrics.latency_ms,
        1 if metrics.success else 0,
        received_us,
        encode_event(event).decode(),
        *((None, None, None) if request is None else (request.trace_id, request.session_id, request.span_id)),
    )
