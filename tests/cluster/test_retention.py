"""Retention on a real API server: decided requests are deleted once due (the newest per pointer
and annotated ones stay), a summary Event is recorded, the ledger keeps every decision; a request
re-created with the same name and spec is Replayed (never decided again); a retried Idempotency-Key
gets the same answer after its request was deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess
from flightdeck_operator.store import open_store

from .conftest import TEST_TIMINGS, StartSidecar
from .kube import (
    apply,
    get,
    pointer,
    policy,
    pricing_table,
    release,
    request,
    wait_decided,
    wait_for,
)
from .sidecar_client import action_body, as_user, quickstart_events

# Due at once, checked every second; the newest request of each pointer stays.
RETENTION = {
    "FLIGHTDECK_REQUEST_TTL_SECONDS": "0",
    "FLIGHTDECK_MIN_DECIDED_AGE_SECONDS": "0",
    "FLIGHTDECK_RETAIN_PER_POINTER": "1",
    "FLIGHTDECK_GC_INTERVAL_SECONDS": "1",
}


@pytest.fixture
def pruning_operator(
    control_plane: ControlPlane, crds: Path, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        kubeconfig=control_plane.kubeconfig("admin"),
        store=str(tmp_path / "flightdeck.db"),
        log_path=tmp_path / "operator.log",
        namespaces=(namespace,),
        extra_env={**TEST_TIMINGS, **RETENTION},
        webhook_delegates=("admin",),
    )
    with process:
        yield process


def exists(control_plane: ControlPlane, namespace: str, name: str) -> bool:
    listed = json.loads(
        control_plane.kubectl("get", "-n", namespace, "promotionrequests", "-o", "json").stdout
    )
    return any(item["metadata"]["name"] == name for item in listed["items"])


def decided_watching(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create and watch until Decided: retention may delete it right after, the watch still saw it."""
    gateway = KubeGateway(api_client)
    created = gateway.create("promotionrequests", namespace, body)
    decided = gateway.wait_for(
        "promotionrequests",
        namespace,
        body["metadata"]["name"],
        lambda obj: any(c["type"] == "Decided" for c in (obj.get("status") or {}).get("conditions") or []),
        timeout=60,
        resource_version=created["metadata"]["resourceVersion"],
    )
    assert decided is not None
    return decided


def test_retention_deletes_due_requests_and_a_recreated_one_is_replayed(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    pruning_operator: OperatorProcess,
) -> None:
    apply(
        control_plane,
        namespace,
        pricing_table("prices", "openai", "v1", "gpt-4.1-mini", (1.0, 2.0)),
        policy("open", minCandidateRuns=0, minBaselineRuns=0, minLowRuns=0),
        pointer("ptr", "agent", "prod", "open"),
        *[release(f"rel-{i}", "agent", "openai", "v1", "gpt-4.1-mini") for i in range(1, 4)],
    )
    kept = request("kept", "ptr", "rel-1")
    kept["metadata"]["annotations"] = {"flightdeck.dev/retain": "true"}
    apply(control_plane, namespace, kept)
    wait_decided(control_plane, namespace, "kept")
    pruned = decided_watching(api_client, namespace, request("pruned", "ptr", "rel-2"))
    assert pruned["status"]["phase"] == "Promoted"
    decided_watching(api_client, namespace, request("newest", "ptr", "rel-3"))

    wait_for(lambda: not exists(control_plane, namespace, "pruned"), what="retention to delete 'pruned'")
    assert exists(control_plane, namespace, "kept")  # annotated flightdeck.dev/retain
    assert exists(control_plane, namespace, "newest")  # the newest of its pointer
    events = json.loads(
        control_plane.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=open", "-o", "json"
        ).stdout
    )["items"]
    assert any(e["reason"] == "Pruned" and "stay in the ledger" in e["message"] for e in events)

    with open_store(pruning_operator.store) as store:
        before = store.count_ledger()
    # GitOps re-applies the deleted request: same name, same spec (its own TTL is not part of
    # what it asks, and keeps this copy long enough to look at).
    again = request("pruned", "ptr", "rel-2", ttlSecondsAfterDecided=3600)
    replayed = decided_watching(api_client, namespace, again)
    assert replayed["metadata"]["uid"] != pruned["metadata"]["uid"]
    status = replayed["status"]
    assert status["phase"] == "Promoted"
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Decided"] == "Replayed"
    assert status["decision"]["ledgerSeq"] == pruned["status"]["decision"]["ledgerSeq"]
    assert "Replayed from the ledger" in status["message"]
    with open_store(pruning_operator.store) as store:
        assert store.count_ledger() == before  # nothing decided again
        assert store.verify_ledger().ok
    assert get(control_plane, namespace, "releasepointer", "ptr")["status"]["releaseId"] == "rel-3"


