"""The sidecar over real HTTP, with a real operator deciding on a real API server: promote and
rollback answer from the PromotionRequest's status, 409 is the reference body key by key, and
retries with an Idempotency-Key map to one request."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from flightdeck_operator.actions.promotions import REQUEST_DIGEST_ANNOTATION, REQUESTED_BY_ANNOTATION
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess

from .conftest import StartSidecar
from .kube import AGENT, COST_BREACH, ENV, FIRST_PROMOTION, get, quickstart, wait_for
from .sidecar_client import OUTCOME_KEYS, POLICY_KEYS, action_body, as_user, parse_time, quickstart_events

REQUEST_HEADER = "x-flightdeck-request"


def request_object(cp: ControlPlane, response: httpx.Response) -> dict[str, Any]:
    namespace, name = response.headers[REQUEST_HEADER].split("/")
    return get(cp, namespace, "promotionrequest", name)


def request_names(cp: ControlPlane, namespace: str) -> list[str]:
    listed = json.loads(cp.kubectl("get", "-n", namespace, "promotionrequests", "-o", "json").stdout)
    return sorted(item["metadata"]["name"] for item in listed["items"])


def assert_agrees_with_status(outcome: dict[str, Any], obj: dict[str, Any]) -> None:
    """The HTTP outcome is the request's status.decision, field for field."""
    decision = obj["status"]["decision"]
    assert outcome["action_id"] == decision["actionId"]
    assert outcome["action"] == obj["spec"]["action"]
    assert outcome["release_id"] == decision["releaseId"]
    assert outcome["agent_id"] == decision["agentId"]
    assert outcome["environment"] == decision["environment"]
    assert outcome["baseline_release_id"] == decision.get("pointerBefore")
    assert outcome["promoted_pointer_changed"] == decision["pointerChanged"]
    assert outcome["policy"]["passed"] == decision["policy"]["passed"]
    assert outcome["policy"]["reasons"] == decision["policy"]["reasons"]
    assert parse_time(outcome["policy"]["evaluated_at"]) == parse_time(decision["policy"]["evaluatedAt"])


