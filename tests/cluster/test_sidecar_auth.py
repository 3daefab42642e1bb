"""Who may call the sidecar: real API-server tokens checked with TokenReview, RBAC checked with
SubjectAccessReview (granted and revoked with real Roles), the static-token mode and the refusal
to run without authentication anywhere but loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flightdeck_operator.actions.promotions import REQUESTED_BY_ANNOTATION
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess, ProcessError, SidecarProcess, free_port

from .conftest import StartSidecar
from .kube import apply, get, quickstart
from .sidecar_client import action_body, as_user, http, quickstart_events, role, role_binding

READ_401 = {"detail": "Missing or invalid API token for read route."}
WRITE_401 = {"detail": "Missing or invalid API token for mutation route."}
# Short enough that a new RoleBinding is seen at once by the next request.
NO_CACHE = ("--auth-cache-seconds", "0")


def test_bearer_tokens_are_checked_with_token_review(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar
) -> None:
    sidecar = start_sidecar()
    admin_token = control_plane.identity("admin").token
    with http(sidecar) as anonymous:
        assert anonymous.get("/health").json() == {
            "status": "ok",
            "mutation_auth": "bearer",
            "read_auth": "bearer",
            "auth_mode": "kubernetes",
        }
        for path in ("/healthz", "/openapi.json", "/metrics"):
            assert anonymous.get(path).status_code == 200, path
        missing = anonymous.get("/v1/releases")
        assert (missing.status_code, missing.json()) == (401, READ_401)
        assert missing.headers["www-authenticate"] == "Bearer"
        write = anonymous.post("/v1/events", json={"events": quickstart_events()})
        assert (write.status_code, write.json()) == (401, WRITE_401)
        # Authentication runs before the body is looked at (the reference answered 422 first).
        assert anonymous.post("/v1/promote", content=b"not json").status_code == 401
        assert anonymous.post("/v1/diff", json={}).json() == READ_401
        # The reference's prefix check is case-sensitive; a token the API server does not know fails.
        lower = anonymous.get("/v1/releases", headers={"Authorization": f"bearer {admin_token}"})
        assert lower.status_code == 401
        forged = anonymous.get("/v1/releases", headers={"Authorization": "Bearer not-a-real-token"})
        assert (forged.status_code, forged.json()) == (401, READ_401)
    with http(sidecar, admin_token) as admin:
        assert admin.get("/v1/releases").json() == {"releases": []}
        assert admin.post("/v1/events", json={"events": quickstart_events()}).json() == {"inserted": 2}


def test_rbac_decides_reads_ingestion_and_promotion(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, start_sidecar: StartSidecar
) -> None:
    quickstart(control_plane, namespace)
    sidecar = start_sidecar(*NO_CACHE, store=operator.store)
    bob = as_user(control_plane, sidecar, "bob")  # group flightdeck:viewers
    alice = as_user(control_plane, sidecar, "alice")  # group flightdeck:developers
    with bob, alice:
        denied = bob.get("/v1/releases")
        assert denied.status_code == 403
        assert denied.json() == {
            "detail": 'User "bob" cannot list resource "promotionrequests" in API group "flightdeck.dev" in the '
            f'namespace "{namespace}" (needed to read).'
        }
        assert alice.post("/v1/promote", json=action_body("support-base")).status_code == 403

        # Viewers may read; reading does not let them write.
        apply(
            control_plane,
            namespace,
            role("flightdeck-reader", ("list", "promotionrequests")),
            role_binding("viewers-read", "flightdeck-reader", group="flightdeck:viewers"),
        )
        releases = bob.get("/v1/releases")
        assert releases.status_code == 200
        assert [r["release_id"] for r in releases.json()["releases"]] == ["support-cand", "support-base"]
        assert bob.post("/v1/promote", json=action_body("support-base")).status_code == 403
        no_ingest = bob.post("/v1/events", json={"events": quickstart_events()})
        assert no_ingest.status_code == 403
        assert 'cannot create resource "runevents"' in no_ingest.json()["detail"]

        # Ingestion is its own (virtual) resource: a collector can send events and nothing else.
        apply(
            control_plane,
            namespace,
            role("event-writer", ("create", "runevents")),
            role_binding("bob-ingest", "event-writer", user="bob"),
        )
        assert bob.post("/v1/events", json={"events": quickstart_events()}).json() == {"inserted": 2}
        assert bob.post("/v1/promote", json=action_body("support-base")).status_code == 403

        # Promoting needs create on promotionrequests, exactly what kubectl would need.
        apply(
            control_plane,
            namespace,
            role("promoter", ("create", "promotionrequests")),
            role_binding("developers-promote", "promoter", group="flightdeck:developers"),
        )
        promoted = alice.post("/v1/promote", json=action_body("support-base"))
        assert promoted.status_code == 200, promoted.text
        name = promoted.headers["x-flightdeck-request"].split("/")[1]
        obj = get(control_plane, namespace, "promotionrequest", name)
        assert obj["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] == "alice"
        # alice may promote but was never granted reads.
        assert alice.get("/v1/actions").status_code == 403

        # Revoking works on the next request (caching disabled here).
        control_plane.kubectl("delete", "rolebinding", "developers-promote", "-n", namespace)
        assert alice.post("/v1/promote", json=action_body("support-cand")).status_code == 403


def test_service_account_tokens_work_and_reviews_are_cached(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar
) -> None:
    """A ServiceAccount token (TokenRequest API) is a real caller; a grant is cached for a while."""
    sidecar = start_sidecar("--auth-cache-seconds", "3")
    control_plane.kubectl("create", "serviceaccount", "collector", "-n", namespace)
    token = control_plane.kubectl("create", "token", "collector", "-n", namespace).stdout.strip()
    with http(sidecar, token) as collector:
        assert collector.get("/v1/promoted").status_code == 403
        apply(
            control_plane,
            namespace,
            role("reader", ("list", "promotionrequests")),
            role_binding("collector-read", "reader", user=f"system:serviceaccount:{namespace}:collector"),
        )
        # The denial is cached for up to 3 s, then the grant is seen.
        deadline = time.monotonic() + 10
        while (status := collector.get("/v1/promoted").status_code) == 403 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200
        assert collector.get("/v1/promoted").json() == {"promoted": []}


def test_static_token_mode(control_plane: ControlPlane, start_sidecar: StartSidecar, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    sidecar = start_sidecar("--auth", "token", "--token-file", str(token_file))
    with http(sidecar) as anonymous:
        assert anonymous.get("/health").json()["mutation_auth"] == "bearer"
        assert anonymous.get("/v1/actions").json() == READ_401
        assert anonymous.post("/v1/events", json={"events": quickstart_events()}).json() == WRITE_401
        wrong = anonymous.get("/v1/actions", headers={"Authorization": "Bearer s3cret-tokem"})
        assert wrong.status_code == 401
    with http(sidecar, "s3cret-token") as caller:
        assert caller.get("/v1/actions").json() == {"actions": []}
        assert caller.post("/v1/events", json={"events": quickstart_events()}).json() == {"inserted": 2}


def test_no_auth_only_on_loopback(
    control_plane: ControlPlane, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    open_sidecar = start_sidecar("--auth", "none")
    with http(open_sidecar) as anyone:
        assert anyone.get("/health").json() == {
            "status": "ok",
            "mutation_auth": "loopback",
            "read_auth": "open",
            "auth_mode": "none",
        }
        assert anyone.post("/v1/events", json={"events": quickstart_events()}).json() == {"inserted": 2}

    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "flightdeck_operator.cli.main",
            "sidecar",
            "--auth",
            "none",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--store",
            str(tmp_path / "refused.db"),
            "--kubeconfig",
            str(control_plane.kubeconfig("admin")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: Refusing to listen on '0.0.0.0' with --auth none")
    with pytest.raises(ProcessError, match="needs --token-file"):
        SidecarProcess(
            kubeconfig=control_plane.kubeconfig("admin"),
            store=str(tmp_path / "t.db"),
            namespace="default",
            log_path=tmp_path / "no-token.log",
            args=("--auth", "token"),
        ).start()


def test_unknown_routes_and_methods_are_not_errors(
    control_plane: ControlPlane, start_sidecar: StartSidecar
) -> None:
    sidecar = start_sidecar()
    with as_user(control_plane, sidecar, "admin") as admin:
        assert admin.get("/v1/nope").status_code == 404
        assert admin.get("/v1/promote").status_code == 405
        openapi = admin.get("/openapi.json").json()
    paths = set(openapi["paths"])
    assert {
        "/health",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/releases",
        "/v1/promoted",
        "/v1/actions",
        "/v1/events",
        "/v1/diff",
        "/v1/promote",
        "/v1/rollback",
        "/v1/promotion-requests/{name}",
    } <= paths
    assert set(openapi["paths"]["/v1/promote"]["post"]["responses"]) >= {
        "200",
        "400",
        "401",
        "403",
        "409",
        "504",
    }
    events_schema = openapi["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert events_schema == {"$ref": "#/components/schemas/IngestRequest"}
    assert "RunEvent" in json.dumps(openapi["components"]["schemas"]["IngestRequest"])
    ready = httpx.get(f"{sidecar.url}/readyz", timeout=10).json()
    assert ready["status"] == "ok"
    assert ready["checks"]["kubernetes"].startswith("ok (v1.")
