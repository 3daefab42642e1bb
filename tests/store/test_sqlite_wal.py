"""The SQLite WAL stays bounded while one process ingests and another keeps reading the same file,
as the sidecar and the operator do (issue 19: a PASSIVE-only checkpointer let it grow without end).

Two real processes (``spawn``, no threads standing in for them): the writer ingests reference-sized
events in batches and records the WAL's size after every commit (the file only grows when a commit
writes frames, so that is its peak); the reader runs evidence, page and ledger reads in a loop.
A small ``wal_limit_bytes`` keeps the run short; the mechanism is the same as at the default.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from multiprocessing.synchronize import Event
from pathlib import Path

from flightdeck_operator.engine.models import RUN_EVENT_DATA
from flightdeck_operator.store import SqliteStore
from flightdeck_operator.store.forensics import RunFilters
from tests.factories import NOW, event_dict

WAL_LIMIT = 2 * 1024 * 1024
BATCH = 500  # about 0.6 MB of WAL per commit
BATCHES = 200  # about 120 MB of WAL in all: PASSIVE-only checkpoints left a WAL of about 100 MB
# The checkpointer keeps the file near the limit and truncates it at 3 limits at the latest, plus
# what is committed meanwhile (docs/operations.md); measured here: 4 to 16 MB. 16 limits leave room
# for a slow machine and are still a third of what PASSIVE-only checkpoints left (102 MB).
WAL_BOUND = 16 * WAL_LIMIT
WINDOW = (NOW - dt.timedelta(days=7), NOW)


def reference_event(run: int) -> dict[str, object]:
    """About 690 bytes as JSON, like the reference's benchmark events."""
    return event_dict(
        run_id=f"wal-{run:09d}",
        release_id=("rel-a", "rel-b")[run // BATCH % 2],
        timestamp=NOW - dt.timedelta(seconds=run % 86_400),
        request={"session_id": f"s-{run // 10:012d}", "trace_id": f"{run:032x}", "span_id": f"{run:016x}"},
        labels={"region": "eu-west-1", "customer_tier": "enterprise"},
        usage={
            "model": {
                "provider": "openai",
                "model": "gpt-4.1-mini",
                "input_tokens": 1000,
                "output_tokens": 500,
            },
            "tools": [{"tool_name": "knowledge_base_search", "invocations": 2, "cost_units": 0.25}],
        },
    )


def open_wal_store(path: Path) -> SqliteStore:
    store = SqliteStore(path, wal_limit_bytes=WAL_LIMIT)
    store.migrate()
    return store


def wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def ingest(path: Path, reader_started: Event, peak: multiprocessing.Queue[int]) -> None:
    # Validated up front (to plain data, as the sidecar does), so commits come back to back, as
    # under concurrent ingest: a PASSIVE checkpoint then never catches up with the end of the log.
    batches = [
        [RUN_EVENT_DATA.validate_python(reference_event(batch * BATCH + i)) for i in range(BATCH)]
        for batch in range(BATCHES)
    ]
    with open_wal_store(path) as store:
        reader_started.wait(60)
        largest = 0
        for events in batches:
            store.insert_event_data(events)
            largest = max(largest, wal_size(path))
        peak.put(largest)


def keep_reading(path: Path, reader_started: Event, stop: Event) -> None:
    with open_wal_store(path) as store:
        while not stop.is_set():
            store.diff_evidence("rel-a", "rel-b", "local", *WINDOW)
            store.run_page(RunFilters("rel-a", "local", *WINDOW), limit=50)
            store.ledger_head()
            reader_started.set()


def test_wal_stays_bounded_with_a_writer_and_a_reader_process(tmp_path: Path) -> None:
    path = tmp_path / "flightdeck.db"
    open_wal_store(path).close()  # schema in place before both start
    spawn = multiprocessing.get_context("spawn")
    reader_started, stop = spawn.Event(), spawn.Event()
    peak: multiprocessing.Queue[int] = spawn.Queue()
    reader = spawn.Process(target=keep_reading, args=(path, reader_started, stop))
    writer = spawn.Process(target=ingest, args=(path, reader_started, peak))
    reader.start()
    writer.start()
    try:
        largest = peak.get(timeout=120)
        writer.join(30)
    finally:
        stop.set()
        reader.join(30)
        for process in (writer, reader):
            if process.is_alive():
                process.kill()
    assert (writer.exitcode, reader.exitcode) == (0, 0)
    assert reader_started.is_set()
    assert largest <= WAL_BOUND, f"WAL reached {largest / 1e6:.1f} MB, bound {WAL_BOUND / 1e6:.1f} MB"
    with open_wal_store(path) as store:
        assert store.count_events() == BATCHES * BATCH
