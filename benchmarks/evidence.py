"""Diff latency over N events per side (baseline and candidate), on SQLite and PostgreSQL.

    python benchmarks/evidence.py [--quick] [--sizes N ...] [--repeat N] [--backend sqlite|postgresql ...]

For each size: load N + N events (spread over 7 days and a bit, so both ragged edges of the window
hold events), then time the whole diff a promote pays for: window parsing, both evidence queries in one
snapshot and ``compute_diff``. Then the same with statistical gates (a policy with every kind of
gate, 12 in all: error rate, four latency percentiles with both limits, cost): the one-shot diff
(``POST /v1/diff``: moments, histograms and recent arrivals from one snapshot, every gate evaluated,
runs needed and ETA) and a waiting request's (its statistics anchored an hour before the window,
so the reference evidence is read separately). Prints the figures and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This folder holds http.py (benchmarks/http.py), which would shadow the standard library's http
# package if the folder came first on sys.path, as it does for a script: keep it last.
_HERE = Path(__file__).resolve().parent
sys.path[:] = (
    [str(_HERE.parent / "operator")]
    + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    + [str(_HERE)]
)

from _common import NOW, backend_store, make_events, postgres_url  # noqa: E402
from flightdeck_operator.engine.evidence import DiffSide, compute_diff, window_bounds  # noqa: E402
from flightdeck_operator.engine.models import (  # noqa: E402
    DiffFilters,
    Policy,
    PricingEntry,
    PricingTable,
    ReleaseRef,
)
from flightdeck_operator.engine.statistical_policy import gated_diff  # noqa: E402
from flightdeck_operator.engine.statistics.config import StatisticalGates  # noqa: E402
from flightdeck_operator.store import Store  # noqa: E402

FIRST = NOW - dt.timedelta(days=7, hours=1)
LAST = NOW + dt.timedelta(hours=1)
UNTIL = NOW + dt.timedelta(minutes=17, seconds=13, microseconds=123)  # not on an hour boundary
CHUNK = 50_000
TABLE = PricingTable(
    provider="openai",
    pricing_version="v1",
    entries=(PricingEntry(model="gpt-4.1-mini", input_usd_per_1k_tokens=0.4, output_usd_per_1k_tokens=1.6),),
)
BASE = ReleaseRef(
    release_id="rel_base",
    agent_id="agent_support",
    provider="openai",
    pricing_version="v1",
    model="gpt-4.1-mini",
)
CAND = BASE.model_copy(update={"release_id": "rel_cand"})
GATED = Policy(
    statistical_gates=StatisticalGates.model_validate(
        {
            "error_rate": {"max": 0.05, "max_increase": 0.01},
            "latency": [{"quantile": q, "max_ms": 5000, "max_ratio": 1.1} for q in (0.5, 0.9, 0.95, 0.99)],
            "cost_per_run": {"max_usd": 2.0, "max_ratio": 1.05},
        }
    )
)


def load(store: Store, size: int) -> float:
    started = time.perf_counter()
    for release in (BASE, CAND):
        for start in range(0, size, CHUNK):
            count = min(CHUNK, size - start)
            events = make_events(release.release_id, count, start=start, total=size, first=FIRST, last=LAST)
            store.insert_events(events)
    return time.perf_counter() - started


def diff_once(store: Store) -> tuple[float, int]:
    started = time.perf_counter()
    since, until = window_bounds("7d", UNTIL)
    baseline, candidate = store.diff_evidence(BASE.release_id, CAND.release_id, "local", since, until)
    result = compute_diff(
        window="7d",
        filters=DiffFilters(environment="local"),
        baseline=DiffSide(BASE, TABLE, baseline),
        candidate=DiffSide(CAND, TABLE, candidate),
        policy=Policy(),
        evaluated_at=until,
    )
    return time.perf_counter() - started, result.result.samples.candidate_runs


def gated_once(store: Store, *, anchored: bool) -> tuple[float, str]:
    """A diff under statistical gates; ``anchored``: as a request created an hour ago sees it."""
    started = time.perf_counter()
    since, until = window_bounds("7d", UNTIL)
    assert GATED.statistical_gates is not None
    baseline, candidate, statistics = store.statistics_evidence(
        BASE.release_id,
        CAND.release_id,
        "local",
        since,
        until,
        statistics_since=since - dt.timedelta(hours=1) if anchored else since,
        rate_since=until - GATED.statistical_gates.rate_window_duration,
    )
    result = gated_diff(
        window="7d",
        filters=DiffFilters(environment="local"),
        baseline=DiffSide(BASE, TABLE, baseline),
        candidate=DiffSide(CAND, TABLE, candidate),
        policy=GATED,
        evaluated_at=until,
        statistics=statistics,
    )
    assert result.result.statistics is not None
    return time.perf_counter() - started, result.result.statistics.verdict.value


def timed(repeat: int, once: Callable[[], tuple[float, object]]) -> tuple[list[float], object]:
    once()  # warm caches, as a running operator would have them
    timings, answer = [], None
    for _ in range(repeat):
        elapsed, answer = once()
        timings.append(elapsed)
    return timings, answer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k events per side only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--backend", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    args = parser.parse_args()
    sizes = [10_000] if args.quick else args.sizes

    results = []
    with postgres_url("postgresql" in args.backend) as pg_url:
        for backend in args.backend:
            for size in sizes:
                with backend_store(backend, pg_url) as store:
                    load_s = load(store, size)
                    timings, runs = timed(args.repeat, lambda: diff_once(store))
                    gated, verdict = timed(args.repeat, lambda: gated_once(store, anchored=False))
                    anchored, _ = timed(args.repeat, lambda: gated_once(store, anchored=True))
                figure = {
                    "backend": backend,
                    "events_per_side": size,
                    "candidate_runs_in_window": runs,
                    "diff_s_best": round(min(timings), 4),
                    "diff_s_median": round(statistics.median(timings), 4),
                    "gated_diff_s_best": round(min(gated), 4),
                    "gated_diff_s_median": round(statistics.median(gated), 4),
                    "anchored_gated_diff_s_best": round(min(anchored), 4),
                    "anchored_gated_diff_s_median": round(statistics.median(anchored), 4),
                    "gates_verdict": verdict,
                    "load_events_per_s": round(2 * size / load_s),
                }
                results.append(figure)
                print(
                    f"{backend:<10} {size:>9,} + {size:>9,} events: diff best {figure['diff_s_best'] * 1000:8.1f} ms, "
                    f"median {figure['diff_s_median'] * 1000:8.1f} ms; with 12 statistical gates best "
                    f"{figure['gated_diff_s_best'] * 1000:.1f} ms, median {figure['gated_diff_s_median'] * 1000:.1f} ms, "
                    f"anchored request best {figure['anchored_gated_diff_s_best'] * 1000:.1f} ms, median "
                    f"{figure['anchored_gated_diff_s_median'] * 1000:.1f} ms ({verdict}) "
                    f"({runs:,} candidate runs in window; loaded at {figure['load_events_per_s']:,} events/s)",
                    flush=True,
                )
    print(json.dumps({"benchmark": "evidence", "results": results}))


if __name__ == "__main__":
    main()
