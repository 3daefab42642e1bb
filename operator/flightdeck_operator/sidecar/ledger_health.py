"""The ledger's health for the dashboard, verified piece by piece as the chain grows.

Verifying 100,000 entries takes seconds; the Overview must answer in milliseconds. So the chain is
verified once, then only the entries appended since; the result (entries, head hash, the first bad
seq) is shown as of the last check. ``doctor`` re-verifies the whole chain from the first entry,
which is what catches an edit to an entry the dashboard had already verified.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flightdeck_operator.engine.ledger import GENESIS_HASH, verify_after
from flightdeck_operator.store import Store

PAGE = 5000  # entries read per query while catching up


@dataclass(frozen=True, slots=True)
class LedgerHealth:
    ok: bool
    entries: int
    head_hash: str | None
    problem: str | None = None


class LedgerVerifier:
    """Thread-safe; ``check`` catches up with the entries appended since the last call."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._seq = 0
        self._hash = GENESIS_HASH
        self._problem: str | None = None

    def check(self) -> LedgerHealth:
        with self._lock:
            while self._problem is None:
                entries = self._store.ledger_entries_after(self._seq, limit=PAGE)
                verdict = verify_after(entries, seq=self._seq, prev_hash=self._hash)
                if not verdict.ok:
                    self._problem = str(verdict)
                    break
                if entries:
                    self._seq, self._hash = entries[-1].seq, entries[-1].hash
                if len(entries) < PAGE:
                    break
            return LedgerHealth(
                ok=self._problem is None,
                entries=self._seq,
                head_hash=None if self._seq == 0 else self._hash,
                problem=self._problem,
            )
