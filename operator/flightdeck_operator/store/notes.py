"""Short-lived notes between replicas: who asked the API server to delete a ReleasePointer, as
whichever replica's admission webhook saw it, until the leader ledgers the retirement."""

from __future__ import annotations

import datetime as dt

from flightdeck_operator.engine.models import utc_micros
from flightdeck_operator.store.base import StoreBase

# A note whose delete never happened (refused, or a dry run) is dropped after a day.
NOTE_LIFETIME = dt.timedelta(days=1)


class NoteQueries(StoreBase):
    def note_pointer_deletion(self, namespace: str, name: str, uid: str, username: str) -> None:
        now = dt.datetime.now(dt.UTC)
        with self._transaction(write=True) as tx:
            tx.execute(
                "DELETE FROM pointer_deletion_notes WHERE noted_at_us < ?",
                [utc_micros(now - NOTE_LIFETIME)],
            )
            tx.execute(
                "DELETE FROM pointer_deletion_notes WHERE namespace = ? AND name = ? AND uid = ?",
                [namespace, name, uid],
            )
            tx.execute(
                "INSERT INTO pointer_deletion_notes (namespace, name, uid, username, noted_at_us) "
                "VALUES (?, ?, ?, ?, ?)",
                [namespace, name, uid, username, utc_micros(now)],
            )

    def pop_pointer_deletion(self, namespace: str, name: str, uid: str) -> str | None:
        """Who deleted the pointer (None: no replica's webhook saw it); the note is consumed."""
        with self._transaction(write=True) as tx:
            row = tx.execute(
                "SELECT username FROM pointer_deletion_notes WHERE namespace = ? AND name = ? AND uid = ?",
                [namespace, name, uid],
            ).fetchone()
            if row is None:
                return None
            tx.execute(
                "DELETE FROM pointer_deletion_notes WHERE namespace = ? AND name = ? AND uid = ?",
                [namespace, name, uid],
            )
        return str(row[0])
