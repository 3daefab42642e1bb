"""Errors of the Kubernetes gateway: the API's failures as the callers handle them.

FlightDeckError
├── KubeconfigError              no usable kubeconfig or in-cluster configuration
└── GatewayError                 an API call failed in a way the caller may handle
    ├── Conflict                 409: the object changed under us (retry with a fresh read)
    └── NotFound                 404
"""

from __future__ import annotations


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


class KubeconfigError(FlightDeckError):
    """Neither the given kubeconfig, the in-cluster configuration nor the default kubeconfig works."""
