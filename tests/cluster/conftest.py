"""Cluster tier: one real kube-apiserver + etcd per test session, a fresh namespace per test."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from kubernetes import client, config

from flightdeck_operator.localdev.controlplane import BIN_DIR_ENV, ControlPlane
from flightdeck_operator.localdev.postgres import temporary_postgres
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess

from .in_process import InProcessOperator, in_process_operator

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"


def built_bin_dir() -> Path:
    """The cached control-plane binaries, building them first on a cold cache."""
    if os.environ.get(BIN_DIR_ENV):
        return Path(os.environ[BIN_DIR_ENV])
    result = subprocess.run([str(BUILD_SCRIPT)], check=True, capture_output=True, text=True)
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    return built_bin_dir()


@pytest.fixture(scope="session")
def control_plane(bin_dir: Path) -> Iterator[ControlPlane]:
    with ControlPlane(bin_dir=bin_dir) as cp:
        yield cp


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig("admin")))
    yield api
    api.close()


def client_for(control_plane: ControlPlane, user: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig(user)))


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test. There is no namespace controller (no kube-controller-manager),
    so deleted namespaces stay Terminating; they vanish with the session's control plane."""
    base = request.node.name.lower().replace("_", "-")
    name = f"{''.join(c for c in base if c.isalnum() or c == '-')[:40].strip('-')}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One throwaway PostgreSQL server for the cluster tests that need one (a schema each)."""
    with temporary_postgres() as url:
        yield url


@pytest.fixture
def postgres_store(postgres_server: str) -> Iterator[str]:
    """A store URL of its own: a fresh schema on the session's server, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


# -- the operator under test -------------------------------------------------------------------------

CRDS_DIR = REPO_ROOT / "crds"
# Shorter than production so that tests take seconds.
TEST_TIMINGS = {
    "FLIGHTDECK_DEPENDENCY_GRACE_SECONDS": "2",
    "FLIGHTDECK_POINTER_RESYNC_SECONDS": "5",
    # Waiting requests (approval, evidence) are re-examined every second in tests.
    "FLIGHTDECK_RECHECK_SECONDS": "1",
    # A restarted operator (a new identity) waits out its predecessor's Lease: short in tests, with
    # room for a busy machine (renewals are two API calls; a missed deadline ends the leader).
    "FLIGHTDECK_LEASE_DURATION_SECONDS": "8",
    "FLIGHTDECK_RENEW_DEADLINE_SECONDS": "6",
    "FLIGHTDECK_RETRY_PERIOD_SECONDS": "1",
    # Notifications: the outbox is read 5 times a second, failed deliveries retried within a second.
    "FLIGHTDECK_NOTIFICATION_POLL_SECONDS": "0.2",
    "FLIGHTDECK_NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
    "FLIGHTDECK_NOTIFICATION_MAX_BACKOFF_SECONDS": "1",
    # Verification: policies may check every second, the loop looks 5 times a second, and the
    # pointer's status shows every check (lastCheckedAt), so tests can wait for a number of checks.
    "FLIGHTDECK_VERIFICATION_TICK_SECONDS": "0.2",
    "FLIGHTDECK_VERIFICATION_MIN_INTERVAL_SECONDS": "1",
    "FLIGHTDECK_VERIFICATION_STATUS_REFRESH_SECONDS": "0.5",
}


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> Path:
    """Install the project's CRDs exactly as a user would, once per session."""
    control_plane.kubectl("apply", "-f", str(CRDS_DIR))
    control_plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    return CRDS_DIR


@pytest.fixture
def operator(
    control_plane: ControlPlane, crds: Path, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """A real ``flightdeck-operator run`` scoped to the test's namespace, with its own SQLite store
    and its admission webhook registered for that namespace only."""
    process = OperatorProcess(
        kubeconfig=control_plane.kubeconfig("admin"),
        store=str(tmp_path / "flightdeck.db"),
        log_path=tmp_path / "operator.log",
        namespaces=(namespace,),
        extra_env=TEST_TIMINGS,
        # The sidecars of these tests run as admin: a delegate, as the chart's ServiceAccount is.
        webhook_delegates=("admin",),
    )
    process.start()
    yield process
    process.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log ({process.log_path}) ---\n{process.log_tail(200)}")


@pytest.fixture
def kopf_operator(
    control_plane: ControlPlane,
    crds: Path,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[InProcessOperator]:
    """The operator in this process (``kopf.testing.KopfRunner``), without the admission webhook:
    for handler-level tests that need no identities and no real process."""
    with in_process_operator(
        monkeypatch,
        kubeconfig=control_plane.kubeconfig("admin"),
        namespace=namespace,
        store=str(tmp_path / "flightdeck.db"),
        env=TEST_TIMINGS,
    ) as running:
        yield running
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log ---\n{running.log_tail(200)}")


# -- the sidecar under test ---------------------------------------------------------------------------

StartSidecar = Callable[..., SidecarProcess]


@pytest.fixture
def start_sidecar(
    control_plane: ControlPlane, crds: Path, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartSidecar]:
    """Start real ``flightdeck-operator sidecar`` processes (admin kubeconfig: the sidecar's own
    identity); ``start(*flags, store=..., namespace=..., env=...)``. All are stopped after the test."""
    started: list[SidecarProcess] = []

    def start(
        *args: str, store: str | None = None, namespace: str = namespace, env: dict[str, str] | None = None
    ) -> SidecarProcess:
        process = SidecarProcess(
            kubeconfig=control_plane.kubeconfig("admin"),
            store=store or str(tmp_path / "flightdeck.db"),
            namespace=namespace,
            log_path=tmp_path / f"sidecar-{len(started)}.log",
            args=args,
            extra_env=env or {},
        )
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for process in started:
            print(f"--- sidecar log ({process.log_path}) ---\n{process.log_tail(200)}")


@pytest.fixture
def sidecar(start_sidecar: StartSidecar, operator: OperatorProcess) -> SidecarProcess:
    """A sidecar (``--auth kubernetes``) sharing the operator's store, in the test's namespace."""
    return start_sidecar(store=operator.store)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
