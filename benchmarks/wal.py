"""The SQLite write-ahead log under sustained ingest while the operator decides, one file shared.

    .venv/bin/python benchmarks/wal.py                     # 1M events (2 to 3 minutes here)
    .venv/bin/python benchmarks/wal.py --live              # the same, events timestamped now
    .venv/bin/python benchmarks/wal.py --events 300000     # a shorter run
    .venv/bin/python benchmarks/wal.py --quick             # 100k events, smoke run

On the real local API server, the operator and the sidecar run as child processes on one SQLite
file (as in the demo). One client posts reference-sized run events (about 690 bytes each on the
wire) to the sidecar's ``POST /v1/events`` in batches of 1,000, bodies encoded before the clock
starts, while a second client sends a ``POST /v1/promote`` about once a second (the operator decides
each PromotionRequest: an evidence query over the ingested releases and a ledger append).

Reports the WAL's peak size (sampled every 10 ms and after every batch), the database size, and the
ingest rate per 100k events (first and last 100k compared: over the whole chunk, and the median
batch's, which other load on the machine moves less), then one JSON line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This folder holds http.py (benchmarks/http.py), which would shadow the standard library's http
# package if the folder came first on sys.path, as it does for a script: keep it last.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Final  # noqa: E402

import httpx  # noqa: E402
import yaml  # noqa: E402

from _common import kube_object, reference_event  # noqa: E402
from flightdeck_operator.localdev.controlplane import ControlPlane  # noqa: E402
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess  # noqa: E402

REPO: Final = Path(__file__).resolve().parents[1]
NAMESPACE: Final = "bench-wal"
BATCH: Final = 1000
CHUNK: Final = 100_000  # the ingest rate is reported per this many events
RELEASES: Final = ("wal-a", "wal-b")
WAL_GOAL_BYTES: Final = 64 * 1024 * 1024  # or 5 % of the database, whichever is larger
RATE_GOAL: Final = 0.85  # the last chunk's rate at least this fraction of the first's
PROMOTE_INTERVAL_S: Final = 1.0
MB: Final = 1_000_000


def event_bodies(count: int, *, live: bool) -> list[bytes]:
    """``count`` events in batches of 1,000, JSON-encoded.

    Timestamps: spread over the 24 whole hours before the current one, so the operator's evidence
    comes from the hourly buckets; or, ``live``, all now, so (unless the run crosses an hour) each
    decision reads the current hour's events row by row: long read transactions.
    """
    now = dt.datetime.now(dt.UTC)
    last = now.replace(minute=0, second=0, microsecond=0)
    step = dt.timedelta(hours=24) / count
    timestamps = [now] * count if live else [last - step * (count - i) for i in range(count)]
    return [
        json.dumps(
            {
                "events": [
                    reference_event(
                        i, timestamp=timestamps[i], release_id=RELEASES[i // BATCH % 2], agent_id="agent-wal"
                    )
                    for i in range(start, min(count, start + BATCH))
                ]
            }
        ).encode()
        for start in range(0, count, BATCH)
    ]


def kube_objects() -> list[dict[str, Any]]:
    """One agent with two releases and a permissive policy, so every promote is decided on evidence."""

    pricing = {
        "provider": "openai",
        "pricingVersion": "wal-pricing",
        "entries": [{"model": "gpt-4.1-mini", "inputUsdPer1kTokens": 0.1, "outputUsdPer1kTokens": 0.2}],
    }
    policy = {
        "minCandidateRuns": 1,
        "minBaselineRuns": 1,
        "minLowRuns": 1,
        "requireHighDiffConfidence": False,
    }
    releases = [
        kube_object(
            "AgentRelease",
            name,
            {
                "agentId": "agent-wal",
                "version": f"1.0.{index}",
                "runtime": {"provider": "openai", "model": "gpt-4.1-mini"},
                "pricingReference": {"provider": "openai", "pricingVersion": "wal-pricing"},
                "checksum": "0" * 64,
            },
        )
        for index, name in enumerate(RELEASES)
    ]
    pointer = {"agentId": "agent-wal", "environment": "local", "policyRef": {"name": "permissive"}}
    return [
        kube_object("PricingTable", "wal-pricing", pricing),
        kube_object("PromotionPolicy", "permissive", policy),
        *releases,
        kube_object("ReleasePointer", "wal-local", pointer),
    ]


# --- measurements -----------------------------------------------------------------------------------


class FileSizes:
    """Samples the size of the database's WAL every 10 ms on a thread; keeps the peak."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.wal = database.with_name(database.name + "-wal")
        self.peak_wal = 0
        self.peak_wal_at_events = 0
        self.events = 0  # set by the ingest loop, to say when the peak happened
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-sampler", daemon=True)

    def wal_size(self) -> int:
        try:
            return self.wal.stat().st_size
        except FileNotFoundError:
            return 0

    def database_size(self) -> int:
        return self.database.stat().st_size if self.database.exists() else 0

    def sample(self) -> int:
        size = self.wal_size()
        if size > self.peak_wal:
            self.peak_wal, self.peak_wal_at_events = size, self.events
        return size

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(0.01):
            self.sample()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


