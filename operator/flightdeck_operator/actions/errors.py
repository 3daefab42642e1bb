"""Errors of the actions: each carries the HTTP status and ``detail`` the sidecar answers with (the
CLI prints the same message)."""

from __future__ import annotations

import datetime as dt

from pydantic import JsonValue

from flightdeck_operator.kube.errors import GatewayError


class ActionError(Exception):
    """A promote, rollback or diff that cannot be answered with an outcome.

    ``status`` and ``detail`` are what the HTTP API answers (``{"detail": detail}``); the CLI
    prints ``message``.
    """

    status: int = 400

    def __init__(
        self, message: str, detail: JsonValue = None, *, next_open: dt.datetime | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail: JsonValue = message if detail is None else detail
        # A closed promotion window caused it: when the window opens (the HTTP Retry-After).
        self.next_open = next_open


class InvalidAction(ActionError):
    """400: the request is invalid or names something that does not exist (reference messages)."""


class IdempotencyConflict(ActionError):
    """422: the idempotency key was already used for a request with a different body."""

    status = 422


class DecisionTimeout(ActionError):
    """504: the operator did not decide within the timeout; the request is still pending."""

    status = 504


class RequestDeleted(ActionError):
    """410: the PromotionRequest was deleted before it was decided."""

    status = 410


class ClusterUnavailable(ActionError):
    """503: the Kubernetes API could not be used."""

    status = 503


class PolicyDoesNotAllow(ActionError):
    """409 without an outcome: the dry run says the policy blocks; nothing was recorded."""

    status = 409


class ApprovalForbidden(ActionError):
    """403: the caller may not approve this request (self-approval, not an approver, no identity)."""

    status = 403


class ApprovalConflict(ActionError):
    """409: the approval named a decision that is no longer the request's (stale), or the like."""

    status = 409


def gateway_failure(error: GatewayError, kind: str) -> ActionError:
    """What a failed API call means to the caller: a rejected object (422 from the CRD schema or a
    CEL rule) is the caller's 400; anything else, the cluster's 503."""
    if error.status in (401, 403):
        return ClusterUnavailable(f"The Kubernetes API refused the sidecar's request: {error}")
    if error.status == 422:
        return InvalidAction(f"The API server rejected the {kind}: {error}")
    return ClusterUnavailable(f"Kubernetes API unavailable: {error}")
