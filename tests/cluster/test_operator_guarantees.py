"""DESIGN section 2 guarantees on a real API server: one decision at a time per pointer, oldest
first; exactly once per request UID even when the operator is SIGKILLed mid-burst; the pointer
always equals the ledger, and doctor agrees."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess
from flightdeck_operator.store import open_store

from .kube import apply, get, pointer, policy, pricing_table, release, request, wait_for

AGENT = "agent-burst"
ENV = "prod"
GROUP, VERSION = "flightdeck.dev", "v1alpha1"


def setup_pointer(cp: ControlPlane, namespace: str, releases: int) -> list[str]:
    """A permissive policy (no limits, no sample minimum) and ``releases`` releases of one agent."""
    names = [f"rel-{i:02d}" for i in range(releases)]
    apply(
        cp,
        namespace,
        pricing_table("prices", "openai", "v1", "gpt-4.1-mini", (1.0, 2.0)),
        policy("open", minCandidateRuns=0, minBaselineRuns=0, minLowRuns=0),
        pointer("ptr", AGENT, ENV, "open"),
        *[release(name, AGENT, "openai", "v1", "gpt-4.1-mini") for name in names],
    )
    return names


def create_requests(api: client.ApiClient, namespace: str, targets: list[str]) -> list[str]:
    """Create one request per target as fast as possible, in order, through the Python client.

    While the operator is down its admission webhook is too (failurePolicy Fail), so a create is
    refused; like any client, retry it until the operator is back."""
    objects = client.CustomObjectsApi(api)
    names = []
    for index, target in enumerate(targets):
        name = f"req-{index:03d}"
        deadline = time.monotonic() + 60
        while True:
            try:
                objects.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "promotionrequests", request(name, "ptr", target)
                )
                break
            except ApiException as error:
                if "failed calling webhook" not in str(error.body) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        names.append(name)
    return names


def phases(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    import json

    listed = json.loads(cp.kubectl("get", "-n", namespace, "promotionrequests", "-o", "json").stdout)["items"]
    return {item["metadata"]["name"]: item.get("status") or {} for item in listed}


def all_decided(cp: ControlPlane, namespace: str, count: int) -> dict[str, Any] | None:
    statuses = phases(cp, namespace)
    decided = {name: s for name, s in statuses.items() if s.get("phase") in ("Promoted", "Blocked", "Failed")}
    return decided if len(decided) == count else None


def check_pointer_matches_ledger(cp: ControlPlane, namespace: str, store: str, expected_moves: int) -> None:
    with open_store(store) as opened:
        verdict = opened.verify_ledger()
        assert verdict.ok, str(verdict)
        moves = opened.pointer_moves(namespace, "ptr", limit=1000)
    assert len(moves) == expected_moves
    live = wait_for(
        lambda: (
            get(cp, namespace, "releasepointer", "ptr")
            if (get(cp, namespace, "releasepointer", "ptr").get("status") or {}).get("ledgerSeq")
            == moves[0].seq
            else None
        ),
        what="the pointer to show the last ledger move",
    )
    assert live["status"]["releaseId"] == moves[0].release_id
    history = live["status"]["history"]
    assert [(h["releaseId"], h["ledgerSeq"]) for h in history] == [
        (m.release_id, m.seq) for m in moves[: len(history)]
    ]


def test_25_requests_for_one_pointer_are_decided_in_creation_order(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    releases = setup_pointer(control_plane, namespace, 25)
    names = create_requests(api_client, namespace, releases)
    statuses = wait_for(lambda: all_decided(control_plane, namespace, 25), what="25 decisions")
    assert {s["phase"] for s in statuses.values()} == {"Promoted"}

    with open_store(operator.store) as store:
        entries = list(reversed(store.list_ledger(kind=None, limit=1000)))
    decisions = [e for e in entries if e.kind.value == "promote"]
    # Decided in creation order: ledger order equals request order, each seeing the one before.
    assert [(e.details or {}).get("request") for e in decisions] == names
    assert [e.release_id for e in decisions] == releases
    assert [e.baseline_release_id for e in decisions] == [None, *releases[:-1]]
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert [statuses[n]["decision"]["ledgerSeq"] for n in names] == [e.seq for e in decisions]
    check_pointer_matches_ledger(control_plane, namespace, operator.store, expected_moves=25)


def test_sigkill_during_a_burst_of_50_decides_each_request_exactly_once(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    releases = setup_pointer(control_plane, namespace, 50)
    # Kill at a random point inside the burst: once a random number of decisions is committed.
    kill_after = random.randint(3, 45)
    killed = threading.Event()
    decided_before_restart = 0

    def kill_mid_burst() -> None:
        nonlocal decided_before_restart
        with open_store(operator.store) as store:
            deadline = time.monotonic() + 60
            while (
                store.count_ledger() < kill_after + 1 and time.monotonic() < deadline
            ):  # +1: the policy entry
                time.sleep(0.005)
        operator.kill()
        killed.set()
        decided_before_restart = len([s for s in phases(control_plane, namespace).values() if s.get("phase")])
        # Restarted at once (creates still in flight wait for its webhook): same store, same
        # namespace, it resumes from the API server and the ledger.
        operator.start()

    killer = threading.Thread(target=kill_mid_burst)
    killer.start()
    names = create_requests(api_client, namespace, releases)
    killer.join()
    assert killed.is_set()
    statuses = wait_for(lambda: all_decided(control_plane, namespace, 50), timeout=120, what="50 decisions")
    assert {s["phase"] for s in statuses.values()} == {"Promoted"}, f"killed after {kill_after} decisions"

    with open_store(operator.store) as store:
        decisions = [e for e in reversed(store.list_ledger(limit=1000)) if e.kind.value == "promote"]
    request_uids = [e.request_uid for e in decisions]
    assert len(request_uids) == len(set(request_uids)) == 50, "a request was ledgered twice or not at all"
    assert [(e.details or {}).get("request") for e in decisions] == names
    check_pointer_matches_ledger(control_plane, namespace, operator.store, expected_moves=50)

    doctor = subprocess.run(
        [
            sys.executable,
            "-m",
            "flightdeck_operator.cli.main",
            "doctor",
            "--store",
            operator.store,
            "--kubeconfig",
            str(control_plane.kubeconfig()),
            "--namespace",
            namespace,
        ],
        capture_output=True,
        text=True,
    )
    assert doctor.returncode == 0, doctor.stderr
    assert f"ok    pointer:{namespace}/ptr: release_id={releases[-1]}" in doctor.stdout
    print(f"killed after {kill_after} ledgered decisions, {decided_before_restart} of 50 showed a phase")
