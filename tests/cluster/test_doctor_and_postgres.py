"""`flightdeck-operator doctor` names each failure, and the operator works unchanged on PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.postgres import temporary_postgres
from flightdeck_operator.localdev.processes import OperatorProcess
from flightdeck_operator.store import open_store

from .kube import (
    AGENT,
    COST_BREACH,
    ENV,
    apply,
    doctor,
    get,
    ingest,
    ledger_size,
    quickstart,
    request,
    run_events,
    wait_decided,
    wait_for,
)


def test_doctor_names_each_failure(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace)
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    seq = wait_decided(control_plane, namespace, "first")["status"]["decision"]["ledgerSeq"]
    wait_for(
        lambda: ledger_size(operator.store) == 4, what="two pricing tables, the policy and the promotion"
    )

    healthy = doctor(control_plane, operator.store, namespace)
    assert healthy.returncode == 0, healthy.stderr
    assert "ok    ledger_chain: hash chain intact, contiguous 1..4 (4 entries)" in healthy.stdout
    assert f"ok    pointer:{namespace}/support-local: release_id=support-base" in healthy.stdout
    assert healthy.stdout.strip().endswith("check(s), all passed.")

    # With the operator gone nothing repairs drift, so doctor must see it.
    operator.stop()
    control_plane.kubectl(
        "patch",
        "-n",
        namespace,
        "releasepointer/support-local",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"releaseId": "support-cand"}}),
    )
    drifted = doctor(control_plane, operator.store, namespace)
    assert drifted.returncode == 1
    assert (
        f"FAIL  pointer:{namespace}/support-local: status.releaseId='support-cand' but the ledger's last "
        f"passing entry (seq {seq}) says 'support-base'"
    ) in drifted.stderr
    assert "Error: Doctor found 1 problem(s)" in drifted.stderr

    # Someone with database access rewrites history: the chain names the first bad seq.
    connection = sqlite3.connect(operator.store, isolation_level=None)
    connection.execute("DROP TRIGGER ledger_no_update")
    connection.execute("UPDATE ledger_entries SET release_id = 'support-cand' WHERE seq = ?", (seq,))
    connection.close()
    tampered = doctor(control_plane, operator.store, namespace)
    assert tampered.returncode == 1
    assert f"FAIL  ledger_chain: first bad seq {seq}:" in tampered.stderr


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with temporary_postgres() as url:
        yield url


def test_operator_on_postgresql(
    control_plane: ControlPlane, crds: Path, namespace: str, postgres_url: str, tmp_path: Path
) -> None:
    with OperatorProcess(
        kubeconfig=control_plane.kubeconfig(),
        store=postgres_url,
        log_path=tmp_path / "operator.log",
        namespaces=(namespace,),
    ) as operator:
        quickstart(control_plane, namespace)
        ingest(postgres_url, run_events("support-base", AGENT, ENV, 1, latency_ms=1000))
        ingest(postgres_url, run_events("support-cand", AGENT, ENV, 1, latency_ms=1200))
        apply(control_plane, namespace, request("first", "support-local", "support-base"))
        assert wait_decided(control_plane, namespace, "first")["status"]["phase"] == "Promoted"
        apply(control_plane, namespace, request("costly", "support-local", "support-cand"))
        blocked = wait_decided(control_plane, namespace, "costly")
        assert blocked["status"]["phase"] == "Blocked", operator.log_tail()
        assert blocked["status"]["decision"]["policy"]["reasons"] == [COST_BREACH]
        assert (
            get(control_plane, namespace, "releasepointer", "support-local")["status"]["releaseId"]
            == "support-base"
        )
    with open_store(postgres_url) as store:
        assert store.verify_ledger().ok
        decisions = [e for e in store.list_ledger(namespace=namespace) if e.kind.value == "promote"]
        assert [(e.release_id, e.pointer_changed) for e in reversed(decisions)] == [
            ("support-base", True),
            ("support-cand", False),
        ]
