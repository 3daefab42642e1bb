"""What a failover must leave behind, checked from the ledger and the API server.

- the hash chain verifies;
- every request that was created is ledgered exactly once (none lost, none twice);
- epochs never go back along the ledger: no entry of a deposed leader follows one of its successor
  (the fence);
- each pointer's moves form one line: per-pointer sequence 1, 2, 3 ... and every move starts from
  the release the previous one left (no pointer moved twice from the same head);
- every pointer's status shows its last move (pointer = ledger).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

DECISIONS = (LedgerKind.PROMOTE, LedgerKind.ROLLBACK)


@dataclass
class HistoryReport:
    entries: int = 0
    decisions: int = 0
    chain: str = ""
    chain_ok: bool = False
    lost: list[str] = field(default_factory=list)  # created, never ledgered
    duplicated: list[str] = field(default_factory=list)  # ledgered more than once
    epoch_regressions: list[int] = field(default_factory=list)  # seqs whose epoch is below an earlier one
    broken_lines: list[str] = field(default_factory=list)  # pointers whose moves do not form one line
    pointer_mismatches: list[str] = field(default_factory=list)  # status differs from the ledger
    epochs: list[int] = field(default_factory=list)  # distinct epochs, in ledger order

    @property
    def ok(self) -> bool:
        return self.chain_ok and not (
            self.lost
            or self.duplicated
            or self.epoch_regressions
            or self.broken_lines
            or self.pointer_mismatches
        )

    def summary(self) -> str:
        return (
            f"{self.entries} entries, {self.decisions} decisions, chain {'ok' if self.chain_ok else self.chain}, "
            f"epochs {self.epochs}, lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
            f"epoch regressions {len(self.epoch_regressions)}, broken pointer lines {len(self.broken_lines)}, "
            f"pointer mismatches {len(self.pointer_mismatches)}"
        )


def check_history(
    store: Store, gateway: KubeGateway, namespace: str, created: Iterable[str]
) -> HistoryReport:
    report = HistoryReport()
    verdict = store.verify_ledger()
    report.chain, report.chain_ok = str(verdict), verdict.ok
    entries = sorted(store.list_ledger(namespace=namespace, limit=10**9), key=lambda e: e.seq)
    report.entries = len(entries)
    decisions = [e for e in entries if e.kind in DECISIONS]
    report.decisions = len(decisions)
    by_name: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in decisions:
        by_name[str((entry.details or {}).get("request"))].append(entry)
    report.lost = sorted(name for name in created if name not in by_name)
    report.duplicated = sorted(name for name, found in by_name.items() if len(found) > 1)
    highest = -1
    for entry in entries:
        if entry.epoch is None:
            continue
        if entry.epoch < highest:
            report.epoch_regressions.append(entry.seq)
        if entry.epoch > highest:
            report.epochs.append(entry.epoch)
        highest = max(highest, entry.epoch)
    moves: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in decisions:
        if entry.pointer_changed and entry.pointer:
            moves[entry.pointer].append(entry)
    for pointer, line in moves.items():
        sequences = [e.pointer_seq for e in line if e.pointer_seq is not None]
        if sequences and sequences != list(range(sequences[0], sequences[0] + len(sequences))):
            report.broken_lines.append(f"{pointer}: pointer_seq {sequences}")
        for before, after in itertools.pairwise(line):
            if after.baseline_release_id != before.release_id:
                report.broken_lines.append(
                    f"{pointer}: seq {after.seq} moved from {after.baseline_release_id}, "
                    f"but seq {before.seq} had left {before.release_id}"
                )
    for body in gateway.list_objects("releasepointers", namespace):
        name = body["metadata"]["name"]
        status = body.get("status") or {}
        last = moves[name][-1] if moves.get(name) else None
        shown = (status.get("releaseId"), status.get("ledgerSeq"))
        expected = (last.release_id, last.seq) if last is not None else (None, None)
        if shown != expected:
            report.pointer_mismatches.append(f"{name}: shows {shown}, ledger {expected}")
    return report
