"""Ledger format: canonical JSON, the hash chain, and verify() on every kind of tampering."""

from __future__ import annotations

import datetime as dt
import hashlib

from flightdeck_operator.engine.ledger import (
    GENESIS_HASH,
    LedgerEntry,
    LedgerKind,
    LedgerRecord,
    canonical_json,
    change_key,
    policy_digest,
    request_key,
    seal,
    verify,
)
from flightdeck_operator.engine.models import Policy, PolicyResult
from tests.factories import NOW


def record(n: int, **overrides: object) -> LedgerRecord:
    fields: dict[str, object] = {
        "kind": LedgerKind.PROMOTE,
        "idempotency_key": request_key(f"uid-{n}"),
        "request_uid": f"uid-{n}",
        "actor": "alice",
        "namespace": "team-a",
        "pointer": "support-prod",
        "agent_id": "agent_support",
        "environment": "prod",
        "release_id": f"rel_{n}",
        "pointer_changed": True,
        "reason": f"promotion {n}",
        "policy_result": PolicyResult(passed=True, reasons=("ok",), evaluated_at=NOW),
        "policy_digest": policy_digest(Policy()),
        "created_at": NOW + dt.timedelta(seconds=n),
    }
    fields.update(overrides)
    return LedgerRecord.model_validate(fields)


def chain(count: int) -> list[LedgerEntry]:
    entries: list[LedgerEntry] = []
    for n in range(1, count + 1):
        entries.append(seal(record(n), seq=n, prev_hash=entries[-1].hash if entries else GENESIS_HASH))
    return entries


def test_canonical_json_is_sorted_compact_and_ascii() -> None:
    assert canonical_json({"b": 1, "a": [1.5, None, "é"]}) == '{"a":[1.5,null,"\\u00e9"],"b":1}'


def test_hash_is_sha256_of_prev_hash_and_canonical_entry() -> None:
    first = seal(record(1), seq=1, prev_hash=GENESIS_HASH)
    assert first.prev_hash == "0" * 64
    payload = first.model_dump(mode="json", exclude={"prev_hash", "hash"})
    assert payload["seq"] == 1
    assert payload["created_at"] == "2026-05-05T12:00:01Z"
    # Fields added later are hashed only when set: entries sealed before them keep their hash.
    later = {"request_name", "spec_digest", "epoch", "pointer_seq"}
    assert all(payload.pop(name) is None for name in later)
    expected = hashlib.sha256((GENESIS_HASH + canonical_json(payload)).encode()).hexdigest()
    assert first.hash == expected
    assert len(first.hash) == 64


def test_fields_added_later_are_hashed_when_set() -> None:
    plain = seal(record(1), seq=1, prev_hash=GENESIS_HASH)
    fenced = seal(record(1), seq=1, prev_hash=GENESIS_HASH, epoch=3, pointer_seq=1)
    assert fenced.hash != plain.hash
    assert fenced.computed_hash() == fenced.hash
    assert fenced.model_copy(update={"epoch": 4}).computed_hash() != fenced.hash


def test_policy_digest_depends_on_values() -> None:
    assert policy_digest(Policy()) == policy_digest(Policy())
    assert policy_digest(Policy()) != policy_digest(Policy(max_cost_per_run_usd=1.0))
    expected = hashlib.sha256(canonical_json(Policy().model_dump(mode="json")).encode()).hexdigest()
    assert policy_digest(Policy()) == expected


def test_idempotency_keys() -> None:
    assert request_key("abc") == "request:abc"
    assert change_key(LedgerKind.POLICY_CHANGE, "uid-1", 3) == "policy_change:uid-1@3"


def test_intact_chain_verifies() -> None:
    entries = chain(4)
    result = verify(entries)
    assert result.ok
    assert result.entries == 4
    assert result.first_bad_seq is None
    assert result.head_hash == entries[-1].hash
    assert str(result) == "hash chain intact, contiguous 1..4 (4 entries)"
    assert verify([]).ok


def test_edited_entry_is_named() -> None:
    entries = chain(4)
    entries[2] = entries[2].model_copy(update={"reason": "something else"})
    result = verify(entries)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.problem == "seq 3: hash does not match its content (edited)"


def test_deleted_entry_is_named() -> None:
    entries = chain(4)
    del entries[1]
    result = verify(entries)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.problem == "seq 2 is missing (found seq 3 after seq 1)"


def test_deleted_last_entry_needs_an_outside_anchor() -> None:
    entries = chain(4)
    assert verify(entries[:3]).ok  # truncation leaves a valid shorter chain
    assert verify(entries[:3]).head_hash != entries[-1].hash  # ... which a recorded head hash exposes


def test_inserted_entry_is_named() -> None:
    entries = chain(4)
    forged = seal(record(99), seq=3, prev_hash=entries[1].hash)  # a well-formed entry slipped in as seq 3
    renumbered = [e.model_copy(update={"seq": e.seq + 1}) for e in entries[2:]]
    result = verify([*entries[:2], forged, *renumbered])
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem is not None
    assert result.problem.startswith("seq 4: prev_hash does not match the hash of seq 3")


def test_reordered_entries_are_named() -> None:
    entries = chain(4)
    swapped = [
        entries[0],
        entries[2].model_copy(update={"seq": 2}),
        entries[1].model_copy(update={"seq": 3}),
        entries[3],
    ]
    result = verify(swapped)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    out_of_order = verify([entries[0], entries[2], entries[1], entries[3]])
    assert (out_of_order.ok, out_of_order.first_bad_seq) == (False, 2)


def test_duplicated_seq_is_named() -> None:
    entries = chain(3)
    result = verify([entries[0], entries[1], entries[1], entries[2]])
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.problem == "seq 2 is duplicated or out of order (expected seq 3)"


def test_chain_must_start_at_seq_one_from_genesis() -> None:
    entries = chain(3)
    assert verify(entries[1:]).first_bad_seq == 1
    rebased = seal(record(1), seq=1, prev_hash="f" * 64)
    result = verify([rebased])
    assert result.first_bad_seq == 1
    assert result.problem is not None
    assert "genesis" in result.problem


def test_policy_change_entry_without_request_uid() -> None:
    entry = seal(
        LedgerRecord(
            kind=LedgerKind.POLICY_CHANGE,
            idempotency_key=change_key(LedgerKind.POLICY_CHANGE, "pol-uid", 2),
            actor="system:serviceaccount:ci",
            namespace="team-a",
            reason="tightened cost limit",
            policy_digest=policy_digest(Policy(max_cost_per_run_usd=1.0)),
            details={"policy": Policy(max_cost_per_run_usd=1.0).model_dump(mode="json"), "generation": 2},
            created_at=NOW,
        ),
        seq=1,
        prev_hash=GENESIS_HASH,
    )
    assert entry.request_uid is None
    assert verify([entry]).ok
    assert entry.record().kind is LedgerKind.POLICY_CHANGE
