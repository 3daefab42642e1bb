"""``flightdeck-operator dev --keep`` (``make sandbox``): after the demo, everything keeps running so
a newcomer can look around: the control plane, the operator, the sidecar and the dashboard. What to
open and which commands to try are printed; Ctrl-C stops everything cleanly."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import DashboardProcess, OperatorProcess, SidecarProcess


def hold(
    cp: ControlPlane,
    *,
    namespace: str,
    store: str,
    work: Path,
    operator: OperatorProcess,
    sidecar: SidecarProcess,
    users: tuple[str, str],
    say: Callable[[str], None],
    show: Callable[[str], None],
) -> None:
    """Start the dashboard as the first user, print how to reach everything, wait for Ctrl-C."""
    requester, approver = users
    with DashboardProcess(
        kubeconfig=cp.kubeconfig(requester), store=store, namespace=namespace, log_path=work / "dashboard.log"
    ) as dashboard:
        say("The sandbox is up; Ctrl-C stops everything")
        show(
            "\n".join(
                [
                    f"Dashboard (as {requester}, no token):  {dashboard.url}/ui/",
                    f"Dashboard in the sidecar (token):   {sidecar.url}/ui/",
                    f"Sidecar HTTP API:                   {sidecar.url}  (OpenAPI: {sidecar.url}/openapi.json)",
                    f"Operator liveness:                  {operator.liveness_url}",
                    "",
                    f"export KUBECONFIG={cp.kubeconfig()}        # admin",
                    *(
                        f"{user} token (promote, approve in {namespace}):  {cp.identity(user).token}"
                        for user in (requester, approver)
                    ),
                    f"Logs: {work}",
                    "",
                    "Try:",
                    f"  kubectl get flightdeck -n {namespace}",
                    f"  kubectl get releasepointer -n {namespace} -o wide",
                    f'  curl -s -H "Authorization: Bearer $TOKEN" {sidecar.url}/v1/promoted',
                    f"  flightdeck-operator diff support-bot-1-4-0 support-bot-1-5-0 --window 7d --env production \\\n"
                    f"      --store {store} -n {namespace} --kubeconfig {cp.kubeconfig()}",
                ]
            )
        )
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                for process in (operator, sidecar, dashboard):
                    if process.process is not None and process.process.poll() is not None:
                        show(f"{process.what} exited; see {process.log_path}")
                        stop.set()
        finally:
            signal.signal(signal.SIGINT, previous)
        say("Stopping the dashboard, the sidecar, the operator and the control plane")
