"""Decision latency, throughput and memory of the operator on the real local API server.

    .venv/bin/python benchmarks/decisions.py            # the full run (about 5 minutes)
    .venv/bin/python benchmarks/decisions.py --quick    # smaller sizes, for a smoke run

Measures, in one run:
- latency from create to Decided (p50, p99) for requests over 20 pointers at a steady rate;
- throughput for a burst of requests created as fast as 8 client threads can;
- operator RSS after 1,000 pointers and 5,000 decided requests exist;
- the floor: the API writes one decision needs (read pointer, write pointer status, patch request
  status, two Events), made directly with the Python client, without the operator.

Prints its figures and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# This folder holds http.py (benchmarks/http.py), which would shadow the standard library's http
# package if the folder came first on sys.path, as it does for a script: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from kubernetes import client, config, watch  # noqa: E402

from flightdeck_operator.localdev.controlplane import ControlPlane  # noqa: E402
from flightdeck_operator.localdev.processes import OperatorProcess  # noqa: E402

GROUP, VERSION = "flightdeck.dev", "v1alpha1"
REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"Promoted", "RolledBack", "Blocked", "Failed", "Evaluated"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class DecisionWatch:
    """Records, per request name, when the watch first shows a terminal phase."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.decided: dict[str, float] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        try:
            self._watch()
        except Exception:  # the control plane went away under a watch we no longer need
            if not self._stop.is_set():
                raise

    def _watch(self) -> None:
        stream = watch.Watch()
        while not self._stop.is_set():
            self._ready.set()
            for event in stream.stream(
                self.objects.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                "promotionrequests",
                timeout_seconds=30,
            ):
                obj = event["object"]
                name = obj["metadata"]["name"]
                if (obj.get("status") or {}).get("phase") in TERMINAL and name not in self.decided:
                    self.decided[name] = time.perf_counter()
                if self._stop.is_set():
                    stream.stop()
                    break

    def wait_for(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(n not in self.decided for n in names):
            if time.monotonic() > deadline:
                missing = [n for n in names if n not in self.decided]
                raise TimeoutError(f"{len(missing)} requests undecided after {timeout}s, e.g. {missing[:3]}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


def body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}


def seed(objects: client.CustomObjectsApi, namespace: str, pointers: int, releases: int) -> None:
    """A permissive policy, ``releases`` releases of one agent per pointer group and ``pointers`` pointers."""
    objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "pricingtables",
        body(
            "PricingTable",
            "prices",
            {
                "provider": "openai",
                "pricingVersion": "v1",
                "entries": [{"model": "m", "inputUsdPer1kTokens": 1.0, "outputUsdPer1kTokens": 2.0}],
            },
        ),
    )
    objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "promotionpolicies",
        body("PromotionPolicy", "open", {"minCandidateRuns": 0, "minBaselineRuns": 0, "minLowRuns": 0}),
    )
    for r in range(releases):
        objects.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "agentreleases",
            body(
                "AgentRelease",
                f"rel-{r}",
                {
                    "agentId": "bench",
                    "version": f"1.0.{r}",
                    "runtime": {"provider": "openai", "model": "m"},
                    "pricingReference": {"provider": "openai", "pricingVersion": "v1"},
                    "checksum": "0" * 64,
                },
            ),
        )
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda p: objects.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    "releasepointers",
                    body(
                        "ReleasePointer",
                        f"ptr-{p}",
                        {"agentId": "bench", "environment": f"env-{p}", "policyRef": {"name": "open"}},
                    ),
                ),
                range(pointers),
            )
        )


def create_request(
    objects: client.CustomObjectsApi, namespace: str, name: str, pointer: str, release: str
) -> float:
    started = time.perf_counter()
    objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "promotionrequests",
        body("PromotionRequest", name, {"pointer": pointer, "release": release, "reason": "benchmark"}),
    )
    return started


def steady(
    objects: client.CustomObjectsApi, watcher: DecisionWatch, namespace: str, count: int, rate: float
) -> dict[str, float]:
    created: dict[str, float] = {}
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for i in range(count):
        name = f"steady-{i}"
        created[name] = create_request(objects, namespace, name, f"ptr-{i % 20}", f"rel-{i % 5}")
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
    watcher.wait_for(list(created), timeout=120)
    latencies = [(watcher.decided[n] - t) * 1000 for n, t in created.items()]
    return {
        "requests": count,
        "rate_per_s": rate,
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "max_ms": round(max(latencies), 1),
    }


def burst(
    objects: client.CustomObjectsApi, watcher: DecisionWatch, namespace: str, count: int, pointers: int
) -> dict[str, float]:
    names = [f"burst-{i}" for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: create_request(objects, namespace, names[i], f"ptr-{i % pointers}", f"rel-{i % 5}"),
                range(count),
            )
        )
    created_s = time.perf_counter() - started
    watcher.wait_for(names, timeout=600)
    elapsed = max(watcher.decided[n] for n in names) - started
    return {
        "requests": count,
        "pointers": pointers,
        "create_s": round(created_s, 2),
        "elapsed_s": round(elapsed, 2),
        "decisions_per_s": round(count / elapsed, 1),
    }


