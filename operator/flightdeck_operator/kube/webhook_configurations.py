"""MutatingWebhookConfigurations as plain dicts, for the local harness that registers the operator's
webhook by URL (a bare control plane routes no Services). The operator itself only repairs the
caBundle (:meth:`KubeGateway.ensure_webhook_ca_bundle`); the chart owns the configuration."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client

from flightdeck_operator.kube.errors import Conflict, NotFound
from flightdeck_operator.kube.gateway import Body, api_call


class WebhookConfigurations:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.api = client.AdmissionregistrationV1Api(api_client)

    def read(self, name: str) -> Body:
        """The configuration as the API server serialises it (camelCase keys)."""
        current = api_call(self.api.read_mutating_webhook_configuration, name)
        body: Body = self.api_client.sanitize_for_serialization(current)
        return body

    def apply(self, body: Mapping[str, Any]) -> None:
        """Create ``body``, or replace the configuration of that name (left by a killed process)."""
        try:
            api_call(self.api.create_mutating_webhook_configuration, dict(body))
        except Conflict:
            name = body["metadata"]["name"]
            version = self.read(name)["metadata"]["resourceVersion"]
            replacement = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
            api_call(self.api.replace_mutating_webhook_configuration, name, replacement)

    def patch(self, name: str, operations: Sequence[Mapping[str, Any]]) -> None:
        """A JSON patch of the configuration."""
        api_call(self.api.patch_mutating_webhook_configuration, name, [dict(op) for op in operations])

    def delete(self, name: str) -> None:
        """Delete the configuration; gone already is fine."""
        with contextlib.suppress(NotFound):
            api_call(self.api.delete_mutating_webhook_configuration, name)
