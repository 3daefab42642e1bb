"""The audit ledger: serialized appends (contiguous ``seq``, the hash chain), lookups by idempotency
key, request and pointer, and the chain's verification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from flightdeck_operator.engine import ledger
from flightdeck_operator.engine.ledger import ChainVerification, LedgerEntry, LedgerRecord, moves_pointer
from flightdeck_operator.store.base import Transaction
from flightdeck_operator.store.fence import Fenced, FenceQueries, PointerMoved
from flightdeck_operator.store.rows import entry_from_row, placeholder_entry, row_from_entry, where_clause
from flightdeck_operator.store.schema import LEDGER_COLUMNS, LEDGER_COUNT_UPSERT

# An entry that moved a pointer; and one that moved or retired it (the events of a pointer's life).
_MOVE = "pointer_changed = 1 AND kind IN ('promote', 'rollback')"
_LIFE_EVENT = f"(({_MOVE}) OR kind = '{ledger.LedgerKind.POINTER_RETIRED.value}')"
_LAST_MOVE = (
    f"seq = (SELECT MAX(seq) FROM ledger_entries WHERE namespace = ? AND pointer = ? AND {_LIFE_EVENT}) "
    f"AND {_MOVE}"
)


class LedgerQueries(FenceQueries):
    """Ledger appends and reads."""

    def append(self, record: LedgerRecord, *, expected_pointer_seq: int | None = None) -> LedgerEntry:
        """Append ``record`` with the next ``seq`` and its chain hash, atomically.

        Idempotent: if an entry with the same idempotency key (or request UID) exists, it is returned
        and nothing is written. Otherwise, when this store writes for an elected leader, the fence
        must still be ours (:class:`Fenced`). ``expected_pointer_seq``: the pointer head the decision
        was computed from (``pointer_head``); :class:`PointerMoved` when its history moved since.
        """
        try:
            with self._transaction(write=True) as tx:
                self._lock_ledger(tx)
                existing = tx.execute(
                    f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries "
                    "WHERE idempotency_key = ? OR request_uid = ? ORDER BY seq LIMIT 1",
                    [record.idempotency_key, record.request_uid],
                ).fetchone()
                if existing is not None:
                    return entry_from_row(existing)
                self._check_fence(tx)
                pointer_seq = None
                if expected_pointer_seq is not None or moves_pointer(record):
                    current = self._pointer_seq(tx, record.namespace, record.pointer or "")
                    if expected_pointer_seq is not None and current != expected_pointer_seq:
                        raise PointerMoved(
                            f"ReleasePointer {record.namespace}/{record.pointer} moved on (pointer seq "
                            f"{current}, decided at {expected_pointer_seq}); the request is evaluated again"
                        )
                    pointer_seq = current + 1 if moves_pointer(record) else None
                head = tx.execute("SELECT seq, hash FROM ledger_entries ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev_hash = (
                    (1, ledger.GENESIS_HASH) if head is None else (int(head[0]) + 1, str(head[1]))
                )
                fence = self.writer_fence
                entry = ledger.seal(
                    record,
                    seq=seq,
                    prev_hash=prev_hash,
                    epoch=None if fence is None else fence.epoch,
                    pointer_seq=pointer_seq,
                )
                tx.execute(
                    f"INSERT INTO ledger_entries ({', '.join(LEDGER_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in LEDGER_COLUMNS)})",
                    row_from_entry(entry),
                )
                tx.execute(LEDGER_COUNT_UPSERT, [entry.namespace, entry.kind.value])
                return entry
        except Fenced as refused:
            fence = self.writer_fence
            if fence is not None and fence.refused is not None:
                fence.refused(refused)
            raise

    @staticmethod
    def _pointer_seq(tx: Transaction, namespace: str, pointer: str) -> int:
        row = tx.execute(
            "SELECT MAX(pointer_seq) FROM ledger_entries WHERE namespace = ? AND pointer = ?",
            [namespace, pointer],
        ).fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def pointer_head(self, namespace: str, pointer: str) -> tuple[LedgerEntry | None, int]:
        """``last_pointer_entry`` and the pointer's current ``pointer_seq`` (0: none yet), read in
        one snapshot: what a decision is computed from, and what its append must still find."""
        with self._transaction(write=False, snapshot=True) as tx:
            seq = self._pointer_seq(tx, namespace, pointer)
            rows = tx.execute(
                f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries WHERE {_LAST_MOVE} ORDER BY seq",
                [namespace, pointer],
            ).fetchall()
        return (entry_from_row(rows[0]) if rows else None), seq

    def replay_entry(
        self, namespace: str, request_name: str, spec_digest: str, *, across_retirement: bool = False
    ) -> LedgerEntry | None:
        """The decision of an earlier request with this name and spec (deleted since, e.g. by
        retention, and re-created by GitOps or a retried Idempotency-Key): replayed, not re-decided.

        A decision made before its pointer was retired belongs to a history that has ended: a
        request re-created for the re-created pointer is decided afresh, so it is not returned
        unless ``across_retirement`` (retention asks whether the ledger holds it at all)."""
        rows = self._ledger_rows(
            "namespace = ? AND request_name = ? AND spec_digest = ? AND kind IN (?, ?)",
            [
                namespace,
                request_name,
                spec_digest,
                ledger.LedgerKind.PROMOTE.value,
                ledger.LedgerKind.ROLLBACK.value,
            ],
        )
        if not rows:
            return None
        entry = entry_from_row(rows[-1])
        if not across_retirement and entry.pointer:
            retired = self.last_retirement(namespace, entry.pointer)
            if retired is not None and retired.seq > entry.seq:
                return None
        return entry

    def decision_for_name(self, namespace: str, request_name: str) -> LedgerEntry | None:
        """The newest ledgered decision of a request of this name (whatever its spec)."""
        rows = self._ledger_rows(
            "namespace = ? AND request_name = ? AND kind IN (?, ?)",
            [namespace, request_name, ledger.LedgerKind.PROMOTE.value, ledger.LedgerKind.ROLLBACK.value],
        )
        return entry_from_row(rows[-1]) if rows else None

    def ledger_entry_for_request(self, request_uid: str) -> LedgerEntry | None:
        return self._one_ledger_entry("request_uid = ?", [request_uid])

    def ledger_entry_for_key(self, idempotency_key: str) -> LedgerEntry | None:
        return self._one_ledger_entry("idempotency_key = ?", [idempotency_key])

    def ledger_entry(self, seq: int) -> LedgerEntry | None:
        return self._one_ledger_entry("seq = ?", [seq])

    def ledger_head(self) -> LedgerEntry | None:
        return self._one_ledger_entry("seq = (SELECT MAX(seq) FROM ledger_entries)", [])

    def last_pointer_entry(self, namespace: str, pointer: str) -> LedgerEntry | None:
        """The last entry that moved this pointer: the pointer's release must equal its ``release_id``.
        None when nothing moved it since its last retirement (a re-created pointer starts afresh)."""
        return self._one_ledger_entry(_LAST_MOVE, [namespace, pointer])

    def last_retirement(self, namespace: str, pointer: str) -> LedgerEntry | None:
        """The last retirement of a pointer of this name (its history before that has ended)."""
        return self._one_ledger_entry(
            "seq = (SELECT MAX(seq) FROM ledger_entries WHERE namespace = ? AND pointer = ? AND kind = ?)",
            [namespace, pointer, ledger.LedgerKind.POINTER_RETIRED.value],
        )

    def pointer_moves(self, namespace: str, pointer: str, *, limit: int = 10) -> list[LedgerEntry]:
        """The entries that moved this pointer since its last retirement, newest first (its history)."""
        with self._transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries WHERE namespace = ? AND pointer = ? "
                f"AND {_MOVE} AND seq > COALESCE((SELECT MAX(seq) FROM ledger_entries "
                "WHERE namespace = ? AND pointer = ? AND kind = ?), 0) ORDER BY seq DESC LIMIT ?",
                [namespace, pointer, namespace, pointer, ledger.LedgerKind.POINTER_RETIRED.value, limit],
            ).fetchall()
        return [entry_from_row(row) for row in rows]

    def pointer_heads(self) -> dict[tuple[str, str], LedgerEntry]:
        """``last_pointer_entry`` for every pointer the ledger holds a live history for, keyed by
        (namespace, pointer); retired pointers are history, not heads."""
        rows = self._ledger_rows(
            f"seq IN (SELECT MAX(seq) FROM ledger_entries WHERE {_LIFE_EVENT} GROUP BY namespace, pointer) "
            f"AND {_MOVE}",
            [],
        )
        entries = (entry_from_row(row) for row in rows)
        return {(e.namespace, e.pointer or ""): e for e in entries}

    def soak_entry(self, namespace: str, follower: str, release_id: str) -> LedgerEntry | None:
        """The newest ``release-soaked`` entry saying ``release_id`` soaked for ``follower`` (on the
        pointer it follows), since the follower's last retirement; None when it never did."""
        return self._one_ledger_entry(
            "seq = (SELECT MAX(seq) FROM ledger_entries WHERE namespace = ? AND pointer = ? AND kind = ? "
            "AND release_id = ? AND seq > COALESCE((SELECT MAX(seq) FROM ledger_entries "
            "WHERE namespace = ? AND pointer = ? AND kind = ?), 0))",
            [
                namespace,
                follower,
                ledger.LedgerKind.RELEASE_SOAKED.value,
                release_id,
                namespace,
                follower,
                ledger.LedgerKind.POINTER_RETIRED.value,
            ],
        )

    def automation_entries(self, namespace: str, pointer: str) -> list[LedgerEntry]:
        """What automatic rollbacks and their cooldown and quarantine rest on, oldest first, since
        the pointer's last retirement: its ``verification-failed`` entries and the promotions that
        moved it after the first of them (a person's promotion lifts a quarantine)."""
        retired = "COALESCE((SELECT MAX(seq) FROM ledger_entries WHERE namespace = ? AND pointer = ? AND kind = ?), 0)"
        here = [namespace, pointer, ledger.LedgerKind.POINTER_RETIRED.value]
        failed = ledger.LedgerKind.VERIFICATION_FAILED.value
        rows = self._ledger_rows(
            f"namespace = ? AND pointer = ? AND seq > {retired} AND (kind = ? OR (kind = ? "
            "AND pointer_changed = 1 AND seq > (SELECT MIN(seq) FROM ledger_entries "
            f"WHERE namespace = ? AND pointer = ? AND kind = ? AND seq > {retired})))",
            [
                namespace,
                pointer,
                *here,
                failed,
                ledger.LedgerKind.PROMOTE.value,
                namespace,
                pointer,
                failed,
                *here,
            ],
        )
        return [entry_from_row(row) for row in rows]

    def pointer_decisions_after(self, namespace: str, pointer: str, seq: int) -> list[LedgerEntry]:
        """The promote and rollback decisions (passed or blocked) on ``pointer`` after ``seq``,
        oldest first: what became of the requests a pipeline created after a soak."""
        rows = self._ledger_rows(
            "namespace = ? AND pointer = ? AND seq > ? AND kind IN (?, ?)",
            [namespace, pointer, seq, ledger.LedgerKind.PROMOTE.value, ledger.LedgerKind.ROLLBACK.value],
        )
        return [entry_from_row(row) for row in rows]

    def approvals_for_request(self, namespace: str, pointer: str, request_uid: str) -> list[LedgerEntry]:
        """The ledgered approvals of one request, oldest first (approvals per pointer are few, so the
        request filter runs here rather than on the JSON column)."""
        rows = self._ledger_rows(
            "namespace = ? AND pointer = ? AND kind = ?",
            [namespace, pointer, ledger.LedgerKind.APPROVAL.value],
        )
        entries = (entry_from_row(row) for row in rows)
        return [e for e in entries if (e.details or {}).get("request_uid") == request_uid]

    def list_ledger(
        self,
        *,
        agent_id: str | None = None,
        environment: str | None = None,
        namespace: str | None = None,
        pointer: str | None = None,
        kind: ledger.LedgerKind | None = None,
        kinds: Sequence[ledger.LedgerKind] | None = None,
        limit: int = 50,
    ) -> list[LedgerEntry]:
        """Entries matching every given filter (``kinds``: any of them), newest first."""
        where, params = where_clause(
            {
                "agent_id": agent_id,
                "environment": environment,
                "namespace": namespace,
                "pointer": pointer,
                "kind": kind.value if kind else None,
            }
        )
        if kinds:
            where += (" AND " if where else " WHERE ") + f"kind IN ({', '.join('?' for _ in kinds)})"
            params.extend(k.value for k in kinds)
        with self._transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries{where} ORDER BY seq DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [entry_from_row(row) for row in rows]

    def ledger_entries_by_seq(self, seqs: Sequence[int]) -> dict[int, LedgerEntry]:
        """The entries with these ``seq``s (primary-key lookups in one query), by seq."""
        wanted = sorted(set(seqs))
        if not wanted:
            return {}
        rows = self._ledger_rows(f"seq IN ({', '.join('?' for _ in wanted)})", list(wanted))
        return {entry.seq: entry for entry in map(entry_from_row, rows)}

    def ledger_entries_after(self, seq: int, *, limit: int) -> list[LedgerEntry]:
        """Up to ``limit`` entries after ``seq``, oldest first (a chain read piece by piece)."""
        with self._transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries WHERE seq > ? ORDER BY seq LIMIT ?",
                [seq, limit],
            ).fetchall()
        return [entry_from_row(row) for row in rows]

    def count_ledger(self) -> int:
        with self._transaction(write=False) as tx:
            return int(tx.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0])

    def verify_ledger(self, *, page_size: int = 1000) -> ChainVerification:
        """Load the ledger in ``seq`` order and check contiguity and the hash chain."""
        entries: list[LedgerEntry] = []
        for row in self._all_ledger_rows(page_size):
            try:
                entries.append(entry_from_row(row))
            except (ValidationError, ValueError, TypeError) as exc:
                verdict = ledger.verify(entries)
                if not verdict.ok:
                    return verdict
                bad_seq = int(row[0])
                if bad_seq != len(entries) + 1:  # a gap before the unreadable row comes first
                    return ledger.verify([*entries, placeholder_entry(bad_seq)])
                return ChainVerification(
                    False, len(entries) + 1, bad_seq, f"seq {bad_seq}: row cannot be read ({exc})"
                )
        return ledger.verify(entries)

    def _all_ledger_rows(self, page_size: int) -> list[Any]:
        """Every ledger row in ``seq`` order, from one snapshot. Rows are parsed after it ends: a
        read transaction held for that long keeps SQLite's WAL from being reset."""
        rows: list[Any] = []
        last_seq = 0
        with self._transaction(write=False, snapshot=True) as tx:
            while True:
                page = tx.execute(
                    f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries WHERE seq > ? ORDER BY seq LIMIT ?",
                    [last_seq, page_size],
                ).fetchall()
                rows.extend(page)
                if len(page) < page_size:
                    return rows
                last_seq = int(page[-1][0])

    def _one_ledger_entry(self, condition: str, params: list[Any]) -> LedgerEntry | None:
        rows = self._ledger_rows(condition, params)
        return entry_from_row(rows[0]) if rows else None

    def _ledger_rows(self, condition: str, params: list[Any]) -> list[Any]:
        with self._transaction(write=False) as tx:
            return tx.execute(
                f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries WHERE {condition} ORDER BY seq",
                params,
            ).fetchall()
