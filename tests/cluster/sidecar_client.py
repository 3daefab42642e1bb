"""Helpers for the sidecar tests: HTTP clients with real bearer tokens, the quickstart fixtures,
and RBAC objects created as an administrator would."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import httpx

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import SidecarProcess

from .kube import apply, pointer, policy, pricing_table, release, run_events

AGENT: Final = "agent-support"
ENV: Final = "local"
FIRST_PROMOTION: Final = "first promotion: no promoted baseline for agent/environment"
COST_BREACH: Final = "candidate cost_per_run_usd 5.000000 exceeds max 4.000000"
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


def quickstart(cp: ControlPlane, namespace: str, *, max_cost: float = 4.0) -> None:
    """The reference quickstart fixtures ("Q") as custom resources."""
    apply(
        cp,
        namespace,
        pricing_table("baseline-pricing", "openai", "baseline-pricing", "gpt-4.1-mini", (1.0, 2.0)),
        pricing_table("candidate-pricing", "openai", "candidate-pricing", "gpt-4.1-mini", (3.0, 4.0)),
        release("support-base", AGENT, "openai", "baseline-pricing", "gpt-4.1-mini"),
        release("support-cand", AGENT, "openai", "candidate-pricing", "gpt-4.1-mini"),
        policy(
            "gate",
            maxCostPerRunUsd=max_cost,
            maxLatencyMs=3000,
            maxErrorRate=0.05,
            minCandidateRuns=1,
            minBaselineRuns=1,
            minLowRuns=1,
            requireHighDiffConfidence=False,
        ),
        pointer("support-local", AGENT, ENV, "gate"),
    )


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
