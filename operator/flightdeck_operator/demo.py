"""``flightdeck-operator dev``: the whole product on an embedded local control plane, in about a minute.

Starts etcd and kube-apiserver, installs the Helm chart (CRDs, RBAC, ServiceAccount; there is no
kubelet, so its Deployment never gets pods and the operator and sidecar run here as local
processes, as ``kopf run`` is used in development), loads the examples, sends synthetic evidence
over HTTP, promotes with kubectl, is blocked over HTTP (409), and ends with the pointer,
``kubectl get flightdeck`` and ``doctor``. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess

NAMESPACE = "demo"
RELEASE_NAMESPACE = "flightdeck-system"
BASELINE, CANDIDATE = "support-bot-1-4-0", "support-bot-1-5-0"
SETUP_EXAMPLES = ("00-pricing-tables.yaml", "10-releases.yaml", "20-policy.yaml", "30-pointer.yaml")
CALLER = "alice"  # a non-admin identity of the local control plane, granted promote rights below


class DemoError(RuntimeError):
    """A demo step failed; the message says which and why."""


def synthetic_events(
    release: str, model: str, provider: str, count: int, failures: int
) -> list[dict[str, Any]]:
    """``count`` runs over the last day, ``failures`` of them failed."""
    now = dt.datetime.now(dt.UTC)
    return [
        {
            "timestamp": (now - dt.timedelta(minutes=5 + i)).isoformat(),
            "agent_id": "support-bot",
            "release_id": release,
            "run_id": f"demo-{release}-{uuid.uuid4().hex[:12]}",
            "tenant_id": "acme",
            "task_id": "support-chat",
            "environment": "production",
            "metrics": {"latency_ms": 900 + (i % 7) * 40, "success": i >= failures},
            "usage": {
                "model": {"provider": provider, "model": model, "input_tokens": 1200, "output_tokens": 400}
            },
        }
        for i in range(count)
    ]


def run_demo(
    repo: Path, *, bin_dir: Path | None, say: Callable[[str], None], show: Callable[[str], None]
) -> None:
    charts, examples = repo / "charts" / "flightdeck-operator", repo / "examples"
    if not charts.is_dir() or not examples.is_dir():
        raise DemoError(f"run the demo from the repository root ({charts} or {examples} not found)")
    with (
        tempfile.TemporaryDirectory(prefix="flightdeck-demo-") as work_dir,
        ControlPlane(bin_dir=bin_dir) as cp,
    ):
        work = Path(work_dir)
        version = json.loads(cp.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
        say(f"Local control plane ready: kube-apiserver {version} at {cp.server}")

        say("Installing the Helm chart (CRDs, RBAC, ServiceAccount, Service)")
        helm = subprocess.run(
            [
                str(cp.bin_path / "helm"),
                "--kubeconfig",
                str(cp.kubeconfig()),
                "install",
                "flightdeck",
                str(charts),
                "--namespace",
                RELEASE_NAMESPACE,
                "--create-namespace",
                # The operator runs as a local process here and registers its own webhook; the
                # chart's would call a Service that no pod backs on a bare control plane.
                "--set",
                "webhook.enabled=false",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if helm.returncode != 0:
            raise DemoError(f"helm install failed: {helm.stderr.strip()}")
        show(helm.stdout.split("NOTES:")[0].strip())
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl("create", "namespace", NAMESPACE)
        grant_promoter(cp, CALLER)

        store = str(work / "flightdeck.db")
        say("Starting the operator and the sidecar (local processes, as in development)")
        with (
            OperatorProcess(
                kubeconfig=cp.kubeconfig(),
                store=store,
                log_path=work / "operator.log",
                namespaces=(NAMESPACE,),
            ) as operator,
            SidecarProcess(
                kubeconfig=cp.kubeconfig(), store=store, namespace=NAMESPACE, log_path=work / "sidecar.log"
            ) as sidecar,
        ):
            show(f"operator live at {operator.liveness_url}; sidecar at {sidecar.url}")
            say("Applying examples: pricing tables, two releases, a policy, a pointer")
            for name in SETUP_EXAMPLES:
                show(cp.kubectl("apply", "-n", NAMESPACE, "-f", str(examples / name)).stdout.strip())

            token = cp.identity(CALLER).token
            http = httpx.Client(
                base_url=sidecar.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            say(f"Sending synthetic run events over HTTP as {CALLER!r} (POST /v1/events)")
            batches = (
                synthetic_events(BASELINE, "gpt-4o-mini", "openai", 600, failures=6),
                synthetic_events(CANDIDATE, "claude-3-5-haiku-20241022", "anthropic", 600, failures=48),
            )
            for batch in batches:
                answer = http.post("/v1/events", json={"events": batch})
                show(f"{answer.status_code} {answer.text}")
                if answer.status_code != 200:
                    raise DemoError(f"ingest failed: {answer.status_code} {answer.text}")

            say(f"Promoting {BASELINE} with kubectl (the first promotion of this pointer)")
            show(
                cp.kubectl(
                    "apply", "-n", NAMESPACE, "-f", str(examples / "40-promote-request.yaml")
                ).stdout.strip()
            )
            waited = cp.kubectl(
                "wait",
                "-n",
                NAMESPACE,
                "preq/support-bot-promote-1-4-0",
                "--for=condition=Decided",
                "--timeout=60s",
            )
            show(waited.stdout.strip())
            show(cp.kubectl("get", "-n", NAMESPACE, "preq", "support-bot-promote-1-4-0").stdout.rstrip())

            say(f"Promoting {CANDIDATE} over HTTP (POST /v1/promote): 8% of its runs failed")
            answer = http.post(
                "/v1/promote",
                json={
                    "release_id": CANDIDATE,
                    "environment": "production",
                    "window": "7d",
                    "reason": "Move to claude-3-5-haiku to cut latency",
                    "actor": CALLER,
                },
            )
            show(f"HTTP {answer.status_code}")
            show(json.dumps(answer.json(), indent=2))
            if answer.status_code != 409:
                raise DemoError(f"expected 409 for the blocked promotion, got {answer.status_code}")

            say("The pointer did not move")
            show(cp.kubectl("get", "-n", NAMESPACE, "releasepointer").stdout.rstrip())
            say("kubectl get flightdeck")
            show(cp.kubectl("get", "flightdeck", "-n", NAMESPACE).stdout.rstrip())
            say("flightdeck-operator doctor")
            doctor = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "flightdeck_operator.cli",
                    "doctor",
                    "--store",
                    store,
                    "--kubeconfig",
                    str(cp.kubeconfig()),
                    "--namespace",
                    NAMESPACE,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            show((doctor.stdout + doctor.stderr).rstrip())
            if doctor.returncode != 0:
                raise DemoError("doctor found problems")
            say("Stopping the sidecar, the operator and the control plane")
            http.close()


def grant_promoter(cp: ControlPlane, user: str) -> None:
    """RBAC for an HTTP caller: create PromotionRequests (promote/rollback), create run events
    (ingest) and list PromotionRequests (reads), in the demo namespace only."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "flightdeck-promoter", "namespace": NAMESPACE},
        "rules": [
            {
                "apiGroups": ["flightdeck.dev"],
                "resources": ["promotionrequests", "runevents"],
                "verbs": ["create", "get", "list", "watch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{user}-promotes", "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "flightdeck-promoter"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    deadline = time.monotonic() + 10  # the RBAC authorizer's cache catches up asynchronously
    while time.monotonic() < deadline:
        allowed = cp.kubectl(
            "auth",
            "can-i",
            "create",
            "promotionrequests.flightdeck.dev",
            "-n",
            NAMESPACE,
            user=user,
            check=False,
        )
        if allowed.stdout.strip() == "yes":
            return
        time.sleep(0.2)
    raise DemoError(f"RBAC grant for {user} did not take effect")
