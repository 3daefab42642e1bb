"""POST/GET/DELETE /v1/webhooks over real HTTP: the reference's shapes and validation messages on
top of NotificationSubscriptions, RBAC per verb, and the SSRF refusals."""

from __future__ import annotations

from typing import Any

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import SidecarProcess

from .conftest import StartSidecar
from .kube import apply, get, wait_for
from .sidecar_client import as_user, http, role, role_binding

HOOK = "https://hooks.example.com/flightdeck"


def messages(answer: Any) -> list[str]:
    return [error["msg"] for error in answer.json()["detail"]]


def test_bad_webhooks_are_refused_with_the_reference_messages(
    control_plane: ControlPlane, start_sidecar: StartSidecar, namespace: str
) -> None:
    sidecar = start_sidecar()
    with as_user(control_plane, sidecar, "admin") as api:
        for url, message in (
            (
                "http://169.254.169.254/latest/meta-data/",
                "Webhook URL targets a link-local address (cloud-metadata range); refusing.",
            ),
            (
                "http://[fe80::1]/",
                "Webhook URL targets a link-local address (cloud-metadata range); refusing.",
            ),
            (
                "http://2852039166/",
                "Webhook URL targets a link-local address (cloud-metadata range); refusing.",
            ),
            (
                "http://metadata.google.internal/",
                "Webhook URL targets a cloud-metadata hostname; refusing to register.",
            ),
            ("ftp://hooks.example.com/", "Webhook URL scheme must be http or https (got 'ftp')."),
            ("file:///etc/passwd", "Webhook URL scheme must be http or https (got 'file')."),
            ("http:///nohost", "Webhook URL must include a host."),
        ):
            refused = api.post("/v1/webhooks", json={"url": url, "events": ["promote.succeeded"]})
            assert refused.status_code == 422, url
            assert messages(refused) == [f"Value error, {message}"], url
            assert refused.json()["detail"][0]["loc"] == ["body", "url"]
        unknown = api.post(
            "/v1/webhooks", json={"url": HOOK, "events": ["promote.succeeded", "promote.started"]}
        )
        assert messages(unknown) == [
            "Value error, Unsupported event(s): ['promote.started']. Allowed: ['approval.accepted', "
            "'approval.rejected', 'approval.requested', 'promote.blocked', 'promote.succeeded', "
            "'promote.window_closed', 'request.failed', 'rollback.blocked', 'rollback.succeeded', "
            "'verification.failed']"
        ]
        empty = api.post("/v1/webhooks", json={"url": HOOK, "events": []})
        assert (empty.status_code, empty.json()["detail"][0]["type"]) == (422, "too_short")
        assert api.post("/v1/webhooks", json={"events": ["promote.succeeded"]}).status_code == 422
        assert (
            api.post("/v1/webhooks", json={"url": HOOK, "events": ["x"], "format": "xml"}).status_code == 422
        )
        # Nothing was created by any of them.
        assert api.get("/v1/webhooks").json() == {
            "api_version": "v1",
            "kind": "WebhookList",
            "webhooks": [],
            "total": 0,
        }
        missing = api.delete("/v1/webhooks/wh-0000")
        assert (missing.status_code, missing.json()) == (404, {"detail": "Unknown webhook: wh-0000"})
        assert api.delete("/v1/webhooks/Not_A_Name").status_code == 404


def test_a_webhook_is_a_subscription_with_its_own_secret(
    control_plane: ControlPlane, start_sidecar: StartSidecar, namespace: str
) -> None:
    sidecar = start_sidecar()
    with as_user(control_plane, sidecar, "admin") as api:
        created = api.post(
            "/v1/webhooks",
            json={"url": HOOK, "events": ["promote.blocked", "promote.blocked"], "format": "cloudevents"},
        ).json()
    name = created["webhook_id"]
    assert created["events"] == ["promote.blocked"]  # a set
    assert (created["format"], created["description"], created["enabled"]) == ("cloudevents", None, True)
    stored = get(control_plane, namespace, "notificationsubscription", name)
    assert stored["spec"] == {
        "url": HOOK,
        "events": ["promote.blocked"],
        "secretRef": {"name": name, "key": "secret"},
        "format": "cloudevents",
        "retryFor": "24h",
        "suspend": False,
    }
    assert stored["metadata"]["annotations"]["flightdeck.dev/requested-by"] == "admin"
    secret = get(control_plane, namespace, "secret", name)
    assert [(o["kind"], o["name"], o["uid"]) for o in secret["metadata"]["ownerReferences"]] == [
        ("NotificationSubscription", name, stored["metadata"]["uid"])
    ]
    # Applied with kubectl (GitOps): listed too, without a preview (the sidecar never saw its key).
    apply(
        control_plane,
        namespace,
        {
            "apiVersion": "flightdeck.dev/v1alpha1",
            "kind": "NotificationSubscription",
            "metadata": {"name": "from-git"},
            "spec": {
                "url": HOOK,
                "events": ["rollback.succeeded"],
                "secretRef": {"name": "git-key"},
                "suspend": True,
            },
        },
    )
    with as_user(control_plane, sidecar, "admin") as api:
        listed = {w["webhook_id"]: w for w in api.get("/v1/webhooks").json()["webhooks"]}
        assert (listed["from-git"]["secret_preview"], listed["from-git"]["enabled"]) == (None, False)
        assert listed[name]["secret_preview"].count("…") == 1
        assert api.delete("/v1/webhooks/from-git").json() == {"webhook_id": "from-git", "deleted": True}
        assert list(w["webhook_id"] for w in api.get("/v1/webhooks").json()["webhooks"]) == [name]


def test_webhooks_need_rbac_on_subscriptions(
    control_plane: ControlPlane, start_sidecar: StartSidecar, namespace: str
) -> None:
    sidecar: SidecarProcess = start_sidecar()
    with http(sidecar) as anonymous:
        for method, path in (("POST", "/v1/webhooks"), ("GET", "/v1/webhooks"), ("DELETE", "/v1/webhooks/x")):
            answer = anonymous.request(method, path, json={"url": HOOK, "events": ["promote.succeeded"]})
            assert (answer.status_code, answer.json()) == (
                401,
                {"detail": "Missing or invalid API token for mutation route."},
            )
    with as_user(control_plane, sidecar, "bob") as bob:
        denied = bob.get("/v1/webhooks")
        assert denied.status_code == 403
        assert denied.json()["detail"] == (
            'User "bob" cannot list resource "notificationsubscriptions" in API group "flightdeck.dev" '
            f'in the namespace "{namespace}" (needed to list webhooks).'
        )
        apply(
            control_plane,
            namespace,
            role("webhook-reader", ("list", "notificationsubscriptions")),
            role_binding("bob-reads-webhooks", "webhook-reader", user="bob"),
        )
        wait_for(lambda: bob.get("/v1/webhooks").status_code == 200, what="bob's RBAC")
        assert (
            bob.post("/v1/webhooks", json={"url": HOOK, "events": ["promote.succeeded"]}).status_code == 403
        )
        assert bob.delete("/v1/webhooks/x").status_code == 403
