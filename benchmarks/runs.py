"""Run forensics and the JSON metrics over a large store, on SQLite and PostgreSQL.

    python benchmarks/runs.py [--events 1000000] [--queries 300] [--backend sqlite|postgresql ...]
    python benchmarks/runs.py --quick        # 100k events, 100 queries per filter

Loads N events of one release (spread over 7 days, 20 tenants x 5 tasks, a trace id shared by 4
events and a session by 50), then times, for each filter, the page ``GET /v1/runs`` serves (newest
first, limit 100, offset 0: the store's count and page, and the JSON body), with a random value of
the filter per query:

- release only (the whole window, every event of the release matches);
- trace id (``request.trace_id``);
- tenant + task.

Also: a deep page (offset 10,000), the counters behind ``GET /v1/metrics`` next to the
``COUNT(*)`` the reference runs on every call, and an export of 100,000 lines (lines per second and
the peak of Python memory for 10,000 and for 100,000 lines: flat if the export streams). Prints the
figures and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = (
    [str(_HERE.parent / "operator")]
    + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    + [str(_HERE)]
)

from _common import NOW, backend_store, postgres_url  # noqa: E402
from flightdeck_operator.actions.runs import RunsQuery, list_runs_json, open_export  # noqa: E402
from flightdeck_operator.engine.models import (  # noqa: E402
    ModelUsage,
    RunEvent,
    RunMetrics,
    RunRequest,
    RunUsage,
)
from flightdeck_operator.store import RunFilters, Store  # noqa: E402

RELEASE = "rel-forensics"
TENANTS, TASKS = 20, 5
EVENTS_PER_TRACE, EVENTS_PER_SESSION = 4, 50
CHUNK = 50_000
UNTIL = NOW + dt.timedelta(minutes=17, seconds=13)  # the window's edges fall inside hours
SINCE = UNTIL - dt.timedelta(days=7)


def events(start: int, count: int, total: int) -> list[RunEvent]:
    step = (UNTIL - SINCE - dt.timedelta(minutes=1)) / total
    usage = RunUsage.model_construct(
        model=ModelUsage.model_construct(
            provider="openai",
            model="gpt-4.1-mini",
            input_tokens=1000,
            output_tokens=500,
            cached_input_tokens=0,
        ),
        tools=[],
    )
    built = []
    for i in range(start, start + count):
        built.append(
            RunEvent.model_construct(
                api_version="v1",
                type="run_end",
                timestamp=SINCE + step * i,
                workspace_id="ws_local",
                agent_id="agent_support",
                release_id=RELEASE,
                run_id=f"run-{i:09d}",
                tenant_id=f"tenant-{i % TENANTS}",
                task_id=f"task-{i // TENANTS % TASKS}",
                environment="local",
                request=RunRequest.model_construct(
                    session_id=f"session-{i // EVENTS_PER_SESSION}",
                    trace_id=f"trace-{i // EVENTS_PER_TRACE}",
                    span_id=f"span-{i}",
                ),
                metrics=RunMetrics.model_construct(
                    latency_ms=900 + i % 300, success=i % 40 != 0, error_type=None
                ),
                usage=usage,
                labels={},
            )
        )
    return built


def load(store: Store, total: int) -> float:
    started = time.perf_counter()
    for start in range(0, total, CHUNK):
        store.insert_events(events(start, min(CHUNK, total - start), total))
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    at = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"p50_ms": at(0.5) * 1000, "p99_ms": at(0.99) * 1000, "mean_ms": statistics.fmean(ordered) * 1000}


def timed(queries: int, run: Callable[[random.Random], Any]) -> dict[str, float]:
    rng = random.Random(7)
    run(rng)  # warm the caches once
    samples = []
    for _ in range(queries):
        started = time.perf_counter()
        run(rng)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def page(store: Store, total: int, offset: int = 0, *names: str) -> Callable[[random.Random], Any]:
    """One ``GET /v1/runs`` page's work (count, page, JSON body) with a random value of each filter."""
    pickers: dict[str, Callable[[random.Random], str]] = {
        "trace_id": lambda rng: f"trace-{rng.randrange(total // EVENTS_PER_TRACE)}",
        "tenant_id": lambda rng: f"tenant-{rng.randrange(TENANTS)}",
        "task_id": lambda rng: f"task-{rng.randrange(TASKS)}",
    }

    def run(rng: random.Random) -> Any:
        chosen = {name: pickers[name](rng) for name in names}
        query = RunsQuery(release_id=RELEASE, window="7d", offset=offset, limit=100, **chosen)
        body = list_runs_json(store, RunFilters(RELEASE, "local", SINCE, UNTIL, **chosen), query)
        assert b'"returned":0,' not in body, body[:300]
        return body

    return run


