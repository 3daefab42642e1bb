"""Store-level batch insert rate (events already validated), on SQLite and PostgreSQL.

    python benchmarks/ingest.py [--quick] [--events N] [--batch N ...] [--repeat N] [--backend ...]

Each figure is the best and the median of ``--repeat`` runs on a fresh store (this machine's timing
is noisy). Prints one line per (backend, batch size) and, last, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# This folder holds http.py (benchmarks/http.py), which would shadow the standard library's http
# package if the folder came first on sys.path, as it does for a script: keep it last.
_HERE = Path(__file__).resolve().parent
sys.path[:] = (
    [str(_HERE.parent / "operator")]
    + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    + [str(_HERE)]
)

from _common import backend_store, make_events, postgres_url  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k events, batch 5000, one run")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--backend", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    args = parser.parse_args()
    total = 20_000 if args.quick else args.events
    batches = [5000] if args.quick else args.batch
    repeat = 1 if args.quick else args.repeat

    results = []
    events = make_events("rel_ingest", total)
    with postgres_url("postgresql" in args.backend) as pg_url:
        for backend in args.backend:
            for batch in batches:
                rates, duplicate_rates = [], []
                for _ in range(repeat):
                    with backend_store(backend, pg_url) as store:
                        started = time.perf_counter()
                        inserted = sum(
                            store.insert_events(events[i : i + batch]) for i in range(0, total, batch)
                        )
                        rates.append(total / (time.perf_counter() - started))
                        started = time.perf_counter()
                        again = sum(
                            store.insert_events(events[i : i + batch]) for i in range(0, total, batch)
                        )
                        duplicate_rates.append(total / (time.perf_counter() - started))
                    if (inserted, again) != (total, 0):
                        raise SystemExit(f"wrong counts: inserted={inserted} duplicates_inserted={again}")
                figure = {
                    "backend": backend,
                    "batch": batch,
                    "events": total,
                    "runs": repeat,
                    "events_per_s_best": round(max(rates)),
                    "events_per_s_median": round(statistics.median(rates)),
                    "duplicates_per_s_median": round(statistics.median(duplicate_rates)),
                }
                results.append(figure)
                print(
                    f"{backend:<10} batch={batch:<6} {total:>9,} events: best {figure['events_per_s_best']:>9,}/s, "
                    f"median {figure['events_per_s_median']:>9,}/s over {repeat} run(s); re-sent as duplicates: "
                    f"median {figure['duplicates_per_s_median']:,}/s",
                    flush=True,
                )
    print(json.dumps({"benchmark": "ingest", "results": results}))


if __name__ == "__main__":
    main()
