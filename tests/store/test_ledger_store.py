"""The ledger table on both backends: contiguity, idempotency, concurrency and tamper detection."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from flightdeck_operator.engine.ledger import LedgerKind, LedgerRecord, request_key, retirement_key, verify
from flightdeck_operator.engine.models import EvidenceSummary, Rollup
from flightdeck_operator.store import Store, open_store
from flightdeck_operator.store.postgres import redact
from tests.factories import NOW
from tests.store.conftest import Backend
from tests.unit.test_ledger import record


def fill(store: Store, count: int) -> None:
    for n in range(1, count + 1):
        store.append(record(n))


def test_append_assigns_contiguous_seq_and_chains(store: Store) -> None:
    entries = [store.append(record(n)) for n in range(1, 6)]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    result = store.verify_ledger()
    assert result.ok
    assert result.entries == 5
    assert result.head_hash == entries[-1].hash
    assert store.ledger_head() == entries[-1]
    assert store.count_ledger() == 5


def test_entries_round_trip_exactly(store: Store) -> None:
    evidence = EvidenceSummary(
        window="7d",
        since=NOW - dt.timedelta(days=7),
        until=NOW,
        baseline=Rollup(runs=3, cost_per_run_usd=0.1 + 0.2, latency_ms_avg=None, error_rate=1 / 3),
        candidate=Rollup(runs=7, cost_per_run_usd=2.0, latency_ms_avg=123.0, error_rate=3 / 7),
        confidence="LOW",
        confidence_reason="candidate sample < 500 runs",
    )
    written = store.append(
        record(
            1,
            evidence=evidence,
            details={"note": "ünïcode", "n": 1.5},
            created_at=NOW.replace(microsecond=123456),
        )
    )
    read = store.ledger_entry(1)
    assert read == written
    assert read is not None
    assert read.computed_hash() == read.hash
    assert verify([read]).ok


def test_appending_the_same_request_twice_returns_the_first_entry(store: Store) -> None:
    first = store.append(record(1))
    again = store.append(record(1, reason="a retry with different text"))
    assert again == first
    assert store.count_ledger() == 1
    assert store.ledger_entry_for_request("uid-1") == first
    assert store.ledger_entry_for_key(request_key("uid-1")) == first
    assert store.ledger_entry_for_request("uid-unknown") is None


def test_list_filters_and_newest_first(store: Store) -> None:
    store.append(record(1))
    store.append(record(2, pointer="other", environment="staging"))
    store.append(record(3, kind=LedgerKind.ROLLBACK))
    assert [e.seq for e in store.list_ledger()] == [3, 2, 1]
    assert [e.seq for e in store.list_ledger(limit=2)] == [3, 2]
    assert [e.seq for e in store.list_ledger(pointer="support-prod")] == [3, 1]
    assert [e.seq for e in store.list_ledger(agent_id="agent_support", environment="staging")] == [2]
    assert [e.seq for e in store.list_ledger(namespace="team-a", kind=LedgerKind.ROLLBACK)] == [3]
    assert store.list_ledger(namespace="nope") == []


def test_last_pointer_entry_skips_blocked_and_other_pointers(store: Store) -> None:
    store.append(record(1))
    store.append(record(2, pointer="other"))
    store.append(record(3, pointer_changed=False))  # blocked
    store.append(record(4, kind=LedgerKind.POLICY_CHANGE, request_uid=None, idempotency_key="policy:x@1"))
    last = store.last_pointer_entry("team-a", "support-prod")
    assert last is not None
    assert last.seq == 1
    assert last.release_id == "rel_1"
    assert store.last_pointer_entry("team-a", "missing") is None
    heads = store.pointer_heads()
    assert {key: e.seq for key, e in heads.items()} == {("team-a", "support-prod"): 1, ("team-a", "other"): 2}


def test_pointer_moves_are_the_pointers_history_newest_first(store: Store) -> None:
    store.append(record(1))
    store.append(record(2, pointer_changed=False))
    store.append(record(3, kind=LedgerKind.ROLLBACK))
    store.append(record(4, pointer="other"))
    store.append(record(5))
    assert [e.seq for e in store.pointer_moves("team-a", "support-prod")] == [5, 3, 1]
    assert [e.seq for e in store.pointer_moves("team-a", "support-prod", limit=2)] == [5, 3]
    assert store.pointer_moves("team-b", "support-prod") == []


def test_describe_names_the_backend_without_secrets(backend: Backend) -> None:
    description = backend.store.describe()
    assert description.startswith(backend.name)
    if backend.name == "postgresql":
        assert "host=127.0.0.1" in description
    with open_store(f"{backend.target}", migrate=False) as again:
        assert again.describe() == description


def retirement(n: int, last_move_seq: int, pointer: str = "support-prod") -> LedgerRecord:
    return LedgerRecord(
        kind=LedgerKind.POINTER_RETIRED,
        idempotency_key=retirement_key("team-a", pointer, last_move_seq),
        actor="ops",
        namespace="team-a",
        pointer=pointer,
        agent_id="agent_support",
        environment="prod",
        reason="environment decommissioned",
        created_at=NOW + dt.timedelta(seconds=n),
    )


def test_a_retired_pointer_is_history_and_a_new_one_of_its_name_starts_afresh(store: Store) -> None:
    store.append(record(1))
    store.append(record(2, pointer="other"))
    retired = store.append(retirement(3, last_move_seq=1))
    assert store.append(retirement(3, last_move_seq=1)) == retired  # the sweep finding it again
    assert store.last_pointer_entry("team-a", "support-prod") is None
    assert store.pointer_moves("team-a", "support-prod") == []
    assert store.last_retirement("team-a", "support-prod") == retired
    assert set(store.pointer_heads()) == {("team-a", "other")}
    moved = store.append(record(4))  # the re-created pointer's first promotion
    assert store.last_pointer_entry("team-a", "support-prod") == moved
    assert [e.seq for e in store.pointer_moves("team-a", "support-prod")] == [moved.seq]
    assert store.pointer_heads()[("team-a", "support-prod")] == moved
    assert store.last_retirement("team-a", "other") is None


def test_postgres_description_redacts_the_password() -> None:
    assert redact("postgresql://u:s3cret@db.example:5432/fd") == "dbname=fd host=db.example port=5432 user=u"


def test_ledger_is_append_only_for_ordinary_sql(backend: Backend) -> None:
    fill(backend.store, 1)
    with pytest.raises(Exception, match="append-only"):
        backend.raw("UPDATE ledger_entries SET reason = 'x' WHERE seq = 1")
    with pytest.raises(Exception, match="append-only"):
        backend.raw("DELETE FROM ledger_entries WHERE seq = 1")
    assert backend.store.verify_ledger().ok


def test_verify_names_an_edited_row(backend: Backend) -> None:
    fill(backend.store, 5)
    backend.tamper(("UPDATE ledger_entries SET reason = ? WHERE seq = 3", ["rewritten"]))
    result = backend.store.verify_ledger()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert result.problem == "seq 3: hash does not match its content (edited)"


def test_verify_names_an_edited_json_column(backend: Backend) -> None:
    fill(backend.store, 3)
    backend.tamper(
        (
            "UPDATE ledger_entries SET policy_result_json = ? WHERE seq = 2",
            ['{"evaluated_at":"2026-05-05T12:00:00Z","passed":false,"reasons":[]}'],
        )
    )
    assert backend.store.verify_ledger().first_bad_seq == 2


def test_verify_names_a_deleted_row(backend: Backend) -> None:
    fill(backend.store, 5)
    backend.tamper(("DELETE FROM ledger_entries WHERE seq = 3", []))
    result = backend.store.verify_ledger()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert result.problem == "seq 3 is missing (found seq 4 after seq 2)"


def test_verify_names_an_inserted_row(backend: Backend) -> None:
    fill(backend.store, 4)
    row = backend.raw("SELECT * FROM ledger_entries WHERE seq = 2")[0]
    placeholders = ", ".join("?" for _ in row)
    backend.tamper(
        ("UPDATE ledger_entries SET seq = seq + 100 WHERE seq >= 3", []),
        ("UPDATE ledger_entries SET seq = seq - 99 WHERE seq >= 100", []),
        # a copy of seq 2 re-keyed as seq 3: well formed, but its hash no longer fits (without
        # its pointer_seq, the table's last column, which may not repeat for one pointer)
        (
            f"INSERT INTO ledger_entries VALUES ({placeholders})",
            [3, "request:forged", "forged", *row[3:-1], None],
        ),
    )
    result = backend.store.verify_ledger()
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_verify_names_reordered_rows(backend: Backend) -> None:
    fill(backend.store, 4)
    backend.tamper(
        ("UPDATE ledger_entries SET seq = 100 WHERE seq = 2", []),
        ("UPDATE ledger_entries SET seq = 2 WHERE seq = 3", []),
        ("UPDATE ledger_entries SET seq = 3 WHERE seq = 100", []),
    )
    result = backend.store.verify_ledger()
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_verify_names_an_unreadable_row(backend: Backend) -> None:
    fill(backend.store, 3)
    backend.tamper(("UPDATE ledger_entries SET kind = ? WHERE seq = 2", ["not-a-kind"]))
    result = backend.store.verify_ledger(page_size=2)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.problem is not None
    assert result.problem.startswith("seq 2: row cannot be read")


def test_verify_pages_through_a_long_ledger(store: Store) -> None:
    fill(store, 7)
    assert store.verify_ledger(page_size=3).entries == 7


def test_concurrent_appends_stay_contiguous(backend: Backend) -> None:
    # Two store objects on one database behave like two processes (separate connections/pools).
    stores = [backend.store, backend.open_another()]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for n in range(10):
                stores[index % 2].append(record(1000 + index * 100 + n))
                # every thread also races on one shared request
                stores[index % 2].append(record(1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stores[1].close()
    assert errors == []
    assert backend.store.count_ledger() == 61
    result = backend.store.verify_ledger()
    assert result.ok
    assert result.entries == 61
    assert len({e.request_uid for e in backend.store.list_ledger(limit=100)}) == 61