def test_a_recreated_request_is_replayed_under_concurrency_forbid(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    pruning_operator: OperatorProcess,
) -> None:
    """A copy re-created while a newer request waits is replayed: neither failed as
    ConcurrencyForbidden (which would ledger a failure) nor decided again."""
    gated = {"minCandidateRuns": 0, "minBaselineRuns": 0, "minLowRuns": 0, "concurrencyPolicy": "Forbid"}
    apply(
        control_plane,
        namespace,
        pricing_table("prices", "openai", "v1", "gpt-4.1-mini", (1.0, 2.0)),
        policy("forbid", **gated),
        pointer("ptr", "agent", "prod", "forbid"),
        *[release(f"rel-{i}", "agent", "openai", "v1", "gpt-4.1-mini") for i in range(1, 3)],
    )
    first = decided_watching(api_client, namespace, request("first", "ptr", "rel-1"))
    assert first["status"]["phase"] == "Promoted"
    control_plane.kubectl("delete", "-n", namespace, "promotionrequest", "first")  # a GitOps prune
    apply(control_plane, namespace, policy("forbid", **gated, approval={"minApprovals": 1}))
    wait_for(
        lambda: (
            (get(control_plane, namespace, "promotionpolicy", "forbid").get("status") or {}).get(
                "observedGeneration"
            )
            == 2
        ),
        what="the policy change to be seen",
    )
    apply(control_plane, namespace, request("waiting", "ptr", "rel-2"))
    wait_for(
        lambda: (
            (get(control_plane, namespace, "promotionrequest", "waiting").get("status") or {}).get("phase")
            == "AwaitingApproval"
        ),
        what="'waiting' to await approval",
    )
    with open_store(pruning_operator.store) as store:
        before = store.count_ledger()

    replayed = decided_watching(api_client, namespace, request("first", "ptr", "rel-1"))
    assert replayed["status"]["phase"] == "Promoted"
    assert {c["type"]: c["reason"] for c in replayed["status"]["conditions"]}["Decided"] == "Replayed"
    assert replayed["status"]["decision"]["ledgerSeq"] == first["status"]["decision"]["ledgerSeq"]
    with open_store(pruning_operator.store) as store:
        assert store.count_ledger() == before  # no request-failed entry, nothing decided
    assert (
        get(control_plane, namespace, "promotionrequest", "waiting")["status"]["phase"] == "AwaitingApproval"
    )


def test_a_retried_idempotency_key_is_answered_after_its_request_is_gone(
    control_plane: ControlPlane,
    namespace: str,
    pruning_operator: OperatorProcess,
    start_sidecar: StartSidecar,
) -> None:
    from .kube import quickstart

    quickstart(control_plane, namespace)
    sidecar = start_sidecar(store=pruning_operator.store)
    with as_user(control_plane, sidecar, "admin") as api:
        api.post("/v1/events", json={"events": quickstart_events()})
        first = api.post(
            "/v1/promote", json=action_body("support-base"), headers={"Idempotency-Key": "deploy-1"}
        )
        assert first.status_code == 200
        # A newer decision for the pointer, so that the first one is no longer the newest.
        api.post("/v1/promote", json=action_body("support-cand"), headers={"Idempotency-Key": "deploy-2"})
        name = first.headers["x-flightdeck-request"].split("/")[1]
        wait_for(
            lambda: not exists(control_plane, namespace, name), what="retention to delete the first request"
        )
        with open_store(pruning_operator.store) as store:
            entries = store.count_ledger()
        again = api.post(
            "/v1/promote", json=action_body("support-base"), headers={"Idempotency-Key": "deploy-1"}
        )
        assert again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["x-flightdeck-replayed"] == "true"
        assert not exists(control_plane, namespace, name)  # answered from the ledger, nothing created
        reused = api.post(
            "/v1/promote",
            json=action_body("support-base", reason="other"),
            headers={"Idempotency-Key": "deploy-1"},
        )
        assert reused.status_code == 422  # as for a key reused while the request exists
        assert reused.json()["detail"].startswith(
            "Idempotency-Key 'deploy-1' was already used for a different"
        )
    with open_store(pruning_operator.store) as store:
        assert store.count_ledger() == entries
