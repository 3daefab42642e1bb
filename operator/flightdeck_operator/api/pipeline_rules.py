"""Which ``spec.follows`` can work: one rule for the admission webhook and the operator (pure).

A pointer may follow another pointer of the namespace that governs the **same agent**, never
itself, and never so that pointers follow each other in a **cycle** (each would wait for the other
to soak first). The webhook refuses such a spec at ``kubectl apply``; the operator shows
``pipeline.state: Invalid`` for one that exists anyway (created while the webhook was off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Node:
    """One pointer as the rule sees it: its agent and the pointer it follows (None: none)."""

    agent_id: str
    follows: str | None


def follow_problem(name: str, agent_id: str, upstream: str, pointers: Mapping[str, Node]) -> str | None:
    """Why pointer ``name`` (of ``agent_id``) cannot follow ``upstream``, given the namespace's other
    ``pointers`` (by name; ``name`` itself is taken from the arguments, whatever ``pointers`` holds).
    None when it can; also None when ``upstream`` does not exist (yet: objects applied together)."""
    if upstream == name:
        return "a ReleasePointer cannot follow itself"
    found = pointers.get(upstream)
    if found is None:
        return None
    if found.agent_id != agent_id:
        return (
            f'ReleasePointer "{upstream}" governs agent "{found.agent_id}", but "{name}" governs agent '
            f'"{agent_id}": a pointer can only follow a pointer of the same agent'
        )
    path = [name, upstream]
    current: str | None = found.follows
    while current is not None:
        path.append(current)
        if current == name:
            return f'following "{upstream}" would make a cycle: {" -> ".join(path)}'
        if current in path[:-1]:
            return None  # a cycle further up that does not involve this pointer: reported there
        node = pointers.get(current)
        current = None if node is None else node.follows
    return None


def followers(upstream: str, pointers: Mapping[str, Node]) -> list[str]:
    """The pointers that follow ``upstream`` directly, by name."""
    return sorted(name for name, node in pointers.items() if node.follows == upstream)
