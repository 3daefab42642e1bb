"""Whether a ReleasePointer can govern its (agentId, environment): pure, from a namespace snapshot.

At most one pointer governs an agent in an environment. The admission webhook refuses a second
one; pointers that exist anyway (created while the webhook was off, or two at the same instant)
are ranked (``api.pointer_rules``: oldest first), and every pointer after the first is a
duplicate: ``Ready=False, Stalled=True`` with reason ``DuplicatePointer``, and requests on it fail
with that reason, nothing ledgered. When the first one is deleted, the next in order governs.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass

from flightdeck_operator.api.conditions import Reason
from flightdeck_operator.api.pointer_rules import first_pointer
from flightdeck_operator.controller.view import NamespaceView, PointerTarget


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
    return view.governing.get((agent_id, environment))


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
    policy = spec.policy_ref.name if spec.policy_ref is not None else None
    return _problem(
        name,
        spec.agent_id,
        spec.environment,
        governing=governing_pointer(view, spec.agent_id, spec.environment),
        missing_policy=policy if policy is not None and policy not in view.policies else None,
        namespace=view.namespace,
    )


def problem_among(
    pointer: PointerTarget, siblings: Iterable[PointerTarget], policies: Container[str], namespace: str
) -> PointerProblem | None:
    """:func:`pointer_problem` from the pointers of one (agentId, environment) only (``siblings``,
    ``pointer`` among them) and the namespace's policy names: one watch event reads no more."""
    return _problem(
        pointer.name,
        pointer.agent_id,
        pointer.environment,
        governing=first_pointer((s.created, s.name) for s in siblings),
        missing_policy=pointer.policy
        if pointer.policy is not None and pointer.policy not in policies
        else None,
        namespace=namespace,
    )


def _problem(
    name: str,
    agent_id: str,
    environment: str,
    *,
    governing: str | None,
    missing_policy: str | None,
    namespace: str,
) -> PointerProblem | None:
    if governing is not None and governing != name:
        return PointerProblem(
            Reason.DUPLICATE_POINTER, duplicate_message(name, governing, agent_id, environment)
        )
    if missing_policy is not None:
        return PointerProblem(
            Reason.POLICY_NOT_FOUND,
            f'PromotionPolicy "{missing_policy}" (policyRef) not found in namespace "{namespace}"',
        )
    return None
