"""The operator's admission webhook, called by the real API server over the operator's generated CA:
who created a request or an approval, break-glass RBAC, self-approval, policy validation at
apply time and the predicted decision of a server-side dry run."""

from __future__ import annotations

import base64
import json
import ssl
import stat
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client

from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.localdev.controlplane import ControlPlane, KubectlError
from flightdeck_operator.localdev.processes import WEBHOOKS, OperatorProcess
from flightdeck_operator.store import open_store

from .kube import FIRST_PROMOTION, get, policy, quickstart, request, wait_for

GROUP = "flightdeck.dev"


def grant(
    cp: ControlPlane, namespace: str, user: str, name: str, rules: list[tuple[list[str], list[str]]]
) -> None:
    """A Role with ``(verbs, resources)`` rules on flightdeck.dev, bound to ``user``."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": [GROUP], "resources": resources, "verbs": verbs} for verbs, resources in rules
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([role, binding]))


def create_as(cp: ControlPlane, namespace: str, user: str, document: dict[str, Any], *args: str) -> str:
    """``kubectl create -f -`` as ``user``; raises KubectlError (stderr in the message) on refusal."""
    return cp.kubectl(
        "create", "-n", namespace, "-f", "-", *args, user=user, input=yaml.safe_dump(document)
    ).stdout


def eventually(action: Callable[[], str], *, timeout: float = 15) -> str:
    """Retry while RBAC answers 403: the authorizer sees a new RoleBinding a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except KubectlError as error:
            if time.monotonic() > deadline or "forbidden" not in error.stderr.lower():
                raise
            time.sleep(0.2)


# -- the transport: generated CA, caBundle, HTTPS --------------------------------------------------


def test_the_api_server_trusts_the_operators_generated_ca(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    configuration = json.loads(
        control_plane.kubectl(
            "get", "mutatingwebhookconfiguration", operator.configuration_name, "-o", "json"
        ).stdout
    )
    ca_pem = (operator.webhook_cert_dir / "ca.crt").read_bytes()
    assert stat.S_IMODE((operator.webhook_cert_dir / "tls.key").stat().st_mode) == 0o600
    webhooks = {webhook["name"]: webhook for webhook in configuration["webhooks"]}
    assert sorted(webhooks) == sorted(f"{name}.flightdeck.dev" for name, *_ in WEBHOOKS)
    for name, _resource, path, _operations, failure_policy in WEBHOOKS:
        webhook = webhooks[f"{name}.flightdeck.dev"]
        assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == ca_pem, name
        assert webhook["clientConfig"]["url"] == operator.webhook_url(path)
        assert (webhook["failurePolicy"], webhook["sideEffects"]) == (failure_policy, "None")
        assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == [namespace]

    ca = x509.load_pem_x509_certificate(ca_pem)
    served = x509.load_pem_x509_certificate((operator.webhook_cert_dir / "tls.crt").read_bytes())
    served.verify_directly_issued_by(ca)
    context = ssl.create_default_context(cafile=str(operator.webhook_cert_dir / "ca.crt"))
    with urllib.request.urlopen(operator.webhook_url("/healthz"), context=context, timeout=5) as answer:
        assert answer.status == 200


def test_restart_reuses_the_ca_and_the_webhook_answers_again(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    ca_before = (operator.webhook_cert_dir / "ca.crt").read_bytes()
    operator.kill()
    # failurePolicy Fail: while the operator is down, nothing it admits can be created.
    down = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False, input=yaml.safe_dump(policy("while-down"))
    )
    assert down.returncode == 1
    assert 'failed calling webhook "promotionpolicies.flightdeck.dev"' in down.stderr
    operator.start()
    assert (operator.webhook_cert_dir / "ca.crt").read_bytes() == ca_before
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(policy("after-restart")))


