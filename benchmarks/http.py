"""The sidecar HTTP API over real HTTP, next to the reference tool measured in the same run.

    .venv/bin/python benchmarks/http.py                 # 200k events, 100 + 100 promotes, reference too
    .venv/bin/python benchmarks/http.py --quick         # 20k events, 20 + 20 promotes
    .venv/bin/python benchmarks/http.py --skip-reference

Measures, in one run, on the real local API server with the operator and the sidecar as child
processes (``--auth kubernetes``, a real bearer token, SQLite store):
- ingestion: run events per second through ``POST /v1/events`` in batches of 1,000 (one client,
  one keep-alive connection, bodies encoded before the clock starts), best and median of 3 passes
  over fresh events; then the same batches again (all duplicates);
- OTLP ingestion: the same runs as traces (4 spans per run, 512-span protobuf requests as the
  Python exporter sends them) through ``POST /v1/traces``, in runs per second from the first
  request until the last run event is stored (settle time 1 s, included), and the rate at which
  requests were answered; 503s are retried after Retry-After, as the exporter does;
- promote round trip (HTTP request to answer, i.e. create the PromotionRequest, the operator's
  decision, the watch seeing it): p50/p99 for passing promotes (alternating two releases under a
  permissive policy) and for blocked ones (409, the quickstart's cost breach);
- the reference (``flightdeck-ai`` from PyPI, installed into a throwaway virtualenv under /tmp):
  ``flightdeck init`` + ``flightdeck serve``, and the same ingestion batches posted to it, its
  passes interleaved with the sidecar's (sidecar events, reference events, sidecar traces), so a
  change in the machine's load during the run falls on both sides alike.

Prints its figures and ends with one JSON line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py, which would shadow the standard library's ``http`` package for
# everything imported below (run as a script, its folder is sys.path[0]): keep that folder last.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Final  # noqa: E402

import httpx  # noqa: E402
import yaml  # noqa: E402

from _common import kube_object  # noqa: E402
from _otlp import trace_bodies  # noqa: E402
from _reference import Reference, ReferenceUnavailable, reference_server  # noqa: E402
from flightdeck_operator.localdev.controlplane import ControlPlane  # noqa: E402
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess  # noqa: E402

REPO: Final = Path(__file__).resolve().parents[1]
NAMESPACE: Final = "bench"
BATCH: Final = 1000
PASSES: Final = 3
INGEST_AGENT: Final = "agent-ingest"
# The sidecar's OTLP settings in this benchmark: a trace becomes run events 1 s after its run
# span arrived (default 10 s: a latency, not a rate), and a full staging area is retried after 1 s.
OTLP_ENV: Final = {
    "FLIGHTDECK_OTLP_SETTLE_SECONDS": "1",
    "FLIGHTDECK_OTLP_FINALIZE_INTERVAL_SECONDS": "0.25",
    "FLIGHTDECK_OTLP_RETRY_AFTER_SECONDS": "1",
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- fixtures ---------------------------------------------------------------------------------------


def event_bodies(count: int, tag: str) -> list[bytes]:
    """``count`` reference run events in batches of 1,000, JSON-encoded (timestamps in the last hour)."""
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)).isoformat()
    bodies = []
    for start in range(0, count, BATCH):
        events = [
            {
                "timestamp": at,
                "agent_id": "agent-ingest",
                "release_id": f"ingest-{tag}",
                "run_id": f"{tag}-{i:09d}",
                "tenant_id": "tenant-a",
                "task_id": "support",
                "environment": "local",
                "metrics": {"latency_ms": 900 + i % 200, "success": i % 50 != 0},
                "usage": {
                    "model": {
                        "provider": "openai",
                        "model": "gpt-4.1-mini",
                        "input_tokens": 1000,
                        "output_tokens": 500,
                    }
                },
            }
            for i in range(start, min(count, start + BATCH))
        ]
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


def kube_objects() -> list[dict[str, Any]]:
    """Two agents: one whose promotes pass, one whose candidate is always blocked (cost 5 > 4)."""

    def table(name: str, rates: tuple[float, float]) -> dict[str, Any]:
        entry = {"model": "gpt-4.1-mini", "inputUsdPer1kTokens": rates[0], "outputUsdPer1kTokens": rates[1]}
        return kube_object(
            "PricingTable", name, {"provider": "openai", "pricingVersion": name, "entries": [entry]}
        )

    def release(name: str, agent: str, pricing: str) -> dict[str, Any]:
        return kube_object(
            "AgentRelease",
            name,
            {
                "agentId": agent,
                "version": "1.0.0",
                "runtime": {"provider": "openai", "model": "gpt-4.1-mini"},
                "pricingReference": {"provider": "openai", "pricingVersion": pricing},
                "checksum": "0" * 64,
            },
        )

    def gate(name: str, max_cost: float) -> dict[str, Any]:
        spec = {
            "maxCostPerRunUsd": max_cost,
            "minCandidateRuns": 1,
            "minBaselineRuns": 1,
            "minLowRuns": 1,
            "requireHighDiffConfidence": False,
        }
        return kube_object("PromotionPolicy", name, spec)

    otlp_releases = [release(f"ingest-otlp{i}", INGEST_AGENT, "baseline-pricing") for i in range(PASSES)]
    return [
        *otlp_releases,
        table("baseline-pricing", (1.0, 2.0)),
        table("candidate-pricing", (3.0, 4.0)),
        gate("permissive", 10.0),
        gate("strict", 4.0),
        release("pass-a", "agent-pass", "baseline-pricing"),
        release("pass-b", "agent-pass", "candidate-pricing"),
        release("block-base", "agent-block", "baseline-pricing"),
        release("block-cand", "agent-block", "candidate-pricing"),
        kube_object(
            "ReleasePointer",
            "pass-local",
            {"agentId": "agent-pass", "environment": "local", "policyRef": {"name": "permissive"}},
        ),
        kube_object(
            "ReleasePointer",
            "block-local",
            {"agentId": "agent-block", "environment": "local", "policyRef": {"name": "strict"}},
        ),
    ]


def evidence_events() -> list[dict[str, Any]]:
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    return [
        {
            "timestamp": at,
            "agent_id": agent,
            "release_id": release,
            "run_id": f"evidence-{release}",
            "tenant_id": "t",
            "task_id": "k",
            "environment": "local",
            "metrics": {"latency_ms": 1000, "success": True},
            "usage": {
                "model": {
                    "provider": "openai",
                    "model": "gpt-4.1-mini",
                    "input_tokens": 1000,
                    "output_tokens": 500,
                }
            },
        }
        for agent, release in (
            ("agent-pass", "pass-a"),
            ("agent-pass", "pass-b"),
            ("agent-block", "block-base"),
            ("agent-block", "block-cand"),
        )
    ]


# --- measurements -----------------------------------------------------------------------------------


def ingest_rate(url: str, bodies: list[bytes], headers: dict[str, str]) -> tuple[float, int]:
    """Events per second for posting ``bodies`` one after another on one connection."""
    inserted = 0
    with httpx.Client(
        base_url=url, headers={**headers, "Content-Type": "application/json"}, timeout=120
    ) as http:
        http.get("/health")  # open the connection before the clock starts
        started = time.perf_counter()
        for body in bodies:
            response = http.post("/v1/events", content=body)
            response.raise_for_status()
            inserted += int(response.json()["inserted"])
        elapsed = time.perf_counter() - started
    events = sum(body.count(b'"run_id"') for body in bodies)
    return events / elapsed, inserted


def events_pass(url: str, headers: dict[str, str], events: int, label: str) -> tuple[float, list[bytes]]:
    """One pass of fresh events; returns the rate and the bodies (for the duplicates pass)."""
    bodies = event_bodies(events, label)
    rate, inserted = ingest_rate(url, bodies, headers)
    if inserted != events:
        raise RuntimeError(f"{label}: expected {events} new events, the server inserted {inserted}")
    return rate, bodies


def duplicates_rate(url: str, headers: dict[str, str], bodies: list[bytes], label: str) -> float:
    rate, again = ingest_rate(url, bodies, headers)
    if again != 0:
        raise RuntimeError(f"{label}: duplicates were inserted again ({again})")
    return rate


def events_summary(events: int, rates: list[float], duplicates: float) -> dict[str, Any]:
    return {
        "events_per_pass": events,
        "batch": BATCH,
        "best_events_per_s": round(max(rates)),
        "median_events_per_s": round(statistics.median(rates)),
        "duplicates_events_per_s": round(duplicates),
    }


def otlp_rate(url: str, bodies: list[bytes], headers: dict[str, str], runs: int) -> dict[str, Any]:
    """Runs per second through POST /v1/traces: until answered, and until stored as run events."""
    retries = 0
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:

        def emitted() -> int:
            return int(http.get("/v1/otlp/status").json()["totals"]["runs_emitted"])

        before = emitted()
        started = time.perf_counter()
        for body in bodies:
            while True:
                response = http.post(
                    "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
                )
                if response.status_code == 503:  # staging full: the exporter waits Retry-After
                    retries += 1
                    time.sleep(float(response.headers["retry-after"]))
                    continue
                response.raise_for_status()
                if response.content:
                    raise RuntimeError(f"partial success: {response.content!r}")
                break
        answered = time.perf_counter()
        while emitted() - before < runs:
            time.sleep(0.05)
        stored = time.perf_counter()
    return {
        "answered_runs_per_s": runs / (answered - started),
        "stored_runs_per_s": runs / (stored - started),
        "retries": retries,
    }


def otlp_summary(runs: int, requests: int, passes: list[dict[str, Any]]) -> dict[str, Any]:
    stored = [p["stored_runs_per_s"] for p in passes]
    return {
        "runs_per_pass": runs,
        "spans_per_run": 4,
        "requests_per_pass": requests,
        "best_runs_per_s": round(max(stored)),
        "median_runs_per_s": round(statistics.median(stored)),
        "median_answered_runs_per_s": round(statistics.median(p["answered_runs_per_s"] for p in passes)),
        "retries_503": sum(p["retries"] for p in passes),
    }


def round_trips(http: httpx.Client, bodies: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    times = []
    for body in bodies:
        started = time.perf_counter()
        response = http.post("/v1/promote", json=body)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != expected:
            raise RuntimeError(f"expected {expected}, got {response.status_code}: {response.text}")
    return {
        "requests": len(times),
        "p50_ms": round(percentile(times, 0.50), 1),
        "p99_ms": round(percentile(times, 0.99), 1),
        "mean_ms": round(statistics.fmean(times), 1),
    }


def promotions(url: str, headers: dict[str, str], count: int) -> dict[str, Any]:
    def body(release: str) -> dict[str, Any]:
        return {"release_id": release, "environment": "local", "window": "7d", "reason": "bench"}

    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        http.post("/v1/events", json={"events": evidence_events()}).raise_for_status()
        for first in ("pass-a", "block-base"):  # first promotions (no diff), not measured
            http.post("/v1/promote", json=body(first)).raise_for_status()
        passing = round_trips(http, [body("pass-b" if i % 2 == 0 else "pass-a") for i in range(count)], 200)
        blocked = round_trips(http, [body("block-cand") for _ in range(count)], 409)
    return {"passing": passing, "blocked": blocked}


# --- main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--skip-reference", action="store_true", help="do not install and run flightdeck-ai")
    args = parser.parse_args()
    events, promotes = (20_000, 20) if args.quick else (200_000, 100)

    with contextlib.ExitStack() as stack:
        work = stack.enter_context(tempfile.TemporaryDirectory())
        reference: Reference | None = None
        skipped = "--skip-reference"
        if not args.skip_reference:
            try:
                reference = stack.enter_context(reference_server())
            except ReferenceUnavailable as error:
                skipped = str(error)
        cp = stack.enter_context(ControlPlane())
        cp.kubectl("apply", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl("create", "namespace", NAMESPACE)
        cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(kube_objects()))
        store = str(Path(work) / "flightdeck.db")
        headers = {"Authorization": f"Bearer {cp.identity('admin').token}"}
        stack.enter_context(
            OperatorProcess(
                kubeconfig=cp.kubeconfig(),
                store=store,
                log_path=Path(work) / "operator.log",
                namespaces=(NAMESPACE,),
            )
        )
        sidecar = stack.enter_context(
            SidecarProcess(
                kubeconfig=cp.kubeconfig(),
                store=store,
                namespace=NAMESPACE,
                log_path=Path(work) / "sidecar.log",
                extra_env=OTLP_ENV,
            )
        )
        # Passes interleaved (sidecar events, reference events, sidecar traces), so that a change in
        # the machine's load during the run falls on both sides alike.
        our_rates: list[float] = []
        reference_rates: list[float] = []
        otlp_passes: list[dict[str, Any]] = []
        requests = 0
        for attempt in range(PASSES):
            rate, our_bodies = events_pass(sidecar.url, headers, events, f"sidecar{attempt}")
            our_rates.append(rate)
            if reference is not None:
                rate, reference_bodies = events_pass(reference.url, {}, events, f"reference{attempt}")
                reference_rates.append(rate)
            traces = trace_bodies(events, f"otlp{attempt}", agent=INGEST_AGENT, environment="local")
            requests = len(traces)
            otlp_passes.append(otlp_rate(sidecar.url, traces, headers, events))
        ours = events_summary(events, our_rates, duplicates_rate(sidecar.url, headers, our_bodies, "sidecar"))
        otlp = otlp_summary(events, requests, otlp_passes)
        reference_result: dict[str, Any] = {"skipped": skipped}
        if reference is not None:
            duplicates = duplicates_rate(reference.url, {}, reference_bodies, "reference")
            reference_result = {
                **events_summary(events, reference_rates, duplicates),
                "version": reference.version,
            }
        round_trip = promotions(sidecar.url, headers, promotes)

    print(
        f"sidecar POST /v1/events, batches of {BATCH}: best {ours['best_events_per_s']:,} events/s, "
        f"median {ours['median_events_per_s']:,} events/s ({PASSES} x {events:,} events); "
        f"duplicates {ours['duplicates_events_per_s']:,} events/s"
    )
    print(
        f"sidecar POST /v1/traces, {otlp['requests_per_pass']} requests of 512 spans per pass: "
        f"best {otlp['best_runs_per_s']:,} runs/s, median {otlp['median_runs_per_s']:,} runs/s "
        f"stored as run events ({PASSES} x {events:,} runs, settle 1 s included); answered at "
        f"{otlp['median_answered_runs_per_s']:,} runs/s (median); 503 retries: {otlp['retries_503']}"
    )
    for kind in ("passing", "blocked"):
        figures = round_trip[kind]
        print(
            f"promote round trip, {kind} ({figures['requests']} sequential): p50 {figures['p50_ms']} ms, "
            f"p99 {figures['p99_ms']} ms, mean {figures['mean_ms']} ms"
        )
    if "skipped" in reference_result:
        print(f"reference not measured: {reference_result['skipped']}")
    else:
        print(
            f"reference flightdeck-ai {reference_result['version']} POST /v1/events, batches of {BATCH}: "
            f"best {reference_result['best_events_per_s']:,} events/s, "
            f"median {reference_result['median_events_per_s']:,} events/s"
        )
        ratio = ours["median_events_per_s"] / reference_result["median_events_per_s"]
        reference_result["sidecar_median_over_reference_median"] = round(ratio, 2)
        print(f"sidecar / reference (medians): {ratio:.1f}x")
        otlp_ratio = otlp["median_runs_per_s"] / reference_result["median_events_per_s"]
        reference_result["otlp_runs_median_over_reference_median"] = round(otlp_ratio, 2)
        print(f"sidecar OTLP runs / reference JSON events (medians): {otlp_ratio:.2f}x")

    print(
        json.dumps(
            {
                "benchmark": "http",
                "ingest": ours,
                "otlp_ingest": otlp,
                "promote": round_trip,
                "reference_ingest": reference_result,
            }
        )
    )


if __name__ == "__main__":
    main()
