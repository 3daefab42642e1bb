"""The one module that talks to the Kubernetes API (besides kopf's own watching and patching).

Every call is synchronous (the official client blocks); callers run it in a worker thread.
API errors are mapped onto :mod:`flightdeck_operator.errors` so no other module needs to know
about ``kubernetes.client.rest.ApiException``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from flightdeck_operator.errors import Conflict, GatewayError, NotFound

GROUP = "flightdeck.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
COMPONENT = "flightdeck-operator"

T = TypeVar("T")
Body = dict[str, Any]


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client from a kubeconfig path, else in-cluster config, else the default kubeconfig."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except ApiException as error:
        message = _api_message(error)
        if error.status == 409:
            raise Conflict(message, 409) from None
        if error.status == 404:
            raise NotFound(message, 404) from None
        raise GatewayError(message, error.status or 0) from None


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


class KubeGateway:
    """Reads and writes FlightDeck objects, Events and access reviews."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.objects = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    # -- custom objects --------------------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> Body:
        return _call(self.objects.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name)

    def find(self, plural: str, namespace: str, name: str) -> Body | None:
        try:
            return self.get(plural, namespace, name)
        except NotFound:
            return None

    def list_objects(self, plural: str, namespace: str | None = None) -> list[Body]:
        if namespace is None:
            listed = _call(self.objects.list_cluster_custom_object, GROUP, VERSION, plural)
        else:
            listed = _call(self.objects.list_namespaced_custom_object, GROUP, VERSION, namespace, plural)
        items: list[Body] = listed["items"]
        return items

    def create(self, plural: str, namespace: str, body: Mapping[str, Any]) -> Body:
        return _call(
            self.objects.create_namespaced_custom_object, GROUP, VERSION, namespace, plural, dict(body)
        )

    def replace_status(self, plural: str, body: Mapping[str, Any]) -> Body:
        """PUT the status subresource. ``body.metadata.resourceVersion`` is a precondition: a
        concurrent writer makes this raise :class:`Conflict` instead of being overwritten."""
        metadata = body["metadata"]
        return _call(
            self.objects.replace_namespaced_custom_object_status,
            GROUP,
            VERSION,
            metadata["namespace"],
            plural,
            metadata["name"],
            dict(body),
        )

    def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> Body:
        """Merge-patch the status subresource (no precondition: for objects only we write)."""
        return _call(
            self.objects.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": dict(status)},
        )

    def watch(
        self, plural: str, namespace: str, *, field_selector: str | None = None, timeout_seconds: int = 60
    ) -> Iterator[tuple[str, Body]]:
        """Yield (event type, object) from a watch until the server closes it."""
        stream = watch.Watch()
        kwargs: dict[str, Any] = {"timeout_seconds": timeout_seconds}
        if field_selector:
            kwargs["field_selector"] = field_selector
        try:
            for event in stream.stream(
                self.objects.list_namespaced_custom_object, GROUP, VERSION, namespace, plural, **kwargs
            ):
                yield event["type"], event["object"]
        except ApiException as error:
            raise GatewayError(_api_message(error), error.status or 0) from None
        finally:
            stream.stop()

    # -- events ----------------------------------------------------------------------------

    def post_event(
        self, obj: Mapping[str, Any], *, kind: str, event_type: str, reason: str, message: str
    ) -> None:
        """Record a core/v1 Event on ``obj`` (what ``kubectl describe`` shows)."""
        metadata = obj["metadata"]
        now = dt.datetime.now(dt.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{metadata['name']}.", namespace=metadata["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION,
                kind=kind,
                name=metadata["name"],
                namespace=metadata["namespace"],
                uid=metadata.get("uid"),
                resource_version=metadata.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type=event_type,
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        _call(self.core.create_namespaced_event, metadata["namespace"], event)

    def list_events(self, namespace: str, involved_name: str) -> list[client.CoreV1Event]:
        listed = _call(
            self.core.list_namespaced_event, namespace, field_selector=f"involvedObject.name={involved_name}"
        )
        items: list[client.CoreV1Event] = listed.items
        return items
