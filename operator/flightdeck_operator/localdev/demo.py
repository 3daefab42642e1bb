"""``flightdeck-operator dev``: the whole product on an embedded local control plane, in about a minute.

Starts etcd and kube-apiserver, installs the Helm chart (CRDs, RBAC, ServiceAccount; there is no
kubelet, so its Deployment never gets pods and the operator and sidecar run here as local
processes, as ``kopf run`` is used in development), loads the examples, sends synthetic evidence
over HTTP (the baseline's as run events, the candidate's as OpenTelemetry traces), promotes with kubectl, is blocked over HTTP (409), previews that promotion with
``kubectl apply --dry-run=server``, has alice request a canary promotion that bob (not alice)
approves, shows the notifications a local webhook receiver got (signatures checked), and ends with
the pointer, ``kubectl get flightdeck`` and ``doctor``. Everything it
starts is stopped at the end.
"""

from __future__ import annotations

import contextlib
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
from flightdeck_operator.localdev.demo_notifications import (
    NotificationsMissing,
    notifications_received,
    subscribe,
)
from flightdeck_operator.localdev.demo_traces import trace_requests
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess
from flightdeck_operator.localdev.sandbox import hold
from flightdeck_operator.localdev.webhook_receiver import WebhookReceiver

NAMESPACE = "demo"
RELEASE_NAMESPACE = "flightdeck-system"
BASELINE, CANDIDATE = "support-bot-1-4-0", "support-bot-1-5-0"
SETUP_EXAMPLES = ("00-pricing-tables.yaml", "10-releases.yaml", "20-policy.yaml", "30-pointer.yaml")
CALLER = "alice"  # a non-admin identity of the local control plane, granted promote rights below
APPROVER = "bob"  # another one, who approves what alice requests
# Traces become run events 2 s after their run span arrived (default 10 s), so the demo waits less.
DEMO_OTLP = {"FLIGHTDECK_OTLP_SETTLE_SECONDS": "2", "FLIGHTDECK_OTLP_FINALIZE_INTERVAL_SECONDS": "0.5"}


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
    repo: Path,
    *,
    bin_dir: Path | None,
    say: Callable[[str], None],
    show: Callable[[str], None],
    keep: bool = False,
) -> None:
    """The demo; ``keep``: leave everything running afterwards (the sandbox) until Ctrl-C."""
    charts, examples = repo / "charts" / "flightdeck-operator", repo / "examples"
    if not charts.is_dir() or not examples.is_dir():
        raise DemoError(f"run the demo from the repository root ({charts} or {examples} not found)")
    with (
        tempfile.TemporaryDirectory(prefix="flightdeck-demo-") as work_dir,
        ControlPlane(bin_dir=bin_dir) as cp,
        contextlib.ExitStack() as stack,
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
        grant_promoter(cp, APPROVER)

        store = str(work / "flightdeck.db")
        say("Starting the operator and the sidecar (local processes, as in development)")
        with (
            OperatorProcess(
                kubeconfig=cp.kubeconfig(),
                store=store,
                log_path=work / "operator.log",
                namespaces=(NAMESPACE,),
                # The sidecar runs as admin here: it may create requests for the caller it authenticated.
                webhook_delegates=("admin",),
            ) as operator,
            SidecarProcess(
                kubeconfig=cp.kubeconfig(),
                store=store,
                namespace=NAMESPACE,
                log_path=work / "sidecar.log",
                extra_env=DEMO_OTLP,
            ) as sidecar,
        ):
            show(f"operator live at {operator.liveness_url}; sidecar at {sidecar.url}")
            say("Applying examples: pricing tables, two releases, a policy, a pointer")
            for name in SETUP_EXAMPLES:
                show(cp.kubectl("apply", "-n", NAMESPACE, "-f", str(examples / name)).stdout.strip())
            receiver = stack.enter_context(WebhookReceiver())
            try:
                subscribe(cp, sidecar.url, receiver, say, show)
            except NotificationsMissing as error:
                raise DemoError(str(error)) from None

            token = cp.identity(CALLER).token
            http = httpx.Client(
                base_url=sidecar.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            say(f"Sending {BASELINE}'s runs as run events over HTTP as {CALLER!r} (POST /v1/events)")
            events = synthetic_events(BASELINE, "gpt-4o-mini", "openai", 600, failures=6)
            answer = http.post("/v1/events", json={"events": events})
            show(f"{answer.status_code} {answer.text}")
            if answer.status_code != 200:
                raise DemoError(f"ingest failed: {answer.status_code} {answer.text}")
            send_traces(http, say, show)

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

            say("Previewing the same promotion with kubectl apply --dry-run=server (nothing is stored)")
            preview = cp.kubectl(
                "apply",
                "-n",
                NAMESPACE,
                "--dry-run=server",
                "-f",
                str(examples / "41-promote-candidate.yaml"),
            )
            show((preview.stderr + preview.stdout).strip())

            gates(cp, say, show)
            try:
                notifications_received(cp, receiver, say, show)
            except NotificationsMissing as error:
                raise DemoError(str(error)) from None
            say("kubectl get flightdeck")
            show(cp.kubectl("get", "flightdeck", "-n", NAMESPACE).stdout.rstrip())
            say("flightdeck-operator doctor")
            doctor = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "flightdeck_operator.cli.main",
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
            http.close()
            if keep:
                hold(
                    cp,
                    namespace=NAMESPACE,
                    store=store,
                    work=work,
                    operator=operator,
                    sidecar=sidecar,
                    users=(CALLER, APPROVER),
                    say=say,
                    show=show,
                )
            else:
                say("Stopping the sidecar, the operator and the control plane")


CANARY_POLICY = {
    "apiVersion": "flightdeck.dev/v1alpha1",
    "kind": "PromotionPolicy",
    "metadata": {"name": "canary-gate"},
    "spec": {"approval": {"minApprovals": 1}},
}
CANARY_POINTER = {
    "apiVersion": "flightdeck.dev/v1alpha1",
    "kind": "ReleasePointer",
    "metadata": {"name": "support-bot-canary"},
    "spec": {"agentId": "support-bot", "environment": "canary", "policyRef": {"name": "canary-gate"}},
}
CANARY_REQUEST = {
    "apiVersion": "flightdeck.dev/v1alpha1",
    "kind": "PromotionRequest",
    "metadata": {"name": "canary-1-4-0"},
    "spec": {"pointer": "support-bot-canary", "release": BASELINE, "reason": "First canary"},
}


def send_traces(http: httpx.Client, say: Callable[[str], None], show: Callable[[str], None]) -> None:
    """The candidate's runs as OpenTelemetry traces (POST /v1/traces), and wait for their run events."""
    say(
        f"Sending {CANDIDATE}'s runs as OpenTelemetry GenAI traces (POST /v1/traces, OTLP/HTTP "
        "protobuf, 3 spans per run), as its instrumented service would export them"
    )
    bodies = trace_requests(
        CANDIDATE, "claude-3-5-haiku-20241022", "anthropic", 600, 48, environment="production"
    )
    for body in bodies:
        answer = http.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
        if answer.status_code != 200 or answer.content:
            raise DemoError(f"OTLP export failed: {answer.status_code} {answer.content!r}")
    show(f"{len(bodies)} requests answered 200 (no partial success: no span rejected)")
    deadline = time.monotonic() + 60
    while True:
        status = http.get("/v1/otlp/status").json()
        if status["totals"]["runs_emitted"] >= 600:
            break
        if time.monotonic() > deadline:
            raise DemoError(f"the traces did not become run events: {status}")
        time.sleep(0.5)
    totals = status["totals"]
    show(
        f"GET /v1/otlp/status: {totals['spans_accepted']} spans accepted, {totals['runs_emitted']} runs "
        f"emitted once each trace settled ({status['settle_seconds']} s), {status['staged_traces']} staged"
    )


def gates(cp: ControlPlane, say: Callable[[str], None], show: Callable[[str], None]) -> None:
    """An approval by someone other than the requester (identities from the API server)."""
    say(f"A canary pointer whose policy needs one approval; {CALLER!r} requests with kubectl")
    show(
        cp.kubectl(
            "apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all([CANARY_POLICY, CANARY_POINTER])
        ).stdout.strip()
    )
    show(
        cp.kubectl(
            "apply", "-n", NAMESPACE, "-f", "-", user=CALLER, input=yaml.safe_dump(CANARY_REQUEST)
        ).stdout.strip()
    )
    _wait_phase(cp, "canary-1-4-0", "AwaitingApproval")
    show(cp.kubectl("get", "-n", NAMESPACE, "preq", "canary-1-4-0").stdout.rstrip())
    say(f"{CALLER!r} cannot approve her own request")
    refused = _approve(cp, CALLER, "my own change")
    show(refused.stderr.strip() or refused.stdout.strip())
    if refused.returncode == 0:
        raise DemoError("self-approval was accepted")
    say(f"{APPROVER!r} approves with `flightdeck-operator approve`")
    approved = _approve(cp, APPROVER, "canary looks good")
    show(approved.stdout.strip())
    if approved.returncode != 0:
        raise DemoError(f"approval failed: {approved.stdout} {approved.stderr}")
    cp.kubectl("wait", "-n", NAMESPACE, "preq/canary-1-4-0", "--for=condition=Decided", "--timeout=60s")
    show(cp.kubectl("get", "-n", NAMESPACE, "preq", "canary-1-4-0").stdout.rstrip())
    show(
        "decision.approvals: "
        + cp.kubectl(
            "get", "-n", NAMESPACE, "preq", "canary-1-4-0", "-o", "jsonpath={.status.decision.approvals}"
        ).stdout
    )


def _wait_phase(cp: ControlPlane, name: str, phase: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = cp.kubectl("get", "-n", NAMESPACE, "preq", name, "-o", "jsonpath={.status.phase}").stdout
        if shown == phase:
            return
        time.sleep(0.2)
    raise DemoError(f"PromotionRequest {name} did not reach phase {phase}")


def _approve(cp: ControlPlane, user: str, reason: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "flightdeck_operator.cli.main",
            "approve",
            "canary-1-4-0",
            "--reason",
            reason,
            "--namespace",
            NAMESPACE,
            "--kubeconfig",
            str(cp.kubeconfig(user)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def grant_promoter(cp: ControlPlane, user: str) -> None:
    """RBAC for a promoter: create PromotionRequests (promote/rollback) and PromotionApprovals,
    create run events (ingest), and read every FlightDeck kind (what the dashboard shows), in the
    demo namespace only."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "flightdeck-promoter", "namespace": NAMESPACE},
        "rules": [
            {
                "apiGroups": ["flightdeck.dev"],
                "resources": ["promotionrequests", "promotionapprovals", "runevents"],
                "verbs": ["create", "get", "list", "watch"],
            },
            {
                "apiGroups": ["flightdeck.dev"],
                "resources": ["agentreleases", "pricingtables", "promotionpolicies", "releasepointers"],
                "verbs": ["get", "list", "watch"],
            },
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
