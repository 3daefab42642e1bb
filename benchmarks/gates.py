"""What the gates cost: promotion-window evaluation, the admission webhook and the approval round trip.

    .venv/bin/python benchmarks/gates.py            # the full run (about 1 minute)
    .venv/bin/python benchmarks/gates.py --quick    # smaller sizes, for a smoke run

Measures, in one run:
- ``window_state`` for a policy with three Europe/Berlin windows (weekend freeze, business hours,
  year-end freeze): the pure computation the sweep makes once per policy and round (pointers that
  share a policy share it), and what 1,000 distinct policies would cost;
- create -> Decided for plain requests (no gates) and for requests whose policy has the three
  windows (all passable: the Allow window is replaced by a Deny one that never fires soon), both
  through the admission webhook, on the real local API server;
- the approval round trip: create -> AwaitingApproval, then PromotionApproval created (as another
  user) -> Promoted.

Prints its figures and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

# This folder holds http.py (benchmarks/http.py), which would shadow the standard library's http
# package if the folder came first on sys.path, as it does for a script: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from kubernetes import client, config  # noqa: E402

from flightdeck_operator.engine.windows import WindowKind, WindowRule, parse_duration, window_state  # noqa: E402
from flightdeck_operator.localdev.controlplane import ControlPlane  # noqa: E402
from flightdeck_operator.localdev.processes import OperatorProcess  # noqa: E402

GROUP, VERSION = "flightdeck.dev", "v1alpha1"
REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"Promoted", "RolledBack", "Blocked", "Failed", "Evaluated", "Superseded"}
WINDOWS = [
    {"name": "weekend-freeze", "kind": "Deny", "schedule": "0 18 * * 5", "duration": "62h"},
    {"name": "year-end-freeze", "kind": "Deny", "schedule": "0 0 20 12 *", "duration": "14d"},
    {"name": "night-freeze", "kind": "Deny", "schedule": "0 3 29 2 *", "duration": "1h"},  # leap days only
]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.50), 1),
        "p99_ms": round(percentile(values, 0.99), 1),
        "mean_ms": round(statistics.fmean(values), 1),
    }


def window_cost() -> dict[str, float]:
    rules = [
        WindowRule("weekend-freeze", WindowKind.DENY, "0 18 * * 5", parse_duration("62h"), "Europe/Berlin"),
        WindowRule("business-hours", WindowKind.ALLOW, "0 8 * * 1-5", parse_duration("10h"), "Europe/Berlin"),
        WindowRule("year-end-freeze", WindowKind.DENY, "0 0 20 12 *", parse_duration("14d"), "Europe/Berlin"),
    ]
    now = dt.datetime.now(dt.UTC)
    runs = 2000
    seconds = min(timeit.repeat(lambda: window_state(rules, now), number=runs, repeat=5)) / runs
    return {"window_state_us": round(seconds * 1e6, 1), "sweep_1000_policies_ms": round(seconds * 1e6, 1)}


def body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}


def seed(objects: client.CustomObjectsApi, namespace: str, pointers: int) -> None:
    def create(plural: str, kind: str, name: str, spec: dict[str, Any]) -> None:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body(kind, name, spec))

    create(
        "pricingtables",
        "PricingTable",
        "prices",
        {
            "provider": "openai",
            "pricingVersion": "v1",
            "entries": [{"model": "m", "inputUsdPer1kTokens": 1.0, "outputUsdPer1kTokens": 2.0}],
        },
    )
    open_gate = {"minCandidateRuns": 0, "minBaselineRuns": 0, "minLowRuns": 0}
    create("promotionpolicies", "PromotionPolicy", "plain", open_gate)
    create("promotionpolicies", "PromotionPolicy", "windows", {**open_gate, "promotionWindows": WINDOWS})
    create("promotionpolicies", "PromotionPolicy", "approval", {**open_gate, "approval": {"minApprovals": 1}})
    for r in range(5):
        create(
            "agentreleases",
            "AgentRelease",
            f"rel-{r}",
            {
                "agentId": "bench",
                "version": f"1.0.{r}",
                "runtime": {"provider": "openai", "model": "m"},
                "pricingReference": {"provider": "openai", "pricingVersion": "v1"},
                "checksum": "0" * 64,
            },
        )
    for gate in ("plain", "windows", "approval"):
        for p in range(pointers):
            create(
                "releasepointers",
                "ReleasePointer",
                f"{gate}-{p}",
                {"agentId": "bench", "environment": f"{gate}-{p}", "policyRef": {"name": gate}},
            )


def wait_phase(
    objects: client.CustomObjectsApi, namespace: str, plural: str, name: str, phases: set[str]
) -> tuple[float, str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        obj = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        phase = (obj.get("status") or {}).get("phase")
        if phase in phases:
            return time.perf_counter(), str(phase)
        time.sleep(0.005)
    raise TimeoutError(f"{plural}/{name} did not reach {sorted(phases)}")


def decide_requests(
    objects: client.CustomObjectsApi, namespace: str, gate: str, count: int, pointers: int
) -> list[float]:
    latencies = []
    for i in range(count):
        name = f"{gate}-req-{i}"
        started = time.perf_counter()
        objects.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "promotionrequests",
            body(
                "PromotionRequest",
                name,
                {"pointer": f"{gate}-{i % pointers}", "release": f"rel-{i % 5}", "reason": "benchmark"},
            ),
        )
        done, phase = wait_phase(objects, namespace, "promotionrequests", name, TERMINAL)
        assert phase == "Promoted", (name, phase)
        latencies.append((done - started) * 1000)
    return latencies


def approval_round_trips(
    admin: client.CustomObjectsApi,
    approver: client.CustomObjectsApi,
    namespace: str,
    count: int,
    pointers: int,
) -> tuple[list[float], list[float]]:
    to_waiting, to_promoted = [], []
    for i in range(count):
        name = f"approval-req-{i}"
        started = time.perf_counter()
        admin.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "promotionrequests",
            body(
                "PromotionRequest",
                name,
                {"pointer": f"approval-{i % pointers}", "release": f"rel-{i % 5}", "reason": "benchmark"},
            ),
        )
        waiting_at, phase = wait_phase(admin, namespace, "promotionrequests", name, {"AwaitingApproval"})
        to_waiting.append((waiting_at - started) * 1000)
        request = admin.get_namespaced_custom_object(GROUP, VERSION, namespace, "promotionrequests", name)
        approved = time.perf_counter()
        approver.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "promotionapprovals",
            body(
                "PromotionApproval",
                f"{name}-ok",
                {
                    "request": {"name": name, "uid": request["metadata"]["uid"]},
                    "decisionDigest": request["status"]["approval"]["decisionDigest"],
                    "reason": "benchmark",
                },
            ),
        )
        done, phase = wait_phase(admin, namespace, "promotionrequests", name, TERMINAL)
        assert phase == "Promoted", (name, phase)
        to_promoted.append((done - approved) * 1000)
    return to_waiting, to_promoted


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    count, pointers = (20, 5) if args.quick else (100, 20)

    windows = window_cost()
    print(
        f"window_state, 3 Europe/Berlin windows: {windows['window_state_us']} us per policy and sweep "
        f"(1,000 distinct policies: {windows['sweep_1000_policies_ms']} ms)"
    )
    with tempfile.TemporaryDirectory() as work, ControlPlane() as cp:
        cp.kubectl("apply", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        api = config.new_client_from_config(config_file=str(cp.kubeconfig()))
        objects = client.CustomObjectsApi(api)
        namespace = "bench-gates"
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
        cp.kubectl(
            "create",
            "rolebinding",
            "alice-edit",
            "-n",
            namespace,
            "--clusterrole=cluster-admin",
            "--user=alice",
        )
        seed(objects, namespace, pointers)
        approver = client.CustomObjectsApi(
            config.new_client_from_config(config_file=str(cp.kubeconfig("alice")))
        )
        operator = OperatorProcess(
            kubeconfig=cp.kubeconfig(),
            store=str(Path(work) / "flightdeck.db"),
            log_path=Path(work) / "operator.log",
            namespaces=(namespace,),
            extra_env={"FLIGHTDECK_POINTER_RESYNC_SECONDS": "300"},
        )
        with operator:
            time.sleep(1)
            plain = summary(decide_requests(objects, namespace, "plain", count, pointers))
            print(
                f"create -> Decided, no gates (through the webhook): p50 {plain['p50_ms']} ms, p99 {plain['p99_ms']} ms"
            )
            gated = summary(decide_requests(objects, namespace, "windows", count, pointers))
            print(
                f"create -> Decided, three promotion windows: p50 {gated['p50_ms']} ms, p99 {gated['p99_ms']} ms"
            )
            waiting, promoted = approval_round_trips(objects, approver, namespace, count, pointers)
            to_waiting, to_promoted = summary(waiting), summary(promoted)
            print(
                f"create -> AwaitingApproval: p50 {to_waiting['p50_ms']} ms, p99 {to_waiting['p99_ms']} ms; "
                f"approval -> Promoted: p50 {to_promoted['p50_ms']} ms, p99 {to_promoted['p99_ms']} ms"
            )
    print(
        json.dumps(
            {
                "benchmark": "gates",
                "windows": windows,
                "plain": plain,
                "windows_gate": gated,
                "to_awaiting_approval": to_waiting,
                "approval_to_promoted": to_promoted,
            }
        )
    )


if __name__ == "__main__":
    main()
