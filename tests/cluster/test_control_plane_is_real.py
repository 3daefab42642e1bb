"""Proof that the cluster tier talks to a real kube-apiserver: schema + CEL validation, optimistic
concurrency, watches, RBAC, kubectl and helm all behave as on any conformant cluster."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from flightdeck_operator.localdev.controlplane import ControlPlane

from .conftest import client_for

GROUP = "proof.flightdeck.dev"
PLURAL = "gadgets"

GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer"}, "owner": {"type": "string"}},
                                "x-kubernetes-validations": [
                                    {"rule": "self.size <= 10", "message": "size must be at most 10"}
                                ],
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "conditions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["type", "status"],
                                            "properties": {
                                                "type": {"type": "string"},
                                                "status": {"type": "string"},
                                                "reason": {"type": "string"},
                                                "message": {"type": "string"},
                                                "lastTransitionTime": {
                                                    "type": "string",
                                                    "format": "date-time",
                                                },
                                            },
                                        },
                                    }
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def gadget_crd(api_client: client.ApiClient) -> str:
    extensions = client.ApiextensionsV1Api(api_client)
    name = GADGET_CRD["metadata"]["name"]
    try:
        extensions.create_custom_resource_definition(GADGET_CRD)
    except ApiException as error:
        if error.status != 409:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = extensions.read_custom_resource_definition(name)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        if conditions.get("Established") == "True":
            return name
        time.sleep(0.2)
    raise AssertionError(f"CRD {name} never became Established")


def gadget(name: str, size: int) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": {"size": size}}


def test_server_reports_the_built_version(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    assert version["serverVersion"]["gitVersion"] == version["clientVersion"]["gitVersion"]


def test_schema_and_cel_violations_are_rejected_with_422(
    api_client: client.ApiClient, gadget_crd: str, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as cel_error:
        objects.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, gadget("too-big", 11))
    assert cel_error.value.status == 422
    assert "size must be at most 10" in cel_error.value.body

    missing_required = {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(ApiException) as schema_error:
        objects.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, missing_required)
    assert schema_error.value.status == 422
    assert "spec.size: Required value" in schema_error.value.body


def test_stale_resource_version_gets_409_conflict(
    api_client: client.ApiClient, gadget_crd: str, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    created = objects.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, gadget("g", 1))
    stale = dict(created)
    fresh = dict(created, spec={"size": 2})
    objects.replace_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "g", fresh)
    stale["spec"] = {"size": 3}
    with pytest.raises(ApiException) as conflict:
        objects.replace_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "g", stale)
    assert conflict.value.status == 409
    current = objects.get_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "g")
    assert current["spec"]["size"] == 2


def test_watch_delivers_added_and_modified(
    api_client: client.ApiClient, gadget_crd: str, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    seen: list[tuple[str, int]] = []
    stream = watch.Watch()

    def consume() -> None:
        for event in stream.stream(
            objects.list_namespaced_custom_object, GROUP, "v1", namespace, PLURAL, timeout_seconds=20
        ):
            seen.append((event["type"], event["object"]["spec"]["size"]))
            if event["type"] == "MODIFIED":
                stream.stop()

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(0.5)  # let the watch open before the first write
    objects.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, gadget("w", 1))
    objects.patch_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "w", {"spec": {"size": 5}})
    consumer.join(timeout=30)
    assert seen[:2] == [("ADDED", 1), ("MODIFIED", 5)]


def test_non_admin_is_forbidden_until_a_rolebinding_grants_access(
    control_plane: ControlPlane, api_client: client.ApiClient, gadget_crd: str, namespace: str
) -> None:
    alice = client.CustomObjectsApi(client_for(control_plane, "alice"))
    with pytest.raises(ApiException) as forbidden:
        alice.list_namespaced_custom_object(GROUP, "v1", namespace, PLURAL)
    assert forbidden.value.status == 403
    assert 'User "alice" cannot list resource "gadgets"' in json.loads(forbidden.value.body)["message"]

    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "gadget-reader"},
            "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "alice-reads-gadgets"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gadget-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
        },
    )
    deadline = time.monotonic() + 10  # the RBAC authorizer's informer catches up asynchronously
    while True:
        try:
            listed = alice.list_namespaced_custom_object(GROUP, "v1", namespace, PLURAL)
            break
        except ApiException as error:
            if error.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert listed["items"] == []
    # bob is in another group and still forbidden; alice still cannot write.
    bob = client.CustomObjectsApi(client_for(control_plane, "bob"))
    with pytest.raises(ApiException) as bob_forbidden:
        bob.list_namespaced_custom_object(GROUP, "v1", namespace, PLURAL)
    assert bob_forbidden.value.status == 403
    with pytest.raises(ApiException) as write_forbidden:
        alice.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, gadget("nope", 1))
    assert write_forbidden.value.status == 403


def test_kubectl_apply_and_wait_for_condition(
    control_plane: ControlPlane, gadget_crd: str, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "gadget.yaml"
    manifest.write_text(yaml.safe_dump(gadget("applied", 3)))
    applied = control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))
    assert "gadget.proof.flightdeck.dev/applied created" in applied.stdout

    rejected = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(gadget("bad", 99)), check=False
    )
    assert rejected.returncode != 0
    assert "size must be at most 10" in rejected.stderr

    waiter = subprocess.Popen(
        [
            str(control_plane.bin_path / "kubectl"),
            "--kubeconfig",
            str(control_plane.kubeconfig()),
            "wait",
            "-n",
            namespace,
            "gadget/applied",
            "--for=condition=Ready",
            "--timeout=30s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    assert waiter.poll() is None, "kubectl wait returned before the condition was set"
    status = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Proven",
                    "message": "set by the test",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }
    control_plane.kubectl(
        "patch",
        "-n",
        namespace,
        "gadget/applied",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    out, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    assert "gadget.proof.flightdeck.dev/applied condition met" in out


def test_helm_template_renders_a_chart(bin_dir: Path, tmp_path: Path) -> None:
    chart = tmp_path / "trivial"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: trivial\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    rendered = subprocess.run(
        [str(bin_dir / "helm"), "template", "demo", str(chart), "--set", "greeting=hi"],
        capture_output=True,
        text=True,
        check=True,
    )
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert documents == [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "demo-cm"}, "data": {"greeting": "hi"}}
    ]
