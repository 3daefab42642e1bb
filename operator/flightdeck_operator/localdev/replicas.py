"""Several operator replicas as child processes sharing one store: leader election locally.

As in a cluster: every replica serves the admission webhook behind one address (a
:class:`~flightdeck_operator.localdev.balancer.TcpBalancer` stands in for the Service), with one
CA (the chart mounts one certificate Secret into every pod), and one holds the Lease and decides.
Replicas are numbered; each start of replica ``i`` is a new process (a new identity in the Lease),
as a restarted container is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from flightdeck_operator.kube.gateway import load_api_client
from flightdeck_operator.kube.webhook_configurations import WebhookConfigurations
from flightdeck_operator.localdev.balancer import TcpBalancer
from flightdeck_operator.localdev.processes import (
    OperatorProcess,
    ProcessError,
    point_webhooks_at,
    webhook_configuration_body,
)


@dataclass
class OperatorReplicas:
    kubeconfig: Path
    store: str
    workdir: Path
    namespaces: Sequence[str]
    count: int = 2
    extra_env: Mapping[str, str] = field(default_factory=dict)
    webhook_delegates: Sequence[str] = ()
    # An existing configuration to serve (the chart's), instead of one made here; its certificates
    # (the chart's Secret, as files); who may change the configuration (default: ``kubeconfig``).
    webhook_configuration: str | None = None
    cert_dir: Path | None = None
    admin_kubeconfig: Path | None = None
    replicas: list[OperatorProcess] = field(init=False, default_factory=list)
    balancer: TcpBalancer = field(init=False)
    configuration_name: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.balancer = TcpBalancer(self._endpoints)
        self._frozen: set[int] = set()
        self.configuration_name = self.webhook_configuration or f"flightdeck-{self.namespaces[0]}"
        self.replicas = [self._replica(index) for index in range(self.count)]

    def _replica(self, index: int) -> OperatorProcess:
        return OperatorProcess(
            kubeconfig=self.kubeconfig,
            store=self.store,
            log_path=self.workdir / f"operator-{index}.log",
            namespaces=self.namespaces,
            extra_env=self.extra_env,
            webhook_configuration=self.configuration_name,
            webhook_delegates=self.webhook_delegates,
            manage_webhook_configuration=False,
            cert_dir=self.cert_dir or self.workdir / "webhook-certs",
            identity=f"operator-{index}",
            wait_for_leadership=False,
            admin_kubeconfig=self.admin_kubeconfig,
        )

    def __enter__(self) -> Self:
        self.balancer.__enter__()
        with self._admin() as api:
            configurations = WebhookConfigurations(api)
            if self.webhook_configuration is not None:
                point_webhooks_at(configurations, self.configuration_name, self.balancer.address)
            else:
                body = webhook_configuration_body(
                    self.configuration_name, self.balancer.address, self.namespaces
                )
                configurations.apply(body)
        try:
            for replica in self.replicas:  # one after the other: the first writes the shared CA
                replica.start()
            self.wait_leader()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for replica in self.replicas:
            self._resume(replica)
            replica.stop()
        if self.webhook_configuration is None:
            with self._admin() as api:
                WebhookConfigurations(api).delete(self.configuration_name)
        self.balancer.__exit__(exc_type, exc, tb)

    def _admin(self) -> contextlib.closing[Any]:
        return contextlib.closing(load_api_client(str(self.admin_kubeconfig or self.kubeconfig)))

    # -- who leads -------------------------------------------------------------------------------

    def leader(self) -> OperatorProcess | None:
        leading = [replica for replica in self.replicas if replica.is_leader()]
        return leading[0] if len(leading) == 1 else None

    def wait_leader(
        self, timeout: float = 120.0, *, other_than: OperatorProcess | None = None
    ) -> OperatorProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not other_than:
                return leader
            time.sleep(0.05)
        raise ProcessError(f"no replica became the leader within {timeout:.0f}s:\n{self.log_tails()}")

    def index_of(self, replica: OperatorProcess) -> int:
        return self.replicas.index(replica)

    # -- what happens to pods --------------------------------------------------------------------

    def kill(self, replica: OperatorProcess) -> int:
        """SIGKILL (node failure, OOM kill); returns its exit status."""
        replica.kill()
        assert replica.process is not None
        return int(replica.process.returncode)

    def restart(self, replica: OperatorProcess) -> None:
        """A new process in its place (the container restarted): it campaigns as a standby."""
        replica.start()

    def freeze(self, replica: OperatorProcess) -> None:
        """SIGSTOP: the process stays, silent (a long GC pause, a frozen VM). Its readiness would
        fail, so the Service stops sending it admission calls."""
        assert replica.process is not None
        self._frozen.add(replica.process.pid)
        os.killpg(replica.process.pid, signal.SIGSTOP)

    def thaw(self, replica: OperatorProcess) -> None:
        self._resume(replica)

    def wait_exit(self, replica: OperatorProcess, timeout: float = 60.0) -> int:
        assert replica.process is not None
        return int(replica.process.wait(timeout=timeout))

    def _resume(self, replica: OperatorProcess) -> None:
        if replica.process is not None and replica.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(replica.process.pid, signal.SIGCONT)
            self._frozen.discard(replica.process.pid)

    def _endpoints(self) -> list[int]:
        """Ready endpoints, as a Service sees them: running, not frozen, webhook port chosen."""
        return [
            replica.webhook_port
            for replica in self.replicas
            if replica.process is not None
            and replica.process.poll() is None
            and replica.process.pid not in self._frozen
            and replica.webhook_port
        ]

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {replica.log_path.name} ---\n{replica.log_tail(lines)}" for replica in self.replicas
        )

    def metrics(self, replica: OperatorProcess) -> dict[str, Any]:
        """The replica's /metrics as {name: value} (labels dropped)."""
        with urllib.request.urlopen(replica.metrics_url, timeout=5) as response:
            text = response.read().decode()
        values: dict[str, Any] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name.split("{")[0]] = float(value)
        return values
