"""The dashboard's Overview with 1,000 pointers and 100,000 ledger entries, and each page's weight.

    FLIGHTDECK_BIN_DIR=$(hack/build-control-plane.sh) .venv/bin/python benchmarks/dashboard.py

Starts the local control plane, creates 1,000 ReleasePointers (with the status the operator's
projection writes) and a ledger of 100,000 entries (moves of those pointers, appended through the
store as the operator does), then runs a real sidecar and times ``GET /ui/fragments/overview``:
the HTML of the Overview, built from the API server and the store on every request. The first
request also verifies the whole chain once (it is then verified piece by piece); it is reported
apart. Page weight: the shell, the fragment and every asset the page loads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/http.py would shadow the standard library's http package if the folder came first on
# sys.path, as it does for a script: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402

from flightdeck_operator.engine.ledger import LedgerKind, LedgerRecord, request_key  # noqa: E402
from flightdeck_operator.engine.models import PolicyResult  # noqa: E402
from flightdeck_operator.kube.gateway import KubeGateway, load_api_client  # noqa: E402
from flightdeck_operator.localdev.controlplane import ControlPlane  # noqa: E402
from flightdeck_operator.localdev.processes import SidecarProcess  # noqa: E402
from flightdeck_operator.store import open_store  # noqa: E402

NAMESPACE = "bench"
ASSETS = ("app.css", "app.js", "favicon.svg", "vendor/htmx.min.js")
COMPARE_ASSETS = ("charts.js", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css")


def pointer_body(n: int) -> dict[str, object]:
    return {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "ReleasePointer",
        "metadata": {"name": f"agent-{n:04d}-production", "namespace": NAMESPACE},
        "spec": {"agentId": f"agent-{n:04d}", "environment": "production"},
    }


def fill_ledger(store_path: str, pointers: int, entries: int) -> dict[str, tuple[int, str]]:
    """``entries`` promotions spread over the pointers; returns each pointer's last (seq, release)."""
    now = dt.datetime.now(dt.UTC)
    heads: dict[str, tuple[int, str]] = {}
    with open_store(store_path) as store:
        for i in range(entries):
            n = i % pointers
            name = f"agent-{n:04d}-production"
            release = f"agent-{n:04d}-r{i // pointers}"
            entry = store.append(
                LedgerRecord(
                    kind=LedgerKind.PROMOTE,
                    idempotency_key=request_key(f"uid-{i}"),
                    request_uid=f"uid-{i}",
                    actor="ci",
                    namespace=NAMESPACE,
                    pointer=name,
                    agent_id=f"agent-{n:04d}",
                    environment="production",
                    release_id=release,
                    pointer_changed=True,
                    reason="benchmark",
                    policy_result=PolicyResult(passed=True, reasons=("ok",), evaluated_at=now),
                    created_at=now,
                )
            )
            heads[name] = (entry.seq, release)
    return heads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pointers", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="flightdeck-dashboard-bench-") as work_dir, ControlPlane() as cp:
        work = Path(work_dir)
        cp.kubectl("apply", "-f", str(Path(__file__).resolve().parents[1] / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl("create", "namespace", NAMESPACE)
        store_path = str(work / "flightdeck.db")
        started = time.perf_counter()
        heads = fill_ledger(store_path, args.pointers, args.entries)
        print(f"ledger: {args.entries} entries in {time.perf_counter() - started:.1f} s")

        gateway = KubeGateway(load_api_client(str(cp.kubeconfig())))
        started = time.perf_counter()
        for n in range(args.pointers):
            body = gateway.create("releasepointers", NAMESPACE, pointer_body(n))
            seq, release = heads[body["metadata"]["name"]]
            gateway.patch_status(
                "releasepointers",
                NAMESPACE,
                body["metadata"]["name"],
                {
                    "releaseId": release,
                    "ledgerSeq": seq,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "InSync",
                            "message": f"Release {release} is live (ledger seq {seq})",
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        }
                    ],
                },
            )
        print(f"pointers: {args.pointers} created with status in {time.perf_counter() - started:.1f} s")

        with (
            SidecarProcess(
                kubeconfig=cp.kubeconfig(),
                store=store_path,
                namespace=NAMESPACE,
                log_path=work / "sidecar.log",
                args=("--auth", "none"),
            ) as sidecar,
            httpx.Client(base_url=sidecar.url, timeout=120) as http,
        ):
            started = time.perf_counter()
            first = http.get("/ui/fragments/overview")
            if first.status_code != 200:
                raise SystemExit(f"overview answered {first.status_code}:\n{sidecar.log_tail(80)}")
            print(
                f"first overview (verifies the whole chain once): {(time.perf_counter() - started) * 1000:.0f} ms"
            )
            timings = []
            for _ in range(args.requests):
                started = time.perf_counter()
                answer = http.get("/ui/fragments/overview")
                timings.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
            timings.sort()
            p99 = timings[min(len(timings) - 1, round(0.99 * (len(timings) - 1)))]
            print(
                f"overview HTML, {args.pointers} pointers, {args.entries} ledger entries: "
                f"p50 {statistics.median(timings):.0f} ms, p99 {p99:.0f} ms, max {timings[-1]:.0f} ms "
                f"({args.requests} requests, {len(answer.content) / 1024:.0f} KiB)"
            )
            assets = {
                asset: len(http.get(f"/ui/static/{asset}").content) for asset in (*ASSETS, *COMPARE_ASSETS)
            }
            shell = len(http.get("/ui/").content)
            overview_weight = shell + len(answer.content) + sum(assets[a] for a in ASSETS)
            compare_weight = len(http.get("/ui/compare").content) + sum(assets.values())
            print(
                f"page weight: overview {overview_weight / 1024:.0f} KiB (its first page: 100 pointers), "
                f"compare {compare_weight / 1024:.0f} KiB before data; assets {assets}"
            )


if __name__ == "__main__":
    main()