def test_the_gateway_patches_only_a_differing_ca_bundle(
    control_plane: ControlPlane, api_client: client.ApiClient
) -> None:
    name = f"flightdeck-gateway-{uuid.uuid4().hex[:6]}"
    admission = client.AdmissionregistrationV1Api(api_client)
    nowhere = {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["no-such-namespace"]}
    admission.create_mutating_webhook_configuration(
        {
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": f"w{index}.flightdeck.dev",
                    "clientConfig": {"url": f"https://127.0.0.1:1/w{index}", **extra},
                    "rules": [
                        {
                            "apiGroups": [GROUP],
                            "apiVersions": ["v1alpha1"],
                            "operations": ["CREATE"],
                            "resources": ["promotionrequests"],
                        }
                    ],
                    "namespaceSelector": {"matchExpressions": [nowhere]},
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                }
                for index, extra in enumerate([{}, {"caBundle": base64.b64encode(b"stale").decode()}])
            ],
        }
    )
    try:
        gateway = KubeGateway(api_client)
        ca = b"-----BEGIN CERTIFICATE-----\nours\n-----END CERTIFICATE-----\n"
        assert gateway.ensure_webhook_ca_bundle(name, ca) is True
        assert gateway.ensure_webhook_ca_bundle(name, ca) is False
        stored = admission.read_mutating_webhook_configuration(name)
        assert {base64.b64decode(w.client_config.ca_bundle) for w in stored.webhooks} == {ca}
    finally:
        admission.delete_mutating_webhook_configuration(name)


# -- who created it ----------------------------------------------------------------------------------