def api_floor(
    api: client.ApiClient, objects: client.CustomObjectsApi, namespace: str, decisions: int
) -> dict[str, float]:
    """The API writes of one passing decision, made directly: the operator cannot beat this."""
    core = client.CoreV1Api(api)
    timings = []
    for i in range(decisions):
        request_name = f"floor-{i}"
        objects.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "promotionrequests",
            body(
                "PromotionRequest",
                request_name,
                {"pointer": "floor-ptr", "release": "rel-0", "reason": "floor", "dryRun": True},
            ),
        )
        started = time.perf_counter()
        ptr = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "releasepointers", "floor-ptr")
        ptr["status"] = {"releaseId": f"rel-{i % 5}", "ledgerSeq": i + 1}
        objects.replace_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "releasepointers", "floor-ptr", ptr
        )
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "promotionrequests", request_name, {"status": {"phase": "Promoted"}}
        )
        for involved, kind in ((request_name, "PromotionRequest"), ("floor-ptr", "ReleasePointer")):
            core.create_namespaced_event(
                namespace,
                client.CoreV1Event(
                    metadata=client.V1ObjectMeta(name=f"{involved}.{uuid.uuid4().hex[:10]}"),
                    involved_object=client.V1ObjectReference(
                        api_version=f"{GROUP}/{VERSION}", kind=kind, name=involved, namespace=namespace
                    ),
                    reason="Promoted",
                    message="floor",
                    type="Normal",
                ),
            )
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "decisions": decisions,
        "p50_ms": round(percentile(timings, 0.5), 2),
        "mean_ms": round(statistics.fmean(timings), 2),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    steady_count, burst_count, rss_pointers, rss_requests = (
        (40, 100, 50, 200) if args.quick else (200, 500, 1000, 5000)
    )

    with tempfile.TemporaryDirectory() as work, ControlPlane() as cp:
        cp.kubectl("apply", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        api = config.new_client_from_config(config_file=str(cp.kubeconfig()))
        objects = client.CustomObjectsApi(api)
        namespace = "bench"
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
        seed(objects, namespace, pointers=20, releases=5)
        objects.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "releasepointers",
            body(
                "ReleasePointer",
                "floor-ptr",
                {"agentId": "bench", "environment": "floor", "policyRef": {"name": "open"}},
            ),
        )
        floor = api_floor(api, objects, namespace, 50)
        print(f"API floor per decision (direct writes): p50 {floor['p50_ms']} ms, mean {floor['mean_ms']} ms")

        operator = OperatorProcess(
            kubeconfig=cp.kubeconfig(),
            store=str(Path(work) / "flightdeck.db"),
            log_path=Path(work) / "operator.log",
            extra_env={"FLIGHTDECK_POINTER_RESYNC_SECONDS": "300"},
        )
        with operator:
            assert operator.process is not None
            watcher = DecisionWatch(api, namespace)
            time.sleep(2)  # let the floor's dry-run requests settle
            latency = steady(objects, watcher, namespace, steady_count, rate=10.0)
            print(
                f"create -> Decided over 20 pointers at {latency['rate_per_s']}/s: p50 {latency['p50_ms']} ms, "
                f"p99 {latency['p99_ms']} ms (n={latency['requests']})"
            )
            throughput = burst(objects, watcher, namespace, burst_count, pointers=20)
            print(
                f"burst of {throughput['requests']} over 20 pointers: {throughput['decisions_per_s']} decisions/s "
                f"({throughput['elapsed_s']} s; creating took {throughput['create_s']} s)"
            )
            watcher.stop()

            scale_ns = "bench-scale"
            client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=scale_ns))
            )
            seed(objects, scale_ns, pointers=rss_pointers, releases=5)
            scale_watch = DecisionWatch(api, scale_ns)
            names = [f"scale-{i}" for i in range(rss_requests)]
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda i: create_request(
                            objects, scale_ns, names[i], f"ptr-{i % rss_pointers}", f"rel-{i % 5}"
                        ),
                        range(rss_requests),
                    )
                )
            scale_watch.wait_for(names, timeout=1200)
            scale_watch.stop()
            time.sleep(3)
            rss = rss_mb(operator.process.pid)
            print(
                f"operator RSS with {rss_pointers + 21} pointers and {rss_requests + steady_count + burst_count} decided requests: {rss:.0f} MB"
            )

    result = {
        "benchmark": "decisions",
        "latency": latency,
        "burst": throughput,
        "rss_mb": round(rss, 1),
        "rss_pointers": rss_pointers,
        "rss_requests": rss_requests,
        "api_floor": floor,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
