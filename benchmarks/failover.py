"""Failover of two operator replicas on PostgreSQL, under a steady decision load.

    .venv/bin/python benchmarks/failover.py                 # 20 SIGKILLs, then one SIGSTOP
    .venv/bin/python benchmarks/failover.py --kills 5       # shorter
    .venv/bin/python benchmarks/failover.py --budget-minutes 20 --catch-up-limit 90   # a busy machine

Two replicas (``localdev.replicas``: one store, one webhook address, one Lease with client-go's
timings, 15/10/2 s) on the local control plane, ``--rate`` requests per second over ``--pointers``
pointers, retention on (TTL 60 s, minimum age 30 s, cap 1,000): a new leader lists and indexes
every resident request before it decides anything, so what stays resident sets how long a
failover takes (the first attempt, with the cap at 2,000 and kills every 20 s, let retention fall
behind: 4,000 to 6,000 resident requests and 40 to 100 s gaps).

- SIGKILL: ``--kills`` times, the leader is killed (then restarted as a standby, as a container
  restarts); the gap is from the kill to the first decision the watch sees after it. The next kill
  comes ``--steady`` seconds after that first decision, and not before the new leader has caught
  up with the load (fewer than two seconds' worth of requests undecided, or ``--catch-up-limit``):
  each failover starts from the steady state, not from the previous one's backlog (with a fixed
  40 s between kills on a busy machine, each backlog was larger than the last: 800 to 2,800
  requests resident and gaps of 19 to 43 s over the first 7 kills).
- SIGSTOP: the leader is stopped for ``--freeze`` seconds (past its lease), the standby takes over,
  then the old leader is continued: how it ends (exit 71: an append refused by the fence; 70: its
  renewal deadline) and whether it wrote anything after its successor.
- Then what must hold (``localdev.history``): none lost, none ledgered twice, epochs never go back,
  each pointer's moves form one line, every pointer shows its last move, the chain verifies.

Gaps go to a CSV under benchmarks/results/; ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from flightdeck_operator.kube.gateway import KubeGateway, load_api_client  # noqa: E402
from flightdeck_operator.localdev.controlplane import ControlPlane  # noqa: E402
from flightdeck_operator.localdev.history import DECISIONS, check_history  # noqa: E402
from flightdeck_operator.localdev.load import DecisionWatch, SteadyLoad, seed_fleet  # noqa: E402
from flightdeck_operator.localdev.postgres import temporary_postgres  # noqa: E402
from flightdeck_operator.localdev.replicas import OperatorReplicas  # noqa: E402
from flightdeck_operator.store import Store, open_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "failover"
ENV = {
    "FLIGHTDECK_REQUEST_TTL_SECONDS": "60",
    "FLIGHTDECK_MIN_DECIDED_AGE_SECONDS": "30",
    "FLIGHTDECK_RETAIN_PER_POINTER": "1",
    "FLIGHTDECK_RETAIN_MAX": "1000",
    "FLIGHTDECK_GC_INTERVAL_SECONDS": "10",
    "FLIGHTDECK_GC_DELETES_PER_SECOND": "100",
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def leading_epoch(store: Store) -> int:
    """The epoch of the newest ledger entry: the leader's that wrote it."""
    newest = store.list_ledger(limit=1)
    return newest[0].epoch or 0 if newest else 0