def export_figures(store: Store, lines: int) -> dict[str, float]:
    """Lines per second of a streamed export, then (a second run, traced) its peak Python memory."""

    def stream() -> int:
        query = RunsQuery(release_id=RELEASE, window="7d", limit=lines)
        export = open_export(store, RunFilters(RELEASE, "local", SINCE, UNTIL), query)
        return sum(chunk.count(b"\n") for chunk in export.chunks())

    started = time.perf_counter()
    written = stream()
    elapsed = time.perf_counter() - started
    assert written == lines, (written, lines)
    tracemalloc.start()
    stream()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"lines": lines, "lines_per_s": lines / elapsed, "python_peak_mib": peak / 2**20}


def counters_figures(store: Store, queries: int) -> dict[str, Any]:
    def counters(_: random.Random) -> Any:
        return store.run_events_total(), store.ledger_counts("bench")

    def count_star(_: random.Random) -> Any:
        with store._transaction(write=False) as tx:
            return tx.execute("SELECT COUNT(*) FROM run_events").fetchone()

    return {"counters": timed(queries, counters), "count_star": timed(max(5, queries // 20), count_star)}


def measure(backend: str, pg_url: str | None, total: int, queries: int) -> dict[str, Any]:
    with backend_store(backend, pg_url) as store:
        seconds = load(store, total)
        print(f"[{backend}] loaded {total:,} events in {seconds:.0f}s", flush=True)
        if backend == "postgresql":
            with store._transaction(write=True) as tx:
                tx.execute("ANALYZE run_events")
                tx.execute("ANALYZE run_event_buckets")
        result: dict[str, Any] = {"events": total, "load_s": seconds}
        for name, filters in (
            ("release_only", ()),
            ("trace_id", ("trace_id",)),
            ("tenant_task", ("tenant_id", "task_id")),
        ):
            result[name] = timed(queries, page(store, total, 0, *filters))
            print(f"[{backend}] page, {name}: {fmt(result[name])}", flush=True)
        result["release_only_offset_10000"] = timed(max(10, queries // 10), page(store, total, 10_000))
        print(f"[{backend}] page at offset 10,000, release only: {fmt(result['release_only_offset_10000'])}")
        result.update(counters_figures(store, queries))
        print(
            f"[{backend}] metrics counters: {fmt(result['counters'])}; COUNT(*): {fmt(result['count_star'])}"
        )
        result["export"] = [
            export_figures(store, lines) for lines in (min(10_000, total), min(100_000, total))
        ]
        for figures in result["export"]:
            print(
                f"[{backend}] export {figures['lines']:,} lines: {figures['lines_per_s']:,.0f} lines/s, "
                f"Python peak {figures['python_peak_mib']:.1f} MiB",
                flush=True,
            )
        return result


def fmt(figures: dict[str, float]) -> str:
    return f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300, help="timed pages per filter")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--quick", action="store_true", help="100k events, 100 queries per filter")
    args = parser.parse_args()
    total, queries = (100_000, 100) if args.quick else (args.events, args.queries)
    backends = args.backend or ["sqlite", "postgresql"]
    results: dict[str, Any] = {}
    with postgres_url("postgresql" in backends) as pg_url:
        for backend in backends:
            results[backend] = measure(backend, pg_url, total, queries)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
