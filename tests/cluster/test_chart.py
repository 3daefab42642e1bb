"""The Helm chart against the real API server: lint, server-side validation of every rendered
manifest, install, and RBAC that is sufficient for a real promotion and nothing more.

The operator runs as a local process (no kubelet here) with a kubeconfig that holds a token of the
chart's own ServiceAccount, so every API call it makes is authorized by the chart's RBAC.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess
from tests.health_checks import argocd_health, flux_status

from .conftest import REPO_ROOT
from .kube import (
    apply,
    condition,
    get,
    pointer,
    policy,
    pricing_table,
    release,
    request,
    run_events,
    wait_decided,
)

CHART = REPO_ROOT / "charts" / "flightdeck-operator"
RELEASE = "fd"
FULLNAME = f"{RELEASE}-flightdeck-operator"  # the chart's fullname for this release name
AGENT = "support-bot"


def webhook_configuration_name(namespace: str) -> str:
    """The chart's MutatingWebhookConfiguration (cluster-scoped: it carries the namespace too)."""
    return f"{FULLNAME}-{namespace}"[:63].rstrip("-")


ENV = "production"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"


def helm(cp: ControlPlane, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(cp.bin_path / "helm"), *args], env=cp.env("admin"), capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def kube_version(control_plane: ControlPlane) -> str:
    """The real server's version, for `helm template` (which does not ask the server)."""
    return str(
        json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    )


def render(cp: ControlPlane, kube_version: str, namespace: str, *values: str) -> list[dict[str, Any]]:
    text = helm(cp, "template", RELEASE, str(CHART), "-n", namespace, "--kube-version", kube_version, *values)
    return [doc for doc in yaml.safe_load_all(text.stdout) if doc]


def by_kind(documents: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


# -- lint and render -----------------------------------------------------------------------------------

VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "postgresql": ["--set", "storage.type=postgresql", "--set", "storage.postgresql.existingSecret=fd-db"],
    "token-auth": ["--set", "sidecar.auth.mode=token", "--set", "sidecar.auth.token.existingSecret=fd-token"],
    "emptydir-no-extras": [
        "--set",
        "storage.sqlite.persistence.enabled=false",
        "--set",
        "networkPolicy.enabled=false",
        "--set",
        "podDisruptionBudget.enabled=false",
        "--set",
        "sidecar.enabled=false",
    ],
    "webhook-off": ["--set", "webhook.enabled=false"],
    "notifications-off": ["--set", "notifications.enabled=false"],
    "webhook-ignore": ["--set", "webhook.failurePolicy=Ignore", "--set", "webhook.port=10443"],
    "existing-claim-digest": [
        "--set",
        "storage.sqlite.persistence.existingClaim=restored-ledger",
        "--set",
        "image.digest=sha256:" + "ab" * 32,
        "--set",
        "podDisruptionBudget.minAvailable=0",
    ],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_is_clean(control_plane: ControlPlane, variant: str) -> None:
    result = helm(control_plane, "lint", "--strict", str(CHART), *VARIANTS[variant])
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("variant", [*sorted(VARIANTS), "namespaced"])
def test_rendered_manifests_pass_server_side_validation(
    control_plane: ControlPlane, crds: Path, kube_version: str, namespace: str, variant: str
) -> None:
    """`kubectl apply --dry-run=server`: the real API server validates every object against its
    schema (and admission), without storing anything."""
    values = VARIANTS.get(variant, ["--set", f"watchNamespaces={{{namespace}}}"])
    documents = render(control_plane, kube_version, namespace, *values)
    text = yaml.safe_dump_all(documents)
    result = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=text)
    applied = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(documents)
    kinds = {doc["kind"] for doc in documents}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= kinds
    # SQLite: one StatefulSet pod; PostgreSQL: operator and sidecar Deployments.
    assert ("StatefulSet" in kinds) != ("Deployment" in kinds)


