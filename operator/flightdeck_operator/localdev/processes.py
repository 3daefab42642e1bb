"""The operator and the sidecar as real child processes, for tests, benchmarks and the demo.

It is started exactly as a user starts it (``flightdeck-operator run``), so a SIGKILL really kills
it mid-decision and a restart really resumes from the API server and the ledger.

The operator serves its admission webhook on loopback by default: the harness registers a
MutatingWebhookConfiguration for the operator's namespaces (by URL: a bare control plane routes no
Services), waits until the API server really calls the webhook, and removes the configuration on
``stop()``. ``kill()`` leaves it, as a crashed operator does in production.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from flightdeck_operator.kube.errors import GatewayError
from flightdeck_operator.kube.gateway import KubeGateway, load_api_client
from flightdeck_operator.kube.webhook_configurations import WebhookConfigurations
from flightdeck_operator.webhook.handlers import (
    PROMOTION_APPROVALS_PATH,
    PROMOTION_POLICIES_PATH,
    PROMOTION_REQUESTS_PATH,
    RELEASE_POINTERS_PATH,
)

READY_TIMEOUT_S = 60.0
GROUP, VERSION = "flightdeck.dev", "v1alpha1"
# (name, resource, path, operations, failurePolicy) of the webhooks, as the chart registers them.
# Deletes of pointers are only observed (who deleted it, for the ledger): they never fail closed.
WEBHOOKS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    ("promotionrequests", "promotionrequests", PROMOTION_REQUESTS_PATH, ("CREATE",), "Fail"),
    ("promotionapprovals", "promotionapprovals", PROMOTION_APPROVALS_PATH, ("CREATE",), "Fail"),
    ("promotionpolicies", "promotionpolicies", PROMOTION_POLICIES_PATH, ("CREATE", "UPDATE"), "Fail"),
    ("releasepointers", "releasepointers", RELEASE_POINTERS_PATH, ("CREATE", "UPDATE"), "Fail"),
    ("releasepointer-deletions", "releasepointers", RELEASE_POINTERS_PATH, ("DELETE",), "Ignore"),
)


class Launcher(Protocol):
    def command(self, env: Mapping[str, str]) -> list[str]:
        """The argv prefix that runs ``flightdeck-operator`` with ``env``."""
        ...


class ProcessError(RuntimeError):
    """A child process did not start or stop as expected; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _ChildProcess:
    """Start a ``flightdeck-operator`` subcommand in its own process group, wait until its health
    URL answers 200, and stop or kill the whole group. Subclasses say what to run."""

    what: str  # "the operator", "the sidecar": for error messages
    log_path: Path
    extra_env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None
    stop_timeout: float
    # Runs the command somewhere else (the project's image: ``localdev.image.ImageLauncher``).
    launcher: Launcher | None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}

    @property
    def health_url(self) -> str:
        raise NotImplementedError

    def _pick_port(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise ProcessError(f"{self.what} is already running")
        self._pick_port()
        self._launch()

    def _launch(self) -> None:
        log = self.log_path.open("ab")
        env = self._env()
        if self.launcher is None:
            command = [sys.executable, "-m", "flightdeck_operator.cli.main"]
        else:
            command, env = self.launcher.command(env), dict(os.environ)
        self.process = subprocess.Popen(
            [*command, *self._argv()],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self._wait_live()

    def _wait_live(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ProcessError(f"{self.what} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ProcessError(f"{self.what} was not live after {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM (graceful shutdown) without waiting for the exit."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, no graceful shutdown, as a node failure or OOM kill."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float | None = None) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class OperatorProcess(_ChildProcess):
    """``flightdeck-operator run`` against a kubeconfig, with a liveness endpoint to wait on.

    ``webhook``: serve the admission webhook on a free loopback port, registered in a
    MutatingWebhookConfiguration named ``flightdeck-<first namespace>`` that this object creates
    (``failurePolicy: Fail``, only the operator's namespaces). ``webhook_configuration``: serve an
    existing configuration instead (e.g. the chart's), pointing its webhooks at this process.
    ``admin_kubeconfig``: who manages the configuration (default ``kubeconfig``).

    Several replicas (``localdev.replicas``): ``manage_webhook_configuration=False`` leaves the
    configuration to the caller (one, in front of all replicas), ``cert_dir`` shares one CA,
    ``identity`` names the replica in the Lease, and ``wait_for_leadership=False`` returns once a
    standby is live instead of waiting until it decides (``/readyz``).
    """

    kubeconfig: Path
    store: str
    log_path: Path
    namespaces: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    webhook: bool = True
    webhook_configuration: str | None = None
    webhook_delegates: Sequence[str] = ()
    admin_kubeconfig: Path | None = None
    manage_webhook_configuration: bool = True
    cert_dir: Path | None = None
    identity: str | None = None
    wait_for_leadership: bool = True
    launcher: Launcher | None = None
    process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    liveness_port: int = field(init=False, default=0)
    webhook_port: int = field(init=False, default=0)
    configuration_name: str = field(init=False, default="")
    what = "the operator"
    stop_timeout = 20.0

    def __post_init__(self) -> None:
        suffix = self.namespaces[0] if self.namespaces else uuid.uuid4().hex[:8]
        self.configuration_name = self.webhook_configuration or f"flightdeck-{suffix}"

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.liveness_port}/healthz"

    @property
    def health_url(self) -> str:
        return self.liveness_url

    @property
    def readiness_url(self) -> str:
        """200 while this process decides (holds the Lease, kopf started); 503 on a standby."""
        return f"http://127.0.0.1:{self.liveness_port}/readyz"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.liveness_port}/metrics"

    def is_leader(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.readiness_url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_leader(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ProcessError(f"{self.what} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.is_leader():
                return
            time.sleep(0.1)
        raise ProcessError(f"{self.what} did not become the leader in {timeout:.0f}s:\n{self.log_tail()}")

    @property
    def webhook_cert_dir(self) -> Path:
        # Next to the log, so a restart reuses the CA the API server already trusts.
        return self.cert_dir or self.log_path.parent / f"{self.log_path.stem}-webhook-certs"

    def webhook_url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.webhook_port}{path}"

    def _pick_port(self) -> None:
        self.liveness_port = free_port()
        self.webhook_port = free_port() if self.webhook else 0

    def _argv(self) -> list[str]:
        argv = ["run", "--store", self.store, "--liveness", self.liveness_url]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        return argv

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "KUBECONFIG": str(self.kubeconfig)}
        if self.identity is not None:
            env["FLIGHTDECK_LEADER_IDENTITY"] = self.identity
        if self.webhook:
            env |= {
                "FLIGHTDECK_WEBHOOK_PORT": str(self.webhook_port),
                "FLIGHTDECK_WEBHOOK_BIND_ADDRESS": "127.0.0.1",
                "FLIGHTDECK_WEBHOOK_HOSTS": json.dumps(["127.0.0.1"]),
                "FLIGHTDECK_WEBHOOK_CERT_DIR": str(self.webhook_cert_dir),
                "FLIGHTDECK_WEBHOOK_CONFIGURATION": self.configuration_name,
                "FLIGHTDECK_WEBHOOK_DELEGATES": json.dumps(list(self.webhook_delegates)),
            }
        return {**env, **self.extra_env}

    # -- lifecycle with the webhook ----------------------------------------------------------

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise ProcessError(f"{self.what} is already running")
        self._pick_port()
        try:
            if self.webhook and self.manage_webhook_configuration:
                self._register_webhooks()
            self._launch()
            if self.webhook:
                self._wait_webhook()
            if self.wait_for_leadership:
                self.wait_leader()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float | None = None) -> None:
        super().stop(timeout)
        if self.webhook and self.webhook_configuration is None and self.manage_webhook_configuration:
            with self._admin() as api:
                WebhookConfigurations(api).delete(self.configuration_name)

    def _admin(self) -> contextlib.closing[Any]:
        return contextlib.closing(load_api_client(str(self.admin_kubeconfig or self.kubeconfig)))

    def _register_webhooks(self) -> None:
        with self._admin() as api:
            configurations = WebhookConfigurations(api)
            if self.webhook_configuration is not None:
                # An existing configuration: keep its rules, call this process instead of a Service.
                point_webhooks_at(configurations, self.configuration_name, f"127.0.0.1:{self.webhook_port}")
                return
            # A configuration left by a killed operator is replaced: this start has a new port.
            configurations.apply(self._configuration_body())

    def _configuration_body(self) -> dict[str, Any]:
        return webhook_configuration_body(
            self.configuration_name, f"127.0.0.1:{self.webhook_port}", self.namespaces
        )

    def _wait_webhook(self) -> None:
        """Until the operator has put its CA into every webhook and the API server, calling the
        webhook for a dry-run PromotionPolicy, gets an answer: only then do creates succeed."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        probe = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PromotionPolicy",
            "metadata": {"name": "flightdeck-webhook-probe"},
            "spec": {},
        }
        namespace = self.namespaces[0] if self.namespaces else "default"
        last = "the operator has not written its CA yet"
        with self._admin() as api:
            configurations, gateway = WebhookConfigurations(api), KubeGateway(api)
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise ProcessError(
                        f"{self.what} exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    ca = base64.b64encode((self.webhook_cert_dir / "ca.crt").read_bytes()).decode()
                    current = configurations.read(self.configuration_name)
                    bundles = {w["clientConfig"].get("caBundle") for w in current.get("webhooks") or ()}
                    if bundles != {ca}:
                        last = "the caBundle is not the operator's CA yet"
                    else:
                        gateway.create("promotionpolicies", namespace, probe, dry_run=True)
                        return
                except OSError:
                    pass
                except GatewayError as error:
                    last = f"{error.status}: {error}"
                time.sleep(0.2)
        raise ProcessError(
            f"the webhook of {self.what} was not called by the API server after "
            f"{READY_TIMEOUT_S:.0f}s ({last}):\n{self.log_tail()}"
        )


def webhook_configuration_body(configuration: str, address: str, namespaces: Sequence[str]) -> dict[str, Any]:
    """The MutatingWebhookConfiguration the chart installs, calling ``https://<address><path>``
    (a bare control plane routes no Services) for ``namespaces`` (all when empty)."""
    selector = (
        {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(namespaces)}
            ]
        }
        if namespaces
        else {}
    )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": configuration,
            "labels": {"app.kubernetes.io/part-of": "flightdeck"},
        },
        "webhooks": [
            {
                "name": f"{name}.{GROUP}",
                # No caBundle: the operator patches its generated CA in.
                "clientConfig": {"url": f"https://{address}{path}"},
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": list(operations),
                        "resources": [resource],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": selector,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": failure_policy,
                "timeoutSeconds": 10,
            }
            for name, resource, path, operations, failure_policy in WEBHOOKS
        ],
    }


def point_webhooks_at(configurations: WebhookConfigurations, name: str, address: str) -> None:
    """Make every webhook of an existing configuration (e.g. the chart's, which names a Service)
    call ``https://<address><its path>``: a bare control plane routes no Services."""
    current = configurations.read(name)
    operations = [
        {
            "op": "replace",
            "path": f"/webhooks/{index}/clientConfig",
            "value": {"url": f"https://{address}{_webhook_path(webhook['clientConfig'])}"},
        }
        for index, webhook in enumerate(current.get("webhooks") or ())
    ]
    configurations.patch(name, operations)


def _webhook_path(client_config: Mapping[str, Any]) -> str:
    service = client_config.get("service")
    if service is not None:
        return str(service.get("path") or "/")
    return urllib.parse.urlsplit(str(client_config.get("url"))).path or "/"


@dataclass
class SidecarProcess(_ChildProcess):
    """``flightdeck-operator sidecar`` on a free loopback port, waited on through ``/healthz``.

    ``args`` are extra command-line flags (``--auth token --token-file ...``); by default the
    sidecar authenticates callers with TokenReview/SubjectAccessReview (``--auth kubernetes``).
    """

    kubeconfig: Path
    store: str
    namespace: str
    log_path: Path
    args: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    launcher: Launcher | None = None
    process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    port: int = field(init=False, default=0)
    what = "the sidecar"
    stop_timeout = 45.0  # in-flight promotes may wait for their decision before it exits

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def health_url(self) -> str:
        return f"{self.url}/healthz"

    def _pick_port(self) -> None:
        self.port = free_port()

    def _argv(self) -> list[str]:
        return [
            "sidecar",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--store",
            self.store,
            "--namespace",
            self.namespace,
            "--kubeconfig",
            str(self.kubeconfig),
            *self.args,
        ]


@dataclass
class DashboardProcess(SidecarProcess):
    """``flightdeck-operator dashboard`` (loopback, no token, the kubeconfig's identity)."""

    what = "the dashboard"

    def _argv(self) -> list[str]:
        return [
            "dashboard",
            "--port",
            str(self.port),
            "--store",
            self.store,
            "--namespace",
            self.namespace,
            "--kubeconfig",
            str(self.kubeconfig),
        ]
