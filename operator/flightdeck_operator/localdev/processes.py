"""The operator and the sidecar as real child processes, for tests, benchmarks and the demo.

It is started exactly as a user starts it (``flightdeck-operator run``), so a SIGKILL really kills
it mid-decision and a restart really resumes from the API server and the ledger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

READY_TIMEOUT_S = 60.0


class ProcessError(RuntimeError):
    """A child process did not start or stop as expected; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class OperatorProcess:
    """``flightdeck-operator run`` against a kubeconfig, with a liveness endpoint to wait on."""

    kubeconfig: Path
    store: str
    log_path: Path
    namespaces: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    liveness_port: int = field(init=False, default=0)

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.liveness_port}/healthz"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise ProcessError("the operator is already running")
        self.liveness_port = free_port()
        argv = [
            sys.executable,
            "-m",
            "flightdeck_operator.cli",
            "run",
            "--store",
            self.store,
            "--liveness",
            self.liveness_url,
        ]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1", **self.extra_env}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self._wait_live()

    def _wait_live(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ProcessError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.liveness_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ProcessError(f"the operator was not live after {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, no graceful shutdown, as a node failure or OOM kill."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class SidecarProcess:
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
    process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    port: int = field(init=False, default=0)

    def __enter__(self) -> SidecarProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise ProcessError("the sidecar is already running")
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            "flightdeck_operator.cli",
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
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self._wait_live()

    def _wait_live(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ProcessError(f"the sidecar exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ProcessError(f"the sidecar was not live after {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM (graceful shutdown) without waiting for the exit."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self, timeout: float = 45) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