def test_requested_by_is_the_authenticated_user_even_when_forged(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    grant(control_plane, namespace, "alice", "alice-requests", [(["create", "get"], ["promotionrequests"])])
    forged = request(
        "forged",
        "nowhere",
        "some-release",
        requestedBy={"username": "admin", "uid": "admin", "groups": ["system:masters"], "via": "x"},
    )
    eventually(lambda: create_as(control_plane, namespace, "alice", forged))
    stored = get(control_plane, namespace, "promotionrequest", "forged")
    assert stored["spec"]["requestedBy"] == {
        "username": "alice",
        "uid": "alice",
        "groups": ["flightdeck:developers", "system:authenticated"],
    }


def test_override_needs_the_override_verb(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    grant(control_plane, namespace, "alice", "alice-requests", [(["create", "get"], ["promotionrequests"])])
    glass = request("glass", "nowhere", "some-release", override={"reason": "incident 42"})
    with pytest.raises(KubectlError) as denied:
        eventually(lambda: create_as(control_plane, namespace, "alice", glass))
    assert (
        'admission webhook "promotionrequests.flightdeck.dev" denied the request: breaking glass needs RBAC: '
        f'alice may not "override" promotionrequests.flightdeck.dev in namespace {namespace}'
    ) in denied.value.stderr

    grant(control_plane, namespace, "alice", "alice-overrides", [(["override"], ["promotionrequests"])])
    deadline = time.monotonic() + 15
    while True:  # the SubjectAccessReview sees the new RoleBinding a moment later
        created = control_plane.kubectl(
            "create", "-n", namespace, "-f", "-", user="alice", check=False, input=yaml.safe_dump(glass)
        )
        if created.returncode == 0 or time.monotonic() > deadline:
            break
        assert "breaking glass needs RBAC" in created.stderr
        time.sleep(0.2)
    assert created.returncode == 0, created.stderr
    stored = get(control_plane, namespace, "promotionrequest", "glass")
    assert stored["spec"]["override"] == {"reason": "incident 42"}
    assert stored["spec"]["requestedBy"]["username"] == "alice"


# -- approvals ---------------------------------------------------------------------------------------


def approval(name: str, request_name: str, uid: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "PromotionApproval",
        "metadata": {"name": name},
        "spec": {
            "request": {"name": request_name, "uid": uid},
            "decisionDigest": "0" * 64,
            "reason": "looks good",
            **extra,
        },
    }


def test_alice_cannot_approve_her_own_request(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace)
    # A policy with an approval gate keeps the request undecided (AwaitingApproval).
    control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(
            policy("gate", minCandidateRuns=0, minBaselineRuns=0, minLowRuns=0, approval={"minApprovals": 1})
        ),
    )
    grant(
        control_plane,
        namespace,
        "alice",
        "alice-promotes",
        [(["create", "get"], ["promotionrequests", "promotionapprovals"])],
    )
    grant(control_plane, namespace, "bob", "bob-approves", [(["create", "get"], ["promotionapprovals"])])
    eventually(
        lambda: create_as(control_plane, namespace, "alice", request("mine", "support-local", "support-base"))
    )
    awaiting = wait_for(
        lambda: (
            lambda body: body if (body.get("status") or {}).get("phase") == "AwaitingApproval" else None
        )(get(control_plane, namespace, "promotionrequest", "mine")),
        what="the request to await approval",
    )
    uid = awaiting["metadata"]["uid"]
    digest = awaiting["status"]["approval"]["decisionDigest"]

    with pytest.raises(KubectlError) as own:
        create_as(control_plane, namespace, "alice", approval("self", "mine", uid, decisionDigest=digest))
    assert (
        'admission webhook "promotionapprovals.flightdeck.dev" denied the request: '
        "alice requested this promotion and cannot approve it; another approver must"
    ) in own.value.stderr

    with pytest.raises(KubectlError) as replaced:
        eventually(
            lambda: create_as(control_plane, namespace, "bob", approval("wrong-uid", "mine", "not-the-uid"))
        )
    assert f"PromotionApproval names request mine with uid not-the-uid, but that request has uid {uid}" in (
        replaced.value.stderr
    )

    eventually(
        lambda: create_as(
            control_plane, namespace, "bob", approval("bobs", "mine", uid, decisionDigest=digest)
        )
    )
    stored = get(control_plane, namespace, "promotionapproval", "bobs")
    assert stored["spec"]["approver"]["username"] == "bob"


# -- policies ----------------------------------------------------------------------------------------


def test_a_policy_with_an_invalid_cron_schedule_is_rejected_at_apply(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    windows = [{"name": "freeze", "kind": "Deny", "schedule": "61 * * * *", "duration": "1h"}]
    applied = control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=yaml.safe_dump(policy("frozen", promotionWindows=windows)),
    )
    assert applied.returncode == 1
    assert (
        'admission webhook "promotionpolicies.flightdeck.dev" denied the request: '
        "spec.promotionWindows[0].schedule: invalid cron schedule '61 * * * *': bad minute"
    ) in applied.stderr
    # An update is validated too.
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(policy("frozen")))
    windows[0] |= {"schedule": "0 9 * * 1", "timeZone": "Mars/Olympus"}
    updated = control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=yaml.safe_dump(policy("frozen", promotionWindows=windows)),
    )
    assert updated.returncode == 1
    assert "spec.promotionWindows[0].timeZone: unknown time zone 'Mars/Olympus'" in updated.stderr


# -- dry run -----------------------------------------------------------------------------------------


def test_a_server_dry_run_warns_the_predicted_decision_and_stores_nothing(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace)
    document = yaml.safe_dump(request("would-be", "support-local", "support-base"))

    def predicted() -> subprocess.CompletedProcess[str] | None:
        dry = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=document)
        # Until the operator's indexes have seen the quickstart, the prediction says what is missing.
        return None if "not found" in dry.stderr else dry

    dry = wait_for(predicted, timeout=30, what="a prediction from the operator's indexes")
    assert "promotionrequest.flightdeck.dev/would-be created (server dry run)" in dry.stdout
    warnings = [line for line in dry.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1, dry.stderr
    assert warnings[0].startswith("Warning: FlightDeck prediction: promote of support-base"), warnings
    assert "would be Promoted" in warnings[0]
    assert FIRST_PROMOTION in warnings[0]
    listed = json.loads(
        control_plane.kubectl("get", "promotionrequests", "-n", namespace, "-o", "json").stdout
    )
    assert listed["items"] == []
    with open_store(operator.store) as store:
        assert [e for e in store.list_ledger(limit=100) if e.kind.value in ("promote", "rollback")] == []
