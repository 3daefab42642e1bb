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
from typing import Self

READY_TIMEOUT_S = 60.0


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
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flightdeck_operator.cli", *self._argv()],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(),
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
    """``flightdeck-operator run`` against a kubeconfig, with a liveness endpoint to wait on."""

    kubeconfig: Path
    store: str
    log_path: Path
    namespaces: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    liveness_port: int = field(init=False, default=0)
    what = "the operator"
    stop_timeout = 20.0

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.liveness_port}/healthz"

    @property
    def health_url(self) -> str:
        return self.liveness_url

    def _pick_port(self) -> None:
        self.liveness_port = free_port()

    def _argv(self) -> list[str]:
        argv = ["run", "--store", self.store, "--liveness", self.liveness_url]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        return argv

    def _env(self) -> dict[str, str]:
        return {**super()._env(), "KUBECONFIG": str(self.kubeconfig)}


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
