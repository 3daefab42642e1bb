"""NotificationSubscription: where to send which ledger events, signed with a key held in a Secret."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

from flightdeck_operator.api.v1alpha1.common import (
    Count,
    Duration,
    KubeName,
    ObservedStatus,
    SpecBase,
    Text,
)
from flightdeck_operator.engine.notifications import NotificationEvent, NotificationFormat, check_webhook_url

# A key of a Secret's data (what `kubectl create secret --from-literal=<key>=...` accepts).
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"
DEFAULT_SECRET_KEY: Final = "secret"
DEFAULT_RETRY_FOR: Final = "24h"
MAX_EVENTS: Final = 16
MAX_URL_LENGTH: Final = 2048

# Messages of the CEL rules on spec.url (the reference's words; the contract test checks the CRD).
URL_SCHEME_MESSAGE: Final = "Webhook URL scheme must be http or https."
URL_HOST_MESSAGE: Final = "Webhook URL must include a host."
URL_METADATA_MESSAGE: Final = "Webhook URL targets a cloud-metadata hostname; refusing to register."
URL_LINK_LOCAL_MESSAGE: Final = "Webhook URL targets a link-local address (cloud-metadata range); refusing."


def _check_url(value: str) -> str:
    check_webhook_url(value)
    return value


WebhookUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_URL_LENGTH), AfterValidator(_check_url)
]


class SecretKeyRef(SpecBase):
    """A key of a Secret in the subscription's namespace."""

    name: KubeName
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)] = (
        DEFAULT_SECRET_KEY
    )


class NotificationSubscriptionSpec(SpecBase):
    """Deliver every ledger entry of the namespace that raises one of ``events`` to ``url``."""

    url: WebhookUrl
    events: Annotated[list[NotificationEvent], Field(min_length=1, max_length=MAX_EVENTS)]
    # The HMAC-SHA256 key of the X-FlightDeck-Signature header; never copied anywhere else.
    secret_ref: SecretKeyRef
    format: NotificationFormat = NotificationFormat.FLIGHTDECK
    # How long an undelivered notification is retried, counted from its ledger entry.
    retry_for: Duration = DEFAULT_RETRY_FOR
    # Deliveries are still planned (nothing is lost) but not sent until resumed (or retryFor passes).
    suspend: bool = False
    description: Annotated[str, StringConstraints(max_length=1024)] | None = None


class NotificationSubscriptionStatus(ObservedStatus):
    """Delivery state, from the store's outbox (counters survive operator restarts)."""

    delivered: Count = 0
    failed_attempts: Count = 0
    expired: Count = 0
    backlog: Count = 0
    consecutive_failures: Count = 0
    last_success_time: AwareDatetime | None = None
    last_failure_time: AwareDatetime | None = None
    # Why the last attempt failed (HTTP status or connection error); never the secret.
    last_failure: Text | None = None
    next_attempt_time: AwareDatetime | None = None
    # The last ledger entry considered: entries up to here have their deliveries planned.
    ledger_seq: Annotated[int, Field(ge=0)] | None = None
