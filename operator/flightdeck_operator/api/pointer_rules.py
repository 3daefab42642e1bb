"""Which ReleasePointer governs an (agentId, environment): one rule for the operator, the webhook
and the HTTP API, so they can never disagree.

At most one pointer governs an agent in an environment. When several exist anyway, the first
governs: the oldest ``creationTimestamp``, then the smallest name (timestamps have whole seconds).
Both are set by the API server and never change, so every replica and every restart agrees, and a
duplicate can never overtake the pointer it duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable


def first_pointer(candidates: Iterable[tuple[str, str]]) -> str | None:
    """The governing pointer's name among (creationTimestamp, name) pairs; None when there are none."""
    ranked = sorted(candidates)
    return ranked[0][1] if ranked else None