def test_defaults_render_the_promised_objects(control_plane: ControlPlane, kube_version: str) -> None:
    documents = render(control_plane, kube_version, "flightdeck")
    assert sorted(doc["kind"] for doc in documents) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]
    (statefulset,) = by_kind(documents, "StatefulSet")
    spec = statefulset["spec"]
    # SQLite: one pod, never two at once (a StatefulSet, unlike a Deployment's Recreate).
    assert (spec["replicas"], spec["podManagementPolicy"]) == (1, "OrderedReady")
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    operator, sidecar = pod["containers"]
    assert (operator["name"], operator["args"]) == (
        "operator",
        ["run", "--liveness", "http://0.0.0.0:8080/healthz"],
    )
    assert (sidecar["name"], sidecar["args"]) == (
        "sidecar",
        ["sidecar", "--host", "0.0.0.0", "--port", "8765", "--auth", "kubernetes"],
    )
    for container in (operator, sidecar):
        assert container["image"] == "flightdeck-operator:0.1.0"
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert {"name": "FLIGHTDECK_STORE", "value": "/var/lib/flightdeck/flightdeck.db"} in container["env"]
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/var/lib/flightdeck"}
        assert container["resources"]["limits"]["memory"] == "512Mi"
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "FLIGHTDECK_NAMESPACE", "value": "flightdeck"} in sidecar["env"]
    (claim,) = by_kind(documents, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in pod[
        "volumes"
    ]
    env = {item["name"]: item.get("value") for item in operator["env"]}
    assert (env["FLIGHTDECK_LEADER_ELECTION"], env["FLIGHTDECK_LEASE_NAME"]) == ("true", FULLNAME)
    assert env["FLIGHTDECK_LEASE_NAMESPACE"] == "flightdeck"
    assert (env["FLIGHTDECK_RETENTION_ENABLED"], env["FLIGHTDECK_REQUEST_TTL_SECONDS"]) == ("true", "86400")
    (pdb,) = by_kind(documents, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    services = {doc["metadata"]["name"]: doc for doc in by_kind(documents, "Service")}
    assert services[FULLNAME]["spec"]["ports"] == [
        {"name": "http", "port": 8765, "targetPort": "http", "protocol": "TCP"}
    ]
    assert services[f"{FULLNAME}-webhook"]["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]


def test_the_webhook_is_registered_for_the_operator_to_serve(
    control_plane: ControlPlane, kube_version: str
) -> None:
    documents = render(control_plane, kube_version, "flightdeck")
    (configuration,) = by_kind(documents, "MutatingWebhookConfiguration")
    assert configuration["metadata"]["name"] == webhook_configuration_name("flightdeck")
    webhooks = {webhook["name"]: webhook for webhook in configuration["webhooks"]}
    assert sorted(webhooks) == [
        "promotionapprovals.flightdeck.dev",
        "promotionpolicies.flightdeck.dev",
        "promotionrequests.flightdeck.dev",
        "releasepointer-deletions.flightdeck.dev",
        "releasepointers.flightdeck.dev",
    ]
    for name, webhook in webhooks.items():
        (rule,) = webhook["rules"]
        (resource,) = rule["resources"]
        # No caBundle: the operator patches its own CA in (a value here would undo it on upgrade).
        assert webhook["clientConfig"] == {
            "service": {
                "name": f"{FULLNAME}-webhook",
                "namespace": "flightdeck",
                "path": f"/mutate/{resource}",
                "port": 443,
            }
        }
        # Deletes of pointers are only observed (who deleted it): they never wait for the operator.
        failure_policy = "Ignore" if name.startswith("releasepointer-deletions") else "Fail"
        assert (webhook["failurePolicy"], webhook["sideEffects"], webhook["timeoutSeconds"]) == (
            failure_policy,
            "None",
            10,
        )
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert "namespaceSelector" not in webhook  # cluster-wide install: every namespace
    operations = {name: webhook["rules"][0]["operations"] for name, webhook in webhooks.items()}
    assert operations == {
        "promotionrequests.flightdeck.dev": ["CREATE"],
        "promotionapprovals.flightdeck.dev": ["CREATE"],
        "promotionpolicies.flightdeck.dev": ["CREATE", "UPDATE"],
        "releasepointers.flightdeck.dev": ["CREATE", "UPDATE"],
        "releasepointer-deletions.flightdeck.dev": ["DELETE"],
    }

    (statefulset,) = by_kind(documents, "StatefulSet")
    operator = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in operator["ports"]
    assert operator["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "webhook", "scheme": "HTTPS"}
    env = {item["name"]: item.get("value") for item in operator["env"]}
    service = f"{FULLNAME}-webhook"
    assert json.loads(env["FLIGHTDECK_WEBHOOK_HOSTS"]) == [
        service,
        f"{service}.flightdeck",
        f"{service}.flightdeck.svc",
        f"{service}.flightdeck.svc.cluster.local",
    ]
    assert env["FLIGHTDECK_WEBHOOK_PORT"] == "9443"
    assert env["FLIGHTDECK_WEBHOOK_CONFIGURATION"] == configuration["metadata"]["name"]
    assert env["FLIGHTDECK_WEBHOOK_CERT_DIR"].startswith("/tmp/")  # the writable emptyDir
    assert json.loads(env["FLIGHTDECK_WEBHOOK_DELEGATES"]) == [f"system:serviceaccount:flightdeck:{FULLNAME}"]
    (netpol,) = by_kind(documents, "NetworkPolicy")
    assert {"ports": [{"port": "webhook", "protocol": "TCP"}]} in netpol["spec"]["ingress"]
    (cluster_role,) = by_kind(documents, "ClusterRole")
    assert {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "resourceNames": [configuration["metadata"]["name"]],
        "verbs": ["get", "patch"],
    } in cluster_role["rules"]


def test_a_namespaced_install_admits_only_its_namespaces(
    control_plane: ControlPlane, kube_version: str
) -> None:
    documents = render(
        control_plane, kube_version, "flightdeck", "--set", "watchNamespaces={flightdeck,agents}"
    )
    (configuration,) = by_kind(documents, "MutatingWebhookConfiguration")
    for webhook in configuration["webhooks"]:
        assert webhook["namespaceSelector"] == {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["flightdeck", "agents"]}
            ]
        }


def test_disabling_the_webhook_drops_everything_it_needs(
    control_plane: ControlPlane, kube_version: str
) -> None:
    documents = render(control_plane, kube_version, "flightdeck", *VARIANTS["webhook-off"])
    assert not by_kind(documents, "MutatingWebhookConfiguration")
    assert [doc["metadata"]["name"] for doc in by_kind(documents, "Service")] == [FULLNAME]
    (statefulset,) = by_kind(documents, "StatefulSet")
    operator = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert [port["name"] for port in operator["ports"]] == ["health"]
    assert "readinessProbe" not in operator
    assert not [item for item in operator["env"] if item["name"].startswith("FLIGHTDECK_WEBHOOK_")]
    (cluster_role,) = by_kind(documents, "ClusterRole")
    groups = {group for rule in cluster_role["rules"] for group in rule["apiGroups"]}
    assert "admissionregistration.k8s.io" not in groups
    # The sidecar (kubernetes auth) still needs SubjectAccessReviews.
    assert "authorization.k8s.io" in groups


def secret_rules(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    roles = by_kind(documents, "ClusterRole") + by_kind(documents, "Role")
    return [rule for role in roles for rule in role["rules"] if "secrets" in rule["resources"]]


def test_notifications_reach_receivers_but_never_the_metadata_range(
    control_plane: ControlPlane, kube_version: str
) -> None:
    documents = render(control_plane, kube_version, "flightdeck")
    assert sorted(tuple(rule["verbs"]) for rule in secret_rules(documents)) == [("create",), ("get",)]
    (policy,) = by_kind(documents, "NetworkPolicy")
    [receivers] = [
        rule for rule in policy["spec"]["egress"] if any(p["port"] == 80 for p in rule.get("ports", ()))
    ]
    assert receivers["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]
    (statefulset,) = by_kind(documents, "StatefulSet")
    env = {
        item["name"]: item.get("value")
        for item in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (env["FLIGHTDECK_NOTIFICATIONS_ENABLED"], env["FLIGHTDECK_NOTIFICATION_MAX_BACKOFF_SECONDS"]) == (
        "true",
        "300",
    )


def test_disabling_notifications_drops_secret_access(control_plane: ControlPlane, kube_version: str) -> None:
    documents = render(control_plane, kube_version, "flightdeck", *VARIANTS["notifications-off"])
    assert secret_rules(documents) == []
    (policy,) = by_kind(documents, "NetworkPolicy")
    assert not [
        rule for rule in policy["spec"]["egress"] if any(p["port"] == 80 for p in rule.get("ports", ()))
    ]
    (statefulset,) = by_kind(documents, "StatefulSet")
    env = {
        item["name"]: item.get("value")
        for item in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["FLIGHTDECK_NOTIFICATIONS_ENABLED"] == "false"


def test_postgresql_url_comes_from_a_secret(control_plane: ControlPlane, kube_version: str) -> None:
    documents = render(control_plane, kube_version, "flightdeck", *VARIANTS["postgresql"])
    assert not by_kind(documents, "PersistentVolumeClaim")
    containers = [
        container
        for deployment in by_kind(documents, "Deployment")
        for container in deployment["spec"]["template"]["spec"]["containers"]
    ]
    assert [c["name"] for c in containers] == ["operator", "sidecar"]
    for container in containers:
        assert {
            "name": "FLIGHTDECK_STORE",
            "valueFrom": {"secretKeyRef": {"name": "fd-db", "key": "url"}},
        } in container["env"]
    mounts = [{m["mountPath"] for m in c["volumeMounts"]} for c in containers]
    assert mounts == [{"/tmp", "/etc/flightdeck/webhook"}, {"/tmp"}]
    (netpol,) = by_kind(documents, "NetworkPolicy")
    assert {"ports": [{"port": 5432, "protocol": "TCP"}]} in netpol["spec"]["egress"]


def test_token_auth_mounts_the_secret_and_drops_token_reviews(
    control_plane: ControlPlane, kube_version: str
) -> None:
    documents = render(control_plane, kube_version, "flightdeck", *VARIANTS["token-auth"])
    (statefulset,) = by_kind(documents, "StatefulSet")
    sidecar = statefulset["spec"]["template"]["spec"]["containers"][1]
    assert sidecar["args"][-2:] == ["--auth", "token"]
    assert {"name": "FLIGHTDECK_TOKEN_FILE", "value": "/etc/flightdeck/auth/token"} in sidecar["env"]
    (cluster_role,) = by_kind(documents, "ClusterRole")
    groups = {group for rule in cluster_role["rules"] for group in rule["apiGroups"]}
    assert "authentication.k8s.io" not in groups
    # SubjectAccessReviews stay for the admission webhook's break-glass check, and only for it.
    assert "authorization.k8s.io" in groups
    documents = render(
        control_plane, kube_version, "flightdeck", *VARIANTS["token-auth"], *VARIANTS["webhook-off"]
    )
    (cluster_role,) = by_kind(documents, "ClusterRole")
    groups = {group for rule in cluster_role["rules"] for group in rule["apiGroups"]}
    assert "authorization.k8s.io" not in groups


def test_every_rbac_rule_says_who_needs_it() -> None:
    """The comment block right above each rule starts with "Framework:" or "Application"."""
    for path in (CHART / "templates" / "rbac.yaml", CHART / "templates" / "_helpers.tpl"):
        lines = [line.strip() for line in path.read_text().splitlines()]
        rules = [index for index, line in enumerate(lines) if line.startswith("- apiGroups:")]
        assert rules, path
        for index in rules:
            start = index
            while lines[start - 1].startswith("#"):
                start -= 1
            assert start < index, f"{path.name}:{index + 1}: rule without a comment"
            assert lines[start].startswith(("# Framework:", "# Application")), f"{path.name}:{start + 1}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            ["--set", "storage.type=mysql"],
            "- at '/storage/type': value must be one of 'sqlite', 'postgresql'",
        ),
        (
            ["--set", "storage.type=postgresql"],
            "- at '/storage/postgresql/existingSecret': minLength: got 0, want 1",
        ),
        (
            ["--set", "sidecar.auth.mode=none"],
            "- at '/sidecar/auth/mode': value must be one of 'kubernetes', 'token'",
        ),
        (
            ["--set", "sidecar.auth.mode=token"],
            "- at '/sidecar/auth/token/existingSecret': minLength: got 0, want 1",
        ),
        (
            ["--set", "operator.pointerResyncSeconds=0"],
            "- at '/operator/pointerResyncSeconds': exclusiveMinimum",
        ),
        (
            ["--set", "webhook.failurePolicy=Sometimes"],
            "- at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'",
        ),
        (["--set", "webhook.port=443"], "- at '/webhook/port': minimum"),
        (["--set", "imagetag=1.0"], "additional properties 'imagetag' not allowed"),
        (
            ["--set", "watchNamespaces={a,b}", "--set", "sidecar.namespace=c"],
            'sidecar.namespace "c" must be one of watchNamespaces [a b]',
        ),
        (["--set", "serviceMonitor.enabled=true"], "no monitoring.coreos.com/v1 ServiceMonitor"),
        (
            ["--set", "operator.replicas=2"],
            "operator.replicas: SQLite has one writer, so the operator runs as one pod",
        ),
        (
            ["--set", "sidecar.replicas=2"],
            "sidecar.replicas: with SQLite the sidecar runs in the operator's one pod",
        ),
        (
            [
                "--set",
                "storage.type=postgresql",
                "--set",
                "storage.postgresql.existingSecret=pg",
                "--set",
                "operator.leaderElection.enabled=false",
            ],
            "operator.leaderElection.enabled=false decides in every replica without a fence",
        ),
        (
            ["--set", "operator.podAntiAffinity=always"],
            "- at '/operator/podAntiAffinity': value must be one of",
        ),
    ],
)
def test_bad_values_fail_with_the_key_named(
    control_plane: ControlPlane, kube_version: str, values: list[str], message: str
) -> None:
    result = helm(
        control_plane,
        "template",
        RELEASE,
        str(CHART),
        "--kube-version",
        kube_version,
        *values,
        check=False,
    )
    assert result.returncode == 1
    assert message in result.stderr


def test_service_monitor_when_its_api_exists(control_plane: ControlPlane, kube_version: str) -> None:
    # The API server here has no Prometheus Operator CRDs, so the object is checked as rendered.
    documents = render(
        control_plane,
        kube_version,
        "flightdeck",
        "--set",
        "serviceMonitor.enabled=true",
        "--api-versions",
        SERVICE_MONITOR_API,
    )
    (monitor,) = by_kind(documents, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "flightdeck-operator",
        "app.kubernetes.io/instance": RELEASE,
    }


# -- install, and the chart's RBAC doing real work -------------------------------------------------


def service_account_kubeconfig(cp: ControlPlane, namespace: str, path: Path) -> Path:
    """A kubeconfig with a token of the chart's ServiceAccount (TokenRequest API)."""
    token = cp.kubectl("create", "token", FULLNAME, "-n", namespace, "--duration=1h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)}}
        ],
        "users": [{"name": "chart-sa", "user": {"token": token}}],
        "contexts": [
            {"name": "chart-sa", "context": {"cluster": "local", "user": "chart-sa", "namespace": namespace}}
        ],
        "current-context": "chart-sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def can_i(cp: ControlPlane, kubeconfig: Path, *args: str) -> bool:
    result = subprocess.run(
        [str(cp.bin_path / "kubectl"), "--kubeconfig", str(kubeconfig), "auth", "can-i", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() == "yes"


@pytest.fixture
def installed(control_plane: ControlPlane, crds: Path, namespace: str) -> Iterator[str]:
    """`helm install` of the chart watching the test's namespace; uninstalled afterwards."""
    helm(
        control_plane,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
    )
    yield namespace
    helm(control_plane, "uninstall", RELEASE, "-n", namespace)


def test_helm_install_creates_the_release(control_plane: ControlPlane, installed: str) -> None:
    status = json.loads(helm(control_plane, "status", RELEASE, "-n", installed, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    statefulset = get(control_plane, installed, "statefulset", FULLNAME)
    assert [c["name"] for c in statefulset["spec"]["template"]["spec"]["containers"]] == [
        "operator",
        "sidecar",
    ]
    role = get(control_plane, installed, "role", FULLNAME)
    assert [(rule["resources"], rule["verbs"]) for rule in role["rules"]] == [
        (
            [
                "agentreleases",
                "pricingtables",
                "promotionpolicies",
                "releasepointers",
                "promotionrequests",
                "promotionapprovals",
                "notificationsubscriptions",
            ],
            ["get", "list", "watch"],
        ),
        (["agentreleases", "pricingtables", "promotionpolicies"], ["patch"]),
        (
            [
                "agentreleases/status",
                "pricingtables/status",
                "promotionpolicies/status",
                "releasepointers/status",
                "promotionrequests/status",
                "promotionapprovals/status",
                "notificationsubscriptions/status",
            ],
            ["update", "patch"],
        ),
        (["promotionrequests"], ["delete"]),  # retention
        (["secrets"], ["get"]),
        (["events"], ["create"]),
        (["promotionrequests"], ["create"]),
    ]
    for kind, name in [
        ("serviceaccount", FULLNAME),
        ("service", FULLNAME),
        ("persistentvolumeclaim", f"{FULLNAME}-data"),
        ("networkpolicy", FULLNAME),
        ("poddisruptionbudget", FULLNAME),
        ("rolebinding", f"{FULLNAME}-sidecar"),
        ("rolebinding", f"{FULLNAME}-leader-election"),
    ]:
        assert get(control_plane, installed, kind, name)["metadata"]["name"] == name


def test_the_chart_service_account_can_promote_and_nothing_more(
    control_plane: ControlPlane, installed: str, tmp_path: Path
) -> None:
    """The operator and the sidecar, both authenticated as the chart's ServiceAccount only: a
    promotion over kubectl, events and a blocked promotion over HTTP, then what it may not do."""
    namespace = installed
    kubeconfig = service_account_kubeconfig(control_plane, namespace, tmp_path / "kubeconfig-chart-sa")
    store = str(tmp_path / "flightdeck.db")
    # The operator serves the chart's own webhook configuration and keeps its caBundle as the
    # chart's ServiceAccount; the harness (admin) points it at the process, as no Service routes
    # to a local process here.
    operator = OperatorProcess(
        kubeconfig=kubeconfig,
        store=store,
        log_path=tmp_path / "operator.log",
        namespaces=(namespace,),
        # The Lease the chart's RBAC allows: named after the release, in its namespace.
        extra_env={
            "FLIGHTDECK_DEPENDENCY_GRACE_SECONDS": "2",
            "FLIGHTDECK_POINTER_RESYNC_SECONDS": "5",
            "FLIGHTDECK_LEASE_NAME": FULLNAME,
            "FLIGHTDECK_LEASE_NAMESPACE": namespace,
        },
        webhook_configuration=webhook_configuration_name(namespace),
        webhook_delegates=(f"system:serviceaccount:{namespace}:{FULLNAME}",),
        admin_kubeconfig=control_plane.kubeconfig("admin"),
    )
    sidecar = SidecarProcess(
        kubeconfig=kubeconfig,
        store=store,
        namespace=namespace,
        log_path=tmp_path / "sidecar.log",
        args=("--auth", "kubernetes"),
    )
    # A caller of the HTTP API: any identity RBAC lets create promotionrequests (here the admin).
    caller = {"Authorization": f"Bearer {control_plane.identity('admin').token}"}
    with operator, sidecar, httpx.Client(base_url=sidecar.url, headers=caller, timeout=60) as api:
        apply(
            control_plane,
            namespace,
            pricing_table("openai-2026-05", "openai", "2026-05", "gpt-4o-mini", (1.0, 2.0)),
            pricing_table("openai-2026-06", "openai", "2026-06", "gpt-4o-mini", (3.0, 4.0)),
            release("bot-1-4-0", AGENT, "openai", "2026-05", "gpt-4o-mini"),
            release("bot-1-5-0", AGENT, "openai", "2026-06", "gpt-4o-mini"),
            policy("gate", maxCostPerRunUsd=4.0, minCandidateRuns=1, minBaselineRuns=1, minLowRuns=1),
            pointer("bot-production", AGENT, ENV, "gate"),
        )
        events = [
            *run_events("bot-1-4-0", AGENT, ENV, 3, model="gpt-4o-mini"),
            *run_events("bot-1-5-0", AGENT, ENV, 3, model="gpt-4o-mini"),
        ]
        ingested = api.post("/v1/events", json={"events": events})
        assert ingested.status_code == 200, ingested.text

        apply(control_plane, namespace, request("first", "bot-production", "bot-1-4-0"))
        promoted = wait_decided(control_plane, namespace, "first")
        assert promoted["status"]["phase"] == "Promoted"
        assert promoted["spec"]["requestedBy"]["username"] == "admin"  # stamped by the webhook
        assert condition(promoted, "Ready")["status"] == "True"
        live = get(control_plane, namespace, "releasepointer", "bot-production")
        assert live["status"]["releaseId"] == "bot-1-4-0"

        # 1000 input + 500 output tokens at 3.0/4.0 per 1k: 5.0 per run, over the 4.0 limit.
        blocked = api.post(
            "/v1/promote",
            json={"release_id": "bot-1-5-0", "environment": ENV, "window": "7d", "reason": "try 1.5.0"},
        )
        assert blocked.status_code == 409, blocked.text
        assert blocked.json()["detail"]["outcome"]["policy"]["reasons"] == [
            "candidate cost_per_run_usd 5.000000 exceeds max 4.000000"
        ]
        live = get(control_plane, namespace, "releasepointer", "bot-production")
        assert live["status"]["releaseId"] == "bot-1-4-0"

        # What GitOps tools make of the objects the operator wrote (the shipped checks, as run there).
        requests = json.loads(control_plane.kubectl("get", "preq", "-n", namespace, "-o", "json").stdout)[
            "items"
        ]
        by_phase = {item["status"]["phase"]: item for item in requests}
        assert sorted(by_phase) == ["Blocked", "Promoted"]
        for body, argo, flux in [
            (by_phase["Promoted"], "Healthy", "Current"),
            (by_phase["Blocked"], "Degraded", "Failed"),
            (live, "Healthy", "Current"),
        ]:
            assert (argocd_health(body)["status"], flux_status(body)) == (argo, flux), body["status"]
    for process in (operator, sidecar):
        log = process.log_path.read_text()
        for symptom in ("Forbidden", "forbidden", " 403", "Not enough permissions"):
            assert symptom not in log, (
                f"the chart's RBAC misses something: {symptom!r} in\n{process.log_tail()}"
            )

    # ... and it is not cluster-admin.
    denied = subprocess.run(
        [
            str(control_plane.bin_path / "kubectl"),
            "--kubeconfig",
            str(kubeconfig),
            "get",
            "secrets",
            "-n",
            namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.returncode == 1
    assert f'secrets is forbidden: User "system:serviceaccount:{namespace}:{FULLNAME}"' in denied.stderr
    assert not can_i(control_plane, kubeconfig, "create", "pods", "-n", namespace)
    assert not can_i(control_plane, kubeconfig, "delete", "releasepointers.flightdeck.dev", "-n", namespace)
    assert not can_i(control_plane, kubeconfig, "update", "agentreleases.flightdeck.dev", "-n", namespace)
    assert not can_i(
        control_plane, kubeconfig, "list", "promotionrequests.flightdeck.dev", "-n", "kube-system"
    )
    assert can_i(control_plane, kubeconfig, "create", "promotionrequests.flightdeck.dev", "-n", namespace)


def test_cluster_wide_rbac(control_plane: ControlPlane, crds: Path, namespace: str, tmp_path: Path) -> None:
    """The default install (all namespaces): what kopf and the sidecar need everywhere, no more."""
    helm(control_plane, "install", RELEASE, str(CHART), "-n", namespace)
    try:
        kubeconfig = service_account_kubeconfig(control_plane, namespace, tmp_path / "kubeconfig")
        configuration = webhook_configuration_name(namespace)
        allowed = [
            ("watch", "promotionrequests.flightdeck.dev", "-A"),
            ("patch", "promotionpolicies.flightdeck.dev", "-n", "default"),
            ("update", "releasepointers.flightdeck.dev", "--subresource=status", "-n", "default"),
            ("patch", "promotionrequests.flightdeck.dev", "--subresource=status", "-n", "default"),
            ("list", "customresourcedefinitions.apiextensions.k8s.io"),
            ("create", "events", "-n", "default"),
            ("create", "tokenreviews.authentication.k8s.io"),
            ("create", "subjectaccessreviews.authorization.k8s.io"),
            ("create", "promotionrequests.flightdeck.dev", "-n", namespace),
            # Verification: automatic rollbacks and pipeline promotions in any watched namespace.
            ("create", "promotionrequests.flightdeck.dev", "-n", "default"),
            ("get", f"mutatingwebhookconfigurations.admissionregistration.k8s.io/{configuration}"),
            ("patch", f"mutatingwebhookconfigurations.admissionregistration.k8s.io/{configuration}"),
            ("delete", "promotionrequests.flightdeck.dev", "-n", "default"),  # retention
            ("create", "leases.coordination.k8s.io", "-n", namespace),
            ("get", f"leases.coordination.k8s.io/{FULLNAME}", "-n", namespace),
            ("update", f"leases.coordination.k8s.io/{FULLNAME}", "-n", namespace),
            # Notifications: a subscription's signing key by name; the webhook API in its namespace.
            ("get", "secrets", "-n", "default"),
            ("watch", "notificationsubscriptions.flightdeck.dev", "-A"),
            ("patch", "notificationsubscriptions.flightdeck.dev", "--subresource=status", "-n", "default"),
            ("create", "notificationsubscriptions.flightdeck.dev", "-n", namespace),
            ("delete", "notificationsubscriptions.flightdeck.dev", "-n", namespace),
            ("create", "secrets", "-n", namespace),
        ]
        denied = [
            ("patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/someone-elses"),
            ("list", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
            ("delete", f"mutatingwebhookconfigurations.admissionregistration.k8s.io/{configuration}"),
            ("update", "promotionrequests.flightdeck.dev", "-n", "default"),
            ("list", "namespaces"),  # kopf needs namespaces only when given a namespace list
            ("list", "secrets", "-A"),
            ("watch", "secrets", "-A"),
            ("create", "secrets", "-n", "default"),
            ("update", "secrets", "-n", namespace),
            ("delete", "secrets", "-n", namespace),
            ("create", "notificationsubscriptions.flightdeck.dev", "-n", "default"),
            ("patch", "notificationsubscriptions.flightdeck.dev", "-n", namespace),  # only its status
            ("list", "configmaps", "-n", namespace),
            ("create", "pods", "-n", namespace),
            ("delete", "agentreleases.flightdeck.dev", "-n", "default"),
            ("patch", "promotionrequests.flightdeck.dev", "-n", "default"),
            ("patch", "releasepointers.flightdeck.dev", "-n", "default"),  # only its status
            ("create", "customresourcedefinitions.apiextensions.k8s.io"),
            ("update", "events", "-n", "default"),
            ("update", "leases.coordination.k8s.io/someone-elses", "-n", namespace),
            ("get", f"leases.coordination.k8s.io/{FULLNAME}", "-n", "default"),
        ]
        assert [args for args in allowed if not can_i(control_plane, kubeconfig, *args)] == []
        assert [args for args in denied if can_i(control_plane, kubeconfig, *args)] == []
    finally:
        helm(control_plane, "uninstall", RELEASE, "-n", namespace)
    # The ledger's volume outlives the release (helm.sh/resource-policy: keep).
    kept = get(control_plane, namespace, "persistentvolumeclaim", f"{FULLNAME}-data")
    assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    remaining = control_plane.kubectl(
        "get", "sts,deploy,sa,svc", "-n", namespace, "-o", "name"
    ).stdout.split()
    assert [name for name in remaining if FULLNAME in name] == []
