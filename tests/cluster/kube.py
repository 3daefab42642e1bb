"""Helpers for cluster-tier tests: apply manifests as a user does, wait for decisions, seed evidence."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import yaml

from flightdeck_operator.engine.models import RunEvent
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.store import Store, open_store
from flightdeck_operator.store.forensics import RunFilters

T = TypeVar("T")


def apply(cp: ControlPlane, namespace: str, *documents: Mapping[str, Any]) -> str:
    """``kubectl apply -f -`` of the documents; returns kubectl's output."""
    text = yaml.safe_dump_all([dict(d) for d in documents])
    return cp.kubectl("apply", "-n", namespace, "-f", "-", input=text).stdout


def get(cp: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cp.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout)
    return result


def wait_for(probe: Callable[[], T | None], *, timeout: float = 60, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def wait_decided(cp: ControlPlane, namespace: str, name: str, timeout: int = 60) -> dict[str, Any]:
    """``kubectl wait --for=condition=Decided``, which must return on any decision."""
    cp.kubectl(
        "wait",
        "-n",
        namespace,
        f"promotionrequest/{name}",
        "--for=condition=Decided",
        f"--timeout={timeout}s",
        timeout=timeout + 10,
    )
    return get(cp, namespace, "promotionrequest", name)


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    raise AssertionError(f"no {type_} condition in {json.dumps(obj.get('status'), indent=1)}")


def pricing_table(
    name: str, provider: str, version: str, model: str, rates: tuple[float, float]
) -> dict[str, Any]:
    return {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "PricingTable",
        "metadata": {"name": name},
        "spec": {
            "provider": provider,
            "pricingVersion": version,
            "entries": [{"model": model, "inputUsdPer1kTokens": rates[0], "outputUsdPer1kTokens": rates[1]}],
        },
    }


def release(name: str, agent: str, provider: str, version: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "AgentRelease",
        "metadata": {"name": name},
        "spec": {
            "agentId": agent,
            "version": f"1.0.{abs(hash(name)) % 1000}",
            "runtime": {"provider": provider, "model": model},
            "pricingReference": {"provider": provider, "pricingVersion": version},
            "checksum": "0" * 64,
        },
    }


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "PromotionPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def pointer(name: str, agent: str, environment: str, policy_name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"agentId": agent, "environment": environment}
    if policy_name:
        spec["policyRef"] = {"name": policy_name}
    return {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "ReleasePointer",
        "metadata": {"name": name},
        "spec": spec,
    }


def request(
    name: str, pointer_name: str, release_name: str | None, action: str = "promote", **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"pointer": pointer_name, "action": action, "reason": f"test {action}", **extra}
    if release_name:
        spec["release"] = release_name
    return {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "PromotionRequest",
        "metadata": {"name": name},
        "spec": spec,
    }


def run_events(
    release_id: str,
    agent: str,
    environment: str,
    count: int,
    *,
    model: str = "gpt-4.1-mini",
    provider: str = "openai",
    input_tokens: int = 1000,
    output_tokens: int = 500,
    latency_ms: int | None = 1000,
    failures: int = 0,
    age: dt.timedelta = dt.timedelta(hours=1),
) -> list[dict[str, Any]]:
    at = (dt.datetime.now(dt.UTC) - age).isoformat()
    return [
        {
            "timestamp": at,
            "agent_id": agent,
            "release_id": release_id,
            "run_id": f"run-{uuid.uuid4().hex}",
            "tenant_id": "t1",
            "task_id": "support",
            "environment": environment,
            "metrics": {"latency_ms": latency_ms, "success": i >= failures},
            "usage": {
                "model": {
                    "provider": provider,
                    "model": model,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                }
            },
        }
        for i in range(count)
    ]


def ingest(store: str, events: Iterable[Mapping[str, Any]]) -> int:
    with open_store(store) as opened:
        return opened.ingest(list(events))


# -- the reference quickstart ("Q"), shared by the operator and sidecar tests -------------------------

AGENT = "agent-support"
ENV = "local"
FIRST_PROMOTION = "first promotion: no promoted baseline for agent/environment"
COST_BREACH = "candidate cost_per_run_usd 5.000000 exceeds max 4.000000"


def quickstart(cp: ControlPlane, namespace: str, *, max_cost: float = 4.0) -> None:
    """The reference quickstart fixtures ("Q"), as custom resources."""
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


# -- the ledger and doctor, as an operator's user sees them ------------------------------------------


def ledger_size(store: str) -> int:
    with open_store(store) as opened:
        return opened.count_ledger()


def doctor(cp: ControlPlane, store: str, namespace: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "flightdeck_operator.cli.main",
            "doctor",
            "--store",
            store,
            "--kubeconfig",
            str(cp.kubeconfig()),
            "--namespace",
            namespace,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def stored_events(
    store: Store, release_id: str, since: dt.datetime, until: dt.datetime, *, environment: str = ENV
) -> tuple[RunEvent, ...]:
    """A release's stored run events in ``[since, until)``, newest first (the forensics read)."""
    page = store.run_page(RunFilters(release_id, environment, since, until), limit=500)
    return tuple(RunEvent.model_validate_json(text) for text in page.events_json)
