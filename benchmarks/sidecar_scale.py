"""The HTTP sidecar scaled out on PostgreSQL: ingestion with one and two replicas, and concurrent
promotes with Idempotency-Keys, some retried on the other replica at the same moment.

    .venv/bin/python benchmarks/sidecar_scale.py                 # 200k events per phase, 500 promotes
    .venv/bin/python benchmarks/sidecar_scale.py --quick         # 20k events, 100 promotes

On the local control plane with one operator, a private PostgreSQL server (durable settings) and
sidecars as child processes (``--auth none`` on loopback: authentication is not measured here).

- Ingestion: ``--clients`` client threads post batches of 1,000 fresh events (about 350 KB each),
  spread round robin over the replicas; events per second from the first post to the last answer.
- Promotes: ``--promotes`` keys over 50 pointers, 16 client threads; a tenth of the keys is sent to
  both replicas at once. Counted: PromotionRequests and ledger decisions per key (both must be 1),
  whether both replicas answered a doubled key alike, round-trip p50/p99, answers other than
  200/409.

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402

from flightdeck_operator.kube.gateway import KubeGateway, load_api_client  # noqa: E402
from flightdeck_operator.localdev.controlplane import ControlPlane  # noqa: E402
from flightdeck_operator.localdev.load import RELEASES, seed_fleet  # noqa: E402
from flightdeck_operator.localdev.postgres import temporary_postgres  # noqa: E402
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess  # noqa: E402
from flightdeck_operator.store import open_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "scale"
POINTERS = 50
BATCH = 1000


def batch(release: str, environment: str) -> bytes:
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    events = [
        {
            "timestamp": at,
            "agent_id": "fleet",
            "release_id": release,
            "run_id": f"run-{uuid.uuid4().hex}",
            "tenant_id": "t1",
            "task_id": "support",
            "environment": environment,
            "metrics": {"latency_ms": 900 + i % 300, "success": True},
            "usage": {
                "model": {"provider": "openai", "model": "m", "input_tokens": 1000, "output_tokens": 500}
            },
        }
        for i in range(BATCH)
    ]
    return json.dumps({"events": events}).encode()


def ingest(urls: list[str], events: int, clients: int) -> float:
    """Events per second: ``events`` fresh events in batches, over ``clients`` threads."""
    bodies = [batch(RELEASES[i % 2], f"env-{i % POINTERS}") for i in range(events // BATCH)]
    sessions = [httpx.Client(base_url=urls[i % len(urls)], timeout=120) for i in range(clients)]

    def post(index: int) -> None:
        response = sessions[index % clients].post(
            "/v1/events", content=bodies[index], headers={"Content-Type": "application/json"}
        )
        response.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(len(bodies))))
    elapsed = time.perf_counter() - started
    for session in sessions:
        session.close()
    return len(bodies) * BATCH / elapsed


def promotes(urls: list[str], count: int) -> tuple[list[tuple[int, int, str, str, float]], list[str]]:
    keys = [f"deploy-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    doubled = count // 10
    jobs = [(0, i) for i in range(count)] + [(1, i) for i in range(doubled)]
    sessions = [httpx.Client(base_url=url, timeout=120) for url in urls]

    def send(job: tuple[int, int]) -> tuple[int, int, str, str, float]:
        replica, index = job
        body = {
            "release_id": RELEASES[(index // POINTERS) % 2],
            "environment": f"env-{index % POINTERS}",
            "window": "7d",
            "reason": "scale",
        }
        started = time.perf_counter()
        response = sessions[replica % len(sessions)].post(
            "/v1/promote", json=body, headers={"Idempotency-Key": keys[index]}
        )
        elapsed = time.perf_counter() - started
        return (
            index,
            response.status_code,
            response.headers.get("x-flightdeck-request", ""),
            response.text,
            elapsed,
        )

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, jobs))
    for session in sessions:
        session.close()
    return answers, keys


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k events per phase, 100 promotes")
    parser.add_argument("--clients", type=int, default=4, help="ingestion client threads")
    args = parser.parse_args()
    events, count = (20_000, 100) if args.quick else (200_000, 500)

    with tempfile.TemporaryDirectory() as work_dir, ControlPlane() as cp, temporary_postgres() as store:
        work = Path(work_dir)
        cp.kubectl("apply", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl("create", "namespace", NAMESPACE)
        gateway = KubeGateway(load_api_client(str(cp.kubeconfig()), pool_size=16))
        seed_fleet(gateway, NAMESPACE, POINTERS)
        operator = OperatorProcess(
            kubeconfig=cp.kubeconfig(), store=store, log_path=work / "operator.log", namespaces=(NAMESPACE,)
        )
        sidecars = [
            SidecarProcess(
                kubeconfig=cp.kubeconfig(),
                store=store,
                namespace=NAMESPACE,
                log_path=work / f"sidecar-{i}.log",
                args=("--auth", "none"),
            )
            for i in range(2)
        ]
        with operator, sidecars[0], sidecars[1]:
            urls = [s.url for s in sidecars]
            ingest(urls[:1], 2 * BATCH, 1)  # warm-up: connections, JIT-free but caches filled
            one = ingest(urls[:1], events, args.clients)
            print(f"ingestion, 1 replica, {args.clients} clients: {one:,.0f} events/s", flush=True)
            two = ingest(urls, events, args.clients)
            print(f"ingestion, 2 replicas, {args.clients} clients: {two:,.0f} events/s", flush=True)
            answers, _keys = promotes(urls, count)
        listed = [
            item
            for item in gateway.list_objects("promotionrequests", NAMESPACE)
            if item["metadata"]["name"].startswith("http-")
        ]
        with open_store(store) as opened:
            decisions = [
                e for e in opened.list_ledger(namespace=NAMESPACE, limit=100_000) if e.kind.value == "promote"
            ]
            chain_ok = opened.verify_ledger().ok
    by_key: dict[int, list[tuple[int, str, str]]] = {}
    for index, status, request, text, _elapsed in answers:
        by_key.setdefault(index, []).append((status, request, text))
    doubled_alike = all(
        len({(s, r, json.dumps(json.loads(t), sort_keys=True)) for s, r, t in by_key[i]}) == 1
        for i in range(count // 10)
    )
    latencies = [a[4] * 1000 for a in answers]
    statuses: dict[str, int] = {}
    for answer in answers:
        statuses[str(answer[1])] = statuses.get(str(answer[1]), 0) + 1
    result: dict[str, Any] = {
        "events_per_phase": events,
        "ingest_events_per_s_1_replica": round(one),
        "ingest_events_per_s_2_replicas": round(two),
        "promotes": count,
        "sent_to_both_replicas": count // 10,
        "statuses": statuses,
        "distinct_requests_answered": len({r for values in by_key.values() for _s, r, _t in values}),
        "promotion_requests_created": len(listed),
        "ledger_decisions": len(decisions),
        "ledger_request_uids": len({e.request_uid for e in decisions}),
        "doubled_keys_answered_alike": doubled_alike,
        "chain_ok": chain_ok,
        "round_trip_p50_ms": round(statistics.median(latencies)),
        "round_trip_p99_ms": round(sorted(latencies)[int(0.99 * (len(latencies) - 1))]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
