"""Two operator replicas on PostgreSQL, one elected with a Lease, the ledger as the fence.

The leader is SIGKILLed under load (the benchmark does it 20 times, here 3) and SIGSTOPped past
its lease; each test then checks what a failover must leave behind (``localdev.history``): the
chain verifies, no request is lost or ledgered twice, epochs never go back along the ledger, every
pointer's moves form one line, and every pointer shows its last move. Figures (gaps, refused
creates) are printed, never asserted: this machine's timing is not the subject.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from kubernetes import client

from flightdeck_operator.controller.supervisor import EXIT_FENCED, EXIT_LEADERSHIP_LOST
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.history import HistoryReport, check_history
from flightdeck_operator.localdev.load import DecisionWatch, SteadyLoad, seed_fleet
from flightdeck_operator.localdev.processes import OperatorProcess
from flightdeck_operator.localdev.replicas import OperatorReplicas
from flightdeck_operator.store import WriterFence, open_store

from .conftest import TEST_TIMINGS
from .kube import apply, pointer, policy, pricing_table, release, request, wait_decided, wait_for

POINTERS = 8
RATE = 4.0  # requests per second: a steady stream through every failover


def replicas_for(control_plane: ControlPlane, namespace: str, store: str, workdir: Path) -> OperatorReplicas:
    return OperatorReplicas(
        kubeconfig=control_plane.kubeconfig("admin"),
        store=store,
        workdir=workdir,
        namespaces=(namespace,),
        extra_env=TEST_TIMINGS,
    )


def settled_history(
    gateway: KubeGateway, store: str, namespace: str, load: SteadyLoad, watch: DecisionWatch
) -> HistoryReport:
    """Once every created request is decided and every pointer shows the ledger."""
    assert watch.wait_for(load.created, timeout=180), "not every created request was decided"
    with open_store(store) as opened:

        def settled() -> HistoryReport | None:
            report = check_history(opened, gateway, namespace, load.created)
            return report if not report.pointer_mismatches else None

        try:
            return wait_for(settled, timeout=60, what="every pointer to show the ledger")
        except AssertionError:
            return check_history(opened, gateway, namespace, load.created)


def wait_decisions(watch: DecisionWatch, more_than: int, timeout: float = 120) -> None:
    wait_for(lambda: watch.count() > more_than, timeout=timeout, what=f"more than {more_than} decisions")


def test_killing_the_leader_under_load_loses_and_repeats_nothing(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    crds: Path,
    namespace: str,
    postgres_store: str,
    tmp_path: Path,
) -> None:
    gateway = KubeGateway(api_client)
    with replicas_for(control_plane, namespace, postgres_store, tmp_path) as replicas:
        seed_fleet(gateway, namespace, POINTERS)
        watch = DecisionWatch(gateway, namespace)
        load = SteadyLoad(gateway, namespace, POINTERS, RATE)
        load.start()
        gaps = []
        try:
            for _round in range(3):
                wait_decisions(watch, watch.count() + 5)
                leader = replicas.wait_leader()
                killed_at = time.monotonic()
                replicas.kill(leader)
                successor = replicas.wait_leader()
                assert successor is not leader
                decided_before = watch.count()
                wait_decisions(watch, decided_before)
                first = min(t for t in watch.decided.values() if t > killed_at)
                gaps.append(round(first - killed_at, 1))
                replicas.restart(leader)  # the killed pod's container restarts: a standby now
        finally:
            load.stop()
        report = settled_history(gateway, postgres_store, namespace, load, watch)
        watch.stop()
    print(f"kill -> first decision of the next leader: {gaps} s; creates refused: {load.refused}")
    print(report.summary())
    assert report.ok, report
    assert len(report.epochs) == 4  # the first leader and three successors, each with a higher epoch


def test_a_frozen_leader_is_fenced_out_and_exits_when_it_wakes(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    crds: Path,
    namespace: str,
    postgres_store: str,
    tmp_path: Path,
) -> None:
    gateway = KubeGateway(api_client)
    with replicas_for(control_plane, namespace, postgres_store, tmp_path) as replicas:
        seed_fleet(gateway, namespace, POINTERS)
        watch = DecisionWatch(gateway, namespace)
        load = SteadyLoad(gateway, namespace, POINTERS, RATE)
        load.start()
        try:
            wait_decisions(watch, 5)
            frozen = replicas.wait_leader()
            replicas.freeze(frozen)  # SIGSTOP, past its lease
            successor = replicas.wait_leader(other_than=frozen)
            wait_decisions(watch, watch.count() + 5)  # the successor decides meanwhile
            replicas.thaw(frozen)
            code = replicas.wait_exit(frozen)
        finally:
            load.stop()
        log = frozen.log_path.read_text()
        report = settled_history(gateway, postgres_store, namespace, load, watch)
        watch.stop()
        assert successor.is_leader()
    how = "an append refused by the fence" if code == EXIT_FENCED else "its renewal deadline"
    print(f"the woken leader exited with {code} ({how}); {report.summary()}")
    assert code in (EXIT_FENCED, EXIT_LEADERSHIP_LOST), log[-3000:]
    assert report.ok, report
    assert len(report.epochs) == 2


def test_an_append_after_a_newer_claim_is_refused_and_the_next_leader_moves_past_it(
    control_plane: ControlPlane, crds: Path, namespace: str, tmp_path: Path
) -> None:
    """Deterministic: a leader that still holds its Lease, but whose fence another writer has
    claimed, cannot append; it exits, and the next leader raises the Lease's transitions above
    the fence before it decides."""
    store = str(tmp_path / "flightdeck.db")
    apply(
        control_plane,
        namespace,
        pricing_table("prices", "openai", "v1", "gpt-4.1-mini", (1.0, 2.0)),
        policy("open", minCandidateRuns=0, minBaselineRuns=0, minLowRuns=0),
        pointer("ptr", "agent", "prod", "open"),
        release("rel-1", "agent", "openai", "v1", "gpt-4.1-mini"),
        release("rel-2", "agent", "openai", "v1", "gpt-4.1-mini"),
    )

    def operator(name: str) -> OperatorProcess:
        return OperatorProcess(
            kubeconfig=control_plane.kubeconfig("admin"),
            store=store,
            log_path=tmp_path / f"{name}.log",
            namespaces=(namespace,),
            extra_env=TEST_TIMINGS,
            identity=name,
        )

    first = operator("first")
    first.start()
    try:
        apply(control_plane, namespace, request("one", "ptr", "rel-1"))
        assert wait_decided(control_plane, namespace, "one")["status"]["phase"] == "Promoted"
        with open_store(store) as other_writer:
            fence = f"{namespace}/flightdeck-operator"
            epoch, _holder = other_writer.fence_epoch(fence) or (0, "")
            other_writer.claim_fence(WriterFence(fence, epoch + 5, "someone-else"))
        apply(control_plane, namespace, request("two", "ptr", "rel-2"))
        assert first.process is not None
        assert first.process.wait(timeout=60) == EXIT_FENCED
        assert "Fenced: ledger append refused" in first.log_path.read_text()
    finally:
        with contextlib.suppress(Exception):
            first.stop()
    second = operator("second")
    second.start()  # waits out the first one's Lease, then must get past epoch + 5
    try:
        decided = wait_decided(control_plane, namespace, "two")
        assert decided["status"]["phase"] == "Promoted"
        with open_store(store) as opened:
            entry = opened.ledger_entry_for_request(decided["metadata"]["uid"])
            assert entry is not None
            assert entry.epoch == epoch + 6
            assert opened.verify_ledger().ok
        lease = json.loads(
            control_plane.kubectl("get", "lease", "-n", namespace, "flightdeck-operator", "-o", "json").stdout
        )
        assert lease["spec"]["leaseTransitions"] == epoch + 6
        assert lease["spec"]["holderIdentity"].startswith("second_")
    finally:
        second.stop()
