"""Errors the operator raises, and how kopf treats each.

    FlightDeckError
    ├── GatewayError                 an API call failed in a way the caller may handle
    │   ├── Conflict                 409: the object changed under us (retry with a fresh read)
    │   └── NotFound                 404
    └── DependencyPending            a referenced object is not visible yet (kopf.TemporaryError)

Failures that end a request (unknown pointer, release, pricing table ...) are not exceptions:
they are decisions, written to the request's status with a Stalled condition.
"""

from __future__ import annotations

import kopf


class FlightDeckError(Exception):
    """Base class of the operator's own errors."""


class GatewayError(FlightDeckError):
    """An API call failed; ``status`` is the HTTP status code (0 when there was no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Conflict(GatewayError):
    """The object's resourceVersion changed since it was read (HTTP 409)."""


class NotFound(GatewayError):
    """The object does not exist (HTTP 404)."""


class DependencyPending(kopf.TemporaryError, FlightDeckError):
    """A referenced object is not in the operator's indexes yet; kopf retries after ``delay``.

    Objects applied together (``kubectl apply -f dir/``, a GitOps sync) may reach the operator in
    any order, so a missing reference is retried for a grace period before it fails the request.
    """