class Promoter:
    """Promotes the two releases in turn through the sidecar, one request at a time, on a thread."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = headers
        self.outcomes: dict[int, int] = {}
        self.latencies_ms: list[float] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promoter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=120) as http:
            turn = 0
            while not self._stopping.wait(PROMOTE_INTERVAL_S):
                body = {
                    "release_id": RELEASES[turn % 2],
                    "environment": "local",
                    "window": "7d",
                    "reason": "wal",
                }
                started = time.perf_counter()
                status = http.post("/v1/promote", json=body).status_code
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                self.outcomes[status] = self.outcomes.get(status, 0) + 1
                turn += 1

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


@dataclass
class Chunk:
    """100k events of the ingest (the last one may be shorter)."""

    events: int  # stored after this chunk
    events_per_s: float  # over the whole chunk
    median_batch_events_per_s: float  # the median batch's: less sensitive to other load on the machine
    wal_bytes: int  # at the chunk's end
    database_bytes: int


def ingest(url: str, headers: dict[str, str], bodies: list[bytes], sizes: FileSizes) -> list[Chunk]:
    """Posts every body in turn; one ``Chunk`` per 100k events."""
    chunks: list[Chunk] = []
    stored = 0
    with httpx.Client(
        base_url=url, headers={**headers, "Content-Type": "application/json"}, timeout=300
    ) as http:
        http.get("/health")  # open the connection before the clock starts
        batch_seconds: list[float] = []
        for body in bodies:
            started = time.perf_counter()
            response = http.post("/v1/events", content=body)
            response.raise_for_status()
            batch_seconds.append(time.perf_counter() - started)
            stored += int(response.json()["inserted"])
            sizes.events = stored
            sizes.sample()
            if stored % CHUNK == 0 or body is bodies[-1]:
                chunks.append(
                    chunk(stored, stored - (chunks[-1].events if chunks else 0), batch_seconds, sizes)
                )
                batch_seconds = []
    return chunks


def chunk(stored: int, events: int, batch_seconds: list[float], sizes: FileSizes) -> Chunk:
    done = Chunk(
        events=stored,
        events_per_s=events / sum(batch_seconds),
        median_batch_events_per_s=BATCH / statistics.median(batch_seconds),
        wal_bytes=sizes.wal_size(),
        database_bytes=sizes.database_size(),
    )
    print(
        f"{stored:>9,} events stored: {done.events_per_s:8,.0f} events/s over the last {events:,} "
        f"(median batch {done.median_batch_events_per_s:,.0f}/s); WAL {done.wal_bytes / MB:5.1f} MB, "
        f"database {done.database_bytes / MB:7.1f} MB, WAL peak so far {sizes.peak_wal / MB:.1f} MB",
        flush=True,
    )
    return done


def report(
    chunks: list[Chunk], sizes: FileSizes, promoter: Promoter, after_stop: dict[str, int]
) -> dict[str, Any]:
    stored = chunks[-1].events
    database = chunks[-1].database_bytes
    wal_goal = max(WAL_GOAL_BYTES, database // 20)
    first, last = chunks[0], chunks[-1]
    latencies = sorted(promoter.latencies_ms) or [0.0]
    result = {
        "benchmark": "wal",
        "events": stored,
        "wal_peak_bytes": sizes.peak_wal,
        "wal_peak_at_events": sizes.peak_wal_at_events,
        "wal_goal_bytes": wal_goal,
        "database_bytes": database,
        "database_bytes_per_event": round(database / stored),
        "first_chunk_events_per_s": round(first.events_per_s),
        "last_chunk_events_per_s": round(last.events_per_s),
        "last_over_first": round(last.events_per_s / first.events_per_s, 3),
        "first_chunk_median_batch_events_per_s": round(first.median_batch_events_per_s),
        "last_chunk_median_batch_events_per_s": round(last.median_batch_events_per_s),
        "chunks": [
            {
                "events": c.events,
                "events_per_s": round(c.events_per_s),
                "median_batch_events_per_s": round(c.median_batch_events_per_s),
                "wal_bytes": c.wal_bytes,
            }
            for c in chunks
        ],
        "promotes": {str(status): count for status, count in sorted(promoter.outcomes.items())},
        "promote_p50_ms": round(latencies[len(latencies) // 2], 1),
        "after_stop": after_stop,
    }
    print(
        f"WAL peak {sizes.peak_wal / MB:.1f} MB (at {sizes.peak_wal_at_events:,} events stored), "
        f"goal <= {wal_goal / MB:.1f} MB: {verdict(sizes.peak_wal <= wal_goal)}"
    )
    print(f"database {database / MB:.1f} MB for {stored:,} events ({database / stored:.0f} bytes per event)")
    for label, before, after in (
        ("ingest rate", first.events_per_s, last.events_per_s),
        ("median batch", first.median_batch_events_per_s, last.median_batch_events_per_s),
    ):
        print(
            f"{label}: first {CHUNK:,} {before:,.0f} events/s, last {CHUNK:,} {after:,.0f} events/s "
            f"({after / before:.0%} of the first), goal >= {RATE_GOAL:.0%}: {verdict(after >= RATE_GOAL * before)}"
        )
    print(
        f"promotes during the ingest: {result['promotes']} (p50 {result['promote_p50_ms']} ms); "
        f"after both processes stopped: database {after_stop['database_bytes'] / MB:.1f} MB, "
        f"WAL {after_stop['wal_bytes'] / MB:.1f} MB"
    )
    return result


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events to ingest (multiple of 1,000)")
    parser.add_argument("--quick", action="store_true", help="100k events (smoke run)")
    parser.add_argument(
        "--live", action="store_true", help="events timestamped now: decisions read them row by row"
    )
    args = parser.parse_args()
    count = CHUNK if args.quick else args.events

    bodies = event_bodies(count, live=args.live)
    print(
        f"{count:,} events in {len(bodies):,} batches, {sum(map(len, bodies)) / count:.0f} bytes per event as JSON"
    )
    with tempfile.TemporaryDirectory(prefix="flightdeck-wal-") as work, ControlPlane() as cp:
        cp.kubectl("apply", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl("create", "namespace", NAMESPACE)
        cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(kube_objects()))
        database = Path(work) / "flightdeck.db"
        headers = {"Authorization": f"Bearer {cp.identity('admin').token}"}
        operator = OperatorProcess(
            kubeconfig=cp.kubeconfig(),
            store=str(database),
            log_path=Path(work) / "operator.log",
            namespaces=(NAMESPACE,),
        )
        sidecar = SidecarProcess(
            kubeconfig=cp.kubeconfig(),
            store=str(database),
            namespace=NAMESPACE,
            log_path=Path(work) / "sidecar.log",
        )
        sizes = FileSizes(database)
        with operator, sidecar:
            sizes.start()
            promoter = Promoter(sidecar.url, headers)
            promoter.start()
            try:
                chunks = ingest(sidecar.url, headers, bodies, sizes)
            finally:
                promoter.stop()
                sizes.stop()
        after_stop = {"database_bytes": sizes.database_size(), "wal_bytes": sizes.wal_size()}
        result = report(chunks, sizes, promoter, after_stop)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
