"""Helpers for the sidecar tests: HTTP clients with real bearer tokens, the quickstart fixtures,
and RBAC objects created as an administrator would."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import httpx

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import SidecarProcess

from .kube import AGENT, ENV, run_events

# The reference's ActionOutcome keys, in its order (routes/actions.py::_action_body).
OUTCOME_KEYS: Final = [
    "action_id",
    "action",
    "release_id",
    "agent_id",
    "environment",
    "baseline_release_id",
    "promoted_pointer_changed",
    "policy",
]
POLICY_KEYS: Final = ["passed", "reasons", "evaluated_at"]
HTTP_TIMEOUT_S: Final = 60.0


def http(sidecar: SidecarProcess, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=sidecar.url, headers=headers, timeout=HTTP_TIMEOUT_S)


def as_user(cp: ControlPlane, sidecar: SidecarProcess, user: str) -> httpx.Client:
    """A client that authenticates with ``user``'s real API-server token."""
    return http(sidecar, cp.identity(user).token)


def quickstart_events() -> list[dict[str, Any]]:
    """One event per release: 1000/500 tokens, latency 1000 ms (baseline) and 1200 ms (candidate)."""
    return [
        *run_events("support-base", AGENT, ENV, 1, latency_ms=1000),
        *run_events("support-cand", AGENT, ENV, 1, latency_ms=1200),
    ]


def action_body(release_id: str, reason: str = "ship it", **extra: Any) -> dict[str, Any]:
    return {"release_id": release_id, "environment": ENV, "window": "7d", "reason": reason, **extra}


def role(name: str, *rules: tuple[str, str]) -> dict[str, Any]:
    """A Role granting (verb, resource) pairs in the flightdeck.dev group."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": ["flightdeck.dev"], "resources": [resource], "verbs": [verb]}
            for verb, resource in rules
        ],
    }


def role_binding(
    name: str, role_name: str, *, user: str | None = None, group: str | None = None
) -> dict[str, Any]:
    subjects = []
    if user:
        subjects.append({"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"})
    if group:
        subjects.append({"kind": "Group", "name": group, "apiGroup": "rbac.authorization.k8s.io"})
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": subjects,
    }


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
