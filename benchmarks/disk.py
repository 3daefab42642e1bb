"""Disk per million run events on each backend, for sizing volumes (docs/operations.md).

    .venv/bin/python benchmarks/disk.py                      # 1M events, SQLite and PostgreSQL
    .venv/bin/python benchmarks/disk.py --events 200000      # a smaller sample, scaled to 1M
    .venv/bin/python benchmarks/disk.py --backend postgresql

Inserts reference-sized events (about 690 bytes as JSON, as benchmarks/wal.py posts them) through
``Store.insert_event_data`` (the sidecar's path) in batches of 1,000, timestamps spread over 30 days,
into a fresh store, and reports what they occupy:

- SQLite: the database's pages (the file's size once the WAL is checkpointed into it);
- PostgreSQL: ``pg_total_relation_size`` (heap, indexes, TOAST) of ``run_events`` and
  ``run_event_buckets``. The server's own WAL is not counted: it is recycled, bounded by
  ``max_wal_size`` (1 GB by default).

Prints one line per backend and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

# This folder holds http.py (benchmarks/http.py), which would shadow the standard library's http
# package if the folder came first on sys.path, as it does for a script: keep it last.
_HERE = Path(__file__).resolve().parent
sys.path[:] = (
    [str(_HERE.parent / "operator")]
    + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    + [str(_HERE)]
)

from _common import NOW, backend_store, postgres_url, reference_event  # noqa: E402
from flightdeck_operator.engine.models import RUN_EVENT_DATA  # noqa: E402
from flightdeck_operator.store import PostgresStore, SqliteStore, Store  # noqa: E402

BATCH = 1000
SPREAD = dt.timedelta(days=30)
MILLION = 1_000_000


def fill(store: Store, count: int) -> None:
    step = SPREAD / count
    for start in range(0, count, BATCH):
        events = [
            RUN_EVENT_DATA.validate_python(
                reference_event(i, timestamp=NOW - SPREAD + step * i, release_id=f"rel-{i // 100_000}")
            )
            for i in range(start, min(count, start + BATCH))
        ]
        store.insert_event_data(events)


def sqlite_bytes(store: SqliteStore) -> dict[str, int]:
    # page_count counts pages still in the WAL too: the size of the file once checkpointed.
    with store._transaction(write=False) as tx:
        pages = tx.execute("PRAGMA page_count").fetchone()[0]
        page_size = tx.execute("PRAGMA page_size").fetchone()[0]
    return {"database": int(pages) * int(page_size)}


def postgres_bytes(store: PostgresStore) -> dict[str, int]:
    with store._transaction(write=False) as tx:
        events, heap, indexes, buckets = tx.execute(
            "SELECT pg_total_relation_size('run_events'), pg_relation_size('run_events'), "
            "pg_indexes_size('run_events'), pg_total_relation_size('run_event_buckets')"
        ).fetchone()
    return {
        "run_events_total": int(events),
        "run_events_heap": int(heap),
        "run_events_indexes": int(indexes),
        "run_event_buckets_total": int(buckets),
    }


def measure(backend: str, pg_url: str | None, count: int) -> dict[str, Any]:
    with backend_store(backend, pg_url) as store:
        fill(store, count)
        if isinstance(store, SqliteStore):
            parts = sqlite_bytes(store)
            total = parts["database"]
        else:
            assert isinstance(store, PostgresStore)
            parts = postgres_bytes(store)
            total = parts["run_events_total"] + parts["run_event_buckets_total"]
    result = {
        "backend": backend,
        "events": count,
        "bytes": parts,
        "bytes_per_event": round(total / count),
        "per_million_events_mb": round(total * MILLION / count / 1e6),
        "scaled_from_smaller_sample": count < MILLION,
    }
    detail = ", ".join(f"{name} {size / 1e6:,.1f} MB" for name, size in parts.items())
    scaled = f" (scaled from {count:,})" if count < MILLION else ""
    print(
        f"{backend:<10} {count:>9,} events: {detail}; {result['bytes_per_event']} bytes per event, "
        f"{result['per_million_events_mb']:,} MB per million events{scaled}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=MILLION)
    parser.add_argument(
        "--backend", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    args = parser.parse_args()
    with postgres_url("postgresql" in args.backend) as pg_url:
        results = [measure(backend, pg_url, args.events) for backend in args.backend]
    print(json.dumps({"benchmark": "disk", "results": results}))


if __name__ == "__main__":
    main()