def test_promote_block_and_rollback_agree_with_the_request_status(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    quickstart(control_plane, namespace)
    with as_user(control_plane, sidecar, "admin") as api:
        assert api.post("/v1/events", json={"events": quickstart_events()}).json() == {"inserted": 2}

        first = api.post("/v1/promote", json=action_body("support-base", actor="ci-bot"))
        assert first.status_code == 200, first.text
        body = first.json()
        assert list(body) == OUTCOME_KEYS
        assert list(body["policy"]) == POLICY_KEYS
        assert body["action_id"].startswith("act_")
        assert len(body["action_id"]) == 16
        assert body["action"] == "promote"
        assert (body["release_id"], body["agent_id"], body["environment"]) == ("support-base", AGENT, ENV)
        assert body["baseline_release_id"] is None
        assert body["promoted_pointer_changed"] is True
        assert body["policy"]["passed"] is True
        assert body["policy"]["reasons"] == [FIRST_PROMOTION]
        assert body["policy"]["evaluated_at"].endswith("Z")
        first_obj = request_object(control_plane, first)
        assert first_obj["status"]["phase"] == "Promoted"
        assert_agrees_with_status(body, first_obj)
        # The caller's authenticated name is recorded; the body's actor is free text.
        assert first_obj["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] == "admin"
        assert first_obj["spec"]["actor"] == "ci-bot"

        blocked = api.post("/v1/promote", json=action_body("support-cand"))
        assert blocked.status_code == 409, blocked.text
        detail = blocked.json()
        # Exactly the reference's 409 body, key by key.
        assert list(detail) == ["detail"]
        assert list(detail["detail"]) == ["message", "outcome"]
        assert detail["detail"]["message"] == "Promotion blocked by policy."
        outcome = detail["detail"]["outcome"]
        assert list(outcome) == OUTCOME_KEYS
        assert list(outcome["policy"]) == POLICY_KEYS
        assert outcome["action"] == "promote"
        assert (outcome["release_id"], outcome["agent_id"], outcome["environment"]) == (
            "support-cand",
            AGENT,
            ENV,
        )
        assert outcome["baseline_release_id"] == "support-base"
        assert outcome["promoted_pointer_changed"] is False
        assert outcome["policy"]["passed"] is False
        assert outcome["policy"]["reasons"] == [COST_BREACH]
        assert outcome["policy"]["evaluated_at"].endswith("Z")
        blocked_obj = request_object(control_plane, blocked)
        assert blocked_obj["status"]["phase"] == "Blocked"
        assert_agrees_with_status(outcome, blocked_obj)

        promoted = api.get("/v1/promoted").json()
        assert promoted == {
            "promoted": [
                {
                    "agent_id": AGENT,
                    "environment": ENV,
                    "release_id": "support-base",
                    "pointer": "support-local",
                }
            ]
        }
        actions = api.get("/v1/actions").json()["actions"]
        assert [(a["release_id"], a["policy_passed"]) for a in actions] == [
            ("support-cand", False),
            ("support-base", True),
        ]
        newest = actions[0]
        decision = blocked_obj["status"]["decision"]
        assert newest["action_id"] == outcome["action_id"]
        assert newest["audit_seq"] == newest["ledger_seq"] == decision["ledgerSeq"]
        assert newest["ledger_hash"] == decision["ledgerHash"]
        assert newest["actor"] == "http"
        assert newest["policy_reasons"] == [COST_BREACH]
        assert newest["baseline_release_id"] == "support-base"
        assert newest["reason"] == "ship it"

        # Rollback to the live release passes (it compares the release with itself) ...
        back = api.post("/v1/rollback", json=action_body("support-base", reason="stay"))
        assert back.status_code == 200, back.text
        assert back.json()["action"] == "rollback"
        assert back.json()["promoted_pointer_changed"] is True
        assert back.json()["baseline_release_id"] == "support-base"
        assert_agrees_with_status(back.json(), request_object(control_plane, back))
        # ... and rolling "back" to the expensive candidate is gated like a promote.
        rolled = api.post("/v1/rollback", json=action_body("support-cand", reason="emergency"))
        assert rolled.status_code == 409, rolled.text
        assert rolled.json()["detail"]["message"] == "Rollback blocked by policy."
        assert rolled.json()["detail"]["outcome"]["action"] == "rollback"
        assert rolled.json()["detail"]["outcome"]["policy"]["reasons"] == [COST_BREACH]
        assert_agrees_with_status(rolled.json()["detail"]["outcome"], request_object(control_plane, rolled))

        # The request view says what the HTTP answer was.
        name = rolled.headers[REQUEST_HEADER].split("/")[1]
        view = api.get(f"/v1/promotion-requests/{name}").json()
        assert (view["decided"], view["http_status"], view["phase"]) == (True, 409, "Blocked")
        assert view["outcome"] == rolled.json()["detail"]["outcome"]
        assert view["requested_by"] == "admin"
        assert api.get("/v1/promotion-requests/nope").status_code == 404

        metrics = api.get("/metrics").text
        assert 'flightdeck_sidecar_decisions_total{action="promote",outcome="passed"} 1.0' in metrics
        assert 'flightdeck_sidecar_decisions_total{action="promote",outcome="blocked"} 1.0' in metrics
        assert 'flightdeck_sidecar_decisions_total{action="rollback",outcome="blocked"} 1.0' in metrics
        assert (
            'flightdeck_sidecar_http_request_duration_seconds_count{method="POST",route="/v1/promote"} 2.0'
            in (metrics)
        )


def test_requests_that_fail_answer_400_with_the_reference_messages(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    quickstart(control_plane, namespace)
    with as_user(control_plane, sidecar, "admin") as api:
        blank = api.post("/v1/promote", json=action_body("support-base", reason="   "))
        assert (blank.status_code, blank.json()) == (
            400,
            {"detail": "Reason is required for promote/rollback actions."},
        )
        empty = api.post("/v1/promote", json=action_body("support-base", reason=""))
        assert empty.status_code == 422
        assert empty.json()["detail"][0]["loc"] == ["body", "reason"]
        assert empty.json()["detail"][0]["type"] == "string_too_short"
        unknown = api.post("/v1/promote", json=action_body("nope"))
        assert (unknown.status_code, unknown.json()) == (400, {"detail": "Unknown release: nope"})
        assert api.post("/v1/promote", json=action_body("Not_A_Name")).json() == {
            "detail": "Unknown release: Not_A_Name"
        }
        no_pointer = api.post("/v1/promote", json={**action_body("support-base"), "environment": "prod"})
        assert no_pointer.status_code == 400
        assert no_pointer.json()["detail"].startswith(
            f'No ReleasePointer governs agent "{AGENT}" in environment "prod" in namespace "{namespace}".'
        )
        for window, message in (("7w", "Invalid window unit: 7w"), ("0h", "Invalid window: 0h")):
            bad = api.post("/v1/promote", json={**action_body("support-base"), "window": window})
            assert (bad.status_code, bad.json()) == (400, {"detail": message})
        # Nothing above reached the cluster: no request was created.
        assert request_names(control_plane, namespace) == []

        # Rollback before anything was promoted: the operator fails the request (not ledgered).
        nothing = api.post("/v1/rollback", json=action_body("support-base"))
        assert (nothing.status_code, nothing.json()) == (
            400,
            {"detail": "No promoted release exists for this agent/environment; nothing to roll back to."},
        )
        obj = request_object(control_plane, nothing)
        assert obj["status"]["phase"] == "Failed"
        assert api.get("/v1/actions").json() == {"actions": []}


def test_an_idempotency_key_maps_retries_to_one_request(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    quickstart(control_plane, namespace)
    with as_user(control_plane, sidecar, "admin") as api:
        api.post("/v1/events", json={"events": quickstart_events()})
        body = action_body("support-base")
        first = api.post("/v1/promote", json=body, headers={"Idempotency-Key": "deploy-42"})
        again = api.post("/v1/promote", json=body, headers={"Idempotency-Key": "deploy-42"})
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert again.headers[REQUEST_HEADER] == first.headers[REQUEST_HEADER]
        assert "x-flightdeck-replayed" not in first.headers
        assert again.headers["x-flightdeck-replayed"] == "true"
        assert len(request_names(control_plane, namespace)) == 1

        # Concurrent retries of a blocked promote: one request, one ledger entry, one answer.
        blocked = action_body("support-cand")

        def send(_: int) -> httpx.Response:
            with as_user(control_plane, sidecar, "admin") as client:
                return client.post("/v1/promote", json=blocked, headers={"Idempotency-Key": "deploy-43"})

        with ThreadPoolExecutor(max_workers=5) as pool:
            answers = list(pool.map(send, range(5)))
        assert {a.status_code for a in answers} == {409}
        assert len({json.dumps(a.json()) for a in answers}) == 1
        assert len({a.headers[REQUEST_HEADER] for a in answers}) == 1
        assert len(request_names(control_plane, namespace)) == 2
        assert [a["release_id"] for a in api.get("/v1/actions").json()["actions"]] == [
            "support-cand",
            "support-base",
        ]

        # The same key with another body is a client bug, reported instead of merged.
        other = api.post(
            "/v1/promote", json={**blocked, "reason": "different"}, headers={"Idempotency-Key": "deploy-43"}
        )
        assert other.status_code == 422
        assert other.json()["detail"].startswith(
            "Idempotency-Key 'deploy-43' was already used for a different"
        )
        obj = request_object(control_plane, answers[0])
        assert len(obj["metadata"]["annotations"][REQUEST_DIGEST_ANNOTATION]) == 64

        # Keys are scoped per caller: alice's "deploy-42" is not admin's.
        control_plane.kubectl(
            "create",
            "rolebinding",
            "alice-edit",
            "--clusterrole=cluster-admin",
            "--user=alice",
            "-n",
            namespace,
        )
        with as_user(control_plane, sidecar, "alice") as alice:
            mine = alice.post(
                "/v1/promote", json=action_body("support-base"), headers={"Idempotency-Key": "deploy-42"}
            )
        assert mine.status_code == 200, mine.text
        assert mine.headers[REQUEST_HEADER] != first.headers[REQUEST_HEADER]
        assert mine.json()["baseline_release_id"] == "support-base"


def test_no_decision_in_time_gives_504_naming_the_request(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    """No operator runs in this namespace yet: the request stays pending, the caller gets 504 and
    the request's name; the same Idempotency-Key later returns the decision."""
    quickstart(control_plane, namespace)
    store = str(tmp_path / "flightdeck.db")
    sidecar = start_sidecar("--decision-timeout", "2", store=store)
    with as_user(control_plane, sidecar, "admin") as api:
        started = time.monotonic()
        pending = api.post("/v1/promote", json=action_body("support-base"), headers={"Idempotency-Key": "k1"})
        waited = time.monotonic() - started
        assert pending.status_code == 504, pending.text
        assert 2 <= waited < 6
        detail = pending.json()["detail"]
        name = detail["request"]["name"]
        assert detail["request"] == {"namespace": namespace, "name": name}
        assert detail["message"].startswith(f"No decision within 2s; PromotionRequest {namespace}/{name} is")
        assert "status" not in get(control_plane, namespace, "promotionrequest", name) or (
            get(control_plane, namespace, "promotionrequest", name)["status"].get("phase") != "Promoted"
        )
        view = api.get(f"/v1/promotion-requests/{name}").json()
        assert (view["decided"], view["http_status"], view["outcome"]) == (False, None, None)
        assert 'outcome="timeout"} 1.0' in api.get("/metrics").text

        with OperatorProcess(
            kubeconfig=control_plane.kubeconfig("admin"),
            store=store,
            log_path=tmp_path / "operator.log",
            namespaces=(namespace,),
        ):
            retried = api.post(
                "/v1/promote", json=action_body("support-base"), headers={"Idempotency-Key": "k1"}
            )
    assert retried.status_code == 200, retried.text
    assert retried.headers[REQUEST_HEADER] == f"{namespace}/{name}"
    assert retried.json()["policy"]["reasons"] == [FIRST_PROMOTION]


def test_in_flight_promote_finishes_during_graceful_shutdown(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    """SIGTERM while a promote waits for its decision: the sidecar stops accepting connections but
    the waiting request still gets its real answer once the operator decides."""
    quickstart(control_plane, namespace)
    store = str(tmp_path / "flightdeck.db")
    sidecar = start_sidecar("--decision-timeout", "40", store=store)
    answers: list[httpx.Response] = []

    def promote() -> None:
        with as_user(control_plane, sidecar, "admin") as api:
            answers.append(api.post("/v1/promote", json=action_body("support-base")))

    caller = threading.Thread(target=promote)
    caller.start()
    time.sleep(1.0)  # the request is now waiting in the sidecar
    sidecar.terminate()
    time.sleep(0.5)
    assert sidecar.process is not None
    assert sidecar.process.poll() is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sidecar.url}/healthz", timeout=2)
    with OperatorProcess(
        kubeconfig=control_plane.kubeconfig("admin"),
        store=store,
        log_path=tmp_path / "operator.log",
        namespaces=(namespace,),
    ):
        caller.join(timeout=60)
    assert len(answers) == 1
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["release_id"] == "support-base"
    # uvicorn re-raises the captured SIGTERM once shut down, so the exit status is the signal's.
    assert sidecar.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in sidecar.log_tail()


def test_a_request_deleted_before_its_decision_gives_410(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar
) -> None:
    quickstart(control_plane, namespace)
    sidecar = start_sidecar("--decision-timeout", "30")
    answers: list[httpx.Response] = []

    def promote() -> None:
        with as_user(control_plane, sidecar, "admin") as api:
            answers.append(api.post("/v1/promote", json=action_body("support-base")))

    caller = threading.Thread(target=promote)
    caller.start()
    names = wait_for(lambda: request_names(control_plane, namespace), what="the PromotionRequest")
    control_plane.kubectl("delete", "promotionrequest", names[0], "-n", namespace)
    caller.join(timeout=30)
    assert len(answers) == 1
    assert answers[0].status_code == 410
    assert answers[0].json() == {
        "detail": {
            "message": "The PromotionRequest was deleted before it was decided.",
            "request": {"namespace": namespace, "name": names[0]},
        }
    }
