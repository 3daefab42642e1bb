"""AdmissionReview ``admission.k8s.io/v1``: what the API server sends and what we answer.

Inbound models are tolerant (``extra="ignore"``): a newer API server may add fields. The answer
is built by :func:`allow` and :func:`deny` only, so every response carries the request's uid.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
ADMISSION_KIND: Final = "AdmissionReview"
# The API server drops longer warnings; keep ours whole by cutting them ourselves.
MAX_WARNING_LENGTH: Final = 256


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True, extra="ignore"
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Operation(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    CONNECT = "CONNECT"


class GroupVersionKind(_Wire):
    group: str = ""
    version: str
    kind: str


class GroupVersionResource(_Wire):
    group: str = ""
    version: str
    resource: str


class UserInfo(_Wire):
    """The authenticated user of the API request being admitted (the API server's word)."""

    username: str = ""
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = Field(default_factory=dict)


class AdmissionRequest(_Wire):
    uid: str = Field(min_length=1)
    kind: GroupVersionKind
    resource: GroupVersionResource
    sub_resource: str | None = None
    name: str = ""
    namespace: str = ""
    operation: Operation
    user_info: UserInfo
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None
    # True for `kubectl apply --dry-run=server`: nothing is persisted, so nothing may be written.
    dry_run: bool = False
    options: dict[str, Any] | None = None


class ResultStatus(_Wire):
    """The ``metav1.Status`` of a denial: kubectl prints ``message``; ``code`` is the HTTP status."""

    code: int
    message: str


class AdmissionResponse(_Wire):
    uid: str
    allowed: bool
    status: ResultStatus | None = None
    # base64 of a JSON Patch (RFC 6902) document.
    patch: str | None = None
    patch_type: Literal["JSONPatch"] | None = None
    warnings: tuple[str, ...] | None = None


class AdmissionReview(_Wire):
    api_version: Literal["admission.k8s.io/v1"] = ADMISSION_API_VERSION
    kind: Literal["AdmissionReview"] = ADMISSION_KIND
    request: AdmissionRequest | None = None
    response: AdmissionResponse | None = None


class PatchOperation(_Wire):
    """One JSON Patch operation. ``value`` is always sent for add/replace/test (null is a value)."""

    op: Literal["add", "replace", "remove", "test"]
    path: str
    value: Any = None

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.op != "remove":
            body["value"] = self.value
        return body


def encode_patch(operations: Sequence[PatchOperation]) -> str:
    return base64.b64encode(json.dumps([op.to_wire() for op in operations]).encode()).decode()


def decode_patch(patch: str) -> list[dict[str, Any]]:
    """The JSON Patch a response carries (for tests and logs)."""
    decoded: list[dict[str, Any]] = json.loads(base64.b64decode(patch))
    return decoded


def _warnings(warnings: Sequence[str]) -> tuple[str, ...] | None:
    # One line each: the API server sends them as HTTP Warning headers.
    cleaned = tuple(" ".join(w.split())[:MAX_WARNING_LENGTH] for w in warnings if w.strip())
    return cleaned or None


def allow(
    request: AdmissionRequest,
    *,
    patch: Sequence[PatchOperation] = (),
    warnings: Sequence[str] = (),
) -> AdmissionResponse:
    return AdmissionResponse(
        uid=request.uid,
        allowed=True,
        patch=encode_patch(patch) if patch else None,
        patch_type="JSONPatch" if patch else None,
        warnings=_warnings(warnings),
    )


def deny(request: AdmissionRequest, code: int, message: str) -> AdmissionResponse:
    """Refuse the API request: kubectl shows ``admission webhook "..." denied the request: <message>``."""
    return AdmissionResponse(uid=request.uid, allowed=False, status=ResultStatus(code=code, message=message))


def review_of(response: AdmissionResponse) -> dict[str, Any]:
    """The HTTP body answering an AdmissionReview."""
    return AdmissionReview(response=response).to_wire()
