"""Operator memory under sustained decisions, with and without retention, and restart time.

    .venv/bin/python benchmarks/memory.py retention --minutes 30     # S2: 1,000 pointers, 20/s
    .venv/bin/python benchmarks/memory.py resident --requests 10000  # S1: KB per resident request
    .venv/bin/python benchmarks/memory.py restart --pointers 5000    # restart -> first decision

On the local control plane (kube-apiserver + etcd from the Go modules), the operator as a child
process with a SQLite store and its admission webhook, load from ``localdev.load``.

- retention: a steady ``--rate`` of requests over ``--pointers`` pointers for ``--minutes``, with
  retention on (TTL 120 s, minimum age 60 s, newest 1 per pointer, cap 2,000, a pass every 10 s):
  operator RSS (VmRSS) and resident decided requests every 10 s; plateau = median RSS of the last
  half of the run, peak = the highest sample.
- resident: retention off; requests decided in stages, RSS after each stage has settled (a sweep
  and a 30 s pause); KB per resident request = the RSS slope between the stages.
- restart: ``--pointers`` pointers (and their decided requests) exist; the operator is stopped, a
  request is created, and a new operator is started: seconds from its start to that decision.

Every sample goes to a CSV under benchmarks/results/; ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This folder holds http.py, which would shadow the standard library's http package (urllib
# imports it) if the folder came first on sys.path, as it does for a script: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import urllib.request  # noqa: E402

from flightdeck_operator.kube.gateway import KubeGateway, load_api_client  # noqa: E402
from flightdeck_operator.localdev.controlplane import ControlPlane  # noqa: E402
from flightdeck_operator.localdev.load import DecisionWatch, SteadyLoad, pointer_name, seed_fleet  # noqa: E402
from flightdeck_operator.localdev.processes import OperatorProcess  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
NAMESPACE = "bench"
RETENTION = {
    "FLIGHTDECK_REQUEST_TTL_SECONDS": "120",
    "FLIGHTDECK_MIN_DECIDED_AGE_SECONDS": "60",
    "FLIGHTDECK_RETAIN_PER_POINTER": "1",
    "FLIGHTDECK_RETAIN_MAX": "2000",
    "FLIGHTDECK_GC_INTERVAL_SECONDS": "10",
    "FLIGHTDECK_GC_DELETES_PER_SECOND": "100",
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def metric(operator: OperatorProcess, name: str) -> float | None:
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def write_csv(name: str, header: list[str], rows: list[list[Any]]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.csv"
    path.write_text("\n".join(",".join(str(v) for v in row) for row in [header, *rows]) + "\n")
    return path


# --allocator malloc: CPython's objects from glibc's malloc (which malloc_trim can give back)
# instead of its own arenas, and two glibc arenas instead of one per thread.
ALLOCATORS = {"pymalloc": {}, "malloc": {"PYTHONMALLOC": "malloc", "MALLOC_ARENA_MAX": "2"}}
allocator: dict[str, str] = {}


def operator_for(
    cp: ControlPlane, work: Path, env: dict[str, str], name: str = "operator"
) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig=cp.kubeconfig(),
        store=str(work / "flightdeck.db"),
        log_path=work / f"{name}.log",
        namespaces=(NAMESPACE,),
        extra_env={"FLIGHTDECK_POINTER_RESYNC_SECONDS": "30", **allocator, **env},
    )


def prepare(cp: ControlPlane, pointers: int) -> KubeGateway:
    cp.kubectl("apply", "-f", str(REPO / "crds"))
    cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    cp.kubectl("create", "namespace", NAMESPACE)
    gateway = KubeGateway(load_api_client(str(cp.kubeconfig()), pool_size=16))
    started = time.monotonic()
    seed_fleet(gateway, NAMESPACE, pointers)
    print(f"seeded {pointers} pointers in {time.monotonic() - started:.0f}s", flush=True)
    return gateway


def work_directory(mode: str) -> Path:
    """Kept when a run fails (the operator's log is there); removed after a run that completes."""
    work = Path(tempfile.mkdtemp(prefix=f"flightdeck-bench-{mode}-"))
    print(f"work directory (operator log): {work}", flush=True)
    return work


def check_alive(operator: OperatorProcess) -> None:
    assert operator.process is not None
    if operator.process.poll() is not None:
        raise RuntimeError(
            f"the operator exited with {operator.process.returncode} (70: leadership lost, 71: fenced):\n"
            f"{operator.log_tail(40)}"
        )


def run_retention(args: argparse.Namespace) -> dict[str, Any]:
    work = work_directory("retention")
    with ControlPlane() as cp:
        gateway = prepare(cp, args.pointers)
        with operator_for(cp, work, RETENTION) as operator:
            assert operator.process is not None
            pid = operator.process.pid
            watch = DecisionWatch(gateway, NAMESPACE)
            load = SteadyLoad(gateway, NAMESPACE, args.pointers, args.rate)
            started = time.monotonic()
            load.start()
            rows: list[list[Any]] = []
            try:
                while time.monotonic() - started < args.minutes * 60:
                    time.sleep(10)
                    check_alive(operator)
                    elapsed = time.monotonic() - started
                    resident = metric(operator, "flightdeck_requests_resident")
                    deleted = sum(
                        metric(operator, f'flightdeck_gc_deleted_total{{reason="{r}"}}') or 0
                        for r in ("ttl", "cap")
                    )
                    row = [
                        round(elapsed),
                        round(rss_mb(pid), 1),
                        resident,
                        watch.count(),
                        len(load.created),
                        deleted,
                    ]
                    rows.append(row)
                    print(
                        f"t={row[0]:>5}s rss={row[1]:>6} MB resident={resident} decided={row[3]} created={row[4]}",
                        flush=True,
                    )
            finally:
                load.stop()
            latencies = [watch.decided[n] - t for n, t in load.created.items() if n in watch.decided]
            watch.stop()
        path = write_csv(
            "memory-retention", ["t_s", "rss_mb", "resident", "decided", "created", "deleted"], rows
        )
        shutil.rmtree(work, ignore_errors=True)
        second_half = [r[1] for r in rows[len(rows) // 2 :]]
        return {
            "mode": "retention",
            "pointers": args.pointers,
            "rate_per_s": args.rate,
            "minutes": args.minutes,
            "decided": len(latencies),
            "decisions_per_s": round(len(latencies) / (args.minutes * 60), 1),
            "rss_plateau_mb": round(statistics.median(second_half), 1),
            "rss_peak_mb": max(r[1] for r in rows),
            "resident_plateau": statistics.median([r[2] or 0 for r in rows[len(rows) // 2 :]]),
            "latency_p50_ms": round(percentile(latencies, 0.5) * 1000),
            "latency_p99_ms": round(percentile(latencies, 0.99) * 1000),
            "csv": str(path.relative_to(REPO)),
        }


def run_resident(args: argparse.Namespace) -> dict[str, Any]:
    stages = [args.requests * (i + 1) // args.stages for i in range(args.stages)]
    with tempfile.TemporaryDirectory() as work_dir, ControlPlane() as cp:
        work = Path(work_dir)
        gateway = prepare(cp, args.pointers)
        with operator_for(cp, work, {"FLIGHTDECK_RETENTION_ENABLED": "false"}) as operator:
            assert operator.process is not None
            pid = operator.process.pid
            watch = DecisionWatch(gateway, NAMESPACE)
            time.sleep(40)  # the first sweep of the pointers
            rows = [[0, round(rss_mb(pid), 1)]]
            print(f"0 decided: {rows[0][1]} MB", flush=True)
            load = SteadyLoad(gateway, NAMESPACE, args.pointers, args.rate)
            load.start()
            for target in stages:
                while len(load.created) < target:
                    time.sleep(0.5)
                if target == stages[-1]:
                    load.stop()
                names = sorted(load.created)[:target]
                watch.wait_for(names, timeout=1800)
                time.sleep(45)  # a sweep and malloc_trim; the burst's garbage collected
                rows.append([watch.count(), round(rss_mb(pid), 1)])
                print(f"{rows[-1][0]} decided: {rows[-1][1]} MB", flush=True)
            load.stop()
            watch.stop()
        path = write_csv("memory-resident", ["decided_resident", "rss_mb"], rows)
        slopes = [
            (b[1] - a[1]) * 1024 / (b[0] - a[0]) for a, b in itertools.pairwise(rows[1:]) if b[0] > a[0]
        ]
        overall = (rows[-1][1] - rows[0][1]) * 1024 / max(1, rows[-1][0])
        return {
            "mode": "resident",
            "pointers": args.pointers,
            "stages": rows,
            "kb_per_request_overall": round(overall, 1),
            "kb_per_request_between_stages": [round(s, 1) for s in slopes],
            "csv": str(path.relative_to(REPO)),
        }


def run_restart(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as work_dir, ControlPlane() as cp:
        work = Path(work_dir)
        gateway = prepare(cp, args.pointers)
        watch = DecisionWatch(gateway, NAMESPACE)
        timings = []
        with operator_for(cp, work, {"FLIGHTDECK_RETENTION_ENABLED": "false"}) as operator:
            load = SteadyLoad(gateway, NAMESPACE, args.pointers, args.rate, prefix="resident")
            load.start()
            while len(load.created) < args.requests:
                time.sleep(0.5)
            load.stop()
            watch.wait_for(load.created, timeout=1800)
            print(f"{args.pointers} pointers, {watch.count()} decided requests", flush=True)
            for attempt in range(args.restarts):
                operator.stop()  # graceful: the Lease is released
                name = f"after-restart-{attempt}"
                gateway.create(
                    "promotionrequests",
                    NAMESPACE,
                    {
                        "apiVersion": "flightdeck.dev/v1alpha1",
                        "kind": "PromotionRequest",
                        "metadata": {"name": name},
                        "spec": {"pointer": pointer_name(attempt), "release": "rel-b", "reason": "restart"},
                    },
                )
                started = time.monotonic()
                operator.start()
                watch.wait_for([name], timeout=300)
                timings.append(round(watch.decided[name] - started, 2))
                print(f"restart {attempt}: start -> first decision {timings[-1]} s", flush=True)
        watch.stop()
        return {
            "mode": "restart",
            "pointers": args.pointers,
            "decided_resident": args.requests,
            "start_to_first_decision_s": timings,
            "median_s": statistics.median(timings),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["retention", "resident", "restart"])
    parser.add_argument("--pointers", type=int, default=None, help="default: 1,000 (restart: 5,000)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests created per second")
    parser.add_argument("--minutes", type=float, default=30.0, help="retention: how long the load runs")
    parser.add_argument("--requests", type=int, default=10_000, help="resident/restart: decided requests")
    parser.add_argument("--stages", type=int, default=4, help="resident: RSS measured after each stage")
    parser.add_argument("--restarts", type=int, default=3, help="restart: how many restarts are timed")
    parser.add_argument("--allocator", choices=sorted(ALLOCATORS), default="pymalloc")
    args = parser.parse_args()
    allocator.update(ALLOCATORS[args.allocator])
    if args.pointers is None:
        args.pointers = 5000 if args.mode == "restart" else 1000
    if args.mode == "restart" and args.requests == 10_000:
        args.requests = 2000  # what retention's cap leaves resident
    run = {"retention": run_retention, "resident": run_resident, "restart": run_restart}[args.mode]
    result = run(args)
    print(json.dumps({**result, "allocator": args.allocator}))


if __name__ == "__main__":
    main()
