"""Two sidecar replicas on one PostgreSQL store, no leader among them: concurrent ingestion of
overlapping batches counts every run once, and concurrent promotes with Idempotency-Keys, some
retried on the other replica at the same time, make one request and one ledger entry per key.
(benchmarks/sidecar_scale.py measures the same at 500 promotes, with events/s for one and two.)"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
from kubernetes import client

from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.load import RELEASES, seed_fleet
from flightdeck_operator.localdev.processes import OperatorProcess
from flightdeck_operator.store import open_store

from .conftest import TEST_TIMINGS, StartSidecar
from .kube import run_events

POINTERS = 6
PROMOTES = 60
RETRIED = PROMOTES // 10  # sent to the other replica as well, at the same time


def test_two_sidecars_on_postgresql_make_one_request_per_key(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    crds: Path,
    namespace: str,
    postgres_store: str,
    tmp_path: Path,
    start_sidecar: StartSidecar,
) -> None:
    gateway = KubeGateway(api_client)
    seed_fleet(gateway, namespace, POINTERS)
    with OperatorProcess(
        kubeconfig=control_plane.kubeconfig("admin"),
        store=postgres_store,
        log_path=tmp_path / "operator.log",
        namespaces=(namespace,),
        extra_env=TEST_TIMINGS,
    ):
        replicas = [start_sidecar("--auth", "none", store=postgres_store) for _ in range(2)]
        clients = [httpx.Client(base_url=r.url, timeout=120) for r in replicas]

        # Ingestion: the same batches through both replicas at once.
        batches = [
            run_events(RELEASES[i % 2], "fleet", f"env-{i % POINTERS}", 200, model="m") for i in range(6)
        ]

        def ingest(job: tuple[int, list[dict[str, Any]]]) -> int:
            replica, events = job
            response = clients[replica].post("/v1/events", json={"events": events})
            assert response.status_code == 200, response.text
            return int(response.json()["inserted"])

        with ThreadPoolExecutor(8) as pool:
            inserted = sum(pool.map(ingest, [(r, b) for b in batches for r in (0, 1)]))
        distinct = len({event["run_id"] for batch in batches for event in batch})
        assert inserted == distinct
        with psycopg.connect(postgres_store) as connection:
            runs = connection.execute("SELECT COUNT(*) FROM run_events").fetchone()
            bucketed = connection.execute("SELECT SUM(runs) FROM run_event_buckets").fetchone()
        assert runs is not None
        assert bucketed is not None
        assert int(runs[0]) == int(bucketed[0]) == distinct

        # Promotes: one key each, a tenth of them sent to both replicas concurrently.
        keys = [f"deploy-{uuid.uuid4().hex[:8]}" for _ in range(PROMOTES)]
        jobs = [(0, i) for i in range(PROMOTES)] + [(1, i) for i in range(RETRIED)]

        def promote(job: tuple[int, int]) -> tuple[int, int, str, str]:
            replica, index = job
            body = {
                "release_id": RELEASES[index % 2],
                "environment": f"env-{index % POINTERS}",
                "window": "7d",
                "reason": "scale test",
            }
            response = clients[replica].post(
                "/v1/promote", json=body, headers={"Idempotency-Key": keys[index]}
            )
            return (
                index,
                response.status_code,
                response.headers.get("x-flightdeck-request", ""),
                response.text,
            )

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(promote, jobs))
        for http_client in clients:
            http_client.close()

    by_key: dict[int, list[tuple[int, str, str]]] = {}
    for index, status, request, text in answers:
        by_key.setdefault(index, []).append((status, request, text))
    assert {status for _i, status, _r, _t in answers} <= {200, 409}, [
        a for a in answers if a[1] not in (200, 409)
    ][:3]
    for index in range(RETRIED):  # both replicas answered alike, from one request
        (first_status, first_request, first_text), (second_status, second_request, second_text) = by_key[
            index
        ]
        assert (first_status, first_request) == (second_status, second_request)
        assert json.loads(first_text) == json.loads(second_text)
    names = {request for answers_of_key in by_key.values() for _s, request, _t in answers_of_key}
    assert len(names) == PROMOTES
    listed = gateway.list_objects("promotionrequests", namespace)
    assert len([item for item in listed if item["metadata"]["name"].startswith("http-")]) == PROMOTES
    with open_store(postgres_store) as store:
        decisions = [
            e for e in store.list_ledger(namespace=namespace, limit=10_000) if e.kind.value == "promote"
        ]
        assert store.verify_ledger().ok
    assert len(decisions) == len({e.request_uid for e in decisions}) == PROMOTES
