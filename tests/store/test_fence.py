"""The ledger as the fence of leader election, on both backends: epochs claimed under the ledger's
lock, appends refused to a writer whose epoch is no longer the last, a per-pointer sequence that
makes two conflicting moves of one pointer impossible, the replay lookup and deletion notes."""

from __future__ import annotations

import threading

import pytest

from flightdeck_operator.engine.ledger import LedgerKind, retirement_key
from flightdeck_operator.store import Fenced, PointerMoved, Store, WriterFence
from tests.store.conftest import Backend
from tests.unit.test_ledger import record

FENCE = "flightdeck-system/flightdeck-operator"


def test_a_newer_epoch_fences_the_older_writer_out(backend: Backend) -> None:
    old_leader, new_leader = backend.store, backend.open_another()
    refusals: list[Fenced] = []
    try:
        old_leader.claim_fence(WriterFence(FENCE, 3, "pod-a_1", refused=refusals.append))
        first = old_leader.append(record(1))
        assert first.epoch == 3
        new_leader.claim_fence(WriterFence(FENCE, 4, "pod-b_2"))
        with pytest.raises(Fenced, match="epoch 4") as refused:
            old_leader.append(record(2))
        assert (refused.value.stored_epoch, refused.value.stored_holder) == (4, "pod-b_2")
        assert refusals == [refused.value]
        # The refused append left nothing; the new leader appends after the last entry.
        second = new_leader.append(record(2))
        assert (second.seq, second.epoch) == (2, 4)
        assert backend.store.verify_ledger().ok
        # What was ledgered before stays readable (and idempotent) for the old writer.
        assert old_leader.append(record(1)) == first
    finally:
        new_leader.close()


def test_claims_only_move_forward(store: Store) -> None:
    store.claim_fence(WriterFence(FENCE, 5, "pod-a_1"))
    store.claim_fence(WriterFence(FENCE, 5, "pod-a_1"))  # the same claim again: fine
    for epoch, holder in ((5, "pod-b_2"), (4, "pod-b_2")):
        with pytest.raises(Fenced) as refused:
            store.claim_fence(WriterFence(FENCE, epoch, holder))
        assert refused.value.stored_epoch == 5
    assert store.fence_epoch(FENCE) == (5, "pod-a_1")
    assert store.fence_epoch("another/lease") is None


def test_an_unfenced_store_writes_without_an_epoch(store: Store) -> None:
    assert store.append(record(1)).epoch is None


def test_moves_take_the_pointers_next_sequence(store: Store) -> None:
    first = store.append(record(1), expected_pointer_seq=0)
    blocked = store.append(record(2, pointer_changed=False), expected_pointer_seq=1)
    second = store.append(record(3), expected_pointer_seq=1)
    other = store.append(record(4, pointer="support-staging"), expected_pointer_seq=0)
    assert [first.pointer_seq, blocked.pointer_seq, second.pointer_seq, other.pointer_seq] == [1, None, 2, 1]
    head, seq = store.pointer_head("team-a", "support-prod")
    assert (head, seq) == (second, 2)
    retired = store.append(
        record(
            5,
            kind=LedgerKind.POINTER_RETIRED,
            idempotency_key=retirement_key("team-a", "support-prod", second.seq),
            request_uid=None,
            pointer_changed=False,
        )
    )
    assert retired.pointer_seq == 3
    assert store.pointer_head("team-a", "support-prod") == (None, 3)


def test_a_decision_from_a_stale_head_is_refused(store: Store) -> None:
    store.append(record(1), expected_pointer_seq=0)
    with pytest.raises(PointerMoved, match="moved on"):
        store.append(record(2), expected_pointer_seq=0)
    with pytest.raises(PointerMoved):
        store.append(record(3, pointer_changed=False), expected_pointer_seq=0)
    assert store.count_ledger() == 1


def test_the_database_refuses_a_second_move_from_one_head(backend: Backend) -> None:
    """Even a writer that skips the check (or a hand-written row) cannot repeat a pointer_seq."""
    backend.store.append(record(1), expected_pointer_seq=0)
    row = backend.raw("SELECT * FROM ledger_entries WHERE seq = 1")[0]
    placeholders = ", ".join("?" for _ in row)
    with pytest.raises(Exception, match=r"(?i)unique"):
        backend.raw(f"INSERT INTO ledger_entries VALUES ({placeholders})", [2, "request:x", "x", *row[3:]])


