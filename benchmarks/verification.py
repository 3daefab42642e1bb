"""The cost of continuous verification, on the real local API server with the real operator process.

    .venv/bin/python benchmarks/verification.py            # 1,000 verified pointers at 60 s (about 15 minutes)
    .venv/bin/python benchmarks/verification.py --quick    # 100 pointers at 10 s, for a smoke run

Measures, in one run:
- manual decision latency (create -> Decided, p50/p99, 300 requests over 20 pointers at 10/s) with
  only those 20 pointers;
- the same once N more pointers exist, each with a live release and 50 runs in the last hour, under
  a policy **without** verification;
- the operator's CPU once that policy verifies them every interval (after every pointer was checked
  once, over two intervals: user + system time of the operator process from /proc, divided by the
  wall time), and the idle CPU before, for comparison;
- the same manual decision latency again while those N pointers are being verified, and once more
  after verification is turned off again (A/B/A: drift over the run is not verification's cost).

Prints its figures and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# This folder holds http.py, which would shadow the standard library's http package: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from kubernetes import client, config  # noqa: E402

from flightdeck_operator.localdev.controlplane import ControlPlane  # noqa: E402
from flightdeck_operator.localdev.processes import OperatorProcess  # noqa: E402
from flightdeck_operator.store import open_store  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_decisions", Path(__file__).with_name("decisions.py"))
assert _spec is not None
assert _spec.loader is not None
decisions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decisions)

GROUP, VERSION = decisions.GROUP, decisions.VERSION
REQUESTS = 300
REPO = decisions.REPO


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


POLICY = {"minCandidateRuns": 0, "minBaselineRuns": 0, "minLowRuns": 0, "maxErrorRate": 0.05}


def seed_live(objects: client.CustomObjectsApi, namespace: str, pointers: int, store: str) -> list[str]:
    """``pointers`` pointers under a policy without verification (yet), each with a release
    promoted (a burst of first promotions) and 50 runs of it in the last hour."""
    create = objects.create_namespaced_custom_object
    create(
        GROUP,
        VERSION,
        namespace,
        "pricingtables",
        decisions.body(
            "PricingTable",
            "prices",
            {
                "provider": "openai",
                "pricingVersion": "v1",
                "entries": [{"model": "m", "inputUsdPer1kTokens": 1.0, "outputUsdPer1kTokens": 2.0}],
            },
        ),
    )
    create(
        GROUP, VERSION, namespace, "promotionpolicies", decisions.body("PromotionPolicy", "verified", POLICY)
    )
    create(
        GROUP,
        VERSION,
        namespace,
        "agentreleases",
        decisions.body(
            "AgentRelease",
            "rel-0",
            {
                "agentId": "bench",
                "version": "1.0.0",
                "runtime": {"provider": "openai", "model": "m"},
                "pricingReference": {"provider": "openai", "pricingVersion": "v1"},
                "checksum": "0" * 64,
            },
        ),
    )
    now = dt.datetime.now(dt.UTC)
    events = [
        {
            "timestamp": (now - dt.timedelta(minutes=1 + i)).isoformat(),
            "agent_id": "bench",
            "release_id": "rel-0",
            "run_id": f"run-{uuid.uuid4().hex}",
            "tenant_id": "t1",
            "task_id": "bench",
            "environment": f"env-{p}",
            "metrics": {"latency_ms": 800 + i, "success": i != 0},
            "usage": {
                "model": {"provider": "openai", "model": "m", "input_tokens": 1000, "output_tokens": 500}
            },
        }
        for p in range(pointers)
        for i in range(50)
    ]
    with open_store(store) as opened:
        opened.ingest(events)

    def pointer_and_promotion(p: int) -> str:
        spec = {"agentId": "bench", "environment": f"env-{p}", "policyRef": {"name": "verified"}}
        create(
            GROUP, VERSION, namespace, "releasepointers", decisions.body("ReleasePointer", f"ptr-{p}", spec)
        )
        name = f"first-{p}"
        decisions.create_request(objects, namespace, name, f"ptr-{p}", "rel-0")
        return name

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(pointer_and_promotion, range(pointers)))


def steady(
    objects: client.CustomObjectsApi, watcher: Any, namespace: str, prefix: str, count: int, rate: float
) -> dict[str, float]:
    """``count`` manual promotions over 20 pointers at ``rate`` per second: create -> Decided."""
    created: dict[str, float] = {}
    next_at = time.perf_counter()
    for i in range(count):
        name = f"{prefix}-{i}"
        created[name] = decisions.create_request(objects, namespace, name, f"ptr-{i % 20}", f"rel-{i % 5}")
        next_at += 1.0 / rate
        time.sleep(max(0.0, next_at - time.perf_counter()))
    watcher.wait_for(list(created), timeout=120)
    latencies = [(watcher.decided[n] - t) * 1000 for n, t in created.items()]
    return {
        "requests": count,
        "p50_ms": round(decisions.percentile(latencies, 0.50), 1),
        "p99_ms": round(decisions.percentile(latencies, 0.99), 1),
    }


def all_checked(objects: client.CustomObjectsApi, namespace: str, pointers: int) -> int:
    listed = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "releasepointers")
    return sum(
        1
        for item in listed["items"]
        if ((item.get("status") or {}).get("verification") or {}).get("verdict") == "Pass"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 pointers at 10 s (smoke run)")
    parser.add_argument("--pointers", type=int, default=None)
    parser.add_argument("--interval", default=None, help="verification interval, e.g. 60s")
    args = parser.parse_args()
    pointers = args.pointers or (100 if args.quick else 1000)
    interval = args.interval or ("10s" if args.quick else "60s")
    interval_s = int(interval[:-1]) * {"s": 1, "m": 60}[interval[-1]]

    with tempfile.TemporaryDirectory() as work, ControlPlane() as cp:
        cp.kubectl("apply", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        api = config.new_client_from_config(config_file=str(cp.kubeconfig()))
        objects = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        for namespace in ("bench", "verified"):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        decisions.seed(objects, "bench", pointers=20, releases=5)
        store = str(Path(work) / "flightdeck.db")
        operator = OperatorProcess(
            kubeconfig=cp.kubeconfig(),
            store=store,
            log_path=Path(work) / "operator.log",
            extra_env={"FLIGHTDECK_POINTER_RESYNC_SECONDS": "300"},
        )
        with operator:
            assert operator.process is not None
            pid = operator.process.pid
            watcher = decisions.DecisionWatch(api, "bench")
            time.sleep(2)
            without = steady(objects, watcher, "bench", "without", REQUESTS, rate=10.0)
            print(f"manual decisions, 20 pointers: p50 {without['p50_ms']} ms, p99 {without['p99_ms']} ms")
            watcher.stop()

            verified_watch = decisions.DecisionWatch(api, "verified")
            names = seed_live(objects, "verified", pointers, store)
            verified_watch.wait_for(names, timeout=1200)
            verified_watch.stop()
            time.sleep(5)
            watcher = decisions.DecisionWatch(api, "bench")
            live = steady(objects, watcher, "bench", "live", REQUESTS, rate=10.0)
            watcher.stop()
            print(
                f"manual decisions, {pointers} more pointers live, none verified: p50 {live['p50_ms']} ms, "
                f"p99 {live['p99_ms']} ms"
            )

            idle_cpu0, idle_t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(2 * interval_s)
            idle = (cpu_seconds(pid) - idle_cpu0) / (time.monotonic() - idle_t0)
            print(
                f"operator CPU with {pointers} more pointers live, none verified: {idle * 100:.1f} % of a core"
            )

            verification = {"interval": interval, "window": "1h", "minRuns": 20, "failureThreshold": 3}
            objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                "verified",
                "promotionpolicies",
                "verified",
                {"spec": {"verification": verification}},
            )
            deadline = time.monotonic() + 3 * interval_s + 120
            while (checked := all_checked(objects, "verified", pointers)) < pointers:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {checked} of {pointers} pointers were checked")
                time.sleep(2)
            print(f"{pointers} pointers live and verified (every pointer checked at least once)")

            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(2 * interval_s)
            cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            print(
                f"operator CPU with {pointers} verified pointers at {interval}: {cpu * 100:.1f} % of a core"
            )

            watcher = decisions.DecisionWatch(api, "bench")
            with_verification = steady(objects, watcher, "bench", "with", REQUESTS, rate=10.0)
            watcher.stop()
            print(
                f"manual decisions while {pointers} pointers are verified: p50 {with_verification['p50_ms']} ms, "
                f"p99 {with_verification['p99_ms']} ms"
            )

            # A/B/A: verification off again, so that drift of the machine or the control plane over
            # the run is not mistaken for verification's cost.
            objects.patch_namespaced_custom_object(
                GROUP, VERSION, "verified", "promotionpolicies", "verified", {"spec": {"verification": None}}
            )
            time.sleep(interval_s + 10)
            watcher = decisions.DecisionWatch(api, "bench")
            after = steady(objects, watcher, "bench", "after", REQUESTS, rate=10.0)
            watcher.stop()
            print(
                f"manual decisions, verification off again: p50 {after['p50_ms']} ms, p99 {after['p99_ms']} ms"
            )
            with open_store(store) as opened:
                entries = opened.count_ledger()

    result: dict[str, Any] = {
        "benchmark": "verification",
        "pointers": pointers,
        "interval": interval,
        "cpu_fraction_of_a_core": round(cpu, 4),
        "idle_cpu_fraction_of_a_core": round(idle, 4),
        "latency_20_pointers": without,
        "latency_without_verification": live,
        "latency_with_verification": with_verification,
        "latency_verification_off_again": after,
        "ledger_entries": entries,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
