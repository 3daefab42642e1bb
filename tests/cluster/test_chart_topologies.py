"""The chart's PostgreSQL topology: operator replicas electing a leader with the Lease the chart's
RBAC allows, one webhook certificate for all of them, the sidecar as its own Deployment; installed
on the real API server and run by two replicas authenticated only as the chart's ServiceAccount."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.replicas import OperatorReplicas
from flightdeck_operator.webhook.certs import ensure_certificates
from flightdeck_operator.webhook.certs import usable as certificates_usable

from .kube import apply, get, pointer, policy, pricing_table, release, request, wait_decided
from .test_chart import (
    AGENT,
    CHART,
    ENV,
    FULLNAME,
    RELEASE,
    VARIANTS,
    by_kind,
    helm,
    render,
    service_account_kubeconfig,
    webhook_configuration_name,
)


@pytest.fixture(scope="module")
def kube_version(control_plane: ControlPlane) -> str:
    return str(
        json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    )


# -- the PostgreSQL topology: operator replicas with a Lease, the sidecar on its own --------------------


def test_postgresql_topology_renders_replicas_and_one_webhook_certificate(
    control_plane: ControlPlane, kube_version: str, tmp_path: Path
) -> None:
    documents = render(control_plane, kube_version, "flightdeck", *VARIANTS["postgresql"])
    deployments = {doc["metadata"]["name"]: doc for doc in by_kind(documents, "Deployment")}
    assert sorted(deployments) == [f"{FULLNAME}-operator", f"{FULLNAME}-sidecar"]
    assert not by_kind(documents, "StatefulSet")
    for component, deployment in zip(("operator", "sidecar"), deployments.values(), strict=True):
        spec = deployment["spec"]
        assert spec["replicas"] == 2
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
        selector = spec["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == component
        (term,) = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["podAffinityTerm"] == {
            "labelSelector": {"matchLabels": selector},
            "topologyKey": "kubernetes.io/hostname",
        }
    budgets = {doc["metadata"]["name"]: doc["spec"] for doc in by_kind(documents, "PodDisruptionBudget")}
    assert {name: spec["maxUnavailable"] for name, spec in budgets.items()} == {
        FULLNAME: 1,
        f"{FULLNAME}-sidecar": 1,
    }
    services = {doc["metadata"]["name"]: doc["spec"]["selector"] for doc in by_kind(documents, "Service")}
    assert services[FULLNAME]["app.kubernetes.io/component"] == "sidecar"
    assert services[f"{FULLNAME}-webhook"]["app.kubernetes.io/component"] == "operator"
    # Every replica serves the webhook with the one certificate the chart generated.
    (secret,) = by_kind(documents, "Secret")
    for key, value in secret["data"].items():
        (tmp_path / key).write_bytes(base64.b64decode(value))
    operator = deployments[f"{FULLNAME}-operator"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in operator["env"]}
    assert env["FLIGHTDECK_WEBHOOK_CERT_DIR"] == "/etc/flightdeck/webhook"
    hosts = json.loads(env["FLIGHTDECK_WEBHOOK_HOSTS"])
    assert certificates_usable(tmp_path, hosts, now=dt.datetime.now(dt.UTC))
    assert {
        "name": "webhook-tls",
        "secret": {"secretName": secret["metadata"]["name"], "defaultMode": 0o440},
    } in (deployments[f"{FULLNAME}-operator"]["spec"]["template"]["spec"]["volumes"])


def test_postgresql_install_runs_two_replicas_with_the_charts_rbac(
    control_plane: ControlPlane, crds: Path, namespace: str, postgres_store: str, tmp_path: Path
) -> None:
    """`helm install` of the PostgreSQL topology; two operator replicas authenticated only as the
    chart's ServiceAccount elect a leader with the Lease its RBAC allows, decide, and hand over
    when the leader is killed."""
    certs = tmp_path / "webhook-certs"
    service = f"{FULLNAME}-webhook"
    # Local replicas are called on loopback, so the certificate names 127.0.0.1 as well (the
    # chart's own one names only the Service): brought in as webhook.existingSecret.
    ensure_certificates(certs, ["127.0.0.1", service, f"{service}.{namespace}.svc"])
    control_plane.kubectl(
        "create",
        "secret",
        "generic",
        "fd-webhook",
        "-n",
        namespace,
        *[f"--from-file={name}={certs / name}" for name in ("ca.crt", "tls.crt", "tls.key")],
    )
    control_plane.kubectl(
        "create", "secret", "generic", "fd-db", "-n", namespace, f"--from-literal=url={postgres_store}"
    )
    helm(
        control_plane,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
        *VARIANTS["postgresql"],
        "--set",
        "webhook.existingSecret=fd-webhook",
    )
    try:
        assert get(control_plane, namespace, "deployment", f"{FULLNAME}-operator")["spec"]["replicas"] == 2
        assert get(control_plane, namespace, "deployment", f"{FULLNAME}-sidecar")["spec"]["replicas"] == 2
        kubeconfig = service_account_kubeconfig(control_plane, namespace, tmp_path / "kubeconfig-chart-sa")
        replicas = OperatorReplicas(
            kubeconfig=kubeconfig,
            store=postgres_store,
            workdir=tmp_path,
            namespaces=(namespace,),
            extra_env={
                "FLIGHTDECK_DEPENDENCY_GRACE_SECONDS": "2",
                "FLIGHTDECK_LEASE_NAME": FULLNAME,
                "FLIGHTDECK_LEASE_NAMESPACE": namespace,
                "FLIGHTDECK_LEASE_DURATION_SECONDS": "8",
                "FLIGHTDECK_RENEW_DEADLINE_SECONDS": "6",
                "FLIGHTDECK_RETRY_PERIOD_SECONDS": "1",
            },
            webhook_configuration=webhook_configuration_name(namespace),
            cert_dir=certs,
            admin_kubeconfig=control_plane.kubeconfig("admin"),
        )
        with replicas:
            apply(
                control_plane,
                namespace,
                pricing_table("prices", "openai", "v1", "gpt-4o-mini", (1.0, 2.0)),
                release("bot-1", AGENT, "openai", "v1", "gpt-4o-mini"),
                release("bot-2", AGENT, "openai", "v1", "gpt-4o-mini"),
                policy("open", minCandidateRuns=0, minBaselineRuns=0, minLowRuns=0),
                pointer("bot-production", AGENT, ENV, "open"),
                request("first", "bot-production", "bot-1"),
            )
            assert wait_decided(control_plane, namespace, "first")["status"]["phase"] == "Promoted"
            leader = replicas.wait_leader()
            lease = get(control_plane, namespace, "lease", FULLNAME)
            assert lease["spec"]["holderIdentity"].startswith(f"operator-{replicas.index_of(leader)}_")
            replicas.kill(leader)
            successor = replicas.wait_leader()
            apply(control_plane, namespace, request("second", "bot-production", "bot-2"))
            assert wait_decided(control_plane, namespace, "second")["status"]["phase"] == "Promoted"
            assert get(control_plane, namespace, "lease", FULLNAME)["spec"]["leaseTransitions"] == 1
            assert successor.is_leader()
        for replica in replicas.replicas:
            log = replica.log_path.read_text()
            for symptom in ("Forbidden", "forbidden", " 403"):
                assert symptom not in log, f"the chart's RBAC misses something: {symptom!r} in\n{log[-3000:]}"
    finally:
        helm(control_plane, "uninstall", RELEASE, "-n", namespace)
