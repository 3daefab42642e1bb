"""The ledger as the fence of leader election.

A Lease elects one operator, but a Lease is not a fence: a leader that paused (GC, SIGSTOP, a
network partition) past its lease may wake up and write while another leads. So every append
checks, in its own transaction and under the ledger's lock, that the writer's epoch is the one
claimed last in ``leader_fence``; a newer leader claims a higher epoch under the same lock, after
which no append of an older epoch can commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from flightdeck_operator.engine.models import utc_micros
from flightdeck_operator.store.base import StoreBase, StoreError, Transaction


class Fenced(StoreError):
    """Another operator claimed a newer epoch: this one must not write (and should exit)."""

    def __init__(self, message: str, *, stored_epoch: int, stored_holder: str) -> None:
        super().__init__(message)
        self.stored_epoch = stored_epoch
        self.stored_holder = stored_holder


class PointerMoved(StoreError):
    """The pointer's history moved on since the decision was computed: re-evaluate it."""


@dataclass(frozen=True, slots=True)
class WriterFence:
    """Who may append: ``holder`` with ``epoch`` under the fence row ``name`` (the Lease's
    namespace/name). ``refused`` is called once an append is refused, before :class:`Fenced` is
    raised (the operator exits there and then)."""

    name: str
    epoch: int
    holder: str
    refused: Callable[[Fenced], None] | None = None


class FenceQueries(StoreBase):
    """Claiming the fence and checking it inside an append's transaction."""

    writer_fence: WriterFence | None = None

    def claim_fence(self, fence: WriterFence) -> None:
        """Make ``fence`` the current writer: its epoch must be higher than the stored one (or the
        same epoch of the same holder: a repeated claim). Raises :class:`Fenced` otherwise. Takes
        the ledger's lock, so an append of the previous epoch that is in flight commits before the
        claim or not at all; then every append of this store checks it."""
        with self._transaction(write=True) as tx:
            self._lock_ledger(tx)
            row = tx.execute("SELECT epoch, holder FROM leader_fence WHERE name = ?", [fence.name]).fetchone()
            now_us = utc_micros(dt.datetime.now(dt.UTC))
            if row is None:
                tx.execute(
                    "INSERT INTO leader_fence (name, epoch, holder, claimed_at_us) VALUES (?, ?, ?, ?)",
                    [fence.name, fence.epoch, fence.holder, now_us],
                )
            elif int(row[0]) < fence.epoch or (int(row[0]), str(row[1])) == (fence.epoch, fence.holder):
                tx.execute(
                    "UPDATE leader_fence SET epoch = ?, holder = ?, claimed_at_us = ? WHERE name = ?",
                    [fence.epoch, fence.holder, now_us, fence.name],
                )
            else:
                raise Fenced(
                    f"fence {fence.name}: epoch {row[0]} of {row[1]} is not older than {fence.epoch}",
                    stored_epoch=int(row[0]),
                    stored_holder=str(row[1]),
                )
        self.writer_fence = fence

    def fence_epoch(self, name: str) -> tuple[int, str] | None:
        """(epoch, holder) of the fence row ``name``, None when nobody claimed it yet."""
        with self._transaction(write=False) as tx:
            row = tx.execute("SELECT epoch, holder FROM leader_fence WHERE name = ?", [name]).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def _check_fence(self, tx: Transaction) -> None:
        """Inside an append, under the ledger's lock: refuse unless our claim is still the last."""
        fence = self.writer_fence
        if fence is None:
            return
        row = tx.execute("SELECT epoch, holder FROM leader_fence WHERE name = ?", [fence.name]).fetchone()
        stored = (-1, "") if row is None else (int(row[0]), str(row[1]))
        if stored != (fence.epoch, fence.holder):
            raise Fenced(
                f"ledger append refused: fence {fence.name} is held by {stored[1] or 'nobody'} at "
                f"epoch {stored[0]}, this writer ({fence.holder}) has epoch {fence.epoch}",
                stored_epoch=stored[0],
                stored_holder=stored[1],
            )
