"""The operator in this test process with kopf's own testing toolkit (``kopf.testing.KopfRunner``).

Faster and more direct than a child process for handler-level tests: no interpreter start, no
webhook registration, and the operator's log is kopf's captured output. Crash, kill and restart
scenarios keep the real process (``localdev.processes.OperatorProcess``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from kopf.testing import KopfRunner
from kubernetes.config import kube_config

OPERATOR_MODULE = "flightdeck_operator.controller.main"


@dataclass
class InProcessOperator:
    """What tests read of the operator: its store, and its log once it has stopped."""

    store: str
    runner: KopfRunner

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.runner.output.splitlines()[-lines:])


@contextmanager
def in_process_operator(
    monkeypatch: pytest.MonkeyPatch,
    *,
    kubeconfig: Path,
    namespace: str,
    store: str,
    env: Mapping[str, str],
) -> Iterator[InProcessOperator]:
    """``kopf run`` of the operator's module for one namespace, stopped (and checked) on exit."""
    # kopf's login and the gateway load the client's default kubeconfig, read once at import.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.setenv("FLIGHTDECK_STORE", store)
    monkeypatch.setenv("FLIGHTDECK_NAMESPACES", json.dumps([namespace]))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = ["run", "--standalone", "--namespace", namespace, "-m", OPERATOR_MODULE]
    with KopfRunner(args, timeout=60) as runner:
        yield InProcessOperator(store=store, runner=runner)
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output
