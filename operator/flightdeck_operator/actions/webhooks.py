"""The reference's webhook management API (``POST/GET/DELETE /v1/webhooks``) on top of
NotificationSubscriptions: a webhook *is* a subscription, and its secret a Secret.

- Create: a NotificationSubscription ``wh-<32 hex>`` and a Secret of the same name holding a new
  ``secrets.token_urlsafe(32)`` (the reference's generator), owned by the subscription so that
  Kubernetes' garbage collector deletes it with it. The answer is the only time the secret is shown;
  the sidecar never reads a Secret (it may only create them).
- List: every subscription of the namespace (also those applied with kubectl or GitOps), with the
  reference's ``secret_preview`` (first 6 + ``…`` + last 4 characters), recorded at creation in an
  annotation; ``null`` for subscriptions whose secret the sidecar never saw.
- Delete: the subscription (its outbox goes with it); 404 ``Unknown webhook: <id>``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import secrets
import uuid
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flightdeck_operator.actions.errors import gateway_failure
from flightdeck_operator.api.v1alpha1 import (
    API_VERSION,
    DNS1123_SUBDOMAIN_PATTERN,
    NOTIFICATION_SUBSCRIPTION,
    NotificationSubscriptionSpec,
)
from flightdeck_operator.engine.notifications import NotificationFormat, check_events, check_webhook_url
from flightdeck_operator.kube.errors import GatewayError, NotFound
from flightdeck_operator.kube.gateway import KubeGateway

SECRET_KEY: Final = "secret"
SECRET_PREVIEW_ANNOTATION: Final = "flightdeck.dev/secret-preview"
REQUESTED_BY_ANNOTATION: Final = "flightdeck.dev/requested-by"
SOURCE_LABEL: Final = "flightdeck.dev/source"
WEBHOOK_PREFIX: Final = "wh-"
_NAME = re.compile(DNS1123_SUBDOMAIN_PATTERN)


class WebhookCreate(BaseModel):
    """The reference's ``POST /v1/webhooks`` body (its validators and messages), plus ``format``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str = Field(min_length=1, max_length=2048)
    events: list[str] = Field(min_length=1, max_length=16)
    description: str | None = Field(default=None, max_length=1024)
    format: NotificationFormat = Field(
        default=NotificationFormat.FLIGHTDECK,
        description="flightdeck (the reference's body) or cloudevents (CloudEvents 1.0 structured JSON).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_webhook_url(value)
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        check_events(value)
        return list(dict.fromkeys(value))  # the subscription's events are a set


class WebhookPublic(BaseModel):
    """The reference's ``Webhook``: ``secret`` only in the create answer, ``secret_preview`` in lists."""

    model_config = ConfigDict(frozen=True)

    api_version: Literal["v1"] = "v1"
    kind: Literal["Webhook"] = "Webhook"
    webhook_id: str
    url: str
    events: list[str]
    enabled: bool
    created_at: str
    description: str | None = None
    secret: str | None = None
    secret_preview: str | None = None
    format: NotificationFormat = NotificationFormat.FLIGHTDECK


class WebhookList(BaseModel):
    model_config = ConfigDict(frozen=True)

    api_version: Literal["v1"] = "v1"
    kind: Literal["WebhookList"] = "WebhookList"
    webhooks: list[WebhookPublic]
    total: int


class WebhookDeleted(BaseModel):
    model_config = ConfigDict(frozen=True)

    webhook_id: str
    deleted: Literal[True] = True


def secret_preview(secret: str) -> str:
    """The reference's shape-preserving redaction (never the whole secret)."""
    return "…" if len(secret) <= 10 else f"{secret[:6]}…{secret[-4:]}"


def _created_at(metadata: Mapping[str, Any]) -> str:
    stamp = str(metadata.get("creationTimestamp") or "")
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return stamp


def _public(body: Mapping[str, Any], *, secret: str | None = None) -> WebhookPublic:
    metadata = body["metadata"]
    spec = NotificationSubscriptionSpec.model_validate(body.get("spec") or {})
    return WebhookPublic(
        webhook_id=metadata["name"],
        url=spec.url,
        events=[event.value for event in spec.events],
        enabled=not spec.suspend,
        created_at=_created_at(metadata),
        description=spec.description,
        secret=secret,
        secret_preview=None
        if secret is not None
        else (metadata.get("annotations") or {}).get(SECRET_PREVIEW_ANNOTATION),
        format=spec.format,
    )


def create_webhook(
    gateway: KubeGateway, namespace: str, body: WebhookCreate, *, requested_by: str
) -> WebhookPublic:
    name = WEBHOOK_PREFIX + uuid.uuid4().hex
    secret = secrets.token_urlsafe(32)
    spec: dict[str, Any] = {
        "url": body.url,
        "events": body.events,
        "secretRef": {"name": name, "key": SECRET_KEY},
        "format": body.format.value,
    }
    if body.description is not None:
        spec["description"] = body.description
    subscription = {
        "apiVersion": API_VERSION,
        "kind": NOTIFICATION_SUBSCRIPTION.kind,
        "metadata": {
            "name": name,
            "labels": {SOURCE_LABEL: "http"},
            "annotations": {
                SECRET_PREVIEW_ANNOTATION: secret_preview(secret),
                REQUESTED_BY_ANNOTATION: requested_by,
            },
        },
        "spec": spec,
    }
    try:
        created = gateway.create(NOTIFICATION_SUBSCRIPTION.plural, namespace, subscription)
    except GatewayError as error:
        raise gateway_failure(error, NOTIFICATION_SUBSCRIPTION.kind) from None
    owner = {
        "apiVersion": API_VERSION,
        "kind": NOTIFICATION_SUBSCRIPTION.kind,
        "name": name,
        "uid": created["metadata"]["uid"],
    }
    try:
        gateway.create_secret(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "labels": {SOURCE_LABEL: "http"}, "ownerReferences": [owner]},
                "type": "Opaque",
                "stringData": {SECRET_KEY: secret},
            },
        )
    except GatewayError as error:
        with contextlib.suppress(GatewayError):  # no subscription without its key
            gateway.delete(NOTIFICATION_SUBSCRIPTION.plural, namespace, name)
        raise gateway_failure(error, "Secret") from None
    return _public(created, secret=secret)


def list_webhooks(gateway: KubeGateway, namespace: str) -> WebhookList:
    try:
        bodies = gateway.list_objects(NOTIFICATION_SUBSCRIPTION.plural, namespace)
    except GatewayError as error:
        raise gateway_failure(error, NOTIFICATION_SUBSCRIPTION.kind) from None
    items = []
    for body in bodies:
        try:
            items.append(_public(body))
        except ValueError:
            continue  # a subscription the operator cannot use either (its status says why)
    items.sort(key=lambda item: (item.created_at, item.webhook_id))
    return WebhookList(webhooks=items, total=len(items))


def delete_webhook(gateway: KubeGateway, namespace: str, webhook_id: str) -> bool:
    """False when there is no such webhook (the reference's 404)."""
    if len(webhook_id) > 253 or _NAME.fullmatch(webhook_id) is None:
        return False
    try:
        gateway.delete(NOTIFICATION_SUBSCRIPTION.plural, namespace, webhook_id)
    except NotFound:
        return False
    except GatewayError as error:
        raise gateway_failure(error, NOTIFICATION_SUBSCRIPTION.kind) from None
    return True
