"""AdmissionReview v1 models and the response builders; the transport-free part of the server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flightdeck_operator.webhook.admission import (
    AdmissionRequest,
    AdmissionResponse,
    AdmissionReview,
    Operation,
    PatchOperation,
    allow,
    decode_patch,
    deny,
    review_of,
)
from flightdeck_operator.webhook.server import answer_review


def review(**request: Any) -> dict[str, Any]:
    """An AdmissionReview as kube-apiserver sends it (fields we do not model included)."""
    body: dict[str, Any] = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "flightdeck.dev", "version": "v1alpha1", "kind": "PromotionRequest"},
        "resource": {"group": "flightdeck.dev", "version": "v1alpha1", "resource": "promotionrequests"},
        "requestKind": {"group": "flightdeck.dev", "version": "v1alpha1", "kind": "PromotionRequest"},
        "requestResource": {
            "group": "flightdeck.dev",
            "version": "v1alpha1",
            "resource": "promotionrequests",
        },
        "name": "first",
        "namespace": "agents",
        "operation": "CREATE",
        "userInfo": {
            "username": "alice",
            "uid": "alice-uid",
            "groups": ["flightdeck:developers", "system:authenticated"],
            "extra": {"scopes": ["a", "b"]},
        },
        "object": {"apiVersion": "flightdeck.dev/v1alpha1", "kind": "PromotionRequest", "spec": {"x": 1}},
        "oldObject": None,
        "dryRun": True,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        **request,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}


def test_a_review_from_the_api_server_parses() -> None:
    parsed = AdmissionReview.model_validate(review())
    request = parsed.request
    assert request is not None
    assert (request.operation, request.namespace, request.name, request.dry_run) == (
        Operation.CREATE,
        "agents",
        "first",
        True,
    )
    assert request.user_info.username == "alice"
    assert request.user_info.groups == ("flightdeck:developers", "system:authenticated")
    assert request.user_info.extra == {"scopes": ("a", "b")}
    assert request.kind.kind == "PromotionRequest"
    assert request.resource.resource == "promotionrequests"
    assert request.object == {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "PromotionRequest",
        "spec": {"x": 1},
    }
    assert request.old_object is None
    assert request.options == {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}


def test_request_round_trips_through_the_wire_form() -> None:
    request = AdmissionReview.model_validate(review()).request
    assert request is not None
    again = AdmissionRequest.model_validate(request.to_wire())
    assert again == request
    assert request.to_wire()["userInfo"]["username"] == "alice"
    assert "oldObject" not in request.to_wire()  # None is omitted


def request() -> AdmissionRequest:
    parsed = AdmissionReview.model_validate(review()).request
    assert parsed is not None
    return parsed


def test_allow_with_a_json_patch_and_warnings() -> None:
    patch = [PatchOperation(op="add", path="/spec/requestedBy", value={"username": "alice"})]
    response = allow(request(), patch=patch, warnings=["would be\nPromoted"])
    body = review_of(response)
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    assert "request" not in body
    answer = body["response"]
    assert answer["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert answer["allowed"] is True
    assert answer["patchType"] == "JSONPatch"
    assert decode_patch(answer["patch"]) == [
        {"op": "add", "path": "/spec/requestedBy", "value": {"username": "alice"}}
    ]
    assert answer["warnings"] == ["would be Promoted"]  # one line: it becomes an HTTP header
    assert "status" not in answer
    assert AdmissionResponse.model_validate(answer) == response


def test_plain_allow_carries_no_patch() -> None:
    answer = review_of(allow(request()))["response"]
    assert answer == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


def test_a_remove_operation_has_no_value_but_null_is_a_value() -> None:
    assert PatchOperation(op="remove", path="/spec/x").to_wire() == {"op": "remove", "path": "/spec/x"}
    assert PatchOperation(op="add", path="/spec/x").to_wire() == {
        "op": "add",
        "path": "/spec/x",
        "value": None,
    }


def test_long_warnings_are_cut_to_what_the_api_server_keeps() -> None:
    answer = review_of(allow(request(), warnings=["x" * 1000, "  "]))["response"]
    assert answer["warnings"] == ["x" * 256]


def test_deny_carries_code_and_message() -> None:
    answer = review_of(deny(request(), 403, "no"))["response"]
    assert answer == {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "allowed": False,
        "status": {"code": 403, "message": "no"},
    }


# -- the server's dispatch -------------------------------------------------------------------------


async def echo_allow(admission: AdmissionRequest) -> AdmissionResponse:
    return allow(admission, warnings=[admission.user_info.username])


async def explode(admission: AdmissionRequest) -> AdmissionResponse:
    raise RuntimeError("index not ready")


HANDLERS = {"/mutate/ok": echo_allow, "/mutate/boom": explode}


async def test_a_review_is_routed_by_path() -> None:
    status, body = await answer_review(HANDLERS, "/mutate/ok", json.dumps(review()).encode())
    assert status == 200
    assert body["response"]["warnings"] == ["alice"]


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}).encode(),
        json.dumps(review(operation="EXPLODE")).encode(),
        json.dumps(review(uid="")).encode(),
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
    ],
)
async def test_an_invalid_review_is_answered_400(payload: bytes) -> None:
    status, body = await answer_review(HANDLERS, "/mutate/ok", payload)
    assert status == 400
    assert body["message"]


async def test_an_unknown_path_is_404() -> None:
    status, _body = await answer_review(HANDLERS, "/mutate/other", json.dumps(review()).encode())
    assert status == 404


async def test_a_handler_exception_denies_with_500(caplog: pytest.LogCaptureFixture) -> None:
    status, body = await answer_review(HANDLERS, "/mutate/boom", json.dumps(review()).encode())
    assert status == 200  # the API server reads the denial from the review, not the HTTP status
    assert body["response"]["allowed"] is False
    assert body["response"]["status"] == {
        "code": 500,
        "message": "FlightDeck admission failed: RuntimeError: index not ready",
    }
    assert "Admission of CREATE agents/first failed" in caplog.text