def test_concurrent_conflicting_moves_commit_once(backend: Backend) -> None:
    """Two writers (as two processes that both believe they lead, same epoch claim skipped)
    decide different requests from the same head: exactly one commits."""
    stores = [backend.store, backend.open_another()]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def decide(index: int) -> None:
        barrier.wait()
        try:
            stores[index].append(record(10 + index), expected_pointer_seq=0)
            outcomes.append("ledgered")
        except PointerMoved:
            outcomes.append("moved")

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stores[1].close()
    assert sorted(outcomes) == ["ledgered", "moved"]
    assert backend.store.count_ledger() == 1


# SQLite has one writer process (the chart's single replica): its lock is the file's.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_writer_frozen_inside_an_append_does_not_block_the_next_leader(backend: Backend) -> None:
    """PostgreSQL: a leader stopped (SIGSTOP, a partition) while it holds the ledger's lock keeps its
    connection open; the server ends that transaction after a few seconds, so the next leader's
    claim goes through instead of waiting for the frozen one to wake."""
    frozen_store = backend.open_another()
    locked, release = threading.Event(), threading.Event()
    outcome: list[str] = []

    def frozen_append() -> None:
        try:
            with frozen_store._transaction(write=True) as tx:  # an append, stopped midway
                frozen_store._lock_ledger(tx)
                locked.set()
                release.wait(60)
                tx.execute("SELECT 1")
            outcome.append("committed")
        except Exception as error:  # the server ended it
            outcome.append(type(error).__name__)

    thread = threading.Thread(target=frozen_append)
    thread.start()
    try:
        assert locked.wait(30)
        backend.store.claim_fence(WriterFence(FENCE, 2, "pod-b_2"))  # returns once the server ends it
        assert backend.store.append(record(1)).epoch == 2
    finally:
        release.set()
        thread.join()
        frozen_store.close()
    assert outcome
    assert outcome[0] != "committed"


def test_replay_lookup_by_name_and_spec_digest(store: Store) -> None:
    store.append(record(1, request_name="nightly", spec_digest="d1"))
    newest = store.append(record(2, request_name="nightly", spec_digest="d1"), expected_pointer_seq=1)
    store.append(record(3, request_name="other", spec_digest="d1"), expected_pointer_seq=2)
    store.append(record(4))  # written without replay keys (before they existed)
    assert store.replay_entry("team-a", "nightly", "d1") == newest
    assert store.replay_entry("team-a", "nightly", "d2") is None
    assert store.replay_entry("team-b", "nightly", "d1") is None
    assert store.decision_for_name("team-a", "nightly") == newest
    assert store.decision_for_name("team-a", "never") is None


def test_a_decision_before_its_pointers_retirement_is_not_replayed(store: Store) -> None:
    decided = store.append(record(1, request_name="nightly", spec_digest="d1"))
    store.append(
        record(
            2,
            kind=LedgerKind.POINTER_RETIRED,
            idempotency_key=retirement_key("team-a", "support-prod", decided.seq),
            request_uid=None,
            pointer_changed=False,
        )
    )
    # The pointer's history ended: a copy re-created for a re-created pointer is decided afresh ...
    assert store.replay_entry("team-a", "nightly", "d1") is None
    # ... while retention may still delete the request (the ledger holds its decision).
    assert store.replay_entry("team-a", "nightly", "d1", across_retirement=True) == decided


def test_deletion_notes_are_shared_and_consumed(backend: Backend) -> None:
    other_replica = backend.open_another()
    try:
        other_replica.note_pointer_deletion("team-a", "support-prod", "uid-p", "alice")
        other_replica.note_pointer_deletion("team-a", "support-prod", "uid-p", "bob")  # the last one counts
        assert backend.store.pop_pointer_deletion("team-a", "support-prod", "uid-p") == "bob"
        assert backend.store.pop_pointer_deletion("team-a", "support-prod", "uid-p") is None
    finally:
        other_replica.close()