def first_decision_after(store: Store, epoch: int, moment: dt.datetime, timeout: float = 180) -> float:
    """Seconds from ``moment`` to the first decision ledgered by a later leader (its entry's time:
    a decision the watch sees late, made by the old leader, does not count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        later = [
            e.created_at
            for e in store.list_ledger(limit=500, kinds=DECISIONS)
            if e.epoch is not None and e.epoch > epoch
        ]
        if later:
            return (min(later) - moment).total_seconds()
        time.sleep(0.2)
    raise RuntimeError(f"no decision within {timeout:.0f}s after the failover")


def settle(watch: DecisionWatch, load: SteadyLoad, since: float, steady: float, limit: float) -> float:
    """Wait until ``steady`` seconds have passed since ``since`` (monotonic) and the leader has caught
    up with the load; returns the seconds from ``since`` to catching up (``limit`` if it did not)."""
    slack = max(1, round(2 * load.rate))
    caught_up: float | None = None
    while True:
        now = time.monotonic()
        if caught_up is None and len(load.created) - watch.count() <= slack:
            caught_up = now - since
        if caught_up is not None and now - since >= steady:
            return caught_up
        if now - since >= max(steady, limit):
            return limit
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--pointers", type=int, default=200)
    parser.add_argument("--steady", type=float, default=40.0, help="seconds of decisions between failovers")
    parser.add_argument("--freeze", type=float, default=25.0, help="SIGSTOP length (past the 15 s lease)")
    parser.add_argument(
        "--catch-up-limit", type=float, default=300.0, help="longest wait for the backlog before a kill"
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="stop killing once this long has passed (then the SIGSTOP and the checks run as usual)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work_dir, ControlPlane() as cp, temporary_postgres() as store:
        work = Path(work_dir)
        cp.kubectl("apply", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl("create", "namespace", NAMESPACE)
        gateway = KubeGateway(load_api_client(str(cp.kubeconfig()), pool_size=16))
        seed_fleet(gateway, NAMESPACE, args.pointers)
        replicas = OperatorReplicas(
            kubeconfig=cp.kubeconfig(), store=store, workdir=work, namespaces=(NAMESPACE,), extra_env=ENV
        )
        rows: list[list[Any]] = []
        with replicas, open_store(store) as ledger:
            watch = DecisionWatch(gateway, NAMESPACE)
            load = SteadyLoad(gateway, NAMESPACE, args.pointers, args.rate)
            load.start()
            try:
                caught_up = settle(watch, load, time.monotonic(), args.steady, args.catch_up_limit)
                kills_started = time.monotonic()
                for kill in range(args.kills):
                    if args.budget_minutes and time.monotonic() - kills_started > args.budget_minutes * 60:
                        print(f"budget of {args.budget_minutes} min spent after {kill} kills", flush=True)
                        break
                    leader = replicas.wait_leader()
                    resident = len(gateway.list_objects("promotionrequests", NAMESPACE, cached=True))
                    backlog = len(load.created) - watch.count()
                    epoch = leading_epoch(ledger)
                    killed_at = dt.datetime.now(dt.UTC)
                    replicas.kill(leader)
                    gap = first_decision_after(ledger, epoch, killed_at)
                    resumed = time.monotonic()
                    rows.append([kill + 1, "SIGKILL", round(gap, 2), resident, backlog, round(caught_up, 1)])
                    print(
                        f"kill {kill + 1}: first decision of the next leader after {gap:.1f} s "
                        f"({resident} requests resident, {backlog} undecided; the previous leader "
                        f"had caught up {caught_up:.0f} s after its first decision)",
                        flush=True,
                    )
                    replicas.restart(leader)
                    caught_up = settle(watch, load, resumed, args.steady, args.catch_up_limit)
                frozen = replicas.wait_leader()
                epoch = leading_epoch(ledger)
                stopped_at = dt.datetime.now(dt.UTC)
                replicas.freeze(frozen)
                gap = first_decision_after(ledger, epoch, stopped_at)
                rows.append([len(rows) + 1, "SIGSTOP", round(gap, 2), None, None, None])
                time.sleep(max(0.0, args.freeze - (dt.datetime.now(dt.UTC) - stopped_at).total_seconds()))
                replicas.thaw(frozen)
                exit_code = replicas.wait_exit(frozen)
                fenced_line = "Fenced: ledger append refused" in frozen.log_path.read_text()
                print(f"SIGSTOP: next leader after {gap:.1f} s; the woken one exited {exit_code}", flush=True)
                time.sleep(args.steady)
            finally:
                load.stop()
            watch.wait_for(load.created, timeout=300)
            report = check_history(ledger, gateway, NAMESPACE, load.created)
            for _ in range(60):
                if not report.pointer_mismatches:
                    break
                time.sleep(1)
                report = check_history(ledger, gateway, NAMESPACE, load.created)
            watch.stop()
    kills = [row[2] for row in rows if row[1] == "SIGKILL"]
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    csv = results / f"failover-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.csv"
    csv.write_text(
        "\n".join(
            ",".join(str(v) for v in row)
            for row in [
                ["n", "signal", "gap_s", "resident_requests", "undecided_at_kill", "previous_caught_up_s"],
                *rows,
            ]
        )
        + "\n"
    )
    print(report.summary(), flush=True)
    print(
        json.dumps(
            {
                "kills": len(kills),
                "gap_p50_s": round(statistics.median(kills), 1),
                "gap_p99_s": round(percentile(kills, 0.99), 1),
                "gap_max_s": max(kills),
                "resident_at_kill_max": max(row[3] for row in rows if row[1] == "SIGKILL"),
                "undecided_at_kill_max": max(row[4] for row in rows if row[1] == "SIGKILL"),
                "sigstop_gap_s": rows[-1][2],
                "sigstop_exit_code": exit_code,
                "sigstop_fenced_append_logged": fenced_line,
                "creates_refused": load.refused,
                "creates_refused_by_reason": dict(load.refusals.most_common(5)),
                "requests": len(load.created),
                "lost": len(report.lost),
                "duplicated": len(report.duplicated),
                "epoch_regressions": len(report.epoch_regressions),
                "broken_pointer_lines": len(report.broken_lines),
                "pointer_mismatches": len(report.pointer_mismatches),
                "chain_ok": report.chain_ok,
                "epochs": len(report.epochs),
                "csv": str(csv.relative_to(REPO)),
            }
        )
    )


if __name__ == "__main__":
    main()
