"""Whether a ReleasePointer can govern its (agentId, environment): pure, from a namespace snapshot.

At most one pointer governs an agent in an environment. The admission webhook refuses a second
one; pointers that exist anyway (created while the webhook was off, or two at the same instant)
are ranked (``api.pointer_rules``: oldest first), and every pointer after the first is a
duplicate: ``Ready=False, Stalled=True`` with reason ``DuplicatePointer``, and requests on it fail
with that reason, nothing ledgered. When the first one is deleted, the next in order governs.
"""

from __future__ import annotations

from dataclasses import dataclass

from flightdeck_operator.api.conditions import Reason
from flightdeck_operator.api.pointer_rules import first_pointer
from flightdeck_operator.controller.view import NamespaceView


@dataclass(frozen=True, slots=True)
class PointerProblem:
    """Why a pointer cannot govern now; ``stalled``: only a human change helps (kstatus Failed)."""

    reason: Reason
    message: str

    @property
    def stalled(self) -> bool:
        return self.reason is Reason.DUPLICATE_POINTER


def governing_pointer(view: NamespaceView, agent_id: str, environment: str) -> str | None:
    """The first pointer of (agent, environment) in the namespace, or None when there is none."""
    return first_pointer(
        (view.pointer_created.get(name, ""), name)
        for name, spec in view.pointers.items()
        if spec.agent_id == agent_id and spec.environment == environment
    )


def duplicate_message(name: str, governing: str, agent_id: str, environment: str) -> str:
    return (
        f'ReleasePointer "{governing}" already governs agent "{agent_id}" in environment "{environment}"; '
        f'"{name}" is a duplicate and cannot be promoted or rolled back. Delete it, or point your '
        f'requests at "{governing}"'
    )


def second_pointer_message(governing: str, agent_id: str, environment: str) -> str:
    """The admission webhook's refusal of a second pointer for (agent, environment)."""
    return (
        f'ReleasePointer "{governing}" already governs agent "{agent_id}" in environment "{environment}" '
        "in this namespace, and at most one pointer may: point your requests at it, or delete it first"
    )


def pointer_problem(view: NamespaceView, name: str) -> PointerProblem | None:
    """What keeps the pointer ``name`` from governing, or None when nothing does."""
    spec = view.pointers.get(name)
    if spec is None:
        return None
    governing = governing_pointer(view, spec.agent_id, spec.environment)
    if governing is not None and governing != name:
        return PointerProblem(
            Reason.DUPLICATE_POINTER, duplicate_message(name, governing, spec.agent_id, spec.environment)
        )
    if spec.policy_ref is not None and spec.policy_ref.name not in view.policies:
        return PointerProblem(
            Reason.POLICY_NOT_FOUND,
            f'PromotionPolicy "{spec.policy_ref.name}" (policyRef) not found in namespace "{view.namespace}"',
        )
    return None
