"""Requests as the controller's loop sees them: undecided ones from the index, and the answer of one
that keeps waiting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flightdeck_operator.api.conditions import Phase
from flightdeck_operator.engine.models import PromotionAction

WAITING_PHASES = frozenset({Phase.AWAITING_APPROVAL.value, Phase.AWAITING_EVIDENCE.value})


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """An undecided PromotionRequest as the index holds it."""

    name: str
    uid: str
    created: str  # creationTimestamp (RFC 3339, sorts as text)
    generation: int | None
    spec: Mapping[str, Any]
    conditions: Sequence[Mapping[str, Any]] = ()
    # What its status shows now (phase, message, approval, evidenceWait), to write only changes.
    shown: Mapping[str, Any] = field(default_factory=dict)
    # The automation label and trigger annotation, on the requests the operator created itself.
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def order(self) -> tuple[str, bool, str]:
        """DESIGN 2: oldest first by creationTimestamp, then name. creationTimestamp has whole
        seconds: within one second, a request already waiting (seen before) goes first, so a newer
        one can never overtake it (concurrencyPolicy Forbid would fail the wrong one)."""
        return (self.created, self.phase not in WAITING_PHASES, self.name)

    @property
    def dry_run(self) -> bool:
        return bool(self.spec.get("dryRun"))

    @property
    def rollback(self) -> bool:
        return self.spec.get("action") == PromotionAction.ROLLBACK.value

    @property
    def phase(self) -> str | None:
        value = self.shown.get("phase")
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Waiting:
    """The request stays undecided (awaiting approval or evidence); look again in ``recheck_in`` s."""

    recheck_in: float
