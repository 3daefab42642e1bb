"""Shared helpers for the benchmarks: synthetic run events and backend set-up."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flightdeck_operator.engine.models import ModelUsage, RunEvent, RunMetrics, RunUsage
from flightdeck_operator.localdev.postgres import temporary_postgres
from flightdeck_operator.store import Store, open_store

NOW = dt.datetime(2026, 5, 5, 12, 0, tzinfo=dt.UTC)
FIRST = NOW - dt.timedelta(days=6)


def _lognormal_ms(count: int, median: float, sigma: float, seed: int) -> tuple[int, ...]:
    draw = random.Random(seed)
    return tuple(max(1, round(median * math.exp(sigma * draw.gauss(0.0, 1.0)))) for _ in range(count))


# Run latencies and token counts vary as real runs do (a lognormal latency with median 1 s): about
# 60-90 latency bins per hour, a few thousand distinct latencies. Deterministic, so every run of a
# benchmark (and old code against new) loads the same events.
LATENCIES_MS = _lognormal_ms(4096, 1000.0, 0.5, seed=16)


def make_events(
    release_id: str,
    count: int,
    *,
    start: int = 0,
    total: int | None = None,
    first: dt.datetime = FIRST,
    last: dt.datetime = NOW,
) -> list[RunEvent]:
    """Events ``start .. start+count`` of ``total`` for one release, spread evenly over ``[first, last)``.

    Built with ``model_construct`` (already-validated objects), so only the store is measured.
    """
    total = total or count
    step = (last - first) / max(total, 1)
    events = []
    for i in range(start, start + count):
        usage = RunUsage.model_construct(
            model=ModelUsage.model_construct(
                provider="openai",
                model="gpt-4.1-mini",
                input_tokens=700 + (i * 7919) % 600,
                output_tokens=300 + (i * 104729) % 400,
                cached_input_tokens=0,
            ),
            tools=[],
        )
        events.append(
            RunEvent.model_construct(
                api_version="v1",
                type="run_end",
                timestamp=first + step * i,
                workspace_id="ws_local",
                agent_id="agent_support",
                release_id=release_id,
                run_id=f"{release_id}-{i:09d}",
                tenant_id="tenant_a",
                task_id="task_a",
                environment="local",
                request=None,
                metrics=RunMetrics.model_construct(
                    latency_ms=LATENCIES_MS[i % len(LATENCIES_MS)], success=i % 50 != 0, error_type=None
                ),
                usage=usage,
                labels={},
            )
        )
    return events


def kube_object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A FlightDeck custom object, as ``kubectl apply`` takes it."""
    return {"apiVersion": "flightdeck.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def reference_event(
    i: int, *, timestamp: dt.datetime, release_id: str, agent_id: str = "agent-ref"
) -> dict[str, Any]:
    """Run event ``i`` as a client posts it, of the reference benchmark's size: about 690 bytes as
    JSON (request ids, a tool and labels), the size the WAL and disk figures are measured with."""
    return {
        "timestamp": timestamp.isoformat(),
        "agent_id": agent_id,
        "release_id": release_id,
        "run_id": f"{release_id}-run-{i:010d}",
        "tenant_id": "tenant-a",
        "task_id": "support-triage",
        "environment": "local",
        "request": {"session_id": f"session-{i // 10:012d}", "trace_id": f"{i:032x}", "span_id": f"{i:016x}"},
        "metrics": {"latency_ms": 900 + i % 200, "success": i % 50 != 0},
        "usage": {
            "model": {
                "provider": "openai",
                "model": "gpt-4.1-mini",
                "input_tokens": 1000 + i % 700,
                "output_tokens": 500 + i % 300,
                "cached_input_tokens": 200,
            },
            "tools": [{"tool_name": "knowledge_base_search", "invocations": 2, "cost_units": 0.25}],
        },
        "labels": {"region": "eu-west-1", "customer_tier": "enterprise"},
    }


@contextlib.contextmanager
def backend_store(backend: str, pg_url: str | None) -> Iterator[Store]:
    """A fresh, migrated store on ``backend`` ("sqlite" or "postgresql")."""
    if backend == "sqlite":
        workdir = Path(tempfile.mkdtemp(prefix="flightdeck-bench-"))
        try:
            with open_store(workdir / "bench.db") as store:
                yield store
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    assert pg_url is not None
    schema = f"bench_{dt.datetime.now(dt.UTC):%H%M%S%f}"
    with open_store(pg_url, migrate=False) as admin, admin._transaction(write=True) as tx:
        tx.execute(f"CREATE SCHEMA {schema}")
    try:
        with open_store(f"{pg_url}?options=-csearch_path%3D{schema}") as store:
            yield store
    finally:
        with open_store(pg_url, migrate=False) as admin, admin._transaction(write=True) as tx:
            tx.execute(f"DROP SCHEMA {schema} CASCADE")


@contextlib.contextmanager
def postgres_url(wanted: bool) -> Iterator[str | None]:
    if not wanted:
        yield None
        return
    # Durable settings (fsync on): the figures should not depend on a test-only shortcut.
    with temporary_postgres(settings={"shared_buffers": "256MB", "max_wal_size": "4GB"}) as url:
        yield url
